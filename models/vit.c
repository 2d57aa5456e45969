/* models/vit.c — ViT encoder: parameter table, init, forward and backward; also the MAE-masked
 * encoder pass and a bare block stack (the MAE decoder), sharing the same block code.
 * The math is in kernels/; this file only sequences ops over carved buffers. All tensor
 * memory is device memory; host values (init, drop-path scales) enter by copy_h2d. */
#include "vit.h"
#include "../engine/check.h"
#include "../engine/rng.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- parameter table ------------------------------------------------------------------ */

VitParam* vit_param_add(VitParam* table, int* n_params, int cap, long* n_floats, const char* name,
                        int layer_id, int no_decay, int ndim, const int* shape) {
    CHECK(*n_params < cap, "parameter table overflow");
    VitParam* p = &table[(*n_params)++];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    p->ndim = ndim;
    p->numel = 1;
    for (int i = 0; i < ndim; i++) { p->shape[i] = shape[i]; p->numel *= shape[i]; }
    p->offset = *n_floats;
    p->layer_id = layer_id;
    p->no_decay = no_decay;
    p->trainable = 1;
    /* keep every tensor 16-float (64-byte) aligned for vector loads */
    *n_floats += (p->numel + 15) & ~15L;
    return p;
}

static VitParam* add_param(Vit* m, int cap, const char* name, int layer_id, int no_decay,
                           int ndim, const int* shape) {
    return vit_param_add(m->params, &m->n_params, cap, &m->n_floats, name, layer_id, no_decay,
                         ndim, shape);
}

#define SHAPE(...) ((const int[]){__VA_ARGS__})
#define NDIM(...) ((int)(sizeof((int[]){__VA_ARGS__}) / sizeof(int)))
#define PARAM(name, layer, nodecay, ...) add_param(m, cap, name, layer, nodecay, NDIM(__VA_ARGS__), SHAPE(__VA_ARGS__))

/* patch embedding, tokens, pos_embed, extra tokens (the encoder's rows before the blocks) */
static void stem_rows(Vit* m, int cap) {
    const VitConfig* c = &m->cfg;
    int D = c->dim;
    char nm[64];
    if (c->spatial_dims == 3)
        PARAM("patch_embed.proj.weight", 0, 0, D, c->in_chans, c->patch[0], c->patch[1], c->patch[2]);
    else
        PARAM("patch_embed.proj.weight", 0, 0, D, c->in_chans, c->patch[1], c->patch[2]);
    PARAM("patch_embed.proj.bias", 0, 1, D);
    if (c->cls_token) PARAM("cls_token", 0, 1, 1, 1, D);
    if (c->num_registers) PARAM("reg_token", 0, 1, 1, c->num_registers, D);
    VitParam* pos = PARAM("pos_embed", 0, 1, 1, m->ncls + m->P, D);
    pos->trainable = c->pos_embed == VIT_POS_LEARNED;
    for (int e = 0; e < c->num_extra; e++) {
        snprintf(nm, sizeof nm, "extra_tokens.%s.weight", c->extra_tokens[e]);
        PARAM(nm, 0, 0, D, 1);
        snprintf(nm, sizeof nm, "extra_tokens.%s.bias", c->extra_tokens[e]);
        PARAM(nm, 0, 1, D);
    }
}

static void build_table(Vit* m) {
    const VitConfig* c = &m->cfg;
    int cap = 16 + c->num_extra * 2 + c->depth * 16;
    m->params = xcalloc(cap, sizeof(VitParam));
    m->n_params = 0;
    m->n_floats = 0;
    int D = c->dim, L = c->depth, hid = m->hidden;
    char nm[64];
    if (!m->stack_only) stem_rows(m, cap);
    for (int l = 0; l < L; l++) {
#define BP(suffix, nodecay, ...) do { snprintf(nm, sizeof nm, "%s%d.%s", m->blk_prefix, l, suffix); \
        PARAM(nm, l + 1, nodecay, __VA_ARGS__); } while (0)
        BP("norm1.weight", 1, D);
        BP("norm1.bias", 1, D);
        BP("attn.qkv.weight", 0, 3 * D, D);
        if (c->qkv_bias) BP("attn.qkv.bias", 1, 3 * D);
        BP("attn.proj.weight", 0, D, D);
        BP("attn.proj.bias", 1, D);
        if (c->layerscale_init > 0) BP("ls1.gamma", 1, D);
        BP("norm2.weight", 1, D);
        BP("norm2.bias", 1, D);
        BP("mlp.fc1.weight", 0, hid, D);
        BP("mlp.fc1.bias", 1, hid);
        BP("mlp.fc2.weight", 0, D, hid);
        BP("mlp.fc2.bias", 1, D);
        if (c->layerscale_init > 0) BP("ls2.gamma", 1, D);
#undef BP
    }
    snprintf(nm, sizeof nm, "%sweight", m->norm_prefix);
    PARAM(nm, L + 1, 1, D);
    snprintf(nm, sizeof nm, "%sbias", m->norm_prefix);
    PARAM(nm, L + 1, 1, D);
}

