/* tests/test_ops_losses.c — the loss ops of the CPU backend: softmax_channels, dice_ce,
 * cls_loss (CE / weighted / label smoothing / focal), regress_loss (L1 / MSE).
 *
 * Each op against a naive float64 reference written here (NMSE or relative error), its
 * backward against central finite differences of that reference (gradient score of
 * testing.h), outputs overwritten (NaN-prefilled), bit-identical results for 1, 2 and 3
 * threads, CHECK failures (exit 2) for bad labels, and the float64 PyTorch oracle
 * (tests/oracle/losses_oracle.py -> $VITA_ORACLE_DIR/losses.safetensors; run here if absent).
 * Thresholds are derived beside each check; u = 2^-24 (fp32 unit roundoff), e = 2^-53.
 */
#include "../kernels/ops.h"
#include "oracle_io.h"

#include <float.h>
#include <omp.h>

#define E53 0x1p-53
static Ctx ctx;

/* ======================= float64 references =============================================== */
static void ref_softmax(double* p, const double* x, int B, int K, long S) {
    for (int b = 0; b < B; b++)
        for (long s = 0; s < S; s++) {
            const double* xs = x + (size_t)b * K * S + s;
            double m = xs[0], z = 0;
            for (int k = 1; k < K; k++) m = fmax(m, xs[(size_t)k * S]);
            for (int k = 0; k < K; k++) z += exp(xs[(size_t)k * S] - m);
            for (int k = 0; k < K; k++) p[(size_t)b * K * S + (size_t)k * S + s] = exp(xs[(size_t)k * S] - m) / z;
        }
}

typedef struct {
    double* x;               /* logits [B, K, S] */
    const int32_t* y;
    const double* w;         /* [K] or NULL */
    int B, K, incl;
    long S;
    double wce, wdice;
    double* p;               /* scratch [B, K, S] */
} DiceRef;

/* out[0] = CE, out[1] = Dice loss (MONAI definition, per-sample) from the double logits */
static void ref_dicece(DiceRef* r, double out[2]) {
    int B = r->B, K = r->K, k0 = r->incl ? 0 : 1;
    long S = r->S;
    ref_softmax(r->p, r->x, B, K, S);
    double num = 0, den = 0, dice = 0;
    for (int b = 0; b < B; b++)
        for (long s = 0; s < S; s++) {
            int y = r->y[(size_t)b * S + s];
            double w = r->w ? r->w[y] : 1.0;
            num += -w * log(r->p[(size_t)b * K * S + (size_t)y * S + s]);
            den += w;
        }
    for (int b = 0; b < B; b++)
        for (int k = k0; k < K; k++) {
            double I = 0, P = 0, G = 0;
            for (long s = 0; s < S; s++) {
                double p = r->p[(size_t)b * K * S + (size_t)k * S + s], g = r->y[(size_t)b * S + s] == k;
                I += p * g; P += p; G += g;
            }
            dice += 1.0 - (2 * I + 1e-5) / (P + G + 1e-5);
        }
    out[0] = num / den;
    out[1] = dice / (B * (K - k0));
}
static double dicece_scalar(void* u) {
    DiceRef* r = u;
    double o[2];
    ref_dicece(r, o);
    return r->wce * o[0] + r->wdice * o[1];
}
/* analytic float64 gradient w.r.t. logits through the full softmax Jacobian, plus M[i], the
 * sum of the magnitudes of the terms that make up entry i (for the error bound) */
