/* tests/test_slidewin.c — sliding-window inference (engine/slidewin.c) against an independent
 * brute-force reference (each window forwarded alone, blended here in double with MONAI's
 * formulas written out again), the per-case metrics, and `vita eval` in-process.
 * Tiny ViTs + heads on random weights over tiny datasets written with dataset_create. */
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../engine/config.h"
#include "../engine/headmeta.h"
#include "../engine/loader.h"
#include "../engine/metrics.h"
#include "../engine/safetensors.h"
#include "../engine/slidewin.h"
#include "testing.h"

int cmd_eval(int argc, char** argv);

#define NCASE 6
static char g_dir[64], g_exact[128], g_big[128], g_small[128], g_ckpt[160], g_ckpt_cls[160];
static Ctx g_c;

/* ---- data ------------------------------------------------------------------------------- */
/* cases 0-1 train, 2 val, 3-5 test; smooth random images, labels 0..2, cls i % 2; case 4 has a
 * native geometry (crop_offset z 2, shape_original z 10) */
static void make_dataset(const char* path, int D, int H, int W, uint64_t seed) {
    DatasetSpec sp = {NCASE, 3, D, H, W, "t2w,adc,hbv", "background,tz,pz", "benign,csPCa",
                      {3.0, 0.5, 0.6}, "test_slidewin", 0};
    char err[512];
    DatasetWriter* w = dataset_create(path, &sp, err, sizeof err);
    if (!w) { printf("dataset_create: %s\n", err); exit(1); }
    long vol = (long)D * H * W;
    float* img = t_fnew(3 * vol);
    uint8_t* seg = calloc(vol, 1);
    TRng r = {seed};
    for (int i = 0; i < NCASE; i++) {
        for (int c = 0; c < 3; c++)
            for (long v = 0; v < vol; v++) {
                int d = (int)(v / (H * W)), h = (int)(v / W % H), x = (int)(v % W);
                img[c * vol + v] = (float)(sin(0.9 * d + 0.3 * c + i) * cos(0.45 * h - 0.2 * i) +
                                           0.5 * sin(0.37 * x * (c + 1)) + 0.2 * trng_normal(&r));
            }
        for (long v = 0; v < vol; v++) {
            int h = (int)(v / W % H), x = (int)(v % W);
            seg[v] = (h >= H / 4 && h < 3 * H / 4 && x >= W / 4 && x < 3 * W / 4) ? 1 + (x + i) % 2 : 0;
        }
        char id[32];
        snprintf(id, sizeof id, "case%02d", i);
        int split = i < 2 ? SPLIT_TRAIN : i == 2 ? SPLIT_VAL : SPLIT_TEST;
        int32_t shp[3] = {10, H, W}, off[3] = {2, 0, 0};
        if (dataset_write_case(w, i, id, img, seg, i % 2, split, -1, NULL, NULL, NULL, NULL,
                               i == 4 ? shp : NULL, i == 4 ? off : NULL)) {
            dataset_finish(w, err, sizeof err);
            printf("dataset_write_case: %s\n", err);
            exit(1);
        }
    }
    if (dataset_finish(w, err, sizeof err)) { printf("dataset_finish: %s\n", err); exit(1); }
    free(img); free(seg);
}

/* ---- models ----------------------------------------------------------------------------- */
typedef struct { Vit m; Head h; HeadConfig hc; } Model;

static void vit3d(VitConfig* vc) {
    memset(vc, 0, sizeof *vc);
    vc->spatial_dims = 3;
    vc->img[0] = 4; vc->img[1] = 8; vc->img[2] = 8;
    vc->patch[0] = 2; vc->patch[1] = 4; vc->patch[2] = 4;
    vc->in_chans = 2;
    snprintf(vc->channels[0], 16, "t2w");
    snprintf(vc->channels[1], 16, "adc");
    vc->dim = 16; vc->depth = 2; vc->heads = 2; vc->mlp_ratio = 2; vc->qkv_bias = 1;
    vc->ln_eps = 1e-6f; vc->cls_token = 1;
}

static void vit2d(VitConfig* vc) {
    memset(vc, 0, sizeof *vc);
    vc->spatial_dims = 2;
    vc->img[0] = 1; vc->img[1] = 8; vc->img[2] = 8;
    vc->patch[0] = 1; vc->patch[1] = 4; vc->patch[2] = 4;
    vc->in_chans = 3;
    snprintf(vc->channels[0], 16, "t2w_prev");
    snprintf(vc->channels[1], 16, "t2w");
    snprintf(vc->channels[2], 16, "t2w_next");
    vc->dim = 16; vc->depth = 2; vc->heads = 2; vc->mlp_ratio = 2; vc->qkv_bias = 1;
    vc->ln_eps = 1e-6f; vc->cls_token = 1; vc->num_registers = 1; vc->num_extra = 2;
    vc->layerscale_init = 0.1f;
    snprintf(vc->extra_tokens[0], 32, "slice_index");
    snprintf(vc->extra_tokens[1], 32, "slice_count");
}

/* random weights; the image-task output conv is randomised too (it starts at zero) unless
 * identity is asked for */
