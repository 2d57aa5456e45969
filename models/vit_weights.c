/* models/vit_weights.c — ViT weights from and to safetensors (SPEC.md §3), timm names.
 * Loading reports loaded / missing / unexpected / resized keys; pos_embed grids are
 * resampled (bicubic 2D, trilinear 3D; the cls row is kept as is); any other shape
 * mismatch fails with the tensor named. Host staging buffers only; device memory is
 * written by copy_h2d. */
#include "vit_weights.h"
#include "../engine/check.h"
#include "../engine/safetensors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int same_shape(const VitParam* p, const StTensor* t) {
    if (p->numel != t->numel) return 0;
    /* timm stores cls_token [1,1,D]; accept any shape with the same non-1 dims in order */
    int a = 0, b = 0;
    for (;;) {
        while (a < p->ndim && p->shape[a] == 1) a++;
        while (b < t->ndim && t->shape[b] == 1) b++;
        if (a == p->ndim || b == t->ndim) return a == p->ndim && b == t->ndim;
        if (p->shape[a] != t->shape[b]) return 0;
        a++; b++;
    }
}

static void shape_str(char* s, size_t n, const int64_t* sh, int nd) {
    size_t k = snprintf(s, n, "[");
    for (int i = 0; i < nd && k < n; i++) k += snprintf(s + k, n - k, i ? ",%lld" : "%lld", (long long)sh[i]);
    if (k < n) snprintf(s + k, n - k, "]");
}

/* Infers the source grid of a pos_embed with n_rows patch rows for a model grid g: same
 * aspect (2D: square or the model's ratio; 3D: the model's depth kept, or a cube root). */
static int infer_grid(const Vit* m, long rows, int* src) {
    const int* g = m->grid;
    if (m->cfg.spatial_dims == 2) {
        src[0] = 1;
        for (int h = 1; (long)h * h <= rows * 64; h++) {
            if (rows % h) continue;
            int w = (int)(rows / h);
            /* prefer the model's aspect ratio, then square */
            if ((long)h * g[2] == (long)w * g[1]) { src[1] = h; src[2] = w; return 1; }
        }
        return 0;
    }
    for (int d = 1; d <= rows; d++) {
        if (rows % d) continue;
        long hw = rows / d;
        for (int h = 1; (long)h * h <= hw * 64; h++) {
            if (hw % h) continue;
            int w = (int)(hw / h);
            if ((long)h * g[2] == (long)w * g[1] && (long)d * g[1] == (long)h * g[0]) {
                src[0] = d; src[1] = h; src[2] = w;
                return 1;
            }
        }
    }
    return 0;
}

