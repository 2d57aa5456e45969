/* kernels/cpu/meanpool.c — mean over a token range: out [B, C] = mean_t x[b, t0+t, :].
 *
 * x [B, T, C]; tokens t0 .. t0+n-1 are pooled (e.g. the patch tokens after cls/registers).
 * The sum runs over t in order, in double, per channel, then is divided by n like
 * torch.mean; threads own disjoint (b, channel block) pairs, so the bits do not depend on
 * the thread count. The backward writes all of dx: dout / n on pooled tokens, 0 elsewhere.
 */
#include "cpu.h"
#include "../../engine/check.h"

void cpu_meanpool_forward(Ctx* c, float* out, const float* x, int B, int T, int C, int t0, int n) {
    (void)c;
    CHECK(B > 0 && C > 0 && n > 0 && t0 >= 0 && t0 + n <= T,
          "B=%d T=%d C=%d t0=%d n=%d", B, T, C, t0, n);
    enum { CB = 64 };
    const int nblk = (C + CB - 1) / CB;
    #pragma omp parallel for schedule(static)
    for (long bk = 0; bk < (long)B * nblk; bk++) {
        const long b = bk / nblk;
        const int c0 = (int)(bk % nblk) * CB, nc = c0 + CB < C ? CB : C - c0;
        double acc[CB] = { 0 };
        for (int t = 0; t < n; t++) {
            const float* xr = x + (b * T + t0 + t) * C + c0;
            for (int i = 0; i < nc; i++) acc[i] += xr[i];
        }
        for (int i = 0; i < nc; i++) out[b * C + c0 + i] = (float)(acc[i] / n);
    }
}

void cpu_meanpool_backward(Ctx* c, float* dx, const float* dout, int B, int T, int C, int t0, int n) {
    (void)c;
    CHECK(B > 0 && C > 0 && n > 0 && t0 >= 0 && t0 + n <= T,
          "B=%d T=%d C=%d t0=%d n=%d", B, T, C, t0, n);
    const float inv = 1.0f / (float)n;
    #pragma omp parallel for schedule(static)
    for (long bt = 0; bt < (long)B * T; bt++) {
        const long b = bt / T, t = bt % T;
        float* d = dx + bt * C;
        if (t < t0 || t >= t0 + n) { for (int i = 0; i < C; i++) d[i] = 0.0f; continue; }
        for (int i = 0; i < C; i++) d[i] = dout[b * C + i] * inv;
    }
}
