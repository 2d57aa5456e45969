/* engine/augment.c — seeded augmentations and degradations (see augment.h). */
#include "augment.h"

#include <math.h>
#include <string.h>

#include "check.h"

#define DEG2RAD 0.017453292519943295

void augment_none(AugmentConfig* a) {
    memset(a, 0, sizeof *a);
    a->scale_lo = a->scale_hi = 1;
    a->elastic_sigma = 6;
    a->blur_lo = a->blur_hi = 1;
    a->int_scale_lo = a->int_scale_hi = 1;
    a->lowres_lo = a->lowres_hi = 1;
    a->gamma_lo = a->gamma_hi = 1;
    a->bias_degree = 3;
    a->p_channel = 1;
}

void augment_defaults(AugmentConfig* a) {
    augment_none(a);
    a->p_flip[2] = 0.5f;
    a->p_rotate = 0.2f; a->rot_deg[0] = 30;
    a->p_scale = 0.2f; a->scale_lo = 0.7f; a->scale_hi = 1.4f;
    a->p_elastic = 0.1f; a->elastic_sigma = 6; a->elastic_mag = 2;
    a->p_noise = 0.1f; a->noise_std = 0.3f;
    a->p_blur = 0.2f; a->blur_lo = 0.5f; a->blur_hi = 1.0f;
    a->p_intensity = 0.15f; a->int_scale_lo = 0.75f; a->int_scale_hi = 1.25f; a->int_shift = 0.1f;
    a->p_lowres = 0.25f; a->lowres_lo = 0.5f; a->lowres_hi = 1.0f;
    a->p_gamma = 0.3f; a->gamma_lo = 0.7f; a->gamma_hi = 1.5f;
    a->p_bias = 0.1f; a->bias_coeff = 0.1f; a->bias_degree = 3;
    a->p_channel = 0.5f;
}

static double unif(Rng* r, double lo, double hi) { return lo + (hi - lo) * rng_uniform(r); }

/* ---- lines along an axis ------------------------------------------------------------------ */
typedef struct { long n, stride, outer, inner; } Lines;
static Lines lines_of(const int dims[3], int axis) {
    Lines l;
    l.n = dims[axis];
    l.outer = 1; l.inner = 1;
    for (int a = 0; a < axis; a++) l.outer *= dims[a];
    for (int a = axis + 1; a < 3; a++) l.inner *= dims[a];
    l.stride = l.inner;
    return l;
}
#define FOR_LINES(L, base)                                                                  \
    for (long o_ = 0; o_ < (L).outer; o_++)                                                 \
        for (long i_ = 0, base = o_ * (L).n * (L).inner; i_ < (L).inner; i_++, base++)

/* ---- spatial ------------------------------------------------------------------------------ */
void aug_affine_matrix(const double rot[3], const double zoom[3], double A[3][3]) {
    double cz = cos(rot[0]), sz = sin(rot[0]), cy = cos(rot[1]), sy = sin(rot[1]);
    double cx = cos(rot[2]), sx = sin(rot[2]);
    /* coordinates (z, y, x). About z: rotates (y, x); about y: (z, x); about x: (z, y). */
    double Rz[3][3] = {{1, 0, 0}, {0, cz, -sz}, {0, sz, cz}};
    double Ry[3][3] = {{cy, 0, sy}, {0, 1, 0}, {-sy, 0, cy}};
    double Rx[3][3] = {{cx, -sx, 0}, {sx, cx, 0}, {0, 0, 1}};
    double T[3][3], R[3][3];
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) {
            T[i][j] = 0;
            for (int k = 0; k < 3; k++) T[i][j] += Rz[i][k] * Ry[k][j];
        }
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) {
            R[i][j] = 0;
            for (int k = 0; k < 3; k++) R[i][j] += T[i][k] * Rx[k][j];
        }
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) A[i][j] = R[i][j] / zoom[j];
}

