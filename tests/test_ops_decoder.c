/* tests/test_ops_decoder.c — CPU ops of the dense decoder heads: conv3d, convT, instnorm,
 * batchnorm, leaky_relu, upsample, concat_channels, tokens_to_grid, resample_axis.
 *
 * Method (as test_ops_norm_act.c): a naive float64 reference written here, NMSE of the fp32
 * forward against it on odd shapes, 2D (D = 1) and anisotropic kernels/factors; central
 * finite differences of the reference for every input and parameter with L = Σ out ⊙ R
 * (R float-exact), compared with the fp32 backward fed dout = R (shapes too big for finite
 * differences compare with a float64 adjoint written here instead). Parameter gradients must
 * accumulate, input gradients overwrite; every op gives the same bits with 1 and 2 threads.
 * Layout conventions against PyTorch are checked by test_ops_decoder_oracle.c.
 *
 * Thresholds (U = 2^-24):
 *   - one fp32 rounding of an exact value: NMSE <= U^2; pure copies: exactly 0.
 *   - fp32 dot products of K terms (sgemm, any blocking) plus r further roundings: each
 *     addition adds an error <= U |partial sum|; in the standard probabilistic model these
 *     are independent with variance <= U^2/3 |s_j|^2, and E s_j^2 <= E out^2 for sums of
 *     independent zero-mean terms, so NMSE <= (K + r) U^2 / 3. Threshold 10 (K + r) U^2
 *     (30x that model): dot_thr(K + r).
 *   - gradient scores: grad_thr(K) of test_ops_norm_act.c, 1e-6 + 30 K U, K the roundings
 *     relative to the magnitudes; for a sum of N terms the same probabilistic model gives a
 *     relative error ~ sqrt(N) U, so K = sqrt(N) + (other roundings).
 *   - normalisations: as layernorm, ε = (5 + |m|/σ) U, NMSE <= 4 ε^2.
 */
#include "../kernels/ops.h"
#include "../kernels/cpu/cpu.h"
#include "testing.h"

#include <time.h>

static Ctx ctx;

static double grad_thr(double K) { return 1e-6 + 30.0 * K * T_U; }
static double dot_thr(double K) { return 10.0 * K * T_U * T_U; }

/* a float-exact random array in double and float */
typedef struct { long n; double* d; float* f; } Arr;
static Arr arr_rand(TRng* rng, long n, double scale) {
    Arr a = { n, t_dnew(n), t_fnew(n) };
    t_randn(rng, a.d, a.f, n, scale);
    return a;
}
static void arr_free(Arr* a) { free(a->d); free(a->f); }

static int same(const float* a, const float* b, long n) { return !memcmp(a, b, (size_t)n * sizeof(float)); }

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* ======================================================================================= */
/* conv3d                                                                                  */
typedef struct { int B, Ci, Co, D, H, W, kd, kh, kw; const double *x, *w, *b; } ConvSt;

#define VOX(s, b, ch, C, z, y, x) ((((long)(b) * (C) + (ch)) * (s)->D + (z)) * (s)->H + (y)) * (s)->W + (x)

static void ref_conv(const void* stv, double* out) {
    const ConvSt* s = stv;
    const int pd = s->kd / 2, ph = s->kh / 2, pw = s->kw / 2;
    for (int b = 0; b < s->B; b++)
        for (int o = 0; o < s->Co; o++)
            for (int z = 0; z < s->D; z++)
                for (int y = 0; y < s->H; y++)
                    for (int x = 0; x < s->W; x++) {
                        double acc = s->b ? s->b[o] : 0.0;
                        for (int i = 0; i < s->Ci; i++)
                            for (int dz = 0; dz < s->kd; dz++) {
                                const int zz = z + dz - pd;
                                if (zz < 0 || zz >= s->D) continue;
                                for (int dy = 0; dy < s->kh; dy++) {
                                    const int yy = y + dy - ph;
                                    if (yy < 0 || yy >= s->H) continue;
                                    for (int dx = 0; dx < s->kw; dx++) {
                                        const int xx = x + dx - pw;
                                        if (xx < 0 || xx >= s->W) continue;
                                        acc += s->w[((((long)o * s->Ci + i) * s->kd + dz) * s->kh + dy) * s->kw + dx]
                                             * s->x[VOX(s, b, i, s->Ci, zz, yy, xx)];
                                    }
                                }
                            }
                        out[VOX(s, b, o, s->Co, z, y, x)] = acc;
                    }
}

/* the float64 adjoint: dx = Σ w g, dw = Σ x g, db = Σ g (all written) */
static void ref_conv_bwd(const ConvSt* s, const double* g, double* dx, double* dw, double* db) {
    const int pd = s->kd / 2, ph = s->kh / 2, pw = s->kw / 2;
    memset(dx, 0, sizeof(double) * s->B * s->Ci * s->D * s->H * s->W);
    memset(dw, 0, sizeof(double) * s->Co * s->Ci * s->kd * s->kh * s->kw);
    memset(db, 0, sizeof(double) * s->Co);
    for (int b = 0; b < s->B; b++)
        for (int o = 0; o < s->Co; o++)
            for (int z = 0; z < s->D; z++)
                for (int y = 0; y < s->H; y++)
                    for (int x = 0; x < s->W; x++) {
                        const double gv = g[VOX(s, b, o, s->Co, z, y, x)];
                        db[o] += gv;
                        for (int i = 0; i < s->Ci; i++)
                            for (int dz = 0; dz < s->kd; dz++) {
                                const int zz = z + dz - pd;
                                if (zz < 0 || zz >= s->D) continue;
                                for (int dy = 0; dy < s->kh; dy++) {
                                    const int yy = y + dy - ph;
                                    if (yy < 0 || yy >= s->H) continue;
                                    for (int dx_ = 0; dx_ < s->kw; dx_++) {
                                        const int xx = x + dx_ - pw;
                                        if (xx < 0 || xx >= s->W) continue;
                                        const long wi = ((((long)o * s->Ci + i) * s->kd + dz) * s->kh + dy) * s->kw + dx_;
                                        const long xi = VOX(s, b, i, s->Ci, zz, yy, xx);
                                        dx[xi] += s->w[wi] * gv;
                                        dw[wi] += s->x[xi] * gv;
                                    }
                                }
                            }
                    }
}

/* conv3d and convT have the same signatures (k: kernel sizes / factors) and the same checks
 * after the gradient ones: one op at one shape, with its input, weight and output sizes */
typedef struct {
    const char* name;
    __typeof__(conv3d_forward)* fwd;
    __typeof__(conv3d_backward)* bwd;
    int B, Ci, Co, D, H, W, k[3];
    long nx, nw, no;
} ConvOp;
static void op_fwd(const ConvOp* o, float* out, const float* x, const float* w, const float* b) {
    o->fwd(&ctx, out, x, w, b, o->B, o->Ci, o->Co, o->D, o->H, o->W, o->k[0], o->k[1], o->k[2]);
}
static void op_bwd(const ConvOp* o, float* dx, float* dw, float* db, const float* g,
                   const float* x, const float* w) {
    o->bwd(&ctx, dx, dw, db, g, x, w, o->B, o->Ci, o->Co, o->D, o->H, o->W, o->k[0], o->k[1],
           o->k[2]);
}

/* din, dW and dbias (when bd) against central differences of L = Σ ref(st) ⊙ gd:
 * thresholds grad_thr(kin) (kin_s: how kin is made), grad_thr(sqrt(B S) + 2), grad_thr(1) */
