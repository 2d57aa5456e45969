/* kernels/cpu/pos_embed.c — positional embeddings: add to tokens, resample the grid.
 *
 * pos_embed_add: x [B, T, C] in place, x[b, t0+i, :] += pos[p0+i, :] for i < n.
 *   backward: dpos[p0+i, :] += sum_b dx[b, t0+i, :] (a parameter gradient: accumulates; b
 *   summed in order 0..B-1 per element, threads split rows i only -> thread-count invariant).
 *
 * pos_resample: grid [d, h, w, C] (channel-last, z-major) -> [d1, h1, w1, C], the semantics
 *   of torch.nn.functional.interpolate(..., size=(...), align_corners=False):
 *   POS_BICUBIC (2D, d = 1): src = (dst + 0.5) * in/out - 0.5, NOT clamped; taps
 *     floor(src) - 1 .. floor(src) + 2, each clamped to [0, in-1]; cubic convolution with
 *     A = -0.75 (PyTorch's get_cubic_upsample_coefficients). No antialias.
 *   POS_TRILINEAR (3D): src = max((dst + 0.5) * in/out - 0.5, 0), i0 = floor(src),
 *     i1 = min(i0 + 1, in - 1), weights (1 - l, l).
 *   The op is linear, out = M in, with M separable per axis. Forward gathers (one thread
 *   per output cell); backward is the exact transpose din = M^T dout, overwriting din. It
 *   scatters over output cells in a fixed order with threads owning disjoint channel
 *   blocks, so no atomics and bits independent of the thread count. Same-size resampling
 *   is an exact copy (weights (0,1,0,0) / (1,0) are exact).
 */
#include "cpu.h"
#include "../../engine/check.h"

#include <math.h>
#include <string.h>

void cpu_pos_embed_add_forward(Ctx* c, float* x, const float* pos,
                               int B, int T, int C, int t0, int n, int p0) {
    (void)c;
    CHECK(B > 0 && C > 0 && n >= 0 && t0 >= 0 && p0 >= 0 && t0 + n <= T,
          "B=%d T=%d C=%d t0=%d n=%d p0=%d", B, T, C, t0, n, p0);
    #pragma omp parallel for schedule(static)
    for (long bi = 0; bi < (long)B * n; bi++) {
        const long b = bi / n, i = bi % n;
        float* xr = x + (b * T + t0 + i) * C;
        const float* pr = pos + (p0 + i) * C;
        for (int ch = 0; ch < C; ch++) xr[ch] += pr[ch];
    }
}

void cpu_pos_embed_add_backward(Ctx* c, float* dpos, const float* dx,
                                int B, int T, int C, int t0, int n, int p0) {
    (void)c;
    CHECK(B > 0 && C > 0 && n >= 0 && t0 >= 0 && p0 >= 0 && t0 + n <= T,
          "B=%d T=%d C=%d t0=%d n=%d p0=%d", B, T, C, t0, n, p0);
    if (!dpos) return;
    #pragma omp parallel for schedule(static)
    for (int i = 0; i < n; i++) {
        float* g = dpos + (long)(p0 + i) * C;
        for (int ch = 0; ch < C; ch++) {
            float s = 0.0f;
            for (int b = 0; b < B; b++) s += dx[((long)b * T + t0 + i) * C + ch];
            g[ch] += s;
        }
    }
}

/* ---- resampling ------------------------------------------------------------------------ */

/* up to 4 taps of one axis: clamped input indices and weights for output index o */
typedef struct { int n; int idx[4]; float w[4]; } Taps;

static float cubic1(float x, float A) { return ((A + 2) * x - (A + 3)) * x * x + 1; }      /* |x| <= 1 */
static float cubic2(float x, float A) { return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A; } /* 1 < |x| < 2 */

static int clampi(int v, int hi) { return v < 0 ? 0 : (v > hi ? hi : v); }

static Taps axis_taps(int o, int in, int out, int mode) {
    Taps t;
    /* PyTorch area_pixel_compute_scale(align_corners=False, no scale_factor) = in / out */
    const float scale = (float)in / (float)out;
    float src = (o + 0.5f) * scale - 0.5f;
    if (mode == POS_BICUBIC) {
        const float A = -0.75f;
        const int i0 = (int)floorf(src);
        const float f = src - (float)i0;
        t.n = 4;
        t.w[0] = cubic2(f + 1, A); t.w[1] = cubic1(f, A);
        t.w[2] = cubic1(1 - f, A); t.w[3] = cubic2(2 - f, A);
        for (int k = 0; k < 4; k++) t.idx[k] = clampi(i0 - 1 + k, in - 1);
    } else {
        if (src < 0) src = 0;
        const int i0 = (int)src;
        const float l = src - (float)i0;
        t.n = 2;
        t.idx[0] = i0; t.idx[1] = i0 < in - 1 ? i0 + 1 : i0;
        t.w[0] = 1 - l; t.w[1] = l;
    }
    return t;
}

