/* tests/test_mmd.c — engine/mmd.c against the float64 full-matrix oracle
 * (tests/oracle/mmd_oracle.py), plus properties of the estimators and the error paths.
 *
 * Tolerances (each check prints its value as a percent of its threshold):
 *  - kernel estimators (mmd2_u / _b / _paired, per bandwidth, their SEs, mmd2_linear, every
 *    permutation / bootstrap replicate and the CI ends): |Δ| <= tol_k = 1e-7·(mean k_XX +
 *    mean k_YY + 2 mean k_XY). The kernel sums come from fp32 distances (expansion on centred
 *    rows, relative error a few u = 6e-8 per entry, mostly cancelling in the means) summed in
 *    fp32 tiles and combined in fp64; the MMD² is a difference of these means, so its error is
 *    bounded by a small multiple of u times their total. The SEs inherit it: δse ≈ 2·sd(δh1)/√n
 *    with δh1 ~ u·scale. CI ends are linear interpolations of replicates (Lipschitz 1).
 *  - mmd2_linear_z = mean/(sd/√P): first-order perturbation with |δmean|, |δsd| <= tol_k gives
 *    |δz| <= (√P + |z|)·tol_k/sd.
 *  - energy: |Δ| <= 1e-6·(2 mean|x−y| + mean|x−x'| + mean|y−y'|): distances are sqrt of the
 *    fp32 expansion d², whose error relative to d² is ~(|a|²+|b|²)/d²·d·u in the worst case;
 *    a distance carries half of it, i.e. up to ~16u for d = 16 on centred data.
 *  - CKA (linear, unbiased linear, RBF): relative 1e-5. The d x d products are fp32 sgemm sums
 *    of n <= 48 terms (relative error <= n·u ≈ 3e-6 of Σ|x||y|, typically √n·u); the HSIC
 *    terms cancel at most one order of magnitude here.
 *  - mean_cos_dist: relative 1e-5 (the centred set means are exact to ~u; the common fp32 μ
 *    rounding moves the angle by ~u relative, 1 − cos by ~2u; 1e-5 leaves room).
 *  - σ (median, mean rules): relative 1e-5 (the median of fp32 d² is an fp32 d² value or the
 *    mean of two, each within a few u·(|a|²+|b|²)/d² of exact).
 *  - p-values: the C side counts T_b >= T_obs − tol_k, the oracle T_b >= T_obs exactly; a
 *    draw may be decided differently only where the oracle's |T_b − T_obs| <= 2·tol_k. The
 *    test requires p_C = (1 + #C)/(B + 1) and |#C − #oracle| <= #such draws.
 * Properties: row permutation (X, and Y with it when paired) invariance; X <-> Y symmetry of
 * the MMD²s and energy; X vs an independent X' (n = m = 400, d = 32): |mmd2_u| <= 3 SE;
 * identical paired X = Y: mmd2_paired = 0 within tol_k, its p-value 1; 1 vs 2 threads give
 * bit-identical results; bad input returns 1 with a message.
 */
#include "oracle_io.h"
#include "../engine/mmd.h"
#include "../engine/mmd_internal.h"

/* (hi, lo) float pairs -> doubles; returns count, or 0 when absent */
static long load_dd(const StFile* f, const char* name, double* out, long cap) {
    long n = 0;
    float* x = load_t(f, name, &n);
    if (!x) return 0;
    n /= 2;
    for (long i = 0; i < n && i < cap; i++) out[i] = (double)x[2 * i] + (double)x[2 * i + 1];
    free(x);
    return n;
}
static double load_d1(const StFile* f, const char* name) {
    double v = NAN;
    load_dd(f, name, &v, 1);
    return v;
}

static double worst[EST_COUNT + 8];   /* worst percent of tolerance per estimator (and extras) */
enum { W_PERBW = EST_COUNT, W_PERM, W_BOOT, W_CI, W_SIGMA, W_PROP, W_NW };
static const char* wname(int w) {
    static const char* x[] = {"per_bw", "perm replicates", "boot replicates", "ci ends", "bandwidth", "properties"};
    return w < EST_COUNT ? mmd_estimator_name(w) : x[w - EST_COUNT];
}

