/* models/pretext_mae.c — the MAE objective (He et al. 2022; pretext.h): masked encoder,
 * light transformer decoder, MSE on the masked patches.
 *
 * Forward, for B images with P patches each, n = round(P (1 - mask_ratio)) kept:
 *   perm [B, P]  per image a seeded Fisher-Yates permutation of 0..P-1 (rng_stream(seed ^
 *                PRETEXT_TAG_MASK, counter), images in order); its first n entries are kept
 *   enc          vit_forward_masked -> enc->out [B, Tk, dim], Tk = ncls + R + n
 *   emb          decoder_embed: [B, Tk, dec_dim]
 *   dec_x        tokens_unshuffle: [cls | P patch tokens in patch order, mask_token where
 *                dropped] (registers are dropped) + decoder_pos_embed: [B, Td, dec_dim]
 *   dec          decoder blocks + decoder_norm (a vit stack whose parameters sit in p->w)
 *   pred         decoder_pred: [B, Td, Kp]; loss = mae_loss on rows 1.. (cls dropped) against
 *                the encoder's patch rows enc->patches (= patchify(img), kept by the masked
 *                forward until the next forward)
 * The backward runs the same chain in reverse; decoder_pos_embed is frozen (no gradient).
 */
#include "pretext_internal.h"
#include "../engine/check.h"
#include "../engine/rng.h"

#include <stdio.h>
#include <string.h>

static VitConfig dec_config(const Pretext* p) {
    VitConfig d = p->enc->cfg;
    d.dim = p->cfg.dec_dim;
    d.depth = p->cfg.dec_depth;
    d.heads = p->cfg.dec_heads;
    d.mlp_ratio = 4.0f;
    d.qkv_bias = 1;
    d.layerscale_init = 0;
    d.drop_path = 0;              /* MAE's decoder has no stochastic depth */
    return d;                     /* ln_eps: the encoder's (1e-6 in MAE) */
}

int pretext_mae_table_rows(const Pretext* p) {
    PretextPriv* q = pretext_priv(p);
    VitConfig d = dec_config(p);
    q->Td = p->enc->ncls + p->enc->P;
    vit_create_stack(&q->dec, p->ctx, &d, q->Td, "decoder_blocks.", "decoder_norm.");
    return q->dec.n_params;
}

#define SHAPE(...) ((const int[]){__VA_ARGS__})
#define NDIM(...) ((int)(sizeof((int[]){__VA_ARGS__}) / sizeof(int)))
#define ADD(name, nodecay, ...) vit_param_add(p->params, &p->n_params, cap, &p->n_floats, name, 0, \
                                              nodecay, NDIM(__VA_ARGS__), SHAPE(__VA_ARGS__))

void pretext_mae_table(Pretext* p, int cap) {
    PretextPriv* q = pretext_priv(p);
    const Vit* e = p->enc;
    int dd = p->cfg.dec_dim, D = e->cfg.dim;
    ADD("decoder_embed.weight", 0, dd, D);
    ADD("decoder_embed.bias", 1, dd);
    ADD("mask_token", 1, 1, 1, dd);
    VitParam* pos = ADD("decoder_pos_embed", 1, 1, q->Td, dd);
    pos->trainable = 0;
    long base = p->n_floats;      /* 16-float aligned, like every offset */
    for (int i = 0; i < q->dec.n_params; i++) {
        CHECK(p->n_params < cap, "pretext table overflow");
        VitParam* v = &p->params[p->n_params++];
        *v = q->dec.params[i];
        v->offset += base;
        v->layer_id = 0;
    }
    p->n_floats = base + q->dec.n_floats;
    ADD("decoder_pred.weight", 0, e->Kp, dd);
    ADD("decoder_pred.bias", 1, e->Kp);
    q->n_keep = pretext_mae_keep(p->cfg.mask_ratio, e->P);
}

void pretext_mae_bind(Pretext* p) {
    PretextPriv* q = pretext_priv(p);
    long base = pretext_find_param(p, "decoder_blocks.0.norm1.weight")->offset;
    vit_bind(&q->dec, p->w + base, p->g + base);
}

long pretext_mae_act_floats(const Pretext* p, int mb) {
    const PretextPriv* q = pretext_priv(p);
    const Vit* e = p->enc;
    long dd = p->cfg.dec_dim, Tk = e->ncls + e->cfg.num_registers + q->n_keep, Td = q->Td;
    /* emb, d_emb [Tk, dd]; dec_x, d_dec [Td, dd]; pred, d_pred [Td, Kp]; d_enc [Tk, dim] */
    return mb * (2 * Tk * dd + 2 * Td * dd + 2 * Td * e->Kp + Tk * e->cfg.dim);
}

