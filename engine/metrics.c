/* engine/metrics.c — evaluation metrics (see metrics.h for the definitions and conventions).
 * Host code, double accumulation in index order; OpenMP only over independent lines of the
 * distance transform and of the SSIM filters, so results do not depend on the thread count. */
#include "metrics.h"
#include "check.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

double metric_nanmean(const double* x, long n) {
    double s = 0;
    long k = 0;
    for (long i = 0; i < n; i++)
        if (!isnan(x[i])) { s += x[i]; k++; }
    return k ? s / k : NAN;
}

/* ---- segmentation ------------------------------------------------------------------------ */
void metric_dice_per_class(const int32_t* pred, const int32_t* gt, long n, int K, double* out) {
    CHECK(K >= 1, "metric_dice_per_class: K = %d", K);
    long* cnt = xcalloc(3 * (size_t)K, sizeof(long));  /* |P_k|, |G_k|, |P_k ∩ G_k| */
    for (long i = 0; i < n; i++) {
        CHECK(pred[i] >= 0 && pred[i] < K && gt[i] >= 0 && gt[i] < K,
              "metric_dice_per_class: label outside [0, %d) at %ld (pred %d, gt %d)", K, i,
              (int)pred[i], (int)gt[i]);
        cnt[pred[i]]++;
        cnt[K + gt[i]]++;
        if (pred[i] == gt[i]) cnt[2 * K + gt[i]]++;
    }
    for (int k = 0; k < K; k++)
        out[k] = cnt[K + k] ? 2.0 * cnt[2 * K + k] / (double)(cnt[k] + cnt[K + k]) : NAN;
    free(cnt);
}

double metric_dice_mask(const uint8_t* pred, const uint8_t* gt, long n) {
    long p = 0, g = 0, pg = 0;
    for (long i = 0; i < n; i++) {
        p += pred[i] != 0;
        g += gt[i] != 0;
        pg += pred[i] && gt[i];
    }
    return g ? 2.0 * pg / (double)(p + g) : NAN;
}

/* 1D squared distance transform (Felzenszwalb & Huttenlocher 2012) with sample spacing sp:
 * d[q] = min_p (f[p] + ((q − p) sp)²); f = INFINITY marks "no feature" and is skipped. v, z
 * are scratch of n and n + 1 entries. */
static void edt_1d(const double* f, double* d, int n, double sp, int* v, double* z) {
    int k = -1;
    for (int q = 0; q < n; q++) {
        if (!(f[q] < INFINITY)) continue;
        double fq = f[q] + (q * sp) * (q * sp), s = -INFINITY;
        while (k >= 0) {
            int p = v[k];
            s = (fq - (f[p] + (p * sp) * (p * sp))) / (2.0 * sp * (q - p));
            if (s <= z[k]) k--;
            else break;
        }
        k++;
        v[k] = q;
        z[k] = k == 0 ? -INFINITY : s;
        z[k + 1] = INFINITY;
    }
    if (k < 0) {
        for (int q = 0; q < n; q++) d[q] = INFINITY;
        return;
    }
    int j = 0;
    for (int q = 0; q < n; q++) {
        while (z[j + 1] < q * sp) j++;
        double t = (q - v[j]) * sp;
        d[q] = t * t + f[v[j]];
    }
}

/* first element of line l along axis ax of a [D, H, W] volume (line l: the other two
 * coordinates, in row-major order) */
static long line_base(int ax, long l, int H, int W) {
    if (ax == 2) return l * W;
    if (ax == 1) return (l / W) * (long)H * W + l % W;
    return l;
}

/* in place: g [D, H, W] holds 0 at features and INFINITY elsewhere on entry, squared
 * Euclidean distances (mm²) to the nearest feature on exit; one pass per axis */
static void edt_3d(double* g, int D, int H, int W, const double sp[3]) {
    int dims[3] = {D, H, W};
    long stride[3] = {(long)H * W, W, 1};
    for (int ax = 2; ax >= 0; ax--) {
        int n = dims[ax];
        if (n == 1) continue;  /* D = 1: 2D */
        long lines = (long)D * H * W / n;
#pragma omp parallel
        {
            double* f = xmalloc(sizeof(double) * (size_t)n);
            double* d = xmalloc(sizeof(double) * (size_t)n);
            double* z = xmalloc(sizeof(double) * (size_t)(n + 1));
            int* v = xmalloc(sizeof(int) * (size_t)n);
#pragma omp for schedule(static)
            for (long l = 0; l < lines; l++) {
                long base = line_base(ax, l, H, W);
                for (int i = 0; i < n; i++) f[i] = g[base + i * stride[ax]];
                edt_1d(f, d, n, sp[ax], v, z);
                for (int i = 0; i < n; i++) g[base + i * stride[ax]] = d[i];
            }
            free(f); free(d); free(z); free(v);
        }
    }
}