static void model_make(Model* M, const VitConfig* vc, int task, int K, int maxb, int identity,
                       uint64_t seed) {
    char err[256];
    if (vit_config_check(vc, err, sizeof err)) { printf("vit config: %s\n", err); exit(1); }
    vit_create(&M->m, &g_c, vc);
    vit_alloc_activations(&M->m, maxb);
    vit_init_weights(&M->m, seed);
    head_config_default(&M->hc, task, vc->spatial_dims);
    if (task == HEAD_CLASSIFY || task == HEAD_SEGMENT) M->hc.num_classes = K;
    M->hc.feature_size = 4;
    M->hc.hidden = 8;
    if (head_config_check(&M->hc, vc, err, sizeof err)) { printf("head config: %s\n", err); exit(1); }
    head_create(&M->h, &g_c, &M->hc, &M->m);
    head_alloc_activations(&M->h, maxb);
    head_init_weights(&M->h, seed + 1);
    const VitParam* p = head_find_param(&M->h, "head.dec.out.weight");
    if (p && !identity && task >= HEAD_SUPERRES) {
        float* w = t_fnew(p->numel);
        TRng r = {seed + 2};
        t_frandn(&r, w, p->numel, 0.3);
        copy_h2d(&g_c, M->h.w + p->offset, w, sizeof(float) * p->numel);
        free(w);
    }
}

static void model_free(Model* M) { head_free(&M->h); vit_free(&M->m); }

static int open_loader(Loader* L, Dataset* ds, const char* path, int task, int mode, int context,
                       const char* channels) {
    char err[512];
    if (dataset_open(ds, path, err, sizeof err)) { printf("dataset_open: %s\n", err); exit(1); }
    LoaderConfig lc;
    loader_defaults(&lc);
    lc.mode = mode; lc.context = context;
    lc.crop[0] = mode == LOADER_SLICE ? 1 : 4; lc.crop[1] = 8; lc.crop[2] = 8;
    lc.batch = 1; lc.task = task; lc.split = SPLIT_TEST; lc.augment = 0; lc.balance = 0;
    lc.workers = 1; lc.queue = 1;
    snprintf(lc.channels, sizeof lc.channels, "%s", channels);
    if (loader_open(L, ds, &lc, err, sizeof err)) { printf("loader_open: %s\n", err); exit(1); }
    return 0;
}

/* one window [C, S] (host) through the model alone (B = 1): the predictor of the reference.
 * pred: segment softmax [K, S], image [S], classify softmax [K] (double, host) */
static void ref_forward(Model* M, const float* win, const float* extra, float* pred) {
    Vit* m = &M->m;
    long S = (long)m->cfg.img[0] * m->cfg.img[1] * m->cfg.img[2];
    long nin = m->cfg.in_chans * S;
    int E = m->cfg.num_extra, task = M->hc.task, K = M->h.out_channels;
    float* din = dev_alloc(&g_c, sizeof(float) * nin);
    float* dex = E ? dev_alloc(&g_c, sizeof(float) * E) : NULL;
    copy_h2d(&g_c, din, win, sizeof(float) * nin);
    if (E) copy_h2d(&g_c, dex, extra, sizeof(float) * E);
    m->training = 0; M->h.training = 0;
    vit_forward(m, din, dex, 1);
    const float* y = head_forward(&M->h, m, din, 1);
    long no = task == HEAD_CLASSIFY ? K : (task == HEAD_SEGMENT ? K : 1) * S;
    float* prob = NULL;
    if (task == HEAD_SEGMENT) {
        prob = dev_alloc(&g_c, sizeof(float) * no);
        softmax_channels_forward(&g_c, prob, y, 1, K, S);
        y = prob;
    }
    copy_d2h(&g_c, pred, y, sizeof(float) * no);
    if (task == HEAD_CLASSIFY) {
        double mx = -1e300, s = 0;
        for (int k = 0; k < K; k++) mx = fmax(mx, pred[k]);
        for (int k = 0; k < K; k++) s += exp(pred[k] - mx);
        for (int k = 0; k < K; k++) pred[k] = (float)(exp(pred[k] - mx) / s);
    }
    dev_free(&g_c, din);
    if (dex) dev_free(&g_c, dex);
    if (prob) dev_free(&g_c, prob);
}

/* window starts, written independently of slidewin.c: n = ceil((size − roi) / iv) + 1, the
 * i-th at min(i·iv, size − roi); size <= roi: one window (after padding) */
static int ref_starts(int size, int roi, double ov, int* s) {
    if (size <= roi) { s[0] = 0; return 1; }
    int iv = (int)(roi * (1 - ov));
    if (iv < 1) iv = 1;
    int n = (size - roi + iv - 1) / iv + 1;
    for (int i = 0; i < n; i++) s[i] = i * iv < size - roi ? i * iv : size - roi;
    return n;
}

static double ref_gauss(int i, int n) {
    double sg = n / 8.0, x = i - 0.5 * (n - 1);
    return exp(-x * x / (2 * sg * sg));
}

/* brute-force blend over a case grid [Cs, D, H, W] (volume; slice mode when slice = 1: each
 * slice z the centre of its stack, extra = {z + off, cnt}). out [Ko, D, H, W] or [K] (classify);
 * cover [D, H, W] counts the windows of each voxel */
