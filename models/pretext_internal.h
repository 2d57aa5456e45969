/* models/pretext_internal.h — what pretext.c shares with the two objectives' files
 * (pretext_mae.c, pretext_contrastive.c); not part of the interface. */
#ifndef VITA_PRETEXT_INTERNAL_H
#define VITA_PRETEXT_INTERNAL_H

#include "pretext.h"

/* rng_stream tags (engine/rng.h): one stream per purpose, indexed by the caller's counter */
#define PRETEXT_TAG_MASK    0x4D41534Bull   /* "MASK" */
#define PRETEXT_TAG_SHUFFLE 0x53485546ull   /* "SHUF" */

typedef struct {
    /* mae */
    Vit dec;                   /* decoder blocks + decoder_norm, parameters inside p->w */
    int n_keep, Td;            /* kept patches per image; decoder tokens ncls + P */
    int32_t* perm_h;           /* host [max_batch, P] */
    int32_t* perm;             /* device [max_batch, P] */
    float *emb, *dec_x, *pred, *d_pred, *d_dec, *d_emb, *d_enc;
    /* contrastive */
    int32_t* pos_h;            /* host [2 max_batch] */
    int32_t* sigma_h;          /* host [max_batch], the pairing permutation */
    int32_t* pos;              /* device [2 max_batch] */
    float *feat, *h, *a, *z, *zn, *znorm, *d_z, *d_h, *d_feat, *d_tok;
    /* both */
    int fixed_B;               /* > 0: perm_h / pos_h hold a caller's draw for this batch */
    double* loss_d;            /* device scalar */
    float* acts;               /* one allocation, carved */
} PretextPriv;

static inline PretextPriv* pretext_priv(const Pretext* p) { return (PretextPriv*)p->priv; }
static inline float* pretext_w(const Pretext* p, const char* name) {
    const VitParam* q = pretext_find_param(p, name);
    return q ? p->w + q->offset : NULL;
}
static inline float* pretext_g(const Pretext* p, const char* name) {
    const VitParam* q = pretext_find_param(p, name);
    return q ? p->g + q->offset : NULL;
}

/* per objective: table rows appended to p->params (cap rows), activations for max_batch,
 * one loss evaluation (training = drop-path on), its backward */
int  pretext_mae_table_rows(const Pretext* p);
void pretext_mae_table(Pretext* p, int cap);
void pretext_mae_bind(Pretext* p);
long pretext_mae_act_floats(const Pretext* p, int max_batch);
void pretext_mae_carve(Pretext* p, float* base, int max_batch);
double pretext_mae_forward(Pretext* p, const float* img, int B, uint64_t seed, uint64_t counter);
void pretext_mae_backward(Pretext* p, float scale);

void pretext_contrastive_table(Pretext* p, int cap);
long pretext_contrastive_act_floats(const Pretext* p, int max_batch);
void pretext_contrastive_carve(Pretext* p, float* base, int max_batch);
double pretext_contrastive_forward(Pretext* p, const float* img, int B, uint64_t seed,
                                   uint64_t counter);
void pretext_contrastive_backward(Pretext* p, const float* img, float scale);

/* round(P * (1 - mask_ratio)), the kept patches per image */
int pretext_mae_keep(float mask_ratio, int P);

#endif
