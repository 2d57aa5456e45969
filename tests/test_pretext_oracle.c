/* tests/test_pretext_oracle.c — the pretraining objectives (models/pretext.h) end to end:
 *
 * 1. Against the float64 PyTorch oracle (tests/oracle/pretext_oracle.py): a tiny 3D MAE (cls +
 *    one register, given mask) and a tiny 2D contrastive setup (given derangement of the
 *    positives), weights loaded into vita from the oracle's files; the loss and the gradient of
 *    every encoder and every objective parameter. Threshold per tensor = max(1e-10, 10 x the
 *    NMSE of PyTorch's own fp32 run against float64), as tests/test_vit_oracle.c explains:
 *    1e-10 covers fp32 rounding through a few accumulations of length <= 128 (relative error
 *    ~1e-6, NMSE ~1e-12) with 100x room for depth; the PyTorch term covers tensors that are
 *    ill-conditioned in fp32 for anyone. The qkv-bias key parts have true gradient 0 (softmax
 *    is shift invariant) and are checked by size (<= 1e-4 of the query part's largest entry:
 *    T·u ≈ 1e-6 of leftover cancellation). The frozen decoder_pos_embed must get no gradient
 *    (exactly 0), and vita's initial decoder_pos_embed must equal the oracle's sin-cos table
 *    to float rounding (NMSE <= 1e-13: one fp32 rounding per entry, u² ≈ 3.6e-15).
 * 2. Determinism: the same (seed, counter) gives the same loss bit for bit; another counter
 *    another mask (a different loss). The seeded draws are valid (mask rows permutations;
 *    shuffle_pairs positives a derangement across the halves).
 * 3. Learning: 20 AdamW steps (lr 1e-3, ProFound's pretraining lr) on a fixed batch of 4
 *    phantom cases; each objective's own loss, evaluated with one fixed mask / pairing before
 *    and after, must (a) decrease and (b) end below the loss of an uninformed predictor, so
 *    that the decrease is learning from the images and not only un-doing the random init:
 *    MAE with norm_pix: every normalised target row has mean 0 and unbiased variance 1, so a
 *    prediction that ignores the input (any constant row c) scores (K-1)/K + |c|^2/K >=
 *    (K-1)/K, K = pixels per patch; contrastive: similarities that ignore the image give
 *    every one of the 2B-1 candidates the same weight, loss log(2B - 1).
 * 4. Drop-path + masking, which the oracle lacks, on the oracle MAE and on an encoder without
 *    cls but with registers: directional derivative vs central difference (derivation at
 *    dropout_direction).
 */
#include "oracle_io.h"
#include "../models/pretext_internal.h"   /* the drawn mask / positives, for the checks */
#include "../models/vit_weights.h"
#include "../engine/optim.h"
#include "../engine/phantom.h"

static double worst_pct;

static void check_key(const StFile* io, const char* key, const float* got, long n, const char* cfg) {
    char name[200], th[200], lab[260];
    long nr = 0;
    snprintf(name, sizeof name, "ref.%s", key);
    snprintf(th, sizeof th, "fp32nmse.%s", key);
    float *ref = load_t(io, name, &nr), *tn = load_t(io, th, NULL);
    snprintf(lab, sizeof lab, "%s %s [nmse]", cfg, key);
    if (!ref || nr != n) { t_true(lab, 0); free(ref); free(tn); return; }
    double thr = fmax(1e-10, tn ? 10.0 * tn[0] : 0), v;
    const char* dot = strrchr(key, '.');
    if (dot && !strcmp(dot, ".bias") && strstr(key, "attn.qkv")) {
        int D = (int)(n / 3);
        double mq = 0, mk = 0;
        for (int j = 0; j < D; j++) { mq = fmax(mq, fabs(ref[j])); mk = fmax(mk, fabs(got[D + j])); }
        const char* part[2] = {"q", "v"};
        for (int q = 0; q < 2; q++) {
            snprintf(th, sizeof th, "fp32nmse_%s.%s", part[q], key);
            float* tq = load_t(io, th, NULL);
            double thq = fmax(1e-10, tq ? 10.0 * tq[0] : 0);
            v = nmse_ref(got + 2 * q * D, ref + 2 * q * D, D);
            snprintf(lab, sizeof lab, "%s %s %s part [nmse]", cfg, key, part[q]);
            t_check(lab, v, thq);
            worst_pct = fmax(worst_pct, 100 * v / thq);
            free(tq);
        }
        snprintf(lab, sizeof lab, "%s %s key part max|g|/max|g_q|", cfg, key);
        t_check(lab, mk / fmax(mq, 1e-30), 1e-4);
    } else {
        v = nmse_ref(got, ref, n);
        t_check(lab, v, thr);
        worst_pct = fmax(worst_pct, 100 * v / thr);
    }
    free(ref); free(tn);
}

