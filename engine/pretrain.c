/* engine/pretrain.c — the pretraining loop (pretrain.h).
 *
 * Order of one run:
 *   run dir (refuse / overwrite / resume) -> config.yaml -> device -> dataset, loaders (train +
 *   probe-only; contrastive: a second loader for the second view) -> encoder (model.weights or
 *   seeded init) + objective -> AdamW x2 (encoder, objective) -> log -> epoch 0: validation
 *   -> epochs 1..E: steps, validation, checkpoint -> /summary -> encoder.safetensors -> done.
 * As in train.c the log is flushed before a checkpoint is written, so a checkpoint's row counts
 * never exceed what log.h5 holds, and everything is consistent between two steps. */
#include "pretrain.h"
#include "check.h"
#include "checkpoint.h"
#include "dataset.h"
#include "headmeta.h"
#include "loader.h"
#include "rng.h"
#include "rundir.h"
#include "runlog.h"
#include "runutil.h"
#include "safetensors.h"
#include "sha256.h"
#include "../models/pretext.h"
#include "../models/vit_weights.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* stream tags of the objective's (seed, counter) draws: training and validation never share */
#define PT_SEED_TRAIN 0x505245545241494eull   /* "PRETRAIN" */
#define PT_SEED_VAL 0x5052455456414c31ull     /* "PRETVAL1" */

#define PT_STATE_MAGIC 0x56495441505431ull     /* "VITAPT1" */
typedef struct {
    uint64_t magic, size;      /* PT_STATE_MAGIC, sizeof(PtProgress) */
    int64_t step;              /* optimizer steps done */
    int64_t epochs_done;       /* last epoch validated and logged (0 = epoch 0), -1 none */
    int64_t step_in_epoch;     /* steps done in epoch epochs_done + 1 */
    int64_t loader_epoch, loader_pos;
    uint64_t dp_counter;       /* drop-path stream position */
    int64_t opt_t;             /* AdamW steps */
    int64_t log_steps, log_epochs;
    double ep_loss_sum;        /* running sums of the epoch in progress */
    int64_t ep_loss_n, ep_samples;
    double wall_s;             /* wall time of earlier process segments */
} PtProgress;

typedef struct {
    const Config* cfg;
    TrainOptions opt;
    char run_dir[1024], ck_dir[1100], log_path[1100], enc_path[1100];
    Ctx c;
    int c_open;
    Dataset ds;
    int ds_open;
    Loader L[2], V[2];         /* train / val, view 0 and (contrastive) view 1 */
    int l_open[2], v_open[2];
    int nviews;
    VitConfig vc;
    Vit m;
    Pretext pt;
    int m_built, pt_built;
    AdamW oe, op;
    int opt_built;
    OptRange *re, *rp;
    float* img_d;              /* [nviews * maxB, C, D, H, W] */
    long per_img;              /* floats of one image */
    Batch b[2];
    RunLog lg;
    int lg_open;
    RunLogSpec spec;
    RunAttrs attrs;
    char* yaml;
    char objective_task[32];   /* "pretrain-mae" | "pretrain-contrastive" */
    PtProgress p;
    double* curve;             /* val loss per epoch [epochs + 1] */
    long S;                    /* optimizer steps per epoch */
    double t_proc0, train_time_this_proc;
    long steps_this_proc;
    int tty;
    char weights_sha[65];
} Pt;

static double wall_total(const Pt* t) { return t->p.wall_s + (run_now_s() - t->t_proc0); }

/* ---- weights ---------------------------------------------------------------------------------- */

/* the pretext config as JSON (checkpoint metadata and the log) */
static char* pretext_json(const PretextConfig* c) {
    char buf[512];
    snprintf(buf, sizeof buf,
             "{\"objective\": \"%s\", \"mask_ratio\": %.9g, \"norm_pix_loss\": %s, "
             "\"decoder\": {\"dim\": %d, \"depth\": %d, \"heads\": %d}, \"temperature\": %.9g, "
             "\"proj\": {\"hidden\": %d, \"dim\": %d}, \"pool\": \"%s\", \"shuffle_pairs\": %s}",
             pretext_objective_name(c->objective), c->mask_ratio, c->norm_pix_loss ? "true" : "false",
             c->dec_dim, c->dec_depth, c->dec_heads, c->temperature, c->proj_hidden, c->proj_dim,
             c->pool == HEAD_POOL_CLS ? "cls" : "mean", c->shuffle_pairs ? "true" : "false");
    return run_sdup(buf);
}

