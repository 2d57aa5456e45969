/* tests/test_head_oracle.c — every task head (models/head.h), forward and backward in fp32,
 * against the float64 PyTorch oracle (tests/oracle/head_oracle.py): the output, the gradient
 * of L = sum(out * G) w.r.t. every trainable head parameter, the encoder's final tokens and
 * each block output the head reads; BN running statistics after the forward and the eval-
 * mode output. Configs: classify (cls + BN + MLP; mean + linear), segment (UNETR 3D with a
 * 4x8x8 patch on a 2x4x4 grid; ProViCNet pup 2D with patch 14 and the final resize, pup 3D),
 * superres (odd patch factor, two skips sharing a block), undistort (displacement field),
 * synthesize (2D decoder).
 *
 * The encoder features come from the oracle: a small Vit is created only to host them
 * (m.out and m.blk[l].x_out are filled by copies, no vit_forward).
 * Threshold per tensor = max(1e-10, 10 x NMSE of PyTorch's own fp32 run against float64),
 * as tests/test_vit_oracle.c. Gradients whose true value is 0 (the conv bias right before a
 * training-mode BatchNorm in the pup head) are checked by size instead: max |g| <= 10 x the
 * max |g| of torch's fp32 run (both are pure cancellation residue). Also checked: parameter
 * gradients accumulate (a second forward + backward doubles them), the blocks the head
 * reports match the oracle's, and freshly initialised superres / undistort-field heads
 * return their input channel exactly.
 */
#include "oracle_io.h"
#include "../models/head.h"

#include <time.h>

/* compares device tensor got (n floats) with ref.<key>; tracks the worst % of threshold */
static void check_dev(Ctx* c, const StFile* io, const char* key, const float* got_d, long n,
                      double* worst, const char* cfg) {
    char name[160], th[160], label[220];
    long nr = 0;
    snprintf(name, sizeof name, "ref.%s", key);
    snprintf(th, sizeof th, "fp32nmse.%s", key);
    float* ref = load_t(io, name, &nr);
    float* tn = load_t(io, th, NULL);
    snprintf(label, sizeof label, "%s %s [nmse]", cfg, key);
    if (!ref || nr != n || !got_d) {
        printf("  %s: ref %s, %ld vs %ld values\n", key, ref ? "found" : "missing", nr, n);
        t_true(label, 0);
        free(ref); free(tn);
        return;
    }
    float* got = malloc(sizeof(float) * n);
    copy_d2h(c, got, got_d, sizeof(float) * n);
    snprintf(th, sizeof th, "fp32max.%s", key);
    float* zm = load_t(io, th, NULL);
    if (zm) {
        /* true gradient 0: max |g| within 10x of torch's own fp32 residue */
        double mx = 0;
        for (long i = 0; i < n; i++) mx = fmax(mx, fabs(got[i]));
        snprintf(label, sizeof label, "%s %s [true 0: max|g|]", cfg, key);
        double thr = fmax(1e-30, 10.0 * zm[0]);
        t_check(label, mx, thr);
        if (100 * mx / thr > *worst) *worst = 100 * mx / thr;
        free(zm); free(got); free(ref); free(tn);
        return;
    }
    double thr = fmax(1e-10, tn ? 10.0 * tn[0] : 0), v = nmse_ref(got, ref, n);
    t_check(label, v, thr);
    if (100 * v / thr > *worst) *worst = 100 * v / thr;
    free(got); free(ref); free(tn);
}

static const char* meta_s(const StFile* f, const char* k, const char* dflt) {
    const char* v = st_meta(f, k);
    return v ? v : dflt;
}
static int meta_i(const StFile* f, const char* k, int dflt) {
    const char* v = st_meta(f, k);
    return v ? atoi(v) : dflt;
}
static double meta_d(const StFile* f, const char* k, double dflt) {
    const char* v = st_meta(f, k);
    return v ? atof(v) : dflt;
}
static void meta_3(const StFile* f, const char* k, int* out) {
    const char* v = st_meta(f, k);
    if (!v || sscanf(v, "%d %d %d", &out[0], &out[1], &out[2]) != 3) out[0] = out[1] = out[2] = 0;
}

static float* upload(Ctx* c, const float* h, long n) {
    float* d = dev_alloc(c, sizeof(float) * (n ? n : 1));
    copy_h2d(c, d, h, sizeof(float) * n);
    return d;
}

