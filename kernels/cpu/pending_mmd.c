/* TEMPORARY: placeholders removed as the real MMD kernels land. */
#include "cpu.h"
#include <stdio.h>
#include <stdlib.h>
void cpu_mmd_stats(Ctx* c, const MmdOut* out, const float* X, const float* Y, const float* V, const MmdDims* dims) { (void)c; (void)out; (void)X; (void)Y; (void)V; (void)dims; fprintf(stderr, "mmd_stats not implemented\n"); abort(); }
void cpu_mmd_center(Ctx* c, float* Xc, float* Yc, float* mu, const float* X, const float* Y, int n, int m, int d) { (void)c; (void)Xc; (void)Yc; (void)mu; (void)X; (void)Y; (void)n; (void)m; (void)d; abort(); }
void cpu_sqdist_forward(Ctx* c, float* out, const float* A, const float* Bm, int n1, int n2, int d) { (void)c; (void)out; (void)A; (void)Bm; (void)n1; (void)n2; (void)d; abort(); }
