/* tests/test_ops_norm_act.c — CPU ops of the transformer block body: layernorm, gelu, add,
 * layerscale, drop_path, scale_inplace, meanpool.
 *
 * Same method as test_ops_embed.c: a naive float64 reference written here, NMSE of the fp32
 * forward against it, and central finite differences of the reference for every input and
 * parameter with L = Σ out ⊙ R (R float-exact), compared with the fp32 backward fed dout = R.
 * Parameter gradients must accumulate, input gradients overwrite, reductions must give the
 * same bits for 1 and 3 threads.
 *
 * Thresholds (U = 2^-24): an output that is ONE fp32 rounding of an exact value has
 * NMSE <= U^2 exactly (|fl(v) - v| <= U|v|); otherwise ε = (number of roundings)·U relative
 * to the magnitudes involved and NMSE <= c·ε^2, c stated per op. Gradient scores: grad_thr.
 */
#include "../kernels/ops.h"
#include "testing.h"

static Ctx ctx;

/* Gradient-score threshold for an fp32 gradient after K roundings vs float64 central
 * differences: FD error here ≲ 5e-8 (rounding 1.1e-16·Σ|terms|/2h with h = 1e-5, ≤ 1e4
 * terms, truncation ~h^2), ×20 -> 1e-6; fp32: score ≈ rel.err/2 ≤ K U/2 per element, and
 * near-zero true gradients (cancellation) weigh up to ln(1e6) ≈ 14 more before the 1e-6
 * floor cuts them off; ×2 safety -> 30 K U. */
static double grad_thr(double K) { return 1e-6 + 30.0 * K * T_U; }

/* ======================================================================================= */
/* layernorm                                                                               */
typedef struct { int N, C; double eps; const double *x, *w, *b; } LnSt;

static void ref_layernorm_stats(const LnSt* s, double* out, double* mean, double* rstd) {
    for (int n = 0; n < s->N; n++) {
        const double* x = s->x + (long)n * s->C;
        double m = 0, v = 0;
        for (int i = 0; i < s->C; i++) m += x[i];
        m /= s->C;
        for (int i = 0; i < s->C; i++) v += (x[i] - m) * (x[i] - m);
        v /= s->C;
        double r = 1 / sqrt(v + s->eps);
        for (int i = 0; i < s->C; i++) out[(long)n * s->C + i] = (x[i] - m) * r * s->w[i] + s->b[i];
        if (mean) mean[n] = m;
        if (rstd) rstd[n] = r;
    }
}
static void ref_layernorm(const void* st, double* out) { ref_layernorm_stats(st, out, NULL, NULL); }

