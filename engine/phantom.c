/* engine/phantom.c — synthetic prostate mpMRI phantoms (see phantom.h for the model). */
#include "phantom.h"
#include "numparse.h"
#include "check.h"
#include "dataset.h"
#include "rng.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#ifndef VITA_VERSION
#define VITA_VERSION "0.1.0"
#endif

#define PI 3.14159265358979323846

/* stream tags (rng_stream(seed, tag)): one family per purpose, case index in the low bits */
#define TAG_PARAMS (1ull << 40)
#define TAG_NOISE (2ull << 40)
#define TAG_VOLUME (3ull << 40)
#define TAG_SPLIT (4ull << 40)

/* smooth random fields: normal values on a coarse grid over the field of view, trilinear */
#define BG_G 6, 10, 10
#define TZ_G 10, 20, 20
#define BIAS_G 3, 4, 4
typedef struct {
    int gz, gy, gx;
    float v[10 * 20 * 20];
} Field;

enum { T_FAT, T_SOFT, T_MUSCLE, T_BLADDER, T_LUMEN, T_WALL, T_CAPSULE, T_TZ, T_PZ, T_LESION, T_N };

typedef struct {
    double G[9], c[3], a[3];          /* gland: r = G (q - c), semi-axes a (z,y,x mm) */
    double taper, lob[4];             /* base-wider taper; in-plane lobulation (cos/sin 2θ, 3θ) */
    double rect_curve;                /* rectum bends posteriorly away from the gland's level */
    double tzc[3], tza[3];            /* transition zone in the gland frame */
    double cap;                       /* capsule thickness in normalised gland radius */
    int nl;
    double lc[PHANTOM_MAX_LESIONS][3], lM[PHANTOM_MAX_LESIONS][9], la[PHANTOM_MAX_LESIONS][3];
    double ls[PHANTOM_MAX_LESIONS];   /* conspicuity 0..1 */
    double rect_c[3], rect_r[2];      /* rectum: tube along z, radii (y, x) */
    double bl_c[3], bl_a[3];          /* bladder ellipsoid */
    double mus_x[2], mus_y, mus_r[2]; /* obturator muscles: tubes at x = mus_x[k] */
    double val[T_N][3];               /* tissue values (t2w, adc µm²/ms, hbv) */
    double blur_w;                    /* through-plane slice-profile weight of each neighbour */
    double sig[3];                    /* noise sd per channel */
    double bias_amp[2];               /* log-amplitude of the T2w / hbv bias fields */
    Field bg, tz, bias;
    PhantomInfo info;
} Case;

static double unif(Rng* r, double lo, double hi) { return lo + (hi - lo) * rng_uniform(r); }

static void field_init(Field* f, Rng* r, int gz, int gy, int gx) {
    f->gz = gz; f->gy = gy; f->gx = gx;
    for (int k = 0; k < gz * gy * gx; k++) f->v[k] = (float)rng_normal(r);
}

/* u in [0,1] per axis (fraction of the field of view) */
static inline double field_at(const Field* f, double uz, double uy, double ux) {
    double fz = uz * (f->gz - 1), fy = uy * (f->gy - 1), fx = ux * (f->gx - 1);
    fz = fz < 0 ? 0 : fz > f->gz - 1.000001 ? f->gz - 1.000001 : fz;
    fy = fy < 0 ? 0 : fy > f->gy - 1.000001 ? f->gy - 1.000001 : fy;
    fx = fx < 0 ? 0 : fx > f->gx - 1.000001 ? f->gx - 1.000001 : fx;
    int iz = (int)fz, iy = (int)fy, ix = (int)fx;
    double tz = fz - iz, ty = fy - iy, tx = fx - ix;
    const float* p = f->v + ((size_t)iz * f->gy + iy) * f->gx + ix;
    int sy = f->gx, sz = f->gy * f->gx;
    double c00 = p[0] + tx * (p[1] - p[0]), c01 = p[sy] + tx * (p[sy + 1] - p[sy]);
    double c10 = p[sz] + tx * (p[sz + 1] - p[sz]), c11 = p[sz + sy] + tx * (p[sz + sy + 1] - p[sz + sy]);
    double c0 = c00 + ty * (c01 - c00), c1 = c10 + ty * (c11 - c10);
    return c0 + tz * (c1 - c0);
}

/* rotation in (z,y,x) coordinates: about z (in-plane, mixes y,x) by az, about x (sagittal
 * tilt, mixes z,y) by ax, about y (coronal tilt, mixes z,x) by ay; M = Rz Rx Ry */