/* surface of mask m inside the box [D, H, W]: voxels of m with a 6-neighbour (4 when !is3d)
 * outside m or outside the box. is3d is the volume's, not the box's: a box one slice thick in
 * a 3D volume has every voxel on the surface. */
static void surface(uint8_t* s, const uint8_t* m, int D, int H, int W, int is3d) {
    for (int z = 0; z < D; z++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                long i = ((long)z * H + y) * W + x;
                int e = 0;
                if (m[i]) {
                    e = x == 0 || x == W - 1 || !m[i - 1] || !m[i + 1] ||
                        y == 0 || y == H - 1 || !m[i - W] || !m[i + W];
                    if (is3d)
                        e = e || z == 0 || z == D - 1 || !m[i - (long)H * W] || !m[i + (long)H * W];
                }
                s[i] = (uint8_t)e;
            }
}

static int cmp_double(const void* a, const void* b) {
    double x = *(const double*)a, y = *(const double*)b;
    return (x > y) - (x < y);
}

/* linear-interpolation percentile (numpy default) of x[0..n), sorts x */
static double percentile(double* x, long n, double pct) {
    if (n == 0) return NAN;
    qsort(x, (size_t)n, sizeof(double), cmp_double);
    double h = (n - 1) * (pct / 100.0);
    long lo = (long)floor(h);
    if (lo >= n - 1) return x[n - 1];
    double t = h - lo;
    return x[lo] + t * (x[lo + 1] - x[lo]);
}

/* distances (mm) from the surface voxels of `from` to the surface of `to` (all features of
 * dist2, the squared EDT of to's surface), in raster order */
static long directed(double* out, const uint8_t* from_s, const double* dist2, long n) {
    long k = 0;
    for (long i = 0; i < n; i++)
        if (from_s[i]) out[k++] = sqrt(dist2[i]);
    return k;
}

double metric_hausdorff(const uint8_t* pred, const uint8_t* gt, int D, int H, int W,
                        const double spacing_zyx[3], double pct) {
    CHECK(D >= 1 && H >= 1 && W >= 1 && pct >= 0 && pct <= 100,
          "metric_hausdorff: D=%d H=%d W=%d percentile %g", D, H, W, pct);
    /* bounding box of pred ∪ gt: voxels outside it are background of both masks, so the
     * surfaces and distances computed inside it are exact */
    int lo[3] = {D, H, W}, hi[3] = {-1, -1, -1};
    long np_ = 0, ng = 0;
    for (int z = 0; z < D; z++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                long i = ((long)z * H + y) * W + x;
                np_ += pred[i] != 0;
                ng += gt[i] != 0;
                if (pred[i] || gt[i]) {
                    int c[3] = {z, y, x};
                    for (int a = 0; a < 3; a++) {
                        if (c[a] < lo[a]) lo[a] = c[a];
                        if (c[a] > hi[a]) hi[a] = c[a];
                    }
                }
            }
    if (np_ == 0 && ng == 0) return NAN;
    if (np_ == 0 || ng == 0) return INFINITY;
    int bd = hi[0] - lo[0] + 1, bh = hi[1] - lo[1] + 1, bw = hi[2] - lo[2] + 1;
    long nb = (long)bd * bh * bw;
    uint8_t *mp = xmalloc((size_t)nb), *mg = xmalloc((size_t)nb);
    uint8_t *sp = xmalloc((size_t)nb), *sg = xmalloc((size_t)nb);
    for (int z = 0; z < bd; z++)
        for (int y = 0; y < bh; y++)
            for (int x = 0; x < bw; x++) {
                long i = ((long)(z + lo[0]) * H + y + lo[1]) * W + x + lo[2];
                long j = ((long)z * bh + y) * bw + x;
                mp[j] = pred[i] != 0;
                mg[j] = gt[i] != 0;
            }
    surface(sp, mp, bd, bh, bw, D > 1);
    surface(sg, mg, bd, bh, bw, D > 1);
    double* g = xmalloc(sizeof(double) * (size_t)nb);
    double* dist = xmalloc(sizeof(double) * (size_t)nb);
    /* pred surface -> gt surface */
    for (long i = 0; i < nb; i++) g[i] = sg[i] ? 0.0 : INFINITY;
    edt_3d(g, bd, bh, bw, spacing_zyx);
    long k = directed(dist, sp, g, nb);
    double a = percentile(dist, k, pct);
    /* gt surface -> pred surface */
    for (long i = 0; i < nb; i++) g[i] = sp[i] ? 0.0 : INFINITY;
    edt_3d(g, bd, bh, bw, spacing_zyx);
    k = directed(dist, sg, g, nb);
    double b = percentile(dist, k, pct);
    free(mp); free(mg); free(sp); free(sg); free(g); free(dist);
    return a > b ? a : b;
}

