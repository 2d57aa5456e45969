/* engine/report.h — `vita report`: the paper's table from run logs (SPEC.md §1, §4; DESIGN.md §1).
 *
 * Inputs (report_input.c): sweep directories of `vita sweep` (DIR/sweep.yaml + DIR/index.tsv,
 * one row per run: id, run_dir relative to DIR, weights label, task, lr, seed, fold, extra axis
 * values) and plain run directories (RUN_DIR/log.h5: weights label = file stem of the log's
 * `weights` attr or "scratch"; task, lr (config train.lr), seed from the log). A run whose
 * directory or log is missing, or whose log has no /test attrs (not finished), is listed and
 * skipped.
 *
 * Analysis (report.c):
 *  - arms = (weights, task); an arm's settings = (lr, extra axis values); replicates =
 *    (seed, fold). Each arm's setting is selected by the mean over replicates of the best
 *    validation metric (the log's `metric`; direction from train_metric_higher_is_better);
 *    ties keep the setting that sorts first (smaller lr). Everything below uses the runs of
 *    the selected setting, except the within-task correlations (every setting).
 *  - test = the /test attr of the main metric (the validation-selected checkpoint on the test
 *    split); mean ± SD over replicates.
 *  - RPG per run = s (m_run − m_scr) / |m_scr| × 100, s = +1 higher-is-better, −1 lower; m_scr
 *    = the test metric of the scratch arm's selected-setting run with the same (seed, fold), or
 *    the scratch arm's mean when there is none (counted and said).
 *  - convergence: threshold = the scratch arm's mean test metric; the first epoch whose
 *    validation metric reaches it (>= for higher-is-better, <= else) gives steps (optimizer
 *    steps done by the end of that epoch, from /steps/epoch) and seconds (/epochs/time_s, the
 *    run's wall clock, already cumulative). Never reached = censored at the run's last step
 *    (">N"); an arm with a censored replicate is censored and left out of correlations.
 *    epochs_to_95 from /summary.
 *  - per layer at the last /align row: mmd2_paired, its ratio to the noise floor (floor > 0) or
 *    difference (floor <= 0), cka_linear, weight_dist; means over replicates.
 *  - correlations (report_stats.h) of the PRIMARY statistic (estimator at layer, from
 *    sweep.yaml `primary`, --primary, default mmd2_paired at layer norm) with RPG and with
 *    steps: across arms (points = arm means, bootstrap over tasks and their seeds), over the
 *    pretrained arms that are neither scratch nor listed in a negative control; and within
 *    each task over runs of every setting and seed. Every other (estimator, layer) of the logs
 *    is reported as SECONDARY.
 *  - controls (sweep.yaml `controls`): positive: per task the aligned arm has a higher RPG
 *    AND a lower primary statistic than the reference arm; negative: over the runs of the
 *    listed arms (selected settings; bootstrap over tasks and seeds) the MMD–RPG correlation's
 *    CI contains 0 (vanishes) or r >= 0 (reverses the paper's negative relation). For a
 *    similarity primary (cka_*: 1 = unchanged) "moved less" is higher and the signs flip.
 * Output (report.c): markdown tables on stdout; --csv OUT.csv one row per arm, and
 * OUT.corr.csv one row per correlation (what tools/plot.py reads). */
#ifndef VITA_REPORT_H
#define VITA_REPORT_H

#include <stdint.h>
#include <stdio.h>
#include "errfmt.h"   /* vita_fail: the one-line error into (err, errlen) */

#define RP_NAME 64
#define RP_MAX_EXTRA 8
#define RP_MAX_LAYERS 16
#define RP_MAX_EST 16
#define RP_MAX_CONTROLS 16
#define RP_MAX_ARMS_LIST 16

/* one run as read from its log; status 0 = usable, else why holds the reason */
typedef struct {
    char dir[1024];
    char id[RP_NAME];
    char weights[RP_NAME], task[RP_NAME];
    double lr;
    long seed, fold;
    int n_extra;
    char extra[RP_MAX_EXTRA][RP_NAME];
    int status;                          /* 0 ok, 1 missing, 2 unfinished, 3 unreadable */
    char why[512];
    char metric[RP_NAME];
    int higher;
    char feature_kind[RP_NAME];
    int n_ep;
    double* val;                         /* [n_ep] /epochs/val_metric */
    double* secs;                        /* [n_ep] /epochs/time_s */
    double* steps;                       /* [n_ep] optimizer steps done by the end of epoch e */
    double test, e95;
    int n_layers, n_est;
    char layers[RP_MAX_LAYERS][RP_NAME];
    char est[RP_MAX_EST][RP_NAME];       /* /align estimators ([n, L] datasets), weight_dist incl. */
    double* last;                        /* [n_est * n_layers] the last /align row */
    double floor[RP_MAX_LAYERS];         /* /align noise_floor, NaN when absent */
} RpRun;

typedef enum { RP_CTRL_POSITIVE = 0, RP_CTRL_NEGATIVE = 1 } RpCtrlKind;
typedef struct {
    RpCtrlKind kind;
    char aligned[RP_NAME], reference[RP_NAME];   /* positive */
    int n_arms;
    char arms[RP_MAX_ARMS_LIST][RP_NAME];        /* negative */
} RpControl;

typedef struct {
    int n_runs, cap_runs;
    RpRun* runs;
    char scratch[RP_NAME];                       /* label of the scratch arm */
    char primary_layer[RP_NAME], primary_est[RP_NAME], primary_feature[RP_NAME];
    int primary_from_cli;
    char primary_source[256];                    /* where the primary came from */
    int n_ctrl;
    RpControl ctrl[RP_MAX_CONTROLS];
    int n_extra_names;
    char extra_names[RP_MAX_EXTRA][RP_NAME];
} RpInput;

typedef struct {
    uint64_t seed;
    int n_boot, n_perm;
    const char* csv;                             /* NULL: no CSV */
} RpOptions;

/* ---- report_input.c ---------------------------------------------------------------------- */
/* adds the runs of one sweep directory or one run directory; 0, or 1 with a one-line err
 * (not a sweep or run directory, unreadable sweep.yaml / index.tsv) */
int rp_add_dir(RpInput* in, const char* dir, char* err, size_t errlen);
/* --primary "layer=..,estimator=..[,feature=..]"; 0 or 1 with err */
int rp_parse_primary(RpInput* in, const char* spec, char* err, size_t errlen);
void rp_input_free(RpInput* in);

/* ---- report.c ----------------------------------------------------------------------------- */
/* analyses and prints; returns 0, or 1 with err (no usable run, CSV not writable) */
int rp_report(const RpInput* in, const RpOptions* opt, FILE* out, char* err, size_t errlen);

#endif
