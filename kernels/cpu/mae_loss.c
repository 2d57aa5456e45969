/* kernels/cpu/mae_loss.c — MAE reconstruction loss on the masked patches.
 *
 * pred [B, Tp, K] (decoder_pred output; patch p of image b is row t0 + p), target [B, P, K]
 * (patchify of the image, the patch-embedding pixel order), perm [B, P] (first n kept, the
 * rest masked). norm_pix: target row -> (t - mean) / sqrt(var + 1e-6) with the unbiased
 * variance, as MAE's norm_pix_loss (torch.var default). The loss is
 *   L = 1/(B (P - n)) sum_{b, i >= n} 1/K sum_k (pred[b, t0 + perm[b,i], k] - t'[b, perm[b,i], k])^2.
 * Every patch term is computed in double and stored; the terms are summed in (b, i) order,
 * so the value does not depend on the thread count. The backward recomputes t' (cheap: one
 * pass over a row) rather than storing it.
 */
#include "cpu.h"
#include "../../engine/check.h"

#include <math.h>
#include <string.h>

static void check_dims(int B, int P, int n, int K, int Tp, int t0, int norm_pix) {
    CHECK(B > 0 && P > 0 && n >= 0 && n < P && K > 0 && t0 >= 0 && t0 + P <= Tp &&
          (!norm_pix || K > 1),
          "mae_loss: B=%d P=%d n=%d K=%d Tp=%d t0=%d norm_pix=%d", B, P, n, K, Tp, t0, norm_pix);
}

/* mean and 1/sqrt(var + 1e-6) of a target row (identity 0, 1 without norm_pix) */
static void row_norm(const float* t, int K, int norm_pix, double* mean, double* inv) {
    *mean = 0.0;
    *inv = 1.0;
    if (!norm_pix) return;
    double s = 0.0;
    for (int k = 0; k < K; k++) s += t[k];
    double m = s / K, v = 0.0;
    for (int k = 0; k < K; k++) v += (t[k] - m) * (t[k] - m);
    *mean = m;
    *inv = 1.0 / sqrt(v / (K - 1) + 1e-6);
}

/* the bi-th masked patch (image bi / nm, entry n + bi % nm of its permutation): its row in
 * pred ([B, Tp] rows; the target row is b * P + p for row = b * Tp + t0 + p) and the
 * normalisation of its target */
static long masked_row(const int32_t* perm, const float* target, long bi, int nm, int P, int n,
                       int K, int Tp, int t0, int norm_pix, double* mean, double* inv) {
    const long b = bi / nm, p = perm[b * P + n + bi % nm];
    CHECK(p >= 0 && p < P, "mae_loss: permutation entry %ld outside 0..%d", p, P - 1);
    row_norm(target + (b * P + p) * K, K, norm_pix, mean, inv);
    return b * Tp + t0 + p;
}

void cpu_mae_loss_forward(Ctx* c, double* out, const float* pred, const float* target,
                          const int32_t* perm, int B, int P, int n, int K, int Tp, int t0,
                          int norm_pix) {
    check_dims(B, P, n, K, Tp, t0, norm_pix);
    const int nm = P - n;
    double* part = (double*)ctx_workspace(c, sizeof(double) * (size_t)B * nm);
    #pragma omp parallel for schedule(static)
    for (long bi = 0; bi < (long)B * nm; bi++) {
        double mean, inv, s = 0.0;
        long row = masked_row(perm, target, bi, nm, P, n, K, Tp, t0, norm_pix, &mean, &inv);
        const float *t = target + row / Tp * P * K + (row % Tp - t0) * K, *y = pred + row * K;
        for (int k = 0; k < K; k++) {
            double d = y[k] - (t[k] - mean) * inv;
            s += d * d;
        }
        part[bi] = s / K;
    }
    double s = 0.0;
    for (long i = 0; i < (long)B * nm; i++) s += part[i];
    out[0] = s / ((double)B * nm);
}

void cpu_mae_loss_backward(Ctx* c, float* dpred, const float* pred, const float* target,
                           const int32_t* perm, int B, int P, int n, int K, int Tp, int t0,
                           int norm_pix, float scale) {
    (void)c;
    check_dims(B, P, n, K, Tp, t0, norm_pix);
    const int nm = P - n;
    const double g = 2.0 * scale / ((double)B * nm * K);
    memset(dpred, 0, sizeof(float) * (size_t)B * Tp * K);
    #pragma omp parallel for schedule(static)
    for (long bi = 0; bi < (long)B * nm; bi++) {
        double mean, inv;
        long row = masked_row(perm, target, bi, nm, P, n, K, Tp, t0, norm_pix, &mean, &inv);
        const float *t = target + row / Tp * P * K + (row % Tp - t0) * K, *y = pred + row * K;
        float* d = dpred + row * K;
        for (int k = 0; k < K; k++) d[k] = (float)(g * (y[k] - (t[k] - mean) * inv));
    }
}
