/* tests/test_vit_oracle.c — the whole ViT encoder, forward and backward in fp32, against the
 * float64 PyTorch oracle (tests/oracle/vit_oracle.py): final tokens, every block output,
 * every parameter gradient and the input gradient, for a 2D config with cls + registers +
 * extra tokens + LayerScale + qkv bias, and two 3D configs (no cls / no qkv bias; cls).
 *
 * Threshold per tensor = max(1e-10, 10 x NMSE of PyTorch's own fp32 run against float64).
 *   1e-10: fp32 rounding (u = 6e-8) through a few dependent accumulations of length K <= 128
 *   gives relative errors ~K·u ≈ 1e-5 worst-case per element, ~1e-6 typical, i.e. NMSE
 *   ~1e-12; 1e-10 leaves 100x for the depth of the network. The 10x PyTorch term covers
 *   tensors that are intrinsically ill-conditioned (PyTorch itself loses accuracy there).
 * The query and value parts of the qkv bias are scored separately, each against PyTorch's
 * fp32 NMSE of that part (the query part sums dq over tokens with heavy cancellation).
 * The key part of the qkv bias has true gradient 0 (softmax is invariant to a constant added
 * to all scores of a row), so it is checked by size: max |g| <= 1e-4 · max |g| of the query
 * part — cancellation of T terms each carrying u relative error leaves ~T·u ≈ 1e-6 of it.
 */
#include "oracle_io.h"
#include "../models/vit.h"
#include "../models/vit_weights.h"
static void check_tensor(const StFile* io, const char* key, const float* got, long n,
                         double* worst_pct, const char* cls) {
    char name[160], th[160];
    long nr = 0;
    snprintf(name, sizeof name, "ref.%s", key);
    snprintf(th, sizeof th, "fp32nmse.%s", key);
    float* ref = load_t(io, name, &nr);
    float* tn = load_t(io, th, NULL);
    if (!ref || nr != n) {
        t_true(name, 0);
        free(ref); free(tn);
        return;
    }
    double thr = 1e-10, torch32 = tn ? tn[0] : 0;
    if (10 * torch32 > thr) thr = 10 * torch32;
    double v = nmse_ref(got, ref, n);
    char label[200];
    snprintf(label, sizeof label, "%s %s [%s]", cls, key, "nmse");
    t_check(label, v, thr);
    if (100 * v / thr > *worst_pct) *worst_pct = 100 * v / thr;
    free(ref); free(tn);
}

