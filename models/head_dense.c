/* models/head_dense.c — the dense heads (head.h): the UNETR-style decoder shared by segment,
 * superres, undistort and synthesize, and ProViCNet's progressive-upsampling (pup) head.
 *
 * Buffers: every tensor a backward needs is saved in the activation buffer (conv inputs,
 * conv outputs for the norms); the main path's transposed conv output is only copied into
 * the level's concatenation, so it lives in scratch. The (Leaky)ReLU runs in place on the
 * norm output, as PyTorch's inplace=True, and its backward is handed the activation output
 * instead of its input: leaky_relu_backward tests x > 0 (ops.h: out = x > 0 ? x : slope x),
 * and for slope >= 0 out > 0 exactly when x > 0 (x <= 0 gives slope x <= 0, or -0), so the
 * gradient is bit-identical while each conv-norm-act unit stores two tensors, not three.
 * Backward ping-pongs between four scratch tensors of the largest per-level size:
 *   X  gradient flowing down the main path (d cat after a block's backward)
 *   R  d u_l (the main transposed conv's output) while the skips of that level run
 *   Y, Z  a skip path's backward
 * Concatenations along channels are per-image contiguous copies (copy_d2d), B x parts. */
#include "head.h"
#include "../engine/check.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static long vol(const int* d) { return (long)d[0] * d[1] * d[2]; }
static void upd_max(long* m, long v) { if (v > *m) *m = v; }

/* weight shapes: 2D encoders get Conv2d / ConvTranspose2d layouts (no depth axis) */
static long conv_param(Head* h, const char* name, int co, int ci, int k, float std) {
    if (h->enc.spatial_dims == 3) return head_param(h, name, std, 1, 5, (const int[]){co, ci, k, k, k});
    return head_param(h, name, std, 1, 4, (const int[]){co, ci, k, k});
}
static long convT_param(Head* h, const char* name, int ci, int co, const int* f) {
    float std = sqrtf(2.0f / ci);   /* non-overlapping: each output voxel sees ci inputs */
    if (h->enc.spatial_dims == 3) return head_param(h, name, std, 1, 5, (const int[]){ci, co, f[0], f[1], f[2]});
    return head_param(h, name, std, 1, 4, (const int[]){ci, co, f[1], f[2]});
}
static long vec_param(Head* h, const char* name, float init, int trainable, int n) {
    return head_param(h, name, init, trainable, 1, (const int[]){n});
}
static int kd3(const Head* h) { return h->enc.spatial_dims == 3 ? 3 : 1; }

/* ---- building blocks ---------------------------------------------------------------------- */

static void unit_build(Head* h, HeadUnit* u, const char* prefix, int idx, int ci, int co, int level) {
    char nm[64];
    u->ci = ci; u->co = co; u->level = level;
    snprintf(nm, sizeof nm, "%s.conv%d.weight", prefix, idx);
    u->w = conv_param(h, nm, co, ci, 3, sqrtf(2.0f / (ci * kd3(h) * 9)));
    snprintf(nm, sizeof nm, "%s.norm%d.weight", prefix, idx);
    u->nw = vec_param(h, nm, HEAD_INIT_ONE, 1, co);
    snprintf(nm, sizeof nm, "%s.norm%d.bias", prefix, idx);
    u->nb = vec_param(h, nm, HEAD_INIT_ZERO, 1, co);
}
static void block_build(Head* h, HeadBlock* b, const char* prefix, int ci, int co, int level) {
    unit_build(h, &b->u[0], prefix, 1, ci, co, level);
    unit_build(h, &b->u[1], prefix, 2, co, co, level);
}
static void unit_carve(Head* h, HeadUnit* u, long S, HeadCarver* cv) {
    long n = (long)h->max_batch * u->co;
    u->z = head_carve(cv, n * S);
    u->n = u->a = head_carve(cv, n * S);   /* activation in place, see the file comment */
    u->mean = head_carve(cv, n);
    u->rstd = head_carve(cv, n);
}
static void block_carve(Head* h, HeadBlock* b, const float* in, long S, HeadCarver* cv) {
    unit_carve(h, &b->u[0], S, cv);
    unit_carve(h, &b->u[1], S, cv);
    b->u[0].in = in;
    b->u[1].in = b->u[0].a;
}

