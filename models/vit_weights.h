/* models/vit_weights.h — ViT weights in and out of safetensors (timm names). */
#ifndef VITA_VIT_WEIGHTS_H
#define VITA_VIT_WEIGHTS_H

#include "vit.h"

#ifndef VITA_VERSION
#define VITA_VERSION "0.1.0"
#endif

typedef struct { int loaded, missing, unexpected, resized; } VitLoadReport;

/* loads every parameter found in the file into m->w; returns 0, or 1 after printing a one-line
 * error (unreadable file, a shape mismatch that is not a resizable pos_embed grid) */
int vit_load_weights(Vit* m, const char* path, int verbose, VitLoadReport* rep);
/* reads the "model" config JSON from a vita safetensors file's metadata */
int vit_config_from_weights(VitConfig* cfg, const char* path);
/* writes every parameter (F32) + metadata vita_version, model and the extra (key, value) pairs */
int vit_save_weights(const Vit* m, const char* path, const char* const* meta, int n_meta);

#endif
