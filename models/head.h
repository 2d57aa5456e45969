/* models/head.h — the five task heads on top of the ViT encoder, forward and backward.
 *
 * A head reads the encoder's final normed tokens m->out [B, T, dim] and, for the dense
 * decoder, the residual stream after blocks ceil(L/4), ceil(L/2), ceil(3L/4)
 * (vit_block_output), plus the input image. Its backward writes the gradients for those
 * tensors, which the caller hands to vit_backward:
 *
 *     const float* y = head_forward(&h, &m, img, B);          after vit_forward(&m, img, ..)
 *     ... loss op: d_y = dL/dy ...
 *     head_backward(&h, &m, img, d_y, h.d_tokens, h.d_blocks);
 *     vit_backward(&m, img, extra, h.d_tokens, (const float* const*)h.d_blocks, NULL);
 *
 * h.d_tokens and h.d_blocks (one entry per encoder block, non-NULL only for the blocks the
 * head reads) are head-owned buffers; callers may pass their own instead.
 *
 * Tasks and architectures (every choice stated; PAPER.md has the models):
 *  classify   pool (cls token, or mean of the patch tokens) -> [BatchNorm1d(affine=False,
 *             eps 1e-6), MAE's linear-probe norm] -> kind mlp: Linear(dim, hidden) -> ReLU ->
 *             Linear(hidden, C) (ProFound's 768->256->C), or kind linear: Linear(dim, C).
 *             Output logits [B, C]. Names head.fc1.*, head.fc2.* | head.fc.*, head.bn.running_*.
 *             Default pool: mean (works for any encoder; MAE's fine-tuning default).
 *  segment    kind unetr (3D default): the dense decoder below, K = num_classes logits.
 *             kind pup (2D default): ProViCNet's conv_head8, names as its state dict
 *             (head.segmentation_conv.N.*): 3 x [nearest upsample x2 -> conv 3x3(x3)], the first
 *             two followed by BatchNorm (affine, eps 1e-5, momentum 0.1) -> ReLU, widths
 *             dim -> 128 -> 64 -> K; conv biases on (ProViCNet trains at 448 -> 256x256 logits). Per-axis factor 2 while 2^stage <= patch,
 *             else 1 (3D works; 2D depth stays 1). When the upsampled grid is not the image
 *             size (patch 14: 32 x 8 = 256 for a 448 image; patch 16: x2 short) the logits are
 *             resized bilinearly (trilinear in 3D, align_corners = False, = F.interpolate(size=
 *             img)) to the image size, so every segment head outputs [B, K, D, H, W].
 *  superres   dense decoder -> 1 channel r; out = img[:, input_channel] + r (residual on the
 *             interpolated low-resolution input the data pipeline provides).
 *  undistort  dense decoder -> 1 channel; output image: out = decoder; output field: the
 *             decoder is a displacement u (voxels) along pe_axis and out =
 *             resample_axis(img[:, input_channel], u) (linear, border-clamped).
 *  synthesize dense decoder -> 1 channel (the target modality).
 *
 * Dense decoder (UNETR, Hatamizadeh et al. 2022 / MONAI UNETR, generalised to any patch):
 *   Each axis' patch p = 2^k * r (r odd) is split into upsampling stages, coarse to fine:
 *   r first (if r > 1), then k factors of 2; n = the most stages of any axis; an axis with
 *   fewer stages uses factor 1 in the last (finest) ones (16x32x32: D 2,2,2,2,1; H, W 2 x 5).
 *   Levels l = n (token grid) .. 0 (image); width c_l = feature_size * 2^l, c_n = dim.
 *   Main path: x_n = tokens_to_grid(final tokens); for l = n-1 .. 0:
 *     u_l = ConvTranspose(c_{l+1} -> c_l, kernel = stride = stage factors, no bias)
 *     x_l = Block([u_l | skips at level l | the input image if l = 0])
 *   Block = 2 x (conv 3x3x3 (3x3 in 2D), no bias -> InstanceNorm(affine, eps 1e-5) ->
 *   LeakyReLU 0.01) (MONAI's UnetBasicBlock). out = conv 1x1x1 (c_0 -> K, bias).
 *   Skips (MONAI's UnetrPrUpBlock): block outputs at ceil(L/4), ceil(L/2), ceil(3L/4)
 *   (names skip1..3) enter at levels n-3, n-2, n-1 (clamped to >= 0): a ConvTranspose
 *   from the grid to that level's width, then per further stage ConvTranspose + Block.
 *   The raw image (all encoder channels) is concatenated at full resolution before the last
 *   Block (UNETR runs a conv block on it first; vita saves that full-resolution block).
 *   Names: head.dec.up{l}.weight, head.dec.block{l}.conv{1,2}.weight,
 *   head.dec.block{l}.norm{1,2}.{weight,bias}, head.dec.skip{k}.up{j}.weight,
 *   head.dec.skip{k}.block{j}.*, head.dec.out.{weight,bias}.
 *
 * Init (head_init_weights, seeded): Linear weights trunc-normal(0.02), zero bias (timm);
 * conv / transposed-conv weights kaiming-normal, std sqrt(2 / fan_in) (fan_in = Ci * kernel
 * volume for conv, Ci for the non-overlapping transposed conv), zero bias; norms weight 1,
 * bias 0; BN running mean 0, var 1. The output conv of superres (residual) and of the
 * undistort field is zero, so those heads start at the identity (out = input); other output
 * convs use std sqrt(1 / fan_in).
 *
 * Memory: parameters + gradients are two buffers with one table (VitParam rows: names
 * "head.*", offsets, no_decay, trainable = 0 for BN running statistics, which live in the
 * parameter buffer so checkpoints carry them); activations + scratch one buffer sized for
 * max_batch. Nothing is allocated per step. Gradient rule as ops.h: parameter gradients
 * accumulate into h->g; d_tokens / d_blocks are written (rows the head does not read: 0).
 */
