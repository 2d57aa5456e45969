/* tests/test_phantom.c — `vita phantom`: determinism, validity, and how hard each task is.
 *
 * Difficulty table (printed): for the default dataset (200 cases of 32x64x64, seed 0), what a
 * trivial predictor and a simple classical baseline score on each of the five tasks:
 *   classify    majority class (AUROC 0.5) vs −min ADC inside the true gland (AUROC, all cases)
 *   segment     all background (Dice 0) vs a per-voxel Gaussian classifier on (T2w, ADC, hbv)
 *               fit on the train split (Dice per class, mean over test cases with that label)
 *   superres    z downsampled x2 (slice pairs averaged) → linear interpolation back (PSNR)
 *   undistort   smooth phase-encode (y) displacement of up to ~3 voxels with Jacobian intensity
 *               change on ADC and hbv → the identity (PSNR of the distorted image)
 *   synthesize  T2w → ADC: the train mean (constant) vs per-voxel linear regression (PSNR)
 * PSNR uses the data range max − min of the target case (SPEC.md §7), mean over test cases.
 * These degradations mirror DESIGN.md's description; the training pipeline defines its own. */
#include "testing.h"
#include "../engine/dataset.h"
#include "../engine/phantom.h"

#include <sys/stat.h>
#include <time.h>

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static int files_equal(const char* a, const char* b) {
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int eq = fa && fb;
    while (eq) {
        int ca = fgetc(fa), cb = fgetc(fb);
        if (ca != cb) eq = 0;
        if (ca == EOF || cb == EOF) break;
    }
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    return eq;
}

/* AUROC by pairs (ties count half) */
static double auroc(const double* s, const int32_t* y, int n) {
    double num = 0, den = 0;
    for (int i = 0; i < n; i++)
        if (y[i] == 1)
            for (int j = 0; j < n; j++)
                if (y[j] == 0) {
                    num += s[i] > s[j] ? 1 : s[i] == s[j] ? 0.5 : 0;
                    den += 1;
                }
    return den ? num / den : NAN;
}

static double psnr(const float* pred, const float* ref, size_t n) {
    double mn = ref[0], mx = ref[0], se = 0;
    for (size_t k = 0; k < n; k++) {
        mn = ref[k] < mn ? ref[k] : mn;
        mx = ref[k] > mx ? ref[k] : mx;
        double d = (double)pred[k] - ref[k];
        se += d * d;
    }
    double mse = se / n;
    return 10 * log10((mx - mn) * (mx - mn) / (mse > 1e-20 ? mse : 1e-20));
}

/* replaces x by a·x + b, least squares to y (the clean phantom's z-scoring differs slightly) */
static void affine_fit(float* x, const float* y, size_t n) {
    double sx = 0, sy = 0, sxx = 0, sxy = 0;
    for (size_t k = 0; k < n; k++) { sx += x[k]; sy += y[k]; sxx += (double)x[k] * x[k]; sxy += (double)x[k] * y[k]; }
    double a = (sxy / n - sx / n * sy / n) / (sxx / n - sx / n * sx / n + 1e-20), b = sy / n - a * sx / n;
    for (size_t k = 0; k < n; k++) x[k] = (float)(a * x[k] + b);
}

/* ---- the degradations ------------------------------------------------------------------- */
/* through-plane x2: average slice pairs, then linear interpolation back to D slices */
static void superres_baseline(const float* x, float* out, int D, int H, int W, int nearest) {
    int Dl = D / 2;
    size_t pl = (size_t)H * W;
    float* lo = t_fnew((long)Dl * pl);
    for (int z = 0; z < Dl; z++)
        for (size_t k = 0; k < pl; k++) lo[z * pl + k] = 0.5f * (x[(2 * z) * pl + k] + x[(2 * z + 1) * pl + k]);
    for (int z = 0; z < D; z++) {
        double c = nearest ? z / 2 : (z + 0.5) / 2 - 0.5;  /* position in low-res slices */
        int z0 = (int)floor(c);
        double t = c - z0;
        int a = z0 < 0 ? 0 : z0 >= Dl ? Dl - 1 : z0, b = z0 + 1 >= Dl ? Dl - 1 : z0 + 1 < 0 ? 0 : z0 + 1;
        for (size_t k = 0; k < pl; k++) out[z * pl + k] = (float)((1 - t) * lo[a * pl + k] + t * lo[b * pl + k]);
    }
    free(lo);
}

