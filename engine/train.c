/* engine/train.c — the fine-tuning loop (train.h; SPEC.md §4, §7; DESIGN.md §6-7).
 *
 * Order of one run:
 *   run dir (refuse / overwrite / resume) -> config.yaml -> device context -> dataset, loaders
 *   -> encoder + head (weights / scratch init; or the checkpoint's) -> optimizers -> log
 *   -> epoch 0: validation (sliding window), alignment reference + measurement, best.safetensors
 *   -> epochs 1..E: steps (accum micro-batches -> clip -> AdamW), validation, alignment,
 *      best, early stopping, checkpoint -> /summary, best checkpoint on the test split -> /test.
 * A checkpoint (and the log rows it counts) is consistent at every point between two steps:
 * the log is flushed first, then the checkpoint written, so its row counts never exceed what
 * log.h5 holds. */
#include "train.h"
#include "rundir.h"
#include "safetensors.h"
#include "align.h"
#include "check.h"
#include "checkpoint.h"
#include "dataset.h"
#include "features.h"
#include "headmeta.h"
#include "loader.h"
#include "metrics.h"
#include "rng.h"
#include "runlog.h"
#include "runutil.h"
#include "sha256.h"
#include "slidewin.h"
#include "../models/vit_weights.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* ---- the trainer ---------------------------------------------------------------------------- */

#define MAX_METRICS LOG_MAX_METRICS

typedef struct {
    const Config* cfg;
    TrainOptions opt;
    char run_dir[1024], ck_dir[1100], log_path[1100], init_path[1200], best_path[1200];
    Ctx c;
    int c_open;
    Dataset ds;
    int ds_open;
    Loader Ltr, Lval;
    int ltr_open, lval_open;
    VitConfig vc;
    Vit m;
    Head h;
    int model_built;
    AdamW oe, oh;
    int opt_built;
    OptRange *re, *rh;
    int n_re, n_rh;
    int n_groups;
    int group_frozen[VIT_MAX_DEPTH + 2];
    double group_scale[VIT_MAX_DEPTH + 2];
    int linear_probe;
    int maxB;
    /* task */
    int task, K;
    long S_img;                /* voxels of one model input */
    /* metrics */
    int n_metrics;
    char metric_names[MAX_METRICS][32];
    const char* metric_ptrs[MAX_METRICS];
    int main_idx, higher;
    /* log */
    RunLog lg;
    int lg_open;
    RunLogSpec spec;
    RunAttrs attrs;            /* the root attributes' storage */
    char* yaml;
    /* align */
    Align al;
    int al_on, al_ready;
    const char* est_names[LOG_MAX_EST];
    const char* layer_ptrs[LOG_MAX_LAYERS];
    /* device buffers */
    float *img_d, *extra_d, *tgt_d, *prob_d, *dy_d, *cw_d;
    int32_t* lab_d;
    double* loss_d;
    float* extra_h;
    int32_t* lab_h;
    Batch batch;
    /* progress */
    TrainProgress p;
    double* curve;             /* [epochs + 1] */
    double* align_last;        /* [n_est * n_layers] */
    long S;                    /* optimizer steps per epoch */
    double t_proc0;            /* this process's start */
    long steps_this_proc;
    double train_time_this_proc;
    int tty;
    char init_kind[16];
    char weights_sha[65];
} Trainer;

static double wall_total(const Trainer* t) { return t->p.wall_s + (run_now_s() - t->t_proc0); }

/* ---- metrics of a task ---------------------------------------------------------------------- */

static int setup_metrics(Trainer* t) {
    const Config* cfg = t->cfg;
    t->n_metrics = 0;
    if (t->task == HEAD_CLASSIFY) {
        static const char* cl[] = {"auroc", "ap", "accuracy", "balanced_accuracy"};
        for (int i = 0; i < 4; i++) snprintf(t->metric_names[t->n_metrics++], 32, "%s", cl[i]);
    } else {
        /* the per-case metric names of slide_case_metrics, from a dummy call */
        int K = t->K, D = 1, H = 4, W = 4;
        float* out = xcalloc((size_t)K * D * H * W, sizeof(float));
        int32_t* seg = xcalloc((size_t)D * H * W, sizeof(int32_t));
        float* tg = xcalloc((size_t)D * H * W, sizeof(float));
        double vals[MAX_METRICS];
        const char* names[MAX_METRICS];
        double sp[3] = {1, 1, 1};
        int n = slide_case_metrics(t->task, K, out, seg, tg, D, H, W, sp, vals, names, MAX_METRICS);
        if (n > MAX_METRICS) n = MAX_METRICS;
        for (int i = 0; i < n; i++) snprintf(t->metric_names[t->n_metrics++], 32, "%s", names[i]);
        free(out); free(seg); free(tg);
    }
    for (int i = 0; i < t->n_metrics; i++) t->metric_ptrs[i] = t->metric_names[i];
    /* the main metric: exact name, "dice" = the mean Dice, else a prefix */
    t->main_idx = -1;
    const char* want = cfg->metric[0] ? cfg->metric
                     : t->task == HEAD_CLASSIFY ? "auroc" : t->task == HEAD_SEGMENT ? "dice" : "psnr";
    for (int i = 0; i < t->n_metrics && t->main_idx < 0; i++)
        if (!strcmp(t->metric_names[i], want)) t->main_idx = i;
    if (t->main_idx < 0 && !strcmp(want, "dice"))
        for (int i = 0; i < t->n_metrics && t->main_idx < 0; i++)
            if (!strcmp(t->metric_names[i], "dice_mean")) t->main_idx = i;
    for (int i = 0; i < t->n_metrics && t->main_idx < 0; i++)
        if (!strncmp(t->metric_names[i], want, strlen(want))) t->main_idx = i;
    if (t->main_idx < 0) {
        char list[512];
        size_t k = 0;
        list[0] = 0;
        for (int i = 0; i < t->n_metrics && k < sizeof list; i++)
            k += snprintf(list + k, sizeof list - k, "%s%s", i ? ", " : "", t->metric_names[i]);
        return run_err("task.metric '%s' is not a metric of task %s; use one of: %s", want,
                    head_task_name(t->task), list);
    }
    t->higher = train_metric_higher_is_better(t->metric_names[t->main_idx]);
    return 0;
}

/* Validation / test on whole volumes: every case of L by sliding window. loss = the task loss
 * of the blended output (classify: CE of the averaged probabilities; segment: w_ce CE + w_dice
 * soft-Dice loss of the probability map, unweighted; image tasks: L1 / MSE), mean over cases;
 * metrics in metric_names order (classify: over cases; others: nanmean of the per-case values).
 * Returns 0, or 1 with err. */
