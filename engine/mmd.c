/* engine/mmd.c — the estimator layer of the measuring instrument (engine/mmd.h, SPEC.md §6,
 * PAPER.md "MMD facts"). The O(N²d) work is one mmd_stats pass over the pooled, centred rows
 * (plus three d x d GEMMs for linear CKA and, for the median rule, one sqdist pass over at
 * most median_max rows); everything else is assembled here in double from O(N·S + N·B)
 * statistics and two O(N·d) host passes over the centred rows.
 *
 * Conventions (all stated once, here):
 *  - Kernel estimators use the mixture kernel kmix = (1/S) Σ_s k_s; every one of them is
 *    linear in k, so the mixture value is the mean of the per-bandwidth values (per_bw).
 *    κ = k(a, a) = 1 for mmd2_b.
 *  - Median rule: σ² = median_{i<j} d2 / 2 over a subsample of at most median_max pooled rows
 *    drawn without replacement (partial Fisher-Yates, rng_stream(seed, MMD_TAG_MEDIAN)); with
 *    an even number of pairs the median is the mean of the two middle values. The subsample is
 *    re-centred on its own mean before the fp32 sqdist (the expansion wants small norms).
 *    Mean rule: σ² = (2N/(N−1)·(mean|z|² − |z̄|²)) / 2 from double sums over the rows.
 *  - Cases: group_size g rows per case (tokens of one image). Permutations flip / relabel
 *    whole cases, the bootstrap resamples whole cases, and the delta-method SEs are
 *    case-level: se² = 4·n_c/n² · var_c(Σ_{i∈c} h1_i) (population variance over the n_c
 *    cases), which for g = 1 is the brief's (4/n)·var_i(h1_i); PAPER.md's n³ form equals it to
 *    first order.
 *  - mmd2_linear: pairs (2p, 2p+1), p < P = ⌊min(n, m)/2⌋, on rows (not cases);
 *    h_p = k(x_2p,x_2p+1) + k(y_2p,y_2p+1) − k(x_2p,y_2p+1) − k(x_2p+1,y_2p), distances in
 *    double on the host; se = sd/√P with the sample sd (ddof 1); z = mean/se.
 *  - Permutation p = (1 + #{T_b ≥ T_obs − ε})/(B + 1), ε = 1e-7·(mean k_XX + mean k_YY +
 *    2 mean k_XY): replicates come from kv (fp32 tile sums), T_obs from the sums, and a
 *    replicate equal to T_obs in exact arithmetic (identity relabelling, X = Y) must count
 *    as a tie. p-values for mmd2_u, mmd2_b and (paired) mmd2_paired; NaN for the rest.
 *  - Bootstrap replicate of a U-statistic with case counts w (row weights w_i = count of
 *    row i's case): Σ_{i≠j} w_i w_j h_ij / Σ_{i≠j} w_i w_j, i.e. pairs of two copies of the
 *    SAME row are excluded (the pooled diagonal of K~), pairs of different rows of two copies
 *    of the same case are kept; the V-statistic mmd2_b keeps everything (copies give κ = 1).
 *    Percentile CI with linear interpolation between order statistics (numpy's default).
 *  - CKA needs paired rows (cfg->paired); else NaN. cka_linear: Kornblith's
 *    ‖ŶᵀX̂‖²_F / (‖X̂ᵀX̂‖_F ‖ŶᵀŶ‖_F) with per-set centred X̂, Ŷ; the d x d products are
 *    linear_backward's dW = doutᵀx on the pooled-centred rows, per-set centring applied on
 *    the host as the rank-1 correction X̂ᵀŶ = XcᵀYc − n·a bᵀ (a, b: set means of Xc, Yc).
 *    cka_linear_u: Song et al.'s unbiased HSIC with linear kernels in feature space on X̂, Ŷ
 *    (Σ x̂_i = 0, so 1ᵀK̃1 = −Σ|x̂_i|², (K̃1)_i = −|x̂_i|²). cka_rbf: biased HSIC tr(KHLH)
 *    with per-set bandwidths (each set's own rule, scale 1; fixed rule: cfg->sigma).
 *  - mean_cos_dist = 1 − cos(x̄, ȳ) of the raw means (μ + set mean of the centred rows),
 *    evaluated as |x̄/|x̄| − ȳ/|ȳ||²/2, which does not cancel for small angles.
 * Invariants: results do not depend on the thread count (the ops are deterministic; host
 * loops either write per-row results or reduce each output in a fixed row order). No exit():
 * bad input returns 1 with one line in err.
 */
#include "mmd.h"
#include "mmd_internal.h"
#include "rng.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { MMD_TAG_MEDIAN = 1, MMD_TAG_MEDIAN_X = 2, MMD_TAG_MEDIAN_Y = 3, MMD_TAG_PERM = 4,
       MMD_TAG_BOOT = 5 };

static const char* const EST_NAMES[EST_COUNT] = {
    "mmd2_u", "mmd2_b", "mmd2_paired", "mmd2_paired_se", "mmd2_u_se", "mmd2_linear",
    "mmd2_linear_z", "energy", "cka_linear", "cka_linear_u", "cka_rbf", "mean_cos_dist"};

const char* mmd_estimator_name(int e) { return e >= 0 && e < EST_COUNT ? EST_NAMES[e] : "?"; }

int mmd_estimator_from_name(const char* name) {
    for (int e = 0; name && e < EST_COUNT; e++)
        if (!strcmp(name, EST_NAMES[e])) return e;
    return -1;
}

