/* kernels/cpu/tokens.c — build the token sequence [cls | registers | extra | patches].
 *
 * out [B, T, C], T = ncls + R + E + P. cls [C] and reg [R, C] are parameters shared by the
 * batch; extra [E, B, C] is token-major (each extra token's projection writes one block);
 * patches [B, P, C]. In the forward ncls = (cls != NULL); the backward has no cls pointer,
 * so there ncls = (dcls != NULL): a model with a cls token must pass dcls.
 * Backward: dcls, dreg are parameter gradients and accumulate; the sum over the batch runs
 * b = 0..B-1 in that order for every channel (threads split channels/rows, never b), so the
 * result does not depend on the thread count. dextra, dpatches overwrite.
 */
#include "cpu.h"
#include "../../engine/check.h"

#include <string.h>

void cpu_tokens_concat_forward(Ctx* c, float* out, const float* cls, const float* reg,
                               const float* extra, const float* patches,
                               int B, int R, int E, int P, int C) {
    (void)c;
    CHECK(B > 0 && C > 0 && R >= 0 && E >= 0 && P >= 0, "B=%d R=%d E=%d P=%d C=%d", B, R, E, P, C);
    CHECK((R == 0 || reg) && (E == 0 || extra) && (P == 0 || patches), "missing token source");
    const int ncls = cls != NULL, T = ncls + R + E + P;
    const size_t row = (size_t)C * sizeof(float);
    #pragma omp parallel for schedule(static)
    for (long bt = 0; bt < (long)B * T; bt++) {
        const long b = bt / T;
        int t = (int)(bt % T);
        const float* src;
        if (t < ncls) src = cls;
        else if ((t -= ncls) < R) src = reg + (long)t * C;
        else if ((t -= R) < E) src = extra + ((long)t * B + b) * C;
        else src = patches + (b * P + (t - E)) * C;
        memcpy(out + bt * C, src, row);
    }
}

void cpu_tokens_concat_backward(Ctx* c, float* dcls, float* dreg, float* dextra, float* dpatches,
                                const float* dout, int B, int R, int E, int P, int C) {
    (void)c;
    CHECK(B > 0 && C > 0 && R >= 0 && E >= 0 && P >= 0, "B=%d R=%d E=%d P=%d C=%d", B, R, E, P, C);
    const int ncls = dcls != NULL, T = ncls + R + E + P;
    /* parameters: rows r = -1 (cls) .. R-1, each channel summed over b in order */
    const int r0 = ncls ? -1 : 0, nrows = R - r0;
    if (dreg || dcls) {
        #pragma omp parallel for schedule(static)
        for (int rr = 0; rr < nrows; rr++) {
            const int r = rr + r0;
            float* g = r < 0 ? dcls : (dreg ? dreg + (long)r * C : NULL);
            if (!g) continue;
            const int t = ncls + r;
            for (int ch = 0; ch < C; ch++) {
                float s = 0.0f;
                for (int b = 0; b < B; b++) s += dout[((long)b * T + t) * C + ch];
                g[ch] += s;
            }
        }
    }
    const size_t row = (size_t)C * sizeof(float);
    if (dextra) {
        #pragma omp parallel for schedule(static)
        for (long eb = 0; eb < (long)E * B; eb++) {
            const long e = eb / B, b = eb % B;
            memcpy(dextra + eb * C, dout + (b * T + ncls + R + e) * C, row);
        }
    }
    if (dpatches) {
        #pragma omp parallel for schedule(static)
        for (long bp = 0; bp < (long)B * P; bp++) {
            const long b = bp / P, p = bp % P;
            memcpy(dpatches + bp * C, dout + (b * T + ncls + R + E + p) * C, row);
        }
    }
}
