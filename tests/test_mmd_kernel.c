/* tests/test_mmd_kernel.c — the fused Gaussian-kernel statistics of the CPU backend
 * (mmd_stats, mmd_center, sqdist_forward) against naive float64 references computed from the
 * definitions in kernels/ops.h, on shapes that cut tiles (MT = 256) at odd places.
 *
 * Tolerance (the rule for estimators): a scalar sum of T kernel values may be off by
 *     1e-7 · (mean k_XX + mean k_YY + 2 mean k_XY) · T
 * i.e. 1e-7 relative to the kernel scale per term (per bandwidth s); rows use the same rule
 * with T = terms of that row, kv with T·max|V| (kernel = kmix, scale averaged over s), dsum
 * with the distance scale (mean d_XX + mean d_YY + 2 mean d_XY), RBF-CKA with the scale
 * mean Kx + mean Ly. Why this is achievable: the reference uses the same fp32 inputs with
 * exact (fp64) distances, so only the op's rounding is measured. d² = |a|² + |b|² − 2 a·b in
 * fp32 has an error ~ u·|a||b|·c with c between ~1 (random-walk rounding of the sgemm's
 * accumulation) and sqrt(d) (pessimistic), u = 2^-24 = 6e-8; on centred data |a||b| ~ d²/2,
 * so through exp the error of one kernel value is γ·δd²·k ≲ c·u·(γd²)e^{-γd²} ≤ c·u/e, i.e.
 * ≲ 1e-7 of the kernel scale even for c ~ 5, and it is random in sign across pairs, so a sum
 * of T terms carries ~sqrt(T) of it. The fast exp adds ≤ 2 ulp per term and the fp32
 * blocked sums (16 lanes x ≤ 16 terms, column chunks of 16 rows, then fp64) ~ 4·u. Data with a
 * large common offset (+50) are centred with mmd_center first; the centred differences are
 * exact (Sterbenz), so the same reference applies. A wrong term (a masked duplicate, an
 * unmasked self pair, a missing tile edge) is off by ~k ≥ 1e-3 and fails by orders of magnitude.
 *
 * Exception: rows_x r=2 is ONE kernel value k(x_i, y_i), often >> mean k; it is held to
 * max(rule, 4u·k). Bandwidths here are 0.5–3 σ_base: at σ_s = σ_base/4 the typical k is
 * ~e^-16 and sums dominated by close pairs (DXY, rows) miss the rule although their relative
 * error stays ≲ 16u·c (the d² error u·|a|² times γ_s), an fp32 limit of the expansion.
 * VITA_MMD_DEBUG=1 prints the worst element of each output kind.
 * Also: outputs bit-identical for 1, 2 and 3 threads (memcmp); self pairs masked by index
 * (duplicated rows still count, k = 1); the fast exp itself; sqdist_forward; mmd_center.
 * VITA_MMD_BENCH=1 additionally times n = m = 1024 and 4096, d = 768, S = 5 (paired, B = 0)
 * against the sgemm-only time of the same tiles.
 */
#include "../kernels/ops.h"
#include "../kernels/cpu/fastexp.h"
#include "testing.h"

#include <cblas.h>
#include <omp.h>
#include <time.h>

static Ctx ctx;

/* ---- float64 reference of every output --------------------------------------------------- */
typedef struct {
    double scale[MMD_MAX_S], scale_mix, dscale, ckscale;  /* tolerance scales */
} RefScales;

/* D2 [N, N] exact squared distances of the pooled fp32 rows */
static double* ref_d2(const float* X, const float* Y, int n, int m, int d) {
    int N = n + m;
    double* D2 = t_dnew((long)N * N);
#pragma omp parallel for schedule(dynamic, 8)
    for (int p = 0; p < N; p++) {
        const float* a = p < n ? X + (long)p * d : Y + (long)(p - n) * d;
        for (int q = p + 1; q < N; q++) {
            const float* b = q < n ? X + (long)q * d : Y + (long)(q - n) * d;
            double s = 0;
            for (int k = 0; k < d; k++) { double t = (double)a[k] - b[k]; s += t * t; }
            D2[(long)p * N + q] = D2[(long)q * N + p] = s;
        }
    }
    return D2;
}