/* |got − ref| <= tol; both NaN counts as equal; records the worst percent */
static void cmp(const char* what, double got, double ref, double tol, int w) {
    char label[200];
    snprintf(label, sizeof label, "%s (got %.9g ref %.9g)", what, got, ref);
    if (ref != ref || got != got) {
        t_true(label, ref != ref && got != got);
        return;
    }
    double e = fabs(got - ref);
    t_check(label, e, tol);
    if (100 * e / tol > worst[w]) worst[w] = 100 * e / tol;
}
/* quiet variant for long vectors: one check with the worst entry */
static void cmp_vec(const char* what, const double* got, const double* ref, long n, double tol, int w) {
    double e = 0;
    int nanbad = 0;
    for (long i = 0; i < n; i++) {
        if (ref[i] != ref[i] || got[i] != got[i]) { nanbad += (ref[i] == ref[i]) || (got[i] == got[i]); continue; }
        e = fmax(e, fabs(got[i] - ref[i]));
    }
    if (nanbad) { char l[200]; snprintf(l, sizeof l, "%s: NaN pattern matches", what); t_true(l, 0); }
    t_check(what, e, tol);
    if (100 * e / tol > worst[w]) worst[w] = 100 * e / tol;
}

static float* to_dev(Ctx* c, const float* h, long n) {
    float* p = dev_alloc(c, sizeof(float) * (n ? n : 1));
    copy_h2d(c, p, h, sizeof(float) * n);
    return p;
}

typedef struct {
    StFile f;
    int n, m, d, paired, g, Bp, Bb;
    double sigma, ci, scales[MMD_MAX_S];
    int S;
    float *X, *Y, *Vp, *Vb;
} Case;

static int load_case(Case* k, const char* name) {
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/mmd_%s.safetensors", oracle_dir(), name);
    if (st_open(&k->f, path, err, sizeof err)) {
        printf("%s\n", err);
        t_true("oracle file readable (run tests/oracle/mmd_oracle.py)", 0);
        return 1;
    }
    const StTensor* tx = st_find(&k->f, "X");
    const StTensor* ty = st_find(&k->f, "Y");
    const StTensor* tp = st_find(&k->f, "Vperm");
    const StTensor* tb = st_find(&k->f, "Vboot");
    k->n = (int)tx->shape[0]; k->d = (int)tx->shape[1]; k->m = (int)ty->shape[0];
    k->Bp = (int)tp->shape[1]; k->Bb = (int)tb->shape[1];
    k->X = load_t(&k->f, "X", NULL); k->Y = load_t(&k->f, "Y", NULL);
    k->Vp = load_t(&k->f, "Vperm", NULL); k->Vb = load_t(&k->f, "Vboot", NULL);
    long nc = 0;
    float* cfg = load_t(&k->f, "cfg", &nc);
    k->sigma = cfg[0]; k->paired = (int)cfg[1]; k->g = (int)cfg[2]; k->ci = cfg[3]; k->S = (int)cfg[4];
    for (int s = 0; s < k->S; s++) k->scales[s] = cfg[5 + s];
    free(cfg);
    return 0;
}
static void free_case(Case* k) {
    free(k->X); free(k->Y); free(k->Vp); free(k->Vb);
    st_close(&k->f);
}

static void case_cfg(const Case* k, MmdConfig* cfg, int rule) {
    mmd_config_default(cfg);
    cfg->bandwidth_rule = rule;
    cfg->sigma = k->sigma;
    cfg->n_scales = k->S;
    for (int s = 0; s < k->S; s++) cfg->scales[s] = k->scales[s];
    cfg->paired = k->paired;
    cfg->group_size = k->g;
    cfg->ci_level = k->ci;
    cfg->median_max = 4096;
}

/* relative or kernel-scale tolerance per estimator */
static double est_tol(int e, double ref, double tol_k, double tol_e, double tol_z) {
    switch (e) {
    case EST_MMD2_LINEAR_Z: return tol_z;
    case EST_ENERGY: return tol_e;
    case EST_CKA_LINEAR: case EST_CKA_LINEAR_U: case EST_CKA_RBF: return 1e-5 * fabs(ref);
    case EST_MEAN_COS_DIST: return 1e-5 * fabs(ref) + 1e-30;
    default: return tol_k;
    }
}