static float* upload(Ctx* c, const float* h, long n) {
    float* d = dev_alloc(c, sizeof(float) * n);
    copy_h2d(c, d, h, sizeof(float) * n);
    return d;
}

/* Drop-path with masking (the oracle has none): the analytic directional derivative g . v
 * against the central difference (L(w + t v) - L(w - t v)) / 2t with the same (seed, counter),
 * i.e. the same mask and the same drop-path draws, over every encoder and objective weight at
 * once; v = N(0, 1) per trainable entry, t = 3e-4. Allowed error = rounding + truncation:
 * each fp32 loss is off by about u |L| (the oracle loss above: relative error <= 1e-7), which
 * puts up to 2 u |L| / 2t into the quotient, counted twice for safety: 2 u |L| / t; the
 * truncation t^2 |d3L| / 6 scales with t^2 (measured ~5e-4 of |g . v| at t = 1e-3 on the
 * oracle MAE when this was written, so ~5e-5 at 3e-4), allowed 1e-3 |g . v|. The check prints the error over that
 * sum (must be <= 1); a missing or wrong gradient of any tensor moves g . v by its share. */
static void dropout_direction(Pretext* p, const float* img_d, int B, const char* what) {
    Vit* e = p->enc;
    Ctx* c = p->ctx;
    float dp0 = e->cfg.drop_path;
    e->cfg.drop_path = 0.5f;
    pretext_fix_draw(p, NULL, B);
    long ne = e->n_floats, np = p->n_floats;
    float *we = malloc(sizeof(float) * ne), *wp = malloc(sizeof(float) * np);
    float *ge = malloc(sizeof(float) * ne), *gp = malloc(sizeof(float) * np);
    float *ve = t_fnew(ne), *vp = t_fnew(np), *x = malloc(sizeof(float) * (ne > np ? ne : np));
    copy_d2h(c, we, e->w, sizeof(float) * ne);
    copy_d2h(c, wp, p->w, sizeof(float) * np);
    TRng r = {77};
    for (int i = 0; i < e->n_params; i++)
        if (e->params[i].trainable) t_frandn(&r, ve + e->params[i].offset, e->params[i].numel, 1.0);
    for (int i = 0; i < p->n_params; i++)
        if (p->params[i].trainable) t_frandn(&r, vp + p->params[i].offset, p->params[i].numel, 1.0);
    vit_zero_grad(e);
    pretext_zero_grad(p);
    double l0 = pretext_forward(p, img_d, B, 3, 1);
    pretext_backward(p, img_d, 1.0f);
    copy_d2h(c, ge, e->g, sizeof(float) * ne);
    copy_d2h(c, gp, p->g, sizeof(float) * np);
    double gv = 0, L[2];
    for (long i = 0; i < ne; i++) gv += (double)ge[i] * ve[i];
    for (long i = 0; i < np; i++) gv += (double)gp[i] * vp[i];
    const double t = 3e-4;
    for (int s = 0; s < 2; s++) {
        double sg = s ? -t : t;
        for (long i = 0; i < ne; i++) x[i] = (float)(we[i] + sg * ve[i]);
        copy_h2d(c, e->w, x, sizeof(float) * ne);
        for (long i = 0; i < np; i++) x[i] = (float)(wp[i] + sg * vp[i]);
        copy_h2d(c, p->w, x, sizeof(float) * np);
        L[s] = pretext_forward(p, img_d, B, 3, 1);
    }
    copy_h2d(c, e->w, we, sizeof(float) * ne);
    copy_h2d(c, p->w, wp, sizeof(float) * np);
    double fd = (L[0] - L[1]) / (2 * t);
    char lab[200];
    snprintf(lab, sizeof lab, "%s: drop-path active in training (loss differs from pretext_eval's)", what);
    t_true(lab, pretext_eval(p, img_d, B, 3, 1) != l0);
    double tol = 1e-3 * fabs(gv) + 2 * T_U * fabs(l0) / t;
    snprintf(lab, sizeof lab, "%s, %s + drop-path 0.5: |g.v - FD| / tol (g.v %.4g, FD %.4g)",
             what, pretext_objective_name(p->cfg.objective), gv, fd);
    t_check(lab, fabs(gv - fd) / tol, 1.0);
    e->cfg.drop_path = dp0;
    free(we); free(wp); free(ge); free(gp); free(ve); free(vp); free(x);
}

