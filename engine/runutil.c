/* engine/runutil.c — helpers shared by the fine-tuning and pretraining runs (runutil.h). */
#include "runutil.h"
#include "check.h"
#include "checkpoint.h"
#include "h5read.h"
#include "loader.h"
#include "sha256.h"
#include "../kernels/ops.h"
#include "../models/vit_weights.h"   /* VITA_VERSION */

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <time.h>
#include <unistd.h>

#ifndef VITA_GIT_DESCRIBE
#define VITA_GIT_DESCRIBE "unknown"
#endif

extern char* openblas_get_config(void);

/* ---- signals -------------------------------------------------------------------------------- */

static volatile sig_atomic_t g_stop_sig = 0;   /* first SIGTERM / SIGUSR1 / SIGINT */
static volatile sig_atomic_t g_sigints = 0;

static void on_signal(int sig) {
    if (sig == SIGINT) {
        if (g_sigints++) {
            static const char msg[] = "\nvita: second SIGINT: aborting without a checkpoint\n";
            ssize_t r = write(2, msg, sizeof msg - 1);
            (void)r;
            _exit(130);
        }
    }
    if (!g_stop_sig) g_stop_sig = sig;
}

void run_signals_install(RunSigSave* s) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    g_stop_sig = 0;
    g_sigints = 0;
    CHECK_ERRNO(sigaction(SIGTERM, &sa, &s->term) == 0, "sigaction SIGTERM");
    CHECK_ERRNO(sigaction(SIGUSR1, &sa, &s->usr1) == 0, "sigaction SIGUSR1");
    CHECK_ERRNO(sigaction(SIGINT, &sa, &s->intr) == 0, "sigaction SIGINT");
}

void run_signals_restore(const RunSigSave* s) {
    CHECK_ERRNO(sigaction(SIGTERM, &s->term, NULL) == 0, "sigaction SIGTERM");
    CHECK_ERRNO(sigaction(SIGUSR1, &s->usr1, NULL) == 0, "sigaction SIGUSR1");
    CHECK_ERRNO(sigaction(SIGINT, &s->intr, NULL) == 0, "sigaction SIGINT");
}

int run_stop_signal(void) { return g_stop_sig; }

const char* run_sig_name(int s) {
    return s == SIGTERM ? "SIGTERM" : s == SIGUSR1 ? "SIGUSR1" : s == SIGINT ? "SIGINT" : "signal";
}

/* ---- time and text -------------------------------------------------------------------------- */

double run_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

void run_fmt_hms(char* out, size_t n, double s) {
    if (!(s >= 0) || s > 1e7) { snprintf(out, n, "--:--"); return; }
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(out, n, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
    else snprintf(out, n, "%ld:%02ld", t / 60, t % 60);
}

int run_err(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "vita: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    fflush(stderr);
    return VITA_EXIT_USER;
}

char* run_sdup(const char* s) {
    size_t n = strlen(s) + 1;
    char* d = xmalloc(n);
    memcpy(d, s, n);
    return d;
}

char* run_sfmt(const char* fmt, ...) {
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return run_sdup(buf);
}

/* ---- progress lines ------------------------------------------------------------------------ */

void run_progress_step(long epoch, int epochs, long k, long S, double loss, double sps,
                       double eta_s) {
    char eta[32];
    run_fmt_hms(eta, sizeof eta, eta_s);
    fprintf(stderr, "\repoch %ld/%d  step %ld/%ld  loss %.4f  %.1f samples/s  ETA %s   ", epoch,
            epochs, k, S, loss, sps, eta);
    fflush(stderr);
}

void run_progress_epoch(int tty, long epoch, int epochs, long step, double train_loss,
                        double val_loss, const char* metric_name, double metric, double sps,
                        double eta_s) {
    char eta[32], tl[32], mt[64] = "";
    run_fmt_hms(eta, sizeof eta, eta_s);
    if (epoch == 0) snprintf(eta, sizeof eta, "-");
    if (train_loss == train_loss) snprintf(tl, sizeof tl, "%.4f", train_loss);
    else snprintf(tl, sizeof tl, "-");   /* epoch 0 has no training loss yet (NaN in the log) */
    if (metric_name) snprintf(mt, sizeof mt, "val_%s %.4f  ", metric_name, metric);
    fprintf(stderr, "%sepoch %ld/%d  step %ld  train_loss %s  val_loss %.4f  %s%.1f samples/s  "
            "ETA %s\n", tty ? "\r" : "", epoch, epochs, step, tl, val_loss, mt, sps, eta);
    fflush(stderr);
}

/* ---- run directory -------------------------------------------------------------------------- */

int run_is_dir(const char* p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

int run_dir_nonempty(const char* p) {
    DIR* d = opendir(p);
    if (!d) return 0;
    struct dirent* e;
    int any = 0;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) { any = 1; break; }
    closedir(d);
    return any;
}

int run_mkdir_p(const char* path) {
    char buf[1200];
    snprintf(buf, sizeof buf, "%s", path);
    for (char* p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir(buf, 0777) && errno != EEXIST) return 1;
            *p = '/';
        }
    if (mkdir(buf, 0777) && errno != EEXIST) return 1;
    return 0;
}

