/* engine/volume_resample.c — resampling one volume onto another grid (volume.h).
 *
 * Each destination voxel centre maps to a continuous source index through the composed
 * affine src_index = M * dst_index + t (M, t from both geometries, computed once). A point is
 * inside the source when every coordinate lies in [-0.5, n - 0.5] (the voxel's extent, as
 * ITK's interpolators treat the buffer edge); outside points get `fill`. Inside points near
 * the edge use edge-clamped neighbours (linear) or mirrored coefficients (B-spline).
 *
 * Cubic B-spline (as ITK's BSplineInterpolateImageFunction, order 3): the samples are first
 * converted to B-spline coefficients by the recursive prefilter of Unser et al. (pole
 * z = sqrt(3) - 2, gain 6, causal + anticausal pass per axis, whole-sample mirror boundary
 * c[-k] = c[k], c[n-1+k] = c[n-1-k]); the interpolant then passes through every sample and
 * reproduces cubic polynomials away from the boundary. Coefficients are double: the
 * prefilter amplifies rounding by up to ~3x and labels / phantoms need float accuracy. */
#include "volume_internal.h"
#include "check.h"

#include <math.h>
#include <string.h>

/* one line of n samples at stride s, in place */
static void prefilter_line(double* c, int n, size_t s) {
    if (n < 2) return;
    const double z = sqrt(3.0) - 2.0;
    const double gain = (1 - z) * (1 - 1 / z);
    for (int k = 0; k < n; k++) c[k * s] *= gain;
    /* causal initial value for the mirror boundary (exact sum over the mirrored signal) */
    double zn = z, iz = 1 / z, z2n = pow(z, n - 1);
    double sum = c[0] + z2n * c[(n - 1) * s];
    z2n *= z2n * iz;
    for (int k = 1; k <= n - 2; k++) {
        sum += (zn + z2n) * c[k * s];
        zn *= z;
        z2n *= iz;
    }
    c[0] = sum / (1 - zn * zn);
    for (int k = 1; k < n; k++) c[k * s] += z * c[(k - 1) * s];
    c[(n - 1) * s] = (z / (z * z - 1)) * (z * c[(n - 2) * s] + c[(n - 1) * s]);
    for (int k = n - 2; k >= 0; k--) c[k * s] = z * (c[(k + 1) * s] - c[k * s]);
}

static double* bspline_coefficients(const Volume* v) {
    size_t nx = v->nx, ny = v->ny, nz = v->nz, n = nx * ny * nz;
    double* c = xmalloc(n * sizeof(double));
    for (size_t k = 0; k < n; k++) c[k] = v->data[k];
    #pragma omp parallel for schedule(static)
    for (long long zy = 0; zy < (long long)(nz * ny); zy++) prefilter_line(c + zy * nx, (int)nx, 1);
    #pragma omp parallel for schedule(static)
    for (long long zx = 0; zx < (long long)(nz * nx); zx++) {
        size_t z = zx / nx, x = zx % nx;
        prefilter_line(c + z * ny * nx + x, (int)ny, nx);
    }
    #pragma omp parallel for schedule(static)
    for (long long yx = 0; yx < (long long)(ny * nx); yx++) prefilter_line(c + yx, (int)nz, nx * ny);
    return c;
}

static inline int mirror(int k, int n) {
    if (n == 1) return 0;
    int period = 2 * n - 2;
    k %= period;
    if (k < 0) k += period;
    return k < n ? k : period - k;
}

/* cubic B-spline weights of the 4 nodes floor(x)-1 .. floor(x)+2 at fraction t */
static inline void bspline_weights(double t, double w[4]) {
    double u = 1 - t;
    w[0] = u * u * u / 6;
    w[1] = 2.0 / 3 - t * t + t * t * t / 2;
    w[2] = 2.0 / 3 - u * u + u * u * u / 2;
    w[3] = t * t * t / 6;
}

static inline int clampi(int k, int n) { return k < 0 ? 0 : k >= n ? n - 1 : k; }

