/* engine/info.h — `vita info FILE.h5`: dispatches on the root attribute `format`:
 *   "vita-dataset"  -> dataset_print_info (schema, validation, cases per split/fold, labels)
 *   "vita-log"      -> a run-log summary (SPEC.md §4): run identity, row counts, the val_metric
 *                      curve, the last /align row per estimator, /summary and /test
 *   "vita-features" -> layers, shapes, case count, weights sha256 (SPEC.md §5)
 *   anything else   -> the generic schema listing (attributes, datasets), exit 0
 * A log that is being written is opened with SWMR read when the plain open fails; when the
 * file's status flags say a writer holds it (a run in progress, or a killed run) it says so
 * and names `h5clear -s`. Everything goes to stdout; errors one line on stderr. */
#ifndef VITA_INFO_H
#define VITA_INFO_H

/* returns the exit code: 0, or 1 (user error: unreadable / not HDF5) */
int info_print_h5(const char* path, int show_config);

#endif
