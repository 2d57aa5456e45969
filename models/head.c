/* models/head.c — task heads: config, parameter table, memory, init, and the per-task
 * forward/backward dispatch (the architectures are in head_classify.c and head_dense.c).
 * See head.h for the architectures and every design choice. */
#include "head.h"
#include "../engine/check.h"
#include "../engine/rng.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- names and config ------------------------------------------------------------------- */

static const char* const task_names[HEAD_NTASKS] = {"classify", "segment", "superres", "undistort", "synthesize"};
static const char* const kind_names[HEAD_NKINDS] = {"mlp", "linear", "unetr", "pup"};

const char* head_task_name(int t) { return t >= 0 && t < HEAD_NTASKS ? task_names[t] : "?"; }
const char* head_kind_name(int k) { return k >= 0 && k < HEAD_NKINDS ? kind_names[k] : "?"; }
static int lookup(const char* s, const char* const* names, int n) {
    for (int i = 0; s && i < n; i++)
        if (!strcmp(s, names[i])) return i;
    return -1;
}
int head_task_from_name(const char* s) { return lookup(s, task_names, HEAD_NTASKS); }
int head_kind_from_name(const char* s) { return lookup(s, kind_names, HEAD_NKINDS); }
int head_pool_from_name(const char* s) {
    static const char* const n[] = {"cls", "mean"};
    return lookup(s, n, 2);
}
int head_output_from_name(const char* s) {
    static const char* const n[] = {"image", "field"};
    return lookup(s, n, 2);
}

void head_config_default(HeadConfig* c, int task, int spatial_dims) {
    memset(c, 0, sizeof *c);
    c->task = task;
    c->kind = task == HEAD_CLASSIFY ? HEAD_KIND_MLP
            : task == HEAD_SEGMENT && spatial_dims == 2 ? HEAD_KIND_PUP : HEAD_KIND_UNETR;
    c->num_classes = task == HEAD_CLASSIFY || task == HEAD_SEGMENT ? 2 : 1;
    c->feature_size = 16;
    c->hidden = 256;
    c->pool = HEAD_POOL_MEAN;
    c->batchnorm = 0;
    c->output = HEAD_OUT_IMAGE;
    c->input_channel = 0;
    c->pe_axis = 1;
    c->bn_eps = task == HEAD_CLASSIFY ? 1e-6f : 1e-5f;
    c->bn_momentum = 0.1f;
    c->in_eps = 1e-5f;
    c->slope = 0.01f;
}

/* stages of one axis' patch factor, coarse to fine: the odd part first, then 2s */
static int axis_stages(int p, int* list) {
    int k = 0, r = p, n = 0;
    while (r % 2 == 0) { r /= 2; k++; }
    if (r > 1) list[n++] = r;
    for (int i = 0; i < k; i++) list[n++] = 2;
    return n;
}

#define CFG_ERR(...) do { snprintf(err, errlen, __VA_ARGS__); return 1; } while (0)