static void run_case(Ctx* c, const char* name) {
    Case k;
    if (load_case(&k, name)) return;
    printf("--- case %s: n=%d m=%d d=%d paired=%d group=%d Bp=%d Bb=%d sigma=%.7g\n", name, k.n,
           k.m, k.d, k.paired, k.g, k.Bp, k.Bb, k.sigma);
    double val[EST_COUNT], se[EST_COUNT], pv[EST_COUNT], lo[EST_COUNT], hi[EST_COUNT], pbw[3 * MMD_MAX_S];
    load_dd(&k.f, "exp.value", val, EST_COUNT);
    load_dd(&k.f, "exp.se", se, EST_COUNT);
    load_dd(&k.f, "exp.pvalue", pv, EST_COUNT);
    load_dd(&k.f, "exp.ci_lo", lo, EST_COUNT);
    load_dd(&k.f, "exp.ci_hi", hi, EST_COUNT);
    load_dd(&k.f, "exp.per_bw", pbw, 3 * MMD_MAX_S);
    double* permT = t_dnew(3L * k.Bp), *bootT = t_dnew(3L * k.Bb);
    double* gpermT = t_dnew(3L * k.Bp), *gbootT = t_dnew(3L * k.Bb);
    load_dd(&k.f, "exp.perm_T", permT, 3L * k.Bp);
    load_dd(&k.f, "exp.boot_T", bootT, 3L * k.Bb);
    const double scale = load_d1(&k.f, "exp.scale"), escale = load_d1(&k.f, "exp.escale");
    const double lsd = load_d1(&k.f, "exp.linear_sd"), lP = load_d1(&k.f, "exp.linear_P");
    const double tol_k = 1e-7 * scale, tol_e = 1e-6 * escale;
    const double tol_z = lsd > 0 ? (sqrt(lP) + fabs(val[EST_MMD2_LINEAR_Z])) * tol_k / lsd : 1;

    float* dX = to_dev(c, k.X, (long)k.n * k.d);
    float* dY = to_dev(c, k.Y, (long)k.m * k.d);
    MmdConfig cfg;
    case_cfg(&k, &cfg, MMD_BW_FIXED);
    MmdDraws dr = {k.Vp, k.Bp, k.Vb, k.Bb, gpermT, gbootT};
    MmdResult r;
    char err[256], lab[200];
    int rc = mmd_compute_with_draws(c, dX, dY, k.n, k.m, k.d, &cfg, &dr, &r, err, sizeof err);
    if (rc) printf("error: %s\n", err);
    t_true("mmd_compute_with_draws returns 0", rc == 0);

    for (int e = 0; e < EST_COUNT; e++) {
        snprintf(lab, sizeof lab, "%s %s", name, mmd_estimator_name(e));
        cmp(lab, r.value[e], val[e], est_tol(e, val[e], tol_k, tol_e, tol_z), e);
    }
    for (int e = 0; e < EST_COUNT; e++) {
        if (se[e] != se[e] && r.se[e] != r.se[e]) continue;
        snprintf(lab, sizeof lab, "%s se[%s]", name, mmd_estimator_name(e));
        cmp(lab, r.se[e], se[e], tol_k, e);
    }
    const int est3[3] = {EST_MMD2_U, EST_MMD2_B, EST_MMD2_PAIRED};
    for (int q = 0; q < 3; q++) {
        double got[MMD_MAX_S];
        for (int s = 0; s < k.S; s++) got[s] = r.per_bw[est3[q]][s];
        snprintf(lab, sizeof lab, "%s per_bw[%s] (max |Δ| over bandwidths)", name, mmd_estimator_name(est3[q]));
        cmp_vec(lab, got, pbw + q * k.S, k.S, tol_k, W_PERBW);
    }
    for (int q = 0; q < 3; q++) {
        snprintf(lab, sizeof lab, "%s permutation replicates %s (max |Δ|)", name, mmd_estimator_name(est3[q]));
        cmp_vec(lab, gpermT + (long)q * k.Bp, permT + (long)q * k.Bp, k.Bp, tol_k, W_PERM);
        snprintf(lab, sizeof lab, "%s bootstrap replicates %s (max |Δ|)", name, mmd_estimator_name(est3[q]));
        cmp_vec(lab, gbootT + (long)q * k.Bb, bootT + (long)q * k.Bb, k.Bb, tol_k, W_BOOT);
        snprintf(lab, sizeof lab, "%s ci_lo[%s]", name, mmd_estimator_name(est3[q]));
        cmp(lab, r.ci_lo[est3[q]], lo[est3[q]], tol_k, W_CI);
        snprintf(lab, sizeof lab, "%s ci_hi[%s]", name, mmd_estimator_name(est3[q]));
        cmp(lab, r.ci_hi[est3[q]], hi[est3[q]], tol_k, W_CI);
        /* p-values: counts, equal up to draws within 2 tol_k of T_obs */
        if (pv[est3[q]] != pv[est3[q]]) {
            snprintf(lab, sizeof lab, "%s pvalue[%s] is NaN", name, mmd_estimator_name(est3[q]));
            t_true(lab, r.pvalue[est3[q]] != r.pvalue[est3[q]]);
            continue;
        }
        int cC = 0, cO = 0, amb = 0;
        for (int b = 0; b < k.Bp; b++) {
            double To = permT[(long)q * k.Bp + b], Tc = gpermT[(long)q * k.Bp + b];
            cC += Tc >= r.value[est3[q]] - tol_k;
            cO += To >= val[est3[q]] - 1e-12 * scale;
            amb += fabs(To - val[est3[q]]) <= 2 * tol_k;
        }
        snprintf(lab, sizeof lab, "%s pvalue[%s] = %.4f (oracle %.4f, %d draws within 2 tol of T_obs)",
                 name, mmd_estimator_name(est3[q]), r.pvalue[est3[q]], pv[est3[q]], amb);
        /* the oracle's p is stored as (hi, lo): compare its count, rounded */
        int cP = (int)lround(pv[est3[q]] * (k.Bp + 1.0)) - 1;
        t_true(lab, r.pvalue[est3[q]] == (1.0 + cC) / (k.Bp + 1.0) && cP == cO && abs(cC - cO) <= amb);
    }
    /* the σ rules: median (full sample), mean; cka_rbf with each set's own rule */
    for (int rule = MMD_BW_MEDIAN; rule <= MMD_BW_MEAN; rule++) {
        MmdConfig c2;
        case_cfg(&k, &c2, rule);
        MmdResult r2;
        rc = mmd_compute(c, dX, dY, k.n, k.m, k.d, &c2, &r2, err, sizeof err);
        double sref = load_d1(&k.f, rule == MMD_BW_MEDIAN ? "exp.sigma_median" : "exp.sigma_mean");
        snprintf(lab, sizeof lab, "%s sigma_base %s rule", name, rule == MMD_BW_MEDIAN ? "median" : "mean");
        cmp(lab, r2.sigma_base, sref, 1e-5 * sref, W_SIGMA);
        int used = -1;
        double sb = mmd_bandwidth(c, dX, dY, k.n, k.m, k.d, &c2, &used);
        snprintf(lab, sizeof lab, "%s mmd_bandwidth() %s rule", name, rule == MMD_BW_MEDIAN ? "median" : "mean");
        cmp(lab, sb, sref, 1e-5 * sref, W_SIGMA);
        t_true("bandwidth used_n = n + m", used == k.n + k.m && r2.median_n == k.n + k.m);
        if (k.paired) {
            double cref = load_d1(&k.f, rule == MMD_BW_MEDIAN ? "exp.cka_rbf_median" : "exp.cka_rbf_mean");
            snprintf(lab, sizeof lab, "%s cka_rbf with per-set %s bandwidths", name, rule == MMD_BW_MEDIAN ? "median" : "mean");
            cmp(lab, r2.value[EST_CKA_RBF], cref, 1e-5 * fabs(cref), EST_CKA_RBF);
        }
    }
    {
        float* sf = load_t(&k.f, "exp.sub", NULL);   /* (cap, seed) as plain floats */
        if (sf) {
            MmdConfig c3;
            case_cfg(&k, &c3, MMD_BW_MEDIAN);
            c3.median_max = (int)sf[0];
            c3.seed = (uint64_t)sf[1];
            int used = 0;
            double sb = mmd_bandwidth(c, dX, dY, k.n, k.m, k.d, &c3, &used);
            double sref = load_d1(&k.f, "exp.sigma_median_sub");
            snprintf(lab, sizeof lab, "%s median over a seeded subsample of %d rows", name, c3.median_max);
            cmp(lab, sb, sref, 1e-5 * sref, W_SIGMA);
            t_true("subsample used_n = median_max", used == c3.median_max);
            free(sf);
        }
    }
    dev_free(c, dX); dev_free(c, dY);
    free(permT); free(bootT); free(gpermT); free(gbootT);
    free_case(&k);
}

