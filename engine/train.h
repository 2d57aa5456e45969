/* engine/train.h — the fine-tuning loop behind `vita train` (SPEC.md §1, §4, §7; DESIGN.md §6-7).
 *
 * One run: RUN_DIR = run.out/run.name gets config.yaml (the resolved config), log.h5 (runlog.h),
 * checkpoints/ (checkpoint.h: step_XXXXXXXX.{safetensors,state}, latest, best.safetensors and
 * init.safetensors, the initial encoder + head weights, written once so that a resumed run
 * rebuilds the alignment reference bit-identically).
 *
 * Loop (per optimizer step: accum_steps micro-batches, loss scaled 1/accum_steps; AdamW with
 * MAE's per-step schedule, see train_lr; layer-wise lr decay with timm's grouping; global grad
 * clipping over encoder + head; non-finite loss / gradient stops the run naming the step and
 * the first non-finite tensor, or skips the step with train.skip_nonfinite). Validation on
 * whole volumes by sliding window every epoch, epoch 0 = before any training; alignment
 * (align.h) at epoch 0 and every align.every epochs; checkpoints every checkpoint_every epochs
 * and on SIGTERM / SIGUSR1 / first SIGINT (finish the step, checkpoint, exit 75); a second
 * SIGINT aborts. With run.deterministic: true a --resume continues bit-identically.
 *
 * Parameter groups (the lr columns of /steps/lr): layer ids 0..depth+1 of vit_opt_ranges
 * (stem 0, block i -> i+1, final norm depth+1); the head shares the top group (scale 1).
 * A frozen group (linear_probe, freeze_first_k) logs lr 0. */
#ifndef VITA_TRAIN_H
#define VITA_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

typedef struct {
    int resume;                /* --resume: continue from the newest complete checkpoint */
    int quiet;                 /* no progress line, no memory report */
    int threads;               /* 0 = the backend's default */
    const char* device;        /* NULL = cfg->device */
    /* hooks (tests): called after every optimizer step with the logged values; may raise a
     * signal (e.g. SIGTERM, or SIGKILL to simulate a crash mid-epoch) */
    void (*on_step)(void* user, long step, long epoch, double loss);
    void* user;
} TrainOptions;

/* Runs (or resumes) one fine-tuning run. Returns the process exit code: 0 done, 1 user error
 * (one line printed: run dir exists, bad data, non-finite loss ...), 2 internal error,
 * 75 preempted (checkpoint written, ready to requeue). */
int train_run(const Config* cfg, const TrainOptions* opt);

/* `vita train CONFIG.yaml [--set a.b=c ...] [--resume] [--print-config] [--quiet]
 * [--threads N] [--device cpu|cuda|auto] [--help]`; argv[0] is "train" */
int cmd_train(int argc, char** argv);

/* ---- schedule (engine/schedule.c) ----------------------------------------------------------
 * MAE's lr_sched.adjust_learning_rate evaluated per optimizer step s (0-based) with the
 * fractional epoch f = s / steps_per_epoch: f < warmup: lr * f / warmup (linear from 0);
 * else min_lr + (lr - min_lr) * 0.5 * (1 + cos(pi * (f - warmup) / (epochs - warmup))). */
double train_lr(double lr, double min_lr, double warmup_epochs, int epochs, long steps_per_epoch,
                long step);

/* ---- convergence summary (SPEC.md §4) ------------------------------------------------------
 * curve[0..n) = val_metric per epoch (epoch 0 = before training); higher = 1 when larger is
 * better. NaN entries are skipped (never best, never reach a threshold).
 *   best:   argmax (argmin) epoch, the first one on ties; -1 when every entry is NaN
 *   epochs_to(frac): the first epoch e with s(m_e - m_0) >= frac * s(m_best - m_0), s = +1
 *           (higher) or -1; 0 when the run never improved on epoch 0; -1 when m_0 is NaN
 *   auc:    the trapezoid over epochs of the normalised curve u_e = (m_e - m_0)/(m_best - m_0)
 *           (1 = best, 0 = the start; NaN entries take the previous value), divided by the
 *           number of epochs n - 1, so it lies in [.., 1] and 1 = at best from epoch 1 on;
 *           0 when the run never improved, NaN when n < 2 or m_0 is NaN. */
