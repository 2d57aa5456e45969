/* kernels/cpu/adamw.c — AdamW step and the sum of squares for the global grad norm.
 *
 * adamw_update follows torch.optim.AdamW (single-tensor path, amsgrad off) step by step:
 *   p *= 1 - lr*wd;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
 *   p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
 * The bias corrections are computed once per call in double (b^t for large t loses digits
 * in float); the per-element arithmetic is fp32. Elementwise, so thread count is irrelevant.
 *
 * sumsq: out[0] = sum x^2 in double. The range is cut into fixed chunks of SUMSQ_CHUNK
 * elements (independent of the thread count); each chunk is summed in order, and the chunk
 * partials (kept in the workspace) are added in chunk order by one thread. Bit-identical
 * for any thread count.
 */
#include "cpu.h"

#include <math.h>

void cpu_adamw_update(Ctx* c, float* p, const float* g, float* m, float* v, long n,
                      float lr, float beta1, float beta2, float eps, float wd, int t) {
    (void)c;
    const double bc1 = 1.0 - pow((double)beta1, t);
    const double bc2 = 1.0 - pow((double)beta2, t);
    const float step = (float)((double)lr / bc1);
    const float bc2_sqrt = (float)sqrt(bc2);
    const float decay = (float)(1.0 - (double)lr * wd);
    const float a1 = 1.0f - beta1, a2 = 1.0f - beta2;  /* exact in fp32 for b in [0.5, 1] */
#pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++) {
        float gi = g[i];
        float mi = beta1 * m[i] + a1 * gi;
        float vi = beta2 * v[i] + a2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        float denom = sqrtf(vi) / bc2_sqrt + eps;
        p[i] = p[i] * decay - step * (mi / denom);  /* torch: mul_(decay), addcdiv_ */
    }
}

#define SUMSQ_CHUNK 65536L

void cpu_sumsq(Ctx* c, double* out, const float* x, long n) {
    long nchunk = (n + SUMSQ_CHUNK - 1) / SUMSQ_CHUNK;
    if (nchunk == 0) { out[0] = 0.0; return; }
    double* part = (double*)ctx_workspace(c, (size_t)nchunk * sizeof(double));
#pragma omp parallel for schedule(static)
    for (long k = 0; k < nchunk; k++) {
        long i0 = k * SUMSQ_CHUNK, i1 = i0 + SUMSQ_CHUNK < n ? i0 + SUMSQ_CHUNK : n;
        double s = 0.0;
        for (long i = i0; i < i1; i++) s += (double)x[i] * x[i];
        part[k] = s;
    }
    double s = 0.0;
    for (long k = 0; k < nchunk; k++) s += part[k];
    out[0] = s;
}
