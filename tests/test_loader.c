/* tests/test_loader.c — crop sampling, epoch orders and the loader (engine/sampler.c,
 * engine/loader.c) on small datasets written with dataset_create / dataset_write_case. */
#include <math.h>
#include <string.h>
#include <unistd.h>

#include <hdf5.h>

#include "../engine/loader.h"
#include "../engine/sampler.h"
#include "testing.h"

#define N_CASES 12
#define GD 8
#define GH 20
#define GW 24
static const int G[3] = {GD, GH, GW};
static char g_dir[64], g_ramp[128], g_rand[128], g_noseg[128], g_targ[128];

/* lesion (label 3) of case i: a 2x3x3 block, absent when i % 4 == 3 */
static int lesion_box(int i, int lo[3], int hi[3]) {
    if (i % 4 == 3) return 0;
    lo[0] = 1 + i % 6; lo[1] = 3 + (i * 5) % 14; lo[2] = 2 + (i * 7) % 20;
    hi[0] = lo[0] + 2; hi[1] = lo[1] + 3; hi[2] = lo[2] + 3;
    return 1;
}

static void make_seg(int i, uint8_t* seg) {
    int lo[3] = {0, 0, 0}, hi[3] = {0, 0, 0}, les = lesion_box(i, lo, hi);
    for (int d = 0; d < GD; d++)
        for (int h = 0; h < GH; h++)
            for (int w = 0; w < GW; w++) {
                uint8_t v = 0;
                if (h >= 4 && h < 16 && w >= 4 && w < 20) v = w < 12 ? 1 : 2;
                if (les && d >= lo[0] && d < hi[0] && h >= lo[1] && h < hi[1] && w >= lo[2] &&
                    w < hi[2])
                    v = 3;
                seg[(d * GH + h) * GW + w] = v;
            }
}

/* split: 0-7 train, 8-9 val, 10-11 test; fold i % 4 (test: -1); cls i % 3 == 0 (case 5: -1);
 * case 2 lacks hbv; case 1 has native geometry with crop_offset z 3, shape_original z 20.
 * kind 0: ramp values 1 + i*1e5 + c*1e4 + linear index (crops decodable); 1: smooth random */
static void make_dataset(const char* path, int kind, int with_seg) {
    DatasetSpec sp = {N_CASES, 3, GD, GH, GW, "t2w,adc,hbv",
                      with_seg ? "background,tz,pz,lesion" : NULL, "benign,csPCa",
                      {3.0, 0.5, 0.5}, "test_loader", 0};
    char err[512];
    DatasetWriter* w = dataset_create(path, &sp, err, sizeof err);
    if (!w) { printf("dataset_create: %s\n", err); exit(1); }
    long vol = GD * GH * GW;
    float* img = t_fnew(3 * vol);
    uint8_t* seg = calloc(vol, 1);
    TRng r = {77};
    for (int i = 0; i < N_CASES; i++) {
        for (int c = 0; c < 3; c++)
            for (long v = 0; v < vol; v++) {
                int d = (int)(v / (GH * GW)), h = (int)(v / GW % GH), x = (int)(v % GW);
                img[c * vol + v] = kind == 0 ? (float)(1 + i * 100000 + c * 10000 + v)
                    : (float)(sin(0.9 * d + 0.3 * c + i) * cos(0.45 * h - 0.2 * i) +
                              0.5 * sin(0.37 * x * (c + 1)) + 0.1 * trng_normal(&r));
            }
        uint8_t pres[3] = {1, 1, 1};
        if (i == 2) { pres[2] = 0; memset(img + 2 * vol, 0, sizeof(float) * vol); }
        make_seg(i, seg);
        char id[32];
        snprintf(id, sizeof id, "case%02d", i);
        int split = i < 8 ? 0 : i < 10 ? 1 : 2;
        int fold = i < 10 ? i % 4 : -1;
        int32_t cls = i == 5 ? -1 : i % 3 == 0;
        int32_t shp[3] = {20, GH, GW}, off[3] = {3, 0, 0};
        if (dataset_write_case(w, i, id, img, with_seg ? seg : NULL, cls, split, fold, pres, NULL,
                               NULL, NULL, i == 1 ? shp : NULL, i == 1 ? off : NULL)) {
            dataset_finish(w, err, sizeof err);
            printf("dataset_write_case: %s\n", err);
            exit(1);
        }
    }
    if (dataset_finish(w, err, sizeof err)) { printf("dataset_finish: %s\n", err); exit(1); }
    free(img); free(seg);
}

static void base_cfg(LoaderConfig* c) {
    loader_defaults(c);
    c->crop[0] = 4; c->crop[1] = 12; c->crop[2] = 16;
    c->batch = 3;
    c->seed = 1234;
    augment_none(&c->aug);
}

static int open_ds(Dataset* ds, const char* path) {
    char err[512];
    if (dataset_open(ds, path, err, sizeof err)) { printf("dataset_open: %s\n", err); return 1; }
    return 0;
}

static int open_loader(Loader* L, Dataset* ds, const LoaderConfig* c) {
    char err[512];
    if (loader_open(L, ds, c, err, sizeof err)) { printf("loader_open: %s\n", err); return 1; }
    return 0;
}