static void meta_build(const Pt* t, RunMeta* md, long step) {
    const Config* cfg = t->cfg;
    memset(md, 0, sizeof *md);
    run_meta_add(md, "vita_version", run_sdup(VITA_VERSION));
    run_meta_add(md, "model", vit_config_to_json(&t->vc));
    run_meta_add(md, "input", input_meta_to_json(cfg->channels, cfg->input_mode,
                                                 cfg->input_context > 0 ? cfg->input_context : 1));
    run_meta_add(md, "objective", run_sdup(pretext_objective_name(cfg->pt.objective)));
    run_meta_add(md, "pretext", pretext_json(&cfg->pt));
    if (step >= 0) run_meta_add(md, "step", run_sfmt("%ld", step));
}

/* encoder rows (timm names), then, with_obj, the objective's; host copies in *host */
static StWriteTensor* weight_tensors(const Pt* t, int with_obj, float** host, int* n) {
    const Vit* m = &t->m;
    const Pretext* p = &t->pt;
    long nf = m->n_floats + (with_obj ? p->n_floats : 0);
    float* buf = xmalloc(sizeof(float) * (nf ? nf : 1));
    copy_d2h(m->ctx, buf, m->w, sizeof(float) * m->n_floats);
    if (with_obj && p->n_floats) copy_d2h(p->ctx, buf + m->n_floats, p->w, sizeof(float) * p->n_floats);
    int nt = m->n_params + (with_obj ? p->n_params : 0);
    StWriteTensor* w = xcalloc(nt ? nt : 1, sizeof *w);
    for (int i = 0; i < nt; i++) {
        int enc = i < m->n_params;
        const VitParam* q = enc ? &m->params[i] : &p->params[i - m->n_params];
        w[i].name = q->name;
        w[i].ndim = q->ndim;
        for (int k = 0; k < q->ndim; k++) w[i].shape[k] = q->shape[k];
        w[i].data = buf + (enc ? 0 : m->n_floats) + q->offset;
    }
    *host = buf;
    *n = nt;
    return w;
}

static int write_encoder(Pt* t) {
    char err[600];
    float* host;
    int n;
    StWriteTensor* w = weight_tensors(t, 0, &host, &n);
    RunMeta md;
    meta_build(t, &md, (long)t->p.step);
    int rc = st_write_f32(t->enc_path, w, n, md.kv, md.n, err, sizeof err);
    run_meta_free(&md);
    free(w);
    free(host);
    if (rc) return run_err("%s", err);
    return 0;
}

/* the objective's rows of a step checkpoint (the encoder's are read by train_load_weights) */
static int load_objective(Pt* t, const char* path, char* err, size_t errlen) {
    StFile f;
    if (st_open(&f, path, err, errlen)) return 1;
    Pretext* p = &t->pt;
    int rc = train_read_params(&f, path, p->params, p->n_params, p->n_floats, &t->c, p->w,
                               "objective", "has the wrong size (pretrain.* changed since the checkpoint?)",
                               err, errlen);
    st_close(&f);
    return rc;
}

/* ---- checkpoints ------------------------------------------------------------------------------ */

static int save_checkpoint(Pt* t) {
    char err[600];
    if (t->lg_open && run_flush_log(&t->lg, t->log_path)) return VITA_EXIT_USER;
    LoaderState ls = loader_state(&t->L[0]);
    t->p.loader_epoch = ls.epoch;
    t->p.loader_pos = ls.pos;
    t->p.dp_counter = t->m.dp_counter;
    t->p.opt_t = t->oe.t;
    t->p.log_steps = t->lg.n_steps;
    t->p.log_epochs = t->lg.n_epochs;
    PtProgress pp = t->p;
    pp.wall_s = wall_total(t);
    long ne = t->m.n_floats, no = t->pt.n_floats;
    float* mom = xmalloc(sizeof(float) * (size_t)(2 * ne + 2 * no + 1));
    copy_d2h(&t->c, mom, t->oe.m, sizeof(float) * ne);
    copy_d2h(&t->c, mom + ne, t->oe.v, sizeof(float) * ne);
    if (no) {
        copy_d2h(&t->c, mom + 2 * ne, t->op.m, sizeof(float) * no);
        copy_d2h(&t->c, mom + 2 * ne + no, t->op.v, sizeof(float) * no);
    }
    CkptBlob b[] = {
        {"progress", &pp, sizeof pp},
        {"val_curve", t->curve, sizeof(double) * (size_t)(t->p.epochs_done + 1 > 0 ? t->p.epochs_done + 1 : 0)},
        {"adam_enc_m", mom, sizeof(float) * ne},
        {"adam_enc_v", mom + ne, sizeof(float) * ne},
        {"adam_obj_m", mom + 2 * ne, sizeof(float) * no},
        {"adam_obj_v", mom + 2 * ne + no, sizeof(float) * no},
    };
    float* host;
    int n;
    StWriteTensor* w = weight_tensors(t, 1, &host, &n);
    RunMeta md;
    meta_build(t, &md, (long)t->p.step);
    int keep = t->cfg->keep_checkpoints > 0 ? t->cfg->keep_checkpoints : 1;
    int rc = ckpt_save(t->run_dir, (long)t->p.step, w, n, md.kv, md.n, b, 6, keep, err, sizeof err);
    run_meta_free(&md);
    free(w);
    free(host);
    free(mom);
    if (rc) return run_err("checkpoint: %s", err);
    return 0;
}