static int evaluate(Trainer* t, Loader* L, double* loss_out, double* metrics, int* n_cases,
                    int interruptible, char* err, size_t errlen) {
    const Config* cfg = t->cfg;
    Dataset* ds = &t->ds;
    long vol = (long)ds->D * ds->H * ds->W;
    int K = t->task == HEAD_CLASSIFY || t->task == HEAD_SEGMENT ? t->K : 1;
    long outn = t->task == HEAD_CLASSIFY ? K : (long)K * vol;
    float* out = xmalloc(sizeof(float) * outn);
    int32_t* seg = t->task == HEAD_SEGMENT ? xmalloc(sizeof(int32_t) * vol) : NULL;
    float* tgt = t->task >= HEAD_SUPERRES ? xmalloc(sizeof(float) * vol) : NULL;
    int n = L->n_items;
    double* score = xcalloc(n ? n : 1, sizeof(double));
    int32_t* lab = xcalloc(n ? n : 1, sizeof(int32_t));
    int32_t* pred = xcalloc(n ? n : 1, sizeof(int32_t));
    double* per = xcalloc((size_t)(n ? n : 1) * MAX_METRICS, sizeof(double));
    SlideConfig sc = {cfg->sw_overlap, strcmp(cfg->sw_weighting, "constant") != 0, t->maxB};
    double loss_sum = 0;
    int nl = 0, nc = 0, rc = 0;
    int m_tr = t->m.training, h_tr = t->h.training;
    t->m.training = 0;
    t->h.training = 0;
    for (int i = 0; i < n; i++) {
        if (interruptible && run_stop_signal()) { rc = 2; break; }   /* preempted: redo on resume */
        int ci = L->items[i];
        int32_t cls = -1;
        if (slide_case(&t->m, &t->h, L, ci, &sc, out, seg, &cls, tgt, err, errlen)) { rc = 1; break; }
        if (t->task == HEAD_CLASSIFY) {
            if (cls < 0) continue;
            double v[MAX_METRICS];
            slide_case_metrics(t->task, K, out, &cls, NULL, 1, 1, 1, ds->spacing_zyx, v, NULL, MAX_METRICS);
            score[nc] = v[0];
            pred[nc] = (int32_t)v[1];
            lab[nc] = cls;
            double p = cls < K ? out[cls] : 0;
            loss_sum += -log(p > 1e-12 ? p : 1e-12);
            nl++;
            nc++;
            continue;
        }
        slide_case_metrics(t->task, K, out, seg, tgt, ds->D, ds->H, ds->W, dataset_case_spacing(ds, ci),
                           per + (size_t)nc * MAX_METRICS, NULL, MAX_METRICS);
        double l = 0;
        if (t->task == HEAD_SEGMENT) {
            double ce = 0;
            for (long v = 0; v < vol; v++) {
                int y = seg[v] >= 0 && seg[v] < K ? seg[v] : 0;
                double p = out[(long)y * vol + v];
                ce += -log(p > 1e-12 ? p : 1e-12);
            }
            ce /= vol;
            int k0 = cfg->dice_include_background ? 0 : 1;
            double dl = 0;
            int nk = 0;
            for (int k = k0; k < K; k++) {
                double pg = 0, ps = 0, gs = 0;
                for (long v = 0; v < vol; v++) {
                    double p = out[(long)k * vol + v], g = seg[v] == k;
                    pg += p * g; ps += p; gs += g;
                }
                dl += 1.0 - (2 * pg + 1e-5) / (ps + gs + 1e-5);
                nk++;
            }
            l = cfg->w_ce * ce + cfg->w_dice * (nk ? dl / nk : 0);
        } else {
            int mse = !strcmp(cfg->loss_kind, "mse");
            for (long v = 0; v < vol; v++) {
                double d = (double)out[v] - tgt[v];
                l += mse ? d * d : fabs(d);
            }
            l /= vol;
        }
        loss_sum += l;
        nl++;
        nc++;
    }
    t->m.training = m_tr;
    t->h.training = h_tr;
    if (!rc) {
        if (t->task == HEAD_CLASSIFY) {
            metrics[0] = metric_auroc(score, lab, nc);
            metrics[1] = metric_average_precision(score, lab, nc);
            metrics[2] = nc ? metric_accuracy(pred, lab, nc) : NAN;
            metrics[3] = nc ? metric_balanced_accuracy(pred, lab, nc, K) : NAN;
        } else {
            double* col = xmalloc(sizeof(double) * (nc ? nc : 1));
            for (int j = 0; j < t->n_metrics; j++) {
                for (int i = 0; i < nc; i++) col[i] = per[(size_t)i * MAX_METRICS + j];
                metrics[j] = metric_nanmean(col, nc);
            }
            free(col);
        }
        *loss_out = nl ? loss_sum / nl : NAN;
        *n_cases = nc;
    }
    free(out); free(seg); free(tgt); free(score); free(lab); free(pred); free(per);
    return rc;
}

/* ---- building blocks ------------------------------------------------------------------------ */

static void join_channels(const VitConfig* vc, char* out, size_t n) {
    size_t k = 0;
    out[0] = 0;
    for (int c = 0; c < vc->in_chans && k < n; c++)
        k += snprintf(out + k, n - k, "%s%s", c ? "," : "", vc->channels[c]);
}

static void loader_cfg(const Trainer* t, LoaderConfig* lc, int split, int augment, int workers) {
    const Config* cfg = t->cfg;
    run_loader_base(cfg, &t->vc, lc, split, augment);
    lc->task = cfg->task;
    if (cfg->channels[0]) snprintf(lc->channels, sizeof lc->channels, "%s", cfg->channels);
    else if (cfg->input_mode == LOADER_SLICE) lc->channels[0] = 0;
    else join_channels(&t->vc, lc->channels, sizeof lc->channels);
    lc->workers = workers > 0 ? workers : 1;
    lc->queue = 2;
    if (!augment) augment_none(&lc->aug);
}

/* the extra-token values of a batch [E, B] (slide_case's slot rule) */
static void batch_extra(const Trainer* t, const Batch* b, float* out) {
    const VitConfig* vc = &t->vc;
    int E = vc->num_extra, B = b->B;
    int idx_slot, cnt_slot;
    slide_extra_slots(vc, &idx_slot, &cnt_slot);
    memset(out, 0, sizeof(float) * E * B);
    for (int i = 0; i < B; i++) {
        if (idx_slot >= 0 && b->slice_idx) out[idx_slot * B + i] = (float)b->slice_idx[i];
        if (cnt_slot >= 0 && b->slice_cnt) out[cnt_slot * B + i] = (float)b->slice_cnt[i];
    }
}

static int build_model(Trainer* t) {
    const Config* cfg = t->cfg;
    char err[512];
    t->vc = cfg->vit;
    if (cfg->drop_path >= 0) t->vc.drop_path = (float)cfg->drop_path;
    if (vit_config_check(&t->vc, err, sizeof err)) return run_err("model: %s", err);
    HeadConfig hc = cfg->head;
    hc.task = cfg->task;
    if (head_config_check(&hc, &t->vc, err, sizeof err)) return run_err("task.head: %s", err);
    vit_create(&t->m, &t->c, &t->vc);
    head_create(&t->h, &t->c, &hc, &t->m);
    t->model_built = 1;
    t->maxB = cfg->batch;
    vit_alloc_activations(&t->m, t->maxB);
    head_alloc_activations(&t->h, t->maxB);
    t->m.dp_seed = rng_u64(&(Rng){cfg->seed ^ 0xD209D209ull});
    t->m.dp_counter = 0;
    t->task = cfg->task;
    t->K = t->h.out_channels;
    t->S_img = (long)t->vc.img[0] * t->vc.img[1] * t->vc.img[2];
    return 0;
}

/* init from weights (encoder rows by timm name, pos_embed resampled; head from head.* when
 * the file has them, else seeded init) or from scratch (seeded timm-style init) */
static int init_weights(Trainer* t) {
    const Config* cfg = t->cfg;
    char err[512];
    vit_init_weights(&t->m, cfg->seed);
    head_init_weights(&t->h, cfg->seed);
    if (!cfg->model_weights[0]) return 0;
    VitLoadReport rep;
    if (vit_load_weights(&t->m, cfg->model_weights, !t->opt.quiet, &rep)) return VITA_EXIT_USER;
    if (rep.loaded == 0)
        return run_err("%s: no encoder tensor matches the model (0 loaded, %d missing): check "
                    "model.preset against the checkpoint", cfg->model_weights, rep.missing);
    /* a head trained for another task does not fit this one: transfer the encoder only */
    char ck_task[32] = "";
    StFile sf;
    if (!st_open(&sf, cfg->model_weights, err, sizeof err)) {
        const char* tk = st_meta(&sf, "task");
        if (tk) snprintf(ck_task, sizeof ck_task, "%s", tk);
        st_close(&sf);
    }
    if (train_file_has_head(cfg->model_weights) && ck_task[0] &&
        strcmp(ck_task, head_task_name(t->task))) {
        if (!t->opt.quiet)
            printf("head: re-initialised (%s holds a %s head; this run is %s)\n",
                   cfg->model_weights, ck_task, head_task_name(t->task));
    } else if (train_file_has_head(cfg->model_weights) && !cfg->load_head) {
        if (!t->opt.quiet)
            printf("head: re-initialised (model.load_head: false; encoder only from %s)\n",
                   cfg->model_weights);
    } else if (train_file_has_head(cfg->model_weights)) {
        if (head_load_weights(&t->h, cfg->model_weights, err, sizeof err))
            return run_err("%s (or remove the head.* tensors to re-initialise the head)", err);
        if (!t->opt.quiet) printf("head: loaded from %s\n", cfg->model_weights);
    } else if (!t->opt.quiet) {
        printf("head: re-initialised (no head.* tensors in %s)\n", cfg->model_weights);
    }
    return 0;
}

