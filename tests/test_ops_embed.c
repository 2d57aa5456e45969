/* tests/test_ops_embed.c — CPU ops of the embedding stage: patchify / unpatchify,
 * tokens_concat, pos_embed_add, pos_resample.
 *
 * Each op is checked against a naive float64 reference written here (independent loops,
 * never the kernel), by NMSE of the forward, and by central finite differences of the
 * reference for EVERY input and parameter: L = Σ out ⊙ R with fixed random R, so dL/dx is
 * the backward op applied to dout = R (R is float-exact, so the float op sees the same R).
 * Parameter gradients must accumulate, input gradients overwrite, reductions must give the
 * same bits for 1 and 3 threads, and bad arguments must exit(2).
 *
 * Thresholds (U = 2^-24, the fp32 unit roundoff):
 *   - pure data movement: NMSE exactly 0;
 *   - an output that is one fp32 rounding of an exact value: NMSE <= U^2;
 *   - gradient score (mean |a-b|/(|a|+|b|+floor)), grad_thr(K) below.
 */
#include "../kernels/ops.h"
#include "testing.h"

static Ctx ctx;

/* Gradient-score threshold for an analytic fp32 gradient that went through K fp32 roundings
 * (each <= U relative to the magnitudes summed), against float64 central differences:
 *   - FD error of these ops (linear or smooth, h = 1e-5): rounding ~1.1e-16 * Σ|terms| / 2h
 *     <= 1e4 * 1.1e-16 / 2e-5 ≈ 5e-8 for our sizes, plus h^2 truncation ~1e-10: the 1e-6
 *     term is that with a 20x margin;
 *   - fp32 error: score ≈ rel.err / 2 per element, K*U worst case, but elements whose true
 *     gradient is near 0 (cancellation) have a larger relative error, cut off by the floor
 *     at 1e-6 of the max: averaging 1/|g| over such a tail gives a factor ≲ ln(1e6) ≈ 14,
 *     doubled for safety -> 30 K U. */
static double grad_thr(double K) { return 1e-6 + 30.0 * K * T_U; }

/* ======================================================================================= */
/* patchify / unpatchify                                                                   */
typedef struct { int B, C, D, H, W, pd, ph, pw; const double* x; } PatchSt;

/* maps each image element to its (patch, k) slot: written from the image side */
static long patch_slot(const PatchSt* s, int b, int c, int z, int y, int x) {
    int nh = s->H / s->ph, nw = s->W / s->pw;
    long P = (long)(s->D / s->pd) * nh * nw, K = (long)s->C * s->pd * s->ph * s->pw;
    long p = ((long)(z / s->pd) * nh + y / s->ph) * nw + x / s->pw;
    long k = (((long)c * s->pd + z % s->pd) * s->ph + y % s->ph) * s->pw + x % s->pw;
    return ((long)b * P + p) * K + k;
}
static void ref_patchify(const void* st, double* out) {
    const PatchSt* s = st;
    long i = 0;
    for (int b = 0; b < s->B; b++) for (int c = 0; c < s->C; c++) for (int z = 0; z < s->D; z++)
        for (int y = 0; y < s->H; y++) for (int x = 0; x < s->W; x++)
            out[patch_slot(s, b, c, z, y, x)] = s->x[i++];
}
static void ref_unpatchify(const void* st, double* img) {
    const PatchSt* s = st;
    long i = 0;
    for (int b = 0; b < s->B; b++) for (int c = 0; c < s->C; c++) for (int z = 0; z < s->D; z++)
        for (int y = 0; y < s->H; y++) for (int x = 0; x < s->W; x++)
            img[i++] = s->x[patch_slot(s, b, c, z, y, x)];
}

