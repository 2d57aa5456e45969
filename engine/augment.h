/* engine/augment.h — seeded augmentations and degradations: pure functions on host arrays.
 *
 * Layouts: a volume is [D, H, W] (z, y, x; x = left-right), a multi-channel volume [C, D, H, W].
 * Labels are uint8 [D, H, W]. Voxel coordinates are (z, y, x); axis 0 = z (through-plane).
 *
 * Randomness: every draw comes from a 64-bit seed that the loader derives from (run seed,
 * epoch, sample index, rank) only, and each augmentation draws from its own stream
 * rng_stream(seed, tag) — so turning one augmentation on or off never shifts the draws of
 * another, and the arms of a comparison that share a seed see identical augmentations.
 *
 * Defaults (augment_defaults), nnU-Net v2 / MONAI-like, "dummy-2D" for anisotropic prostate MRI
 * (spacing ~3 x 0.5 x 0.5 mm: rotations, zooms, elastic, blur and low resolution act in-plane):
 *   flip          p 0.5 on x (left-right) only; z and y off
 *   rotate        p 0.2, angle U(-30°, 30°) about z (in-plane); about y and x off
 *   scale         p 0.2, zoom U(0.7, 1.4) in-plane (zoom > 1 magnifies)
 *   elastic       p 0.1, field = Gaussian-smoothed N(0,1) noise (sigma 6 voxels), normalised to
 *                 unit RMS, times U(0, 2) voxels; in-plane components only
 *   (rotate, scale and elastic are one resampling: trilinear for images, nearest for labels,
 *    zeros outside the volume)
 *   noise         p 0.1, additive N(0, s^2), s ~ U(0, 0.3)   (nnU-Net: variance U(0, 0.1))
 *   blur          p 0.2, per channel p 0.5, Gaussian sigma U(0.5, 1.0) voxels in-plane
 *   intensity     p 0.15, x*a + b, a ~ U(0.75, 1.25), b ~ U(-0.1, 0.1)
 *   low res       p 0.25, per channel p 0.5, in-plane zoom U(0.5, 1.0): nearest down, linear up
 *   gamma         p 0.3, gamma U(0.7, 1.5) on the min-max normalised channel, mean/std kept
 *   bias field    p 0.1, exp(sum c_ijk P_i(z) P_j(y) P_k(x)), Legendre degree 3, c ~ U(-0.1, 0.1)
 * Intensity augmentations act per present channel; missing channels stay zero. */
#ifndef VITA_AUGMENT_H
#define VITA_AUGMENT_H

#include <stddef.h>
#include <stdint.h>

#include "rng.h"

typedef struct {
    float p_flip[3];                  /* per axis z, y, x */
    float p_rotate, rot_deg[3];       /* max |angle| about z, y, x (degrees) */
    float p_scale, scale_lo, scale_hi;
    int scale_z;                      /* 1: zoom z too */
    float p_elastic, elastic_sigma, elastic_mag;
    int elastic_z;                    /* 1: z displacement too */
    float p_noise, noise_std;
    float p_blur, blur_lo, blur_hi;
    int blur_z;
    float p_intensity, int_scale_lo, int_scale_hi, int_shift;
    float p_lowres, lowres_lo, lowres_hi;
    int lowres_z;
    float p_gamma, gamma_lo, gamma_hi;
    float p_bias, bias_coeff;
    int bias_degree;                  /* <= 4 */
    float p_channel;                  /* per-channel probability for blur and low res */
} AugmentConfig;

void augment_defaults(AugmentConfig* a);
void augment_none(AugmentConfig* a);  /* every probability 0 */

/* ---- spatial ---------------------------------------------------------------------------- */
/* A spatial draw: output voxel o of an out[0]xout[1]xout[2] crop samples the source at
 *   s = centre + A (o - oc + disp(o)),  oc = (out - 1) / 2,
 * then the flips are applied to the crop. */
typedef struct {
    int flip[3];
    double A[3][3];
    int has_disp;                     /* disp [3, out...] filled (elastic) */
} AugSpatial;

