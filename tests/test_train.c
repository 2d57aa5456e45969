/* tests/test_train.c — the fine-tuning loop end to end on a tiny phantom (32 cases of
 * 16x32x32) and a shrunk vit-tiny-3d (img 16x32x32, patch 8x16x16 = 8 tokens, dim 32,
 * depth 2, heads 2):
 *   1. classify, 3 epochs: log.h5 holds every SPEC §4 dataset with the right shapes, the root,
 *      /align, /summary and /test attributes; /steps/loss equals the losses the run reported
 *      (the on_step hook) bit for bit; /steps/lr follows train_lr and the layer decay
 *   2. segment and superres, 2 epochs: finite validation and test metrics
 *   3. resume: run A uninterrupted (3 epochs, deterministic); run B killed with SIGKILL in the
 *      middle of epoch 2, `latest` then pointing at a half-written checkpoint (fallback), then
 *      --resume; run C stopped by SIGTERM mid epoch 2 (exit 75), then --resume: /steps/loss
 *      and the final weights of B and C equal A's bit for bit
 *   4. linear_probe / freeze_first_k: frozen parameters bit-unchanged, the others trained
 *   5. accumulation: accum 2 x batch 2 == accum 1 x batch 4 on the same samples, to fp32
 *      tolerance (stated below; no drop-path, no augmentation, BN-free head)
 *   6. train.lr = 1e30: exit 1 naming the step and a tensor; skip_nonfinite: runs to the end
 * plus the schedule / convergence-summary functions, init from a pretrained checkpoint
 * (encoder + head.*: epoch 0 reproduces the best epoch's metric) and the refusal of an
 * existing run directory.
 * Every run is a forked child (the parent never starts OpenMP or BLAS threads), so a run can
 * be killed like a real process. */
#include "testing.h"
#include "run_child.h"
#include "../engine/train.h"
#include "../engine/phantom.h"
#include "../engine/safetensors.h"
#include "../engine/h5read.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <signal.h>
#include <sys/stat.h>
#include <time.h>

static char g_root[256], g_data[320];
static const int DEPTH = 2;

/* ---- runs in children ------------------------------------------------------------------------ */

static void make_cfg(Config* c, const char* name, const char* const* extra, int n_extra) {
    char run_out[300], data[340], nm[128];
    snprintf(run_out, sizeof run_out, "run.out=%s", g_root);
    snprintf(data, sizeof data, "data.path=%s", g_data);
    snprintf(nm, sizeof nm, "run.name=%s", name);
    const char* base[] = {
        nm, run_out, data, "run.deterministic=true", "run.seed=3",
        "model.preset=vit-tiny-3d", "model.img_size=[16,32,32]", "model.patch=[8,16,16]",
        "model.dim=32", "model.depth=2", "model.heads=2", "model.drop_path=0.1",
        "task.name=classify", "task.head.feature_size=4", "task.head.hidden=16",
        "data.batch=2", "data.workers=1", "data.augment=true",
        "train.epochs=3", "train.lr=1.0e-3", "train.min_lr=1.0e-5", "train.warmup_epochs=1",
        "train.clip_grad=1.0", "train.layer_decay=0.75",
        "align.layers=[1,2,norm]", "align.probe.n_images=8",
        "align.estimators=[mmd2_paired,mmd2_paired_se,mmd2_u,cka_linear,mean_cos_dist]",
    };
    char err[1024];
    config_default(c);
    if (child_load_cfg(c, config_load, base, (int)(sizeof base / sizeof base[0]), extra, n_extra,
                       err, sizeof err)) {
        fprintf(stderr, "config: %s\n", err);
        exit(3);
    }
}

/* runs cfg in a child (tests/run_child.h); the exit code, or 128 + signal */
static int run_child(const Config* cfg, int resume, ChildHook* hook) {
    return run_in_child(g_root, train_run, cfg, resume, hook);
}

static void show_err(const char* name) { child_show_err(g_root, name); }

static int file_contains(const char* path, const char* needle) {
    FILE* f = fopen(path, "r");
    if (!f) return 0;
    char line[2048];
    int hit = 0;
    while (!hit && fgets(line, sizeof line, f)) hit = strstr(line, needle) != NULL;
    fclose(f);
    return hit;
}

/* ---- HDF5 reading ------------------------------------------------------------------------- */

