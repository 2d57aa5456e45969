/* tests/test_augment.c — augmentations and degradations (engine/augment.c): exact identities,
 * label handling under rotation, noise statistics, gamma monotonicity, degradations. */
#include <math.h>
#include <string.h>

#include "../engine/augment.h"
#include "testing.h"

static double max_abs_diff(const float* a, const float* b, long n) {
    double m = 0;
    for (long i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

static void test_flip(void) {
    int dims[3] = {5, 6, 7};
    long n = 5 * 6 * 7;
    float* x = t_fnew(2 * n);
    float* y = t_fnew(2 * n);
    TRng r = {1};
    t_frandn(&r, x, 2 * n, 1);
    uint8_t lab[5 * 6 * 7], lab0[5 * 6 * 7];
    for (long i = 0; i < n; i++) lab[i] = lab0[i] = (uint8_t)(trng_u64(&r) % 4);
    int ok = 1, moved = 1;
    for (int a = 0; a < 3; a++) {
        memcpy(y, x, sizeof(float) * 2 * n);
        aug_flip(y, 2, dims, a);
        moved &= memcmp(x, y, sizeof(float) * 2 * n) != 0;
        /* one flip: y[..i..] = x[..n-1-i..] */
        if (a == 2) ok &= y[n + 3 * 42 + 0] == x[n + 3 * 42 + 6];
        aug_flip(y, 2, dims, a);
        ok &= memcmp(x, y, sizeof(float) * 2 * n) == 0;
        aug_flip_u8(lab, dims, a);
        aug_flip_u8(lab, dims, a);
        ok &= memcmp(lab, lab0, n) == 0;
    }
    t_true("flip: one flip moves data, flipping twice is the identity (3 axes, float + u8)",
           ok && moved);
    free(x); free(y);
}

static void test_affine_identity(void) {
    int dims[3] = {9, 11, 13}, out[3] = {6, 8, 10};
    long n = 9 * 11 * 13, no = 6 * 8 * 10;
    float* x = t_fnew(2 * n);
    float* y = t_fnew(2 * no);
    float* z = t_fnew(2 * no);
    TRng r = {2};
    t_frandn(&r, x, 2 * n, 1);
    double A[3][3], rot[3] = {0, 0, 0}, zoom[3] = {1, 1, 1};
    aug_affine_matrix(rot, zoom, A);
    int id = 1;
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) id &= A[i][j] == (i == j);
    t_true("affine: zero rotation and unit zoom give exactly the identity matrix", id);
    /* crop at start (2, 1, 3): centre = start + (out - 1) / 2 */
    double c[3] = {2 + 2.5, 1 + 3.5, 3 + 4.5};
    aug_resample(x, 2, dims, c, A, NULL, out, y);
    int ok = 1;
    for (int ch = 0; ch < 2; ch++)
        for (int d = 0; d < 6; d++)
            for (int h = 0; h < 8; h++)
                for (int w = 0; w < 10; w++)
                    ok &= y[ch * no + (d * 8 + h) * 10 + w] ==
                          x[ch * n + ((d + 2) * 11 + h + 1) * 13 + w + 3];
    t_true("affine: identity parameters reproduce the crop bit for bit", ok);
    /* a zero displacement field through the general path is also exact */
    float* disp = t_fnew(3 * no);
    aug_resample(x, 2, dims, c, A, disp, out, z);
    t_check("affine: identity with zero elastic field, max |diff|", max_abs_diff(y, z, 2 * no), 0);
    /* padding: a crop hanging over the edge is zero outside */
    double c2[3] = {-2 + 2.5, 1 + 3.5, 3 + 4.5};
    aug_resample(x, 1, dims, c2, A, NULL, out, y);
    int pad = 1;
    for (long v = 0; v < 2 * 8 * 10; v++) pad &= y[v] == 0;
    pad &= y[2 * 80] == x[(0 * 11 + 1) * 13 + 3];
    t_true("affine: voxels outside the volume are zero (padding)", pad);
    /* a drawn spatial transform with everything off is the identity */
    AugmentConfig ac;
    augment_none(&ac);
    AugSpatial sp;
    augment_draw_spatial(&ac, 123, out, 0, &sp, disp);
    int none = !sp.flip[0] && !sp.flip[1] && !sp.flip[2] && !sp.has_disp;
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) none &= sp.A[i][j] == (i == j);
    t_true("augment_none draws the identity spatial transform", none);
    free(x); free(y); free(z); free(disp);
}

