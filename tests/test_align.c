/* tests/test_align.c — alignment measurement (engine/align.c) on a tiny random-init 3D ViT and
 * random probe images:
 *   - the initial encoder against itself: mmd2_paired 0 (within the MMD tolerance), linear CKA
 *     1, mean cosine distance 0, weight_dist exactly 0; σ fixed > 0, noise floor finite;
 *   - after adding noise to block 2's fc2: layer 1 and its weight_dist stay exactly 0 (same
 *     features bit for bit), layers 2, 3 and norm move, weight_dist of block 2 equals the
 *     host recomputation in double and the other blocks stay 0;
 *   - independent recomputation: `vita features` (cmd_features, in process) on a dataset file
 *     holding the probe images, with the initial and the perturbed weights; mmd_compute on
 *     the files' features with the same fixed σ gives every estimator align_measure returned;
 *     the noise floor equals mmd2_u on the two halves recomputed from the file;
 *   - token features: group = probe_n_tokens / n_images rows per image, distinct sorted patch
 *     indices, rows equal the block output's token rows, and the same rows as `vita features
 *     --tokens group --seed S`;
 *   - the l2 variant: unit-norm rows; cls: the cls token row; bad setups rejected with a line.
 */
#include "testing.h"
#include "vit_fixture.h"
#include "../engine/align.h"
#include "../engine/dataset.h"
#include "../engine/features.h"
#include "../engine/h5read.h"
#include "../models/vit_weights.h"

#include <hdf5.h>

enum { NI = 10, MB = 4 };
static char DIR_[256];
static Ctx C;

static long per_image(const VitConfig* c) { return (long)c->in_chans * c->img[0] * c->img[1] * c->img[2]; }

static void base_config(Config* cfg) {
    config_default(cfg);
    cfg->seed = 7;
    cfg->n_align_layers = 4;
    cfg->align_layers[0] = 1; cfg->align_layers[1] = 2; cfg->align_layers[2] = 3;
    cfg->align_layers[3] = 0;
    snprintf(cfg->align_feature, sizeof cfg->align_feature, "pooled");
    snprintf(cfg->align_normalize, sizeof cfg->align_normalize, "none");
    cfg->probe_n_images = NI;
    cfg->probe_n_tokens = 30;
    static const int est[] = {EST_MMD2_PAIRED, EST_MMD2_PAIRED_SE, EST_MMD2_U, EST_MMD2_B,
                              EST_CKA_LINEAR, EST_CKA_RBF, EST_MEAN_COS_DIST, EST_ENERGY};
    cfg->n_estimators = (int)(sizeof est / sizeof est[0]);
    for (int e = 0; e < cfg->n_estimators; e++) cfg->estimators[e] = est[e];
    cfg->bw_rule = MMD_BW_MEDIAN;
    cfg->n_scales = 3;
    cfg->scales[0] = 0.5; cfg->scales[1] = 1; cfg->scales[2] = 2;
    cfg->permutations = 0;
}

static int est_pos(const Config* cfg, int e) {
    for (int k = 0; k < cfg->n_estimators; k++)
        if (cfg->estimators[k] == e) return k;
    return -1;
}

/* the probe images as a dataset file, split val (grid = the model's img: the centre crop is the
 * identity) */
static void write_dataset(const char* path, const VitConfig* vc, const float* img) {
    char err[512];
    DatasetSpec s;
    memset(&s, 0, sizeof s);
    s.n = NI + 1; s.C = vc->in_chans; s.D = vc->img[0]; s.H = vc->img[1]; s.W = vc->img[2];
    s.channels = "t2w,adc,hbv";
    s.spacing_zyx[0] = s.spacing_zyx[1] = s.spacing_zyx[2] = 1;
    s.source = "test_align";
    DatasetWriter* w = dataset_create(path, &s, err, sizeof err);
    if (!w) { printf("FAIL dataset_create: %s\n", err); exit(1); }
    for (int i = 0; i < NI; i++) {
        char id[16];
        snprintf(id, sizeof id, "p%02d", i);
        dataset_write_case(w, i, id, img + i * per_image(vc), NULL, -1, SPLIT_VAL, -1, NULL, NULL,
                           NULL, NULL, NULL, NULL);
    }
    /* one training case (a dataset needs one), not part of the probe */
    dataset_write_case(w, NI, "train0", img, NULL, -1, SPLIT_TRAIN, -1, NULL, NULL, NULL, NULL,
                       NULL, NULL);
    if (dataset_finish(w, err, sizeof err)) { printf("FAIL dataset_finish: %s\n", err); exit(1); }
}