static void conv_fd_checks(const ConvOp* op, void (*ref)(const void*, double*), const void* st,
                           const double* gd, double* xd, double* wd, double* bd, const float* dx,
                           const float* dw, const float* db, const char* kin_s, double kin) {
    const long S = (long)op->D * op->H * op->W;
    char name[200];
    double* tmp = t_dnew(op->no);
    TFdLoss f = { ref, st, tmp, gd, op->no };
    snprintf(name, sizeof name, "  %s din grad (K=%s)", op->name, kin_s);
    t_check(name, t_grad_score_ref(&f, xd, op->nx, dx), grad_thr(kin));
    snprintf(name, sizeof name, "  %s dW grad (K=sqrt(B S)+2)", op->name);
    t_check(name, t_grad_score_ref(&f, wd, op->nw, dw), grad_thr(sqrt((double)op->B * S) + 2));
    snprintf(name, sizeof name, "  %s dbias grad (K=1)", op->name);
    if (bd) t_check(name, t_grad_score_ref(&f, bd, op->Co, db), grad_thr(1));
    free(tmp);
}

/* dW / dbias accumulate, din overwrites, NULL grads skip, forward + backward bit-identical
 * with 1 and 2 threads. out, dx, dw, db: the results at the default thread count for upstream
 * gradient g and bias bf (NULL: none, db unchecked). */
static void conv_common_checks(TRng* rng, const ConvOp* op, const float* x, const float* w,
                               const float* bf, const float* g, const float* out,
                               const float* dx, const float* dw, const float* db) {
    const long nx = op->nx, nw = op->nw, no = op->no;
    const int Co = op->Co;
    char name[200];
    float *aw = t_fnew(nw), *ab = t_fnew(Co), *g0w = t_fnew(nw), *g0b = t_fnew(Co), *dx2 = t_fnew(nx);
    t_frandn(rng, g0w, nw, 1.0); t_frandn(rng, g0b, Co, 1.0);
    memcpy(aw, g0w, nw * 4); memcpy(ab, g0b, Co * 4);
    for (int rep = 0; rep < 2; rep++) op_bwd(op, dx2, aw, ab, g, x, w);
    snprintf(name, sizeof name, "  %s dW accumulates (ratio to 2U bound)", op->name);
    t_check(name, t_accum_ratio(aw, g0w, dw, nw), 1.0);
    snprintf(name, sizeof name, "  %s dbias accumulates (ratio to 2U bound)", op->name);
    if (bf) t_check(name, t_accum_ratio(ab, g0b, db, Co), 1.0);
    snprintf(name, sizeof name, "  %s din overwrites", op->name);
    t_true(name, same(dx2, dx, nx));
    float* dw1 = t_fnew(nw);
    op_bwd(op, NULL, dw1, NULL, g, x, w);
    t_fill_nan(dx2, nx);
    op_bwd(op, dx2, NULL, NULL, g, x, w);
    snprintf(name, sizeof name, "  %s NULL grads skip, the others unchanged", op->name);
    t_true(name, same(dw1, dw, nw) && same(dx2, dx, nx));
    float *o2 = t_fnew(no), *dx3 = t_fnew(nx), *dw3 = t_fnew(nw), *db3 = t_fnew(Co);
    int ok = 1;
    for (int th = 1; th <= 2; th++) {
        t_set_threads(th);
        memset(dw3, 0, nw * 4); memset(db3, 0, Co * 4);
        op_fwd(op, o2, x, w, bf);
        op_bwd(op, dx3, dw3, db3, g, x, w);
        ok = ok && same(o2, out, no) && same(dx3, dx, nx) && same(dw3, dw, nw);
        if (bf) ok = ok && same(db3, db, Co);
    }
    t_set_threads(ctx.threads);
    snprintf(name, sizeof name, "  %s fwd+bwd bit-identical with 1 and 2 threads", op->name);
    t_true(name, ok);
    free(o2); free(dx3); free(dw3); free(db3);
    free(aw); free(ab); free(g0w); free(g0b); free(dx2); free(dw1);
}

static const char* g_conv_impl = "";   /* which conv3d algorithm the names report */

static void test_conv3d(TRng* rng) {
    static const struct { int B, Ci, Co, D, H, W, kd, kh, kw, bias, fd; } cases[] = {
        { 2, 3, 4, 5, 6, 7, 3, 3, 3, 1, 1 },
        { 1, 2, 3, 4, 5, 3, 1, 3, 3, 1, 1 },     /* anisotropic: in-plane kernel on a volume */
        { 2, 3, 2, 1, 7, 9, 1, 3, 3, 1, 1 },     /* 2D */
        { 1, 2, 3, 3, 4, 6, 5, 3, 1, 0, 1 },     /* kernel deeper than the volume, no bias */
        { 2, 5, 3, 3, 4, 5, 1, 1, 1, 1, 1 },     /* pointwise: the input is its own col */
        { 1, 2, 2, 4, 3, 1, 3, 3, 3, 1, 1 },     /* W = 1: all x taps but the centre pad */
        { 1, 2, 3, 1, 5, 4, 1, 5, 5, 1, 1 },     /* 2D 5x5 */
        { 2, 16, 4, 4, 40, 64, 3, 3, 3, 1, 0 },  /* 18 column blocks of 1 MB per image */
        { 2, 32, 32, 8, 48, 16, 3, 3, 3, 1, 0 }, /* 44 blocks > 37 dW partials of 4 MB: 2 waves */
        /* rows of >= 8 voxels, where the direct kernel runs: Co not a multiple of its 4-channel
         * tile, odd tails of its 16/32-position tiles, kw = 1 and 5 (partial 3-tap groups of
         * the weight gradient), a kernel deeper than the volume, no bias */
        { 2, 3, 5, 2, 3, 10, 3, 3, 3, 1, 1 },
        { 1, 2, 3, 3, 4, 9, 5, 3, 1, 0, 1 },
        { 1, 2, 3, 1, 5, 8, 1, 5, 5, 1, 1 },
        { 1, 3, 6, 4, 9, 13, 3, 3, 3, 0, 1 },
        { 2, 7, 9, 3, 5, 33, 3, 3, 3, 1, 0 },
    };
    char name[200];
    for (unsigned ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const int B = cases[ci].B, Ci = cases[ci].Ci, Co = cases[ci].Co, D = cases[ci].D, H = cases[ci].H,
                  W = cases[ci].W, kd = cases[ci].kd, kh = cases[ci].kh, kw = cases[ci].kw;
        const long S = (long)D * H * W, kvol = (long)kd * kh * kw, nx = B * Ci * S, no = B * Co * S;
        const long nw = Co * Ci * kvol;
        Arr x = arr_rand(rng, nx, 1.0), w = arr_rand(rng, nw, 1.0), b = arr_rand(rng, Co, 1.0),
            R = arr_rand(rng, no, 1.0);
        ConvOp op = { "conv3d", conv3d_forward, conv3d_backward, B, Ci, Co, D, H, W, { kd, kh, kw },
                      nx, nw, no };
        ConvSt s = { B, Ci, Co, D, H, W, kd, kh, kw, x.d, w.d, cases[ci].bias ? b.d : NULL };
        const float* bf = cases[ci].bias ? b.f : NULL;
        double* ref = t_dnew(no);
        float* out = t_fnew(no);
        t_fill_garbage(out, no);
        op_fwd(&op, out, x.f, w.f, bf);
        ref_conv(&s, ref);
        /* K = Ci·(taps inside) <= Ci·kvol products, + bias: dot_thr(Ci·kvol + 2) */
        snprintf(name, sizeof name, "conv3d%s NMSE B=%d Ci=%d Co=%d %dx%dx%d k=%dx%dx%d%s", g_conv_impl,
                 B, Ci, Co, D, H, W, kd, kh, kw, cases[ci].bias ? "" : " nobias");
        t_check(name, t_nmse_fd(out, ref, no), dot_thr(Ci * kvol + 2));

        float *dx = t_fnew(nx), *dw = t_fnew(nw), *db = t_fnew(Co);
        t_fill_garbage(dx, nx);
        op_bwd(&op, dx, dw, cases[ci].bias ? db : NULL, R.f, x.f, w.f);
        if (cases[ci].fd) {
            /* din: sums of Co·kvol products; dW: B·S products; db: double sum, 1 rounding */
            conv_fd_checks(&op, ref_conv, &s, R.d, x.d, w.d, cases[ci].bias ? b.d : NULL, dx, dw, db,
                           "sqrt(Co kvol)+2", sqrt((double)Co * kvol) + 2);
        } else {
            double *rdx = t_dnew(nx), *rdw = t_dnew(nw), *rdb = t_dnew(Co);
            ref_conv_bwd(&s, R.d, rdx, rdw, rdb);
            t_check("  conv3d din NMSE vs float64 adjoint (dot_thr(Co kvol + 1))", t_nmse_fd(dx, rdx, nx),
                    dot_thr(Co * kvol + 1));
            /* dW: B·S-term sums in sgemm blocks, then one add to the zero buffer */
            t_check("  conv3d dW NMSE vs float64 adjoint (dot_thr(B S + 2))", t_nmse_fd(dw, rdw, nw),
                    dot_thr((double)B * S + 2));
            t_check("  conv3d dbias NMSE (double sum: U^2)", t_nmse_fd(db, rdb, Co), T_U * T_U);
            free(rdx); free(rdw); free(rdb);
        }
        conv_common_checks(rng, &op, x.f, w.f, bf, R.f, out, dx, dw, db);
        free(dx); free(dw); free(db); free(ref); free(out);
        arr_free(&x); arr_free(&w); arr_free(&b); arr_free(&R);
    }
}

