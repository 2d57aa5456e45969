/* engine/volume.c — the format-independent half of engine/volume.h: dispatch by extension,
 * geometry (index <-> world LPS), the atomic temp + fsync + rename commit shared by the
 * NIfTI and MetaImage writers, and the two grids of a dataset case (volume.h "Dataset
 * geometry"). Format code: volume_nifti.c, volume_mha.c; resampling: volume_resample.c. */
#include "volume_internal.h"
#include "atomic.h"
#include "errfmt.h"
#include "check.h"
#include "dataset.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

int vol_ends_with(const char* path, const char* suffix) {
    size_t n = strlen(path), m = strlen(suffix);
    if (m > n) return 0;
    for (size_t i = 0; i < m; i++)
        if (tolower((unsigned char)path[n - m + i]) != tolower((unsigned char)suffix[i])) return 0;
    return 1;
}

void vol_temp_name(const char* path, const char* ext, char* out, size_t outlen) {
    size_t n = strlen(path), m = strlen(ext);
    int base = (int)(n >= m ? n - m : n);
    snprintf(out, outlen, "%.*s.tmp%d%s", base, path, (int)getpid(), ext);
}

int vol_commit(const char* tmp, const char* path, char* err, size_t errlen) {
    int fd = open(tmp, O_RDONLY);
    if (fd < 0) return vita_fail(err, errlen, "%s: cannot reopen the temp file %s: %s", path, tmp, strerror(errno));
    int e = fsync(fd);
    int se = errno;
    close(fd);
    if (e != 0) {
        unlink(tmp);
        return vita_fail(err, errlen, "%s: fsync of %s failed: %s (disk full?)", path, tmp, strerror(se));
    }
    if ((se = atomic_rename(tmp, path)))
        return vita_fail(err, errlen, "%s: cannot rename %s over it: %s", path, tmp, strerror(se));
    return 0;
}

static double det3(const double m[9]) {
    return m[0] * (m[4] * m[8] - m[5] * m[7]) - m[1] * (m[3] * m[8] - m[5] * m[6]) +
           m[2] * (m[3] * m[7] - m[4] * m[6]);
}

int vol_check_geometry(const Volume* v, const char* path, char* err, size_t errlen) {
    if (v->nx < 1 || v->ny < 1 || v->nz < 1)
        return vita_fail(err, errlen, "%s: image size %dx%dx%d (x,y,z) has a dimension below 1", path,
                         v->nx, v->ny, v->nz);
    for (int a = 0; a < 3; a++) {
        if (!(v->spacing[a] > 0) || !isfinite(v->spacing[a]))
            return vita_fail(err, errlen, "%s: spacing (z,y,x) = %g,%g,%g must be positive", path,
                             v->spacing[0], v->spacing[1], v->spacing[2]);
        if (!isfinite(v->origin[a]))
            return vita_fail(err, errlen, "%s: origin is not finite", path);
    }
    double d = det3(v->dir);
    if (!isfinite(d) || fabs(d) < 1e-6)
        return vita_fail(err, errlen, "%s: direction matrix is singular (determinant %g); the "
                         "orientation fields are damaged", path, d);
    return 0;
}

int vol_set_linear(Volume* v, const double A[9]) {
    for (int c = 0; c < 3; c++) {
        double s = sqrt(A[c] * A[c] + A[3 + c] * A[3 + c] + A[6 + c] * A[6 + c]);
        if (!(s > 0) || !isfinite(s)) return 1;
        v->spacing[2 - c] = s;   /* column c = index axis x, y, z; spacing is (z, y, x) */
        for (int r = 0; r < 3; r++) v->dir[r * 3 + c] = A[r * 3 + c] / s;
    }
    return 0;
}

int volume_read(const char* path, Volume* v, int component, char* err, size_t errlen) {
    memset(v, 0, sizeof *v);
    if (access(path, R_OK) != 0)
        return vita_fail(err, errlen, "%s: cannot read: %s", path, strerror(errno));
    int rc;
    if (vol_ends_with(path, ".nii") || vol_ends_with(path, ".nii.gz"))
        rc = volume_nifti_read(path, v, component, err, errlen);
    else if (vol_ends_with(path, ".mha") || vol_ends_with(path, ".mhd"))
        rc = volume_mha_read(path, v, component, err, errlen);
    else
        return vita_fail(err, errlen, "%s: unknown image format; vita reads .nii, .nii.gz, .mha, .mhd",
                         path);
    if (!rc) rc = vol_check_geometry(v, path, err, errlen);
    if (rc) volume_free(v);
    return rc;
}