static int is_identity(const double A[3][3]) {
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            if (A[i][j] != (i == j ? 1.0 : 0.0)) return 0;
    return 1;
}

/* source coordinate of output voxel (d, h, w) */
static inline void src_coord(const double centre[3], const double A[3][3], const double oc[3],
                             const float* disp, long vox, long nvox, int d, int h, int w,
                             double s[3]) {
    double r0 = d - oc[0], r1 = h - oc[1], r2 = w - oc[2];
    if (disp) { r0 += disp[vox]; r1 += disp[nvox + vox]; r2 += disp[2 * nvox + vox]; }
    for (int i = 0; i < 3; i++) s[i] = centre[i] + A[i][0] * r0 + A[i][1] * r1 + A[i][2] * r2;
}

/* exact integral crop with zero padding; returns 1 if it applied */
static int integral_offset(const double centre[3], const double oc[3], long off[3]) {
    for (int i = 0; i < 3; i++) {
        double o = centre[i] - oc[i];
        if (o != floor(o) || fabs(o) > 1e9) return 0;
        off[i] = (long)o;
    }
    return 1;
}

void aug_resample(const float* src, int C, const int dims[3], const double centre[3],
                  const double A[3][3], const float* disp, const int out[3], float* dst) {
    const long D = dims[0], H = dims[1], W = dims[2], nsrc = D * H * W;
    const long nvox = (long)out[0] * out[1] * out[2];
    double oc[3] = {(out[0] - 1) / 2.0, (out[1] - 1) / 2.0, (out[2] - 1) / 2.0};
    long off[3];
    if (!disp && is_identity(A) && integral_offset(centre, oc, off)) {
        for (int c = 0; c < C; c++)
            for (int d = 0; d < out[0]; d++)
                for (int h = 0; h < out[1]; h++) {
                    float* o = dst + c * nvox + ((long)d * out[1] + h) * out[2];
                    long sz = d + off[0], sy = h + off[1];
                    if (sz < 0 || sz >= D || sy < 0 || sy >= H) {
                        memset(o, 0, sizeof(float) * out[2]);
                        continue;
                    }
                    const float* s = src + c * nsrc + (sz * H + sy) * W;
                    for (int w = 0; w < out[2]; w++) {
                        long sx = w + off[2];
                        o[w] = (sx >= 0 && sx < W) ? s[sx] : 0.0f;
                    }
                }
        return;
    }
    long vox = 0;
    const long HW = H * W;
    for (int d = 0; d < out[0]; d++)
        for (int h = 0; h < out[1]; h++)
            for (int w = 0; w < out[2]; w++, vox++) {
                double s[3];
                src_coord(centre, A, oc, disp, vox, nvox, d, h, w, s);
                long i0[3];
                double f[3];
                for (int a = 0; a < 3; a++) {
                    if (!(s[a] > -2 && s[a] < 1e9)) { i0[a] = -2; f[a] = 0; continue; }
                    long t = (long)s[a];           /* floor without a libm call */
                    if ((double)t > s[a]) t--;
                    i0[a] = t;
                    f[a] = s[a] - (double)t;
                }
                if (i0[0] >= 0 && i0[0] < D - 1 && i0[1] >= 0 && i0[1] < H - 1 && i0[2] >= 0 &&
                    i0[2] < W - 1) {
                    /* interior: all 8 corners inside */
                    const long b0 = (i0[0] * H + i0[1]) * W + i0[2];
                    for (int c = 0; c < C; c++) {
                        const float* p = src + c * nsrc + b0;
                        double a00 = p[0] + f[2] * ((double)p[1] - p[0]);
                        double a01 = p[W] + f[2] * ((double)p[W + 1] - p[W]);
                        double a10 = p[HW] + f[2] * ((double)p[HW + 1] - p[HW]);
                        double a11 = p[HW + W] + f[2] * ((double)p[HW + W + 1] - p[HW + W]);
                        double a0 = a00 + f[1] * (a01 - a00), a1 = a10 + f[1] * (a11 - a10);
                        dst[c * nvox + vox] = (float)(a0 + f[0] * (a1 - a0));
                    }
                    continue;
                }
                /* border: corner weights, corners outside the volume contribute zero */
                long idx[8];
                double wt[8];
                int k = 0;
                for (int a = 0; a < 2; a++)
                    for (int b = 0; b < 2; b++)
                        for (int e = 0; e < 2; e++, k++) {
                            long z = i0[0] + a, y = i0[1] + b, x = i0[2] + e;
                            double ww = (a ? f[0] : 1 - f[0]) * (b ? f[1] : 1 - f[1]) *
                                        (e ? f[2] : 1 - f[2]);
                            if (ww == 0 || z < 0 || z >= D || y < 0 || y >= H || x < 0 || x >= W) {
                                idx[k] = -1; wt[k] = 0;
                            } else {
                                idx[k] = (z * H + y) * W + x; wt[k] = ww;
                            }
                        }
                for (int c = 0; c < C; c++) {
                    const float* sc = src + c * nsrc;
                    double acc = 0;
                    for (k = 0; k < 8; k++)
                        if (idx[k] >= 0) acc += wt[k] * sc[idx[k]];
                    dst[c * nvox + vox] = (float)acc;
                }
            }
}