static double* h5_read(const char* path, const char* name, int* rank, long* d0, long* d1) {
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return NULL;
    double* out = NULL;
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    if (d >= 0) {
        hid_t sp = H5Dget_space(d);
        hsize_t dims[4] = {0, 0, 0, 0};
        int r = H5Sget_simple_extent_ndims(sp);
        H5Sget_simple_extent_dims(sp, dims, NULL);
        long n = (long)dims[0] * (r > 1 ? (long)dims[1] : 1);
        out = calloc(n ? n : 1, sizeof(double));
        H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, out);
        *rank = r;
        *d0 = (long)dims[0];
        *d1 = r > 1 ? (long)dims[1] : 1;
        H5Sclose(sp);
        H5Dclose(d);
    }
    H5Fclose(f);
    return out;
}

static int h5_has_attr(const char* path, const char* obj, const char* attr) {
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return 0;
    int ok = 0;
    H5E_BEGIN_TRY { ok = H5Aexists_by_name(f, obj, attr, H5P_DEFAULT) > 0; } H5E_END_TRY;
    H5Fclose(f);
    return ok;
}

/* numeric attribute (first element), NaN when absent */
static double h5_attr(const char* path, const char* obj, const char* attr) {
    double v = NAN;
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return v;
    H5E_BEGIN_TRY {
        hid_t a = H5Aopen_by_name(f, obj, attr, H5P_DEFAULT, H5P_DEFAULT);
        if (a >= 0) {
            hid_t sp = H5Aget_space(a);
            hssize_t n = H5Sget_simple_extent_npoints(sp);
            double* buf = calloc(n > 0 ? n : 1, sizeof(double));
            if (H5Aread(a, H5T_NATIVE_DOUBLE, buf) >= 0) v = buf[0];
            free(buf);
            H5Sclose(sp);
            H5Aclose(a);
        }
    } H5E_END_TRY;
    H5Fclose(f);
    return v;
}

static double* read_all(const char* path, const char* name, long* n) {
    int r;
    long a, b;
    double* x = h5_read(path, name, &r, &a, &b);
    *n = x ? a * b : 0;
    return x;
}

static void log_path(char* out, size_t n, const char* run) { snprintf(out, n, "%s/%s/log.h5", g_root, run); }

/* the newest step checkpoint's weights file of a run */
static int last_ckpt(const char* run, char* out, size_t n) {
    char p[400];
    snprintf(p, sizeof p, "%s/%s/checkpoints/latest", g_root, run);
    FILE* f = fopen(p, "r");
    if (!f) return 1;
    char name[64] = "";
    if (!fgets(name, sizeof name, f)) name[0] = 0;
    fclose(f);
    name[strcspn(name, "\r\n")] = 0;
    snprintf(out, n, "%s/%s/checkpoints/%s.safetensors", g_root, run, name);
    return 0;
}

/* ---- tests ---------------------------------------------------------------------------------- */

static long steps_per_epoch;   /* from run 1 */