static void build_optim(Trainer* t) {
    const Config* cfg = t->cfg;
    const Vit* m = &t->m;
    int depth = t->vc.depth;
    t->re = xcalloc(m->n_params, sizeof(OptRange));
    t->n_re = vit_opt_ranges(m, (float)cfg->weight_decay, (float)cfg->layer_decay, t->re);
    t->rh = xcalloc(t->h.n_params ? t->h.n_params : 1, sizeof(OptRange));
    t->n_rh = head_opt_ranges(&t->h, (float)cfg->weight_decay, t->rh);
    t->linear_probe = cfg->mode == TRAIN_LINEAR_PROBE;
    t->n_groups = depth + 2;
    for (int g = 0; g < t->n_groups; g++) {
        t->group_scale[g] = pow(cfg->layer_decay, depth + 1 - g);
        t->group_frozen[g] = (cfg->mode == TRAIN_LINEAR_PROBE && g <= depth) ||
                             (cfg->mode == TRAIN_FREEZE_FIRST_K && g <= cfg->freeze_k);
    }
    for (int i = 0; i < t->n_re; i++) {
        int lid = m->params[i].layer_id;
        if (t->linear_probe || (lid >= 0 && lid < t->n_groups && t->group_frozen[lid])) t->re[i].frozen = 1;
    }
    adamw_create(&t->oe, &t->c, m->n_floats, t->re, t->n_re);
    adamw_create(&t->oh, &t->c, t->h.n_floats, t->rh, t->n_rh);
    t->opt_built = 1;
}

static void alloc_buffers(Trainer* t) {
    Ctx* c = &t->c;
    int B = t->maxB;
    long S = t->S_img;
    t->img_d = dev_alloc(c, sizeof(float) * B * t->vc.in_chans * S);
    if (t->vc.num_extra) {
        t->extra_d = dev_alloc(c, sizeof(float) * t->vc.num_extra * B);
        t->extra_h = xcalloc((size_t)t->vc.num_extra * B, sizeof(float));
    }
    t->loss_d = dev_alloc(c, sizeof(double) * 4);
    if (t->task == HEAD_CLASSIFY) {
        t->lab_d = dev_alloc(c, sizeof(int32_t) * B);
        t->dy_d = dev_alloc(c, sizeof(float) * B * t->K);
    } else if (t->task == HEAD_SEGMENT) {
        t->lab_d = dev_alloc(c, sizeof(int32_t) * B * S);
        t->prob_d = dev_alloc(c, sizeof(float) * B * t->K * S);
        t->dy_d = dev_alloc(c, sizeof(float) * B * t->K * S);
    } else {
        t->tgt_d = dev_alloc(c, sizeof(float) * B * S);
        t->dy_d = dev_alloc(c, sizeof(float) * B * S);
    }
    if (t->cfg->n_class_weights > 0) {
        t->cw_d = dev_alloc(c, sizeof(float) * t->cfg->n_class_weights);
        copy_h2d(c, t->cw_d, t->cfg->class_weights, sizeof(float) * t->cfg->n_class_weights);
    }
}

/* ---- weights metadata ------------------------------------------------------------------------ */

static void meta_build(const Trainer* t, RunMeta* md, long step, long epoch, double metric) {
    memset(md, 0, sizeof *md);
    const Config* cfg = t->cfg;
    run_meta_add(md, "vita_version", run_sdup(VITA_VERSION));
    run_meta_add(md, "model", vit_config_to_json(&t->vc));
    run_meta_add(md, "head", head_config_to_json(&t->h.cfg));
    run_meta_add(md, "task", run_sdup(head_task_name(t->task)));
    char ch[128];
    if (cfg->channels[0]) snprintf(ch, sizeof ch, "%s", cfg->channels);
    else ch[0] = 0;
    run_meta_add(md, "input", input_meta_to_json(ch, cfg->input_mode, cfg->input_context > 0 ? cfg->input_context : 1));
    if (step >= 0) run_meta_add(md, "step", run_sfmt("%ld", step));
    if (epoch >= 0) run_meta_add(md, "epoch", run_sfmt("%ld", epoch));
    if (metric == metric && epoch >= 0) {
        run_meta_add(md, "metric", run_sdup(t->metric_names[t->main_idx]));
        run_meta_add(md, "val_metric", run_sfmt("%.17g", metric));
    }
}

/* ---- checkpoints ---------------------------------------------------------------------------- */

static int save_checkpoint(Trainer* t) {
    char err[600];
    if (t->lg_open && run_flush_log(&t->lg, t->log_path)) return VITA_EXIT_USER;
    LoaderState ls = loader_state(&t->Ltr);
    t->p.loader_epoch = ls.epoch;
    t->p.loader_pos = ls.pos;
    t->p.dp_counter = t->m.dp_counter;
    t->p.opt_t = t->oe.t;
    t->p.log_steps = t->lg.n_steps;
    t->p.log_epochs = t->lg.n_epochs;
    t->p.log_align = t->lg.n_align;
    TrainState s;
    memset(&s, 0, sizeof s);
    s.p = t->p;
    s.p.wall_s = wall_total(t);
    s.curve = t->curve;
    s.align_last = t->align_last;
    s.n_enc = t->m.n_floats;
    s.n_head = t->h.n_floats;
    s.enc_m = xmalloc(sizeof(float) * (s.n_enc ? s.n_enc : 1));
    s.enc_v = xmalloc(sizeof(float) * (s.n_enc ? s.n_enc : 1));
    s.head_m = xmalloc(sizeof(float) * (s.n_head ? s.n_head : 1));
    s.head_v = xmalloc(sizeof(float) * (s.n_head ? s.n_head : 1));
    copy_d2h(&t->c, s.enc_m, t->oe.m, sizeof(float) * s.n_enc);
    copy_d2h(&t->c, s.enc_v, t->oe.v, sizeof(float) * s.n_enc);
    if (s.n_head) {
        copy_d2h(&t->c, s.head_m, t->oh.m, sizeof(float) * s.n_head);
        copy_d2h(&t->c, s.head_v, t->oh.v, sizeof(float) * s.n_head);
    }
    RunMeta md;
    meta_build(t, &md, (long)t->p.step, -1, NAN);
    int keep = t->cfg->keep_checkpoints > 0 ? t->cfg->keep_checkpoints : 1;
    int rc = train_state_save(t->run_dir, &s, &t->m, &t->h, md.kv, md.n, keep, err, sizeof err);
    run_meta_free(&md);
    free(s.enc_m); free(s.enc_v); free(s.head_m); free(s.head_v);
    if (rc) return run_err("checkpoint: %s", err);
    return 0;
}

