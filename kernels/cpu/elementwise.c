/* kernels/cpu/elementwise.c — GELU, residual add, LayerScale, drop-path, in-place scale.
 *
 * All flat fp32 arrays of n elements (or [N, C] / [B, per_sample] where a per-channel or
 * per-sample factor is broadcast). Every output element depends on its own inputs only, so
 * these may run in place (out == x, dx == dout) and any thread count gives the same bits;
 * the one reduction, LayerScale's dgamma, is ordered (see layerscale_backward).
 *   gelu(x)  = 0.5 x (1 + erf(x / sqrt 2))        exact erf form, as nn.GELU() default
 *   gelu'(x) = Phi(x) + x phi(x)
 * Phi is evaluated as 0.5 erfc(-x / sqrt 2): the same function, but without the
 * cancellation of 1 + erf(.) for negative x, so gelu and gelu' keep their relative accuracy
 * in the left tail (where 1 + erf loses all digits below about x = -5).
 */
#include "cpu.h"
#include "../../engine/check.h"

#include <math.h>

/* below this many elements a parallel region costs more than it saves */
#define PAR_MIN 16384

void cpu_gelu_forward(Ctx* c, float* out, const float* x, long n) {
    (void)c;
    #pragma omp parallel for schedule(static) if (n > PAR_MIN)
    for (long i = 0; i < n; i++) {
        const float v = x[i];
        out[i] = 0.5f * v * erfcf(-v * (float)M_SQRT1_2);
    }
}

void cpu_gelu_backward(Ctx* c, float* dx, const float* dout, const float* x, long n) {
    (void)c;
    const float inv_sqrt_2pi = 0.3989422804014327f;
    #pragma omp parallel for schedule(static) if (n > PAR_MIN)
    for (long i = 0; i < n; i++) {
        const float v = x[i];
        const float cdf = 0.5f * erfcf(-v * (float)M_SQRT1_2);
        const float pdf = inv_sqrt_2pi * expf(-0.5f * v * v);
        dx[i] = dout[i] * (cdf + v * pdf);
    }
}

void cpu_add_forward(Ctx* c, float* out, const float* a, const float* b, long n) {
    (void)c;
    #pragma omp parallel for schedule(static) if (n > PAR_MIN)
    for (long i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void cpu_layerscale_forward(Ctx* c, float* out, const float* x, const float* gamma, int N, int C) {
    (void)c;
    CHECK(N >= 0 && C > 0, "N=%d C=%d", N, C);
    #pragma omp parallel for schedule(static) if ((long)N * C > PAR_MIN)
    for (int n = 0; n < N; n++)
        for (int i = 0; i < C; i++) out[(long)n * C + i] = x[(long)n * C + i] * gamma[i];
}

/* dgamma[c] += sum_n dout x, rows summed in order 0..N-1 in double per channel, threads
 * owning disjoint channel blocks; computed before dx so that dx may alias dout. */
void cpu_layerscale_backward(Ctx* c, float* dx, float* dgamma, const float* dout,
                             const float* x, const float* gamma, int N, int C) {
    (void)c;
    CHECK(N >= 0 && C > 0, "N=%d C=%d", N, C);
    enum { CB = 64 };
    if (dgamma) {
        const int nblk = (C + CB - 1) / CB;
        #pragma omp parallel for schedule(static)
        for (int blk = 0; blk < nblk; blk++) {
            const int c0 = blk * CB, nc = c0 + CB < C ? CB : C - c0;
            double acc[CB] = { 0 };
            for (int n = 0; n < N; n++) {
                const float* g = dout + (long)n * C + c0;
                const float* xr = x + (long)n * C + c0;
                for (int i = 0; i < nc; i++) acc[i] += (double)g[i] * xr[i];
            }
            for (int i = 0; i < nc; i++) dgamma[c0 + i] += (float)acc[i];
        }
    }
    if (!dx) return;
    #pragma omp parallel for schedule(static) if ((long)N * C > PAR_MIN)
    for (int n = 0; n < N; n++)
        for (int i = 0; i < C; i++) dx[(long)n * C + i] = dout[(long)n * C + i] * gamma[i];
}

void cpu_drop_path_forward(Ctx* c, float* out, const float* x, const float* scale,
                           int B, long per_sample) {
    (void)c;
    CHECK(B >= 0 && per_sample >= 0, "B=%d per_sample=%ld", B, per_sample);
    const long n = (long)B * per_sample;
    #pragma omp parallel for schedule(static) if (n > PAR_MIN)
    for (long i = 0; i < n; i++) out[i] = x[i] * scale[i / per_sample];
}

void cpu_scale_inplace(Ctx* c, float* x, float s, long n) {
    (void)c;
    #pragma omp parallel for schedule(static) if (n > PAR_MIN)
    for (long i = 0; i < n; i++) x[i] *= s;
}