static void test_patchify(TRng* rng) {
    static const int shapes[][8] = {   /* B, C, D, H, W, pd, ph, pw */
        { 2, 3, 1, 8, 12, 1, 4, 4 },     /* 2D RGB, non-square */
        { 3, 1, 4, 8, 6, 2, 4, 3 },      /* 3D, patch 2x4x3, one channel */
        { 1, 3, 6, 12, 9, 3, 4, 3 },
        { 1, 7, 1, 5, 5, 1, 5, 5 },      /* a single patch */
        { 2, 2, 2, 3, 3, 1, 1, 1 },      /* 1x1x1 patches */
    };
    for (unsigned si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const int* v = shapes[si];
        PatchSt s = { v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], NULL };
        long n = (long)s.B * s.C * s.D * s.H * s.W;
        double *x = t_dnew(n), *ref = t_dnew(n), *R = t_dnew(n);
        float *xf = t_fnew(n), *out = t_fnew(n), *back = t_fnew(n), *Rf = t_fnew(n), *g = t_fnew(n);
        t_randn(rng, x, xf, n, 1.0);
        t_randn(rng, R, Rf, n, 1.0);
        s.x = x;
        char name[128];

        patchify_forward(&ctx, out, xf, s.B, s.C, s.D, s.H, s.W, s.pd, s.ph, s.pw);
        ref_patchify(&s, ref);
        snprintf(name, sizeof name, "patchify NMSE [%d,%d,%d,%d,%d]/%dx%dx%d (copy: exact)",
                 s.B, s.C, s.D, s.H, s.W, s.pd, s.ph, s.pw);
        t_check(name, t_nmse_fd(out, ref, n), 0.0);

        unpatchify_forward(&ctx, back, out, s.B, s.C, s.D, s.H, s.W, s.pd, s.ph, s.pw);
        t_true("unpatchify(patchify(x)) == x bit-exact", !memcmp(back, xf, n * sizeof(float)));
        s.x = ref;                                /* the reference's own inverse, from patches */
        double* img = t_dnew(n);
        ref_unpatchify(&s, img);
        t_check("unpatchify NMSE vs reference (copy: exact)", t_nmse_fd(back, img, n), 0.0);
        free(img);

        /* d/dimg Σ patchify(img) R = unpatchify(R); and the other way round */
        double* tmp = t_dnew(n);
        s.x = x;
        TFdLoss f = { ref_patchify, &s, tmp, R, n };
        unpatchify_forward(&ctx, g, Rf, s.B, s.C, s.D, s.H, s.W, s.pd, s.ph, s.pw);
        t_check("patchify grad (= unpatchify dout), copies: K=0", t_grad_score_ref(&f, x, n, g), grad_thr(0));
        TFdLoss f2 = { ref_unpatchify, &s, tmp, R, n };
        patchify_forward(&ctx, g, Rf, s.B, s.C, s.D, s.H, s.W, s.pd, s.ph, s.pw);
        t_check("unpatchify grad (= patchify dout), copies: K=0", t_grad_score_ref(&f2, x, n, g), grad_thr(0));
        free(tmp);
        free(x); free(ref); free(R); free(xf); free(out); free(back); free(Rf); free(g);
    }
}

/* ======================================================================================= */
/* tokens_concat                                                                           */
typedef struct { int B, R, E, P, C, ncls; const double *cls, *reg, *extra, *patches; } TokSt;

static void ref_tokens(const void* st, double* out) {
    const TokSt* s = st;
    int T = s->ncls + s->R + s->E + s->P;
    for (int b = 0; b < s->B; b++) {
        int t = 0;
        for (int i = 0; i < s->ncls; i++, t++)
            for (int c = 0; c < s->C; c++) out[((long)b * T + t) * s->C + c] = s->cls[c];
        for (int r = 0; r < s->R; r++, t++)
            for (int c = 0; c < s->C; c++) out[((long)b * T + t) * s->C + c] = s->reg[r * s->C + c];
        for (int e = 0; e < s->E; e++, t++)
            for (int c = 0; c < s->C; c++)
                out[((long)b * T + t) * s->C + c] = s->extra[((long)e * s->B + b) * s->C + c];
        for (int p = 0; p < s->P; p++, t++)
            for (int c = 0; c < s->C; c++)
                out[((long)b * T + t) * s->C + c] = s->patches[((long)b * s->P + p) * s->C + c];
    }
}

