/* tests/test_train_e2e.c — end to end through the `vita` binary ($VITA_BUILD/vita, default
 * build/vita): a phantom dataset, `vita train` of the tiny 3D ViT with alignment logging, and
 *  (a) a concurrent h5py reader (swmr=True) that opens log.h5 while the run writes it and
 *      reads /steps/loss (it must see fewer epochs than the finished log: proof that it read
 *      mid-run);
 *  (b) every /align/mmd2_paired[e, l] equals a float64 recomputation
 *      (tests/oracle/mmd_recompute.py) from the features `vita features` writes for the
 *      checkpoint of epoch e (checkpoints/init.safetensors for epoch 0) on the probe split, with
 *      the bandwidths logged in /align, within |Δ| <= 1e-7·(mean k_XX + mean k_YY + 2 mean k_XY);
 *      the run's probe set is the first align.probe.n_images (12 of the 14) cases of the val
 *      split in file order, and `vita features --split val` writes the whole val split in
 *      that order (it has no case limit), so the oracle compares the first probe_n_images
 *      rows — a different probe selection would show as an MMD mismatch;
 *  (c) `vita info` on the log, a features file and the dataset exits 0 and says what it is.
 * Needs /usr/bin/python3 with h5py and numpy (make deps). Runs from the repository root
 * (VITA_SRC names it otherwise); work files under $TMPDIR (/tmp), removed when all pass.
 * About 3-8 s on 2 cores. */
#include <hdf5.h>
#include <signal.h>
#include <sys/stat.h>
#include <time.h>

#include "../engine/phantom.h"
#include "testing.h"

#define PY "/usr/bin/python3"
#define N_EPOCHS 3
#define LAYERS "1,2,norm"

static char g_dir[256], g_vita[512];

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* runs a shell command, output to a new malloc'ed string; *rc its exit status */
static char* run_capture(const char* cmd, int* rc) {
    fflush(stdout);
    FILE* p = popen(cmd, "r");
    if (!p) { *rc = 127; return strdup(""); }
    size_t cap = 1 << 16, n = 0;
    char* buf = malloc(cap);
    size_t k;
    while ((k = fread(buf + n, 1, cap - n - 1, p)) > 0) {
        n += k;
        if (n + 4096 > cap) buf = realloc(buf, cap *= 2);
    }
    buf[n] = 0;
    int st = pclose(p);
    *rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128;
    return buf;
}

static int has(const char* text, const char* s) { return strstr(text, s) != NULL; }

static void write_file(const char* path, const char* text) {
    FILE* f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f)) { perror(path); exit(1); }
}

static const char* READER_PY =
    "import sys, time, h5py, numpy as np\n"
    "path, need = sys.argv[1], int(sys.argv[2])\n"
    "t0 = time.time(); fails = 0; last = ''\n"
    "while time.time() - t0 < 150:\n"
    "    try:\n"
    "        with h5py.File(path, 'r', swmr=True) as f:\n"
    "            ne = f['/epochs/epoch'].shape[0]\n"
    "            if ne >= need:\n"
    "                loss = f['/steps/loss'][...]\n"
    "                ep = f['/steps/epoch'][...]\n"
    "                print('READER epochs %d steps %d finite %d fails %d' % (ne, loss.shape[0],\n"
    "                      int(np.isfinite(loss).all() and loss.shape[0] > 0), fails))\n"
    "                sys.exit(0)\n"
    "    except (OSError, KeyError) as e:\n"
    "        fails += 1; last = str(e)\n"
    "    time.sleep(0.01)\n"
    "print('READER timeout (fails %d, last error %s)' % (fails, last))\n"
    "sys.exit(1)\n";

/* /steps/epoch of the finished log: the number of steps done by the end of epoch e is the
 * count of rows with epoch <= e (checkpoints are named by that count) */