/* forward + backward time of the benchmark shape (informational): wall clock and process
 * CPU time (the latter is what to compare on a shared machine), on a fresh context so that
 * the workspace shown is this shape's */
static void time_conv3d(TRng* rng) {
    const int B = 2, C = 16, D = 32, H = 64, W = 64;
    const long n = (long)B * C * D * H * W, nw = (long)C * C * 27;
    Ctx c2;
    if (ctx_open(&c2, "cpu", ctx.threads, 1)) return;
    float *x = t_fnew(n), *out = t_fnew(n), *g = t_fnew(n), *dx = t_fnew(n), *w = t_fnew(nw),
          *dw = t_fnew(nw), *bias = t_fnew(C), *db = t_fnew(C);
    t_frandn(rng, x, n, 1.0); t_frandn(rng, g, n, 1.0); t_frandn(rng, w, nw, 0.1);
    conv3d_forward(&c2, out, x, w, bias, B, C, C, D, H, W, 3, 3, 3);   /* warm-up: workspace */
    conv3d_backward(&c2, dx, dw, db, g, x, w, B, C, C, D, H, W, 3, 3, 3);
    double tf = 1e30, tb = 1e30, cf = 1e30, cb = 1e30;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = now_s(), c0 = (double)clock() / CLOCKS_PER_SEC;
        conv3d_forward(&c2, out, x, w, bias, B, C, C, D, H, W, 3, 3, 3);
        double t1 = now_s(), c1 = (double)clock() / CLOCKS_PER_SEC;
        conv3d_backward(&c2, dx, dw, db, g, x, w, B, C, C, D, H, W, 3, 3, 3);
        double t2 = now_s(), c2_ = (double)clock() / CLOCKS_PER_SEC;
        tf = fmin(tf, t1 - t0); tb = fmin(tb, t2 - t1); cf = fmin(cf, c1 - c0); cb = fmin(cb, c2_ - c1);
    }
    const double gf = 2.0 * B * C * C * 27.0 * D * H * W * 1e-9;
    printf("INFO conv3d B=2 Ci=Co=16 32x64x64 k=3x3x3, %d threads: forward %.1f ms wall / %.1f ms CPU "
           "(%.1f GFLOP/s wall), backward (din+dW+dbias) %.1f ms wall / %.1f ms CPU, workspace %.1f MB\n",
           c2.threads, 1e3 * tf, 1e3 * cf, gf / tf, 1e3 * tb, 1e3 * cb, c2.ws_bytes / 1048576.0);
    free(x); free(out); free(g); free(dx); free(w); free(dw); free(bias); free(db);
    ctx_close(&c2);
}

/* ======================================================================================= */
/* convT (kernel = stride)                                                                 */
typedef struct { int B, Ci, Co, D, H, W, fd, fh, fw; const double *x, *w, *b; } ConvTSt;

static void ref_convT(const void* stv, double* out) {
    const ConvTSt* s = stv;
    const long Do = (long)s->D * s->fd, Ho = (long)s->H * s->fh, Wo = (long)s->W * s->fw;
    for (int b = 0; b < s->B; b++)
        for (int o = 0; o < s->Co; o++)
            for (long zo = 0; zo < Do; zo++)
                for (long yo = 0; yo < Ho; yo++)
                    for (long xo = 0; xo < Wo; xo++) {
                        const long z = zo / s->fd, i = zo % s->fd, y = yo / s->fh, j = yo % s->fh;
                        const long x = xo / s->fw, k = xo % s->fw;
                        double acc = s->b ? s->b[o] : 0.0;
                        for (int c = 0; c < s->Ci; c++)
                            acc += s->x[VOX(s, b, c, s->Ci, z, y, x)]
                                 * s->w[((((long)c * s->Co + o) * s->fd + i) * s->fh + j) * s->fw + k];
                        out[(((long)b * s->Co + o) * Do + zo) * Ho * Wo + yo * Wo + xo] = acc;
                    }
}