static void test_tokens(TRng* rng) {
    static const int shapes[][6] = {   /* B, R, E, P, C, has cls */
        { 2, 4, 0, 9, 7, 1 },
        { 3, 0, 2, 13, 5, 1 },
        { 1, 2, 1, 6, 1, 0 },
        { 3, 1, 2, 5, 3, 1 },
        { 4, 0, 0, 7, 6, 0 },
    };
    for (unsigned si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const int* v = shapes[si];
        TokSt s = { v[0], v[1], v[2], v[3], v[4], v[5], NULL, NULL, NULL, NULL };
        const int B = s.B, C = s.C, T = s.ncls + s.R + s.E + s.P;
        long ncl = C, nreg = (long)s.R * C, nex = (long)s.E * B * C, npa = (long)B * s.P * C;
        long nout = (long)B * T * C;
        double *cls = t_dnew(ncl), *reg = t_dnew(nreg), *ex = t_dnew(nex), *pa = t_dnew(npa);
        float *clsf = t_fnew(ncl), *regf = t_fnew(nreg), *exf = t_fnew(nex), *paf = t_fnew(npa);
        t_randn(rng, cls, clsf, ncl, 1.0); t_randn(rng, reg, regf, nreg, 1.0);
        t_randn(rng, ex, exf, nex, 1.0);   t_randn(rng, pa, paf, npa, 1.0);
        s.cls = cls; s.reg = reg; s.extra = ex; s.patches = pa;
        double *ref = t_dnew(nout), *R = t_dnew(nout);
        float *out = t_fnew(nout), *Rf = t_fnew(nout);
        t_randn(rng, R, Rf, nout, 1.0);
        char name[128];

        tokens_concat_forward(&ctx, out, s.ncls ? clsf : NULL, s.R ? regf : NULL, s.E ? exf : NULL,
                              paf, B, s.R, s.E, s.P, C);
        ref_tokens(&s, ref);
        snprintf(name, sizeof name, "tokens_concat NMSE B=%d cls=%d R=%d E=%d P=%d C=%d (copy: exact)",
                 B, s.ncls, s.R, s.E, s.P, C);
        t_check(name, t_nmse_fd(out, ref, nout), 0.0);

        /* backward into zeroed / prefilled buffers */
        float *dcls = t_fnew(ncl), *dreg = t_fnew(nreg), *dex = t_fnew(nex), *dpa = t_fnew(npa);
        tokens_concat_backward(&ctx, s.ncls ? dcls : NULL, s.R ? dreg : NULL, s.E ? dex : NULL, dpa,
                               Rf, B, s.R, s.E, s.P, C);
        double* tmp = t_dnew(nout);
        TFdLoss f = { ref_tokens, &s, tmp, R, nout };
        /* dcls/dreg: sums of B float values: K = B-1 roundings */
        if (s.ncls) t_check("tokens_concat dcls grad (sum over B: K=B-1)", t_grad_score_ref(&f, cls, ncl, dcls), grad_thr(B - 1));
        if (s.R) t_check("tokens_concat dreg grad (sum over B: K=B-1)", t_grad_score_ref(&f, reg, nreg, dreg), grad_thr(B - 1));
        if (s.E) t_check("tokens_concat dextra grad (copy: K=0)", t_grad_score_ref(&f, ex, nex, dex), grad_thr(0));
        t_check("tokens_concat dpatches grad (copy: K=0)", t_grad_score_ref(&f, pa, npa, dpa), grad_thr(0));

        /* parameters accumulate: prefilled g0, two calls -> g0 + 2 g1; inputs overwrite */
        float *g0c = t_fnew(ncl), *g0r = t_fnew(nreg), *acl = t_fnew(ncl), *are = t_fnew(nreg);
        float *dex2 = t_fnew(nex), *dpa2 = t_fnew(npa);
        t_frandn(rng, g0c, ncl, 1.0); t_frandn(rng, g0r, nreg, 1.0);
        memcpy(acl, g0c, ncl * sizeof(float)); memcpy(are, g0r, nreg * sizeof(float));
        t_fill_garbage(dex2, nex); t_fill_garbage(dpa2, npa);
        for (int rep = 0; rep < 2; rep++)
            tokens_concat_backward(&ctx, s.ncls ? acl : NULL, s.R ? are : NULL, s.E ? dex2 : NULL, dpa2,
                                   Rf, B, s.R, s.E, s.P, C);
        if (s.ncls) t_check("tokens_concat dcls accumulates (ratio to 2U bound)", t_accum_ratio(acl, g0c, dcls, ncl), 1.0);
        if (s.R) t_check("tokens_concat dreg accumulates (ratio to 2U bound)", t_accum_ratio(are, g0r, dreg, nreg), 1.0);
        t_true("tokens_concat dextra/dpatches overwrite",
               !memcmp(dex2, dex, nex * sizeof(float)) && !memcmp(dpa2, dpa, npa * sizeof(float)));

        free(g0c); free(g0r); free(acl); free(are); free(dex2); free(dpa2);
        free(tmp); free(dcls); free(dreg); free(dex); free(dpa);
        free(cls); free(reg); free(ex); free(pa); free(clsf); free(regf); free(exf); free(paf);
        free(ref); free(R); free(out); free(Rf);
    }

    /* thread-count independence of the parameter reductions */
    {
        const int B = 9, R = 4, E = 3, P = 50, C = 200, T = 1 + R + E + P;
        long nout = (long)B * T * C;
        float *dout = t_fnew(nout), *g[2][4];
        t_frandn(rng, dout, nout, 1.0);
        for (int k = 0; k < 2; k++) {
            g[k][0] = t_fnew(C); g[k][1] = t_fnew((long)R * C); g[k][2] = t_fnew((long)E * B * C); g[k][3] = t_fnew((long)B * P * C);
            t_set_threads(k ? 3 : 1);
            tokens_concat_backward(&ctx, g[k][0], g[k][1], g[k][2], g[k][3], dout, B, R, E, P, C);
        }
        t_set_threads(ctx.threads);
        t_true("tokens_concat_backward bit-identical with 1 and 3 threads",
               !memcmp(g[0][0], g[1][0], C * sizeof(float)) && !memcmp(g[0][1], g[1][1], (long)R * C * sizeof(float)) &&
               !memcmp(g[0][2], g[1][2], (long)E * B * C * sizeof(float)) &&
               !memcmp(g[0][3], g[1][3], (long)B * P * C * sizeof(float)));
        for (int k = 0; k < 2; k++) for (int j = 0; j < 4; j++) free(g[k][j]);
        free(dout);
    }
}