int volume_write(const char* path, const Volume* v, int as_labels, char* err, size_t errlen) {
    if (!v->data) return vita_fail(err, errlen, "%s: volume has no voxel data to write", path);
    if (vol_check_geometry(v, path, err, errlen)) return 1;
    const Volume* comps[1] = {v};
    if (vol_ends_with(path, ".nii") || vol_ends_with(path, ".nii.gz"))
        return volume_nifti_write(path, comps, 1, as_labels, err, errlen);
    if (vol_ends_with(path, ".mha"))
        return volume_mha_write(path, comps, 1, as_labels, 1, err, errlen);
    if (vol_ends_with(path, ".mhd"))
        return volume_mha_write(path, comps, 1, as_labels, 0, err, errlen);
    return vita_fail(err, errlen, "%s: unknown image format; vita writes .nii, .nii.gz, .mha, .mhd",
                     path);
}

void volume_free(Volume* v) {
    free(v->data);
    v->data = NULL;
}

void volume_geometry_init(Volume* v, int nz, int ny, int nx, const double spacing_zyx[3]) {
    memset(v, 0, sizeof *v);
    v->nz = nz;
    v->ny = ny;
    v->nx = nx;
    for (int a = 0; a < 3; a++) {
        v->spacing[a] = spacing_zyx[a];
        v->dir[a * 4] = 1;
    }
}

void volume_index_to_world(const Volume* v, const double xyz[3], double world[3]) {
    double s[3] = {v->spacing[2] * xyz[0], v->spacing[1] * xyz[1], v->spacing[0] * xyz[2]};
    for (int r = 0; r < 3; r++)
        world[r] = v->origin[r] + v->dir[r * 3] * s[0] + v->dir[r * 3 + 1] * s[1] + v->dir[r * 3 + 2] * s[2];
}

void volume_world_to_index(const Volume* v, const double world[3], double xyz[3]) {
    /* solve dir * s = world - origin by the adjugate (dir need not be orthonormal: NIfTI
     * sforms may shear), then divide by the spacing */
    const double* m = v->dir;
    double b[3] = {world[0] - v->origin[0], world[1] - v->origin[1], world[2] - v->origin[2]};
    double inv[9] = {m[4] * m[8] - m[5] * m[7], m[2] * m[7] - m[1] * m[8], m[1] * m[5] - m[2] * m[4],
                     m[5] * m[6] - m[3] * m[8], m[0] * m[8] - m[2] * m[6], m[2] * m[3] - m[0] * m[5],
                     m[3] * m[7] - m[4] * m[6], m[1] * m[6] - m[0] * m[7], m[0] * m[4] - m[1] * m[3]};
    double d = det3(m);
    for (int r = 0; r < 3; r++) {
        double s = (inv[r * 3] * b[0] + inv[r * 3 + 1] * b[1] + inv[r * 3 + 2] * b[2]) / d;
        xyz[r] = s / v->spacing[2 - r];
    }
}

void volume_dataset_grids(const struct Dataset* ds, int i, Volume* native, Volume* grid) {
    CHECK(i >= 0 && i < ds->n, "case %d of %d", i, ds->n);
    const double* sp = ds->g_spacing + 3 * i;
    const double* gs = ds->g_grid_spacing ? ds->g_grid_spacing + 3 * i : sp;
    const int32_t* so = ds->g_shape_original + 3 * i;
    const int32_t* co = ds->g_crop_offset + 3 * i;
    volume_geometry_init(native, so[0], so[1], so[2], sp);
    memcpy(native->origin, ds->g_origin + 3 * i, sizeof native->origin);
    memcpy(native->dir, ds->g_direction + 9 * i, sizeof native->dir);
    volume_geometry_init(grid, ds->D, ds->H, ds->W, gs);
    memcpy(grid->dir, native->dir, sizeof grid->dir);
    /* dataset voxel (0,0,0) = resampled-grid index crop_offset (x, y, z order for the map) */
    double idx[3] = {co[2], co[1], co[0]};
    Volume resampled = *native;
    memcpy(resampled.spacing, gs, sizeof resampled.spacing);
    volume_index_to_world(&resampled, idx, grid->origin);
}