double metric_hd95(const uint8_t* pred, const uint8_t* gt, int D, int H, int W,
                   const double spacing_zyx[3]) {
    return metric_hausdorff(pred, gt, D, H, W, spacing_zyx, 95.0);
}

/* ---- classification ---------------------------------------------------------------------- */
typedef struct { double s; int pos; } Scored;
static int cmp_scored_desc(const void* a, const void* b) {
    double x = ((const Scored*)a)->s, y = ((const Scored*)b)->s;
    return (x < y) - (x > y);
}
/* sorted by decreasing score; returns NULL when a score is NaN */
static Scored* sort_scores(const double* score, const int32_t* label, long n, long* npos) {
    Scored* v = xmalloc(sizeof(Scored) * (size_t)n);
    *npos = 0;
    for (long i = 0; i < n; i++) {
        if (isnan(score[i])) { free(v); return NULL; }
        v[i].s = score[i];
        v[i].pos = label[i] != 0;
        *npos += v[i].pos;
    }
    qsort(v, (size_t)n, sizeof(Scored), cmp_scored_desc);
    return v;
}

double metric_auroc(const double* score, const int32_t* label, long n) {
    long P;
    Scored* v = sort_scores(score, label, n, &P);
    if (!v) return NAN;
    long N = n - P;
    if (P == 0 || N == 0) { free(v); return NAN; }
    /* U = Σ over positives of (#negatives ranked below + ½ #negatives tied): walk the tie
     * groups from the top, counting the negatives not yet passed */
    double U = 0;
    long neg_below = N;
    for (long i = 0; i < n;) {
        long j = i, p = 0, q = 0;
        while (j < n && v[j].s == v[i].s) { p += v[j].pos; q += !v[j].pos; j++; }
        neg_below -= q;
        U += p * (neg_below + 0.5 * q);
        i = j;
    }
    free(v);
    return U / ((double)P * N);
}

double metric_average_precision(const double* score, const int32_t* label, long n) {
    long P;
    Scored* v = sort_scores(score, label, n, &P);
    if (!v) return NAN;
    if (P == 0) { free(v); return NAN; }
    double ap = 0, r_prev = 0;
    long tp = 0, fp = 0;
    for (long i = 0; i < n;) {
        long j = i;
        while (j < n && v[j].s == v[i].s) { tp += v[j].pos; fp += !v[j].pos; j++; }
        double r = (double)tp / P;
        ap += (r - r_prev) * ((double)tp / (tp + fp));
        r_prev = r;
        i = j;
    }
    free(v);
    return ap;
}

double metric_picai_case_score(const double* score, const int32_t* label, long n) {
    return 0.5 * (metric_auroc(score, label, n) + metric_average_precision(score, label, n));
}

double metric_accuracy(const int32_t* pred, const int32_t* gt, long n) {
    long k = 0;
    for (long i = 0; i < n; i++) k += pred[i] == gt[i];
    return n ? (double)k / n : NAN;
}

double metric_balanced_accuracy(const int32_t* pred, const int32_t* gt, long n, int K) {
    CHECK(K >= 1, "metric_balanced_accuracy: K = %d", K);
    long* cnt = xcalloc(2 * (size_t)K, sizeof(long));
    for (long i = 0; i < n; i++) {
        CHECK(pred[i] >= 0 && pred[i] < K && gt[i] >= 0 && gt[i] < K,
              "metric_balanced_accuracy: label outside [0, %d) at %ld", K, i);
        cnt[gt[i]]++;
        if (pred[i] == gt[i]) cnt[K + gt[i]]++;
    }
    double s = 0;
    int m = 0;
    for (int k = 0; k < K; k++)
        if (cnt[k]) { s += (double)cnt[K + k] / cnt[k]; m++; }
    free(cnt);
    return m ? s / m : NAN;
}

