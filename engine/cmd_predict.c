/* engine/cmd_predict.c — `vita predict RUN_DIR|CKPT --data DATA.h5 --out DIR`: the command
 * line; the work is engine/predict.c (outputs, native geometry) on the model engine/infer.c
 * opens exactly as `vita eval` does. */
#include "check.h"
#include "commands.h"
#include "predict.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char* PREDICT_USAGE =
    "usage: vita predict RUN_DIR|CKPT.safetensors --data DATA.h5 --out DIR [options]\n"
    "\n"
    "Predicts every case of a split by sliding-window inference over the whole volume (as vita\n"
    "eval) and writes the predictions in each case's NATIVE geometry (the original T2w grid:\n"
    "the dataset's crop and resampling undone, origin / direction / spacing from /geometry), so\n"
    "they overlay the original image in any viewer:\n"
    "  segment       DIR/<case>_seg.nii.gz   uint8 labels (argmax, nearest neighbour; 0 outside\n"
    "                                        the dataset grid)\n"
    "                DIR/<case>_prob.nii.gz  with --probs: float32 foreground probability\n"
    "                                        1 - p(label 0), linear\n"
    "  superres | undistort | synthesize\n"
    "                DIR/<case>_<task>.nii.gz float32 image (the dataset's normalised\n"
    "                                        intensities), linear; 0 outside the dataset grid\n"
    "  classify      DIR/predictions.csv     case_id,split,p_<class>...,pred,label (-1 unknown)\n"
    "  every task    DIR/metrics.csv         per-case metrics on the dataset grid, the columns\n"
    "                                        of vita eval's CSV (vita eval --help), plus a last\n"
    "                                        row 'overall' (mean over cases per column)\n"
    "Unlabelled data (no /seg, e.g. a clinic's import) is predicted too: metrics.csv then\n"
    "lists the cases without metric columns.\n"
    "<case> is the case id with every byte other than A-Z a-z 0-9 . _ - written as %%XX (hex).\n"
    "\n"
    "options:\n"
    "  --out DIR              output directory (created)\n"
    "  --cases a,b            only these case ids of the split\n"
    "  --limit N              only the first N cases (after --cases)\n"
    "  --probs                segment: also the foreground probability map\n"
    "%s"
    "exit codes: 0 ok, 1 user error, 2 internal error\n";

int cmd_predict(int argc, char** argv) {
    InferArgs a;
    infer_args_default(&a);
    a.allow_unlabelled = 1;   /* clinical data: predict even where no /seg exists */
    PredictOptions po;
    memset(&po, 0, sizeof po);
    for (int i = 1; i < argc; i++) {
        const char* o = argv[i];
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) { printf(PREDICT_USAGE, INFER_OPTIONS_HELP); return 0; }
        if (infer_parse_option(&a, argc, argv, &i, "predict")) continue;
        if (!strcmp(o, "--probs")) { po.probs = 1; continue; }
        if (!strcmp(o, "--out") || !strcmp(o, "--cases") || !strcmp(o, "--limit")) {
            if (i + 1 >= argc) USER_ERROR("%s needs a value (vita predict --help)", o);
            const char* v = argv[++i];
            if (o[2] == 'o') po.out_dir = v;
            else if (o[2] == 'c') po.cases = v;
            else {
                char* end;
                errno = 0;
                long n = strtol(v, &end, 10);
                if (errno || end == v || *end || n < 1 || n > 1000000000)
                    USER_ERROR("--limit '%s': expected a positive integer", v);
                po.limit = (int)n;
            }
            continue;
        }
        if (o[0] == '-' && o[1] == '-') USER_ERROR("unknown option '%s' (vita predict --help)", o);
        if (a.src) USER_ERROR("one RUN_DIR or checkpoint expected, got '%s' and '%s'", a.src, o);
        a.src = o;
    }
    if (!a.src) { fprintf(stderr, PREDICT_USAGE, INFER_OPTIONS_HELP); return VITA_EXIT_USER; }
    if (!po.out_dir) USER_ERROR("--out DIR is required: where the predictions go (vita predict --help)");

    char err[1024];
    Infer I;
    int rc = infer_open(&I, &a, err, sizeof err);
    if (!rc && po.probs && I.task != HEAD_SEGMENT) {
        snprintf(err, sizeof err, "--probs: the model's task is %s; probability maps are for "
                 "segment models", head_task_name(I.task));
        rc = 1;
    }
    if (!rc) rc = predict_run(&I, &po, err, sizeof err);
    if (rc && err[0]) fprintf(stderr, "vita: %s\n", err);
    infer_close(&I);
    return rc ? VITA_EXIT_USER : 0;
}