void pretext_mae_carve(Pretext* p, float* base, int mb) {
    PretextPriv* q = pretext_priv(p);
    const Vit* e = p->enc;
    long dd = p->cfg.dec_dim, Tk = e->ncls + e->cfg.num_registers + q->n_keep, Td = q->Td;
    float* c = base;
    q->emb = c;    c += mb * Tk * dd;
    q->d_emb = c;  c += mb * Tk * dd;
    q->dec_x = c;  c += mb * Td * dd;
    q->d_dec = c;  c += mb * Td * dd;
    q->pred = c;   c += mb * Td * e->Kp;
    q->d_pred = c; c += mb * Td * e->Kp;
    q->d_enc = c;  c += mb * Tk * e->cfg.dim;
    CHECK(c == base + pretext_mae_act_floats(p, mb), "pretext carving mismatch");
    vit_alloc_activations(&q->dec, mb);
    free(q->perm_h);
    dev_free(p->ctx, q->perm);
    q->perm_h = xcalloc((size_t)mb * e->P, sizeof(int32_t));
    q->perm = dev_alloc(p->ctx, sizeof(int32_t) * (size_t)mb * e->P);
}

/* per image a uniform random permutation (Fisher-Yates from the top) */
static void draw_masks(PretextPriv* q, int B, int P, uint64_t seed, uint64_t counter) {
    Rng r = rng_stream(seed ^ PRETEXT_TAG_MASK, counter);
    for (int b = 0; b < B; b++) {
        int32_t* pr = q->perm_h + (long)b * P;
        for (int i = 0; i < P; i++) pr[i] = i;
        for (int i = P - 1; i > 0; i--) {
            int j = (int)(rng_uniform(&r) * (i + 1));
            int32_t t = pr[i]; pr[i] = pr[j]; pr[j] = t;
        }
    }
}

double pretext_mae_forward(Pretext* p, const float* img, int B, uint64_t seed, uint64_t counter) {
    PretextPriv* q = pretext_priv(p);
    Vit* e = p->enc;
    Ctx* c = p->ctx;
    int P = e->P, n = q->n_keep, dd = p->cfg.dec_dim, Td = q->Td, ncls = e->ncls;
    int Tk = ncls + e->cfg.num_registers + n;
    if (q->fixed_B != B) draw_masks(q, B, P, seed, counter);
    copy_h2d(c, q->perm, q->perm_h, sizeof(int32_t) * (size_t)B * P);

    vit_forward_masked(e, img, q->perm, n, B);
    linear_forward(c, q->emb, e->out, pretext_w(p, "decoder_embed.weight"),
                   pretext_w(p, "decoder_embed.bias"), B * Tk, e->cfg.dim, dd);
    tokens_unshuffle_forward(c, q->dec_x, q->emb, pretext_w(p, "mask_token"), q->perm, B, P, n,
                             dd, ncls, Tk, Tk - n);
    pos_embed_add_forward(c, q->dec_x, pretext_w(p, "decoder_pos_embed"), B, Td, dd, 0, Td, 0);
    vit_stack_forward(&q->dec, q->dec_x, B);
    linear_forward(c, q->pred, q->dec.out, pretext_w(p, "decoder_pred.weight"),
                   pretext_w(p, "decoder_pred.bias"), B * Td, dd, e->Kp);
    mae_loss_forward(c, q->loss_d, q->pred, e->patches, q->perm, B, P, n, e->Kp, Td, ncls,
                     p->cfg.norm_pix_loss);
    double loss;
    copy_d2h(c, &loss, q->loss_d, sizeof loss);
    return loss;
}

void pretext_mae_backward(Pretext* p, float scale) {
    PretextPriv* q = pretext_priv(p);
    Vit* e = p->enc;
    Ctx* c = p->ctx;
    int B = p->B, P = e->P, n = q->n_keep, dd = p->cfg.dec_dim, Td = q->Td, ncls = e->ncls;
    int Tk = ncls + e->cfg.num_registers + n;
    mae_loss_backward(c, q->d_pred, q->pred, e->patches, q->perm, B, P, n, e->Kp, Td, ncls,
                      p->cfg.norm_pix_loss, scale);
    linear_backward(c, q->d_dec, pretext_g(p, "decoder_pred.weight"),
                    pretext_g(p, "decoder_pred.bias"), q->d_pred, q->dec.out,
                    pretext_w(p, "decoder_pred.weight"), B * Td, dd, e->Kp);
    const float* d_x = vit_stack_backward(&q->dec, q->d_dec);
    tokens_unshuffle_backward(c, q->d_emb, pretext_g(p, "mask_token"), d_x, q->perm, B, P, n, dd,
                              ncls, Tk, Tk - n);
    linear_backward(c, q->d_enc, pretext_g(p, "decoder_embed.weight"),
                    pretext_g(p, "decoder_embed.bias"), q->d_emb, e->out,
                    pretext_w(p, "decoder_embed.weight"), B * Tk, e->cfg.dim, dd);
    vit_backward_masked(e, q->d_enc, q->perm);
}