static void ref_stats(const MmdOut* o, RefScales* sc, const double* D2, const float* V,
                      const MmdDims* dm) {
    const int n = dm->n, m = dm->m, S = dm->S, B = dm->B, N = n + m;
    memset(o->sums, 0, sizeof(double) * MMD_NSUM * S);
    memset(o->dsum, 0, sizeof(double) * 3);
    memset(o->rows_x, 0, sizeof(double) * n * 3 * S);
    memset(o->rows_y, 0, sizeof(double) * m * 2 * S);
    memset(o->cka, 0, sizeof(double) * 3);
    memset(o->cka_rows, 0, sizeof(double) * n * 2);
    if (B) memset(o->kv, 0, sizeof(double) * N * 2 * B);
    double dsx = 0;
    for (int p = 0; p < N; p++)
        for (int q = 0; q < N; q++) {
            if (p == q) continue;
            const int sp = p >= n, sq = q >= n;
            const double d2 = D2[(long)p * N + q];
            double kmix = 0;
            for (int s = 0; s < S; s++) {
                double k = exp(-(double)dm->gamma[s] * d2);
                kmix += k / S;
                if (sp == sq) {
                    o->sums[(sp ? MMD_SYY : MMD_SXX) * S + s] += k;
                    if (!sp) o->rows_x[((long)p * 3 + 0) * S + s] += k;
                    else o->rows_y[((long)(p - n) * 2 + 0) * S + s] += k;
                } else if (!sp) {
                    o->sums[MMD_SXY * S + s] += k;
                    o->rows_x[((long)p * 3 + 1) * S + s] += k;
                    o->rows_y[((long)(q - n) * 2 + 1) * S + s] += k;
                    if (dm->paired && q - n == p) {
                        o->sums[MMD_DXY * S + s] += k;
                        o->rows_x[((long)p * 3 + 2) * S + s] = k;
                    }
                }
            }
            if (sp == sq) o->dsum[sp] += sqrt(d2);
            else if (!sp) o->dsum[2] += sqrt(d2);
            for (int b = 0; b < B; b++) o->kv[((long)p * 2 + sq) * B + b] += kmix * V[(long)q * B + b];
            (void)dsx;
        }
    /* scales */
    double mix = 0;
    for (int s = 0; s < S; s++) {
        double mxx = n > 1 ? o->sums[MMD_SXX * S + s] / ((double)n * (n - 1)) : 0;
        double myy = m > 1 ? o->sums[MMD_SYY * S + s] / ((double)m * (m - 1)) : 0;
        double mxy = o->sums[MMD_SXY * S + s] / ((double)n * m);
        sc->scale[s] = mxx + myy + 2 * mxy;
        mix += sc->scale[s] / S;
    }
    sc->scale_mix = mix;
    sc->dscale = o->dsum[0] / ((double)n * (n - 1)) + o->dsum[1] / ((double)m * (m - 1)) +
                 2 * o->dsum[2] / ((double)n * m);
    sc->ckscale = 0;
    if (dm->paired && dm->gamma_cka_x > 0 && dm->gamma_cka_y > 0) {
        double skx = 0, sly = 0;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++) {
                double kx = exp(-(double)dm->gamma_cka_x * (i == j ? 0 : D2[(long)i * N + j]));
                double ly = exp(-(double)dm->gamma_cka_y * (i == j ? 0 : D2[(long)(n + i) * N + n + j]));
                o->cka[0] += kx * ly; o->cka[1] += kx * kx; o->cka[2] += ly * ly;
                o->cka_rows[i * 2 + 0] += kx; o->cka_rows[i * 2 + 1] += ly;
                skx += kx; sly += ly;
            }
        sc->ckscale = (skx + sly) / ((double)n * n);
    }
}