/* resume: 0 restored, -1 no checkpoint (fresh start), 1 error */
static int load_checkpoint(Trainer* t) {
    char err[600], wpath[1400];
    long step = -1;
    CkptState cs;
    if (ckpt_find_latest(t->run_dir, wpath, sizeof wpath, &step, &cs, err, sizeof err)) {
        fprintf(stderr, "vita: %s; starting %s from the beginning\n", err, t->run_dir);
        return -1;
    }
    TrainState s;
    int rc = train_state_unpack(&cs, &s, t->m.n_floats, t->h.n_floats, err, sizeof err);
    ckpt_state_free(&cs);
    if (rc) return run_err("%s: %s", wpath, err);
    if (train_load_weights(wpath, &t->m, &t->h, err, sizeof err)) {
        train_state_free(&s);
        return run_err("%s", err);
    }
    t->p = s.p;
    long nc = s.p.epochs_done + 1;
    if (nc > t->cfg->epochs + 1) {
        train_state_free(&s);
        return run_err("%s: the checkpoint has %ld epochs, more than train.epochs = %d; raise train.epochs",
                    wpath, nc - 1, t->cfg->epochs);
    }
    if (nc > 0) memcpy(t->curve, s.curve, sizeof(double) * nc);
    if (s.align_last && t->align_last && s.p.n_est * s.p.n_layers == (int64_t)t->cfg->n_estimators * t->cfg->n_align_layers)
        memcpy(t->align_last, s.align_last, sizeof(double) * s.p.n_est * s.p.n_layers);
    copy_h2d(&t->c, t->oe.m, s.enc_m, sizeof(float) * t->m.n_floats);
    copy_h2d(&t->c, t->oe.v, s.enc_v, sizeof(float) * t->m.n_floats);
    if (t->h.n_floats) {
        copy_h2d(&t->c, t->oh.m, s.head_m, sizeof(float) * t->h.n_floats);
        copy_h2d(&t->c, t->oh.v, s.head_v, sizeof(float) * t->h.n_floats);
    }
    t->oe.t = t->oh.t = (int)s.p.opt_t;
    t->m.dp_counter = s.p.dp_counter;
    train_state_free(&s);
    loader_seek(&t->Ltr, (LoaderState){t->p.loader_epoch, t->p.loader_pos});
    if (!t->opt.quiet)
        printf("resumed from %s: step %ld, epoch %ld done, %ld steps into epoch %ld\n", wpath,
               (long)t->p.step, (long)t->p.epochs_done, (long)t->p.step_in_epoch,
               (long)t->p.epochs_done + 1);
    return 0;
}

/* ---- log ------------------------------------------------------------------------------------ */

static void attr(Trainer* t, const char* k, const char* v) { run_attr(&t->attrs, k, v); }

static int build_log_spec(Trainer* t, int resumed) {
    const Config* cfg = t->cfg;
    RunLogSpec* s = &t->spec;
    memset(s, 0, sizeof *s);
    t->attrs.spec = s;
    attr(t, "config", t->yaml);
    attr(t, "task", head_task_name(t->task));
    attr(t, "model", cfg->model_preset[0] ? cfg->model_preset : t->vc.preset);
    char* mj = vit_config_to_json(&t->vc);
    attr(t, "model_config", mj);
    free(mj);
    char* hj = head_config_to_json(&t->h.cfg);
    attr(t, "head_config", hj);
    free(hj);
    attr(t, "init", t->init_kind);
    attr(t, "weights", cfg->model_weights);
    attr(t, "weights_sha256", t->weights_sha);
    if (run_env_attrs(&t->attrs, cfg, &t->ds, &t->c, resumed)) return VITA_EXIT_USER;
    attr(t, "metric", t->metric_names[t->main_idx]);
    attr(t, "metric_direction", t->higher ? "higher_is_better" : "lower_is_better");
    attr(t, "train_mode", cfg->mode == TRAIN_FULL ? "full" : cfg->mode == TRAIN_LINEAR_PROBE ? "linear_probe" : "freeze_first_k");
    if (t->task == HEAD_SEGMENT)
        attr(t, "dice_include_background", cfg->dice_include_background ? "true" : "false");
    if (t->task >= HEAD_SUPERRES)
        attr(t, "psnr_data_range", "max - min of the target case (whole volume)");
    attr(t, "val_protocol", "whole volumes, sliding window (eval.sliding_window), every epoch; epoch 0 before training");
    attr(t, "lr_groups", "layer ids 0..depth+1 (stem, blocks, final norm); the head in the top group; frozen groups 0");
    s->n_groups = t->n_groups;
    s->n_metrics = t->n_metrics;
    for (int i = 0; i < t->n_metrics; i++) s->metric_names[i] = t->metric_ptrs[i];
    if (t->al_on) {
        s->n_layers = cfg->n_align_layers;
        static char lnames[LOG_MAX_LAYERS][8];
        for (int l = 0; l < cfg->n_align_layers; l++) {
            features_layer_name(cfg->align_layers[l], lnames[l]);
            s->layer_names[l] = lnames[l];
        }
        s->n_est = cfg->n_estimators;
        for (int k = 0; k < cfg->n_estimators; k++) s->est_names[k] = mmd_estimator_name(cfg->estimators[k]);
    }
    s->swmr = run_swmr_setting(cfg, t->run_dir);
    return 0;
}

/* ---- probe set + alignment ------------------------------------------------------------------- */

static int probe_cases(Trainer* t, int** cases, int* n) {
    const Config* cfg = t->cfg;
    char err[512];
    Loader L;
    LoaderConfig lc;
    loader_cfg(t, &lc, cfg->probe_split, 0, 1);
    lc.queue = 1;
    if (loader_open(&L, &t->ds, &lc, err, sizeof err))
        return run_err("align.probe.split: %s", err);
    int k = L.n_items;
    if (cfg->probe_n_images > 0 && k > cfg->probe_n_images) k = cfg->probe_n_images;
    *cases = xmalloc(sizeof(int) * (k ? k : 1));
    memcpy(*cases, L.items, sizeof(int) * k);
    *n = k;
    loader_close(&L);
    return 0;
}

/* the reference at epoch 0 from the INITIAL weights: on resume they are read back from
 * init.safetensors into the encoder for the call, then the trained weights are restored */
static int align_setup(Trainer* t, int resumed) {
    const Config* cfg = t->cfg;
    char err[600];
    int *cases = NULL, n = 0;
    int rc = probe_cases(t, &cases, &n);
    if (rc) return rc;
    FeatChannels ch;
    if (features_channels(&t->ds, &t->vc, cfg->channels[0] ? cfg->channels : NULL, &ch, err, sizeof err)) {
        free(cases);
        return run_err("align probe: %s", err);
    }
    long per = (long)t->vc.in_chans * t->S_img;
    float* img = xmalloc(sizeof(float) * per * (n ? n : 1));
    float* extra = t->vc.num_extra ? xcalloc((size_t)t->vc.num_extra * (n ? n : 1), sizeof(float)) : NULL;
    if (features_read_inputs(&t->ds, cases, n, &t->vc, &ch, img, extra, err, sizeof err)) {
        free(cases); free(img); free(extra);
        return run_err("align probe: %s", err);
    }
    float* saved = NULL;
    if (resumed) {
        saved = xmalloc(sizeof(float) * t->m.n_floats);
        copy_d2h(&t->c, saved, t->m.w, sizeof(float) * t->m.n_floats);
        if (train_load_weights(t->init_path, &t->m, NULL, err, sizeof err)) {
            free(cases); free(img); free(extra); free(saved);
            return run_err("%s (the initial weights the alignment reference needs)", err);
        }
    }
    int m_tr = t->m.training;
    t->m.training = 0;
    rc = align_init(&t->al, cfg, &t->c, &t->m, img, extra, n, err, sizeof err);
    t->m.training = m_tr;
    if (saved) {
        copy_h2d(&t->c, t->m.w, saved, sizeof(float) * t->m.n_floats);
        free(saved);
    }
    free(cases); free(img); free(extra);
    if (rc) return run_err("%s", err);
    t->al_ready = 1;
    return 0;
}

