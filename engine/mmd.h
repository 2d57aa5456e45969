/* engine/mmd.h — the measuring instrument: MMD² (two-sample and paired), energy distance,
 * CKA (linear, unbiased-HSIC linear, RBF), mean-feature cosine distance, with standard
 * errors, permutation p-values and case-level bootstrap CIs (SPEC.md §6, PAPER.md "MMD facts").
 *
 * Inputs are device pointers (features straight from the encoder); everything heavy runs
 * through the ops (mmd_stats, mmd_center, sqdist_forward, linear_forward); the host only
 * assembles estimators from the O(N·S + N·B) statistics, in double.
 *
 * Kernel: k(a,b) = (1/S) Σ_s exp(-|a-b|^2 / (2 σ_s^2)), σ_s = scale_s · σ_base.
 * σ_base: fixed, or `median` (σ² = median_{i<j} |z_i - z_j|² / 2 over a seeded subsample of at
 * most median_max pooled points, exact), or `mean` (σ² = mean pairwise |z_i - z_j|² / 2 in
 * closed form: 2N/(N-1)·(mean|z|² - |z̄|²) / 2, O(N·d)).
 */
#ifndef VITA_MMD_H
#define VITA_MMD_H

#include "../kernels/ops.h"

enum {
    EST_MMD2_U, EST_MMD2_B, EST_MMD2_PAIRED, EST_MMD2_PAIRED_SE, EST_MMD2_U_SE,
    EST_MMD2_LINEAR, EST_MMD2_LINEAR_Z, EST_ENERGY,
    EST_CKA_LINEAR, EST_CKA_LINEAR_U, EST_CKA_RBF, EST_MEAN_COS_DIST,
    EST_COUNT
};
/* names as in SPEC.md §6 ("mmd2_u", "mmd2_paired_se", "cka_linear", ...) */
const char* mmd_estimator_name(int e);
int mmd_estimator_from_name(const char* name);   /* -1 if unknown */

enum { MMD_BW_FIXED = 0, MMD_BW_MEDIAN = 1, MMD_BW_MEAN = 2 };

typedef struct {
    int bandwidth_rule;        /* MMD_BW_* */
    double sigma;              /* σ_base when MMD_BW_FIXED */
    int n_scales;
    double scales[MMD_MAX_S];  /* default {0.5, 1, 2} */
    int paired;                /* X[i], Y[i] are the same case (before / after) */
    int permutations;          /* B for the permutation test, 0 = none */
    int bootstrap;             /* B for case-level bootstrap CIs, 0 = none */
    double ci_level;           /* 0.95 */
    uint64_t seed;
    int group_size;            /* rows per case (token features: T rows per image); 1 = pooled */
    int median_max;            /* median subsample cap, 4096 */
} MmdConfig;

void mmd_config_default(MmdConfig* cfg);

typedef struct {
    int n, m, d;
    double value[EST_COUNT];   /* NaN where not applicable (e.g. paired estimators, n != m) */
    double se[EST_COUNT];      /* standard error where defined, else NaN */
    double ci_lo[EST_COUNT], ci_hi[EST_COUNT];   /* bootstrap percentile CI, NaN without */
    double pvalue[EST_COUNT];  /* permutation p = (1 + #{T_b >= T_obs}) / (B + 1), NaN without */
    double per_bw[EST_COUNT][MMD_MAX_S];  /* mmd2_u / mmd2_b / mmd2_paired per bandwidth */
    int S;
    double sigma_base, sigmas[MMD_MAX_S];
    int rule, median_n;        /* rule used, subsample size for the median */
    double seconds;
} MmdResult;

/* bandwidth σ_base of the rule over the pooled rows (device X [n,d], Y [m,d]) */
double mmd_bandwidth(Ctx* c, const float* X, const float* Y, int n, int m, int d,
                     const MmdConfig* cfg, int* used_n);
/* all estimators; returns 0, or 1 with a one-line reason in err (bad sizes, paired n != m,
 * non-finite input, group_size not dividing n) */
int mmd_compute(Ctx* c, const float* X, const float* Y, int n, int m, int d,
                const MmdConfig* cfg, MmdResult* res, char* err, size_t errlen);

#endif