/* ---- properties ------------------------------------------------------------------------ */
static int compute_h(Ctx* c, const float* X, const float* Y, int n, int m, int d,
                     const MmdConfig* cfg, MmdResult* r, char* err) {
    float* dX = to_dev(c, X, (long)n * d);
    float* dY = to_dev(c, Y, (long)m * d);
    int rc = mmd_compute(c, dX, dY, n, m, d, cfg, r, err, 256);
    dev_free(c, dX); dev_free(c, dY);
    return rc;
}

static void props_case(Ctx* c, const char* name) {
    Case k;
    if (load_case(&k, name)) return;
    MmdConfig cfg;
    case_cfg(&k, &cfg, MMD_BW_FIXED);
    const double scale = load_d1(&k.f, "exp.scale"), escale = load_d1(&k.f, "exp.escale");
    const double tol_k = 1e-7 * scale, tol_e = 1e-6 * escale;
    MmdResult r0, r1, r2;
    char err[256], lab[200];
    compute_h(c, k.X, k.Y, k.n, k.m, k.d, &cfg, &r0, err);
    /* permute rows: cases (g rows) move together; Y follows X when paired */
    int nc = k.n / k.g, mc = k.m / k.g;
    int* px = malloc(sizeof(int) * nc);
    int* py = malloc(sizeof(int) * mc);
    TRng rng = {12345};
    for (int i = 0; i < nc; i++) px[i] = i;
    for (int i = 0; i < mc; i++) py[i] = i;
    for (int i = nc - 1; i > 0; i--) { int j = trng_int(&rng, 0, i), t = px[i]; px[i] = px[j]; px[j] = t; }
    for (int i = mc - 1; i > 0; i--) { int j = trng_int(&rng, 0, i), t = py[i]; py[i] = py[j]; py[j] = t; }
    if (k.paired) memcpy(py, px, sizeof(int) * nc);
    float* Xp = t_fnew((long)k.n * k.d), *Yp = t_fnew((long)k.m * k.d);
    for (int i = 0; i < k.n; i++)
        memcpy(Xp + (long)i * k.d, k.X + ((long)px[i / k.g] * k.g + i % k.g) * k.d, sizeof(float) * k.d);
    for (int i = 0; i < k.m; i++)
        memcpy(Yp + (long)i * k.d, k.Y + ((long)py[i / k.g] * k.g + i % k.g) * k.d, sizeof(float) * k.d);
    compute_h(c, Xp, Yp, k.n, k.m, k.d, &cfg, &r1, err);
    for (int e = 0; e < EST_COUNT; e++) {
        if (e == EST_MMD2_LINEAR || e == EST_MMD2_LINEAR_Z) continue;   /* pairs rows by position */
        snprintf(lab, sizeof lab, "%s rows permuted: %s unchanged", name, mmd_estimator_name(e));
        cmp(lab, r1.value[e], r0.value[e], est_tol(e, r0.value[e], tol_k, tol_e, 1), W_PROP);
    }
    /* swap X and Y */
    compute_h(c, k.Y, k.X, k.m, k.n, k.d, &cfg, &r2, err);
    const int sym[] = {EST_MMD2_U, EST_MMD2_B, EST_MMD2_PAIRED, EST_ENERGY, EST_MMD2_U_SE,
                       EST_MMD2_PAIRED_SE, EST_CKA_LINEAR, EST_CKA_LINEAR_U, EST_CKA_RBF, EST_MEAN_COS_DIST};
    for (unsigned q = 0; q < sizeof sym / sizeof sym[0]; q++) {
        int e = sym[q];
        snprintf(lab, sizeof lab, "%s X <-> Y: %s unchanged", name, mmd_estimator_name(e));
        cmp(lab, r2.value[e], r0.value[e], est_tol(e, r0.value[e], tol_k, tol_e, 1), W_PROP);
    }
    free(px); free(py); free(Xp); free(Yp);
    free_case(&k);
}