/* a blob of exactly `bytes` bytes copied to dst; 0, or 1 with err */
static int blob_into(const CkptState* cs, const char* name, void* dst, size_t bytes, char* err,
                     size_t errlen) {
    size_t got = 0;
    const void* p = ckpt_blob(cs, name, &got);
    if (!p || got != bytes) {
        snprintf(err, errlen, "checkpoint state: blob '%s' %s (not a checkpoint of this pretrain "
                 "config?)", name, p ? "has the wrong size" : "missing");
        return 1;
    }
    if (bytes) memcpy(dst, p, bytes);
    return 0;
}

/* resume: 0 restored, -1 no checkpoint (fresh start), 1 error */
static int load_checkpoint(Pt* t) {
    char err[2048], wpath[1400];
    long step = -1;
    CkptState cs;
    if (ckpt_find_latest(t->run_dir, wpath, sizeof wpath, &step, &cs, err, sizeof err)) {
        fprintf(stderr, "vita: %s; starting %s from the beginning\n", err, t->run_dir);
        return -1;
    }
    long ne = t->m.n_floats, no = t->pt.n_floats;
    float* mom = xmalloc(sizeof(float) * (size_t)(2 * ne + 2 * no + 1));
    PtProgress pp;
    int rc = blob_into(&cs, "progress", &pp, sizeof pp, err, sizeof err);
    if (!rc && (pp.magic != PT_STATE_MAGIC || pp.size != sizeof pp || pp.epochs_done > t->cfg->epochs)) {
        snprintf(err, sizeof err, "checkpoint state: not a vita pretrain checkpoint, or more epochs "
                 "than train.epochs = %d", t->cfg->epochs);
        rc = 1;
    }
    if (!rc)
        rc = blob_into(&cs, "val_curve", t->curve, sizeof(double) * (size_t)(pp.epochs_done + 1), err, sizeof err) ||
             blob_into(&cs, "adam_enc_m", mom, sizeof(float) * ne, err, sizeof err) ||
             blob_into(&cs, "adam_enc_v", mom + ne, sizeof(float) * ne, err, sizeof err) ||
             blob_into(&cs, "adam_obj_m", mom + 2 * ne, sizeof(float) * no, err, sizeof err) ||
             blob_into(&cs, "adam_obj_v", mom + 2 * ne + no, sizeof(float) * no, err, sizeof err);
    ckpt_state_free(&cs);
    if (!rc) rc = train_load_weights(wpath, &t->m, NULL, err, sizeof err) || load_objective(t, wpath, err, sizeof err);
    if (rc) {
        free(mom);
        return run_err("%s: %s", wpath, err);
    }
    copy_h2d(&t->c, t->oe.m, mom, sizeof(float) * ne);
    copy_h2d(&t->c, t->oe.v, mom + ne, sizeof(float) * ne);
    if (no) {
        copy_h2d(&t->c, t->op.m, mom + 2 * ne, sizeof(float) * no);
        copy_h2d(&t->c, t->op.v, mom + 2 * ne + no, sizeof(float) * no);
    }
    free(mom);
    t->p = pp;
    t->oe.t = t->op.t = (int)pp.opt_t;
    t->m.dp_counter = pp.dp_counter;
    for (int v = 0; v < t->nviews; v++)
        loader_seek(&t->L[v], (LoaderState){pp.loader_epoch, pp.loader_pos});
    if (!t->opt.quiet)
        printf("resumed from %s: step %ld, epoch %ld done, %ld steps into epoch %ld\n", wpath,
               (long)pp.step, (long)pp.epochs_done, (long)pp.step_in_epoch, (long)pp.epochs_done + 1);
    return 0;
}

/* ---- data ------------------------------------------------------------------------------------- */

static void loader_cfg(const Pt* t, LoaderConfig* lc, int split, int augment, int view) {
    const Config* cfg = t->cfg;
    run_loader_base(cfg, &t->vc, lc, split, augment);
    lc->task = LOADER_IMAGES;
    lc->balance = 0;
    snprintf(lc->channels, sizeof lc->channels, "%s", cfg->channels);
    lc->with_probe = split == SPLIT_TRAIN;
    lc->view = (uint64_t)view;
    lc->workers = split == SPLIT_TRAIN && cfg->workers > 0 ? cfg->workers : 1;
    lc->queue = split == SPLIT_TRAIN ? 2 : 1;
    if (!augment) augment_none(&lc->aug);
}