static void test_layernorm(TRng* rng) {
    static const struct { int N, C; double eps, offset; } cases[] = {
        { 13, 7, 1e-6, 0 }, { 5, 64, 1e-5, 0 }, { 3, 1, 1e-6, 0 }, { 17, 33, 1e-6, 0 },
        { 4, 768, 1e-6, 0 },
        { 8, 48, 1e-6, 4.0 },   /* rows with mean 4, std 1: the float mean's rounding matters */
    };
    for (unsigned ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const int N = cases[ci].N, C = cases[ci].C;
        const double off = cases[ci].offset;
        long nx = (long)N * C;
        double *x = t_dnew(nx), *w = t_dnew(C), *b = t_dnew(C), *ref = t_dnew(nx), *R = t_dnew(nx);
        double *rm = t_dnew(N), *rr = t_dnew(N);
        float *xf = t_fnew(nx), *wf = t_fnew(C), *bf = t_fnew(C), *out = t_fnew(nx), *Rf = t_fnew(nx);
        float *mean = t_fnew(N), *rstd = t_fnew(N);
        t_randn(rng, x, xf, nx, 1.0);
        for (long i = 0; i < nx; i++) { xf[i] = (float)(x[i] + off); x[i] = xf[i]; }
        t_randn(rng, w, wf, C, 1.0);
        t_randn(rng, b, bf, C, 0.5);
        t_randn(rng, R, Rf, nx, 1.0);
        LnSt s = { N, C, (double)(float)cases[ci].eps, x, w, b };
        char name[160];

        layernorm_forward(&ctx, out, mean, rstd, xf, wf, bf, N, C, (float)cases[ci].eps);
        ref_layernorm_stats(&s, ref, rm, rr);
        /* roundings per element: float mean (U|m|, i.e. U·|m|/σ relative to x - m), x - m,
         * float rstd, ·rstd, ·w, +b: ε = (5 + |m|/σ) U relative to |xhat w| + |b|;
         * Σ(|a|+|b|)^2 / Σ(a+b)^2 ≈ 2 for independent a, b, ×2 for the sample -> 4ε^2 */
        double e = (5 + off) * T_U;
        snprintf(name, sizeof name, "layernorm NMSE N=%d C=%d eps=%g offset=%g", N, C, cases[ci].eps, off);
        t_check(name, t_nmse_fd(out, ref, nx), 4 * e * e);
        /* mean and rstd: double accumulations, one final fp32 rounding -> U^2 */
        t_check("layernorm mean NMSE (one rounding: U^2)", t_nmse_fd(mean, rm, N), T_U * T_U);
        t_check("layernorm rstd NMSE (one rounding: U^2)", t_nmse_fd(rstd, rr, N), T_U * T_U);

        float *dx = t_fnew(nx), *dw = t_fnew(C), *db = t_fnew(C);
        t_fill_garbage(dx, nx);
        layernorm_backward(&ctx, dx, dw, db, Rf, xf, wf, mean, rstd, N, C);
        double* tmp = t_dnew(nx);
        TFdLoss f = { ref_layernorm, &s, tmp, R, nx };
        /* dx: g·w, xhat (m, r saved as float + 2 ops), ·mgx, two subtractions, ·r: ~10
         * roundings, plus |m|/σ from the mean as in the forward */
        t_check("layernorm dx grad (K=10+|m|/σ)", t_grad_score_ref(&f, x, nx, dx), grad_thr(10 + off));
        /* dw: xhat (4 roundings + |m|/σ), double sum, one final rounding; db: one rounding */
        t_check("layernorm dw grad (K=5+|m|/σ)", t_grad_score_ref(&f, w, C, dw), grad_thr(5 + off));
        t_check("layernorm db grad (K=1)", t_grad_score_ref(&f, b, C, db), grad_thr(1));

        float *aw = t_fnew(C), *ab = t_fnew(C), *g0w = t_fnew(C), *g0b = t_fnew(C), *dx2 = t_fnew(nx);
        t_frandn(rng, g0w, C, 1.0); t_frandn(rng, g0b, C, 1.0);
        memcpy(aw, g0w, C * sizeof(float)); memcpy(ab, g0b, C * sizeof(float));
        for (int rep = 0; rep < 2; rep++) layernorm_backward(&ctx, dx2, aw, ab, Rf, xf, wf, mean, rstd, N, C);
        t_check("layernorm dw accumulates (ratio to 2U bound)", t_accum_ratio(aw, g0w, dw, C), 1.0);
        t_check("layernorm db accumulates (ratio to 2U bound)", t_accum_ratio(ab, g0b, db, C), 1.0);
        t_true("layernorm dx overwrites", !memcmp(dx2, dx, nx * sizeof(float)));
        /* dx may alias dout */
        memcpy(dx2, Rf, nx * sizeof(float));
        layernorm_backward(&ctx, dx2, NULL, NULL, dx2, xf, wf, mean, rstd, N, C);
        t_true("layernorm dx in place over dout (dx == dout) matches", !memcmp(dx2, dx, nx * sizeof(float)));

        free(aw); free(ab); free(g0w); free(g0b); free(dx2); free(tmp); free(dx); free(dw); free(db);
        free(x); free(w); free(b); free(ref); free(R); free(rm); free(rr);
        free(xf); free(wf); free(bf); free(out); free(Rf); free(mean); free(rstd);
    }
    {   /* thread-count independence: 200 channels = 4 blocks of the dw/db reduction */
        const int N = 301, C = 200;
        long nx = (long)N * C;
        float *x = t_fnew(nx), *w = t_fnew(C), *b = t_fnew(C), *g = t_fnew(nx), *o[2], *m[2], *r[2], *dx[2], *dw[2], *db[2];
        t_frandn(rng, x, nx, 1.0); t_frandn(rng, w, C, 1.0); t_frandn(rng, b, C, 1.0); t_frandn(rng, g, nx, 1.0);
        for (int k = 0; k < 2; k++) {
            o[k] = t_fnew(nx); m[k] = t_fnew(N); r[k] = t_fnew(N); dx[k] = t_fnew(nx); dw[k] = t_fnew(C); db[k] = t_fnew(C);
            t_set_threads(k ? 3 : 1);
            layernorm_forward(&ctx, o[k], m[k], r[k], x, w, b, N, C, 1e-6f);
            layernorm_backward(&ctx, dx[k], dw[k], db[k], g, x, w, m[k], r[k], N, C);
        }
        t_set_threads(ctx.threads);
        t_true("layernorm fwd+bwd bit-identical with 1 and 3 threads",
               !memcmp(o[0], o[1], nx * 4) && !memcmp(m[0], m[1], N * 4) && !memcmp(r[0], r[1], N * 4) &&
               !memcmp(dx[0], dx[1], nx * 4) && !memcmp(dw[0], dw[1], C * 4) && !memcmp(db[0], db[1], C * 4));
        for (int k = 0; k < 2; k++) { free(o[k]); free(m[k]); free(r[k]); free(dx[k]); free(dw[k]); free(db[k]); }
        free(x); free(w); free(b); free(g);
    }
}