static void test_null(Ctx* c) {
    const int n = 400, d = 32;
    TRng rng = {777};
    float* X = t_fnew((long)n * d), *Y = t_fnew((long)n * d);
    t_frandn(&rng, X, (long)n * d, 1.0);
    t_frandn(&rng, Y, (long)n * d, 1.0);
    MmdConfig cfg;
    mmd_config_default(&cfg);
    MmdResult r;
    char err[256];
    int rc = compute_h(c, X, Y, n, n, d, &cfg, &r, err);
    t_true("null case computes", rc == 0);
    printf("null: mmd2_u = %.3e, se = %.3e, sigma = %.4f\n", r.value[EST_MMD2_U], r.value[EST_MMD2_U_SE], r.sigma_base);
    t_check("null: |mmd2_u| / mmd2_u_se (X vs independent X', n = m = 400, d = 32)",
            fabs(r.value[EST_MMD2_U]) / r.value[EST_MMD2_U_SE], 3.0);
    free(X); free(Y);
}

static void test_identical(Ctx* c) {
    Case k;
    if (load_case(&k, "identical")) return;
    MmdConfig cfg;
    case_cfg(&k, &cfg, MMD_BW_MEDIAN);
    cfg.permutations = 199;
    cfg.bootstrap = 50;
    cfg.seed = 3;
    MmdResult r;
    char err[256];
    compute_h(c, k.X, k.X, k.n, k.n, k.d, &cfg, &r, err);
    double tol_k = 1e-7 * load_d1(&k.f, "exp.scale");
    t_check("identical paired X = Y: |mmd2_paired|", fabs(r.value[EST_MMD2_PAIRED]), tol_k);
    t_true("identical paired X = Y: p-value of mmd2_paired is 1", r.pvalue[EST_MMD2_PAIRED] == 1.0);
    free_case(&k);
}