static void test_classify_log(void) {
    printf("== 1. classify, 3 epochs: the log\n");
    Config cfg;
    make_cfg(&cfg, "cls", NULL, 0);
    char trace[400];
    snprintf(trace, sizeof trace, "%s/cls.trace", g_root);
    unlink(trace);
    ChildHook hk = {trace, -1, 0};
    int rc = run_child(&cfg, 0, &hk);
    if (!t_true("classify run exits 0", rc == 0)) { show_err("cls"); return; }
    char lp[400];
    log_path(lp, sizeof lp, "cls");
    int r;
    long n, c;
    double* loss = h5_read(lp, "/steps/loss", &r, &n, &c);
    t_true("/steps/loss exists, rank 1", loss && r == 1);
    if (!loss) return;
    steps_per_epoch = n / 3;
    t_true("3 epochs of equal step counts", n > 0 && n % 3 == 0);
    /* reported losses (the hook) equal the logged ones bit for bit */
    FILE* f = fopen(trace, "r");
    long k = 0, bad = 0, st;
    double v;
    while (f && fscanf(f, "%ld %la", &st, &v) == 2) {
        if (st != k || k >= n || memcmp(&v, &loss[k], sizeof v)) bad++;
        k++;
    }
    if (f) fclose(f);
    t_true("per-step losses reported == /steps/loss (bit for bit, every step)", k == n && bad == 0);
    const char* steps1[] = {"/steps/step", "/steps/epoch", "/steps/grad_norm", "/steps/time_s"};
    for (int i = 0; i < 4; i++) {
        long a, b;
        double* x = h5_read(lp, steps1[i], &r, &a, &b);
        char what[128];
        snprintf(what, sizeof what, "%s [%ld]", steps1[i], n);
        t_true(what, x && r == 1 && a == n);
        if (x && !strcmp(steps1[i], "/steps/step")) {
            int ok = 1;
            for (long j = 0; j < a; j++) ok &= x[j] == j;
            t_true("/steps/step = 0..n-1", ok);
        }
        free(x);
    }
    long a, b;
    double* lr = h5_read(lp, "/steps/lr", &r, &a, &b);
    t_true("/steps/lr [n, depth + 2]", lr && r == 2 && a == n && b == DEPTH + 2);
    if (lr && a == n && b == DEPTH + 2) {
        double worst = 0;
        for (long s = 0; s < n; s++) {
            double want = train_lr(1e-3, 1e-5, 1.0, 3, steps_per_epoch, s);
            for (int g = 0; g < DEPTH + 2; g++) {
                double w = want * pow(0.75, DEPTH + 1 - g);
                double e = fabs(lr[s * b + g] - w) / (w > 0 ? w : 1);
                if (e > worst) worst = e;
            }
        }
        t_check("/steps/lr = warmup+cosine x 0.75^(depth+1-group) (max rel err)", worst, 1e-6);
        t_true("first step of warmup has lr 0 (MAE's schedule)", lr[b - 1] == 0);
    }
    free(lr);
    const char* ep1[] = {"/epochs/epoch", "/epochs/train_loss", "/epochs/val_loss", "/epochs/val_metric",
                         "/epochs/time_s", "/epochs/samples_per_s"};
    for (int i = 0; i < 6; i++) {
        double* x = h5_read(lp, ep1[i], &r, &a, &b);
        char what[128];
        snprintf(what, sizeof what, "%s [4] (epochs 0..3)", ep1[i]);
        t_true(what, x && r == 1 && a == 4);
        if (x && !strcmp(ep1[i], "/epochs/val_metric")) {
            int ok = 1;
            for (int e = 0; e < 4; e++) ok &= x[e] >= 0 && x[e] <= 1;
            t_true("val_metric (auroc) in [0, 1] every epoch, incl. epoch 0", ok);
        }
        if (x && !strcmp(ep1[i], "/epochs/train_loss"))
            t_true("train_loss: NaN at epoch 0, finite after", isnan(x[0]) && isfinite(x[1]) && isfinite(x[3]));
        free(x);
    }
    double* vm = h5_read(lp, "/epochs/val_metrics", &r, &a, &b);
    t_true("/epochs/val_metrics [4, 4] (auroc, ap, accuracy, balanced_accuracy)", vm && r == 2 && a == 4 && b == 4);
    t_true("/epochs/val_metrics attr metric_names", h5_has_attr(lp, "/epochs/val_metrics", "metric_names"));
    free(vm);
    double* ae = h5_read(lp, "/align/epoch", &r, &a, &b);
    t_true("/align/epoch [4]", ae && r == 1 && a == 4);
    free(ae);
    const char* al[] = {"/align/mmd2_paired", "/align/mmd2_paired_se", "/align/mmd2_u", "/align/cka_linear",
                        "/align/mean_cos_dist", "/align/weight_dist"};
    for (int i = 0; i < 6; i++) {
        double* x = h5_read(lp, al[i], &r, &a, &b);
        char what[128];
        snprintf(what, sizeof what, "%s [4, 3 layers]", al[i]);
        t_true(what, x && r == 2 && a == 4 && b == 3);
        if (x && !strcmp(al[i], "/align/weight_dist"))
            t_true("weight_dist 0 at epoch 0, > 0 after training", x[0] == 0 && x[3 * 3] > 0);
        if (x && !strcmp(al[i], "/align/mmd2_paired"))
            t_true("mmd2_paired ~0 at epoch 0 (|x| < 1e-6: fp32 kernel sums), > 0 after",
                   fabs(x[0]) < 1e-6 && fabs(x[1]) < 1e-6 && fabs(x[2]) < 1e-6 && x[9] > 0);
        free(x);
    }
    const char* aat[] = {"bandwidths", "bandwidth_rule", "feature_kind", "probe_n_images", "probe_n_tokens", "noise_floor"};
    for (int i = 0; i < 6; i++) {
        char what[128];
        snprintf(what, sizeof what, "/align attr %s", aat[i]);
        t_true(what, h5_has_attr(lp, "/align", aat[i]));
    }
    const char* root[] = {"format", "version", "config", "task", "model", "init", "weights", "weights_sha256",
                          "seed", "world_size", "data_path", "data_sha256", "split_sha256", "vita_version",
                          "git_describe", "compiler", "blas", "threads", "precision", "device", "gpu_name",
                          "driver", "cuda", "cublas", "cudnn", "nccl", "slurm_job_id", "slurm_array_job_id",
                          "slurm_array_task_id", "host", "start_time"};
    int missing = 0;
    for (size_t i = 0; i < sizeof root / sizeof root[0]; i++)
        if (!h5_has_attr(lp, "/", root[i])) { printf("  missing root attr %s\n", root[i]); missing++; }
    t_true("every SPEC §4 root attribute present", missing == 0);
    const char* sm[] = {"best_epoch", "best_val_metric", "epochs_to_90", "epochs_to_95", "auc_val_curve",
                        "final_mmd2", "wall_time_s"};
    missing = 0;
    for (int i = 0; i < 7; i++)
        if (!h5_has_attr(lp, "/summary", sm[i])) { printf("  missing /summary attr %s\n", sm[i]); missing++; }
    t_true("every /summary attribute present", missing == 0);
    t_true("/test auroc and loss present", h5_has_attr(lp, "/test", "auroc") && h5_has_attr(lp, "/test", "loss"));
    double be = h5_attr(lp, "/summary", "best_epoch");
    t_true("best_epoch in 0..3", be >= 0 && be <= 3);
    char p[400];
    snprintf(p, sizeof p, "%s/cls/checkpoints/best.safetensors", g_root);
    StFile sf;
    char err[512];
    int ok = st_open(&sf, p, err, sizeof err) == 0;
    t_true("best.safetensors: encoder + head tensors, metadata model/head/task", ok &&
           st_find(&sf, "blocks.1.mlp.fc2.weight") && st_find(&sf, "head.fc2.weight") &&
           st_meta(&sf, "model") && st_meta(&sf, "head") && st_meta(&sf, "task"));
    if (ok) st_close(&sf);
    snprintf(p, sizeof p, "%s/cls/config.yaml", g_root);
    t_true("config.yaml written", access(p, R_OK) == 0);
    /* init from weights: the best checkpoint (encoder + head.*) reproduces its validation
     * metric at epoch 0 of a new run, bit for bit */
    {
        char wset[500];
        snprintf(wset, sizeof wset, "model.weights=%s/cls/checkpoints/best.safetensors", g_root);
        const char* ex[] = {wset, "train.epochs=1", "align.every=0"};
        Config pc;
        make_cfg(&pc, "pre", ex, 3);
        int prc = run_child(&pc, 0, NULL);
        if (!t_true("run from pretrained weights (encoder + head) exits 0", prc == 0)) show_err("pre");
        char pl[400], ibuf[64] = "", e2[256];
        log_path(pl, sizeof pl, "pre");
        long pn, cn;
        double* pv = read_all(pl, "/epochs/val_metric", &pn);
        double* cv = read_all(lp, "/epochs/val_metric", &cn);
        int bi = (int)h5_attr(lp, "/summary", "best_epoch");
        t_true("epoch 0 of the pretrained run == the best epoch's val_metric (bit for bit)",
               pv && cv && bi >= 0 && bi < cn && !memcmp(&pv[0], &cv[bi], sizeof(double)));
        t_true("root attr init = pretrained", !h5_read_str_attr(pl, "/", "init", ibuf, sizeof ibuf, e2, sizeof e2) &&
               !strcmp(ibuf, "pretrained"));
        char sha[80] = "";
        t_true("root attr weights_sha256: 64 hex digits",
               !h5_read_str_attr(pl, "/", "weights_sha256", sha, sizeof sha, e2, sizeof e2) && strlen(sha) == 64);
        free(pv);
        free(cv);
    }
    /* run dir exists, no --resume -> refuse */
    rc = run_child(&cfg, 0, NULL);
    char ef[400];
    snprintf(ef, sizeof ef, "%s/cls.err", g_root);
    t_true("existing run dir without --resume: exit 1 naming run.overwrite", rc == 1 && file_contains(ef, "run.overwrite"));
    free(loss);
}