static void ref_slide(Model* M, Loader* L, const float* img, int D, int H, int W, double ov,
                      int gaussian, int slice, int off, int cnt, double* out, int* cover) {
    const int* w = M->m.cfg.img;
    int C = M->m.cfg.in_chans, task = M->hc.task, K = M->h.out_channels;
    int Ko = task == HEAD_CLASSIFY || task == HEAD_SEGMENT ? K : 1;
    long S = (long)w[0] * w[1] * w[2], vol = (long)D * H * W, plane = (long)H * W;
    int dims[3] = {slice ? 1 : D, H, W}, pad[3], n[3], st[3][64];
    for (int a = 0; a < 3; a++) {
        pad[a] = dims[a] < w[a] ? (w[a] - dims[a]) / 2 : 0;
        n[a] = ref_starts(dims[a] > w[a] ? dims[a] : w[a], w[a], ov, st[a]);
    }
    /* weight map in double, MONAI's clamp at max(min, 1e-3) */
    double* map = t_dnew(S);
    double mn = 1e300;
    for (long v = 0; v < S; v++) {
        int z = (int)(v / (w[1] * w[2])), y = (int)(v / w[2] % w[1]), x = (int)(v % w[2]);
        map[v] = gaussian ? ref_gauss(z, w[0]) * ref_gauss(y, w[1]) * ref_gauss(x, w[2]) : 1.0;
        mn = fmin(mn, map[v]);
    }
    for (long v = 0; v < S; v++) map[v] = fmax(map[v], fmax(mn, 1e-3));
    double* num = t_dnew(task == HEAD_CLASSIFY ? K : Ko * vol);
    double* den = t_dnew(vol);
    memset(cover, 0, sizeof(int) * vol);
    float* win = t_fnew(C * S);
    float* pred = t_fnew(Ko * S + K);
    float* stack = t_fnew((long)C * plane);
    long nw = 0;
    for (int z0 = 0; z0 < (slice ? D : 1); z0++) {
        if (slice) loader_slice_stack(L, img, z0, stack);
        const float* src = slice ? stack : img;
        long svol = (long)dims[0] * plane;
        for (int a = 0; a < n[0]; a++)
            for (int b = 0; b < n[1]; b++)
                for (int c = 0; c < n[2]; c++) {
                    int s0 = st[0][a] - pad[0], s1 = st[1][b] - pad[1], s2 = st[2][c] - pad[2];
                    for (int ch = 0; ch < C; ch++)
                        for (long v = 0; v < S; v++) {
                            int z = s0 + (int)(v / (w[1] * w[2])), y = s1 + (int)(v / w[2] % w[1]),
                                x = s2 + (int)(v % w[2]);
                            int in = z >= 0 && z < dims[0] && y >= 0 && y < H && x >= 0 && x < W;
                            win[ch * S + v] = in ? src[ch * svol + (long)z * plane + (long)y * W + x] : 0.0f;
                        }
                    float ex[2] = {(float)(z0 + off), (float)cnt};
                    ref_forward(M, win, ex, pred);
                    nw++;
                    if (task == HEAD_CLASSIFY) {
                        for (int k = 0; k < K; k++) num[k] += pred[k];
                        continue;
                    }
                    for (long v = 0; v < S; v++) {
                        int z = s0 + (int)(v / (w[1] * w[2])), y = s1 + (int)(v / w[2] % w[1]),
                            x = s2 + (int)(v % w[2]);
                        if (z < 0 || z >= dims[0] || y < 0 || y >= H || x < 0 || x >= W) continue;
                        long g = (long)(slice ? z0 : z) * plane + (long)y * W + x;
                        den[g] += map[v];
                        cover[g]++;
                        for (int k = 0; k < Ko; k++) num[k * vol + g] += map[v] * pred[k * S + v];
                    }
                }
    }
    if (task == HEAD_CLASSIFY)
        for (int k = 0; k < K; k++) out[k] = num[k] / nw;
    else
        for (int k = 0; k < Ko; k++)
            for (long v = 0; v < vol; v++) out[k * vol + v] = num[k * vol + v] / den[v];
    free(map); free(num); free(den); free(win); free(pred); free(stack);
}

static double max_abs_fd(const float* a, const double* b, long n) {
    double mx = 0;
    for (long i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d != d) return NAN;
        mx = fmax(mx, d);
    }
    return mx;
}

/* ---- (1) one window: exactly the single forward ------------------------------------------ */
static void test_exact_window(void) {
    const int tasks[2] = {HEAD_SEGMENT, HEAD_SUPERRES};
    for (int t = 0; t < 2; t++) {
        VitConfig vc;
        vit3d(&vc);
        Model M;
        model_make(&M, &vc, tasks[t], 3, 2, 0, 10 + t);
        Dataset ds; Loader L;
        open_loader(&L, &ds, g_exact, tasks[t], LOADER_VOLUME, 1, "t2w,adc");
        long vol = 4 * 8 * 8;
        int K = tasks[t] == HEAD_SEGMENT ? 3 : 1;
        float* out = t_fnew(K * vol);
        int32_t* seg = calloc(vol, sizeof(int32_t));
        float* tgt = t_fnew(vol);
        int32_t cls = -9;
        char err[512];
        SlideConfig sc = {0.5, 1, 2};
        int rc = slide_case(&M.m, &M.h, &L, 3, &sc, out, seg, &cls, tgt, err, sizeof err);
        if (rc) printf("  slide_case: %s\n", err);
        float* img = t_fnew(2 * vol);
        loader_case(&L, 3, img, NULL, NULL, NULL, err, sizeof err);
        float* pred = t_fnew(K * vol);
        ref_forward(&M, img, NULL, pred);
        double d = 0;
        for (long v = 0; v < K * vol; v++) d = fmax(d, fabs((double)out[v] - pred[v]));
        char what[128];
        snprintf(what, sizeof what, "(1) %s: window-sized case == the single forward (max |diff|)",
                 head_task_name(tasks[t]));
        t_check(what, rc ? NAN : d, 0);
        t_true("(1) cls of the case returned", cls == 1);
        free(out); free(seg); free(tgt); free(img); free(pred);
        loader_close(&L); dataset_close(&ds); model_free(&M);
    }
}

