/* engine/schedule.c — the learning-rate schedule (warmup + cosine, per step) and the
 * convergence summary of a validation curve (SPEC.md §4). Pure functions; see train.h. */
#include "train.h"

#include <math.h>
#include <string.h>

double train_lr(double lr, double min_lr, double warmup_epochs, int epochs, long steps_per_epoch,
                long step) {
    if (steps_per_epoch < 1) steps_per_epoch = 1;
    double f = (double)step / (double)steps_per_epoch;
    if (warmup_epochs > 0 && f < warmup_epochs) return lr * f / warmup_epochs;
    double span = (double)epochs - warmup_epochs;
    if (span <= 0) return lr;
    double t = (f - warmup_epochs) / span;
    if (t > 1) t = 1;
    if (t < 0) t = 0;
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + cos(M_PI * t));
}

int train_metric_higher_is_better(const char* name) {
    static const char* lower[] = {"loss", "mae", "mse", "rmse", "hd", "hd95", "hausdorff",
                                  "energy", "error", "dist"};
    for (size_t i = 0; i < sizeof lower / sizeof lower[0]; i++)
        if (strstr(name, lower[i])) return 0;
    return 1;
}

int train_best_epoch(const double* curve, int n, int higher) {
    int best = -1;
    for (int e = 0; e < n; e++) {
        double v = curve[e];
        if (v != v) continue;
        if (best < 0 || (higher ? v > curve[best] : v < curve[best])) best = e;
    }
    return best;
}

double train_epochs_to(const double* curve, int n, int higher, double frac) {
    if (n < 1 || curve[0] != curve[0]) return -1;
    int b = train_best_epoch(curve, n, higher);
    double s = higher ? 1.0 : -1.0;
    double gain = s * (curve[b] - curve[0]);
    if (!(gain > 0)) return 0;
    for (int e = 0; e < n; e++) {
        double v = curve[e];
        if (v != v) continue;
        if (s * (v - curve[0]) >= frac * gain) return e;
    }
    return b;   /* unreachable: the best epoch satisfies the test */
}

double train_auc_curve(const double* curve, int n, int higher) {
    if (n < 2 || curve[0] != curve[0]) return NAN;
    int b = train_best_epoch(curve, n, higher);
    double gain = curve[b] - curve[0];
    if (!(higher ? gain > 0 : gain < 0)) return 0;
    double prev = 0, area = 0;
    for (int e = 1; e < n; e++) {
        double u = curve[e] == curve[e] ? (curve[e] - curve[0]) / gain : prev;
        area += 0.5 * (prev + u);
        prev = u;
    }
    return area / (n - 1);
}