static void unit_forward(Head* h, const HeadUnit* u, const int* dims, int B) {
    Ctx* x = h->ctx;
    long S = vol(dims);
    int k = kd3(h);
    conv3d_forward(x, u->z, u->in, h->w + u->w, NULL, B, u->ci, u->co, dims[0], dims[1], dims[2], k, 3, 3);
    instnorm_forward(x, u->n, u->mean, u->rstd, u->z, h->w + u->nw, h->w + u->nb, B, u->co, S, h->cfg.in_eps);
    leaky_relu_forward(x, u->a, u->n, h->cfg.slope, (long)B * u->co * S);
}
/* dout in X (clobbered); d(input) returned in Y */
static void unit_backward(Head* h, const HeadUnit* u, const int* dims, float* X, float* Y) {
    Ctx* x = h->ctx;
    int B = h->B, k = kd3(h);
    long S = vol(dims);
    leaky_relu_backward(x, Y, X, u->n, h->cfg.slope, (long)B * u->co * S);
    instnorm_backward(x, X, h->g + u->nw, h->g + u->nb, Y, u->z, h->w + u->nw, u->mean, u->rstd, B, u->co, S);
    conv3d_backward(x, Y, h->g + u->w, NULL, X, u->in, h->w + u->w, B, u->ci, u->co, dims[0], dims[1], dims[2],
                    k, 3, 3);
}
static void block_forward(Head* h, const HeadBlock* b, const int* dims, int B) {
    unit_forward(h, &b->u[0], dims, B);
    unit_forward(h, &b->u[1], dims, B);
}
/* dout in X; d(input) returned in X (Y used as scratch) */
static void block_backward(Head* h, const HeadBlock* b, const int* dims, float* X, float* Y) {
    unit_backward(h, &b->u[1], dims, X, Y);
    unit_backward(h, &b->u[0], dims, Y, X);
}

static void up_forward(Head* h, const HeadUp* u, float* out, const int* din, const int* f, int B) {
    convT_forward(h->ctx, out, u->in, h->w + u->w, NULL, B, u->ci, u->co, din[0], din[1], din[2], f[0], f[1], f[2]);
}
static void up_backward(Head* h, const HeadUp* u, float* d_in, const float* dout, const int* din, const int* f) {
    convT_backward(h->ctx, d_in, h->g + u->w, NULL, dout, u->in, h->w + u->w, h->B, u->ci, u->co, din[0], din[1],
                   din[2], f[0], f[1], f[2]);
}

/* out [B, Σch, S] = per image [part 0 | part 1 | ...]; parts [B, ch_p, S] */
static void cat_forward(Ctx* c, float* out, const float* const* parts, const int* ch, int np, int B, long S) {
    int tot = 0;
    for (int p = 0; p < np; p++) tot += ch[p];
    for (int b = 0; b < B; b++)
        for (int p = 0, off = 0; p < np; off += ch[p], p++)
            copy_d2d(c, out + ((long)b * tot + off) * S, parts[p] + (long)b * ch[p] * S, (size_t)ch[p] * S * sizeof(float));
}
/* the inverse split of one part: d_part [B, ch_p, S] from dout [B, Σch, S] */
static void cat_take(Ctx* c, float* d_part, const float* dout, int off, int chp, int tot, int B, long S) {
    for (int b = 0; b < B; b++)
        copy_d2d(c, d_part + (long)b * chp * S, dout + ((long)b * tot + off) * S, (size_t)chp * S * sizeof(float));
}

/* ---- UNETR decoder ------------------------------------------------------------------------- */