static void rotation(double* M, double az, double ax, double ay) {
    double Rz[9] = {1, 0, 0, 0, cos(az), -sin(az), 0, sin(az), cos(az)};
    double Rx[9] = {cos(ax), -sin(ax), 0, sin(ax), cos(ax), 0, 0, 0, 1};
    double Ry[9] = {cos(ay), 0, -sin(ay), 0, 1, 0, sin(ay), 0, cos(ay)};
    double T[9];
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) {
            T[i * 3 + j] = 0;
            for (int k = 0; k < 3; k++) T[i * 3 + j] += Rx[i * 3 + k] * Ry[k * 3 + j];
        }
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) {
            M[i * 3 + j] = 0;
            for (int k = 0; k < 3; k++) M[i * 3 + j] += Rz[i * 3 + k] * T[k * 3 + j];
        }
}
static inline void matvec(const double* M, const double* v, double* o) {
    for (int i = 0; i < 3; i++) o[i] = M[i * 3] * v[0] + M[i * 3 + 1] * v[1] + M[i * 3 + 2] * v[2];
}
static inline void matTvec(const double* M, const double* v, double* o) {
    for (int i = 0; i < 3; i++) o[i] = M[i] * v[0] + M[3 + i] * v[1] + M[6 + i] * v[2];
}
static inline double ell2(const double* r, const double* a) {
    return (r[0] / a[0]) * (r[0] / a[0]) + (r[1] / a[1]) * (r[1] / a[1]) + (r[2] / a[2]) * (r[2] / a[2]);
}
/* normalised squared gland radius of world point q (1 on the surface); r = gland frame.
 * The ellipsoid is tapered (wider at the base, +z) and lobulated in-plane. */
static inline double gland_rho2(const Case* K, const double* q, double* r) {
    double d[3] = {q[0] - K->c[0], q[1] - K->c[1], q[2] - K->c[2]};
    matvec(K->G, d, r);
    double e = ell2(r, K->a);
    if (e > 2.5) return e;  /* far outside: the deformation (< ±35 %) cannot bring it in */
    double sy = r[1] / K->a[1], sx = r[2] / K->a[2], p2 = sx * sx + sy * sy;
    double scale = 1 + K->taper * r[0] / K->a[0];
    if (p2 > 1e-12) {
        double c1 = sx / sqrt(p2), s1 = sy / sqrt(p2);
        double c2 = c1 * c1 - s1 * s1, s2 = 2 * s1 * c1;
        double c3 = 4 * c1 * c1 * c1 - 3 * c1, s3 = 3 * s1 - 4 * s1 * s1 * s1;
        scale += K->lob[0] * c2 + K->lob[1] * s2 + K->lob[2] * c3 + K->lob[3] * s3;
    }
    double zz = r[0] / K->a[0];
    return zz * zz + p2 / (scale * scale);
}
static int in_gland(const Case* K, const double* q) {
    double r[3];
    return gland_rho2(K, q, r) <= 1.0;
}
static int in_tz_frame(const Case* K, const double* r) {  /* r in the gland frame */
    double e[3] = {r[0] - K->tzc[0], r[1] - K->tzc[1], r[2] - K->tzc[2]};
    return ell2(e, K->tza) <= 1.0;
}

void phantom_default(PhantomSpec* ps) {
    memset(ps, 0, sizeof *ps);
    ps->n = 200;
    ps->D = 32;
    ps->H = 64;
    ps->W = 64;
}

void phantom_grid_spacing(const PhantomSpec* ps, double sp[3]) {
    sp[0] = PHANTOM_FOV_Z / ps->D;
    sp[1] = PHANTOM_FOV_Y / ps->H;
    sp[2] = PHANTOM_FOV_X / ps->W;
}