void run_clear_dir(const char* dir) {
    DIR* d = opendir(dir);
    if (!d) return;
    struct dirent* e;
    char p[1400];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);   /* best effort: what remains makes the rmdir fail, and the run refuses later */
    }
    closedir(d);
    rmdir(dir);
}

char* run_read_text(const char* path) {
    FILE* f = fopen(path, "rb");
    if (!f) return NULL;
    long n = -1;
    if (fseek(f, 0, SEEK_END) == 0) n = ftell(f);
    if (n < 0 || fseek(f, 0, SEEK_SET)) { fclose(f); return NULL; }
    char* s = xmalloc((size_t)n + 1);
    size_t r = fread(s, 1, (size_t)n, f);
    s[r] = 0;
    fclose(f);
    return s;
}

/* SWMR "auto": on for local and parallel filesystems, off on network filesystems whose
 * locking / ordering SWMR cannot rely on (NFS, SMB/CIFS, FUSE mounts) */
int run_swmr_auto(const char* dir) {
    struct statfs sf;
    if (statfs(dir, &sf)) return 1;
    unsigned long t = (unsigned long)sf.f_type;
    if (t == 0x6969UL || t == 0x517BUL || t == 0xFF534D42UL || t == 0xFE534D42UL || t == 0x65735546UL)
        return 0;
    return 1;
}

int run_swmr_setting(const Config* cfg, const char* run_dir) {
    if (!strcmp(cfg->log_swmr, "on")) return 1;
    if (!strcmp(cfg->log_swmr, "off")) return 0;
    return run_swmr_auto(run_dir);
}

void run_dir_path(const Config* cfg, char* out, size_t n) {
    size_t k = strlen(cfg->run_out);
    snprintf(out, n, "%s%s%s", cfg->run_out, k && cfg->run_out[k - 1] != '/' ? "/" : "", cfg->run_name);
}

int run_check_common(const Config* cfg) {
    if (cfg->epochs < 0) return run_err("train.epochs = %d: use 0 or more", cfg->epochs);
    if (cfg->batch < 1) return run_err("data.batch = %d: use 1 or more", cfg->batch);
    if (cfg->accum_steps < 1) return run_err("train.accum_steps = %d: use 1 or more", cfg->accum_steps);
    if (strcmp(cfg->dist_backend, "none") && cfg->dist_backend[0])
        return run_err("dist.backend '%s' is not built yet; use none", cfg->dist_backend);
    if (!cfg->data_path[0]) return run_err("data.path is empty: give the dataset file (vita phantom makes one)");
    for (int a = 0; a < 3; a++)
        if (cfg->crop[a] > 0 && cfg->crop[a] != cfg->vit.img[a] &&
            !(cfg->input_mode == LOADER_SLICE && a == 0))
            return run_err("data.crop [%d, %d, %d] differs from model.img_size [%d, %d, %d]: the model "
                           "input is the crop; set them equal", cfg->crop[0], cfg->crop[1], cfg->crop[2],
                           cfg->vit.img[0], cfg->vit.img[1], cfg->vit.img[2]);
    return 0;
}