static MmdOut out_new(int n, int m, int S, int B) {
    MmdOut o;
    o.sums = t_dnew(MMD_NSUM * S); o.dsum = t_dnew(3);
    o.rows_x = t_dnew((long)n * 3 * S); o.rows_y = t_dnew((long)m * 2 * S);
    o.cka = t_dnew(3); o.cka_rows = t_dnew((long)n * 2);
    o.kv = B ? t_dnew((long)(n + m) * 2 * B) : NULL;
    return o;
}
static void out_free(MmdOut* o) {
    free(o->sums); free(o->dsum); free(o->rows_x); free(o->rows_y); free(o->cka);
    free(o->cka_rows); free(o->kv);
}
static void out_garbage(MmdOut* o, int n, int m, int S, int B) {
    double* a[7] = {o->sums, o->dsum, o->rows_x, o->rows_y, o->cka, o->cka_rows, o->kv};
    long len[7] = {MMD_NSUM * S, 3, (long)n * 3 * S, (long)m * 2 * S, 3, (long)n * 2,
                   (long)(n + m) * 2 * B};
    for (int k = 0; k < 7; k++)
        if (a[k]) for (long i = 0; i < len[k]; i++) a[k][i] = (i & 1) ? NAN : 1e30;
}
static int out_equal(const MmdOut* a, const MmdOut* b, int n, int m, int S, int B) {
    int eq = 1;
    eq &= !memcmp(a->sums, b->sums, sizeof(double) * MMD_NSUM * S);
    eq &= !memcmp(a->dsum, b->dsum, sizeof(double) * 3);
    eq &= !memcmp(a->rows_x, b->rows_x, sizeof(double) * n * 3 * S);
    eq &= !memcmp(a->rows_y, b->rows_y, sizeof(double) * m * 2 * S);
    eq &= !memcmp(a->cka, b->cka, sizeof(double) * 3);
    eq &= !memcmp(a->cka_rows, b->cka_rows, sizeof(double) * n * 2);
    if (B) eq &= !memcmp(a->kv, b->kv, sizeof(double) * (n + m) * 2 * B);
    return eq;
}

/* worst |got - ref| / tol over an output kind */
static double worst(const double* got, const double* ref, const double* tol, long len) {
    double w = 0;
    long wi = 0;
    for (long i = 0; i < len; i++) {
        double e = fabs(got[i] - ref[i]) / tol[i];
        if (!(e == e)) return NAN;
        if (e > w) w = e, wi = i;
    }
    if (getenv("VITA_MMD_DEBUG")) printf("   worst at %ld: got %.10g ref %.10g tol %.3g\n", wi, got[wi], ref[wi], tol[wi]);
    return w;
}

typedef struct {
    const char* name;
    int n, m, d, S, B, paired, cka, offset_center, dup;
    double fs[MMD_MAX_S];  /* bandwidths as multiples of sigma_base (from the mean distance) */
} Case;

