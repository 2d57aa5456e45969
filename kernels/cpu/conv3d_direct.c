/* kernels/cpu/conv3d_direct.c — direct 3-D convolution (stride 1, "same" padding, odd kernel)
 * on CPUs with AVX2 + FMA: the forward of conv3d.c, its input gradient (the forward with the
 * flipped kernel) and its weight gradient, without a column matrix. conv3d.c falls back to
 * im2col + sgemm on other CPUs, and for 1x1x1 kernels (a plain GEMM).
 *
 *   out[b,o,z,y,x] = bias[o] + Σ_{i,dz,dy,dx} Wk[o,i,dz,dy,dx] in[b,i,z+dz-pd,y+dy-ph,x+dx-pw]
 *   Wk = W [Cout, Cin, kvol]                        (flip = 0, the forward)
 *   Wk[o,i,k] = W[i,o,kvol-1-k], W [Cin, Cout, kvol] (flip = 1: din = conv(dout, W'))
 *
 * Why: with the few channels of UNETR decoders (16-64) the column matrix is 27x the input and
 * the sgemm is skinny (M = Cout): measured 2-3x slower than this kernel on those shapes.
 *
 * Flat padded planes: an input plane is stored zero-padded as Hp = H + kh - 1 rows of
 * Lq = W + kw - 1 floats, flat (plus slack). An output position q = y·Lq + x (x < W valid,
 * the kw - 1 positions past W of each row are computed and dropped) then reads its tap
 * (dy, dx) at q + dy·Lq + dx: one constant offset per tap, so 16 consecutive q (two 8-float
 * vectors) form a register tile for any W, with no bounds checks. Waste: (kw-1)/Lq.
 *
 * Forward, per output plane (b, z): the kd input planes z-pd .. z+pd of every input channel
 * (zeros outside the volume) are copied to the thread's slab; per block of 4 output channels
 * (its Ci·kvol·4 weights, laid out Wt[o/4][i][kd][kh][kw][4], stay in L1/L2) the plane's tiles
 * run 8 accumulators (4 o x 2 vectors): per tap 2 loads and 4 broadcasts feed 8 FMAs.
 * Summation order per output element: bias, then i, dz, dy, dx ascending.
 *
 * Weight gradient: dW[o,i,k] += Σ_{b,z,q} dout_flat[b,o,z,q] in_pad_flat[b,i,.., q + off_k],
 * dout_flat zero at the dropped positions, so they add nothing. Work unit: (4 output channels,
 * 1 input channel), which owns its 4·kvol sums (no partials reduced across threads). Per plane,
 * the channel's kd padded planes and the 4 dout planes are copied to the thread's slot; in
 * chunks of DW_CHUNK positions (L1-sized), for each (dz, dy) and group of up to 3 dx taps, 12
 * vector accumulators (4 o x 3 dx) are loaded, swept over the chunk (7 loads feed 12 FMAs) and
 * stored; every DW_RUN voxels the lanes are summed in a fixed tree into double sums.
 * Every output element / gradient sum is computed by one thread in an order fixed by the
 * shape: the bits do not depend on the thread count.
 */
#include "cpu.h"
#include "blocks.h"

#include <string.h>

#define OB 4          /* output channels per register tile */
#define XT 16         /* flat positions per forward register tile (two 8-float vectors) */
#define DW_CHUNK 512  /* flat positions per weight-gradient sweep (L1: 4 + 9 rows of 2 KB) */
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

/* the flat padded plane: row stride, positions computed (Q = H·Lq, tiles to Qt), floats per
 * plane with slack for the last tile's farthest tap (+8 for the weight gradient's 3-tap reads
 * past a partial group) */
typedef struct { long Lq, Q, Qt, Fp; } Flat;
static Flat flat(int H, int Wd, int kh, int kw) {
    Flat f;
    f.Lq = Wd + kw - 1;
    f.Q = (long)H * f.Lq;
    f.Qt = round_up(f.Q, XT);
    f.Fp = round_up((long)(H + kh - 1) * f.Lq + XT + kw + 8, 8);
    return f;
}

size_t conv3d_direct_ws_bytes(int Cin, int Cout, int H, int Wd, int kd, int kh, int kw) {
    const Flat f = flat(H, Wd, kh, kw);
    const size_t wt = ALIGN64((size_t)round_up(Cout, OB) * Cin * kd * kh * kw * sizeof(float));
    return wt + (size_t)max_threads() * ALIGN64((size_t)Cin * kd * f.Fp * sizeof(float));
}

/* weight-gradient slot: kd padded planes, 4 dout planes [4][Qt], the vector accumulators,
 * 4·kvol doubles */