/* ======================================================================================= */
/* pos_embed_add                                                                           */
typedef struct { int B, T, C, t0, n, p0; const double *x, *pos; } PosSt;

static void ref_pos_add(const void* st, double* out) {
    const PosSt* s = st;
    for (int b = 0; b < s->B; b++)
        for (int t = 0; t < s->T; t++)
            for (int c = 0; c < s->C; c++) {
                long i = ((long)b * s->T + t) * s->C + c;
                out[i] = s->x[i];
                if (t >= s->t0 && t < s->t0 + s->n) out[i] += s->pos[(long)(t - s->t0 + s->p0) * s->C + c];
            }
}

static void test_pos_add(TRng* rng) {
    static const int shapes[][7] = {   /* B, T, C, t0, n, p0, pos rows */
        { 2, 13, 7, 1, 12, 0, 12 },
        { 3, 10, 5, 2, 8, 1, 9 },        /* pos has a cls row, skipped by p0 */
        { 1, 6, 1, 0, 6, 0, 6 },
        { 4, 9, 3, 0, 5, 2, 7 },
    };
    for (unsigned si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const int* v = shapes[si];
        PosSt s = { v[0], v[1], v[2], v[3], v[4], v[5], NULL, NULL };
        long nx = (long)s.B * s.T * s.C, np = (long)v[6] * s.C;
        double *x = t_dnew(nx), *pos = t_dnew(np), *ref = t_dnew(nx), *R = t_dnew(nx);
        float *xf = t_fnew(nx), *posf = t_fnew(np), *Rf = t_fnew(nx);
        t_randn(rng, x, xf, nx, 1.0); t_randn(rng, pos, posf, np, 1.0); t_randn(rng, R, Rf, nx, 1.0);
        s.x = x; s.pos = pos;
        char name[128];
        pos_embed_add_forward(&ctx, xf, posf, s.B, s.T, s.C, s.t0, s.n, s.p0);
        ref_pos_add(&s, ref);
        snprintf(name, sizeof name, "pos_embed_add NMSE B=%d T=%d C=%d t0=%d n=%d p0=%d (one add: U^2)",
                 s.B, s.T, s.C, s.t0, s.n, s.p0);
        t_check(name, t_nmse_fd(xf, ref, nx), T_U * T_U);

        float* dpos = t_fnew(np);
        pos_embed_add_backward(&ctx, dpos, Rf, s.B, s.T, s.C, s.t0, s.n, s.p0);
        double* tmp = t_dnew(nx);
        TFdLoss f = { ref_pos_add, &s, tmp, R, nx };
        t_check("pos_embed_add dpos grad (sum over B: K=B-1)", t_grad_score_ref(&f, pos, np, dpos), grad_thr(s.B - 1));
        /* dx is the identity (the op is in place; the engine passes dout through) */
        t_check("pos_embed_add dx grad (identity: K=0)", t_grad_score_ref(&f, x, nx, Rf), grad_thr(0));

        float *g0 = t_fnew(np), *acc = t_fnew(np);
        t_frandn(rng, g0, np, 1.0);
        memcpy(acc, g0, np * sizeof(float));
        for (int rep = 0; rep < 2; rep++) pos_embed_add_backward(&ctx, acc, Rf, s.B, s.T, s.C, s.t0, s.n, s.p0);
        /* rows outside [p0, p0+n) must be untouched: there g1 = 0, so the bound is exact */
        t_check("pos_embed_add dpos accumulates (ratio to 2U bound)", t_accum_ratio(acc, g0, dpos, np), 1.0);
        free(g0); free(acc); free(tmp); free(dpos);
        free(x); free(pos); free(ref); free(R); free(xf); free(posf); free(Rf);
    }
    {
        const int B = 7, T = 60, C = 96, t0 = 3, n = 55, p0 = 1;
        long nx = (long)B * T * C, np = (long)(n + 1) * C;
        float *dx = t_fnew(nx), *g1 = t_fnew(np), *g3 = t_fnew(np);
        t_frandn(rng, dx, nx, 1.0);
        t_set_threads(1); pos_embed_add_backward(&ctx, g1, dx, B, T, C, t0, n, p0);
        t_set_threads(3); pos_embed_add_backward(&ctx, g3, dx, B, T, C, t0, n, p0);
        t_set_threads(ctx.threads);
        t_true("pos_embed_add_backward bit-identical with 1 and 3 threads", !memcmp(g1, g3, np * sizeof(float)));
        free(dx); free(g1); free(g3);
    }
}