static void test_threads(void) {
    Case k;
    if (load_case(&k, "tokens")) return;
    MmdConfig cfg;
    case_cfg(&k, &cfg, MMD_BW_MEDIAN);
    cfg.permutations = 100;
    cfg.bootstrap = 100;
    cfg.seed = 11;
    MmdResult r[2];
    char err[256];
    for (int t = 0; t < 2; t++) {
        Ctx c;
        ctx_open(&c, "cpu", t + 1, 1);
        t_set_threads(t + 1);
        compute_h(&c, k.X, k.Y, k.n, k.m, k.d, &cfg, &r[t], err);
        ctx_close(&c);
    }
    int same = !memcmp(r[0].value, r[1].value, sizeof r[0].value) &&
               !memcmp(r[0].se, r[1].se, sizeof r[0].se) &&
               !memcmp(r[0].ci_lo, r[1].ci_lo, sizeof r[0].ci_lo) &&
               !memcmp(r[0].ci_hi, r[1].ci_hi, sizeof r[0].ci_hi) &&
               !memcmp(r[0].pvalue, r[1].pvalue, sizeof r[0].pvalue) &&
               !memcmp(r[0].per_bw, r[1].per_bw, sizeof r[0].per_bw) &&
               !memcmp(r[0].sigmas, r[1].sigmas, sizeof r[0].sigmas);
    t_true("1 vs 2 threads: bit-identical results (value, se, ci, pvalue, per_bw, sigmas)", same);
    free_case(&k);
}

/* the draws mmd_compute makes are valid and are what it uses */
static void test_draws(Ctx* c) {
    Case k;
    if (load_case(&k, "tokens_unpaired")) return;
    for (int paired = 0; paired <= 1; paired++) {
        MmdConfig cfg;
        case_cfg(&k, &cfg, MMD_BW_FIXED);
        cfg.paired = paired;
        int m = paired ? k.n : k.m, N = k.n + m, g = k.g, B = 40;
        cfg.permutations = B; cfg.bootstrap = B; cfg.seed = 99;
        float* Vp = mmd_draw_permutations(&cfg, k.n, m);
        float* Vb = mmd_draw_bootstrap(&cfg, k.n, m);
        int ok = 1;
        for (int b = 0; b < B; b++) {
            double ones = 0, sx = 0, sy = 0;
            for (int p = 0; p < N; p++) {
                float v = Vp[(long)p * B + b], w = Vb[(long)p * B + b];
                float v0 = Vp[(long)(p / g * g) * B + b], w0 = Vb[(long)(p / g * g) * B + b];
                ok &= v == v0 && w == w0;   /* whole cases */
                if (paired) ok &= (v == 1 || v == -1) && (p >= k.n || (v == Vp[(long)(p + k.n) * B + b] && w == Vb[(long)(p + k.n) * B + b]));
                else ok &= v == 0 || v == 1;
                ones += v == 1;
                if (p < k.n) sx += w; else sy += w;
            }
            if (!paired) ok &= ones == k.n;
            ok &= sx == k.n && sy == m;
        }
        t_true(paired ? "paired draws: ±1 per case, X and Y share; counts sum to n"
                      : "unpaired draws: n relabelled rows in whole cases; counts sum per set", ok);
        /* mmd_compute == mmd_compute_with_draws on these draws */
        float* Yuse = paired ? k.X : k.Y;
        float* dX = to_dev(c, k.X, (long)k.n * k.d), *dY = to_dev(c, Yuse, (long)m * k.d);
        MmdResult r1, r2;
        char err[256];
        MmdDraws dr = {Vp, B, Vb, B, NULL, NULL};
        mmd_compute(c, dX, dY, k.n, m, k.d, &cfg, &r1, err, sizeof err);
        mmd_compute_with_draws(c, dX, dY, k.n, m, k.d, &cfg, &dr, &r2, err, sizeof err);
        t_true("mmd_compute uses mmd_draw_* (identical p-values and CIs)",
               !memcmp(r1.pvalue, r2.pvalue, sizeof r1.pvalue) && !memcmp(r1.ci_lo, r2.ci_lo, sizeof r1.ci_lo) &&
               !memcmp(r1.ci_hi, r2.ci_hi, sizeof r1.ci_hi));
        dev_free(c, dX); dev_free(c, dY);
        free(Vp); free(Vb);
    }
    free_case(&k);
}