/* all random parameters of case i (coordinates: mm from the centre of the field of view) */
static void case_params(const PhantomSpec* ps, int i, Case* K) {
    memset(K, 0, sizeof *K);
    Rng r = rng_stream(ps->seed, TAG_PARAMS + (uint64_t)i);
    /* gland */
    K->a[0] = unif(&r, 14, 22);
    K->a[1] = unif(&r, 12, 18);
    K->a[2] = unif(&r, 18, 27);
    K->c[0] = unif(&r, -8, 8);
    K->c[1] = unif(&r, -8, 3);
    K->c[2] = unif(&r, -4, 4);
    rotation(K->G, unif(&r, -15, 15) * PI / 180, unif(&r, -12, 12) * PI / 180,
             unif(&r, -5, 5) * PI / 180);
    K->taper = unif(&r, 0.05, 0.25);
    for (int k = 0; k < 4; k++) K->lob[k] = unif(&r, -0.06, 0.06);
    /* transition zone: central-anterior (anterior = −y), larger with age (BPH) */
    double f = unif(&r, 0.60, 0.80), shift = unif(&r, 0.08, 0.22);
    K->tza[0] = f * K->a[0] * unif(&r, 0.85, 1.0);
    K->tza[1] = f * K->a[1];
    K->tza[2] = f * K->a[2] * unif(&r, 0.9, 1.05);
    K->tzc[0] = unif(&r, 0.0, 0.15) * K->a[0];  /* towards the base */
    K->tzc[1] = -shift * K->a[1];
    K->tzc[2] = 0;
    K->cap = 1.5 / ((K->a[0] + K->a[1] + K->a[2]) / 3);
    /* surrounding anatomy (world axes) */
    K->rect_r[0] = unif(&r, 7, 10);
    K->rect_r[1] = unif(&r, 11, 16);
    K->rect_c[0] = K->c[0];
    K->rect_c[1] = K->c[1] + K->a[1] + unif(&r, 2, 5) + K->rect_r[0];
    K->rect_c[2] = K->c[2] + unif(&r, -3, 3);
    K->rect_curve = unif(&r, 0.002, 0.008);  /* mm⁻¹: ~3-13 mm posterior 40 mm away */
    K->bl_a[0] = unif(&r, 14, 22);
    K->bl_a[1] = unif(&r, 20, 28);
    K->bl_a[2] = unif(&r, 25, 35);
    K->bl_c[0] = K->c[0] + K->a[0] + K->bl_a[0] * unif(&r, 0.6, 0.9);
    K->bl_c[1] = K->c[1] - unif(&r, 2, 8);
    K->bl_c[2] = K->c[2] + unif(&r, -4, 4);
    K->mus_r[0] = unif(&r, 18, 26);  /* y */
    K->mus_r[1] = unif(&r, 6, 10);   /* x */
    K->mus_y = K->c[1] + unif(&r, -2, 6);
    K->mus_x[0] = K->c[2] - K->a[2] - unif(&r, 6, 12) - K->mus_r[1];
    K->mus_x[1] = K->c[2] + K->a[2] + unif(&r, 6, 12) + K->mus_r[1];
    /* tissue values: t2w (a.u.), adc (µm²/ms), hbv (a.u.) */
    static const double base[T_N][3] = {
        [T_FAT] = {1.30, 0.45, 0.12},     [T_SOFT] = {0.65, 1.30, 0.35},
        [T_MUSCLE] = {0.42, 1.35, 0.30},  [T_BLADDER] = {2.30, 2.80, 0.12},
        [T_LUMEN] = {0.25, 0.90, 0.25},   [T_WALL] = {0.75, 1.15, 0.70},
        [T_CAPSULE] = {0.50, 1.10, 0.40}, [T_TZ] = {0.80, 1.12, 0.55},
        [T_PZ] = {1.45, 1.62, 0.45},      [T_LESION] = {0.45, 0.72, 1.30}};
    for (int t = 0; t < T_N; t++)
        for (int c = 0; c < 3; c++) K->val[t][c] = base[t][c] * unif(&r, 0.9, 1.1);
    K->val[T_TZ][0] = unif(&r, 0.65, 0.95);
    K->val[T_PZ][0] = unif(&r, 1.20, 1.70);   /* prostatitis / haemorrhage lower PZ T2 */
    K->val[T_PZ][1] = unif(&r, 1.40, 1.80);
    /* lesions */
    double u = rng_uniform(&r);
    K->nl = u < 0.30 ? 0 : u < 0.65 ? 1 : u < 0.85 ? 2 : 3;
    for (int k = 0; k < K->nl; k++) {
        int zone = rng_uniform(&r) < 0.7 ? 2 : 1;
        double rr[3] = {0, 0, 0};
        for (int tries = 0; tries < 500; tries++) {
            double p[3];
            do {
                for (int d = 0; d < 3; d++) p[d] = unif(&r, -1, 1);
            } while (p[0] * p[0] + p[1] * p[1] + p[2] * p[2] > 1);
            for (int d = 0; d < 3; d++) rr[d] = 0.85 * p[d] * K->a[d];
            if ((in_tz_frame(K, rr) ? 1 : 2) == zone) break;
        }
        double w[3];
        matTvec(K->G, rr, w);
        for (int d = 0; d < 3; d++) K->lc[k][d] = K->c[d] + w[d];
        int large = rng_uniform(&r) < 0.5;
        double r0 = large ? unif(&r, 4.5, 10.5) : unif(&r, 2.0, 4.2);
        for (int d = 0; d < 3; d++) K->la[k][d] = r0 * unif(&r, 0.75, 1.3);
        rotation(K->lM[k], unif(&r, 0, 2 * PI), unif(&r, 0, 2 * PI), unif(&r, 0, 2 * PI));
        K->ls[k] = unif(&r, 0.5, 1.0) * (zone == 1 ? 0.85 : 1.0);
        K->info.lesion_zone[k] = zone;
    }
    K->val[T_LESION][0] = unif(&r, 0.38, 0.55);
    K->val[T_LESION][1] = unif(&r, 0.60, 0.85);
    K->val[T_LESION][2] = unif(&r, 1.10, 1.50);
    /* acquisition */
    double thick = unif(&r, 2.7, 3.6);
    K->blur_w = 0.10 + 0.22 * (thick - 2.7) / 0.9;
    double nf = unif(&r, 0.7, 1.4);
    K->sig[0] = 0.05 * nf;
    K->sig[1] = 0.08 * nf;
    K->sig[2] = 0.08 * nf;
    K->bias_amp[0] = unif(&r, 0.10, 0.35);
    K->bias_amp[1] = unif(&r, 0.05, 0.20);
    /* native geometry (metadata for writing predictions back) */
    double inpl = unif(&r, 0.45, 0.65);
    double sp[3] = {thick, inpl, inpl}, fov[3] = {PHANTOM_FOV_Z, PHANTOM_FOV_Y, PHANTOM_FOV_X};
    for (int d = 0; d < 3; d++) {
        int ext = (int)ceil(fov[d] / sp[d]);
        int margin = d == 0 ? (int)(rng_u64(&r) % 9) : 32 + (int)(rng_u64(&r) % 129);
        K->info.spacing[d] = sp[d];
        K->info.shape_original[d] = ext + margin;
        K->info.crop_offset[d] = (int)(rng_u64(&r) % (uint64_t)(margin + 1));
    }
    K->info.origin[0] = unif(&r, -80, -40);
    K->info.origin[1] = unif(&r, -130, -90);
    K->info.origin[2] = unif(&r, -130, -90);
    rotation(K->info.direction, 0.035 * rng_normal(&r), 0.035 * rng_normal(&r), 0.035 * rng_normal(&r));
    /* textures */
    field_init(&K->bg, &r, BG_G);
    field_init(&K->tz, &r, TZ_G);
    field_init(&K->bias, &r, BIAS_G);
    /* lesion volumes inside the gland (Monte Carlo, own stream) and the case label */
    Rng rv = rng_stream(ps->seed, TAG_VOLUME + (uint64_t)i);
    K->info.n_lesions = K->nl;
    K->info.cls = 0;
    for (int k = 0; k < K->nl; k++) {
        int inside = 0, n = 4096;
        for (int s = 0; s < n; s++) {
            double p[3], e[3], w[3], q[3];
            do {
                for (int d = 0; d < 3; d++) p[d] = 2 * rng_uniform(&rv) - 1;
            } while (p[0] * p[0] + p[1] * p[1] + p[2] * p[2] > 1);
            for (int d = 0; d < 3; d++) e[d] = p[d] * K->la[k][d];
            matTvec(K->lM[k], e, w);
            for (int d = 0; d < 3; d++) q[d] = K->lc[k][d] + w[d];
            inside += in_gland(K, q);
        }
        double vol = 4.0 / 3.0 * PI * K->la[k][0] * K->la[k][1] * K->la[k][2];
        K->info.lesion_ml[k] = vol * inside / n / 1000.0;
        if (K->info.lesion_ml[k] >= PHANTOM_CSPCA_ML) K->info.cls = 1;
    }
}

