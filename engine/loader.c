/* engine/loader.c — batch assembly and background prefetch (see loader.h). */
#include "loader.h"
#include "errfmt.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <string.h>

#include "check.h"
#include "sampler.h"

/* stream tags of a sample */
enum { TAG_CROP = 1, TAG_SPATIAL = 2, TAG_INTENSITY = 3, TAG_DEGRADE = 4 };
#define VAL_DEGRADE_SEED 0x7a11dca5e5eedull   /* validation degradations: case index only */

typedef struct {
    float *raw;                /* case as read, dataset channel order [C_ds, D, H, W] */
    float *img;                /* model channel order [C_seq, D, H, W] (== raw when identity) */
    float *tgt, *tmp, *field, *tbuf, *sub, *disp, *disp1, *tsub;
    uint8_t *seg, *lab, *segsl;
    int* order;
    long order_epoch;
    long tbuf_n;
} Scratch;

struct LoaderPriv {
    pthread_mutex_t mu;
    pthread_cond_t cv_free, cv_ready;
    int Q;
    Batch* slot;
    long* slot_k;              /* batch index held by the slot, -1 none */
    int* slot_bad;
    char (*slot_err)[512];
    long e0, p0;               /* state at the last seek */
    long next_claim, next_consume;
    int stop;
    int n_th;
    pthread_t* th;
    Scratch* sc;               /* per worker */
    int32_t* item_cls;
    int total;                 /* samples per epoch over all ranks (train: n_items * spc) */
    int train;
    int tdims[4];              /* explicit target dims */
};

typedef struct { Loader* L; int w; } WorkerArg;

void loader_defaults(LoaderConfig* c) {
    memset(c, 0, sizeof *c);
    c->mode = LOADER_VOLUME;
    c->context = 1;
    c->batch = 2;
    c->pos_fraction = 0.33;
    c->fg_label = -1;
    c->task = LOADER_SEGMENT;
    c->split = SPLIT_TRAIN;
    c->fold = -1;
    c->augment = 1;
    c->balance = 1;
    c->samples_per_case = 1;
    c->world = 1;
    c->workers = 1;
    c->queue = 2;
    augment_defaults(&c->aug);
    snprintf(c->deg.superres_channel, sizeof c->deg.superres_channel, "t2w");
    c->deg.superres_factor = 2;
    c->deg.superres_axis = 0;
    snprintf(c->deg.undistort_channels, sizeof c->deg.undistort_channels, "hbv");
    c->deg.undistort_mag = 3;
    c->deg.undistort_spacing[0] = 4;
    c->deg.undistort_spacing[1] = 24;
    c->deg.undistort_spacing[2] = 24;
    c->deg.undistort_axis = 1;
    snprintf(c->deg.synth_inputs, sizeof c->deg.synth_inputs, "t2w,hbv");
    snprintf(c->deg.synth_target, sizeof c->deg.synth_target, "adc");
}

static const char* task_name(int t) {
    static const char* n[] = {"classify", "segment", "superres", "undistort", "synthesize"};
    return t >= 0 && t <= 4 ? n[t] : "?";
}

/* channels of a comma list -> mask; returns the first index found or -1; names not in the
 * dataset are reported through bad (first one) */
static int channel_list(const Dataset* ds, const char* list, uint8_t* mask, char* bad, size_t blen) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", list);
    int first = -1;
    if (bad && blen) bad[0] = 0;
    for (char *save = NULL, *t = strtok_r(buf, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
        int c = dataset_channel(ds, t);
        if (c < 0) {
            if (bad && blen && !bad[0]) snprintf(bad, blen, "%s", t);
            continue;
        }
        if (mask) mask[c] = 1;
        if (first < 0) first = c;
    }
    return first;
}

static uint64_t sample_seed(uint64_t seed, long epoch, long q, int rank, uint64_t view) {
    Rng r = rng_stream(seed, 0x5a3b1e00ull ^ (uint64_t)epoch);
    Rng r2 = rng_stream(rng_u64(&r), (uint64_t)q);
    Rng r3 = rng_stream(rng_u64(&r2), (uint64_t)rank);
    uint64_t s = rng_u64(&r3);
    if (!view) return s;   /* view 0 keeps the draws every earlier run made */
    Rng r4 = rng_stream(s, view);
    return rng_u64(&r4);
}

static int is_image_task(int t) { return t >= LOADER_SUPERRES && t <= LOADER_SYNTHESIZE; }

