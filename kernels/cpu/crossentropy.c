/* kernels/cpu/crossentropy.c — softmax cross-entropy per sample.
 *
 * logits [B, V], targets int32 [B] in [0, V), losses [B]:
 *   losses[b]  = lse_b - logits[b, y_b],   lse_b = m_b + log sum_j exp(logits[b, j] - m_b)
 *   dlogits[b] = (softmax(logits[b]) - onehot(y_b)) * dlosses[b]     (overwrite)
 * The row max m_b is subtracted before exp (no overflow); sums are in double in index order,
 * one row per OpenMP iteration, so results do not depend on the thread count.
 * A target outside [0, V) is a bug upstream (labels are validated when data is loaded).
 */
#include "cpu.h"
#include "lse.h"
#include "../../engine/check.h"

#include <math.h>

static void check_targets(const int32_t* targets, int B, int V) {
    for (int b = 0; b < B; b++)
        CHECK(targets[b] >= 0 && targets[b] < V,
              "crossentropy: target %d of sample %d is outside [0, %d)", (int)targets[b], b, V);
}

void cpu_crossentropy_forward(Ctx* c, float* losses, const float* logits,
                              const int32_t* targets, int B, int V) {
    (void)c;
    check_targets(targets, B, V);
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        const float* x = logits + (size_t)b * V;
        losses[b] = (float)(row_lse(x, V) - x[targets[b]]);
    }
}

void cpu_crossentropy_backward(Ctx* c, float* dlogits, const float* logits,
                               const int32_t* targets, const float* dlosses, int B, int V) {
    (void)c;
    check_targets(targets, B, V);
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        const float* x = logits + (size_t)b * V;
        float* dx = dlogits + (size_t)b * V;
        double lse = row_lse(x, V), g = dlosses[b];
        for (int j = 0; j < V; j++) {
            double p = exp((double)x[j] - lse);
            dx[j] = (float)((p - (j == targets[b] ? 1.0 : 0.0)) * g);
        }
    }
}