static int align_row(Trainer* t, long epoch) {
    const Config* cfg = t->cfg;
    char err[600];
    int L = cfg->n_align_layers, NE = cfg->n_estimators;
    double* est = xcalloc((size_t)L * NE, sizeof(double));
    double wd[CFG_MAX_LAYERS];
    int m_tr = t->m.training;
    t->m.training = 0;
    int rc = align_measure(&t->al, &t->m, est, wd, err, sizeof err);
    t->m.training = m_tr;
    if (rc) {
        /* e.g. non-finite features after skipped non-finite steps: a NaN row, not a stop */
        fprintf(stderr, "vita: warning: epoch %ld: alignment not measured (%s); logged as NaN\n", epoch, err);
        for (int i = 0; i < L * NE; i++) est[i] = NAN;
        for (int l = 0; l < L; l++) wd[l] = NAN;
    }
    LogAlign a = {epoch, est, wd};
    dataset_h5_lock();
    runlog_align(&t->lg, &a);
    dataset_h5_unlock();
    memcpy(t->align_last, est, sizeof(double) * L * NE);
    free(est);
    return 0;
}

/* ---- one optimizer step ---------------------------------------------------------------------- */

static double micro_step(Trainer* t, float scale, int* samples, char* err, size_t errlen, int* rc) {
    const Config* cfg = t->cfg;
    Ctx* c = &t->c;
    Batch* b = &t->batch;
    *rc = 0;
    if (loader_next(&t->Ltr, b, err, errlen)) { *rc = 1; return NAN; }
    int B = b->B;
    CHECK(B <= t->maxB && b->C == t->vc.in_chans, "batch %d x %d channels vs model %d x %d", B, b->C,
          t->maxB, t->vc.in_chans);
    long S = t->S_img;
    copy_h2d(c, t->img_d, b->img, sizeof(float) * B * b->C * S);
    if (t->vc.num_extra) {
        batch_extra(t, b, t->extra_h);
        copy_h2d(c, t->extra_d, t->extra_h, sizeof(float) * t->vc.num_extra * B);
    }
    t->m.training = !t->linear_probe;
    t->h.training = 1;
    vit_forward(&t->m, t->img_d, t->extra_d, B);
    const float* y = head_forward(&t->h, &t->m, t->img_d, B);
    double loss = 0;
    if (t->task == HEAD_CLASSIFY) {
        copy_h2d(c, t->lab_d, b->cls, sizeof(int32_t) * B);
        float gamma = !strcmp(cfg->loss_kind, "focal") ? cfg->focal_gamma : 0.0f;
        cls_loss_forward(c, t->loss_d, y, t->lab_d, t->cw_d, B, t->K, cfg->label_smoothing, gamma);
        copy_d2h(c, &loss, t->loss_d, sizeof(double));
        cls_loss_backward(c, t->dy_d, y, t->lab_d, t->cw_d, B, t->K, cfg->label_smoothing, gamma, scale);
    } else if (t->task == HEAD_SEGMENT) {
        copy_h2d(c, t->lab_d, b->seg, sizeof(int32_t) * B * S);
        softmax_channels_forward(c, t->prob_d, y, B, t->K, S);
        double o[2];
        dice_ce_forward(c, t->loss_d, t->prob_d, t->lab_d, t->cw_d, B, t->K, S, cfg->dice_include_background);
        copy_d2h(c, o, t->loss_d, sizeof o);
        loss = cfg->w_ce * o[0] + cfg->w_dice * o[1];
        dice_ce_backward(c, t->dy_d, t->prob_d, t->lab_d, t->cw_d, B, t->K, S,
                         cfg->dice_include_background, cfg->w_ce, cfg->w_dice);
        if (scale != 1.0f) scale_inplace(c, t->dy_d, scale, (long)B * t->K * S);
    } else {
        copy_h2d(c, t->tgt_d, b->target, sizeof(float) * B * S);
        int kind = !strcmp(cfg->loss_kind, "mse") ? LOSS_MSE : LOSS_L1;
        regress_loss_forward(c, t->loss_d, y, t->tgt_d, (long)B * S, kind);
        copy_d2h(c, &loss, t->loss_d, sizeof(double));
        regress_loss_backward(c, t->dy_d, y, t->tgt_d, (long)B * S, kind, scale);
    }
    head_backward(&t->h, &t->m, t->img_d, t->dy_d, t->h.d_tokens, t->h.d_blocks);
    if (!t->linear_probe)
        vit_backward(&t->m, t->img_d, t->extra_d, t->h.d_tokens, (const float* const*)t->h.d_blocks, NULL);
    *samples += B;
    return loss;
}

/* the first non-finite tensor of a device buffer described by a parameter table */
static const char* first_nonfinite(Ctx* c, const float* buf, long n, const VitParam* params, int np) {
    if (!n) return NULL;
    float* h = xmalloc(sizeof(float) * n);
    copy_d2h(c, h, buf, sizeof(float) * n);
    const char* name = NULL;
    for (int i = 0; i < np && !name; i++)
        for (long k = 0; k < params[i].numel; k++)
            if (!isfinite(h[params[i].offset + k])) { name = params[i].name; break; }
    free(h);
    return name;
}

/* 0 ok (stepped or skipped), 1 stop (error printed) */
static int train_step(Trainer* t, long epoch, double* loss_out, double* gn_out, double* lr_row,
                      int* samples) {
    const Config* cfg = t->cfg;
    Ctx* c = &t->c;
    char err[512];
    int accum = cfg->accum_steps > 0 ? cfg->accum_steps : 1;
    vit_zero_grad(&t->m);
    head_zero_grad(&t->h);
    double loss = 0;
    for (int k = 0; k < accum; k++) {
        int rc;
        double l = micro_step(t, 1.0f / accum, samples, err, sizeof err, &rc);
        if (rc) return run_err("%s", err);
        loss += l / accum;
    }
    /* frozen encoder parameters take no part in the norm (torch: requires_grad False) */
    if (cfg->mode == TRAIN_FREEZE_FIRST_K)
        for (int i = 0; i < t->n_re; i++)
            if (t->re[i].frozen && t->re[i].numel)
                dev_zero(c, t->m.g + t->re[i].offset, sizeof(float) * t->re[i].numel);
    double ge = t->linear_probe ? 0 : grad_norm(c, t->oe.acc, t->m.g, t->m.n_floats);
    double gh = t->h.n_floats ? grad_norm(c, t->oh.acc, t->h.g, t->h.n_floats) : 0;
    double gn = sqrt(ge * ge + gh * gh);
    double lr = train_lr(cfg->lr, cfg->min_lr, cfg->warmup_epochs, cfg->epochs, t->S, (long)t->p.step);
    for (int g = 0; g < t->n_groups; g++) lr_row[g] = t->group_frozen[g] && g < t->n_groups - 1 ? 0 : lr * t->group_scale[g];
    if (t->linear_probe) lr_row[t->n_groups - 1] = lr;   /* the head's */
    *loss_out = loss;
    *gn_out = gn;
    if (!isfinite(loss) || !isfinite(gn)) {
        const char* gname = first_nonfinite(c, t->m.g, t->m.n_floats, t->m.params, t->m.n_params);
        if (!gname) gname = first_nonfinite(c, t->h.g, t->h.n_floats, t->h.params, t->h.n_params);
        const char* wname = first_nonfinite(c, t->m.w, t->m.n_floats, t->m.params, t->m.n_params);
        if (!wname) wname = first_nonfinite(c, t->h.w, t->h.n_floats, t->h.params, t->h.n_params);
        char what[400];
        snprintf(what, sizeof what, "%s%s%s%s%s", gname ? "first non-finite gradient: " : "",
                 gname ? gname : "", gname && wname ? "; " : "", wname ? "first non-finite weight: " : "",
                 wname ? wname : "");
        if (!gname && !wname) snprintf(what, sizeof what, "gradients and weights finite (the loss / head output is not)");
        if (cfg->skip_nonfinite) {
            t->p.skipped++;
            if (!t->opt.quiet)
                fprintf(stderr, "%svita: step %ld (epoch %ld): non-finite %s (loss %g, grad norm %g; %s): "
                        "step skipped (train.skip_nonfinite, %ld so far)\n", t->tty ? "\n" : "",
                        (long)t->p.step, epoch, !isfinite(loss) ? "loss" : "gradient", loss, gn, what,
                        (long)t->p.skipped);
            return 0;
        }
        fprintf(stderr, "%svita: step %ld (epoch %ld): non-finite %s (loss %g, grad norm %g); %s. "
                "Lower train.lr, check the data, or set train.skip_nonfinite: true to skip such steps\n",
                t->tty ? "\n" : "", (long)t->p.step, epoch, !isfinite(loss) ? "loss" : "gradient",
                loss, gn, what);
        return 1;
    }
    if (cfg->clip_grad > 0 && gn > cfg->clip_grad) {
        float s = (float)(cfg->clip_grad / (gn + 1e-6));
        if (!t->linear_probe) scale_inplace(c, t->m.g, s, t->m.n_floats);
        if (t->h.n_floats) scale_inplace(c, t->h.g, s, t->h.n_floats);
    }
    adamw_step(&t->oe, t->m.w, t->m.g, (float)lr);
    adamw_step(&t->oh, t->h.w, t->h.g, (float)lr);
    return 0;
}