static long img_n(const Batch* b) { return (long)b->B * b->C * b->D * b->H * b->W; }

static int batch_equal(const Batch* a, const Batch* b) {
    long v = (long)a->B * a->D * a->H * a->W;
    return a->n == b->n && a->epoch == b->epoch && a->pos == b->pos &&
           !memcmp(a->img, b->img, sizeof(float) * img_n(a)) &&
           !memcmp(a->present, b->present, (size_t)a->B * a->C) &&
           !memcmp(a->case_idx, b->case_idx, sizeof(int32_t) * a->B) &&
           (!a->seg || !memcmp(a->seg, b->seg, sizeof(int32_t) * v)) &&
           (!a->target || !memcmp(a->target, b->target, sizeof(float) * v)) &&
           (!a->cls || !memcmp(a->cls, b->cls, sizeof(int32_t) * a->B)) &&
           (!a->slice_idx || !memcmp(a->slice_idx, b->slice_idx, sizeof(int32_t) * a->B));
}

/* ---- sampler ------------------------------------------------------------------------------ */
static void test_crop_start(void) {
    TRng r = {3};
    int ok = 1, pad = 1;
    for (int t = 0; t < 20000; t++) {
        int dims[3], crop[3], c[3], s[3];
        for (int a = 0; a < 3; a++) {
            dims[a] = trng_int(&r, 1, 40);
            crop[a] = trng_int(&r, 1, 40);
            c[a] = trng_int(&r, 0, dims[a] - 1);
        }
        crop_start(dims, crop, c, s);
        for (int a = 0; a < 3; a++) {
            if (dims[a] >= crop[a]) ok &= s[a] >= 0 && s[a] + crop[a] <= dims[a] && s[a] <= c[a] &&
                                          c[a] < s[a] + crop[a];
            else pad &= s[a] == -((crop[a] - dims[a]) / 2) && s[a] <= 0 && s[a] + crop[a] >= dims[a];
        }
    }
    t_true("crop_start: 20000 random crops inside the volume and containing their centre", ok);
    t_true("crop_start: volume smaller than the crop -> centred, symmetric padding", pad);
}

/* crop (start from centre) contains any voxel of the box [lo, hi) */
static int crop_hits(const int s[3], const int crop[3], const int lo[3], const int hi[3]) {
    for (int a = 0; a < 3; a++)
        if (s[a] + crop[a] <= lo[a] || s[a] >= hi[a]) return 0;
    return 1;
}

static void test_pos_fraction_sampler(void) {
    uint8_t seg[GD * GH * GW];
    make_seg(0, seg);
    int lo[3], hi[3];
    lesion_box(0, lo, hi);
    int crop[3] = {4, 6, 6};
    /* exact probability that a background-centred crop contains the lesion */
    long nbg = 0, nhit = 0;
    for (int d = 0; d < GD; d++)
        for (int h = 0; h < GH; h++)
            for (int w = 0; w < GW; w++) {
                if (seg[(d * GH + h) * GW + w] == 3) continue;
                int c[3] = {d, h, w}, s[3];
                crop_start(G, crop, c, s);
                nbg++;
                nhit += crop_hits(s, crop, lo, hi);
            }
    double q = (double)nhit / nbg;
    const double p = 0.33;
    const int N = 1000;
    Rng r = rng_stream(5, 6);
    int nfg = 0, ncont = 0, centre_ok = 1;
    for (int t = 0; t < N; t++) {
        int c[3], s[3];
        int fg = crop_pick_centre(&r, G, seg, 3, p, c);
        centre_ok &= (seg[(c[0] * GH + c[1]) * GW + c[2]] == 3) == fg;
        crop_start(G, crop, c, s);
        nfg += fg;
        ncont += crop_hits(s, crop, lo, hi);
    }
    double sd = sqrt(p * (1 - p) / N);
    t_true("crop_pick_centre: the returned flag matches the centre's label", centre_ok);
    t_check("pos_fraction 0.33: |fraction fg-centred - 0.33| / (3 SD)", fabs((double)nfg / N - p) / (3 * sd), 1);
    double e = p + (1 - p) * q, sde = sqrt(e * (1 - e) / N);
    printf("     (expected fraction of crops containing the lesion %.4f, got %.4f)\n", e, (double)ncont / N);
    t_check("pos_fraction 0.33: |fraction containing fg - expected| / (3 SD)",
            fabs((double)ncont / N - e) / (3 * sde), 1);
    int all = 1, none = 1;
    for (int t = 0; t < 200; t++) {
        int c[3];
        all &= crop_pick_centre(&r, G, seg, 3, 1.0, c) == 1;
        none &= crop_pick_centre(&r, G, seg, 3, 0.0, c) == 0;
    }
    uint8_t empty[GD * GH * GW] = {0};
    int c[3];
    int nofg = crop_pick_centre(&r, G, empty, 3, 1.0, c) == 0;
    t_true("pos_fraction 1 always / 0 never foreground; no foreground -> background", all && none && nofg);
}

