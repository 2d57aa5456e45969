/* engine/headmeta.h — what a checkpoint needs besides the encoder config ("model" metadata)
 * to rebuild the model for eval / predict without the run directory:
 *
 *   __metadata__ "head":  {"task": "segment", "kind": "unetr", "num_classes": 4,
 *                          "feature_size": 16, "hidden": 256, "pool": "mean", "batchnorm": 0,
 *                          "output": "image", "input_channel": 0, "pe_axis": 1,
 *                          "bn_eps": 1e-05, "bn_momentum": 0.1, "in_eps": 1e-05, "slope": 0.01}
 *   __metadata__ "input": {"channels": "t2w,hbv,adc", "mode": "volume", "context": 1}
 *                         (the loader's channel selection and input mode; optional: without it
 *                         eval infers them from the model config, see cmd_eval.c)
 *   __metadata__ "task":  the task name (also inside "head")
 *
 * Missing keys of "head" keep head_config_default(task, spatial_dims); unknown keys are
 * rejected (a typo must not silently fall back to a default). */
#ifndef VITA_HEADMETA_H
#define VITA_HEADMETA_H

#include <stddef.h>

#include "../models/head.h"

/* cfg as a JSON object string (malloc'd, the caller frees) */
char* head_config_to_json(const HeadConfig* cfg);
/* parses json into cfg (defaults for the task and spatial_dims first); 0, or 1 with err */
int head_config_from_json(HeadConfig* cfg, const char* json, int spatial_dims, char* err,
                          size_t errlen);

/* the "input" metadata: channels (comma list, "" = the model's), mode LOADER_VOLUME|SLICE,
 * context (1 | 3) */
char* input_meta_to_json(const char* channels, int mode, int context);
int input_meta_from_json(const char* json, char* channels, size_t chlen, int* mode, int* context,
                         char* err, size_t errlen);

/* loads every head.* row of h's table from a safetensors file (host -> h->w). Every row must
 * be present with the right element count: 0, or 1 with err naming the tensor. */
int head_load_weights(Head* h, const char* path, char* err, size_t errlen);

#endif
