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
 *
 * Weight gradient (conv3d_direct_dw): dW[o,i,k] += Σ_{b,z,y,x} dout[b,o,z,y,x] in_pad[b,i,...].
 * Work unit: (4 output channels, 1 input channel), all of whose 4·kvol sums it owns, so no
 * partials are reduced across threads. Per image plane (b, z): the channel's kd input planes
 * (padded as above) and the 4 dout planes (rows padded to Lx with zeros, so lanes past W add
 * nothing) are copied to the thread's slot; for each (dz, dy) and a group of up to 3 dx taps,
 * 12 vector accumulators (4 o x 3 dx) run over the plane's rows in x steps of 8 (7 loads feed
 * 12 FMAs), are summed across lanes in fixed order and added to double accumulators plane by
 * plane (fp32 runs stay one plane long). Order fixed by the shape: thread-count independent.
 */
#include "cpu.h"
#include "blocks.h"

#include <string.h>

#define OB 4      /* output channels per register tile */
#define XT 16     /* x positions per register tile (two 8-float vectors) */
#define DW_RUN 4096   /* voxels per fp32 run of the weight gradient's lane sums */

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

/* floats of one thread's slot for the weight gradient: kd padded planes, 4 dout planes,
 * 4·kvol doubles */
static size_t dw_planes_bytes(int H, int Wd, int kd, int kh, int kw) {
    const long Lx = round_up(Wd, XT), Lp = Lx + kw - 1, Hp = H + kh - 1;
    return ALIGN64(sizeof(float) * ((size_t)kd * Hp * Lp + (size_t)OB * H * Lx));
}
static size_t dw_vecs(int kd, int kh, int kw) { return (size_t)kd * kh * ((kw + 2) / 3) * OB * 3; }
static size_t dw_slot_bytes(int H, int Wd, int kd, int kh, int kw) {
    return dw_planes_bytes(H, Wd, kd, kh, kw) + ALIGN64(sizeof(float) * 8 * dw_vecs(kd, kh, kw)) +
           ALIGN64(sizeof(double) * OB * kd * kh * kw);
}

