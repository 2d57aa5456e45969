/* models/pretext.h — pretraining objectives on top of the ViT encoder (DESIGN.md §5), so that
 * vita can build its own "foundation models": MAE and contrastive (SimCLR-style InfoNCE).
 *
 *  mae          (He et al. 2022; ProFound's 3D variant) per image a seeded random subset of
 *               round(P * (1 - mask_ratio)) patch tokens is kept (same count for every image);
 *               the encoder runs on [cls | registers | kept patches] only (pos_embed added
 *               before the gather; extra tokens are not supported with mae); decoder_embed
 *               Linear(dim -> dec_dim); mask_token fills the dropped positions; tokens are put
 *               back in patch order; decoder_pos_embed (fixed sin-cos, [1, ncls + P, dec_dim]);
 *               dec_depth pre-norm transformer blocks (dec_heads, mlp_ratio 4, qkv bias) named
 *               decoder_blocks.N.* as MAE; decoder_norm; decoder_pred Linear(dec_dim -> Kp).
 *               Loss = mean over masked patches of the mean over the Kp pixels of (pred -
 *               target)^2, target = patchify(img) (the patch-embedding pixel order), with
 *               norm_pix_loss: each target patch normalised by its mean and (unbiased var +
 *               1e-6)^0.5 as MAE.
 *  contrastive  two views per image (the caller supplies them, augmented with different
 *               seeds: img holds 2B images, view 1 of images 0..B-1 then view 2); pooled
 *               feature (mean of the patch tokens, or cls) -> projection MLP proj.fc1
 *               Linear(dim -> proj_hidden) -> GELU -> proj.fc2 Linear(proj_hidden -> proj_dim)
 *               -> L2 normalisation -> NT-Xent / InfoNCE over the 2B rows with temperature tau:
 *               loss = mean_i -log( exp(s(i, pos(i))/tau) / sum_{j != i} exp(s(i, j)/tau) ),
 *               pos(i) = i +- B, s = cosine similarity.
 *               shuffle_pairs (a negative control): the second views are permuted across the
 *               batch by a seeded derangement, so "positives" come from different images.
 *
 * Memory: every objective parameter (MAE decoder incl. its blocks, or the projection MLP) lives
 * in one parameter buffer w with one gradient buffer g and one table (VitParam rows, layer_id 0,
 * no_decay for 1-D tensors, mask_token and decoder_pos_embed; the fixed decoder_pos_embed
 * frozen, mask_token trained as in MAE), so one AdamW covers them; the encoder keeps its own
 * buffers. Activations are allocated once for max_batch images (contrastive: 2 * max_batch
 * views; pretext_alloc_activations also sizes the encoder's activations). Nothing is allocated
 * per step. Gradient rule as ops.h: parameter gradients accumulate (encoder grads into enc->g,
 * objective grads into p->g).
 */
#ifndef VITA_PRETEXT_H
#define VITA_PRETEXT_H

#include "vit.h"

enum { PRETEXT_MAE = 0, PRETEXT_CONTRASTIVE = 1 };

typedef struct {
    int objective;             /* PRETEXT_MAE | PRETEXT_CONTRASTIVE */
    /* mae */
    float mask_ratio;          /* 0.75 */
    int norm_pix_loss;         /* 1 (MAE's default for its released models) */
    int dec_dim, dec_depth, dec_heads;   /* 512, 8, 16 (MAE); ProFound 384, 8, 16 */
    /* contrastive */
    float temperature;         /* 0.1 */
    int proj_hidden, proj_dim; /* 2048, 128 (SimCLR) */
    int pool;                  /* HEAD_POOL_MEAN (0 = cls, 1 = mean; as head.h) */
    int shuffle_pairs;         /* negative control, 0 */
} PretextConfig;

typedef struct {
    PretextConfig cfg;
    Ctx* ctx;
    Vit* enc;                  /* borrowed */
    int n_params;
    VitParam* params;          /* host table, names as above */
    long n_floats;
    float *w, *g;              /* device */
    int max_batch, B;
    double last_loss;
    void* priv;                /* objective internals (activations, decoder, index buffers) */
} Pretext;

void pretext_config_default(PretextConfig* cfg, int objective);
/* "mae" | "contrastive" -> PRETEXT_*, -1 if unknown */
int pretext_objective_from_name(const char* s);
const char* pretext_objective_name(int objective);
/* 0, or 1 with one line in err naming the field (e.g. "pretrain.mask_ratio: must be in (0, 1)") */
int pretext_config_check(const PretextConfig* cfg, const VitConfig* enc, char* err, size_t errlen);

void pretext_create(Pretext* p, Ctx* c, const PretextConfig* cfg, Vit* enc);
void pretext_alloc_activations(Pretext* p, int max_batch);
void pretext_init_weights(Pretext* p, uint64_t seed);
void pretext_zero_grad(Pretext* p);
void pretext_free(Pretext* p);
const VitParam* pretext_find_param(const Pretext* p, const char* name);
/* one range per parameter (frozen ones marked), weight decay wd except no_decay rows */
int pretext_opt_ranges(const Pretext* p, float wd, OptRange* out);

/* One loss evaluation in training mode (drop-path as configured on the encoder). img: mae
 * [B, C, D, H, W]; contrastive [2B, C, D, H, W] (views as above). The mask (mae) and the
 * shuffle permutation (contrastive) come from rng_stream(seed, counter): the same (seed,
 * counter) gives the same loss bit-for-bit. Returns the loss (copied to the host). */
double pretext_forward(Pretext* p, const float* img, int B, uint64_t seed, uint64_t counter);
/* backward of the last pretext_forward, loss scaled by `scale` (gradient accumulation):
 * accumulates into p->enc->g and p->g */
void pretext_backward(Pretext* p, const float* img, float scale);
/* the same loss without gradients or drop-path (validation), same (seed, counter) rule */
double pretext_eval(Pretext* p, const float* img, int B, uint64_t seed, uint64_t counter);
/* Tests and oracles: the following forwards use this draw instead of (seed, counter) — mae:
 * perm int32 [B, P] (host; per image a permutation of 0..P-1, its first round(P (1 -
 * mask_ratio)) entries kept), contrastive: pos int32 [2B] (host; the positive of each row).
 * Only for that B; NULL returns to seeded draws. */
void pretext_fix_draw(Pretext* p, const int32_t* idx, int B);

#endif