void head_decoder_build(Head* h, int K) {
    HeadDecoder* d = &h->dec;
    const VitConfig* e = &h->enc;
    int f = h->cfg.feature_size, L = h->depth;
    char nm[64], pre[48];
    memset(d, 0, sizeof *d);
    d->K = K;
    int list[3][32], len[3], n = 0;
    for (int a = 0; a < 3; a++) { len[a] = 0; }
    for (int a = 0; a < 3; a++) {
        int r = e->patch[a], k2 = 0;
        while (r % 2 == 0) { r /= 2; k2++; }
        if (r > 1) list[a][len[a]++] = r;
        for (int i = 0; i < k2; i++) list[a][len[a]++] = 2;
        if (len[a] > n) n = len[a];
    }
    CHECK(n >= 1 && n <= HEAD_MAX_STAGES, "decoder stages %d", n);
    d->n = n;
    for (int j = 0; j < n; j++)          /* coarse stage j goes from level n-j to n-1-j */
        for (int a = 0; a < 3; a++) d->fac[n - 1 - j][a] = j < len[a] ? list[a][j] : 1;
    for (int a = 0; a < 3; a++) d->dims[n][a] = e->img[a] / e->patch[a];
    for (int l = n - 1; l >= 0; l--)
        for (int a = 0; a < 3; a++) d->dims[l][a] = d->dims[l + 1][a] * d->fac[l][a];
    for (int l = 0; l <= n; l++) d->S[l] = vol(d->dims[l]);
    for (int a = 0; a < 3; a++) CHECK(d->dims[0][a] == e->img[a], "decoder levels do not reach the image size");
    for (int l = 0; l < n; l++) d->ch[l] = f << l;
    d->ch[n] = h->dim;

    long mt = (long)h->dim * d->S[n];
    /* skips: blocks ceil(kL/4), k = 1..3, entering at level n-4+k (clamped to 0) */
    d->nskip = HEAD_MAX_SKIPS;
    int nat[HEAD_MAX_STAGES] = {0};
    for (int k = 0; k < d->nskip; k++) {
        HeadSkip* s = &d->skip[k];
        int kk = k + 1, lv = n - 4 + kk;
        s->block = (kk * L + 3) / 4;
        if (s->block < 1) s->block = 1;
        s->level = lv < 0 ? 0 : lv;
        s->m = n - s->level;
        nat[s->level]++;
        int co = d->ch[s->level];
        for (int j = 0; j < s->m; j++) {
            int lvl = n - 1 - j;          /* output level of stage j */
            HeadUp* u = &s->up[j];
            u->ci = j ? co : h->dim;
            u->co = co;
            u->level = lvl;
            snprintf(nm, sizeof nm, "head.dec.skip%d.up%d.weight", kk, j);
            u->w = convT_param(h, nm, u->ci, co, d->fac[lvl]);
            upd_max(&mt, (long)co * d->S[lvl]);
            if (j) {
                snprintf(pre, sizeof pre, "head.dec.skip%d.block%d", kk, j);
                block_build(h, &s->blk[j], pre, co, co, lvl);
            }
        }
    }
    /* main path, coarse to fine */
    for (int l = n - 1; l >= 0; l--) {
        HeadUp* u = &d->up[l];
        u->ci = d->ch[l + 1];
        u->co = d->ch[l];
        u->level = l;
        snprintf(nm, sizeof nm, "head.dec.up%d.weight", l);
        u->w = convT_param(h, nm, u->ci, u->co, d->fac[l]);
        d->cin[l] = d->ch[l] * (1 + nat[l]) + (l == 0 ? e->in_chans : 0);
        snprintf(pre, sizeof pre, "head.dec.block%d", l);
        block_build(h, &d->blk[l], pre, d->cin[l], d->ch[l], l);
        upd_max(&mt, (long)d->cin[l] * d->S[l]);
    }
    float out_std = sqrtf(1.0f / d->ch[0]);
    int zero_out = h->cfg.task == HEAD_SUPERRES || (h->cfg.task == HEAD_UNDISTORT && h->cfg.output == HEAD_OUT_FIELD);
    if (h->enc.spatial_dims == 3)
        d->out_w = head_param(h, "head.dec.out.weight", zero_out ? HEAD_INIT_ZERO : out_std, 1, 5, (const int[]){K, d->ch[0], 1, 1, 1});
    else
        d->out_w = head_param(h, "head.dec.out.weight", zero_out ? HEAD_INIT_ZERO : out_std, 1, 4, (const int[]){K, d->ch[0], 1, 1});
    d->out_b = vec_param(h, "head.dec.out.bias", HEAD_INIT_ZERO, 1, K);
    upd_max(&mt, (long)K * d->S[0]);
    h->max_t = mt;
}