/* ---- (2) + (4) larger volume: coverage, reference blending, gaussian vs constant ---------- */
static void test_big_volume(void) {
    const int D = 6, H = 12, W = 10;
    long vol = (long)D * H * W;
    char err[512];
    const int tasks[3] = {HEAD_SEGMENT, HEAD_SYNTHESIZE, HEAD_CLASSIFY};
    for (int t = 0; t < 3; t++) {
        int task = tasks[t];
        VitConfig vc;
        vit3d(&vc);
        Model M;
        model_make(&M, &vc, task, 3, 3, 0, 20 + t);
        Dataset ds; Loader L;
        open_loader(&L, &ds, g_big, task, LOADER_VOLUME, 1, "t2w,adc");
        int K = task == HEAD_SYNTHESIZE ? 1 : 3;
        long nout = task == HEAD_CLASSIFY ? K : K * vol;
        float* img = t_fnew(2 * vol);
        loader_case(&L, 5, img, NULL, NULL, NULL, err, sizeof err);
        float *og = t_fnew(nout), *oc = t_fnew(nout);
        t_fill_nan(og, nout); t_fill_nan(oc, nout);
        float* tgt = t_fnew(vol);
        int32_t* seg = calloc(vol, sizeof(int32_t));
        SlideConfig sg = {0.5, 1, 3}, sk = {0.5, 0, 3};   /* 8 windows: batches of 3, 3, 2 */
        int rc = slide_case(&M.m, &M.h, &L, 5, &sg, og, seg, NULL, tgt, err, sizeof err);
        rc |= slide_case(&M.m, &M.h, &L, 5, &sk, oc, seg, NULL, tgt, err, sizeof err);
        if (rc) printf("  slide_case: %s\n", err);
        double *rg = t_dnew(nout), *rk = t_dnew(nout);
        int* cover = calloc(vol, sizeof(int));
        ref_slide(&M, &L, img, D, H, W, 0.5, 1, 0, 0, 0, rg, cover);
        ref_slide(&M, &L, img, D, H, W, 0.5, 0, 0, 0, 0, rk, cover);
        const char* tn = head_task_name(task);
        char what[160];
        if (task != HEAD_CLASSIFY) {
            int all = 1, fin = 1;
            for (long v = 0; v < vol; v++) all &= cover[v] > 0;
            for (long v = 0; v < nout; v++) fin &= isfinite(og[v]) && isfinite(oc[v]);
            snprintf(what, sizeof what, "(2) %s: every voxel covered (reference count), output finite", tn);
            t_true(what, all && fin);
        }
        snprintf(what, sizeof what, "(2) %s: gaussian blend vs brute-force reference (NMSE)", tn);
        t_check(what, rc ? NAN : t_nmse_fd(og, rg, nout), 1e-11);
        snprintf(what, sizeof what, "(4) %s: constant blend vs brute-force reference (NMSE)", tn);
        t_check(what, rc ? NAN : t_nmse_fd(oc, rk, nout), 1e-11);
        if (task == HEAD_CLASSIFY) {
            t_check("(4) classify: weighting does not change the window average (max |diff|)",
                    max_abs_fd(og, rk, K), 1e-6);
        } else {
            /* voxels seen by one window: identical (w p / w = p); others: blended differently */
            double single = 0, multi = 0;
            for (int k = 0; k < K; k++)
                for (long v = 0; v < vol; v++) {
                    double d = fabs((double)og[k * vol + v] - oc[k * vol + v]);
                    if (cover[v] == 1) single = fmax(single, d); else multi = fmax(multi, d);
                }
            snprintf(what, sizeof what, "(4) %s: gaussian == constant where one window covers", tn);
            t_check(what, single, 0);
            snprintf(what, sizeof what, "(4) %s: gaussian != constant where windows overlap", tn);
            t_true(what, multi > 1e-5);
        }
        free(img); free(og); free(oc); free(tgt); free(seg); free(rg); free(rk); free(cover);
        loader_close(&L); dataset_close(&ds); model_free(&M);
    }

    /* identity superres (zero output conv): the blend of identical values is the input itself */
    VitConfig vc;
    vit3d(&vc);
    Model M;
    model_make(&M, &vc, HEAD_SUPERRES, 1, 4, 1, 30);
    Dataset ds; Loader L;
    open_loader(&L, &ds, g_big, HEAD_SUPERRES, LOADER_VOLUME, 1, "t2w,adc");
    float *img = t_fnew(2 * vol), *o = t_fnew(vol), *tgt = t_fnew(vol);
    loader_case(&L, 4, img, NULL, NULL, NULL, err, sizeof err);
    SlideConfig sg = {0.75, 1, 4};
    int rc = slide_case(&M.m, &M.h, &L, 4, &sg, o, NULL, NULL, tgt, err, sizeof err);
    double d = 0;
    for (long v = 0; v < vol; v++) d = fmax(d, fabs((double)o[v] - img[v]) / (fabs(img[v]) + 1e-3));
    t_check("(2) identity superres, overlap 0.75: output == input channel (max rel diff)", rc ? NAN : d, 1e-6);
    free(img); free(o); free(tgt);
    loader_close(&L); dataset_close(&ds); model_free(&M);
}