static void ref_dicece_grad(DiceRef* r, double* g, double* M) {
    int B = r->B, K = r->K, k0 = r->incl ? 0 : 1;
    long S = r->S;
    ref_softmax(r->p, r->x, B, K, S);
    double W = 0;
    for (long i = 0; i < B * S; i++) W += r->w ? r->w[r->y[i]] : 1.0;
    double* dp = t_dnew(K);
    for (int b = 0; b < B; b++) {
        double* Dn = t_dnew(2L * K);  /* D_bk, Den_bk */
        for (int k = k0; k < K; k++) {
            double I = 0, P = 0, G = 0;
            for (long s = 0; s < S; s++) {
                double p = r->p[(size_t)b * K * S + (size_t)k * S + s], gg = r->y[(size_t)b * S + s] == k;
                I += p * gg; P += p; G += gg;
            }
            Dn[K + k] = P + G + 1e-5;
            Dn[k] = (2 * I + 1e-5) / Dn[K + k];
        }
        for (long s = 0; s < S; s++) {
            int y = r->y[(size_t)b * S + s];
            double w = r->w ? r->w[y] : 1.0;
            const double* p = r->p + (size_t)b * K * S + s;
            /* dL/dp_k: CE term −w/(W p_y) on k = y; Dice term */
            for (int k = 0; k < K; k++) {
                dp[k] = (k == y) ? -r->wce * w / (W * p[(size_t)y * S]) : 0.0;
                if (k >= k0) dp[k] += -r->wdice * (2.0 * (k == y) - Dn[k]) / (Dn[K + k] * B * (K - k0));
            }
            for (int j = 0; j < K; j++) {
                double a = 0, m = 0;
                for (int k = 0; k < K; k++) {
                    double t = dp[k] * p[(size_t)k * S] * ((j == k) - p[(size_t)j * S]);
                    a += t; m += fabs(t);
                }
                g[(size_t)b * K * S + (size_t)j * S + s] = a;
                if (M) M[(size_t)b * K * S + (size_t)j * S + s] = m;
            }
        }
        free(Dn);
    }
    free(dp);
}

/* ======================= softmax ========================================================== */
static void test_softmax(int B, int K, long S, double scale, uint64_t seed) {
    char name[160];
    TRng r = {seed};
    long n = (long)B * K * S;
    double *x = t_dnew(n), *ref = t_dnew(n);
    float *xf = t_fnew(n), *p = t_fnew(n), *p2 = t_fnew(n);
    t_randn(&r, x, xf, n, scale);
    ref_softmax(ref, x, B, K, S);
    t_fill_nan(p, n);
    omp_set_num_threads(2);
    softmax_channels_forward(&ctx, p, xf, B, K, S);
    /* computed in double, rounded once: relative error <= u per entry => NMSE <= u^2; 2u^2 */
    snprintf(name, sizeof name, "softmax_channels NMSE B=%d K=%d S=%ld scale=%g", B, K, S, scale);
    t_check(name, t_nmse_fd(p, ref, n), 2 * T_U * T_U);
    omp_set_num_threads(3);
    softmax_channels_forward(&ctx, p2, xf, B, K, S);
    omp_set_num_threads(2);
    snprintf(name, sizeof name, "softmax_channels bit-identical with 2 and 3 threads S=%ld", S);
    t_true(name, !memcmp(p, p2, n * 4));
    free(x); free(ref); free(xf); free(p); free(p2);
}