static void oracle_case(const char* name, int objective) {
    char wpath[512], ppath[512], iopath[512], err[512], lab[256];
    worst_pct = 0;
    oracle_ensure(iopath, sizeof iopath, "pretext_con.io.safetensors", "tests/oracle/pretext_oracle.py");
    snprintf(wpath, sizeof wpath, "%s/%s.weights.safetensors", oracle_dir(), name);
    snprintf(ppath, sizeof ppath, "%s/%s.pretext.safetensors", oracle_dir(), name);
    snprintf(iopath, sizeof iopath, "%s/%s.io.safetensors", oracle_dir(), name);
    VitConfig vc;
    StFile io, pw;
    if (vit_config_from_weights(&vc, wpath) || st_open(&io, iopath, err, sizeof err) ||
        st_open(&pw, ppath, err, sizeof err)) {
        t_true("pretext oracle files readable (run make oracle)", 0);
        return;
    }
    Ctx c;
    ctx_open(&c, "cpu", 0, 1);
    Vit e;
    vit_create(&e, &c, &vc);
    VitLoadReport rep;
    t_true("oracle encoder weights load completely",
           !vit_load_weights(&e, wpath, 0, &rep) && rep.missing == 0 && rep.unexpected == 0);
    PretextConfig pc;
    pretext_config_default(&pc, objective);
    /* the oracle's objective settings (pretext_oracle.py MAE / CON) */
    pc.mask_ratio = 0.75f;  pc.norm_pix_loss = 1;  pc.dec_dim = 14;  pc.dec_depth = 2;  pc.dec_heads = 2;
    pc.proj_hidden = 20;  pc.proj_dim = 8;  pc.temperature = 0.2f;  pc.pool = 1;
    Pretext p;
    pretext_create(&p, &c, &pc, &e);
    long nimg = 0, nidx = 0;
    float *img = load_t(&io, "input.img", &nimg), *idxf = load_t(&io, "input.idx", &nidx);
    int nview = (int)(nimg / ((long)vc.in_chans * vc.img[0] * vc.img[1] * vc.img[2]));
    int B = objective == PRETEXT_MAE ? nview : nview / 2;
    pretext_alloc_activations(&p, B);
    pretext_init_weights(&p, 3);

    /* objective weights by name; decoder_pos_embed: vita's init vs the oracle's table first */
    float* wh = malloc(sizeof(float) * p.n_floats);
    copy_d2h(&c, wh, p.w, sizeof(float) * p.n_floats);
    int loaded = 0;
    for (int i = 0; i < p.n_params; i++) {
        const VitParam* v = &p.params[i];
        const StTensor* t = st_find(&pw, v->name);
        if (!t || t->numel != v->numel) continue;
        float* h = malloc(sizeof(float) * v->numel);
        st_read_f32(&pw, t, h);
        if (!strcmp(v->name, "decoder_pos_embed"))
            t_check("initial decoder_pos_embed = oracle sin-cos [nmse]", nmse_ref(wh + v->offset, h, v->numel), 1e-13);
        memcpy(wh + v->offset, h, sizeof(float) * v->numel);
        free(h);
        loaded++;
    }
    snprintf(lab, sizeof lab, "%s: all %d objective tensors in the oracle file", name, p.n_params);
    t_true(lab, loaded == p.n_params);
    copy_h2d(&c, p.w, wh, sizeof(float) * p.n_floats);

    int32_t* idx = to_i32(idxf, nidx);
    float* img_d = upload(&c, img, nimg);
    pretext_fix_draw(&p, idx, B);
    double loss = pretext_forward(&p, img_d, B, 1, 0);
    vit_zero_grad(&e);
    pretext_zero_grad(&p);
    pretext_backward(&p, img_d, 1.0f);
    float loss_f = (float)loss;
    check_key(&io, "loss", &loss_f, 1, name);
    float* ge = malloc(sizeof(float) * e.n_floats);
    float* gp = malloc(sizeof(float) * p.n_floats);
    copy_d2h(&c, ge, e.g, sizeof(float) * e.n_floats);
    copy_d2h(&c, gp, p.g, sizeof(float) * p.n_floats);
    char key[160];
    for (int i = 0; i < e.n_params; i++) {
        snprintf(key, sizeof key, "grad.%s", e.params[i].name);
        check_key(&io, key, ge + e.params[i].offset, e.params[i].numel, name);
    }
    for (int i = 0; i < p.n_params; i++) {
        const VitParam* v = &p.params[i];
        if (!v->trainable) {
            double mx = 0;
            for (long k = 0; k < v->numel; k++) mx = fmax(mx, fabs(gp[v->offset + k]));
            snprintf(lab, sizeof lab, "%s %s (frozen) max|grad|", name, v->name);
            t_check(lab, mx, 0);
            continue;
        }
        snprintf(key, sizeof key, "grad.%s", v->name);
        check_key(&io, key, gp + v->offset, v->numel, name);
    }
    printf("-- %s: worst tensor %.2f%% of its threshold\n", name, worst_pct);

    /* determinism of the seeded draws */
    pretext_fix_draw(&p, NULL, B);
    double a = pretext_forward(&p, img_d, B, 11, 5), b = pretext_forward(&p, img_d, B, 11, 5);
    snprintf(lab, sizeof lab, "%s: same (seed, counter) -> same loss bit for bit", name);
    t_true(lab, !memcmp(&a, &b, sizeof a));
    if (objective == PRETEXT_MAE) {
        double d = pretext_forward(&p, img_d, B, 11, 6);
        snprintf(lab, sizeof lab, "%s: another counter -> another mask", name);
        t_true(lab, d != a);
    }
    if (objective == PRETEXT_MAE) dropout_direction(&p, img_d, B, name);
    free(ge); free(gp); free(wh); free(img); free(idxf); free(idx);
    dev_free(&c, img_d);
    pretext_free(&p);
    vit_free(&e);
    st_close(&io);
    st_close(&pw);
    ctx_close(&c);
}

