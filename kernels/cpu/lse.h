/* kernels/cpu/lse.h — log-sum-exp of one row of logits (internal, header only), shared by
 * crossentropy.c and losses.c: the row max m is subtracted before exp (no overflow), the sum
 * is in double in index order. */
#ifndef VITA_CPU_LSE_H
#define VITA_CPU_LSE_H

#include <math.h>

/* lse of one row, computed in double from the float logits */
static inline double row_lse(const float* x, int V) {
    float m = x[0];
    for (int j = 1; j < V; j++) m = x[j] > m ? x[j] : m;
    double s = 0.0;
    for (int j = 0; j < V; j++) s += exp((double)x[j] - m);
    return m + log(s);
}

#endif