/* ======================= Dice + CE ======================================================== */
static void test_dicece(int B, int K, long S, int incl, int weighted, double scale, int fd,
                        uint64_t seed) {
    char name[200], tag[96];
    snprintf(tag, sizeof tag, "B=%d K=%d S=%ld bg=%d w=%d scale=%g", B, K, S, incl, weighted, scale);
    TRng r = {seed};
    long n = (long)B * K * S;
    double *x = t_dnew(n), *pd = t_dnew(n), *g = t_dnew(n), *M = t_dnew(n), wd[16];
    float *xf = t_fnew(n), *p = t_fnew(n), *dz = t_fnew(n), wf[16];
    int32_t* y = calloc((size_t)B * S, sizeof *y);
    t_randn(&r, x, xf, n, scale);
    for (long i = 0; i < B * S; i++) y[i] = trng_int(&r, 0, K - 1);
    /* make the last class absent from sample 0: its Dice term is 1 − s/(P + s) */
    for (long s = 0; s < S; s++) if (y[s] == K - 1) y[s] = 0;
    for (int k = 0; k < K; k++) { wf[k] = (float)(0.25 + trng_uniform(&r)); wd[k] = wf[k]; }
    const float* wop = weighted ? wf : NULL;
    DiceRef R = {x, y, weighted ? wd : NULL, B, K, incl, S, 0.7, 1.3, pd};
    double ref[2], out[2] = {NAN, NAN};
    ref_dicece(&R, ref);
    softmax_channels_forward(&ctx, p, xf, B, K, S);
    dice_ce_forward(&ctx, out, p, y, wop, B, K, S, incl);
    /* CE: the op reads fp32 p = p(1+d), |d| <= u: −log p_y moves by <= u absolute per voxel,
     * so the weighted mean moves by <= u. Dice: I and P are sums of positive terms each with
     * relative error <= u, so D = (2I+s)/(P+G+s) moves by <= 2u·D <= 2u; the mean likewise.
     * Both to first order; +25% for second-order terms and the double sums (~1e-13). */
    snprintf(name, sizeof name, "dice_ce CE |op − f64| %s", tag);
    t_check(name, fabs(out[0] - ref[0]), 1.25 * T_U);
    snprintf(name, sizeof name, "dice_ce Dice |op − f64| %s", tag);
    t_check(name, fabs(out[1] - ref[1]), 2.5 * T_U);

    t_fill_nan(dz, n);
    dice_ce_backward(&ctx, dz, p, y, wop, B, K, S, incl, 0.7f, 1.3f);
    ref_dicece_grad(&R, g, M);
    /* entry i = Σ of terms of total magnitude M_i; the op's terms each carry <= 6u relative
     * error (p: u; the per-class sums: 2u; the Σ_j p_j dp_j: +u; products: +u; final fp32
     * rounding: u) => |err_i| <= 6u·M_i => NMSE <= 36u²·ΣM²/Σg² (computed from the reference). */
    double bound = 36 * T_U * T_U * t_dot(M, M, n) / t_dot(g, g, n);
    snprintf(name, sizeof name, "dice_ce bwd NMSE vs f64 (bound %.2g u²) %s", bound / (T_U * T_U), tag);
    t_check(name, t_nmse_fd(dz, g, n), bound);
    if (fd) {
        double* gfd = t_dnew(n);
        t_fd_grad(dicece_scalar, &R, x, n, gfd);
        /* the FD of the double reference is exact to ~1e-10 relative (testing.h); the op's
         * entries carry <= 6u·M_i/|g_i|. The score is the mean over entries of |a−b|/(|a|+|b|)
         * ≈ rel/2; with M_i/|g_i| ~ 1 for most entries and the floor for the rest, the bound of
         * the CE test scaled by 6u/u: 6u(1 + ln(1/u)) + 1e-8. */
        snprintf(name, sizeof name, "dice_ce bwd vs central FD %s", tag);
        t_check(name, t_grad_score_fd(dz, gfd, n), 6 * T_U * (1 + log(1 / T_U)) + 1e-8);
        free(gfd);
    }
    /* fixed reduction pieces: bit-identical for any thread count */
    {
        double o1[2], o3[2];
        float* d3 = t_fnew(n);
        omp_set_num_threads(1);
        dice_ce_forward(&ctx, o1, p, y, wop, B, K, S, incl);
        float* d1 = t_fnew(n);
        dice_ce_backward(&ctx, d1, p, y, wop, B, K, S, incl, 0.7f, 1.3f);
        omp_set_num_threads(3);
        dice_ce_forward(&ctx, o3, p, y, wop, B, K, S, incl);
        dice_ce_backward(&ctx, d3, p, y, wop, B, K, S, incl, 0.7f, 1.3f);
        omp_set_num_threads(2);
        snprintf(name, sizeof name, "dice_ce bit-identical with 1, 2 and 3 threads %s", tag);
        t_true(name, !memcmp(o1, o3, 16) && !memcmp(o1, out, 16) && !memcmp(d1, d3, n * 4) &&
                     !memcmp(d1, dz, n * 4));
        free(d1); free(d3);
    }
    free(x); free(pd); free(g); free(M); free(xf); free(p); free(dz); free(y);
}

/* logits of size ~100: the softmax must not overflow; a p_y that underflows fp32 is clamped */
static void test_dicece_extreme(void) {
    int B = 2, K = 3;
    long S = 500, n = (long)B * K * S;
    TRng r = {77};
    float *xf = t_fnew(n), *p = t_fnew(n), *dz = t_fnew(n);
    int32_t* y = calloc((size_t)B * S, sizeof *y);
    t_frandn(&r, xf, n, 100.0);
    for (long i = 0; i < B * S; i++) y[i] = trng_int(&r, 0, K - 1);
    double out[2];
    softmax_channels_forward(&ctx, p, xf, B, K, S);
    dice_ce_forward(&ctx, out, p, y, NULL, B, K, S, 1);
    dice_ce_backward(&ctx, dz, p, y, NULL, B, K, S, 1, 1.0f, 1.0f);
    int fin = isfinite(out[0]) && isfinite(out[1]) && out[0] > 10 && out[0] <= 103.3;
    for (long i = 0; i < n; i++) fin = fin && isfinite(dz[i]);
    t_true("dice_ce with logits ~100: finite CE (clamped at p >= FLT_TRUE_MIN) and gradient", fin);
    free(xf); free(p); free(dz); free(y);
}

