/* models/pretext.c — the pretraining objectives' common part (models/pretext.h): config
 * defaults and checks, the objective parameter table and its buffers, init, optimizer ranges,
 * and the forward/backward entry points that set the training mode and the RNG streams before
 * handing over to pretext_mae.c or pretext_contrastive.c.
 *
 * Init (stated in pretext.h's terms): MAE as its reference code — xavier-uniform linear
 * weights (decoder_embed, decoder blocks' qkv/proj/fc1/fc2, decoder_pred; bound
 * sqrt(6 / (fan_in + fan_out))), zero biases, LayerNorm weight 1 / bias 0, mask_token
 * normal(0, 0.02), decoder_pos_embed the fixed sin-cos embedding (cls row 0); contrastive:
 * proj.fc1/fc2 weights timm trunc-normal(0.02), zero biases. All from rng_stream(seed, 0x9E7E),
 * in table order. The encoder is initialised (or loaded) by its owner, not here.
 */
#include "pretext_internal.h"
#include "head.h"
#include "../engine/check.h"
#include "../engine/rng.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

void pretext_config_default(PretextConfig* cfg, int objective) {
    memset(cfg, 0, sizeof *cfg);
    cfg->objective = objective;
    cfg->mask_ratio = 0.75f;
    cfg->norm_pix_loss = 1;
    cfg->dec_dim = 512;
    cfg->dec_depth = 8;
    cfg->dec_heads = 16;
    cfg->temperature = 0.1f;
    cfg->proj_hidden = 2048;
    cfg->proj_dim = 128;
    cfg->pool = HEAD_POOL_MEAN;
    cfg->shuffle_pairs = 0;
}

int pretext_objective_from_name(const char* s) {
    if (!s) return -1;
    if (!strcmp(s, "mae")) return PRETEXT_MAE;
    if (!strcmp(s, "contrastive")) return PRETEXT_CONTRASTIVE;
    return -1;
}

const char* pretext_objective_name(int objective) {
    return objective == PRETEXT_MAE ? "mae" : objective == PRETEXT_CONTRASTIVE ? "contrastive" : "?";
}

int pretext_mae_keep(float mask_ratio, int P) { return (int)lround(P * (1.0 - (double)mask_ratio)); }

#define FAIL(...) do { snprintf(err, errlen, __VA_ARGS__); return 1; } while (0)

int pretext_config_check(const PretextConfig* cfg, const VitConfig* enc, char* err, size_t errlen) {
    if (enc->num_extra > 0)
        FAIL("pretrain: the encoder has %d extra tokens (model.extra_tokens); pretraining supports "
             "none: remove them for pretraining", enc->num_extra);
    if (cfg->objective == PRETEXT_MAE) {
        int P = 1;
        for (int a = 0; a < 3; a++) P *= enc->img[a] / enc->patch[a];
        if (!(cfg->mask_ratio > 0 && cfg->mask_ratio < 1))
            FAIL("pretrain.mask_ratio: must be in (0, 1) (got %g)", cfg->mask_ratio);
        int keep = pretext_mae_keep(cfg->mask_ratio, P);
        if (keep < 1 || keep >= P)
            FAIL("pretrain.mask_ratio: %g keeps %d of %d patches; it must keep at least one and "
                 "mask at least one", cfg->mask_ratio, keep, P);
        if (cfg->dec_depth < 1 || cfg->dec_depth > VIT_MAX_DEPTH)
            FAIL("pretrain.decoder.depth: must be in 1..%d (got %d)", VIT_MAX_DEPTH, cfg->dec_depth);
        if (cfg->dec_heads < 1 || cfg->dec_dim < 1 || cfg->dec_dim % cfg->dec_heads)
            FAIL("pretrain.decoder.dim = %d must be a positive multiple of pretrain.decoder.heads = %d",
                 cfg->dec_dim, cfg->dec_heads);
        if (cfg->dec_dim < 2 * enc->spatial_dims)
            FAIL("pretrain.decoder.dim = %d must be at least %d (the %dD sin-cos decoder "
                 "position embedding)", cfg->dec_dim, 2 * enc->spatial_dims, enc->spatial_dims);
        int Kp = enc->in_chans * enc->patch[0] * enc->patch[1] * enc->patch[2];
        if (cfg->norm_pix_loss && Kp < 2)
            FAIL("pretrain.norm_pix_loss: needs at least 2 pixels per patch (got %d); set it false", Kp);
    } else if (cfg->objective == PRETEXT_CONTRASTIVE) {
        if (!(cfg->temperature > 0))
            FAIL("pretrain.temperature: must be > 0 (got %g)", cfg->temperature);
        if (cfg->proj_hidden < 1) FAIL("pretrain.proj.hidden: must be >= 1 (got %d)", cfg->proj_hidden);
        if (cfg->proj_dim < 1) FAIL("pretrain.proj.dim: must be >= 1 (got %d)", cfg->proj_dim);
        if (cfg->pool != HEAD_POOL_CLS && cfg->pool != HEAD_POOL_MEAN)
            FAIL("pretrain.pool: must be cls or mean");
        if (cfg->pool == HEAD_POOL_CLS && !enc->cls_token)
            FAIL("pretrain.pool: cls needs an encoder with a cls token (model.cls_token); use mean");
    } else {
        FAIL("pretrain.objective: must be mae or contrastive");
    }
    return 0;
}

