/* tests/oracle_io.h — the C tests' access to the oracle files (safetensors written by the
 * scripts in tests/oracle), header only: where they are, running a missing one's script,
 * loading a named tensor as floats or a hi + lo pair as doubles, labels as int32, and the
 * NMSE against a float reference.
 */
#ifndef VITA_ORACLE_IO_H
#define VITA_ORACLE_IO_H

#include "testing.h"
#include "../engine/safetensors.h"

/* $VITA_ORACLE_DIR, or build/oracle */
static inline const char* oracle_dir(void) {
    const char* d = getenv("VITA_ORACLE_DIR");
    return d && *d ? d : "build/oracle";
}

/* path = <oracle_dir>/<file>; when it is not readable, runs `python3 <script> <oracle_dir>`
 * first (a failure is only reported: opening the file is the caller's check) */
static inline void oracle_ensure(char* path, size_t cap, const char* file, const char* script) {
    char cmd[1024];
    snprintf(path, cap, "%s/%s", oracle_dir(), file);
    if (access(path, R_OK) != 0) {
        snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s '%s'", script, oracle_dir());
        printf("(%s absent: running %s)\n", path, cmd);
        fflush(stdout);
        if (system(cmd) != 0) printf("(oracle script failed)\n");
    }
}

/* tensor `name` as a malloc'd float array, or NULL when absent; *n = its element count and
 * *tp = its entry (either may be NULL) */
static inline float* load_tt(const StFile* f, const char* name, long* n, const StTensor** tp) {
    const StTensor* t = st_find(f, name);
    if (!t) return NULL;
    float* x = malloc(sizeof(float) * (t->numel ? t->numel : 1));
    st_read_f32(f, t, x);
    if (n) *n = t->numel;
    if (tp) *tp = t;
    return x;
}
static inline float* load_t(const StFile* f, const char* name, long* n) {
    return load_tt(f, name, n, NULL);
}

/* "<base>_hi" + "<base>_lo" (float pairs written by the oracle) -> a t_dnew double array, or
 * NULL when either is absent or their sizes differ; a non-finite hi is taken as is */
static inline double* load_hilo(const StFile* f, const char* base, long* n) {
    char a[128], b[128];
    snprintf(a, sizeof a, "%s_hi", base);
    snprintf(b, sizeof b, "%s_lo", base);
    long n1 = 0, n2 = 0;
    float *hi = load_t(f, a, &n1), *lo = load_t(f, b, &n2);
    double* x = NULL;
    if (hi && lo && n1 == n2) {
        x = t_dnew(n1);
        for (long i = 0; i < n1; i++) x[i] = isfinite(hi[i]) ? (double)hi[i] + lo[i] : (double)hi[i];
        if (n) *n = n1;
    }
    free(hi); free(lo);
    return x;
}

/* labels stored as floats -> int32 (calloc'd) */
static inline int32_t* to_i32(const float* v, long n) {
    int32_t* y = calloc(n ? n : 1, sizeof *y);
    for (long i = 0; i < n; i++) y[i] = (int32_t)v[i];
    return y;
}

/* NMSE of a against the float reference ref (NaN when a has a NaN) */
static inline double nmse_ref(const float* a, const float* ref, long n) {
    double num = 0, den = 0;
    for (long i = 0; i < n; i++) {
        double d = (double)a[i] - ref[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
    }
    return num != num ? NAN : num / (den > 1e-30 ? den : 1e-30);
}

#endif