static size_t dw_planes_bytes(int H, int Wd, int kd, int kh, int kw) {
    const Flat f = flat(H, Wd, kh, kw);
    return ALIGN64(sizeof(float) * ((size_t)kd * f.Fp + (size_t)OB * f.Qt));
}
static size_t dw_vecs(int kd, int kh, int kw) { return (size_t)kd * kh * ((kw + 2) / 3) * OB * 3; }
static size_t dw_slot_bytes(int H, int Wd, int kd, int kh, int kw) {
    return dw_planes_bytes(H, Wd, kd, kh, kw) + ALIGN64(sizeof(float) * 8 * dw_vecs(kd, kh, kw)) +
           ALIGN64(sizeof(double) * OB * kd * kh * kw);
}
size_t conv3d_direct_dw_ws_bytes(int H, int Wd, int kd, int kh, int kw) {
    return (size_t)max_threads() * dw_slot_bytes(H, Wd, kd, kh, kw);
}

/* the kd planes around z of one channel (in = that channel's [D, H, W]) into P [kd][Fp] */
static void fill_planes(float* P, const float* in, int D, int H, int Wd, int kd, int kh, int kw,
                        long z, const Flat* f) {
    const int pd = kd / 2, ph = kh / 2, pw = kw / 2;
    for (int dz = 0; dz < kd; dz++) {
        float* pl = P + (long)dz * f->Fp;
        const long zz = z + dz - pd;
        memset(pl, 0, sizeof(float) * f->Fp);
        if (zz < 0 || zz >= D) continue;
        for (int y = 0; y < H; y++)
            memcpy(pl + (long)(y + ph) * f->Lq + pw, in + (zz * H + y) * Wd, sizeof(float) * Wd);
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
typedef float v8 __attribute__((vector_size(32)));
typedef float v8u __attribute__((vector_size(32), aligned(4)));   /* unaligned loads / stores */

/* one output plane: out points at out[b, 0, z, 0, 0] (channel stride S); P = [Cin][kd][Fp] */
__attribute__((target("avx2,fma")))
static void plane(float* out, long S, const float* P, const float* Wt, const float* bias, int Cin,
                  int Cout, int Wd, int kd, int kh, int kw, const Flat* f) {
    const long tile = (long)Cin * kd * kh * kw * OB;    /* Wt floats per output-channel block */
    const int nob = (int)(round_up(Cout, OB) / OB);
    for (int ob = 0; ob < nob; ob++) {
        float b4[OB];
        for (int r = 0; r < OB; r++) {
            const int o = ob * OB + r;
            b4[r] = bias && o < Cout ? bias[o] : 0.0f;
        }
        for (long q0 = 0; q0 < f->Qt; q0 += XT) {
            v8 a00 = (v8){0} + b4[0], a10 = (v8){0} + b4[1], a20 = (v8){0} + b4[2], a30 = (v8){0} + b4[3];
            v8 a01 = a00, a11 = a10, a21 = a20, a31 = a30;
            const float* w = Wt + ob * tile;
            for (int i = 0; i < Cin; i++)
                for (int dz = 0; dz < kd; dz++)
                    for (int dy = 0; dy < kh; dy++) {
                        const float* row = P + (long)(i * kd + dz) * f->Fp + dy * f->Lq + q0;
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
            long y = q0 / f->Lq, x = q0 - y * f->Lq;
            for (int j = 0; j < XT && q0 + j < f->Q; j++) {
                if (x < Wd)
                    for (int r = 0; r < OB; r++)
                        if (ob * OB + r < Cout) out[(ob * OB + r) * S + y * Wd + x] = t[r][j];
                if (++x == f->Lq) { x = 0; y++; }
            }
        }
    }
}

/* the weight gradient's sums over one plane, added to A: G = 4 dout planes [4][Qt] (zeros at
 * the dropped positions and past Q), P = the channel's planes [kd][Fp]; A = [kd][kh][ng][4][3]
 * vector accumulators (ng = ⌈kw/3⌉ groups of up to 3 dx taps) */
__attribute__((target("avx2,fma")))
static void dw_plane(v8* A, const float* G, const float* P, int kd, int kh, int kw, const Flat* f) {
    const int ng = (kw + 2) / 3;
    const long Qd = round_up(f->Q, 8), gs = f->Qt;
    for (long c0 = 0; c0 < Qd; c0 += DW_CHUNK) {
        const long c1 = c0 + DW_CHUNK < Qd ? c0 + DW_CHUNK : Qd;
        v8* a = A;
        for (int dz = 0; dz < kd; dz++)
            for (int dy = 0; dy < kh; dy++)
                for (int gi = 0; gi < ng; gi++, a += OB * 3) {
                    /* with fewer than 3 taps left the unused p1 / p2 lanes read up to 2 floats
                     * further: inside the plane's slack (Flat.Fp) */
                    const float* p = P + (long)dz * f->Fp + dy * f->Lq + 3 * gi;
                    v8 a00 = a[0], a01 = a[1], a02 = a[2], a10 = a[3], a11 = a[4], a12 = a[5];
                    v8 a20 = a[6], a21 = a[7], a22 = a[8], a30 = a[9], a31 = a[10], a32 = a[11];
                    for (long q = c0; q < c1; q += 8) {
                        const v8 g0 = *(const v8u*)(G + q), g1 = *(const v8u*)(G + gs + q);
                        const v8 g2 = *(const v8u*)(G + 2 * gs + q), g3 = *(const v8u*)(G + 3 * gs + q);
                        const v8 p0 = *(const v8u*)(p + q), p1 = *(const v8u*)(p + q + 1);
                        const v8 p2 = *(const v8u*)(p + q + 2);
                        a00 += g0 * p0; a10 += g1 * p0; a20 += g2 * p0; a30 += g3 * p0;
                        a01 += g0 * p1; a11 += g1 * p1; a21 += g2 * p1; a31 += g3 * p1;
                        a02 += g0 * p2; a12 += g1 * p2; a22 += g2 * p2; a32 += g3 * p2;
                    }
                    a[0] = a00; a[1] = a01; a[2] = a02; a[3] = a10; a[4] = a11; a[5] = a12;
                    a[6] = a20; a[7] = a21; a[8] = a22; a[9] = a30; a[10] = a31; a[11] = a32;
                }
    }
}
#endif

void conv3d_direct(float* out, const float* in, const float* W, int flip, const float* bias,
                   int B, int Cin, int Cout, int D, int H, int Wd, int kd, int kh, int kw,
                   void* ws) {
#if defined(__x86_64__) && defined(__GNUC__)
    const long kvol = (long)kd * kh * kw, Cop = round_up(Cout, OB), S = (long)D * H * Wd;
    const Flat f = flat(H, Wd, kh, kw);
    float* Wt = ws;
    float* slabs = (float*)((char*)ws + ALIGN64((size_t)Cop * Cin * kvol * sizeof(float)));
    const size_t sstride = ALIGN64((size_t)Cin * kd * f.Fp * sizeof(float)) / sizeof(float);
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
            for (int i = 0; i < Cin; i++)
                fill_planes(P + (long)i * kd * f.Fp, in + (b * Cin + i) * S, D, H, Wd, kd, kh, kw, z, &f);
            plane(out + b * Cout * S + z * H * Wd, S, P, Wt, bias, Cin, Cout, Wd, kd, kh, kw, &f);
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
    const Flat f = flat(H, Wd, kh, kw);
    const size_t slot = dw_slot_bytes(H, Wd, kd, kh, kw), nv = dw_vecs(kd, kh, kw);
    const long nob = round_up(Co, OB) / OB;
    #pragma omp parallel
    {
        char* my = (char*)ws + (size_t)thread_id() * slot;
        float* P = (float*)my;
        float* G = P + (size_t)kd * f.Fp;
        v8* A = (v8*)(my + dw_planes_bytes(H, Wd, kd, kh, kw));
        double* acc = (double*)((char*)A + ALIGN64(sizeof(float) * 8 * nv));
        #pragma omp for schedule(dynamic, 1)
        for (long t = 0; t < nob * Ci; t++) {
            const int ob = (int)(t / Ci), i = (int)(t % Ci);
            memset(acc, 0, sizeof(double) * OB * kvol);
            memset(A, 0, sizeof(v8) * nv);
            memset(G, 0, sizeof(float) * OB * f.Qt);   /* dropped positions stay zero */
            long run = 0;   /* voxels summed in A since its last reduction */
            for (long b = 0; b < B; b++)
                for (long z = 0; z < D; z++) {
                    fill_planes(P, in + (b * Ci + i) * S, D, H, Wd, kd, kh, kw, z, &f);
                    for (int r = 0; r < OB; r++) {
                        const int o = ob * OB + r;
                        if (o >= Co) continue;
                        const float* src = dout + ((b * Co + o) * D + z) * H * Wd;
                        for (int y = 0; y < H; y++)
                            memcpy(G + r * f.Qt + y * f.Lq, src + (long)y * Wd, sizeof(float) * Wd);
                    }
                    dw_plane(A, G, P, kd, kh, kw, &f);
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
                                        float u[8];
                                        memcpy(u, &a[r * 3 + j], sizeof u);
                                        acc[r * kvol + (dz * kh + dy) * kw + dx0 + j] +=
                                            ((u[0] + u[1]) + (u[2] + u[3])) + ((u[4] + u[5]) + (u[6] + u[7]));
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