static void run_config(const char* name) {
    char wpath[512], iopath[512], err[512];
    snprintf(wpath, sizeof wpath, "%s/%s.weights.safetensors", oracle_dir(), name);
    snprintf(iopath, sizeof iopath, "%s/%s.io.safetensors", oracle_dir(), name);
    VitConfig cfg;
    if (vit_config_from_weights(&cfg, wpath)) { t_true("oracle weights readable (run make oracle)", 0); return; }
    StFile io;
    if (st_open(&io, iopath, err, sizeof err)) { printf("%s\n", err); t_true("oracle io readable", 0); return; }
    Ctx c;
    ctx_open(&c, "cpu", 0, 1);
    Vit m;
    vit_create(&m, &c, &cfg);
    VitLoadReport rep;
    int rc = vit_load_weights(&m, wpath, 0, &rep);
    t_true("weights load with 0 missing / 0 unexpected", !rc && rep.missing == 0 && rep.unexpected == 0);
    long nimg = 0, nextra = 0, nG = 0;
    float* img = load_t(&io, "input.img", &nimg);
    float* extra = load_t(&io, "input.extra", &nextra);
    float* G = load_t(&io, "input.G", &nG);
    int B = (int)(nimg / ((long)cfg.in_chans * cfg.img[0] * cfg.img[1] * cfg.img[2]));
    vit_alloc_activations(&m, B);
    float *dimg = dev_alloc(&c, sizeof(float) * nimg), *dimg_h = malloc(sizeof(float) * nimg);
    /* the CPU backend's device memory is host memory; still go through copies like the engine */
    float* img_d = dev_alloc(&c, sizeof(float) * nimg);
    copy_h2d(&c, img_d, img, sizeof(float) * nimg);
    float* extra_d = NULL;
    if (extra) { extra_d = dev_alloc(&c, sizeof(float) * nextra); copy_h2d(&c, extra_d, extra, sizeof(float) * nextra); }
    float* G_d = dev_alloc(&c, sizeof(float) * nG);
    copy_h2d(&c, G_d, G, sizeof(float) * nG);
    const float* dblk[VIT_MAX_DEPTH] = {0};
    float* gl_d[VIT_MAX_DEPTH] = {0};
    for (int l = 0; l < cfg.depth; l++) {
        char k[32];
        snprintf(k, sizeof k, "input.G%d", l + 1);
        float* h = load_t(&io, k, NULL);
        gl_d[l] = dev_alloc(&c, sizeof(float) * nG);
        copy_h2d(&c, gl_d[l], h, sizeof(float) * nG);
        dblk[l] = gl_d[l];
        free(h);
    }
    vit_forward(&m, img_d, extra_d, B);
    vit_zero_grad(&m);
    vit_backward(&m, img_d, extra_d, G_d, dblk, dimg);

    printf("-- %s: B=%d T=%d dim=%d depth=%d params=%ld\n", name, B, m.T, cfg.dim, cfg.depth, m.n_floats);
    float* h = malloc(sizeof(float) * nG);
    double w_out = 0, w_grad = 0;
    copy_d2h(&c, h, m.out, sizeof(float) * nG);
    check_tensor(&io, "out", h, nG, &w_out, name);
    for (int l = 1; l <= cfg.depth; l++) {
        char k[32];
        snprintf(k, sizeof k, "block.%d", l);
        copy_d2h(&c, h, vit_block_output(&m, l), sizeof(float) * nG);
        check_tensor(&io, k, h, nG, &w_out, name);
    }
    float* gh = malloc(sizeof(float) * m.n_floats);
    copy_d2h(&c, gh, m.g, sizeof(float) * m.n_floats);
    for (int i = 0; i < m.n_params; i++) {
        const VitParam* p = &m.params[i];
        char k[128];
        snprintf(k, sizeof k, "grad.%s", p->name);
        const char* dot = strrchr(p->name, '.');
        if (dot && !strcmp(dot, ".bias") && strstr(p->name, "attn.qkv")) {
            /* query and value parts by NMSE, key part by size */
            int D = cfg.dim;
            long n = 0;
            char rk[160];
            snprintf(rk, sizeof rk, "ref.%s", k);
            float* ref = load_t(&io, rk, &n);
            const float* g = gh + p->offset;
            double nq = nmse_ref(g, ref, D), nv = nmse_ref(g + 2 * D, ref + 2 * D, D);
            double mq = 0, mk = 0;
            for (int j = 0; j < D; j++) { mq = fmax(mq, fabs(ref[j])); mk = fmax(mk, fabs(g[D + j])); }
            char lab[200];
            const char* part[2] = {"q", "v"};
            double got[2] = {nq, nv};
            for (int q = 0; q < 2; q++) {
                snprintf(rk, sizeof rk, "fp32nmse_%s.%s", part[q], k);
                float* tn = load_t(&io, rk, NULL);
                double thr = fmax(1e-10, tn ? 10.0 * tn[0] : 0);
                free(tn);
                snprintf(lab, sizeof lab, "%s %s %s part [nmse]", name, k, part[q]);
                t_check(lab, got[q], thr);
                w_grad = fmax(w_grad, 100 * got[q] / thr);
            }
            snprintf(lab, sizeof lab, "%s %s key part max|g|/max|g_q|", name, k);
            t_check(lab, mk / fmax(mq, 1e-30), 1e-4);
            free(ref);
            continue;
        }
        check_tensor(&io, k, gh + p->offset, p->numel, &w_grad, name);
    }
    copy_d2h(&c, dimg_h, dimg, sizeof(float) * nimg);
    check_tensor(&io, "grad.input", dimg_h, nimg, &w_grad, name);
    printf("-- %s: worst forward tensor %.2f%% of threshold, worst gradient %.2f%%\n", name, w_out, w_grad);

    free(gh); free(h); free(img); free(extra); free(G); free(dimg_h);
    for (int l = 0; l < cfg.depth; l++) dev_free(&c, gl_d[l]);
    dev_free(&c, dimg); dev_free(&c, img_d); dev_free(&c, extra_d); dev_free(&c, G_d);
    vit_free(&m);
    st_close(&io);
    ctx_close(&c);
}

#ifndef VIT_ORACLE_CONFIGS
#define VIT_ORACLE_CONFIGS {"vit2d_reg_ls", "vit3d_plain", "vit3d_cls"}
#endif

int main(void) {
    static const char* const names[] = VIT_ORACLE_CONFIGS;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) run_config(names[i]);
    return t_summary();
}
