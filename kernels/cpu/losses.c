/* kernels/cpu/losses.c — training losses of the task heads: dense softmax, Dice + CE for
 * segmentation, cross-entropy / label smoothing / focal loss for classification, L1 / MSE for
 * regression.
 *
 * Determinism: every reduction is cut into fixed pieces (LOSS_CHUNK voxels or one row) that
 * do not depend on the thread count; each piece is summed in index order in double, the piece
 * partials go to the workspace and one thread adds them in piece order. Results are
 * bit-identical for any number of threads. Elementwise outputs are computed in double and
 * rounded once to fp32.
 *
 * Segmentation (MONAI DiceCELoss(softmax=True, to_onehot_y=True, include_background, smooth_nr
 * = smooth_dr = 1e-5, batch=False, reduction="mean") with ops.h's weights on the CE term only):
 *   CE   = Σ_v w[y_v] (−log p[y_v, v]) / Σ_v w[y_v]                       (torch weighted mean)
 *   Dice = mean over b < B, k0 <= k < K of 1 − (2 I_bk + s) / (P_bk + G_bk + s),
 *          I = Σ_v p g, P = Σ_v p, G = Σ_v g per SAMPLE b (not batch-global), s = 1e-5.
 *   The CE is taken from the fp32 probabilities of softmax_channels_forward (the op signature
 *   passes prob, not logits): log p_y is clamped at p_y >= FLT_TRUE_MIN, so a voxel whose true
 *   class probability underflows fp32 (logit gap > ~103) contributes at most 103.28 instead of
 *   infinity.
 *   dCE/dz_kv   = w[y_v] / W (p_kv − [k = y_v])
 *   dDice/dp_kv = −(2 g_kv − D_bk) / (Den_bk · B · Kd) for k >= k0 (0 below), Den = P + G + s,
 *   D = (2I + s)/Den, Kd = K − k0; through the softmax dz_k = p_k (dp_k − Σ_j p_j dp_j).
 * Classification (torch 1.13 CrossEntropyLoss(weight, label_smoothing=ε), reduction mean):
 *   L = [(1−ε) Σ_b w_yb ℓ_b,yb + (ε/V) Σ_b Σ_c w_c ℓ_b,c] / Σ_b w_yb,   ℓ_b,c = lse_b − z_b,c
 *   (w = 1 without weights); focal (γ > 0): L = (1/B) Σ_b α_yb (1 − p_yb)^γ ℓ_b,yb, α = weights
 *   or 1; smoothing must be 0 with focal. 1 − p_y is computed as Σ_{j≠y} p_j (no cancellation).
 * Regression: mean |p − t| or mean (p − t)^2; dL1 uses sign(0) = 0 as torch.
 * A label / target outside [0, K) is a bug upstream (CHECK, exit 2).
 */
#include "cpu.h"
#include "lse.h"
#include "../../engine/check.h"

#include <float.h>
#include <math.h>

#define LOSS_CHUNK 4096L  /* voxels (or elements) per reduction piece */
#define LOSS_TILE 256     /* voxels per tile of the channel loops (stack arrays) */
#define DICE_SMOOTH 1e-5

/* ---- dense softmax over channels ------------------------------------------------------- */
void cpu_softmax_channels_forward(Ctx* c, float* prob, const float* logits, int B, int K, long S) {
    (void)c;
    long ntile = (S + LOSS_TILE - 1) / LOSS_TILE;
#pragma omp parallel for schedule(static)
    for (long t = 0; t < (long)B * ntile; t++) {
        long b = t / ntile, s0 = (t % ntile) * LOSS_TILE;
        int n = (int)(S - s0 < LOSS_TILE ? S - s0 : LOSS_TILE);
        const float* x = logits + (size_t)b * K * S + s0;
        float* p = prob + (size_t)b * K * S + s0;
        float m[LOSS_TILE];
        double sum[LOSS_TILE];
        for (int i = 0; i < n; i++) { m[i] = x[i]; sum[i] = 0.0; }
        for (int k = 1; k < K; k++)
            for (int i = 0; i < n; i++) m[i] = x[(size_t)k * S + i] > m[i] ? x[(size_t)k * S + i] : m[i];
        for (int k = 0; k < K; k++)
            for (int i = 0; i < n; i++) sum[i] += exp((double)x[(size_t)k * S + i] - m[i]);
        for (int k = 0; k < K; k++)
            for (int i = 0; i < n; i++)
                p[(size_t)k * S + i] = (float)(exp((double)x[(size_t)k * S + i] - m[i]) / sum[i]);
    }
}

