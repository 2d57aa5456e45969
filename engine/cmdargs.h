/* engine/cmdargs.h — the command line `vita train` and `vita pretrain` share:
 * CONFIG.yaml [--set a.b=c ...] [--resume] [--print-config] [--quiet] [--threads N]
 * [--device cpu|cuda|auto] [--help]. Each command keeps its own name, usage text, loader and
 * loop; errors read "vita NAME: ..." and exit VITA_EXIT_USER (1). */
#ifndef VITA_CMDARGS_H
#define VITA_CMDARGS_H

#include <stddef.h>

#include "config.h"
#include "train.h"

/* the end of both usage texts: the options after --resume, signals and exit codes */
#define RUN_COMMAND_USAGE_TAIL \
    "  --print-config     print the fully resolved config (every default) and exit\n" \
    "  --quiet            no progress line, no memory report\n" \
    "  --threads N        CPU worker threads (default: all cores)\n" \
    "  --device D         cpu | cuda | auto (overrides run.device)\n" \
    "  --help\n" \
    "signals: SIGTERM / SIGUSR1 / SIGINT finish the step, checkpoint and exit 75; a second\n" \
    "SIGINT aborts. exit codes: 0 ok, 1 user error, 2 internal error, 75 preempted\n"

/* loads path (+ the --set overrides) into cfg; 0, or nonzero with err filled */
typedef int (*RunCmdLoad)(Config* cfg, const char* path, const char* const* sets, int n_sets,
                          char* err, size_t errlen);
typedef int (*RunCmdRun)(const Config* cfg, const TrainOptions* opt);

/* parses argv (argv[0] = the command name), loads the config, applies --device, then prints
 * it (--print-config) or runs it; returns the exit code */
int run_command(int argc, char** argv, const char* name, const char* usage, RunCmdLoad load,
                RunCmdRun run);

#endif