int train_best_epoch(const double* curve, int n, int higher);
double train_epochs_to(const double* curve, int n, int higher, double frac);
double train_auc_curve(const double* curve, int n, int higher);
/* 1 if the metric name is higher-is-better (auroc, ap, dice*, psnr, ssim, accuracy ...),
 * 0 for losses, distances and errors (loss, mae, mse, hd95, ...) */
int train_metric_higher_is_better(const char* name);

/* ---- internal: weights and resume state (engine/train_state.c) ----------------------------- */
#include "safetensors.h"
#include "checkpoint.h"
#include "../models/head.h"

/* encoder + head tensors as safetensors writer input: host copies (*host, freed by the caller
 * with the returned array) of m->w and h->w, encoder rows first (timm names, then head.*) */
StWriteTensor* train_weight_tensors(const Vit* m, const Head* h, float** host, int* n);
/* encoder + head weights to path (atomic), metadata (key, value) pairs */
int train_save_weights(const char* path, const Vit* m, const Head* h, const char* const* meta,
                       int n_meta, char* err, size_t errlen);
/* reads a parameter table (names, numels, offsets into n_floats floats) from the open file f
 * into the device buffer w (every row must be present with its size); 0, or 1 with
 * "PATH: WHAT tensor 'NAME' missing" / "... NAME' WRONG_SIZE" in err. Shared by the encoder
 * (train_load_weights) and the pretext objective rows of a pretrain checkpoint */
int train_read_params(StFile* f, const char* path, const VitParam* params, int n_params,
                      long n_floats, Ctx* c, float* w, const char* what, const char* wrong_size,
                      char* err, size_t errlen);
/* loads encoder rows (all must be present) and head rows of a vita checkpoint */
int train_load_weights(const char* path, Vit* m, Head* h, char* err, size_t errlen);
/* 1 if the safetensors file holds any head.* tensor */
int train_file_has_head(const char* path);

#define TRAIN_STATE_MAGIC 0x56495441545231ull   /* "VITATR1" */
typedef struct {
    uint64_t magic, size;      /* TRAIN_STATE_MAGIC, sizeof(TrainProgress) */
    int64_t step;              /* optimizer steps done (incl. skipped ones) */
    int64_t epochs_done;       /* last epoch validated and logged (0 = epoch 0), -1 none */
    int64_t step_in_epoch;     /* steps done in epoch epochs_done + 1 */
    int64_t loader_epoch, loader_pos;
    uint64_t dp_counter;       /* drop-path RNG stream position */
    int64_t opt_t;             /* AdamW steps taken */
    double best_metric;
    int64_t best_epoch, since_best, skipped;
    int64_t log_steps, log_epochs, log_align;
    double ep_loss_sum;        /* running sums of the epoch in progress */
    int64_t ep_loss_n, ep_samples;
    double wall_s;             /* wall time of earlier process segments */
    int64_t n_est, n_layers;   /* shape of the align_last blob */
} TrainProgress;

/* state blobs: progress, val_curve [epochs_done + 1], align_last [n_est * n_layers],
 * adam m / v of encoder and head (host copies). save: writes step checkpoint through
 * ckpt_save; load: fills what it finds, 0 or 1 with err. */
typedef struct {
    TrainProgress p;
    double* curve;             /* [p.epochs_done + 1] */
    double* align_last;        /* [n_est * n_layers] or NULL */
    float *enc_m, *enc_v, *head_m, *head_v;   /* host */
    long n_enc, n_head;
} TrainState;
int train_state_save(const char* run_dir, const TrainState* s, const Vit* m, const Head* h,
                     const char* const* meta, int n_meta, int keep, char* err, size_t errlen);
int train_state_unpack(const CkptState* cs, TrainState* s, long n_enc, long n_head, char* err,
                       size_t errlen);
void train_state_free(TrainState* s);

#endif
