/* kernels/cpu/layernorm.c — LayerNorm over the last axis, PyTorch semantics.
 *
 * x, out [N, C]; w, b [C] (NULL = 1 / 0); mean, rstd [N] saved for the backward.
 *   mean = sum x / C,  var = sum (x - mean)^2 / C (biased),  rstd = 1 / sqrt(var + eps),
 *   out = (x - mean) * rstd * w + b.
 * Row statistics are accumulated in double over a two-pass (mean, then centred squares)
 * so that large offsets do not cancel catastrophically; the per-element math is fp32.
 *
 * Backward, with xhat = (x - mean) rstd and g = dout * w:
 *   dx = rstd (g - mean_c(g) - xhat mean_c(g xhat))           (overwrites)
 *   dw += sum_n dout xhat,  db += sum_n dout                    (accumulate: parameters)
 * dw/db are reduced over rows in order n = 0..N-1 per channel, threads owning disjoint
 * channel blocks, so the bits do not depend on the thread count. The parameter pass runs
 * before the dx pass, so dx may alias dout.
 */
#include "cpu.h"
#include "../../engine/check.h"

#include <math.h>

void cpu_layernorm_forward(Ctx* c, float* out, float* mean, float* rstd,
                           const float* x, const float* w, const float* b, int N, int C, float eps) {
    (void)c;
    CHECK(N >= 0 && C > 0, "N=%d C=%d", N, C);
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float* xr = x + (long)n * C;
        double s = 0.0;
        for (int i = 0; i < C; i++) s += xr[i];
        const double m = s / C;
        double v = 0.0;
        for (int i = 0; i < C; i++) { const double d = xr[i] - m; v += d * d; }
        const float mf = (float)m, rf = (float)(1.0 / sqrt(v / C + (double)eps));
        float* o = out + (long)n * C;
        for (int i = 0; i < C; i++) {
            const float xh = (xr[i] - mf) * rf;
            o[i] = xh * (w ? w[i] : 1.0f) + (b ? b[i] : 0.0f);
        }
        if (mean) mean[n] = mf;
        if (rstd) rstd[n] = rf;
    }
}

void cpu_layernorm_backward(Ctx* c, float* dx, float* dw, float* db, const float* dout,
                            const float* x, const float* w, const float* mean, const float* rstd,
                            int N, int C) {
    (void)c;
    CHECK(N >= 0 && C > 0, "N=%d C=%d", N, C);
    enum { CB = 64 };   /* channels per block: a few cache lines of each row, stack accumulators */
    if (dw || db) {
        const int nblk = (C + CB - 1) / CB;
        #pragma omp parallel for schedule(static)
        for (int blk = 0; blk < nblk; blk++) {
            const int c0 = blk * CB, nc = c0 + CB < C ? CB : C - c0;
            double aw[CB] = { 0 }, ab[CB] = { 0 };
            for (int n = 0; n < N; n++) {
                const float* xr = x + (long)n * C + c0;
                const float* g = dout + (long)n * C + c0;
                const float m = mean[n], r = rstd[n];
                for (int i = 0; i < nc; i++) {
                    aw[i] += (double)g[i] * ((xr[i] - m) * r);
                    ab[i] += g[i];
                }
            }
            for (int i = 0; i < nc; i++) {
                if (dw) dw[c0 + i] += (float)aw[i];
                if (db) db[c0 + i] += (float)ab[i];
            }
        }
    }
    if (!dx) return;
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float* xr = x + (long)n * C;
        const float* g = dout + (long)n * C;
        const float m = mean[n], r = rstd[n];
        double sg = 0.0, sgx = 0.0;
        for (int i = 0; i < C; i++) {
            const float gi = g[i] * (w ? w[i] : 1.0f);
            sg += gi;
            sgx += (double)gi * ((xr[i] - m) * r);
        }
        const float mg = (float)(sg / C), mgx = (float)(sgx / C);
        float* d = dx + (long)n * C;
        for (int i = 0; i < C; i++) {
            const float gi = g[i] * (w ? w[i] : 1.0f);
            d[i] = r * (gi - mg - (xr[i] - m) * r * mgx);
        }
    }
}
