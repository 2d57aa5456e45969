/* engine/volume_internal.h — what the volume_*.c files share (not for other modules, except
 * tests/test_volume.c, which uses the multi-component / NIfTI-2 writers to build test files).
 * A "component" is one 3-D volume of a 4-D file; all components share one geometry. */
#ifndef VITA_VOLUME_INTERNAL_H
#define VITA_VOLUME_INTERNAL_H

#include "volume.h"

#include <stdio.h>
#include "errfmt.h"   /* vita_fail: the one-line error into (err, errlen) */

/* 1 when path ends with suffix (case-insensitive) */
int vol_ends_with(const char* path, const char* suffix);
/* temp name next to `path` that keeps its extension ext (".nii.gz", ".mha", ...), so that
 * libraries choosing the format by extension still do */
void vol_temp_name(const char* path, const char* ext, char* out, size_t outlen);
/* fsync tmp and rename it over path (the atomic commit); removes tmp on failure */
int vol_commit(const char* tmp, const char* path, char* err, size_t errlen);
/* geometry sanity (positive spacing, finite origin, invertible direction): 0 or 1 + err */
int vol_check_geometry(const Volume* v, const char* path, char* err, size_t errlen);
/* stores a 3x3 index->world linear part A (row-major, columns = index axes x, y, z) as
 * spacing + direction; 1 when a column is zero or not finite */
int vol_set_linear(Volume* v, const double A[9]);

int volume_nifti_read(const char* path, Volume* v, int component, char* err, size_t errlen);
/* comps[ncomp] share comps[0]'s geometry; NIfTI-1 */
int volume_nifti_write(const char* path, const Volume* const* comps, int ncomp, int as_labels,
                       char* err, size_t errlen);
int volume_mha_read(const char* path, Volume* v, int component, char* err, size_t errlen);
/* .mha: header + data in one file; .mhd: header + <base>.raw / .zraw (compressed) */
int volume_mha_write(const char* path, const Volume* const* comps, int ncomp, int as_labels,
                     int compress, char* err, size_t errlen);

#endif
