/* engine/pretrain.h — the pretraining loop behind `vita pretrain` (SPEC.md §1, §4; DESIGN.md §5):
 * the encoder learns a pretext objective (models/pretext.h: MAE or contrastive) on unlabelled
 * images and is written as a foundation-model checkpoint that `vita train` loads as
 * model.weights.
 *
 * RUN_DIR = run.out/run.name gets config.yaml (the resolved pretrain config), log.h5 (format
 * vita-log; attrs task "pretrain-<objective>", objective, pretext_config; /steps loss, lr (one
 * group), grad_norm; /epochs train_loss, val_loss, val_metric = val_loss, lower is better),
 * checkpoints/step_XXXXXXXX.{safetensors,state} (encoder + objective weights, AdamW moments,
 * progress; checkpoint.h), and at the end encoder.safetensors: the encoder only, timm names,
 * metadata vita_version, model, input, objective, pretext, step. train.epochs = 0 writes the
 * freshly initialised encoder (the "random pretrained" negative control) after logging the
 * epoch-0 validation loss.
 *
 * Data: the training split plus the probe-only split (3); all cases, labels unused. Seeded
 * augmentation as fine-tuning; contrastive takes two views per image from two loaders with the
 * same case order and independent draws (loader.h `view`). Validation: the val split, the
 * pretext loss with fixed (seed, batch index) masks and views (the val loaders restart at their
 * epoch 0 every time), so the curve is comparable across epochs; epoch 0 = before training.
 *
 * Steps: accum_steps micro-batches (loss scaled 1/accum_steps; the MAE masks / shuffles of
 * micro-batch k of step s come from counter s * accum_steps + k), global grad clipping over
 * encoder + objective, AdamW (no layer decay; no weight decay on 1-D tensors, pos_embed, tokens)
 * with train_lr's warmup + cosine per step. SIGTERM / SIGUSR1 / first SIGINT: finish the step,
 * checkpoint, exit 75; --resume continues bit-identically with run.deterministic: true. */
#ifndef VITA_PRETRAIN_H
#define VITA_PRETRAIN_H

#include "train.h"

/* Runs (or resumes) one pretraining run of cfg (loaded by config_load_pretrain). Options and
 * the exit code as train_run. */
int pretrain_run(const Config* cfg, const TrainOptions* opt);

#endif
