/* engine/sweep.h — a sweep file (`vita sweep`, SPEC.md §1): a base run config and a grid of
 * axes, expanded into numbered run configs for a SLURM job array or the local runner.
 *
 * Format (YAML, one document; relative paths are relative to the sweep file):
 *   base: finetune-base.yaml          base run config (SPEC.md §7); required
 *   name: paper-demo                  optional; default = the sweep file's stem
 *   set: {train.epochs: 3}            optional overrides for every run (keys as --set)
 *   axes:                             the grid, in this order; run ids count the LAST axis fastest
 *     weights: {mae: a.safetensors, scratch: null}   -> model.weights; a map label -> path
 *                                     (null = scratch) or a list of paths (label = file stem,
 *                                     null -> "scratch"); each path must exist
 *     task: [classify, segment]       -> task.name
 *     lr: [1.0e-4, 3.0e-4]            -> train.lr (index.tsv shows the values as written)
 *     seed: [0, 1, 2]                 -> run.seed
 *     fold: [0]                       -> data.fold
 *     extra:                          further axes on any config key, after fold
 *       - {name: drop_path, key: train.drop_path, values: [0.0, 0.1]}
 *   task_set: {segment: {train.batch: 2}}   optional per-task overrides, applied after the
 *                                     axis values (a key of an axis is refused: it would make
 *                                     runs identical)
 *   scratch: scratch                  the baseline arm for RPG; required with a weights axis,
 *                                     and its weights must be null
 *   controls:                         optional; read by vita report
 *     - {kind: positive, aligned: A, reference: B}   (weights labels)
 *     - {kind: negative, arms: [C, D]}
 *   primary: {layer: norm, feature: pooled, estimator: mmd2_paired}   required: the declared
 *                                     primary analysis; layer among align.layers, feature =
 *                                     align.feature, estimator among align.estimators of every run
 *   n_runs: 90                        optional; written by vita sweep into DIR/sweep.yaml (a
 *                                     given value must equal the grid's product)
 * Every axis is optional; one left out takes the base config's value (one run along it).
 * Run r's config = base + set + axis values + task_set[task] + run.out = DIR/runs, run.name =
 * NNNN (r, 4 digits, more above 9999 runs). */
#ifndef VITA_SWEEP_H
#define VITA_SWEEP_H

#include <stddef.h>

#define SWEEP_PATH 1024
enum { SWEEP_AX_WEIGHTS = 0, SWEEP_AX_TASK, SWEEP_AX_LR, SWEEP_AX_SEED, SWEEP_AX_FOLD, SWEEP_N_BUILTIN };

typedef struct {
    char name[64];           /* weights, task, lr, seed, fold, or the extra axis' name */
    char key[128];           /* config key (model.weights, task.name, ...) */
    int present;             /* given in the sweep file (builtin axes may be absent) */
    int n;
    char** labels;           /* index.tsv text: weights label, value as written */
    char** values;           /* YAML flow text for --set: absolute path / null, number, ... */
} SweepAxis;

typedef struct {
    char kind[16];           /* positive | negative */
    char aligned[64], reference[64];
    int n_arms;
    char** arms;
} SweepControl;

typedef struct {
    char file[SWEEP_PATH];   /* the sweep file as given */
    char base[SWEEP_PATH];   /* absolute */
    char name[128];
    int n_set;
    char** set_keys;         /* "train.epochs" */
    char** set_vals;         /* YAML flow text */
    int n_axes;              /* SWEEP_N_BUILTIN + extras */
    SweepAxis* axes;
    int n_task_set;
    char** ts_task;          /* task name per entry */
    char** ts_key;
    char** ts_val;
    char scratch[64];
    int n_controls;
    SweepControl* controls;
    char primary_layer[16], primary_feature[16], primary_estimator[32];
    long n_runs_given;       /* -1 when absent */
} Sweep;

/* parses and checks the sweep file (syntax, keys, labels, paths; not the run configs).
 * 0, or 1 with one line in err naming the file, the key and the fix. */
int sweep_load(Sweep* s, const char* path, char* err, size_t errlen);
void sweep_free(Sweep* s);
/* number of runs (product of the present axes' sizes); 0 when it would overflow a long */
long sweep_n_runs(const Sweep* s);
/* the axis value indices of run r (idx[n_axes]; an absent axis has index 0 and n 0) */
void sweep_run_index(const Sweep* s, long r, int* idx);
/* "--set" strings of run r ("k=v", malloc'd, *n of them; free with sweep_sets_free):
 * set, axis values, task_set of the run's task, run.out = runs_dir, run.name = id */
char** sweep_run_sets(const Sweep* s, long r, const char* base_task, const char* runs_dir,
                      const char* id, int* n);
void sweep_sets_free(char** sets, int n);
/* dir/rel (rel itself when absolute; dir NULL = the current directory) with "." and ".."
 * folded lexically, so a path spelled differently resolves the same, before and after it
 * exists. 0, or 1 when it does not fit cap */
int sweep_abs_path(const char* dir, const char* rel, char* out, size_t cap);
/* width of run ids: 4 digits, more when n_runs > 10^4 */
int sweep_id_width(long n_runs);
/* the resolved sweep as YAML (malloc'd): the sweep file with absolute paths plus n_runs;
 * sweep_load reads it back */
char* sweep_to_yaml(const Sweep* s, long n_runs);

#endif