int head_config_check(const HeadConfig* c, const VitConfig* e, char* err, size_t errlen) {
    if (c->task < 0 || c->task >= HEAD_NTASKS) CFG_ERR("task = %d: unknown task", c->task);
    const char* t = task_names[c->task];
    int ok_kind = c->task == HEAD_CLASSIFY ? (c->kind == HEAD_KIND_MLP || c->kind == HEAD_KIND_LINEAR)
                : c->task == HEAD_SEGMENT ? (c->kind == HEAD_KIND_UNETR || c->kind == HEAD_KIND_PUP)
                : c->kind == HEAD_KIND_UNETR;
    if (!ok_kind)
        CFG_ERR("head.kind = %s is not a %s head (classify: mlp|linear; segment: unetr|pup; "
                "superres/undistort/synthesize: unetr)", head_kind_name(c->kind), t);
    if ((c->task == HEAD_CLASSIFY || c->task == HEAD_SEGMENT) && c->num_classes < 1)
        CFG_ERR("head.num_classes = %d: must be >= 1", c->num_classes);
    if (c->task == HEAD_CLASSIFY) {
        if (c->kind == HEAD_KIND_MLP && c->hidden < 1) CFG_ERR("head.hidden = %d: must be >= 1", c->hidden);
        if (c->pool != HEAD_POOL_CLS && c->pool != HEAD_POOL_MEAN) CFG_ERR("head.pool: must be cls or mean");
        if (c->pool == HEAD_POOL_CLS && !e->cls_token)
            CFG_ERR("head.pool = cls but the encoder has no cls token (model.cls_token = false); use head.pool = mean");
    }
    if (c->kind == HEAD_KIND_UNETR) {
        if (c->feature_size < 1) CFG_ERR("head.feature_size = %d: must be >= 1", c->feature_size);
        int list[32], n = 0;
        for (int a = 0; a < 3; a++) { int k = axis_stages(e->patch[a], list); if (k > n) n = k; }
        if (n < 1) CFG_ERR("head.kind = unetr needs a patch larger than 1 on some axis");
        if (n > HEAD_MAX_STAGES) CFG_ERR("head.kind = unetr: patch needs %d upsampling stages (max %d)", n, HEAD_MAX_STAGES);
        if ((long)c->feature_size << (n - 1) > 4096)
            CFG_ERR("head.feature_size = %d: the coarsest decoder level would have %ld channels", c->feature_size,
                    (long)c->feature_size << (n - 1));
    }
    if (c->task == HEAD_SUPERRES || (c->task == HEAD_UNDISTORT && c->output == HEAD_OUT_FIELD))
        if (c->input_channel < 0 || c->input_channel >= e->in_chans)
            CFG_ERR("head.input_channel = %d: the encoder has %d input channels", c->input_channel, e->in_chans);
    if (c->task == HEAD_UNDISTORT) {
        if (c->output != HEAD_OUT_IMAGE && c->output != HEAD_OUT_FIELD) CFG_ERR("head.output: must be image or field");
        if (c->output == HEAD_OUT_FIELD && (c->pe_axis < (e->spatial_dims == 2 ? 1 : 0) || c->pe_axis > 2))
            CFG_ERR("head.pe_axis = %d: must be %s", c->pe_axis, e->spatial_dims == 2 ? "1 (H) or 2 (W)" : "0 (D), 1 (H) or 2 (W)");
    }
    if (!(c->bn_eps > 0) || !(c->in_eps > 0)) CFG_ERR("head.bn_eps / head.in_eps must be > 0");
    if (!(c->bn_momentum >= 0 && c->bn_momentum <= 1)) CFG_ERR("head.bn_momentum = %g: must be in [0, 1]", c->bn_momentum);
    if (!(c->slope >= 0)) CFG_ERR("head.slope = %g: must be >= 0", c->slope);
    return 0;
}

/* ---- parameter table --------------------------------------------------------------------- */

long head_param(Head* h, const char* name, float init_std, int trainable, int ndim, const int* shape) {
    if (h->n_params == h->cap_params) {
        h->cap_params = h->cap_params ? 2 * h->cap_params : 64;
        VitParam* p = xcalloc(h->cap_params, sizeof(VitParam));
        float* s = xcalloc(h->cap_params, sizeof(float));
        if (h->n_params) {
            memcpy(p, h->params, h->n_params * sizeof(VitParam));
            memcpy(s, h->init_std, h->n_params * sizeof(float));
        }
        free(h->params);
        free(h->init_std);
        h->params = p;
        h->init_std = s;
    }
    CHECK(strlen(name) < sizeof h->params[0].name, "parameter name too long: %s", name);
    VitParam* p = &h->params[h->n_params];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    p->ndim = ndim;
    p->numel = 1;
    for (int i = 0; i < ndim; i++) { p->shape[i] = shape[i]; p->numel *= shape[i]; }
    p->offset = h->n_floats;
    p->layer_id = h->depth + 1;
    p->no_decay = ndim <= 1;
    p->trainable = trainable;
    h->init_std[h->n_params] = init_std;
    h->n_params++;
    h->n_floats += (p->numel + 15) & ~15L;
    return p->offset;
}

const VitParam* head_find_param(const Head* h, const char* name) {
    for (int i = 0; i < h->n_params; i++)
        if (!strcmp(h->params[i].name, name)) return &h->params[i];
    return NULL;
}

static int uses_decoder(const Head* h) { return h->cfg.kind == HEAD_KIND_UNETR; }
static int image_in_out(const Head* h) {   /* tasks that read one input channel */
    return h->cfg.task == HEAD_SUPERRES || (h->cfg.task == HEAD_UNDISTORT && h->cfg.output == HEAD_OUT_FIELD);
}

