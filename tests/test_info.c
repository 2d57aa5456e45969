/* tests/test_info.c — `vita info FILE.h5` dispatch (engine/info.c): a vita dataset (validation
 * ok), a finished run log (runlog_create, rows, /summary, /test; --config), a log held open by
 * a SWMR writer in another process (read while it is written), the same log after its writer
 * died without closing (status flags set: h5clear -s named), a features file, and foreign
 * HDF5 files (no format, an unknown format) that get the generic listing and never a
 * "validation: FAILED". Output is captured from a forked child. */
#include <hdf5.h>
#include <signal.h>
#include <sys/stat.h>

#include "../engine/dataset.h"
#include "../engine/info.h"
#include "../engine/phantom.h"
#include "../engine/runlog.h"
#include "testing.h"

static char g_dir[256];

/* runs info_print_h5 in a child with stdout to a pipe; returns the text (malloc'ed), *rc the
 * exit code */
static char* capture(const char* path, int show_config, int* rc) {
    int p[2];
    if (pipe(p)) abort();
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        dup2(p[1], 1);
        int r = info_print_h5(path, show_config);
        fflush(stdout);
        _exit(r);
    }
    close(p[1]);
    size_t cap = 1 << 16, n = 0;
    char* buf = malloc(cap);
    for (;;) {
        if (n + 4096 > cap) buf = realloc(buf, cap *= 2);
        ssize_t k = read(p[0], buf + n, cap - n - 1);
        if (k <= 0) break;
        n += (size_t)k;
    }
    buf[n] = 0;
    close(p[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    *rc = WIFEXITED(st) ? WEXITSTATUS(st) : 100;
    return buf;
}

static int has(const char* text, const char* s) { return strstr(text, s) != NULL; }

static void show(const char* what, const char* text) {
    printf("---- %s ----\n%s----\n", what, text);
}

/* ---- dataset ------------------------------------------------------------------------------ */
static void test_dataset(void) {
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/d.h5", g_dir);
    PhantomSpec ps;
    phantom_default(&ps);
    ps.n = 10;
    ps.D = 8; ps.H = 16; ps.W = 16;
    ps.quiet = 1;
    t_true("phantom_write (10 cases 8x16x16)", phantom_write(path, &ps, "test_info", err, sizeof err) == 0);
    int rc;
    char* out = capture(path, 0, &rc);
    t_true("dataset: exit 0", rc == 0);
    t_true("dataset: validation ok (dataset_print_info)", has(out, "validation: ok"));
    t_true("dataset: no FAILED", !has(out, "FAILED"));
    free(out);
}

/* ---- logs --------------------------------------------------------------------------------- */
static const char* LAYERS[] = {"3", "6", "norm"};
static const char* EST[] = {"mmd2_paired", "cka_linear"};
static const char* METRICS[] = {"auroc", "ap"};

static void spec_of(RunLogSpec* s, int swmr) {
    memset(s, 0, sizeof *s);
    s->n_attrs = 7;
    s->attr_key[0] = "task"; s->attr_val[0] = "classify";
    s->attr_key[1] = "model"; s->attr_val[1] = "vit-tiny-3d";
    s->attr_key[2] = "init"; s->attr_val[2] = "scratch";
    s->attr_key[3] = "seed"; s->attr_val[3] = "7";
    s->attr_key[4] = "config"; s->attr_val[4] = "run:\n  name: t\n  seed: 7\nzz_last_line: 1\n";
    s->attr_key[5] = "metric"; s->attr_val[5] = "auroc";
    s->attr_key[6] = "git_describe"; s->attr_val[6] = "v0-test";
    s->n_groups = 1;
    s->n_metrics = 2;
    for (int i = 0; i < 2; i++) s->metric_names[i] = METRICS[i];
    s->n_layers = 3;
    for (int i = 0; i < 3; i++) s->layer_names[i] = LAYERS[i];
    s->n_est = 2;
    for (int i = 0; i < 2; i++) s->est_names[i] = EST[i];
    s->swmr = swmr;
}

static void add_rows(RunLog* lg, long e) {
    double lr = 1e-3, vms[2] = {0.5 + 0.1 * e, 0.4};
    if (e > 0)
        for (int k = 0; k < 3; k++) {
            LogStep s = {(e - 1) * 3 + k, e, 0.7 - 0.01 * k, 1.0, &lr, 0.1 * k};
            runlog_step(lg, &s);
        }
    LogEpoch ep = {e, e ? 0.69 : NAN, 0.68, 0.5 + 0.1 * e, vms, 1.0 * e, 10.0};
    runlog_epoch(lg, &ep);
    double est[6], wd[3];
    for (int k = 0; k < 6; k++) est[k] = (k < 3 ? 0.001 : 0.9) * (e + 1) + 0.0001 * k;
    for (int l = 0; l < 3; l++) wd[l] = 0.01 * e;
    LogAlign a = {e, est, wd};
    runlog_align(lg, &a);
}

static void put_align_attrs(RunLog* lg) {
    double bw[6] = {0.5, 1, 0.6, 1.2, 0.7, 1.4}, nf[3] = {-0.01, -0.02, -0.03};
    runlog_align_attrs(lg, bw, 2, "median", "pooled", 16, 0, nf);
}

static void test_log_finished(void) {
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/log.h5", g_dir);
    RunLog lg;
    RunLogSpec sp;
    spec_of(&sp, 1);
    t_true("runlog_create", runlog_create(&lg, path, &sp, err, sizeof err) == 0);
    put_align_attrs(&lg);
    for (long e = 0; e <= 3; e++) {
        add_rows(&lg, e);
        runlog_flush(&lg);
    }
    const char* keys[] = {"best_epoch", "best_val_metric"};
    double be = 3, bv = 0.8;
    const double* vals[] = {&be, &bv};
    t_true("summary attrs", runlog_write_attrs(&lg, "summary", 2, keys, vals, NULL, err, sizeof err) == 0);
    const char* tk[] = {"auroc"};
    double ta = 0.77;
    const double* tv[] = {&ta};
    t_true("test attrs", runlog_write_attrs(&lg, "test", 1, tk, tv, NULL, err, sizeof err) == 0);
    runlog_close(&lg);

    int rc;
    char* out = capture(path, 0, &rc);
    show("finished log", out);
    t_true("log: exit 0", rc == 0);
    t_true("log: says vita-log", has(out, "vita-log"));
    t_true("log: task, model, init, seed, git_describe",
           has(out, "classify") && has(out, "vit-tiny-3d") && has(out, "scratch") &&
           has(out, "v0-test") && has(out, "seed"));
    t_true("log: config elided (4 lines)", has(out, "config: 4 lines (vita info --config shows it)") &&
           !has(out, "zz_last_line"));
    t_true("log: row counts", has(out, "rows: /steps 9, /epochs 4, /align 4"));
    t_true("log: val_auroc curve", has(out, "val_auroc per epoch") && has(out, "3:0.8"));
    t_true("log: align layers + last row of each estimator",
           has(out, "layers 3 6 norm") && has(out, "mmd2_paired") && has(out, "cka_linear") &&
           has(out, "last row (epoch 3)") && has(out, "0.004"));
    t_true("log: /summary and /test", has(out, "summary:") && has(out, "best_val_metric") &&
           has(out, "test:") && has(out, "0.77"));
    t_true("log: no status flags, no FAILED", !has(out, "status flags") && !has(out, "FAILED"));
    free(out);
    out = capture(path, 1, &rc);
    t_true("log --config: the whole config", rc == 0 && has(out, "zz_last_line: 1") &&
           has(out, "  name: t"));
    free(out);
}

/* a writer in another process: rows flushed with SWMR, file kept open; the parent reads it,
 * then the writer dies without closing (status flags stay set) and the parent reads again */
static void test_log_live_and_killed(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/live.h5", g_dir);
    int up[2], down[2];
    if (pipe(up) || pipe(down)) abort();
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        close(up[0]);
        close(down[1]);
        char err[512];
        RunLog lg;
        RunLogSpec sp;
        spec_of(&sp, 1);
        int ok = runlog_create(&lg, path, &sp, err, sizeof err) == 0;
        if (ok) put_align_attrs(&lg);
        for (long e = 0; ok && e <= 2; e++) {
            add_rows(&lg, e);
            ok = runlog_flush(&lg) == 0;
        }
        char c = ok && lg.swmr_on ? 'y' : 'n';
        if (write(up[1], &c, 1) != 1) _exit(3);
        if (read(down[0], &c, 1) != 1) _exit(3);
        _exit(0);   /* "killed": never closed */
    }
    close(up[1]);
    close(down[0]);
    char c = 0;
    t_true("writer: 3 epochs flushed in SWMR mode", read(up[0], &c, 1) == 1 && c == 'y');
    int rc;
    char* out = capture(path, 0, &rc);
    show("log being written", out);
    t_true("live log: exit 0", rc == 0);
    t_true("live log: read with SWMR, flags reported", has(out, "SWMR") && has(out, "status flags"));
    t_true("live log: rows so far", has(out, "rows: /steps 6, /epochs 3, /align 3"));
    t_true("live log: summary not written yet", has(out, "summary: (not written yet"));
    free(out);
    if (write(down[1], &c, 1) != 1) abort();
    int st;
    waitpid(pid, &st, 0);
    close(up[0]);
    close(down[1]);
    out = capture(path, 0, &rc);
    show("killed run's log", out);
    t_true("killed log: exit 0, rows readable", rc == 0 && has(out, "rows: /steps 6, /epochs 3, /align 3"));
    t_true("killed log: flags set, h5clear -s named", has(out, "status flags") && has(out, "h5clear -s"));
    free(out);
}