static void test_dense(void) {
    printf("== 2. segment and superres, 2 epochs\n");
    const char* seg[] = {"task.name=segment", "task.num_classes=4", "train.epochs=2"};
    const char* sr[] = {"task.name=superres", "train.epochs=2"};
    const char* const* sets[2] = {seg, sr};
    int ns[2] = {3, 2};
    const char* names[2] = {"seg", "sr"};
    const char* main_m[2] = {"dice_mean", "psnr"};
    for (int i = 0; i < 2; i++) {
        Config cfg;
        make_cfg(&cfg, names[i], sets[i], ns[i]);
        int rc = run_child(&cfg, 0, NULL);
        char what[128];
        snprintf(what, sizeof what, "%s run exits 0", names[i]);
        if (!t_true(what, rc == 0)) { show_err(names[i]); continue; }
        char lp[400];
        log_path(lp, sizeof lp, names[i]);
        int r;
        long a, b;
        double* vm = h5_read(lp, "/epochs/val_metric", &r, &a, &b);
        int ok = vm && a == 3;
        for (long e = 0; ok && e < a; e++) ok &= isfinite(vm[e]);
        snprintf(what, sizeof what, "%s: val_metric finite at epochs 0..2", names[i]);
        t_true(what, ok);
        double* vl = h5_read(lp, "/epochs/val_loss", &r, &a, &b);
        ok = vl && a == 3;
        for (long e = 0; ok && e < a; e++) ok &= isfinite(vl[e]);
        snprintf(what, sizeof what, "%s: val_loss finite", names[i]);
        t_true(what, ok);
        double tm = h5_attr(lp, "/test", main_m[i]);
        snprintf(what, sizeof what, "%s: /test %s finite (%.4f)", names[i], main_m[i], tm);
        t_true(what, isfinite(tm));
        free(vm);
        free(vl);
    }
}

