/* engine/align.h — alignment measurement during fine-tuning (DESIGN.md §6, SPEC.md §4, §6).
 * At epoch 0 the frozen initial encoder runs on the probe set (fixed crops of the probe split)
 * and, per layer of align.layers, the features are kept (pooled per image, or a seeded sample
 * of token features, or cls); bandwidths are fixed then (the configured rule on the initial
 * features, recorded) and the noise floor (the estimator between two disjoint halves of the
 * probe set under the initial encoder) computed once. Every align.every epochs the current
 * encoder's features on the same inputs are compared with the initial ones (paired) by the
 * configured estimators through mmd_compute, plus weight_dist per block ‖θ−θ0‖/‖θ0‖. */
#ifndef VITA_ALIGN_H
#define VITA_ALIGN_H

#include "config.h"
#include "mmd.h"
#include "../models/vit.h"

typedef struct {
    const Config* cfg;
    Ctx* ctx;
    int n_layers;
    int layers[CFG_MAX_LAYERS];        /* 1..depth, 0 = norm */
    char layer_names[CFG_MAX_LAYERS][8];
    int n_images;                      /* probe images */
    int rows;                          /* feature rows per layer (images, or sampled tokens) */
    int group;                         /* rows per image (tokens) or 1 */
    int dim;
    float* probe_img;                  /* device [n_images, C, D, H, W] fixed probe inputs */
    float* probe_extra;                /* device [E, n_images] or NULL */
    float** feat0;                     /* device [n_layers][rows, dim] initial features */
    float** feat;                      /* device [n_layers][rows, dim] current */
    int32_t* token_idx;                /* host [rows] sampled token indices (tokens feature) */
    float* w0;                         /* device copy of the initial encoder parameters */
    double sigma[CFG_MAX_LAYERS];      /* fixed σ_base per layer */
    double noise_floor[CFG_MAX_LAYERS];
    MmdConfig mcfg;
    MmdResult res[CFG_MAX_LAYERS];     /* the last align_measure's full results per layer
                                          (p-values with permutations, per-bandwidth values) */
} Align;

/* Token features: group = clamp(probe_n_tokens / n_images, 1, P) patch tokens per image,
 * sampled by features_sample_tokens(n_images, group, P, cfg->seed) (features.h), so
 * `vita features --tokens group --seed S` draws the same tokens.
 * probe inputs: img host [n, C, D, H, W], extra host [E, n] or NULL. Runs the encoder m (its
 * current weights = the initial ones) to collect feat0, fixes σ per layer, computes the
 * noise floor. 0, or 1 with err. */
int align_init(Align* a, const Config* cfg, Ctx* c, Vit* m, const float* img, const float* extra,
               int n_images, char* err, size_t errlen);
/* current features and estimators: est out [n_est][n_layers] (cfg->estimators order), wd
 * [n_layers] weight distance of the block (norm layer: the final norm's parameters) */
int align_measure(Align* a, Vit* m, double* est, double* wd, char* err, size_t errlen);
void align_free(Align* a);

#endif
