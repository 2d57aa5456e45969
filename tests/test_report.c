/* tests/test_report.c — the statistics of `vita report` (engine/report_stats.c) on inputs with
 * known answers: average ranks of ties, Pearson / Spearman closed forms, undefined cases, the
 * permutation p-value's expected size, bootstrap CIs that must collapse, group means, and
 * seeded reproducibility. (tests/test_report.py checks the whole command on a fixture sweep.) */
#include "../engine/report_stats.h"
#include "testing.h"

int main(void) {
    /* ranks: ties get the mean of the ranks they span */
    double x[6] = {3, 1, 3, 2, 5, 3}, r[6];
    rs_ranks(x, 6, r);
    double want[6] = {4, 1, 4, 2, 6, 4};   /* the 3s span ranks 3, 4, 5 */
    double e = 0;
    for (int i = 0; i < 6; i++) e += fabs(r[i] - want[i]);
    t_check("average ranks of ties (sum |error|, exact)", e, 0);

    /* Pearson closed form: x = 1..4, y = (4, 2, 3, 1): Sxy = -4, Sxx = 5, Syy = 5 -> -0.8;
     * Spearman equals it (the data are their own ranks). Rounding of a few terms: 1e-15. */
    double a[4] = {1, 2, 3, 4}, b[4] = {4, 2, 3, 1};
    t_check("pearson closed form -0.8 (|error|)", fabs(rs_pearson(a, b, 4) + 0.8), 1e-15);
    t_check("spearman of ranks = pearson (|error|)", fabs(rs_spearman(a, b, 4) + 0.8), 1e-15);
    /* Spearman is invariant under monotone maps: exp(x), y^3 */
    double ea[4], b3[4];
    for (int i = 0; i < 4; i++) { ea[i] = exp(a[i]); b3[i] = b[i] * b[i] * b[i]; }
    t_check("spearman invariant under monotone maps (|error|)", fabs(rs_spearman(ea, b3, 4) + 0.8), 1e-15);
    double c[4] = {2, 2, 2, 2};
    t_true("pearson of a constant is NaN", isnan(rs_pearson(a, c, 4)));
    t_true("pearson of one point is NaN", isnan(rs_pearson(a, b, 1)));
    double m, sd;
    rs_mean_sd((double[]){1, NAN, 3}, 3, &m, &sd);
    t_check("mean/sd skip NaN: mean 2, sd sqrt(2) (|error|)", fabs(m - 2) + fabs(sd - sqrt(2.0)), 1e-15);

    /* permutation p: 5 points on a line, |r| = 1; of the 120 orderings only the identity and
     * the reversal reach |r_b| = 1, so E[count] = B/60 and p ~ (1 + Binomial(B, 1/60))/(B + 1).
     * B = 6000: mean count 100, SD sqrt(6000 (1/60)(59/60)) = 9.9; the check allows 5 SD. */
    RsObs line[5];
    for (int i = 0; i < 5; i++) line[i] = (RsObs){0, i, i, (double)i, 2.0 * i + 1};
    RsCorr k;
    rs_correlate(line, 5, 0, 7, 0, 6000, &k);
    double count = k.r_p * 6001.0 - 1.0;
    t_check("perm count of |r_b| >= 1 vs B/60 (|dev| in SD units)", fabs(count - 100.0) / 9.9, 5.0);
    t_true("no bootstrap asked: CI NaN", isnan(k.r_lo) && isnan(k.r_hi));

    /* bootstrap: points on a line in every replicate -> every r = 1 (CI [1, 1]) */
    rs_correlate(line, 5, 0, 7, 500, 0, &k);
    t_check("bootstrap CI of an exact line collapses to 1 (|lo - 1| + |hi - 1|)",
            fabs(k.r_lo - 1) + fabs(k.r_hi - 1), 1e-12);
    /* skipped replicates: task 0 holds arms 0 and 1, task 1 arm 2 (one seed each); a draw of
     * task 1 twice (probability 1/4) has 2 points and no r. Valid ~ Binomial(B, 3/4): B = 2000,
     * mean 1500, SD sqrt(2000 * 3/16) = 19.4; the check allows 5 SD. */
    RsObs three[3] = {{0, 0, 0, 1, 1}, {0, 0, 1, 2, 3}, {1, 0, 2, 3, 2}};
    rs_correlate(three, 3, 1, 5, 2000, 0, &k);
    t_check("bootstrap draws with < 3 points skipped (|valid - 1500| in SD units)",
            fabs(k.n_boot_r - 1500.0) / 19.4, 5.0);

    /* group means: two clusters (tasks) x 2 groups x 3 units; group means are (1, 10), (2, 20),
     * (3, 30), (4, 40) -> r = 1 over 4 points although the runs scatter */
    RsObs g[12];
    int q = 0;
    for (int cl = 0; cl < 2; cl++)
        for (int gr = 0; gr < 2; gr++)
            for (int u = 0; u < 3; u++) {
                double mx = 1 + 2 * cl + gr, off = (u - 1) * 0.3;
                g[q++] = (RsObs){cl, u, gr, mx + off, 10 * mx - 40 * off};
            }
    rs_correlate(g, 12, 1, 3, 0, 0, &k);
    t_check("group means: 4 points", fabs(k.n_points - 4.0), 0);
    t_check("group means: r = 1 (|error|)", fabs(k.r - 1), 1e-12);
    rs_correlate(g, 12, 0, 3, 0, 0, &k);
    t_true("run level: 12 points and r < 1", k.n_points == 12 && k.r < 0.99);

    /* seeded: identical for a seed, different for another */
    RsCorr k1, k2, k3;
    rs_correlate(g, 12, 0, 11, 300, 300, &k1);
    rs_correlate(g, 12, 0, 11, 300, 300, &k2);
    rs_correlate(g, 12, 0, 12, 300, 300, &k3);
    t_true("same seed: identical CI and p", k1.r_lo == k2.r_lo && k1.r_hi == k2.r_hi && k1.r_p == k2.r_p &&
                                                k1.rho_lo == k2.rho_lo);
    t_true("other seed: CI or p differ", k1.r_lo != k3.r_lo || k1.r_hi != k3.r_hi || k1.r_p != k3.r_p);
    return t_summary();
}
