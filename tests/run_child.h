/* tests/run_child.h — header-only helpers for tests that run `vita train` / `vita pretrain`
 * loops in forked children (test_train.c, test_pretrain.c), so that the parent never starts
 * OpenMP or BLAS threads and a run can be killed like a real process:
 *   ChildHook / child_hook_fn  the on_step hook: per-step loss trace, raise a signal at a step
 *   run_in_child               runs a loop in a child, its stderr into ROOT/<run.name>.err
 *   child_show_err             prints the first 40 lines of that file
 *   child_phantom              the tests' phantom dataset (32 cases of 16x32x32), in a child
 *   child_workdir / child_cleanup   the test's temp directory (kept when a check failed)
 *   child_load_cfg             a config from the test's base --set list + a case's extra keys */
#ifndef VITA_TESTS_RUN_CHILD_H
#define VITA_TESTS_RUN_CHILD_H

#include "../engine/train.h"
#include "../engine/phantom.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    const char* trace;         /* file: "step loss(%a)" per step */
    long stop_at;              /* step index at which to raise stop_sig (-1 none) */
    int stop_sig;
} ChildHook;

static void child_hook_fn(void* user, long step, long epoch, double loss) {
    (void)epoch;
    ChildHook* h = user;
    if (h->trace) {
        FILE* f = fopen(h->trace, "a");
        if (f) { fprintf(f, "%ld %a\n", step, loss); fclose(f); }
    }
    if (step == h->stop_at) raise(h->stop_sig);
}

typedef int (*ChildRunFn)(const Config* cfg, const TrainOptions* opt);

/* runs fn(cfg) (train_run, pretrain_run) in a child with 2 threads on the CPU; returns the exit
 * code, or 128 + signal. The child's stderr goes to <root>/<run.name>.err (appended), its
 * stdout to /dev/null; the parent prints the run's wall time */
static int run_in_child(const char* root, ChildRunFn fn, const Config* cfg, int resume,
                        ChildHook* hook) {
    char errf[600];
    snprintf(errf, sizeof errf, "%s/%s.err", root, cfg->run_name);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(errf, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) { dup2(fd, 2); close(fd); }
        int nul = open("/dev/null", O_WRONLY);
        if (nul >= 0) { dup2(nul, 1); close(nul); }
        TrainOptions o;
        memset(&o, 0, sizeof o);
        o.resume = resume;
        o.threads = 2;
        o.device = "cpu";
        if (hook) { o.on_step = child_hook_fn; o.user = hook; }
        int rc = fn(cfg, &o);
        fflush(stdout);
        fflush(stderr);
        _exit(rc);
    }
    int st = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    waitpid(pid, &st, 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("  (run %s%s: %.1f s)\n", cfg->run_name, resume ? " --resume" : "",
           (t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec));
    if (WIFEXITED(st)) return WEXITSTATUS(st);
    if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
    return -1;
}

/* the first 40 lines of <root>/<name>.err, indented */
static void child_show_err(const char* root, const char* name) {
    char p[400];
    snprintf(p, sizeof p, "%s/%s.err", root, name);
    FILE* f = fopen(p, "r");
    if (!f) return;
    char line[1024];
    int n = 0;
    printf("  --- %s stderr:\n", name);
    while (fgets(line, sizeof line, f) && n++ < 40) printf("  | %s", line);
    fclose(f);
}

/* writes the tests' phantom (32 cases of 16x32x32, seed 7) to path in a child (phantom_write
 * runs OpenMP); 1 when it was written */
static int child_phantom(const char* path, const char* tag) {
    pid_t pid = fork();
    if (pid == 0) {
        PhantomSpec ps;
        phantom_default(&ps);
        ps.n = 32;
        ps.D = 16;
        ps.H = 32;
        ps.W = 32;
        ps.seed = 7;
        ps.quiet = 1;
        char err[512];
        int rc = phantom_write(path, &ps, tag, err, sizeof err);
        if (rc) fprintf(stderr, "%s\n", err);
        _exit(rc);
    }
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

/* makes "/tmp/vita_<name>_XXXXXX" into root and data = ROOT/phantom.h5, prints "work dir ROOT";
 * 0, or 1 (perror) */
static int child_workdir(char* root, size_t root_n, char* data, size_t data_n, const char* name) {
    snprintf(root, root_n, "/tmp/vita_%s_XXXXXX", name);
    if (!mkdtemp(root)) { perror("mkdtemp"); return 1; }
    snprintf(data, data_n, "%s/phantom.h5", root);
    printf("work dir %s\n", root);
    return 0;
}

/* removes root unless a check failed (failed: t_failed), so a failure's files stay for a look */
static void child_cleanup(const char* root, int failed) {
    if (failed) return;
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd)) printf("could not remove %s\n", root);
}

typedef int (*ChildLoadFn)(Config* cfg, const char* path, const char* const* sets, int n_sets,
                           char* err, size_t errlen);

/* load(c) (config_load, config_load_pretrain) with no file and the sets base[0..nb) then
 * extra[0..n_extra) (at most 64 in all); load's result, err filled on failure */
static int child_load_cfg(Config* c, ChildLoadFn load, const char* const* base, int nb,
                          const char* const* extra, int n_extra, char* err, size_t errlen) {
    const char* sets[64];
    if (nb + n_extra > 64) { snprintf(err, errlen, "more than 64 config keys"); return 1; }
    for (int i = 0; i < nb; i++) sets[i] = base[i];
    for (int i = 0; i < n_extra; i++) sets[nb + i] = extra[i];
    return load(c, NULL, sets, nb + n_extra, err, errlen);
}

#endif