static void test_convT(TRng* rng) {
    static const struct { int B, Ci, Co, D, H, W, fd, fh, fw, bias, fd_check; } cases[] = {
        { 2, 3, 4, 2, 3, 2, 2, 2, 2, 1, 1 },
        { 1, 4, 3, 3, 2, 3, 2, 4, 4, 1, 1 },     /* anisotropic 2x4x4 */
        { 2, 3, 2, 3, 3, 2, 1, 2, 2, 0, 1 },     /* 1x2x2 on a volume, no bias */
        { 2, 5, 3, 1, 3, 5, 1, 2, 2, 1, 1 },     /* 2D */
        { 1, 2, 3, 2, 3, 4, 1, 1, 1, 1, 1 },     /* factor 1: a pointwise linear map */
        { 1, 4, 8, 4, 40, 128, 2, 4, 4, 1, 0 },  /* Y = 256 x 20480 floats = 21 MB: chunked */
    };
    char name[200];
    for (unsigned ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const int B = cases[ci].B, Ci = cases[ci].Ci, Co = cases[ci].Co, D = cases[ci].D, H = cases[ci].H,
                  W = cases[ci].W, fd = cases[ci].fd, fh = cases[ci].fh, fw = cases[ci].fw;
        const long S = (long)D * H * W, F = (long)fd * fh * fw, nx = B * Ci * S, no = B * Co * S * F;
        const long nw = Ci * Co * F;
        Arr x = arr_rand(rng, nx, 1.0), w = arr_rand(rng, nw, 1.0), b = arr_rand(rng, Co, 1.0),
            R = arr_rand(rng, no, 1.0);
        ConvOp op = { "convT", convT_forward, convT_backward, B, Ci, Co, D, H, W, { fd, fh, fw },
                      nx, nw, no };
        ConvTSt s = { B, Ci, Co, D, H, W, fd, fh, fw, x.d, w.d, cases[ci].bias ? b.d : NULL };
        const float* bf = cases[ci].bias ? b.f : NULL;
        double* ref = t_dnew(no);
        float* out = t_fnew(no);
        t_fill_garbage(out, no);
        op_fwd(&op, out, x.f, w.f, bf);
        ref_convT(&s, ref);
        snprintf(name, sizeof name, "convT NMSE B=%d Ci=%d Co=%d %dx%dx%d f=%dx%dx%d%s (dot_thr(Ci+2))",
                 B, Ci, Co, D, H, W, fd, fh, fw, cases[ci].bias ? "" : " nobias");
        t_check(name, t_nmse_fd(out, ref, no), dot_thr(Ci + 2));

        float *dx = t_fnew(nx), *dw = t_fnew(nw), *db = t_fnew(Co);
        t_fill_garbage(dx, nx);
        op_bwd(&op, dx, dw, cases[ci].bias ? db : NULL, R.f, x.f, w.f);
        if (cases[ci].fd_check) {
            conv_fd_checks(&op, ref_convT, &s, R.d, x.d, w.d, cases[ci].bias ? b.d : NULL, dx, dw, db,
                           "sqrt(Co F)+1", sqrt((double)Co * F) + 1);
        } else {
            /* float64 adjoint: din = Σ_{o,f} W g, dW = Σ x g, db = Σ g */
            double *rdx = t_dnew(nx), *rdw = t_dnew(nw), *rdb = t_dnew(Co);
            const long Do = (long)D * fd, Ho = (long)H * fh, Wo = (long)W * fw;
            for (int bb = 0; bb < B; bb++)
                for (int o = 0; o < Co; o++)
                    for (long zo = 0; zo < Do; zo++)
                        for (long yo = 0; yo < Ho; yo++)
                            for (long xo = 0; xo < Wo; xo++) {
                                const double g = R.d[(((long)bb * Co + o) * Do + zo) * Ho * Wo + yo * Wo + xo];
                                const long xi0 = ((long)bb * Ci * D + zo / fd) * H * W + (yo / fh) * W + xo / fw;
                                const long wi0 = ((long)o * fd + zo % fd) * fh * fw + (yo % fh) * fw + xo % fw;
                                rdb[o] += g;
                                for (int c = 0; c < Ci; c++) {
                                    rdx[xi0 + (long)c * S] += w.d[wi0 + (long)c * Co * F] * g;
                                    rdw[wi0 + (long)c * Co * F] += x.d[xi0 + (long)c * S] * g;
                                }
                            }
            t_check("  convT din NMSE vs float64 adjoint (dot_thr(Co F + 1))", t_nmse_fd(dx, rdx, nx), dot_thr(Co * F + 1));
            t_check("  convT dW NMSE vs float64 adjoint (dot_thr(B S + 2))", t_nmse_fd(dw, rdw, nw), dot_thr((double)B * S + 2));
            t_check("  convT dbias NMSE (double sum: U^2)", t_nmse_fd(db, rdb, Co), T_U * T_U);
            free(rdx); free(rdw); free(rdb);
        }
        conv_common_checks(rng, &op, x.f, w.f, bf, R.f, out, dx, dw, db);
        free(dx); free(dw); free(db); free(ref); free(out);
        arr_free(&x); arr_free(&w); arr_free(&b); arr_free(&R);
    }
}

/* ======================================================================================= */
/* instance norm and batch norm                                                            */
typedef struct {
    int B, C, bn, training;
    long S;
    double eps;
    const double *x, *w, *b, *rm, *rv;   /* w, b NULL: no affine; rm, rv: eval statistics */
} NormSt;

/* out, and the statistics (mean, rstd per (b, c) or per c; the unbiased var for batchnorm) */
static void ref_norm_stats(const NormSt* s, double* out, double* mean, double* rstd, double* uvar) {
    const int nstat = s->bn ? s->C : s->B * s->C;
    for (int k = 0; k < nstat; k++) {
        const int nb = s->bn ? s->B : 1;
        double m, r, n = (double)nb * s->S, sum = 0, sq = 0;
        for (int bb = 0; bb < nb; bb++) {
            const double* p = s->x + (s->bn ? (long)bb * s->C + k : k) * s->S;
            for (long i = 0; i < s->S; i++) sum += p[i];
        }
        m = sum / n;
        for (int bb = 0; bb < nb; bb++) {
            const double* p = s->x + (s->bn ? (long)bb * s->C + k : k) * s->S;
            for (long i = 0; i < s->S; i++) sq += (p[i] - m) * (p[i] - m);
        }
        if (s->bn && !s->training) { m = s->rm[k]; r = 1 / sqrt(s->rv[k] + s->eps); }
        else r = 1 / sqrt(sq / n + s->eps);
        if (mean) mean[k] = m;
        if (rstd) rstd[k] = r;
        if (uvar) uvar[k] = n > 1 ? sq / (n - 1) : 0;
        for (int bb = 0; bb < nb; bb++) {
            const long row = s->bn ? (long)bb * s->C + k : k;
            const int ch = s->bn ? k : k % s->C;
            for (long i = 0; i < s->S; i++)
                out[row * s->S + i] = (s->x[row * s->S + i] - m) * r * (s->w ? s->w[ch] : 1.0) + (s->b ? s->b[ch] : 0.0);
        }
    }
}
static void ref_norm(const void* st, double* out) { ref_norm_stats(st, out, NULL, NULL, NULL); }

