/* kernels/cpu/backend.c — the CPU backend's table, memory and copies. Device memory is host
 * memory, 64-byte aligned (AVX-512 friendly), zero-filled on allocation. */
#include "cpu.h"
#include "../../engine/check.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

void openblas_set_num_threads(int);

static int cpu_open(Ctx* c) {
    if (c->threads <= 0) {
#ifdef _OPENMP
        c->threads = omp_get_max_threads();
#else
        c->threads = 1;
#endif
    }
#ifdef _OPENMP
    omp_set_num_threads(c->threads);
    /* deterministic: static schedules are used everywhere; thread count is the only knob */
#endif
    openblas_set_num_threads(c->threads);
    return 0;
}

static void cpu_close(Ctx* c) { (void)c; }

static void* cpu_alloc(Ctx* c, size_t bytes) {
    (void)c;
    size_t n = (bytes + 63) & ~(size_t)63;
    void* p = NULL;
    if (posix_memalign(&p, 64, n ? n : 64) != 0) {
        fprintf(stderr, "vita: out of host memory allocating %zu bytes for tensors "
                "(reduce data.batch or the crop size)\n", bytes);
        exit(VITA_EXIT_INTERNAL);
    }
    memset(p, 0, n);
    return p;
}

static void cpu_free(Ctx* c, void* p) { (void)c; free(p); }
static void cpu_zero(Ctx* c, void* p, size_t n) { (void)c; memset(p, 0, n); }
static void cpu_copy(Ctx* c, void* d, const void* s, size_t n) { (void)c; if (n) memmove(d, s, n); }
static void cpu_sync(Ctx* c) { (void)c; }

const Backend vita_cpu_backend = {
    .name = "cpu",
    .open = cpu_open,
    .close = cpu_close,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .zero = cpu_zero,
    .h2d = cpu_copy,
    .d2h = cpu_copy,
    .d2d = cpu_copy,
    .sync = cpu_sync,
#define VITA_CPU_ENTRY(name) .name = cpu_##name,
    VITA_OPS(VITA_CPU_ENTRY)
#undef VITA_CPU_ENTRY
};