static void run_features(const char* weights, const char* data, const char* out, const char* extra) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "features --weights %s --data %s --out %s --layers 1,2,3,norm "
             "--split val --batch %d --device cpu --quiet %s", weights, data, out, MB, extra);
    char* argv[32];
    int argc = 0;
    for (char* t = strtok(cmd, " "); t && argc < 31; t = strtok(NULL, " ")) argv[argc++] = t;
    argv[argc] = NULL;
    fflush(stdout);
    int rc = cmd_features(argc, argv);
    if (rc) { printf("FAIL cmd_features exit %d\n", rc); exit(1); }
}

static float* read_mat(const char* path, const char* name, long* rows, long* cols) {
    char err[512];
    float* x = NULL;
    if (h5_read_matrix(path, name, &x, rows, cols, err, sizeof err)) {
        printf("FAIL %s\n", err);
        exit(1);
    }
    return x;
}

static double max_abs_diff_dev(const float* dev, const float* host, long n) {
    float* h = t_fnew(n);
    copy_d2h(&C, h, dev, sizeof(float) * n);
    double mx = 0;
    for (long i = 0; i < n; i++) mx = fmax(mx, fabs((double)h[i] - host[i]));
    free(h);
    return mx;
}

/* |a - b| <= rtol |b| + atol, NaN == NaN */
static int close_to(double a, double b, double rtol, double atol) {
    if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
    return fabs(a - b) <= rtol * fabs(b) + atol;
}