static void dice_bad_label(void) {
    float p[6] = {0};
    int32_t y[2] = {0, 3};
    double out[2];
    dice_ce_forward(&ctx, out, p, y, NULL, 1, 3, 2, 1);
}

/* ======================= classification =================================================== */
typedef struct {
    double* x;
    const int32_t* y;
    const double* w;
    int B, V;
    double eps, gam;
} ClsRef;
/* naive: torch 1.13 cross_entropy_loss_label_smoothing, or the focal mean. row >= 0: only
 * that row's term (the denominator still over all rows; it does not depend on the logits),
 * so that the FD of one row is not swamped by the rounding noise of the other rows' terms.
 * lse = m + log1p(Σ_{j≠argmax} e^(x_j−m)) and 1 − p_y = −expm1(log p_y): accurate when one
 * class dominates (the FD of (1 − p_y)^γ needs it) */
static double ref_cls_row(ClsRef* r, int row) {
    double num = 0, den = 0, smooth = 0;
    for (int b = 0; b < r->B; b++) {
        const double* x = r->x + (size_t)b * r->V;
        int y = r->y[b], jm = 0;
        double wy = r->w ? r->w[y] : 1.0;
        den += r->gam > 0 ? 1.0 : wy;
        if (row >= 0 && b != row) continue;
        for (int j = 1; j < r->V; j++) if (x[j] > x[jm]) jm = j;
        double z = 0;
        for (int j = 0; j < r->V; j++) if (j != jm) z += exp(x[j] - x[jm]);
        double lse = x[jm] + log1p(z), lp = x[y] - lse;
        if (r->gam > 0) {
            num += -wy * pow(-expm1(lp), r->gam) * lp;
        } else {
            num += wy * -lp;
            for (int j = 0; j < r->V; j++) smooth += (r->w ? r->w[j] : 1.0) * (lse - x[j]);
        }
    }
    if (r->gam > 0) return num / den;
    return (1 - r->eps) * num / den + smooth / den * (r->eps / r->V);  /* nll + smooth/Σw·ε/V */
}
static double ref_cls(void* u) { return ref_cls_row(u, -1); }
typedef struct { ClsRef* r; int row; } ClsRow;
static double ref_cls_1row(void* u) { ClsRow* c = u; return ref_cls_row(c->r, c->row); }

/* eps and gam are float as the op takes them. (Passing double and writing (float)eps into the
 * double fields of ClsRef is miscompiled by GCC 12.2 at -O2: its SLP vectorizer drops the
 * double -> float -> double rounding of the pair; reproduced in isolation, gone with
 * -fno-tree-slp-vectorize.) */
