/* engine/h5read.h — the small HDF5 reader `vita mmd` (and later `vita info`) needs: 2-D float
 * matrices, dataset lengths, string attributes and a listing of what a file holds.
 *
 * Every function opens and closes the file itself (feature files are read once), checks every
 * HDF5 call, and on failure returns non-zero with ONE line in err naming the file and the
 * dataset and, where it helps, what the file does hold ("no dataset /layer_6/pooled in F.h5;
 * datasets there: /layer_3/pooled, /case_id"). HDF5's own error-stack printing is switched
 * off on first use so that users see only these lines. */
#ifndef VITA_H5READ_H
#define VITA_H5READ_H

#include <stddef.h>

/* Reads a 2-D float dataset (float16 / float32 / float64 on disk, any byte order) into a new
 * malloc'ed row-major float array [rows, cols]; the library converts to native float.
 * Rejected with a message: missing file or dataset, rank != 2, zero rows or columns, integer,
 * string or compound types. The caller frees *out. Returns 0 or 1. */
int h5_read_matrix(const char* path, const char* dataset, float** out, long* rows, long* cols,
                   char* err, size_t errlen);

/* length of the first dimension of any dataset (e.g. /case_id, a variable-length string
 * dataset [N]); -1 with err set when the file or dataset is missing */
long h5_dataset_len(const char* path, const char* dataset, char* err, size_t errlen);

/* 1 if path holds a dataset of that name, 0 if not (or the file cannot be read) */
int h5_has_dataset(const char* path, const char* dataset);

/* string attribute attr of object obj ("/" for the file root), fixed or variable length,
 * copied NUL-terminated (truncated) into buf. Returns 0, or 1 with err set. */
int h5_read_str_attr(const char* path, const char* obj, const char* attr, char* buf,
                     size_t buflen, char* err, size_t errlen);

/* comma-separated list of every dataset in the file, as absolute paths ("/a/b, /c"), truncated
 * with "..." when it does not fit. prefix_filter, when non-NULL, keeps only names starting
 * with it. Returns the number of datasets found, -1 if the file cannot be opened. */
int h5_list_datasets(const char* path, const char* prefix_filter, char* buf, size_t buflen);

#endif