/* ---- epochs -------------------------------------------------------------------------------- */

static void progress_step(Trainer* t, long epoch, long k, double loss, double sps) {
    if (t->opt.quiet || !t->tty) return;
    long left = (long)(t->cfg->epochs - epoch) * t->S + (t->S - k);
    double per = t->steps_this_proc ? t->train_time_this_proc / t->steps_this_proc : 0;
    run_progress_step(epoch, t->cfg->epochs, k, t->S, loss, sps, per * left);
}

static void progress_epoch(Trainer* t, long epoch, double train_loss, double val_loss,
                           double metric, double sps) {
    if (t->opt.quiet) return;
    long left = (long)(t->cfg->epochs - epoch) * t->S;
    double per = t->steps_this_proc ? t->train_time_this_proc / t->steps_this_proc : 0;
    run_progress_epoch(t->tty, epoch, t->cfg->epochs, (long)t->p.step, train_loss, val_loss,
                       t->metric_names[t->main_idx], metric, sps, per * left);
}

/* validation (+ alignment, best, early stopping bookkeeping) of epoch e; 0 ok, EOE_PREEMPTED
 * when a stop signal interrupted the validation (nothing of the epoch logged yet: the
 * checkpoint then holds the trained steps and a resume validates again), else an exit code */
#define EOE_PREEMPTED (-75)
static int end_of_epoch(Trainer* t, long e, double train_loss, double sps, int* stop_early) {
    const Config* cfg = t->cfg;
    char err[600];
    double vloss = NAN, vm[MAX_METRICS];
    int nc = 0;
    for (int i = 0; i < MAX_METRICS; i++) vm[i] = NAN;
    int er = evaluate(t, &t->Lval, &vloss, vm, &nc, 1, err, sizeof err);
    if (er == 2) return EOE_PREEMPTED;
    if (er) return run_err("validation: %s", err);
    double metric = vm[t->main_idx];
    t->curve[e] = metric;
    LogEpoch le = {e, train_loss, vloss, metric, vm, wall_total(t), sps};
    dataset_h5_lock();
    runlog_epoch(&t->lg, &le);
    dataset_h5_unlock();
    if (t->al_on && (e % cfg->align_every == 0)) {
        int rc = align_row(t, e);
        if (rc) return rc;
    }
    int improved = metric == metric &&
                   (t->p.best_epoch < 0 || (t->higher ? metric > t->p.best_metric : metric < t->p.best_metric));
    if (improved) {
        t->p.best_metric = metric;
        t->p.best_epoch = e;
        t->p.since_best = 0;
        RunMeta md;
        meta_build(t, &md, (long)t->p.step, e, metric);
        int rc = train_save_weights(t->best_path, &t->m, &t->h, md.kv, md.n, err, sizeof err);
        run_meta_free(&md);
        if (rc) return run_err("best checkpoint: %s", err);
    } else if (e > 0) {
        t->p.since_best++;
    }
    t->p.epochs_done = e;
    t->p.step_in_epoch = 0;
    t->p.ep_loss_sum = 0;
    t->p.ep_loss_n = 0;
    t->p.ep_samples = 0;
    if (run_flush_log(&t->lg, t->log_path)) return VITA_EXIT_USER;
    progress_epoch(t, e, train_loss, vloss, metric, sps);
    if (cfg->early_stop_patience > 0 && t->p.since_best >= cfg->early_stop_patience) *stop_early = 1;
    return 0;
}

/* /summary and /test */
static int finish(Trainer* t) {
    const Config* cfg = t->cfg;
    char err[600];
    int n = (int)t->p.epochs_done + 1;
    int b = train_best_epoch(t->curve, n, t->higher);
    double best_epoch = b, best = b >= 0 ? t->curve[b] : NAN;
    double e90 = train_epochs_to(t->curve, n, t->higher, 0.90);
    double e95 = train_epochs_to(t->curve, n, t->higher, 0.95);
    double auc = train_auc_curve(t->curve, n, t->higher);
    double wall = wall_total(t), skipped = (double)t->p.skipped, nep = n - 1;
    int L = t->al_on ? cfg->n_align_layers : 0;
    double fm[CFG_MAX_LAYERS];
    int pe = -1;
    for (int k = 0; k < cfg->n_estimators; k++)
        if (cfg->estimators[k] == EST_MMD2_PAIRED) pe = k;
    for (int l = 0; l < L; l++) fm[l] = pe >= 0 ? t->align_last[(size_t)pe * L + l] : NAN;
    const char* keys[10] = {"best_epoch", "best_val_metric", "epochs_to_90", "epochs_to_95",
                            "auc_val_curve", "wall_time_s", "skipped_steps", "epochs_run", "final_mmd2"};
    const double* vals[10] = {&best_epoch, &best, &e90, &e95, &auc, &wall, &skipped, &nep, fm};
    int lens[10] = {1, 1, 1, 1, 1, 1, 1, 1, L};
    int nk = L > 0 ? 9 : 8;
    dataset_h5_lock();
    int rc = runlog_write_attrs(&t->lg, "summary", nk, keys, vals, lens, err, sizeof err);
    dataset_h5_unlock();
    if (rc) return run_err("%s", err);

    /* the best checkpoint on the test split */
    Loader Lt;
    LoaderConfig lc;
    loader_cfg(t, &lc, SPLIT_TEST, 0, 1);
    lc.queue = 1;
    if (loader_open(&Lt, &t->ds, &lc, err, sizeof err)) {
        if (!t->opt.quiet) fprintf(stderr, "vita: no test evaluation (%s)\n", err);
        return 0;
    }
    if (access(t->best_path, R_OK) == 0 && train_load_weights(t->best_path, &t->m, &t->h, err, sizeof err)) {
        loader_close(&Lt);
        return run_err("%s", err);
    }
    double tl = NAN, tm[MAX_METRICS];
    int nc = 0;
    for (int i = 0; i < MAX_METRICS; i++) tm[i] = NAN;
    rc = evaluate(t, &Lt, &tl, tm, &nc, 0, err, sizeof err);
    loader_close(&Lt);
    if (rc) return run_err("test: %s", err);
    const char* tk[MAX_METRICS + 4];
    const double* tv[MAX_METRICS + 4];
    int tlen[MAX_METRICS + 4];
    double ncd = nc;
    int q = 0;
    for (int i = 0; i < t->n_metrics; i++) { tk[q] = t->metric_names[i]; tv[q] = &tm[i]; tlen[q++] = 1; }
    tk[q] = "loss"; tv[q] = &tl; tlen[q++] = 1;
    tk[q] = "n_cases"; tv[q] = &ncd; tlen[q++] = 1;
    tk[q] = "best_epoch"; tv[q] = &best_epoch; tlen[q++] = 1;
    dataset_h5_lock();
    rc = runlog_write_attrs(&t->lg, "test", q, tk, tv, tlen, err, sizeof err);
    dataset_h5_unlock();
    if (rc) return run_err("%s", err);
    if (!t->opt.quiet)
        printf("test (best epoch %ld, %d cases): %s %.4f  loss %.4f\n", (long)b, nc,
               t->metric_names[t->main_idx], tm[t->main_idx], tl);
    return 0;
}