/* ---- features and foreign files ----------------------------------------------------------- */
static void put_str(hid_t loc, const char* name, const char* v) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, strlen(v) + 1);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(loc, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, t, v);
    H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
}

static void put_matrix(hid_t f, const char* name, hid_t type, int r, int c) {
    hsize_t d[2] = {(hsize_t)r, (hsize_t)c};
    hid_t sp = H5Screate_simple(2, d, NULL);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t ds = H5Dcreate2(f, name, type, sp, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    double* v = calloc((size_t)r * c, sizeof(double));
    for (int i = 0; i < r * c; i++) v[i] = 0.5 * i;
    H5Dwrite(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
    free(v);
    H5Dclose(ds);
    H5Pclose(lcpl);
    H5Sclose(sp);
}

static void test_features(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/f.h5", g_dir);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    put_str(f, "format", "vita-features");
    put_str(f, "weights", "w.safetensors");
    put_str(f, "weights_sha256", "abc123def");
    put_str(f, "layers", "3,norm");
    put_matrix(f, "/layer_3/pooled", H5T_IEEE_F32LE, 5, 8);
    put_matrix(f, "/layer_norm/pooled", H5T_IEEE_F32LE, 5, 8);
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    hsize_t n = 5;
    hid_t sp = H5Screate_simple(1, &n, NULL);
    hid_t d = H5Dcreate2(f, "/case_id", t, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    const char* ids[5] = {"a", "b", "c", "d", "e"};
    H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, ids);
    H5Dclose(d);
    H5Sclose(sp);
    H5Tclose(t);
    H5Fclose(f);
    int rc;
    char* out = capture(path, 0, &rc);
    show("features", out);
    t_true("features: exit 0", rc == 0);
    t_true("features: case count, sha256", has(out, "5 cases") && has(out, "abc123def"));
    t_true("features: layers and shapes", has(out, "layer 3") && has(out, "layer norm") &&
           has(out, "pooled float32 [5, 8]"));
    t_true("features: no FAILED", !has(out, "FAILED"));
    free(out);
}

static void test_foreign(void) {
    char p1[512], p2[512], p3[512];
    snprintf(p1, sizeof p1, "%s/plain.h5", g_dir);
    snprintf(p2, sizeof p2, "%s/other.h5", g_dir);
    snprintf(p3, sizeof p3, "%s/not.h5", g_dir);
    hid_t f = H5Fcreate(p1, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    put_matrix(f, "/grp/x", H5T_STD_I32LE, 3, 4);
    put_str(f, "note", "hello");
    H5Fclose(f);
    f = H5Fcreate(p2, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    put_str(f, "format", "somebody-else");
    put_matrix(f, "/y", H5T_IEEE_F64LE, 2, 2);
    H5Fclose(f);
    int rc;
    char* out = capture(p1, 0, &rc);
    show("plain HDF5", out);
    t_true("plain HDF5: exit 0, listing, no FAILED", rc == 0 && has(out, "/grp/x") &&
           has(out, "int32") && has(out, "[3, 4]") && has(out, "hello") && !has(out, "FAILED"));
    free(out);
    out = capture(p2, 0, &rc);
    t_true("unknown format: exit 0, named, listing, no FAILED", rc == 0 && has(out, "somebody-else") &&
           has(out, "/y") && !has(out, "FAILED"));
    free(out);
    FILE* fp = fopen(p3, "w");
    fputs("not hdf5\n", fp);
    fclose(fp);
    out = capture(p3, 0, &rc);
    t_true("not HDF5: exit 1", rc == 1);
    free(out);
    snprintf(p3, sizeof p3, "%s/missing.h5", g_dir);
    out = capture(p3, 0, &rc);
    t_true("missing file: exit 1", rc == 1);
    free(out);
}

int main(void) {
    const char* tmp = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/vita_test_info_XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    if (!mkdtemp(g_dir)) { perror("mkdtemp"); return 1; }
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    test_dataset();
    test_log_finished();
    test_log_live_and_killed();
    test_features();
    test_foreign();
    if (!t_failed) {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
        if (system(cmd)) printf("note: could not remove %s\n", g_dir);
    }
    return t_summary();
}
