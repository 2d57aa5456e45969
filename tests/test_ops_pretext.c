/* tests/test_ops_pretext.c — the pretraining ops of the CPU backend (kernels/ops.h, "pretraining
 * objectives"): tokens_gather, tokens_unshuffle, mae_loss (with and without norm_pix), l2norm,
 * infonce; each against a naive float64 reference written here, gradients against central
 * finite differences of that reference (testing.h's gradient score), outputs NaN-prefilled
 * (must be overwritten) with sentinels after them (must stay untouched), parameter gradients
 * (mask token) accumulating, and CHECK failures (exit 2) for a bad index.
 *
 * Derived thresholds (u = 2^-24, fp32 unit roundoff; both sides see identical float inputs):
 *  - gather / unshuffle are row copies: exact (difference must be 0).
 *  - mask-token gradient: a double sum of B (P-n) floats rounded once: relative error <= u,
 *    NMSE <= u^2; accumulation onto a prefilled value is one more fp32 addition (t_accum_ratio).
 *  - mae_loss: the loss is computed in double from float inputs: relative error ~ (K + n_m) 2^-53,
 *    held to 1e-12. dpred = fp32 rounding of a double value: per entry relative error <= u,
 *    NMSE <= u^2 against the analytic double gradient; gradient score vs FD: grad_bound(1).
 *  - l2norm: norm in double, one division rounded: NMSE <= nmse_bound(2); backward: the dot in
 *    double, two roundings: nmse_bound(3); vs FD grad_bound(3).
 *  - infonce: s_ij = z_i . z_j in fp32 sgemm (|z| = 1, error <= C u), then divided by tau; the
 *    loss is 1-Lipschitz in each row's (s_i. / tau) in the max-norm sense summed over two
 *    terms, so |dL| <= 2 C u / tau. Backward: G from the same s (relative error ~ C u / tau
 *    in the exponent), one more sgemm of length N: gradient score grad_bound(C / tau + N),
 *    NMSE nmse_bound(C / tau + N) against the float64 analytic gradient.
 * nmse_bound / grad_bound as tests/test_ops_linear_attn.c (10 K^2 u^2; K u (1 + ln(1/(K u)))).
 */
#include "../kernels/ops.h"
#include "testing.h"

static Ctx ctx;
static double nmse_bound(double K) { return 10.0 * K * K * T_U * T_U; }
static double grad_bound(double K) { double e = K * T_U; return e * (1.0 + log(1.0 / e)) + 1e-8; }

#define NSENT 16
#define SENT 12345.5f
/* n floats + NSENT sentinels after them; the n are NaN (must be overwritten) */
static float* out_buf(long n) {
    float* x = t_fnew(n + NSENT);
    t_fill_nan(x, n);
    for (int i = 0; i < NSENT; i++) x[n + i] = SENT;
    return x;
}
static int sent_ok(const float* x, long n) {
    for (int i = 0; i < NSENT; i++) if (x[n + i] != SENT) return 0;
    return 1;
}
static double max_abs_diff(const float* a, const float* b, long n) {
    double m = 0;
    for (long i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d != d) return INFINITY;
        m = fmax(m, d);
    }
    return m;
}
static void rand_perm(TRng* r, int32_t* p, int B, int P) {
    for (int b = 0; b < B; b++) {
        int32_t* q = p + (long)b * P;
        for (int i = 0; i < P; i++) q[i] = i;
        for (int i = P - 1; i > 0; i--) { int j = trng_int(r, 0, i); int32_t t = q[i]; q[i] = q[j]; q[j] = t; }
    }
}

