/* engine/cmd_train.c — `vita train CONFIG.yaml [--set a.b=c ...] [--resume] [--print-config]
 * [--quiet] [--threads N] [--device cpu|cuda|auto] [--help]` (SPEC.md §1, §7). The loop lives
 * in engine/train.c. Exit codes: 0 ok, 1 user error, 2 internal error, 75 preempted. A run
 * directory holding only config.yaml (a vita sweep run) counts as not started, and a finished
 * run leaves RUN_DIR/done (engine/rundir.h). */
#include "train.h"
#include "cmdargs.h"

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
    RUN_COMMAND_USAGE_TAIL;

/* the command line is shared with `vita pretrain` (cmdargs.c) */
int cmd_train(int argc, char** argv) {
    return run_command(argc, argv, "train", TRAIN_USAGE, config_load, train_run);
}