static void test_pooled(Vit* m, const float* img) {
    const VitConfig* vc = &m->cfg;
    Config cfg;
    base_config(&cfg);
    char err[512], w0p[300], w1p[300], dp[300], f0p[300], f1p[300];
    snprintf(w0p, sizeof w0p, "%s/w0.safetensors", DIR_);
    snprintf(w1p, sizeof w1p, "%s/w1.safetensors", DIR_);
    snprintf(dp, sizeof dp, "%s/probe.h5", DIR_);
    snprintf(f0p, sizeof f0p, "%s/f0.h5", DIR_);
    snprintf(f1p, sizeof f1p, "%s/f1.h5", DIR_);
    const char* meta[] = {"task", "none"};
    vit_save_weights(m, w0p, meta, 1);
    write_dataset(dp, vc, img);

    Align a;
    if (!t_true("align_init (pooled)", align_init(&a, &cfg, &C, m, img, NULL, NI, err, sizeof err) == 0)) {
        printf("  %s\n", err);
        return;
    }
    const int L = a.n_layers, NE = cfg.n_estimators;
    t_true("pooled: rows = images, group 1, dim", a.rows == NI && a.group == 1 && a.dim == vc->dim);
    t_true("layer names 1, 2, 3, norm", !strcmp(a.layer_names[0], "1") && !strcmp(a.layer_names[3], "norm"));
    int sig_ok = 1, nf_ok = 1;
    for (int l = 0; l < L; l++) {
        sig_ok &= a.sigma[l] > 0 && isfinite(a.sigma[l]);
        nf_ok &= isfinite(a.noise_floor[l]);
        printf("  layer %-4s sigma %.6g  noise floor %.4e\n", a.layer_names[l], a.sigma[l], a.noise_floor[l]);
    }
    t_true("sigma fixed per layer, > 0 and finite", sig_ok);
    t_true("noise floor finite on every layer", nf_ok);

    double est[EST_COUNT * CFG_MAX_LAYERS], wd[CFG_MAX_LAYERS];
    t_true("align_measure at the initial weights", align_measure(&a, m, est, wd, err, sizeof err) == 0);
    double worst = 0, wdmax = 0, cka = 0, cos = 0;
    int pp = est_pos(&cfg, EST_MMD2_PAIRED), pc = est_pos(&cfg, EST_CKA_LINEAR),
        pm = est_pos(&cfg, EST_MEAN_COS_DIST);
    for (int l = 0; l < L; l++) {
        worst = fmax(worst, fabs(est[pp * L + l]));
        wdmax = fmax(wdmax, fabs(wd[l]));
        cka = fmax(cka, fabs(est[pc * L + l] - 1));
        cos = fmax(cos, fabs(est[pm * L + l]));
    }
    t_check("initial vs itself: max |mmd2_paired| over layers", worst, 1e-6);
    t_check("initial vs itself: max |cka_linear - 1|", cka, 1e-6);
    t_check("initial vs itself: max |mean_cos_dist|", cos, 1e-6);
    t_check("initial vs itself: max weight_dist", wdmax, 0);
    double fd = 0;
    for (int l = 0; l < L; l++) {
        float* h = t_fnew((long)a.rows * a.dim);
        copy_d2h(&C, h, a.feat0[l], sizeof(float) * a.rows * a.dim);
        fd = fmax(fd, max_abs_diff_dev(a.feat[l], h, (long)a.rows * a.dim));
        free(h);
    }
    t_check("initial vs itself: features bit-identical (max |feat - feat0|)", fd, 0);

    /* perturb block 2's fc2 */
    const VitParam* p = vit_find_param(m, "blocks.1.mlp.fc2.weight");
    float* hw = t_fnew(p->numel);
    float* hw0 = t_fnew(p->numel);
    copy_d2h(&C, hw0, m->w + p->offset, sizeof(float) * p->numel);
    TRng r = {99};
    for (long i = 0; i < p->numel; i++) hw[i] = hw0[i] + (float)(0.5 * trng_normal(&r));
    copy_h2d(&C, m->w + p->offset, hw, sizeof(float) * p->numel);
    t_true("align_measure after perturbing block 2", align_measure(&a, m, est, wd, err, sizeof err) == 0);
    for (int l = 0; l < L; l++)
        printf("  layer %-4s mmd2_paired %.4e (se %.2e)  mmd2_u %.4e  cka_linear %.6f  weight_dist %.4e\n",
               a.layer_names[l], est[pp * L + l], est[1 * L + l], est[2 * L + l], est[pc * L + l], wd[l]);
    t_check("layer 1 (before block 2): |mmd2_paired|", fabs(est[pp * L + 0]), 1e-6);
    t_true("layers 2, 3, norm move: mmd2_paired > 1e-4",
           est[pp * L + 1] > 1e-4 && est[pp * L + 2] > 1e-4 && est[pp * L + 3] > 1e-4);
    t_check("weight_dist of blocks 1, 3 and norm stay exactly 0", fabs(wd[0]) + fabs(wd[2]) + fabs(wd[3]), 0);
    /* block 2 by hand: every parameter with layer_id 2 */
    double num = 0, den = 0;
    float* all = t_fnew(m->n_floats);
    float* all0 = t_fnew(m->n_floats);
    copy_d2h(&C, all, m->w, sizeof(float) * m->n_floats);
    copy_d2h(&C, all0, a.w0, sizeof(float) * m->n_floats);
    for (int q = 0; q < m->n_params; q++) {
        const VitParam* vp = &m->params[q];
        if (vp->layer_id != 2) continue;
        for (long i = 0; i < vp->numel; i++) {
            double d = (double)all[vp->offset + i] - all0[vp->offset + i];
            num += d * d;
            den += (double)all0[vp->offset + i] * all0[vp->offset + i];
        }
    }
    double wd_ref = sqrt(num / den);
    printf("  weight_dist block 2: %.10e, host double %.10e\n", wd[1], wd_ref);
    t_check("weight_dist block 2 vs host double (relative)", fabs(wd[1] - wd_ref) / wd_ref, 1e-6);
    free(all); free(all0);

    /* independent recomputation from `vita features` files */
    vit_save_weights(m, w1p, meta, 1);
    run_features(w0p, dp, f0p, "");
    run_features(w1p, dp, f1p, "");
    int all_ok = 1, feat_ok = 1;
    double worst_rel = 0;
    for (int l = 0; l < L; l++) {
        char name[64];
        snprintf(name, sizeof name, "/layer_%s/pooled", a.layer_names[l]);
        long r0, c0, r1, c1;
        float* X = read_mat(f0p, name, &r0, &c0);
        float* Y = read_mat(f1p, name, &r1, &c1);
        feat_ok &= r0 == NI && c0 == vc->dim && r1 == NI && c1 == vc->dim;
        feat_ok &= max_abs_diff_dev(a.feat0[l], X, r0 * c0) <= 1e-6;
        feat_ok &= max_abs_diff_dev(a.feat[l], Y, r1 * c1) <= 1e-6;
        float* dX = dev_alloc(&C, sizeof(float) * r0 * c0);
        float* dY = dev_alloc(&C, sizeof(float) * r1 * c1);
        copy_h2d(&C, dX, X, sizeof(float) * r0 * c0);
        copy_h2d(&C, dY, Y, sizeof(float) * r1 * c1);
        MmdConfig mc;
        mmd_config_default(&mc);
        mc.bandwidth_rule = MMD_BW_FIXED;
        mc.sigma = a.sigma[l];
        mc.paired = 1;
        MmdResult res;
        all_ok &= mmd_compute(&C, dX, dY, NI, NI, vc->dim, &mc, &res, err, sizeof err) == 0;
        for (int e = 0; e < NE; e++) {
            double got = est[e * L + l], ref = res.value[cfg.estimators[e]];
            if (!close_to(got, ref, 1e-5, 1e-9)) {
                all_ok = 0;
                printf("  layer %s %s: align %.10e, from files %.10e\n", a.layer_names[l],
                       mmd_estimator_name(cfg.estimators[e]), got, ref);
            }
            if (isfinite(ref) && fabs(ref) > 1e-12) worst_rel = fmax(worst_rel, fabs(got - ref) / fabs(ref));
        }
        /* σ: the median rule on the initial features */
        MmdConfig mb;
        mmd_config_default(&mb);
        mb.seed = cfg.seed;
        double sg = mmd_bandwidth(&C, dX, NULL, NI, 0, vc->dim, &mb, NULL);
        all_ok &= close_to(sg, a.sigma[l], 1e-6, 0);
        dev_free(&C, dX);
        dev_free(&C, dY);
        free(X);
        free(Y);
    }
    t_true("vita features files hold align's feat0 / feat (pooled, 4 layers)", feat_ok);
    t_true("every estimator = mmd_compute on the files' features with the same sigma", all_ok);
    printf("  worst relative difference align vs files: %.3e\n", worst_rel);

    align_free(&a);
    copy_h2d(&C, m->w + p->offset, hw0, sizeof(float) * p->numel);
    free(hw); free(hw0);
}