void mmd_config_default(MmdConfig* cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->bandwidth_rule = MMD_BW_MEDIAN;
    cfg->sigma = 1.0;
    cfg->n_scales = 3;
    cfg->scales[0] = 0.5; cfg->scales[1] = 1.0; cfg->scales[2] = 2.0;
    cfg->ci_level = 0.95;
    cfg->group_size = 1;
    cfg->median_max = 4096;
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

/* rows per host chunk: ~8M floats per set, even (the linear-time pairs stay in one chunk) */
static int chunk_rows(int d, int nmax) {
    long r = (8L << 20) / (d > 0 ? d : 1);
    if (r < 2) r = 2;
    if (r > nmax + 1) r = nmax + 1;
    return (int)(r & ~1L);
}

/* ---- exact selection ----------------------------------------------------------------- */
/* k-th smallest of a[0..n) (0-based); afterwards every a[j], j > k, is >= a[k] */
static float select_kth(float* a, long n, long k) {
    long lo = 0, hi = n - 1;
    while (hi > lo) {
        float x = a[lo], y = a[lo + (hi - lo) / 2], z = a[hi];
        float p = x < y ? (y < z ? y : (x < z ? z : x)) : (x < z ? x : (y < z ? z : y));
        long i = lo, j = hi;
        while (i <= j) {
            while (a[i] < p) i++;
            while (a[j] > p) j--;
            if (i <= j) { float t = a[i]; a[i] = a[j]; a[j] = t; i++; j--; }
        }
        /* [lo, j] <= p, (j, i) == p, [i, hi] >= p */
        if (k <= j) hi = j;
        else if (k >= i) lo = i;
        else return a[k];
    }
    return a[k];
}

static int cmp_int(const void* a, const void* b) {
    int x = *(const int*)a, y = *(const int*)b;
    return (x > y) - (x < y);
}

/* median over pairs i < j of |z_i − z_j|² of a subsample of at most cap rows of [A; B]
 * (B may be NULL with nB = 0). Returns NaN with fewer than 2 rows. */
static double median_pair_d2(Ctx* c, const float* A, int nA, const float* Bm, int nB, int d,
                             int cap, uint64_t seed, uint64_t tag, int* used) {
    int N = nA + nB, k = N < cap ? N : cap;
    if (used) *used = k;
    if (k < 2) return NAN;
    int* idx = malloc(sizeof(int) * N);
    float* h = malloc(sizeof(float) * (size_t)k * d);
    double* mu = calloc(d, sizeof(double));
    long M = (long)k * (k - 1) / 2;
    float* all = malloc(sizeof(float) * M);
    if (!idx || !h || !mu || !all) { free(idx); free(h); free(mu); free(all); return NAN; }
    for (int i = 0; i < N; i++) idx[i] = i;
    if (k < N) {
        Rng r = rng_stream(seed, tag);
        for (int i = 0; i < k; i++) {
            int j = i + (int)(rng_uniform(&r) * (N - i));
            int t = idx[i]; idx[i] = idx[j]; idx[j] = t;
        }
        qsort(idx, k, sizeof(int), cmp_int);   /* order is irrelevant; sorted copies merge */
    }
    for (int i = 0; i < k;) {   /* gather runs of consecutive rows of one set in one copy */
        int j = i + 1, inA = idx[i] < nA;
        while (j < k && idx[j] == idx[j - 1] + 1 && (idx[j] < nA) == inA) j++;
        const float* src = inA ? A + (size_t)idx[i] * d : Bm + (size_t)(idx[i] - nA) * d;
        copy_d2h(c, h + (size_t)i * d, src, sizeof(float) * (size_t)(j - i) * d);
        i = j;
    }
    for (int i = 0; i < k; i++)
        for (int q = 0; q < d; q++) mu[q] += h[(size_t)i * d + q];
    for (int q = 0; q < d; q++) mu[q] /= k;
#pragma omp parallel for schedule(static)
    for (int i = 0; i < k; i++)
        for (int q = 0; q < d; q++) h[(size_t)i * d + q] = (float)(h[(size_t)i * d + q] - mu[q]);
    float* dz = dev_alloc(c, sizeof(float) * (size_t)k * d);
    copy_h2d(c, dz, h, sizeof(float) * (size_t)k * d);
    int R = (int)((16L << 20) / k);
    if (R < 1) R = 1;
    if (R > k) R = k;
    float* dout = dev_alloc(c, sizeof(float) * (size_t)R * k);
    float* hout = malloc(sizeof(float) * (size_t)R * k);
    long pos = 0;
    for (int r0 = 0; r0 < k - 1 && hout; r0 += R) {
        int r1 = r0 + R < k - 1 ? r0 + R : k - 1, cols = k - r0;   /* only columns j >= r0 */
        sqdist_forward(c, dout, dz + (size_t)r0 * d, dz + (size_t)r0 * d, r1 - r0, cols, d);
        copy_d2h(c, hout, dout, sizeof(float) * (size_t)(r1 - r0) * cols);
        for (int i = r0; i < r1; i++)
            for (int j = i + 1; j < k; j++) all[pos++] = hout[(size_t)(i - r0) * cols + (j - r0)];
    }
    double med = NAN;
    if (hout && pos == M) {
        long k1 = (M - 1) / 2;
        float a = select_kth(all, M, k1);
        if (M % 2) med = a;
        else {   /* even count: mean of the two middle values; the upper one is min(a[k1+1..]) */
            float b = all[k1 + 1];
            for (long j = k1 + 2; j < M; j++) if (all[j] < b) b = all[j];
            med = 0.5 * ((double)a + b);
        }
    }
    dev_free(c, dout);
    dev_free(c, dz);
    free(hout); free(idx); free(h); free(mu); free(all);
    return med;
}

/* mean pairwise d2 from the pooled sums: S = Σz, Q = Σ|z|² over N rows (z shifted by any
 * constant); 2N/(N−1)·(Q/N − |S/N|²) */
static double mean_pair_d2(const double* S, double Q, long N, int d) {
    double s2 = 0;
    for (int q = 0; q < d; q++) s2 += (S[q] / N) * (S[q] / N);
    return 2.0 * N / (N - 1) * (Q / N - s2);
}

double mmd_bandwidth(Ctx* c, const float* X, const float* Y, int n, int m, int d,
                     const MmdConfig* cfg, int* used_n) {
    if (used_n) *used_n = 0;
    if (cfg->bandwidth_rule == MMD_BW_FIXED) return cfg->sigma;
    if (n + m < 2 || d < 1) return NAN;
    if (cfg->bandwidth_rule == MMD_BW_MEDIAN) {
        int cap = cfg->median_max >= 2 ? cfg->median_max : 2;
        double med = median_pair_d2(c, X, n, Y, m, d, cap, cfg->seed, MMD_TAG_MEDIAN, used_n);
        return sqrt(med / 2);
    }
    if (cfg->bandwidth_rule != MMD_BW_MEAN) return NAN;
    /* mean rule on raw rows: shift by the first row so that a large common offset does not
     * cancel in mean|z|² − |z̄|² */
    int R = chunk_rows(d, n > m ? n : m);
    float* h = malloc(sizeof(float) * (size_t)R * d);
    float* shift = malloc(sizeof(float) * d);
    double* S = calloc(d, sizeof(double));
    double Q = 0;
    if (!h || !shift || !S) { free(h); free(shift); free(S); return NAN; }
    copy_d2h(c, shift, n > 0 ? X : Y, sizeof(float) * d);
    for (int set = 0; set < 2; set++) {
        const float* A = set ? Y : X;
        int nA = set ? m : n;
        for (int r0 = 0; r0 < nA; r0 += R) {
            int nr = nA - r0 < R ? nA - r0 : R;
            copy_d2h(c, h, A + (size_t)r0 * d, sizeof(float) * (size_t)nr * d);
            for (int i = 0; i < nr; i++)
                for (int q = 0; q < d; q++) {
                    double v = (double)h[(size_t)i * d + q] - shift[q];
                    S[q] += v;
                    Q += v * v;
                }
        }
    }
    double md = mean_pair_d2(S, Q, (long)n + m, d);
    free(h); free(shift); free(S);
    if (used_n) *used_n = n + m;
    return sqrt(md / 2);
}

/* ---- draws ---------------------------------------------------------------------------- */
static int uniform_int(Rng* r, int k) { int v = (int)(rng_uniform(r) * k); return v < k ? v : k - 1; }

float* mmd_draw_permutations(const MmdConfig* cfg, int n, int m) {
    int B = cfg->permutations, g = cfg->group_size > 0 ? cfg->group_size : 1, N = n + m;
    if (B <= 0) return NULL;
    float* V = calloc((size_t)N * B, sizeof(float));
    int nc = n / g, Nc = N / g;
    int* perm = malloc(sizeof(int) * (Nc > 0 ? Nc : 1));
    if (!V || !perm) { free(V); free(perm); return NULL; }
    Rng r = rng_stream(cfg->seed, MMD_TAG_PERM);
    for (int b = 0; b < B; b++) {
        if (cfg->paired) {
            for (int cs = 0; cs < nc; cs++) {
                float s = (rng_u64(&r) >> 63) ? -1.0f : 1.0f;
                for (int t = 0; t < g; t++) {
                    int i = cs * g + t;
                    V[(size_t)i * B + b] = s;
                    V[(size_t)(n + i) * B + b] = s;
                }
            }
        } else {
            /* pooled cases in order (X cases, then Y cases; n and m are multiples of g, so
             * pooled case c is pooled rows [c·g, c·g + g)); the first nc after a shuffle
             * form the new X */
            for (int cs = 0; cs < Nc; cs++) perm[cs] = cs;
            for (int i = Nc - 1; i > 0; i--) {
                int j = uniform_int(&r, i + 1);
                int t = perm[i]; perm[i] = perm[j]; perm[j] = t;
            }
            for (int q = 0; q < nc; q++)
                for (int t = 0; t < g; t++) V[(size_t)(perm[q] * g + t) * B + b] = 1.0f;
        }
    }
    free(perm);
    return V;
}

float* mmd_draw_bootstrap(const MmdConfig* cfg, int n, int m) {
    int B = cfg->bootstrap, g = cfg->group_size > 0 ? cfg->group_size : 1, N = n + m;
    if (B <= 0) return NULL;
    float* V = calloc((size_t)N * B, sizeof(float));
    int nc = n / g, mc = m / g;
    int* cnt = calloc((size_t)(nc + mc > 0 ? nc + mc : 1), sizeof(int));
    if (!V || !cnt) { free(V); free(cnt); return NULL; }
    Rng r = rng_stream(cfg->seed, MMD_TAG_BOOT);
    for (int b = 0; b < B; b++) {
        memset(cnt, 0, sizeof(int) * (nc + mc));
        for (int q = 0; q < nc; q++) cnt[uniform_int(&r, nc)]++;
        if (!cfg->paired)
            for (int q = 0; q < mc; q++) cnt[nc + uniform_int(&r, mc)]++;
        for (int i = 0; i < n; i++) {
            V[(size_t)i * B + b] = (float)cnt[i / g];
            if (cfg->paired) V[(size_t)(n + i) * B + b] = (float)cnt[i / g];
        }
        if (!cfg->paired)
            for (int j = 0; j < m; j++) V[(size_t)(n + j) * B + b] = (float)cnt[nc + j / g];
    }
    free(cnt);
    return V;
}

/* ---- host passes over the centred rows ------------------------------------------------- */
/* column sums of nr rows (fixed order per column: deterministic for any thread count) */
static void col_sums(double* S, const float* h, int nr, int d) {
    enum { KB = 16 };
    int nkb = (d + KB - 1) / KB;
#pragma omp parallel for schedule(static)
    for (int kb = 0; kb < nkb; kb++) {
        int k0 = kb * KB, k1 = k0 + KB < d ? k0 + KB : d;
        double acc[KB] = {0};
        for (int i = 0; i < nr; i++) {
            const float* row = h + (size_t)i * d;
            for (int q = k0; q < k1; q++) acc[q - k0] += row[q];
        }
        for (int q = k0; q < k1; q++) S[q] += acc[q - k0];
    }
}

static double d2_rows(const float* a, const float* b, int d) {
    double s = 0;
    for (int q = 0; q < d; q++) { double t = (double)a[q] - b[q]; s += t * t; }
    return s;
}

/* pass 1: column sums Sx, Sy, squared row norms nx2 [n], ny2 [m] (non-finite iff a value
 * is), linear-time pair distances lin [P*4] = (xx, yy, xy, yx) */
static void pass1(Ctx* c, const float* Xc, const float* Yc, int n, int m, int d, int P,
                  float* hx, float* hy, int R, double* Sx, double* Sy, double* nx2,
                  double* ny2, double* lin) {
    int nmax = n > m ? n : m;
    for (int r0 = 0; r0 < nmax; r0 += R) {
        int nx = n - r0 < R ? n - r0 : R, ny = m - r0 < R ? m - r0 : R;
        if (nx < 0) nx = 0;
        if (ny < 0) ny = 0;
        if (nx) copy_d2h(c, hx, Xc + (size_t)r0 * d, sizeof(float) * (size_t)nx * d);
        if (ny) copy_d2h(c, hy, Yc + (size_t)r0 * d, sizeof(float) * (size_t)ny * d);
#pragma omp parallel for schedule(static)
        for (int i = 0; i < nx + ny; i++) {
            const float* row = i < nx ? hx + (size_t)i * d : hy + (size_t)(i - nx) * d;
            double s = 0;
            for (int q = 0; q < d; q++) s += (double)row[q] * row[q];
            if (i < nx) nx2[r0 + i] = s; else ny2[r0 + i - nx] = s;
        }
        col_sums(Sx, hx, nx, d);
        col_sums(Sy, hy, ny, d);
        int p0 = r0 / 2, p1 = (r0 + R) / 2 < P ? (r0 + R) / 2 : P;
#pragma omp parallel for schedule(static)
        for (int p = p0; p < p1; p++) {
            const float *x0 = hx + (size_t)(2 * p - r0) * d, *x1 = x0 + d;
            const float *y0 = hy + (size_t)(2 * p - r0) * d, *y1 = y0 + d;
            lin[4 * p + 0] = d2_rows(x0, x1, d);
            lin[4 * p + 1] = d2_rows(y0, y1, d);
            lin[4 * p + 2] = d2_rows(x0, y1, d);
            lin[4 * p + 3] = d2_rows(x1, y0, d);
        }
    }
}

/* pass 2 (paired): per-set centred squared row norms px[i] = |x_i − a|², py[i] = |y_i − b|² */
static void pass2(Ctx* c, const float* Xc, const float* Yc, int n, int d, const double* a,
                  const double* b, float* hx, float* hy, int R, double* px, double* py) {
    for (int r0 = 0; r0 < n; r0 += R) {
        int nr = n - r0 < R ? n - r0 : R;
        copy_d2h(c, hx, Xc + (size_t)r0 * d, sizeof(float) * (size_t)nr * d);
        copy_d2h(c, hy, Yc + (size_t)r0 * d, sizeof(float) * (size_t)nr * d);
#pragma omp parallel for schedule(static)
        for (int i = 0; i < nr; i++) {
            double sx = 0, sy = 0;
            for (int q = 0; q < d; q++) {
                double tx = hx[(size_t)i * d + q] - a[q], ty = hy[(size_t)i * d + q] - b[q];
                sx += tx * tx;
                sy += ty * ty;
            }
            px[r0 + i] = sx;
            py[r0 + i] = sy;
        }
    }
}

/* first row of A [nA, d] (device) holding a non-finite value, or -1 */
static long first_bad_row(Ctx* c, const float* A, int nA, int d, float* h, int R) {
    for (int r0 = 0; r0 < nA; r0 += R) {
        int nr = nA - r0 < R ? nA - r0 : R;
        copy_d2h(c, h, A + (size_t)r0 * d, sizeof(float) * (size_t)nr * d);
        for (int i = 0; i < nr; i++)
            for (int q = 0; q < d; q++)
                if (!isfinite(h[(size_t)i * d + q])) return (long)r0 + i;
    }
    return -1;
}

/* ---- small statistics -------------------------------------------------------------------- */
/* case-level delta-method variance: 4·nc/n² · var_c(Σ_{i∈c} h[i]) (population variance) */
static double case_var(const double* h, int n, int g) {
    int nc = n / g;
    double mean = 0, v = 0;
    for (int cs = 0; cs < nc; cs++) {
        double s = 0;
        for (int t = 0; t < g; t++) s += h[cs * g + t];
        mean += s;
    }
    mean /= nc;
    for (int cs = 0; cs < nc; cs++) {
        double s = 0;
        for (int t = 0; t < g; t++) s += h[cs * g + t];
        v += (s - mean) * (s - mean);
    }
    v /= nc;
    return 4.0 * nc / ((double)n * n) * v;
}

static int cmp_double(const void* a, const void* b) {
    double x = *(const double*)a, y = *(const double*)b;
    return (x > y) - (x < y);
}

/* percentile CI, linear interpolation between order statistics (numpy's default) */
static void percentile_ci(const double* rep, int B, double level, double* lo, double* hi) {
    *lo = *hi = NAN;
    double* s = malloc(sizeof(double) * (B > 0 ? B : 1));
    if (!s || B < 1) { free(s); return; }
    int k = 0;
    for (int b = 0; b < B; b++) if (rep[b] == rep[b]) s[k++] = rep[b];
    if (k == B) {
        qsort(s, B, sizeof(double), cmp_double);
        double q[2] = {(1 - level) / 2, 1 - (1 - level) / 2}, v[2];
        for (int t = 0; t < 2; t++) {
            double hpos = (B - 1) * q[t];
            int l = (int)floor(hpos);
            if (l >= B - 1) v[t] = s[B - 1];
            else v[t] = s[l] + (hpos - l) * (s[l + 1] - s[l]);
        }
        *lo = v[0]; *hi = v[1];
    }
    free(s);
}

/* mixture (mean over the S bandwidths) of row statistic r of row i; nr statistics per row */
static inline double rmix(const double* arr, long i, int nr, int r, int S) {
    double s = 0;
    for (int q = 0; q < S; q++) s += arr[((size_t)i * nr + r) * S + q];
    return s / S;
}

/* ‖C − n·a bᵀ‖²_F for C [d, d] on the host (rows parallel, summed in row order) */
static double fro2_corrected(const float* C, const double* a, const double* b, int n, int d,
                             double* rowbuf) {
#pragma omp parallel for schedule(static)
    for (int i = 0; i < d; i++) {
        double s = 0;
        for (int j = 0; j < d; j++) {
            double v = C[(size_t)i * d + j] - (double)n * a[i] * b[j];
            s += v * v;
        }
        rowbuf[i] = s;
    }
    double s = 0;
    for (int i = 0; i < d; i++) s += rowbuf[i];
    return s;
}

/* ---- mmd_compute ---------------------------------------------------------------------------- */
#define FAIL(...) do { snprintf(err, errlen, __VA_ARGS__); rc = 1; goto done; } while (0)

int mmd_compute_with_draws(Ctx* c, const float* X, const float* Y, int n, int m, int d,
                           const MmdConfig* cfg, const MmdDraws* draws, MmdResult* res,
                           char* err, size_t errlen) {
    double t0 = now_s();
    int rc = 0;
    if (err && errlen) err[0] = 0;
    for (int e = 0; e < EST_COUNT; e++) {
        res->value[e] = res->se[e] = res->ci_lo[e] = res->ci_hi[e] = res->pvalue[e] = NAN;
        for (int s = 0; s < MMD_MAX_S; s++) res->per_bw[e][s] = NAN;
    }
    res->n = n; res->m = m; res->d = d; res->S = cfg->n_scales;
    res->sigma_base = NAN;
    for (int s = 0; s < MMD_MAX_S; s++) res->sigmas[s] = NAN;
    res->rule = cfg->bandwidth_rule; res->median_n = 0; res->seconds = 0;

    const int S = cfg->n_scales, g = cfg->group_size, paired = cfg->paired != 0;
    const int Bp = draws && draws->Vperm ? draws->Bp : 0, Bb = draws && draws->Vboot ? draws->Bb : 0;
    const int B = Bp + Bb, N = n + m;
    float *Xc = NULL, *Yc = NULL, *mu = NULL, *Vd = NULL, *Cd = NULL;
    double *dsums = NULL, *ddsum = NULL, *drx = NULL, *dry = NULL, *dcka = NULL, *dckar = NULL,
           *dkv = NULL;
    float *hx = NULL, *hy = NULL, *Vh = NULL, *Ch = NULL, *muh = NULL;
    double *Sx = NULL, *Sy = NULL, *nx2 = NULL, *ny2 = NULL, *lin = NULL, *sums = NULL,
           *rx = NULL, *ry = NULL, *ckar = NULL, *kv = NULL, *tmp = NULL, *tmp2 = NULL,
           *rowbuf = NULL, *acc = NULL, *dmix = NULL, *rfull = NULL;

    /* ---- validation ---- */
    if (n < 2 || m < 2) FAIL("mmd: need at least 2 rows per set (n = %d, m = %d)", n, m);
    if (d < 1) FAIL("mmd: feature dimension d = %d must be >= 1", d);
    if (paired && n != m) FAIL("mmd: paired samples need n == m (n = %d, m = %d)", n, m);
    if (g < 1 || n % g || m % g)
        FAIL("mmd: group_size %d must be >= 1 and divide n = %d and m = %d", g, n, m);
    if (S < 1 || S > MMD_MAX_S) FAIL("mmd: n_scales = %d must be in 1..%d", S, MMD_MAX_S);
    for (int s = 0; s < S; s++)
        if (!(cfg->scales[s] > 0) || !isfinite(cfg->scales[s]))
            FAIL("mmd: bandwidth scale %d = %g must be positive and finite", s, cfg->scales[s]);
    if (cfg->bandwidth_rule != MMD_BW_FIXED && cfg->bandwidth_rule != MMD_BW_MEDIAN &&
        cfg->bandwidth_rule != MMD_BW_MEAN)
        FAIL("mmd: unknown bandwidth rule %d", cfg->bandwidth_rule);
    if (cfg->bandwidth_rule == MMD_BW_FIXED && (!(cfg->sigma > 0) || !isfinite(cfg->sigma)))
        FAIL("mmd: fixed bandwidth sigma = %g must be positive and finite", cfg->sigma);
    if (cfg->permutations < 0 || cfg->bootstrap < 0 || Bp < 0 || Bb < 0)
        FAIL("mmd: permutations and bootstrap must be >= 0");
    if (Bb > 0 && !(cfg->ci_level > 0 && cfg->ci_level < 1))
        FAIL("mmd: ci_level = %g must be in (0, 1)", cfg->ci_level);

    /* ---- centre on the pooled mean, host pass 1, finiteness ---- */
    Xc = dev_alloc(c, sizeof(float) * (size_t)n * d);
    Yc = dev_alloc(c, sizeof(float) * (size_t)m * d);
    mu = dev_alloc(c, sizeof(float) * d);
    mmd_center(c, Xc, Yc, mu, X, Y, n, m, d);
    const int R = chunk_rows(d, n > m ? n : m);
    const int P = (n < m ? n : m) / 2;
    hx = malloc(sizeof(float) * (size_t)R * d);
    hy = malloc(sizeof(float) * (size_t)R * d);
    muh = malloc(sizeof(float) * d);
    Sx = calloc(d, sizeof(double));
    Sy = calloc(d, sizeof(double));
    nx2 = malloc(sizeof(double) * n);
    ny2 = malloc(sizeof(double) * m);
    lin = malloc(sizeof(double) * 4 * (P > 0 ? P : 1));
    tmp = malloc(sizeof(double) * (N > d ? N : d));
    tmp2 = malloc(sizeof(double) * (N > d ? N : d));
    if (!hx || !hy || !muh || !Sx || !Sy || !nx2 || !ny2 || !lin || !tmp || !tmp2)
        FAIL("mmd: out of host memory (n = %d, m = %d, d = %d)", n, m, d);
    pass1(c, Xc, Yc, n, m, d, P, hx, hy, R, Sx, Sy, nx2, ny2, lin);
    double qx = 0, qy = 0;
    for (int i = 0; i < n; i++) qx += nx2[i];
    for (int j = 0; j < m; j++) qy += ny2[j];
    if (!isfinite(qx) || !isfinite(qy)) {
        long bx = first_bad_row(c, X, n, d, hx, R);
        long by = bx < 0 ? first_bad_row(c, Y, m, d, hy, R) : -1;
        if (bx >= 0) FAIL("mmd: row %ld of X holds a non-finite value (NaN or Inf)", bx);
        if (by >= 0) FAIL("mmd: row %ld of Y holds a non-finite value (NaN or Inf)", by);
        FAIL("mmd: values too large: centring overflowed float32");
    }
    copy_d2h(c, muh, mu, sizeof(float) * d);

    /* ---- bandwidths ---- */
    double sig = NAN, sig_x = NAN, sig_y = NAN;
    const int cap = cfg->median_max >= 2 ? cfg->median_max : 2;
    if (cfg->bandwidth_rule == MMD_BW_FIXED) {
        sig = sig_x = sig_y = cfg->sigma;
    } else if (cfg->bandwidth_rule == MMD_BW_MEDIAN) {
        /* on the centred rows (same distances; the subsample is re-centred anyway) */
        sig = sqrt(median_pair_d2(c, Xc, n, Yc, m, d, cap, cfg->seed, MMD_TAG_MEDIAN,
                                  &res->median_n) / 2);
        if (paired) {
            sig_x = sqrt(median_pair_d2(c, Xc, n, NULL, 0, d, cap, cfg->seed, MMD_TAG_MEDIAN_X, NULL) / 2);
            sig_y = sqrt(median_pair_d2(c, Yc, m, NULL, 0, d, cap, cfg->seed, MMD_TAG_MEDIAN_Y, NULL) / 2);
        }
    } else {
        for (int q = 0; q < d; q++) tmp[q] = Sx[q] + Sy[q];
        sig = sqrt(mean_pair_d2(tmp, qx + qy, N, d) / 2);
        res->median_n = N;
        if (paired) {
            sig_x = sqrt(mean_pair_d2(Sx, qx, n, d) / 2);
            sig_y = sqrt(mean_pair_d2(Sy, qy, m, d) / 2);
        }
    }
    if (!(sig > 0) || !isfinite(sig))
        FAIL("mmd: bandwidth sigma = %g (rule %d): are all rows identical?", sig, cfg->bandwidth_rule);
    res->sigma_base = sig;
    MmdDims dims;
    memset(&dims, 0, sizeof dims);
    dims.n = n; dims.m = m; dims.d = d; dims.S = S; dims.B = B; dims.paired = paired;
    for (int s = 0; s < S; s++) {
        res->sigmas[s] = cfg->scales[s] * sig;
        dims.gamma[s] = (float)(1.0 / (2.0 * res->sigmas[s] * res->sigmas[s]));
    }
    const int cka_rbf_ok = paired && sig_x > 0 && sig_y > 0 && isfinite(sig_x) && isfinite(sig_y);
    if (cka_rbf_ok) {
        dims.gamma_cka_x = (float)(1.0 / (2.0 * sig_x * sig_x));
        dims.gamma_cka_y = (float)(1.0 / (2.0 * sig_y * sig_y));
    }

    /* ---- one mmd_stats pass ---- */
    if (B > 0) {
        Vh = malloc(sizeof(float) * (size_t)N * B);
        if (!Vh) FAIL("mmd: out of host memory for %d draws x %d rows", B, N);
        for (int p = 0; p < N; p++) {
            if (Bp) memcpy(Vh + (size_t)p * B, draws->Vperm + (size_t)p * Bp, sizeof(float) * Bp);
            if (Bb) memcpy(Vh + (size_t)p * B + Bp, draws->Vboot + (size_t)p * Bb, sizeof(float) * Bb);
        }
        Vd = dev_alloc(c, sizeof(float) * (size_t)N * B);
        copy_h2d(c, Vd, Vh, sizeof(float) * (size_t)N * B);
    }
    dsums = dev_alloc(c, sizeof(double) * MMD_NSUM * S);
    ddsum = dev_alloc(c, sizeof(double) * 3);
    drx = dev_alloc(c, sizeof(double) * (size_t)n * 3 * S);
    dry = dev_alloc(c, sizeof(double) * (size_t)m * 2 * S);
    if (cka_rbf_ok) {
        dcka = dev_alloc(c, sizeof(double) * 3);
        dckar = dev_alloc(c, sizeof(double) * (size_t)n * 2);
    }
    if (B > 0) dkv = dev_alloc(c, sizeof(double) * (size_t)N * 2 * B);
    MmdOut out = {dsums, ddsum, drx, dry, dcka, dckar, dkv};
    mmd_stats(c, &out, Xc, Yc, Vd, &dims);
    sums = malloc(sizeof(double) * MMD_NSUM * S);
    rx = malloc(sizeof(double) * (size_t)n * 3 * S);
    ry = malloc(sizeof(double) * (size_t)m * 2 * S);
    ckar = malloc(sizeof(double) * (size_t)n * 2);
    kv = malloc(sizeof(double) * (size_t)N * 2 * (B > 0 ? B : 1));
    if (!sums || !rx || !ry || !ckar || !kv) FAIL("mmd: out of host memory for statistics");
    double dsum[3], cka[3] = {NAN, NAN, NAN};
    copy_d2h(c, sums, dsums, sizeof(double) * MMD_NSUM * S);
    copy_d2h(c, dsum, ddsum, sizeof dsum);
    copy_d2h(c, rx, drx, sizeof(double) * (size_t)n * 3 * S);
    copy_d2h(c, ry, dry, sizeof(double) * (size_t)m * 2 * S);
    if (cka_rbf_ok) {
        copy_d2h(c, cka, dcka, sizeof cka);
        copy_d2h(c, ckar, dckar, sizeof(double) * (size_t)n * 2);
    }
    if (B > 0) copy_d2h(c, kv, dkv, sizeof(double) * (size_t)N * 2 * B);

    /* ---- MMD² from the sums ---- */
    const double nn = n, mm = m;
    double mix[MMD_NSUM] = {0};
    for (int s = 0; s < S; s++) {
        double sxx = sums[MMD_SXX * S + s], syy = sums[MMD_SYY * S + s];
        double sxy = sums[MMD_SXY * S + s], dxy = sums[MMD_DXY * S + s];
        for (int q = 0; q < MMD_NSUM; q++) mix[q] += sums[q * S + s] / S;
        res->per_bw[EST_MMD2_U][s] = sxx / (nn * (nn - 1)) + syy / (mm * (mm - 1)) - 2 * sxy / (nn * mm);
        res->per_bw[EST_MMD2_B][s] = (sxx + nn) / (nn * nn) + (syy + mm) / (mm * mm) - 2 * sxy / (nn * mm);
        if (paired) res->per_bw[EST_MMD2_PAIRED][s] = (sxx + syy - 2 * (sxy - dxy)) / (nn * (nn - 1));
    }
    const double SXX = mix[MMD_SXX], SYY = mix[MMD_SYY], SXY = mix[MMD_SXY], DXY = mix[MMD_DXY];
    res->value[EST_MMD2_U] = SXX / (nn * (nn - 1)) + SYY / (mm * (mm - 1)) - 2 * SXY / (nn * mm);
    res->value[EST_MMD2_B] = (SXX + nn) / (nn * nn) + (SYY + mm) / (mm * mm) - 2 * SXY / (nn * mm);
    if (paired) res->value[EST_MMD2_PAIRED] = (SXX + SYY - 2 * (SXY - DXY)) / (nn * (nn - 1));
    /* rounding scale of the kernel sums: also the tie tolerance of the permutation test */
    const double kscale = SXX / (nn * (nn - 1)) + SYY / (mm * (mm - 1)) + 2 * SXY / (nn * mm);
    const double eps_tie = 1e-7 * kscale;

    /* ---- delta-method SEs from the row sums (mixture kernel) ---- */
#define RMIX(arr, i, nr, r) rmix(arr, i, nr, r, S)
    for (int i = 0; i < n; i++) tmp[i] = RMIX(rx, i, 3, 0) / (nn - 1) - RMIX(rx, i, 3, 1) / mm;
    for (int j = 0; j < m; j++) tmp2[j] = RMIX(ry, j, 2, 0) / (mm - 1) - RMIX(ry, j, 2, 1) / nn;
    res->value[EST_MMD2_U_SE] = sqrt(case_var(tmp, n, g) + case_var(tmp2, m, g));
    res->se[EST_MMD2_U] = res->value[EST_MMD2_U_SE];
    if (paired) {
        for (int i = 0; i < n; i++) {
            double di = RMIX(rx, i, 3, 2);
            tmp[i] = (RMIX(rx, i, 3, 0) + RMIX(ry, i, 2, 0) - (RMIX(rx, i, 3, 1) - di) -
                      (RMIX(ry, i, 2, 1) - di)) / (nn - 1);
        }
        res->value[EST_MMD2_PAIRED_SE] = sqrt(case_var(tmp, n, g));
        res->se[EST_MMD2_PAIRED] = res->value[EST_MMD2_PAIRED_SE];
    }

    /* ---- linear-time MMD² ---- */
    if (P >= 2) {
        double sum = 0, ss = 0;
        for (int p = 0; p < P; p++) {
            double hk[4] = {0};
            for (int t = 0; t < 4; t++)
                for (int s = 0; s < S; s++) hk[t] += exp(-(double)dims.gamma[s] * lin[4 * p + t]) / S;
            tmp[p] = hk[0] + hk[1] - hk[2] - hk[3];
            sum += tmp[p];
        }
        double mean = sum / P;
        for (int p = 0; p < P; p++) ss += (tmp[p] - mean) * (tmp[p] - mean);
        double se = sqrt(ss / (P - 1) / P);
        res->value[EST_MMD2_LINEAR] = mean;
        res->se[EST_MMD2_LINEAR] = se;
        res->value[EST_MMD2_LINEAR_Z] = se > 0 ? mean / se : NAN;
    }

    /* ---- energy distance ---- */
    res->value[EST_ENERGY] = 2 * dsum[2] / (nn * mm) - dsum[0] / (nn * (nn - 1)) - dsum[1] / (mm * (mm - 1));

    /* ---- mean-feature cosine distance (raw means = μ + set mean of the centred rows) ---- */
    {
        double xa = 0, ya = 0, dd = 0;
        for (int q = 0; q < d; q++) {
            double xm = muh[q] + Sx[q] / nn, ym = muh[q] + Sy[q] / mm;
            xa += xm * xm; ya += ym * ym;
        }
        xa = sqrt(xa); ya = sqrt(ya);
        for (int q = 0; q < d; q++) {
            double t = (muh[q] + Sx[q] / nn) / xa - (muh[q] + Sy[q] / mm) / ya;
            dd += t * t;
        }
        if (xa > 0 && ya > 0) res->value[EST_MEAN_COS_DIST] = dd / 2;
    }

    /* ---- CKA (paired) ---- */
    if (paired) {
        double *a = tmp, *b = tmp2;   /* set means of the centred rows */
        for (int q = 0; q < d; q++) { a[q] = Sx[q] / nn; b[q] = Sy[q] / nn; }
        size_t dd = (size_t)d * d;
        Cd = dev_alloc(c, sizeof(float) * dd);
        Ch = malloc(sizeof(float) * dd);
        rowbuf = malloc(sizeof(double) * d);
        if (!Ch || !rowbuf) FAIL("mmd: out of host memory for %d x %d CKA products", d, d);
        double F[3];   /* ‖X̂ᵀŶ‖², ‖X̂ᵀX̂‖², ‖ŶᵀŶ‖² */
        for (int t = 0; t < 3; t++) {
            const float* L = t == 2 ? Yc : Xc;   /* dW += doutᵀ x: dout = L, x = Rr */
            const float* Rr = t == 1 ? Xc : Yc;
            dev_zero(c, Cd, sizeof(float) * dd);
            linear_backward(c, NULL, Cd, NULL, L, Rr, Rr, n, d, d);
            copy_d2h(c, Ch, Cd, sizeof(float) * dd);
            F[t] = fro2_corrected(Ch, t == 2 ? b : a, t == 1 ? a : b, n, d, rowbuf);
        }
        res->value[EST_CKA_LINEAR] = F[0] / sqrt(F[1] * F[2]);
        if (n >= 4) {
            double *px = malloc(sizeof(double) * n), *py = malloc(sizeof(double) * n);
            if (!px || !py) { free(px); free(py); FAIL("mmd: out of host memory"); }
            pass2(c, Xc, Yc, n, d, a, b, hx, hy, R, px, py);
            double sp = 0, sq = 0, spq = 0, spp = 0, sqq = 0;
            for (int i = 0; i < n; i++) {
                sp += px[i]; sq += py[i];
                spq += px[i] * py[i]; spp += px[i] * px[i]; sqq += py[i] * py[i];
            }
            free(px); free(py);
            /* HSIC_u = [tr(K̃L̃) + (1ᵀK̃1)(1ᵀL̃1)/((n−1)(n−2)) − 2/(n−2) Σ(K̃1)_i(L̃1)_i]/(n(n−3)) */
            double den = nn * (nn - 3), c1 = 1 / ((nn - 1) * (nn - 2)), c2 = 2 / (nn - 2);
            double hkl = (F[0] - spq + sp * sq * c1 - c2 * spq) / den;
            double hkk = (F[1] - spp + sp * sp * c1 - c2 * spp) / den;
            double hll = (F[2] - sqq + sq * sq * c1 - c2 * sqq) / den;
            if (hkk > 0 && hll > 0) res->value[EST_CKA_LINEAR_U] = hkl / sqrt(hkk * hll);
        }
        if (cka_rbf_ok) {
            /* tr(KHLH) = Σ K∘L − (2/n) Σ (K1)_i (L1)_i + (1ᵀK1)(1ᵀL1)/n² */
            double sk = 0, sl = 0, skl = 0, skk = 0, sll = 0;
            for (int i = 0; i < n; i++) {
                double ki = ckar[2 * i], li = ckar[2 * i + 1];
                sk += ki; sl += li; skl += ki * li; skk += ki * ki; sll += li * li;
            }
            double hkl = cka[0] - 2 / nn * skl + sk * sl / (nn * nn);
            double hkk = cka[1] - 2 / nn * skk + sk * sk / (nn * nn);
            double hll = cka[2] - 2 / nn * sll + sl * sl / (nn * nn);
            if (hkk > 0 && hll > 0) res->value[EST_CKA_RBF] = hkl / sqrt(hkk * hll);
        }
    }

    /* ---- permutation and bootstrap replicates: quadratic forms in kv ----
     * Loops run rows outer, draws inner (kv row p holds all draws contiguously), with one
     * accumulator per draw and statistic: a fixed summation order. */
    if (B > 0) {
        acc = calloc((size_t)7 * B, sizeof(double));
        dmix = malloc(sizeof(double) * n);
        rfull = malloc(sizeof(double) * N);
        if (!acc || !dmix || !rfull) FAIL("mmd: out of host memory for %d draws", B);
        for (int i = 0; i < n; i++) {
            dmix[i] = RMIX(rx, i, 3, 2);                         /* k(x_i, y_i) (paired) */
            rfull[i] = RMIX(rx, i, 3, 0) + RMIX(rx, i, 3, 1);    /* (K̃1)_i */
        }
        for (int j = 0; j < m; j++) rfull[n + j] = RMIX(ry, j, 2, 0) + RMIX(ry, j, 2, 1);
    }
    if (Bp > 0) {
        const double Tot = SXX + SYY + 2 * SXY;   /* pooled Σ K̃, invariant under relabelling */
        const int est[MMD_NREP] = {EST_MMD2_U, EST_MMD2_B, EST_MMD2_PAIRED};
        double *a0 = acc, *a1 = acc + Bp, *a2 = acc + 2 * Bp;
        for (int p = 0; p < N; p++) {
            const double* k0 = kv + (size_t)p * 2 * B;   /* h = 0: columns from X */
            const double* k1 = k0 + B;                    /* h = 1: columns from Y */
            const float* v = Vh + (size_t)p * B;
            if (paired) {
                /* Q(s) = Σ_{i≠j} s_i s_j h_ij = sᵀK̃_XX s + sᵀK̃_YY s − 2 sᵀK_XY s + 2 Σ_i s_i² d_i
                 * (the pooled diagonal zeroing does not remove the pairs (x_i, y_i)) */
                if (p < n) {
                    const float* vy = Vh + (size_t)(n + p) * B;
                    for (int b = 0; b < Bp; b++)
                        a0[b] += v[b] * (k0[b] - k1[b]) + 2.0 * v[b] * vy[b] * dmix[p];
                } else {
                    for (int b = 0; b < Bp; b++) a0[b] += v[b] * (k1[b] - k0[b]);
                }
            } else {
                /* v = indicator of the new X, w = 1 − v: S'_XX = vᵀK̃v, S'_XY = vᵀK̃w,
                 * S'_YY = wᵀK̃w, with K̃w = K̃1 − K̃v per row (K̃1 from rows_x / rows_y: the kv
                 * errors enter per row, not through 1ᵀK̃1 − 2·1ᵀK̃v + vᵀK̃v) */
                for (int b = 0; b < Bp; b++) {
                    double t = k0[b] + k1[b];
                    a0[b] += v[b] * t;
                    a1[b] += v[b] * (rfull[p] - t);
                    a2[b] += (1 - v[b]) * (rfull[p] - t);
                }
            }
        }
        int cnt[MMD_NREP] = {0};
        for (int b = 0; b < Bp; b++) {
            double T[MMD_NREP] = {NAN, NAN, NAN};
            if (paired) {
                /* swaps keep the pooled total and every k(x_i, y_i):
                 * S'_XX + S'_YY = (Tot + Q − 2D)/2, S'_XY = (Tot − Q + 2D)/4 */
                double Q = a0[b];
                double sxxyy = (Tot + Q - 2 * DXY) / 2, sxy = (Tot - Q + 2 * DXY) / 4;
                T[MMD_REP_U] = sxxyy / (nn * (nn - 1)) - 2 * sxy / (nn * nn);
                T[MMD_REP_B] = (sxxyy + 2 * nn) / (nn * nn) - 2 * sxy / (nn * nn);
                T[MMD_REP_PAIRED] = Q / (nn * (nn - 1));
            } else {
                double sxx = a0[b], sxy = a1[b], syy = a2[b];
                T[MMD_REP_U] = sxx / (nn * (nn - 1)) + syy / (mm * (mm - 1)) - 2 * sxy / (nn * mm);
                T[MMD_REP_B] = (sxx + nn) / (nn * nn) + (syy + mm) / (mm * mm) - 2 * sxy / (nn * mm);
            }
            for (int r = 0; r < MMD_NREP; r++) {
                if (draws->perm_T) draws->perm_T[r * Bp + b] = T[r];
                if (T[r] >= res->value[est[r]] - eps_tie) cnt[r]++;
            }
        }
        for (int r = 0; r < MMD_NREP; r++)
            if (r != MMD_REP_PAIRED || paired) res->pvalue[est[r]] = (1.0 + cnt[r]) / (Bp + 1.0);
    }
    if (Bb > 0) {
        const int est[MMD_NREP] = {EST_MMD2_U, EST_MMD2_B, EST_MMD2_PAIRED};
        /* per draw: Σ w kv over the four blocks, Σ w_x², Σ w_y², Σ w_x w_y d (paired) */
        double *sxx = acc, *sxy = acc + Bb, *syx = acc + 2 * Bb, *syy = acc + 3 * Bb,
               *wx2 = acc + 4 * Bb, *wy2 = acc + 5 * Bb, *dw = acc + 6 * Bb;
        memset(acc, 0, sizeof(double) * 7 * Bb);
        for (int p = 0; p < N; p++) {
            const double* k0 = kv + (size_t)p * 2 * B + Bp;
            const double* k1 = k0 + B;
            const float* w = Vh + (size_t)p * B + Bp;
            if (p < n) {
                const float* wy = Vh + (size_t)(n + p) * B + Bp;
                for (int b = 0; b < Bb; b++) {
                    sxx[b] += w[b] * k0[b];
                    sxy[b] += w[b] * k1[b];
                    wx2[b] += (double)w[b] * w[b];
                    if (paired) dw[b] += (double)w[b] * wy[b] * dmix[p];
                }
            } else {
                for (int b = 0; b < Bb; b++) {
                    syx[b] += w[b] * k0[b];
                    syy[b] += w[b] * k1[b];
                    wy2[b] += (double)w[b] * w[b];
                }
            }
        }
        double* T3 = malloc(sizeof(double) * MMD_NREP * Bb);
        if (!T3) FAIL("mmd: out of host memory");
        for (int b = 0; b < Bb; b++) {
            /* U-statistics over pairs of distinct rows: normalised by Σ_{i≠j} w_i w_j */
            T3[MMD_REP_U * Bb + b] =
                sxx[b] / (nn * nn - wx2[b]) + syy[b] / (mm * mm - wy2[b]) - 2 * sxy[b] / (nn * mm);
            T3[MMD_REP_B * Bb + b] =
                (sxx[b] + wx2[b]) / (nn * nn) + (syy[b] + wy2[b]) / (mm * mm) - 2 * sxy[b] / (nn * mm);
            T3[MMD_REP_PAIRED * Bb + b] =
                paired ? (sxx[b] + syy[b] - sxy[b] - syx[b] + 2 * dw[b]) / (nn * nn - wx2[b]) : NAN;
        }
        for (int r = 0; r < MMD_NREP; r++) {
            if (draws->boot_T) memcpy(draws->boot_T + r * Bb, T3 + r * Bb, sizeof(double) * Bb);
            if (r != MMD_REP_PAIRED || paired)
                percentile_ci(T3 + r * Bb, Bb, cfg->ci_level, &res->ci_lo[est[r]], &res->ci_hi[est[r]]);
        }
        free(T3);
    }
#undef RMIX

done:
    if (Xc) dev_free(c, Xc);
    if (Yc) dev_free(c, Yc);
    if (mu) dev_free(c, mu);
    if (Vd) dev_free(c, Vd);
    if (Cd) dev_free(c, Cd);
    if (dsums) dev_free(c, dsums);
    if (ddsum) dev_free(c, ddsum);
    if (drx) dev_free(c, drx);
    if (dry) dev_free(c, dry);
    if (dcka) dev_free(c, dcka);
    if (dckar) dev_free(c, dckar);
    if (dkv) dev_free(c, dkv);
    free(hx); free(hy); free(Vh); free(Ch); free(muh);
    free(Sx); free(Sy); free(nx2); free(ny2); free(lin); free(sums); free(rx); free(ry);
    free(ckar); free(kv); free(tmp); free(tmp2); free(rowbuf);
    free(acc); free(dmix); free(rfull);
    res->seconds = now_s() - t0;
    return rc;
}

int mmd_compute(Ctx* c, const float* X, const float* Y, int n, int m, int d,
                const MmdConfig* cfg, MmdResult* res, char* err, size_t errlen) {
    MmdDraws dr;
    memset(&dr, 0, sizeof dr);
    /* sizes are validated inside; draw only when they make sense */
    int g = cfg->group_size;
    int ok = n >= 2 && m >= 2 && g >= 1 && n % g == 0 && m % g == 0 && (!cfg->paired || n == m);
    float *Vp = NULL, *Vb = NULL;
    if (ok && cfg->permutations > 0) {
        Vp = mmd_draw_permutations(cfg, n, m);
        if (!Vp) { snprintf(err, errlen, "mmd: out of host memory for %d permutations", cfg->permutations); return 1; }
        dr.Vperm = Vp; dr.Bp = cfg->permutations;
    }
    if (ok && cfg->bootstrap > 0) {
        Vb = mmd_draw_bootstrap(cfg, n, m);
        if (!Vb) { free(Vp); snprintf(err, errlen, "mmd: out of host memory for %d bootstrap draws", cfg->bootstrap); return 1; }
        dr.Vboot = Vb; dr.Bb = cfg->bootstrap;
    }
    int rc = mmd_compute_with_draws(c, X, Y, n, m, d, cfg, &dr, res, err, errlen);
    free(Vp); free(Vb);
    return rc;
}