static void test_orders(void) {
    int perm[50], perm2[50], seen[50] = {0};
    order_shuffled(50, 9, 3, perm);
    order_shuffled(50, 9, 3, perm2);
    int ok = !memcmp(perm, perm2, sizeof perm);
    for (int i = 0; i < 50; i++) seen[perm[i]]++;
    for (int i = 0; i < 50; i++) ok &= seen[i] == 1;
    order_shuffled(50, 9, 4, perm2);
    t_true("order_shuffled: a permutation, same for the same (seed, epoch), other per epoch",
           ok && memcmp(perm, perm2, sizeof perm));
    /* 20 / 5 / 2 cases of classes 0 / 1 / 2, plus 3 unknown */
    int32_t cls[30];
    for (int i = 0; i < 30; i++) cls[i] = i < 20 ? 0 : i < 25 ? 1 : i < 27 ? 2 : -1;
    int out[30], out2[30];
    int K = order_balanced(30, cls, 3, 30, 11, 0, out);
    int cnt[3] = {0}, valid = 1, used[30] = {0};
    for (int t = 0; t < 30; t++) {
        valid &= out[t] >= 0 && out[t] < 27;
        if (valid) { cnt[cls[out[t]]]++; used[out[t]] = 1; }
    }
    int minority = 1;
    for (int i = 20; i < 27; i++) minority &= used[i];
    t_true("order_balanced: 3 classes, counts 10/10/10, unknown never drawn",
           K == 3 && valid && cnt[0] == 10 && cnt[1] == 10 && cnt[2] == 10);
    t_true("order_balanced: every minority case drawn", minority);
    int K2 = order_balanced(30, cls, 3, 31, 11, 0, out2) + 0;
    (void)K2;
    int out3[31];
    order_balanced(30, cls, 3, 31, 11, 0, out3);
    int c3[3] = {0};
    for (int t = 0; t < 31; t++) c3[cls[out3[t]]]++;
    order_balanced(30, cls, 3, 30, 11, 0, out2);
    int same = !memcmp(out, out2, sizeof out);
    order_balanced(30, cls, 3, 30, 11, 1, out2);
    t_true("order_balanced: len 31 -> counts differ by at most 1; seeded; new order per epoch",
           abs(c3[0] - c3[1]) <= 1 && abs(c3[1] - c3[2]) <= 1 && abs(c3[0] - c3[2]) <= 1 && same &&
           memcmp(out, out2, sizeof out));
}

/* ---- loader ------------------------------------------------------------------------------- */
static void test_determinism_resume(void) {
    Dataset ds;
    if (open_ds(&ds, g_ramp)) { t_true("open dataset", 0); return; }
    LoaderConfig c;
    base_cfg(&c);
    augment_defaults(&c.aug);
    c.aug.p_rotate = c.aug.p_scale = c.aug.p_elastic = c.aug.p_noise = c.aug.p_gamma = 0.5f;
    c.aug.p_flip[0] = c.aug.p_flip[1] = 0.5f;
    c.samples_per_case = 2;
    const int NB = 14;
    Batch ref[14], b;
    memset(ref, 0, sizeof ref);
    memset(&b, 0, sizeof b);
    Loader L;
    c.workers = 1; c.queue = 2;
    if (open_loader(&L, &ds, &c)) { t_true("open loader", 0); return; }
    char err[256];
    int ok = 1;
    for (int k = 0; k < NB; k++) ok &= !loader_next(&L, &ref[k], err, sizeof err);
    t_true("loader: 14 batches (> 2 epochs) read", ok && L.n_batches == 6);
    LoaderState st = loader_state(&L);
    t_true("loader_state after 14 batches of 6 per epoch = (2, 2)", st.epoch == 2 && st.pos == 2);
    loader_close(&L);

    c.workers = 3; c.queue = 5;
    open_loader(&L, &ds, &c);
    int same = 1;
    for (int k = 0; k < NB; k++) {
        loader_next(&L, &b, err, sizeof err);
        same &= batch_equal(&ref[k], &b);
    }
    t_true("determinism: workers 1 / queue 2 vs workers 3 / queue 5 -> identical batches", same);
    /* resume: seek to (1, 3) on this loader and on a fresh one */
    LoaderState s13 = {1, 3};
    loader_seek(&L, s13);
    int res = 1;
    for (int k = 9; k < NB; k++) {
        loader_next(&L, &b, err, sizeof err);
        res &= batch_equal(&ref[k], &b);
    }
    loader_close(&L);
    c.workers = 2; c.queue = 1;
    open_loader(&L, &ds, &c);
    loader_next(&L, &b, err, sizeof err);   /* something in flight before the seek */
    loader_seek(&L, s13);
    for (int k = 9; k < NB; k++) {
        loader_next(&L, &b, err, sizeof err);
        res &= batch_equal(&ref[k], &b);
    }
    t_true("resume: seek to a saved (epoch, pos) continues with identical batches", res);
    loader_close(&L);

    /* different seed -> different batches; a different rank -> different samples */
    c.seed = 1235;
    open_loader(&L, &ds, &c);
    loader_next(&L, &b, err, sizeof err);
    t_true("another seed gives other batches", !batch_equal(&ref[0], &b));
    loader_close(&L);

    /* epoch covers every train case samples_per_case times; augmentation really happened */
    int cnt[N_CASES] = {0};
    for (int k = 0; k < 4; k++)  /* 16 samples: 4 batches of 3 = 12 + first 4 of batch 5 */
        for (int j = 0; j < 3; j++) cnt[ref[k].case_idx[j]]++;
    for (int j = 0; j < 3; j++) cnt[ref[4].case_idx[j]]++;
    cnt[ref[5].case_idx[0]]++;
    int cover = 1;
    for (int i = 0; i < N_CASES; i++) cover &= cnt[i] == (i < 8 ? 2 : 0);
    t_true("epoch 0 (spc 2) has every train case exactly twice, no val/test case", cover);
    for (int k = 0; k < NB; k++) batch_free(&ref[k]);
    batch_free(&b);
    dataset_close(&ds);
}

