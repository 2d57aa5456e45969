/* engine/train_state.c — what a training checkpoint holds besides the config: encoder + head
 * weights (one safetensors file, timm names then head.*; the head's BatchNorm running
 * statistics live in its parameter buffer and travel with it) and the resume state (named
 * blobs of checkpoint.h: progress counters, the validation curve, the last alignment row and
 * the AdamW moments). See train.h. */
#include "train.h"
#include "check.h"
#include "headmeta.h"
#include "../models/vit_weights.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

StWriteTensor* train_weight_tensors(const Vit* m, const Head* h, float** host, int* n) {
    long nf = m->n_floats + h->n_floats;
    float* buf = xmalloc(sizeof(float) * (nf ? nf : 1));
    copy_d2h(m->ctx, buf, m->w, sizeof(float) * m->n_floats);
    if (h->n_floats) copy_d2h(h->ctx, buf + m->n_floats, h->w, sizeof(float) * h->n_floats);
    int nt = m->n_params + h->n_params;
    StWriteTensor* t = xcalloc(nt ? nt : 1, sizeof *t);
    for (int i = 0; i < m->n_params; i++) {
        const VitParam* p = &m->params[i];
        t[i].name = p->name;
        t[i].ndim = p->ndim;
        for (int k = 0; k < p->ndim; k++) t[i].shape[k] = p->shape[k];
        t[i].data = buf + p->offset;
    }
    for (int i = 0; i < h->n_params; i++) {
        const VitParam* p = &h->params[i];
        StWriteTensor* w = &t[m->n_params + i];
        w->name = p->name;
        w->ndim = p->ndim;
        for (int k = 0; k < p->ndim; k++) w->shape[k] = p->shape[k];
        w->data = buf + m->n_floats + p->offset;
    }
    *host = buf;
    *n = nt;
    return t;
}

int train_save_weights(const char* path, const Vit* m, const Head* h, const char* const* meta,
                       int n_meta, char* err, size_t errlen) {
    float* host;
    int n;
    StWriteTensor* t = train_weight_tensors(m, h, &host, &n);
    int rc = st_write_f32(path, t, n, meta, n_meta, err, errlen);
    free(t);
    free(host);
    return rc;
}

int train_file_has_head(const char* path) {
    StFile f;
    char err[512];
    if (st_open(&f, path, err, sizeof err)) return 0;
    int has = 0;
    for (int i = 0; i < f.n && !has; i++) has = !strncmp(f.t[i].name, "head.", 5);
    st_close(&f);
    return has;
}

int train_read_params(StFile* f, const char* path, const VitParam* params, int n_params,
                      long n_floats, Ctx* c, float* w, const char* what, const char* wrong_size,
                      char* err, size_t errlen) {
    float* host = xmalloc(sizeof(float) * (n_floats ? n_floats : 1));
    int rc = 0;
    for (int i = 0; i < n_params && !rc; i++) {
        const VitParam* p = &params[i];
        const StTensor* t = st_find(f, p->name);
        if (!t || t->numel != p->numel) {
            snprintf(err, errlen, "%s: %s tensor '%s' %s", path, what, p->name,
                     t ? wrong_size : "missing");
            rc = 1;
        } else {
            st_read_f32(f, t, host + p->offset);
        }
    }
    if (!rc && n_floats) copy_h2d(c, w, host, sizeof(float) * n_floats);
    free(host);
    return rc;
}

int train_load_weights(const char* path, Vit* m, Head* h, char* err, size_t errlen) {
    StFile f;
    if (st_open(&f, path, err, errlen)) return 1;
    int rc = train_read_params(&f, path, m->params, m->n_params, m->n_floats, m->ctx, m->w,
                               "encoder", "has the wrong size (the run's model config changed?)",
                               err, errlen);
    st_close(&f);
    if (!rc && h) rc = head_load_weights(h, path, err, errlen);
    return rc;
}

