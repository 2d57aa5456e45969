/* engine/optim.c — AdamW over parameter ranges and global grad-norm clipping. The moment
 * buffers are device memory; the per-range loop runs on the host and calls the backend's
 * adamw_update for each range, so the same code drives CPU and GPU. */
#include "optim.h"
#include "check.h"

#include <math.h>
#include <string.h>

void adamw_create(AdamW* o, Ctx* c, long n, const OptRange* ranges, int n_ranges) {
    memset(o, 0, sizeof *o);
    o->ctx = c;
    o->n = n;
    o->m = dev_alloc(c, sizeof(float) * n);
    o->v = dev_alloc(c, sizeof(float) * n);
    o->acc = dev_alloc(c, sizeof(double));
    o->beta1 = 0.9f;
    o->beta2 = 0.999f;
    o->eps = 1e-8f;
    o->n_ranges = n_ranges;
    o->r = xmalloc(sizeof(OptRange) * (n_ranges ? n_ranges : 1));
    memcpy(o->r, ranges, sizeof(OptRange) * n_ranges);
    for (int i = 0; i < n_ranges; i++)
        CHECK(ranges[i].offset >= 0 && ranges[i].offset + ranges[i].numel <= n,
              "optimizer range %d [%ld, +%ld) outside the %ld-float buffer", i, ranges[i].offset,
              ranges[i].numel, n);
}

void adamw_free(AdamW* o) {
    dev_free(o->ctx, o->m);
    dev_free(o->ctx, o->v);
    dev_free(o->ctx, o->acc);
    free(o->r);
    memset(o, 0, sizeof *o);
}

void adamw_step(AdamW* o, float* w, const float* g, float lr) {
    o->t++;
    for (int i = 0; i < o->n_ranges; i++) {
        const OptRange* r = &o->r[i];
        if (r->frozen || r->numel == 0) continue;
        adamw_update(o->ctx, w + r->offset, g + r->offset, o->m + r->offset, o->v + r->offset,
                     r->numel, lr * r->lr_scale, o->beta1, o->beta2, o->eps, r->weight_decay, o->t);
    }
}

double grad_norm(Ctx* c, double* acc, const float* g, long n) {
    double s = 0;
    sumsq(c, acc, g, n);
    copy_d2h(c, &s, acc, sizeof s);
    return sqrt(s);
}

double clip_grad(Ctx* c, double* acc, float* g, long n, float max_norm) {
    double norm = grad_norm(c, acc, g, n);
    if (max_norm > 0 && norm > max_norm) scale_inplace(c, g, (float)(max_norm / (norm + 1e-6)), n);
    return norm;
}