void head_decoder_carve(Head* h, HeadCarver* cv) {
    HeadDecoder* d = &h->dec;
    long mb = h->max_batch, gsz = mb * h->dim * d->S[d->n];
    d->grid = head_carve(cv, gsz);
    d->dgrid = head_carve(cv, gsz);
    for (int k = 0; k < d->nskip; k++) {
        HeadSkip* s = &d->skip[k];
        s->grid = head_carve(cv, gsz);
        s->dgrid = head_carve(cv, gsz);
        const float* in = s->grid;
        for (int j = 0; j < s->m; j++) {
            HeadUp* u = &s->up[j];
            long S = d->S[u->level];
            u->in = in;
            u->out = head_carve(cv, mb * u->co * S);
            in = u->out;
            if (j) {
                block_carve(h, &s->blk[j], u->out, S, cv);
                in = s->blk[j].u[1].a;
            }
        }
        s->result = in;
    }
    for (int l = d->n - 1; l >= 0; l--) {
        d->up[l].in = l == d->n - 1 ? d->grid : d->blk[l + 1].u[1].a;
        d->up[l].out = NULL;   /* scratch, set in the forward */
        d->cat[l] = head_carve(cv, mb * d->cin[l] * d->S[l]);
        block_carve(h, &d->blk[l], d->cat[l], d->S[l], cv);
    }
    d->out = head_carve(cv, mb * d->K * d->S[0]);
}

void head_decoder_forward(Head* h, const Vit* m, const float* img, int B) {
    HeadDecoder* d = &h->dec;
    Ctx* x = h->ctx;
    int n = d->n, T = h->T, D = h->dim;
    long P = d->S[n];
    tokens_to_grid_forward(x, d->grid, m->out, B, T, D, h->t0, P);
    for (int k = 0; k < d->nskip; k++) {
        HeadSkip* s = &d->skip[k];
        tokens_to_grid_forward(x, s->grid, vit_block_output(m, s->block), B, T, D, h->t0, P);
        for (int j = 0; j < s->m; j++) {
            int lvl = s->up[j].level;
            up_forward(h, &s->up[j], s->up[j].out, d->dims[lvl + 1], d->fac[lvl], B);
            if (j) block_forward(h, &s->blk[j], d->dims[lvl], B);
        }
    }
    for (int l = n - 1; l >= 0; l--) {
        float* u = h->scr[0];
        up_forward(h, &d->up[l], u, d->dims[l + 1], d->fac[l], B);
        const float* parts[2 + HEAD_MAX_SKIPS];
        int ch[2 + HEAD_MAX_SKIPS], np = 0;
        parts[np] = u; ch[np++] = d->ch[l];
        for (int k = 0; k < d->nskip; k++)
            if (d->skip[k].level == l) { parts[np] = d->skip[k].result; ch[np++] = d->ch[l]; }
        if (l == 0) { parts[np] = img; ch[np++] = h->enc.in_chans; }
        cat_forward(x, d->cat[l], parts, ch, np, B, d->S[l]);
        block_forward(h, &d->blk[l], d->dims[l], B);
    }
    const int* d0 = d->dims[0];
    conv3d_forward(x, d->out, d->blk[0].u[1].a, h->w + d->out_w, h->w + d->out_b, B, d->ch[0], d->K,
                   d0[0], d0[1], d0[2], 1, 1, 1);
}