/* ======================= gather / unshuffle ============================================== */
static void test_masking(int B, int P, int n, int C, int t0, int R, uint64_t seed) {
    char name[160];
    TRng r = {seed};
    int32_t* perm = malloc(sizeof(int32_t) * B * P);
    rand_perm(&r, perm, B, P);
    long nx = (long)B * P * C, nk = (long)B * n * C;
    float *x = t_fnew(nx), *dout = t_fnew(nk);
    t_frandn(&r, x, nx, 1.0);
    t_frandn(&r, dout, nk, 1.0);

    float *o = out_buf(nk), *ref = t_fnew(nk);
    for (int b = 0; b < B; b++)
        for (int i = 0; i < n; i++)
            memcpy(ref + ((long)b * n + i) * C, x + ((long)b * P + perm[b * P + i]) * C, sizeof(float) * C);
    tokens_gather_forward(&ctx, o, x, perm, B, P, n, C);
    snprintf(name, sizeof name, "tokens_gather fwd max|diff| B=%d P=%d n=%d C=%d", B, P, n, C);
    t_check(name, max_abs_diff(o, ref, nk), 0);
    t_true("tokens_gather fwd sentinels intact", sent_ok(o, nk));

    float *dx = out_buf(nx), *dref = t_fnew(nx);   /* scatter: zeros at masked rows */
    for (int b = 0; b < B; b++)
        for (int i = 0; i < n; i++)
            memcpy(dref + ((long)b * P + perm[b * P + i]) * C, dout + ((long)b * n + i) * C, sizeof(float) * C);
    tokens_gather_backward(&ctx, dx, dout, perm, B, P, n, C);
    snprintf(name, sizeof name, "tokens_gather bwd max|diff| B=%d P=%d n=%d C=%d", B, P, n, C);
    t_check(name, max_abs_diff(dx, dref, nx), 0);
    t_true("tokens_gather bwd sentinels intact", sent_ok(dx, nx));

    /* unshuffle: src [B, Ts, C] = [t0 head rows | R skipped | n kept], out [B, t0 + P, C] */
    int Ts = t0 + R + n, s0 = t0 + R, To = t0 + P;
    long ns = (long)B * Ts * C, no = (long)B * To * C;
    float *src = t_fnew(ns), *fill = t_fnew(C), *uo = out_buf(no), *uref = t_fnew(no);
    t_frandn(&r, src, ns, 1.0);
    t_frandn(&r, fill, C, 1.0);
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < t0; t++) memcpy(uref + ((long)b * To + t) * C, src + ((long)b * Ts + t) * C, sizeof(float) * C);
        for (int i = 0; i < P; i++) {
            float* dst = uref + ((long)b * To + t0 + perm[b * P + i]) * C;
            memcpy(dst, i < n ? src + ((long)b * Ts + s0 + i) * C : fill, sizeof(float) * C);
        }
    }
    tokens_unshuffle_forward(&ctx, uo, src, fill, perm, B, P, n, C, t0, Ts, s0);
    snprintf(name, sizeof name, "tokens_unshuffle fwd max|diff| B=%d P=%d n=%d t0=%d R=%d", B, P, n, t0, R);
    t_check(name, max_abs_diff(uo, uref, no), 0);
    t_true("tokens_unshuffle fwd sentinels intact", sent_ok(uo, no));

    /* backward: dsrc rows = dout rows (registers 0); dfill = double sum over masked rows */
    float *ud = t_fnew(no), *dsrc = out_buf(ns), *dsref = t_fnew(ns);
    t_frandn(&r, ud, no, 1.0);
    double* dfref = t_dnew(C);
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < t0; t++) memcpy(dsref + ((long)b * Ts + t) * C, ud + ((long)b * To + t) * C, sizeof(float) * C);
        for (int i = 0; i < P; i++) {
            const float* g = ud + ((long)b * To + t0 + perm[b * P + i]) * C;
            if (i < n) memcpy(dsref + ((long)b * Ts + s0 + i) * C, g, sizeof(float) * C);
            else for (int k = 0; k < C; k++) dfref[k] += g[k];
        }
    }
    float *dfill = t_fnew(C + NSENT), *g0 = t_fnew(C), *dfill1 = t_fnew(C);
    for (int i = 0; i < NSENT; i++) dfill[C + i] = SENT;
    tokens_unshuffle_backward(&ctx, dsrc, dfill, ud, perm, B, P, n, C, t0, Ts, s0);
    snprintf(name, sizeof name, "tokens_unshuffle bwd dsrc max|diff| B=%d P=%d n=%d", B, P, n);
    t_check(name, max_abs_diff(dsrc, dsref, ns), 0);
    t_true("tokens_unshuffle bwd sentinels intact", sent_ok(dsrc, ns) && sent_ok(dfill, C));
    snprintf(name, sizeof name, "tokens_unshuffle bwd dfill NMSE (%d masked rows)", B * (P - n));
    t_check(name, t_nmse_fd(dfill, dfref, C), T_U * T_U);
    /* accumulate: from g0, twice -> g0 + 2 dfill */
    t_frandn(&r, g0, C, 1.0);
    memcpy(dfill1, g0, sizeof(float) * C);
    tokens_unshuffle_backward(&ctx, NULL, dfill1, ud, perm, B, P, n, C, t0, Ts, s0);
    tokens_unshuffle_backward(&ctx, NULL, dfill1, ud, perm, B, P, n, C, t0, Ts, s0);
    t_check("tokens_unshuffle dfill accumulates (err / 2u bound)", t_accum_ratio(dfill1, g0, dfill, C), 1.0);

    free(perm); free(x); free(dout); free(o); free(ref); free(dx); free(dref);
    free(src); free(fill); free(uo); free(uref); free(ud); free(dsrc); free(dsref); free(dfref);
    free(dfill); free(g0); free(dfill1);
}