static void test_norms(TRng* rng) {
    static const struct { int bn, training, B, C; long S; double off; int affine; } cases[] = {
        { 0, 1, 2, 3, 60, 0, 1 }, { 0, 1, 1, 4, 7, 0, 1 }, { 0, 1, 2, 3, 1, 0, 1 },
        { 0, 1, 2, 5, 120, 4.0, 1 }, { 0, 1, 2, 3, 30, 0, 0 },
        { 1, 1, 4, 3, 10, 0, 1 }, { 1, 1, 2, 5, 6, 0, 1 }, { 1, 1, 8, 4, 1, 0, 1 } /* BN1d */,
        { 1, 1, 3, 2, 20, 4.0, 1 }, { 1, 1, 2, 3, 12, 0, 0 },
        { 1, 0, 2, 3, 10, 0, 1 }, { 1, 0, 4, 6, 1, 0, 1 }, { 1, 0, 2, 2, 9, 0, 0 },
    };
    char name[200];
    for (unsigned ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const int bn = cases[ci].bn, tr = cases[ci].training, B = cases[ci].B, C = cases[ci].C;
        const long S = cases[ci].S, n = (long)B * C * S, ns = bn ? C : (long)B * C;
        const double off = cases[ci].off;
        const float eps = 1e-5f, mom = 0.1f;
        const char* op = bn ? (tr ? "batchnorm train" : "batchnorm eval") : "instnorm";
        Arr x = arr_rand(rng, n, 1.0), w = arr_rand(rng, C, 1.0), b = arr_rand(rng, C, 0.5),
            R = arr_rand(rng, n, 1.0), rm = arr_rand(rng, C, 0.5), rv = arr_rand(rng, C, 0.3);
        for (long i = 0; i < n; i++) { x.f[i] = (float)(x.d[i] + off); x.d[i] = x.f[i]; }
        for (int k = 0; k < C; k++) { rv.f[k] = 1.0f + fabsf(rv.f[k]); rv.d[k] = rv.f[k]; }
        const int aff = cases[ci].affine;
        NormSt s = { B, C, bn, tr, S, (double)eps, x.d, aff ? w.d : NULL, aff ? b.d : NULL, rm.d, rv.d };
        const float *wf = aff ? w.f : NULL, *bf = aff ? b.f : NULL;
        double *ref = t_dnew(n), *rmean = t_dnew(ns), *rrstd = t_dnew(ns), *uvar = t_dnew(ns);
        float *out = t_fnew(n), *mean = t_fnew(ns), *rstd = t_fnew(ns), *rmf = t_fnew(C), *rvf = t_fnew(C);
        memcpy(rmf, rm.f, C * 4); memcpy(rvf, rv.f, C * 4);
        t_fill_garbage(out, n);
        if (bn) batchnorm_forward(&ctx, out, mean, rstd, rmf, rvf, x.f, wf, bf, B, C, S, eps, mom, tr);
        else instnorm_forward(&ctx, out, mean, rstd, x.f, wf, bf, B, C, S, eps);
        ref_norm_stats(&s, ref, rmean, rrstd, uvar);
        /* as layernorm: ε = (5 + |m|/σ) U relative to |xhat w| + |b|, NMSE <= 4 ε^2 */
        const double e = (5 + off) * T_U;
        snprintf(name, sizeof name, "%s NMSE B=%d C=%d S=%ld offset=%g%s", op, B, C, S, off, aff ? "" : " no-affine");
        t_check(name, t_nmse_fd(out, ref, n), 4 * e * e);
        t_check("  saved mean NMSE (one rounding: U^2)", t_nmse_fd(mean, rmean, ns), T_U * T_U);
        t_check("  saved rstd NMSE (one rounding: U^2)", t_nmse_fd(rstd, rrstd, ns), T_U * T_U);
        if (bn && tr) {
            /* r = (1-m) r0 + m stat in double from float-exact r0, m: one rounding each */
            double *em = t_dnew(C), *ev = t_dnew(C);
            for (int k = 0; k < C; k++) {
                em[k] = (1 - (double)mom) * rm.d[k] + (double)mom * rmean[k];
                ev[k] = (1 - (double)mom) * rv.d[k] + (double)mom * uvar[k];
            }
            t_check("  running mean NMSE (one rounding: U^2)", t_nmse_fd(rmf, em, C), T_U * T_U);
            t_check("  running var NMSE, unbiased (one rounding: U^2)", t_nmse_fd(rvf, ev, C), T_U * T_U);
            free(em); free(ev);
        } else if (bn) {
            t_true("  eval leaves running stats unchanged", same(rmf, rm.f, C) && same(rvf, rv.f, C));
        }

        float *dx = t_fnew(n), *dw = t_fnew(C), *db = t_fnew(C);
        t_fill_garbage(dx, n);
        if (bn) batchnorm_backward(&ctx, dx, aff ? dw : NULL, aff ? db : NULL, R.f, x.f, wf, mean, rstd, B, C, S, tr);
        else instnorm_backward(&ctx, dx, aff ? dw : NULL, aff ? db : NULL, R.f, x.f, wf, mean, rstd, B, C, S);
        double* tmp = t_dnew(n);
        TFdLoss f = { ref_norm, &s, tmp, R.d, n };
        /* dx: ~10 roundings + |m|/σ as layernorm (eval: w·r, ·g: 3); dw: xhat (4 + |m|/σ),
         * double sum, 1 rounding; db: 1 rounding */
        snprintf(name, sizeof name, "  %s dx grad (K=%s)", op, bn && !tr ? "3" : "10+|m|/σ");
        t_check(name, t_grad_score_ref(&f, x.d, n, dx), grad_thr(bn && !tr ? 3 : 10 + off));
        if (aff) {
            t_check("  dw grad (K=5+|m|/σ)", t_grad_score_ref(&f, w.d, C, dw), grad_thr(5 + off));
            t_check("  db grad (K=1)", t_grad_score_ref(&f, b.d, C, db), grad_thr(1));
            float *aw = t_fnew(C), *ab = t_fnew(C), *g0w = t_fnew(C), *g0b = t_fnew(C), *dx2 = t_fnew(n);
            t_frandn(rng, g0w, C, 1.0); t_frandn(rng, g0b, C, 1.0);
            memcpy(aw, g0w, C * 4); memcpy(ab, g0b, C * 4);
            for (int rep = 0; rep < 2; rep++) {
                if (bn) batchnorm_backward(&ctx, dx2, aw, ab, R.f, x.f, wf, mean, rstd, B, C, S, tr);
                else instnorm_backward(&ctx, dx2, aw, ab, R.f, x.f, wf, mean, rstd, B, C, S);
            }
            t_check("  dw accumulates (ratio to 2U bound)", t_accum_ratio(aw, g0w, dw, C), 1.0);
            t_check("  db accumulates (ratio to 2U bound)", t_accum_ratio(ab, g0b, db, C), 1.0);
            t_true("  dx overwrites", same(dx2, dx, n));
            /* dx may alias dout */
            memcpy(dx2, R.f, n * 4);
            if (bn) batchnorm_backward(&ctx, dx2, NULL, NULL, dx2, x.f, wf, mean, rstd, B, C, S, tr);
            else instnorm_backward(&ctx, dx2, NULL, NULL, dx2, x.f, wf, mean, rstd, B, C, S);
            t_true("  dx in place over dout matches", same(dx2, dx, n));
            free(aw); free(ab); free(g0w); free(g0b); free(dx2);
        }
        free(tmp); free(dx); free(dw); free(db);
        free(ref); free(rmean); free(rrstd); free(uvar); free(out); free(mean); free(rstd); free(rmf); free(rvf);
        arr_free(&x); arr_free(&w); arr_free(&b); arr_free(&R); arr_free(&rm); arr_free(&rv);
    }
    /* threads: 37 channels x 3 images, S = 500 */
    for (int bn = 0; bn <= 1; bn++) {
        const int B = 3, C = 37;
        const long S = 500, n = (long)B * C * S, ns = bn ? C : (long)B * C;
        float *x = t_fnew(n), *w = t_fnew(C), *b = t_fnew(C), *g = t_fnew(n), *o[2], *m[2], *r[2], *dx[2], *dw[2], *db[2], *rm[2], *rv[2];
        t_frandn(rng, x, n, 1.0); t_frandn(rng, w, C, 1.0); t_frandn(rng, b, C, 1.0); t_frandn(rng, g, n, 1.0);
        for (int k = 0; k < 2; k++) {
            o[k] = t_fnew(n); m[k] = t_fnew(ns); r[k] = t_fnew(ns); dx[k] = t_fnew(n); dw[k] = t_fnew(C); db[k] = t_fnew(C);
            rm[k] = t_fnew(C); rv[k] = t_fnew(C);
            t_set_threads(k ? 2 : 1);
            if (bn) {
                batchnorm_forward(&ctx, o[k], m[k], r[k], rm[k], rv[k], x, w, b, B, C, S, 1e-5f, 0.1f, 1);
                batchnorm_backward(&ctx, dx[k], dw[k], db[k], g, x, w, m[k], r[k], B, C, S, 1);
            } else {
                instnorm_forward(&ctx, o[k], m[k], r[k], x, w, b, B, C, S, 1e-5f);
                instnorm_backward(&ctx, dx[k], dw[k], db[k], g, x, w, m[k], r[k], B, C, S);
            }
        }
        t_set_threads(ctx.threads);
        t_true(bn ? "batchnorm fwd+bwd bit-identical with 1 and 2 threads" : "instnorm fwd+bwd bit-identical with 1 and 2 threads",
               same(o[0], o[1], n) && same(m[0], m[1], ns) && same(r[0], r[1], ns) && same(dx[0], dx[1], n) &&
               same(dw[0], dw[1], C) && same(db[0], db[1], C) && same(rm[0], rm[1], C) && same(rv[0], rv[1], C));
        for (int k = 0; k < 2; k++) { free(o[k]); free(m[k]); free(r[k]); free(dx[k]); free(dw[k]); free(db[k]); free(rm[k]); free(rv[k]); }
        free(x); free(w); free(b); free(g);
    }
}