/* ---- batch buffers ------------------------------------------------------------------------ */
static void batch_alloc(const Loader* L, Batch* b) {
    memset(b, 0, sizeof *b);
    b->B = L->cfg.batch; b->C = L->C; b->D = L->D; b->H = L->H; b->W = L->W;
    long vox = (long)L->D * L->H * L->W;
    b->img = xcalloc((size_t)b->B * L->C * vox, sizeof(float));
    b->present = xcalloc((size_t)b->B * L->C, 1);
    if (L->cfg.task == LOADER_SEGMENT) b->seg = xcalloc((size_t)b->B * vox, sizeof(int32_t));
    if (L->cfg.task == LOADER_CLASSIFY) b->cls = xcalloc(b->B, sizeof(int32_t));
    if (is_image_task(L->cfg.task)) b->target = xcalloc((size_t)b->B * vox, sizeof(float));
    b->case_idx = xcalloc(b->B, sizeof(int32_t));
    if (L->cfg.mode == LOADER_SLICE) {
        b->slice_idx = xcalloc(b->B, sizeof(int32_t));
        b->slice_cnt = xcalloc(b->B, sizeof(int32_t));
    }
}

void batch_free(Batch* b) {
    free(b->img); free(b->present); free(b->seg); free(b->cls); free(b->target);
    free(b->case_idx); free(b->slice_idx); free(b->slice_cnt);
    memset(b, 0, sizeof *b);
}

static void scratch_alloc(const Loader* L, Scratch* s) {
    const Dataset* ds = L->ds;
    long vol = (long)ds->D * ds->H * ds->W;
    int ctx = L->cfg.mode == LOADER_SLICE ? L->cfg.context : 1;
    long crop = (long)(L->cfg.mode == LOADER_SLICE ? ctx : L->D) * L->H * L->W;
    memset(s, 0, sizeof *s);
    s->raw = xmalloc(sizeof(float) * ds->C * vol);
    s->img = L->chan_identity ? s->raw : xmalloc(sizeof(float) * L->C_seq * vol);
    s->seg = xcalloc(vol, 1);
    s->tgt = xmalloc(sizeof(float) * vol);
    s->tmp = xmalloc(sizeof(float) * vol);
    s->field = xmalloc(sizeof(float) * vol);
    s->disp = xmalloc(sizeof(float) * 3 * crop);
    s->disp1 = xmalloc(sizeof(float) * 3 * (long)L->H * L->W);
    s->lab = xmalloc(crop);
    if (L->cfg.mode == LOADER_SLICE) {
        s->sub = xmalloc(sizeof(float) * L->C_seq * ctx * (long)ds->H * ds->W);
        s->segsl = xmalloc((long)ds->H * ds->W);
        s->tsub = xmalloc(sizeof(float) * (long)ds->H * ds->W);
    }
    s->order = xmalloc(sizeof(int) * (L->p->total ? L->p->total : 1));
    s->order_epoch = -1;
}

static void scratch_free(Scratch* s) {
    if (s->img != s->raw) free(s->img);
    free(s->raw); free(s->tgt); free(s->tmp); free(s->field); free(s->tbuf); free(s->sub);
    free(s->disp); free(s->disp1); free(s->tsub); free(s->seg); free(s->lab); free(s->segsl);
    free(s->order);
    memset(s, 0, sizeof *s);
}

/* ---- one case: read, image-task preparation ------------------------------------------------ */
static int prepare_raw(Loader* L, Scratch* s, int i, Rng* rng, uint8_t* present, char* err,
                       size_t errlen);

/* dataset channel order (raw, pr) -> the model's (img, present) */
static void map_channels(const Loader* L, const float* raw, const uint8_t* pr, float* img,
                         uint8_t* present) {
    const long vol = (long)L->ds->D * L->ds->H * L->ds->W;
    for (int k = 0; k < L->C_seq; k++) {
        int c = L->seq_src[k];
        if (L->chan_identity) {
            present[k] = pr[k];
        } else if (c < 0) {
            present[k] = 0;
            memset(img + k * vol, 0, sizeof(float) * vol);
        } else {
            present[k] = pr[c];
            memcpy(img + k * vol, raw + c * vol, sizeof(float) * vol);
        }
    }
}

/* reads case i into s->raw / s->seg; image tasks: s->tgt = clean target, inputs degraded (rng)
 * and reduced to chan_mask; then s->img / present[C_seq] in the model's channel order */
static int prepare_case(Loader* L, Scratch* s, int i, Rng* rng, uint8_t* present, char* err,
                        size_t errlen) {
    uint8_t pr[DS_MAX_CHANNELS];
    if (prepare_raw(L, s, i, rng, pr, err, errlen)) return 1;
    map_channels(L, s->raw, pr, s->img, present);
    return 0;
}

