/* tests/test_metrics.c — engine/metrics.c against independent float64 computations in
 * tests/oracle/metrics_oracle.py (numpy Dice; scipy distance_transform_edt for HD95; sklearn
 * roc_auc_score / average_precision_score / accuracy_score / balanced_accuracy_score; skimage
 * peak_signal_noise_ratio / structural_similarity), read from
 * $VITA_ORACLE_DIR/metrics.safetensors (the script is run here if the file is absent), plus
 * exact cases worked out by hand and thread-count independence.
 *
 * Tolerance: both sides compute in double from the same fp32 inputs, with different
 * summation orders and formulas (trapezoids vs midranks, scipy's separable correlate vs ours,
 * a feature transform vs parabola envelopes). Rounding differences are ~n·2^-53 relative
 * (≤ 1e-12 for these sizes) times the conditioning of the metric (SSIM's variances
 * uxx − ux² cancel by mean²/var ≤ 1e5 in the offset case: ≤ 1e-10), and the oracle's hi+lo
 * storage adds 2^-48 = 3.6e-15. Bound: 1e-9 relative (absolute when the value is < 1).
 * NaN and ±inf must match exactly.
 */
#include "../engine/metrics.h"
#include "oracle_io.h"

#include <omp.h>

#define REL_TOL 1e-9

/* error score: 0 when NaN/inf match exactly; relative (absolute below 1) error otherwise;
 * +inf when one side is not finite and the other differs */
static double err(double got, double ref) {
    if (isnan(ref) || isnan(got)) return isnan(ref) && isnan(got) ? 0.0 : INFINITY;
    if (isinf(ref) || isinf(got)) return got == ref ? 0.0 : INFINITY;
    return fabs(got - ref) / fmax(1.0, fabs(ref));
}
static double g_worst[8];  /* per group: worst error seen */
static void check_val(int grp, const char* what, double got, double ref) {
    char name[200];
    snprintf(name, sizeof name, "%s = %.10g (ref %.10g)", what, got, ref);
    double e = err(got, ref);
    if (e > g_worst[grp]) g_worst[grp] = e;
    t_check(name, e, REL_TOL);
}

static uint8_t* to_u8(const float* v, long n) {
    uint8_t* m = malloc(n ? n : 1);
    for (long i = 0; i < n; i++) m[i] = v[i] != 0;
    return m;
}
static int meta_int(const StFile* f, const char* k) { const char* v = st_meta(f, k); return v ? atoi(v) : 0; }