/* ======================= mae_loss ========================================================= */
typedef struct { double* pred; const double* tgt; const int32_t* perm; int B, P, n, K, Tp, t0, np; } MaeRef;
static double ref_mae(void* u) {
    MaeRef* m = u;
    double s = 0;
    for (int b = 0; b < m->B; b++)
        for (int i = m->n; i < m->P; i++) {
            int p = m->perm[b * m->P + i];
            const double* t = m->tgt + ((long)b * m->P + p) * m->K;
            const double* y = m->pred + ((long)b * m->Tp + m->t0 + p) * m->K;
            double mu = 0, var = 0, inv = 1;
            if (m->np) {
                for (int k = 0; k < m->K; k++) mu += t[k];
                mu /= m->K;
                for (int k = 0; k < m->K; k++) var += (t[k] - mu) * (t[k] - mu);
                inv = 1.0 / sqrt(var / (m->K - 1) + 1e-6);
            }
            double a = 0;
            for (int k = 0; k < m->K; k++) { double d = y[k] - (t[k] - mu) * inv; a += d * d; }
            s += a / m->K;
        }
    return s / ((double)m->B * (m->P - m->n));
}

static void test_mae_loss(int B, int P, int n, int K, int t0, int norm_pix, uint64_t seed) {
    char name[160];
    TRng r = {seed};
    int Tp = t0 + P;
    int32_t* perm = malloc(sizeof(int32_t) * B * P);
    rand_perm(&r, perm, B, P);
    long npd = (long)B * Tp * K, nt = (long)B * P * K;
    double *pred = t_dnew(npd), *tgt = t_dnew(nt);
    float *predf = t_fnew(npd), *tgtf = t_fnew(nt);
    t_randn(&r, pred, predf, npd, 1.0);
    t_randn(&r, tgt, tgtf, nt, 2.0);
    for (long i = 0; i < nt; i++) { tgtf[i] = (float)(tgt[i] + 0.5); tgt[i] = tgtf[i]; }   /* offset: mean != 0 */
    MaeRef m = {pred, tgt, perm, B, P, n, K, Tp, t0, norm_pix};
    double want = ref_mae(&m), *got = calloc(1, sizeof(double));
    mae_loss_forward(&ctx, got, predf, tgtf, perm, B, P, n, K, Tp, t0, norm_pix);
    snprintf(name, sizeof name, "mae_loss fwd rel err B=%d P=%d n=%d K=%d norm_pix=%d", B, P, n, K, norm_pix);
    t_check(name, fabs(got[0] - want) / want, 1e-12);

    const float scale = 0.75f;
    float* d = out_buf(npd);
    mae_loss_backward(&ctx, d, predf, tgtf, perm, B, P, n, K, Tp, t0, norm_pix, scale);
    t_true("mae_loss bwd sentinels intact", sent_ok(d, npd));
    double* g = t_dnew(npd);
    t_fd_grad(ref_mae, &m, pred, npd, g);
    for (long i = 0; i < npd; i++) g[i] *= scale;
    snprintf(name, sizeof name, "mae_loss bwd vs FD grad score norm_pix=%d", norm_pix);
    t_check(name, t_grad_score_fd(d, g, npd), grad_bound(1));
    /* analytic double: rows of kept patches and the cls rows must be exactly 0 */
    double zero_rows = 0;
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < t0; t++)
            for (int k = 0; k < K; k++) zero_rows = fmax(zero_rows, fabs(d[((long)b * Tp + t) * K + k]));
        for (int i = 0; i < n; i++)
            for (int k = 0; k < K; k++) zero_rows = fmax(zero_rows, fabs(d[((long)b * Tp + t0 + perm[b * P + i]) * K + k]));
    }
    t_check("mae_loss bwd: cls and kept rows max|d|", zero_rows, 0);
    free(perm); free(pred); free(tgt); free(predf); free(tgtf); free(got); free(d); free(g);
}