static void test_rotation_labels(void) {
    int dims[3] = {4, 24, 24}, out[3] = {4, 24, 24};
    long n = 4 * 24 * 24;
    uint8_t* lab = calloc(n, 1);
    uint8_t* o = calloc(n, 1);
    uint8_t* o2 = calloc(n, 1);
    for (int d = 0; d < 4; d++)
        for (int h = 0; h < 24; h++)
            for (int w = 0; w < 24; w++) {
                double rr = (h - 11.5) * (h - 11.5) / 64.0 + (w - 11.5) * (w - 11.5) / 25.0;
                lab[(d * 24 + h) * 24 + w] = rr < 0.3 ? 3 : rr < 1 ? (w < 12 ? 1 : 2) : 0;
            }
    /* 90 degrees about z: exactly rot90 of every slice */
    double rot[3] = {M_PI / 2, 0, 0}, zoom[3] = {1, 1, 1}, A[3][3];
    aug_affine_matrix(rot, zoom, A);
    double c[3] = {1.5, 11.5, 11.5};
    aug_resample_labels(lab, dims, c, A, NULL, out, o);
    int ok = 1;
    for (int d = 0; d < 4; d++)
        for (int h = 0; h < 24; h++)
            for (int w = 0; w < 24; w++) {
                /* s = c + A (o - oc): sy = 11.5 - (w - 11.5), sx = 11.5 + (h - 11.5) */
                int sy = 23 - w, sx = h;
                ok &= o[(d * 24 + h) * 24 + w] == lab[(d * 24 + sy) * 24 + sx];
            }
    t_true("rotation 90 deg (nearest): labels equal rot90 exactly", ok);
    /* 37 degrees with zoom 1.2: every output label is the label of the nearest source voxel */
    double rot2[3] = {37 * M_PI / 180, 0, 0}, zoom2[3] = {1, 1.2, 1.2}, A2[3][3];
    aug_affine_matrix(rot2, zoom2, A2);
    aug_resample_labels(lab, dims, c, A2, NULL, out, o2);
    int nn = 1, subset = 1, seen[256] = {0}, had[256] = {0};
    for (long v = 0; v < n; v++) had[lab[v]] = 1;
    for (int d = 0; d < 4; d++)
        for (int h = 0; h < 24; h++)
            for (int w = 0; w < 24; w++) {
                double r1 = h - 11.5, r2 = w - 11.5;
                double sy = 11.5 + A2[1][1] * r1 + A2[1][2] * r2;
                double sx = 11.5 + A2[2][1] * r1 + A2[2][2] * r2;
                long iy = lround(floor(sy + 0.5)), ix = lround(floor(sx + 0.5));
                uint8_t want = (iy >= 0 && iy < 24 && ix >= 0 && ix < 24) ? lab[(d * 24 + iy) * 24 + ix] : 0;
                uint8_t got = o2[(d * 24 + h) * 24 + w];
                nn &= got == want;
                seen[got] = 1;
            }
    for (int k = 0; k < 256; k++) subset &= !seen[k] || had[k];
    t_true("rotation 37 deg + zoom 1.2 (nearest): each label is the nearest source voxel's", nn);
    t_true("rotation keeps the label set (no new labels, all 4 survive)",
           subset && seen[0] && seen[1] && seen[2] && seen[3]);
    /* image rotation by 90 deg (trilinear) agrees with rot90 */
    float* x = t_fnew(n);
    float* y = t_fnew(n);
    TRng r = {3};
    t_frandn(&r, x, n, 1);
    aug_resample(x, 1, dims, c, A, NULL, out, y);
    double md = 0;
    for (int d = 0; d < 4; d++)
        for (int h = 0; h < 24; h++)
            for (int w = 0; w < 24; w++)
                md = fmax(md, fabs(y[(d * 24 + h) * 24 + w] - x[(d * 24 + 23 - w) * 24 + h]));
    t_check("rotation 90 deg (trilinear): max |diff| vs rot90", md, 1e-5);
    free(lab); free(o); free(o2); free(x); free(y);
}