static void test_cls(int B, int V, int weighted, float eps, float gam, double scale, uint64_t seed) {
    char name[200], tag[96];
    snprintf(tag, sizeof tag, "B=%d V=%d w=%d eps=%g gamma=%g", B, V, weighted, (double)eps, (double)gam);
    TRng r = {seed};
    long n = (long)B * V;
    double *x = t_dnew(n), *g = t_dnew(n), *wd = t_dnew(V);
    float *xf = t_fnew(n), *dx = t_fnew(n), *dx3 = t_fnew(n), *wf = t_fnew(V);
    int32_t* y = calloc(B, sizeof *y);
    t_randn(&r, x, xf, n, scale);
    for (int b = 0; b < B; b++) y[b] = trng_int(&r, 0, V - 1);
    for (int k = 0; k < V; k++) { wf[k] = (float)(0.25 + trng_uniform(&r)); wd[k] = wf[k]; }
    ClsRef R = {x, y, weighted ? wd : NULL, B, V, eps, gam};
    const float* wop = weighted ? wf : NULL;
    double ref = ref_cls(&R), out = NAN, out3 = NAN;
    cls_loss_forward(&ctx, &out, xf, y, wop, B, V, eps, gam);
    /* same fp32 inputs, all in double: the ≤ (V+1)·B non-negative terms (no cancellation)
     * each carry ≤ ~8 roundings of e (exp, log, pow, products) plus the running sums:
     * relative error ≤ 16·(V+1)·B·e */
    snprintf(name, sizeof name, "cls_loss fwd relative error vs f64 %s", tag);
    t_check(name, fabs(out - ref) / fmax(fabs(ref), 1e-300), 16.0 * (V + 1) * B * E53);
    t_fill_nan(dx, n);
    cls_loss_backward(&ctx, dx, xf, y, wop, B, V, eps, gam, 1.0f);
    for (int b = 0; b < B; b++) {  /* row by row: see ref_cls_row */
        ClsRow cr = {&R, b};
        t_fd_grad(ref_cls_1row, &cr, x + (size_t)b * V, V, g + (size_t)b * V);
    }
    /* double from the same inputs, one fp32 rounding per entry (as the crossentropy test):
     * score ≤ u(1 + ln(1/u)) + 1e-8 (FD error ~1e-10 relative) */
    snprintf(name, sizeof name, "cls_loss bwd vs central FD %s", tag);
    t_check(name, t_grad_score_fd(dx, g, n), T_U * (1 + log(1 / T_U)) + 1e-8);
    omp_set_num_threads(3);
    cls_loss_forward(&ctx, &out3, xf, y, wop, B, V, eps, gam);
    cls_loss_backward(&ctx, dx3, xf, y, wop, B, V, eps, gam, 1.0f);
    omp_set_num_threads(2);
    snprintf(name, sizeof name, "cls_loss bit-identical with 2 and 3 threads %s", tag);
    t_true(name, !memcmp(&out, &out3, 8) && !memcmp(dx, dx3, n * 4));
    /* scale multiplies the gradient (a power of two: exact) */
    cls_loss_backward(&ctx, dx3, xf, y, wop, B, V, eps, gam, 0.25f);
    int ok = 1;
    for (long i = 0; i < n; i++) ok = ok && dx3[i] == 0.25f * dx[i];
    snprintf(name, sizeof name, "cls_loss bwd scale 0.25 = 0.25 x scale 1 exactly %s", tag);
    t_true(name, ok);
    free(x); free(g); free(xf); free(dx); free(dx3); free(y); free(wd); free(wf);
}

static void cls_bad_target(void) {
    float x[6] = {0};
    int32_t y[2] = {1, -1};
    double out;
    cls_loss_forward(&ctx, &out, x, y, NULL, 2, 3, 0.0f, 0.0f);
}
static void cls_focal_smooth(void) {
    float x[6] = {0};
    int32_t y[2] = {1, 0};
    double out;
    cls_loss_forward(&ctx, &out, x, y, NULL, 2, 3, 0.1f, 2.0f);
}

/* ======================= regression ======================================================= */
typedef struct { double* p; const double* t; long n; int kind; } RegRef;
static double ref_reg(void* u) {
    RegRef* r = u;
    double s = 0;
    for (long i = 0; i < r->n; i++) {
        double d = r->p[i] - r->t[i];
        s += r->kind == LOSS_L1 ? fabs(d) : d * d;
    }
    return s / r->n;
}