const VitParam* vit_find_param(const Vit* m, const char* name) {
    for (int i = 0; i < m->n_params; i++)
        if (!strcmp(m->params[i].name, name)) return &m->params[i];
    return NULL;
}

static float* view(const Vit* m, float* base, const char* name) {
    const VitParam* p = vit_find_param(m, name);
    return p ? base + p->offset : NULL;
}

static void bind_views(Vit* m, VitTensors* t, float* base) {
    const VitConfig* c = &m->cfg;
    char nm[64];
    memset(t, 0, sizeof *t);
    t->patch_w = view(m, base, "patch_embed.proj.weight");
    t->patch_b = view(m, base, "patch_embed.proj.bias");
    t->cls = view(m, base, "cls_token");
    t->reg = view(m, base, "reg_token");
    t->pos = view(m, base, "pos_embed");
    for (int e = 0; e < c->num_extra; e++) {
        snprintf(nm, sizeof nm, "extra_tokens.%s.weight", c->extra_tokens[e]);
        t->extra_w[e] = view(m, base, nm);
        snprintf(nm, sizeof nm, "extra_tokens.%s.bias", c->extra_tokens[e]);
        t->extra_b[e] = view(m, base, nm);
    }
    for (int l = 0; l < c->depth; l++) {
        VitBlockTensors* b = &t->blocks[l];
#define BV(field, suffix) do { snprintf(nm, sizeof nm, "%s%d.%s", m->blk_prefix, l, suffix); \
        b->field = view(m, base, nm); } while (0)
        BV(norm1_w, "norm1.weight"); BV(norm1_b, "norm1.bias");
        BV(qkv_w, "attn.qkv.weight"); BV(qkv_b, "attn.qkv.bias");
        BV(proj_w, "attn.proj.weight"); BV(proj_b, "attn.proj.bias");
        BV(ls1, "ls1.gamma"); BV(ls2, "ls2.gamma");
        BV(norm2_w, "norm2.weight"); BV(norm2_b, "norm2.bias");
        BV(fc1_w, "mlp.fc1.weight"); BV(fc1_b, "mlp.fc1.bias");
        BV(fc2_w, "mlp.fc2.weight"); BV(fc2_b, "mlp.fc2.bias");
#undef BV
    }
    snprintf(nm, sizeof nm, "%sweight", m->norm_prefix);
    t->norm_w = view(m, base, nm);
    snprintf(nm, sizeof nm, "%sbias", m->norm_prefix);
    t->norm_b = view(m, base, nm);
}

void vit_create(Vit* m, Ctx* ctx, const VitConfig* cfg) {
    char err[256];
    memset(m, 0, sizeof *m);
    if (vit_config_check(cfg, err, sizeof err)) USER_ERROR("%s", err);
    m->cfg = *cfg;
    m->ctx = ctx;
    snprintf(m->blk_prefix, sizeof m->blk_prefix, "blocks.");
    snprintf(m->norm_prefix, sizeof m->norm_prefix, "norm.");
    for (int a = 0; a < 3; a++) m->grid[a] = cfg->img[a] / cfg->patch[a];
    m->P = m->grid[0] * m->grid[1] * m->grid[2];
    m->ncls = cfg->cls_token ? 1 : 0;
    m->T = m->ncls + cfg->num_registers + cfg->num_extra + m->P;
    m->hidden = (int)lroundf(cfg->dim * cfg->mlp_ratio);
    m->head_dim = cfg->dim / cfg->heads;
    m->Kp = cfg->in_chans * cfg->patch[0] * cfg->patch[1] * cfg->patch[2];
    build_table(m);
    m->w = dev_alloc(ctx, m->n_floats * sizeof(float));
    m->g = dev_alloc(ctx, m->n_floats * sizeof(float));
    bind_views(m, &m->tw, m->w);
    bind_views(m, &m->tg, m->g);
}