static void test_oracle(void) {
    char path[512], errs[512], key[96], what[160];
    oracle_ensure(path, sizeof path, "metrics.safetensors", "tests/oracle/metrics_oracle.py");
    StFile f;
    if (!t_true("metrics oracle readable (tests/oracle/metrics_oracle.py; needs python3-sklearn, "
                "python3-scipy, python3-skimage)", st_open(&f, path, errs, sizeof errs) == 0)) {
        printf("%s\n", errs);
        return;
    }
    int nd = meta_int(&f, "dice"), nh = meta_int(&f, "hd"), nc = meta_int(&f, "cls");
    int nm = meta_int(&f, "mc"), ni = meta_int(&f, "img");
    t_true("metrics oracle has every group of cases", nd && nh && nc && nm && ni);

    for (int i = 0; i < nd; i++) {
        long n = 0;
        snprintf(key, sizeof key, "dice%d.pred", i); float* p = load_t(&f, key, &n);
        snprintf(key, sizeof key, "dice%d.gt", i); float* g = load_t(&f, key, NULL);
        snprintf(key, sizeof key, "dice%d.K", i); float* Kf = load_t(&f, key, NULL);
        snprintf(key, sizeof key, "dice%d.exp", i); double* e = load_hilo(&f, key, NULL);
        int K = (int)Kf[0];
        int32_t *pi = to_i32(p, n), *gi = to_i32(g, n);
        double out[16];
        metric_dice_per_class(pi, gi, n, K, out);
        for (int k = 0; k < K; k++) {
            snprintf(what, sizeof what, "dice%d class %d vs numpy", i, k);
            check_val(0, what, out[k], e[k]);
        }
        /* the binary-mask form agrees with the label form exactly */
        uint8_t *pm = malloc(n), *gm = malloc(n);
        for (long j = 0; j < n; j++) { pm[j] = pi[j] == 1; gm[j] = gi[j] == 1; }
        double d1 = metric_dice_mask(pm, gm, n);
        snprintf(what, sizeof what, "dice%d metric_dice_mask(class 1) == per-class value", i);
        t_true(what, d1 == out[1]);
        free(pm); free(gm); free(p); free(g); free(Kf); free(e); free(pi); free(gi);
    }
    for (int i = 0; i < nh; i++) {
        long n = 0;
        const StTensor* t = NULL;
        snprintf(key, sizeof key, "hd%d.pred", i); float* p = load_tt(&f, key, &n, &t);
        snprintf(key, sizeof key, "hd%d.gt", i); float* g = load_t(&f, key, NULL);
        snprintf(key, sizeof key, "hd%d.spacing", i); float* sp = load_t(&f, key, NULL);
        snprintf(key, sizeof key, "hd%d.pct", i); float* pct = load_t(&f, key, NULL);
        snprintf(key, sizeof key, "hd%d.exp", i); double* e = load_hilo(&f, key, NULL);
        int D = (int)t->shape[0], H = (int)t->shape[1], W = (int)t->shape[2];
        double s3[3] = {sp[0], sp[1], sp[2]};
        uint8_t *pm = to_u8(p, n), *gm = to_u8(g, n);
        omp_set_num_threads(2);
        double v = metric_hausdorff(pm, gm, D, H, W, s3, pct[0]);
        snprintf(what, sizeof what, "hd%d [%d,%d,%d] sp=(%g,%g,%g) p%g vs scipy EDT", i, D, H, W,
                 s3[0], s3[1], s3[2], (double)pct[0]);
        check_val(1, what, v, e[0]);
        omp_set_num_threads(3);
        double v3 = metric_hausdorff(pm, gm, D, H, W, s3, pct[0]);
        omp_set_num_threads(2);
        /* swapping pred and gt gives the same symmetric value */
        double vs = metric_hausdorff(gm, pm, D, H, W, s3, pct[0]);
        snprintf(what, sizeof what, "hd%d bit-identical with 2 and 3 threads, symmetric in pred/gt", i);
        t_true(what, !memcmp(&v, &v3, 8) && (v == vs || (isnan(v) && isnan(vs))));
        free(p); free(g); free(sp); free(pct); free(e); free(pm); free(gm);
    }
    for (int i = 0; i < nc; i++) {
        long n = 0;
        snprintf(key, sizeof key, "cls%d.score", i); float* s = load_t(&f, key, &n);
        snprintf(key, sizeof key, "cls%d.label", i); float* l = load_t(&f, key, NULL);
        snprintf(key, sizeof key, "cls%d.exp", i); double* e = load_hilo(&f, key, NULL);
        double* sd = t_dnew(n);
        t_f2d(sd, s, n);
        int32_t* y = to_i32(l, n);
        snprintf(what, sizeof what, "cls%d n=%ld AUROC vs sklearn roc_auc_score", i, n);
        check_val(2, what, metric_auroc(sd, y, n), e[0]);
        snprintf(what, sizeof what, "cls%d AP vs sklearn average_precision_score", i);
        check_val(3, what, metric_average_precision(sd, y, n), e[1]);
        snprintf(what, sizeof what, "cls%d case-level PI-CAI score (AUROC+AP)/2", i);
        check_val(3, what, metric_picai_case_score(sd, y, n), e[2]);
        free(s); free(l); free(e); free(sd); free(y);
    }
    for (int i = 0; i < nm; i++) {
        long n = 0;
        snprintf(key, sizeof key, "mc%d.pred", i); float* p = load_t(&f, key, &n);
        snprintf(key, sizeof key, "mc%d.gt", i); float* g = load_t(&f, key, NULL);
        snprintf(key, sizeof key, "mc%d.K", i); float* Kf = load_t(&f, key, NULL);
        snprintf(key, sizeof key, "mc%d.exp", i); double* e = load_hilo(&f, key, NULL);
        int32_t *pi = to_i32(p, n), *gi = to_i32(g, n);
        snprintf(what, sizeof what, "mc%d accuracy vs sklearn", i);
        check_val(4, what, metric_accuracy(pi, gi, n), e[0]);
        snprintf(what, sizeof what, "mc%d balanced accuracy vs sklearn (K=%d)", i, (int)Kf[0]);
        check_val(4, what, metric_balanced_accuracy(pi, gi, n, (int)Kf[0]), e[1]);
        free(p); free(g); free(Kf); free(e); free(pi); free(gi);
    }
    for (int i = 0; i < ni; i++) {
        long n = 0;
        const StTensor* t = NULL;
        snprintf(key, sizeof key, "img%d.target", i); float* tg = load_tt(&f, key, &n, &t);
        snprintf(key, sizeof key, "img%d.pred", i); float* p = load_t(&f, key, NULL);
        snprintf(key, sizeof key, "img%d.exp", i); double* e = load_hilo(&f, key, NULL);
        int D = (int)t->shape[0], H = (int)t->shape[1], W = (int)t->shape[2];
        snprintf(what, sizeof what, "img%d [%d,%d,%d] MAE vs numpy", i, D, H, W);
        check_val(5, what, metric_mae(p, tg, n), e[0]);
        snprintf(what, sizeof what, "img%d PSNR vs skimage (range of target)", i);
        check_val(5, what, metric_psnr(p, tg, n, 0), e[1]);
        snprintf(what, sizeof what, "img%d SSIM %s vs skimage", i, D == 1 ? "2D" : "3D");
        omp_set_num_threads(2);
        double s2 = metric_ssim(p, tg, D, H, W, 0);
        check_val(6, what, s2, e[2]);
        omp_set_num_threads(3);
        double s3 = metric_ssim(p, tg, D, H, W, 0);
        omp_set_num_threads(2);
        snprintf(what, sizeof what, "img%d SSIM bit-identical with 2 and 3 threads", i);
        t_true(what, !memcmp(&s2, &s3, 8));
        free(tg); free(p); free(e);
    }
    st_close(&f);
}

