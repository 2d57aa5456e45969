/* engine/align.c — alignment measurement during fine-tuning (align.h, DESIGN.md §6).
 *
 * Features come from engine/features.c (the same code `vita features` runs), so a features
 * file written at any state reproduces what align_measure compares. The estimators are
 * mmd_compute's, with the bandwidth FIXED at epoch 0 (rule MMD_BW_FIXED, sigma = the stored
 * σ_base of the layer) so that a value at epoch e and one at epoch 0 use the same kernel.
 *
 * weight_dist runs on the device: for each parameter of the block, a scratch copy of θ is
 * turned into θ0 − θ (scale_inplace by −1, add_forward with θ0) and sumsq gives ‖θ−θ0‖²;
 * sumsq of θ0 gives ‖θ0‖²; the sums are combined in double on the host. */
#include "align.h"
#include "check.h"
#include "features.h"
#include "rng.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ALIGN_TAG_HALVES 0xA11C1ull

static int fail(char* err, size_t errlen, const char* msg) {
    if (err && errlen) snprintf(err, errlen, "%s", msg);
    return 1;
}

static void spec_of(const Align* a, FeatSpec* s) {
    memset(s, 0, sizeof *s);
    s->n_layers = a->n_layers;
    memcpy(s->layers, a->layers, sizeof(int) * a->n_layers);
    s->kind = features_kind_from_name(a->cfg->align_feature);
    s->l2 = !strcmp(a->cfg->align_normalize, "l2");
    s->group = a->group;
    s->token_idx = a->token_idx;
}

/* layer_id of the parameters of an align layer: block l -> l, norm -> depth + 1 */
static int layer_param_id(const Vit* m, int layer) { return layer == 0 ? m->cfg.depth + 1 : layer; }