static void test_noise(void) {
    long n = 400000;
    float* x = t_fnew(n);
    for (long i = 0; i < n; i++) x[i] = 2.0f;
    Rng r = rng_stream(7, 1);
    double sd = 0.7;
    aug_noise(x, n, sd, &r);
    double s = 0, ss = 0;
    for (long i = 0; i < n; i++) s += x[i] - 2.0;
    double m = s / n;
    for (long i = 0; i < n; i++) ss += (x[i] - 2.0 - m) * (x[i] - 2.0 - m);
    double esd = sqrt(ss / (n - 1));
    /* mean: SE sd/sqrt(n); SD: SE ~ sd/sqrt(2n) */
    t_check("noise: |mean| / (3 SE)", fabs(m) / (3 * sd / sqrt((double)n)), 1);
    t_check("noise: |SD - 0.7| / (3 SE)", fabs(esd - sd) / (3 * sd / sqrt(2.0 * n)), 1);
    free(x);
}

static void test_gamma(void) {
    long n = 5000;
    float* x = t_fnew(n);
    for (long i = 0; i < n; i++) x[i] = (float)(-3 + 6.0 * i / n + 0.5 * sin(i * 0.001));
    double m0 = 0, s0 = 0;
    for (long i = 0; i < n; i++) m0 += x[i];
    m0 /= n;
    for (long i = 0; i < n; i++) s0 += (x[i] - m0) * (x[i] - m0);
    s0 = sqrt(s0 / n);
    float* y = t_fnew(n);
    int mono = 1;
    double dm = 0;
    for (int g = 0; g < 3; g++) {
        double gamma = (double[]){0.7, 1.0, 1.5}[g];
        memcpy(y, x, sizeof(float) * n);
        aug_gamma(y, n, gamma);
        for (long i = 1; i < n; i++) mono &= y[i] >= y[i - 1];
        double m1 = 0, s1 = 0;
        for (long i = 0; i < n; i++) m1 += y[i];
        m1 /= n;
        for (long i = 0; i < n; i++) s1 += (y[i] - m1) * (y[i] - m1);
        s1 = sqrt(s1 / n);
        dm = fmax(dm, fmax(fabs(m1 - m0), fabs(s1 - s0)));
        if (g == 1) t_check("gamma 1: max |diff| vs input", max_abs_diff(x, y, n), 1e-5);
    }
    t_true("gamma 0.7 / 1 / 1.5: monotone (sorted input stays sorted)", mono);
    t_check("gamma: mean and SD retained, max |diff|", dm, 1e-4);
    free(x); free(y);
}