/* ======================= l2norm =========================================================== */
typedef struct { double* x; double* out; const double* R; int N, C; } L2Ref;
static void ref_l2(const L2Ref* l) {
    for (int i = 0; i < l->N; i++) {
        double s = 0;
        for (int k = 0; k < l->C; k++) s += l->x[(long)i * l->C + k] * l->x[(long)i * l->C + k];
        double nr = fmax(sqrt(s), 1e-12);
        for (int k = 0; k < l->C; k++) l->out[(long)i * l->C + k] = l->x[(long)i * l->C + k] / nr;
    }
}
static double l2_loss(void* u) { L2Ref* l = u; ref_l2(l); return t_dot(l->out, l->R, (long)l->N * l->C); }

static void test_l2norm(int N, int C, uint64_t seed) {
    char name[160];
    TRng r = {seed};
    long n = (long)N * C;
    double *x = t_dnew(n), *R = t_dnew(n), *ref = t_dnew(n);
    float *xf = t_fnew(n), *Rf = t_fnew(n), *o = out_buf(n), *nr = out_buf(N), *dx = out_buf(n);
    t_randn(&r, x, xf, n, 3.0);
    t_randn(&r, R, Rf, n, 1.0);
    L2Ref l = {x, ref, R, N, C};
    ref_l2(&l);
    l2norm_forward(&ctx, o, nr, xf, N, C);
    snprintf(name, sizeof name, "l2norm fwd NMSE N=%d C=%d", N, C);
    t_check(name, t_nmse_fd(o, ref, n), nmse_bound(2));
    t_true("l2norm fwd sentinels intact", sent_ok(o, n) && sent_ok(nr, N));
    l2norm_backward(&ctx, dx, Rf, o, nr, N, C);
    t_true("l2norm bwd sentinels intact", sent_ok(dx, n));
    /* analytic double: (R - y (y.R)) / |x| */
    double* ga = t_dnew(n);
    for (int i = 0; i < N; i++) {
        double s = 0, dot = 0;
        for (int k = 0; k < C; k++) s += x[(long)i * C + k] * x[(long)i * C + k];
        for (int k = 0; k < C; k++) dot += ref[(long)i * C + k] * R[(long)i * C + k];
        for (int k = 0; k < C; k++) ga[(long)i * C + k] = (R[(long)i * C + k] - ref[(long)i * C + k] * dot) / sqrt(s);
    }
    snprintf(name, sizeof name, "l2norm bwd NMSE vs analytic N=%d C=%d", N, C);
    t_check(name, t_nmse_fd(dx, ga, n), nmse_bound(3));
    double* g = t_dnew(n);
    t_fd_grad(l2_loss, &l, x, n, g);
    snprintf(name, sizeof name, "l2norm bwd vs FD grad score N=%d C=%d", N, C);
    t_check(name, t_grad_score_fd(dx, g, n), grad_bound(3));
    /* in place (dx == dout) gives the same bits */
    float* inpl = t_fnew(n);
    memcpy(inpl, Rf, sizeof(float) * n);
    l2norm_backward(&ctx, inpl, inpl, o, nr, N, C);
    t_check("l2norm bwd in place max|diff|", max_abs_diff(inpl, dx, n), 0);
    free(x); free(R); free(ref); free(xf); free(Rf); free(o); free(nr); free(dx); free(ga); free(g); free(inpl);
}

/* ======================= infonce ========================================================== */
typedef struct { double* z; const int32_t* pos; int N, C; double tau; } NceRef;
static double ref_nce(void* u) {
    NceRef* q = u;
    double L = 0;
    for (int i = 0; i < q->N; i++) {
        double mx = -INFINITY, s[256];
        for (int j = 0; j < q->N; j++) {
            s[j] = t_dot(q->z + (long)i * q->C, q->z + (long)j * q->C, q->C) / q->tau;
            if (j != i) mx = fmax(mx, s[j]);
        }
        double a = 0;
        for (int j = 0; j < q->N; j++) if (j != i) a += exp(s[j] - mx);
        L += mx + log(a) - s[q->pos[i]];
    }
    return L / q->N;
}