int align_init(Align* a, const Config* cfg, Ctx* c, Vit* m, const float* img, const float* extra,
               int n_images, char* err, size_t errlen) {
    char msg[512];
    memset(a, 0, sizeof *a);
    a->cfg = cfg;
    a->ctx = c;
    const VitConfig* vc = &m->cfg;
    int kind = features_kind_from_name(cfg->align_feature);
    if (kind < 0) {
        snprintf(msg, sizeof msg, "align.feature '%s': use pooled, tokens or cls", cfg->align_feature);
        return fail(err, errlen, msg);
    }
    if (strcmp(cfg->align_normalize, "none") && strcmp(cfg->align_normalize, "l2")) {
        snprintf(msg, sizeof msg, "align.normalize '%s': use none or l2", cfg->align_normalize);
        return fail(err, errlen, msg);
    }
    if (n_images < 4) {
        snprintf(msg, sizeof msg, "align.probe: %d probe images; the noise floor needs at least 4 "
                 "(two halves of 2): raise align.probe.n_images or use a larger probe split",
                 n_images);
        return fail(err, errlen, msg);
    }
    if (cfg->n_align_layers < 1 || cfg->n_align_layers > CFG_MAX_LAYERS)
        return fail(err, errlen, "align.layers is empty: give e.g. [3, 6, 9, 12, norm]");
    if (cfg->n_estimators < 1)
        return fail(err, errlen, "align.estimators is empty: give e.g. [mmd2_paired, cka_linear]");
    for (int e = 0; e < cfg->n_estimators; e++)
        if (cfg->estimators[e] < 0 || cfg->estimators[e] >= EST_COUNT)
            return fail(err, errlen, "align.estimators: unknown estimator index");
    if (cfg->n_scales < 1 || cfg->n_scales > MMD_MAX_S)
        return fail(err, errlen, "align.bandwidths.scales: give 1..8 positive scales");

    a->n_layers = cfg->n_align_layers;
    for (int l = 0; l < a->n_layers; l++) {
        a->layers[l] = cfg->align_layers[l];
        features_layer_name(a->layers[l], a->layer_names[l]);
    }
    a->n_images = n_images;
    a->dim = vc->dim;
    a->group = 1;
    if (kind == FEAT_TOKENS) {
        int per = cfg->probe_n_tokens / n_images;
        if (per < 1) per = 1;
        if (per > m->P) per = m->P;
        a->group = per;
        a->token_idx = xmalloc(sizeof(int32_t) * (size_t)n_images * per);
        features_sample_tokens(n_images, per, m->P, cfg->seed, a->token_idx);
    }
    a->rows = n_images * a->group;

    FeatSpec spec;
    spec_of(a, &spec);
    if (features_check(m, &spec, msg, sizeof msg)) {
        free(a->token_idx);
        a->token_idx = NULL;
        return fail(err, errlen, msg);
    }

    /* probe inputs on the device */
    const size_t per_img = (size_t)vc->in_chans * vc->img[0] * vc->img[1] * vc->img[2];
    a->probe_img = dev_alloc(c, sizeof(float) * per_img * n_images);
    copy_h2d(c, a->probe_img, img, sizeof(float) * per_img * n_images);
    if (vc->num_extra) {
        CHECK(extra != NULL, "align_init: the model has %d extra tokens but no extra values",
              vc->num_extra);
        a->probe_extra = dev_alloc(c, sizeof(float) * (size_t)vc->num_extra * n_images);
        copy_h2d(c, a->probe_extra, extra, sizeof(float) * (size_t)vc->num_extra * n_images);
    }
    a->feat0 = xcalloc(a->n_layers, sizeof(float*));
    a->feat = xcalloc(a->n_layers, sizeof(float*));
    for (int l = 0; l < a->n_layers; l++) {
        a->feat0[l] = dev_alloc(c, sizeof(float) * (size_t)a->rows * a->dim);
        a->feat[l] = dev_alloc(c, sizeof(float) * (size_t)a->rows * a->dim);
    }
    features_extract(m, a->probe_img, a->probe_extra, n_images, &spec, a->feat0);

    a->w0 = dev_alloc(c, sizeof(float) * (size_t)m->n_floats);
    copy_d2d(c, a->w0, m->w, sizeof(float) * (size_t)m->n_floats);

    /* the kernel: bandwidth rule and scales of the config, fixed per layer now */
    mmd_config_default(&a->mcfg);
    a->mcfg.bandwidth_rule = cfg->bw_rule;
    a->mcfg.n_scales = cfg->n_scales;
    for (int s = 0; s < cfg->n_scales; s++) a->mcfg.scales[s] = cfg->scales[s];
    a->mcfg.seed = cfg->seed;
    a->mcfg.group_size = a->group;
    a->mcfg.permutations = cfg->permutations;
    a->mcfg.bootstrap = 0;
    for (int l = 0; l < a->n_layers; l++) {
        double sg = mmd_bandwidth(c, a->feat0[l], NULL, a->rows, 0, a->dim, &a->mcfg, NULL);
        if (!(sg > 0) || !isfinite(sg)) {
            snprintf(msg, sizeof msg, "align: bandwidth of layer %s is %g (all probe features "
                     "identical?): check the probe images", a->layer_names[l], sg);
            align_free(a);
            return fail(err, errlen, msg);
        }
        a->sigma[l] = sg;
    }

    /* noise floor: mmd2_u between two disjoint halves of the probe images (seeded split) */
    int* perm = xmalloc(sizeof(int) * n_images);
    for (int i = 0; i < n_images; i++) perm[i] = i;
    Rng r = rng_stream(cfg->seed, ALIGN_TAG_HALVES);
    for (int i = n_images - 1; i > 0; i--) {
        int j = (int)(rng_u64(&r) % (uint64_t)(i + 1));
        int t = perm[i]; perm[i] = perm[j]; perm[j] = t;
    }
    const int h = n_images / 2, g = a->group;
    const size_t rowb = sizeof(float) * (size_t)g * a->dim;
    float* A = dev_alloc(c, rowb * h);
    float* B = dev_alloc(c, rowb * h);
    MmdConfig nc = a->mcfg;
    nc.bandwidth_rule = MMD_BW_FIXED;
    nc.paired = 0;
    nc.permutations = 0;
    int rc = 0;
    for (int l = 0; l < a->n_layers && !rc; l++) {
        for (int k = 0; k < h; k++) {
            copy_d2d(c, (char*)A + rowb * k, (const char*)a->feat0[l] + rowb * perm[k], rowb);
            copy_d2d(c, (char*)B + rowb * k, (const char*)a->feat0[l] + rowb * perm[h + k], rowb);
        }
        nc.sigma = a->sigma[l];
        MmdResult res;
        char e2[400];
        if (mmd_compute(c, A, B, h * g, h * g, a->dim, &nc, &res, e2, sizeof e2)) {
            snprintf(msg, sizeof msg, "align: noise floor of layer %s: %s", a->layer_names[l], e2);
            rc = 1;
            break;
        }
        a->noise_floor[l] = res.value[EST_MMD2_U];
    }
    dev_free(c, A);
    dev_free(c, B);
    free(perm);
    if (rc) {
        align_free(a);
        return fail(err, errlen, msg);
    }
    return 0;
}