static void test_intensity_misc(void) {
    int dims[3] = {6, 16, 16};
    long n = 6 * 16 * 16;
    float* x = t_fnew(3 * n);
    float* y = t_fnew(3 * n);
    TRng r = {5};
    t_frandn(&r, x, 3 * n, 1);
    memset(x + n, 0, sizeof(float) * n);   /* channel 1 missing */
    /* bias field: zero coefficients = identity; ncoeffs */
    double coef[20] = {0};
    memcpy(y, x, sizeof(float) * n);
    aug_bias_field(y, dims, 3, coef);
    t_true("bias field: 20 coefficients at degree 3, zero coefficients = identity",
           aug_bias_ncoeffs(3) == 20 && memcmp(x, y, sizeof(float) * n) == 0);
    coef[0] = log(2.0);
    aug_bias_field(y, dims, 3, coef);
    t_check("bias field: constant term log 2 doubles the image, max |diff|",
            fabs(y[77] - 2 * x[77]) + fabs(y[n - 1] - 2 * x[n - 1]), 1e-5);
    /* low res zoom 1 = identity; constant stays constant */
    memcpy(y, x, sizeof(float) * n);
    double z1[3] = {1, 1, 1}, z5[3] = {1, 0.5, 0.5};
    aug_lowres(y, dims, z1);
    t_check("low res zoom 1: max |diff|", max_abs_diff(x, y, n), 0);
    for (long i = 0; i < n; i++) y[i] = 1.25f;
    aug_lowres(y, dims, z5);
    double mc = 0;
    for (long i = 0; i < n; i++) mc = fmax(mc, fabs(y[i] - 1.25));
    t_check("low res zoom 0.5 keeps a constant, max |diff|", mc, 1e-6);
    /* blur keeps a constant */
    for (long i = 0; i < n; i++) y[i] = -0.5f;
    double sg[3] = {0, 1, 1};
    aug_gauss_smooth(y, dims, sg);
    mc = 0;
    for (long i = 0; i < n; i++) mc = fmax(mc, fabs(y[i] + 0.5));
    t_check("blur keeps a constant, max |diff|", mc, 1e-6);
    /* augment_intensity with everything firing: missing channel stays zero, deterministic */
    AugmentConfig ac;
    augment_defaults(&ac);
    ac.p_bias = ac.p_noise = ac.p_blur = ac.p_intensity = ac.p_lowres = ac.p_gamma = 1;
    ac.p_channel = 1;
    uint8_t pres[3] = {1, 0, 1};
    memcpy(y, x, sizeof(float) * 3 * n);
    augment_intensity(&ac, 99, y, 3, dims, pres);
    int zero = 1;
    for (long i = 0; i < n; i++) zero &= y[n + i] == 0;
    t_true("augment_intensity: a missing channel stays zero", zero);
    t_true("augment_intensity: present channels change", memcmp(x, y, sizeof(float) * n) != 0);
    float* y2 = t_fnew(3 * n);
    memcpy(y2, x, sizeof(float) * 3 * n);
    augment_intensity(&ac, 99, y2, 3, dims, pres);
    t_true("augment_intensity: same seed, identical bytes", memcmp(y, y2, sizeof(float) * 3 * n) == 0);
    memcpy(y2, x, sizeof(float) * 3 * n);
    augment_intensity(&ac, 100, y2, 3, dims, pres);
    t_true("augment_intensity: another seed, other bytes", memcmp(y, y2, sizeof(float) * 3 * n) != 0);
    /* spatial draw deterministic, elastic field RMS */
    int out[3] = {6, 16, 16};
    float* d1 = t_fnew(3 * n);
    float* d2 = t_fnew(3 * n);
    ac.p_rotate = ac.p_scale = ac.p_elastic = 1;
    AugSpatial s1, s2;
    augment_draw_spatial(&ac, 5, out, 0, &s1, d1);
    augment_draw_spatial(&ac, 5, out, 0, &s2, d2);
    t_true("augment_draw_spatial: same seed, identical draw and field",
           !memcmp(&s1, &s2, sizeof s1) && !memcmp(d1, d2, sizeof(float) * 3 * n) && s1.has_disp);
    double zz = 0;
    for (long i = 0; i < n; i++) zz = fmax(zz, fabs(d1[i]));
    t_check("elastic: in-plane only by default, max |z displacement|", zz, 0);
    Rng re = rng_stream(1, 2);
    aug_elastic_field(&re, dims, 3, 1.5, 1, d1);
    double ss = 0;
    for (long i = n; i < 2 * n; i++) ss += (double)d1[i] * d1[i];
    t_check("elastic field: |RMS - mag| (mag 1.5)", fabs(sqrt(ss / n) - 1.5), 1e-4);
    /* slice mode: nothing mixes z */
    augment_draw_spatial(&ac, 6, out, 1, &s1, d1);
    int flat = s1.A[0][0] == 1 && s1.A[0][1] == 0 && s1.A[0][2] == 0 && s1.A[1][0] == 0 &&
               s1.A[2][0] == 0 && !s1.flip[0];
    for (long i = 0; i < n; i++) flat &= d1[i] == 0 && d1[n + i] == d1[n + i % 256];
    t_true("slice2d draw: A keeps z, no z flip, same in-plane field on every slice", flat);
    free(x); free(y); free(y2); free(d1); free(d2);
}