/* ---- (3) smaller than the window: padded and cropped back -------------------------------- */
static void test_small_volume(void) {
    const int D = 3, H = 6, W = 5;
    long vol = (long)D * H * W;
    char err[512];
    VitConfig vc;
    vit3d(&vc);
    Model M;
    model_make(&M, &vc, HEAD_SEGMENT, 3, 2, 0, 40);
    Dataset ds; Loader L;
    open_loader(&L, &ds, g_small, HEAD_SEGMENT, LOADER_VOLUME, 1, "t2w,adc");
    float* img = t_fnew(2 * vol);
    loader_case(&L, 3, img, NULL, NULL, NULL, err, sizeof err);
    float* out = t_fnew(3 * vol);
    int32_t* seg = calloc(vol, sizeof(int32_t));
    SlideConfig sc = {0.5, 1, 2};
    int rc = slide_case(&M.m, &M.h, &L, 3, &sc, out, seg, NULL, NULL, err, sizeof err);
    if (rc) printf("  slide_case: %s\n", err);
    /* reference: the case at offset ((4-3)/2, (8-6)/2, (8-5)/2) = (0, 1, 1) of a zero window */
    long S = 4 * 8 * 8;
    float* win = t_fnew(2 * S);
    for (int c = 0; c < 2; c++)
        for (long v = 0; v < vol; v++) {
            int z = (int)(v / (H * W)), y = (int)(v / W % H), x = (int)(v % W);
            win[c * S + (long)(z + 0) * 64 + (y + 1) * 8 + (x + 1)] = img[c * vol + v];
        }
    float* pred = t_fnew(3 * S);
    ref_forward(&M, win, NULL, pred);
    double d = 0;
    for (int k = 0; k < 3; k++)
        for (long v = 0; v < vol; v++) {
            int z = (int)(v / (H * W)), y = (int)(v / W % H), x = (int)(v % W);
            d = fmax(d, fabs((double)out[k * vol + v] - pred[k * S + z * 64 + (y + 1) * 8 + x + 1]));
        }
    t_check("(3) smaller case: zero-padded (centred), forwarded, cropped back (max |diff|)", rc ? NAN : d, 0);
    double ps = 0;
    for (long v = 0; v < vol; v++) ps = fmax(ps, fabs(out[v] + out[vol + v] + out[2 * vol + v] - 1.0));
    t_check("(3) smaller case: probabilities sum to 1 per voxel (max |sum-1|)", ps, 1e-5);
    free(img); free(out); free(seg); free(win); free(pred);
    loader_close(&L); dataset_close(&ds); model_free(&M);
}

/* ---- slice mode: 2D model, context 3, extra tokens, in-plane windows --------------------- */
static void test_slice_mode(void) {
    const int D = 6, H = 12, W = 10;
    long vol = (long)D * H * W;
    char err[512];
    VitConfig vc;
    vit2d(&vc);
    Model M;
    model_make(&M, &vc, HEAD_SEGMENT, 3, 5, 0, 50);
    /* make the extra tokens matter: non-zero Linear(1, dim) weights */
    for (int e = 0; e < 2; e++) {
        char nm[64];
        snprintf(nm, sizeof nm, "extra_tokens.%s.weight", vc.extra_tokens[e]);
        const VitParam* p = vit_find_param(&M.m, nm);
        float* wv = t_fnew(p->numel);
        TRng r = {60 + e};
        t_frandn(&r, wv, p->numel, 0.5);
        copy_h2d(&g_c, M.m.w + p->offset, wv, sizeof(float) * p->numel);
        free(wv);
    }
    Dataset ds; Loader L;
    open_loader(&L, &ds, g_big, HEAD_SEGMENT, LOADER_SLICE, 3, "t2w");
    float* img = t_fnew(vol);
    loader_case(&L, 4, img, NULL, NULL, NULL, err, sizeof err);
    float* out = t_fnew(3 * vol);
    int32_t* seg = calloc(vol, sizeof(int32_t));
    SlideConfig sc = {0.5, 1, 5};
    int rc = slide_case(&M.m, &M.h, &L, 4, &sc, out, seg, NULL, NULL, err, sizeof err);
    if (rc) printf("  slide_case: %s\n", err);
    double* ref = t_dnew(3 * vol);
    int* cover = calloc(vol, sizeof(int));
    /* case 4: crop_offset z 2, shape_original z 10 -> index z + 2, count 10 */
    ref_slide(&M, &L, img, D, H, W, 0.5, 1, 1, 2, 10, ref, cover);
    t_check("slice mode: 2D windows + context stack + extra tokens vs reference (NMSE)",
            rc ? NAN : t_nmse_fd(out, ref, 3 * vol), 1e-11);
    double* ref0 = t_dnew(3 * vol);
    ref_slide(&M, &L, img, D, H, W, 0.5, 1, 1, 0, 6, ref0, cover);
    t_true("slice mode: extra tokens use the original geometry (index z + crop_offset)",
           t_nmse_fd(out, ref0, 3 * vol) > 1e-8);
    free(img); free(out); free(seg); free(ref); free(ref0); free(cover);
    loader_close(&L); dataset_close(&ds); model_free(&M);
}