void aug_resample_labels(const uint8_t* src, const int dims[3], const double centre[3],
                         const double A[3][3], const float* disp, const int out[3], uint8_t* dst) {
    const long D = dims[0], H = dims[1], W = dims[2];
    const long nvox = (long)out[0] * out[1] * out[2];
    double oc[3] = {(out[0] - 1) / 2.0, (out[1] - 1) / 2.0, (out[2] - 1) / 2.0};
    long vox = 0;
    for (int d = 0; d < out[0]; d++)
        for (int h = 0; h < out[1]; h++)
            for (int w = 0; w < out[2]; w++, vox++) {
                double s[3];
                src_coord(centre, A, oc, disp, vox, nvox, d, h, w, s);
                double z = floor(s[0] + 0.5), y = floor(s[1] + 0.5), x = floor(s[2] + 0.5);
                dst[vox] = (z >= 0 && z < D && y >= 0 && y < H && x >= 0 && x < W)
                               ? src[((long)z * H + (long)y) * W + (long)x] : 0;
            }
}

void aug_flip(float* x, int C, const int dims[3], int axis) {
    long nvox = (long)dims[0] * dims[1] * dims[2];
    Lines l = lines_of(dims, axis);
    for (int c = 0; c < C; c++) {
        float* xc = x + c * nvox;
        FOR_LINES(l, base) {
            for (long i = 0, j = l.n - 1; i < j; i++, j--) {
                float t = xc[base + i * l.stride];
                xc[base + i * l.stride] = xc[base + j * l.stride];
                xc[base + j * l.stride] = t;
            }
        }
    }
}

void aug_flip_u8(uint8_t* x, const int dims[3], int axis) {
    Lines l = lines_of(dims, axis);
    FOR_LINES(l, base) {
        for (long i = 0, j = l.n - 1; i < j; i++, j--) {
            uint8_t t = x[base + i * l.stride];
            x[base + i * l.stride] = x[base + j * l.stride];
            x[base + j * l.stride] = t;
        }
    }
}

void aug_gauss_smooth(float* x, const int dims[3], const double sigma[3]) {
    for (int a = 0; a < 3; a++) {
        if (!(sigma[a] > 0) || dims[a] < 2) continue;
        int rad = (int)ceil(3 * sigma[a]);
        if (rad < 1) rad = 1;
        double* k = xmalloc(sizeof(double) * (2 * rad + 1));
        double ks = 0;
        for (int i = -rad; i <= rad; i++) ks += (k[i + rad] = exp(-0.5 * i * i / (sigma[a] * sigma[a])));
        for (int i = 0; i <= 2 * rad; i++) k[i] /= ks;
        Lines l = lines_of(dims, a);
        float* line = xmalloc(sizeof(float) * l.n);
        FOR_LINES(l, base) {
            for (long i = 0; i < l.n; i++) line[i] = x[base + i * l.stride];
            for (long i = 0; i < l.n; i++) {
                double acc = 0;
                for (int t = -rad; t <= rad; t++) {
                    long j = i + t;
                    j = j < 0 ? 0 : (j >= l.n ? l.n - 1 : j);
                    acc += k[t + rad] * line[j];
                }
                x[base + i * l.stride] = (float)acc;
            }
        }
        free(line);
        free(k);
    }
}