void head_create(Head* h, Ctx* ctx, const HeadConfig* cfg, const Vit* m) {
    char err[256];
    memset(h, 0, sizeof *h);
    if (head_config_check(cfg, &m->cfg, err, sizeof err)) USER_ERROR("%s", err);
    h->cfg = *cfg;
    h->enc = m->cfg;
    h->ctx = ctx;
    h->dim = m->cfg.dim;
    h->depth = m->cfg.depth;
    h->T = m->T;
    h->P = m->P;
    h->t0 = m->T - m->P;
    h->training = 1;
    for (int a = 0; a < 3; a++) h->out_dims[a] = m->cfg.img[a];
    if (cfg->task == HEAD_CLASSIFY) {
        h->out_channels = cfg->num_classes;
        head_classify_build(h);
    } else if (cfg->kind == HEAD_KIND_PUP) {
        h->out_channels = cfg->num_classes;
        head_pup_build(h);
    } else {
        h->out_channels = cfg->task == HEAD_SEGMENT ? cfg->num_classes : 1;
        head_decoder_build(h, h->out_channels);
    }
    h->w = dev_alloc(ctx, h->n_floats * sizeof(float));
    h->g = dev_alloc(ctx, h->n_floats * sizeof(float));
}

int head_skip_blocks(const Head* h, int* blocks) {
    int n = 0;
    if (!uses_decoder(h)) return 0;
    for (int k = 0; k < h->dec.nskip; k++) {
        int b = h->dec.skip[k].block, seen = 0;
        for (int i = 0; i < n; i++) seen |= blocks[i] == b;
        if (!seen) blocks[n++] = b;
    }
    for (int i = 1; i < n; i++)      /* ascending */
        for (int j = i; j > 0 && blocks[j - 1] > blocks[j]; j--) { int t = blocks[j]; blocks[j] = blocks[j - 1]; blocks[j - 1] = t; }
    return n;
}

/* ---- activations ------------------------------------------------------------------------- */

float* head_carve(HeadCarver* cv, long n) {
    float* p = cv->base ? cv->base + cv->n : NULL;
    cv->n += (n + 15) & ~15L;
    return p;
}

static void carve_all(Head* h, HeadCarver* cv) {
    long mb = h->max_batch, S0 = (long)h->out_dims[0] * h->out_dims[1] * h->out_dims[2];
    h->d_tokens = head_carve(cv, mb * h->T * h->dim);
    memset(h->d_blocks, 0, sizeof h->d_blocks);
    int blocks[HEAD_MAX_SKIPS], nb = head_skip_blocks(h, blocks);
    for (int i = 0; i < nb; i++) h->d_blocks[blocks[i] - 1] = head_carve(cv, mb * h->T * h->dim);
    for (int i = 0; i < 4; i++) h->scr[i] = h->max_t ? head_carve(cv, mb * h->max_t) : NULL;
    h->chan = h->dfield = h->res = NULL;
    if (image_in_out(h)) {
        h->chan = head_carve(cv, mb * S0);
        h->res = head_carve(cv, mb * S0);
        if (h->cfg.output == HEAD_OUT_FIELD && h->cfg.task == HEAD_UNDISTORT) h->dfield = head_carve(cv, mb * S0);
    }
    if (h->cfg.task == HEAD_CLASSIFY) head_classify_carve(h, cv);
    else if (h->cfg.kind == HEAD_KIND_PUP) head_pup_carve(h, cv);
    else head_decoder_carve(h, cv);
}

void head_alloc_activations(Head* h, int max_batch) {
    CHECK(max_batch >= 1, "max_batch %d", max_batch);
    h->max_batch = max_batch;
    HeadCarver cv = {NULL, 0};
    carve_all(h, &cv);
    if (h->acts) dev_free(h->ctx, h->acts);
    h->acts = dev_alloc(h->ctx, cv.n * sizeof(float));
    h->act_floats = cv.n;
    HeadCarver real = {h->acts, 0};
    carve_all(h, &real);
    CHECK(real.n == cv.n, "head activation carving mismatch");
}

void head_free(Head* h) {
    if (h->acts) dev_free(h->ctx, h->acts);
    dev_free(h->ctx, h->w);
    dev_free(h->ctx, h->g);
    free(h->params);
    free(h->init_std);
    memset(h, 0, sizeof *h);
}

void head_zero_grad(Head* h) { dev_zero(h->ctx, h->g, h->n_floats * sizeof(float)); }

/* ---- init ------------------------------------------------------------------------------- */

void head_init_weights(Head* h, uint64_t seed) {
    float* w = xcalloc(h->n_floats, sizeof(float));
    Rng r = rng_stream(seed, 0x4EAD);
    for (int i = 0; i < h->n_params; i++) {
        const VitParam* p = &h->params[i];
        float s = h->init_std[i], *t = w + p->offset;
        for (long k = 0; k < p->numel; k++)
            t[k] = s > 0 ? (float)(s * rng_normal(&r))
                 : s == -1 ? 1.0f
                 : s == -2 ? (float)rng_trunc_normal(&r, 0.02, -2, 2) : 0.0f;
    }
    copy_h2d(h->ctx, h->w, w, h->n_floats * sizeof(float));
    free(w);
}