#ifndef VITA_HEAD_H
#define VITA_HEAD_H

#include "vit.h"

enum { HEAD_CLASSIFY = 0, HEAD_SEGMENT, HEAD_SUPERRES, HEAD_UNDISTORT, HEAD_SYNTHESIZE, HEAD_NTASKS };
enum { HEAD_KIND_MLP = 0, HEAD_KIND_LINEAR, HEAD_KIND_UNETR, HEAD_KIND_PUP, HEAD_NKINDS };
enum { HEAD_POOL_CLS = 0, HEAD_POOL_MEAN };
enum { HEAD_OUT_IMAGE = 0, HEAD_OUT_FIELD };

typedef struct {
    int task;                  /* HEAD_CLASSIFY .. HEAD_SYNTHESIZE */
    int kind;                  /* classify: mlp | linear; segment: unetr | pup; image tasks: unetr */
    int num_classes;           /* classify / segment; image tasks always 1 channel */
    int feature_size;          /* decoder width f (16) */
    int hidden;                /* classifier hidden width (256) */
    int pool;                  /* HEAD_POOL_CLS | HEAD_POOL_MEAN */
    int batchnorm;             /* classify: BatchNorm1d(affine=False) on the pooled features */
    int output;                /* undistort: HEAD_OUT_IMAGE | HEAD_OUT_FIELD */
    int input_channel;         /* superres residual / undistort field source channel (0) */
    int pe_axis;               /* field axis: 0 D, 1 H (default: anterior-posterior rows), 2 W */
    float bn_eps;              /* BN eps: classify 1e-6 (MAE linear probe), pup 1e-5 (PyTorch) */
    float bn_momentum;         /* 0.1 */
    float in_eps;              /* instance norm eps (1e-5) */
    float slope;               /* LeakyReLU negative slope (0.01) */
} HeadConfig;

/* defaults for a task on an encoder of spatial_dims (segment: unetr in 3D, pup in 2D) */
void head_config_default(HeadConfig* cfg, int task, int spatial_dims);
/* checks cfg against the encoder; 0, or 1 with a one-line reason naming the head.* key */
int head_config_check(const HeadConfig* cfg, const VitConfig* enc, char* err, size_t errlen);
/* names <-> enums ("classify", "segment", "superres", "undistort", "synthesize";
 * "mlp", "linear", "unetr", "pup"; "cls", "mean"; "image", "field"); -1 if unknown */
const char* head_task_name(int task);
const char* head_kind_name(int kind);
int head_task_from_name(const char* s);
int head_kind_from_name(const char* s);
int head_pool_from_name(const char* s);
int head_output_from_name(const char* s);

#define HEAD_MAX_STAGES 8
#define HEAD_MAX_SKIPS 3

/* conv (3x3x3, no bias) -> instance norm (affine) -> LeakyReLU; offsets into w / g */
typedef struct {
    int ci, co, level;
    long w, nw, nb;
    const float* in;
    float *z, *n, *a, *mean, *rstd;   /* conv out; norm out = activation (in place, n == a) */
} HeadUnit;
typedef struct { HeadUnit u[2]; } HeadBlock;
/* transposed conv into `level` (from level + 1 for the main path) */
typedef struct {
    int ci, co, level;
    long w;
    const float* in;
    float* out;
} HeadUp;
typedef struct {
    int block, level, m;       /* encoder block (1-based), target level, stages */
    HeadUp up[HEAD_MAX_STAGES];
    HeadBlock blk[HEAD_MAX_STAGES];   /* blk[j] after up[j], j >= 1 */
    float *grid, *dgrid;       /* [B, dim, P] */
    const float* result;       /* [B, c_level, S_level] */
} HeadSkip;
typedef struct {
    int n, K;                  /* stages, output channels */
    int dims[HEAD_MAX_STAGES + 1][3];
    long S[HEAD_MAX_STAGES + 1];
    int fac[HEAD_MAX_STAGES][3];      /* factors of the stage level l+1 -> l */
    int ch[HEAD_MAX_STAGES + 1];
    int cin[HEAD_MAX_STAGES];
    HeadUp up[HEAD_MAX_STAGES];
    HeadBlock blk[HEAD_MAX_STAGES];
    float* cat[HEAD_MAX_STAGES];
    int nskip;
    HeadSkip skip[HEAD_MAX_SKIPS];
    float *grid, *dgrid, *out;
    long out_w, out_b;
} HeadDecoder;