/* the next batch of every view into img_d (view v at rows v * B ..); returns B (valid rows of
 * view 0; the views of a batch have the same cases), or -1 with err */
static int next_batch(Pt* t, Loader* L, char* err, size_t errlen) {
    int B = 0;
    for (int v = 0; v < t->nviews; v++) {
        if (loader_next(&L[v], &t->b[v], err, errlen)) return -1;
        CHECK(t->b[v].B <= t->cfg->batch && t->b[v].C == t->vc.in_chans,
              "batch %d x %d channels vs model %d x %d", t->b[v].B, t->b[v].C, t->cfg->batch, t->vc.in_chans);
        if (v == 0) B = t->b[0].n;
        CHECK(t->b[v].n == B, "views out of step (%d vs %d rows)", t->b[v].n, B);
    }
    for (int v = 0; v < t->nviews; v++)
        copy_h2d(&t->c, t->img_d + (long)v * B * t->per_img, t->b[v].img, sizeof(float) * B * t->per_img);
    return B;
}

/* the pretext loss over the val split: sample-weighted mean of the batch losses; masks and
 * views fixed (the loaders restart at their epoch 0, the objective's counter = batch index).
 * 0, 1 error (err), 2 interrupted by a stop signal */
static int validate(Pt* t, double* loss_out, char* err, size_t errlen) {
    for (int v = 0; v < t->nviews; v++) loader_seek(&t->V[v], (LoaderState){0, 0});
    double sum = 0;
    long n = 0;
    for (int k = 0; k < t->V[0].n_batches; k++) {
        if (run_stop_signal()) return 2;   /* preempted: validated again on resume */
        int B = next_batch(t, t->V, err, errlen);
        if (B < 0) return 1;
        if (B == 0) continue;
        double l = pretext_eval(&t->pt, t->img_d, B, t->cfg->seed ^ PT_SEED_VAL, (uint64_t)k);
        sum += l * B;
        n += B;
    }
    *loss_out = n ? sum / n : NAN;
    return 0;
}

/* ---- one optimizer step ----------------------------------------------------------------------- */

static void zero_frozen(Pt* t, const OptRange* r, int n, float* g) {
    for (int i = 0; i < n; i++)
        if (r[i].frozen && r[i].numel) dev_zero(&t->c, g + r[i].offset, sizeof(float) * r[i].numel);
}

/* 0 ok, 1 stop (printed) */
static int train_step(Pt* t, long epoch, double* loss_out, double* gn_out, double* lr_out, int* samples) {
    const Config* cfg = t->cfg;
    Ctx* c = &t->c;
    char err[512];
    int accum = cfg->accum_steps > 0 ? cfg->accum_steps : 1;
    vit_zero_grad(&t->m);
    pretext_zero_grad(&t->pt);
    t->m.training = 1;
    double loss = 0;
    for (int k = 0; k < accum; k++) {
        int B = next_batch(t, t->L, err, sizeof err);
        if (B < 0) return run_err("data: %s", err);
        uint64_t counter = (uint64_t)t->p.step * (uint64_t)accum + (uint64_t)k;
        double l = pretext_forward(&t->pt, t->img_d, B, cfg->seed ^ PT_SEED_TRAIN, counter);
        pretext_backward(&t->pt, t->img_d, 1.0f / accum);
        loss += l / accum;
        *samples += B;
    }
    /* frozen parameters (the objective's fixed pos-embed) take no part in the norm */
    zero_frozen(t, t->re, t->m.n_params, t->m.g);
    zero_frozen(t, t->rp, t->pt.n_params, t->pt.g);
    double ge = grad_norm(c, t->oe.acc, t->m.g, t->m.n_floats);
    double gp = t->pt.n_floats ? grad_norm(c, t->op.acc, t->pt.g, t->pt.n_floats) : 0;
    double gn = sqrt(ge * ge + gp * gp);
    double lr = train_lr(cfg->lr, cfg->min_lr, cfg->warmup_epochs, cfg->epochs, t->S, (long)t->p.step);
    *loss_out = loss;
    *gn_out = gn;
    *lr_out = lr;
    if (!isfinite(loss) || !isfinite(gn)) {
        fprintf(stderr, "%svita: step %ld (epoch %ld): non-finite %s (loss %g, grad norm %g). Lower "
                "train.lr or raise pretrain.temperature, or check the data\n", t->tty ? "\n" : "",
                (long)t->p.step, epoch, !isfinite(loss) ? "loss" : "gradient", loss, gn);
        return 1;
    }
    if (cfg->clip_grad > 0 && gn > cfg->clip_grad) {
        float s = (float)(cfg->clip_grad / (gn + 1e-6));
        scale_inplace(c, t->m.g, s, t->m.n_floats);
        if (t->pt.n_floats) scale_inplace(c, t->pt.g, s, t->pt.n_floats);
    }
    adamw_step(&t->oe, t->m.w, t->m.g, (float)lr);
    if (t->pt.n_floats) adamw_step(&t->op, t->pt.w, t->pt.g, (float)lr);
    return 0;
}

