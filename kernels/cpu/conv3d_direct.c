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
 * up to DW_NI input channels), which owns its sums (no partials reduced across threads). Per
 * plane, the 4 dout planes are copied once to the thread's slot and each input channel's kd
 * padded planes in turn (copying per single channel cost as much as the AVX-512 FMAs); in
 * chunks of DW_CHUNK positions (L1-sized), for each (dz, dy) and group of up to 3 dx taps, 12
 * vector accumulators (4 o x 3 dx) are loaded, swept over the chunk (7 loads feed 12 FMAs) and
 * stored; every DW_RUN voxels the lanes are summed in a fixed tree into double sums.
 * Every output element / gradient sum is computed by one thread in an order fixed by the
 * shape: the bits do not depend on the thread count (they do depend on the instruction set:
 * AVX-512 (16-float vectors, used where the CPU has it) and AVX2 (8) group the lanes of the
 * weight-gradient sums differently). The kernels are written once, for both vector widths, in
 * conv3d_direct_body.h.
 */
#include "cpu.h"
#include "blocks.h"

#include <string.h>

#define OB 4          /* output channels per register tile */
#define XT 32         /* positions are computed to a multiple of this: two vectors of 16 (AVX-512)
                         or two tiles of two vectors of 8 (AVX2) */
#define DW_CHUNK 512  /* flat positions per weight-gradient sweep (L1: 4 + 9 rows of 2 KB) */
#define DW_RUN 4096   /* voxels per fp32 run of the weight gradient's lane sums */
#define DW_NI 8       /* input channels per weight-gradient task (its dout planes copied once) */

int conv3d_direct_available(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    static int avail = -1;   /* idempotent: a race only repeats the same answer */
    if (avail < 0) {
        __builtin_cpu_init();
        avail = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma") ? 2
              : __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? 1 : 0;
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
    f.Fp = round_up((long)(H + kh - 1) * f.Lq + XT + kw + 18, 16);
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
    return dw_planes_bytes(H, Wd, kd, kh, kw) + ALIGN64(sizeof(float) * 16 * DW_NI * dw_vecs(kd, kh, kw)) +
           ALIGN64(sizeof(double) * DW_NI * OB * kd * kh * kw);
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
typedef float v8u __attribute__((vector_size(32), aligned(4)));
typedef float v16 __attribute__((vector_size(64)));
typedef float v16u __attribute__((vector_size(64), aligned(4)));

#define VW 8
#define VEC v8
#define VECU v8u
#define TARGET "avx2,fma"
#define SFX avx2
#include "conv3d_direct_body.h"
#undef VW
#undef VEC
#undef VECU
#undef TARGET
#undef SFX

#define VW 16
#define VEC v16
#define VECU v16u
#define TARGET "avx512f,fma"
#define SFX avx512
#include "conv3d_direct_body.h"
#undef VW
#undef VEC
#undef VECU
#undef TARGET
#undef SFX

/* the n lanes of a vector summed pairwise in rounds (a fixed tree) */
static float lane_sum(float* u, int n) {
    for (; n > 1; n /= 2)
        for (int k = 0; k < n / 2; k++) u[k] = u[2 * k] + u[2 * k + 1];
    return u[0];
}
#endif

void conv3d_direct(int isa, float* out, const float* in, const float* W, int flip,
                   const float* bias, int B, int Cin, int Cout, int D, int H, int Wd, int kd,
                   int kh, int kw, void* ws) {
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
            float* o = out + b * Cout * S + z * H * Wd;
            if (isa == 2) plane_avx512(o, S, P, Wt, bias, Cin, Cout, Wd, kd, kh, kw, &f);
            else plane_avx2(o, S, P, Wt, bias, Cin, Cout, Wd, kd, kh, kw, &f);
        }
    }
#else
    (void)isa; (void)out; (void)in; (void)W; (void)flip; (void)bias; (void)B; (void)Cin; (void)Cout; (void)D;
    (void)H; (void)Wd; (void)kd; (void)kh; (void)kw; (void)ws;
#endif
}

