/* bench/mmd.c — the MMD² estimator (engine/mmd.c) on the CPU backend, timed, at one size; the
 * same two-sample MMD² as bench/mmd_peer.py computes in PyTorch with the full-matrix
 * formulation of alibi-detect's PyTorch backend.
 *
 * Data: X, Y [n, d] from the engine's splitmix64 (rng_stream(seed, 1) and (seed, 2)):
 * X ~ N(0, 1), Y ~ 1.05 N(0, 1) + 0.1 elementwise, so MMD² is clearly non-zero. --write FILE
 * stores X then Y as raw little-endian float32 for the peer, so both see the same numbers.
 * Bandwidth: the median rule (seeded subsample of 4096 pooled rows) times --scales; the σ's are
 * printed so the peer uses the very same ones.
 * Time: wall time of mmd_compute with the bandwidth fixed beforehand (every estimator of one
 * fused pass: mmd2_u, mmd2_b, SEs, linear, energy, cosine ...), the best of --repeats runs;
 * the median-rule bandwidth is timed separately (an alignment run computes it once).
 * Memory: peak process RSS (getrusage), and the peak bytes vita holds on the heap during the
 * computation (inputs included) — counted by wrapping malloc & co. below, because the ops'
 * workspace and any scratch of mmd_compute are allocated inside the library.
 * --json prints one JSON line at the end. */
#include "../engine/check.h"
#include "../engine/mmd.h"
#include "../engine/rng.h"

#include <errno.h>
#include <malloc.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

/* ---- heap accounting: glibc supports replacing malloc & co. in the executable; these pass
 * through to glibc's own allocator and count usable bytes, so every allocation of the process
 * (vita, OpenBLAS, OpenMP) is seen. ---------------------------------------------------------- */
extern void* __libc_malloc(size_t);
extern void* __libc_calloc(size_t, size_t);
extern void* __libc_realloc(void*, size_t);
extern void* __libc_memalign(size_t, size_t);
extern void __libc_free(void*);

static atomic_long heap_now, heap_peak;