/* ---- epochs ----------------------------------------------------------------------------------- */

static double eta_s(const Pt* t, long steps_left) {
    double per = t->steps_this_proc ? t->train_time_this_proc / t->steps_this_proc : 0;
    return per * steps_left;
}

#define EOE_PREEMPTED (-75)
/* validation of epoch e and its log row; 0, EOE_PREEMPTED (nothing logged), or an exit code */
static int end_of_epoch(Pt* t, long e, double train_loss, double sps) {
    char err[600];
    double vloss = NAN;
    int m_tr = t->m.training;
    t->m.training = 0;
    int vr = validate(t, &vloss, err, sizeof err);
    t->m.training = m_tr;
    if (vr == 2) return EOE_PREEMPTED;
    if (vr) return run_err("validation: %s", err);
    t->curve[e] = vloss;
    LogEpoch le = {e, train_loss, vloss, vloss, &vloss, wall_total(t), sps};
    dataset_h5_lock();
    runlog_epoch(&t->lg, &le);
    int fr = runlog_flush(&t->lg);
    dataset_h5_unlock();
    if (fr) return run_err("%s: cannot write the log", t->log_path);
    t->p.epochs_done = e;
    t->p.step_in_epoch = 0;
    t->p.ep_loss_sum = 0;
    t->p.ep_loss_n = 0;
    t->p.ep_samples = 0;
    if (!t->opt.quiet)
        run_progress_epoch(t->tty, e, t->cfg->epochs, (long)t->p.step, train_loss, vloss, NULL, NAN,
                           sps, eta_s(t, (long)(t->cfg->epochs - e) * t->S));
    return 0;
}

static int preempt(Pt* t) {
    int rc = save_checkpoint(t);
    return rc ? rc : run_preempted(t->tty, (long)t->p.step, t->ck_dir);
}

static int run_epochs(Pt* t) {
    const Config* cfg = t->cfg;
    int rc;
    if (t->p.epochs_done < 0) {
        rc = end_of_epoch(t, 0, NAN, 0);
        if (rc == EOE_PREEMPTED || (!rc && run_stop_signal())) return preempt(t);
        if (rc) return rc;
    }
    for (long e = t->p.epochs_done + 1; e <= cfg->epochs; e++) {
        if (cfg->steps_per_epoch <= 0 && t->p.step_in_epoch == 0)
            for (int v = 0; v < t->nviews; v++) {
                LoaderState ls = loader_state(&t->L[v]);
                if (ls.epoch != e - 1 || ls.pos != 0) loader_seek(&t->L[v], (LoaderState){e - 1, 0});
            }
        double te0 = run_now_s();
        long samples0 = t->p.ep_samples;
        for (long k = t->p.step_in_epoch; k < t->S; k++) {
            double ts = run_now_s(), loss = NAN, gn = NAN, lr = 0;
            int samples = 0;
            int bad = train_step(t, e, &loss, &gn, &lr, &samples);
            LogStep ls = {(int64_t)t->p.step, e, loss, gn, &lr, wall_total(t)};
            dataset_h5_lock();
            runlog_step(&t->lg, &ls);
            if (bad) runlog_flush(&t->lg);   /* the failing step shows in the log */
            dataset_h5_unlock();
            if (bad) return VITA_EXIT_USER;
            if (t->opt.on_step) t->opt.on_step(t->opt.user, (long)t->p.step, e, loss);
            t->p.step++;
            t->p.step_in_epoch = k + 1;
            t->p.ep_loss_sum += loss;
            t->p.ep_loss_n++;
            t->p.ep_samples += samples;
            double dt = run_now_s() - ts;
            t->train_time_this_proc += dt;
            t->steps_this_proc++;
            if (!t->opt.quiet && t->tty)
                run_progress_step(e, cfg->epochs, k + 1, t->S, loss, samples / (dt > 0 ? dt : 1e-9),
                                  eta_s(t, (long)(cfg->epochs - e) * t->S + (t->S - k - 1)));
            if (run_stop_signal()) return preempt(t);
        }
        double tt = run_now_s() - te0;
        double sps = tt > 0 ? (t->p.ep_samples - samples0) / tt : 0;
        double tl = t->p.ep_loss_n ? t->p.ep_loss_sum / t->p.ep_loss_n : NAN;
        rc = end_of_epoch(t, e, tl, sps);
        if (rc == EOE_PREEMPTED) return preempt(t);
        if (rc) return rc;
        int every = cfg->checkpoint_every;
        if ((every > 0 && e % every == 0) || e == cfg->epochs || run_stop_signal()) {
            if ((rc = save_checkpoint(t))) return rc;
            if (run_stop_signal()) return run_preempted(t->tty, (long)t->p.step, t->ck_dir);
        }
    }
    return 0;
}