/* A = R_z(rot[0]) R_y(rot[1]) R_x(rot[2]) diag(1/zoom); angles in radians, about z, y, x */
void aug_affine_matrix(const double rot[3], const double zoom[3], double A[3][3]);
/* draws flips, affine and (when drawn) the elastic field into disp [3, out0, out1, out2].
 * slice2d: the crop is a stack of 2D slices (slice mode), so nothing mixes or flips z
 * whatever the config, and the elastic field is the same on every slice. */
void augment_draw_spatial(const AugmentConfig* a, uint64_t seed, const int out[3], int slice2d,
                          AugSpatial* sp, float* disp);
/* trilinear resampling of C channels, zeros outside; identity A with an integral offset and
 * no disp is an exact copy. disp may be NULL. */
void aug_resample(const float* src, int C, const int dims[3], const double centre[3],
                  const double A[3][3], const float* disp, const int out[3], float* dst);
/* nearest-neighbour resampling of labels (round half up), 0 outside */
void aug_resample_labels(const uint8_t* src, const int dims[3], const double centre[3],
                         const double A[3][3], const float* disp, const int out[3], uint8_t* dst);
void aug_flip(float* x, int C, const int dims[3], int axis);
void aug_flip_u8(uint8_t* x, const int dims[3], int axis);
/* smooth random field [3, dims]: N(0,1) smoothed by sigma voxels (drawn on a grid coarser by
 * f = floor(sigma/2) when sigma >= 4, smoothed by sigma/f there, trilinear up), scaled to RMS
 * mag; the z component is zero unless with_z */
void aug_elastic_field(Rng* r, const int dims[3], double sigma, double mag, int with_z,
                       float* disp);
/* separable Gaussian smoothing in place (sigma per axis, 0 skips the axis), kernel truncated
 * at 3 sigma and normalised, edge voxels replicated */
void aug_gauss_smooth(float* x, const int dims[3], const double sigma[3]);

/* ---- intensity (one channel of n voxels) -------------------------------------------------- */
void aug_noise(float* x, long n, double std, Rng* r);
/* gamma on the min-max normalised values, then the original mean and std restored
 * (nnU-Net retain_stats): a monotone map */
void aug_gamma(float* x, long n, double gamma);
void aug_scale_shift(float* x, long n, double scale, double shift);
/* multiplies by exp(sum_{i+j+k<=degree} c P_i(z) P_j(y) P_k(x)), coordinates in [-1, 1];
 * coefficients in the order of aug_bias_ncoeffs (i outermost) */
int aug_bias_ncoeffs(int degree);
void aug_bias_field(float* x, const int dims[3], int degree, const double* coeffs);
/* nearest-neighbour down to round(dims*zoom) then linear back up, in place; zoom 1 = identity */
void aug_lowres(float* x, const int dims[3], const double zoom[3]);
/* all intensity augmentations on img [C, dims], skipping channels with present[c] == 0
 * (present NULL: all present). Whether each fires is drawn per sample, parameters per channel;
 * order: bias field, noise, blur, intensity, low res, gamma. */
void augment_intensity(const AugmentConfig* a, uint64_t seed, float* img, int C,
                       const int dims[3], const uint8_t* present);

/* ---- degradations for the image tasks (one channel [D, H, W]) ----------------------------- */
/* superres: averages blocks of `factor` voxels along `axis` (blocks start at offset mod factor,
 * partial blocks at the ends), then interpolates linearly back between block centres.
 * factor 1 = identity. */
void deg_superres(float* x, const int dims[3], int axis, int factor, int offset);
/* smooth random displacement v [D,H,W] (voxels): cubic B-spline through N(0,1) control points
 * every spacing[a] voxels, scaled to max |v| = amp, then scaled down if needed so that
 * |dv/d axis| <= 0.8 (the map stays monotone). */
void deg_smooth_field(Rng* r, const int dims[3], const double spacing[3], double amp, int axis,
                      float* v);
/* EPI-like distortion along axis: dst(p) = src(p + v(p) e) * (1 + dv/de(p)) (jacobian 1) or
 * without the factor (jacobian 0); linear interpolation, zeros outside, central differences.
 * The Jacobian factor makes sum_p dst = sum_p src along each line when v vanishes at the ends.
 * v = 0 is an exact copy. */
void deg_distort(const float* src, const int dims[3], int axis, const float* v, int jacobian,
                 float* dst);

#endif
