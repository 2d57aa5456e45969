/* models/vit.h — the ViT encoder, 2D or 3D, forward and backward (timm semantics).
 *
 * tokens = [cls? | registers (R) | extra tokens (E) | patches (P)], T = ncls + R + E + P.
 * pos_embed [1, ncls + P, dim] covers cls and patches only (timm/MAE/DINOv2 convention);
 * registers and extra tokens get no positional embedding. Extra tokens are Linear(1, dim)
 * of one scalar per image each (ProViCNet's slice index / slice count).
 * Block: x += dp(ls1(proj(attn(norm1(x))))); x += dp(ls2(fc2(gelu(fc1(norm2(x)))))).
 * Final LayerNorm over all tokens. Layer names (SPEC.md §6): block l (1..depth) output is
 * the residual stream after block l; "norm" is the final normalised tokens.
 *
 * Memory: parameters and gradients are two allocations with the same layout (the table
 * below), activations one more, sized for a maximum batch; nothing is allocated per step.
 */
#ifndef VITA_VIT_H
#define VITA_VIT_H

#include "../kernels/ops.h"
#include "../engine/optim.h"

#define VIT_MAX_DEPTH 48
#define VIT_MAX_CHANNELS 8
#define VIT_MAX_EXTRA 4

enum { VIT_POS_LEARNED = 0, VIT_POS_SINCOS = 1 };

typedef struct {
    char preset[32];
    int spatial_dims;          /* 2 or 3 */
    int img[3];                /* D, H, W (D = 1 for 2D) */
    int patch[3];              /* pd, ph, pw (pd = 1 for 2D) */
    int in_chans;
    char channels[VIT_MAX_CHANNELS][16];   /* names of the input channels, in_chans of them */
    int dim, depth, heads;
    float mlp_ratio;
    int qkv_bias;
    float ln_eps;
    int cls_token;
    int num_registers;
    int num_extra;
    char extra_tokens[VIT_MAX_EXTRA][32];
    int pos_embed;             /* VIT_POS_LEARNED | VIT_POS_SINCOS (fixed, not trained) */
    float layerscale_init;     /* 0 = no LayerScale */
    float drop_path;           /* max stochastic-depth rate, linear over depth as timm */
} VitConfig;

/* fills cfg from a preset name; returns 0, or 1 if unknown (names listed in the message) */
int vit_preset(VitConfig* cfg, const char* name);
/* checks the config; returns 0 or fills err with a one-line reason naming the field */
int vit_config_check(const VitConfig* cfg, char* err, size_t errlen);
/* the config as a JSON object string (malloc'd) and back (safetensors metadata "model") */
char* vit_config_to_json(const VitConfig* cfg);
int vit_config_from_json(VitConfig* cfg, const char* json, char* err, size_t errlen);

typedef struct {
    char name[64];             /* timm's name, e.g. blocks.3.attn.qkv.weight */
    int ndim;
    int shape[5];
    long numel;
    long offset;               /* floats from the start of the parameter buffer */
    int layer_id;              /* layer-wise lr decay: stem 0, block i -> i+1, norm depth+1 */
    int no_decay;              /* 1-D params, pos_embed, cls/register tokens */
    int trainable;             /* 0 for the fixed sin-cos pos_embed */
} VitParam;

typedef struct {               /* device pointers into one parameter-shaped buffer */
    float *norm1_w, *norm1_b, *qkv_w, *qkv_b, *proj_w, *proj_b, *ls1;
    float *norm2_w, *norm2_b, *fc1_w, *fc1_b, *fc2_w, *fc2_b, *ls2;
} VitBlockTensors;

typedef struct {
    float *patch_w, *patch_b, *cls, *reg, *pos;
    float *extra_w[VIT_MAX_EXTRA], *extra_b[VIT_MAX_EXTRA];
    VitBlockTensors blocks[VIT_MAX_DEPTH];
    float *norm_w, *norm_b;
} VitTensors;

