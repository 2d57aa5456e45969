/* engine/runlog.h — the run log RUN_DIR/log.h5 (SPEC.md §4, format "vita-log" v1), written by
 * rank 0 only. Every dataset is created up front (extendible, chunked) so the file can switch
 * to SWMR (log.swmr: auto|on|off); rows are appended and flushed every epoch; h5py readers
 * open it with swmr=True while the run goes. /summary and /test attributes are written after
 * closing and reopening normally (a SWMR writer cannot add attributes). Resume rewrites the
 * log up to the checkpoint's row counts into a temporary file renamed over the old one. After
 * every flush the file is copied to path.bak, which resume reads when a kill -9 inside a flush
 * left the log damaged. */
#ifndef VITA_RUNLOG_H
#define VITA_RUNLOG_H

#include <stddef.h>
#include <stdint.h>

#define LOG_MAX_GROUPS 64
#define LOG_MAX_LAYERS 16
#define LOG_MAX_METRICS 16
#define LOG_MAX_EST 16

typedef struct {
    /* root attributes (strings; numbers formatted by the caller) */
    int n_attrs;
    const char* attr_key[48];
    const char* attr_val[48];
    int n_groups;                      /* lr columns */
    int n_metrics;                     /* val_metrics columns */
    const char* metric_names[LOG_MAX_METRICS];
    int n_layers;                      /* align layers */
    const char* layer_names[LOG_MAX_LAYERS];
    int n_est;                         /* align estimators logged, SPEC §6 names */
    const char* est_names[LOG_MAX_EST];
    int swmr;                          /* 1 on, 0 off (the caller resolves auto) */
} RunLogSpec;

typedef struct {
    long long fid;                     /* hid_t */
    char path[1024];
    RunLogSpec spec;                   /* copied pointers must outlive the log */
    long n_steps, n_epochs, n_align;   /* rows written */
    int swmr_on;
    int from_copy;                     /* resume read path.bak: the log was damaged */
    void* priv;
} RunLog;

typedef struct {
    int64_t step; int64_t epoch; double loss, grad_norm; const double* lr; double time_s;
} LogStep;
typedef struct {
    int64_t epoch; double train_loss, val_loss, val_metric; const double* val_metrics;
    double time_s, samples_per_s;
} LogEpoch;
typedef struct {
    int64_t epoch;
    const double* est;                 /* [n_est][n_layers] row-major */
    const double* weight_dist;         /* [n_layers] */
} LogAlign;

/* creates (truncating) path; 0, or 1 with err */
int runlog_create(RunLog* lg, const char* path, const RunLogSpec* spec, char* err, size_t errlen);
/* resume: keeps the first n_steps / n_epochs / n_align rows (rewritten into a temp file and
 * renamed over path), then continues appending */
int runlog_resume(RunLog* lg, const char* path, const RunLogSpec* spec, long n_steps,
                  long n_epochs, long n_align, char* err, size_t errlen);
int runlog_step(RunLog* lg, const LogStep* s);      /* buffered; flushed by runlog_flush */
int runlog_epoch(RunLog* lg, const LogEpoch* e);
int runlog_align(RunLog* lg, const LogAlign* a);
/* /align attrs written once, before SWMR starts (bandwidths [n_layers * S], rule, feature
 * kind, probe sizes, noise floor [n_layers]) */
int runlog_align_attrs(RunLog* lg, const double* bandwidths, int S, const char* rule,
                       const char* feature_kind, int probe_n_images, int probe_n_tokens,
                       const double* noise_floor);
int runlog_flush(RunLog* lg);       /* every epoch: extends, writes, H5Fflush (SWMR) or close+reopen */
/* closes, reopens without SWMR, writes /<group> attributes (key = value doubles; arrays via
 * n > 1), closes. group: "summary" | "test". */
int runlog_write_attrs(RunLog* lg, const char* group, int n, const char* const* keys,
                       const double* const* values, const int* lens, char* err, size_t errlen);
/* closes (flushing what is buffered); a clean close removes the last-flush copy path.bak */
void runlog_close(RunLog* lg);
/* a file-access property list with the given metadata read attempts (HDF5's SWMR default, 100
 * with doubling sleeps, blocks for hours on a damaged header). Readers of a log that may be
 * live use RUNLOG_READ_ATTEMPTS (about 0.3 s of retries); the caller closes it (H5Pclose) */
#define RUNLOG_READ_ATTEMPTS 28
long long runlog_read_fapl(int attempts);

#endif