static int prepare_raw(Loader* L, Scratch* s, int i, Rng* rng, uint8_t* present, char* err,
                       size_t errlen) {
    Dataset* ds = L->ds;
    const int C = ds->C;
    const long vol = (long)ds->D * ds->H * ds->W;
    const int dims[3] = {ds->D, ds->H, ds->W};
    if (dataset_read_case(ds, i, s->raw, ds->has_seg ? s->seg : NULL, err, errlen)) return 1;
    if (!ds->has_seg) memset(s->seg, 0, vol);
    memcpy(present, ds->channel_present + (long)i * C, C);
    if (!is_image_task(L->cfg.task)) return 0;
    const DegradeConfig* dg = &L->cfg.deg;
    if (L->target_name[0]) {
        int td[4];
        long need = (long)L->p->tdims[0] * vol;
        if (s->tbuf_n < need) {
            free(s->tbuf);
            s->tbuf = xmalloc(sizeof(float) * need);
            s->tbuf_n = need;
        }
        if (dataset_read_target(ds, i, L->target_name, s->tbuf, td, err, errlen)) return 1;
        memcpy(s->tgt, s->tbuf, sizeof(float) * vol);
    } else {
        memcpy(s->tgt, s->raw + (long)L->target_ch * vol, sizeof(float) * vol);
        if (L->cfg.task == LOADER_SUPERRES) {
            int f = dg->superres_factor;
            int off = f > 1 ? (int)(rng_u64(rng) % (uint64_t)f) : 0;
            deg_superres(s->raw + (long)L->target_ch * vol, dims, dg->superres_axis, f, off);
        } else if (L->cfg.task == LOADER_UNDISTORT) {
            double amp = dg->undistort_mag * (0.5 + 0.5 * rng_uniform(rng));
            deg_smooth_field(rng, dims, dg->undistort_spacing, amp, dg->undistort_axis, s->field);
            for (int c = 0; c < C; c++) {
                if (!L->chan_mask[c] || !present[c]) continue;
                deg_distort(s->raw + c * vol, dims, dg->undistort_axis, s->field, 1, s->tmp);
                memcpy(s->raw + c * vol, s->tmp, sizeof(float) * vol);
            }
        }
    }
    for (int c = 0; c < C; c++)
        if (!L->chan_mask[c]) {
            present[c] = 0;
            memset(s->raw + c * vol, 0, sizeof(float) * vol);
        }
    return 0;
}