static void test_sharding(void) {
    Dataset ds;
    if (open_ds(&ds, g_ramp)) return;
    LoaderConfig c;
    base_cfg(&c);
    c.world = 3;
    c.batch = 1;
    int seen[3][N_CASES] = {{0}};
    int per = 0;
    char err[256];
    for (int r = 0; r < 3; r++) {
        c.rank = r;
        Loader L;
        Batch b;
        memset(&b, 0, sizeof b);
        open_loader(&L, &ds, &c);
        per = L.per_rank;
        for (int k = 0; k < L.n_batches; k++) {
            loader_next(&L, &b, err, sizeof err);
            seen[r][b.case_idx[0]]++;
        }
        loader_close(&L);
        batch_free(&b);
    }
    int tot[N_CASES] = {0}, ok = per == 3;
    for (int r = 0; r < 3; r++)
        for (int i = 0; i < N_CASES; i++) tot[i] += seen[r][i];
    int sum = 0;
    for (int i = 0; i < 8; i++) { ok &= tot[i] >= 1; sum += tot[i]; }
    t_true("sharding: 8 cases over 3 ranks -> 3 each, all cases covered, 1 wrapped", ok && sum == 9);
    dataset_close(&ds);
}

/* decodes the crop start from ramp values; checks every voxel of every channel and the labels */
static int check_ramp_crop(const Batch* b, int j, int slice_ctx, int* start_out) {
    int i = b->case_idx[j];
    long vox = (long)b->D * b->H * b->W;
    const float* x = b->img + (long)j * b->C * vox;
    /* find a non-padding voxel of channel 0 (slice mode: of its centre slice) */
    const float* xc = x + (slice_ctx ? (slice_ctx - 1) / 2 * vox : 0);
    long first = -1;
    for (long v = 0; v < vox && first < 0; v++)
        if (xc[v] != 0) first = v;
    if (first < 0) return 0;
    long lin = lround(xc[first] - 1 - i * 100000.0);
    int d0 = (int)(lin / (GH * GW)), h0 = (int)(lin / GW % GH), w0 = (int)(lin % GW);
    int fd = (int)(first / (b->H * b->W)), fh = (int)(first / b->W % b->H), fw = (int)(first % b->W);
    int s[3] = {d0 - fd, h0 - fh, w0 - fw};
    if (start_out) memcpy(start_out, s, sizeof s);
    uint8_t seg[GD * GH * GW];
    make_seg(i, seg);
    int C = slice_ctx ? b->C / slice_ctx : b->C;
    int ctx = slice_ctx ? slice_ctx : 1;
    for (int c = 0; c < C; c++)
        for (int t = 0; t < ctx; t++)
            for (int d = 0; d < b->D; d++)
                for (int h = 0; h < b->H; h++)
                    for (int w = 0; w < b->W; w++) {
                        int z = slice_ctx ? s[0] - (ctx - 1) / 2 + t : s[0] + d;
                        if (slice_ctx) z = z < 0 ? 0 : z >= GD ? GD - 1 : z;
                        int y = s[1] + h, xx = s[2] + w;
                        int in = z >= 0 && z < GD && y >= 0 && y < GH && xx >= 0 && xx < GW;
                        long sv = ((long)z * GH + y) * GW + xx;
                        float want = in ? (i == 2 && c == 2 ? 0.0f : (float)(1 + i * 100000 + c * 10000 + sv)) : 0.0f;
                        long o = ((long)(c * ctx + t) * b->D + d) * b->H * b->W + (long)h * b->W + w;
                        if (x[o] != want) return 0;
                        if (b->seg && c == 0 && t == 0) {
                            int zs = slice_ctx ? s[0] : z;
                            long ss = ((long)zs * GH + y) * GW + xx;
                            int wl = in ? seg[ss] : 0;
                            if (b->seg[(long)j * vox + ((long)d * b->H + h) * b->W + w] != wl) return 0;
                        }
                    }
    return 1;
}