static int read_step_epochs(const char* log, long long** ep, long* n) {
    hid_t f = H5Fopen(log, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return 1;
    hid_t d = H5Dopen2(f, "/steps/epoch", H5P_DEFAULT);
    int rc = 1;
    if (d >= 0) {
        hid_t sp = H5Dget_space(d);
        hsize_t dim = 0;
        H5Sget_simple_extent_dims(sp, &dim, NULL);
        *n = (long)dim;
        *ep = calloc(dim ? dim : 1, sizeof(long long));
        rc = dim && H5Dread(d, H5T_NATIVE_LLONG, H5S_ALL, H5S_ALL, H5P_DEFAULT, *ep) < 0;
        H5Sclose(sp);
        H5Dclose(d);
    }
    H5Fclose(f);
    return rc;
}

static long log_rows(const char* log, const char* name) {
    hid_t f = H5Fopen(log, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return -1;
    long n = -1;
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    if (d >= 0) {
        hid_t sp = H5Dget_space(d);
        hsize_t dim[2] = {0, 0};
        H5Sget_simple_extent_dims(sp, dim, NULL);
        n = (long)dim[0];
        H5Sclose(sp);
        H5Dclose(d);
    }
    H5Fclose(f);
    return n;
}

int main(void) {
    double t_start = now_s();
    const char* b = getenv("VITA_BUILD");
    snprintf(g_vita, sizeof g_vita, "%s/vita", b && b[0] ? b : "build");
    if (access(g_vita, X_OK)) {
        printf("FAIL %s is not there: build it (make BUILD=... %s) or set VITA_BUILD\n", g_vita, g_vita);
        t_true("vita binary present", 0);
        return t_summary();
    }
    int rc;
    char* o = run_capture(PY " -c 'import h5py, numpy' 2>&1", &rc);
    free(o);
    if (!t_true(PY " with h5py and numpy (the readers and the oracle)", rc == 0)) return t_summary();
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    const char* tmp = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/vita_e2e_XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    if (!mkdtemp(g_dir)) { perror("mkdtemp"); return 1; }
    printf("work dir %s, vita %s\n", g_dir, g_vita);

    /* ---- dataset + config ----------------------------------------------------------------- */
    char data[400], cfg[400], run[400], logp[450], reader[400], err[512], cmd[4096];
    snprintf(data, sizeof data, "%s/D.h5", g_dir);
    snprintf(cfg, sizeof cfg, "%s/e2e.yaml", g_dir);
    snprintf(run, sizeof run, "%s/runs/e2e", g_dir);
    snprintf(logp, sizeof logp, "%s/log.h5", run);
    snprintf(reader, sizeof reader, "%s/reader.py", g_dir);
    PhantomSpec ps;
    phantom_default(&ps);
    ps.n = 96;
    ps.D = 16; ps.H = 32; ps.W = 32;
    ps.seed = 1;
    ps.quiet = 1;
    if (!t_true("phantom_write 96 cases of 16x32x32", phantom_write(data, &ps, "test_train_e2e", err, sizeof err) == 0)) {
        printf("  %s\n", err);
        return t_summary();
    }
    char yaml[2048];
    snprintf(yaml, sizeof yaml,
             "run:\n  name: e2e\n  out: %s/runs/\n  seed: 0\n"
             "model:\n  preset: vit-tiny-3d\n  weights: null\n"
             "task:\n  name: classify\n  num_classes: 2\n  head:\n    kind: mlp\n  loss:\n    kind: ce\n"
             "  metric: auroc\n"
             "data:\n  path: %s\n  batch: 4\n  workers: 1\n"
             "train:\n  epochs: %d\n  lr: 3.0e-04\n  warmup_epochs: 1\n  checkpoint_every: 1\n"
             "  keep_checkpoints: 10\n"
             "align:\n  layers: [1, 2, norm]\n  feature: pooled\n  probe:\n    split: val\n"
             "    n_images: 12\n  estimators: [mmd2_paired, mmd2_paired_se, mmd2_u, cka_linear]\n"
             "  bandwidths:\n    rule: median\n    scales: [0.5, 1, 2]\n"
             "log:\n  swmr: on\n",
             g_dir, data, N_EPOCHS);
    write_file(cfg, yaml);
    write_file(reader, READER_PY);

    /* ---- (a) train in the background, read the log while it is written -------------------- */
    snprintf(cmd, sizeof cmd, "exec '%s' train '%s' --set 'model.img_size=[16,32,32]' "
             "--set 'model.patch=[4,8,8]' --threads 2 > '%s/train.out' 2>&1", g_vita, cfg, g_dir);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char*)NULL);
        _exit(127);
    }
    /* the reader polls (SWMR opens, retried) until epochs 0 and 1 are flushed */
    snprintf(cmd, sizeof cmd, PY " '%s' '%s' 2 2>&1", reader, logp);
    o = run_capture(cmd, &rc);
    int st = 0;
    int still_running = waitpid(pid, &st, WNOHANG) == 0;
    printf("%s", o);
    t_true("(a) h5py swmr=True reader opened log.h5 and read /steps/loss (finite, > 0 rows)",
           rc == 0 && has(o, "finite 1"));
    int seen_epochs = -1;
    const char* r = strstr(o, "READER epochs ");
    if (r) seen_epochs = atoi(r + 14);
    free(o);
    if (still_running) {
        /* vita info on the log while it is written (SWMR read); retried: the writer reopens
         * the file plainly for attribute writes at the end */
        int ok = 0;
        for (int k = 0; k < 5 && !ok; k++) {
            snprintf(cmd, sizeof cmd, "'%s' info '%s' 2>&1", g_vita, logp);
            o = run_capture(cmd, &rc);
            ok = rc == 0 && has(o, "vita-log") && has(o, "rows: /steps");
            if (ok || k == 4) printf("%s", o);
            free(o);
            if (!ok && waitpid(pid, &st, WNOHANG) != 0) { still_running = 0; break; }
            if (!ok) usleep(100000);
        }
        if (still_running) t_true("(a) vita info reads the log while the run writes it", ok);
    }
    if (still_running) waitpid(pid, &st, 0);
    int train_ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
    snprintf(cmd, sizeof cmd, "cat '%s/train.out'", g_dir);
    o = run_capture(cmd, &rc);
    printf("---- vita train output ----\n%s---------------------------\n", o);
    free(o);
    if (!t_true("vita train exits 0", train_ok)) return t_summary();
    long n_ep = log_rows(logp, "/epochs/epoch"), n_al = log_rows(logp, "/align/epoch");
    printf("reader saw %d /epochs rows; the finished log has %ld\n", seen_epochs, n_ep);
    t_true("(a) the reader read mid-run (fewer /epochs rows than the finished log)",
           seen_epochs >= 2 && seen_epochs < n_ep);
    t_true("log rows: epochs 0..N and one /align row each", n_ep == N_EPOCHS + 1 && n_al == N_EPOCHS + 1);

    /* ---- (b) features of every epoch's weights, the float64 MMD oracle --------------------- */
    long long* sep = NULL;
    long ns = 0;
    if (!t_true("read /steps/epoch", read_step_epochs(logp, &sep, &ns) == 0)) return t_summary();
    char oracle_args[3000] = "";
    size_t ka = 0;
    char finit[450];
    snprintf(finit, sizeof finit, "%s/F0.h5", g_dir);
    int feat_ok = 1;
    for (int e = 0; e <= N_EPOCHS; e++) {
        char w[500], fo[450];
        if (e == 0) {
            snprintf(w, sizeof w, "%s/checkpoints/init.safetensors", run);
        } else {
            long done = 0;
            for (long i = 0; i < ns; i++) done += sep[i] <= e;
            snprintf(w, sizeof w, "%s/checkpoints/step_%08ld.safetensors", run, done);
        }
        snprintf(fo, sizeof fo, "%s/F%d.h5", g_dir, e);
        if (access(w, R_OK)) {
            printf("no checkpoint %s for epoch %d\n", w, e);
            feat_ok = 0;
            continue;
        }
        snprintf(cmd, sizeof cmd, "'%s' features --weights '%s' --data '%s' --split val "
                 "--layers " LAYERS " --out '%s' --threads 2 --quiet 2>&1", g_vita, w, data, fo);
        o = run_capture(cmd, &rc);
        if (rc) {
            printf("%s", o);
            feat_ok = 0;
        }
        free(o);
        ka += snprintf(oracle_args + ka, sizeof oracle_args - ka, " %d:'%s'", e, fo);
    }
    free(sep);
    t_true("(b) vita features for init + every epoch's checkpoint", feat_ok);
    const char* src = getenv("VITA_SRC");
    snprintf(cmd, sizeof cmd, PY " '%s/tests/oracle/mmd_recompute.py' '%s' '%s'%s 2>&1",
             src && src[0] ? src : ".", logp, finit, oracle_args);
    o = run_capture(cmd, &rc);
    int n_checks = 0;
    for (char* line = o; line && *line;) {
        char* nl = strchr(line, '\n');
        if (nl) *nl = 0;
        char name[200];
        double v, thr;
        if (sscanf(line, "CHECK %199s %lf %lf", name, &v, &thr) == 3) {
            char what[260];
            snprintf(what, sizeof what, "(b) %s", name);
            t_check(what, v, thr);
            n_checks++;
        } else {
            printf("  %s\n", line);
        }
        line = nl ? nl + 1 : NULL;
    }
    free(o);
    t_true("(b) oracle ran and compared every epoch x layer (4 x 3)", n_checks == (N_EPOCHS + 1) * 3 && rc == 0);

    /* ---- (c) vita info ------------------------------------------------------------------- */
    snprintf(cmd, sizeof cmd, "'%s' info '%s' 2>&1", g_vita, logp);
    o = run_capture(cmd, &rc);
    printf("---- vita info log.h5 ----\n%s", o);
    t_true("(c) vita info log.h5: exit 0, summary", rc == 0 && has(o, "vita-log") &&
           has(o, "rows: /steps") && has(o, "mmd2_paired") && has(o, "best_epoch") &&
           has(o, "config: ") && !has(o, "FAILED") && !has(o, "status flags"));
    free(o);
    snprintf(cmd, sizeof cmd, "'%s' info '%s' --config 2>&1", g_vita, logp);
    o = run_capture(cmd, &rc);
    t_true("(c) vita info log.h5 --config prints the config", rc == 0 && has(o, "keep_checkpoints"));
    free(o);
    snprintf(cmd, sizeof cmd, "'%s' info '%s/F1.h5' 2>&1", g_vita, g_dir);
    o = run_capture(cmd, &rc);
    printf("---- vita info F1.h5 ----\n%s", o);
    t_true("(c) vita info on a features file", rc == 0 && has(o, "vita-features") &&
           has(o, "weights_sha256") && has(o, "layer norm") && !has(o, "FAILED"));
    free(o);
    snprintf(cmd, sizeof cmd, "'%s' info '%s' 2>&1", g_vita, data);
    o = run_capture(cmd, &rc);
    t_true("(c) vita info on the dataset: validation ok", rc == 0 && has(o, "validation: ok"));
    free(o);

    printf("total %.1f s\n", now_s() - t_start);
    if (!t_failed) {
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
        if (system(cmd)) printf("note: could not remove %s\n", g_dir);
    } else {
        printf("kept %s for inspection\n", g_dir);
    }
    return t_summary();
}
