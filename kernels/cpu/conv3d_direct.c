/* kernels/cpu/conv3d_direct.c — direct 3-D convolution (stride 1, "same" padding, odd kernel)
 * on CPUs with AVX2 + FMA: the forward of conv3d.c, and through the flipped kernel its input
 * gradient, without a column matrix. conv3d.c falls back to im2col + sgemm elsewhere, and for
 * 1x1x1 kernels (a plain GEMM).
 *
 *   out[b,o,z,y,x] = bias[o] + Σ_{i,dz,dy,dx} Wk[o,i,dz,dy,dx] in[b,i,z+dz-pd,y+dy-ph,x+dx-pw]
 *   Wk = W [Cout, Cin, kvol]                        (flip = 0, the forward)
 *   Wk[o,i,k] = W[i,o,kvol-1-k], W [Cin, Cout, kvol] (flip = 1: din = conv(dout, W'))
 *
 * Why: with few channels (UNETR decoders: 16-64) the column matrix is 27x the input and the
 * sgemm is skinny (M = Cout); measured at 2-3x slower than a direct kernel on these shapes.
 *
 * Work unit: one output plane (b, z). Its input slab — the kd planes z-pd .. z+pd of every
 * input channel, each zero-padded to Hp = H + kh - 1 rows of Lp = ⌈W/16⌉·16 + kw - 1 floats —
 * is copied into the thread's workspace (planes outside the volume and the pad are zeros), so
 * the inner loop has no bounds checks. Register tile: 4 output channels x 16 x-positions (two
 * 8-float vectors) = 8 accumulators; per tap, 2 unaligned loads of a slab row and 4 weight
 * broadcasts feed 8 FMAs. The weights are re-laid out once per call as
 * Wt[o/4][i][kd][kh][kw][4] (zero rows pad Cout to a multiple of 4), so a tap's 4 weights
 * are adjacent.
 * Summation order per output element: bias, then i, dz, dy, dx ascending, fixed by the shape:
 * every element is computed by one thread, so the bits do not depend on the thread count.
 */
#include "cpu.h"
#include "blocks.h"

#include <string.h>

#define OB 4      /* output channels per register tile */
#define XT 16     /* x positions per register tile (two 8-float vectors) */