size_t conv3d_direct_dw_ws_bytes(int H, int Wd, int kd, int kh, int kw) {
    return (size_t)max_threads() * dw_slot_bytes(H, Wd, kd, kh, kw);
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

/* the weight gradient's sums over one plane: G = 4 dout planes [4][H][Lx], P = the channel's
 * padded planes [kd][Hp][Lp]; A = [kd][kh][ng][4][3] vector accumulators (ng = ⌈kw/3⌉ groups
 * of up to 3 dx taps), zero on entry. Rows outermost, so a row of G and the kd·kh rows of P
 * it meets stay in L1 while every (dz, dy, group) passes over them. */
#define DW_TILE_BODY                                                                              \
    for (long x = 0; x < Lx; x += 8) {                                                            \
        const v8 g0 = *(const v8u*)(g + x), g1 = *(const v8u*)(g + pl + x);                      \
        const v8 g2 = *(const v8u*)(g + 2 * pl + x), g3 = *(const v8u*)(g + 3 * pl + x);          \
        /* with fewer than 3 taps left, the unused p1 / p2 read up to 2 floats past the row:  \
         * the next row, or G, which follows P in the slot */                                     \
        const v8 p0 = *(const v8u*)(prow + x), p1 = *(const v8u*)(prow + x + 1);                  \
        const v8 p2 = *(const v8u*)(prow + x + 2);                                                \
        a00 += g0 * p0; a10 += g1 * p0; a20 += g2 * p0; a30 += g3 * p0;                          \
        a01 += g0 * p1; a11 += g1 * p1; a21 += g2 * p1; a31 += g3 * p1;                           \
        a02 += g0 * p2; a12 += g1 * p2; a22 += g2 * p2; a32 += g3 * p2;                           \
    }
#define DW_LOAD                                                                                   \
    v8 a00 = a[0], a01 = a[1], a02 = a[2], a10 = a[3], a11 = a[4], a12 = a[5];                    \
    v8 a20 = a[6], a21 = a[7], a22 = a[8], a30 = a[9], a31 = a[10], a32 = a[11];
#define DW_STORE                                                                                  \
    a[0] = a00; a[1] = a01; a[2] = a02; a[3] = a10; a[4] = a11; a[5] = a12;                       \
    a[6] = a20; a[7] = a21; a[8] = a22; a[9] = a30; a[10] = a31; a[11] = a32;

/* the weight gradient's sums over one plane, added to A: G = 4 dout planes [4][H][Lx], P = the
 * channel's padded planes [kd][Hp][Lp]; A = [kd][kh][ng][4][3] vector accumulators (ng =
 * ⌈kw/3⌉ groups of up to 3 dx taps). A plane that fits L1 is swept once per (dz, dy, group)
 * with the 12 accumulators in registers throughout; a larger one row by row, so a row of G and
 * the kd·kh rows of P it meets stay in L1 while every group passes over them. */
__attribute__((target("avx2,fma")))
static void dw_plane(v8* A, const float* G, const float* P, int H, long Lx, long Hp, long Lp,
                     int kd, int kh, int kw) {
    const int ng = (kw + 2) / 3;
    const long pl = (long)H * Lx;
    if (sizeof(float) * ((size_t)OB * H * Lx + (size_t)kd * Hp * Lp) <= 24576) {
        v8* a = A;
        for (int dz = 0; dz < kd; dz++)
            for (int dy = 0; dy < kh; dy++)
                for (int gi = 0; gi < ng; gi++, a += OB * 3) {
                    DW_LOAD
                    for (int y = 0; y < H; y++) {
                        const float* g = G + (long)y * Lx;
                        const float* prow = P + ((long)dz * Hp + y + dy) * Lp + 3 * gi;
                        DW_TILE_BODY
                    }
                    DW_STORE
                }
        return;
    }
    for (int y = 0; y < H; y++) {
        const float* g = G + (long)y * Lx;
        v8* a = A;
        for (int dz = 0; dz < kd; dz++)
            for (int dy = 0; dy < kh; dy++)
                for (int gi = 0; gi < ng; gi++, a += OB * 3) {
                    const float* prow = P + ((long)dz * Hp + y + dy) * Lp + 3 * gi;
                    DW_LOAD
                    DW_TILE_BODY
                    DW_STORE
                }
    }
}

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

void conv3d_direct_dw(float* dW, const float* dout, const float* in, int B, int Ci, int Co, int D,
                      int H, int Wd, int kd, int kh, int kw, void* ws) {
#if defined(__x86_64__) && defined(__GNUC__)
    const long S = (long)D * H * Wd, kvol = (long)kd * kh * kw;
    const long Lx = round_up(Wd, XT), Lp = Lx + kw - 1, Hp = H + kh - 1;
    const size_t slot = dw_slot_bytes(H, Wd, kd, kh, kw);
    const long nob = round_up(Co, OB) / OB;
    #pragma omp parallel
    {
        char* my = (char*)ws + (size_t)thread_id() * slot;
        float* P = (float*)my;
        float* G = P + (size_t)kd * Hp * Lp;
        v8* A = (v8*)(my + dw_planes_bytes(H, Wd, kd, kh, kw));
        const size_t nv = dw_vecs(kd, kh, kw);
        double* acc = (double*)((char*)A + ALIGN64(sizeof(float) * 8 * nv));
        #pragma omp for schedule(dynamic, 1)
        for (long t = 0; t < nob * Ci; t++) {
            const int ob = (int)(t / Ci), i = (int)(t % Ci);
            memset(acc, 0, sizeof(double) * OB * kvol);
            memset(A, 0, sizeof(v8) * nv);
            long run = 0;   /* voxels summed in A since its last reduction */
            for (long b = 0; b < B; b++)
                for (long z = 0; z < D; z++) {
                    fill_slab(P, in + (b * Ci + i) * S, 1, D, H, Wd, kd, kh, kw, z);
                    for (int r = 0; r < OB; r++) {
                        const int o = ob * OB + r;
                        for (int y = 0; y < H; y++) {
                            float* g = G + ((long)r * H + y) * Lx;
                            if (o < Co) {
                                memcpy(g, dout + ((b * Co + o) * D + z) * H * Wd + (long)y * Wd, sizeof(float) * Wd);
                                memset(g + Wd, 0, sizeof(float) * (Lx - Wd));
                            } else {
                                memset(g, 0, sizeof(float) * Lx);
                            }
                        }
                    }
                    dw_plane(A, G, P, H, Lx, Hp, Lp, kd, kh, kw);
                    /* every DW_RUN voxels and at the end, lanes summed in a fixed tree, then
                     * into the double sums (fp32 runs stay short; the points depend only on
                     * the shape) */
                    run += (long)H * Wd;
                    if (run < DW_RUN && !(b == B - 1 && z == D - 1)) continue;
                    run = 0;
                    const v8* a = A;
                    for (int dz = 0; dz < kd; dz++)
                        for (int dy = 0; dy < kh; dy++)
                            for (int dx0 = 0; dx0 < kw; dx0 += 3, a += OB * 3)
                                for (int r = 0; r < OB; r++)
                                    for (int j = 0; j < 3 && dx0 + j < kw; j++) {
                                        float t[8];
                                        memcpy(t, &a[r * 3 + j], sizeof t);
                                        acc[r * kvol + (dz * kh + dy) * kw + dx0 + j] +=
                                            ((t[0] + t[1]) + (t[2] + t[3])) + ((t[4] + t[5]) + (t[6] + t[7]));
                                    }
                    memset(A, 0, sizeof(v8) * nv);
                }
            for (int r = 0; r < OB; r++) {
                const int o = ob * OB + r;
                if (o >= Co) continue;
                for (long k = 0; k < kvol; k++) dW[((long)o * Ci + i) * kvol + k] += (float)acc[r * kvol + k];
            }
        }
    }
#else
    (void)dW; (void)dout; (void)in; (void)B; (void)Ci; (void)Co; (void)D; (void)H; (void)Wd;
    (void)kd; (void)kh; (void)kw; (void)ws;
#endif
}