/* phase-encode (y) displacement d(z,y,x) = A·sin-mixture (smooth), sampled with linear
 * interpolation and scaled by the Jacobian 1 + ∂d/∂y */
static void distort(const float* x, float* out, int D, int H, int W, TRng* r) {
    double A = 2.0 + trng_uniform(r), p1 = 6.28 * trng_uniform(r), p2 = 6.28 * trng_uniform(r);
    for (int z = 0; z < D; z++)
        for (int y = 0; y < H; y++)
            for (int xx = 0; xx < W; xx++) {
                double u = (double)xx / W, v = (double)y / H, w = (double)z / D;
                double d = A * (0.6 * sin(6.28 * (0.8 * u + 0.3 * w) + p1) + 0.4 * sin(6.28 * (0.9 * v) + p2));
                double dd = A * 0.4 * 6.28 * 0.9 / H * cos(6.28 * (0.9 * v) + p2);
                double yy = y + d;
                int y0 = (int)floor(yy);
                double t = yy - y0;
                int a = y0 < 0 ? 0 : y0 >= H ? H - 1 : y0, b = y0 + 1 < 0 ? 0 : y0 + 1 >= H ? H - 1 : y0 + 1;
                const float* row = x + (size_t)z * H * W;
                out[((size_t)z * H + y) * W + xx] =
                    (float)(((1 - t) * row[(size_t)a * W + xx] + t * row[(size_t)b * W + xx]) * (1 + dd));
            }
}

/* PSNRs of the image-task baselines on image x [3,D,H,W]: nearest / linear through-plane x2,
 * identity under a phase-encode distortion of ADC+hbv, train-mean / linear T2w→ADC */
static void image_tasks(const float* x, float* pred, int D, int H, int W, int it2, int iadc,
                        int ihbv, TRng* r, double icpt, double slope, double ymean, double m[5]) {
    size_t vox = (size_t)D * H * W;
    for (int c = 0; c < 3; c++) superres_baseline(x + c * vox, pred + c * vox, D, H, W, 1);
    m[0] = psnr(pred, x, 3 * vox);
    for (int c = 0; c < 3; c++) superres_baseline(x + c * vox, pred + c * vox, D, H, W, 0);
    m[1] = psnr(pred, x, 3 * vox);
    float* ref2 = t_fnew(2 * (long)vox);
    memcpy(ref2, x + iadc * vox, vox * sizeof(float));
    memcpy(ref2 + vox, x + ihbv * vox, vox * sizeof(float));
    distort(ref2, pred, D, H, W, r);
    distort(ref2 + vox, pred + vox, D, H, W, r);
    m[2] = psnr(pred, ref2, 2 * vox);
    free(ref2);
    for (size_t v = 0; v < vox; v++) {
        pred[v] = (float)ymean;
        pred[vox + v] = (float)(icpt + slope * x[it2 * vox + v]);
    }
    m[3] = psnr(pred, x + iadc * vox, vox);
    m[4] = psnr(pred + vox, x + iadc * vox, vox);
}