static void run_case(const Case* cs, uint64_t seed) {
    const int n = cs->n, m = cs->m, d = cs->d, S = cs->S, B = cs->B, N = n + m;
    char what[160];
    TRng r = {seed};
    float* X = t_fnew((long)n * d);
    float* Y = t_fnew((long)m * d);
    t_frandn(&r, X, (long)n * d, 1.0);
    if (cs->paired) {  /* y_i = x_i + noise: close pairs, as after a gentle fine-tune */
        t_frandn(&r, Y, (long)m * d, 0.6);
        for (long i = 0; i < (long)m * d; i++) Y[i] += X[i];
    } else {
        t_frandn(&r, Y, (long)m * d, 1.1);
        for (long i = 0; i < (long)m * d; i++) Y[i] += 0.3f;
    }
    if (cs->dup) {  /* duplicated rows: X row 5 = X row 17 = X row n-1; Y row 2 = Y row 0 */
        memcpy(X + 17L * d, X + 5L * d, d * sizeof(float));
        memcpy(X + (long)(n - 1) * d, X + 5L * d, d * sizeof(float));
        memcpy(Y + 2L * d, Y, d * sizeof(float));
    }
    if (cs->offset_center) {
        for (long i = 0; i < (long)n * d; i++) X[i] += 50.0f;
        for (long i = 0; i < (long)m * d; i++) Y[i] += 50.0f;
    }
    float* V = B ? t_fnew((long)N * B) : NULL;
    double vmax = 0;
    if (B) { t_frandn(&r, V, (long)N * B, 1.0); for (long i = 0; i < (long)N * B; i++) vmax = fmax(vmax, fabs(V[i])); }

    double* D2 = ref_d2(X, Y, n, m, d);
    double md = 0;
    for (long i = 0; i < (long)N * N; i++) md += D2[i];
    md /= (double)N * (N - 1);
    MmdDims dm = {0};
    dm.n = n; dm.m = m; dm.d = d; dm.S = S; dm.B = B; dm.paired = cs->paired;
    for (int s = 0; s < S; s++) dm.gamma[s] = (float)(1.0 / (2.0 * (md / 2) * cs->fs[s] * cs->fs[s]));
    if (cs->cka) { dm.gamma_cka_x = (float)(1.0 / md); dm.gamma_cka_y = (float)(0.7 / md); }

    MmdOut ref = out_new(n, m, S, B);
    RefScales sc;
    ref_stats(&ref, &sc, D2, V, &dm);

    /* the op: centre (when offset) then mmd_stats with 1, 2, 3 threads */
    float *Xc = X, *Yc = Y;
    if (cs->offset_center) {
        Xc = t_fnew((long)n * d); Yc = t_fnew((long)m * d);
        mmd_center(&ctx, Xc, Yc, NULL, X, Y, n, m, d);
    }
    MmdOut got[3];
    for (int t = 0; t < 3; t++) {
        got[t] = out_new(n, m, S, B);
        out_garbage(&got[t], n, m, S, B);
        t_set_threads(t + 1);
        mmd_stats(&ctx, &got[t], Xc, Yc, V, &dm);
    }
    t_set_threads(2);
    snprintf(what, sizeof what, "%s: bit-identical for 1, 2, 3 threads", cs->name);
    t_true(what, out_equal(&got[0], &got[1], n, m, S, B) && out_equal(&got[0], &got[2], n, m, S, B));
    MmdOut* g = &got[1];

    /* tolerances */
    double tol_sums[MMD_NSUM * MMD_MAX_S], tol_d[3], tol_ck[3];
    double cnt[MMD_NSUM] = {(double)n * (n - 1), (double)m * (m - 1), (double)n * m, cs->paired ? n : 0};
    for (int q = 0; q < MMD_NSUM; q++)
        for (int s = 0; s < S; s++) tol_sums[q * S + s] = 1e-7 * sc.scale[s] * fmax(cnt[q], 1);
    for (int k = 0; k < 3; k++) tol_d[k] = 1e-7 * sc.dscale * (k == 0 ? n * (n - 1.0) : k == 1 ? m * (m - 1.0) : (double)n * m);
    for (int k = 0; k < 3; k++) tol_ck[k] = 1e-7 * sc.ckscale * n * n + 1e-300;
    double* tx = t_dnew((long)n * 3 * S);
    double* ty = t_dnew((long)m * 2 * S);
    double* tc = t_dnew((long)n * 2);
    double* tk = t_dnew((long)N * 2 * (B ? B : 1));
    for (int i = 0; i < n; i++)
        for (int s = 0; s < S; s++) {
            tx[(i * 3 + 0) * S + s] = 1e-7 * sc.scale[s] * fmax(n - 1, 1);
            tx[(i * 3 + 1) * S + s] = 1e-7 * sc.scale[s] * m;
            /* one kernel value k(x_i, y_i), often >> mean k: fp32 cannot beat a few ulp of the
             * value itself (γ·d² rounded: 1 ulp each, exp ≤ 2 ulp), so max(rule, 4u·k) */
            tx[(i * 3 + 2) * S + s] = fmax(1e-7 * sc.scale[s], 4 * T_U * ref.rows_x[(i * 3 + 2) * S + s]);
        }
    for (int j = 0; j < m; j++)
        for (int s = 0; s < S; s++) {
            ty[(j * 2 + 0) * S + s] = 1e-7 * sc.scale[s] * fmax(m - 1, 1);
            ty[(j * 2 + 1) * S + s] = 1e-7 * sc.scale[s] * n;
        }
    for (int i = 0; i < 2 * n; i++) tc[i] = 1e-7 * sc.ckscale * n + 1e-300;
    for (int p = 0; p < N; p++)
        for (int h = 0; h < 2; h++)
            for (int b = 0; b < B; b++) tk[((long)p * 2 + h) * B + b] = 1e-7 * sc.scale_mix * (h ? m : n) * vmax;

    snprintf(what, sizeof what, "%s: sums (SXX, SYY, SXY, DXY) worst |err|/tol", cs->name);
    t_check(what, worst(g->sums, ref.sums, tol_sums, MMD_NSUM * S), 1.0);
    if (!cs->paired) {
        int z = 1;
        for (int s = 0; s < S; s++) z &= g->sums[MMD_DXY * S + s] == 0;
        for (int i = 0; i < n; i++) for (int s = 0; s < S; s++) z &= g->rows_x[(i * 3 + 2) * S + s] == 0;
        snprintf(what, sizeof what, "%s: unpaired DXY and rows_x r=2 are 0", cs->name);
        t_true(what, z);
    }
    snprintf(what, sizeof what, "%s: dsum worst |err|/tol", cs->name);
    t_check(what, worst(g->dsum, ref.dsum, tol_d, 3), 1.0);
    snprintf(what, sizeof what, "%s: rows_x worst |err|/tol", cs->name);
    t_check(what, worst(g->rows_x, ref.rows_x, tx, (long)n * 3 * S), 1.0);
    snprintf(what, sizeof what, "%s: rows_y worst |err|/tol", cs->name);
    t_check(what, worst(g->rows_y, ref.rows_y, ty, (long)m * 2 * S), 1.0);
    if (cs->cka) {
        snprintf(what, sizeof what, "%s: cka worst |err|/tol", cs->name);
        t_check(what, worst(g->cka, ref.cka, tol_ck, 3), 1.0);
        snprintf(what, sizeof what, "%s: cka_rows worst |err|/tol", cs->name);
        t_check(what, worst(g->cka_rows, ref.cka_rows, tc, (long)n * 2), 1.0);
    } else {
        snprintf(what, sizeof what, "%s: cka outputs 0 when not requested", cs->name);
        t_true(what, g->cka[0] == 0 && g->cka[1] == 0 && g->cka[2] == 0 && g->cka_rows[0] == 0);
    }
    if (B) {
        snprintf(what, sizeof what, "%s: kv worst |err|/tol", cs->name);
        t_check(what, worst(g->kv, ref.kv, tk, (long)N * 2 * B), 1.0);
    }
    if (cs->dup) {  /* the duplicated row's same-set sums include both duplicates (k = 1) */
        double wd = 0;
        for (int s = 0; s < S; s++)
            wd = fmax(wd, fabs(ref.rows_x[(5 * 3 + 0) * S + s] - g->rows_x[(5 * 3 + 0) * S + s]) /
                              tx[(5 * 3 + 0) * S + s]);
        snprintf(what, sizeof what, "%s: duplicated row 5 same-set sums, worst |err|/tol", cs->name);
        t_check(what, wd, 1.0);
    }

    /* NULL outputs are skipped and do not change the others */
    MmdOut part = {0};
    part.sums = t_dnew(MMD_NSUM * S);
    mmd_stats(&ctx, &part, Xc, Yc, V, &dm);
    snprintf(what, sizeof what, "%s: sums alone (other outputs NULL) equal the full run", cs->name);
    t_true(what, !memcmp(part.sums, g->sums, sizeof(double) * MMD_NSUM * S));
    free(part.sums);

    for (int t = 0; t < 3; t++) out_free(&got[t]);
    out_free(&ref);
    free(tx); free(ty); free(tc); free(tk); free(D2);
    if (Xc != X) { free(Xc); free(Yc); }
    free(X); free(Y); free(V);
}