int train_state_save(const char* run_dir, const TrainState* s, const Vit* m, const Head* h,
                     const char* const* meta, int n_meta, int keep, char* err, size_t errlen) {
    float* host;
    int n;
    StWriteTensor* t = train_weight_tensors(m, h, &host, &n);
    CkptBlob b[8];
    int nb = 0;
    b[nb++] = (CkptBlob){"progress", &s->p, sizeof s->p};
    b[nb++] = (CkptBlob){"val_curve", s->curve, sizeof(double) * (size_t)(s->p.epochs_done + 1 > 0 ? s->p.epochs_done + 1 : 0)};
    if (s->align_last && s->p.n_est * s->p.n_layers > 0)
        b[nb++] = (CkptBlob){"align_last", s->align_last, sizeof(double) * (size_t)(s->p.n_est * s->p.n_layers)};
    b[nb++] = (CkptBlob){"adam_enc_m", s->enc_m, sizeof(float) * (size_t)s->n_enc};
    b[nb++] = (CkptBlob){"adam_enc_v", s->enc_v, sizeof(float) * (size_t)s->n_enc};
    b[nb++] = (CkptBlob){"adam_head_m", s->head_m, sizeof(float) * (size_t)s->n_head};
    b[nb++] = (CkptBlob){"adam_head_v", s->head_v, sizeof(float) * (size_t)s->n_head};
    int rc = ckpt_save(run_dir, (long)s->p.step, t, n, meta, n_meta, b, nb, keep, err, errlen);
    free(t);
    free(host);
    return rc;
}

static int take(const CkptState* cs, const char* name, void** dst, size_t want, int required,
                char* err, size_t errlen) {
    size_t bytes = 0;
    const void* p = ckpt_blob(cs, name, &bytes);
    *dst = NULL;
    if (!p) {
        if (required) snprintf(err, errlen, "checkpoint state has no '%s' blob (not a vita train checkpoint?)", name);
        return required;
    }
    if (bytes != want) {
        snprintf(err, errlen, "checkpoint state blob '%s' has %zu bytes, this run needs %zu "
                 "(the model or head config changed since the checkpoint)", name, bytes, want);
        return 1;
    }
    *dst = xmalloc(want ? want : 1);
    memcpy(*dst, p, want);
    return 0;
}

int train_state_unpack(const CkptState* cs, TrainState* s, long n_enc, long n_head, char* err,
                       size_t errlen) {
    memset(s, 0, sizeof *s);
    size_t bytes = 0;
    const void* pp = ckpt_blob(cs, "progress", &bytes);
    if (!pp || bytes != sizeof s->p) {
        snprintf(err, errlen, "checkpoint state: %s", pp ? "progress blob of another vita version"
                                                          : "no progress blob (not a vita train checkpoint?)");
        return 1;
    }
    memcpy(&s->p, pp, sizeof s->p);
    if (s->p.magic != TRAIN_STATE_MAGIC || s->p.size != sizeof s->p) {
        snprintf(err, errlen, "checkpoint state: progress blob of another vita version");
        return 1;
    }
    s->n_enc = n_enc;
    s->n_head = n_head;
    void* v;
    size_t nc = (size_t)(s->p.epochs_done + 1 > 0 ? s->p.epochs_done + 1 : 0);
    if (take(cs, "val_curve", &v, sizeof(double) * nc, nc > 0, err, errlen)) goto fail;
    s->curve = v;
    if (s->p.n_est * s->p.n_layers > 0) {
        if (take(cs, "align_last", &v, sizeof(double) * (size_t)(s->p.n_est * s->p.n_layers), 0, err, errlen)) goto fail;
        s->align_last = v;
    }
    if (take(cs, "adam_enc_m", &v, sizeof(float) * (size_t)n_enc, 1, err, errlen)) goto fail;
    s->enc_m = v;
    if (take(cs, "adam_enc_v", &v, sizeof(float) * (size_t)n_enc, 1, err, errlen)) goto fail;
    s->enc_v = v;
    if (take(cs, "adam_head_m", &v, sizeof(float) * (size_t)n_head, 1, err, errlen)) goto fail;
    s->head_m = v;
    if (take(cs, "adam_head_v", &v, sizeof(float) * (size_t)n_head, 1, err, errlen)) goto fail;
    s->head_v = v;
    return 0;
fail:
    train_state_free(s);
    return 1;
}

void train_state_free(TrainState* s) {
    free(s->curve);
    free(s->align_last);
    free(s->enc_m);
    free(s->enc_v);
    free(s->head_m);
    free(s->head_v);
    s->curve = s->align_last = NULL;
    s->enc_m = s->enc_v = s->head_m = s->head_v = NULL;
}