/* ---- Dice + CE --------------------------------------------------------------------------- */
static void check_labels(const int32_t* y, long n, int K, const char* op) {
    for (long i = 0; i < n; i++)
        CHECK(y[i] >= 0 && y[i] < K, "%s: label %d at index %ld is outside [0, %d)", op,
              (int)y[i], i, K);
}

/* checks the shape and the labels; returns k0, the first class the Dice term counts */
static int dice_ce_check(const int32_t* labels, int B, int K, long S, int include_background) {
    int k0 = include_background ? 0 : 1;
    CHECK(K - k0 >= 1 && B >= 1 && S >= 1, "dice_ce: B=%d K=%d S=%ld include_background=%d", B, K,
          S, include_background);
    check_labels(labels, (long)B * S, K, "dice_ce");
    return k0;
}

/* Fills tot (workspace) with, per sample b, [I_0..I_K-1, P_0.., G_0..] (3K doubles), followed
 * by the CE numerator Σ w_y (−log p_y) and denominator Σ w_y over all voxels. */
static double* dice_sums(Ctx* c, const float* prob, const int32_t* labels, const float* weights,
                         int B, int K, long S) {
    long nch = (S + LOSS_CHUNK - 1) / LOSS_CHUNK;
    long per = 3L * K + 2, ntask = (long)B * nch;
    double* part = (double*)ctx_workspace(c, sizeof(double) * (size_t)(ntask * per + B * 3L * K + 2));
    double* tot = part + ntask * per;
#pragma omp parallel for schedule(static)
    for (long t = 0; t < ntask; t++) {
        long b = t / nch, s0 = (t % nch) * LOSS_CHUNK, s1 = s0 + LOSS_CHUNK < S ? s0 + LOSS_CHUNK : S;
        const float* p = prob + (size_t)b * K * S;
        const int32_t* y = labels + (size_t)b * S;
        double* q = part + t * per;
        for (int k = 0; k < K; k++) {
            const float* pk = p + (size_t)k * S;
            double I = 0, P = 0, G = 0;
            for (long s = s0; s < s1; s++) {
                P += pk[s];
                if (y[s] == k) { I += pk[s]; G += 1.0; }
            }
            q[k] = I; q[K + k] = P; q[2 * K + k] = G;
        }
        double ce = 0, ws = 0;
        for (long s = s0; s < s1; s++) {
            double w = weights ? (double)weights[y[s]] : 1.0;
            float py = p[(size_t)y[s] * S + s];
            ce += w * -log(py > FLT_TRUE_MIN ? (double)py : (double)FLT_TRUE_MIN);
            ws += w;
        }
        q[3 * K] = ce; q[3 * K + 1] = ws;
    }
    for (long i = 0; i < B * 3L * K + 2; i++) tot[i] = 0.0;
    for (long t = 0; t < ntask; t++) {
        long b = t / nch;
        const double* q = part + t * per;
        for (long i = 0; i < 3L * K; i++) tot[b * 3L * K + i] += q[i];
        tot[B * 3L * K] += q[3 * K];
        tot[B * 3L * K + 1] += q[3 * K + 1];
    }
    return tot;
}

void cpu_dice_ce_forward(Ctx* c, double* out, const float* prob, const int32_t* labels,
                         const float* weights, int B, int K, long S, int include_background) {
    int k0 = dice_ce_check(labels, B, K, S, include_background);
    const double* tot = dice_sums(c, prob, labels, weights, B, K, S);
    double dice = 0;
    for (int b = 0; b < B; b++) {
        const double* q = tot + (size_t)b * 3 * K;
        for (int k = k0; k < K; k++)
            dice += 1.0 - (2.0 * q[k] + DICE_SMOOTH) / (q[K + k] + q[2 * K + k] + DICE_SMOOTH);
    }
    out[0] = tot[B * 3L * K] / tot[B * 3L * K + 1];
    out[1] = dice / ((double)B * (K - k0));
}