void aug_elastic_field(Rng* r, const int dims[3], double sigma, double mag, int with_z,
                       float* disp) {
    long n = (long)dims[0] * dims[1] * dims[2];
    /* N(0,1) on a grid coarser by f ~ sigma/2 (per axis, 1 on short axes), smoothed there by
     * sigma/f and interpolated trilinearly: the cost no longer grows with sigma^1 * volume */
    int f = sigma >= 4 ? (int)(sigma / 2) : 1;
    int m[3];
    for (int a = 0; a < 3; a++) m[a] = f > 1 ? (dims[a] - 1) / f + 2 : dims[a];
    long nc = (long)m[0] * m[1] * m[2];
    double sg[3] = {sigma / f, sigma / f, sigma / f};
    float* cv = xmalloc(sizeof(float) * nc);
    for (int c = 0; c < 3; c++) {
        float* v = disp + c * n;
        if (c == 0 && !with_z) { memset(v, 0, sizeof(float) * n); continue; }
        for (long i = 0; i < nc; i++) cv[i] = (float)rng_normal(r);
        aug_gauss_smooth(cv, m, sg);
        if (f == 1) {
            memcpy(v, cv, sizeof(float) * n);
        } else {
            long vox = 0;
            for (int d = 0; d < dims[0]; d++) {
                int d0 = d / f; double fd = (double)(d % f) / f;
                int d1 = d0 + 1 < m[0] ? d0 + 1 : d0;
                for (int h = 0; h < dims[1]; h++) {
                    int h0 = h / f; double fh = (double)(h % f) / f;
                    int h1 = h0 + 1 < m[1] ? h0 + 1 : h0;
                    for (int w = 0; w < dims[2]; w++, vox++) {
                        int w0 = w / f; double fw = (double)(w % f) / f;
                        int w1 = w0 + 1 < m[2] ? w0 + 1 : w0;
#define CV(a, b, e) cv[((long)(a) * m[1] + (b)) * m[2] + (e)]
                        double x0 = (CV(d0, h0, w0) * (1 - fw) + CV(d0, h0, w1) * fw) * (1 - fh) +
                                    (CV(d0, h1, w0) * (1 - fw) + CV(d0, h1, w1) * fw) * fh;
                        double x1 = (CV(d1, h0, w0) * (1 - fw) + CV(d1, h0, w1) * fw) * (1 - fh) +
                                    (CV(d1, h1, w0) * (1 - fw) + CV(d1, h1, w1) * fw) * fh;
#undef CV
                        v[vox] = (float)(x0 * (1 - fd) + x1 * fd);
                    }
                }
            }
        }
        double ss = 0;
        for (long i = 0; i < n; i++) ss += (double)v[i] * v[i];
        double rms = sqrt(ss / n), s = rms > 0 ? mag / rms : 0;
        for (long i = 0; i < n; i++) v[i] = (float)(v[i] * s);
    }
    free(cv);
}

/* stream tags (augment_draw_spatial / augment_intensity) */
enum { TAG_FLIP = 11, TAG_ROT, TAG_SCALE, TAG_ELASTIC };
enum { AUG_BIAS = 0, AUG_NOISE, AUG_BLUR, AUG_INTENSITY, AUG_LOWRES, AUG_GAMMA, AUG_N };

