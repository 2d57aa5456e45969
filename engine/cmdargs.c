/* engine/cmdargs.c — the shared `vita train` / `vita pretrain` command line (cmdargs.h). */
#include "cmdargs.h"
#include "check.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "vita NAME: <message>\n" on stderr; returns VITA_EXIT_USER */
static int usage_error(const char* name, const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "vita %s: ", name);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    return VITA_EXIT_USER;
}

/* the options into opt, sets and *print_config; -1 to go on, else the exit code */
static int parse_args(int argc, char** argv, const char* name, const char* usage,
                      const char** path, const char** sets, int* n_sets, int* print_config,
                      TrainOptions* opt) {
    for (int i = 1; i < argc; i++) {
        const char* a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage, stdout);
            return 0;
        } else if (!strcmp(a, "--set") || !strcmp(a, "--threads") || !strcmp(a, "--device")) {
            if (i + 1 >= argc) return usage_error(name, "%s needs a value (vita %s --help)", a, name);
            const char* v = argv[++i];
            if (!strcmp(a, "--set")) {
                sets[(*n_sets)++] = v;
            } else if (!strcmp(a, "--device")) {
                if (strcmp(v, "cpu") && strcmp(v, "cuda") && strcmp(v, "auto"))
                    return usage_error(name, "--device '%s': use cpu, cuda or auto", v);
                opt->device = v;
            } else {
                char* end;
                long n = strtol(v, &end, 10);
                if (*end || n < 1 || n > 4096)
                    return usage_error(name, "--threads '%s': give a positive integer", v);
                opt->threads = (int)n;
            }
        } else if (!strncmp(a, "--set=", 6)) {
            sets[(*n_sets)++] = a + 6;
        } else if (!strcmp(a, "--resume")) {
            opt->resume = 1;
        } else if (!strcmp(a, "--print-config")) {
            *print_config = 1;
        } else if (!strcmp(a, "--quiet")) {
            opt->quiet = 1;
        } else if (a[0] == '-' && a[1]) {
            return usage_error(name, "unknown option '%s' (vita %s --help)", a, name);
        } else if (!*path) {
            *path = a;
        } else {
            return usage_error(name, "one config file expected, got '%s' and '%s'", *path, a);
        }
    }
    if (!*path && !*print_config) {
        fputs(usage, stderr);
        return VITA_EXIT_USER;
    }
    return -1;
}

int run_command(int argc, char** argv, const char* name, const char* usage, RunCmdLoad load,
                RunCmdRun run) {
    const char* path = NULL;
    const char** sets = xcalloc((size_t)(argc > 0 ? argc : 1), sizeof(char*));
    int n_sets = 0, print_config = 0;
    TrainOptions opt;
    memset(&opt, 0, sizeof opt);
    int rc = parse_args(argc, argv, name, usage, &path, sets, &n_sets, &print_config, &opt);
    if (rc >= 0) {
        free(sets);
        return rc;
    }
    Config* cfg = xcalloc(1, sizeof *cfg);
    char err[1024];
    if (load(cfg, path, sets, n_sets, err, sizeof err)) {
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
        rc = 0;
    } else {
        rc = run(cfg, &opt);
    }
    free(cfg);
    return rc;
}
