/* kernels/cpu/attention.c — multi-head self-attention, softmax(q k^T / sqrt(hd)) v.
 *
 * Layouts: qkv [B, T, 3C] with C = H*hd in timm order: row = [q heads | k heads | v heads],
 * head h at offset h*hd inside each third; out [B, T, C]; lse [B, H, T].
 * Head (b, h) is read in place as three strided [T, hd] matrices (leading dimension 3C),
 * so no gather is needed: OpenBLAS packs its operands anyway.
 *
 * Forward, per (b, h):  S = scale Q K^T;  lse_i = m_i + log sum_j exp(S_ij - m_i) with
 *   m_i = max_j S_ij (the max is subtracted before exp, so no overflow);  P = softmax(S);
 *   O = P V.  Only lse is saved.
 * Backward, per (b, h), recomputing P = exp(S - lse) from the same sgemm as the forward:
 *   dP = dO V^T;  D_i = sum_j P_ij dP_ij;  dS = P o (dP - D);
 *   dV = P^T dO;  dQ = scale dS K;  dK = scale dS^T Q   (all written, beta = 0).
 *
 * Design (measured on 2 cores, see tests/test_ops_linear_attn.c timing): heads are processed
 * one after the other, each as sgemm calls (OpenBLAS threads inside) plus one OpenMP region
 * for the row-wise softmax work. Workspace is one [T, T] buffer in the forward and two in the
 * backward, for ONE head at a time, reused across heads: 8 MB for T = 1031. Our own loops
 * have a fixed order (rows are independent), so repeated runs are bit-identical; OpenBLAS's
 * sgemm rounds differently with different thread counts, so deterministic runs fix it.
 */
#include "cpu.h"

#include <cblas.h>
#include <math.h>

void cpu_attention_forward(Ctx* c, float* out, float* lse, const float* qkv,
                           int B, int T, int H, int hd) {
    const int C = H * hd, C3 = 3 * C;
    const float scale = 1.0f / sqrtf((float)hd);
    float* S = (float*)ctx_workspace(c, (size_t)T * T * sizeof(float));
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < H; h++) {
            const float* Q = qkv + (size_t)b * T * C3 + h * hd;
            const float* K = Q + C;
            const float* V = Q + 2 * C;
            float* O = out + (size_t)b * T * C + h * hd;
            float* L = lse + ((size_t)b * H + h) * T;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hd,
                        scale, Q, C3, K, C3, 0.0f, S, T);
#pragma omp parallel for schedule(static)
            for (int i = 0; i < T; i++) {
                float* s = S + (size_t)i * T;
                float m = s[0];
                for (int j = 1; j < T; j++) m = s[j] > m ? s[j] : m;
                double sum = 0.0;  /* double: T terms, and lse feeds the backward */
                for (int j = 0; j < T; j++) { s[j] = expf(s[j] - m); sum += s[j]; }
                float inv = (float)(1.0 / sum);
                for (int j = 0; j < T; j++) s[j] *= inv;
                L[i] = m + (float)log(sum);
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hd, T,
                        1.0f, S, T, V, C3, 0.0f, O, C);
        }
    }
}

void cpu_attention_backward(Ctx* c, float* dqkv, const float* dout, const float* qkv,
                            const float* out, const float* lse, int B, int T, int H, int hd) {
    const int C = H * hd, C3 = 3 * C;
    const float scale = 1.0f / sqrtf((float)hd);
    (void)out;  /* in the interface for backends that take D_i = rowsum(dO∘O) instead */
    float* P = (float*)ctx_workspace(c, 2 * (size_t)T * T * sizeof(float));
    float* dS = P + (size_t)T * T;  /* holds dP, then dS in place */
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < H; h++) {
            const size_t qoff = (size_t)b * T * C3 + h * hd, ooff = (size_t)b * T * C + h * hd;
            const float* Q = qkv + qoff;
            const float* K = Q + C;
            const float* V = Q + 2 * C;
            const float* dO = dout + ooff;
            const float* L = lse + ((size_t)b * H + h) * T;
            float* dQ = dqkv + qoff;
            float* dK = dQ + C;
            float* dV = dQ + 2 * C;
            /* same call as the forward, so S is bit-identical to the forward's */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hd,
                        scale, Q, C3, K, C3, 0.0f, P, T);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hd,
                        1.0f, dO, C, V, C3, 0.0f, dS, T);
#pragma omp parallel for schedule(static)
            for (int i = 0; i < T; i++) {
                float* p = P + (size_t)i * T;
                float* ds = dS + (size_t)i * T;
                const float li = L[i];
                /* D_i = Σ_j P_ij dP_ij from the SAME recomputed P and dP (not rowsum(dO∘O),
                 * flash-attention's shortcut): then Σ_j dS_ij = 0 to rounding, as in the exact
                 * softmax backward, and no O-vs-P rounding mismatch leaks into dQ along the
                 * mean key. Costs one T-length dot per row, small beside the GEMMs. */
                double Di = 0.0;
                for (int j = 0; j < T; j++) {
                    p[j] = expf(p[j] - li);
                    Di += (double)p[j] * ds[j];
                }
                const float Df = (float)Di;
                for (int j = 0; j < T; j++) ds[j] = p[j] * (ds[j] - Df);
            }
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hd, T,
                        1.0f, P, T, dO, C, 0.0f, dV, C3);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hd, T,
                        scale, dS, T, K, C3, 0.0f, dQ, C3);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hd, T,
                        scale, dS, T, Q, C3, 0.0f, dK, C3);
        }
    }
}