void vit_create_stack(Vit* m, Ctx* ctx, const VitConfig* cfg, int T, const char* blk_prefix,
                      const char* norm_prefix) {
    memset(m, 0, sizeof *m);
    CHECK(cfg->dim > 0 && cfg->heads > 0 && cfg->dim % cfg->heads == 0 && cfg->depth >= 0 &&
          cfg->depth <= VIT_MAX_DEPTH && T > 0 && cfg->mlp_ratio > 0,
          "stack: dim %d heads %d depth %d T %d", cfg->dim, cfg->heads, cfg->depth, T);
    CHECK(strlen(blk_prefix) < sizeof m->blk_prefix && strlen(norm_prefix) < sizeof m->norm_prefix,
          "stack prefix too long");
    m->cfg = *cfg;
    m->cfg.num_extra = 0;
    m->cfg.num_registers = 0;
    m->cfg.cls_token = 0;
    m->ctx = ctx;
    m->stack_only = 1;
    snprintf(m->blk_prefix, sizeof m->blk_prefix, "%s", blk_prefix);
    snprintf(m->norm_prefix, sizeof m->norm_prefix, "%s", norm_prefix);
    m->T = T;
    m->hidden = (int)lroundf(cfg->dim * cfg->mlp_ratio);
    m->head_dim = cfg->dim / cfg->heads;
    build_table(m);
}

void vit_bind(Vit* m, float* w, float* g) {
    m->w = w;
    m->g = g;
    bind_views(m, &m->tw, m->w);
    bind_views(m, &m->tg, m->g);
}

void vit_zero_grad(Vit* m) { dev_zero(m->ctx, m->g, m->n_floats * sizeof(float)); }

/* ---- activations ------------------------------------------------------------------------ */

void vit_alloc_activations(Vit* m, int max_batch) {
    const VitConfig* c = &m->cfg;
    long N = (long)max_batch * m->T, D = c->dim, H = c->heads, hid = m->hidden;
    long wide = hid > 3 * D ? hid : 3 * D;
    int ls = c->layerscale_init > 0;
    long per_block = N * D * 5 /* ln1 att x_mid ln2 x_out */ + N * 3 * D + N * hid +
                     N * 4 /* means, rstds */ + (long)max_batch * H * m->T +
                     (ls ? 2 * N * D : 0);
    long total = (long)max_batch * m->P * (m->Kp + D) /* patches, pe */ +
                 (long)c->num_extra * max_batch * D + N * D * 2 /* x0, out */ + 2 * N +
                 c->depth * per_block + (long)c->depth * 2 * max_batch;
    long scratch = N * hid + N * D * 3 + N * wide;
    if (m->acts) dev_free(m->ctx, m->acts);
    m->acts = dev_alloc(m->ctx, (total + scratch) * sizeof(float));
    free(m->dp_host);
    m->dp_host = xmalloc(sizeof(float) * (size_t)c->depth * 2 * max_batch);
    m->act_floats = total;
    m->scratch_floats = scratch;
    m->max_batch = max_batch;
    float* p = m->acts;
#define CARVE(ptr, n) do { (ptr) = p; p += (n); } while (0)
    CARVE(m->patches, (long)max_batch * m->P * m->Kp);
    CARVE(m->pe, (long)max_batch * m->P * D);
    CARVE(m->extra, (long)c->num_extra * max_batch * D);
    CARVE(m->x0, N * D);
    CARVE(m->out, N * D);
    CARVE(m->out_mean, N);
    CARVE(m->out_rstd, N);
    for (int l = 0; l < c->depth; l++) {
        VitBlockActs* a = &m->blk[l];
        CARVE(a->ln1, N * D); CARVE(a->ln1_mean, N); CARVE(a->ln1_rstd, N);
        CARVE(a->qkv, N * 3 * D); CARVE(a->att, N * D); CARVE(a->lse, (long)max_batch * H * m->T);
        CARVE(a->x_mid, N * D);
        CARVE(a->ln2, N * D); CARVE(a->ln2_mean, N); CARVE(a->ln2_rstd, N);
        CARVE(a->fc1, N * hid);
        CARVE(a->x_out, N * D);
        if (ls) { CARVE(a->proj, N * D); CARVE(a->fc2, N * D); }
        else a->proj = a->fc2 = NULL;
    }
    CARVE(m->dp_scale, (long)c->depth * 2 * max_batch);
    CARVE(m->gelu_buf, N * hid);
    CARVE(m->d_res, N * D); CARVE(m->d_a, N * D); CARVE(m->d_b, N * D);
    CARVE(m->d_wide, N * wide);
#undef CARVE
    CHECK(p == m->acts + total + scratch, "activation carving mismatch");
}