static void test_tokens(Vit* m, const float* img) {
    const VitConfig* vc = &m->cfg;
    Config cfg;
    base_config(&cfg);
    snprintf(cfg.align_feature, sizeof cfg.align_feature, "tokens");
    char err[512];
    Align a;
    if (!t_true("align_init (tokens)", align_init(&a, &cfg, &C, m, img, NULL, NI, err, sizeof err) == 0)) {
        printf("  %s\n", err);
        return;
    }
    int g = cfg.probe_n_tokens / NI;
    t_true("tokens: group = n_tokens / n_images, rows = images x group", a.group == g && a.rows == NI * g);
    int idx_ok = 1;
    for (int i = 0; i < NI; i++)
        for (int k = 0; k < g; k++) {
            int v = a.token_idx[i * g + k];
            idx_ok &= v >= 0 && v < m->P && (k == 0 || v > a.token_idx[i * g + k - 1]);
        }
    t_true("tokens: per image distinct ascending patch indices in 0..P-1", idx_ok);
    /* rows of image i = the block output's token rows (forward of image i alone) */
    float* dimg = dev_alloc(&C, sizeof(float) * per_image(vc));
    long TD = (long)m->T * vc->dim;
    float* h = t_fnew(TD);
    float* f = t_fnew((long)a.rows * a.dim);
    double num = 0, den = 0;
    for (int l = 0; l < a.n_layers; l++) {
        copy_d2h(&C, f, a.feat0[l], sizeof(float) * a.rows * a.dim);
        for (int i = 0; i < NI; i++) {
            copy_h2d(&C, dimg, img + i * per_image(vc), sizeof(float) * per_image(vc));
            vit_forward(m, dimg, NULL, 1);
            copy_d2h(&C, h, a.layers[l] ? vit_block_output(m, a.layers[l]) : m->out, sizeof(float) * TD);
            for (int k = 0; k < g; k++) {
                const float* row = h + (long)(m->T - m->P + a.token_idx[i * g + k]) * vc->dim;
                for (int q = 0; q < vc->dim; q++) {
                    double d = (double)f[((long)i * g + k) * a.dim + q] - row[q];
                    num += d * d;
                    den += (double)row[q] * row[q];
                }
            }
        }
    }
    /* batch of 1 here, of 4 in align: GEMM blocking may round differently */
    t_check("tokens: rows = block output token rows (NMSE)", num / den, 1e-10);
    free(f);

    /* the same rows as `vita features --tokens g --seed S` */
    char w0p[300], dp[300], fp[300], extra[64];
    snprintf(w0p, sizeof w0p, "%s/w0.safetensors", DIR_);
    snprintf(dp, sizeof dp, "%s/probe.h5", DIR_);
    snprintf(fp, sizeof fp, "%s/ftok.h5", DIR_);
    snprintf(extra, sizeof extra, "--tokens %d --seed %llu", g, (unsigned long long)cfg.seed);
    run_features(w0p, dp, fp, extra);
    int same = 1;
    for (int l = 0; l < a.n_layers; l++) {
        char name[64];
        snprintf(name, sizeof name, "/layer_%s/tokens", a.layer_names[l]);
        long r, c;
        float* X = read_mat(fp, name, &r, &c);
        same &= r == a.rows && c == a.dim && max_abs_diff_dev(a.feat0[l], X, r * c) <= 1e-6;
        free(X);
    }
    t_true("tokens: vita features --tokens g --seed S writes align's rows", same);

    double est[EST_COUNT * CFG_MAX_LAYERS], wd[CFG_MAX_LAYERS];
    t_true("tokens: align_measure (bootstrap groups = images)", align_measure(&a, m, est, wd, err, sizeof err) == 0 &&
           a.mcfg.group_size == g);
    t_check("tokens: initial vs itself |mmd2_paired| (layer norm)", fabs(est[0 * a.n_layers + 3]), 1e-6);
    t_true("tokens: noise floor finite", isfinite(a.noise_floor[0]) && isfinite(a.noise_floor[3]));
    align_free(&a);
    dev_free(&C, dimg);
    free(h);
}