void augment_draw_spatial(const AugmentConfig* a, uint64_t seed, const int out[3], int slice2d,
                          AugSpatial* sp, float* disp) {
    memset(sp, 0, sizeof *sp);
    Rng rf = rng_stream(seed, TAG_FLIP);
    for (int k = 0; k < 3; k++) sp->flip[k] = rng_uniform(&rf) < a->p_flip[k];
    if (slice2d) sp->flip[0] = 0;
    double rot[3] = {0, 0, 0}, zoom[3] = {1, 1, 1};
    Rng rr = rng_stream(seed, TAG_ROT);
    if (rng_uniform(&rr) < a->p_rotate)
        for (int k = 0; k < 3; k++) {
            double u = unif(&rr, -1, 1);
            if (slice2d && k > 0) continue;
            rot[k] = u * a->rot_deg[k] * DEG2RAD;
        }
    Rng rs = rng_stream(seed, TAG_SCALE);
    if (rng_uniform(&rs) < a->p_scale) {
        double z = unif(&rs, a->scale_lo, a->scale_hi);
        zoom[1] = zoom[2] = z;
        if (a->scale_z && !slice2d) zoom[0] = z;
    }
    aug_affine_matrix(rot, zoom, sp->A);
    Rng re = rng_stream(seed, TAG_ELASTIC);
    if (rng_uniform(&re) < a->p_elastic && a->elastic_mag > 0) {
        double mag = unif(&re, 0, a->elastic_mag);
        long n = (long)out[0] * out[1] * out[2];
        if (slice2d) {
            /* one in-plane field, the same on every slice of the stack */
            int d2[3] = {1, out[1], out[2]};
            long n2 = (long)out[1] * out[2];
            float* f = xmalloc(sizeof(float) * 3 * n2);
            aug_elastic_field(&re, d2, a->elastic_sigma, mag, 0, f);
            for (int c = 0; c < 3; c++)
                for (int d = 0; d < out[0]; d++)
                    memcpy(disp + c * n + d * n2, f + c * n2, sizeof(float) * n2);
            free(f);
        } else {
            aug_elastic_field(&re, out, a->elastic_sigma, mag, a->elastic_z, disp);
        }
        sp->has_disp = 1;
    }
}

/* ---- intensity ---------------------------------------------------------------------------- */
void aug_noise(float* x, long n, double std, Rng* r) {
    for (long i = 0; i < n; i++) x[i] = (float)(x[i] + std * rng_normal(r));
}

void aug_scale_shift(float* x, long n, double scale, double shift) {
    for (long i = 0; i < n; i++) x[i] = (float)(x[i] * scale + shift);
}

static void mean_std(const float* x, long n, double* mean, double* sd) {
    double s = 0, ss = 0;
    for (long i = 0; i < n; i++) s += x[i];
    double m = n ? s / n : 0;
    for (long i = 0; i < n; i++) ss += (x[i] - m) * (x[i] - m);
    *mean = m;
    *sd = n ? sqrt(ss / n) : 0;
}

void aug_gamma(float* x, long n, double gamma) {
    if (n < 1) return;
    double m0, s0;
    mean_std(x, n, &m0, &s0);
    double mn = x[0], mx = x[0];
    for (long i = 1; i < n; i++) { mn = fmin(mn, x[i]); mx = fmax(mx, x[i]); }
    double range = mx - mn;
    if (!(range > 0)) return;
    for (long i = 0; i < n; i++) x[i] = (float)(pow((x[i] - mn) / range, gamma) * range + mn);
    double m1, s1;
    mean_std(x, n, &m1, &s1);
    double k = s1 > 0 ? s0 / s1 : 1;
    for (long i = 0; i < n; i++) x[i] = (float)((x[i] - m1) * k + m0);
}

int aug_bias_ncoeffs(int degree) { return (degree + 1) * (degree + 2) * (degree + 3) / 6; }

