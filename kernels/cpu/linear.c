/* kernels/cpu/linear.c — fully connected layer, out [N, OC] = x [N, IC] W^T + b.
 *
 * W is [OC, IC] (nn.Linear layout), so the forward is one sgemm with W transposed.
 * Backward (ops.h conventions: inputs overwrite, parameters accumulate):
 *   dx    = dout W               [N, IC]   beta = 0 (overwrite), skipped if dx == NULL
 *   dW   += dout^T x             [OC, IC]  beta = 1 (accumulate)
 *   dbias += sum_n dout[n, :]    [OC]      skipped if dbias == NULL
 * GEMMs go to OpenBLAS, called from outside any OpenMP region (it runs its own threads).
 * OpenBLAS partitions M/N (never K) across threads, so every output element is one
 * sequential dot product and results do not depend on the thread count (checked by the
 * tests). The bias column sums use OpenMP over column blocks; inside a block every column is
 * summed over rows in order 0..N-1 in double, so the order is fixed too.
 */
#include "cpu.h"

#include <cblas.h>
#include <string.h>

void cpu_linear_forward(Ctx* c, float* out, const float* x, const float* W, const float* bias,
                        int N, int IC, int OC) {
    (void)c;
    if (N <= 0 || OC <= 0) return;
    float beta = 0.0f;
    if (bias) {
        /* pre-fill rows with the bias and let sgemm accumulate onto it: one pass over out */
        for (int n = 0; n < N; n++) memcpy(out + (size_t)n * OC, bias, (size_t)OC * sizeof(float));
        beta = 1.0f;
    }
    if (IC <= 0) { if (!bias) memset(out, 0, (size_t)N * OC * sizeof(float)); return; }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, IC,
                1.0f, x, IC, W, IC, beta, out, OC);
}

void cpu_linear_backward(Ctx* c, float* dx, float* dW, float* dbias, const float* dout,
                         const float* x, const float* W, int N, int IC, int OC) {
    (void)c;
    if (N <= 0 || IC <= 0 || OC <= 0) {
        if (dx && N > 0 && IC > 0) memset(dx, 0, (size_t)N * IC * sizeof(float));
        return;
    }
    if (dx)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, IC, OC,
                    1.0f, dout, OC, W, IC, 0.0f, dx, IC);
    if (dW)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, IC, N,
                    1.0f, dout, OC, x, IC, 1.0f, dW, IC);
    if (dbias) {
        enum { CB = 64 };  /* columns per block: row reads stay contiguous, acc stays in L1 */
        int nblk = (OC + CB - 1) / CB;
#pragma omp parallel for schedule(static)
        for (int blk = 0; blk < nblk; blk++) {
            int c0 = blk * CB, c1 = c0 + CB < OC ? c0 + CB : OC;
            double acc[CB] = {0};
            for (int n = 0; n < N; n++) {
                const float* row = dout + (size_t)n * OC;
                for (int j = c0; j < c1; j++) acc[j - c0] += row[j];
            }
            for (int j = c0; j < c1; j++) dbias[j] += (float)acc[j - c0];
        }
    }
}
