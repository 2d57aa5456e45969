/* models/vit_config.c — ViT presets (SPEC.md §7), validation, and the JSON form of the
 * config stored in checkpoint metadata ("model"). */
#include "vit.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

static void set_channels(VitConfig* c, const char* const* names, int n) {
    c->in_chans = n;
    for (int i = 0; i < n; i++) snprintf(c->channels[i], sizeof c->channels[i], "%s", names[i]);
}

static void base_2d(VitConfig* c, int img, int patch, int dim, int depth, int heads) {
    c->spatial_dims = 2;
    c->img[0] = 1; c->img[1] = img; c->img[2] = img;
    c->patch[0] = 1; c->patch[1] = patch; c->patch[2] = patch;
    c->dim = dim; c->depth = depth; c->heads = heads;
}

int vit_preset(VitConfig* c, const char* name) {
    static const char* const mri[] = {"t2w", "adc", "hbv"};
    static const char* const profound[] = {"t2w", "hbv", "adc"};
    static const char* const slices[] = {"t2w_prev", "t2w", "t2w_next"};
    static const char* const rgb[] = {"r", "g", "b"};
    memset(c, 0, sizeof *c);
    c->mlp_ratio = 4.0f;
    c->qkv_bias = 1;
    c->ln_eps = 1e-6f;
    c->cls_token = 1;
    c->pos_embed = VIT_POS_LEARNED;
    if (!strcmp(name, "vit-tiny-3d")) {
        c->spatial_dims = 3;
        c->img[0] = 32; c->img[1] = 64; c->img[2] = 64;
        c->patch[0] = 8; c->patch[1] = 16; c->patch[2] = 16;
        c->dim = 128; c->depth = 4; c->heads = 4;
        set_channels(c, mri, 3);
    } else if (!strcmp(name, "vit-s16")) {
        base_2d(c, 224, 16, 384, 12, 6);
        set_channels(c, rgb, 3);
    } else if (!strcmp(name, "vit-b16")) {
        base_2d(c, 224, 16, 768, 12, 12);
        set_channels(c, rgb, 3);
    } else if (!strcmp(name, "profound-vit-b")) {
        c->spatial_dims = 3;
        c->img[0] = 64; c->img[1] = 256; c->img[2] = 256;
        c->patch[0] = 16; c->patch[1] = 32; c->patch[2] = 32;
        c->dim = 768; c->depth = 12; c->heads = 12;
        c->pos_embed = VIT_POS_SINCOS;
        set_channels(c, profound, 3);
    } else if (!strcmp(name, "provicnet-vit-s14")) {
        base_2d(c, 448, 14, 384, 12, 6);
        c->num_registers = 4;
        c->layerscale_init = 1e-5f;
        c->num_extra = 2;
        snprintf(c->extra_tokens[0], sizeof c->extra_tokens[0], "slice_index");
        snprintf(c->extra_tokens[1], sizeof c->extra_tokens[1], "slice_count");
        set_channels(c, slices, 3);
    } else {
        return 1;
    }
    snprintf(c->preset, sizeof c->preset, "%s", name);
    return 0;
}

#define CFG_ERR(...) do { snprintf(err, errlen, __VA_ARGS__); return 1; } while (0)