/* ======================================================================================= */
/* leaky_relu                                                                              */
typedef struct { long n; double slope; const double* x; } LrSt;
static void ref_lrelu(const void* st, double* out) {
    const LrSt* s = st;
    for (long i = 0; i < s->n; i++) out[i] = s->x[i] > 0 ? s->x[i] : s->slope * s->x[i];
}

static void test_leaky_relu(TRng* rng) {
    static const struct { long n; float slope; } cases[] = { { 7, 0.01f }, { 1001, 0.2f }, { 50000, 0.0f }, { 33, 0.0f } };
    char name[160];
    for (unsigned ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const long n = cases[ci].n;
        Arr x = arr_rand(rng, n, 1.0), R = arr_rand(rng, n, 1.0);
        if (n > 3) { x.d[0] = x.f[0] = 0.0f; x.d[1] = x.f[1] = -0.0f; }
        LrSt s = { n, (double)cases[ci].slope, x.d };
        double* ref = t_dnew(n);
        float *out = t_fnew(n), *dx = t_fnew(n), *buf = t_fnew(n);
        leaky_relu_forward(&ctx, out, x.f, cases[ci].slope, n);
        ref_lrelu(&s, ref);
        snprintf(name, sizeof name, "leaky_relu NMSE n=%ld slope=%g (one rounding: U^2)", n, cases[ci].slope);
        t_check(name, t_nmse_fd(out, ref, n), T_U * T_U);
        t_fill_garbage(dx, n);
        leaky_relu_backward(&ctx, dx, R.f, x.f, cases[ci].slope, n);
        if (n <= 2000) {
            /* the FD gradient at x = 0 exactly straddles the kink: compare elsewhere, and
             * check torch's choice there (x > 0 ? dout : slope·dout) directly */
            double* tmp = t_dnew(n);
            TFdLoss f = { ref_lrelu, &s, tmp, R.d, n };
            const long k0 = n > 3 ? 2 : 0;
            s.x = x.d + k0; s.n = n - k0; f.R = R.d + k0; f.n = n - k0;
            t_check("  leaky_relu dx grad (K=1)", t_grad_score_ref(&f, x.d + k0, n - k0, dx + k0), grad_thr(1));
            if (k0) t_true("  leaky_relu dx at x = ±0 is slope·dout", dx[0] == cases[ci].slope * R.f[0] && dx[1] == cases[ci].slope * R.f[1]);
            free(tmp);
        }
        memcpy(buf, x.f, n * 4);
        leaky_relu_forward(&ctx, buf, buf, cases[ci].slope, n);
        int ok = same(buf, out, n);
        memcpy(buf, R.f, n * 4);
        leaky_relu_backward(&ctx, buf, buf, x.f, cases[ci].slope, n);
        t_true("  leaky_relu in place (out == x, dx == dout) matches", ok && same(buf, dx, n));
        free(ref); free(out); free(dx); free(buf);
        arr_free(&x); arr_free(&R);
    }
}

/* ======================================================================================= */
/* upsample                                                                                */
typedef struct { int B, C, D, H, W, fd, fh, fw, mode; const double* x; } UpSt;

static void ref_coef(long o, int f, long L, int mode, long* i0, long* i1, double* l1) {
    if (mode == UPS_NEAREST) { *i0 = *i1 = (long)floor((double)o / f); *l1 = 0; return; }
    double src = (o + 0.5) / f - 0.5;
    if (src < 0) src = 0;
    *i0 = (long)floor(src);
    *i1 = *i0 + 1 < L ? *i0 + 1 : L - 1;
    *l1 = src - *i0;
}

static void ref_upsample(const void* st, double* out) {
    const UpSt* s = st;
    const long Do = (long)s->D * s->fd, Ho = (long)s->H * s->fh, Wo = (long)s->W * s->fw;
    for (long bc = 0; bc < (long)s->B * s->C; bc++)
        for (long od = 0; od < Do; od++)
            for (long oh = 0; oh < Ho; oh++)
                for (long ow = 0; ow < Wo; ow++) {
                    long d[2], h[2], w[2];
                    double ld, lh, lw;
                    ref_coef(od, s->fd, s->D, s->mode, &d[0], &d[1], &ld);
                    ref_coef(oh, s->fh, s->H, s->mode, &h[0], &h[1], &lh);
                    ref_coef(ow, s->fw, s->W, s->mode, &w[0], &w[1], &lw);
                    double acc = 0;
                    for (int a = 0; a < 2; a++)
                        for (int bb = 0; bb < 2; bb++)
                            for (int cc = 0; cc < 2; cc++)
                                acc += (a ? ld : 1 - ld) * (bb ? lh : 1 - lh) * (cc ? lw : 1 - lw)
                                     * s->x[((bc * s->D + d[a]) * s->H + h[bb]) * s->W + w[cc]];
                    out[((bc * Do + od) * Ho + oh) * Wo + ow] = acc;
                }
}

static void test_upsample(TRng* rng) {
    static const int cases[][8] = {   /* B, C, D, H, W, fd, fh, fw */
        { 2, 3, 3, 4, 5, 2, 2, 2 }, { 1, 2, 2, 3, 3, 1, 2, 2 }, { 1, 2, 1, 5, 4, 1, 2, 2 } /* 2D */,
        { 2, 2, 2, 3, 4, 3, 2, 4 }, { 1, 3, 1, 1, 6, 1, 1, 3 } /* 1D along W */, { 1, 1, 1, 1, 1, 2, 2, 2 },
        { 2, 2, 3, 2, 2, 1, 1, 1 } /* identity */, { 1, 2, 4, 1, 3, 2, 3, 1 },
    };
    char name[200];
    for (int mode = 0; mode <= 1; mode++)
        for (unsigned ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
            const int* v = cases[ci];
            UpSt s = { v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], mode, NULL };
            const long F = (long)s.fd * s.fh * s.fw, n = (long)s.B * s.C * s.D * s.H * s.W, no = n * F;
            Arr x = arr_rand(rng, n, 1.0), R = arr_rand(rng, no, 1.0);
            s.x = x.d;
            double* ref = t_dnew(no);
            float *out = t_fnew(no), *dx = t_fnew(n);
            t_fill_garbage(out, no);
            upsample_forward(&ctx, out, x.f, s.B, s.C, s.D, s.H, s.W, s.fd, s.fh, s.fw, mode);
            ref_upsample(&s, ref);
            snprintf(name, sizeof name, "upsample %s NMSE B=%d C=%d %dx%dx%d f=%dx%dx%d", mode ? "linear" : "nearest",
                     s.B, s.C, s.D, s.H, s.W, s.fd, s.fh, s.fw);
            /* nearest: a copy (0); linear: 3 weight roundings, 14 products/sums, ε <= 20U
             * relative to Σ w|v|; (Σ w|v|)^2 / (Σ w v)^2 <= 8 in expectation for 8 taps of
             * independent values (Jensen; Σ w^2 >= 1/8) -> NMSE <= 8 (20U)^2 */
            t_check(name, t_nmse_fd(out, ref, no), mode ? 8 * 400 * T_U * T_U : 0);
            t_fill_garbage(dx, n);
            upsample_backward(&ctx, dx, R.f, s.B, s.C, s.D, s.H, s.W, s.fd, s.fh, s.fw, mode);
            double* tmp = t_dnew(no);
            TFdLoss f = { ref_upsample, &s, tmp, R.d, no };
            /* each axis pass sums <= 3f terms (weight rounding + product + sum each):
             * K = 3·Σ(3f) worst case; in the probabilistic model sqrt of the term count */
            const double K = 3 * sqrt(3.0 * (s.fd + s.fh + s.fw)) + 3;
            snprintf(name, sizeof name, "  upsample %s din grad (K=3 sqrt(3 Σf)+3)", mode ? "linear" : "nearest");
            t_check(name, t_grad_score_ref(&f, x.d, n, dx), grad_thr(K));
            free(tmp); free(ref); free(out); free(dx);
            arr_free(&x); arr_free(&R);
        }
    /* threads + workspace grouping: 2 x 40 planes of 8x40x40 -> 16x80x80 */
    {
        const int B = 2, C = 40, D = 8, H = 40, W = 40;
        const long n = (long)B * C * D * H * W, no = 8 * n;
        float *x = t_fnew(n), *g = t_fnew(no), *o[2], *dx[2];
        t_frandn(rng, x, n, 1.0); t_frandn(rng, g, no, 1.0);
        int ok = 1;
        for (int mode = 0; mode <= 1; mode++) {
            for (int k = 0; k < 2; k++) {
                o[k] = t_fnew(no); dx[k] = t_fnew(n);
                t_set_threads(k ? 2 : 1);
                upsample_forward(&ctx, o[k], x, B, C, D, H, W, 2, 2, 2, mode);
                upsample_backward(&ctx, dx[k], g, B, C, D, H, W, 2, 2, 2, mode);
            }
            ok = ok && same(o[0], o[1], no) && same(dx[0], dx[1], n);
            for (int k = 0; k < 2; k++) { free(o[k]); free(dx[k]); }
        }
        t_set_threads(ctx.threads);
        t_true("upsample fwd+bwd (both modes) bit-identical with 1 and 2 threads", ok);
        free(x); free(g);
    }
}