static void legendre(double t, int degree, double* p) {
    p[0] = 1;
    if (degree >= 1) p[1] = t;
    for (int k = 2; k <= degree; k++) p[k] = ((2 * k - 1) * t * p[k - 1] - (k - 1) * p[k - 2]) / k;
}

void aug_bias_field(float* x, const int dims[3], int degree, const double* coeffs) {
    CHECK(degree >= 0 && degree <= 8, "bias field degree %d", degree);
    int nc = aug_bias_ncoeffs(degree);
    double pz[9], py[9], px[9];
    double* cz = xmalloc(sizeof(double) * nc);   /* coefficient times P_i(z) */
    double* cy = xmalloc(sizeof(double) * nc);
    int* ki = xmalloc(sizeof(int) * nc);
    int t = 0;
    for (int i = 0; i <= degree; i++)
        for (int j = 0; j <= degree - i; j++)
            for (int k = 0; k <= degree - i - j; k++, t++) ki[t] = (i << 16) | (j << 8) | k;
    for (int d = 0; d < dims[0]; d++) {
        legendre(dims[0] > 1 ? 2.0 * d / (dims[0] - 1) - 1 : 0, degree, pz);
        for (t = 0; t < nc; t++) cz[t] = coeffs[t] * pz[ki[t] >> 16];
        for (int h = 0; h < dims[1]; h++) {
            legendre(dims[1] > 1 ? 2.0 * h / (dims[1] - 1) - 1 : 0, degree, py);
            for (t = 0; t < nc; t++) cy[t] = cz[t] * py[(ki[t] >> 8) & 255];
            float* row = x + ((long)d * dims[1] + h) * dims[2];
            for (int w = 0; w < dims[2]; w++) {
                legendre(dims[2] > 1 ? 2.0 * w / (dims[2] - 1) - 1 : 0, degree, px);
                double e = 0;
                for (t = 0; t < nc; t++) e += cy[t] * px[ki[t] & 255];
                row[w] = (float)(row[w] * exp(e));
            }
        }
    }
    free(cz); free(cy); free(ki);
}

void aug_lowres(float* x, const int dims[3], const double zoom[3]) {
    for (int a = 0; a < 3; a++) {
        long n = dims[a];
        long m = lround(n * zoom[a]);
        if (m < 1) m = 1;
        if (m >= n) continue;
        Lines l = lines_of(dims, a);
        float* low = xmalloc(sizeof(float) * m);
        FOR_LINES(l, base) {
            for (long j = 0; j < m; j++) {
                long i = (long)floor((j + 0.5) * n / m);
                if (i >= n) i = n - 1;
                low[j] = x[base + i * l.stride];
            }
            for (long i = 0; i < n; i++) {
                double p = (i + 0.5) * m / n - 0.5;
                if (p < 0) p = 0;
                if (p > m - 1) p = m - 1;
                long j = (long)floor(p);
                double f = p - j;
                double v = (j + 1 < m && f > 0) ? low[j] * (1 - f) + low[j + 1] * f : low[j];
                x[base + i * l.stride] = (float)v;
            }
        }
        free(low);
    }
}