/* exact duplicates far from every other row: S_XX counts exactly the duplicate pairs */
static void test_self_mask(void) {
    const int n = 6, m = 3, d = 13;
    float* X = t_fnew(n * d);
    float* Y = t_fnew(m * d);
    for (int i = 0; i < n; i++) X[i * d] = 10.0f * i, X[i * d + 3] = 0.5f;
    memcpy(X + 3 * d, X + 1 * d, d * sizeof(float));   /* x3 = x1 */
    for (int j = 0; j < m; j++) Y[j * d + 1] = 10.0f * j + 100.0f;
    MmdDims dm = {0};
    dm.n = n; dm.m = m; dm.d = d; dm.S = 1; dm.gamma[0] = 1.0f;
    MmdOut o = out_new(n, m, 1, 0);
    mmd_stats(&ctx, &o, X, Y, NULL, &dm);
    t_check("self mask: S_XX = 2 (one duplicate pair, both orders), |err|", fabs(o.sums[MMD_SXX] - 2.0), 1e-5);
    t_check("self mask: S_YY = 0 (no k(y_i, y_i)), |err|", fabs(o.sums[MMD_SYY]), 1e-30);
    t_check("self mask: rows_x[1] = rows_x[3] = 1, |err|",
            fmax(fabs(o.rows_x[1 * 3] - 1.0), fabs(o.rows_x[3 * 3] - 1.0)), 1e-5);
    t_check("self mask: rows_x[0] = 0", fabs(o.rows_x[0]), 1e-30);
    out_free(&o);
    free(X); free(Y);
}