int volume_resample(const Volume* src, Volume* dst, int interp, float fill, char* err, size_t errlen) {
    if (!src->data) return vita_fail(err, errlen, "resample: source volume has no data");
    if (interp != VOL_NEAREST && interp != VOL_LINEAR && interp != VOL_BSPLINE)
        return vita_fail(err, errlen, "resample: interpolation %d; use nearest (0), linear (1) or B-spline (3)", interp);
    if (vol_check_geometry(src, "resample source", err, errlen) ||
        vol_check_geometry(dst, "resample target", err, errlen))
        return 1;
    /* affine dst index -> src index from three unit steps and the origin */
    double t[3], M[9], w0[3], w1[3], e[3];
    double zero[3] = {0, 0, 0};
    volume_index_to_world(dst, zero, w0);
    volume_world_to_index(src, w0, t);
    for (int c = 0; c < 3; c++) {
        double u[3] = {c == 0, c == 1, c == 2};
        volume_index_to_world(dst, u, w1);
        volume_world_to_index(src, w1, e);
        for (int r = 0; r < 3; r++) M[r * 3 + c] = e[r] - t[r];
    }
    if (!dst->data) dst->data = xmalloc((size_t)dst->nx * dst->ny * dst->nz * sizeof(float));
    double* coef = interp == VOL_BSPLINE ? bspline_coefficients(src) : NULL;
    const int sx = src->nx, sy = src->ny, sz = src->nz;
    const double eps = 1e-9;   /* points on the extent's edge by rounding stay inside */
    #pragma omp parallel for schedule(static)
    for (int z = 0; z < dst->nz; z++)
        for (int y = 0; y < dst->ny; y++)
            for (int x = 0; x < dst->nx; x++) {
                double p[3];
                for (int r = 0; r < 3; r++) p[r] = M[r * 3] * x + M[r * 3 + 1] * y + M[r * 3 + 2] * z + t[r];
                float* out = dst->data + ((size_t)z * dst->ny + y) * dst->nx + x;
                if (p[0] < -0.5 - eps || p[0] > sx - 0.5 + eps || p[1] < -0.5 - eps ||
                    p[1] > sy - 0.5 + eps || p[2] < -0.5 - eps || p[2] > sz - 0.5 + eps) {
                    *out = fill;
                    continue;
                }
                if (interp == VOL_NEAREST) {
                    int i = clampi((int)floor(p[0] + 0.5), sx), j = clampi((int)floor(p[1] + 0.5), sy),
                        k = clampi((int)floor(p[2] + 0.5), sz);
                    *out = src->data[((size_t)k * sy + j) * sx + i];
                } else if (interp == VOL_LINEAR) {
                    int i0 = (int)floor(p[0]), j0 = (int)floor(p[1]), k0 = (int)floor(p[2]);
                    double fx = p[0] - i0, fy = p[1] - j0, fz = p[2] - k0, acc = 0;
                    for (int dk = 0; dk < 2; dk++)
                        for (int dj = 0; dj < 2; dj++)
                            for (int di = 0; di < 2; di++) {
                                double wgt = (dk ? fz : 1 - fz) * (dj ? fy : 1 - fy) * (di ? fx : 1 - fx);
                                if (wgt == 0) continue;
                                size_t q = ((size_t)clampi(k0 + dk, sz) * sy + clampi(j0 + dj, sy)) * sx +
                                           clampi(i0 + di, sx);
                                acc += wgt * src->data[q];
                            }
                    *out = (float)acc;
                } else {
                    int i0 = (int)floor(p[0]), j0 = (int)floor(p[1]), k0 = (int)floor(p[2]);
                    double wx[4], wy[4], wz[4];
                    bspline_weights(p[0] - i0, wx);
                    bspline_weights(p[1] - j0, wy);
                    bspline_weights(p[2] - k0, wz);
                    int ix[4], iy[4], iz[4];
                    for (int a = 0; a < 4; a++) {
                        ix[a] = mirror(i0 - 1 + a, sx);
                        iy[a] = mirror(j0 - 1 + a, sy);
                        iz[a] = mirror(k0 - 1 + a, sz);
                    }
                    double acc = 0;
                    for (int c = 0; c < 4; c++) {
                        if (wz[c] == 0) continue;
                        for (int b = 0; b < 4; b++) {
                            const double* row = coef + ((size_t)iz[c] * sy + iy[b]) * sx;
                            double r = wx[0] * row[ix[0]] + wx[1] * row[ix[1]] + wx[2] * row[ix[2]] +
                                       wx[3] * row[ix[3]];
                            acc += wz[c] * wy[b] * r;
                        }
                    }
                    *out = (float)acc;
                }
            }
    free(coef);
    return 0;
}