static void test_reg(long n, int kind, uint64_t seed) {
    char name[160];
    const char* kn = kind == LOSS_L1 ? "L1" : "MSE";
    TRng r = {seed};
    double *p = t_dnew(n), *t = t_dnew(n), *g = t_dnew(n);
    float *pf = t_fnew(n), *tf = t_fnew(n), *d = t_fnew(n), *d3 = t_fnew(n);
    t_randn(&r, p, pf, n, 1.0);
    t_randn(&r, t, tf, n, 1.0);
    for (long i = 0; i < n; i += 7) { t[i] = p[i]; tf[i] = pf[i]; }  /* exact ties */
    RegRef R = {p, t, n, kind};
    double ref = ref_reg(&R), out = NAN, out3 = NAN;
    omp_set_num_threads(2);
    regress_loss_forward(&ctx, &out, pf, tf, n, kind);
    /* n non-negative terms, exact differences, ≤ 1 rounding each + the sums: ≤ 2n·e relative */
    snprintf(name, sizeof name, "regress %s fwd relative error n=%ld", kn, n);
    t_check(name, fabs(out - ref) / fmax(ref, 1e-300), 2.0 * n * E53);
    t_fill_nan(d, n);
    regress_loss_backward(&ctx, d, pf, tf, n, kind, 1.0f);
    /* exact analytic reference: sign(d)/n or 2d/n; op rounds once: NMSE ≤ u², bound 2u² */
    for (long i = 0; i < n; i++) {
        double di = p[i] - t[i];
        g[i] = kind == LOSS_L1 ? (di > 0 ? 1.0 : di < 0 ? -1.0 : 0.0) / n : 2 * di / n;
    }
    snprintf(name, sizeof name, "regress %s bwd NMSE n=%ld", kn, n);
    t_check(name, t_nmse_fd(d, g, n), 2 * T_U * T_U);
    int zeros = 1;
    for (long i = 0; i < n; i += 7) zeros = zeros && d[i] == 0.0f;
    snprintf(name, sizeof name, "regress %s bwd is exactly 0 where pred == target", kn);
    t_true(name, zeros);
    if (n <= 2000) {
        /* at the exact ties the central FD of |d| is (h − h)/2h = 0 = sign(0); elsewhere
         * |d| >> h = 1e-5 for this seed, so no difference crosses the kink */
        t_fd_grad(ref_reg, &R, p, n, g);
        snprintf(name, sizeof name, "regress %s bwd vs central FD n=%ld", kn, n);
        t_check(name, t_grad_score_fd(d, g, n), T_U * (1 + log(1 / T_U)) + 1e-8);
    }
    omp_set_num_threads(1);
    regress_loss_forward(&ctx, &out3, pf, tf, n, kind);
    double o1 = out3;
    omp_set_num_threads(3);
    regress_loss_forward(&ctx, &out3, pf, tf, n, kind);
    regress_loss_backward(&ctx, d3, pf, tf, n, kind, 1.0f);
    omp_set_num_threads(2);
    snprintf(name, sizeof name, "regress %s bit-identical with 1, 2 and 3 threads n=%ld", kn, n);
    t_true(name, o1 == out && out3 == out && !memcmp(d, d3, n * 4));
    free(p); free(t); free(g); free(pf); free(tf); free(d); free(d3);
}

