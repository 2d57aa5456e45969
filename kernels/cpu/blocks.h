/* kernels/cpu/blocks.h — the block partition shared by conv3d.c and convT.c (internal,
 * header only). Both ops cut each image [C, D, H, W] into blocks of rb (z, y) rows, give the
 * blocks to OpenMP threads (one workspace slot per thread), and reduce the per-block dW
 * partials in block order in double, a wave of partials at a time. See conv3d.c for why.
 * mmd.c uses only the thread helpers and ALIGN64.
 */
#ifndef VITA_CPU_BLOCKS_H
#define VITA_CPU_BLOCKS_H

#include <stddef.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define PART_BYTES ((size_t)4 << 20)      /* dW partials held at once (at least one per thread) */
#define ALIGN64(n) (((n) + 63) & ~(size_t)63)

static inline int max_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}
static inline int thread_id(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* rows per block: a [K, rows*W] float matrix stays within `bytes` (at least one row, at most
 * all D*H) */
static inline long block_rows(size_t bytes, long K, int D, int H, int Wd) {
    long r = (long)(bytes / ((size_t)K * Wd * sizeof(float)));
    if (r < 1) r = 1;
    if (r > (long)D * H) r = (long)D * H;
    return r;
}

/* blocks per wave of dW partials of nW floats each: PART_BYTES worth, at least one per thread,
 * at most ntask */
static inline long part_wave(long nW, int nth, long ntask) {
    long wave = (long)(PART_BYTES / ((size_t)nW * sizeof(float)));
    if (wave < nth) wave = nth;
    if (wave > ntask) wave = ntask;
    return wave;
}

/* dbias[o] += Σ_b Σ_s dout[b, o, s] over S values per channel, in double, fixed order */
static inline void bias_grad(float* dbias, const float* dout, int B, int Co, long S) {
    #pragma omp parallel for schedule(static)
    for (int o = 0; o < Co; o++) {
        double a = 0.0;
        for (int b = 0; b < B; b++) {
            const float* g = dout + ((long)b * Co + o) * S;
            for (long s = 0; s < S; s++) a += g[s];
        }
        dbias[o] += (float)a;
    }
}

/* inside a parallel region: acc[e] += the np partials part[j * nW + e], j in block order
 * (whatever the wave size); ends with the worksharing barrier */
static inline void add_parts(double* acc, const float* part, long nW, long np) {
    #pragma omp for schedule(static)
    for (long e = 0; e < nW; e++) {
        double a = acc[e];
        for (long j = 0; j < np; j++) a += part[j * nW + e];
        acc[e] = a;
    }
}

/* dW[e] += (float)acc[e]: the summed partials, one fp32 rounding */
static inline void add_acc(float* dW, const double* acc, long nW) {
    #pragma omp parallel for schedule(static)
    for (long e = 0; e < nW; e++) dW[e] += (float)acc[e];
}

#endif