void cpu_dice_ce_backward(Ctx* c, float* dlogits, const float* prob, const int32_t* labels,
                          const float* weights, int B, int K, long S, int include_background,
                          float w_ce, float w_dice) {
    int k0 = dice_ce_check(labels, B, K, S, include_background);
    double* tot = dice_sums(c, prob, labels, weights, B, K, S);
    /* per (b, k): dp_k = A_bk + C_bk g_k; kept in the workspace after the sums (tot is
     * reused in place: A over I, C over P) */
    double cd = (double)w_dice / ((double)B * (K - k0));
    double ce_scale = (double)w_ce / tot[B * 3L * K + 1];
    for (int b = 0; b < B; b++) {
        double* q = tot + (size_t)b * 3 * K;
        for (int k = 0; k < K; k++) {
            double A = 0, C = 0;
            if (k >= k0) {
                double den = q[K + k] + q[2 * K + k] + DICE_SMOOTH;
                double D = (2.0 * q[k] + DICE_SMOOTH) / den;
                A = cd * D / den;
                C = -2.0 * cd / den;
            }
            q[k] = A; q[K + k] = C;
        }
    }
    long ntile = (S + LOSS_TILE - 1) / LOSS_TILE;
#pragma omp parallel for schedule(static)
    for (long t = 0; t < (long)B * ntile; t++) {
        long b = t / ntile, s0 = (t % ntile) * LOSS_TILE;
        int n = (int)(S - s0 < LOSS_TILE ? S - s0 : LOSS_TILE);
        const float* p = prob + (size_t)b * K * S + s0;
        const int32_t* y = labels + (size_t)b * S + s0;
        float* dz = dlogits + (size_t)b * K * S + s0;
        const double* A = tot + (size_t)b * 3 * K;
        const double* C = A + K;
        double dot[LOSS_TILE];
        for (int i = 0; i < n; i++) dot[i] = (double)p[(size_t)y[i] * S + i] * C[y[i]];
        for (int k = 0; k < K; k++)
            for (int i = 0; i < n; i++) dot[i] += (double)p[(size_t)k * S + i] * A[k];
        for (int k = 0; k < K; k++)
            for (int i = 0; i < n; i++) {
                double pk = p[(size_t)k * S + i], g = (y[i] == k);
                double w = weights ? (double)weights[y[i]] : 1.0;
                double dp = A[k] + C[k] * g;
                dz[(size_t)k * S + i] = (float)(pk * (dp - dot[i]) + ce_scale * w * (pk - g));
            }
    }
}

/* ---- classification -------------------------------------------------------------------- */
static void cls_check(const int32_t* targets, int B, int V, float smoothing, float focal_gamma) {
    CHECK(B >= 1 && V >= 1, "cls_loss: B=%d V=%d", B, V);
    CHECK(smoothing >= 0.0f && smoothing <= 1.0f, "cls_loss: label smoothing %g outside [0, 1]",
          (double)smoothing);
    CHECK(!(focal_gamma > 0.0f && smoothing > 0.0f),
          "cls_loss: focal loss (gamma %g) with label smoothing %g is not defined",
          (double)focal_gamma, (double)smoothing);
    check_labels(targets, B, V, "cls_loss");
}

/* 1 − p_y as Σ_{j≠y} p_j */
static double one_minus_py(const float* x, int V, int y, double lse) {
    double q = 0.0;
    for (int j = 0; j < V; j++)
        if (j != y) q += exp((double)x[j] - lse);
    return q;
}

void cpu_cls_loss_forward(Ctx* c, double* out, const float* logits, const int32_t* targets,
                          const float* weights, int B, int V, float smoothing, float focal_gamma) {
    cls_check(targets, B, V, smoothing, focal_gamma);
    double* part = (double*)ctx_workspace(c, sizeof(double) * 2 * (size_t)B);
    const double eps = smoothing, gam = focal_gamma;
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        const float* x = logits + (size_t)b * V;
        int y = targets[b];
        double lse = row_lse(x, V), ly = lse - x[y];
        double wy = weights ? (double)weights[y] : 1.0;
        if (gam > 0) {
            double q = one_minus_py(x, V, y, lse);
            part[2 * b] = wy * pow(q, gam) * ly;
            part[2 * b + 1] = 1.0;
        } else {
            double sm = 0.0;
            if (eps > 0)
                for (int j = 0; j < V; j++) sm += (weights ? (double)weights[j] : 1.0) * (lse - x[j]);
            part[2 * b] = (1.0 - eps) * wy * ly + eps / V * sm;
            part[2 * b + 1] = wy;
        }
    }
    double num = 0, den = 0;
    for (int b = 0; b < B; b++) { num += part[2 * b]; den += part[2 * b + 1]; }
    out[0] = num / den;
}