static void test_l2_cls(Vit* m, const float* img) {
    const VitConfig* vc = &m->cfg;
    Config cfg;
    base_config(&cfg);
    snprintf(cfg.align_normalize, sizeof cfg.align_normalize, "l2");
    char err[512];
    Align a;
    if (!t_true("align_init (pooled, l2)", align_init(&a, &cfg, &C, m, img, NULL, NI, err, sizeof err) == 0)) {
        printf("  %s\n", err);
        return;
    }
    float* f = t_fnew((long)a.rows * a.dim);
    double worst = 0;
    for (int l = 0; l < a.n_layers; l++) {
        copy_d2h(&C, f, a.feat0[l], sizeof(float) * a.rows * a.dim);
        for (int i = 0; i < a.rows; i++) {
            double s = 0;
            for (int q = 0; q < a.dim; q++) s += (double)f[i * a.dim + q] * f[i * a.dim + q];
            worst = fmax(worst, fabs(sqrt(s) - 1));
        }
    }
    t_check("l2: max | |row| - 1 | over layers and rows", worst, 1e-6);
    double est[EST_COUNT * CFG_MAX_LAYERS], wd[CFG_MAX_LAYERS];
    align_measure(&a, m, est, wd, err, sizeof err);
    t_check("l2: initial vs itself |mmd2_paired| (layer 2)", fabs(est[1]), 1e-6);
    align_free(&a);

    snprintf(cfg.align_normalize, sizeof cfg.align_normalize, "none");
    snprintf(cfg.align_feature, sizeof cfg.align_feature, "cls");
    if (!t_true("align_init (cls)", align_init(&a, &cfg, &C, m, img, NULL, NI, err, sizeof err) == 0)) {
        printf("  %s\n", err);
        free(f);
        return;
    }
    float* dimg = dev_alloc(&C, sizeof(float) * per_image(vc) * MB);
    copy_h2d(&C, dimg, img, sizeof(float) * per_image(vc) * MB);
    vit_forward(m, dimg, NULL, MB);
    long TD = (long)m->T * vc->dim;
    float* h = t_fnew(TD * MB);
    copy_d2h(&C, h, vit_block_output(m, 2), sizeof(float) * TD * MB);
    copy_d2h(&C, f, a.feat0[1], sizeof(float) * a.rows * a.dim);
    double mx = 0;
    for (int i = 0; i < MB; i++)
        for (int q = 0; q < vc->dim; q++) mx = fmax(mx, fabs((double)f[i * a.dim + q] - h[i * TD + q]));
    t_check("cls: rows = token 0 of block 2's output", mx, 0);
    align_free(&a);
    free(h);
    free(f);
    dev_free(&C, dimg);

    /* rejected setups */
    Config bad = cfg;
    snprintf(bad.align_feature, sizeof bad.align_feature, "pooled");
    int rc = align_init(&a, &bad, &C, m, img, NULL, 3, err, sizeof err);
    printf("  3 probe images: %s\n", err);
    t_true("3 probe images rejected (noise floor needs 4)", rc == 1 && strstr(err, "probe"));
    snprintf(bad.align_feature, sizeof bad.align_feature, "patches");
    rc = align_init(&a, &bad, &C, m, img, NULL, NI, err, sizeof err);
    printf("  feature patches: %s\n", err);
    t_true("unknown feature kind rejected naming align.feature", rc == 1 && strstr(err, "align.feature"));
}