/* ======================================================================================= */
/* concat_channels, tokens_to_grid                                                         */
typedef struct { int B, Ca, Cb; long S; const double *a, *b; } CatSt;
static void ref_concat(const void* st, double* out) {
    const CatSt* s = st;
    for (int b = 0; b < s->B; b++) {
        memcpy(out + (long)b * (s->Ca + s->Cb) * s->S, s->a + (long)b * s->Ca * s->S, sizeof(double) * s->Ca * s->S);
        memcpy(out + ((long)b * (s->Ca + s->Cb) + s->Ca) * s->S, s->b + (long)b * s->Cb * s->S, sizeof(double) * s->Cb * s->S);
    }
}
typedef struct { int B, T, C, t0; long S; const double* tok; } TgSt;
static void ref_tok_grid(const void* st, double* out) {
    const TgSt* s = st;
    for (int b = 0; b < s->B; b++)
        for (int c = 0; c < s->C; c++)
            for (long p = 0; p < s->S; p++)
                out[((long)b * s->C + c) * s->S + p] = s->tok[((long)b * s->T + s->t0 + p) * s->C + c];
}

static void test_layout_ops(TRng* rng) {
    static const int cat[][4] = { { 2, 3, 4, 10 }, { 1, 1, 5, 7 }, { 3, 2, 0, 5 }, { 2, 0, 3, 6 } };
    char name[160];
    for (unsigned ci = 0; ci < sizeof cat / sizeof cat[0]; ci++) {
        CatSt s = { cat[ci][0], cat[ci][1], cat[ci][2], cat[ci][3], NULL, NULL };
        const long na = (long)s.B * s.Ca * s.S, nb = (long)s.B * s.Cb * s.S, no = na + nb;
        Arr a = arr_rand(rng, na, 1.0), b = arr_rand(rng, nb, 1.0), R = arr_rand(rng, no, 1.0);
        s.a = a.d; s.b = b.d;
        double *ref = t_dnew(no), *tmp = t_dnew(no);
        float *out = t_fnew(no), *da = t_fnew(na), *db = t_fnew(nb);
        concat_channels_forward(&ctx, out, a.f, b.f, s.B, s.Ca, s.Cb, s.S);
        ref_concat(&s, ref);
        snprintf(name, sizeof name, "concat_channels NMSE B=%d Ca=%d Cb=%d S=%ld (copy)", s.B, s.Ca, s.Cb, s.S);
        t_check(name, t_nmse_fd(out, ref, no), 0);
        t_fill_garbage(da, na); t_fill_garbage(db, nb);
        concat_channels_backward(&ctx, da, db, R.f, s.B, s.Ca, s.Cb, s.S);
        TFdLoss f = { ref_concat, &s, tmp, R.d, no };
        t_check("  concat da grad (copy: K=0)", t_grad_score_ref(&f, a.d, na, da), grad_thr(0));
        t_check("  concat db grad (copy: K=0)", t_grad_score_ref(&f, b.d, nb, db), grad_thr(0));
        float* da2 = t_fnew(na);
        concat_channels_backward(&ctx, da2, NULL, R.f, s.B, s.Ca, s.Cb, s.S);
        t_true("  concat db = NULL skips", same(da2, da, na));
        free(da2); free(ref); free(tmp); free(out); free(da); free(db);
        arr_free(&a); arr_free(&b); arr_free(&R);
    }
    static const int tg[][5] = { { 2, 13, 5, 1, 12 }, { 1, 70, 40, 5, 64 }, { 3, 9, 1, 0, 9 }, { 2, 40, 33, 3, 35 } };
    for (unsigned ci = 0; ci < sizeof tg / sizeof tg[0]; ci++) {
        TgSt s = { tg[ci][0], tg[ci][1], tg[ci][2], tg[ci][3], tg[ci][4], NULL };
        const long nt = (long)s.B * s.T * s.C, no = (long)s.B * s.C * s.S;
        Arr t = arr_rand(rng, nt, 1.0), R = arr_rand(rng, no, 1.0);
        s.tok = t.d;
        double *ref = t_dnew(no), *tmp = t_dnew(no);
        float *out = t_fnew(no), *dt = t_fnew(nt);
        tokens_to_grid_forward(&ctx, out, t.f, s.B, s.T, s.C, s.t0, s.S);
        ref_tok_grid(&s, ref);
        snprintf(name, sizeof name, "tokens_to_grid NMSE B=%d T=%d C=%d t0=%d S=%ld (copy)", s.B, s.T, s.C, s.t0, s.S);
        t_check(name, t_nmse_fd(out, ref, no), 0);
        for (long i = 0; i < nt; i++) dt[i] = 12345.0f;
        tokens_to_grid_backward(&ctx, dt, R.f, s.B, s.T, s.C, s.t0, s.S);
        int untouched = 1;
        for (int b = 0; b < s.B; b++)
            for (int r = 0; r < s.T; r++)
                if (r < s.t0 || r >= s.t0 + s.S)
                    for (int c = 0; c < s.C; c++) untouched &= dt[((long)b * s.T + r) * s.C + c] == 12345.0f;
        t_true("  tokens_to_grid backward leaves other rows untouched", untouched);
        for (int b = 0; b < s.B; b++)   /* the FD gradient is 0 there */
            for (int r = 0; r < s.T; r++)
                if (r < s.t0 || r >= s.t0 + s.S) memset(dt + ((long)b * s.T + r) * s.C, 0, s.C * 4);
        TFdLoss f = { ref_tok_grid, &s, tmp, R.d, no };
        t_check("  tokens_to_grid dtokens grad (copy: K=0)", t_grad_score_ref(&f, t.d, nt, dt), grad_thr(0));
        free(ref); free(tmp); free(out); free(dt);
        arr_free(&t); arr_free(&R);
    }
}

/* ======================================================================================= */
/* resample_axis                                                                           */
typedef struct { int B, C, D, H, W, axis; const double *x, *disp; } RsSt;