static void test_errors(Ctx* c) {
    const int d = 4;
    float X[8 * 4], Y[8 * 4];
    TRng rng = {5};
    t_frandn(&rng, X, 32, 1.0);
    t_frandn(&rng, Y, 32, 1.0);
    MmdConfig cfg;
    mmd_config_default(&cfg);
    MmdResult r;
    char err[256];
    int rc = compute_h(c, X, Y, 1, 8, d, &cfg, &r, err);
    printf("  n = 1: %s\n", err);
    t_true("n = 1 is rejected with a message", rc == 1 && strstr(err, "at least 2"));
    cfg.paired = 1;
    rc = compute_h(c, X, Y, 8, 6, d, &cfg, &r, err);
    printf("  paired 8 vs 6: %s\n", err);
    t_true("paired n != m is rejected with a message", rc == 1 && strstr(err, "n == m"));
    cfg.paired = 0;
    cfg.group_size = 3;
    rc = compute_h(c, X, Y, 8, 6, d, &cfg, &r, err);
    printf("  group 3: %s\n", err);
    t_true("group_size not dividing n is rejected", rc == 1 && strstr(err, "group_size"));
    cfg.group_size = 1;
    Y[5 * d + 2] = NAN;
    rc = compute_h(c, X, Y, 8, 8, d, &cfg, &r, err);
    printf("  NaN in Y row 5: %s\n", err);
    t_true("a NaN row is rejected, naming row 5 of Y", rc == 1 && strstr(err, "row 5 of Y"));
    Y[5 * d + 2] = 0;
    X[3 * d] = INFINITY;
    rc = compute_h(c, X, Y, 8, 8, d, &cfg, &r, err);
    printf("  Inf in X row 3: %s\n", err);
    t_true("an Inf row is rejected, naming row 3 of X", rc == 1 && strstr(err, "row 3 of X"));
    X[3 * d] = 0;
    for (int i = 0; i < 8 * d; i++) X[i] = Y[i] = 1.0f;
    rc = compute_h(c, X, Y, 8, 8, d, &cfg, &r, err);
    printf("  all rows identical: %s\n", err);
    t_true("zero median bandwidth is rejected", rc == 1 && strstr(err, "bandwidth"));
    int names = 1;
    for (int e = 0; e < EST_COUNT; e++) names &= mmd_estimator_from_name(mmd_estimator_name(e)) == e;
    t_true("estimator names round-trip; unknown -> -1", names && mmd_estimator_from_name("mmd3") == -1);
}

int main(void) {
    Ctx c;
    ctx_open(&c, "cpu", 0, 1);
    const char* cases[] = {"paired", "unpaired", "identical", "tokens", "tokens_unpaired"};
    for (int i = 0; i < 5; i++) run_case(&c, cases[i]);
    printf("--- properties\n");
    props_case(&c, "paired");
    props_case(&c, "unpaired");
    props_case(&c, "tokens");
    test_null(&c);
    test_identical(&c);
    test_draws(&c);
    test_errors(&c);
    ctx_close(&c);
    test_threads();
    printf("--- worst percent of tolerance\n");
    for (int w = 0; w < W_NW; w++) printf("  %-18s %7.2f%%\n", wname(w), worst[w]);
    return t_summary();
}