int conv3d_direct_available(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    static int avail = -1;   /* idempotent: a race only repeats the same answer */
    if (avail < 0) {
        __builtin_cpu_init();
        avail = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    return avail;
#else
    return 0;
#endif
}

static long round_up(long n, long m) { return (n + m - 1) / m * m; }

/* floats of one thread's slab */
static size_t slab_floats(int Cin, int H, int Wd, int kd, int kh, int kw) {
    return (size_t)Cin * kd * (H + kh - 1) * (round_up(Wd, XT) + kw - 1);
}

size_t conv3d_direct_ws_bytes(int Cin, int Cout, int H, int Wd, int kd, int kh, int kw) {
    const size_t wt = ALIGN64((size_t)round_up(Cout, OB) * Cin * kd * kh * kw * sizeof(float));
    return wt + (size_t)max_threads() * ALIGN64(slab_floats(Cin, H, Wd, kd, kh, kw) * sizeof(float));
}

#if defined(__x86_64__) && defined(__GNUC__)
typedef float v8 __attribute__((vector_size(32)));
typedef float v8u __attribute__((vector_size(32), aligned(4)));   /* unaligned loads / stores */

/* one output plane: out points at out[b, 0, z, 0, 0] (channel stride S) */
__attribute__((target("avx2,fma")))
static void plane(float* out, long S, const float* P, const float* Wt, const float* bias, int Cin,
                  int Cout, int H, int Wd, int kd, int kh, int kw) {
    const long Lx = round_up(Wd, XT), Lp = Lx + kw - 1, Hp = H + kh - 1;
    const long tile = (long)Cin * kd * kh * kw * OB;    /* Wt floats per output-channel block */
    const int nob = (int)(round_up(Cout, OB) / OB);
    for (int y = 0; y < H; y++) {
        for (long x0 = 0; x0 < Lx; x0 += XT) {
            const int nx = Wd - x0 < XT ? (int)(Wd - x0) : XT;
            for (int ob = 0; ob < nob; ob++) {
                float b4[OB];
                for (int r = 0; r < OB; r++) {
                    const int o = ob * OB + r;
                    b4[r] = bias && o < Cout ? bias[o] : 0.0f;
                }
                v8 a00 = {0}, a01, a10, a11, a20, a21, a30, a31;
                a00 += b4[0]; a01 = a00;
                a10 = (v8){0} + b4[1]; a11 = a10;
                a20 = (v8){0} + b4[2]; a21 = a20;
                a30 = (v8){0} + b4[3]; a31 = a30;
                const float* w = Wt + ob * tile;
                for (int i = 0; i < Cin; i++)
                    for (int dz = 0; dz < kd; dz++)
                        for (int dy = 0; dy < kh; dy++) {
                            const float* row = P + ((long)(i * kd + dz) * Hp + y + dy) * Lp + x0;
                            for (int dx = 0; dx < kw; dx++, w += OB) {
                                const v8 v0 = *(const v8u*)(row + dx), v1 = *(const v8u*)(row + dx + 8);
                                const v8 w0 = {w[0], w[0], w[0], w[0], w[0], w[0], w[0], w[0]};
                                const v8 w1 = {w[1], w[1], w[1], w[1], w[1], w[1], w[1], w[1]};
                                const v8 w2 = {w[2], w[2], w[2], w[2], w[2], w[2], w[2], w[2]};
                                const v8 w3 = {w[3], w[3], w[3], w[3], w[3], w[3], w[3], w[3]};
                                a00 += w0 * v0; a01 += w0 * v1;
                                a10 += w1 * v0; a11 += w1 * v1;
                                a20 += w2 * v0; a21 += w2 * v1;
                                a30 += w3 * v0; a31 += w3 * v1;
                            }
                        }
                float t[OB][XT];
                *(v8u*)&t[0][0] = a00; *(v8u*)&t[0][8] = a01;
                *(v8u*)&t[1][0] = a10; *(v8u*)&t[1][8] = a11;
                *(v8u*)&t[2][0] = a20; *(v8u*)&t[2][8] = a21;
                *(v8u*)&t[3][0] = a30; *(v8u*)&t[3][8] = a31;
                for (int r = 0; r < OB; r++) {
                    const int o = ob * OB + r;
                    if (o < Cout) memcpy(out + o * S + (long)y * Wd + x0, t[r], sizeof(float) * nx);
                }
            }
        }
    }
}
#endif

/* the kd input planes around z of image b, zero-padded (layout in the header comment) */
static void fill_slab(float* P, const float* in, int Cin, int D, int H, int Wd, int kd, int kh,
                      int kw, long z) {
    const int pd = kd / 2, ph = kh / 2, pw = kw / 2;
    const long Lp = round_up(Wd, XT) + kw - 1, Hp = H + kh - 1;
    for (int i = 0; i < Cin; i++)
        for (int dz = 0; dz < kd; dz++) {
            const long zz = z + dz - pd;
            for (long yy = 0; yy < Hp; yy++) {
                float* row = P + ((long)(i * kd + dz) * Hp + yy) * Lp;
                const long y = yy - ph;
                if (zz < 0 || zz >= D || y < 0 || y >= H) {
                    memset(row, 0, sizeof(float) * Lp);
                    continue;
                }
                memset(row, 0, sizeof(float) * pw);
                memcpy(row + pw, in + (((long)i * D + zz) * H + y) * Wd, sizeof(float) * Wd);
                memset(row + pw + Wd, 0, sizeof(float) * (Lp - pw - Wd));
            }
        }
}

void conv3d_direct(float* out, const float* in, const float* W, int flip, const float* bias,
                   int B, int Cin, int Cout, int D, int H, int Wd, int kd, int kh, int kw,
                   void* ws) {
#if defined(__x86_64__) && defined(__GNUC__)
    const long kvol = (long)kd * kh * kw, Cop = round_up(Cout, OB), S = (long)D * H * Wd;
    float* Wt = ws;
    float* slabs = (float*)((char*)ws + ALIGN64((size_t)Cop * Cin * kvol * sizeof(float)));
    const size_t sstride = ALIGN64(slab_floats(Cin, H, Wd, kd, kh, kw) * sizeof(float)) / sizeof(float);
    #pragma omp parallel for schedule(static)
    for (long q = 0; q < Cop * Cin * kvol; q++) {   /* q = ((ob*Cin + i)*kvol + k)*OB + r */
        const long r = q % OB, k = q / OB % kvol, i = q / OB / kvol % Cin, o = q / OB / kvol / Cin * OB + r;
        Wt[q] = o >= Cout ? 0.0f
              : flip ? W[((long)i * Cout + o) * kvol + (kvol - 1 - k)] : W[((long)o * Cin + i) * kvol + k];
    }
    #pragma omp parallel
    {
        float* P = slabs + (size_t)thread_id() * sstride;
        #pragma omp for schedule(static)
        for (long t = 0; t < (long)B * D; t++) {
            const long b = t / D, z = t % D;
            fill_slab(P, in + b * Cin * S, Cin, D, H, Wd, kd, kh, kw, z);
            plane(out + b * Cout * S + z * H * Wd, S, P, Wt, bias, Cin, Cout, H, Wd, kd, kh, kw);
        }
    }
#else
    (void)out; (void)in; (void)W; (void)flip; (void)bias; (void)B; (void)Cin; (void)Cout; (void)D;
    (void)H; (void)Wd; (void)kd; (void)kh; (void)kw; (void)ws;
#endif
}