int run_write_config(const char* run_dir, const char* yaml, int resume) {
    char p[1200], err[600];
    snprintf(p, sizeof p, "%s/config.yaml", run_dir);
    if (resume) {
        char* old = run_read_text(p);
        if (old && strcmp(old, yaml))
            fprintf(stderr, "vita: warning: the config differs from %s; the resumed run uses the new "
                    "one (the file is rewritten)\n", p);
        free(old);
    }
    if (write_file_atomic(p, yaml, strlen(yaml), err, sizeof err)) return run_err("%s", err);
    return 0;
}

int run_preempted(int tty, long step, const char* ck_dir) {
    fprintf(stderr, "%svita: %s: checkpoint at step %ld written to %s; exiting %d (resume with --resume)\n",
            tty ? "\n" : "", run_sig_name(run_stop_signal()), step, ck_dir, VITA_EXIT_PREEMPTED);
    return VITA_EXIT_PREEMPTED;
}

/* ---- metadata and attributes ---------------------------------------------------------------- */

void run_meta_add(RunMeta* md, const char* k, char* v_owned) {
    CHECK(md->n < RUN_META_MAX, "too many metadata entries");
    md->vals[md->n] = v_owned;
    md->kv[2 * md->n] = k;
    md->kv[2 * md->n + 1] = v_owned;
    md->n++;
}

void run_meta_free(RunMeta* md) {
    for (int i = 0; i < md->n; i++) free(md->vals[i]);
    md->n = 0;
}

void run_attr(RunAttrs* a, const char* k, const char* v) {
    RunLogSpec* s = a->spec;
    CHECK(s->n_attrs < 48 && a->n < 48, "too many root attributes");
    char* d = run_sdup(v ? v : "");
    a->buf[a->n++] = d;
    s->attr_key[s->n_attrs] = k;
    s->attr_val[s->n_attrs] = d;
    s->n_attrs++;
}

void run_attrs_free(RunAttrs* a) {
    for (int i = 0; i < a->n; i++) free(a->buf[i]);
    a->n = 0;
}

int run_env_attrs(RunAttrs* a, const Config* cfg, const Dataset* ds, const Ctx* c, int resumed) {
    char buf[512], err[512], hex[65] = "";
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)cfg->seed);
    run_attr(a, "seed", buf);
    run_attr(a, "world_size", "1");
    run_attr(a, "data_path", cfg->data_path);
    if (sha256_file(cfg->data_path, hex, err, sizeof err)) return run_err("%s", err);
    run_attr(a, "data_sha256", hex);
    {
        Sha256 h;
        unsigned char dg[32];
        sha256_init(&h);
        sha256_update(&h, ds->split, (size_t)ds->n);
        sha256_update(&h, ds->fold, (size_t)ds->n);
        sha256_final(&h, dg);
        sha256_hex(dg, hex);
        run_attr(a, "split_sha256", hex);
    }
    run_attr(a, "vita_version", VITA_VERSION);
    run_attr(a, "git_describe", VITA_GIT_DESCRIBE);
#ifdef __VERSION__
    snprintf(buf, sizeof buf, "%s %s",
#if defined(__clang__)
             "clang",
#else
             "gcc",
#endif
             __VERSION__);
#else
    snprintf(buf, sizeof buf, "unknown");
