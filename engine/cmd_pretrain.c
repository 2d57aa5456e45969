/* engine/cmd_pretrain.c — `vita pretrain CONFIG.yaml [--set a.b=c ...] [--resume]
 * [--print-config] [--quiet] [--threads N] [--device cpu|cuda|auto] [--help]` (SPEC.md §1).
 * The loop lives in engine/pretrain.c. Exit codes: 0 ok, 1 user error, 2 internal error,
 * 75 preempted. */
#include "commands.h"
#include "pretrain.h"
#include "cmdargs.h"

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
    RUN_COMMAND_USAGE_TAIL;

/* the command line is shared with `vita train` (cmdargs.c) */
int cmd_pretrain(int argc, char** argv) {
    return run_command(argc, argv, "pretrain", PRETRAIN_USAGE, config_load_pretrain, pretrain_run);
}