static int same_weights(const char* pa, const char* pb) {
    StFile a, b;
    char err[512];
    if (st_open(&a, pa, err, sizeof err)) { printf("  %s\n", err); return 0; }
    if (st_open(&b, pb, err, sizeof err)) { printf("  %s\n", err); st_close(&a); return 0; }
    int ok = a.data_len == b.data_len && a.n == b.n && !memcmp(a.data, b.data, a.data_len);
    st_close(&a);
    st_close(&b);
    return ok;
}

static void test_resume(void) {
    printf("== 3. resume bit-identity (deterministic)\n");
    const char* ex[] = {"train.keep_checkpoints=3"};
    Config A, B, C;
    make_cfg(&A, "resA", ex, 1);
    make_cfg(&B, "resB", ex, 1);
    make_cfg(&C, "resC", ex, 1);
    long S = steps_per_epoch > 0 ? steps_per_epoch : 7;
    int rc = run_child(&A, 0, NULL);
    if (!t_true("run A (uninterrupted) exits 0", rc == 0)) { show_err("resA"); return; }
    ChildHook kill = {NULL, S + S / 2, SIGKILL};
    rc = run_child(&B, 0, &kill);
    t_true("run B killed by SIGKILL mid epoch 2", rc == 128 + SIGKILL);
    /* a checkpoint write interrupted: `latest` names a step whose state is truncated */
    char p[500];
    long fake = 2 * S + 1;
    snprintf(p, sizeof p, "%s/resB/checkpoints/step_%08ld.state", g_root, fake);
    FILE* f = fopen(p, "w");
    if (f) { fputs("VITASTAT", f); fclose(f); }
    snprintf(p, sizeof p, "%s/resB/checkpoints/step_%08ld.safetensors", g_root, fake);
    f = fopen(p, "w");
    if (f) { fputs("garbage", f); fclose(f); }
    snprintf(p, sizeof p, "%s/resB/checkpoints/latest", g_root);
    f = fopen(p, "w");
    if (f) { fprintf(f, "step_%08ld\n", fake); fclose(f); }
    rc = run_child(&B, 1, NULL);
    if (!t_true("run B --resume (falling back past the broken checkpoint) exits 0", rc == 0)) show_err("resB");
    char ef[400];
    snprintf(ef, sizeof ef, "%s/resB.err", g_root);
    t_true("the fallback is reported", file_contains(ef, "using step_"));
    ChildHook term = {NULL, S + S / 2, SIGTERM};
    rc = run_child(&C, 0, &term);
    t_true("run C: SIGTERM mid epoch 2 -> exit 75", rc == 75);
    rc = run_child(&C, 1, NULL);
    if (!t_true("run C --resume exits 0", rc == 0)) show_err("resC");

    char la[400], lb[400], lc[400];
    log_path(la, sizeof la, "resA");
    log_path(lb, sizeof lb, "resB");
    log_path(lc, sizeof lc, "resC");
    const char* dsn[] = {"/steps/loss", "/steps/grad_norm", "/epochs/val_metric", "/align/mmd2_paired"};
    for (int i = 0; i < 4; i++) {
        long na, nb, nc;
        double* xa = read_all(la, dsn[i], &na);
        double* xb = read_all(lb, dsn[i], &nb);
        double* xc = read_all(lc, dsn[i], &nc);
        char what[160];
        snprintf(what, sizeof what, "%s: killed+resumed == uninterrupted (bit for bit, %ld values)", dsn[i], na);
        t_true(what, xa && xb && na == nb && na > 0 && !memcmp(xa, xb, sizeof(double) * na));
        snprintf(what, sizeof what, "%s: SIGTERM+resumed == uninterrupted (bit for bit)", dsn[i]);
        t_true(what, xa && xc && na == nc && na > 0 && !memcmp(xa, xc, sizeof(double) * na));
        free(xa); free(xb); free(xc);
    }
    char wa[400], wb[400], wc[400];
    int ok = !last_ckpt("resA", wa, sizeof wa) && !last_ckpt("resB", wb, sizeof wb) && !last_ckpt("resC", wc, sizeof wc);
    t_true("final weights: killed+resumed == uninterrupted (memcmp of the data)", ok && same_weights(wa, wb));
    t_true("final weights: SIGTERM+resumed == uninterrupted", ok && same_weights(wa, wc));
    char ba[400], bb[400];
    snprintf(ba, sizeof ba, "%s/resA/checkpoints/best.safetensors", g_root);
    snprintf(bb, sizeof bb, "%s/resB/checkpoints/best.safetensors", g_root);
    t_true("best.safetensors identical too", same_weights(ba, bb));
    double wa_ = h5_attr(la, "/summary", "best_val_metric"), wb_ = h5_attr(lb, "/summary", "best_val_metric");
    t_true("/summary best_val_metric identical", wa_ == wb_);
}

