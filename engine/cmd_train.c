/* engine/cmd_train.c — `vita train CONFIG.yaml [--set a.b=c ...] [--resume] [--print-config]
 * [--quiet] [--threads N] [--device cpu|cuda|auto] [--help]` (SPEC.md §1, §7). The loop lives
 * in engine/train.c. Exit codes: 0 ok, 1 user error, 2 internal error, 75 preempted. A run
 * directory holding only config.yaml (a vita sweep run) counts as not started, and a finished
 * run leaves RUN_DIR/done (engine/rundir.h). */
#include "train.h"
#include "check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char* TRAIN_USAGE =
    "usage: vita train CONFIG.yaml [options]\n"
    "\n"
    "Fine-tunes the configured encoder + task head (SPEC.md §7) and logs the validation curve\n"
    "and feature alignment to RUN_DIR/log.h5 (RUN_DIR = run.out/run.name).\n"
    "  vita train configs/t2w-seg.yaml --set train.lr=3.0e-4 --set run.name=lr3e-4\n"
    "  vita train SWEEP_DIR/runs/0000/config.yaml --resume   (one run of a vita sweep)\n"
    "When the run ends (after /summary and /test) vita writes RUN_DIR/done (rundir.h).\n"
    "\n"
    "options:\n"
    "  --set a.b=c        override one config key (repeatable; applied after the file)\n"
    "  --resume           continue the run from its newest complete checkpoint (starts it\n"
    "                     when RUN_DIR does not exist yet or holds only config.yaml, as a\n"
    "                     vita sweep run does: safe in a requeued job script; a finished run,\n"
    "                     one with RUN_DIR/done, exits 0 at once)\n"
    "  --print-config     print the fully resolved config (every default) and exit\n"
    "  --quiet            no progress line, no memory report\n"
    "  --threads N        CPU worker threads (default: all cores)\n"
    "  --device D         cpu | cuda | auto (overrides run.device)\n"
    "  --help\n"
    "signals: SIGTERM / SIGUSR1 / SIGINT finish the step, checkpoint and exit 75; a second\n"
    "SIGINT aborts. exit codes: 0 ok, 1 user error, 2 internal error, 75 preempted\n";

int cmd_train(int argc, char** argv) {
    const char* path = NULL;
    const char** sets = xcalloc((size_t)(argc > 0 ? argc : 1), sizeof(char*));
    int n_sets = 0, print_config = 0;
    TrainOptions opt;
    memset(&opt, 0, sizeof opt);
    for (int i = 1; i < argc; i++) {
        const char* a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(TRAIN_USAGE, stdout);
            free(sets);
            return 0;
        } else if (!strcmp(a, "--set") || !strcmp(a, "--threads") || !strcmp(a, "--device")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "vita train: %s needs a value (vita train --help)\n", a);
                free(sets);
                return VITA_EXIT_USER;
            }
            const char* v = argv[++i];
            if (!strcmp(a, "--set")) sets[n_sets++] = v;
            else if (!strcmp(a, "--device")) {
                if (strcmp(v, "cpu") && strcmp(v, "cuda") && strcmp(v, "auto")) {
                    fprintf(stderr, "vita train: --device '%s': use cpu, cuda or auto\n", v);
                    free(sets);
                    return VITA_EXIT_USER;
                }
                opt.device = v;
            } else {
                char* end;
                long n = strtol(v, &end, 10);
                if (*end || n < 1 || n > 4096) {
                    fprintf(stderr, "vita train: --threads '%s': give a positive integer\n", v);
                    free(sets);
                    return VITA_EXIT_USER;
                }
                opt.threads = (int)n;
            }
        } else if (!strncmp(a, "--set=", 6)) {
            sets[n_sets++] = a + 6;
        } else if (!strcmp(a, "--resume")) {
            opt.resume = 1;
        } else if (!strcmp(a, "--print-config")) {
            print_config = 1;
        } else if (!strcmp(a, "--quiet")) {
            opt.quiet = 1;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "vita train: unknown option '%s' (vita train --help)\n", a);
            free(sets);
            return VITA_EXIT_USER;
        } else if (!path) {
            path = a;
        } else {
            fprintf(stderr, "vita train: one config file expected, got '%s' and '%s'\n", path, a);
            free(sets);
            return VITA_EXIT_USER;
        }
    }
    if (!path && !print_config) {
        fputs(TRAIN_USAGE, stderr);
        free(sets);
        return VITA_EXIT_USER;
    }
    Config* cfg = xcalloc(1, sizeof *cfg);
    char err[1024];
    config_default(cfg);
    if (config_load(cfg, path, sets, n_sets, err, sizeof err)) {
        fprintf(stderr, "vita: %s\n", err);
        free(cfg);
        free(sets);
        return VITA_EXIT_USER;
    }
    free(sets);
    if (opt.device) snprintf(cfg->device, sizeof cfg->device, "%s", opt.device);
    if (print_config) {
        char* y = config_to_yaml(cfg);
        fputs(y, stdout);
        free(y);
        free(cfg);
        return 0;
    }
    int rc = train_run(cfg, &opt);
    free(cfg);
    return rc;
}