/* skip k's backward: dout (its level's tensor) in Y; Z scratch; writes s->dgrid */
static void skip_backward(Head* h, HeadSkip* s, float* Y, float* Z) {
    HeadDecoder* d = &h->dec;
    float *cur = Y, *oth = Z;
    for (int j = s->m - 1; j >= 0; j--) {
        int lvl = s->up[j].level;
        if (j) block_backward(h, &s->blk[j], d->dims[lvl], cur, oth);
        float* din = j ? oth : s->dgrid;
        up_backward(h, &s->up[j], din, cur, d->dims[lvl + 1], d->fac[lvl]);
        float* t = cur; cur = oth; oth = t;
    }
}

void head_decoder_backward(Head* h, const float* d_dec, float* d_tokens, float** d_blocks) {
    HeadDecoder* d = &h->dec;
    Ctx* x = h->ctx;
    int B = h->B, n = d->n, T = h->T, D = h->dim;
    long P = d->S[n];
    float *X = h->scr[0], *Y = h->scr[1], *Z = h->scr[2], *R = h->scr[3];
    const int* d0 = d->dims[0];
    conv3d_backward(x, X, h->g + d->out_w, h->g + d->out_b, d_dec, d->blk[0].u[1].a, h->w + d->out_w, B,
                    d->ch[0], d->K, d0[0], d0[1], d0[2], 1, 1, 1);
    for (int l = 0; l < n; l++) {
        block_backward(h, &d->blk[l], d->dims[l], X, Y);      /* X = d cat_l */
        int tot = d->cin[l], off = d->ch[l];
        cat_take(x, R, X, 0, d->ch[l], tot, B, d->S[l]);
        for (int k = 0; k < d->nskip; k++) {
            if (d->skip[k].level != l) continue;
            cat_take(x, Y, X, off, d->ch[l], tot, B, d->S[l]);
            off += d->ch[l];
            skip_backward(h, &d->skip[k], Y, Z);
        }
        up_backward(h, &d->up[l], l == n - 1 ? d->dgrid : X, R, d->dims[l + 1], d->fac[l]);
    }
    long ntok = (long)B * T * D;
    dev_zero(x, d_tokens, ntok * sizeof(float));
    tokens_to_grid_backward(x, d_tokens, d->dgrid, B, T, D, h->t0, P);
    /* skips reading the same block: their grid gradients add up */
    for (int k = 0; k < d->nskip; k++) {
        HeadSkip* s = &d->skip[k];
        int first = 1;
        for (int i = 0; i < k; i++) first &= d->skip[i].block != s->block;
        if (!first) continue;
        for (int i = k + 1; i < d->nskip; i++)
            if (d->skip[i].block == s->block)
                add_forward(x, s->dgrid, s->dgrid, d->skip[i].dgrid, (long)B * D * P);
        float* dst = d_blocks[s->block - 1];
        CHECK(dst, "head_backward: d_blocks[%d] (block %d) is NULL", s->block - 1, s->block);
        dev_zero(x, dst, ntok * sizeof(float));
        tokens_to_grid_backward(x, dst, s->dgrid, B, T, D, h->t0, P);
    }
}

/* ---- ProViCNet pup head (conv_head8) ------------------------------------------------------ */