/* max |a - b| over tensors whose name starts with prefix (or not, with neg) */
static double tensor_diff(const StFile* a, const StFile* b, const char* prefix, int neg, double* ref_scale) {
    double worst = 0, scale = 0;
    for (int i = 0; i < a->n; i++) {
        const StTensor* ta = &a->t[i];
        int match = !strncmp(ta->name, prefix, strlen(prefix));
        if (neg) match = !match;
        if (!match) continue;
        const StTensor* tb = st_find(b, ta->name);
        if (!tb || tb->numel != ta->numel) return INFINITY;
        float* x = malloc(sizeof(float) * ta->numel);
        float* y = malloc(sizeof(float) * ta->numel);
        st_read_f32(a, ta, x);
        st_read_f32(b, tb, y);
        for (long k = 0; k < ta->numel; k++) {
            double d = fabs((double)x[k] - y[k]);
            if (d > worst) worst = d;
        }
        free(x);
        free(y);
    }
    (void)scale;
    if (ref_scale) *ref_scale = worst;
    return worst;
}

static void test_freeze(void) {
    printf("== 4. linear_probe and freeze_first_k\n");
    const char* lp[] = {"train.mode=linear_probe", "train.epochs=1", "align.every=0"};
    const char* fk[] = {"train.mode=freeze_first_k", "train.freeze_k=1", "train.epochs=1", "align.every=0"};
    Config c1, c2;
    make_cfg(&c1, "lprobe", lp, 3);
    make_cfg(&c2, "freezek", fk, 4);
    int rc = run_child(&c1, 0, NULL);
    if (!t_true("linear_probe run exits 0", rc == 0)) show_err("lprobe");
    rc = run_child(&c2, 0, NULL);
    if (!t_true("freeze_first_k run exits 0", rc == 0)) show_err("freezek");
    for (int r = 0; r < 2; r++) {
        const char* name = r ? "freezek" : "lprobe";
        char pi[400], pf[400], err[512];
        snprintf(pi, sizeof pi, "%s/%s/checkpoints/init.safetensors", g_root, name);
        if (last_ckpt(name, pf, sizeof pf)) { t_true("final checkpoint exists", 0); continue; }
        StFile a, b;
        if (st_open(&a, pi, err, sizeof err) || st_open(&b, pf, err, sizeof err)) {
            printf("  %s\n", err);
            t_true("init / final checkpoints open", 0);
            continue;
        }
        if (!r) {
            /* every encoder tensor (not head.*) bit-unchanged; the head trained */
            t_check("linear_probe: max |Δ| over every encoder tensor", tensor_diff(&a, &b, "head.", 1, NULL), 0);
            t_true("linear_probe: the head changed", tensor_diff(&a, &b, "head.", 0, NULL) > 0);
        } else {
            double d = 0;
            const char* frozen[] = {"patch_embed.", "cls_token", "pos_embed", "blocks.0."};
            for (int i = 0; i < 4; i++) d = fmax(d, tensor_diff(&a, &b, frozen[i], 0, NULL));
            t_check("freeze_first_k=1: max |Δ| over stem + block 0", d, 0);
            t_true("freeze_first_k=1: block 1, norm and head changed",
                   tensor_diff(&a, &b, "blocks.1.", 0, NULL) > 0 && tensor_diff(&a, &b, "norm.", 0, NULL) > 0 &&
                   tensor_diff(&a, &b, "head.", 0, NULL) > 0);
        }
        st_close(&a);
        st_close(&b);
    }
}