/* ---- (5) metrics plumbing ---------------------------------------------------------------- */
static void test_metrics(void) {
    const double sp[3] = {3.0, 0.5, 0.5};
    double mv[16];
    const char* nm[16];
    /* segment: one-hot truth as the probabilities */
    int D = 4, H = 16, W = 16, K = 3;
    long vol = (long)D * H * W;
    int32_t* seg = calloc(vol, sizeof(int32_t));
    float* prob = t_fnew(K * vol);
    for (long v = 0; v < vol; v++) {
        int y = (int)(v / W % H), x = (int)(v % W);
        seg[v] = (y > 3 && y < 12 && x > 2 && x < 13) ? 1 + (x > 8) : 0;
        prob[seg[v] * vol + v] = 1.0f;
    }
    int n = slide_case_metrics(HEAD_SEGMENT, K, prob, seg, NULL, D, H, W, sp, mv, nm, 16);
    t_true("(5) segment metric names: dice_1 dice_2 dice_mean hd95",
           n == 4 && !strcmp(nm[0], "dice_1") && !strcmp(nm[1], "dice_2") &&
           !strcmp(nm[2], "dice_mean") && !strcmp(nm[3], "hd95"));
    t_check("(5) perfect segmentation: |Dice - 1| (classes, mean)",
            fmax(fmax(fabs(mv[0] - 1), fabs(mv[1] - 1)), fabs(mv[2] - 1)), 0);
    t_check("(5) perfect segmentation: HD95 (mm)", mv[3], 0);
    /* class 2 absent from the truth: NaN, excluded from the mean */
    for (long v = 0; v < vol; v++)
        if (seg[v] == 2) { seg[v] = 1; prob[2 * vol + v] = 0; prob[vol + v] = 1; }
    slide_case_metrics(HEAD_SEGMENT, K, prob, seg, NULL, D, H, W, sp, mv, nm, 16);
    t_true("(5) class absent from the truth: Dice NaN, mean over the others = 1",
           isnan(mv[1]) && mv[2] == 1.0);
    /* image: prediction = target, 2D per slice (D = 4) and 3D (D = 12) */
    float* tg = t_fnew(12 * H * W);
    TRng r = {5};
    t_frandn(&r, tg, 12 * H * W, 1.0);
    n = slide_case_metrics(HEAD_SYNTHESIZE, 1, tg, NULL, tg, D, H, W, sp, mv, nm, 16);
    t_true("(5) image metric names: psnr ssim mae",
           n == 3 && !strcmp(nm[0], "psnr") && !strcmp(nm[1], "ssim") && !strcmp(nm[2], "mae"));
    t_true("(5) perfect image (2D SSIM per slice): PSNR inf, SSIM 1, MAE 0",
           isinf(mv[0]) && mv[0] > 0 && fabs(mv[1] - 1) < 1e-12 && mv[2] == 0);
    slide_case_metrics(HEAD_SUPERRES, 1, tg, NULL, tg, 12, H, W, sp, mv, nm, 16);
    t_true("(5) perfect image (3D SSIM, D = 12): PSNR inf, SSIM 1, MAE 0",
           isinf(mv[0]) && fabs(mv[1] - 1) < 1e-12 && mv[2] == 0);
    float* noisy = t_fnew(12 * H * W);
    for (long v = 0; v < 12 * H * W; v++) noisy[v] = tg[v] + 0.1f * (float)trng_normal(&r);
    slide_case_metrics(HEAD_SUPERRES, 1, noisy, NULL, tg, 12, H, W, sp, mv, nm, 16);
    double R = metric_data_range(tg, 12 * H * W);
    t_check("(5) noisy image: PSNR == metric_psnr(data range of the target) (|diff|)",
            fabs(mv[0] - metric_psnr(noisy, tg, 12 * H * W, R)), 0);
    /* classify: score = p(class 1), correctness */
    float p2[2] = {0.2f, 0.8f};
    int32_t y = 1;
    n = slide_case_metrics(HEAD_CLASSIFY, 2, p2, &y, NULL, 1, 1, 1, sp, mv, nm, 16);
    t_true("(5) classify: score = p1, pred 1, correct 1",
           n == 3 && !strcmp(nm[0], "score") && fabs(mv[0] - 0.8) < 1e-7 && mv[1] == 1 && mv[2] == 1);
    y = -1;
    slide_case_metrics(HEAD_CLASSIFY, 2, p2, &y, NULL, 1, 1, 1, sp, mv, nm, 16);
    t_true("(5) classify without a label: correct NaN", isnan(mv[2]));
    free(seg); free(prob); free(tg); free(noisy);
}