/* ---- the difficulty table --------------------------------------------------------------- */
static void difficulty(const char* path) {
    Dataset ds;
    char err[1024];
    if (!t_true("default dataset passes dataset_open validation", dataset_open(&ds, path, err, sizeof err) == 0)) {
        printf("  %s\n", err);
        return;
    }
    const int N = ds.n, D = ds.D, H = ds.H, W = ds.W;
    const size_t vox = (size_t)D * H * W;
    float* img = t_fnew(3 * (long)vox);
    uint8_t* seg = malloc(vox);
    int it2 = dataset_channel(&ds, "t2w"), iadc = dataset_channel(&ds, "adc"), ihbv = dataset_channel(&ds, "hbv");
    t_true("channels t2w, adc, hbv present", it2 >= 0 && iadc >= 0 && ihbv >= 0);

    /* pass 1 (train): per-label Gaussian stats; T2w→ADC regression sums */
    double cnt[4] = {0}, mu[4][3] = {{0}}, m2[4][3] = {{0}};
    double sx = 0, sy = 0, sxx = 0, sxy = 0, sn = 0;
    for (int i = 0; i < N; i++) {
        if (ds.split[i] != SPLIT_TRAIN) continue;
        if (dataset_read_case(&ds, i, img, seg, err, sizeof err)) { t_true(err, 0); return; }
        for (size_t v = 0; v < vox; v++) {
            int l = seg[v];
            cnt[l]++;
            for (int c = 0; c < 3; c++) {
                double x = img[c * vox + v];
                mu[l][c] += x;
                m2[l][c] += x * x;
            }
            double a = img[it2 * vox + v], b = img[iadc * vox + v];
            sx += a; sy += b; sxx += a * a; sxy += a * b; sn++;
        }
    }
    double var[4][3], prior[4];
    for (int l = 0; l < 4; l++) {
        prior[l] = cnt[l] / sn;
        for (int c = 0; c < 3; c++) {
            mu[l][c] /= cnt[l] > 0 ? cnt[l] : 1;
            var[l][c] = m2[l][c] / (cnt[l] > 0 ? cnt[l] : 1) - mu[l][c] * mu[l][c];
            if (var[l][c] < 1e-6) var[l][c] = 1e-6;
        }
    }
    double slope = (sxy / sn - (sx / sn) * (sy / sn)) / (sxx / sn - (sx / sn) * (sx / sn));
    double icpt = sy / sn - slope * sx / sn, ymean = sy / sn;

    /* pass 2: all cases */
    double* score = t_dnew(N);
    int32_t* y = malloc(N * sizeof(int32_t));
    int lesion_cases = 0, pos = 0, ntest = 0;
    double dice_sum[4] = {0}, dice_n[4] = {0};
    double ps_floor = 0, ps[2][5] = {{0}};
    TRng r = {12345};
    float* pred = t_fnew(3 * (long)vox);
    float* cimg = t_fnew(3 * (long)vox);
    PhantomSpec clean_spec;
    phantom_default(&clean_spec);
    clean_spec.clean = 1;
    t_true("difficulty: dataset is the default phantom grid", clean_spec.D == D && clean_spec.H == H && clean_spec.W == W);
    for (int i = 0; i < N; i++) {
        if (dataset_read_case(&ds, i, img, seg, err, sizeof err)) { t_true(err, 0); return; }
        int has_les = 0;
        double mn = 1e30;
        for (size_t v = 0; v < vox; v++) {
            has_les |= seg[v] == 3;
            if (seg[v] > 0 && img[iadc * vox + v] < mn) mn = img[iadc * vox + v];
        }
        lesion_cases += has_les;
        y[i] = ds.cls[i];
        pos += y[i] == 1;
        score[i] = -mn;
        if (ds.split[i] != SPLIT_TEST) continue;
        ntest++;
        /* the noise floor: the same case without noise (what a perfect model could reach) */
        phantom_case(&clean_spec, i, pred, NULL, NULL);
        for (int c = 0; c < 3; c++) affine_fit(pred + c * vox, img + c * vox, vox);
        ps_floor += psnr(pred, img, 3 * vox);
        /* segment: Gaussian naive Bayes per voxel */
        double inter[4] = {0}, sp_[4] = {0}, st[4] = {0};
        for (size_t v = 0; v < vox; v++) {
            int best = 0;
            double bl = -1e300;
            for (int l = 0; l < 4; l++) {
                double ll = log(prior[l] + 1e-12);
                for (int c = 0; c < 3; c++) {
                    double d = img[c * vox + v] - mu[l][c];
                    ll -= 0.5 * d * d / var[l][c] + 0.5 * log(var[l][c]);
                }
                if (ll > bl) { bl = ll; best = l; }
            }
            sp_[best]++;
            st[seg[v]]++;
            if (best == seg[v]) inter[best]++;
        }
        for (int l = 1; l < 4; l++)
            if (st[l] > 0) { dice_sum[l] += 2 * inter[l] / (sp_[l] + st[l]); dice_n[l]++; }
        /* image tasks on the noisy data and on the same case without noise (structure only) */
        TRng r2 = r;
        double m[5];
        image_tasks(img, pred, D, H, W, it2, iadc, ihbv, &r, icpt, slope, ymean, m);
        for (int k = 0; k < 5; k++) ps[0][k] += m[k];
        phantom_case(&clean_spec, i, cimg, NULL, NULL);
        image_tasks(cimg, pred, D, H, W, it2, iadc, ihbv, &r2, icpt, slope, ymean, m);
        for (int k = 0; k < 5; k++) ps[1][k] += m[k];
    }
    double auc = auroc(score, y, N);
    double dice[4];
    for (int l = 1; l < 4; l++) dice[l] = dice_n[l] ? dice_sum[l] / dice_n[l] : 0;
    printf("\ndifficulty of the default phantom dataset (%d cases; image tasks and segmentation on "
           "the %d test cases):\n", N, ntest);
    printf("  %-11s %-36s %s\n", "task", "trivial predictor", "classical baseline");
    printf("  %-11s %-36s -min ADC in the gland: AUROC %.3f\n", "classify", "majority class: AUROC 0.500", auc);
    printf("  %-11s %-36s voxel Gaussian (T2w,ADC,hbv): Dice tz %.3f pz %.3f lesion %.3f\n",
           "segment", "all background: Dice 0", dice[1], dice[2], dice[3]);
    for (int k = 0; k < 5; k++) { ps[0][k] /= ntest; ps[1][k] /= ntest; }
    char b1[64], b2[64];
    snprintf(b1, sizeof b1, "nearest slice: PSNR %.2f (%.2f) dB", ps[0][0], ps[1][0]);
    printf("  %-11s %-36s linear interpolation: PSNR %.2f (%.2f) dB\n", "superres", b1, ps[0][1], ps[1][1]);
    snprintf(b1, sizeof b1, "identity: PSNR %.2f (%.2f) dB", ps[0][2], ps[1][2]);
    printf("  %-11s %-36s -\n", "undistort", b1);
    snprintf(b2, sizeof b2, "train mean: PSNR %.2f (%.2f) dB", ps[0][3], ps[1][3]);
    printf("  %-11s %-36s linear regression on T2w: PSNR %.2f (%.2f) dB\n", "synthesize", b2, ps[0][4], ps[1][4]);
    printf("  (in brackets: the same on the noise-free phantom, i.e. the structure alone; noise-free "
           "phantom vs the noisy image: PSNR %.2f dB)\n", ps_floor / ntest);
    printf("\n");
    t_check("cases without a lesion (fraction; lesions in >= 50 %)", 1.0 - (double)lesion_cases / N, 0.5);
    t_check("csPCa fraction distance from 50 % (class balance 25-75 %)", fabs((double)pos / N - 0.5), 0.25);
    t_check("classify baseline AUROC not trivial (1 - AUROC >= 0.03 ... <= 0.45)", 1 - auc, 0.45);
    t_true("classify baseline AUROC below 0.97", auc < 0.97);
    t_true("segment baseline Dice tz in (0.1, 0.95)", dice[1] > 0.1 && dice[1] < 0.95);
    t_true("segment baseline Dice pz in (0.1, 0.95)", dice[2] > 0.1 && dice[2] < 0.95);
    t_true("segment baseline Dice lesion below 0.95", dice[3] < 0.95);
    free(img); free(cimg); free(seg); free(score); free(y); free(pred);
    dataset_close(&ds);
}