/* vit-tiny-3d cut down: a D x H x W volume in 4 x 8 x 8 patches, width H, depth 2, 2 heads */
static VitConfig tiny3d(int D, int H, int W) {
    VitConfig vc;
    vit_preset(&vc, "vit-tiny-3d");
    vc.img[0] = D; vc.img[1] = H; vc.img[2] = W;
    vc.patch[0] = 4; vc.patch[1] = 8; vc.patch[2] = 8;
    vc.dim = H; vc.depth = 2; vc.heads = 2;
    return vc;
}

/* a freshly initialised encoder and objective: decoder width w (depth 1, 2 heads) or a
 * projection w -> 2w -> w/2 */
static void tiny_pretext(Pretext* p, Vit* e, Ctx* c, const VitConfig* vc, int objective, int w,
                         int shuffle, int B, uint64_t seed) {
    vit_create(e, c, vc);
    vit_init_weights(e, seed);
    PretextConfig pc;
    pretext_config_default(&pc, objective);
    pc.dec_dim = w; pc.dec_depth = 1; pc.dec_heads = 2;
    pc.proj_hidden = 2 * w; pc.proj_dim = w / 2;
    pc.shuffle_pairs = shuffle;
    pretext_create(p, c, &pc, e);
    pretext_alloc_activations(p, B);
    pretext_init_weights(p, seed + 1);
}