static void test_infonce(int Bh, int C, double tau, int shuffle, uint64_t seed) {
    char name[160];
    TRng r = {seed};
    int N = 2 * Bh;
    long n = (long)N * C;
    double* z = t_dnew(n);
    float *zf = t_fnew(n), *dz = out_buf(n);
    t_randn(&r, z, NULL, n, 1.0);
    for (int i = 0; i < N; i++) {   /* unit rows, as the op expects; then rounded to float */
        double s = sqrt(t_dot(z + (long)i * C, z + (long)i * C, C));
        for (int k = 0; k < C; k++) { zf[(long)i * C + k] = (float)(z[(long)i * C + k] / s); z[(long)i * C + k] = zf[(long)i * C + k]; }
    }
    int32_t* pos = malloc(sizeof(int32_t) * N);
    for (int i = 0; i < Bh; i++) {
        int sg = shuffle ? (i + 1) % Bh : i;
        pos[i] = Bh + sg;
        pos[Bh + sg] = i;
    }
    NceRef q = {z, pos, N, C, tau};
    double want = ref_nce(&q), got = 0;
    infonce_forward(&ctx, &got, zf, pos, N, C, (float)tau);
    snprintf(name, sizeof name, "infonce fwd |dL| / (2 C u / tau) N=%d C=%d tau=%g", N, C, tau);
    t_check(name, fabs(got - want) / (2 * C * T_U / (float)tau), 1.0);
    const float scale = 0.5f;
    infonce_backward(&ctx, dz, zf, pos, N, C, (float)tau, scale);
    t_true("infonce bwd sentinels intact", sent_ok(dz, n));
    /* analytic double: (G + G^T) z, G_ij = (p_ij - [j = pos i]) / (tau N) */
    double *G = t_dnew((long)N * N), *ga = t_dnew(n);
    for (int i = 0; i < N; i++) {
        double mx = -INFINITY, a = 0, s[256];
        for (int j = 0; j < N; j++) { s[j] = t_dot(z + (long)i * C, z + (long)j * C, C) / tau; if (j != i) mx = fmax(mx, s[j]); }
        for (int j = 0; j < N; j++) if (j != i) a += exp(s[j] - mx);
        for (int j = 0; j < N; j++) G[(long)i * N + j] = j == i ? 0 : (exp(s[j] - mx) / a - (j == pos[i])) / (tau * N);
    }
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++)
            for (int k = 0; k < C; k++)
                ga[(long)i * C + k] += scale * (G[(long)i * N + j] + G[(long)j * N + i]) * z[(long)j * C + k];
    snprintf(name, sizeof name, "infonce bwd NMSE vs analytic N=%d C=%d", N, C);
    t_check(name, t_nmse_fd(dz, ga, n), nmse_bound(C / tau + N));
    double* g = t_dnew(n);
    t_fd_grad(ref_nce, &q, z, n, g);
    for (long i = 0; i < n; i++) g[i] *= scale;
    snprintf(name, sizeof name, "infonce bwd vs FD grad score N=%d C=%d shuffle=%d", N, C, shuffle);
    t_check(name, t_grad_score_fd(dz, g, n), grad_bound(C / tau + N));
    free(z); free(zf); free(dz); free(pos); free(G); free(ga); free(g);
}

/* ======================= bad indices: internal errors (exit 2) ============================ */
static void bad_perm(void) {
    int32_t perm[4] = {0, 1, 7, 2};
    float x[16] = {0}, o[16];
    tokens_gather_forward(&ctx, o, x, perm, 1, 4, 2, 4);
}
static void bad_pos(void) {
    int32_t pos[4] = {2, 1, 0, 1};   /* pos[1] = 1: a row cannot be its own positive */
    float z[8] = {1, 0, 0, 1, 1, 0, 0, 1};
    double L;
    infonce_forward(&ctx, &L, z, pos, 4, 2, 0.1f);
}

int main(void) {
    ctx_open(&ctx, "cpu", 2, 1);
    test_masking(2, 8, 2, 5, 1, 1, 11);      /* cls + one register (dropped by the unshuffle) */
    test_masking(3, 16, 4, 7, 0, 0, 12);     /* no cls, no registers */
    test_mae_loss(2, 8, 2, 6, 1, 1, 21);
    test_mae_loss(2, 8, 3, 5, 0, 0, 22);
    test_l2norm(6, 9, 31);
    test_infonce(4, 8, 0.2, 0, 41);
    test_infonce(3, 6, 0.1, 1, 42);
    t_expect_exit2("tokens_gather: permutation entry out of range -> exit 2", bad_perm);
    t_expect_exit2("infonce: a row as its own positive -> exit 2", bad_pos);
    ctx_close(&ctx);
    return t_summary();
}