void conv3d_direct_dw(int isa, float* dW, const float* dout, const float* in, int B, int Ci,
                      int Co, int D, int H, int Wd, int kd, int kh, int kw, void* ws) {
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
        const int vw = isa == 2 ? 16 : 8;
        float* A = (float*)(my + dw_planes_bytes(H, Wd, kd, kh, kw));
        double* acc = (double*)((char*)A + ALIGN64(sizeof(float) * 16 * DW_NI * nv));
        const long nib = (Ci + DW_NI - 1) / DW_NI;
        #pragma omp for schedule(dynamic, 1)
        for (long t = 0; t < nob * nib; t++) {
            const int ob = (int)(t / nib), i0 = (int)(t % nib) * DW_NI;
            const int ni = Ci - i0 < DW_NI ? Ci - i0 : DW_NI;
            memset(acc, 0, sizeof(double) * DW_NI * OB * kvol);
            memset(A, 0, sizeof(float) * vw * DW_NI * nv);
            memset(G, 0, sizeof(float) * OB * f.Qt);   /* dropped positions stay zero */
            long run = 0;   /* voxels summed in A since its last reduction */
            for (long b = 0; b < B; b++)
                for (long z = 0; z < D; z++) {
                    for (int r = 0; r < OB; r++) {
                        const int o = ob * OB + r;
                        if (o >= Co) continue;
                        const float* src = dout + ((b * Co + o) * D + z) * H * Wd;
                        for (int y = 0; y < H; y++)
                            memcpy(G + r * f.Qt + y * f.Lq, src + (long)y * Wd, sizeof(float) * Wd);
                    }
                    for (int ii = 0; ii < ni; ii++) {
                        fill_planes(P, in + (b * Ci + i0 + ii) * S, D, H, Wd, kd, kh, kw, z, &f);
                        float* Ai = A + (size_t)ii * vw * nv;
                        if (isa == 2) dw_plane_avx512(Ai, G, P, kd, kh, kw, &f);
                        else dw_plane_avx2(Ai, G, P, kd, kh, kw, &f);
                    }
                    /* every DW_RUN voxels and at the end, lanes summed in a fixed tree, then
                     * into the double sums (fp32 runs stay short; the points depend only on
                     * the shape) */
                    run += (long)H * Wd;
                    if (run < DW_RUN && !(b == B - 1 && z == D - 1)) continue;
                    run = 0;
                    for (int ii = 0; ii < ni; ii++) {
                        const float* a = A + (size_t)ii * vw * nv;
                        double* ac = acc + (size_t)ii * OB * kvol;
                        for (int dz = 0; dz < kd; dz++)
                            for (int dy = 0; dy < kh; dy++)
                                for (int dx0 = 0; dx0 < kw; dx0 += 3, a += OB * 3 * vw)
                                    for (int r = 0; r < OB; r++)
                                        for (int j = 0; j < 3 && dx0 + j < kw; j++) {
                                            float u[16];
                                            memcpy(u, a + (r * 3 + j) * vw, sizeof(float) * vw);
                                            ac[r * kvol + (dz * kh + dy) * kw + dx0 + j] += lane_sum(u, vw);
                                        }
                    }
                    memset(A, 0, sizeof(float) * vw * DW_NI * nv);
                }
            for (int ii = 0; ii < ni; ii++)
                for (int r = 0; r < OB; r++) {
                    const int o = ob * OB + r;
                    if (o >= Co) continue;
                    for (long k = 0; k < kvol; k++)
                        dW[((long)o * Ci + i0 + ii) * kvol + k] += (float)acc[((size_t)ii * OB + r) * kvol + k];
                }
        }
    }
#else
    (void)isa; (void)dW; (void)dout; (void)in; (void)B; (void)Ci; (void)Co; (void)D; (void)H; (void)Wd;
    (void)kd; (void)kh; (void)kw; (void)ws;
#endif
}
