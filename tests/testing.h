/* tests/testing.h — the test harness shared by every C test (header only).
 *
 * Scores:
 *   NMSE(a, b)      = Σ(a−b)² / max(Σb², 1e-30), b the float64 reference.
 *   grad score      = mean_i |a_i − b_i| / (|a_i| + |b_i| + floor), floor = 1e-6·max|b|:
 *                     the mean |(a−b)/(a+b)| of ggml's gradient check, with a floor so that
 *                     entries whose true gradient is ~0 do not divide noise by noise.
 * Every check prints its value and the value as a percent of its threshold; the last line
 * of every test program is "N passed, N failed" and the exit status is non-zero on failure.
 */
#ifndef VITA_TESTING_H
#define VITA_TESTING_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int t_passed = 0, t_failed = 0;

/* value <= threshold passes; NaN never passes */
static inline int t_check(const char* what, double value, double threshold) {
    int ok = (value == value) && value <= threshold;
    if (ok) t_passed++; else t_failed++;
    if (threshold > 0)
        printf("%s %-58s %11.3e  (%6.2f%% of %.1e)\n", ok ? "PASS" : "FAIL", what, value,
               100.0 * value / threshold, threshold);
    else
        printf("%s %-58s %11.3e  (must be exactly 0)\n", ok ? "PASS" : "FAIL", what, value);
    fflush(stdout);
    return ok;
}

static inline int t_true(const char* what, int cond) {
    if (cond) t_passed++; else t_failed++;
    printf("%s %s\n", cond ? "PASS" : "FAIL", what);
    fflush(stdout);
    return cond;
}

static inline int t_summary(void) {
    printf("%d passed, %d failed\n", t_passed, t_failed);
    return t_failed ? 1 : 0;
}

/* ---- seeded random numbers (splitmix64): identical on every machine ------------------ */
typedef struct { uint64_t s; } TRng;
static inline uint64_t trng_u64(TRng* r) {
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static inline double trng_uniform(TRng* r) { return (trng_u64(r) >> 11) * (1.0 / 9007199254740992.0); }
static inline double trng_normal(TRng* r) {
    double u1 = trng_uniform(r), u2 = trng_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}
static inline int trng_int(TRng* r, int lo, int hi) { /* inclusive */
    return lo + (int)(trng_u64(r) % (uint64_t)(hi - lo + 1));
}
/* fills x (double) and xf (float, may be NULL) with the SAME values: scale * N(0,1) rounded
 * to float, so the float op and the double reference see identical inputs */
static inline void t_randn(TRng* r, double* x, float* xf, long n, double scale) {
    for (long i = 0; i < n; i++) {
        float v = (float)(scale * trng_normal(r));
        x[i] = v;
        if (xf) xf[i] = v;
    }
}

/* ---- scores ---------------------------------------------------------------------------- */
static inline double t_nmse_fd(const float* a, const double* b, long n) {
    double num = 0, den = 0;
    for (long i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += b[i] * b[i];
    }
    if (num != num) return NAN;
    return num / (den > 1e-30 ? den : 1e-30);
}
static inline double t_nmse_dd(const double* a, const double* b, long n) {
    double num = 0, den = 0;
    for (long i = 0; i < n; i++) {
        double d = a[i] - b[i];
        num += d * d;
        den += b[i] * b[i];
    }
    if (num != num) return NAN;
    return num / (den > 1e-30 ? den : 1e-30);
}
static inline double t_grad_score_fd(const float* a, const double* b, long n) {
    double mx = 0, s = 0;
    for (long i = 0; i < n; i++) mx = fmax(mx, fabs(b[i]));
    double floor_ = 1e-6 * mx + 1e-300;
    for (long i = 0; i < n; i++) s += fabs((double)a[i] - b[i]) / (fabs((double)a[i]) + fabs(b[i]) + floor_);
    return n ? s / n : 0;
}

/* Central finite differences of a scalar double function of x: g[i] = (f(x+h e_i) −
 * f(x−h e_i)) / 2h, perturbing x in place and restoring it. h = 1e-5·max(1, |x_i|) puts the
 * truncation error (~h²) and the rounding error (~1e-16/h) both near 1e-10. */
typedef double (*t_scalar_fn)(void* user);
static inline void t_fd_grad(t_scalar_fn f, void* user, double* x, long n, double* g) {
    for (long i = 0; i < n; i++) {
        double x0 = x[i], h = 1e-5 * fmax(1.0, fabs(x0));
        x[i] = x0 + h; double fp = f(user);
        x[i] = x0 - h; double fm = f(user);
        x[i] = x0;
        g[i] = (fp - fm) / (2 * h);
    }
}

static inline double t_dot(const double* a, const double* b, long n) {
    double s = 0;
    for (long i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}
static inline void t_d2f(float* y, const double* x, long n) { for (long i = 0; i < n; i++) y[i] = (float)x[i]; }
static inline void t_f2d(double* y, const float* x, long n) { for (long i = 0; i < n; i++) y[i] = x[i]; }

#endif