void vit_free(Vit* m) {
    if (m->acts) dev_free(m->ctx, m->acts);
    free(m->dp_host);
    if (!m->stack_only) {   /* a stack's parameters are borrowed */
        dev_free(m->ctx, m->w);
        dev_free(m->ctx, m->g);
    }
    free(m->params);
    memset(m, 0, sizeof *m);
}

VitBytes vit_bytes(const Vit* m) {
    VitBytes b;
    b.params = m->n_floats * sizeof(float);
    b.grads = b.params;
    b.optimizer = 2 * b.params;   /* AdamW m and v */
    b.activations = m->act_floats * sizeof(float);
    b.scratch = m->scratch_floats * sizeof(float) + m->ctx->ws_bytes;
    return b;
}

int vit_table_ranges(const VitParam* table, int n, float wd, OptRange* out) {
    for (int i = 0; i < n; i++) {
        const VitParam* p = &table[i];
        out[i].offset = p->offset;
        out[i].numel = p->numel;
        out[i].lr_scale = 1.0f;
        out[i].weight_decay = p->no_decay ? 0.0f : wd;
        out[i].frozen = !p->trainable;
    }
    return n;
}

int vit_opt_ranges(const Vit* m, float wd, float layer_decay, OptRange* out) {
    int top = m->cfg.depth + 1;
    vit_table_ranges(m->params, m->n_params, wd, out);
    if (layer_decay > 0 && layer_decay != 1)
        for (int i = 0; i < m->n_params; i++)
            out[i].lr_scale = powf(layer_decay, (float)(top - m->params[i].layer_id));
    return m->n_params;
}

static double mib(size_t b) { return b / 1048576.0; }

void vit_print_memory(const Vit* m) {
    VitBytes b = vit_bytes(m);
    printf("memory (batch %d, %d tokens): params %.1f MiB (%ld floats), grads %.1f MiB, "
           "AdamW state %.1f MiB, activations %.1f MiB, scratch %.1f MiB, total %.1f MiB\n",
           m->max_batch, m->T, mib(b.params), m->n_floats, mib(b.grads), mib(b.optimizer),
           mib(b.activations), mib(b.scratch),
           mib(b.params + b.grads + b.optimizer + b.activations + b.scratch));
}

/* ---- init ----------------------------------------------------------------------------- */

void vit_sincos_pos(float* pos, int n, const int grid[3], int ncls, int D) {
    int part = (D / n) & ~1, half = part / 2;
    CHECK(half >= 1, "sin-cos embedding: dim %d below %d", D, 2 * n);
    memset(pos, 0, sizeof(float) * (size_t)(ncls + grid[0] * grid[1] * grid[2]) * D);
    for (int z = 0; z < grid[0]; z++)
        for (int y = 0; y < grid[1]; y++)
            for (int x = 0; x < grid[2]; x++) {
                int coord3[3] = {z, y, x};
                const int* coord = coord3 + (3 - n);
                float* row = pos + (size_t)(ncls + (z * grid[1] + y) * grid[2] + x) * D;
                for (int a = 0; a < n; a++)
                    for (int k = 0; k < half; k++) {
                        double w = pow(10000.0, -(double)k / half), v = coord[a] * w;
                        row[a * part + k] = (float)sin(v);
                        row[a * part + half + k] = (float)cos(v);
                    }
            }
}

