/* engine/cmd_eval.c — `vita eval RUN_DIR|CKPT.safetensors --data DATA.h5`: whole-volume
 * sliding-window evaluation of every case of a split (slidewin.h), a per-case CSV and the
 * overall metrics. Opening the model (run directory or checkpoint metadata) and the per-case
 * loop are shared with `vita predict` (infer.h); the CSV and the overall numbers are
 * casetable.h's.
 *
 * Overall: mean over cases of each per-case metric (NaN skipped, as MONAI's aggregation);
 * hd95 over the cases where it is finite, the number with a missed / hallucinated structure
 * (inf) reported next to it. Classify (K = 2): AUROC, AP and the case-level (AUROC + AP)/2 over
 * the cases with a label, accuracy, balanced accuracy; K > 2: accuracy and balanced accuracy. */
#include "check.h"
#include "infer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_eval(int argc, char** argv);

static const char* EVAL_USAGE =
    "usage: vita eval RUN_DIR|CKPT.safetensors --data DATA.h5 [options]\n"
    "\n"
    "Evaluates a fine-tuned model on every case of a split by sliding-window inference over the\n"
    "whole volume (Gaussian-weighted blending, MONAI semantics) and writes one CSV row per case.\n"
    "  RUN_DIR        a `vita train` run: config.yaml + checkpoints/best.safetensors (else the\n"
    "                 newest complete checkpoint)\n"
    "  CKPT           a checkpoint whose metadata holds the model and head config\n"
    "\n"
    "options:\n"
    "  --csv F                per-case CSV (default RUN_DIR/eval_<split>.csv, or\n"
    "                         CKPT-without-.safetensors.eval_<split>.csv)\n"
    "%s"
    "per-case CSV (one row per case, for paired tests and case-level bootstraps):\n"
    "  case_id,split[,label],<metrics>   classify: label (-1 unknown), score (p of class 1;\n"
    "  K > 2: the argmax probability), pred, correct; segment: dice_<label> per foreground\n"
    "  class (nan when absent from the truth), dice_mean, hd95 (mm, union foreground, inf when\n"
    "  one side is empty); image tasks: psnr, ssim, mae (data range = max - min of the target)\n"
    "overall (printed): the mean over cases of each metric (nan skipped, infinite hd95\n"
    "excluded and counted); classify: AUROC, AP, (AUROC + AP)/2, accuracy, balanced accuracy\n"
    "exit codes: 0 ok, 1 user error, 2 internal error\n";

int cmd_eval(int argc, char** argv) {
    InferArgs a;
    infer_args_default(&a);
    const char* csv = NULL;
    for (int i = 1; i < argc; i++) {
        const char* o = argv[i];
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) { printf(EVAL_USAGE, INFER_OPTIONS_HELP); return 0; }
        if (infer_parse_option(&a, argc, argv, &i, "eval")) continue;
        if (!strcmp(o, "--csv")) {
            if (i + 1 >= argc) USER_ERROR("--csv needs a value (vita eval --help)");
            csv = argv[++i];
            continue;
        }
        if (o[0] == '-' && o[1] == '-') USER_ERROR("unknown option '%s' (vita eval --help)", o);
        if (a.src) USER_ERROR("one RUN_DIR or checkpoint expected, got '%s' and '%s'", a.src, o);
        a.src = o;
    }
    if (!a.src) { fprintf(stderr, EVAL_USAGE, INFER_OPTIONS_HELP); return VITA_EXIT_USER; }

    char err[1024], csv_path[2200];
    Infer I;
    CaseTable t;
    memset(&t, 0, sizeof t);
    int rc = infer_open(&I, &a, err, sizeof err);
    if (!rc) {
        if (csv) snprintf(csv_path, sizeof csv_path, "%s", csv);
        else if (I.run_dir) snprintf(csv_path, sizeof csv_path, "%s/eval_%s.csv", a.src, a.split_name);
        else snprintf(csv_path, sizeof csv_path, "%.*s.eval_%s.csv", (int)(strlen(a.src) - 12), a.src,
                      a.split_name);
        if (!a.quiet)
            printf("eval %s on %s split %s: %d cases, task %s, %s mode, windows %dx%dx%d overlap "
                   "%.2f %s, device %s\n", I.weights, I.a.data, a.split_name, I.L.n_items,
                   head_task_name(I.task), I.mode == LOADER_SLICE ? "slice" : "volume", I.vc.img[0],
                   I.vc.img[1], I.vc.img[2], I.sc.overlap, I.sc.gaussian ? "gaussian" : "constant",
                   ctx_device_name(&I.ctx));
        casetab_init(&t, I.task, I.K, I.L.n_items);
        rc = infer_check_writable(csv_path, 0, err, sizeof err) ||
             infer_cases(&I, I.L.items, I.L.n_items, &t, NULL, NULL, err, sizeof err) ||
             casetab_write_csv(&t, csv_path, a.split_name, 0, err, sizeof err);
    }
    if (!rc) {
        casetab_print_overall(&t, a.split_name);
        printf("per-case metrics: %s\n", csv_path);
    } else if (err[0]) {
        fprintf(stderr, "vita: %s\n", err);
    }
    casetab_free(&t);
    infer_close(&I);
    return rc ? VITA_EXIT_USER : 0;
}