/* ---- one sample -------------------------------------------------------------------------- */
static int produce_sample(Loader* L, Scratch* s, int i, uint64_t sseed, int train, Batch* b,
                          int j, char* err, size_t errlen) {
    Dataset* ds = L->ds;
    const LoaderConfig* cf = &L->cfg;
    const int Cin = L->C_seq;
    const int dims[3] = {ds->D, ds->H, ds->W};
    const int slice = cf->mode == LOADER_SLICE;
    const int ctx = slice ? cf->context : 1;
    uint8_t present[DS_MAX_CHANNELS];
    Rng rdeg = train ? rng_stream(sseed, TAG_DEGRADE) : rng_stream(VAL_DEGRADE_SEED, (uint64_t)i);
    if (prepare_case(L, s, i, &rdeg, present, err, errlen)) return 1;

    const int crop[3] = {slice ? 1 : L->D, L->H, L->W};
    int centre[3], start[3];
    if (train) {
        Rng rc = rng_stream(sseed, TAG_CROP);
        crop_pick_centre(&rc, dims, ds->has_seg ? s->seg : NULL, L->fg_label, cf->pos_fraction,
                         centre);
    } else {
        for (int a = 0; a < 3; a++) centre[a] = dims[a] / 2;
    }
    crop_start(dims, crop, centre, start);

    const int out[3] = {slice ? ctx : L->D, L->H, L->W};
    AugSpatial sp;
    memset(&sp, 0, sizeof sp);
    for (int a = 0; a < 3; a++) sp.A[a][a] = 1;
    if (cf->augment) {
        Rng r = rng_stream(sseed, TAG_SPATIAL);
        augment_draw_spatial(&cf->aug, rng_u64(&r), out, slice, &sp, s->disp);
    }
    const float* disp = sp.has_disp ? s->disp : NULL;
    const long nout = (long)out[0] * out[1] * out[2];
    float* bimg = b->img + (long)j * L->C * L->D * L->H * L->W;
    const long vol = (long)ds->D * ds->H * ds->W;
    const long plane = (long)ds->H * ds->W;
    const long oplane = (long)L->H * L->W;
    int32_t* bseg = b->seg ? b->seg + (long)j * L->D * oplane : NULL;
    float* btgt = b->target ? b->target + (long)j * L->D * oplane : NULL;

    if (!slice) {
        double cen[3];
        for (int a = 0; a < 3; a++) cen[a] = start[a] + (crop[a] - 1) / 2.0;
        aug_resample(s->img, Cin, dims, cen, sp.A, disp, out, bimg);
        if (bseg) aug_resample_labels(s->seg, dims, cen, sp.A, disp, out, s->lab);
        if (btgt) aug_resample(s->tgt, 1, dims, cen, sp.A, disp, out, btgt);
        for (int a = 0; a < 3; a++) {
            if (!sp.flip[a]) continue;
            aug_flip(bimg, Cin, out, a);
            if (bseg) aug_flip_u8(s->lab, out, a);
            if (btgt) aug_flip(btgt, 1, out, a);
        }
        if (bseg)
            for (long v = 0; v < nout; v++) bseg[v] = s->lab[v];
    } else {
        const int z = start[0];
        for (int c = 0; c < Cin; c++)
            for (int t = 0; t < ctx; t++) {
                int zz = z - (ctx - 1) / 2 + t;
                zz = zz < 0 ? 0 : (zz >= ds->D ? ds->D - 1 : zz);
                memcpy(s->sub + ((long)c * ctx + t) * plane, s->img + c * vol + zz * plane,
                       sizeof(float) * plane);
            }
        const int sdims[3] = {ctx, ds->H, ds->W};
        const int pdims[3] = {1, ds->H, ds->W};
        const int out1[3] = {1, L->H, L->W};
        double cen[3] = {(ctx - 1) / 2.0, start[1] + (crop[1] - 1) / 2.0,
                         start[2] + (crop[2] - 1) / 2.0};
        double cen1[3] = {0, cen[1], cen[2]};
        const float* disp1 = NULL;
        if (disp) {   /* the field is the same on every slice: take slice 0 of each component */
            for (int c = 0; c < 3; c++)
                memcpy(s->disp1 + c * oplane, disp + c * nout, sizeof(float) * oplane);
            disp1 = s->disp1;
        }
        aug_resample(s->sub, Cin, sdims, cen, sp.A, disp, out, bimg);
        if (bseg) {
            memcpy(s->segsl, s->seg + z * plane, plane);
            aug_resample_labels(s->segsl, pdims, cen1, sp.A, disp1, out1, s->lab);
        }
        if (btgt) {
            memcpy(s->tsub, s->tgt + z * plane, sizeof(float) * plane);
            aug_resample(s->tsub, 1, pdims, cen1, sp.A, disp1, out1, btgt);
        }
        for (int a = 1; a < 3; a++) {
            if (!sp.flip[a]) continue;
            aug_flip(bimg, Cin, out, a);
            if (bseg) aug_flip_u8(s->lab, out1, a);
            if (btgt) aug_flip(btgt, 1, out1, a);
        }
        if (bseg)
            for (long v = 0; v < oplane; v++) bseg[v] = s->lab[v];
        b->slice_idx[j] = z + (ds->g_crop_offset ? ds->g_crop_offset[(long)i * 3] : 0);
        b->slice_cnt[j] = ds->g_shape_original ? ds->g_shape_original[(long)i * 3] : ds->D;
    }
    if (cf->augment && !is_image_task(cf->task)) {
        Rng r = rng_stream(sseed, TAG_INTENSITY);
        augment_intensity(&cf->aug, rng_u64(&r), bimg, Cin, out, present);
    }
    for (int c = 0; c < Cin; c++)
        for (int t = 0; t < ctx; t++) b->present[(long)j * L->C + c * ctx + t] = present[c];
    if (b->cls) b->cls[j] = ds->cls ? ds->cls[i] : -1;
    b->case_idx[j] = i;
    return 0;
}

static void zero_row(Loader* L, Batch* b, int j) {
    long vox = (long)L->D * L->H * L->W;
    memset(b->img + (long)j * L->C * vox, 0, sizeof(float) * L->C * vox);
    memset(b->present + (long)j * L->C, 0, L->C);
    if (b->seg) memset(b->seg + (long)j * vox, 0, sizeof(int32_t) * vox);
    if (b->target) memset(b->target + (long)j * vox, 0, sizeof(float) * vox);
    if (b->cls) b->cls[j] = -1;
    b->case_idx[j] = -1;
    if (b->slice_idx) b->slice_idx[j] = b->slice_cnt[j] = 0;
}