/* ======================================================================================= */
/* gelu                                                                                    */
typedef struct { long n; const double* x; } VecSt;
static void ref_gelu(const void* st, double* out) {
    const VecSt* s = st;
    for (long i = 0; i < s->n; i++) out[i] = 0.5 * s->x[i] * (1 + erf(s->x[i] / sqrt(2.0)));
}

static void test_gelu(TRng* rng) {
    static const long sizes[] = { 1, 7, 1001, 40000 /* > the kernel's parallel cut-off */ };
    for (unsigned si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        const long n = sizes[si];
        double *x = t_dnew(n), *ref = t_dnew(n), *R = t_dnew(n);
        float *xf = t_fnew(n), *out = t_fnew(n), *Rf = t_fnew(n), *dx = t_fnew(n);
        t_randn(rng, x, xf, n, 2.0);            /* pre-GELU activations, a few σ wide */
        if (n > 10) { x[0] = xf[0] = 0; x[1] = xf[1] = -6; x[2] = xf[2] = 6; x[3] = xf[3] = -0.7518f; }
        t_randn(rng, R, Rf, n, 1.0);
        VecSt s = { n, x };
        char name[128];
        gelu_forward(&ctx, out, xf, n);
        ref_gelu(&s, ref);
        /* x/√2 (2 roundings, incl. the constant) moves erfc by ≤ 2U·z|erfc'(z)| ≤ 2U·(2z^2+1)
         * relative — in the tail z ≤ 6/√2, but absolute |x| U·(2z^2+1)·Φ ≤ |x| U there; erfcf
         * ≤ 2 ulp; ·0.5 exact; ·x 1U: ε ≈ 6U relative to |x|; Σx^2/Σgelu^2 ≤ 3 for N(0, 4)
         * inputs (gelu ≈ relu: half the mass plus the right tail) -> NMSE ≤ 3·(6U)^2 */
        snprintf(name, sizeof name, "gelu NMSE n=%ld", n);
        t_check(name, t_nmse_fd(out, ref, n), 3 * 36 * T_U * T_U);
        t_fill_garbage(dx, n);
        gelu_backward(&ctx, dx, Rf, xf, n);
        double* tmp = t_dnew(n);
        TFdLoss f = { ref_gelu, &s, tmp, R, n };
        /* gelu' = Φ + xφ: Φ as above (~6 roundings), φ = c·expf(-x^2/2) (x^2/2: 2 roundings,
         * which expf turns into 2U·x^2/2 relative — large only in the tail where xφ is tiny
         * and the floor caps the score), x·φ, the sum, ·dout: K = 12 */
        snprintf(name, sizeof name, "gelu dx grad n=%ld (K=12)", n);
        if (n <= 1001) t_check(name, t_grad_score_ref(&f, x, n, dx), grad_thr(12));
        /* in place (dx == dout, out == x) gives the same bits */
        float* buf = t_fnew(n);
        memcpy(buf, Rf, n * sizeof(float));
        gelu_backward(&ctx, buf, buf, xf, n);
        t_true("gelu_backward in place (dx == dout) matches", !memcmp(buf, dx, n * sizeof(float)));
        memcpy(buf, xf, n * sizeof(float));
        gelu_forward(&ctx, buf, buf, n);
        t_true("gelu_forward in place (out == x) matches", !memcmp(buf, out, n * sizeof(float)));
        free(buf); free(tmp);
        free(x); free(ref); free(R); free(xf); free(out); free(Rf); free(dx);
    }
}

