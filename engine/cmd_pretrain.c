/* engine/cmd_pretrain.c — `vita pretrain CONFIG.yaml [--set a.b=c ...] [--resume]
 * [--print-config] [--quiet] [--threads N] [--device cpu|cuda|auto] [--help]` (SPEC.md §1).
 * The loop lives in engine/pretrain.c. Exit codes: 0 ok, 1 user error, 2 internal error,
 * 75 preempted. */
#include "commands.h"
#include "pretrain.h"
#include "check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char* PRETRAIN_USAGE =
    "usage: vita pretrain CONFIG.yaml [options]\n"
    "\n"
    "Pretrains the configured encoder with a pretext objective (pretrain.objective: mae |\n"
    "contrastive) on the train (+ probe-only) cases of data.path, logs the pretext loss to\n"
    "RUN_DIR/log.h5 and writes RUN_DIR/encoder.safetensors, which `vita train` loads as\n"
    "model.weights (RUN_DIR = run.out/run.name). train.epochs: 0 writes the initial encoder.\n"
    "  vita pretrain configs/examples/pretrain-mae.yaml --set pretrain.mask_ratio=0.6\n"
    "\n"
    "options:\n"
    "  --set a.b=c        override one config key (repeatable; applied after the file)\n"
    "  --resume           continue the run from its newest complete checkpoint (starts it\n"
    "                     when RUN_DIR does not exist yet: safe in a requeued job script)\n"
    "  --print-config     print the fully resolved config (every default) and exit\n"
    "  --quiet            no progress line, no memory report\n"
    "  --threads N        CPU worker threads (default: all cores)\n"
    "  --device D         cpu | cuda | auto (overrides run.device)\n"
    "  --help\n"
    "signals: SIGTERM / SIGUSR1 / SIGINT finish the step, checkpoint and exit 75; a second\n"
    "SIGINT aborts. exit codes: 0 ok, 1 user error, 2 internal error, 75 preempted\n";

static int usage_error(const char* fmt, const char* a, const char* b) {
    fprintf(stderr, "vita pretrain: ");
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, "\n");
    return VITA_EXIT_USER;
}

int cmd_pretrain(int argc, char** argv) {
    const char* path = NULL;
    const char** sets = xcalloc((size_t)(argc > 0 ? argc : 1), sizeof(char*));
    int n_sets = 0, print_config = 0, rc = 0;
    TrainOptions opt;
    memset(&opt, 0, sizeof opt);
    for (int i = 1; i < argc && !rc; i++) {
        const char* a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(PRETRAIN_USAGE, stdout);
            free(sets);
            return 0;
        } else if (!strcmp(a, "--set") || !strcmp(a, "--threads") || !strcmp(a, "--device")) {
            if (i + 1 >= argc) { rc = usage_error("%s needs a value (vita pretrain --help)%s", a, ""); break; }
            const char* v = argv[++i];
            if (!strcmp(a, "--set")) {
                sets[n_sets++] = v;
            } else if (!strcmp(a, "--device")) {
                if (strcmp(v, "cpu") && strcmp(v, "cuda") && strcmp(v, "auto"))
                    rc = usage_error("--device '%s': use cpu, cuda or auto%s", v, "");
                opt.device = v;
            } else {
                char* end;
                long n = strtol(v, &end, 10);
                if (*end || n < 1 || n > 4096) rc = usage_error("--threads '%s': give a positive integer%s", v, "");
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
            rc = usage_error("unknown option '%s' (vita pretrain --help)%s", a, "");
        } else if (!path) {
            path = a;
        } else {
            rc = usage_error("one config file expected, got '%s' and '%s'", path, a);
        }
    }
    if (!rc && !path && !print_config) {
        fputs(PRETRAIN_USAGE, stderr);
        rc = VITA_EXIT_USER;
    }
    if (rc) {
        free(sets);
        return rc;
    }
    Config* cfg = xcalloc(1, sizeof *cfg);
    char err[1024];
    if (config_load_pretrain(cfg, path, sets, n_sets, err, sizeof err)) {
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
    } else {
        rc = pretrain_run(cfg, &opt);
    }
    free(cfg);
    return rc;
}