void vit_init_weights(Vit* m, uint64_t seed) {
    float* h = xcalloc(m->n_floats, sizeof(float));
    Rng r = rng_stream(seed, 0x1417);
    for (int i = 0; i < m->n_params; i++) {
        const VitParam* p = &m->params[i];
        float* t = h + p->offset;
        const char* nm = p->name;
        size_t len = strlen(nm);
        int is_bias = len > 5 && !strcmp(nm + len - 5, ".bias");
        int is_norm = strstr(nm, "norm") != NULL;
        int is_ls = strstr(nm, ".gamma") != NULL;
        if (is_ls) {
            for (long k = 0; k < p->numel; k++) t[k] = m->cfg.layerscale_init;
        } else if (is_norm) {
            if (!is_bias) for (long k = 0; k < p->numel; k++) t[k] = 1.0f;
        } else if (is_bias) {
            /* zero */
        } else if (!strcmp(nm, "pos_embed") && m->cfg.pos_embed == VIT_POS_SINCOS) {
            vit_sincos_pos(t, m->cfg.spatial_dims, m->grid, m->ncls, m->cfg.dim);
        } else {
            /* linear/conv weights, cls/register tokens, learned pos_embed: trunc-normal(.02) */
            for (long k = 0; k < p->numel; k++) t[k] = (float)rng_trunc_normal(&r, 0.02, -2, 2);
        }
    }
    copy_h2d(m->ctx, m->w, h, m->n_floats * sizeof(float));
    free(h);
}

/* ---- forward ---------------------------------------------------------------------------- */

const float* vit_block_output(const Vit* m, int l) {
    CHECK(l >= 1 && l <= m->cfg.depth, "block %d out of 1..%d", l, m->cfg.depth);
    return m->blk[l - 1].x_out;
}

static int dp_active(const Vit* m) { return m->training && m->cfg.drop_path > 0; }

/* timm: drop-path rate of block l grows linearly from 0 to drop_path over depth */
static void draw_drop_path(Vit* m, int B) {
    const VitConfig* c = &m->cfg;
    if (!dp_active(m)) return;
    float* h = m->dp_host;
    Rng r = rng_stream(m->dp_seed, 0xD209 + m->dp_counter++);
    for (int l = 0; l < c->depth; l++) {
        double rate = c->depth > 1 ? c->drop_path * l / (c->depth - 1) : c->drop_path;
        double keep = 1.0 - rate;
        for (int k = 0; k < 2 * B; k++)
            h[l * 2 * B + k] = rate > 0 ? (rng_uniform(&r) < keep ? (float)(1.0 / keep) : 0.0f) : 1.0f;
    }
    copy_h2d(m->ctx, m->dp_scale, h, sizeof(float) * c->depth * 2 * B);
}