static void epoch_order(Loader* L, Scratch* s, long epoch) {
    if (s->order_epoch == epoch) return;
    LoaderPriv* P = L->p;
    if (L->cfg.task == LOADER_CLASSIFY && L->cfg.balance && L->ds->n_classes > 0) {
        order_balanced(L->n_items, P->item_cls, L->ds->n_classes, P->total, L->cfg.seed, epoch,
                       s->order);
    } else {
        order_shuffled(P->total, L->cfg.seed, epoch, s->order);
        for (int t = 0; t < P->total; t++) s->order[t] %= L->n_items;
    }
    s->order_epoch = epoch;
}

static int produce_batch(Loader* L, Scratch* s, long epoch, long pos, Batch* b, char* err,
                         size_t errlen) {
    LoaderPriv* P = L->p;
    const LoaderConfig* cf = &L->cfg;
    b->epoch = epoch;
    b->pos = pos;
    b->n = 0;
    if (P->train) epoch_order(L, s, epoch);
    for (int j = 0; j < cf->batch; j++) {
        long q = pos * cf->batch + j;
        if (P->train) {
            /* the last batch wraps to the start of the stream: same cases, fresh draws */
            long qw = q % L->per_rank;
            long g = (qw * cf->world + cf->rank) % P->total;
            int item = s->order[g];
            if (produce_sample(L, s, L->items[item], sample_seed(cf->seed, epoch, q, cf->rank, cf->view), 1,
                               b, j, err, errlen))
                return 1;
            b->n++;
        } else {
            long g = q * cf->world + cf->rank;
            if (q >= L->per_rank || g >= L->n_items) { zero_row(L, b, j); continue; }
            if (produce_sample(L, s, L->items[g], sample_seed(cf->seed, epoch, q, cf->rank, cf->view), 0, b,
                               j, err, errlen))
                return 1;
            b->n++;
        }
    }
    return 0;
}

/* ---- workers ------------------------------------------------------------------------------ */
static void* worker_main(void* arg) {
    WorkerArg* wa = arg;
    Loader* L = wa->L;
    LoaderPriv* P = L->p;
    Scratch* s = &P->sc[wa->w];
    free(wa);
    for (;;) {
        pthread_mutex_lock(&P->mu);
        while (!P->stop && P->next_claim >= P->next_consume + P->Q)
            pthread_cond_wait(&P->cv_free, &P->mu);
        if (P->stop) { pthread_mutex_unlock(&P->mu); break; }
        long k = P->next_claim++;
        pthread_mutex_unlock(&P->mu);
        int sl = (int)(k % P->Q);
        long e = P->e0 + (P->p0 + k) / L->n_batches, pos = (P->p0 + k) % L->n_batches;
        char err[512] = "";
        int bad = produce_batch(L, s, e, pos, &P->slot[sl], err, sizeof err);
        pthread_mutex_lock(&P->mu);
        P->slot_bad[sl] = bad;
        if (bad) memcpy(P->slot_err[sl], err, sizeof err);
        P->slot_k[sl] = k;
        pthread_cond_broadcast(&P->cv_ready);
        pthread_mutex_unlock(&P->mu);
    }
    return NULL;
}

static void start_workers(Loader* L) {
    LoaderPriv* P = L->p;
    P->stop = 0;
    P->next_claim = P->next_consume = 0;
    for (int q = 0; q < P->Q; q++) P->slot_k[q] = -1;
    for (int w = 0; w < P->n_th; w++) {
        WorkerArg* wa = xmalloc(sizeof *wa);
        wa->L = L;
        wa->w = w;
        int rc = pthread_create(&P->th[w], NULL, worker_main, wa);
        CHECK(rc == 0, "pthread_create failed (%d): too many threads?", rc);
    }
}

static void stop_workers(Loader* L) {
    LoaderPriv* P = L->p;
    pthread_mutex_lock(&P->mu);
    P->stop = 1;
    pthread_cond_broadcast(&P->cv_free);
    pthread_mutex_unlock(&P->mu);
    for (int w = 0; w < P->n_th; w++) pthread_join(P->th[w], NULL);
}

