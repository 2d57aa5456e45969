/* engine/infer.h — a fine-tuned model opened for whole-volume inference over one split of a
 * dataset: what `vita eval` and `vita predict` share (their options, the model/head/input
 * reconstruction from a run directory or a checkpoint, the loader, and the per-case loop).
 *
 * Model: the checkpoint's "model" metadata (else the run's config.yaml model), head from its
 * "head" metadata (headmeta.h; else the run's task + head config), input channels / mode from
 * its "input" metadata (else the run config's data.channels / data.input, else inferred from
 * the model: 3D -> volume mode with the model's channel names; 2D -> slice mode, and channels
 * named X_prev, X, X_next are sequence X with context 3). RUN_DIR uses
 * checkpoints/best.safetensors when present, else the newest complete step checkpoint.
 * Sliding window (slidewin.h): overlap / weighting / batch from the options, else the run's
 * eval.sliding_window and data.batch, else 0.5 / gaussian / 2.
 *
 * Per case the loop runs slide_case (the output on the dataset grid: segment K softmax
 * probabilities [K, D, H, W], image tasks the predicted image [D, H, W], classify K
 * probabilities), scores it into a CaseTable (casetable.h) and prints a progress line. */
#ifndef VITA_INFER_H
#define VITA_INFER_H

#include <stddef.h>
#include <stdint.h>

#include "casetable.h"
#include "config.h"
#include "dataset.h"
#include "loader.h"
#include "safetensors.h"
#include "slidewin.h"
#include "errfmt.h"   /* vita_fail: the one-line error into (err, errlen) */

typedef struct {
    const char* src;           /* RUN_DIR or CKPT.safetensors */
    const char* data;          /* NULL: the run's data.path */
    const char* split_name;    /* "test" */
    const char* device;        /* NULL: the run's, else auto */
    const char* weighting;     /* NULL: the run's */
    double overlap;            /* < 0: the run's */
    int batch, threads, quiet; /* batch 0: the run's */
    int allow_unlabelled;      /* predict: a segment model may run on a dataset without /seg
                                  (no per-case metrics then) */
} InferArgs;

/* the options text both commands print in --help */
extern const char* const INFER_OPTIONS_HELP;

void infer_args_default(InferArgs* a);
/* argv[*i] if it is one of the shared options (--data --split --device --weighting --overlap
 * --batch --threads --quiet), advancing *i past its value: 1 consumed, 0 not a shared option.
 * A bad value exits 1 with one line naming the option (cmd names the command for the hint). */
int infer_parse_option(InferArgs* a, int argc, char** argv, int* i, const char* cmd);

typedef struct {
    InferArgs a;
    int split;                 /* SPLIT_* of a.split_name */
    int run_dir;               /* src is a run directory */
    Config* cfg;               /* the run's config (NULL for a bare checkpoint) */
    char weights[2048];        /* the checkpoint used */
    VitConfig vc;
    HeadConfig hc;
    int task, K;               /* K: classes (classify, segment), 1 for image tasks */
    int mode, context;
    char channels[128];
    SlideConfig sc;
    StFile st;
    Dataset ds;
    Loader L;                  /* the split's cases: L.items[0 .. L.n_items) */
    Ctx ctx;
    Vit m;
    Head h;
    float* out;                /* the current case's output (see the file comment) */
    int32_t* seg;              /* its label map (segment) */
    float* target;             /* its target image (image tasks) */
    int32_t cls;               /* its case label (classify; -1 unknown) */
    int no_labels;             /* segment on a dataset without /seg (allow_unlabelled) */
    int ok_st, ok_ds, ok_L, ok_ctx, ok_m, ok_h;
} Infer;

/* opens everything (see the file comment); 0, or 1 with one line in err (empty when the
 * message was already printed, as by the weight loader). infer_close in both cases. */
int infer_open(Infer* I, const InferArgs* a, char* err, size_t errlen);
void infer_close(Infer* I);

/* called after each case's metrics are in the table; nonzero stops the loop (err set) */
typedef int (*InferCaseFn)(void* user, Infer* I, int case_idx, char* err, size_t errlen);

/* runs the cases items[0..n) (dataset indices of the split) in order: slide_case, then the
 * case's metrics into t (casetab_init(t, I->task, I->K, n) first), a progress line unless
 * quiet, then fn (may be NULL). 0, or 1 with err naming the case. */
int infer_cases(Infer* I, const int* items, int n, CaseTable* t, InferCaseFn fn, void* user,
                char* err, size_t errlen);

/* 0 when `path`'s directory (is_dir: path itself) exists and is writable, so a long run does
 * not end on an unwritable output; else 1 with err */
int infer_check_writable(const char* path, int is_dir, char* err, size_t errlen);

/* "train" | "val" | "test" | "probe" -> SPLIT_*, -1 otherwise */
int infer_split_index(const char* name);

#endif
