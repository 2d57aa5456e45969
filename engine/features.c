/* engine/features.c — per-layer feature extraction (see features.h). */
#include "features.h"
#include "check.h"
#include "rng.h"
#include "sampler.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FEAT_TAG_TOKENS 0x70CE5ull

int features_kind_from_name(const char* name) {
    if (!strcmp(name, "pooled")) return FEAT_POOLED;
    if (!strcmp(name, "tokens")) return FEAT_TOKENS;
    if (!strcmp(name, "cls")) return FEAT_CLS;
    return -1;
}

const char* features_kind_name(int kind) {
    switch (kind) {
    case FEAT_POOLED: return "pooled";
    case FEAT_TOKENS: return "tokens";
    case FEAT_CLS: return "cls";
    default: return "?";
    }
}

void features_layer_name(int layer, char out[8]) {
    if (layer == 0) snprintf(out, 8, "norm");
    else snprintf(out, 8, "%d", layer);
}

int features_parse_layers(const char* list, int depth, int* layers, int* n_layers, int max,
                          char* err, size_t errlen) {
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s", list);
    int n = 0;
    char* save = NULL;
    for (char* t = strtok_r(tmp, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        while (*t == ' ') t++;
        int v;
        if (!strcmp(t, "norm")) v = 0;
        else {
            char* end;
            long x = strtol(t, &end, 10);
            if (end == t || *end || x < 1 || x > depth) {
                snprintf(err, errlen, "layer '%s': use block numbers 1..%d or norm "
                         "(e.g. 3,6,9,12,norm)", t, depth);
                return 1;
            }
            v = (int)x;
        }
        for (int k = 0; k < n; k++)
            if (layers[k] == v) {
                snprintf(err, errlen, "layer '%s' given twice", t);
                return 1;
            }
        if (n >= max) {
            snprintf(err, errlen, "at most %d layers", max);
            return 1;
        }
        layers[n++] = v;
    }
    if (!n) {
        snprintf(err, errlen, "no layers in '%s': give e.g. 3,6,9,12,norm", list);
        return 1;
    }
    *n_layers = n;
    return 0;
}

void features_sample_tokens(int n_images, int group, int P, uint64_t seed, int32_t* idx) {
    CHECK(group >= 1 && group <= P, "token group %d not in 1..%d", group, P);
    int* perm = xmalloc(sizeof(int) * P);
    for (int i = 0; i < n_images; i++) {
        Rng r = rng_stream(seed, FEAT_TAG_TOKENS + (uint64_t)i);
        for (int p = 0; p < P; p++) perm[p] = p;
        /* partial Fisher-Yates: the first `group` entries are a uniform sample */
        for (int k = 0; k < group; k++) {
            int j = k + (int)(rng_u64(&r) % (uint64_t)(P - k));
            int t = perm[k]; perm[k] = perm[j]; perm[j] = t;
        }
        /* ascending (insertion sort: group is small) */
        for (int k = 1; k < group; k++) {
            int v = perm[k], j = k - 1;
            while (j >= 0 && perm[j] > v) { perm[j + 1] = perm[j]; j--; }
            perm[j + 1] = v;
        }
        for (int k = 0; k < group; k++) idx[(long)i * group + k] = perm[k];
    }
    free(perm);
}

int features_check(const Vit* m, const FeatSpec* s, char* err, size_t errlen) {
    if (s->n_layers < 1 || s->n_layers > CFG_MAX_LAYERS) {
        snprintf(err, errlen, "align.layers: %d layers (need 1..%d)", s->n_layers, CFG_MAX_LAYERS);
        return 1;
    }
    for (int l = 0; l < s->n_layers; l++)
        if (s->layers[l] < 0 || s->layers[l] > m->cfg.depth) {
            snprintf(err, errlen, "layer %d out of range: the model has blocks 1..%d (and norm)",
                     s->layers[l], m->cfg.depth);
            return 1;
        }
    if (s->kind == FEAT_CLS && !m->ncls) {
        snprintf(err, errlen, "feature cls: the model has no cls token; use pooled or tokens");
        return 1;
    }
    if (s->kind < FEAT_POOLED || s->kind > FEAT_CLS) {
        snprintf(err, errlen, "unknown feature kind %d (pooled, tokens or cls)", s->kind);
        return 1;
    }
    if (s->kind == FEAT_TOKENS && (s->group < 1 || s->group > m->P || !s->token_idx)) {
        snprintf(err, errlen, "feature tokens: %d tokens per image, the model has %d patch tokens",
                 s->group, m->P);
        return 1;
    }
    return 0;
}

static const float* layer_tokens(const Vit* m, int layer) {
    return layer == 0 ? m->out : vit_block_output(m, layer);
}

void features_gather(Vit* m, int B, int i0, const FeatSpec* s, float* const* out) {
    Ctx* c = m->ctx;
    const int T = m->T, P = m->P, D = m->cfg.dim, t0 = T - P;
    const int g = s->kind == FEAT_TOKENS ? s->group : 1;
    CHECK(B >= 1 && B <= m->B, "features_gather: batch %d, last forward had %d", B, m->B);
    for (int l = 0; l < s->n_layers; l++) {
        const float* x = layer_tokens(m, s->layers[l]);
        float* o = out[l] + (size_t)i0 * g * D;
        if (s->kind == FEAT_POOLED) {
            meanpool_forward(c, o, x, B, T, D, t0, P);
        } else if (s->kind == FEAT_CLS) {
            for (int b = 0; b < B; b++)
                copy_d2d(c, o + (size_t)b * D, x + (size_t)b * T * D, sizeof(float) * D);
        } else {
            /* gathered rows; runs of consecutive indices copied at once */
            for (int b = 0; b < B; b++) {
                const int32_t* idx = s->token_idx + (size_t)(i0 + b) * g;
                int k = 0;
                while (k < g) {
                    int run = 1;
                    while (k + run < g && idx[k + run] == idx[k] + run) run++;
                    copy_d2d(c, o + ((size_t)b * g + k) * D,
                             x + ((size_t)b * T + t0 + idx[k]) * D, sizeof(float) * run * D);
                    k += run;
                }
            }
        }
    }
}

void features_batch(Vit* m, const float* img, const float* extra, int B, int i0,
                    const FeatSpec* s, float* const* out) {
    int was_training = m->training;
    m->training = 0;
    vit_forward(m, img, extra, B);
    m->training = was_training;
    features_gather(m, B, i0, s, out);
}

void features_l2_rows(Ctx* c, float* x, long rows, int dim) {
    long chunk = (8L << 20) / (dim > 0 ? dim : 1);
    if (chunk < 1) chunk = 1;
    if (chunk > rows) chunk = rows;
    float* h = xmalloc(sizeof(float) * (size_t)chunk * dim);
    for (long r0 = 0; r0 < rows; r0 += chunk) {
        long nr = rows - r0 < chunk ? rows - r0 : chunk;
        copy_d2h(c, h, x + (size_t)r0 * dim, sizeof(float) * (size_t)nr * dim);
        for (long i = 0; i < nr; i++) {
            float* row = h + (size_t)i * dim;
            double ss = 0;
            for (int q = 0; q < dim; q++) ss += (double)row[q] * row[q];
            if (ss > 0) {
                double inv = 1.0 / sqrt(ss);
                for (int q = 0; q < dim; q++) row[q] = (float)(row[q] * inv);
            }
        }
        copy_h2d(c, x + (size_t)r0 * dim, h, sizeof(float) * (size_t)nr * dim);
    }
    free(h);
}

void features_extract(Vit* m, const float* img, const float* extra, int n, const FeatSpec* s,
                      float* const* out) {
    Ctx* c = m->ctx;
    const VitConfig* vc = &m->cfg;
    const int E = vc->num_extra, MB = m->max_batch;
    const size_t per = (size_t)vc->in_chans * vc->img[0] * vc->img[1] * vc->img[2];
    float* eb = E ? dev_alloc(c, sizeof(float) * (size_t)E * MB) : NULL;
    for (int i0 = 0; i0 < n; i0 += MB) {
        int B = n - i0 < MB ? n - i0 : MB;
        if (E) /* [E, n] -> [E, B] */
            for (int e = 0; e < E; e++)
                copy_d2d(c, eb + (size_t)e * B, extra + (size_t)e * n + i0, sizeof(float) * B);
        features_batch(m, img + (size_t)i0 * per, eb, B, i0, s, out);
    }
    if (eb) dev_free(c, eb);
    if (s->l2) {
        const int g = s->kind == FEAT_TOKENS ? s->group : 1;
        for (int l = 0; l < s->n_layers; l++) features_l2_rows(c, out[l], (long)n * g, vc->dim);
    }
}

/* ---- inputs -------------------------------------------------------------------------------- */
int features_channels(const Dataset* ds, const VitConfig* vc, const char* names,
                      FeatChannels* ch, char* err, size_t errlen) {
    memset(ch, 0, sizeof *ch);
    char list[VIT_MAX_CHANNELS][DS_NAME];
    int n = 0;
    if (names && names[0]) {
        char tmp[512];
        snprintf(tmp, sizeof tmp, "%s", names);
        char* save = NULL;
        for (char* t = strtok_r(tmp, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            if (n >= VIT_MAX_CHANNELS) {
                snprintf(err, errlen, "--channels: at most %d names", VIT_MAX_CHANNELS);
                return 1;
            }
            snprintf(list[n++], DS_NAME, "%s", t);
        }
    } else {
        for (int c = 0; c < vc->in_chans && c < VIT_MAX_CHANNELS; c++)
            snprintf(list[n++], DS_NAME, "%s", vc->channels[c]);
    }
    if (!n || vc->in_chans % n) {
        snprintf(err, errlen, "%d channel names for a model with %d input channels (2D models: "
                 "in_chans = sequences x slice context)", n, vc->in_chans);
        return 1;
    }
    ch->n_seq = n;
    ch->context = vc->in_chans / n;
    if (ch->context > 1 && vc->spatial_dims != 2) {
        snprintf(err, errlen, "%d channel names for a 3D model with %d input channels: give one "
                 "name per input channel", n, vc->in_chans);
        return 1;
    }
    int found = 0;
    size_t k = 0;
    for (int c = 0; c < n; c++) {
        ch->src[c] = dataset_channel(ds, list[c]);
        if (ch->src[c] >= 0) found++;
        else if (k < sizeof ch->missing)
            k += snprintf(ch->missing + k, sizeof ch->missing - k, "%s%s", k ? "," : "", list[c]);
    }
    if (!found) {
        char have[256];
        size_t h = 0;
        have[0] = '\0';
        for (int c = 0; c < ds->C && h < sizeof have; c++)
            h += snprintf(have + h, sizeof have - h, "%s%s", c ? "," : "", ds->channels[c]);
        snprintf(err, errlen, "%s: none of the model's channels (%s) is in the dataset (which has "
                 "%s); map them with --channels NAMES", ds->path, ch->missing, have);
        return 1;
    }
    return 0;
}

void features_crop_case(const float* vol, int n_seq, const int dims[3], const VitConfig* vc,
                        int context, float* out, int* z_out) {
    const int twod = vc->spatial_dims == 2;
    const int oD = vc->img[0], oH = vc->img[1], oW = vc->img[2];
    const long plane = (long)dims[1] * dims[2], vplane = plane * dims[0];
    const long oplane = (long)oH * oW, ovol = oplane * oD;
    int centre[3] = {dims[0] / 2, dims[1] / 2, dims[2] / 2}, start[3];
    int crop[3] = {twod ? 1 : oD, oH, oW};
    crop_start(dims, crop, centre, start);
    if (twod) start[0] = dims[0] / 2;
    if (z_out) *z_out = twod ? start[0] : dims[0] / 2;
    const int ctx = twod ? context : 1;
    for (int c = 0; c < n_seq; c++)
        for (int t = 0; t < ctx; t++) {
            float* o = out + ((long)c * ctx + t) * ovol;
            for (int z = 0; z < oD; z++) {
                int zz;
                if (twod) {
                    zz = start[0] - (ctx - 1) / 2 + t;
                    zz = zz < 0 ? 0 : (zz >= dims[0] ? dims[0] - 1 : zz);
                } else
                    zz = start[0] + z;
                for (int y = 0; y < oH; y++) {
                    int yy = start[1] + y;
                    float* orow = o + (long)z * oplane + (long)y * oW;
                    if (zz < 0 || zz >= dims[0] || yy < 0 || yy >= dims[1] || !vol) {
                        memset(orow, 0, sizeof(float) * oW);
                        continue;
                    }
                    const float* irow = vol + c * vplane + zz * plane + (long)yy * dims[2];
                    for (int x = 0; x < oW; x++) {
                        int xx = start[2] + x;
                        orow[x] = xx >= 0 && xx < dims[2] ? irow[xx] : 0.0f;
                    }
                }
            }
        }
}

int features_read_inputs(Dataset* ds, const int* cases, int n, const VitConfig* vc,
                         const FeatChannels* ch, float* img, float* extra, char* err,
                         size_t errlen) {
    const long vol = (long)ds->D * ds->H * ds->W;
    const long per = (long)vc->in_chans * vc->img[0] * vc->img[1] * vc->img[2];
    const int dims[3] = {ds->D, ds->H, ds->W};
    float* raw = xmalloc(sizeof(float) * ds->C * vol);
    float* seq = xmalloc(sizeof(float) * ch->n_seq * vol);
    int rc = 0;
    for (int k = 0; k < n && !rc; k++) {
        int i = cases[k];
        if (dataset_read_case(ds, i, raw, NULL, err, errlen)) { rc = 1; break; }
        for (int c = 0; c < ch->n_seq; c++) {
            if (ch->src[c] >= 0) memcpy(seq + c * vol, raw + ch->src[c] * vol, sizeof(float) * vol);
            else memset(seq + c * vol, 0, sizeof(float) * vol);
        }
        int z = 0;
        features_crop_case(seq, ch->n_seq, dims, vc, ch->context, img + (long)k * per, &z);
        for (int e = 0; e < vc->num_extra && extra; e++) {
            float v = 0;
            if (!strcmp(vc->extra_tokens[e], "slice_index"))
                v = (float)(z + (ds->g_crop_offset ? ds->g_crop_offset[3 * i] : 0));
            else if (!strcmp(vc->extra_tokens[e], "slice_count"))
                v = (float)(ds->g_shape_original ? ds->g_shape_original[3 * i] : ds->D);
            extra[(long)e * n + k] = v;
        }
    }
    free(raw);
    free(seq);
    return rc;
}