typedef struct {               /* classify */
    int t0, n;                 /* pooled token range */
    long fc1_w, fc1_b, fc2_w, fc2_b, run_mean, run_var;
    float *pooled, *bn_out, *bn_mean, *bn_rstd, *h1, *a1, *logits, *d_a, *d_b;
} HeadClassify;

typedef struct {               /* ProViCNet conv_head8 */
    int dims[4][3];            /* grid, after each upsample */
    long S[4];
    int fac[3][3];
    int ch[4];                 /* dim, 128, 64, K */
    long cw[3], cb[3], bnw[2], bnb[2], rm[2], rv[2];
    int resize;                /* final bilinear/trilinear resize to the image size */
    float *grid, *u[3], *z[3], *n[2], *a[2], *mean[2], *rstd[2], *out;
} HeadPup;

typedef struct {
    HeadConfig cfg;
    VitConfig enc;             /* the encoder it was built for */
    int dim, depth, T, P, t0;  /* t0: first patch token row */
    int out_channels;          /* C (classify) or K / 1 (dense) */
    int out_dims[3];           /* dense output D, H, W (= the image size) */
    int n_params, cap_params;
    VitParam* params;          /* host table, names "head.*" */
    float* init_std;           /* per row: > 0 normal(std); 0 zeros; -1 ones; -2 trunc-normal(.02) */
    long n_floats;
    float* w;                  /* device: parameters (+ BN running statistics) */
    float* g;                  /* device: gradients, same layout */
    int max_batch, B;
    long act_floats;
    float* acts;
    long max_t;                /* largest dense tensor per image (floats) */
    float *scr[4];             /* scratch [max_batch * max_t], dead between steps */
    float *chan, *dfield, *res;        /* image tasks: input channel, d(displacement), out */
    float* out;                /* output of the last head_forward */
    float* d_tokens;           /* [max_batch, T, dim] */
    float* d_blocks[VIT_MAX_DEPTH];
    int training;              /* BatchNorm: batch statistics + running update (1) or eval */
    HeadClassify cls;
    HeadPup pup;
    HeadDecoder dec;
    Ctx* ctx;
} Head;

/* builds the table for cfg on top of encoder m and allocates parameters + gradients (zero) */
void head_create(Head* h, Ctx* c, const HeadConfig* cfg, const Vit* m);
void head_alloc_activations(Head* h, int max_batch);
void head_free(Head* h);
void head_init_weights(Head* h, uint64_t seed);
void head_zero_grad(Head* h);
const VitParam* head_find_param(const Head* h, const char* name);
/* encoder blocks the head reads (1-based, ascending, distinct); returns the count (0..3) */
int head_skip_blocks(const Head* h, int* blocks);

/* after vit_forward(m, img, ..., B): runs the head; returns its output (device): logits
 * [B, C], segmentation logits [B, K, D, H, W] or an image [B, 1, D, H, W] */
const float* head_forward(Head* h, const Vit* m, const float* img, int B);
/* d_output: gradient of the loss w.r.t. head_forward's output. Accumulates parameter
 * gradients into h->g and writes d_tokens_out [B, T, dim] (gradient for m->out) and, for
 * each block l the head reads, d_blocks[l-1] [B, T, dim] (other entries untouched).
 * Needs the activations of the last head_forward (same B). */
void head_backward(Head* h, const Vit* m, const float* img, const float* d_output,
                   float* d_tokens_out, float** d_blocks);

/* one optimizer range per table row: weight decay wd except 1-D tensors (biases, norms);
 * BN running statistics frozen; lr scale 1. Returns the count (out has room for n_params). */
int head_opt_ranges(const Head* h, float wd, OptRange* out);
void head_print_memory(const Head* h);

/* ---- internal (models/head*.c) ------------------------------------------------------------ */
typedef struct { float* base; long n; } HeadCarver;
float* head_carve(HeadCarver* cv, long n);
long head_param(Head* h, const char* name, float init_std, int trainable, int ndim, const int* shape);
#define HEAD_INIT_ZERO 0.0f
#define HEAD_INIT_ONE (-1.0f)
#define HEAD_INIT_TRUNC02 (-2.0f)
void head_classify_build(Head* h);
void head_classify_carve(Head* h, HeadCarver* cv);
void head_classify_forward(Head* h, const Vit* m, int B);
void head_classify_backward(Head* h, const float* dlogits, float* d_tokens);
void head_decoder_build(Head* h, int K);
void head_decoder_carve(Head* h, HeadCarver* cv);
void head_decoder_forward(Head* h, const Vit* m, const float* img, int B);
void head_decoder_backward(Head* h, const float* d_dec, float* d_tokens, float** d_blocks);
void head_pup_build(Head* h);
void head_pup_carve(Head* h, HeadCarver* cv);
void head_pup_forward(Head* h, const Vit* m, int B);
void head_pup_backward(Head* h, const float* dout, float* d_tokens);

#endif