static void test_fast_exp(void) {
    double worst_rel = 0;
    for (int i = 0; i <= 2000000; i++) {
        float x = -87.0f * (float)i / 2000000.0f;
        double e = exp((double)x);
        double rel = fabs(vita_fast_expf(x) - e) / e;
        worst_rel = fmax(worst_rel, rel);
    }
    t_check("fast exp: max relative error on [-87, 0]", worst_rel, 2.5e-7);
    t_true("fast exp: exp(-88) = exp(-1e30) = 0, exp(0) = 1, NaN propagates",
           vita_fast_expf(-88.0f) == 0.0f && vita_fast_expf(-1e30f) == 0.0f &&
           vita_fast_expf(0.0f) == 1.0f && isnan(vita_fast_expf(NAN)));
}

static void test_sqdist(int n1, int n2, int d, uint64_t seed) {
    TRng r = {seed};
    float* A = t_fnew((long)n1 * d);
    float* Bm = t_fnew((long)n2 * d);
    t_frandn(&r, A, (long)n1 * d, 1.0);
    t_frandn(&r, Bm, (long)n2 * d, 1.0);
    for (long i = 0; i < (long)n2 * d; i++) Bm[i] += 0.2f;
    memcpy(Bm, A, d * sizeof(float));  /* an exact duplicate: distance clamps at >= 0 */
    float* out = t_fnew((long)n1 * n2);
    t_fill_nan(out, (long)n1 * n2);
    sqdist_forward(&ctx, out, A, Bm, n1, n2, d);
    /* fp32 error of |a|² + |b|² - 2 a·b: a few u·(|a|² + |b|²)·sqrt(d) (random-walk dot) */
    double w = 0;
    int nonneg = 1;
    for (int i = 0; i < n1; i++)
        for (int j = 0; j < n2; j++) {
            double s = 0, na = 0, nb = 0;
            for (int k = 0; k < d; k++) {
                double a = A[(long)i * d + k], b = Bm[(long)j * d + k];
                s += (a - b) * (a - b); na += a * a; nb += b * b;
            }
            double o = out[(long)i * n2 + j];
            nonneg &= o >= 0;
            w = fmax(w, fabs(o - s) / (4 * T_U * (na + nb) * sqrt(d)));
        }
    char what[120];
    snprintf(what, sizeof what, "sqdist %dx%d d=%d: worst |err| / (4u(|a|²+|b|²)sqrt(d))", n1, n2, d);
    t_check(what, w, 1.0);
    t_true("sqdist: every entry >= 0 (clamped)", nonneg);
    free(A); free(Bm); free(out);
}

static void test_center(int n, int m, int d, uint64_t seed) {
    TRng r = {seed};
    float* X = t_fnew((long)n * d);
    float* Y = t_fnew((long)m * d);
    t_frandn(&r, X, (long)n * d, 1.0);
    t_frandn(&r, Y, (long)m * d, 2.0);
    for (long i = 0; i < (long)n * d; i++) X[i] += 50.0f;
    for (long i = 0; i < (long)m * d; i++) Y[i] += 51.0f;
    float* mu = t_fnew(d);
    float* Xc = t_fnew((long)n * d);
    float* Yc = t_fnew((long)m * d);
    mmd_center(&ctx, Xc, Yc, mu, X, Y, n, m, d);
    double wmu = 0;
    int exact = 1;
    for (int k = 0; k < d; k++) {
        double s = 0;
        for (int i = 0; i < n; i++) s += X[(long)i * d + k];
        for (int j = 0; j < m; j++) s += Y[(long)j * d + k];
        s /= (n + m);
        wmu = fmax(wmu, fabs(mu[k] - s) / fabs(s));
        for (int i = 0; i < n; i++) exact &= Xc[(long)i * d + k] == X[(long)i * d + k] - mu[k];
        for (int j = 0; j < m; j++) exact &= Yc[(long)j * d + k] == Y[(long)j * d + k] - mu[k];
    }
    t_check("mmd_center: mu vs float64 mean, relative (one fp32 rounding)", wmu, T_U * 1.0001);
    t_true("mmd_center: Xc = X - mu, Yc = Y - mu exactly", exact);
    /* in place, mu NULL */
    float* X2 = t_fnew((long)n * d);
    float* Y2 = t_fnew((long)m * d);
    memcpy(X2, X, sizeof(float) * n * d); memcpy(Y2, Y, sizeof(float) * m * d);
    mmd_center(&ctx, X2, Y2, NULL, X2, Y2, n, m, d);
    t_true("mmd_center: in place, mu NULL, same result",
           !memcmp(X2, Xc, sizeof(float) * n * d) && !memcmp(Y2, Yc, sizeof(float) * m * d));
    free(X); free(Y); free(mu); free(Xc); free(Yc); free(X2); free(Y2);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* sgemm-only time of the same tiles (paired: XX, YY for a <= b, all XY), 256-row tiles */
static double sgemm_tiles(const float* X, const float* Y, int n, int d) {
    const int T = 256, nb = (n + T - 1) / T;
    double t0 = now();
#pragma omp parallel
    {
        float* G = malloc(sizeof(float) * T * T);
#pragma omp for schedule(dynamic, 1) collapse(2)
        for (int a = 0; a < nb; a++)
            for (int b = 0; b < nb; b++) {
                int ta = a * T + T < n ? T : n - a * T, tb = b * T + T < n ? T : n - b * T;
                const float* xa = X + (long)a * T * d;
                const float* xb = X + (long)b * T * d;
                const float* ya = Y + (long)a * T * d;
                const float* yb = Y + (long)b * T * d;
                if (a <= b) {
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, ta, tb, d, -2.0f, xa, d, xb, d, 0.0f, G, tb);
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, ta, tb, d, -2.0f, ya, d, yb, d, 0.0f, G, tb);
                }
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, ta, tb, d, -2.0f, xa, d, yb, d, 0.0f, G, tb);
            }
        free(G);
    }
    return now() - t0;
}