/* blocks + final norm on xin [B, m->Tr, dim] (m->B, m->Tr set by the caller) */
static void blocks_forward(Vit* m, const float* xin) {
    const VitConfig* c = &m->cfg;
    Ctx* x = m->ctx;
    int B = m->B, T = m->Tr, D = c->dim, N = B * T;
    const VitTensors* w = &m->tw;
    m->xin0 = xin;
    draw_drop_path(m, B);
    for (int l = 0; l < c->depth; l++) {
        const VitBlockTensors* bw = &w->blocks[l];
        VitBlockActs* a = &m->blk[l];
        /* branch outputs are written straight into the next residual stream buffer, which
         * then receives the residual: no per-block temporaries */
        layernorm_forward(x, a->ln1, a->ln1_mean, a->ln1_rstd, xin, bw->norm1_w, bw->norm1_b, N, D, c->ln_eps);
        linear_forward(x, a->qkv, a->ln1, bw->qkv_w, bw->qkv_b, N, D, 3 * D);
        attention_forward(x, a->att, a->lse, a->qkv, B, T, c->heads, m->head_dim);
        linear_forward(x, a->proj ? a->proj : a->x_mid, a->att, bw->proj_w, bw->proj_b, N, D, D);
        if (bw->ls1) layerscale_forward(x, a->x_mid, a->proj, bw->ls1, N, D);
        if (dp_active(m)) drop_path_forward(x, a->x_mid, a->x_mid, m->dp_scale + (long)l * 2 * B, B, (long)T * D);
        add_forward(x, a->x_mid, a->x_mid, xin, (long)N * D);

        layernorm_forward(x, a->ln2, a->ln2_mean, a->ln2_rstd, a->x_mid, bw->norm2_w, bw->norm2_b, N, D, c->ln_eps);
        linear_forward(x, a->fc1, a->ln2, bw->fc1_w, bw->fc1_b, N, D, m->hidden);
        gelu_forward(x, m->gelu_buf, a->fc1, (long)N * m->hidden);
        linear_forward(x, a->fc2 ? a->fc2 : a->x_out, m->gelu_buf, bw->fc2_w, bw->fc2_b, N, m->hidden, D);
        if (bw->ls2) layerscale_forward(x, a->x_out, a->fc2, bw->ls2, N, D);
        if (dp_active(m)) drop_path_forward(x, a->x_out, a->x_out, m->dp_scale + (long)l * 2 * B + B, B, (long)T * D);
        add_forward(x, a->x_out, a->x_out, a->x_mid, (long)N * D);
        xin = a->x_out;
    }
    layernorm_forward(x, m->out, m->out_mean, m->out_rstd, xin, w->norm_w, w->norm_b, N, D, c->ln_eps);
}

static void begin_forward(Vit* m, int B, int T, int n_keep, int stack) {
    CHECK(m->acts && B >= 1 && B <= m->max_batch, "batch %d exceeds allocated %d", B, m->max_batch);
    CHECK(m->stack_only == stack, "%s on a %s", stack ? "stack forward" : "encoder forward",
          m->stack_only ? "block stack" : "full encoder");
    m->B = B;
    m->Tr = T;
    m->n_keep = n_keep;
}

/* patch rows and their embedding m->pe [B, P, dim] */
static void embed_patches(Vit* m, const float* img, int B) {
    const VitConfig* c = &m->cfg;
    patchify_forward(m->ctx, m->patches, img, B, c->in_chans, c->img[0], c->img[1], c->img[2],
                     c->patch[0], c->patch[1], c->patch[2]);
    linear_forward(m->ctx, m->pe, m->patches, m->tw.patch_w, m->tw.patch_b, B * m->P, m->Kp, c->dim);
}

void vit_forward(Vit* m, const float* img, const float* extra_vals, int B) {
    const VitConfig* c = &m->cfg;
    Ctx* x = m->ctx;
    begin_forward(m, B, m->T, 0, 0);
    int T = m->T, D = c->dim, R = c->num_registers, E = c->num_extra;
    const VitTensors* w = &m->tw;

    embed_patches(m, img, B);
    for (int e = 0; e < E; e++)
        linear_forward(x, m->extra + (long)e * B * D, extra_vals + (long)e * B, w->extra_w[e],
                       w->extra_b[e], B, 1, D);
    tokens_concat_forward(x, m->x0, w->cls, w->reg, E ? m->extra : NULL, m->pe, B, R, E, m->P, D);
    if (m->ncls) pos_embed_add_forward(x, m->x0, w->pos, B, T, D, 0, 1, 0);
    pos_embed_add_forward(x, m->x0, w->pos, B, T, D, T - m->P, m->P, m->ncls);
    blocks_forward(m, m->x0);
}