void augment_intensity(const AugmentConfig* a, uint64_t seed, float* img, int C,
                       const int dims[3], const uint8_t* present) {
    long n = (long)dims[0] * dims[1] * dims[2];
    const float p[AUG_N] = {a->p_bias, a->p_noise, a->p_blur, a->p_intensity, a->p_lowres,
                            a->p_gamma};
    int fire[AUG_N];
    for (int k = 0; k < AUG_N; k++) {
        Rng r = rng_stream(seed, 100 + k);
        fire[k] = rng_uniform(&r) < p[k];
    }
    int nb = aug_bias_ncoeffs(a->bias_degree);
    double coeffs[256];
    CHECK(nb <= 256, "bias degree %d too high", a->bias_degree);
    for (int c = 0; c < C; c++) {
        if (present && !present[c]) continue;
        float* x = img + c * n;
        for (int k = 0; k < AUG_N; k++) {
            if (!fire[k]) continue;
            Rng r = rng_stream(seed, 200 + 16 * (uint64_t)k + (uint64_t)c);
            int chan = rng_uniform(&r) < a->p_channel;   /* used by blur and low res */
            switch (k) {
            case AUG_BIAS:
                for (int t = 0; t < nb; t++) coeffs[t] = unif(&r, -a->bias_coeff, a->bias_coeff);
                aug_bias_field(x, dims, a->bias_degree, coeffs);
                break;
            case AUG_NOISE: {
                double sd = unif(&r, 0, a->noise_std);
                aug_noise(x, n, sd, &r);
                break;
            }
            case AUG_BLUR: {
                if (!chan) break;
                double s = unif(&r, a->blur_lo, a->blur_hi);
                double sg[3] = {a->blur_z ? s : 0, s, s};
                aug_gauss_smooth(x, dims, sg);
                break;
            }
            case AUG_INTENSITY: {
                double sc = unif(&r, a->int_scale_lo, a->int_scale_hi);
                double sh = unif(&r, -a->int_shift, a->int_shift);
                aug_scale_shift(x, n, sc, sh);
                break;
            }
            case AUG_LOWRES: {
                if (!chan) break;
                double z = unif(&r, a->lowres_lo, a->lowres_hi);
                double zm[3] = {a->lowres_z ? z : 1, z, z};
                aug_lowres(x, dims, zm);
                break;
            }
            case AUG_GAMMA:
                aug_gamma(x, n, unif(&r, a->gamma_lo, a->gamma_hi));
                break;
            }
        }
    }
}

/* ---- degradations ------------------------------------------------------------------------- */
void deg_superres(float* x, const int dims[3], int axis, int factor, int offset) {
    if (factor <= 1) return;
    Lines l = lines_of(dims, axis);
    long n = l.n;
    long o = ((offset % factor) + factor) % factor;
    long nb = (n + factor - 1) / factor + 1;
    long* lo = xmalloc(sizeof(long) * nb);
    long* hi = xmalloc(sizeof(long) * nb);
    long* blk = xmalloc(sizeof(long) * n);
    double* cen = xmalloc(sizeof(double) * nb);
    double* val = xmalloc(sizeof(double) * nb);
    long b = 0;
    for (long s = (o > 0 ? o - factor : 0); s < n; s += factor) {
        lo[b] = s < 0 ? 0 : s;
        hi[b] = s + factor > n ? n : s + factor;
        cen[b] = (lo[b] + hi[b] - 1) / 2.0;
        for (long i = lo[b]; i < hi[b]; i++) blk[i] = b;
        b++;
    }
    CHECK(b <= nb, "superres blocks %ld > %ld", b, nb);
    nb = b;
    FOR_LINES(l, base) {
        for (b = 0; b < nb; b++) {
            double s = 0;
            for (long i = lo[b]; i < hi[b]; i++) s += x[base + i * l.stride];
            val[b] = s / (hi[b] - lo[b]);
        }
        for (long i = 0; i < n; i++) {
            long k = blk[i];
            long k0 = i >= cen[k] ? k : k - 1, k1 = k0 + 1;
            double v;
            if (k0 < 0) v = val[0];
            else if (k1 >= nb) v = val[nb - 1];
            else {
                double t = (i - cen[k0]) / (cen[k1] - cen[k0]);
                v = t == 0 ? val[k0] : val[k0] * (1 - t) + val[k1] * t;
            }
            x[base + i * l.stride] = (float)v;
        }
    }
    free(lo); free(hi); free(blk); free(cen); free(val);
}

/* cubic B-spline weights at fractional position f in [0, 1) for taps j-1 .. j+2 */
static void bspline_w(double f, double w[4]) {
    double g = 1 - f;
    w[0] = g * g * g / 6;
    w[1] = (3 * f * f * f - 6 * f * f + 4) / 6;
    w[2] = (-3 * f * f * f + 3 * f * f + 3 * f + 1) / 6;
    w[3] = f * f * f / 6;
}