int main(void) {
    char dir[] = "/tmp/vita_test_phantom_XXXXXX";
    if (!mkdtemp(dir)) { perror("mkdtemp"); return 1; }
    char a[256], b[256], c[256], big[256], cmd[1024];
    snprintf(a, sizeof a, "%s/a.h5", dir);
    snprintf(b, sizeof b, "%s/b.h5", dir);
    snprintf(c, sizeof c, "%s/c.h5", dir);
    snprintf(big, sizeof big, "%s/default.h5", dir);
    char err[1024];

    /* determinism: same seed → same bytes, whatever the thread count; another seed differs */
    PhantomSpec ps;
    phantom_default(&ps);
    ps.n = 12; ps.D = 8; ps.H = 24; ps.W = 32; ps.quiet = 1; ps.seed = 7;
    t_set_threads(1);
    int rc = phantom_write(a, &ps, "test", err, sizeof err);
    t_set_threads(2);
    rc |= phantom_write(b, &ps, "test", err, sizeof err);
    ps.seed = 8;
    rc |= phantom_write(c, &ps, "test", err, sizeof err);
    t_true("small phantoms written", rc == 0);
    t_true("same seed, 1 vs 2 threads: identical bytes", files_equal(a, b));
    t_true("different seed: different bytes", !files_equal(a, c));
    {
        Dataset ds;
        int ok = dataset_open(&ds, a, err, sizeof err) == 0;
        t_true("odd --size 8,24,32 dataset opens", ok);
        if (ok) {
            t_true("odd size: grid 3x8x24x32", ds.C == 3 && ds.D == 8 && ds.H == 24 && ds.W == 32);
            dataset_close(&ds);
        }
    }

    /* the default dataset through the command line, timed */
    snprintf(cmd, sizeof cmd, "%s", big);
    char* argv[] = {"phantom", "--out", cmd, "--quiet", NULL};
    double t0 = now_s();
    rc = cmd_phantom(4, argv);
    double dt = now_s() - t0;
    t_true("vita phantom --out default.h5 exits 0", rc == 0);
    t_check("default 200 cases of 32x64x64: seconds (2 cores ok)", dt, 10.0);
    char* bad1[] = {"phantom", "--out", cmd, "--size", "32,64", NULL};
    char* bad2[] = {"phantom", "--cases", "0", "--out", cmd, NULL};
    char* bad3[] = {"phantom", "--cases", "5", NULL};
    t_true("--size 32,64 is a user error (exit 1)", cmd_phantom(5, bad1) == 1);
    t_true("--cases 0 is a user error (exit 1)", cmd_phantom(5, bad2) == 1);
    t_true("missing --out is a user error (exit 1)", cmd_phantom(3, bad3) == 1);

    /* phantom_info agrees with the generated case */
    {
        PhantomSpec d;
        phantom_default(&d);
        PhantomInfo i1, i2;
        size_t vox = (size_t)d.D * d.H * d.W;
        float* img = t_fnew(3 * (long)vox);
        phantom_info(&d, 5, &i1);
        phantom_case(&d, 5, img, NULL, &i2);
        t_true("phantom_info == phantom_case info", i1.cls == i2.cls && i1.n_lesions == i2.n_lesions);
        free(img);
    }

    difficulty(big);

    /* h5py reads the file (when python3-h5py is installed) */
    if (system("/usr/bin/python3 -c 'import h5py' 2>/dev/null") == 0) {
        const char* py = getenv("VITA_SRC") ? getenv("VITA_SRC") : ".";
        snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/oracle/dataset_check.py %s", py, big);
        int st = system(cmd);
        t_true("h5py reads the dataset and agrees with its schema (tests/oracle/dataset_check.py)",
               WIFEXITED(st) && WEXITSTATUS(st) == 0);
    } else {
        printf("SKIP h5py cross-check (python3-h5py not installed; make deps installs it)\n");
    }

    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) printf("note: could not remove %s\n", dir);
    return t_summary();
}
