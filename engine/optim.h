/* engine/optim.h — AdamW over one parameter buffer split into ranges, each with its own lr
 * scale (layer-wise decay) and weight decay; global grad-norm clipping.
 * Parameter, gradient, m and v buffers share one layout, so a range is (offset, numel). */
#ifndef VITA_OPTIM_H
#define VITA_OPTIM_H

#include "../kernels/ops.h"

typedef struct {
    long offset, numel;
    float lr_scale;            /* multiplies the scheduled lr (layer decay) */
    float weight_decay;        /* 0 for 1-D params, pos_embed, cls/register tokens */
    int frozen;                /* skipped: weights and moments stay bit-unchanged */
} OptRange;

typedef struct {
    Ctx* ctx;
    long n;                    /* floats in the parameter buffer */
    float *m, *v;              /* device, same layout as parameters */
    double* acc;               /* device scalar for the grad norm */
    int t;                     /* steps taken */
    float beta1, beta2, eps;
    int n_ranges;
    OptRange* r;
} AdamW;

void adamw_create(AdamW* o, Ctx* c, long n, const OptRange* ranges, int n_ranges);
void adamw_free(AdamW* o);
/* one step with the scheduled lr; returns nothing, moments and weights updated in place */
void adamw_step(AdamW* o, float* w, const float* g, float lr);
/* global L2 norm of g[0..n) (double accumulation, fixed order); acc is one device double
 * (not the context workspace, which the reduction itself may use) */
double grad_norm(Ctx* c, double* acc, const float* g, long n);
/* clips g to max_norm (torch's clip_grad_norm_: scale by max_norm / (norm + 1e-6) when
 * norm > max_norm); returns the norm before clipping. max_norm <= 0: no clipping. */
double clip_grad(Ctx* c, double* acc, float* g, long n, float max_norm);

#endif
