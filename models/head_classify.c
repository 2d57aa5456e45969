/* models/head_classify.c — the classification head (head.h): pool -> [BatchNorm1d without
 * affine] -> Linear -> ReLU -> Linear (kind mlp) or -> Linear (kind linear). Logits out;
 * the loss (cls_loss_*) is the caller's. */
#include "head.h"
#include "../engine/check.h"

#define SHAPE(...) ((const int[]){__VA_ARGS__})
#define NDIM(...) ((int)(sizeof((int[]){__VA_ARGS__}) / sizeof(int)))
#define PARAM(name, init, trainable, ...) head_param(h, name, init, trainable, NDIM(__VA_ARGS__), SHAPE(__VA_ARGS__))

void head_classify_build(Head* h) {
    HeadClassify* c = &h->cls;
    const HeadConfig* k = &h->cfg;
    int D = h->dim, C = k->num_classes;
    if (k->pool == HEAD_POOL_CLS) { c->t0 = 0; c->n = 1; }      /* cls is token 0 */
    else { c->t0 = h->t0; c->n = h->P; }                         /* patch tokens only */
    c->run_mean = c->run_var = c->fc1_w = c->fc1_b = -1;
    if (k->batchnorm) {
        c->run_mean = PARAM("head.bn.running_mean", HEAD_INIT_ZERO, 0, D);
        c->run_var = PARAM("head.bn.running_var", HEAD_INIT_ONE, 0, D);
    }
    if (k->kind == HEAD_KIND_MLP) {
        c->fc1_w = PARAM("head.fc1.weight", HEAD_INIT_TRUNC02, 1, k->hidden, D);
        c->fc1_b = PARAM("head.fc1.bias", HEAD_INIT_ZERO, 1, k->hidden);
        c->fc2_w = PARAM("head.fc2.weight", HEAD_INIT_TRUNC02, 1, C, k->hidden);
        c->fc2_b = PARAM("head.fc2.bias", HEAD_INIT_ZERO, 1, C);
    } else {
        c->fc2_w = PARAM("head.fc.weight", HEAD_INIT_TRUNC02, 1, C, D);
        c->fc2_b = PARAM("head.fc.bias", HEAD_INIT_ZERO, 1, C);
    }
}

void head_classify_carve(Head* h, HeadCarver* cv) {
    HeadClassify* c = &h->cls;
    long mb = h->max_batch, D = h->dim, hid = h->cfg.kind == HEAD_KIND_MLP ? h->cfg.hidden : 0;
    long wide = D > hid ? D : hid;
    c->pooled = head_carve(cv, mb * D);
    c->bn_out = c->bn_mean = c->bn_rstd = NULL;
    if (h->cfg.batchnorm) {
        c->bn_out = head_carve(cv, mb * D);
        c->bn_mean = head_carve(cv, D);
        c->bn_rstd = head_carve(cv, D);
    }
    c->h1 = c->a1 = NULL;
    if (hid) { c->h1 = head_carve(cv, mb * hid); c->a1 = head_carve(cv, mb * hid); }
    c->logits = head_carve(cv, mb * h->cfg.num_classes);
    c->d_a = head_carve(cv, mb * wide);
    c->d_b = head_carve(cv, mb * wide);
}

void head_classify_forward(Head* h, const Vit* m, int B) {
    HeadClassify* c = &h->cls;
    Ctx* x = h->ctx;
    int D = h->dim, C = h->cfg.num_classes, hid = h->cfg.hidden;
    meanpool_forward(x, c->pooled, m->out, B, h->T, D, c->t0, c->n);
    const float* f = c->pooled;
    if (h->cfg.batchnorm) {
        CHECK(!h->training || B > 1, "head.batchnorm in training needs a batch of at least 2 (got %d)", B);
        batchnorm_forward(x, c->bn_out, c->bn_mean, c->bn_rstd, h->w + c->run_mean, h->w + c->run_var, f,
                          NULL, NULL, B, D, 1, h->cfg.bn_eps, h->cfg.bn_momentum, h->training);
        f = c->bn_out;
    }
    if (h->cfg.kind == HEAD_KIND_MLP) {
        linear_forward(x, c->h1, f, h->w + c->fc1_w, h->w + c->fc1_b, B, D, hid);
        leaky_relu_forward(x, c->a1, c->h1, 0.0f, (long)B * hid);
        linear_forward(x, c->logits, c->a1, h->w + c->fc2_w, h->w + c->fc2_b, B, hid, C);
    } else {
        linear_forward(x, c->logits, f, h->w + c->fc2_w, h->w + c->fc2_b, B, D, C);
    }
}

void head_classify_backward(Head* h, const float* dlogits, float* d_tokens) {
    HeadClassify* c = &h->cls;
    Ctx* x = h->ctx;
    int B = h->B, D = h->dim, C = h->cfg.num_classes, hid = h->cfg.hidden;
    const float* f = h->cfg.batchnorm ? c->bn_out : c->pooled;
    if (h->cfg.kind == HEAD_KIND_MLP) {
        linear_backward(x, c->d_a, h->g + c->fc2_w, h->g + c->fc2_b, dlogits, c->a1, h->w + c->fc2_w, B, hid, C);
        leaky_relu_backward(x, c->d_b, c->d_a, c->h1, 0.0f, (long)B * hid);
        linear_backward(x, c->d_a, h->g + c->fc1_w, h->g + c->fc1_b, c->d_b, f, h->w + c->fc1_w, B, D, hid);
    } else {
        linear_backward(x, c->d_a, h->g + c->fc2_w, h->g + c->fc2_b, dlogits, f, h->w + c->fc2_w, B, D, C);
    }
    const float* d = c->d_a;
    if (h->cfg.batchnorm) {
        batchnorm_backward(x, c->d_b, NULL, NULL, c->d_a, c->pooled, NULL, c->bn_mean, c->bn_rstd, B, D, 1,
                           h->training);
        d = c->d_b;
    }
    meanpool_backward(x, d_tokens, d, B, h->T, D, c->t0, c->n);
}