/* 20 AdamW steps on a fixed phantom batch (see the header for the two bounds) */
static void learning(int objective) {
    enum { B = 4, STEPS = 20 };
    Ctx c;
    ctx_open(&c, "cpu", 0, 1);
    VitConfig vc = tiny3d(16, 32, 32);
    Vit e;
    Pretext p;
    tiny_pretext(&p, &e, &c, &vc, objective, 24, 0, B, 5);

    PhantomSpec ps;
    phantom_default(&ps);
    ps.D = vc.img[0]; ps.H = vc.img[1]; ps.W = vc.img[2];
    long per = 3L * ps.D * ps.H * ps.W, nv = objective == PRETEXT_MAE ? B : 2 * B;
    float* h = malloc(sizeof(float) * per * nv);
    for (int i = 0; i < B; i++) phantom_case(&ps, i, h + i * per, NULL, NULL);
    if (objective == PRETEXT_CONTRASTIVE)   /* second view: left-right flip, contrast 0.8 */
        for (int i = 0; i < B; i++)
            for (long v = 0; v < per; v++) {
                long x = v % ps.W;
                h[(B + i) * per + v] = 0.8f * h[i * per + v - x + (ps.W - 1 - x)];
            }
    float* img = upload(&c, h, per * nv);
    OptRange* re = malloc(sizeof(OptRange) * e.n_params);
    OptRange* rp = malloc(sizeof(OptRange) * p.n_params);
    AdamW oe, op;
    adamw_create(&oe, &c, e.n_floats, re, vit_opt_ranges(&e, 0.05f, 1.0f, re));
    adamw_create(&op, &c, p.n_floats, rp, pretext_opt_ranges(&p, 0.05f, rp));
    double before = pretext_eval(&p, img, B, 9, 0);
    for (int s = 0; s < STEPS; s++) {
        vit_zero_grad(&e);
        pretext_zero_grad(&p);
        pretext_forward(&p, img, B, 9, (uint64_t)s);
        pretext_backward(&p, img, 1.0f);
        adamw_step(&oe, e.w, e.g, 1e-3f);
        adamw_step(&op, p.w, p.g, 1e-3f);
    }
    double after = pretext_eval(&p, img, B, 9, 0);
    char lab[160];
    const char* nm = pretext_objective_name(objective);
    snprintf(lab, sizeof lab, "%s: loss after %d AdamW steps / before (%.4f -> %.4f)", nm, STEPS,
             before, after);
    t_check(lab, after / before, 1.0 - 1e-9);
    double uninformed = objective == PRETEXT_MAE ? (double)(e.Kp - 1) / e.Kp : log(2.0 * B - 1);
    snprintf(lab, sizeof lab, "%s: loss after / uninformed predictor's %.4f", nm, uninformed);
    t_check(lab, after / uninformed, 1.0 - 1e-9);
    adamw_free(&oe); adamw_free(&op);
    free(re); free(rp); free(h);
    dev_free(&c, img);
    pretext_free(&p);
    vit_free(&e);
    ctx_close(&c);
}

/* The seeded draws: every MAE mask row a permutation of 0..P-1; the shuffle_pairs positives
 * a pairing (pos[pos[i]] = i) across the halves with no image paired with its own second view
 * (a derangement); and an encoder without cls but with registers (t0 = 0, rows dropped by the
 * unshuffle) through the drop-path directional check above. */
static void draws(void) {
    Ctx c;
    ctx_open(&c, "cpu", 0, 1);
    VitConfig vc = tiny3d(8, 16, 16);
    vc.cls_token = 0; vc.num_registers = 2;
    for (int obj = 0; obj < 2; obj++) {
        enum { B = 5 };
        Vit e;
        Pretext p;
        tiny_pretext(&p, &e, &c, &vc, obj, 12, 1, B, 8);
        long n = (long)(obj ? 2 * B : B) * vc.in_chans * vc.img[0] * vc.img[1] * vc.img[2];
        float* h = malloc(sizeof(float) * n);
        TRng r = {5};
        t_frandn(&r, h, n, 1.0);
        float* img = upload(&c, h, n);
        pretext_forward(&p, img, B, 21, 4);
        const PretextPriv* q = pretext_priv(&p);
        int ok = 1;
        if (obj == PRETEXT_MAE) {
            for (int b = 0; b < B; b++) {
                int seen[64] = {0};
                for (int i = 0; i < e.P; i++) {
                    int v = q->perm_h[b * e.P + i];
                    ok &= v >= 0 && v < e.P && !seen[v]++;
                }
            }
            t_true("mae: every seeded mask row is a permutation of the patches", ok);
            dropout_direction(&p, img, B, "no cls, 2 registers");
        } else {
            for (int i = 0; i < 2 * B; i++) {
                int j = q->pos_h[i];
                ok &= j >= 0 && j < 2 * B && q->pos_h[j] == i && (i < B) != (j < B) && j % B != i % B;
            }
            t_true("contrastive shuffle_pairs: positives pair the halves, never an image with itself", ok);
        }
        free(h);
        dev_free(&c, img);
        pretext_free(&p);
        vit_free(&e);
    }
    ctx_close(&c);
}

int main(void) {
    draws();
    oracle_case("pretext_mae", PRETEXT_MAE);
    oracle_case("pretext_con", PRETEXT_CONTRASTIVE);
    learning(PRETEXT_MAE);
    learning(PRETEXT_CONTRASTIVE);
    return t_summary();
}