static void test_crops_and_padding(void) {
    Dataset ds;
    if (open_ds(&ds, g_ramp)) return;
    LoaderConfig c;
    base_cfg(&c);
    c.samples_per_case = 10;
    Loader L;
    Batch b;
    memset(&b, 0, sizeof b);
    char err[256];
    open_loader(&L, &ds, &c);
    int ok = 1, inb = 1, pres = 1, n = 0;
    for (int k = 0; k < L.n_batches; k++) {
        loader_next(&L, &b, err, sizeof err);
        for (int j = 0; j < b.n; j++, n++) {
            int s[3];
            ok &= check_ramp_crop(&b, j, 0, s);
            inb &= s[0] >= 0 && s[0] + 4 <= GD && s[1] >= 0 && s[1] + 12 <= GH && s[2] >= 0 &&
                   s[2] + 16 <= GW;
            int i = b.case_idx[j];
            pres &= b.present[j * 3 + 0] == 1 && b.present[j * 3 + 1] == 1 &&
                    b.present[j * 3 + 2] == (i != 2);
        }
    }
    t_true("volume crops: shape [3,3,4,12,16], content and labels equal the dataset crop",
           b.B == 3 && b.C == 3 && b.D == 4 && b.H == 12 && b.W == 16 && ok && n == 81);
    t_true("volume crops: all 81 crops inside the volume", inb);
    t_true("missing channel (case 2 hbv): zeros in the image, present 0", pres);
    loader_close(&L);
    batch_free(&b);
    /* crop larger than the grid: padded, centred */
    c.crop[0] = 10; c.crop[1] = 24; c.crop[2] = 29;
    open_loader(&L, &ds, &c);
    int padok = 1;
    for (int k = 0; k < 3; k++) {
        loader_next(&L, &b, err, sizeof err);
        for (int j = 0; j < b.n; j++) {
            int s[3];
            padok &= check_ramp_crop(&b, j, 0, s);
            padok &= s[0] == -1 && s[1] == -2 && s[2] == -2;
        }
    }
    t_true("crop larger than the volume: zero padding, centred (start -1, -2, -2)", padok);
    loader_close(&L);
    batch_free(&b);
    dataset_close(&ds);
}

/* model channels: "hbv,t2w,dwi" = dataset channels 2, 0 and a missing one; slice mode "adc" */
static void test_channel_selection(void) {
    Dataset ds;
    if (open_ds(&ds, g_ramp)) return;
    LoaderConfig c;
    base_cfg(&c);
    c.samples_per_case = 2;
    Loader L, M;
    Batch a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    char err[256];
    const int src[2][3] = {{2, 0, -1}, {1, -1, -1}};
    for (int mode = 0; mode < 2; mode++) {
        if (mode) { c.mode = LOADER_SLICE; c.context = 3; }
        open_loader(&L, &ds, &c);
        snprintf(c.channels, sizeof c.channels, mode ? "adc" : "hbv,t2w,dwi");
        open_loader(&M, &ds, &c);
        int nseq = mode ? 1 : 3, ctx = mode ? 3 : 1;
        int ok = M.C_seq == nseq && M.C == nseq * ctx && !M.chan_identity;
        for (int k = 0; k < L.n_batches; k++) {
            loader_next(&L, &a, err, sizeof err);
            loader_next(&M, &b, err, sizeof err);
            long vox = (long)a.D * a.H * a.W;
            for (int j = 0; j < a.n; j++) {
                ok &= a.case_idx[j] == b.case_idx[j];
                for (int q = 0; q < nseq; q++)
                    for (int t = 0; t < ctx; t++) {
                        int sc = src[mode][q];
                        const float* got = b.img + ((long)j * b.C + q * ctx + t) * vox;
                        uint8_t gp = b.present[(long)j * b.C + q * ctx + t];
                        if (sc < 0) {
                            for (long v = 0; v < vox; v++) ok &= got[v] == 0;
                            ok &= gp == 0;
                        } else {
                            const float* want = a.img + ((long)j * a.C + sc * ctx + t) * vox;
                            ok &= !memcmp(got, want, sizeof(float) * vox);
                            ok &= gp == a.present[(long)j * a.C + sc * ctx + t];
                        }
                    }
            }
        }
        t_true(mode ? "channels \"adc\", slice mode context 3: [B, 3, 1, h, w] = adc slices"
                    : "channels \"hbv,t2w,dwi\": reordered, missing dwi zero with present 0", ok);
        loader_close(&L);
        loader_close(&M);
        c.channels[0] = 0;
    }
    batch_free(&a);
    batch_free(&b);
    dataset_close(&ds);
}

static void test_pos_fraction_loader(void) {
    Dataset ds;
    if (open_ds(&ds, g_ramp)) return;
    LoaderConfig c;
    base_cfg(&c);
    c.crop[0] = 4; c.crop[1] = 6; c.crop[2] = 6;
    c.pos_fraction = 0.5;
    c.batch = 8;
    c.samples_per_case = 125;   /* 1000 crops per epoch */
    c.workers = 2;
    Loader L;
    Batch b;
    memset(&b, 0, sizeof b);
    char err[256];
    open_loader(&L, &ds, &c);
    double qcase[N_CASES];
    for (int i = 0; i < N_CASES; i++) {
        int lo[3], hi[3];
        qcase[i] = 0;
        if (!lesion_box(i, lo, hi)) continue;
        long nbg = 0, nhit = 0;
        uint8_t seg[GD * GH * GW];
        make_seg(i, seg);
        for (int d = 0; d < GD; d++)
            for (int h = 0; h < GH; h++)
                for (int w = 0; w < GW; w++) {
                    if (seg[(d * GH + h) * GW + w] == 3) continue;
                    int cc[3] = {d, h, w}, s[3];
                    crop_start(G, c.crop, cc, s);
                    nbg++;
                    nhit += crop_hits(s, c.crop, lo, hi);
                }
        qcase[i] = (double)nhit / nbg;
    }
    double e = 0, var = 0;
    int hits = 0, n = 0;
    for (int k = 0; k < L.n_batches; k++) {
        loader_next(&L, &b, err, sizeof err);
        for (int j = 0; j < b.n; j++, n++) {
            int i = b.case_idx[j];
            int lo[3], hi[3];
            double pe = lesion_box(i, lo, hi) ? 0.5 + 0.5 * qcase[i] : 0;
            e += pe;
            var += pe * (1 - pe);
            int has = 0;
            for (long v = 0; v < 4 * 6 * 6; v++) has |= b.seg[(long)j * 144 + v] == 3;
            hits += has;
        }
    }
    printf("     (%d crops: %d contain lesion, expected %.1f +- %.1f)\n", n, hits, e, sqrt(var));
    t_check("loader pos_fraction 0.5: |crops with lesion - expected| / (3 SD)",
            fabs(hits - e) / (3 * sqrt(var)), 1);
    loader_close(&L);
    batch_free(&b);
    dataset_close(&ds);
}