void phantom_info(const PhantomSpec* ps, int i, PhantomInfo* info) {
    Case* K = xmalloc(sizeof *K);
    case_params(ps, i, K);
    *info = K->info;
    free(K);
}

/* approximately normal (Irwin–Hall of four 16-bit uniforms, ±3.46 sd): one u64 per draw */
static inline double fast_normal(Rng* r) {
    uint64_t u = rng_u64(r);
    double s = (double)(u & 0xffff) + (double)((u >> 16) & 0xffff) + (double)((u >> 32) & 0xffff) +
               (double)(u >> 48);
    return (s * (1.0 / 65536.0) - 2.0) * 1.7320508075688772;
}

void phantom_case(const PhantomSpec* ps, int i, float* img, uint8_t* seg, PhantomInfo* info) {
    Case* K = xmalloc(sizeof *K);
    case_params(ps, i, K);
    if (info) *info = K->info;
    const int D = ps->D, H = ps->H, W = ps->W;
    const size_t vox = (size_t)D * H * W;
    double sp[3];
    phantom_grid_spacing(ps, sp);
    float* ch[3] = {img, img + vox, img + 2 * vox};
    float* tmp = xmalloc(vox * 3 * sizeof(float));
    float* cl[3] = {tmp, tmp + vox, tmp + 2 * vox};
    /* clean signal at voxel centres */
    for (int z = 0; z < D; z++) {
        double q[3], u[3];
        q[0] = (z + 0.5) * sp[0] - PHANTOM_FOV_Z / 2;
        u[0] = (z + 0.5) / D;
        for (int y = 0; y < H; y++) {
            q[1] = (y + 0.5) * sp[1] - PHANTOM_FOV_Y / 2;
            u[1] = (y + 0.5) / H;
            for (int x = 0; x < W; x++) {
                q[2] = (x + 0.5) * sp[2] - PHANTOM_FOV_X / 2;
                u[2] = (x + 0.5) / W;
                size_t v = ((size_t)z * H + y) * W + x;
                double r[3];
                double rho2 = gland_rho2(K, q, r);
                double val[3];
                uint8_t lab = 0;
                if (rho2 <= 1.0) {
                    double t = field_at(&K->tz, u[0], u[1], u[2]);
                    const double* tv;
                    double mod_t2, mod_adc;
                    if (in_tz_frame(K, r)) {
                        lab = 1;
                        tv = K->val[T_TZ];
                        mod_t2 = 1 + 0.22 * t;     /* BPH nodules: T2 and ADC vary together */
                        mod_adc = 1 + 0.10 * t;
                    } else {
                        lab = 2;
                        tv = K->val[T_PZ];
                        mod_t2 = 1 + 0.07 * t;
                        mod_adc = 1 + 0.04 * t;
                    }
                    val[0] = tv[0] * mod_t2;
                    val[1] = tv[1] * mod_adc;
                    val[2] = tv[2] * (1 - 0.05 * t);
                    double m = 0;
                    for (int k = 0; k < K->nl; k++) {
                        double e[3] = {q[0] - K->lc[k][0], q[1] - K->lc[k][1], q[2] - K->lc[k][2]}, w[3];
                        matvec(K->lM[k], e, w);
                        double rl2 = ell2(w, K->la[k]);
                        if (rl2 <= 1.0) lab = 3;
                        if (rl2 < 1.2) {
                            double mk = (1.05 - sqrt(rl2)) / 0.3;
                            mk = K->ls[k] * (mk < 0 ? 0 : mk > 1 ? 1 : mk);
                            if (mk > m) m = mk;
                        }
                    }
                    for (int c = 0; c < 3; c++) val[c] = (1 - m) * val[c] + m * K->val[T_LESION][c];
                } else {
                    int tissue;
                    double dz = q[0] - K->rect_c[0];
                    double ry = (q[1] - K->rect_c[1] - K->rect_curve * dz * dz) / K->rect_r[0], rx = (q[2] - K->rect_c[2]) / K->rect_r[1];
                    double rr2 = ry * ry + rx * rx;
                    double b[3] = {q[0] - K->bl_c[0], q[1] - K->bl_c[1], q[2] - K->bl_c[2]};
                    double my = (q[1] - K->mus_y) / K->mus_r[0];
                    double mx0 = (q[2] - K->mus_x[0]) / K->mus_r[1], mx1 = (q[2] - K->mus_x[1]) / K->mus_r[1];
                    if (sqrt(rho2) <= 1.0 + K->cap) tissue = T_CAPSULE;
                    else if (rr2 <= 0.5) tissue = T_LUMEN;
                    else if (rr2 <= 1.0) tissue = T_WALL;
                    else if (ell2(b, K->bl_a) <= 1.0) tissue = T_BLADDER;
                    else if (my * my + mx0 * mx0 <= 1.0 || my * my + mx1 * mx1 <= 1.0) tissue = T_MUSCLE;
                    else tissue = -1;
                    if (tissue >= 0) {
                        for (int c = 0; c < 3; c++) val[c] = K->val[tissue][c];
                    } else {  /* fat with strands of soft tissue and vessels */
                        double t = field_at(&K->bg, u[0], u[1], u[2]);
                        double mix = 1.0 / (1.0 + exp(-3.0 * (t - 0.4)));
                        for (int c = 0; c < 3; c++)
                            val[c] = (1 - mix) * K->val[T_FAT][c] + mix * K->val[T_SOFT][c];
                    }
                }
                for (int c = 0; c < 3; c++) cl[c][v] = (float)val[c];
                if (seg) seg[v] = lab;
            }
        }
    }
    /* through-plane partial volume: slice profile [w, 1-2w, w] along z (edges clamped) */
    const size_t plane = (size_t)H * W;
    const double w = K->blur_w;
    for (int c = 0; c < 3; c++)
        for (int z = 0; z < D; z++) {
            const float* a = cl[c] + (size_t)(z > 0 ? z - 1 : 0) * plane;
            const float* m = cl[c] + (size_t)z * plane;
            const float* b = cl[c] + (size_t)(z < D - 1 ? z + 1 : D - 1) * plane;
            float* o = ch[c] + (size_t)z * plane;
            for (size_t k = 0; k < plane; k++) o[k] = (float)(w * a[k] + (1 - 2 * w) * m[k] + w * b[k]);
        }
    /* bias field (T2w, hbv), noise, normalisation */
    Rng rn = rng_stream(ps->seed, TAG_NOISE + (uint64_t)i);
    const double sg[3] = {ps->clean ? 0 : K->sig[0], ps->clean ? 0 : K->sig[1], ps->clean ? 0 : K->sig[2]};
    for (int z = 0; z < D; z++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                size_t v = ((size_t)z * H + y) * W + x;
                double bf = field_at(&K->bias, (z + 0.5) / D, (y + 0.5) / H, (x + 0.5) / W);
                for (int c = 0; c < 3; c += 2) {
                    double s = ch[c][v] * exp(K->bias_amp[c / 2] * bf);
                    double re = s + sg[c] * fast_normal(&rn), im = sg[c] * fast_normal(&rn);
                    ch[c][v] = (float)sqrt(re * re + im * im);
                }
                double adc = ch[1][v] + sg[1] * fast_normal(&rn);
                ch[1][v] = (float)((adc < 0 ? 0 : adc) - 1.0) / 0.6f;
            }
    for (int c = 0; c < 3; c += 2) {
        double s = 0, s2 = 0;
        for (size_t v = 0; v < vox; v++) { s += ch[c][v]; s2 += (double)ch[c][v] * ch[c][v]; }
        double mean = s / vox, var = s2 / vox - mean * mean;
        double inv = 1.0 / sqrt(var > 1e-12 ? var : 1e-12);
        for (size_t v = 0; v < vox; v++) ch[c][v] = (float)((ch[c][v] - mean) * inv);
    }
    free(tmp);
    free(K);
}