int vit_load_weights(Vit* m, const char* path, int verbose, VitLoadReport* rep) {
    StFile f;
    char err[512];
    VitLoadReport r = {0};
    if (st_open(&f, path, err, sizeof err)) {
        fprintf(stderr, "vita: %s\n", err);
        return 1;
    }
    float* host = xcalloc(m->n_floats, sizeof(float));
    copy_d2h(m->ctx, host, m->w, m->n_floats * sizeof(float));
    char* used = xcalloc(f.n ? f.n : 1, 1);
    int rc = 0;
    for (int i = 0; i < m->n_params; i++) {
        const VitParam* p = &m->params[i];
        const StTensor* t = st_find(&f, p->name);
        if (!t) {
            r.missing++;
            if (verbose) printf("  missing   %s (kept at init)\n", p->name);
            continue;
        }
        used[t - f.t] = 1;
        if (same_shape(p, t)) {
            st_read_f32(&f, t, host + p->offset);
            r.loaded++;
            continue;
        }
        if (!strcmp(p->name, "pos_embed") && t->numel % m->cfg.dim == 0) {
            long rows = t->numel / m->cfg.dim - m->ncls;
            int src[3];
            if (rows > 0 && infer_grid(m, rows, src)) {
                float* tmp = xmalloc(sizeof(float) * t->numel);
                st_read_f32(&f, t, tmp);
                int D = m->cfg.dim;
                if (m->ncls) memcpy(host + p->offset, tmp, sizeof(float) * D);
                float* din = dev_alloc(m->ctx, sizeof(float) * rows * D);
                float* dout = dev_alloc(m->ctx, sizeof(float) * m->P * D);
                copy_h2d(m->ctx, din, tmp + m->ncls * D, sizeof(float) * rows * D);
                pos_resample_forward(m->ctx, dout, din, D, src[0], src[1], src[2], m->grid[0],
                                     m->grid[1], m->grid[2],
                                     m->cfg.spatial_dims == 2 ? POS_BICUBIC : POS_TRILINEAR);
                copy_d2h(m->ctx, host + p->offset + m->ncls * D, dout, sizeof(float) * m->P * D);
                dev_free(m->ctx, din);
                dev_free(m->ctx, dout);
                free(tmp);
                r.resized++;
                if (verbose)
                    printf("  resized   pos_embed grid %dx%dx%d -> %dx%dx%d (%s)\n", src[0], src[1],
                           src[2], m->grid[0], m->grid[1], m->grid[2],
                           m->cfg.spatial_dims == 2 ? "bicubic" : "trilinear");
                continue;
            }
        }
        char a[96], b[96];
        int64_t ps[5];
        for (int k = 0; k < p->ndim; k++) ps[k] = p->shape[k];
        shape_str(a, sizeof a, t->shape, t->ndim);
        shape_str(b, sizeof b, ps, p->ndim);
        fprintf(stderr, "vita: %s: tensor '%s' has shape %s but the model needs %s; "
                "check model.preset / dim / patch against the checkpoint's config\n",
                path, p->name, a, b);
        rc = 1;
        break;
    }
    if (!rc) {
        for (int i = 0; i < f.n; i++)
            if (!used[i]) {
                r.unexpected++;
                if (verbose) printf("  unexpected %s (ignored)\n", f.t[i].name);
            }
        copy_h2d(m->ctx, m->w, host, m->n_floats * sizeof(float));
        if (verbose)
            printf("weights %s: %d loaded, %d missing, %d unexpected, %d resized\n", path,
                   r.loaded, r.missing, r.unexpected, r.resized);
    }
    free(used);
    free(host);
    st_close(&f);
    if (rep) *rep = r;
    return rc;
}

int vit_config_from_weights(VitConfig* cfg, const char* path) {
    StFile f;
    char err[512];
    if (st_open(&f, path, err, sizeof err)) {
        fprintf(stderr, "vita: %s\n", err);
        return 1;
    }
    const char* js = st_meta(&f, "model");
    int rc = 1;
    if (!js)
        fprintf(stderr, "vita: %s: no 'model' config in __metadata__; convert it with "
                "tools/convert_checkpoint.py or set model.preset\n", path);
    else if (vit_config_from_json(cfg, js, err, sizeof err))
        fprintf(stderr, "vita: %s: %s\n", path, err);
    else
        rc = 0;
    st_close(&f);
    return rc;
}

int vit_save_weights(const Vit* m, const char* path, const char* const* meta, int n_meta) {
    float* host = xmalloc(sizeof(float) * m->n_floats);
    copy_d2h(m->ctx, host, m->w, m->n_floats * sizeof(float));
    StWriteTensor* t = xcalloc(m->n_params, sizeof *t);
    for (int i = 0; i < m->n_params; i++) {
        const VitParam* p = &m->params[i];
        t[i].name = p->name;
        t[i].ndim = p->ndim;
        for (int k = 0; k < p->ndim; k++) t[i].shape[k] = p->shape[k];
        t[i].data = host + p->offset;
    }
    char* cfg = vit_config_to_json(&m->cfg);
    int nm = n_meta + 2;
    const char** kv = xcalloc(2 * nm, sizeof(char*));
    kv[0] = "vita_version"; kv[1] = VITA_VERSION;
    kv[2] = "model"; kv[3] = cfg;
    for (int i = 0; i < 2 * n_meta; i++) kv[4 + i] = meta[i];
    char err[512];
    int rc = st_write_f32(path, t, m->n_params, kv, nm, err, sizeof err);
    if (rc) fprintf(stderr, "vita: %s\n", err);
    free(kv);
    free(cfg);
    free(t);
    free(host);
    return rc;
}