static void test_classify_balance_folds(void) {
    Dataset ds;
    if (open_ds(&ds, g_ramp)) return;
    LoaderConfig c;
    base_cfg(&c);
    c.task = LOADER_CLASSIFY;
    c.batch = 2;
    c.crop[0] = c.crop[1] = c.crop[2] = 0;   /* whole grid */
    c.samples_per_case = 3;
    Loader L;
    Batch b;
    memset(&b, 0, sizeof b);
    char err[256];
    open_loader(&L, &ds, &c);
    /* train cases 0..7 minus case 5 (cls -1): cls 1 = {0, 3, 6}, cls 0 = {1, 2, 4, 7} */
    int cnt[2] = {0}, okcls = 1, nseen = 0;
    for (int k = 0; k < L.n_batches; k++) {
        loader_next(&L, &b, err, sizeof err);
        for (int j = 0; j < b.n; j++) {
            if (nseen++ < L.per_rank) cnt[b.cls[j]]++;   /* the last batch wraps around */
            okcls &= b.cls[j] == (b.case_idx[j] % 3 == 0) && b.case_idx[j] != 5;
        }
    }
    t_true("classify: 7 labelled train cases, whole-grid crops, cls matches /cls",
           L.n_items == 7 && b.D == GD && b.H == GH && b.W == GW && okcls);
    t_true("class-balanced sampler: 21 samples -> class counts differ by at most 1",
           cnt[0] + cnt[1] == 21 && abs(cnt[0] - cnt[1]) <= 1);
    loader_close(&L);
    /* folds: fold 1 is val (cases 1, 5, 9), other folds train */
    c.fold = 1;
    c.split = SPLIT_VAL;
    c.task = LOADER_SEGMENT;
    open_loader(&L, &ds, &c);
    int fo = L.n_items == 3 && L.items[0] == 1 && L.items[1] == 5 && L.items[2] == 9;
    t_true("fold 1: val = cases 1, 5, 9; last val batch short (n = 1, case -1 padding)",
           fo && L.n_batches == 2 && !loader_next(&L, &b, err, sizeof err) && b.n == 2 &&
           !loader_next(&L, &b, err, sizeof err) && b.n == 1 && b.case_idx[1] == -1);
    loader_close(&L);
    c.split = SPLIT_TRAIN;
    open_loader(&L, &ds, &c);
    t_true("fold 1: train = 7 cases of folds 0, 2, 3", L.n_items == 7);
    loader_close(&L);
    batch_free(&b);
    dataset_close(&ds);
}

static void test_slice_mode(void) {
    Dataset ds;
    if (open_ds(&ds, g_ramp)) return;
    LoaderConfig c;
    base_cfg(&c);
    c.mode = LOADER_SLICE;
    c.context = 3;
    c.crop[1] = 10; c.crop[2] = 12;
    c.samples_per_case = 8;
    c.pos_fraction = 0.5;
    Loader L;
    Batch b;
    memset(&b, 0, sizeof b);
    char err[256];
    open_loader(&L, &ds, &c);
    int shape = L.C == 9 && L.D == 1 && L.H == 10 && L.W == 12;
    int ok = 1, idx = 1, pres = 1, edge = 0;
    for (int k = 0; k < L.n_batches; k++) {
        loader_next(&L, &b, err, sizeof err);
        for (int j = 0; j < b.n; j++) {
            int s[3];
            ok &= check_ramp_crop(&b, j, 3, s);
            int i = b.case_idx[j];
            idx &= b.slice_idx[j] == s[0] + (i == 1 ? 3 : 0) && b.slice_cnt[j] == (i == 1 ? 20 : GD);
            for (int t = 0; t < 9; t++) pres &= b.present[j * 9 + t] == (i == 2 && t >= 6 ? 0 : 1);
            edge += s[0] == 0 || s[0] == GD - 1;
        }
    }
    t_true("slice mode: img [3, 9, 1, 10, 12], seg [3, 1, 10, 12]", shape && b.C == 9 && b.D == 1);
    t_true("slice mode: channel c*3+t = slice z-1+t of channel c (edges repeat), seg = slice z", ok);
    t_true("slice mode: slice index/count from the native geometry", idx);
    t_true("slice mode: present replicated over the context slices, hbv of case 2 absent", pres);
    printf("     (%d of 64 slices at a volume edge)\n", edge);
    loader_close(&L);
    /* whole-case slice stack helper */
    float* vol = t_fnew(3 * GD * GH * GW);
    float* st = t_fnew(9 * GH * GW);
    c.split = SPLIT_VAL;
    open_loader(&L, &ds, &c);
    loader_case(&L, 8, vol, NULL, NULL, NULL, err, sizeof err);
    loader_slice_stack(&L, vol, 0, st);
    int sk = st[0] == vol[0] && st[GH * GW] == vol[0] && st[2 * GH * GW] == vol[GH * GW] &&
             st[3 * GH * GW] == vol[GD * GH * GW];
    t_true("loader_slice_stack: slice 0 -> slices {0, 0, 1} per channel", sk);
    loader_close(&L);
    free(vol); free(st);
    batch_free(&b);
    dataset_close(&ds);
}