static void test_accum(void) {
    printf("== 5. gradient accumulation: accum 2 x batch 2 == accum 1 x batch 4\n");
    const char* common[] = {"train.epochs=1", "train.steps_per_epoch=3", "model.drop_path=0", "train.drop_path=0",
                            "data.augment=false", "task.head.batchnorm=false", "train.warmup_epochs=0",
                            "align.every=0", "train.clip_grad=0"};
    const char* x[16], *y[16];
    int n = sizeof common / sizeof common[0];
    for (int i = 0; i < n; i++) x[i] = y[i] = common[i];
    x[n] = "data.batch=2";
    x[n + 1] = "train.accum_steps=2";
    y[n] = "data.batch=4";
    y[n + 1] = "train.accum_steps=1";
    Config cx, cy;
    make_cfg(&cx, "accum2", x, n + 2);
    make_cfg(&cy, "accum1", y, n + 2);
    int rc1 = run_child(&cx, 0, NULL), rc2 = run_child(&cy, 0, NULL);
    if (!t_true("both runs exit 0", rc1 == 0 && rc2 == 0)) { show_err("accum2"); show_err("accum1"); return; }
    char la[400], lb[400];
    log_path(la, sizeof la, "accum2");
    log_path(lb, sizeof lb, "accum1");
    long na, nb;
    double* a = read_all(la, "/steps/loss", &na);
    double* b = read_all(lb, "/steps/loss", &nb);
    double worst = 0;
    for (long i = 0; a && b && i < na && i < nb; i++) worst = fmax(worst, fabs(a[i] - b[i]) / fabs(b[i]));
    t_true("3 steps each", na == 3 && nb == 3);
    /* stated tolerance: the losses are means of the same 4 samples summed in another order
     * (fp32 forward, double loss reduction) -> 1e-5 relative; the weights after 3 AdamW steps
     * differ by fp32 rounding of the gradient sums, amplified by Adam's normalisation where a
     * gradient is tiny -> max |Δw| <= 1e-3 of the largest update max |w - w0| */
    t_check("per-step loss, max relative difference", worst, 1e-5);
    char wa[400], wb[400], ia[400], err[512];
    last_ckpt("accum2", wa, sizeof wa);
    last_ckpt("accum1", wb, sizeof wb);
    snprintf(ia, sizeof ia, "%s/accum1/checkpoints/init.safetensors", g_root);
    StFile A, B, I;
    if (st_open(&A, wa, err, sizeof err) || st_open(&B, wb, err, sizeof err) || st_open(&I, ia, err, sizeof err)) {
        t_true("checkpoints open", 0);
        free(a); free(b);
        return;
    }
    double d = tensor_diff(&A, &B, "", 0, NULL);
    double upd = tensor_diff(&B, &I, "", 0, NULL);
    printf("  max |w(accum2) - w(batch4)| = %.3e, max |w - w0| = %.3e\n", d, upd);
    t_check("final weights: max |Δw| / max |w - w0|", d / upd, 1e-3);
    st_close(&A); st_close(&B); st_close(&I);
    free(a); free(b);
}