/* /summary: the val-loss curve's best epoch (lower is better) and timings */
static int finish(Pt* t) {
    char err[600];
    int n = (int)t->p.epochs_done + 1;
    int b = train_best_epoch(t->curve, n, 0);
    double best_epoch = b, best = b >= 0 ? t->curve[b] : NAN, wall = wall_total(t), nep = n - 1;
    double e90 = train_epochs_to(t->curve, n, 0, 0.90), e95 = train_epochs_to(t->curve, n, 0, 0.95);
    const char* keys[] = {"best_epoch", "best_val_metric", "epochs_to_90", "epochs_to_95",
                          "wall_time_s", "epochs_run"};
    const double* vals[] = {&best_epoch, &best, &e90, &e95, &wall, &nep};
    int lens[] = {1, 1, 1, 1, 1, 1};
    dataset_h5_lock();
    int rc = runlog_write_attrs(&t->lg, "summary", 6, keys, vals, lens, err, sizeof err);
    dataset_h5_unlock();
    if (rc) return run_err("%s", err);
    if ((rc = write_encoder(t))) return rc;
    if (rundir_mark_done(t->run_dir, (long)t->p.step, err, sizeof err)) return run_err("%s", err);
    if (!t->opt.quiet)
        printf("encoder written to %s (step %ld, val_loss %.4f at epoch %d of %d)\n", t->enc_path,
               (long)t->p.step, best, b, n - 1);
    return 0;
}

/* ---- setup ------------------------------------------------------------------------------------ */

static int build_log_spec(Pt* t, int resumed) {
    const Config* cfg = t->cfg;
    RunLogSpec* s = &t->spec;
    memset(s, 0, sizeof *s);
    t->attrs.spec = s;
    RunAttrs* a = &t->attrs;
    run_attr(a, "config", t->yaml);
    run_attr(a, "task", t->objective_task);
    run_attr(a, "objective", pretext_objective_name(cfg->pt.objective));
    char* pj = pretext_json(&cfg->pt);
    run_attr(a, "pretext_config", pj);
    free(pj);
    run_attr(a, "model", cfg->model_preset[0] ? cfg->model_preset : t->vc.preset);
    char* mj = vit_config_to_json(&t->vc);
    run_attr(a, "model_config", mj);
    free(mj);
    run_attr(a, "init", cfg->model_weights[0] ? "pretrained" : "scratch");
    run_attr(a, "weights", cfg->model_weights);
    run_attr(a, "weights_sha256", t->weights_sha);
    if (run_env_attrs(a, cfg, &t->ds, &t->c, resumed)) return VITA_EXIT_USER;
    run_attr(a, "metric", "val_loss");
    run_attr(a, "metric_direction", "lower_is_better");
    run_attr(a, "val_metric", "val_metric = val_loss: the pretext loss on the validation split "
             "(fixed masks / views per batch, comparable across epochs); lower is better");
    run_attr(a, "val_protocol", "val split, pretext loss with fixed (seed, batch) draws, every "
             "epoch; epoch 0 before training");
    run_attr(a, "train_data", "split train + probe-only (3); labels unused");
    run_attr(a, "lr_groups", "one group: encoder + objective (no layer decay)");
    s->n_groups = 1;
    s->n_metrics = 1;
    s->metric_names[0] = "val_loss";
    s->swmr = run_swmr_setting(cfg, t->run_dir);
    return 0;
}

static int check_config(const Config* cfg, const VitConfig* vc) {
    char err[512];
    if (!cfg->pretrain) return run_err("internal: pretrain_run needs a config from config_load_pretrain");
    int rc = run_check_common(cfg);
    if (rc) return rc;
    if (!cfg->run_name[0]) return run_err("run.name is empty: name the run (the directory under run.out)");
    if (vit_config_check(vc, err, sizeof err)) return run_err("model: %s", err);
    if (pretext_config_check(&cfg->pt, vc, err, sizeof err)) return run_err("%s", err);
    if (cfg->pt.objective == PRETEXT_CONTRASTIVE && cfg->batch < 2)
        return run_err("data.batch = %d: contrastive pretraining needs 2 or more images per batch "
                       "(the other images are the negatives)", cfg->batch);
    return 0;
}

/* run dir: refuse an existing run without --resume (unless run.overwrite), create it; *resume
 * set when there is something to resume */