void cpu_cls_loss_backward(Ctx* c, float* dlogits, const float* logits, const int32_t* targets,
                           const float* weights, int B, int V, float smoothing, float focal_gamma,
                           float scale) {
    (void)c;
    cls_check(targets, B, V, smoothing, focal_gamma);
    const double eps = smoothing, gam = focal_gamma;
    double den = 0, wsum = 0;
    for (int b = 0; b < B; b++) den += (gam > 0 || !weights) ? 1.0 : (double)weights[targets[b]];
    if (weights)
        for (int j = 0; j < V; j++) wsum += weights[j];
    else
        wsum = V;
    const double g0 = (double)scale / den;
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        const float* x = logits + (size_t)b * V;
        float* dx = dlogits + (size_t)b * V;
        int y = targets[b];
        double lse = row_lse(x, V);
        double wy = weights ? (double)weights[y] : 1.0;
        if (gam > 0) {
            /* d/dz_j [−α (1−p)^γ log p] = α G (p_j − [j = y]), G = (1−p)^γ − γ p (1−p)^(γ−1) log p */
            double q = one_minus_py(x, V, y, lse), lp = (double)x[y] - lse, py = exp(lp);
            double G = q > 0 ? pow(q, gam) - gam * py * pow(q, gam - 1.0) * lp : 0.0;
            for (int j = 0; j < V; j++) {
                double pj = exp((double)x[j] - lse);
                dx[j] = (float)(g0 * wy * G * (pj - (j == y ? 1.0 : 0.0)));
            }
        } else {
            for (int j = 0; j < V; j++) {
                double pj = exp((double)x[j] - lse), wj = weights ? (double)weights[j] : 1.0;
                double d = (1.0 - eps) * wy * (pj - (j == y ? 1.0 : 0.0)) + eps / V * (pj * wsum - wj);
                dx[j] = (float)(g0 * d);
            }
        }
    }
}

/* ---- regression ------------------------------------------------------------------------ */
void cpu_regress_loss_forward(Ctx* c, double* out, const float* pred, const float* target, long n,
                              int kind) {
    CHECK(n >= 1 && (kind == LOSS_L1 || kind == LOSS_MSE), "regress_loss: n=%ld kind=%d", n, kind);
    long nch = (n + LOSS_CHUNK - 1) / LOSS_CHUNK;
    double* part = (double*)ctx_workspace(c, sizeof(double) * (size_t)nch);
#pragma omp parallel for schedule(static)
    for (long k = 0; k < nch; k++) {
        long i0 = k * LOSS_CHUNK, i1 = i0 + LOSS_CHUNK < n ? i0 + LOSS_CHUNK : n;
        double s = 0.0;
        if (kind == LOSS_L1)
            for (long i = i0; i < i1; i++) s += fabs((double)pred[i] - target[i]);
        else
            for (long i = i0; i < i1; i++) {
                double d = (double)pred[i] - target[i];  /* exact */
                s += d * d;
            }
        part[k] = s;
    }
    double s = 0.0;
    for (long k = 0; k < nch; k++) s += part[k];
    out[0] = s / n;
}

void cpu_regress_loss_backward(Ctx* c, float* dpred, const float* pred, const float* target,
                               long n, int kind, float scale) {
    (void)c;
    CHECK(n >= 1 && (kind == LOSS_L1 || kind == LOSS_MSE), "regress_loss: n=%ld kind=%d", n, kind);
    const double g = (double)scale / n;
#pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++) {
        double d = (double)pred[i] - target[i];
        dpred[i] = kind == LOSS_L1 ? (float)(d > 0 ? g : d < 0 ? -g : 0.0) : (float)(2.0 * g * d);
    }
}