typedef struct {               /* saved activations of one block */
    float *ln1, *ln1_mean, *ln1_rstd, *qkv, *att, *lse, *proj;
    float *x_mid, *ln2, *ln2_mean, *ln2_rstd, *fc1, *fc2, *x_out;
} VitBlockActs;   /* proj, fc2 only with LayerScale; GELU(fc1) is recomputed in backward */

typedef struct {
    VitConfig cfg;
    int grid[3];               /* patches per axis */
    int P, T, ncls, hidden, head_dim, Kp;   /* Kp = in_chans * patch volume */
    int n_params;
    VitParam* params;          /* host table */
    long n_floats;             /* parameter count (floats) */
    float* w;                  /* device: parameters */
    float* g;                  /* device: gradients (same layout), zeroed by vit_zero_grad */
    VitTensors tw, tg;         /* named views of w and g */
    /* activations, for up to max_batch images */
    int max_batch, B;
    long act_floats, scratch_floats;
    float* acts;
    float *patches, *pe, *extra, *x0, *out, *out_mean, *out_rstd;
    VitBlockActs blk[VIT_MAX_DEPTH];
    float* dp_scale;           /* [depth][2][max_batch] drop-path scales, device */
    float* dp_host;            /* host staging for dp_scale (drawn on the host, copied once) */
    /* scratch (device), shared by all blocks, dead between steps:
     * gelu_buf [N, hidden] GELU(fc1) (forward, and recomputed in backward); d_res, d_a, d_b
     * [N, dim]; d_wide [N, max(hidden, 3 dim)] (MLP then attention branch gradients) */
    float *gelu_buf, *d_res, *d_a, *d_b, *d_wide;
    /* the last forward: tokens per image (T, or ncls + R + n_keep with MAE masking), kept
     * patch count (0 = unmasked) and the input of block 0 (x0, or the stack's caller input) */
    int Tr, n_keep;
    const float* xin0;
    /* stack mode (vit_create_stack): blocks + final norm only, parameters borrowed */
    int stack_only;
    char blk_prefix[24], norm_prefix[24];   /* "blocks." / "norm." by default */
    int training;              /* drop-path active */
    uint64_t dp_seed;          /* drop-path RNG stream position */
    uint64_t dp_counter;
    Ctx* ctx;
} Vit;

/* appends one row to a parameter table (cap rows) at offset *n_floats, which grows by numel
 * rounded up to 16 floats (64-byte alignment); trainable = 1. Shared by the encoder and the
 * pretraining objectives' tables. */
VitParam* vit_param_add(VitParam* table, int* n_params, int cap, long* n_floats, const char* name,
                        int layer_id, int no_decay, int ndim, const int* shape);
/* fixed sin-cos embedding [ncls + prod(grid), dim] (MAE's 2D/3D get_sincos_pos_embed; cls rows
 * zero): dim split into one part per spatial axis, (z, y, x) for 3D, (y, x) for 2D, each
 * [sin(pos w_k), cos(pos w_k)], w_k = 10000^(-k / (part / 2)), part = the largest even number
 * <= dim / spatial_dims. When dim is not a multiple of 2 * spatial_dims (e.g. MAE's 512-wide
 * decoder in 3D) the last dim - spatial_dims * part columns stay 0. dim >= 2 * spatial_dims. */
void vit_sincos_pos(float* pos, int spatial_dims, const int grid[3], int ncls, int dim);

/* builds the parameter table and allocates parameters + gradients (zeroed) */
void vit_create(Vit* m, Ctx* c, const VitConfig* cfg);
/* allocates activations and scratch for batches of up to max_batch images */
void vit_alloc_activations(Vit* m, int max_batch);
void vit_free(Vit* m);
/* seeded timm-style init: trunc-normal(0.02) weights and tokens, zero biases, unit norms,
 * LayerScale = layerscale_init, sin-cos pos_embed when configured */
void vit_init_weights(Vit* m, uint64_t seed);
const VitParam* vit_find_param(const Vit* m, const char* name);