/* ======================================================================================= */
/* add, layerscale, drop_path, scale_inplace                                               */
typedef struct { long n; const double *a, *b; } AddSt;
static void ref_add(const void* st, double* out) {
    const AddSt* s = st;
    for (long i = 0; i < s->n; i++) out[i] = s->a[i] + s->b[i];
}
typedef struct { int N, C; const double *x, *g; } LsSt;
static void ref_layerscale(const void* st, double* out) {
    const LsSt* s = st;
    for (int n = 0; n < s->N; n++)
        for (int c = 0; c < s->C; c++) out[(long)n * s->C + c] = s->x[(long)n * s->C + c] * s->g[c];
}
typedef struct { int B; long per; const double *x, *scale; } DpSt;
static void ref_drop_path(const void* st, double* out) {
    const DpSt* s = st;
    for (int b = 0; b < s->B; b++)
        for (long i = 0; i < s->per; i++) out[b * s->per + i] = s->x[b * s->per + i] * s->scale[b];
}
typedef struct { long n; double s; const double* x; } ScSt;
static void ref_scale(const void* st, double* out) {
    const ScSt* s = st;
    for (long i = 0; i < s->n; i++) out[i] = s->s * s->x[i];
}

static void test_pointwise(TRng* rng) {
    char name[128];
    /* ---- add ---- */
    for (long n = 1; n <= 20000; n *= 13) {
        double *a = t_dnew(n), *b = t_dnew(n), *ref = t_dnew(n), *R = t_dnew(n), *tmp = t_dnew(n);
        float *af = t_fnew(n), *bf = t_fnew(n), *out = t_fnew(n), *Rf = t_fnew(n), *buf = t_fnew(n);
        t_randn(rng, a, af, n, 1.0); t_randn(rng, b, bf, n, 1.0); t_randn(rng, R, Rf, n, 1.0);
        AddSt s = { n, a, b };
        add_forward(&ctx, out, af, bf, n);
        ref_add(&s, ref);
        snprintf(name, sizeof name, "add NMSE n=%ld (one rounding: U^2)", n);
        t_check(name, t_nmse_fd(out, ref, n), T_U * T_U);
        memcpy(buf, af, n * 4); add_forward(&ctx, buf, buf, bf, n);
        int ok = !memcmp(buf, out, n * 4);
        memcpy(buf, bf, n * 4); add_forward(&ctx, buf, af, buf, n);
        t_true("add in place (out == a, out == b) matches", ok && !memcmp(buf, out, n * 4));
        if (n < 5000) {   /* backward is the identity: dout reaches a and b unchanged */
            TFdLoss f = { ref_add, &s, tmp, R, n };
            t_check("add grad a (identity: K=0)", t_grad_score_ref(&f, a, n, Rf), grad_thr(0));
            t_check("add grad b (identity: K=0)", t_grad_score_ref(&f, b, n, Rf), grad_thr(0));
        }
        free(a); free(b); free(ref); free(R); free(tmp); free(af); free(bf); free(out); free(Rf); free(buf);
    }

    /* ---- layerscale ---- */
    static const int ls[][2] = { { 13, 7 }, { 3, 1 }, { 9, 70 }, { 2, 5 } };
    for (unsigned k = 0; k < sizeof ls / sizeof ls[0]; k++) {
        const int N = ls[k][0], C = ls[k][1];
        long n = (long)N * C;
        double *x = t_dnew(n), *g = t_dnew(C), *ref = t_dnew(n), *R = t_dnew(n), *tmp = t_dnew(n);
        float *xf = t_fnew(n), *gf = t_fnew(C), *out = t_fnew(n), *Rf = t_fnew(n), *dx = t_fnew(n), *dg = t_fnew(C);
        t_randn(rng, x, xf, n, 1.0); t_randn(rng, g, gf, C, 0.1); t_randn(rng, R, Rf, n, 1.0);
        LsSt s = { N, C, x, g };
        layerscale_forward(&ctx, out, xf, gf, N, C);
        ref_layerscale(&s, ref);
        snprintf(name, sizeof name, "layerscale NMSE N=%d C=%d (one rounding: U^2)", N, C);
        t_check(name, t_nmse_fd(out, ref, n), T_U * T_U);
        t_fill_garbage(dx, n);
        layerscale_backward(&ctx, dx, dg, Rf, xf, gf, N, C);
        TFdLoss f = { ref_layerscale, &s, tmp, R, n };
        t_check("layerscale dx grad (one product: K=1)", t_grad_score_ref(&f, x, n, dx), grad_thr(1));
        /* double products and sum, one final rounding */
        t_check("layerscale dgamma grad (double sum: K=1)", t_grad_score_ref(&f, g, C, dg), grad_thr(1));
        float *g0 = t_fnew(C), *acc = t_fnew(C), *dx2 = t_fnew(n);
        t_frandn(rng, g0, C, 1.0);
        memcpy(acc, g0, C * 4);
        for (int rep = 0; rep < 2; rep++) layerscale_backward(&ctx, dx2, acc, Rf, xf, gf, N, C);
        t_check("layerscale dgamma accumulates (ratio to 2U bound)", t_accum_ratio(acc, g0, dg, C), 1.0);
        t_true("layerscale dx overwrites", !memcmp(dx2, dx, n * 4));
        memcpy(dx2, Rf, n * 4); memcpy(acc, g0, C * 4);
        layerscale_backward(&ctx, dx2, acc, dx2, xf, gf, N, C);
        float* acc1 = t_fnew(C); memcpy(acc1, g0, C * 4);
        layerscale_backward(&ctx, NULL, acc1, Rf, xf, gf, N, C);
        t_true("layerscale in place (dx == dout) matches, dgamma unaffected",
               !memcmp(dx2, dx, n * 4) && !memcmp(acc, acc1, C * 4));
        free(acc1); free(g0); free(acc); free(dx2);
        free(x); free(g); free(ref); free(R); free(tmp); free(xf); free(gf); free(out); free(Rf); free(dx); free(dg);
    }
    {
        const int N = 257, C = 150;
        long n = (long)N * C;
        float *x = t_fnew(n), *g = t_fnew(C), *d = t_fnew(n), *a1 = t_fnew(C), *a3 = t_fnew(C), *x1 = t_fnew(n), *x3 = t_fnew(n);
        t_frandn(rng, x, n, 1.0); t_frandn(rng, g, C, 1.0); t_frandn(rng, d, n, 1.0);
        t_set_threads(1); layerscale_backward(&ctx, x1, a1, d, x, g, N, C);
        t_set_threads(3); layerscale_backward(&ctx, x3, a3, d, x, g, N, C);
        t_set_threads(ctx.threads);
        t_true("layerscale_backward bit-identical with 1 and 3 threads",
               !memcmp(a1, a3, C * 4) && !memcmp(x1, x3, n * 4));
        free(x); free(g); free(d); free(a1); free(a3); free(x1); free(x3);
    }

    /* ---- drop_path: backward = the same op on dout ---- */
    static const long dp[][2] = { { 5, 91 }, { 1, 7 }, { 3, 1 }, { 4, 6000 } };
    for (unsigned k = 0; k < sizeof dp / sizeof dp[0]; k++) {
        const int B = (int)dp[k][0];
        const long per = dp[k][1], n = B * per;
        double *x = t_dnew(n), *sc = t_dnew(B), *ref = t_dnew(n), *R = t_dnew(n), *tmp = t_dnew(n);
        float *xf = t_fnew(n), *scf = t_fnew(B), *out = t_fnew(n), *Rf = t_fnew(n), *dx = t_fnew(n);
        t_randn(rng, x, xf, n, 1.0); t_randn(rng, R, Rf, n, 1.0);
        for (int b = 0; b < B; b++) { scf[b] = (b % 3 == 1) ? 0.0f : 1.0f / 0.7f; sc[b] = scf[b]; }
        DpSt s = { B, per, x, sc };
        drop_path_forward(&ctx, out, xf, scf, B, per);
        ref_drop_path(&s, ref);
        snprintf(name, sizeof name, "drop_path NMSE B=%d per=%ld (one rounding: U^2)", B, per);
        t_check(name, t_nmse_fd(out, ref, n), T_U * T_U);
        drop_path_forward(&ctx, dx, Rf, scf, B, per);
        if (n < 5000) {
            TFdLoss f = { ref_drop_path, &s, tmp, R, n };
            t_check("drop_path grad (= drop_path(dout): K=1)", t_grad_score_ref(&f, x, n, dx), grad_thr(1));
        }
        free(x); free(sc); free(ref); free(R); free(tmp); free(xf); free(scf); free(out); free(Rf); free(dx);
    }

    /* ---- scale_inplace: backward = the same op on dout ---- */
    static const long sn[] = { 1, 33, 1000, 30000 };
    for (unsigned k = 0; k < sizeof sn / sizeof sn[0]; k++) {
        const long n = sn[k];
        const float sf = 0.3173f;
        double *x = t_dnew(n), *ref = t_dnew(n), *R = t_dnew(n), *tmp = t_dnew(n);
        float *xf = t_fnew(n), *Rf = t_fnew(n);
        t_randn(rng, x, xf, n, 1.0); t_randn(rng, R, Rf, n, 1.0);
        ScSt s = { n, sf, x };
        ref_scale(&s, ref);
        scale_inplace(&ctx, xf, sf, n);
        snprintf(name, sizeof name, "scale_inplace NMSE n=%ld (one rounding: U^2)", n);
        t_check(name, t_nmse_fd(xf, ref, n), T_U * T_U);
        scale_inplace(&ctx, Rf, sf, n);
        if (n < 5000) {
            TFdLoss f = { ref_scale, &s, tmp, R, n };
            t_check("scale_inplace grad (= scale_inplace(dout): K=1)", t_grad_score_ref(&f, x, n, Rf), grad_thr(1));
        }
        free(x); free(ref); free(R); free(tmp); free(xf); free(Rf);
    }
}