/* ---- forward / backward ------------------------------------------------------------------ */

/* chan [B, 1, S] = img[:, c] */
static void take_channel(Head* h, const float* img, int B) {
    long S = (long)h->out_dims[0] * h->out_dims[1] * h->out_dims[2];
    int C = h->enc.in_chans, c = h->cfg.input_channel;
    for (int b = 0; b < B; b++)
        copy_d2d(h->ctx, h->chan + b * S, img + ((long)b * C + c) * S, S * sizeof(float));
}

const float* head_forward(Head* h, const Vit* m, const float* img, int B) {
    CHECK(h->acts && B >= 1 && B <= h->max_batch, "batch %d exceeds the head's allocated %d", B, h->max_batch);
    CHECK(m->B == B && m->T == h->T && m->cfg.dim == h->dim, "encoder state (B=%d T=%d) does not match the head (B=%d T=%d)",
          m->B, m->T, B, h->T);
    h->B = B;
    const int* d = h->out_dims;
    if (h->cfg.task == HEAD_CLASSIFY) {
        head_classify_forward(h, m, B);
        h->out = h->cls.logits;
    } else if (h->cfg.kind == HEAD_KIND_PUP) {
        head_pup_forward(h, m, B);
        h->out = h->pup.out;
    } else {
        head_decoder_forward(h, m, img, B);
        h->out = h->dec.out;
        if (h->cfg.task == HEAD_SUPERRES) {
            take_channel(h, img, B);
            add_forward(h->ctx, h->res, h->chan, h->dec.out, (long)B * d[0] * d[1] * d[2]);
            h->out = h->res;
        } else if (h->cfg.task == HEAD_UNDISTORT && h->cfg.output == HEAD_OUT_FIELD) {
            take_channel(h, img, B);
            resample_axis_forward(h->ctx, h->res, h->chan, h->dec.out, B, 1, d[0], d[1], d[2], h->cfg.pe_axis);
            h->out = h->res;
        }
    }
    return h->out;
}

void head_backward(Head* h, const Vit* m, const float* img, const float* d_output,
                   float* d_tokens_out, float** d_blocks) {
    (void)m;
    (void)img;
    CHECK(h->B >= 1 && d_output && d_tokens_out, "head_backward needs a forward, d_output and d_tokens_out");
    const int* d = h->out_dims;
    if (h->cfg.task == HEAD_CLASSIFY) {
        head_classify_backward(h, d_output, d_tokens_out);
    } else if (h->cfg.kind == HEAD_KIND_PUP) {
        head_pup_backward(h, d_output, d_tokens_out);
    } else {
        const float* d_dec = d_output;   /* superres: out = input + decoder, identity */
        if (h->cfg.task == HEAD_UNDISTORT && h->cfg.output == HEAD_OUT_FIELD) {
            /* the input channel's gradient is not needed (data); scratch 0 takes it */
            resample_axis_backward(h->ctx, h->scr[0], h->dfield, d_output, h->chan, h->dec.out, h->B, 1,
                                   d[0], d[1], d[2], h->cfg.pe_axis);
            d_dec = h->dfield;
        }
        CHECK(d_blocks, "head_backward: the dense decoder needs d_blocks");
        head_decoder_backward(h, d_dec, d_tokens_out, d_blocks);
    }
}

/* ---- optimizer ranges, memory ----------------------------------------------------------- */

int head_opt_ranges(const Head* h, float wd, OptRange* out) {
    for (int i = 0; i < h->n_params; i++) {
        const VitParam* p = &h->params[i];
        out[i].offset = p->offset;
        out[i].numel = p->numel;
        out[i].lr_scale = 1.0f;
        out[i].weight_decay = p->no_decay ? 0.0f : wd;
        out[i].frozen = !p->trainable;
    }
    return h->n_params;
}

void head_print_memory(const Head* h) {
    printf("head %s/%s: %d tensors, params %.2f MiB (%ld floats), grads %.2f MiB, "
           "activations + scratch %.1f MiB (batch %d)\n",
           head_task_name(h->cfg.task), head_kind_name(h->cfg.kind), h->n_params,
           h->n_floats * 4.0 / 1048576, h->n_floats, h->n_floats * 4.0 / 1048576,
           h->act_floats * 4.0 / 1048576, h->max_batch);
}