/* ---- open / next / seek / close ------------------------------------------------------------ */
static int select_items(Loader* L, char* err, size_t errlen) {
    Dataset* ds = L->ds;
    const LoaderConfig* cf = &L->cfg;
    L->items = xmalloc(sizeof(int) * (ds->n ? ds->n : 1));
    L->n_items = 0;
    int dropped = 0;
    for (int i = 0; i < ds->n; i++) {
        int sp = ds->split[i];
        if (cf->fold >= 0 && (sp == SPLIT_TRAIN || sp == SPLIT_VAL) && ds->fold[i] >= 0)
            sp = ds->fold[i] == cf->fold ? SPLIT_VAL : SPLIT_TRAIN;
        if (sp != cf->split && !(cf->with_probe && cf->split == SPLIT_TRAIN && sp == SPLIT_PROBE))
            continue;
        if (cf->task == LOADER_CLASSIFY && cf->split == SPLIT_TRAIN && ds->cls[i] < 0) {
            dropped++;
            continue;
        }
        if (is_image_task(cf->task) && !L->target_name[0] &&
            !ds->channel_present[(long)i * ds->C + L->target_ch]) {
            dropped++;
            continue;
        }
        L->items[L->n_items++] = i;
    }
    if (!L->n_items)
        return vita_fail(err, errlen, "%s: no cases for split %d%s%s (fold %d)%s: check /split and "
                         "/fold or the data.fold setting", ds->path, cf->split,
                         cf->split == SPLIT_TRAIN ? " (train)" : "", cf->split == SPLIT_VAL ? " (val)" : "",
                         cf->fold, dropped ? ", after dropping cases without a label/target channel" : "");
    return 0;
}