int align_measure(Align* a, Vit* m, double* est, double* wd, char* err, size_t errlen) {
    Ctx* c = a->ctx;
    const Config* cfg = a->cfg;
    FeatSpec spec;
    spec_of(a, &spec);
    features_extract(m, a->probe_img, a->probe_extra, a->n_images, &spec, a->feat);
    MmdConfig mc = a->mcfg;
    mc.bandwidth_rule = MMD_BW_FIXED;
    mc.paired = 1;
    for (int l = 0; l < a->n_layers; l++) {
        mc.sigma = a->sigma[l];
        MmdResult* res = &a->res[l];
        char e2[400];
        if (mmd_compute(c, a->feat0[l], a->feat[l], a->rows, a->rows, a->dim, &mc, res, e2,
                        sizeof e2)) {
            if (err && errlen)
                snprintf(err, errlen, "align: layer %s: %s", a->layer_names[l], e2);
            return 1;
        }
        for (int e = 0; e < cfg->n_estimators; e++)
            est[(size_t)e * a->n_layers + l] = res->value[cfg->estimators[e]];
    }

    /* weight_dist: ‖θ−θ0‖ / ‖θ0‖ over the parameters of each align layer's block */
    long maxn = 0;
    int np = 0;
    for (int p = 0; p < m->n_params; p++) {
        for (int l = 0; l < a->n_layers; l++)
            if (m->params[p].layer_id == layer_param_id(m, a->layers[l])) {
                if (m->params[p].numel > maxn) maxn = m->params[p].numel;
                np++;
                break;
            }
    }
    double* dsum = dev_alloc(c, sizeof(double) * 2 * (np ? np : 1));
    float* scratch = dev_alloc(c, sizeof(float) * (maxn ? maxn : 1));
    int* which = xmalloc(sizeof(int) * (np ? np : 1));
    int k = 0;
    for (int p = 0; p < m->n_params; p++) {
        const VitParam* vp = &m->params[p];
        int hit = -1;
        for (int l = 0; l < a->n_layers; l++)
            if (vp->layer_id == layer_param_id(m, a->layers[l])) { hit = l; break; }
        if (hit < 0) continue;
        const float* w = m->w + vp->offset;
        const float* w0 = a->w0 + vp->offset;
        copy_d2d(c, scratch, w, sizeof(float) * vp->numel);
        scale_inplace(c, scratch, -1.0f, vp->numel);
        add_forward(c, scratch, scratch, w0, vp->numel);   /* θ0 − θ */
        sumsq(c, dsum + 2 * k, scratch, vp->numel);
        sumsq(c, dsum + 2 * k + 1, w0, vp->numel);
        which[k++] = p;
    }
    double* h = xmalloc(sizeof(double) * 2 * (np ? np : 1));
    if (np) copy_d2h(c, h, dsum, sizeof(double) * 2 * np);
    for (int l = 0; l < a->n_layers; l++) {
        double num = 0, den = 0;
        int id = layer_param_id(m, a->layers[l]);
        for (int q = 0; q < np; q++)
            if (m->params[which[q]].layer_id == id) { num += h[2 * q]; den += h[2 * q + 1]; }
        wd[l] = den > 0 ? sqrt(num / den) : (num > 0 ? INFINITY : 0.0);
    }
    free(h);
    free(which);
    dev_free(c, scratch);
    dev_free(c, dsum);
    return 0;
}

void align_free(Align* a) {
    Ctx* c = a->ctx;
    if (c) {
        if (a->probe_img) dev_free(c, a->probe_img);
        if (a->probe_extra) dev_free(c, a->probe_extra);
        for (int l = 0; l < a->n_layers; l++) {
            if (a->feat0 && a->feat0[l]) dev_free(c, a->feat0[l]);
            if (a->feat && a->feat[l]) dev_free(c, a->feat[l]);
        }
        if (a->w0) dev_free(c, a->w0);
    }
    free(a->feat0);
    free(a->feat);
    free(a->token_idx);
    memset(a, 0, sizeof *a);
}