const VitParam* pretext_find_param(const Pretext* p, const char* name) {
    for (int i = 0; i < p->n_params; i++)
        if (!strcmp(p->params[i].name, name)) return &p->params[i];
    return NULL;
}

void pretext_create(Pretext* p, Ctx* c, const PretextConfig* cfg, Vit* enc) {
    char err[256];
    memset(p, 0, sizeof *p);
    if (pretext_config_check(cfg, &enc->cfg, err, sizeof err)) USER_ERROR("%s", err);
    CHECK(!enc->stack_only, "pretext on a block stack");
    p->cfg = *cfg;
    p->ctx = c;
    p->enc = enc;
    PretextPriv* q = xcalloc(1, sizeof *q);
    p->priv = q;
    int cap = 8;
    if (cfg->objective == PRETEXT_MAE) cap += pretext_mae_table_rows(p);
    p->params = xcalloc(cap, sizeof(VitParam));
    if (cfg->objective == PRETEXT_MAE) pretext_mae_table(p, cap);
    else pretext_contrastive_table(p, cap);
    p->w = dev_alloc(c, p->n_floats * sizeof(float));
    p->g = dev_alloc(c, p->n_floats * sizeof(float));
    q->loss_d = dev_alloc(c, sizeof(double));
    if (cfg->objective == PRETEXT_MAE) pretext_mae_bind(p);
}

void pretext_alloc_activations(Pretext* p, int max_batch) {
    PretextPriv* q = pretext_priv(p);
    CHECK(max_batch >= 1, "max_batch %d", max_batch);
    int mae = p->cfg.objective == PRETEXT_MAE;
    vit_alloc_activations(p->enc, mae ? max_batch : 2 * max_batch);
    long n = mae ? pretext_mae_act_floats(p, max_batch) : pretext_contrastive_act_floats(p, max_batch);
    if (q->acts) dev_free(p->ctx, q->acts);
    q->acts = dev_alloc(p->ctx, n * sizeof(float));
    if (mae) pretext_mae_carve(p, q->acts, max_batch);
    else pretext_contrastive_carve(p, q->acts, max_batch);
    p->max_batch = max_batch;
}

void pretext_init_weights(Pretext* p, uint64_t seed) {
    float* h = xcalloc(p->n_floats, sizeof(float));
    Rng r = rng_stream(seed, 0x9E7E);
    const Vit* e = p->enc;
    for (int i = 0; i < p->n_params; i++) {
        const VitParam* v = &p->params[i];
        float* t = h + v->offset;
        size_t len = strlen(v->name);
        int is_bias = len > 5 && !strcmp(v->name + len - 5, ".bias");
        if (is_bias) continue;                                        /* zero */
        if (strstr(v->name, "norm")) {                                /* LayerNorm weight */
            for (long k = 0; k < v->numel; k++) t[k] = 1.0f;
        } else if (!strcmp(v->name, "mask_token")) {
            for (long k = 0; k < v->numel; k++) t[k] = (float)(0.02 * rng_normal(&r));
        } else if (!strcmp(v->name, "decoder_pos_embed")) {
            vit_sincos_pos(t, e->cfg.spatial_dims, e->grid, e->ncls, p->cfg.dec_dim);
        } else if (p->cfg.objective == PRETEXT_MAE) {                 /* linear weight [out, in] */
            double bound = sqrt(6.0 / (v->shape[0] + v->shape[1]));
            for (long k = 0; k < v->numel; k++) t[k] = (float)(bound * (2.0 * rng_uniform(&r) - 1.0));
        } else {
            for (long k = 0; k < v->numel; k++) t[k] = (float)rng_trunc_normal(&r, 0.02, -2, 2);
        }
    }
    copy_h2d(p->ctx, p->w, h, p->n_floats * sizeof(float));
    free(h);
}

