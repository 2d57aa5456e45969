/* engine/features.h — per-layer feature extraction from the ViT encoder, shared by the
 * alignment measurement (engine/align.c) and `vita features` (engine/cmd_features.c).
 * SPEC.md §5, §6.
 *
 * Layers: 1..depth = the residual stream after that block (vit_block_output), 0 = "norm" (the
 * final normalised tokens m->out). Feature kinds, per image and layer:
 *   pooled  [1, dim]      mean over the P patch tokens (cls, registers, extra tokens excluded)
 *   tokens  [group, dim]  `group` sampled patch tokens (token_idx: patch indices 0..P-1,
 *                         rows of one image are consecutive, so a bootstrap grouped by
 *                         `group` rows resamples images)
 *   cls     [1, dim]      the cls token (models with a cls token only)
 * The l2 variant divides every row by its Euclidean norm (computed in double on the host: the
 * probe sets are small and no op is needed for it).
 *
 * Everything runs through the ops (meanpool_forward, copy_d2d) on the model's device; the
 * encoder runs in eval mode (no drop-path) in batches of m->max_batch images. */
#ifndef VITA_FEATURES_H
#define VITA_FEATURES_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "dataset.h"
#include "../models/vit.h"

enum { FEAT_POOLED = 0, FEAT_TOKENS = 1, FEAT_CLS = 2 };
/* "pooled" | "tokens" | "cls" -> FEAT_*, -1 if unknown */
int features_kind_from_name(const char* name);
const char* features_kind_name(int kind);

/* layer index (1..depth, 0 = norm) -> "3" / "norm" */
void features_layer_name(int layer, char out[8]);
/* "3,6,9,12,norm" -> layers (1..depth, 0 = norm); 0 or 1 with one line in err naming the item */
int features_parse_layers(const char* list, int depth, int* layers, int* n_layers, int max,
                          char* err, size_t errlen);

typedef struct {
    int n_layers;
    int layers[CFG_MAX_LAYERS];  /* 1..depth, 0 = norm */
    int kind;                    /* FEAT_* */
    int l2;                      /* 1: unit-norm rows */
    int group;                   /* rows per image: tokens per image (FEAT_TOKENS), else 1 */
    const int32_t* token_idx;    /* host [n_images * group] patch indices (FEAT_TOKENS) */
} FeatSpec;

/* Seeded token sample: for each of n_images images, `group` distinct patch indices in 0..P-1
 * (group <= P), ascending within an image. idx [n_images * group]. */
void features_sample_tokens(int n_images, int group, int P, uint64_t seed, int32_t* idx);

/* Checks a spec against a model: layers in range, cls kind needs a cls token, token group
 * in 1..P. 0, or 1 with one line in err. */
int features_check(const Vit* m, const FeatSpec* s, char* err, size_t errlen);

/* One batch of B <= m->max_batch images (img device [B, C, D, H, W], extra device [E, B] or
 * NULL): the rows of images i0 .. i0+B-1 into out[l] (device [rows, dim], l < n_layers).
 * No l2 normalisation here (see features_l2_rows). */
void features_batch(Vit* m, const float* img, const float* extra, int B, int i0,
                    const FeatSpec* s, float* const* out);
/* the rows of the last vit_forward's B images (features_batch without the forward) */
void features_gather(Vit* m, int B, int i0, const FeatSpec* s, float* const* out);
/* All n images of device arrays img [n, C, D, H, W] and extra [E, n] (or NULL), in batches of
 * m->max_batch, then l2 normalisation when s->l2. out[l] device [n * group, dim]. */
void features_extract(Vit* m, const float* img, const float* extra, int n, const FeatSpec* s,
                      float* const* out);
/* in place: every row of device x [rows, dim] divided by its norm (zero rows stay zero) */
void features_l2_rows(Ctx* c, float* x, long rows, int dim);

/* ---- inputs: fixed centre crops of whole cases ------------------------------------------ */
/* Which dataset channel feeds each model input sequence, and the slice context of 2D models
 * (in_chans = n_seq * context). names: comma list of dataset channel names in the model's
 * order, or NULL / "" for the model's own channel names (vc->channels); names the dataset
 * lacks give zero channels (src = -1), but at least one must exist. For a 2D model with
 * n_seq names, context = in_chans / n_seq. */
typedef struct {
    int n_seq, context;
    int src[VIT_MAX_CHANNELS];   /* dataset channel, -1 = zeros */
    char missing[256];           /* names not in the dataset ("" if none) */
} FeatChannels;
int features_channels(const Dataset* ds, const VitConfig* vc, const char* names,
                      FeatChannels* ch, char* err, size_t errlen);

/* A whole case vol [n_seq, D, H, W] -> the model input out [in_chans, img D, H, W]: the centre
 * crop of the model's img size (zero padding where the case is smaller; the loader's
 * validation crop, engine/sampler.h crop_start around dims/2). 2D models take the central
 * slice z = D/2 with `context` adjacent slices per sequence (channel c*context + t is slice
 * z - (context-1)/2 + t, clamped), as the loader's slice mode. *z_out (may be NULL): the
 * slice used (2D) or D/2. */
void features_crop_case(const float* vol, int n_seq, const int dims[3], const VitConfig* vc,
                        int context, float* out, int* z_out);

/* Cases cases[0..n) of ds -> img host [n, in_chans, D, H, W] (model img size) and, when the
 * model has extra tokens, extra host [E, n] (slice_index = z + crop_offset[0], slice_count =
 * shape_original[0]; any other extra token name is 0). 0, or 1 with err (read error). */
int features_read_inputs(Dataset* ds, const int* cases, int n, const VitConfig* vc,
                         const FeatChannels* ch, float* img, float* extra, char* err,
                         size_t errlen);

/* `vita features --weights W.safetensors --data DATA.h5 --layers 3,6,9,12,norm --out F.h5 ...`
 * (SPEC.md §1, §5); argv[0] is "features". Exit codes 0 / 1 user error / 2 internal. */
int cmd_features(int argc, char** argv);

#endif
