/* engine/rundir.h — the state of a run directory as seen from outside the training loop
 * (SPEC.md §4): `vita train` decides "exists" with it, and `vita sweep`, the local sweep
 * runner and the SLURM script decide "finished" with the done marker, without opening HDF5.
 *
 *   not started  the directory is missing, empty, or holds only config.yaml (what `vita sweep`
 *                writes for each run: such a run starts with or without --resume)
 *   started      anything else (log.h5, checkpoints/ ...): needs --resume or run.overwrite
 *   finished     RUN_DIR/done exists: written atomically by `vita train` as its very last act,
 *                after /summary and /test; it holds "vita-run-done 1", the finish time and the
 *                step count. `vita train --resume` on a finished run says so and exits 0. */
#ifndef VITA_RUNDIR_H
#define VITA_RUNDIR_H

#include <stddef.h>

#define RUNDIR_DONE "done"

/* 1 if dir holds anything other than config.yaml */
int rundir_started(const char* dir);
/* 1 if dir/done exists */
int rundir_done(const char* dir);
/* writes dir/done atomically; 0 or 1 with err */
int rundir_mark_done(const char* dir, long steps, char* err, size_t errlen);
/* removes dir/done if present (a run that is being replaced); 0 or 1 with err */
int rundir_clear_done(const char* dir, char* err, size_t errlen);

#endif