/* ======================= PyTorch float64 oracle =========================================== */
static void test_oracle(void) {
    char path[512], err[512], key[128], name[200];
    oracle_ensure(path, sizeof path, "losses.safetensors", "tests/oracle/losses_oracle.py");
    StFile f;
    if (!t_true("losses oracle readable (tests/oracle/losses_oracle.py)", st_open(&f, path, err, sizeof err) == 0)) {
        printf("%s\n", err);
        return;
    }
    int nd = atoi(st_meta(&f, "dice") ? st_meta(&f, "dice") : "0");
    int nc = atoi(st_meta(&f, "cls") ? st_meta(&f, "cls") : "0");
    int nr = atoi(st_meta(&f, "reg") ? st_meta(&f, "reg") : "0");
    t_true("losses oracle has dice, cls and reg cases", nd > 0 && nc > 0 && nr > 0);
    for (int i = 0; i < nd; i++) {
        snprintf(key, sizeof key, "dice%d.cfg", i);
        float* cfg = load_t(&f, key, NULL);
        int B = (int)cfg[0], K = (int)cfg[1], incl = (int)cfg[5], wtd = (int)cfg[6];
        long S = (long)cfg[2] * (long)cfg[3] * (long)cfg[4], n = (long)B * K * S;
        float wce = cfg[7], wdice = cfg[8];
        snprintf(key, sizeof key, "dice%d.logits", i); float* x = load_t(&f, key, NULL);
        snprintf(key, sizeof key, "dice%d.labels", i); float* yl = load_t(&f, key, NULL);
        snprintf(key, sizeof key, "dice%d.weights", i); float* w = wtd ? load_t(&f, key, NULL) : NULL;
        snprintf(key, sizeof key, "dice%d.ce", i); double* ce = load_hilo(&f, key, NULL);
        snprintf(key, sizeof key, "dice%d.dice", i); double* dc = load_hilo(&f, key, NULL);
        snprintf(key, sizeof key, "dice%d.grad", i); double* gr = load_hilo(&f, key, NULL);
        int32_t* y = to_i32(yl, (long)B * S);
        float *p = t_fnew(n), *dz = t_fnew(n);
        double out[2];
        softmax_channels_forward(&ctx, p, x, B, K, S);
        dice_ce_forward(&ctx, out, p, y, w, B, K, S, incl);
        t_fill_nan(dz, n);
        dice_ce_backward(&ctx, dz, p, y, w, B, K, S, incl, wce, wdice);
        /* bounds as in test_dicece (torch float64 is the exact value to ~1e-15) */
        snprintf(name, sizeof name, "oracle dice%d CE |op − torch| (B=%d K=%d S=%ld bg=%d w=%d)", i, B, K, S, incl, wtd);
        t_check(name, fabs(out[0] - ce[0]), 1.25 * T_U);
        snprintf(name, sizeof name, "oracle dice%d Dice (MONAI def.) |op − torch|", i);
        t_check(name, fabs(out[1] - dc[0]), 2.5 * T_U);
        /* M_i from our float64 reference at the same inputs gives the bound of test_dicece */
        double *xd = t_dnew(n), *pd = t_dnew(n), *g = t_dnew(n), *M = t_dnew(n), wd[16];
        t_f2d(xd, x, n);
        if (w) for (int k = 0; k < K; k++) wd[k] = w[k];
        DiceRef R = {xd, y, w ? wd : NULL, B, K, incl, S, wce, wdice, pd};
        ref_dicece_grad(&R, g, M);
        double bound = 36 * T_U * T_U * t_dot(M, M, n) / t_dot(gr, gr, n);
        snprintf(name, sizeof name, "oracle dice%d grad NMSE vs torch autograd", i);
        t_check(name, t_nmse_fd(dz, gr, n), bound);
        snprintf(name, sizeof name, "oracle dice%d our f64 reference grad NMSE vs torch", i);
        t_check(name, t_nmse_dd(g, gr, n), 1e-24);  /* two float64 computations: ~1e-30 */
        free(xd); free(pd); free(g); free(M);
        free(cfg); free(x); free(yl); free(w); free(ce); free(dc); free(gr); free(y); free(p); free(dz);
    }
    for (int i = 0; i < nc; i++) {
        snprintf(key, sizeof key, "cls%d.cfg", i);
        float* cfg = load_t(&f, key, NULL);
        int B = (int)cfg[0], V = (int)cfg[1], wtd = (int)cfg[2];
        float eps = cfg[3], gam = cfg[4];
        long n = (long)B * V;
        snprintf(key, sizeof key, "cls%d.logits", i); float* x = load_t(&f, key, NULL);
        snprintf(key, sizeof key, "cls%d.targets", i); float* yl = load_t(&f, key, NULL);
        snprintf(key, sizeof key, "cls%d.weights", i); float* w = wtd ? load_t(&f, key, NULL) : NULL;
        snprintf(key, sizeof key, "cls%d.loss", i); double* L = load_hilo(&f, key, NULL);
        snprintf(key, sizeof key, "cls%d.grad", i); double* gr = load_hilo(&f, key, NULL);
        int32_t* y = to_i32(yl, B);
        float* dx = t_fnew(n);
        double out;
        cls_loss_forward(&ctx, &out, x, y, w, B, V, eps, gam);
        t_fill_nan(dx, n);
        cls_loss_backward(&ctx, dx, x, y, w, B, V, eps, gam, 1.0f);
        /* the op is double from the same inputs: relative bound of test_cls, plus the oracle's
         * hi+lo storage (~2^-48 relative) and its eps/V with eps = fp32(0.1) exactly in both */
        snprintf(name, sizeof name, "oracle cls%d loss rel. err vs torch (B=%d V=%d w=%d eps=%g gamma=%g)",
                 i, B, V, wtd, (double)eps, (double)gam);
        t_check(name, fabs(out - L[0]) / fmax(fabs(L[0]), 1e-300), 16.0 * (V + 1) * B * E53 + 0x1p-47);
        /* one fp32 rounding per entry: NMSE ≤ u², 2u² */
        snprintf(name, sizeof name, "oracle cls%d grad NMSE vs torch autograd", i);
        t_check(name, t_nmse_fd(dx, gr, n), 2 * T_U * T_U);
        free(cfg); free(x); free(yl); free(w); free(L); free(gr); free(y); free(dx);
    }
    for (int i = 0; i < nr; i++) {
        snprintf(key, sizeof key, "reg%d.cfg", i);
        float* cfg = load_t(&f, key, NULL);
        long n = (long)cfg[0];
        int kind = (int)cfg[1];
        snprintf(key, sizeof key, "reg%d.pred", i); float* p = load_t(&f, key, NULL);
        snprintf(key, sizeof key, "reg%d.target", i); float* t = load_t(&f, key, NULL);
        snprintf(key, sizeof key, "reg%d.loss", i); double* L = load_hilo(&f, key, NULL);
        snprintf(key, sizeof key, "reg%d.grad", i); double* gr = load_hilo(&f, key, NULL);
        float* d = t_fnew(n);
        double out;
        regress_loss_forward(&ctx, &out, p, t, n, kind);
        t_fill_nan(d, n);
        regress_loss_backward(&ctx, d, p, t, n, kind, 1.0f);
        snprintf(name, sizeof name, "oracle reg%d %s loss rel. err vs torch (n=%ld)", i, kind ? "MSELoss" : "L1Loss", n);
        t_check(name, fabs(out - L[0]) / fmax(L[0], 1e-300), 2.0 * n * E53 + 0x1p-47);
        snprintf(name, sizeof name, "oracle reg%d %s grad NMSE vs torch autograd (sign(0) = 0)", i, kind ? "MSELoss" : "L1Loss");
        t_check(name, t_nmse_fd(d, gr, n), 2 * T_U * T_U);
        free(cfg); free(p); free(t); free(L); free(gr); free(d);
    }
    st_close(&f);
}