/* ---- (6) vita eval in-process ------------------------------------------------------------ */
/* meta: 0 model only, 1 model + head + task, 2 + input */
static int save_ckpt(Model* M, const char* path, int with_input) {
    int n = M->m.n_params + M->h.n_params;
    StWriteTensor* t = calloc(n, sizeof *t);
    float* hv = t_fnew(M->m.n_floats);
    float* hh = t_fnew(M->h.n_floats);
    copy_d2h(&g_c, hv, M->m.w, sizeof(float) * M->m.n_floats);
    copy_d2h(&g_c, hh, M->h.w, sizeof(float) * M->h.n_floats);
    for (int i = 0; i < n; i++) {
        const VitParam* p = i < M->m.n_params ? &M->m.params[i] : &M->h.params[i - M->m.n_params];
        t[i].name = p->name;
        t[i].ndim = p->ndim;
        for (int d = 0; d < p->ndim; d++) t[i].shape[d] = p->shape[d];
        t[i].data = (i < M->m.n_params ? hv : hh) + p->offset;
    }
    char* mj = vit_config_to_json(&M->m.cfg);
    char* hj = head_config_to_json(&M->hc);
    char* ij = input_meta_to_json("t2w,adc", LOADER_VOLUME, 1);
    const char* meta[] = {"model", mj, "head", hj, "task", head_task_name(M->hc.task), "input", ij};
    char err[512];
    int rc = st_write_f32(path, t, n, meta, with_input == 0 ? 1 : with_input == 1 ? 3 : 4, err,
                          sizeof err);
    if (rc) printf("  st_write_f32: %s\n", err);
    free(mj); free(hj); free(ij); free(t); free(hv); free(hh);
    return rc;
}

static int read_lines(const char* path, char lines[][512], int max) {
    FILE* f = fopen(path, "r");
    if (!f) return -1;
    int n = 0;
    while (n < max && fgets(lines[n], 512, f)) {
        lines[n][strcspn(lines[n], "\n")] = 0;
        n++;
    }
    fclose(f);
    return n;
}

