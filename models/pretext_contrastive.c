/* models/pretext_contrastive.c — the contrastive objective (SimCLR's NT-Xent; pretext.h).
 *
 * img holds 2B views: view 1 of images 0..B-1, then view 2. The encoder runs on all 2B
 * (vit_forward, drop-path as configured); the pooled feature (mean of the patch tokens, or the
 * cls token: meanpool over one row) goes through proj.fc1 -> GELU -> proj.fc2 -> L2
 * normalisation -> InfoNCE with positives pos(i) = B + sigma(i), pos(B + sigma(i)) = i, where
 * sigma is the identity, or with shuffle_pairs a seeded derangement (Sattolo's algorithm: a
 * uniformly random single cycle, so no image is paired with its own second view), drawn from
 * rng_stream(seed ^ PRETEXT_TAG_SHUFFLE, counter). Permuting the positive index is the same as
 * permuting the second views across the batch, without moving images.
 */
#include "pretext_internal.h"
#include "head.h"
#include "../engine/check.h"
#include "../engine/rng.h"

#include <stdio.h>
#include <string.h>

#define SHAPE(...) ((const int[]){__VA_ARGS__})
#define NDIM(...) ((int)(sizeof((int[]){__VA_ARGS__}) / sizeof(int)))
#define ADD(name, nodecay, ...) vit_param_add(p->params, &p->n_params, cap, &p->n_floats, name, 0, \
                                              nodecay, NDIM(__VA_ARGS__), SHAPE(__VA_ARGS__))

void pretext_contrastive_table(Pretext* p, int cap) {
    int D = p->enc->cfg.dim, ph = p->cfg.proj_hidden, pd = p->cfg.proj_dim;
    ADD("proj.fc1.weight", 0, ph, D);
    ADD("proj.fc1.bias", 1, ph);
    ADD("proj.fc2.weight", 0, pd, ph);
    ADD("proj.fc2.bias", 1, pd);
}

long pretext_contrastive_act_floats(const Pretext* p, int mb) {
    const Vit* e = p->enc;
    long N = 2L * mb, D = e->cfg.dim, ph = p->cfg.proj_hidden, pd = p->cfg.proj_dim;
    /* feat, d_feat [N, D]; h, a, d_h [N, ph]; z, zn, d_z [N, pd]; znorm [N]; d_tok [N, T, D] */
    return N * (2 * D + 3 * ph + 3 * pd + 1 + (long)e->T * D);
}

void pretext_contrastive_carve(Pretext* p, float* base, int mb) {
    PretextPriv* q = pretext_priv(p);
    const Vit* e = p->enc;
    long N = 2L * mb, D = e->cfg.dim, ph = p->cfg.proj_hidden, pd = p->cfg.proj_dim;
    float* c = base;
    q->feat = c;   c += N * D;
    q->d_feat = c; c += N * D;
    q->h = c;      c += N * ph;
    q->a = c;      c += N * ph;
    q->d_h = c;    c += N * ph;
    q->z = c;      c += N * pd;
    q->zn = c;     c += N * pd;
    q->d_z = c;    c += N * pd;
    q->znorm = c;  c += N;
    q->d_tok = c;  c += N * e->T * D;
    CHECK(c == base + pretext_contrastive_act_floats(p, mb), "pretext carving mismatch");
    free(q->pos_h);
    free(q->sigma_h);
    dev_free(p->ctx, q->pos);
    q->pos_h = xcalloc((size_t)N, sizeof(int32_t));
    q->sigma_h = xcalloc((size_t)mb, sizeof(int32_t));
    q->pos = dev_alloc(p->ctx, sizeof(int32_t) * (size_t)N);
}