static void run_config(const char* name) {
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/%s.head.safetensors", oracle_dir(), name);
    StFile io;
    if (st_open(&io, path, err, sizeof err)) {
        printf("%s\n", err);
        t_true("oracle file readable (run tests/oracle/head_oracle.py OUTDIR)", 0);
        return;
    }
    clock_t t_start = clock();
    VitConfig vc;
    memset(&vc, 0, sizeof vc);
    snprintf(vc.preset, sizeof vc.preset, "%s", name);
    vc.spatial_dims = meta_i(&io, "sd", 3);
    meta_3(&io, "img", vc.img);
    meta_3(&io, "patch", vc.patch);
    vc.in_chans = meta_i(&io, "in_chans", 1);
    for (int i = 0; i < vc.in_chans; i++) snprintf(vc.channels[i], sizeof vc.channels[i], "c%d", i);
    vc.dim = meta_i(&io, "dim", 16);
    vc.depth = meta_i(&io, "depth", 1);
    vc.heads = 1;
    vc.mlp_ratio = 1.0f;
    vc.ln_eps = 1e-6f;
    vc.cls_token = meta_i(&io, "cls_token", 0);
    vc.num_registers = meta_i(&io, "registers", 0);
    vc.num_extra = meta_i(&io, "extra", 0);
    for (int e = 0; e < vc.num_extra; e++) snprintf(vc.extra_tokens[e], sizeof vc.extra_tokens[e], "e%d", e);
    vc.pos_embed = VIT_POS_LEARNED;
    int B = meta_i(&io, "batch", 2);

    HeadConfig hc;
    int task = head_task_from_name(meta_s(&io, "task", "?"));
    if (task < 0) { t_true("oracle task name known", 0); st_close(&io); return; }
    head_config_default(&hc, task, vc.spatial_dims);
    hc.kind = head_kind_from_name(meta_s(&io, "kind", "?"));
    hc.num_classes = meta_i(&io, "num_classes", hc.num_classes);
    hc.feature_size = meta_i(&io, "feature_size", hc.feature_size);
    hc.hidden = meta_i(&io, "hidden", hc.hidden);
    hc.pool = head_pool_from_name(meta_s(&io, "pool", "mean"));
    hc.batchnorm = meta_i(&io, "batchnorm", 0);
    hc.output = head_output_from_name(meta_s(&io, "output", "image"));
    hc.input_channel = meta_i(&io, "input_channel", 0);
    hc.pe_axis = meta_i(&io, "pe_axis", 1);
    hc.bn_eps = (float)meta_d(&io, "bn_eps", hc.bn_eps);
    hc.bn_momentum = (float)meta_d(&io, "bn_momentum", hc.bn_momentum);
    hc.in_eps = (float)meta_d(&io, "in_eps", hc.in_eps);
    hc.slope = (float)meta_d(&io, "slope", hc.slope);
    char cerr[256];
    if (head_config_check(&hc, &vc, cerr, sizeof cerr)) {
        printf("  config: %s\n", cerr);
        t_true("oracle head config valid", 0);
        st_close(&io);
        return;
    }

    Ctx c;
    ctx_open(&c, "cpu", 0, 1);
    Vit m;
    vit_create(&m, &c, &vc);
    vit_alloc_activations(&m, B);
    long ntok = (long)B * m.T * vc.dim, n = 0;
    float* tok = load_t(&io, "input.tokens", &n);
    t_true("oracle tokens match the encoder shape", tok && n == ntok);
    copy_h2d(&c, m.out, tok, sizeof(float) * ntok);
    free(tok);
    for (int l = 1; l <= vc.depth; l++) {
        char k[32];
        snprintf(k, sizeof k, "input.block%d", l);
        float* b = load_t(&io, k, &n);
        if (b && n == ntok) copy_h2d(&c, m.blk[l - 1].x_out, b, sizeof(float) * ntok);
        free(b);
    }
    m.B = B;

    Head h;
    head_create(&h, &c, &hc, &m);
    head_alloc_activations(&h, B);
    /* weights: every table row from w.<name>, and every w.* in the file used */
    float* wh = calloc(h.n_floats, sizeof(float));
    int loaded = 0, bad = 0, in_file = 0;
    for (int i = 0; i < h.n_params; i++) {
        char k[96];
        snprintf(k, sizeof k, "w.%s", h.params[i].name);
        const StTensor* t = st_find(&io, k);
        if (!t || t->numel != h.params[i].numel) {
            printf("  weight %s: %s\n", h.params[i].name, t ? "shape mismatch" : "missing in the oracle");
            bad++;
            continue;
        }
        st_read_f32(&io, t, wh + h.params[i].offset);
        loaded++;
    }
    for (int i = 0; i < io.n; i++) in_file += !strncmp(io.t[i].name, "w.", 2);
    char lab[200];
    snprintf(lab, sizeof lab, "%s: %d head tensors load, none missing or extra (file %d)", name, loaded, in_file);
    t_true(lab, bad == 0 && loaded == in_file);
    copy_h2d(&c, h.w, wh, sizeof(float) * h.n_floats);
    free(wh);

    long nimg = 0, nG = 0;
    float* img_h = load_t(&io, "input.img", &nimg);
    float* G_h = load_t(&io, "input.G", &nG);
    float* img = upload(&c, img_h, nimg);
    float* G = upload(&c, G_h, nG);
    free(img_h); free(G_h);

    head_zero_grad(&h);
    const float* out = head_forward(&h, &m, img, B);
    head_backward(&h, &m, img, G, h.d_tokens, h.d_blocks);

    printf("-- %s: %s/%s B=%d T=%d dim=%d depth=%d head params %ld floats (%d tensors)\n", name,
           head_task_name(hc.task), head_kind_name(hc.kind), B, m.T, vc.dim, vc.depth, h.n_floats, h.n_params);
    double w_out = 0, w_grad = 0;
    check_dev(&c, &io, "out", out, nG, &w_out, name);
    for (int i = 0; i < h.n_params; i++) {
        const VitParam* p = &h.params[i];
        char k[96];
        if (p->trainable) {
            snprintf(k, sizeof k, "grad.%s", p->name);
            check_dev(&c, &io, k, h.g + p->offset, p->numel, &w_grad, name);
        } else {
            snprintf(k, sizeof k, "run.%s", p->name);
            check_dev(&c, &io, k, h.w + p->offset, p->numel, &w_out, name);
        }
    }
    check_dev(&c, &io, "grad.tokens", h.d_tokens, ntok, &w_grad, name);
    int blocks[HEAD_MAX_SKIPS], nb = head_skip_blocks(&h, blocks), nref = 0, match = 1;
    for (int l = 1; l <= vc.depth; l++) {
        char k[32];
        snprintf(k, sizeof k, "ref.grad.block%d", l);
        int in_ref = st_find(&io, k) != NULL, used = 0;
        for (int i = 0; i < nb; i++) used |= blocks[i] == l;
        nref += in_ref;
        match &= in_ref == used && (h.d_blocks[l - 1] != NULL) == used;
        if (used) check_dev(&c, &io, k + 4, h.d_blocks[l - 1], ntok, &w_grad, name);
    }
    snprintf(lab, sizeof lab, "%s: the head reads blocks as the oracle (%d blocks)", name, nref);
    t_true(lab, match && nref == nb);

    /* parameter gradients accumulate: a second forward + backward doubles them */
    float* g1 = malloc(sizeof(float) * h.n_floats);
    float* g2 = malloc(sizeof(float) * h.n_floats);
    copy_d2h(&c, g1, h.g, sizeof(float) * h.n_floats);
    head_forward(&h, &m, img, B);
    head_backward(&h, &m, img, G, h.d_tokens, h.d_blocks);
    copy_d2h(&c, g2, h.g, sizeof(float) * h.n_floats);
    double acc = 0, mx = 0;
    for (int i = 0; i < h.n_params; i++) {
        const VitParam* p = &h.params[i];
        if (!p->trainable) continue;
        for (long k = 0; k < p->numel; k++) {
            double a = g1[p->offset + k];
            acc = fmax(acc, fabs(g2[p->offset + k] - 2 * a));
            mx = fmax(mx, fabs(a));
        }
    }
    snprintf(lab, sizeof lab, "%s: grads accumulate, max|g2 - 2 g1| / max|g1|", name);
    t_check(lab, acc / fmax(mx, 1e-30), 1e-6);
    free(g1); free(g2);

    if (st_find(&io, "ref.eval_out")) {
        h.training = 0;
        /* the oracle's eval ran after ONE training forward: restore the running statistics
         * the second forward above moved on */
        for (int i = 0; i < h.n_params; i++) {
            const VitParam* p = &h.params[i];
            if (p->trainable) continue;
            char k[96];
            snprintf(k, sizeof k, "ref.run.%s", p->name);
            float* r = load_t(&io, k, NULL);
            if (r) copy_h2d(&c, h.w + p->offset, r, sizeof(float) * p->numel);
            free(r);
        }
        const float* ev = head_forward(&h, &m, img, B);
        check_dev(&c, &io, "eval_out", ev, nG, &w_out, name);
    }
    /* superres (residual) and the undistort field start at the identity: zero output conv */
    if (hc.task == HEAD_SUPERRES || (hc.task == HEAD_UNDISTORT && hc.output == HEAD_OUT_FIELD)) {
        head_init_weights(&h, 7);
        h.training = 1;
        const float* y = head_forward(&h, &m, img, B);
        long S = (long)vc.img[0] * vc.img[1] * vc.img[2];
        float* yh = malloc(sizeof(float) * B * S);
        float* ih = malloc(sizeof(float) * nimg);
        copy_d2h(&c, yh, y, sizeof(float) * B * S);
        copy_d2h(&c, ih, img, sizeof(float) * nimg);
        double md = 0;
        for (int b = 0; b < B; b++)
            for (long i = 0; i < S; i++)
                md = fmax(md, fabs(yh[b * S + i] - ih[((long)b * vc.in_chans + hc.input_channel) * S + i]));
        snprintf(lab, sizeof lab, "%s: freshly initialised head is the identity, max|out - input|", name);
        t_check(lab, md, 0);
        free(yh); free(ih);
    }
    printf("-- %s: worst forward tensor %.2f%% of threshold, worst gradient %.2f%% (%.2f s cpu)\n", name, w_out,
           w_grad, (double)(clock() - t_start) / CLOCKS_PER_SEC);

    dev_free(&c, img);
    dev_free(&c, G);
    head_free(&h);
    vit_free(&m);
    st_close(&io);
    ctx_close(&c);
}

int main(void) {
    static const char* const names[] = {"head_cls_bn_mlp", "head_cls_mean_linear", "head_seg_unetr3d",
                                        "head_seg_pup2d", "head_seg_pup3d", "head_superres3d", "head_undistort_field3d",
                                        "head_synth2d"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) run_config(names[i]);
    return t_summary();
}