static void heap_add(long b) {
    long now = atomic_fetch_add(&heap_now, b) + b;
    long pk = atomic_load(&heap_peak);
    while (now > pk && !atomic_compare_exchange_weak(&heap_peak, &pk, now)) {}
}
static void* counted(void* p) {
    if (p) heap_add((long)malloc_usable_size(p));
    return p;
}
void* malloc(size_t n) { return counted(__libc_malloc(n)); }
void* calloc(size_t n, size_t s) { return counted(__libc_calloc(n, s)); }
void free(void* p) {
    if (p) heap_add(-(long)malloc_usable_size(p));
    __libc_free(p);
}
void* realloc(void* p, size_t n) {
    long old = p ? (long)malloc_usable_size(p) : 0;
    void* q = __libc_realloc(p, n);
    if (q || n == 0) heap_add(-old);   /* realloc(p, 0) frees p */
    return counted(q);
}
void* memalign(size_t a, size_t n) { return counted(__libc_memalign(a, n)); }
void* aligned_alloc(size_t a, size_t n) { return counted(__libc_memalign(a, n)); }
int posix_memalign(void** out, size_t a, size_t n) {
    if (a < sizeof(void*) || (a & (a - 1))) return EINVAL;
    void* p = counted(__libc_memalign(a, n));
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

int main(int argc, char** argv) {
    int n = 1024, d = 768, threads = 2, repeats = 1, json = 0;
    unsigned long long seed = 1;
    const char* write = NULL;
    MmdConfig cfg;
    mmd_config_default(&cfg);
    cfg.n_scales = 5;
    const double sc[5] = {0.25, 0.5, 1, 2, 4};
    for (int s = 0; s < 5; s++) cfg.scales[s] = sc[s];
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--n") && i + 1 < argc) n = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--d") && i + 1 < argc) d = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--repeats") && i + 1 < argc) repeats = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc) seed = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--write") && i + 1 < argc) write = argv[++i];
        else if (!strcmp(argv[i], "--json")) json = 1;
        else {
            fprintf(stderr, "usage: mmd [--n N] [--d D] [--threads T] [--repeats R] [--seed S] "
                    "[--write FILE] [--json]\n");
            return 1;
        }
    }
    if (n < 2 || d < 1 || repeats < 1) USER_ERROR("--n >= 2, --d >= 1, --repeats >= 1");

    size_t bytes = sizeof(float) * (size_t)n * d;
    float* hx = xmalloc(bytes);
    float* hy = xmalloc(bytes);
    Rng rx = rng_stream(seed, 1), ry = rng_stream(seed, 2);
    for (size_t i = 0; i < (size_t)n * d; i++) hx[i] = (float)rng_normal(&rx);
    for (size_t i = 0; i < (size_t)n * d; i++) hy[i] = (float)(1.05 * rng_normal(&ry) + 0.1);
    if (write) {
        FILE* f = fopen(write, "wb");
        CHECK_ERRNO(f != NULL, "cannot write the peer's data file");
        CHECK_ERRNO(fwrite(hx, 1, bytes, f) == bytes && fwrite(hy, 1, bytes, f) == bytes,
                    "writing the peer's data file");
        CHECK_ERRNO(fclose(f) == 0, "closing the peer's data file");
    }

    Ctx c;
    if (ctx_open(&c, "cpu", threads, 1)) return 1;
    long heap0 = atomic_load(&heap_now);   /* host arrays + runtime before vita's own */
    atomic_store(&heap_peak, heap0);
    float* X = dev_alloc(&c, bytes);
    float* Y = dev_alloc(&c, bytes);
    copy_h2d(&c, X, hx, bytes);
    copy_h2d(&c, Y, hy, bytes);
    MmdResult r;
    char err[512];
    /* The bandwidth is fixed once, as an alignment run does at epoch 0 (and as the peer gets
     * it): the median rule is timed on its own, the comparison times the MMD itself. */
    double tb = now_s();
    int used = 0;
    double sigma = mmd_bandwidth(&c, X, Y, n, n, d, &cfg, &used);
    double t_bw = now_s() - tb;
    int rule = cfg.bandwidth_rule;
    cfg.bandwidth_rule = MMD_BW_FIXED;
    cfg.sigma = sigma;
    double best = 1e300;
    for (int k = 0; k < repeats; k++) {
        double t0 = now_s();
        if (mmd_compute(&c, X, Y, n, n, d, &cfg, &r, err, sizeof err)) USER_ERROR("mmd: %s", err);
        double dt = now_s() - t0;
        if (dt < best) best = dt;
    }
    r.rule = rule;
    r.median_n = used;
    long vita_peak = atomic_load(&heap_peak) - heap0;
    struct rusage ru;
    CHECK_ERRNO(getrusage(RUSAGE_SELF, &ru) == 0, "getrusage");
    printf("vita mmd n=m=%d d=%d threads %d: %.3f s (best of %d; median bandwidth %.3f s more), "
           "mmd2_u %.9g, sigma_base %.6g, heap %.1f MiB, peak RSS %.1f MiB\n", n, d, c.threads,
           best, repeats, t_bw, r.value[EST_MMD2_U], r.sigma_base, vita_peak / 1048576.0,
           ru.ru_maxrss / 1024.0);
    if (json) {
        printf("{\"impl\":\"vita\",\"n\":%d,\"m\":%d,\"d\":%d,\"threads\":%d,\"repeats\":%d,"
               "\"seconds\":%.6f,\"bandwidth_seconds\":%.6f,\"mmd2_u\":%.12g,\"mmd2_b\":%.12g,\"sigma_base\":%.12g,\"sigmas\":[",
               n, n, d, c.threads, repeats, best, t_bw, r.value[EST_MMD2_U], r.value[EST_MMD2_B],
               r.sigma_base);
        for (int s = 0; s < r.S; s++) printf("%s%.12g", s ? "," : "", r.sigmas[s]);
        printf("],\"median_n\":%d,\"heap_bytes\":%ld,\"input_bytes\":%zu,\"peak_rss\":%ld}\n",
               r.median_n, vita_peak, 2 * bytes, ru.ru_maxrss * 1024L);
    }
    dev_free(&c, X);
    dev_free(&c, Y);
    ctx_close(&c);
    free(hx);
    free(hy);
    return 0;
}