static void draw_pairs(Pretext* p, int B, uint64_t seed, uint64_t counter) {
    PretextPriv* q = pretext_priv(p);
    int32_t* sigma = q->sigma_h;
    for (int i = 0; i < B; i++) sigma[i] = i;
    if (p->cfg.shuffle_pairs) {
        if (B < 2) USER_ERROR("pretrain.shuffle_pairs: needs a batch of at least 2 images (data.batch)");
        Rng r = rng_stream(seed ^ PRETEXT_TAG_SHUFFLE, counter);
        for (int i = B - 1; i > 0; i--) {            /* Sattolo: j < i strictly */
            int j = (int)(rng_uniform(&r) * i);
            int32_t t = sigma[i]; sigma[i] = sigma[j]; sigma[j] = t;
        }
    }
    for (int i = 0; i < B; i++) {
        q->pos_h[i] = B + sigma[i];
        q->pos_h[B + sigma[i]] = i;
    }
    copy_h2d(p->ctx, q->pos, q->pos_h, sizeof(int32_t) * 2 * (size_t)B);
}

static void pool_range(const Pretext* p, int* t0, int* n) {
    const Vit* e = p->enc;
    if (p->cfg.pool == HEAD_POOL_CLS) { *t0 = 0; *n = 1; }
    else { *t0 = e->T - e->P; *n = e->P; }
}

double pretext_contrastive_forward(Pretext* p, const float* img, int B, uint64_t seed,
                                   uint64_t counter) {
    PretextPriv* q = pretext_priv(p);
    Vit* e = p->enc;
    Ctx* c = p->ctx;
    int N = 2 * B, D = e->cfg.dim, ph = p->cfg.proj_hidden, pd = p->cfg.proj_dim, t0, n;
    if (q->fixed_B == B) copy_h2d(c, q->pos, q->pos_h, sizeof(int32_t) * 2 * (size_t)B);
    else draw_pairs(p, B, seed, counter);
    vit_forward(e, img, NULL, N);
    pool_range(p, &t0, &n);
    meanpool_forward(c, q->feat, e->out, N, e->T, D, t0, n);
    linear_forward(c, q->h, q->feat, pretext_w(p, "proj.fc1.weight"), pretext_w(p, "proj.fc1.bias"),
                   N, D, ph);
    gelu_forward(c, q->a, q->h, (long)N * ph);
    linear_forward(c, q->z, q->a, pretext_w(p, "proj.fc2.weight"), pretext_w(p, "proj.fc2.bias"),
                   N, ph, pd);
    l2norm_forward(c, q->zn, q->znorm, q->z, N, pd);
    infonce_forward(c, q->loss_d, q->zn, q->pos, N, pd, p->cfg.temperature);
    double loss;
    copy_d2h(c, &loss, q->loss_d, sizeof loss);
    return loss;
}

void pretext_contrastive_backward(Pretext* p, const float* img, float scale) {
    PretextPriv* q = pretext_priv(p);
    Vit* e = p->enc;
    Ctx* c = p->ctx;
    int N = 2 * p->B, D = e->cfg.dim, ph = p->cfg.proj_hidden, pd = p->cfg.proj_dim, t0, n;
    infonce_backward(c, q->d_z, q->zn, q->pos, N, pd, p->cfg.temperature, scale);
    l2norm_backward(c, q->d_z, q->d_z, q->zn, q->znorm, N, pd);
    linear_backward(c, q->d_h, pretext_g(p, "proj.fc2.weight"), pretext_g(p, "proj.fc2.bias"),
                    q->d_z, q->a, pretext_w(p, "proj.fc2.weight"), N, ph, pd);
    gelu_backward(c, q->d_h, q->d_h, q->h, (long)N * ph);
    linear_backward(c, q->d_feat, pretext_g(p, "proj.fc1.weight"), pretext_g(p, "proj.fc1.bias"),
                    q->d_h, q->feat, pretext_w(p, "proj.fc1.weight"), N, D, ph);
    pool_range(p, &t0, &n);
    meanpool_backward(c, q->d_tok, q->d_feat, N, e->T, D, t0, n);
    vit_backward(e, img, NULL, q->d_tok, NULL, NULL);
}