static void check_resample_args(int C, int d0, int h0, int w0, int d1, int h1, int w1, int mode) {
    CHECK(C > 0 && d0 > 0 && h0 > 0 && w0 > 0 && d1 > 0 && h1 > 0 && w1 > 0,
          "grid %dx%dx%d -> %dx%dx%d, C=%d", d0, h0, w0, d1, h1, w1, C);
    CHECK(mode == POS_BICUBIC || mode == POS_TRILINEAR, "unknown resample mode %d", mode);
    CHECK(mode != POS_BICUBIC || (d0 == 1 && d1 == 1),
          "bicubic resampling is 2D only (d0=%d d1=%d); use trilinear for 3D grids", d0, d1);
}

/* the depth axis of a 2D (bicubic) grid is the identity: one tap of weight 1 */
static Taps depth_taps(int o, int in, int out, int mode) {
    if (mode == POS_BICUBIC) { Taps t = { 1, { 0, 0, 0, 0 }, { 1, 0, 0, 0 } }; return t; }
    return axis_taps(o, in, out, mode);
}

void cpu_pos_resample_forward(Ctx* c, float* out, const float* in, int C,
                              int d0, int h0, int w0, int d1, int h1, int w1, int mode) {
    (void)c;
    check_resample_args(C, d0, h0, w0, d1, h1, w1, mode);
    const long ncell = (long)d1 * h1 * w1;
    #pragma omp parallel for schedule(static)
    for (long cell = 0; cell < ncell; cell++) {
        const int z = (int)(cell / ((long)h1 * w1)), y = (int)(cell / w1 % h1), x = (int)(cell % w1);
        const Taps tz = depth_taps(z, d0, d1, mode);
        const Taps ty = axis_taps(y, h0, h1, mode), tx = axis_taps(x, w0, w1, mode);
        float* o = out + cell * C;
        for (int ch = 0; ch < C; ch++) o[ch] = 0.0f;
        /* weight order z, y, x with x innermost, like PyTorch's nested 1D interpolations */
        for (int a = 0; a < tz.n; a++)
            for (int j = 0; j < ty.n; j++) {
                for (int i = 0; i < tx.n; i++) {
                    const float wgt = tz.w[a] * ty.w[j] * tx.w[i];
                    const float* src = in + (((long)tz.idx[a] * h0 + ty.idx[j]) * w0 + tx.idx[i]) * C;
                    for (int ch = 0; ch < C; ch++) o[ch] += wgt * src[ch];
                }
            }
    }
}

void cpu_pos_resample_backward(Ctx* c, float* din, const float* dout, int C,
                               int d0, int h0, int w0, int d1, int h1, int w1, int mode) {
    (void)c;
    check_resample_args(C, d0, h0, w0, d1, h1, w1, mode);
    enum { CB = 16 };   /* channels per thread block: 64 bytes, one cache line */
    const long ncell = (long)d1 * h1 * w1;
    const int nblk = (C + CB - 1) / CB;
    memset(din, 0, (size_t)d0 * h0 * w0 * C * sizeof(float));
    #pragma omp parallel for schedule(static)
    for (int blk = 0; blk < nblk; blk++) {
        const int c0 = blk * CB, c1 = c0 + CB < C ? c0 + CB : C;
        for (long cell = 0; cell < ncell; cell++) {
            const int z = (int)(cell / ((long)h1 * w1)), y = (int)(cell / w1 % h1), x = (int)(cell % w1);
            const Taps tz = depth_taps(z, d0, d1, mode);
            const Taps ty = axis_taps(y, h0, h1, mode), tx = axis_taps(x, w0, w1, mode);
            const float* g = dout + cell * C;
            for (int a = 0; a < tz.n; a++)
                for (int j = 0; j < ty.n; j++)
                    for (int i = 0; i < tx.n; i++) {
                        const float wgt = tz.w[a] * ty.w[j] * tx.w[i];
                        float* dst = din + (((long)tz.idx[a] * h0 + ty.idx[j]) * w0 + tx.idx[i]) * C;
                        for (int ch = c0; ch < c1; ch++) dst[ch] += wgt * g[ch];
                    }
        }
    }
}