int vit_config_check(const VitConfig* c, char* err, size_t errlen) {
    if (c->spatial_dims != 2 && c->spatial_dims != 3)
        CFG_ERR("model.spatial_dims = %d: must be 2 or 3", c->spatial_dims);
    if (c->spatial_dims == 2 && (c->img[0] != 1 || c->patch[0] != 1))
        CFG_ERR("model.img_size/patch: a 2D model has depth 1 (got img D=%d, patch D=%d)",
                c->img[0], c->patch[0]);
    for (int a = 0; a < 3; a++) {
        if (c->patch[a] <= 0 || c->img[a] <= 0)
            CFG_ERR("model.img_size/patch: sizes must be positive (axis %d: img %d, patch %d)",
                    a, c->img[a], c->patch[a]);
        if (c->img[a] % c->patch[a])
            CFG_ERR("model.img_size: axis %d size %d is not a multiple of model.patch %d; "
                    "choose an img_size divisible by the patch", a, c->img[a], c->patch[a]);
    }
    if (c->in_chans < 1 || c->in_chans > VIT_MAX_CHANNELS)
        CFG_ERR("model.in_chans = %d: must be 1..%d", c->in_chans, VIT_MAX_CHANNELS);
    if (c->dim <= 0 || c->heads <= 0 || c->dim % c->heads)
        CFG_ERR("model.dim = %d must be a positive multiple of model.heads = %d", c->dim, c->heads);
    if (c->depth < 1 || c->depth > VIT_MAX_DEPTH)
        CFG_ERR("model.depth = %d: must be 1..%d", c->depth, VIT_MAX_DEPTH);
    if (!(c->mlp_ratio > 0)) CFG_ERR("model.mlp_ratio = %g: must be > 0", c->mlp_ratio);
    if (!(c->ln_eps > 0)) CFG_ERR("model.ln_eps = %g: must be > 0", c->ln_eps);
    if (c->num_registers < 0 || c->num_registers > 64)
        CFG_ERR("model.num_registers = %d: must be 0..64", c->num_registers);
    if (c->num_extra < 0 || c->num_extra > VIT_MAX_EXTRA)
        CFG_ERR("model.extra_tokens: at most %d extra tokens", VIT_MAX_EXTRA);
    if (c->pos_embed == VIT_POS_SINCOS && c->dim % (2 * c->spatial_dims))
        CFG_ERR("model.pos_embed = sincos needs model.dim divisible by %d (got %d)",
                2 * c->spatial_dims, c->dim);
    if (c->drop_path < 0 || c->drop_path >= 1)
        CFG_ERR("model.drop_path = %g: must be in [0, 1)", c->drop_path);
    if (c->layerscale_init < 0) CFG_ERR("model.layerscale_init = %g: must be >= 0 (0 = off)",
                                        c->layerscale_init);
    return 0;
}

char* vit_config_to_json(const VitConfig* c) {
    cJSON* o = cJSON_CreateObject();
    int img[3], patch[3], n = c->spatial_dims;
    for (int a = 0; a < n; a++) { img[a] = c->img[3 - n + a]; patch[a] = c->patch[3 - n + a]; }
    cJSON_AddStringToObject(o, "preset", c->preset);
    cJSON_AddNumberToObject(o, "spatial_dims", n);
    cJSON_AddItemToObject(o, "img_size", cJSON_CreateIntArray(img, n));
    cJSON_AddItemToObject(o, "patch", cJSON_CreateIntArray(patch, n));
    cJSON_AddNumberToObject(o, "in_chans", c->in_chans);
    cJSON* ch = cJSON_AddArrayToObject(o, "channels");
    for (int i = 0; i < c->in_chans; i++) cJSON_AddItemToArray(ch, cJSON_CreateString(c->channels[i]));
    cJSON_AddNumberToObject(o, "dim", c->dim);
    cJSON_AddNumberToObject(o, "depth", c->depth);
    cJSON_AddNumberToObject(o, "heads", c->heads);
    cJSON_AddNumberToObject(o, "mlp_ratio", c->mlp_ratio);
    cJSON_AddBoolToObject(o, "qkv_bias", c->qkv_bias);
    cJSON_AddNumberToObject(o, "ln_eps", c->ln_eps);
    cJSON_AddBoolToObject(o, "cls_token", c->cls_token);
    cJSON_AddNumberToObject(o, "num_registers", c->num_registers);
    cJSON* ex = cJSON_AddArrayToObject(o, "extra_tokens");
    for (int i = 0; i < c->num_extra; i++) cJSON_AddItemToArray(ex, cJSON_CreateString(c->extra_tokens[i]));
    cJSON_AddStringToObject(o, "pos_embed", c->pos_embed == VIT_POS_SINCOS ? "sincos" : "learned");
    cJSON_AddNumberToObject(o, "layerscale_init", c->layerscale_init);
    cJSON_AddNumberToObject(o, "drop_path", c->drop_path);
    char* s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

static int json_int_array(const cJSON* o, const char* key, int* out, int n, char* err, size_t errlen) {
    const cJSON* a = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != n)
        CFG_ERR("model metadata: '%s' must be an array of %d integers", key, n);
    for (int i = 0; i < n; i++) {
        const cJSON* v = cJSON_GetArrayItem(a, i);
        if (!cJSON_IsNumber(v) || v->valuedouble != (int)v->valuedouble || v->valuedouble < 1)
            CFG_ERR("model metadata: '%s'[%d] is not a positive integer", key, i);
        out[i] = (int)v->valuedouble;
    }
    return 0;
}