static void test_cmd_eval(void) {
    /* head metadata round trip */
    HeadConfig a, b;
    head_config_default(&a, HEAD_UNDISTORT, 3);
    a.output = HEAD_OUT_FIELD; a.pe_axis = 2; a.feature_size = 8; a.in_eps = 2e-5f;
    char* js = head_config_to_json(&a);
    char err[512];
    int rc = head_config_from_json(&b, js, 3, err, sizeof err);
    t_true("head_config_to_json -> head_config_from_json round trip",
           !rc && !memcmp(&a, &b, sizeof a));
    free(js);
    t_true("head_config_from_json rejects an unknown key",
           head_config_from_json(&b, "{\"task\":\"segment\",\"kindd\":\"pup\"}", 3, err, sizeof err) == 1 &&
           strstr(err, "kindd"));

    VitConfig vc;
    vit3d(&vc);
    Model M;
    model_make(&M, &vc, HEAD_SEGMENT, 3, 2, 0, 70);
    if (save_ckpt(&M, g_ckpt, 1)) { t_true("(6) checkpoint written", 0); model_free(&M); return; }
    char csv[192];
    snprintf(csv, sizeof csv, "%s/seg.csv", g_dir);
    char* argv[] = {"eval", g_ckpt, "--data", g_big, "--csv", csv, "--split", "test", "--batch", "3",
                    "--threads", "2", "--quiet"};
    rc = cmd_eval((int)(sizeof argv / sizeof *argv), argv);
    t_true("(6) vita eval CKPT (segment) exits 0", rc == 0);
    static char lines[16][512];
    int nl = read_lines(csv, lines, 16);
    t_true("(6) CSV: header + one row per test case (3)", nl == 4);
    t_true("(6) CSV header: case_id,split,dice_tz,dice_pz,dice_mean,hd95",
           nl > 0 && !strcmp(lines[0], "case_id,split,dice_tz,dice_pz,dice_mean,hd95"));
    /* row 1 (case03) against slide_case + slide_case_metrics in-process */
    Dataset ds; Loader L;
    open_loader(&L, &ds, g_big, HEAD_SEGMENT, LOADER_VOLUME, 1, "t2w,adc");
    long vol = (long)ds.D * ds.H * ds.W;
    float* out = t_fnew(3 * vol);
    int32_t* seg = calloc(vol, sizeof(int32_t));
    SlideConfig sc = {0.5, 1, 2};
    double mv[8];
    rc = slide_case(&M.m, &M.h, &L, 3, &sc, out, seg, NULL, NULL, err, sizeof err);
    slide_case_metrics(HEAD_SEGMENT, 3, out, seg, NULL, ds.D, ds.H, ds.W, ds.g_spacing ? ds.g_spacing + 9 : ds.spacing_zyx, mv, NULL, 8);
    double c[4] = {NAN, NAN, NAN, NAN};
    char id[64] = "";
    if (nl > 1) {
        char* p = strchr(lines[1], ',');
        if (p) {
            snprintf(id, sizeof id, "%.*s", (int)(p - lines[1]), lines[1]);
            p = strchr(p + 1, ',');   /* past the split column */
            for (int k = 0; k < 4 && p; k++) {
                c[k] = strtod(p + 1, NULL);
                p = strchr(p + 1, ',');
            }
        }
    }
    double d = 0;
    for (int k = 0; k < 4; k++) d = fmax(d, fabs(c[k] - mv[k]) / fmax(1e-9, fabs(mv[k])));
    t_true("(6) first row is case03", !strcmp(id, "case03"));
    t_check("(6) CSV row == slide_case metrics of the case (max rel diff)", rc ? NAN : d, 1e-7);
    free(out); free(seg);
    loader_close(&L); dataset_close(&ds);

    /* RUN_DIR: config.yaml (model, task, head, data path, channels) + checkpoints/best with the
     * encoder config only; no --data, default CSV RUN_DIR/eval_test.csv == the CKPT run's */
    char run[160], path[256];
    snprintf(run, sizeof run, "%s/run", g_dir);
    snprintf(path, sizeof path, "%s/checkpoints", run);
    mkdir(run, 0755);
    mkdir(path, 0755);
    Config* cfg = calloc(1, sizeof *cfg);
    config_default(cfg);
    cfg->vit = vc;
    cfg->task = HEAD_SEGMENT;
    cfg->head = M.hc;
    snprintf(cfg->loss_kind, sizeof cfg->loss_kind, "dice_ce");
    snprintf(cfg->metric, sizeof cfg->metric, "dice");
    snprintf(cfg->data_path, sizeof cfg->data_path, "%s", g_big);
    snprintf(cfg->channels, sizeof cfg->channels, "t2w,adc");
    for (int a = 0; a < 3; a++) cfg->crop[a] = vc.img[a];
    cfg->batch = 3;
    cfg->n_align_layers = 2;
    cfg->align_layers[0] = 1;
    cfg->align_layers[1] = 0;
    char* yaml = config_to_yaml(cfg);
    snprintf(path, sizeof path, "%s/config.yaml", run);
    FILE* f = fopen(path, "w");
    if (f) { fputs(yaml, f); fclose(f); }
    free(yaml);
    Config* back = calloc(1, sizeof *back);
    int cl = config_load(back, path, NULL, 0, err, sizeof err);
    if (cl) printf("  config_load: %s\n", err);
    free(back);
    free(cfg);
    snprintf(path, sizeof path, "%s/checkpoints/best.safetensors", run);
    save_ckpt(&M, path, 0);
    char* argv3[] = {"eval", run, "--quiet", "--threads", "2"};
    rc = cl ? 1 : cmd_eval(5, argv3);
    t_true("(6) vita eval RUN_DIR (config.yaml + checkpoints/best.safetensors) exits 0", rc == 0);
    static char lines2[16][512];
    snprintf(path, sizeof path, "%s/eval_test.csv", run);
    int nl2 = read_lines(path, lines2, 16);
    int same = nl2 == nl;
    for (int i = 0; same && i < nl; i++) same = !strcmp(lines[i], lines2[i]);
    t_true("(6) RUN_DIR CSV (default path, data.path of the run) == the CKPT CSV", same);
    unlink(path);
    snprintf(path, sizeof path, "%s/checkpoints/best.safetensors", run); unlink(path);
    snprintf(path, sizeof path, "%s/config.yaml", run); unlink(path);
    snprintf(path, sizeof path, "%s/checkpoints", run); rmdir(path);
    rmdir(run);
    model_free(&M);

    /* classify, with the "input" metadata, default CSV path next to the checkpoint */
    model_make(&M, &vc, HEAD_CLASSIFY, 2, 2, 0, 80);
    if (save_ckpt(&M, g_ckpt_cls, 2)) { t_true("(6) checkpoint written", 0); model_free(&M); return; }
    char* argv2[] = {"eval", g_ckpt_cls, "--data", g_big, "--split", "test", "--overlap", "0.25", "--quiet"};
    rc = cmd_eval((int)(sizeof argv2 / sizeof *argv2), argv2);
    t_true("(6) vita eval CKPT (classify) exits 0", rc == 0);
    char dcsv[256];
    snprintf(dcsv, sizeof dcsv, "%s/cls.eval_test.csv", g_dir);
    nl = read_lines(dcsv, lines, 16);
    t_true("(6) classify CSV at the default path: header case_id,split,label,score,pred,correct + 3 rows",
           nl == 4 && !strcmp(lines[0], "case_id,split,label,score,pred,correct") &&
           !strncmp(lines[2], "case04,test,0,", 14));
    unlink(csv); unlink(dcsv);
    model_free(&M);
}

int main(void) {
    t_set_threads(2);
    if (ctx_open(&g_c, "cpu", 2, 1)) return 1;
    snprintf(g_dir, sizeof g_dir, "/tmp/vita_test_slidewin_XXXXXX");
    if (!mkdtemp(g_dir)) { perror("mkdtemp"); return 1; }
    snprintf(g_exact, sizeof g_exact, "%s/exact.h5", g_dir);
    snprintf(g_big, sizeof g_big, "%s/big.h5", g_dir);
    snprintf(g_small, sizeof g_small, "%s/small.h5", g_dir);
    snprintf(g_ckpt, sizeof g_ckpt, "%s/seg.safetensors", g_dir);
    snprintf(g_ckpt_cls, sizeof g_ckpt_cls, "%s/cls.safetensors", g_dir);
    make_dataset(g_exact, 4, 8, 8, 1);
    make_dataset(g_big, 6, 12, 10, 2);
    make_dataset(g_small, 3, 6, 5, 3);

    test_exact_window();
    test_big_volume();
    test_small_volume();
    test_slice_mode();
    test_metrics();
    test_cmd_eval();

    unlink(g_exact); unlink(g_big); unlink(g_small); unlink(g_ckpt); unlink(g_ckpt_cls);
    rmdir(g_dir);
    ctx_close(&g_c);
    return t_summary();
}