static int preempt(Trainer* t) {
    int rc = save_checkpoint(t);
    return rc ? rc : run_preempted(t->tty, (long)t->p.step, t->ck_dir);
}

static int run_epochs(Trainer* t) {
    const Config* cfg = t->cfg;
    int rc;
    int stop_early = 0;
    if (t->p.epochs_done < 0) {
        /* epoch 0: before any training */
        rc = end_of_epoch(t, 0, NAN, 0, &stop_early);
        if (rc == EOE_PREEMPTED) return preempt(t);
        if (rc) return rc;
        if (run_stop_signal()) return preempt(t);
    }
    double* lr_row = xcalloc(t->n_groups, sizeof(double));
    int announced = 0;
    for (long e = t->p.epochs_done + 1; e <= cfg->epochs && !stop_early; e++) {
        if (cfg->steps_per_epoch <= 0 && t->p.step_in_epoch == 0) {
            LoaderState ls = loader_state(&t->Ltr);
            if (ls.epoch != e - 1 || ls.pos != 0) loader_seek(&t->Ltr, (LoaderState){e - 1, 0});
        }
        if (!announced && !t->opt.quiet) {
            vit_print_memory(&t->m);
            head_print_memory(&t->h);
            fflush(stdout);
            announced = 1;
        }
        double te0 = run_now_s();
        long samples0 = t->p.ep_samples;
        for (long k = t->p.step_in_epoch; k < t->S; k++) {
            double ts = run_now_s(), loss = NAN, gn = NAN;
            int samples = 0;
            if (train_step(t, e, &loss, &gn, lr_row, &samples)) {
                /* log the failing step so the log shows it */
                LogStep ls = {(int64_t)t->p.step, e, loss, gn, lr_row, wall_total(t)};
                dataset_h5_lock();
                runlog_step(&t->lg, &ls);
                runlog_flush(&t->lg);
                dataset_h5_unlock();
                free(lr_row);
                return VITA_EXIT_USER;
            }
            LogStep ls = {(int64_t)t->p.step, e, loss, gn, lr_row, wall_total(t)};
            dataset_h5_lock();
            runlog_step(&t->lg, &ls);
            dataset_h5_unlock();
            if (t->opt.on_step) t->opt.on_step(t->opt.user, (long)t->p.step, e, loss);
            t->p.step++;
            t->p.step_in_epoch = k + 1;
            if (isfinite(loss)) { t->p.ep_loss_sum += loss; t->p.ep_loss_n++; }
            t->p.ep_samples += samples;
            double dt = run_now_s() - ts;
            t->train_time_this_proc += dt;
            t->steps_this_proc++;
            progress_step(t, e, k + 1, loss, samples / (dt > 0 ? dt : 1e-9));
            if (run_stop_signal()) { free(lr_row); return preempt(t); }
        }
        double tt = run_now_s() - te0;
        double sps = tt > 0 ? (t->p.ep_samples - samples0) / tt : 0;
        double tl = t->p.ep_loss_n ? t->p.ep_loss_sum / t->p.ep_loss_n : NAN;
        rc = end_of_epoch(t, e, tl, sps, &stop_early);
        if (rc == EOE_PREEMPTED) { free(lr_row); return preempt(t); }
        if (rc) { free(lr_row); return rc; }
        int ck_every = cfg->checkpoint_every;
        if ((ck_every > 0 && e % ck_every == 0) || e == cfg->epochs || stop_early) {
            if ((rc = save_checkpoint(t))) { free(lr_row); return rc; }
            if (run_stop_signal()) {
                fprintf(stderr, "vita: %s: checkpoint at step %ld written; exiting %d (resume with --resume)\n",
                        run_sig_name(run_stop_signal()), (long)t->p.step, VITA_EXIT_PREEMPTED);
                free(lr_row);
                return VITA_EXIT_PREEMPTED;
            }
        } else if (run_stop_signal()) {
            free(lr_row);
            return preempt(t);
        }
    }
    free(lr_row);
    if (stop_early && !t->opt.quiet)
        fprintf(stderr, "vita: early stopping after epoch %ld (no better val_%s for %d epochs)\n",
                (long)t->p.epochs_done, t->metric_names[t->main_idx], cfg->early_stop_patience);
    return 0;
}

/* ---- the run -------------------------------------------------------------------------------- */

static int check_config(const Config* cfg) {
    int rc = run_check_common(cfg);
    if (rc) return rc;
    if (cfg->mode == TRAIN_FREEZE_FIRST_K && (cfg->freeze_k < 0 || cfg->freeze_k > cfg->vit.depth))
        return run_err("train.freeze_k = %d: use 0..%d (model.depth)", cfg->freeze_k, cfg->vit.depth);
    return 0;
}

static void trainer_free(Trainer* t) {
    if (t->al_ready) align_free(&t->al);
    if (t->lg_open) runlog_close(&t->lg);
    if (t->ltr_open) loader_close(&t->Ltr);
    if (t->lval_open) loader_close(&t->Lval);
    batch_free(&t->batch);
    if (t->c_open) {
        Ctx* c = &t->c;
        void* bufs[] = {t->img_d, t->extra_d, t->tgt_d, t->prob_d, t->dy_d, t->cw_d, t->lab_d, t->loss_d};
        for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
            if (bufs[i]) dev_free(c, bufs[i]);
        if (t->opt_built) { adamw_free(&t->oe); adamw_free(&t->oh); }
        if (t->model_built) { head_free(&t->h); vit_free(&t->m); }
        ctx_close(c);
    }
    if (t->ds_open) dataset_close(&t->ds);
    free(t->re); free(t->rh); free(t->extra_h); free(t->lab_h);
    free(t->curve); free(t->align_last); free(t->yaml);
    run_attrs_free(&t->attrs);
}