/* img [B, C, D, H, W] (device), extra_vals [E, B] (device; NULL when E = 0).
 * After it, m->out [B, T, dim] holds the final normed tokens and vit_block_output(m, l)
 * the residual stream after block l (1-based). */
void vit_forward(Vit* m, const float* img, const float* extra_vals, int B);
const float* vit_block_output(const Vit* m, int l);
/* d_out [B, T, dim]: gradient of the loss w.r.t. the final normed tokens (may be NULL);
 * d_blocks[l-1] (may be NULL, or entries NULL): extra gradient w.r.t. block l's output;
 * d_img (may be NULL): written with the input gradient (the saved patch rows are
 * overwritten in the process, so call vit_forward again before another backward). Parameter grads accumulate into m->g. */
void vit_backward(Vit* m, const float* img, const float* extra_vals, const float* d_out,
                  const float* const* d_blocks, float* d_img);
void vit_zero_grad(Vit* m);

/* ---- MAE masking (models/pretext.c) ------------------------------------------------------
 * perm int32 [B, P] (device): per image a permutation of the patches, the first n_keep kept.
 * pos_embed is added to all patch tokens, the kept ones are gathered, and the blocks run on
 * [cls | registers | kept patches] (Tr = ncls + R + n_keep tokens); m->out is [B, Tr, dim].
 * Not with extra tokens. The backward takes d_out [B, Tr, dim] and scatters the patch-token
 * gradients back (masked patches get none); parameter grads accumulate into m->g. */
void vit_forward_masked(Vit* m, const float* img, const int32_t* perm, int n_keep, int B);
void vit_backward_masked(Vit* m, const float* d_out, const int32_t* perm);

/* ---- a stack of transformer blocks + final LayerNorm on given tokens (the MAE decoder) ---
 * Same block code as the encoder. cfg gives dim, depth, heads, mlp_ratio, qkv_bias, ln_eps,
 * layerscale_init, drop_path (the image/patch/token fields are ignored); T tokens per image.
 * The table names are blk_prefix "N.norm1.weight" ... and norm_prefix "weight"/"bias" (e.g.
 * "decoder_blocks.", "decoder_norm."); offsets start at 0. No parameter memory is allocated:
 * vit_bind points w/g at the caller's buffers (e.g. a slice of a bigger table's buffer), which
 * the caller keeps and frees. vit_alloc_activations and vit_free work as for the encoder. */
void vit_create_stack(Vit* m, Ctx* c, const VitConfig* cfg, int T, const char* blk_prefix,
                      const char* norm_prefix);
void vit_bind(Vit* m, float* w, float* g);
/* x [B, T, dim] device, must stay unchanged until the backward; m->out gets the normed tokens */
void vit_stack_forward(Vit* m, const float* x, int B);
/* d_out [B, T, dim]; returns d(x) (device scratch of m, valid until m's next forward/backward) */
const float* vit_stack_backward(Vit* m, const float* d_out);

/* One optimizer range per parameter (out has room for m->n_params): lr scale
 * layer_decay^(depth + 1 - layer_id) (timm's layer-wise decay: stem 0, block i -> i + 1,
 * final norm depth + 1 -> scale 1), weight decay wd except 1-D params, pos_embed and
 * cls/register tokens (0); the fixed sin-cos pos_embed is frozen. Returns the count. */
int vit_opt_ranges(const Vit* m, float wd, float layer_decay, OptRange* out);
/* one range per row of any parameter table: lr scale 1, weight decay wd except no_decay rows,
 * frozen = !trainable (vit_opt_ranges adds the layer decay; pretext uses it as is) */
int vit_table_ranges(const VitParam* table, int n, float wd, OptRange* out);

/* bytes held, for the memory report printed before the first step */
typedef struct { size_t params, grads, optimizer, activations, scratch; } VitBytes;
VitBytes vit_bytes(const Vit* m);
/* prints parameter, gradient, optimizer and activation bytes for the allocated batch */
void vit_print_memory(const Vit* m);

#endif
