/* engine/runutil.h — what every training-like run (`vita train`, `vita pretrain`) shares around
 * its loop: stop signals (SIGTERM / SIGUSR1 / first SIGINT request a checkpoint and exit 75; a
 * second SIGINT aborts), run-directory helpers, the one-line user error, checkpoint metadata
 * lists, the provenance attributes of log.h5 (SPEC.md §4) and the progress-line pieces.
 * The signal state is process-global (a handler cannot reach a struct): one run at a time. */
#ifndef VITA_RUNUTIL_H
#define VITA_RUNUTIL_H

#include <signal.h>
#include <stddef.h>

#include "config.h"
#include "dataset.h"
#include "loader.h"
#include "runlog.h"

/* ---- signals ---- */
typedef struct { struct sigaction term, usr1, intr; } RunSigSave;
void run_signals_install(RunSigSave* s);       /* clears the stop request */
void run_signals_restore(const RunSigSave* s);
int run_stop_signal(void);                     /* the first stop signal received, 0 none */
const char* run_sig_name(int sig);

/* ---- time and text ---- */
double run_now_s(void);                        /* monotonic seconds */
void run_fmt_hms(char* out, size_t n, double s);   /* m:ss or h:mm:ss, "--:--" if unknown */
/* "vita: <message>\n" on stderr; returns VITA_EXIT_USER */
int run_err(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
char* run_sdup(const char* s);
char* run_sfmt(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- progress lines (stderr) ---- */
/* "\repoch E/N  step k/S  loss L  R samples/s  ETA t" (a tty only: rewritten in place) */
void run_progress_step(long epoch, int epochs, long k, long S, double loss, double sps,
                       double eta_s);
/* "epoch E/N  step s  train_loss L  val_loss V  [val_<metric> M]  R samples/s  ETA t";
 * train_loss NaN (epoch 0) prints "-"; metric_name NULL omits the metric */
void run_progress_epoch(int tty, long epoch, int epochs, long step, double train_loss,
                        double val_loss, const char* metric_name, double metric, double sps,
                        double eta_s);

/* ---- run directory ---- */
int run_is_dir(const char* p);
int run_dir_nonempty(const char* p);
int run_mkdir_p(const char* path);             /* 0, or 1 with errno set */
void run_clear_dir(const char* dir);           /* the regular files of dir, then dir */
char* run_read_text(const char* path);         /* whole file, NULL if unreadable */
int run_swmr_auto(const char* dir);            /* log.swmr auto: 0 on network filesystems */
/* RUN_DIR = run.out/run.name into out */
void run_dir_path(const Config* cfg, char* out, size_t n);

/* checks both loops make before touching data: epochs >= 0, batch, accum_steps, dist.backend,
 * data.path, data.crop = model.img_size (slice mode: depth free); 0, or the exit code (printed) */
int run_check_common(const Config* cfg);
/* the loader settings both loops derive alike from cfg and the model's input size vc->img:
 * loader_defaults, then mode, context, crop (depth 1 in slice mode), batch, pos_fraction, split,
 * fold, augment and seed; the caller sets the rest (task, channels, workers, queue, ...) */
void run_loader_base(const Config* cfg, const VitConfig* vc, LoaderConfig* lc, int split,
                     int augment);
/* opens RUN_DIR/log.h5 under the HDF5 lock: runlog_resume cut to (steps, epochs, align) rows
 * when resume, else runlog_create; 0, or 1 with err */
int run_open_log(RunLog* lg, const char* path, const RunLogSpec* spec, int resume, long steps,
                 long epochs, long align, char* err, size_t errlen);
/* runlog_flush under the HDF5 lock; 0, or VITA_EXIT_USER with "vita: LOG_PATH: cannot write the
 * log" printed */
int run_flush_log(RunLog* lg, const char* log_path);
/* on resume: the sha256 of model.weights that the run's log recorded at its start replaces the
 * file's current one in sha (the run continues from its own checkpoint, so the log must keep
 * naming the weights it started from); a warning on stderr when they differ. A log that cannot
 * be read leaves sha as it is. */
void run_keep_started_sha(const char* log_path, const char* weights, char sha[65]);
/* the weights_sha256 a run log recorded at the run's start into sha; 0, or 1 when the log
 * cannot be read (a run writing it, a killed run) or recorded none (scratch) */
int run_logged_weights_sha(const char* log_path, char sha[65]);
/* RUN_DIR/config.yaml = yaml (atomic); on resume warns when it differs from the old one */
int run_write_config(const char* run_dir, const char* yaml, int resume);
/* after the preemption checkpoint: the message naming signal, step and directory; returns 75 */
int run_preempted(int tty, long step, const char* ck_dir);

/* ---- safetensors metadata (key, value) pairs; values owned ---- */
#define RUN_META_MAX 16
typedef struct { char* vals[RUN_META_MAX]; const char* kv[2 * RUN_META_MAX]; int n; } RunMeta;
void run_meta_add(RunMeta* md, const char* key, char* value_owned);
void run_meta_free(RunMeta* md);

/* ---- log.h5 root attributes; values copied and owned here ---- */
typedef struct { RunLogSpec* spec; char* buf[48]; int n; } RunAttrs;
void run_attr(RunAttrs* a, const char* key, const char* value);
void run_attrs_free(RunAttrs* a);
/* the provenance attributes of SPEC.md §4 from seed to start_time (resume_time when resumed):
 * seed, world_size, data_path, data_sha256, split_sha256, vita_version, git_describe, compiler,
 * blas, threads, precision, device, gpu/driver/cuda/..., slurm ids, host. 0, or 1 (printed) */
int run_env_attrs(RunAttrs* a, const Config* cfg, const Dataset* ds, const Ctx* c, int resumed);
/* log.swmr resolved for RUN_DIR */
int run_swmr_setting(const Config* cfg, const char* run_dir);

#endif