static int train_run_inner(Trainer* t) {
    const Config* cfg = t->cfg;
    char err[1024];
    int rc;
    if ((rc = check_config(cfg))) return rc;

    /* run directory */
    if (!cfg->run_name[0]) return run_err("run.name is empty: name the run (the directory under run.out)");
    snprintf(t->run_dir, sizeof t->run_dir, "%s%s%s", cfg->run_out,
             cfg->run_out[0] && cfg->run_out[strlen(cfg->run_out) - 1] != '/' ? "/" : "", cfg->run_name);
    snprintf(t->ck_dir, sizeof t->ck_dir, "%s/checkpoints", t->run_dir);
    snprintf(t->log_path, sizeof t->log_path, "%s/log.h5", t->run_dir);
    snprintf(t->init_path, sizeof t->init_path, "%s/init.safetensors", t->ck_dir);
    snprintf(t->best_path, sizeof t->best_path, "%s/best.safetensors", t->ck_dir);
    /* a directory holding only config.yaml (written by vita sweep) has not started (rundir.h) */
    int exists = rundir_started(t->run_dir);
    int resume = t->opt.resume && exists;
    if (resume && rundir_done(t->run_dir)) {
        if (!t->opt.quiet) printf("run %s: already finished (%s/%s exists); nothing to do\n", t->run_dir,
                                  t->run_dir, RUNDIR_DONE);
        return 0;
    }
    if (exists && !t->opt.resume) {
        if (!cfg->overwrite)
            return run_err("%s exists: continue it with --resume, choose another run.name, or set "
                        "run.overwrite: true to replace it", t->run_dir);
        if (rundir_clear_done(t->run_dir, err, sizeof err)) return run_err("%s", err);
        run_clear_dir(t->ck_dir);
        char p[1200];
        snprintf(p, sizeof p, "%s/config.yaml", t->run_dir);
        unlink(p);
        unlink(t->log_path);
    }
    if (t->opt.resume && !exists && !t->opt.quiet)
        fprintf(stderr, "vita: --resume: %s does not exist yet; starting the run\n", t->run_dir);
    if (run_mkdir_p(t->ck_dir)) return run_err("%s: cannot create the run directory: %s", t->ck_dir, strerror(errno));

    /* config.yaml */
    t->yaml = config_to_yaml(cfg);
    if ((rc = run_write_config(t->run_dir, t->yaml, resume))) return rc;

    /* device, data */
    const char* dev = t->opt.device ? t->opt.device : (cfg->device[0] ? cfg->device : "auto");
    if (ctx_open(&t->c, dev, t->opt.threads, cfg->deterministic)) return VITA_EXIT_USER;
    t->c_open = 1;
    if (dataset_open(&t->ds, cfg->data_path, err, sizeof err)) return run_err("%s", err);
    t->ds_open = 1;
    if (cfg->task == HEAD_SEGMENT && t->ds.has_seg && t->ds.n_labels > cfg->head.num_classes)
        return run_err("task.num_classes = %d, but %s has %d labels (%s ... %s): set "
                       "task.num_classes: %d", cfg->head.num_classes, cfg->data_path,
                       t->ds.n_labels, t->ds.label_names[0], t->ds.label_names[t->ds.n_labels - 1],
                       t->ds.n_labels);
    if ((rc = build_model(t))) return rc;
    if ((rc = setup_metrics(t))) return rc;
    LoaderConfig lc;
    loader_cfg(t, &lc, SPLIT_TRAIN, cfg->augment, cfg->workers);
    if (loader_open(&t->Ltr, &t->ds, &lc, err, sizeof err)) return run_err("data (train split): %s", err);
    t->ltr_open = 1;
    loader_cfg(t, &lc, SPLIT_VAL, 0, 1);
    lc.queue = 1;
    if (loader_open(&t->Lval, &t->ds, &lc, err, sizeof err)) return run_err("data (val split): %s", err);
    t->lval_open = 1;
    int accum = cfg->accum_steps;
    t->S = cfg->steps_per_epoch > 0 ? cfg->steps_per_epoch : t->Ltr.n_batches / accum;
    if (t->S < 1)
        return run_err("train.accum_steps = %d exceeds the %d batches of an epoch (data.batch %d, %d "
                    "train cases): lower it or set train.steps_per_epoch", accum, t->Ltr.n_batches,
                    cfg->batch, t->Ltr.n_items);

    /* weights */
    snprintf(t->init_kind, sizeof t->init_kind, "%s", cfg->model_weights[0] ? "pretrained" : "scratch");
    if (cfg->model_weights[0]) {
        if (sha256_file(cfg->model_weights, t->weights_sha, err, sizeof err)) return run_err("%s", err);
    }
    if (resume && access(t->init_path, R_OK) != 0) {
        fprintf(stderr, "vita: %s missing: starting %s from the beginning\n", t->init_path, t->run_dir);
        resume = 0;
    }
    if (resume && cfg->model_weights[0]) run_keep_started_sha(t->log_path, cfg->model_weights, t->weights_sha);
    if (resume) {
        /* the checkpoint (or init.safetensors) replaces every weight below */
        vit_init_weights(&t->m, cfg->seed);
        head_init_weights(&t->h, cfg->seed);
    } else if ((rc = init_weights(t))) {
        return rc;
    }
    build_optim(t);
    alloc_buffers(t);
    t->curve = xmalloc(sizeof(double) * (cfg->epochs + 1));
    for (int e = 0; e <= cfg->epochs; e++) t->curve[e] = NAN;
    t->al_on = cfg->n_align_layers > 0 && cfg->n_estimators > 0 && cfg->align_every > 0;
    t->align_last = xcalloc((size_t)(cfg->n_align_layers ? cfg->n_align_layers : 1) *
                            (cfg->n_estimators ? cfg->n_estimators : 1), sizeof(double));
    for (int i = 0; i < cfg->n_align_layers * cfg->n_estimators; i++) t->align_last[i] = NAN;

    memset(&t->p, 0, sizeof t->p);
    t->p.magic = TRAIN_STATE_MAGIC;
    t->p.size = sizeof t->p;
    t->p.epochs_done = -1;
    t->p.best_epoch = -1;
    t->p.best_metric = NAN;
    t->p.n_est = t->al_on ? cfg->n_estimators : 0;
    t->p.n_layers = t->al_on ? cfg->n_align_layers : 0;
    if (resume) {
        rc = load_checkpoint(t);
        if (rc > 0) return rc;
        if (rc < 0) {
            resume = 0;
            /* the initial weights (the run never checkpointed) */
            if (train_load_weights(t->init_path, &t->m, &t->h, err, sizeof err)) return run_err("%s", err);
        }
    }
    if (!resume) {
        RunMeta md;
        meta_build(t, &md, -1, -1, NAN);
        rc = train_save_weights(t->init_path, &t->m, &t->h, md.kv, md.n, err, sizeof err);
        run_meta_free(&md);
        if (rc) return run_err("%s", err);
    }

    /* log */
    if ((rc = build_log_spec(t, resume))) return rc;
    rc = run_open_log(&t->lg, t->log_path, &t->spec, resume, (long)t->p.log_steps,
                      (long)t->p.log_epochs, (long)t->p.log_align, err, sizeof err);
    if (rc) return run_err("%s", err);
    t->lg_open = 1;

    /* alignment reference (epoch 0 weights) */
    if (t->al_on) {
        if ((rc = align_setup(t, resume))) return rc;
        if (!resume) {
            double bw[CFG_MAX_LAYERS * MMD_MAX_S];
            int L = cfg->n_align_layers, S = cfg->n_scales;
            for (int l = 0; l < L; l++)
                for (int s = 0; s < S; s++) bw[l * S + s] = t->al.sigma[l] * cfg->scales[s];
            const char* rule = cfg->bw_rule == MMD_BW_MEDIAN ? "median" : cfg->bw_rule == MMD_BW_MEAN ? "mean" : "fixed";
            int ntok = !strcmp(cfg->align_feature, "tokens") ? t->al.rows : 0;
            dataset_h5_lock();
            rc = runlog_align_attrs(&t->lg, bw, S, rule, cfg->align_feature, t->al.n_images, ntok,
                                    t->al.noise_floor);
            dataset_h5_unlock();
            if (rc) return run_err("%s: cannot write the /align attributes", t->log_path);
        }
    }

    t->tty = isatty(2);
    if (!t->opt.quiet) {
        printf("run %s: %s, %s, %d train / %d val cases, %ld steps per epoch, %d epochs, device %s\n",
               t->run_dir, head_task_name(t->task), t->init_kind, t->Ltr.n_items, t->Lval.n_items, t->S,
               cfg->epochs, ctx_device_name(&t->c));
        fflush(stdout);
    }
    if ((rc = run_epochs(t))) return rc;
    if ((rc = finish(t))) return rc;
    /* the completion marker, last: a runner that sees it never starts the run again */
    if (rundir_mark_done(t->run_dir, (long)t->p.step, err, sizeof err)) return run_err("%s", err);
    return 0;
}

int train_run(const Config* cfg, const TrainOptions* opt) {
    Trainer* t = xcalloc(1, sizeof *t);
    t->cfg = cfg;
    if (opt) t->opt = *opt;
    t->t_proc0 = run_now_s();
    RunSigSave ss;
    run_signals_install(&ss);
    int rc = train_run_inner(t);
    trainer_free(t);
    run_signals_restore(&ss);
    free(t);
    return rc;
}
