/* engine/volume.h — one 3D medical image in world coordinates, read from and written to NIfTI-1/2
 * (.nii, .nii.gz; nifticlib) and MetaImage (.mha one file, .mhd + raw; raw or zlib-compressed
 * data), and resampled between grids. Host memory only (import / predict time, not hot loops).
 *
 * Convention (stated once, used everywhere in vita):
 *   data[(z * ny + y) * nx + x], index order (z, y, x) as the dataset file (SPEC.md §2);
 *   world coordinates are LPS millimetres (ITK / DICOM / MetaImage); NIfTI's RAS world is
 *   converted on read and back on write (x and y negated);
 *   world(x, y, z) = origin + dir * diag(sx, sy, sz) * (x, y, z)^T, with dir a row-major 3x3
 *   matrix whose column c is the LPS direction of index axis c (0 = x/i, 1 = y/j, 2 = z/k),
 *   i.e. ITK's Direction; spacing[] is stored (z, y, x) like the dataset's spacing_zyx.
 *   NIfTI: the sform is used when sform_code > 0, else the qform, else pixdim only;
 *   scl_slope / scl_inter are applied on read (slope 0 = identity, as the standard says).
 *
 * Dataset geometry (SPEC.md §2 /geometry, per case i; what `vita import` writes and `vita
 * predict` undoes):
 *   spacing [3] (z,y,x), origin [3] (LPS x,y,z), direction [9] (as dir above),
 *   shape_original [3] (z,y,x): the NATIVE T2w image grid of the case;
 *   grid_spacing [3] (z,y,x): spacing of the resampled grid (same origin and direction as the
 *   native grid, shape round(shape_original * spacing / grid_spacing)); absent = spacing
 *   (no resampling);
 *   crop_offset [3] (z,y,x): index in the resampled grid of the dataset array's voxel (0,0,0);
 *   negative where the crop padded. So dataset voxel (k, j, i) sits at world
 *   origin + dir * diag(grid_spacing) * (i + ox, j + oy, k + oz).
 */
#ifndef VITA_VOLUME_H
#define VITA_VOLUME_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int nz, ny, nx;
    double spacing[3];         /* (z, y, x) mm */
    double origin[3];          /* LPS (x, y, z) mm of voxel (0, 0, 0) */
    double dir[9];             /* row-major, columns = LPS directions of index axes x, y, z */
    float* data;               /* host, nz*ny*nx (NULL for a geometry-only volume) */
    int is_integer;            /* the file stored an integer type (labels) */
} Volume;

enum { VOL_NEAREST = 0, VOL_LINEAR = 1, VOL_BSPLINE = 3 };

/* by extension: .nii / .nii.gz -> NIfTI, .mha / .mhd -> MetaImage. 4-D files: the first
 * volume unless `component` >= 0 selects one (MSD-style stacked T2/ADC). 0, or 1 with one
 * line in err naming the file and the field at fault. */
int volume_read(const char* path, Volume* v, int component, char* err, size_t errlen);
/* writes atomically (temp + rename); as_labels: uint8 voxels (values rounded, clamped), else
 * float32. .nii.gz and .mha compress (gzip / zlib). */
int volume_write(const char* path, const Volume* v, int as_labels, char* err, size_t errlen);
void volume_free(Volume* v);
/* geometry only (data NULL), identity direction, origin 0 */
void volume_geometry_init(Volume* v, int nz, int ny, int nx, const double spacing_zyx[3]);

/* continuous index (x, y, z) <-> world LPS (x, y, z) */
void volume_index_to_world(const Volume* v, const double xyz[3], double world[3]);
void volume_world_to_index(const Volume* v, const double world[3], double xyz[3]);

/* resamples src onto dst's grid (dst geometry set, dst->data allocated here if NULL): each
 * dst voxel centre is mapped to world and into src; VOL_NEAREST (labels), VOL_LINEAR, or
 * VOL_BSPLINE (cubic B-spline interpolation with prefiltered coefficients, mirror boundary,
 * as ITK's BSplineInterpolateImageFunction order 3); points outside src get `fill`. */
int volume_resample(const Volume* src, Volume* dst, int interp, float fill, char* err, size_t errlen);

struct Dataset;
/* the two grids of dataset case i (geometry only): native = the case's original T2w grid,
 * grid = the dataset array's grid (D, H, W of the file; origin moved by crop_offset in the
 * resampled grid). Phantoms / datasets without /geometry: both are the identity geometry of
 * the common grid with spacing_zyx. */
void volume_dataset_grids(const struct Dataset* ds, int i, Volume* native, Volume* grid);

#endif
