/* engine/headmeta.c — head config and input metadata of checkpoints (JSON), head weights
 * from safetensors. See headmeta.h for the keys. */
#include "headmeta.h"
#include "loader.h"
#include "safetensors.h"
#include "check.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HM_ERR(...) do { snprintf(err, errlen, __VA_ARGS__); goto done; } while (0)

static const char* pool_name(int p) { return p == HEAD_POOL_CLS ? "cls" : "mean"; }
static const char* output_name(int o) { return o == HEAD_OUT_FIELD ? "field" : "image"; }

char* head_config_to_json(const HeadConfig* c) {
    cJSON* o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "task", head_task_name(c->task));
    cJSON_AddStringToObject(o, "kind", head_kind_name(c->kind));
    cJSON_AddNumberToObject(o, "num_classes", c->num_classes);
    cJSON_AddNumberToObject(o, "feature_size", c->feature_size);
    cJSON_AddNumberToObject(o, "hidden", c->hidden);
    cJSON_AddStringToObject(o, "pool", pool_name(c->pool));
    cJSON_AddNumberToObject(o, "batchnorm", c->batchnorm);
    cJSON_AddStringToObject(o, "output", output_name(c->output));
    cJSON_AddNumberToObject(o, "input_channel", c->input_channel);
    cJSON_AddNumberToObject(o, "pe_axis", c->pe_axis);
    cJSON_AddNumberToObject(o, "bn_eps", c->bn_eps);
    cJSON_AddNumberToObject(o, "bn_momentum", c->bn_momentum);
    cJSON_AddNumberToObject(o, "in_eps", c->in_eps);
    cJSON_AddNumberToObject(o, "slope", c->slope);
    char* s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    CHECK(s, "cJSON_PrintUnformatted failed");
    return s;
}

static const char* const INT_KEYS[] = {"num_classes", "feature_size", "hidden", "batchnorm",
                                       "input_channel", "pe_axis"};
static const char* const FLT_KEYS[] = {"bn_eps", "bn_momentum", "in_eps", "slope"};
static const char* const STR_KEYS[] = {"task", "kind", "pool", "output"};

int head_config_from_json(HeadConfig* c, const char* json, int spatial_dims, char* err,
                          size_t errlen) {
    int rc = 1;
    cJSON* o = cJSON_Parse(json ? json : "");
    if (!cJSON_IsObject(o)) HM_ERR("head metadata is not a JSON object");
    const cJSON* t = cJSON_GetObjectItemCaseSensitive(o, "task");
    if (!cJSON_IsString(t)) HM_ERR("head metadata: missing the string 'task'");
    int task = head_task_from_name(t->valuestring);
    if (task < 0)
        HM_ERR("head metadata: task '%s' unknown (classify, segment, superres, undistort, "
               "synthesize)", t->valuestring);
    head_config_default(c, task, spatial_dims);
    const cJSON* it;
    cJSON_ArrayForEach(it, o) {
        const char* k = it->string;
        int known = 0;
        for (size_t i = 0; i < sizeof INT_KEYS / sizeof *INT_KEYS; i++)
            if (!strcmp(k, INT_KEYS[i])) {
                known = 1;
                double v = cJSON_IsBool(it) ? cJSON_IsTrue(it) : it->valuedouble;
                if (!cJSON_IsNumber(it) && !cJSON_IsBool(it))
                    HM_ERR("head metadata: '%s' must be an integer", k);
                if (v != floor(v) || fabs(v) > 1e9)
                    HM_ERR("head metadata: '%s' = %g is not an integer", k, v);
                int iv = (int)v;
                if (!strcmp(k, "num_classes")) c->num_classes = iv;
                else if (!strcmp(k, "feature_size")) c->feature_size = iv;
                else if (!strcmp(k, "hidden")) c->hidden = iv;
                else if (!strcmp(k, "batchnorm")) c->batchnorm = iv != 0;
                else if (!strcmp(k, "input_channel")) c->input_channel = iv;
                else c->pe_axis = iv;
            }
        for (size_t i = 0; i < sizeof FLT_KEYS / sizeof *FLT_KEYS; i++)
            if (!strcmp(k, FLT_KEYS[i])) {
                known = 1;
                if (!cJSON_IsNumber(it)) HM_ERR("head metadata: '%s' must be a number", k);
                float v = (float)it->valuedouble;
                if (!strcmp(k, "bn_eps")) c->bn_eps = v;
                else if (!strcmp(k, "bn_momentum")) c->bn_momentum = v;
                else if (!strcmp(k, "in_eps")) c->in_eps = v;
                else c->slope = v;
            }
        for (size_t i = 0; i < sizeof STR_KEYS / sizeof *STR_KEYS; i++)
            if (!strcmp(k, STR_KEYS[i])) {
                known = 1;
                if (!cJSON_IsString(it)) HM_ERR("head metadata: '%s' must be a string", k);
                const char* s = it->valuestring;
                if (!strcmp(k, "kind")) {
                    int v = head_kind_from_name(s);
                    if (v < 0) HM_ERR("head metadata: kind '%s' unknown (mlp, linear, unetr, pup)", s);
                    c->kind = v;
                } else if (!strcmp(k, "pool")) {
                    int v = head_pool_from_name(s);
                    if (v < 0) HM_ERR("head metadata: pool '%s' unknown (cls, mean)", s);
                    c->pool = v;
                } else if (!strcmp(k, "output")) {
                    int v = head_output_from_name(s);
                    if (v < 0) HM_ERR("head metadata: output '%s' unknown (image, field)", s);
                    c->output = v;
                }
            }
        if (!known) HM_ERR("head metadata: unknown key '%s'", k);
    }
    rc = 0;
done:
    cJSON_Delete(o);
    return rc;
}