static int prepare_run_dir(Pt* t, int* resume) {
    const Config* cfg = t->cfg;
    char err[600];
    run_dir_path(cfg, t->run_dir, sizeof t->run_dir);
    snprintf(t->ck_dir, sizeof t->ck_dir, "%s/checkpoints", t->run_dir);
    snprintf(t->log_path, sizeof t->log_path, "%s/log.h5", t->run_dir);
    snprintf(t->enc_path, sizeof t->enc_path, "%s/encoder.safetensors", t->run_dir);
    int exists = rundir_started(t->run_dir);
    *resume = t->opt.resume && exists;
    if (*resume && rundir_done(t->run_dir)) {
        if (!t->opt.quiet) printf("run %s: already finished (%s/%s exists); nothing to do\n", t->run_dir,
                                  t->run_dir, RUNDIR_DONE);
        return -1;
    }
    if (exists && !t->opt.resume) {
        if (!cfg->overwrite)
            return run_err("%s exists: continue it with --resume, choose another run.name, or set "
                           "run.overwrite: true to replace it", t->run_dir);
        run_clear_dir(t->ck_dir);
        char p[1200];
        snprintf(p, sizeof p, "%s/config.yaml", t->run_dir);
        unlink(p);
        unlink(t->log_path);
        unlink(t->enc_path);
        if (rundir_clear_done(t->run_dir, err, sizeof err)) return run_err("%s", err);
    }
    if (run_mkdir_p(t->ck_dir)) return run_err("%s: cannot create the run directory: %s", t->ck_dir, strerror(errno));
    t->yaml = config_to_yaml(cfg);
    return run_write_config(t->run_dir, t->yaml, *resume);
}

static int open_loaders(Pt* t) {
    const Config* cfg = t->cfg;
    char err[600];
    LoaderConfig lc;
    int contrastive = cfg->pt.objective == PRETEXT_CONTRASTIVE;
    t->nviews = contrastive ? 2 : 1;
    for (int v = 0; v < t->nviews; v++) {
        loader_cfg(t, &lc, SPLIT_TRAIN, cfg->augment, v);
        if (loader_open(&t->L[v], &t->ds, &lc, err, sizeof err)) return run_err("data (train split): %s", err);
        t->l_open[v] = 1;
        /* validation: MAE unaugmented; contrastive needs two different (but fixed) views */
        loader_cfg(t, &lc, SPLIT_VAL, contrastive, v);
        if (loader_open(&t->V[v], &t->ds, &lc, err, sizeof err)) return run_err("data (val split): %s", err);
        t->v_open[v] = 1;
    }
    int accum = cfg->accum_steps > 0 ? cfg->accum_steps : 1;
    t->S = cfg->steps_per_epoch > 0 ? cfg->steps_per_epoch : t->L[0].n_batches / accum;
    if (t->S < 1)
        return run_err("train.accum_steps = %d exceeds the %d batches of an epoch (data.batch %d, %d "
                       "train cases): lower it or set train.steps_per_epoch", accum, t->L[0].n_batches,
                       cfg->batch, t->L[0].n_items);
    return 0;
}

static int build_model(Pt* t, int resume) {
    const Config* cfg = t->cfg;
    char err[600];
    vit_create(&t->m, &t->c, &t->vc);
    t->m_built = 1;
    pretext_create(&t->pt, &t->c, &cfg->pt, &t->m);
    t->pt_built = 1;
    pretext_alloc_activations(&t->pt, cfg->batch);
    t->m.dp_seed = rng_u64(&(Rng){cfg->seed ^ 0xD209D209ull});
    t->m.dp_counter = 0;
    vit_init_weights(&t->m, cfg->seed);
    pretext_init_weights(&t->pt, cfg->seed);
    if (cfg->model_weights[0]) {
        if (sha256_file(cfg->model_weights, t->weights_sha, err, sizeof err)) return run_err("%s", err);
        if (resume) run_keep_started_sha(t->log_path, cfg->model_weights, t->weights_sha);
        if (!resume) {   /* on resume the checkpoint replaces every weight */
            VitLoadReport rep;
            if (vit_load_weights(&t->m, cfg->model_weights, !t->opt.quiet, &rep)) return VITA_EXIT_USER;
            if (rep.loaded == 0)
                return run_err("%s: no encoder tensor matches the model (0 loaded, %d missing): check "
                               "model.preset against the checkpoint", cfg->model_weights, rep.missing);
        }
    }
    t->re = xcalloc(t->m.n_params, sizeof(OptRange));
    int nre = vit_opt_ranges(&t->m, (float)cfg->weight_decay, 1.0f, t->re);
    t->rp = xcalloc(t->pt.n_params ? t->pt.n_params : 1, sizeof(OptRange));
    int nrp = pretext_opt_ranges(&t->pt, (float)cfg->weight_decay, t->rp);
    adamw_create(&t->oe, &t->c, t->m.n_floats, t->re, nre);
    adamw_create(&t->op, &t->c, t->pt.n_floats, t->rp, nrp);
    t->opt_built = 1;
    t->per_img = (long)t->vc.in_chans * t->vc.img[0] * t->vc.img[1] * t->vc.img[2];
    t->img_d = dev_alloc(&t->c, sizeof(float) * (size_t)(t->nviews * cfg->batch) * t->per_img);
    return 0;
}