#endif
    run_attr(a, "compiler", buf);
    const char* blas = openblas_get_config();
    run_attr(a, "blas", blas ? blas : "unknown");
    snprintf(buf, sizeof buf, "%d", c->threads);
    run_attr(a, "threads", buf);
    run_attr(a, "precision", "fp32");   /* the only precision built; bf16 / auto run in fp32 */
    run_attr(a, "precision_requested", cfg->precision);
    run_attr(a, "device", ctx_device_name(c));
    int gpu = strcmp(ctx_device_name(c), "cpu") != 0;
    const char* na = gpu ? "unknown" : "none";
    run_attr(a, "gpu_name", na);
    run_attr(a, "driver", na);
    run_attr(a, "cuda", na);
    run_attr(a, "cublas", na);
    run_attr(a, "cudnn", na);
    run_attr(a, "nccl", na);
    const char* e;
    run_attr(a, "slurm_job_id", (e = getenv("SLURM_JOB_ID")) ? e : "");
    run_attr(a, "slurm_array_job_id", (e = getenv("SLURM_ARRAY_JOB_ID")) ? e : "");
    run_attr(a, "slurm_array_task_id", (e = getenv("SLURM_ARRAY_TASK_ID")) ? e : "");
    char host[256] = "";
    if (gethostname(host, sizeof host - 1)) snprintf(host, sizeof host, "unknown");
    run_attr(a, "host", host);
    time_t now = time(NULL);
    struct tm tmv;
    gmtime_r(&now, &tmv);
    strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tmv);
    /* a resumed log keeps its start_time (attributes the new spec does not set are copied) */
    run_attr(a, resumed ? "resume_time" : "start_time", buf);
    return 0;
}

/* ---- loaders and log ---- */
void run_loader_base(const Config* cfg, const VitConfig* vc, LoaderConfig* lc, int split,
                     int augment) {
    loader_defaults(lc);
    lc->mode = cfg->input_mode;
    lc->context = cfg->input_context > 0 ? cfg->input_context : 1;
    lc->crop[0] = cfg->input_mode == LOADER_SLICE ? 1 : vc->img[0];
    lc->crop[1] = vc->img[1];
    lc->crop[2] = vc->img[2];
    lc->batch = cfg->batch;
    lc->pos_fraction = cfg->pos_fraction;
    lc->split = split;
    lc->fold = cfg->fold;
    lc->augment = augment;
    lc->seed = cfg->seed;
}

int run_open_log(RunLog* lg, const char* path, const RunLogSpec* spec, int resume, long steps,
                 long epochs, long align, char* err, size_t errlen) {
    dataset_h5_lock();
    int rc = resume ? runlog_resume(lg, path, spec, steps, epochs, align, err, errlen)
                    : runlog_create(lg, path, spec, err, errlen);
    dataset_h5_unlock();
    return rc;
}

int run_logged_weights_sha(const char* log_path, char sha[65]) {
    char rec[80], e[256];
    if (access(log_path, R_OK) || h5_read_str_attr(log_path, "/", "weights_sha256", rec, sizeof rec, e, sizeof e) ||
        strlen(rec) != 64)
        return 1;
    memcpy(sha, rec, 65);
    return 0;
}

void run_keep_started_sha(const char* log_path, const char* weights, char sha[65]) {
    char rec[65];
    if (run_logged_weights_sha(log_path, rec) || !strcmp(rec, sha)) return;
    fprintf(stderr, "vita: warning: %s changed since this run started (sha256 %.12s... then, %.12s... now); "
            "the run continues from its own checkpoint and its log keeps naming the weights it started from\n",
            weights, rec, sha);
    memcpy(sha, rec, 65);
}

int run_flush_log(RunLog* lg, const char* log_path) {
    dataset_h5_lock();
    int r = runlog_flush(lg);
    dataset_h5_unlock();
    return r ? run_err("%s: cannot write the log", log_path) : 0;
}