void head_pup_build(Head* h) {
    HeadPup* p = &h->pup;
    const VitConfig* e = &h->enc;
    int K = h->cfg.num_classes;
    memset(p, 0, sizeof *p);
    p->ch[0] = h->dim; p->ch[1] = 128; p->ch[2] = 64; p->ch[3] = K;
    for (int a = 0; a < 3; a++) p->dims[0][a] = e->img[a] / e->patch[a];
    for (int j = 0; j < 3; j++)
        for (int a = 0; a < 3; a++) {
            p->fac[j][a] = (2 << j) <= e->patch[a] ? 2 : 1;
            p->dims[j + 1][a] = p->dims[j][a] * p->fac[j][a];
        }
    for (int j = 0; j < 4; j++) p->S[j] = vol(p->dims[j]);
    p->resize = 0;
    for (int a = 0; a < 3; a++) p->resize |= p->dims[3][a] != e->img[a];
    static const char* const conv_idx[3] = {"1", "5", "9"};
    static const char* const bn_idx[2] = {"2", "6"};
    char nm[64];
    int k3 = kd3(h);
    for (int j = 0; j < 3; j++) {
        int ci = p->ch[j], co = p->ch[j + 1];
        float std = j < 2 ? sqrtf(2.0f / (ci * k3 * 9)) : sqrtf(1.0f / (ci * k3 * 9));
        snprintf(nm, sizeof nm, "head.segmentation_conv.%s.weight", conv_idx[j]);
        p->cw[j] = conv_param(h, nm, co, ci, 3, std);
        snprintf(nm, sizeof nm, "head.segmentation_conv.%s.bias", conv_idx[j]);
        p->cb[j] = vec_param(h, nm, HEAD_INIT_ZERO, 1, co);
        if (j < 2) {
            snprintf(nm, sizeof nm, "head.segmentation_conv.%s.weight", bn_idx[j]);
            p->bnw[j] = vec_param(h, nm, HEAD_INIT_ONE, 1, co);
            snprintf(nm, sizeof nm, "head.segmentation_conv.%s.bias", bn_idx[j]);
            p->bnb[j] = vec_param(h, nm, HEAD_INIT_ZERO, 1, co);
            snprintf(nm, sizeof nm, "head.segmentation_conv.%s.running_mean", bn_idx[j]);
            p->rm[j] = vec_param(h, nm, HEAD_INIT_ZERO, 0, co);
            snprintf(nm, sizeof nm, "head.segmentation_conv.%s.running_var", bn_idx[j]);
            p->rv[j] = vec_param(h, nm, HEAD_INIT_ONE, 0, co);
        }
    }
    long mt = (long)h->dim * p->S[0];
    for (int j = 0; j < 3; j++) {
        upd_max(&mt, (long)p->ch[j] * p->S[j + 1]);
        upd_max(&mt, (long)p->ch[j + 1] * p->S[j + 1]);
    }
    upd_max(&mt, (long)K * vol(e->img));
    h->max_t = mt;
}

void head_pup_carve(Head* h, HeadCarver* cv) {
    HeadPup* p = &h->pup;
    long mb = h->max_batch;
    p->grid = head_carve(cv, mb * p->ch[0] * p->S[0]);
    for (int j = 0; j < 3; j++) {
        p->u[j] = head_carve(cv, mb * p->ch[j] * p->S[j + 1]);
        p->z[j] = head_carve(cv, mb * p->ch[j + 1] * p->S[j + 1]);
        if (j < 2) {
            p->n[j] = p->a[j] = head_carve(cv, mb * p->ch[j + 1] * p->S[j + 1]);   /* ReLU in place */
            p->mean[j] = head_carve(cv, p->ch[j + 1]);
            p->rstd[j] = head_carve(cv, p->ch[j + 1]);
        }
    }
    p->out = p->resize ? head_carve(cv, mb * p->ch[3] * vol(h->enc.img)) : p->z[2];
}

/* logits [B*K volumes] resized to the image size: F.interpolate(size, bilinear/trilinear,
 * align_corners = False) through pos_resample's trilinear mode on [d, h, w, 1] grids; in 2D
 * the B*K planes are stacked as the depth axis, which same-size resampling copies exactly. */