/* ---- exact cases ---------------------------------------------------------------------------- */
static void test_exact(void) {
    double x[5] = {1, NAN, 3, NAN, 5}, nn[2] = {NAN, NAN};
    t_true("nanmean skips NaN (3), all-NaN gives NaN", metric_nanmean(x, 5) == 3.0 && isnan(metric_nanmean(nn, 2)));

    /* AUROC / AP by hand: scores (0.9 P, 0.8 P, 0.8 N, 0.3 N, 0.1 N): U = 3 + (2.5) = 5.5 of 6;
     * AP = (1/2)·1 + (1/2)·(2/3) = 5/6 */
    double s[5] = {0.9, 0.8, 0.8, 0.3, 0.1};
    int32_t y[5] = {1, 1, 0, 0, 0}, yinv[5] = {0, 0, 0, 1, 1}, y0[5] = {0};
    t_check("AUROC hand case 11/12 (midrank tie)", fabs(metric_auroc(s, y, 5) - 11.0 / 12), 1e-15);
    t_check("AP hand case 5/6 (tied threshold enters together)", fabs(metric_average_precision(s, y, 5) - 5.0 / 6), 1e-15);
    t_true("AUROC 0 for perfectly inverted scores", metric_auroc(s, yinv, 5) == 0.0);
    t_true("AUROC and AP NaN without positives", isnan(metric_auroc(s, y0, 5)) && isnan(metric_average_precision(s, y0, 5)));
    double sn[5] = {0.9, NAN, 0.8, 0.3, 0.1};
    t_true("AUROC NaN with a NaN score", isnan(metric_auroc(sn, y, 5)));

    /* two single voxels: HD is the exact anisotropic distance */
    uint8_t a[27] = {0}, b[27] = {0};
    a[0] = 1;            /* (0,0,0) */
    b[26] = 1;           /* (2,2,2) */
    double sp[3] = {3.0, 0.5, 0.25};
    double ref = sqrt(36.0 + 1.0 + 0.25);
    t_check("HD95 of two voxels = |(6, 1, 0.5)| mm", fabs(metric_hd95(a, b, 3, 3, 3, sp) - ref), 1e-15);

    /* SSIM of an image with itself is exactly 1; PSNR +inf; too small -> NaN */
    float img[15 * 17];
    TRng r = {5};
    t_frandn(&r, img, 15 * 17, 1.0);
    t_true("SSIM(x, x) == 1 exactly (2D)", metric_ssim(img, img, 1, 15, 17, 0) == 1.0);
    t_true("PSNR(x, x) == +inf", isinf(metric_psnr(img, img, 15 * 17, 0)));
    t_true("SSIM NaN when an axis is shorter than the 11-tap window", isnan(metric_ssim(img, img, 1, 10, 25, 0)));
}

int main(void) {
    omp_set_num_threads(2);
    test_exact();
    test_oracle();
    const char* g[7] = {"Dice", "HD / HD95", "AUROC", "AP / PI-CAI case", "accuracy / balanced", "MAE / PSNR", "SSIM"};
    printf("worst error per group (bound %.0e):", REL_TOL);
    for (int i = 0; i < 7; i++) printf(" %s %.2e;", g[i], g_worst[i]);
    printf("\n");
    return t_summary();
}