void vit_forward_masked(Vit* m, const float* img, const int32_t* perm, int n_keep, int B) {
    const VitConfig* c = &m->cfg;
    Ctx* x = m->ctx;
    CHECK(c->num_extra == 0, "masked forward with %d extra tokens", c->num_extra);
    CHECK(n_keep >= 1 && n_keep <= m->P, "n_keep %d outside 1..%d", n_keep, m->P);
    int R = c->num_registers, Tk = m->ncls + R + n_keep, D = c->dim;
    begin_forward(m, B, Tk, n_keep, 0);
    const VitTensors* w = &m->tw;
    embed_patches(m, img, B);
    /* pos_embed onto every patch token first (MAE), then keep the visible ones; d_a is
     * backward scratch, dead during the forward */
    pos_embed_add_forward(x, m->pe, w->pos, B, m->P, D, 0, m->P, m->ncls);
    tokens_gather_forward(x, m->d_a, m->pe, perm, B, m->P, n_keep, D);
    tokens_concat_forward(x, m->x0, w->cls, w->reg, NULL, m->d_a, B, R, 0, n_keep, D);
    if (m->ncls) pos_embed_add_forward(x, m->x0, w->pos, B, Tk, D, 0, 1, 0);
    blocks_forward(m, m->x0);
}

void vit_stack_forward(Vit* m, const float* xin, int B) {
    begin_forward(m, B, m->T, 0, 1);
    blocks_forward(m, xin);
}

/* ---- backward --------------------------------------------------------------------------- */

/* Gradient of one residual branch: d_res holds d(out) of "out = in + dp(ls(y))"; leaves
 * d(y) in a pointer it returns (d_res itself when neither LayerScale nor drop-path is on). */
static const float* branch_grad(Vit* m, const float* d_res, const float* gamma, float* dgamma,
                                const float* y, const float* scale, float* buf) {
    int N = m->B * m->Tr, D = m->cfg.dim;
    const float* d = d_res;
    if (dp_active(m)) { drop_path_forward(m->ctx, buf, d, scale, m->B, (long)m->Tr * D); d = buf; }
    if (gamma) { layerscale_backward(m->ctx, buf, dgamma, d, y, gamma, N, D); d = buf; }
    return d;
}

/* blocks + final norm backward of the last forward: leaves d(block-0 input) in m->d_res */
static void blocks_backward(Vit* m, const float* d_out, const float* const* d_blocks) {
    const VitConfig* c = &m->cfg;
    Ctx* x = m->ctx;
    int B = m->B, T = m->Tr, D = c->dim, N = B * T, hid = m->hidden;
    const VitTensors* w = &m->tw;
    VitTensors* g = &m->tg;
    long ND = (long)N * D;

    const float* last = c->depth ? m->blk[c->depth - 1].x_out : m->xin0;
    if (d_out)
        layernorm_backward(x, m->d_res, g->norm_w, g->norm_b, d_out, last, w->norm_w,
                           m->out_mean, m->out_rstd, N, D);
    else
        dev_zero(x, m->d_res, ND * sizeof(float));

    for (int l = c->depth - 1; l >= 0; l--) {
        const VitBlockTensors* bw = &w->blocks[l];
        VitBlockTensors* bg = &g->blocks[l];
        VitBlockActs* a = &m->blk[l];
        const float* xin = l ? m->blk[l - 1].x_out : m->xin0;
        if (d_blocks && d_blocks[l]) add_forward(x, m->d_res, m->d_res, d_blocks[l], ND);

        /* MLP branch */
        const float* dy = branch_grad(m, m->d_res, bw->ls2, bg->ls2, a->fc2,
                                      m->dp_scale + (long)l * 2 * B + B, m->d_a);
        gelu_forward(x, m->gelu_buf, a->fc1, (long)N * hid);   /* recomputed, not stored */
        linear_backward(x, m->d_wide, bg->fc2_w, bg->fc2_b, dy, m->gelu_buf, bw->fc2_w, N, hid, D);
        gelu_backward(x, m->d_wide, m->d_wide, a->fc1, (long)N * hid);
        linear_backward(x, m->d_b, bg->fc1_w, bg->fc1_b, m->d_wide, a->ln2, bw->fc1_w, N, D, hid);
        layernorm_backward(x, m->d_a, bg->norm2_w, bg->norm2_b, m->d_b, a->x_mid, bw->norm2_w,
                           a->ln2_mean, a->ln2_rstd, N, D);
        add_forward(x, m->d_res, m->d_res, m->d_a, ND);

        /* attention branch */
        dy = branch_grad(m, m->d_res, bw->ls1, bg->ls1, a->proj, m->dp_scale + (long)l * 2 * B,
                         m->d_a);
        linear_backward(x, m->d_b, bg->proj_w, bg->proj_b, dy, a->att, bw->proj_w, N, D, D);
        attention_backward(x, m->d_wide, m->d_b, a->qkv, a->att, a->lse, B, T, c->heads, m->head_dim);
        linear_backward(x, m->d_b, bg->qkv_w, bg->qkv_b, m->d_wide, a->ln1, bw->qkv_w, N, D, 3 * D);
        layernorm_backward(x, m->d_a, bg->norm1_w, bg->norm1_b, m->d_b, xin, bw->norm1_w,
                           a->ln1_mean, a->ln1_rstd, N, D);
        add_forward(x, m->d_res, m->d_res, m->d_a, ND);
    }
}

