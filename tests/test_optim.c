/* tests/test_optim.c — the optimizer driver (engine/optim.c) on top of the adamw_update op:
 * global grad norm and clipping with torch.nn.utils.clip_grad_norm_'s rule, AdamW over ranges
 * with per-range lr scale and weight decay, frozen ranges bit-unchanged (weights and moments),
 * and one whole ViT step in which the fixed sin-cos pos_embed stays bit-unchanged while every
 * trainable tensor moves. */
#include "testing.h"
#include "../engine/optim.h"
#include "../models/vit.h"

static void test_clip(Ctx* c) {
    long n = 100003;
    float* g = malloc(sizeof(float) * n);
    TRng r = {3};
    double ref = 0;
    for (long i = 0; i < n; i++) { g[i] = (float)trng_normal(&r); ref += (double)g[i] * g[i]; }
    ref = sqrt(ref);
    double* acc = dev_alloc(c, sizeof(double));
    /* double accumulation of n squares: relative error <= n·2^-53 ≈ 1e-11 worst case */
    t_check("grad_norm vs float64 sum [rel]", fabs(grad_norm(c, acc, g, n) - ref) / ref, 1e-11);
    float* h = malloc(sizeof(float) * n);
    memcpy(h, g, sizeof(float) * n);
    double before = clip_grad(c, acc, h, n, 1.0f);
    double after = grad_norm(c, acc, h, n);
    /* torch: g *= max_norm / (norm + 1e-6) when norm > max_norm; fp32 scaling, rel ~1e-7 */
    t_check("clip_grad: returns the norm before clipping [rel]", fabs(before - ref) / ref, 1e-11);
    t_check("clip_grad: norm after = max_norm·norm/(norm+1e-6) [rel]",
            fabs(after - ref / (ref + 1e-6)) / 1.0, 1e-6);
    memcpy(h, g, sizeof(float) * n);
    clip_grad(c, acc, h, n, (float)(2 * ref));
    t_true("clip_grad below max_norm leaves gradients bit-unchanged", !memcmp(h, g, sizeof(float) * n));
    dev_free(c, acc);
    free(g); free(h);
}

static void test_ranges(Ctx* c) {
    long n = 300;
    float *w = malloc(sizeof(float) * n), *g = malloc(sizeof(float) * n), *w0 = malloc(sizeof(float) * n);
    TRng r = {4};
    for (long i = 0; i < n; i++) { w[i] = (float)trng_normal(&r); g[i] = (float)trng_normal(&r); }
    memcpy(w0, w, sizeof(float) * n);
    OptRange rg[3] = {{0, 100, 1.0f, 0.1f, 0}, {100, 100, 0.25f, 0.0f, 0}, {200, 100, 1.0f, 0.1f, 1}};
    AdamW o;
    adamw_create(&o, c, n, rg, 3);
    for (int s = 0; s < 3; s++) adamw_step(&o, w, g, 1e-2f);
    t_true("frozen range: weights bit-unchanged after 3 steps", !memcmp(w + 200, w0 + 200, sizeof(float) * 100));
    float* mh = malloc(sizeof(float) * n);
    copy_d2h(c, mh, o.m, sizeof(float) * n);
    int zero = 1;
    for (int i = 200; i < 300; i++) zero &= mh[i] == 0.0f;
    t_true("frozen range: moments untouched", zero);
    /* with a constant gradient Adam's update is ~lr·sign(g) per step (m/sqrt(v) = ±1 after
     * bias correction): 3 steps move range 0 by ~3e-2 (+ decay) and range 1 by ~0.75e-2 */
    double d0 = 0, d1 = 0;
    for (int i = 0; i < 100; i++) { d0 += fabs(w[i] - w0[i]); d1 += fabs(w[100 + i] - w0[100 + i]); }
    d0 /= 100; d1 /= 100;
    printf("     mean |Δw|: range lr x1 %.5f, range lr x0.25 %.5f\n", d0, d1);
    /* range 1 has no weight decay: exactly 3 steps of lr/4 with |m̂/(sqrt(v̂)+eps)| = 1 - O(eps) */
    t_check("per-range lr scale: |Δw| = 3 · 0.25 · lr [rel]", fabs(d1 - 3 * 0.25e-2) / (3 * 0.25e-2), 1e-4);
    t_true("range with lr x1 moves ~4x more than the x0.25 range", d0 > 3.5 * d1 && d0 < 4.5 * d1);
    adamw_free(&o);
    free(w); free(g); free(w0); free(mh);
}

static void test_vit_frozen(Ctx* c) {
    VitConfig cfg;
    vit_preset(&cfg, "vit-tiny-3d");
    cfg.img[0] = 8; cfg.img[1] = cfg.img[2] = 16; cfg.patch[0] = 4; cfg.patch[1] = cfg.patch[2] = 8;
    cfg.dim = 24; cfg.heads = 2; cfg.depth = 2;
    cfg.pos_embed = VIT_POS_SINCOS;
    Vit m;
    vit_create(&m, c, &cfg);
    vit_init_weights(&m, 1);
    int B = 2;
    vit_alloc_activations(&m, B);
    long ni = (long)B * cfg.in_chans * cfg.img[0] * cfg.img[1] * cfg.img[2], no = (long)B * m.T * cfg.dim;
    float *img = dev_alloc(c, sizeof(float) * ni), *G = dev_alloc(c, sizeof(float) * no);
    float* h = malloc(sizeof(float) * (ni > no ? ni : no));
    TRng r = {8};
    for (long i = 0; i < ni; i++) h[i] = (float)trng_normal(&r);
    copy_h2d(c, img, h, sizeof(float) * ni);
    for (long i = 0; i < no; i++) h[i] = (float)trng_normal(&r);
    copy_h2d(c, G, h, sizeof(float) * no);
    float *w0 = malloc(sizeof(float) * m.n_floats), *w1 = malloc(sizeof(float) * m.n_floats);
    copy_d2h(c, w0, m.w, sizeof(float) * m.n_floats);
    OptRange* rg = malloc(sizeof(OptRange) * m.n_params);
    vit_opt_ranges(&m, 0.05f, 0.75f, rg);
    AdamW o;
    adamw_create(&o, c, m.n_floats, rg, m.n_params);
    vit_forward(&m, img, NULL, B);
    vit_zero_grad(&m);
    vit_backward(&m, img, NULL, G, NULL, NULL);
    adamw_step(&o, m.w, m.g, 1e-3f);
    copy_d2h(c, w1, m.w, sizeof(float) * m.n_floats);
    int frozen_ok = 1, moved = 1;
    for (int i = 0; i < m.n_params; i++) {
        const VitParam* p = &m.params[i];
        int same = !memcmp(w0 + p->offset, w1 + p->offset, sizeof(float) * p->numel);
        if (!p->trainable) frozen_ok &= same;
        else if (same) { moved = 0; printf("     did not move: %s\n", p->name); }
    }
    t_true("ViT step: fixed sin-cos pos_embed bit-unchanged", frozen_ok);
    t_true("ViT step: every trainable tensor moved", moved);
    adamw_free(&o);
    vit_free(&m);
    dev_free(c, img); dev_free(c, G);
    free(h); free(w0); free(w1); free(rg);
}

int main(void) {
    Ctx c;
    ctx_open(&c, "cpu", 0, 1);
    test_clip(&c);
    test_ranges(&c);
    test_vit_frozen(&c);
    ctx_close(&c);
    return t_summary();
}