static void ref_resample(const void* st, double* out) {
    const RsSt* s = st;
    const long S = (long)s->D * s->H * s->W;
    const long L = s->axis == 0 ? s->D : s->axis == 1 ? s->H : s->W;
    const long stride = s->axis == 0 ? (long)s->H * s->W : s->axis == 1 ? s->W : 1;
    for (int b = 0; b < s->B; b++)
        for (int c = 0; c < s->C; c++)
            for (long v = 0; v < S; v++) {
                const long p = v / stride % L, base = v - p * stride;
                double q = p + s->disp[(long)b * S + v];
                if (q < 0) q = 0;
                if (q > L - 1) q = L - 1;
                const long i0 = (long)floor(q), i1 = i0 + 1 < L ? i0 + 1 : L - 1;
                const double t = q - i0;
                const double* line = s->x + ((long)b * s->C + c) * S + base;
                out[((long)b * s->C + c) * S + v] = (1 - t) * line[i0 * stride] + t * line[i1 * stride];
            }
}

static void test_resample_axis(TRng* rng) {
    static const int cases[][6] = {   /* B, C, D, H, W, axis */
        { 2, 3, 5, 4, 6, 0 }, { 2, 3, 5, 4, 6, 1 }, { 2, 3, 5, 4, 6, 2 }, { 1, 2, 1, 7, 9, 1 } /* 2D */,
        { 1, 4, 1, 5, 70, 2 } /* inner blocks */, { 2, 1, 3, 1, 2, 1 } /* L = 1: all clamped */,
        { 1, 2, 6, 9, 70, 0 } /* H*W = 630 > one inner block */,
    };
    char name[200];
    for (unsigned ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const int* v = cases[ci];
        RsSt s = { v[0], v[1], v[2], v[3], v[4], v[5], NULL, NULL };
        const long S = (long)s.D * s.H * s.W, n = (long)s.B * s.C * S, nd = (long)s.B * S;
        /* disp ~ 1.5 N(0,1) voxels: many positions leave the volume and clamp */
        Arr x = arr_rand(rng, n, 1.0), d = arr_rand(rng, nd, 1.5), R = arr_rand(rng, n, 1.0);
        /* linear interpolation and the clamp are kinked at integer positions (and the voxel
         * centres are integers): a central difference across a kink is no derivative, so the
         * displacements keep their fractional parts in [1/16, 15/16] (exact in fp32) */
        for (long i = 0; i < nd; i++) {
            double fl = floor(d.d[i]), fr = d.d[i] - fl;
            fr = fr < 0.0625 ? 0.0625 : fr > 0.9375 ? 0.9375 : fr;
            d.d[i] = fl + fr;
            d.f[i] = (float)d.d[i];
        }
        s.x = x.d; s.disp = d.d;
        double *ref = t_dnew(n), *tmp = t_dnew(n);
        float *out = t_fnew(n), *dx = t_fnew(n), *dd = t_fnew(nd);
        resample_axis_forward(&ctx, out, x.f, d.f, s.B, s.C, s.D, s.H, s.W, s.axis);
        ref_resample(&s, ref);
        /* t (1), 1 - t, 2 products, 1 sum: ε = 5U relative to |a| + |b|, whose square is
         * <= 8x E out^2 for independent values (worst at t = 1/2) -> 8 (5U)^2 */
        snprintf(name, sizeof name, "resample_axis NMSE B=%d C=%d %dx%dx%d axis=%d", s.B, s.C, s.D, s.H, s.W, s.axis);
        t_check(name, t_nmse_fd(out, ref, n), 8 * 25 * T_U * T_U);
        t_fill_garbage(dx, n); t_fill_garbage(dd, nd);
        resample_axis_backward(&ctx, dx, dd, R.f, x.f, d.f, s.B, s.C, s.D, s.H, s.W, s.axis);
        TFdLoss f = { ref_resample, &s, tmp, R.d, n };
        /* din: a few taps (|disp| <~ 5 voxels: <= 12 terms), 2 roundings each: K = 2 sqrt(12)+2 */
        t_check("  resample_axis din grad (K=2 sqrt(12)+2)", t_grad_score_ref(&f, x.d, n, dx), grad_thr(2 * sqrt(12.0) + 2));
        /* ddisp: slope (1), product (1), double channel sum, final rounding: K = 3 */
        t_check("  resample_axis ddisp grad (K=3)", t_grad_score_ref(&f, d.d, nd, dd), grad_thr(3));
        float *dx2 = t_fnew(n), *dd2 = t_fnew(nd);
        resample_axis_backward(&ctx, dx2, NULL, R.f, x.f, d.f, s.B, s.C, s.D, s.H, s.W, s.axis);
        resample_axis_backward(&ctx, NULL, dd2, R.f, x.f, d.f, s.B, s.C, s.D, s.H, s.W, s.axis);
        t_true("  resample_axis NULL skips, the other unchanged", same(dx2, dx, n) && same(dd2, dd, nd));
        int ok = 1;
        for (int th = 1; th <= 2; th++) {
            t_set_threads(th);
            resample_axis_forward(&ctx, dx2, x.f, d.f, s.B, s.C, s.D, s.H, s.W, s.axis);
            ok = ok && same(dx2, out, n);
            resample_axis_backward(&ctx, dx2, dd2, R.f, x.f, d.f, s.B, s.C, s.D, s.H, s.W, s.axis);
            ok = ok && same(dx2, dx, n) && same(dd2, dd, nd);
        }
        t_set_threads(ctx.threads);
        t_true("  resample_axis fwd+bwd bit-identical with 1 and 2 threads", ok);
        free(dx2); free(dd2); free(ref); free(tmp); free(out); free(dx); free(dd);
        arr_free(&x); arr_free(&d); arr_free(&R);
    }
}

/* ======================================================================================= */
static void bad_conv_even(void) { float z[64] = { 0 }; conv3d_forward(&ctx, z, z, z, NULL, 1, 1, 1, 2, 2, 2, 2, 3, 3); }
static void bad_axis(void) { float z[64] = { 0 }; resample_axis_forward(&ctx, z, z, z, 1, 1, 2, 2, 2, 3); }
static void bad_bn_one(void) { float z[8] = { 0 }; batchnorm_forward(&ctx, z, z, z, z, z, z, NULL, NULL, 1, 1, 1, 1e-5f, 0.1f, 1); }

int main(void) {
    if (ctx_open(&ctx, "cpu", 0, 1)) return 2;
    TRng rng = { 4242 };
    double t0 = now_s();
    /* every conv3d algorithm this CPU runs: the direct kernel with its best instruction set,
     * with AVX2 where that is AVX-512, and im2col + sgemm (the fallback elsewhere) */
    const int isa = conv3d_direct_available();
    g_conv_impl = isa == 2 ? " [direct AVX-512]" : isa == 1 ? " [direct AVX2]" : " [im2col]";
    test_conv3d(&rng);
    if (isa == 2) {
        cpu_conv3d_set_direct(2);
        g_conv_impl = " [direct AVX2]";
        test_conv3d(&rng);
    }
    if (isa) {
        cpu_conv3d_set_direct(0);
        g_conv_impl = " [im2col]";
        test_conv3d(&rng);
    }
    cpu_conv3d_set_direct(1);
    test_convT(&rng);
    test_norms(&rng);
    test_leaky_relu(&rng);
    test_upsample(&rng);
    test_layout_ops(&rng);
    test_resample_axis(&rng);
    t_expect_exit2("conv3d with an even kernel exits 2", bad_conv_even);
    t_expect_exit2("resample_axis with axis 3 exits 2", bad_axis);
    t_expect_exit2("batchnorm training with one value per channel exits 2", bad_bn_one);
    printf("INFO checks took %.1f s\n", now_s() - t0);
    time_conv3d(&rng);
    ctx_close(&ctx);
    return t_summary();
}