/* patch-embedding parameter gradients from d_pe [B, P, dim] */
static void embed_patches_backward(Vit* m, const float* d_pe) {
    linear_backward(m->ctx, NULL, m->tg.patch_w, m->tg.patch_b, d_pe, m->patches, m->tw.patch_w,
                    m->B * m->P, m->Kp, m->cfg.dim);
}

void vit_backward(Vit* m, const float* img, const float* extra_vals, const float* d_out,
                  const float* const* d_blocks, float* d_img) {
    const VitConfig* c = &m->cfg;
    Ctx* x = m->ctx;
    CHECK(!m->stack_only && m->n_keep == 0, "vit_backward after a %s forward",
          m->stack_only ? "stack" : "masked");
    int B = m->B, T = m->T, D = c->dim, E = c->num_extra;
    const VitTensors* w = &m->tw;
    VitTensors* g = &m->tg;
    (void)img;
    blocks_backward(m, d_out, d_blocks);

    /* embedding: d_res = d(x0); the patch-token and extra-token gradients reuse d_a, d_b */
    float *d_pe = m->d_a, *d_extra = m->d_b;
    if (m->ncls) pos_embed_add_backward(x, g->pos, m->d_res, B, T, D, 0, 1, 0);
    pos_embed_add_backward(x, g->pos, m->d_res, B, T, D, T - m->P, m->P, m->ncls);
    tokens_concat_backward(x, g->cls, g->reg, E ? d_extra : NULL, d_pe, m->d_res, B,
                           c->num_registers, E, m->P, D);
    for (int e = 0; e < E; e++)
        linear_backward(x, NULL, g->extra_w[e], g->extra_b[e], d_extra + (long)e * B * D,
                        extra_vals + (long)e * B, w->extra_w[e], B, 1, D);
    embed_patches_backward(m, d_pe);
    if (d_img) {
        /* the patch rows are dead once the weight gradient is taken: reuse them for d(rows) */
        linear_backward(x, m->patches, NULL, NULL, d_pe, NULL, w->patch_w, B * m->P, m->Kp, D);
        unpatchify_forward(x, d_img, m->patches, B, c->in_chans, c->img[0], c->img[1],
                           c->img[2], c->patch[0], c->patch[1], c->patch[2]);
    }
}

void vit_backward_masked(Vit* m, const float* d_out, const int32_t* perm) {
    const VitConfig* c = &m->cfg;
    Ctx* x = m->ctx;
    CHECK(!m->stack_only && m->n_keep > 0, "vit_backward_masked after an unmasked forward");
    int B = m->B, Tk = m->Tr, D = c->dim, nk = m->n_keep;
    VitTensors* g = &m->tg;
    blocks_backward(m, d_out, NULL);
    float *d_keep = m->d_b, *d_pe = m->d_a;
    if (m->ncls) pos_embed_add_backward(x, g->pos, m->d_res, B, Tk, D, 0, 1, 0);
    tokens_concat_backward(x, g->cls, g->reg, NULL, d_keep, m->d_res, B, c->num_registers, 0, nk, D);
    tokens_gather_backward(x, d_pe, d_keep, perm, B, m->P, nk, D);
    pos_embed_add_backward(x, g->pos, d_pe, B, m->P, D, 0, m->P, m->ncls);
    embed_patches_backward(m, d_pe);
}

const float* vit_stack_backward(Vit* m, const float* d_out) {
    CHECK(m->stack_only, "vit_stack_backward on a full encoder");
    blocks_backward(m, d_out, NULL);
    return m->d_res;
}