int main(void) {
    if (ctx_open(&ctx, "cpu", 2, 1)) return 1;
    omp_set_num_threads(2);
    test_softmax(2, 3, 1000, 2.0, 1);
    test_softmax(1, 5, 4096 * 2 + 77, 100.0, 2);  /* logits ~100: needs the max subtraction */
    test_softmax(3, 1, 10, 1.0, 3);

    test_dicece(2, 3, 120, 1, 0, 2.0, 1, 11);
    test_dicece(2, 3, 120, 0, 1, 2.0, 1, 12);
    test_dicece(3, 4, 63, 0, 0, 3.0, 1, 13);
    test_dicece(1, 2, 50, 1, 1, 1.0, 1, 14);
    test_dicece(2, 4, 3 * 4096 + 123, 1, 1, 2.0, 0, 15);  /* several reduction pieces */
    test_dicece_extreme();
    t_expect_exit2("dice_ce label 3 with K=3 exits with code 2", dice_bad_label);

    test_cls(8, 5, 0, 0.0, 0.0, 2.0, 21);
    test_cls(8, 5, 1, 0.0, 0.0, 2.0, 22);
    test_cls(8, 5, 0, 0.1, 0.0, 2.0, 23);
    test_cls(16, 3, 1, 0.2, 0.0, 3.0, 24);
    test_cls(16, 4, 1, 0.0, 2.0, 2.0, 25);
    test_cls(12, 2, 0, 0.0, 0.5, 4.0, 26);
    test_cls(1, 1, 1, 0.0, 2.0, 1.0, 27);   /* V = 1: p = 1, loss 0, gradient 0 */
    test_cls(4, 1000, 1, 0.1, 0.0, 2.0, 28);
    t_expect_exit2("cls_loss target -1 exits with code 2", cls_bad_target);
    t_expect_exit2("cls_loss focal + label smoothing exits with code 2", cls_focal_smooth);

    test_reg(1000, LOSS_L1, 31);
    test_reg(1000, LOSS_MSE, 32);
    test_reg(1, LOSS_MSE, 33);
    test_reg(5 * 4096 + 1, LOSS_L1, 34);
    test_reg(5 * 4096 + 1, LOSS_MSE, 35);

    test_oracle();
    ctx_close(&ctx);
    return t_summary();
}