static void test_image_tasks(void) {
    Dataset ds;
    if (open_ds(&ds, g_rand)) return;
    long vol = GD * GH * GW;
    float* clean = t_fnew(3 * vol);
    float* img = t_fnew(3 * vol);
    float* img2 = t_fnew(3 * vol);
    float* tgt = t_fnew(vol);
    float* tgt2 = t_fnew(vol);
    uint8_t pr[3];
    char err[256];
    const char* names[3] = {"superres", "undistort", "synthesize"};
    const int task[3] = {LOADER_SUPERRES, LOADER_UNDISTORT, LOADER_SYNTHESIZE};
    const int tch[3] = {0, 2, 1};                  /* t2w, hbv, adc */
    const uint8_t keep[3][3] = {{1, 0, 0}, {0, 0, 1}, {1, 0, 1}};
    for (int t = 0; t < 3; t++) {
        LoaderConfig c;
        base_cfg(&c);
        c.task = task[t];
        c.split = SPLIT_VAL;
        Loader L, L2;
        Batch b;
        memset(&b, 0, sizeof b);
        open_loader(&L, &ds, &c);
        c.seed = 999;
        open_loader(&L2, &ds, &c);
        dataset_read_case(&ds, 8, clean, NULL, err, sizeof err);
        loader_case(&L, 8, img, pr, NULL, tgt, err, sizeof err);
        loader_case(&L2, 8, img2, NULL, NULL, tgt2, err, sizeof err);
        int fixed = !memcmp(img, img2, sizeof(float) * 3 * vol) && !memcmp(tgt, tgt2, sizeof(float) * vol);
        int tok = !memcmp(tgt, clean + tch[t] * vol, sizeof(float) * vol);
        int chan = 1;
        double dmax = 0;
        for (int ch = 0; ch < 3; ch++) {
            chan &= pr[ch] == keep[t][ch];
            for (long v = 0; v < vol; v++) {
                if (!keep[t][ch]) chan &= img[ch * vol + v] == 0;
                else if (t < 2) dmax = fmax(dmax, fabs(img[ch * vol + v] - clean[ch * vol + v]));
                else chan &= img[ch * vol + v] == clean[ch * vol + v];
            }
        }
        char what[160];
        snprintf(what, sizeof what, "%s: target = clean %s, inputs %s, others zero/absent%s", names[t],
                 ds.channels[tch[t]], t == 0 ? "t2w degraded" : t == 1 ? "hbv distorted" : "t2w+hbv",
                 t < 2 ? " (input changed)" : "");
        t_true(what, tok && chan && (t == 2 || dmax > 0.01));
        snprintf(what, sizeof what, "%s: validation degradation fixed per case (two run seeds)", names[t]);
        t_true(what, fixed);
        /* val batch = centre crop of the whole degraded case */
        loader_next(&L, &b, err, sizeof err);
        int s[3] = {GD / 2 - 2, GH / 2 - 6, GW / 2 - 8}, cr = b.case_idx[0] == 8;
        for (int ch = 0; ch < 3; ch++)
            for (int d = 0; d < 4; d++)
                for (int h = 0; h < 12; h++)
                    for (int w = 0; w < 16; w++) {
                        long sv = ((long)(s[0] + d) * GH + s[1] + h) * GW + s[2] + w;
                        long o = ((long)d * 12 + h) * 16 + w;
                        cr &= b.img[ch * 768 + o] == img[ch * vol + sv];
                        if (ch == 0) cr &= b.target[o] == tgt[sv];
                    }
        snprintf(what, sizeof what, "%s: val batch = centre crop of loader_case (input and target)", names[t]);
        t_true(what, cr);
        loader_close(&L);
        loader_close(&L2);
        /* train: spatial augmentation moves input and target together */
        base_cfg(&c);
        c.task = task[t];
        c.aug.p_flip[2] = 1;
        open_loader(&L, &ds, &c);
        loader_next(&L, &b, err, sizeof err);
        int tr = b.target != NULL && b.present[0] == keep[t][0] && b.present[2] == keep[t][2];
        loader_close(&L);
        batch_free(&b);
        snprintf(what, sizeof what, "%s: train batches carry a target and the channel mask", names[t]);
        t_true(what, tr);
    }
    /* superres factor 1 = identity through the loader */
    LoaderConfig c;
    base_cfg(&c);
    c.task = LOADER_SUPERRES;
    c.deg.superres_factor = 1;
    Loader L;
    open_loader(&L, &ds, &c);
    loader_case(&L, 3, img, NULL, NULL, tgt, err, sizeof err);
    dataset_read_case(&ds, 3, clean, NULL, err, sizeof err);
    t_true("superres factor 1 via the loader: input t2w = target = clean",
           !memcmp(img, clean, sizeof(float) * vol) && !memcmp(tgt, clean, sizeof(float) * vol));
    loader_close(&L);
    free(clean); free(img); free(img2); free(tgt); free(tgt2);
    dataset_close(&ds);
}