/* ======================================================================================= */
/* pos_resample                                                                            */

/* Keys' cubic convolution kernel, a = -0.75, written in its |x| form (the kernel uses
 * PyTorch's per-tap polynomials): an independent statement of the same weights */
static double keys(double x) {
    const double a = -0.75;
    x = fabs(x);
    if (x <= 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
    if (x < 2) return a * x * x * x - 5 * a * x * x + 8 * a * x - 4 * a;
    return 0;
}
static int clampi(int v, int hi) { return v < 0 ? 0 : v > hi ? hi : v; }

/* dense 1D resampling matrix M [out, in] of one axis, align_corners = false */
static void axis_matrix(double* M, int in, int out, int mode) {
    memset(M, 0, sizeof(double) * in * out);
    for (int o = 0; o < out; o++) {
        double src = (o + 0.5) * in / out - 0.5;
        if (mode == POS_TRILINEAR) {
            if (src < 0) src = 0;
            int f = (int)floor(src);
            for (int j = f; j <= f + 1; j++) {
                double w = 1 - fabs(src - j);
                if (w > 0) M[(long)o * in + clampi(j, in - 1)] += w;
            }
        } else {
            int f = (int)floor(src);
            for (int j = f - 1; j <= f + 2; j++) M[(long)o * in + clampi(j, in - 1)] += keys(src - j);
        }
    }
}

typedef struct { int C, d0, h0, w0, d1, h1, w1, mode; const double* x; double *Md, *Mh, *Mw; } ResSt;

static void ref_resample(const void* st, double* out) {
    const ResSt* s = st;
    const int C = s->C;
    for (int z = 0; z < s->d1; z++) for (int y = 0; y < s->h1; y++) for (int x = 0; x < s->w1; x++) {
        double* o = out + (((long)z * s->h1 + y) * s->w1 + x) * C;
        for (int c = 0; c < C; c++) o[c] = 0;
        for (int a = 0; a < s->d0; a++) for (int j = 0; j < s->h0; j++) for (int i = 0; i < s->w0; i++) {
            double w = s->Md[(long)z * s->d0 + a] * s->Mh[(long)y * s->h0 + j] * s->Mw[(long)x * s->w0 + i];
            if (w == 0) continue;
            const double* src = s->x + (((long)a * s->h0 + j) * s->w0 + i) * C;
            for (int c = 0; c < C; c++) o[c] += w * src[c];
        }
    }
}

/* nonzeros of one column of M (how many outputs an input feeds, per axis) */
static int max_col_nnz(const double* M, int in, int out) {
    int mx = 0;
    for (int i = 0; i < in; i++) {
        int k = 0;
        for (int o = 0; o < out; o++) k += M[(long)o * in + i] != 0;
        if (k > mx) mx = k;
    }
    return mx;
}

static void bad_bicubic_3d(void) {
    float buf[64] = { 0 }, out[64];
    pos_resample_forward(&ctx, out, buf, 1, 2, 2, 2, 2, 2, 2, POS_BICUBIC);
}
static void bad_mode(void) {
    float buf[64] = { 0 }, out[64];
    pos_resample_forward(&ctx, out, buf, 1, 1, 2, 2, 1, 2, 2, 7);
}
static void bad_patch(void) {
    float buf[256] = { 0 }, out[256];
    patchify_forward(&ctx, out, buf, 1, 1, 1, 10, 12, 1, 4, 4);
}

static void test_resample(TRng* rng) {
    static const int cases[][8] = {   /* C, d0, h0, w0, d1, h1, w1, mode */
        { 3, 1, 5, 4, 1, 7, 9, POS_BICUBIC },     /* upsample, non-square */
        { 1, 1, 6, 6, 1, 4, 3, POS_BICUBIC },     /* downsample */
        { 2, 1, 2, 3, 1, 8, 5, POS_BICUBIC },     /* strong upsample: clamped taps everywhere */
        { 8, 1, 14, 14, 1, 16, 16, POS_BICUBIC }, /* the ViT-B/16 224 -> 256 case */
        { 7, 1, 4, 4, 1, 4, 4, POS_BICUBIC },     /* same size: must be an exact copy */
        { 3, 3, 4, 5, 5, 3, 7, POS_TRILINEAR },
        { 1, 2, 2, 2, 4, 5, 3, POS_TRILINEAR },
        { 5, 2, 3, 4, 2, 3, 4, POS_TRILINEAR },   /* same size */
        { 4, 4, 6, 6, 2, 3, 3, POS_TRILINEAR },   /* downsample */
    };
    for (unsigned ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const int* v = cases[ci];
        ResSt s = { v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], NULL, NULL, NULL, NULL };
        const int C = s.C;
        long nin = (long)s.d0 * s.h0 * s.w0 * C, nout = (long)s.d1 * s.h1 * s.w1 * C;
        s.Md = t_dnew((long)s.d0 * s.d1); s.Mh = t_dnew((long)s.h0 * s.h1); s.Mw = t_dnew((long)s.w0 * s.w1);
        if (s.mode == POS_BICUBIC) s.Md[0] = 1; else axis_matrix(s.Md, s.d0, s.d1, s.mode);
        axis_matrix(s.Mh, s.h0, s.h1, s.mode);
        axis_matrix(s.Mw, s.w0, s.w1, s.mode);
        double *x = t_dnew(nin), *ref = t_dnew(nout), *R = t_dnew(nout);
        float *xf = t_fnew(nin), *out = t_fnew(nout), *Rf = t_fnew(nout), *din = t_fnew(nin);
        t_randn(rng, x, xf, nin, 1.0); t_randn(rng, R, Rf, nout, 1.0);
        s.x = x;
        const char* mname = s.mode == POS_BICUBIC ? "bicubic" : "trilinear";
        const int same = s.d0 == s.d1 && s.h0 == s.h1 && s.w0 == s.w1;
        char name[160];

        pos_resample_forward(&ctx, out, xf, C, s.d0, s.h0, s.w0, s.d1, s.h1, s.w1, s.mode);
        ref_resample(&s, ref);
        /* K taps per output (16 bicubic, 8 trilinear). fp32 error per output, relative to
         * Σ|w||x|: (K+1)U from the weight products and the K-term sum, plus the weights
         * themselves: src = (o+.5)in/out - .5 and its fraction carry ~2U|src| <= 2U·in
         * absolute error, times |dw/df| <= 1.5 -> 3(in+2)U. NMSE <= K ε^2 since
         * E(Σ|w||x|)^2 / E(Σwx)^2 <= (Σ|w|)^2/Σw^2 <= K (Cauchy-Schwarz). */
        int K = s.mode == POS_BICUBIC ? 16 : 8;
        int inmax = s.h0 > s.w0 ? s.h0 : s.w0; if (s.d0 > inmax) inmax = s.d0;
        double eps = (K + 1 + 3.0 * (inmax + 2)) * T_U;
        snprintf(name, sizeof name, "pos_resample %s NMSE C=%d %dx%dx%d->%dx%dx%d", mname, C,
                 s.d0, s.h0, s.w0, s.d1, s.h1, s.w1);
        t_check(name, t_nmse_fd(out, ref, nout), same ? 0.0 : K * eps * eps);
        if (same) t_true("pos_resample same size is a bit-exact copy", !memcmp(out, xf, nin * sizeof(float)));

        t_fill_garbage(din, nin);   /* overwrite semantics */
        pos_resample_backward(&ctx, din, Rf, C, s.d0, s.h0, s.w0, s.d1, s.h1, s.w1, s.mode);
        double* tmp = t_dnew(nout);
        TFdLoss f = { ref_resample, &s, tmp, R, nout };
        /* each input gathers m = Π_axes (outputs it feeds) weighted terms: m+1 roundings for
         * the products and the sum, plus the weight error 3(in+2) above */
        int m = max_col_nnz(s.Md, s.d0, s.d1) * max_col_nnz(s.Mh, s.h0, s.h1) * max_col_nnz(s.Mw, s.w0, s.w1);
        if (s.mode == POS_BICUBIC) m = max_col_nnz(s.Mh, s.h0, s.h1) * max_col_nnz(s.Mw, s.w0, s.w1);
        double Kg = m + 1 + 3.0 * (inmax + 2);
        snprintf(name, sizeof name, "pos_resample %s din grad (K=%d+1+3(in+2))", mname, m);
        t_check(name, t_grad_score_ref(&f, x, nin, din), grad_thr(Kg));
        free(tmp);
        free(x); free(ref); free(R); free(xf); free(out); free(Rf); free(din);
        free(s.Md); free(s.Mh); free(s.Mw);
    }

    /* thread-count independence (the backward scatters; 40 channels = 3 channel blocks) */
    for (int mode = 0; mode < 2; mode++) {
        const int C = 40, d0 = mode ? 3 : 1, h0 = 7, w0 = 9, d1 = mode ? 5 : 1, h1 = 11, w1 = 6;
        long nin = (long)d0 * h0 * w0 * C, nout = (long)d1 * h1 * w1 * C;
        float *x = t_fnew(nin), *g = t_fnew(nout), *o1 = t_fnew(nout), *o3 = t_fnew(nout), *b1 = t_fnew(nin), *b3 = t_fnew(nin);
        t_frandn(rng, x, nin, 1.0); t_frandn(rng, g, nout, 1.0);
        t_set_threads(1);
        pos_resample_forward(&ctx, o1, x, C, d0, h0, w0, d1, h1, w1, mode);
        pos_resample_backward(&ctx, b1, g, C, d0, h0, w0, d1, h1, w1, mode);
        t_set_threads(3);
        pos_resample_forward(&ctx, o3, x, C, d0, h0, w0, d1, h1, w1, mode);
        pos_resample_backward(&ctx, b3, g, C, d0, h0, w0, d1, h1, w1, mode);
        t_set_threads(ctx.threads);
        t_true(mode ? "pos_resample trilinear fwd+bwd bit-identical with 1 and 3 threads"
                    : "pos_resample bicubic fwd+bwd bit-identical with 1 and 3 threads",
               !memcmp(o1, o3, nout * sizeof(float)) && !memcmp(b1, b3, nin * sizeof(float)));
        free(x); free(g); free(o1); free(o3); free(b1); free(b3);
    }

    t_expect_exit2("pos_resample bicubic with d=2 exits 2", bad_bicubic_3d);
    t_expect_exit2("pos_resample unknown mode exits 2", bad_mode);
    t_expect_exit2("patchify with a non-divisible image exits 2", bad_patch);
}

int main(void) {
    if (ctx_open(&ctx, "cpu", 0, 1)) return 2;
    TRng rng = { 20240611 };
    test_patchify(&rng);
    test_tokens(&rng);
    test_pos_add(&rng);
    test_resample(&rng);
    ctx_close(&ctx);
    return t_summary();
}
