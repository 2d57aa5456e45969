/* kernels/cpu/cpu.h — the CPU backend: each op of kernels/ops.h as cpu_<op>, same signature.
 * Plain fp32 C + OpenMP + OpenBLAS. This backend is the reference every other one is held
 * to, so clarity wins over the last few percent.
 * OpenBLAS: the Makefile links Debian's OpenMP build, which shares our thread pool and runs
 * single-threaded when called inside an OpenMP parallel region. Its multi-threaded sgemm
 * rounds differently with different thread counts, so ops that promise thread-count-
 * independent bits (mmd_stats, conv3d, convT) split the work into shape-determined blocks
 * and call sgemm inside the parallel region, one block per call; the others (linear,
 * attention) call it outside and are bit-identical only at a fixed thread count. */
#ifndef VITA_CPU_H
#define VITA_CPU_H

#include "../backend.h"

#define VITA_CPU_DECL(name) __typeof__(name) cpu_##name;
VITA_OPS(VITA_CPU_DECL)
#undef VITA_CPU_DECL

/* conv3d_direct.c (used by conv3d.c): the instruction set of its kernels on this CPU: 2
 * AVX-512F + FMA, 1 AVX2 + FMA, 0 none (isa arguments take 1 or 2) */
int conv3d_direct_available(void);
size_t conv3d_direct_ws_bytes(int Cin, int Cout, int H, int Wd, int kd, int kh, int kw);
void conv3d_direct(int isa, float* out, const float* in, const float* W, int flip,
                   const float* bias, int B, int Cin, int Cout, int D, int H, int Wd, int kd,
                   int kh, int kw, void* ws);
size_t conv3d_direct_dw_ws_bytes(int H, int Wd, int kd, int kh, int kw);
void conv3d_direct_dw(int isa, float* dW, const float* dout, const float* in, int B, int Ci,
                      int Co, int D, int H, int Wd, int kd, int kh, int kw, void* ws);
/* conv3d's algorithm: 1 direct with the CPU's best instruction set (default), 2 direct with
 * AVX2 even where AVX-512 exists, 0 im2col + sgemm everywhere; the op tests run each */
void cpu_conv3d_set_direct(int mode);

#endif