/* /targets/superres written next to the images: target read from the file, input undegraded */
static void add_targets(const char* path) {
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t g = H5Gcreate2(f, "/targets", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t dims[5] = {N_CASES, 1, GD, GH, GW};
    hid_t sp = H5Screate_simple(5, dims, NULL);
    hid_t d = H5Dcreate2(g, "superres", H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    long n = (long)N_CASES * GD * GH * GW;
    float* v = t_fnew(n);
    for (long k = 0; k < n; k++) v[k] = (float)(k % 1000) * 0.001f - 7;
    H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
    H5Dclose(d); H5Sclose(sp); H5Gclose(g); H5Fclose(f);
    free(v);
}

static void test_explicit_targets(void) {
    Dataset ds;
    if (open_ds(&ds, g_targ)) return;
    LoaderConfig c;
    base_cfg(&c);
    c.task = LOADER_SUPERRES;
    Loader L;
    char err[256];
    if (open_loader(&L, &ds, &c)) { t_true("explicit targets: loader opens", 0); return; }
    long vol = GD * GH * GW;
    float* img = t_fnew(3 * vol);
    float* clean = t_fnew(3 * vol);
    float* tgt = t_fnew(vol);
    loader_case(&L, 4, img, NULL, NULL, tgt, err, sizeof err);
    dataset_read_case(&ds, 4, clean, NULL, err, sizeof err);
    int ok = !strcmp(L.target_name, "superres") && !memcmp(img, clean, sizeof(float) * vol);
    for (long v = 0; v < vol; v++) {
        ok &= tgt[v] == (float)((4 * vol + v) % 1000) * 0.001f - 7;
        ok &= img[vol + v] == 0 && img[2 * vol + v] == 0;
    }
    t_true("/targets/superres: target read from the file, t2w input undegraded, others zero", ok);
    loader_close(&L);
    free(img); free(clean); free(tgt);
    dataset_close(&ds);
}

static void test_errors(void) {
    Dataset ds;
    if (open_ds(&ds, g_noseg)) return;
    LoaderConfig c;
    base_cfg(&c);
    Loader L;
    char err[512] = "";
    int e1 = loader_open(&L, &ds, &c, err, sizeof err) == 1 && strstr(err, "/seg");
    printf("     (%s)\n", err);
    c.task = LOADER_SYNTHESIZE;
    snprintf(c.deg.synth_target, sizeof c.deg.synth_target, "dwi");
    int e2 = loader_open(&L, &ds, &c, err, sizeof err) == 1 && strstr(err, "dwi");
    printf("     (%s)\n", err);
    c.task = LOADER_SEGMENT;
    t_true("loader_open errors: segment without /seg, unknown channel", e1 && e2);
    /* no seg: classify works with uniform crops */
    c.task = LOADER_CLASSIFY;
    int ok = loader_open(&L, &ds, &c, err, sizeof err) == 0;
    Batch b;
    memset(&b, 0, sizeof b);
    ok = ok && !loader_next(&L, &b, err, sizeof err) && b.seg == NULL && b.cls != NULL;
    if (ok) loader_close(&L);
    batch_free(&b);
    t_true("dataset without /seg: classify batches with uniform random crops", ok);
    dataset_close(&ds);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/vita_test_loader_XXXXXX");
    if (!mkdtemp(g_dir)) { perror("mkdtemp"); return 1; }
    snprintf(g_ramp, sizeof g_ramp, "%s/ramp.h5", g_dir);
    snprintf(g_rand, sizeof g_rand, "%s/rand.h5", g_dir);
    snprintf(g_noseg, sizeof g_noseg, "%s/noseg.h5", g_dir);
    make_dataset(g_ramp, 0, 1);
    make_dataset(g_rand, 1, 1);
    make_dataset(g_noseg, 1, 0);
    snprintf(g_targ, sizeof g_targ, "%s/targ.h5", g_dir);
    make_dataset(g_targ, 1, 1);
    add_targets(g_targ);

    test_crop_start();
    test_pos_fraction_sampler();
    test_orders();
    test_determinism_resume();
    test_sharding();
    test_crops_and_padding();
    test_channel_selection();
    test_pos_fraction_loader();
    test_classify_balance_folds();
    test_slice_mode();
    test_image_tasks();
    test_explicit_targets();
    test_errors();

    unlink(g_ramp); unlink(g_rand); unlink(g_noseg); unlink(g_targ);
    rmdir(g_dir);
    return t_summary();
}
