/* engine/report_stats.h — the statistics of `vita report`: Pearson r, Spearman ρ (Pearson of
 * average ranks, so ties get the mean of the ranks they span), and for a set of observations
 * clustered by task and replicated by seed: percentile CIs from a two-level cluster bootstrap
 * and two-sided permutation p-values.
 *
 * Values within 1e-12 of the largest |value| count as ties in the ranks.
 * Observations are runs: (cluster = task, unit = seed within the task, group = arm, x, y).
 * The statistic is computed over POINTS: either the runs themselves (by_group = 0) or, with
 * by_group = 1, one point per (group, cluster) holding the mean x and mean y of its runs.
 *
 * Bootstrap replicate: draw as many clusters as there are, with replacement; inside each drawn
 * cluster draw as many units (seeds) as it has, with replacement; take every run of each drawn
 * (cluster, unit), a cluster drawn twice contributing two separate copies (with by_group = 1
 * each copy forms its own group means). Replicates whose r or ρ is undefined (fewer than 3
 * points, or a constant x or y) are skipped for that statistic and counted.
 * CI = [q(0.025), q(0.975)] of the valid replicates, q the linear-interpolation quantile
 * (numpy's default, type 7).
 * Permutation: y is shuffled over the observed points (Fisher–Yates); p = (1 + #{|r_b| ≥
 * |r_obs|}) / (B + 1), two-sided.
 * Everything is seeded: the same seed gives the same CIs and p-values bit for bit. */
#ifndef VITA_REPORT_STATS_H
#define VITA_REPORT_STATS_H

#include <stdint.h>

/* NaN when n < 2 or x or y is constant; NaN inputs are not allowed (callers drop them) */
double rs_pearson(const double* x, const double* y, int n);
double rs_spearman(const double* x, const double* y, int n);
/* average ranks (1-based) of x[0..n) into r */
void rs_ranks(const double* x, int n, double* r);
/* mean and sample SD (n − 1; NaN when n < 2) of the non-NaN entries; returns their count */
int rs_mean_sd(const double* x, int n, double* mean, double* sd);

typedef struct {
    int cluster, unit, group;
    double x, y;
} RsObs;

typedef struct {
    int n_points;                      /* observed points (runs or group means) */
    double r, r_lo, r_hi, r_p;         /* Pearson, CI, permutation p */
    double rho, rho_lo, rho_hi, rho_p; /* Spearman */
    int n_boot_r, n_boot_rho;          /* valid bootstrap replicates */
} RsCorr;

/* obs with a NaN x or y must be left out by the caller. n_boot / n_perm = 0 leave the CIs /
 * p-values NaN. */
void rs_correlate(const RsObs* obs, int n, int by_group, uint64_t seed, int n_boot, int n_perm,
                  RsCorr* out);

#endif