void pretext_zero_grad(Pretext* p) { dev_zero(p->ctx, p->g, p->n_floats * sizeof(float)); }

void pretext_free(Pretext* p) {
    PretextPriv* q = pretext_priv(p);
    if (q) {
        if (p->cfg.objective == PRETEXT_MAE) vit_free(&q->dec);
        dev_free(p->ctx, q->acts);
        dev_free(p->ctx, q->perm);
        dev_free(p->ctx, q->pos);
        dev_free(p->ctx, q->loss_d);
        free(q->perm_h);
        free(q->pos_h);
        free(q->sigma_h);
        free(q);
    }
    dev_free(p->ctx, p->w);
    dev_free(p->ctx, p->g);
    free(p->params);
    memset(p, 0, sizeof *p);
}

int pretext_opt_ranges(const Pretext* p, float wd, OptRange* out) {
    return vit_table_ranges(p->params, p->n_params, wd, out);
}

/* drop-path draws come from (seed, counter) too, so a loss is a function of them alone */
static double run_forward(Pretext* p, const float* img, int B, uint64_t seed, uint64_t counter,
                          int training) {
    CHECK(p->max_batch > 0 && B >= 1 && B <= p->max_batch, "pretext batch %d outside 1..%d "
          "(pretext_alloc_activations)", B, p->max_batch);
    p->enc->training = training;
    p->enc->dp_seed = seed;
    p->enc->dp_counter = counter;
    p->B = B;
    double loss = p->cfg.objective == PRETEXT_MAE
                      ? pretext_mae_forward(p, img, B, seed, counter)
                      : pretext_contrastive_forward(p, img, B, seed, counter);
    p->last_loss = loss;
    return loss;
}

double pretext_forward(Pretext* p, const float* img, int B, uint64_t seed, uint64_t counter) {
    return run_forward(p, img, B, seed, counter, 1);
}

double pretext_eval(Pretext* p, const float* img, int B, uint64_t seed, uint64_t counter) {
    return run_forward(p, img, B, seed, counter, 0);
}

void pretext_fix_draw(Pretext* p, const int32_t* idx, int B) {
    PretextPriv* q = pretext_priv(p);
    CHECK(p->max_batch > 0 && B >= 1 && B <= p->max_batch, "fixed draw batch %d", B);
    q->fixed_B = 0;
    if (!idx) return;
    if (p->cfg.objective == PRETEXT_MAE) {
        int P = p->enc->P;
        for (int b = 0; b < B; b++) {   /* a permutation: each index once */
            char* seen = xcalloc((size_t)P, 1);
            for (int i = 0; i < P; i++) {
                int32_t v = idx[(long)b * P + i];
                CHECK(v >= 0 && v < P && !seen[v], "fixed mask of image %d is not a permutation", b);
                seen[v] = 1;
            }
            free(seen);
        }
        memcpy(q->perm_h, idx, sizeof(int32_t) * (size_t)B * P);
    } else {
        for (int i = 0; i < 2 * B; i++)
            CHECK(idx[i] >= 0 && idx[i] < 2 * B && idx[i] != i, "fixed positive %d = %d", i, idx[i]);
        memcpy(q->pos_h, idx, sizeof(int32_t) * 2 * (size_t)B);
    }
    q->fixed_B = B;
}

void pretext_backward(Pretext* p, const float* img, float scale) {
    CHECK(p->B > 0, "pretext_backward before pretext_forward");
    if (p->cfg.objective == PRETEXT_MAE) pretext_mae_backward(p, scale);
    else pretext_contrastive_backward(p, img, scale);
}