int loader_open(Loader* L, Dataset* ds, const LoaderConfig* cfg, char* err, size_t errlen) {
    memset(L, 0, sizeof *L);
    L->cfg = *cfg;
    L->ds = ds;
    LoaderConfig* cf = &L->cfg;
    L->C_in = ds->C;
    if (cf->batch < 1) return vita_fail(err, errlen, "data.batch must be >= 1 (got %d)", cf->batch);
    if (cf->world < 1 || cf->rank < 0 || cf->rank >= cf->world)
        return vita_fail(err, errlen, "rank %d / world %d invalid", cf->rank, cf->world);
    if (cf->workers < 1) cf->workers = 1;
    if (cf->queue < 1) cf->queue = 1;
    if (cf->samples_per_case < 1) cf->samples_per_case = 1;
    if (cf->task < LOADER_CLASSIFY || cf->task > LOADER_IMAGES)
        return vita_fail(err, errlen, "unknown task kind %d", cf->task);
    if (cf->mode != LOADER_VOLUME && cf->mode != LOADER_SLICE)
        return vita_fail(err, errlen, "data.input.mode must be volume or slice");
    if (cf->mode == LOADER_SLICE && (cf->context < 1 || cf->context > ds->D))
        return vita_fail(err, errlen, "data.input.context must be in 1..%d (got %d)", ds->D, cf->context);
    if (cf->pos_fraction < 0 || cf->pos_fraction > 1)
        return vita_fail(err, errlen, "data.sampling.pos_fraction must be in [0, 1] (got %g)",
                         cf->pos_fraction);
    if (cf->task == LOADER_SEGMENT && !ds->has_seg)
        return vita_fail(err, errlen, "%s: task segment needs /seg, which the dataset lacks", ds->path);
    if (cf->task == LOADER_CLASSIFY && !ds->has_cls)
        return vita_fail(err, errlen, "%s: task classify needs /cls, which the dataset lacks", ds->path);
    const int gd[3] = {ds->D, ds->H, ds->W};
    int cr[3];
    for (int a = 0; a < 3; a++) cr[a] = cf->crop[a] > 0 ? cf->crop[a] : gd[a];
    L->D = cf->mode == LOADER_SLICE ? 1 : cr[0];
    L->H = cr[1];
    L->W = cr[2];
    /* the model's channels */
    L->chan_identity = 1;
    L->C_seq = ds->C;
    for (int c = 0; c < ds->C; c++) L->seq_src[c] = c;
    if (cf->channels[0]) {
        char buf[sizeof cf->channels];
        snprintf(buf, sizeof buf, "%s", cf->channels);
        int k = 0, found = 0;
        for (char *save = NULL, *t = strtok_r(buf, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
            if (k == DS_MAX_CHANNELS)
                return vita_fail(err, errlen, "model channels '%s': at most %d", cf->channels,
                                 DS_MAX_CHANNELS);
            L->seq_src[k] = dataset_channel(ds, t);
            found += L->seq_src[k] >= 0;
            k++;
        }
        if (!found)
            return vita_fail(err, errlen, "%s: none of the model channels '%s' is among the dataset's "
                             "channels", ds->path, cf->channels);
        L->C_seq = k;
        L->chan_identity = k == ds->C;
        for (int c = 0; c < k; c++) L->chan_identity &= L->seq_src[c] == c;
    }
    L->C = L->C_seq * (cf->mode == LOADER_SLICE ? cf->context : 1);

    /* foreground label */
    L->fg_label = cf->fg_label;
    if (L->fg_label < 0)
        for (int k = 0; k < ds->n_labels; k++)
            if (!strcmp(ds->label_names[k], "lesion")) L->fg_label = k;

    /* image tasks: channels */
    L->target_ch = -1;
    memset(L->chan_mask, 0, sizeof L->chan_mask);
    if (!is_image_task(cf->task)) {
        for (int c = 0; c < ds->C; c++) L->chan_mask[c] = 1;
    } else {
        const DegradeConfig* dg = &cf->deg;
        char bad[64];
        const char* list = cf->task == LOADER_SUPERRES ? dg->superres_channel
                         : cf->task == LOADER_UNDISTORT ? dg->undistort_channels : dg->synth_inputs;
        int first = channel_list(ds, list, L->chan_mask, bad, sizeof bad);
        if (first < 0 || (cf->task != LOADER_SYNTHESIZE && bad[0]))
            return vita_fail(err, errlen, "%s: task %s: input channel '%s' is not among the dataset's "
                             "channels", ds->path, task_name(cf->task), bad[0] ? bad : list);
        L->target_ch = cf->task == LOADER_SYNTHESIZE ? dataset_channel(ds, dg->synth_target) : first;
        if (L->target_ch < 0)
            return vita_fail(err, errlen, "%s: task synthesize: target channel '%s' is not among the "
                             "dataset's channels", ds->path, dg->synth_target);
        if (cf->task == LOADER_SYNTHESIZE && L->chan_mask[L->target_ch])
            return vita_fail(err, errlen, "task synthesize: the target channel '%s' is also an input",
                             dg->synth_target);
        if (cf->task == LOADER_SUPERRES && (dg->superres_factor < 1 || dg->superres_axis < 0 ||
                                            dg->superres_axis > 2))
            return vita_fail(err, errlen, "task superres: factor must be >= 1 and axis in 0..2");
        if (cf->task == LOADER_UNDISTORT && (dg->undistort_axis < 0 || dg->undistort_axis > 2))
            return vita_fail(err, errlen, "task undistort: axis must be in 0..2");
        for (int k = 0; k < ds->n_targets; k++)
            if (!strcmp(ds->targets[k], task_name(cf->task)))
                snprintf(L->target_name, sizeof L->target_name, "%s", ds->targets[k]);
    }

    L->p = xcalloc(1, sizeof(LoaderPriv));
    LoaderPriv* P = L->p;
    if (L->target_name[0]) {
        if (dataset_read_target(ds, 0, L->target_name, NULL, P->tdims, err, errlen)) {
            free(P); L->p = NULL;
            return 1;
        }
        if (P->tdims[1] != ds->D || P->tdims[2] != ds->H || P->tdims[3] != ds->W) {
            vita_fail(err, errlen, "%s: /targets/%s grid %dx%dx%d differs from the image grid "
                      "%dx%dx%d; vita needs targets on the image grid", ds->path, L->target_name,
                      P->tdims[1], P->tdims[2], P->tdims[3], ds->D, ds->H, ds->W);
            free(P); L->p = NULL;
            return 1;
        }
    }
    if (select_items(L, err, errlen)) {
        free(L->items); free(P); L->items = NULL; L->p = NULL;
        return 1;
    }
    P->train = cf->split == SPLIT_TRAIN;
    P->total = P->train ? L->n_items * cf->samples_per_case : L->n_items;
    L->per_rank = (P->total + cf->world - 1) / cf->world;
    L->n_batches = (L->per_rank + cf->batch - 1) / cf->batch;
    P->item_cls = xmalloc(sizeof(int32_t) * L->n_items);
    for (int t = 0; t < L->n_items; t++) P->item_cls[t] = ds->cls ? ds->cls[L->items[t]] : -1;

    pthread_mutex_init(&P->mu, NULL);
    pthread_cond_init(&P->cv_free, NULL);
    pthread_cond_init(&P->cv_ready, NULL);
    P->Q = cf->queue;
    P->slot = xcalloc(P->Q, sizeof(Batch));
    P->slot_k = xcalloc(P->Q, sizeof(long));
    P->slot_bad = xcalloc(P->Q, sizeof(int));
    P->slot_err = xcalloc(P->Q, sizeof *P->slot_err);
    for (int q = 0; q < P->Q; q++) batch_alloc(L, &P->slot[q]);
    P->n_th = cf->workers;
    P->th = xcalloc(P->n_th, sizeof(pthread_t));
    P->sc = xcalloc(P->n_th, sizeof(Scratch));
    for (int w = 0; w < P->n_th; w++) scratch_alloc(L, &P->sc[w]);
    P->e0 = P->p0 = 0;
    start_workers(L);
    return 0;
}

int loader_next(Loader* L, Batch* out, char* err, size_t errlen) {
    LoaderPriv* P = L->p;
    const Batch* ref = &P->slot[0];   /* shape and fields only: never written after open */
    if (out->img && (out->B != ref->B || out->C != ref->C || out->D != ref->D ||
                     out->H != ref->H || out->W != ref->W || !out->seg != !ref->seg ||
                     !out->cls != !ref->cls || !out->target != !ref->target ||
                     !out->slice_idx != !ref->slice_idx))
        batch_free(out);   /* a Batch from another loader */
    if (!out->img) batch_alloc(L, out);
    pthread_mutex_lock(&P->mu);
    long k = P->next_consume;
    int sl = (int)(k % P->Q);
    while (P->slot_k[sl] != k) pthread_cond_wait(&P->cv_ready, &P->mu);
    int bad = P->slot_bad[sl];
    if (bad) {
        vita_fail(err, errlen, "%s", P->slot_err[sl]);
    } else {
        Batch t = *out;
        *out = P->slot[sl];
        P->slot[sl] = t;
    }
    P->slot_k[sl] = -1;
    P->next_consume++;
    pthread_cond_broadcast(&P->cv_free);
    pthread_mutex_unlock(&P->mu);
    return bad;
}

LoaderState loader_state(const Loader* L) {
    LoaderPriv* P = L->p;
    pthread_mutex_lock(&P->mu);
    long g = P->p0 + P->next_consume;
    pthread_mutex_unlock(&P->mu);
    LoaderState s = {P->e0 + g / L->n_batches, g % L->n_batches};
    return s;
}

void loader_seek(Loader* L, LoaderState s) {
    LoaderPriv* P = L->p;
    stop_workers(L);
    long g = s.epoch * L->n_batches + s.pos;   /* normalise pos outside [0, n_batches) */
    P->e0 = g / L->n_batches;
    P->p0 = g % L->n_batches;
    start_workers(L);
}

void loader_close(Loader* L) {
    LoaderPriv* P = L->p;
    if (P) {
        stop_workers(L);
        for (int q = 0; q < P->Q; q++) batch_free(&P->slot[q]);
        for (int w = 0; w < P->n_th; w++) scratch_free(&P->sc[w]);
        free(P->slot); free(P->slot_k); free(P->slot_bad); free(P->slot_err); free(P->th);
        free(P->sc); free(P->item_cls);
        pthread_mutex_destroy(&P->mu);
        pthread_cond_destroy(&P->cv_free);
        pthread_cond_destroy(&P->cv_ready);
        free(P);
    }
    free(L->items);
    memset(L, 0, sizeof *L);
}

/* ---- whole cases --------------------------------------------------------------------------- */
int loader_case(Loader* L, int i, float* img, uint8_t* present, int32_t* seg, float* target,
                char* err, size_t errlen) {
    Dataset* ds = L->ds;
    if (i < 0 || i >= ds->n) return vita_fail(err, errlen, "case %d out of range 0..%d", i, ds->n - 1);
    Scratch s;
    memset(&s, 0, sizeof s);
    long vol = (long)ds->D * ds->H * ds->W;
    s.img = img;
    s.raw = L->chan_identity ? img : xmalloc(sizeof(float) * ds->C * vol);
    s.seg = xcalloc(vol, 1);
    s.tgt = target ? target : xmalloc(sizeof(float) * vol);
    s.tmp = xmalloc(sizeof(float) * vol);
    s.field = xmalloc(sizeof(float) * vol);
    uint8_t pr[DS_MAX_CHANNELS];
    Rng r = rng_stream(VAL_DEGRADE_SEED, (uint64_t)i);
    int rc = prepare_case(L, &s, i, &r, pr, err, errlen);
    if (!rc) {
        if (present) memcpy(present, pr, L->C_seq);
        if (seg)
            for (long v = 0; v < vol; v++) seg[v] = s.seg[v];
    }
    if (s.raw != img) free(s.raw);
    free(s.seg); free(s.tmp); free(s.field); free(s.tbuf);
    if (!target) free(s.tgt);
    return rc;
}

void loader_slice_stack(const Loader* L, const float* img, int z, float* out) {
    const Dataset* ds = L->ds;
    int ctx = L->cfg.mode == LOADER_SLICE ? L->cfg.context : 1;
    long plane = (long)ds->H * ds->W, vol = plane * ds->D;
    for (int c = 0; c < L->C_seq; c++)
        for (int t = 0; t < ctx; t++) {
            int zz = z - (ctx - 1) / 2 + t;
            zz = zz < 0 ? 0 : (zz >= ds->D ? ds->D - 1 : zz);
            memcpy(out + ((long)c * ctx + t) * plane, img + c * vol + zz * plane,
                   sizeof(float) * plane);
        }
}
