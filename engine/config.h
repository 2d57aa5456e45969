/* engine/config.h — the run configuration (SPEC.md §7): a typed struct filled from presets,
 * then the YAML file, then `--set a.b=c` overrides, validated against a schema table.
 * Unknown keys are rejected naming the closest valid key; bad values naming the allowed ones;
 * values of features not built yet are rejected saying so. config_to_yaml emits the fully
 * resolved config (every key, YAML 1.2 scalars such as 1.0e-04) that config_load reads back
 * to the same struct. */
#ifndef VITA_CONFIG_H
#define VITA_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "../models/vit.h"
#include "../models/head.h"
#include "../models/pretext.h"
#include "mmd.h"

#define CFG_STR 256
#define CFG_MAX_LIST 16
#define CFG_MAX_LAYERS 16

typedef struct {
    /* run */
    char run_name[CFG_STR], run_out[CFG_STR];
    uint64_t seed;
    int deterministic;
    char device[16];                   /* cpu | cuda | auto */
    int overwrite;
    /* model: the encoder (presets expand into it first) + weights */
    char model_preset[32];
    char model_weights[CFG_STR];       /* "" = scratch */
    int load_head;                     /* 1: a same-task head in model.weights is loaded too */
    VitConfig vit;
    /* task */
    int task;                          /* HEAD_CLASSIFY ... */
    HeadConfig head;
    char loss_kind[16];                /* classify: ce | focal; segment: dice_ce; image: l1 | mse */
    int n_class_weights;
    float class_weights[CFG_MAX_LIST];
    float label_smoothing, focal_gamma;
    int dice_include_background;       /* false (stated in the log) */
    float w_ce, w_dice;                /* 1, 1 */
    char metric[16];                   /* auroc | dice | psnr | ssim | ... (main metric) */
    /* data */
    char data_path[CFG_STR];
    int fold;                          /* -1 = /split */
    int input_mode;                    /* LOADER_VOLUME | LOADER_SLICE */
    int input_context;                 /* 1 | 3 */
    int crop[3];                       /* default = model img_size */
    double pos_fraction;
    int augment;                       /* on/off (the defaults of engine/augment.h) */
    int batch, workers;
    char channels[128];                /* "" = the model's channels */
    /* train */
    int epochs;
    int steps_per_epoch;               /* 0 = one pass over the training split */
    double lr, min_lr, warmup_epochs, weight_decay, layer_decay;
    int mode;                          /* TRAIN_FULL | TRAIN_LINEAR_PROBE | TRAIN_FREEZE_FIRST_K */
    int freeze_k;
    double clip_grad;
    int accum_steps;
    double drop_path;                  /* < 0: the model's */
    char precision[8];                 /* auto | fp32 | bf16 */
    int checkpoint_every, keep_checkpoints, early_stop_patience, skip_nonfinite;
    /* eval */
    double sw_overlap;                 /* 0.5 */
    char sw_weighting[16];             /* gaussian | constant */
    /* align */
    int n_align_layers;
    int align_layers[CFG_MAX_LAYERS];  /* 1..depth, 0 = "norm" */
    char align_feature[16];            /* pooled | tokens | cls */
    char align_normalize[8];           /* none | l2 */
    int probe_split;                   /* SPLIT_VAL default */
    int probe_n_images, probe_n_tokens;
    int n_estimators;
    int estimators[EST_COUNT];         /* EST_* */
    int bw_rule;                       /* MMD_BW_* */
    int n_scales;
    double scales[MMD_MAX_S];
    int permutations, align_every;
    /* log, dist */
    char log_swmr[8];                  /* auto | on | off */
    char dist_backend[16];             /* none */
    /* pretrain (`vita pretrain` only; config_load rejects these keys, config_load_pretrain
     * rejects the fine-tuning-only ones: task.*, eval.*, align.*, train.layer_decay, .mode,
     * .freeze_k, .early_stop_patience, .skip_nonfinite) */
    int pretrain;                      /* 1: loaded by config_load_pretrain */
    PretextConfig pt;                  /* objective, mask_ratio, decoder, temperature, proj ... */
} Config;

enum { TRAIN_FULL = 0, TRAIN_LINEAR_PROBE = 1, TRAIN_FREEZE_FIRST_K = 2 };

/* defaults (SPEC.md §7) */
void config_default(Config* cfg);
/* preset -> file -> sets ("a.b=c" strings); path may be NULL (defaults + sets only).
 * Returns 0, or 1 with one line in err naming the file, the key and the fix. */
int config_load(Config* cfg, const char* path, const char* const* sets, int n_sets, char* err,
                size_t errlen);
/* the same for `vita pretrain`: the pretrain section is allowed (and emitted), keys only
 * fine-tuning uses are rejected naming the key, train.epochs may be 0 (the initial encoder) */
int config_load_pretrain(Config* cfg, const char* path, const char* const* sets, int n_sets,
                         char* err, size_t errlen);
/* the resolved config as YAML (malloc'd), every key, in schema order (the pretrain section only
 * for a pretrain config, the fine-tuning-only sections only for a fine-tuning one) */
char* config_to_yaml(const Config* cfg);

#endif