static void bench(int n, int d, int S) {
    TRng r = {77};
    float* X = t_fnew((long)n * d);
    float* Y = t_fnew((long)n * d);
    t_frandn(&r, X, (long)n * d, 1.0);
    t_frandn(&r, Y, (long)n * d, 1.0);
    MmdDims dm = {0};
    dm.n = n; dm.m = n; dm.d = d; dm.S = S; dm.paired = 1;
    for (int s = 0; s < S; s++) dm.gamma[s] = (float)(1.0 / (4.0 * d * (1 << s) / 4.0));
    MmdOut o = out_new(n, n, S, 0);
    double best = 1e30, bestg = 1e30;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = now();
        mmd_stats(&ctx, &o, X, Y, NULL, &dm);
        best = fmin(best, now() - t0);
        bestg = fmin(bestg, sgemm_tiles(X, Y, n, d));
    }
    MmdOut o2 = out_new(n, n, S, 0);
    o2.sums = o.sums;  /* sums + dsum only */
    double bs = 1e30;
    {
        MmdOut q = {0};
        q.sums = o2.sums;
        for (int rep = 0; rep < 3; rep++) { double t0 = now(); mmd_stats(&ctx, &q, X, Y, NULL, &dm); bs = fmin(bs, now() - t0); }
    }
    printf("BENCH mmd_stats n=m=%d d=%d S=%d paired B=0, %d threads: all outputs %.3f s, sums only %.3f s, sgemm of the same tiles %.3f s\n",
           n, d, S, omp_get_max_threads(), best, bs, bestg);
    out_free(&o);
    free(X); free(Y);
}

int main(void) {
    if (ctx_open(&ctx, "cpu", 2, 1) != 0) return 1;
    test_fast_exp();
    test_self_mask();
    test_sqdist(37, 300, 13, 11);
    test_sqdist(260, 129, 768, 12);
    test_center(300, 170, 13, 13);
    test_center(37, 37, 768, 14);

    const Case cases[] = {
        {"n=m=37 paired d=13 S=5 B=3 cka dup", 37, 37, 13, 5, 3, 1, 1, 0, 1, {0.5, 0.7, 1, 1.4, 2}},
        {"n=300 m=170 unpaired d=13 S=1 B=5", 300, 170, 13, 1, 5, 0, 0, 0, 0, {1.0}},
        {"n=300 m=170 unpaired d=64 S=5 +50 centred dup", 300, 170, 64, 5, 0, 0, 0, 1, 1, {0.5, 0.7, 1, 1.5, 3}},
        {"n=m=513 paired d=768 S=5 B=7 cka +50 centred", 513, 513, 768, 5, 7, 1, 1, 1, 0, {0.5, 0.7, 1, 1.4, 2}},
        {"n=m=257 paired d=31 S=1 no cka", 257, 257, 31, 1, 0, 1, 0, 0, 1, {0.8}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&cases[i], 100 + i);

    if (getenv("VITA_MMD_BENCH")) {
        t_set_threads(2);
        bench(1024, 768, 5);
        bench(4096, 768, 5);
    }
    ctx_close(&ctx);
    return t_summary();
}