static void pup_resize(Head* h, float* out, const float* in, int B, int backward) {
    HeadPup* p = &h->pup;
    const int* s = p->dims[3];
    const int* o = h->enc.img;
    int nvol = B * p->ch[3];
    if (h->enc.spatial_dims == 2) {
        if (backward) pos_resample_backward(h->ctx, out, in, 1, nvol, s[1], s[2], nvol, o[1], o[2], POS_TRILINEAR);
        else pos_resample_forward(h->ctx, out, in, 1, nvol, s[1], s[2], nvol, o[1], o[2], POS_TRILINEAR);
        return;
    }
    for (int i = 0; i < nvol; i++) {
        if (backward)
            pos_resample_backward(h->ctx, out + i * vol(s), in + i * vol(o), 1, s[0], s[1], s[2], o[0], o[1], o[2], POS_TRILINEAR);
        else
            pos_resample_forward(h->ctx, out + i * vol(o), in + i * vol(s), 1, s[0], s[1], s[2], o[0], o[1], o[2], POS_TRILINEAR);
    }
}

void head_pup_forward(Head* h, const Vit* m, int B) {
    HeadPup* p = &h->pup;
    Ctx* x = h->ctx;
    int k3 = kd3(h);
    tokens_to_grid_forward(x, p->grid, m->out, B, h->T, h->dim, h->t0, p->S[0]);
    const float* in = p->grid;
    for (int j = 0; j < 3; j++) {
        const int *di = p->dims[j], *f = p->fac[j], *dd = p->dims[j + 1];
        upsample_forward(x, p->u[j], in, B, p->ch[j], di[0], di[1], di[2], f[0], f[1], f[2], UPS_NEAREST);
        conv3d_forward(x, p->z[j], p->u[j], h->w + p->cw[j], h->w + p->cb[j], B, p->ch[j], p->ch[j + 1],
                       dd[0], dd[1], dd[2], k3, 3, 3);
        if (j == 2) break;
        CHECK(!h->training || (long)B * p->S[j + 1] > 1, "pup batchnorm needs more than one value per channel");
        batchnorm_forward(x, p->n[j], p->mean[j], p->rstd[j], h->w + p->rm[j], h->w + p->rv[j], p->z[j],
                          h->w + p->bnw[j], h->w + p->bnb[j], B, p->ch[j + 1], p->S[j + 1], h->cfg.bn_eps,
                          h->cfg.bn_momentum, h->training);
        leaky_relu_forward(x, p->a[j], p->n[j], 0.0f, (long)B * p->ch[j + 1] * p->S[j + 1]);
        in = p->a[j];
    }
    if (p->resize) pup_resize(h, p->out, p->z[2], B, 0);
}

void head_pup_backward(Head* h, const float* dout, float* d_tokens) {
    HeadPup* p = &h->pup;
    Ctx* x = h->ctx;
    int B = h->B, k3 = kd3(h);
    float *X = h->scr[0], *Y = h->scr[1];
    const float* g = dout;
    if (p->resize) { pup_resize(h, X, dout, B, 1); g = X; }
    for (int j = 2; j >= 0; j--) {
        const int *di = p->dims[j], *f = p->fac[j], *dd = p->dims[j + 1];
        long cnt = (long)B * p->ch[j + 1] * p->S[j + 1];
        if (j < 2) {
            leaky_relu_backward(x, Y, g, p->n[j], 0.0f, cnt);
            batchnorm_backward(x, X, h->g + p->bnw[j], h->g + p->bnb[j], Y, p->z[j], h->w + p->bnw[j],
                               p->mean[j], p->rstd[j], B, p->ch[j + 1], p->S[j + 1], h->training);
            g = X;
        }
        conv3d_backward(x, Y, h->g + p->cw[j], h->g + p->cb[j], g, p->u[j], h->w + p->cw[j], B, p->ch[j],
                        p->ch[j + 1], dd[0], dd[1], dd[2], k3, 3, 3);
        upsample_backward(x, X, Y, B, p->ch[j], di[0], di[1], di[2], f[0], f[1], f[2], UPS_NEAREST);
        g = X;
    }
    dev_zero(x, d_tokens, (long)B * h->T * h->dim * sizeof(float));
    tokens_to_grid_backward(x, d_tokens, X, B, h->T, h->dim, h->t0, p->S[0]);
}
