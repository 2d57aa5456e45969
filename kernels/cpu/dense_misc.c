/* kernels/cpu/dense_misc.c — small dense-decoder ops: leaky ReLU, channel concat, and the
 * token rows -> channels-first volume transpose.
 *
 * leaky_relu: out = x > 0 ? x : slope x; backward dx = x > 0 ? dout : slope dout (torch's
 *   choice at x = 0). Elementwise, so in place (out == x, dx == dout) is fine.
 * concat_channels: out [B, Ca + Cb, S] = [a | b] along channels; backward splits. Copies.
 * tokens_to_grid: out[b, c, s] = tokens[b, t0 + s, c], a per-image [S, C] -> [C, S] transpose
 *   done in TILE x TILE tiles (both sides touch whole cache lines); the backward is the
 *   inverse transpose and writes only rows t0 .. t0+S-1 of dtokens.
 * All pure per-element work: any thread count gives the same bits.
 */
#include "cpu.h"
#include "../../engine/check.h"

#include <string.h>

void cpu_leaky_relu_forward(Ctx* c, float* out, const float* x, float slope, long n) {
    (void)c;
    CHECK(n >= 0, "leaky_relu n=%ld", n);
    /* simd: at -O2 the compiler will not add the runtime alias check itself (out == x, in
     * place, is allowed: each i reads before it writes) */
    #pragma omp parallel for simd schedule(static)
    for (long i = 0; i < n; i++) out[i] = x[i] > 0.0f ? x[i] : slope * x[i];
}

void cpu_leaky_relu_backward(Ctx* c, float* dx, const float* dout, const float* x, float slope,
                             long n) {
    (void)c;
    CHECK(n >= 0, "leaky_relu n=%ld", n);
    #pragma omp parallel for simd schedule(static)
    for (long i = 0; i < n; i++) dx[i] = x[i] > 0.0f ? dout[i] : slope * dout[i];
}

/* ---- concat ----------------------------------------------------------------------------- */
void cpu_concat_channels_forward(Ctx* c, float* out, const float* a, const float* b, int B,
                                 int Ca, int Cb, long S) {
    (void)c;
    CHECK(B > 0 && Ca >= 0 && Cb >= 0 && S > 0, "concat B=%d Ca=%d Cb=%d S=%ld", B, Ca, Cb, S);
    const long Cc = (long)Ca + Cb;
    #pragma omp parallel for schedule(static)
    for (long t = 0; t < B * Cc; t++) {           /* one channel row per task */
        const long bb = t / Cc, ch = t % Cc;
        const float* src = ch < Ca ? a + (bb * Ca + ch) * S : b + (bb * Cb + ch - Ca) * S;
        memcpy(out + t * S, src, (size_t)S * sizeof(float));
    }
}

void cpu_concat_channels_backward(Ctx* c, float* da, float* db, const float* dout, int B, int Ca,
                                  int Cb, long S) {
    (void)c;
    CHECK(B > 0 && Ca >= 0 && Cb >= 0 && S > 0, "concat B=%d Ca=%d Cb=%d S=%ld", B, Ca, Cb, S);
    const long Cc = (long)Ca + Cb;
    #pragma omp parallel for schedule(static)
    for (long t = 0; t < B * Cc; t++) {
        const long bb = t / Cc, ch = t % Cc;
        float* dst = ch < Ca ? (da ? da + (bb * Ca + ch) * S : NULL)
                             : (db ? db + (bb * Cb + ch - Ca) * S : NULL);
        if (dst) memcpy(dst, dout + t * S, (size_t)S * sizeof(float));
    }
}

/* ---- tokens -> grid --------------------------------------------------------------------- */
enum { TILE = 32 };

/* dir 0: grid[c, s] = rows[s, c]; dir 1: rows[s, c] = grid[c, s], where the rows of image b
 * start at tok + (b*T + t0)*C and its grid at grid + b*C*S. One task per tile. */
static void tok_grid(float* grid, float* tok, int dir, int B, int T, int C, int t0, long S) {
    const long ns = (S + TILE - 1) / TILE, nc = (C + TILE - 1) / TILE;
    #pragma omp parallel for schedule(static)
    for (long t = 0; t < (long)B * ns * nc; t++) {
        const long bb = t / (ns * nc), s0 = t / nc % ns * TILE, c0 = t % nc * TILE;
        const long s1 = s0 + TILE < S ? s0 + TILE : S, c1 = c0 + TILE < C ? c0 + TILE : C;
        float* g = grid + bb * C * S;
        float* r = tok + (bb * T + t0) * C;
        if (dir == 0) {
            for (long ch = c0; ch < c1; ch++)
                for (long s = s0; s < s1; s++) g[ch * S + s] = r[s * C + ch];
        } else {
            for (long s = s0; s < s1; s++)
                for (long ch = c0; ch < c1; ch++) r[s * C + ch] = g[ch * S + s];
        }
    }
}

void cpu_tokens_to_grid_forward(Ctx* c, float* out, const float* tokens, int B, int T, int C,
                                int t0, long S) {
    (void)c;
    CHECK(B > 0 && C > 0 && S > 0 && t0 >= 0 && t0 + S <= T,
          "tokens_to_grid B=%d T=%d C=%d t0=%d S=%ld", B, T, C, t0, S);
    tok_grid(out, (float*)tokens, 0, B, T, C, t0, S);   /* dir 0 only reads tokens */
}

void cpu_tokens_to_grid_backward(Ctx* c, float* dtokens, const float* dout, int B, int T, int C,
                                 int t0, long S) {
    (void)c;
    CHECK(B > 0 && C > 0 && S > 0 && t0 >= 0 && t0 + S <= T,
          "tokens_to_grid B=%d T=%d C=%d t0=%d S=%ld", B, T, C, t0, S);
    tok_grid((float*)dout, dtokens, 1, B, T, C, t0, S);  /* dir 1 only reads the grid */
}