static void test_cls_missing(Ctx* c, const float* img) {
    VitConfig vc = t_tiny_vit_cfg();
    vc.cls_token = 0;
    Vit m;
    vit_create(&m, c, &vc);
    vit_init_weights(&m, 5);
    vit_alloc_activations(&m, MB);
    Config cfg;
    base_config(&cfg);
    snprintf(cfg.align_feature, sizeof cfg.align_feature, "cls");
    Align a;
    char err[512];
    int rc = align_init(&a, &cfg, c, &m, img, NULL, NI, err, sizeof err);
    printf("  cls without cls token: %s\n", err);
    t_true("feature cls on a model without cls token rejected", rc == 1 && strstr(err, "cls"));
    vit_free(&m);
}

int main(void) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    const char* b = getenv("VITA_BUILD");
    snprintf(DIR_, sizeof DIR_, "%s/test_align_XXXXXX", b && *b ? b : "/tmp");
    if (!mkdtemp(DIR_)) {
        snprintf(DIR_, sizeof DIR_, "/tmp/test_align_XXXXXX");
        if (!mkdtemp(DIR_)) { printf("FAIL mkdtemp\n"); return 1; }
    }
    if (ctx_open(&C, "cpu", 2, 1)) return 1;
    VitConfig vc = t_tiny_vit_cfg();
    Vit m;
    vit_create(&m, &C, &vc);
    vit_init_weights(&m, 3);
    vit_alloc_activations(&m, MB);
    float* img = t_fnew(per_image(&vc) * NI);
    TRng r = {2024};
    t_frandn(&r, img, per_image(&vc) * NI, 1.0);

    test_pooled(&m, img);
    test_tokens(&m, img);
    test_l2_cls(&m, img);
    test_cls_missing(&C, img);

    vit_free(&m);
    ctx_close(&C);
    free(img);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", DIR_);
    if (system(cmd)) printf("note: could not remove %s\n", DIR_);
    return t_summary();
}