/* ---- image-to-image ---------------------------------------------------------------------- */
double metric_data_range(const float* x, long n) {
    if (n <= 0) return NAN;
    float lo = x[0], hi = x[0];
    for (long i = 1; i < n; i++) {
        lo = x[i] < lo ? x[i] : lo;
        hi = x[i] > hi ? x[i] : hi;
    }
    return (double)hi - lo;
}

double metric_mae(const float* pred, const float* target, long n) {
    double s = 0;
    for (long i = 0; i < n; i++) s += fabs((double)pred[i] - target[i]);
    return n ? s / n : NAN;
}

double metric_psnr(const float* pred, const float* target, long n, double data_range) {
    double R = data_range > 0 ? data_range : metric_data_range(target, n), s = 0;
    for (long i = 0; i < n; i++) {
        double d = (double)target[i] - pred[i];
        s += d * d;
    }
    return 10.0 * log10(R * R / (s / n));
}

/* Gaussian filter along every axis of length > 1 (scipy.ndimage.gaussian_filter, sigma 1.5,
 * truncate 3.5: 11 taps, normalised; 'reflect' borders, which the crop makes irrelevant) */
#define SSIM_R 5
static void gauss_filter(double* a, int D, int H, int W, const double* w) {
    int dims[3] = {D, H, W};
    long stride[3] = {(long)H * W, W, 1};
    for (int ax = 2; ax >= 0; ax--) {
        int n = dims[ax];
        if (n == 1) continue;
        long lines = (long)D * H * W / n;
#pragma omp parallel
        {
            double* f = xmalloc(sizeof(double) * (size_t)(n + 2 * SSIM_R));
#pragma omp for schedule(static)
            for (long l = 0; l < lines; l++) {
                long base = line_base(ax, l, H, W);
                for (int i = -SSIM_R; i < n + SSIM_R; i++) {
                    int j = i < 0 ? -i - 1 : i >= n ? 2 * n - i - 1 : i;  /* d c b a | a b c d */
                    f[i + SSIM_R] = a[base + j * stride[ax]];
                }
                for (int i = 0; i < n; i++) {
                    double s = 0;
                    for (int t = 0; t <= 2 * SSIM_R; t++) s += w[t] * f[i + t];
                    a[base + i * stride[ax]] = s;
                }
            }
            free(f);
        }
    }
}

double metric_ssim(const float* pred, const float* target, int D, int H, int W, double data_range) {
    const int win = 2 * SSIM_R + 1;
    if (H < win || W < win || (D > 1 && D < win) || D < 1) return NAN;
    long n = (long)D * H * W;
    double R = data_range > 0 ? data_range : metric_data_range(target, n);
    if (!(R > 0)) return NAN;
    double w[2 * SSIM_R + 1], ws = 0;
    for (int t = -SSIM_R; t <= SSIM_R; t++) ws += w[t + SSIM_R] = exp(-0.5 * t * t / (1.5 * 1.5));
    for (int t = 0; t < win; t++) w[t] /= ws;
    double* m = xmalloc(sizeof(double) * 5 * (size_t)n);
    double *ux = m, *uy = m + n, *uxx = m + 2 * n, *uyy = m + 3 * n, *uxy = m + 4 * n;
    for (long i = 0; i < n; i++) {
        double x = target[i], y = pred[i];
        ux[i] = x; uy[i] = y; uxx[i] = x * x; uyy[i] = y * y; uxy[i] = x * y;
    }
    for (int q = 0; q < 5; q++) gauss_filter(m + q * n, D, H, W, w);
    const double C1 = (0.01 * R) * (0.01 * R), C2 = (0.03 * R) * (0.03 * R);
    int zp = D > 1 ? SSIM_R : 0;
    double s = 0;
    long cnt = 0;
    for (int z = zp; z < D - zp; z++)
        for (int y = SSIM_R; y < H - SSIM_R; y++)
            for (int x = SSIM_R; x < W - SSIM_R; x++) {
                long i = ((long)z * H + y) * W + x;
                double vx = uxx[i] - ux[i] * ux[i], vy = uyy[i] - uy[i] * uy[i];
                double vxy = uxy[i] - ux[i] * uy[i];
                s += ((2 * ux[i] * uy[i] + C1) * (2 * vxy + C2)) /
                     ((ux[i] * ux[i] + uy[i] * uy[i] + C1) * (vx + vy + C2));
                cnt++;
            }
    free(m);
    return s / cnt;
}