char* input_meta_to_json(const char* channels, int mode, int context) {
    cJSON* o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "channels", channels ? channels : "");
    cJSON_AddStringToObject(o, "mode", mode == LOADER_SLICE ? "slice" : "volume");
    cJSON_AddNumberToObject(o, "context", context);
    char* s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    CHECK(s, "cJSON_PrintUnformatted failed");
    return s;
}

int input_meta_from_json(const char* json, char* channels, size_t chlen, int* mode, int* context,
                         char* err, size_t errlen) {
    int rc = 1;
    cJSON* o = cJSON_Parse(json ? json : "");
    if (!cJSON_IsObject(o)) HM_ERR("input metadata is not a JSON object");
    const cJSON* ch = cJSON_GetObjectItemCaseSensitive(o, "channels");
    const cJSON* md = cJSON_GetObjectItemCaseSensitive(o, "mode");
    const cJSON* cx = cJSON_GetObjectItemCaseSensitive(o, "context");
    if (!cJSON_IsString(ch) || !cJSON_IsString(md) || !cJSON_IsNumber(cx))
        HM_ERR("input metadata: needs string 'channels', string 'mode' and integer 'context'");
    if (strlen(ch->valuestring) >= chlen) HM_ERR("input metadata: 'channels' too long");
    if (strcmp(md->valuestring, "volume") && strcmp(md->valuestring, "slice"))
        HM_ERR("input metadata: mode '%s' unknown (volume, slice)", md->valuestring);
    if (cx->valuedouble != 1 && cx->valuedouble != 3)
        HM_ERR("input metadata: context %g must be 1 or 3", cx->valuedouble);
    snprintf(channels, chlen, "%s", ch->valuestring);
    *mode = strcmp(md->valuestring, "slice") ? LOADER_VOLUME : LOADER_SLICE;
    *context = (int)cx->valuedouble;
    rc = 0;
done:
    cJSON_Delete(o);
    return rc;
}

int head_load_weights(Head* h, const char* path, char* err, size_t errlen) {
    StFile f;
    if (st_open(&f, path, err, errlen)) return 1;
    float* host = xmalloc(sizeof(float) * (size_t)(h->n_floats ? h->n_floats : 1));
    copy_d2h(h->ctx, host, h->w, sizeof(float) * h->n_floats);
    int rc = 0;
    for (int i = 0; i < h->n_params && !rc; i++) {
        const VitParam* p = &h->params[i];
        const StTensor* t = st_find(&f, p->name);
        if (!t) {
            snprintf(err, errlen, "%s: head tensor '%s' missing (the checkpoint's head config "
                     "does not match its tensors)", path, p->name);
            rc = 1;
        } else if (t->numel != p->numel) {
            snprintf(err, errlen, "%s: head tensor '%s' has %lld elements, the head needs %ld",
                     path, p->name, (long long)t->numel, p->numel);
            rc = 1;
        } else {
            st_read_f32(&f, t, host + p->offset);
        }
    }
    if (!rc) copy_h2d(h->ctx, h->w, host, sizeof(float) * h->n_floats);
    free(host);
    st_close(&f);
    return rc;
}
