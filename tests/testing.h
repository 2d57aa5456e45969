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
#include <sys/wait.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "../engine/rng.h"

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

/* ---- seeded random numbers: the engine's splitmix64 (engine/rng.h), identical everywhere --- */
typedef Rng TRng;  /* TRng r = {seed} initialises the state directly */
#define trng_u64 rng_u64
#define trng_uniform rng_uniform
#define trng_normal rng_normal
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
/* NMSE core: a is af (float) or, when af is NULL, ad (double) */
static inline double t_nmse_core(const float* af, const double* ad, const double* b, long n) {
    double num = 0, den = 0;
    for (long i = 0; i < n; i++) {
        double d = (af ? (double)af[i] : ad[i]) - b[i];
        num += d * d;
        den += b[i] * b[i];
    }
    if (num != num) return NAN;
    return num / (den > 1e-30 ? den : 1e-30);
}
static inline double t_nmse_fd(const float* a, const double* b, long n) { return t_nmse_core(a, NULL, b, n); }
static inline double t_nmse_dd(const double* a, const double* b, long n) { return t_nmse_core(NULL, a, b, n); }
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

/* ---- helpers shared by the op tests ----------------------------------------------------- */
#define T_U 0x1p-24  /* fp32 unit roundoff, 2^-24 */

/* zeroed arrays (at least one element); abort on allocation failure */
static inline double* t_dnew(long n) { double* p = calloc(n ? n : 1, sizeof *p); if (!p) abort(); return p; }
static inline float* t_fnew(long n) { float* p = calloc(n ? n : 1, sizeof *p); if (!p) abort(); return p; }

/* sets both the OpenMP and the OpenBLAS thread counts */
void openblas_set_num_threads(int);
static inline void t_set_threads(int n) {
#ifdef _OPENMP
    omp_set_num_threads(n);
#endif
    openblas_set_num_threads(n);
}

/* all NaN: an output that must be overwritten */
static inline void t_fill_nan(float* x, long n) { for (long i = 0; i < n; i++) x[i] = NAN; }
/* alternating NaN / 1e30: an output that must be overwritten */
static inline void t_fill_garbage(float* x, long n) { for (long i = 0; i < n; i++) x[i] = (i & 1) ? NAN : 1e30f; }

/* float-only random fill (t_randn needs a double array) */
static inline void t_frandn(TRng* rng, float* xf, long n, double scale) {
    double* x = t_dnew(n);
    t_randn(rng, x, xf, n, scale);
    free(x);
}

/* L = Σ ref(st) ⊙ R: a float64 reference op wrapped as a scalar loss for t_fd_grad */
typedef struct {
    void (*ref)(const void* st, double* out);
    const void* st;
    double* out;
    const double* R;
    long n;
} TFdLoss;
static inline double t_fd_loss(void* u) { TFdLoss* f = u; f->ref(f->st, f->out); return t_dot(f->out, f->R, f->n); }

/* FD gradient of f w.r.t. x[0..n) vs the analytic float gradient a (t_grad_score_fd) */
static inline double t_grad_score_ref(TFdLoss* f, double* x, long n, const float* a) {
    double* g = t_dnew(n);
    t_fd_grad(t_fd_loss, f, x, n, g);
    double s = t_grad_score_fd(a, g, n);
    free(g);
    return s;
}

/* max over i of |got - (g0 + 2 g1)| / (2U (|g0| + 2|g1|)): two fp32 additions onto a
 * prefilled buffer; must be <= 1 */
static inline double t_accum_ratio(const float* got, const float* g0, const float* g1, long n) {
    double mx = 0;
    for (long i = 0; i < n; i++) {
        double e = fabs((double)got[i] - ((double)g0[i] + 2.0 * g1[i]));
        double b = 2 * T_U * (fabs(g0[i]) + 2 * fabs(g1[i])) + 1e-300;
        mx = fmax(mx, e / b);
    }
    return mx;
}

/* runs fn in a child process and expects exit status 2 (internal error via CHECK) */
static inline void t_expect_exit2(const char* what, void (*fn)(void)) {
    fflush(stdout); fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) { fn(); _exit(0); }
    int st = 0;
    waitpid(pid, &st, 0);
    t_true(what, WIFEXITED(st) && WEXITSTATUS(st) == 2);
}

#endif