static void test_nonfinite(void) {
    printf("== 6. non-finite loss / gradient\n");
    const char* ex[] = {"train.epochs=1", "train.warmup_epochs=0", "train.clip_grad=0"};
    Config c;
    make_cfg(&c, "nan_stop", ex, 3);
    c.lr = 1e30;                    /* beyond the config's range on purpose */
    int rc = run_child(&c, 0, NULL);
    char ef[400];
    snprintf(ef, sizeof ef, "%s/nan_stop.err", g_root);
    t_true("lr = 1e30: exit 1", rc == 1);
    int named = file_contains(ef, "step ") && file_contains(ef, "non-finite") &&
                (file_contains(ef, "first non-finite gradient: ") || file_contains(ef, "first non-finite weight: "));
    t_true("the message names the step and the first non-finite tensor", named);
    if (!named || rc != 1) show_err("nan_stop");
    Config s;
    const char* ex2[] = {"train.epochs=1", "train.warmup_epochs=0", "train.clip_grad=0", "train.skip_nonfinite=true"};
    make_cfg(&s, "nan_skip", ex2, 4);
    s.lr = 1e30;
    rc = run_child(&s, 0, NULL);
    if (!t_true("skip_nonfinite: the run continues to the end (exit 0)", rc == 0)) show_err("nan_skip");
    char lp[400];
    log_path(lp, sizeof lp, "nan_skip");
    double sk = h5_attr(lp, "/summary", "skipped_steps");
    t_true("skipped steps counted in /summary (> 0)", sk > 0);
    snprintf(ef, sizeof ef, "%s/nan_skip.err", g_root);
    t_true("skipped steps reported", file_contains(ef, "step skipped"));
}

static void test_summary_math(void) {
    printf("== 0. schedule and convergence summary (pure functions)\n");
    t_check("train_lr: step 0 of warmup = 0", train_lr(1e-3, 1e-6, 2, 10, 5, 0), 0);
    t_check("train_lr: mid warmup = lr/2", fabs(train_lr(1e-3, 1e-6, 2, 10, 5, 5) - 5e-4), 1e-15);
    t_check("train_lr: end of warmup = lr", fabs(train_lr(1e-3, 1e-6, 2, 10, 5, 10) - 1e-3), 1e-15);
    t_check("train_lr: end of schedule = min_lr", fabs(train_lr(1e-3, 1e-6, 2, 10, 5, 50) - 1e-6), 1e-15);
    t_check("train_lr: cosine midpoint", fabs(train_lr(1e-3, 0, 0, 10, 5, 25) - 5e-4), 1e-15);
    double up[] = {0.5, 0.6, 0.9, 0.8};
    double down[] = {1.0, 0.5, 0.2, 0.3};
    double flat[] = {0.7, 0.6, 0.7};
    double nanc[] = {0.5, NAN, 1.0};
    t_true("best epoch (higher / lower is better)", train_best_epoch(up, 4, 1) == 2 && train_best_epoch(down, 4, 0) == 2);
    t_true("epochs_to_90: higher-is-better", train_epochs_to(up, 4, 1, 0.9) == 2);
    t_true("epochs_to_X: sign flipped for lower-is-better (50% -> 1, 90% -> 2)",
           train_epochs_to(down, 4, 0, 0.5) == 1 && train_epochs_to(down, 4, 0, 0.9) == 2);
    t_true("never improved: epochs_to = 0, auc = 0", train_epochs_to(flat, 3, 1, 0.9) == 0 && train_auc_curve(flat, 3, 1) == 0);
    /* up: u = 0, .25, 1, .75 -> trapezoids .125 + .625 + .875 = 1.625, / 3 epochs */
    t_check("auc_val_curve = trapezoid of the normalised curve / epochs", fabs(train_auc_curve(up, 4, 1) - 1.625 / 3), 1e-12);
    t_true("NaN epochs skipped", train_best_epoch(nanc, 3, 1) == 2 && train_epochs_to(nanc, 3, 1, 0.9) == 2);
    t_true("metric directions", train_metric_higher_is_better("dice_mean") && train_metric_higher_is_better("psnr") &&
           !train_metric_higher_is_better("hd95") && !train_metric_higher_is_better("mae"));
}

int main(void) {
    if (child_workdir(g_root, sizeof g_root, g_data, sizeof g_data, "test_train")) return 1;
    /* the dataset, written in a child (phantom_write runs OpenMP) */
    if (!t_true("phantom dataset written", child_phantom(g_data, "test_train"))) return t_summary();
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    test_summary_math();
    test_classify_log();
    test_dense();
    test_resume();
    test_freeze();
    test_accum();
    test_nonfinite();
    child_cleanup(g_root, t_failed);
    return t_summary();
}