static int json_num(const cJSON* o, const char* key, double* out, char* err, size_t errlen) {
    const cJSON* v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v) CFG_ERR("model metadata: missing '%s'", key);
    if (cJSON_IsBool(v)) { *out = cJSON_IsTrue(v); return 0; }
    if (!cJSON_IsNumber(v)) CFG_ERR("model metadata: '%s' must be a number", key);
    *out = v->valuedouble;
    return 0;
}

static int json_names(const cJSON* o, const char* key, char* dst, size_t stride, int maxn,
                      int* n, char* err, size_t errlen) {
    const cJSON* a = cJSON_GetObjectItemCaseSensitive(o, key);
    *n = 0;
    if (!a) return 0;
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) > maxn)
        CFG_ERR("model metadata: '%s' must be an array of at most %d names", key, maxn);
    for (int i = 0; i < cJSON_GetArraySize(a); i++) {
        const cJSON* v = cJSON_GetArrayItem(a, i);
        if (!cJSON_IsString(v)) CFG_ERR("model metadata: '%s'[%d] is not a string", key, i);
        snprintf(dst + i * stride, stride, "%s", v->valuestring);
    }
    *n = cJSON_GetArraySize(a);
    return 0;
}

int vit_config_from_json(VitConfig* c, const char* json, char* err, size_t errlen) {
    cJSON* o = cJSON_Parse(json);
    if (!cJSON_IsObject(o)) { cJSON_Delete(o); CFG_ERR("model metadata is not a JSON object"); }
    memset(c, 0, sizeof *c);
    int rc = 1;
    double v;
    const cJSON* s = cJSON_GetObjectItemCaseSensitive(o, "preset");
    if (cJSON_IsString(s)) snprintf(c->preset, sizeof c->preset, "%s", s->valuestring);
    if (json_num(o, "spatial_dims", &v, err, errlen)) goto done;
    c->spatial_dims = (int)v;
    if (c->spatial_dims != 2 && c->spatial_dims != 3) {
        snprintf(err, errlen, "model metadata: spatial_dims must be 2 or 3");
        goto done;
    }
    int n = c->spatial_dims, img[3] = {1, 1, 1}, patch[3] = {1, 1, 1};
    if (json_int_array(o, "img_size", img, n, err, errlen)) goto done;
    if (json_int_array(o, "patch", patch, n, err, errlen)) goto done;
    c->img[0] = c->patch[0] = 1;
    for (int a = 0; a < n; a++) { c->img[3 - n + a] = img[a]; c->patch[3 - n + a] = patch[a]; }
    double dim, depth, heads, mlp, qb, eps, cls, reg, ls, dp, inch;
    if (json_num(o, "in_chans", &inch, err, errlen) || json_num(o, "dim", &dim, err, errlen) ||
        json_num(o, "depth", &depth, err, errlen) || json_num(o, "heads", &heads, err, errlen) ||
        json_num(o, "mlp_ratio", &mlp, err, errlen) || json_num(o, "qkv_bias", &qb, err, errlen) ||
        json_num(o, "ln_eps", &eps, err, errlen) || json_num(o, "cls_token", &cls, err, errlen) ||
        json_num(o, "num_registers", &reg, err, errlen) ||
        json_num(o, "layerscale_init", &ls, err, errlen) || json_num(o, "drop_path", &dp, err, errlen))
        goto done;
    c->in_chans = (int)inch; c->dim = (int)dim; c->depth = (int)depth; c->heads = (int)heads;
    c->mlp_ratio = (float)mlp; c->qkv_bias = qb != 0; c->ln_eps = (float)eps; c->cls_token = cls != 0;
    c->num_registers = (int)reg; c->layerscale_init = (float)ls; c->drop_path = (float)dp;
    int nch = 0;
    if (json_names(o, "channels", &c->channels[0][0], sizeof c->channels[0], VIT_MAX_CHANNELS,
                   &nch, err, errlen)) goto done;
    if (json_names(o, "extra_tokens", &c->extra_tokens[0][0], sizeof c->extra_tokens[0],
                   VIT_MAX_EXTRA, &c->num_extra, err, errlen)) goto done;
    s = cJSON_GetObjectItemCaseSensitive(o, "pos_embed");
    c->pos_embed = (cJSON_IsString(s) && !strcmp(s->valuestring, "sincos")) ? VIT_POS_SINCOS
                                                                              : VIT_POS_LEARNED;
    rc = vit_config_check(c, err, errlen);
done:
    cJSON_Delete(o);
    return rc;
}