static void test_degradations(void) {
    int dims[3] = {12, 20, 18};
    long n = 12 * 20 * 18;
    float* x = t_fnew(n);
    float* y = t_fnew(n);
    TRng r = {11};
    t_frandn(&r, x, n, 1);
    memcpy(y, x, sizeof(float) * n);
    deg_superres(y, dims, 0, 1, 0);
    t_true("superres factor 1: output equals the input (bitwise)", !memcmp(x, y, sizeof(float) * n));
    /* a ramp along z is reproduced in the interior at factor 2 and 3 (block means of a linear
     * function lie on it); other axes untouched */
    float* ramp = t_fnew(n);
    for (int d = 0; d < 12; d++)
        for (long v = 0; v < 20 * 18; v++) ramp[d * 360 + v] = (float)(0.5 * d + 0.01 * v);
    double md = 0;
    for (int f = 2; f <= 3; f++)
        for (int off = 0; off < f; off++) {
            memcpy(y, ramp, sizeof(float) * n);
            deg_superres(y, dims, 0, f, off);
            for (int d = f; d < 12 - f; d++)
                for (long v = 0; v < 360; v++) md = fmax(md, fabs(y[d * 360 + v] - ramp[d * 360 + v]));
        }
    t_check("superres factor 2/3, all phases: a z ramp is kept in the interior", md, 1e-5);
    memcpy(y, x, sizeof(float) * n);
    deg_superres(y, dims, 0, 2, 1);
    double dd = max_abs_diff(x, y, n);
    t_true("superres factor 2 changes a random volume", dd > 0.1);

    /* undistort: zero field = identity */
    float* v = t_fnew(n);
    deg_distort(x, dims, 1, v, 1, y);
    t_true("undistort: zero field = identity (bitwise)", !memcmp(x, y, sizeof(float) * n));
    /* smooth field bounds */
    Rng rf = rng_stream(3, 4);
    double sp[3] = {4, 8, 8};
    deg_smooth_field(&rf, dims, sp, 3.0, 1, v);
    double vmax = 0, dmax = 0;
    for (long i = 0; i < n; i++) vmax = fmax(vmax, fabs(v[i]));
    for (int d = 0; d < 12; d++)
        for (int h = 1; h < 19; h++)
            for (int w = 0; w < 18; w++) {
                long i = (d * 20 + h) * 18 + w;
                dmax = fmax(dmax, fabs(v[i + 18] - v[i - 18]) / 2);
            }
    t_true("smooth field: 0 < max|v| <= 3 and |dv/dy| <= 0.8", vmax > 0.3 && vmax <= 3 + 1e-5 &&
           dmax <= 0.8 + 1e-5);
    /* Jacobian modulation conserves the integral along y for an object away from the ends */
    int d2[3] = {4, 96, 8};
    long n2 = 4 * 96 * 8;
    float* obj = t_fnew(n2);
    float* dis = t_fnew(n2);
    float* v2 = t_fnew(n2);
    for (int d = 0; d < 4; d++)
        for (int h = 0; h < 96; h++)
            for (int w = 0; w < 8; w++)
                obj[(d * 96 + h) * 8 + w] = (float)(exp(-0.5 * pow((h - 48.0) / (8 + w), 2)) *
                                                    (1 + 0.3 * sin(0.4 * h + d)));
    Rng rv = rng_stream(9, 9);
    double sp2[3] = {2, 16, 4};
    deg_smooth_field(&rv, d2, sp2, 4.0, 1, v2);
    for (int d = 0; d < 4; d++)   /* taper to zero at the ends so nothing leaves the line */
        for (int h = 0; h < 96; h++)
            for (int w = 0; w < 8; w++) v2[(d * 96 + h) * 8 + w] *= (float)pow(sin(M_PI * h / 95), 2);
    double worst = 0, worst_nj = 0, moved = 0;
    for (int jac = 0; jac < 2; jac++) {
        deg_distort(obj, d2, 1, v2, jac, dis);
        for (int d = 0; d < 4; d++)
            for (int w = 0; w < 8; w++) {
                double s0 = 0, s1 = 0;
                for (int h = 0; h < 96; h++) {
                    s0 += obj[(d * 96 + h) * 8 + w];
                    s1 += dis[(d * 96 + h) * 8 + w];
                }
                double rel = fabs(s1 - s0) / s0;
                if (jac) worst = fmax(worst, rel); else worst_nj = fmax(worst_nj, rel);
            }
        if (jac) moved = max_abs_diff(obj, dis, n2);
    }
    printf("     (without the Jacobian factor the worst line-integral error is %.3e)\n", worst_nj);
    t_check("undistort: Jacobian keeps line integrals, worst rel. error (tol 2e-3)", worst, 2e-3);
    t_true("undistort: the field actually moves intensity (max |diff| > 0.05)", moved > 0.05);
    free(x); free(y); free(ramp); free(v); free(obj); free(dis); free(v2);
}

int main(void) {
    test_flip();
    test_affine_identity();
    test_rotation_labels();
    test_noise();
    test_gamma();
    test_intensity_misc();
    test_degradations();
    return t_summary();
}