/* ======================================================================================= */
/* meanpool                                                                                */
typedef struct { int B, T, C, t0, n; const double* x; } MpSt;
static void ref_meanpool(const void* st, double* out) {
    const MpSt* s = st;
    for (int b = 0; b < s->B; b++)
        for (int c = 0; c < s->C; c++) {
            double acc = 0;
            for (int t = s->t0; t < s->t0 + s->n; t++) acc += s->x[((long)b * s->T + t) * s->C + c];
            out[(long)b * s->C + c] = acc / s->n;
        }
}

static void test_meanpool(TRng* rng) {
    static const int cases[][5] = {   /* B, T, C, t0, n */
        { 2, 13, 7, 1, 12 }, { 3, 10, 5, 5, 5 }, { 1, 6, 1, 0, 6 }, { 4, 21, 70, 4, 17 }, { 2, 3, 3, 2, 1 },
    };
    char name[128];
    for (unsigned k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const int* v = cases[k];
        MpSt s = { v[0], v[1], v[2], v[3], v[4], NULL };
        long nx = (long)s.B * s.T * s.C, no = (long)s.B * s.C;
        double *x = t_dnew(nx), *ref = t_dnew(no), *R = t_dnew(no), *tmp = t_dnew(no);
        float *xf = t_fnew(nx), *out = t_fnew(no), *Rf = t_fnew(no), *dx = t_fnew(nx);
        t_randn(rng, x, xf, nx, 1.0); t_randn(rng, R, Rf, no, 1.0);
        s.x = x;
        meanpool_forward(&ctx, out, xf, s.B, s.T, s.C, s.t0, s.n);
        ref_meanpool(&s, ref);
        /* double sum and division, one final rounding: U^2; the double part's error
         * (n·2^-53 relative to Σ|x|) is < 1e-6 of that */
        snprintf(name, sizeof name, "meanpool NMSE B=%d T=%d C=%d t0=%d n=%d (one rounding)", s.B, s.T, s.C, s.t0, s.n);
        t_check(name, t_nmse_fd(out, ref, no), T_U * T_U);
        t_fill_garbage(dx, nx);
        meanpool_backward(&ctx, dx, Rf, s.B, s.T, s.C, s.t0, s.n);
        TFdLoss f = { ref_meanpool, &s, tmp, R, no };
        /* dout · fl(1/n): two roundings; the FD gradient is exactly 0 off the pooled range
         * and dx must be exactly 0 there (score term 0/(0+0+floor) = 0) */
        t_check("meanpool dx grad (K=2)", t_grad_score_ref(&f, x, nx, dx), grad_thr(2));
        free(x); free(ref); free(R); free(tmp); free(xf); free(out); free(Rf); free(dx);
    }
    {
        const int B = 5, T = 60, C = 150, t0 = 1, n = 59;
        long nx = (long)B * T * C;
        float *x = t_fnew(nx), *o1 = t_fnew((long)B * C), *o3 = t_fnew((long)B * C);
        t_frandn(rng, x, nx, 1.0);
        t_set_threads(1); meanpool_forward(&ctx, o1, x, B, T, C, t0, n);
        t_set_threads(3); meanpool_forward(&ctx, o3, x, B, T, C, t0, n);
        t_set_threads(ctx.threads);
        t_true("meanpool_forward bit-identical with 1 and 3 threads", !memcmp(o1, o3, (long)B * C * 4));
        free(x); free(o1); free(o3);
    }
}

int main(void) {
    if (ctx_open(&ctx, "cpu", 0, 1)) return 2;
    TRng rng = { 777 };
    test_layernorm(&rng);
    test_gelu(&rng);
    test_pointwise(&rng);
    test_meanpool(&rng);
    ctx_close(&ctx);
    return t_summary();
}