void phantom_splits(const PhantomSpec* ps, const int32_t* cls, uint8_t* split, int8_t* fold) {
    Rng r = rng_stream(ps->seed, TAG_SPLIT);
    int* idx = xmalloc(ps->n * sizeof(int));
    int fk = 0;
    for (int klass = -1; klass <= 1; klass++) {
        int m = 0;
        for (int i = 0; i < ps->n; i++)
            if ((cls[i] > 0 ? 1 : cls[i] == 0 ? 0 : -1) == klass) idx[m++] = i;
        for (int j = m - 1; j > 0; j--) {  /* Fisher–Yates */
            int k = (int)(rng_u64(&r) % (uint64_t)(j + 1));
            int t = idx[j]; idx[j] = idx[k]; idx[k] = t;
        }
        for (int j = 0; j < m; j++) {
            double u = (j + 0.5) / m;
            int s = u < 0.60 ? SPLIT_TRAIN : u < 0.75 ? SPLIT_VAL : u < 0.90 ? SPLIT_TEST : SPLIT_PROBE;
            split[idx[j]] = (uint8_t)s;
            fold[idx[j]] = (int8_t)(s <= SPLIT_VAL ? fk++ % 5 : -1);
        }
    }
    free(idx);
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

int phantom_write(const char* path, const PhantomSpec* ps, const char* source, char* err,
                  size_t errlen) {
    const int N = ps->n;
    const size_t vox = (size_t)ps->D * ps->H * ps->W;
    double t0 = now_s();
    /* labels first (cheap), so that the splits can be stratified by class */
    int32_t* cls = xmalloc(N * sizeof(int32_t));
    uint8_t* split = xmalloc(N);
    int8_t* fold = xmalloc(N);
#pragma omp parallel for schedule(dynamic, 4)
    for (int i = 0; i < N; i++) {
        PhantomInfo in;
        phantom_info(ps, i, &in);
        cls[i] = in.cls;
    }
    phantom_splits(ps, cls, split, fold);

    DatasetSpec s = {0};
    s.n = N; s.C = 3; s.D = ps->D; s.H = ps->H; s.W = ps->W;
    s.channels = "t2w,adc,hbv";
    s.label_names = "background,tz,pz,lesion";
    s.class_names = "benign,csPCa";
    phantom_grid_spacing(ps, s.spacing_zyx);
    s.source = source;
    s.gzip = ps->gzip;
    DatasetWriter* w = dataset_create(path, &s, err, errlen);
    if (!w) {
        free(cls); free(split); free(fold);
        return 1;
    }
    int nth = 1;
#ifdef _OPENMP
    nth = omp_get_max_threads();
#endif
    /* blocks generated in parallel, written in case order (byte-identical files) */
    size_t case_bytes = vox * (3 * sizeof(float) + 1);
    int B = 4 * nth;
    if ((size_t)B * case_bytes > (512u << 20)) B = (int)((512u << 20) / case_bytes);
    if (B < 1) B = 1;
    float* img = xmalloc((size_t)B * 3 * vox * sizeof(float));
    uint8_t* seg = xmalloc((size_t)B * vox);
    PhantomInfo* info = xmalloc(B * sizeof(PhantomInfo));
    int isatty2 = isatty(2), rc = 0, lesion_cases = 0, pos = 0;
    double last = t0;
    for (int b0 = 0; b0 < N && !rc; b0 += B) {
        int nb = N - b0 < B ? N - b0 : B;
#pragma omp parallel for schedule(dynamic, 1)
        for (int j = 0; j < nb; j++)
            phantom_case(ps, b0 + j, img + (size_t)j * 3 * vox, seg + (size_t)j * vox, &info[j]);
        for (int j = 0; j < nb && !rc; j++) {
            int i = b0 + j;
            char id[64];
            snprintf(id, sizeof id, "phantom_%05d", i);
            lesion_cases += info[j].n_lesions > 0;
            pos += info[j].cls == 1;
            rc = dataset_write_case(w, i, id, img + (size_t)j * 3 * vox, seg + (size_t)j * vox,
                                    info[j].cls, split[i], fold[i], NULL, info[j].spacing,
                                    info[j].origin, info[j].direction, info[j].shape_original,
                                    info[j].crop_offset);
        }
        double t = now_s();
        int done = b0 + nb;
        if (!ps->quiet && (t - last > (isatty2 ? 0.25 : 5.0) || done == N)) {
            double rate = done / (t - t0 + 1e-9);
            fprintf(stderr, "%sphantom: %d/%d cases  %.1f cases/s  ETA %.0f s%s", isatty2 ? "\r" : "",
                    done, N, rate, (N - done) / rate, isatty2 && done < N ? "" : "\n");
            last = t;
        }
    }
    free(img); free(seg); free(info);
    rc = dataset_finish(w, err, errlen);  /* reports a write_case failure too */
    if (!rc && !ps->quiet) {
        int ns[4] = {0};
        for (int i = 0; i < N; i++) ns[split[i]]++;
        fprintf(stderr, "phantom: wrote %s: %d cases of 3x%dx%dx%d in %.1f s; csPCa %.1f %%, lesions "
                "in %.1f %% of cases; train %d / val %d / test %d / probe %d\n", path, N, ps->D,
                ps->H, ps->W, now_s() - t0, 100.0 * pos / N, 100.0 * lesion_cases / N, ns[0], ns[1],
                ns[2], ns[3]);
    }
    free(cls); free(split); free(fold);
    return rc;
}

static const char* PHANTOM_USAGE =
    "usage: vita phantom --out DATA.h5 [--cases N] [--size D,H,W] [--seed S] [--gzip L] [--quiet]\n"
    "  synthetic prostate mpMRI (t2w, adc, hbv) with zone/lesion labels (seg: background, tz, pz,\n"
    "  lesion) and a case label (cls: csPCa = a lesion >= 0.5 mL), as a vita dataset (SPEC.md §2)\n"
    "  --cases N      number of cases (default 200)\n"
    "  --size D,H,W   grid (default 32,64,64) over a fixed 96 x 80 x 80 mm field of view\n"
    "  --seed S       random seed (default 0); the same seed gives the same file, byte for byte\n"
    "  --gzip L       gzip level 1..9 for /images and /seg (default 0: none)\n"
    "  --threads N    OpenMP threads (default: all)\n"
    "  --quiet        no progress line\n"
    "  splits: 60/15/15/10 %% train/val/test/probe stratified by class; folds 0-4 over train+val\n";

int cmd_phantom(int argc, char** argv) {
    PhantomSpec ps;
    phantom_default(&ps);
    const char* out = NULL;
    long v;
    for (int a = 1; a < argc; a++) {
        const char* k = argv[a];
        const char* val = a + 1 < argc ? argv[a + 1] : NULL;
        if (!strcmp(k, "--help") || !strcmp(k, "-h")) {
            printf(PHANTOM_USAGE);
            return 0;
        } else if (!strcmp(k, "--quiet")) {
            ps.quiet = 1;
            continue;
        }
        if (!val) {
            fprintf(stderr, "vita: phantom: %s needs a value (vita phantom --help)\n", k);
            return VITA_EXIT_USER;
        }
        a++;
        if (!strcmp(k, "--out")) {
            out = val;
        } else if (!strcmp(k, "--cases")) {
            if (parse_long_in(val, 1, 10000000, &v)) {
                fprintf(stderr, "vita: phantom: --cases '%s' must be an integer from 1\n", val);
                return VITA_EXIT_USER;
            }
            ps.n = (int)v;
        } else if (!strcmp(k, "--seed")) {
            char* end;
            errno = 0;
            unsigned long long sd = strtoull(val, &end, 10);
            if (errno || end == val || *end || val[0] == '-') {
                fprintf(stderr, "vita: phantom: --seed '%s' must be a non-negative integer\n", val);
                return VITA_EXIT_USER;
            }
            ps.seed = sd;
        } else if (!strcmp(k, "--gzip")) {
            if (parse_long_in(val, 0, 9, &v)) {
                fprintf(stderr, "vita: phantom: --gzip '%s' must be 0..9\n", val);
                return VITA_EXIT_USER;
            }
            ps.gzip = (int)v;
        } else if (!strcmp(k, "--threads")) {
            if (parse_long_in(val, 1, 4096, &v)) {
                fprintf(stderr, "vita: phantom: --threads '%s' must be a positive integer\n", val);
                return VITA_EXIT_USER;
            }
#ifdef _OPENMP
            omp_set_num_threads((int)v);
#endif
        } else if (!strcmp(k, "--device")) {
            if (strcmp(val, "cpu") && strcmp(val, "cuda") && strcmp(val, "auto")) {
                fprintf(stderr, "vita: phantom: --device '%s'; use cpu, cuda or auto (phantoms are "
                        "generated on the CPU)\n", val);
                return VITA_EXIT_USER;
            }
        } else if (!strcmp(k, "--size")) {
            int d[3], n = 0;
            char buf[128];
            snprintf(buf, sizeof buf, "%s", val);
            for (char *p = buf, *tok; n <= 3 && (tok = strsep(&p, ",")) != NULL; n++)
                if (n < 3 && parse_long_in(tok, 1, 4096, &v) == 0) d[n] = (int)v;
                else { n = -1; break; }
            if (n != 3 || d[0] < 4 || d[1] < 8 || d[2] < 8) {
                fprintf(stderr, "vita: phantom: --size '%s' must be D,H,W like 32,64,64 (D >= 4, "
                        "H and W >= 8)\n", val);
                return VITA_EXIT_USER;
            }
            ps.D = d[0]; ps.H = d[1]; ps.W = d[2];
        } else {
            fprintf(stderr, "vita: phantom: unknown option '%s' (vita phantom --help)\n", k);
            return VITA_EXIT_USER;
        }
    }
    if (!out) {
        fprintf(stderr, "vita: phantom: --out DATA.h5 is required (vita phantom --help)\n");
        return VITA_EXIT_USER;
    }
    char source[256], err[1024];
    snprintf(source, sizeof source, "vita %s phantom --cases %d --size %d,%d,%d --seed %llu",
             VITA_VERSION, ps.n, ps.D, ps.H, ps.W, (unsigned long long)ps.seed);
    if (phantom_write(out, &ps, source, err, sizeof err)) {
        fprintf(stderr, "vita: phantom: %s\n", err);
        return VITA_EXIT_USER;
    }
    return 0;
}