static int run_inner(Pt* t) {
    const Config* cfg = t->cfg;
    char err[1024];
    int rc, resume = 0;
    t->vc = cfg->vit;
    if (cfg->drop_path >= 0) t->vc.drop_path = (float)cfg->drop_path;
    if ((rc = check_config(cfg, &t->vc))) return rc;
    snprintf(t->objective_task, sizeof t->objective_task, "pretrain-%s", pretext_objective_name(cfg->pt.objective));
    rc = prepare_run_dir(t, &resume);
    if (rc < 0) return 0;   /* finished already */
    if (rc) return rc;
    if (t->opt.resume && !resume && !t->opt.quiet)
        fprintf(stderr, "vita: --resume: %s has not started yet; starting the run\n", t->run_dir);

    const char* dev = t->opt.device ? t->opt.device : (cfg->device[0] ? cfg->device : "auto");
    if (ctx_open(&t->c, dev, t->opt.threads, cfg->deterministic)) return VITA_EXIT_USER;
    t->c_open = 1;
    if (dataset_open(&t->ds, cfg->data_path, err, sizeof err)) return run_err("%s", err);
    t->ds_open = 1;
    if ((rc = open_loaders(t))) return rc;
    if ((rc = build_model(t, resume))) return rc;
    t->curve = xmalloc(sizeof(double) * (cfg->epochs + 1));
    for (int e = 0; e <= cfg->epochs; e++) t->curve[e] = NAN;
    memset(&t->p, 0, sizeof t->p);
    t->p.magic = PT_STATE_MAGIC;
    t->p.size = sizeof t->p;
    t->p.epochs_done = -1;
    if (resume) {
        rc = load_checkpoint(t);
        if (rc > 0) return rc;
        if (rc < 0) {
            /* never checkpointed: start again from the initial weights */
            resume = 0;
            if (cfg->model_weights[0]) {
                VitLoadReport rep;
                if (vit_load_weights(&t->m, cfg->model_weights, 0, &rep)) return VITA_EXIT_USER;
            }
        }
    }
    if ((rc = build_log_spec(t, resume))) return rc;
    rc = run_open_log(&t->lg, t->log_path, &t->spec, resume, (long)t->p.log_steps,
                      (long)t->p.log_epochs, 0, err, sizeof err);
    if (rc) return run_err("%s", err);
    t->lg_open = 1;
    t->tty = isatty(2);
    if (!t->opt.quiet) {
        printf("run %s: %s, %s, %d train (+ probe-only) / %d val cases, %ld steps per epoch, %d "
               "epochs, device %s\n", t->run_dir, t->objective_task,
               cfg->model_weights[0] ? "from model.weights" : "from scratch", t->L[0].n_items,
               t->V[0].n_items, t->S, cfg->epochs, ctx_device_name(&t->c));
        vit_print_memory(&t->m);
        fflush(stdout);
    }
    if ((rc = run_epochs(t))) return rc;
    return finish(t);
}

static void pt_free(Pt* t) {
    if (t->lg_open) runlog_close(&t->lg);
    for (int v = 0; v < 2; v++) {
        if (t->l_open[v]) loader_close(&t->L[v]);
        if (t->v_open[v]) loader_close(&t->V[v]);
        batch_free(&t->b[v]);
    }
    if (t->c_open) {
        if (t->img_d) dev_free(&t->c, t->img_d);
        if (t->opt_built) { adamw_free(&t->oe); adamw_free(&t->op); }
        if (t->pt_built) pretext_free(&t->pt);
        if (t->m_built) vit_free(&t->m);
        ctx_close(&t->c);
    }
    if (t->ds_open) dataset_close(&t->ds);
    free(t->re); free(t->rp); free(t->curve); free(t->yaml);
    run_attrs_free(&t->attrs);
}

int pretrain_run(const Config* cfg, const TrainOptions* opt) {
    Pt* t = xcalloc(1, sizeof *t);
    t->cfg = cfg;
    if (opt) t->opt = *opt;
    t->t_proc0 = run_now_s();
    RunSigSave ss;
    run_signals_install(&ss);
    int rc = run_inner(t);
    pt_free(t);
    run_signals_restore(&ss);
    free(t);
    return rc;
}