void deg_smooth_field(Rng* r, const int dims[3], const double spacing[3], double amp, int axis,
                      float* v) {
    long n[3] = {dims[0], dims[1], dims[2]}, m[3];
    for (int a = 0; a < 3; a++) {
        double s = spacing[a] > 0 ? spacing[a] : 1;
        m[a] = (long)floor((n[a] - 1) / s) + 4;
    }
    /* coarse control grid, then contract one axis at a time: [m0 m1 m2] -> [n0 m1 m2] -> ... */
    long sz = m[0] * m[1] * m[2];
    double* cur = xmalloc(sizeof(double) * sz);
    for (long i = 0; i < sz; i++) cur[i] = rng_normal(r);
    long shape[3] = {m[0], m[1], m[2]};
    for (int a = 0; a < 3; a++) {
        double s = spacing[a] > 0 ? spacing[a] : 1;
        long outer = 1, inner = 1;
        for (int k = 0; k < a; k++) outer *= shape[k];
        for (int k = a + 1; k < 3; k++) inner *= shape[k];
        double* nxt = xmalloc(sizeof(double) * outer * n[a] * inner);
        for (long i = 0; i < n[a]; i++) {
            double u = i / s + 1;
            long j = (long)floor(u);
            double w[4];
            bspline_w(u - j, w);
            for (long o = 0; o < outer; o++)
                for (long in = 0; in < inner; in++) {
                    double acc = 0;
                    for (int t = 0; t < 4; t++)
                        acc += w[t] * cur[(o * shape[a] + (j - 1 + t)) * inner + in];
                    nxt[(o * n[a] + i) * inner + in] = acc;
                }
        }
        free(cur);
        cur = nxt;
        shape[a] = n[a];
    }
    long N = n[0] * n[1] * n[2];
    double mx = 0;
    for (long i = 0; i < N; i++) mx = fmax(mx, fabs(cur[i]));
    double k = mx > 0 ? amp / mx : 0;
    for (long i = 0; i < N; i++) cur[i] *= k;
    /* keep the map p -> p + v(p) monotone along the axis */
    Lines l = lines_of(dims, axis);
    double dmax = 0;
    if (l.n > 1)
        FOR_LINES(l, base) {
            for (long i = 0; i < l.n; i++) {
                long i0 = i > 0 ? i - 1 : 0, i1 = i < l.n - 1 ? i + 1 : l.n - 1;
                double dv = (cur[base + i1 * l.stride] - cur[base + i0 * l.stride]) / (i1 - i0);
                dmax = fmax(dmax, fabs(dv));
            }
        }
    double sc = dmax > 0.8 ? 0.8 / dmax : 1;
    for (long i = 0; i < N; i++) v[i] = (float)(cur[i] * sc);
    free(cur);
}

void deg_distort(const float* src, const int dims[3], int axis, const float* v, int jacobian,
                 float* dst) {
    Lines l = lines_of(dims, axis);
    FOR_LINES(l, base) {
        for (long i = 0; i < l.n; i++) {
            double p = i + (double)v[base + i * l.stride];
            double fl = floor(p);
            double f = p - fl;
            double val = 0;
            if (fl >= -1 && fl <= l.n) {
                long j = (long)fl;
                double a = (j >= 0 && j < l.n) ? src[base + j * l.stride] : 0;
                double b = (f > 0 && j + 1 >= 0 && j + 1 < l.n) ? src[base + (j + 1) * l.stride] : 0;
                val = f > 0 ? a * (1 - f) + b * f : a;
            }
            if (jacobian && l.n > 1) {
                long i0 = i > 0 ? i - 1 : 0, i1 = i < l.n - 1 ? i + 1 : l.n - 1;
                double dv = ((double)v[base + i1 * l.stride] - v[base + i0 * l.stride]) / (i1 - i0);
                val *= 1 + dv;
            }
            dst[base + i * l.stride] = (float)val;
        }
    }
}
