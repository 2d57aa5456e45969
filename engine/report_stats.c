/* engine/report_stats.c — Pearson, Spearman, cluster bootstrap and permutation tests of
 * `vita report`. See report_stats.h. All sums in double; sample sizes are sweeps (tens to a few
 * thousand runs), so the O(n·points) grouping and O(n log n) ranking are negligible. */
#include "report_stats.h"
#include "check.h"
#include "rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

double rs_pearson(const double* x, const double* y, int n) {
    if (n < 2) return NAN;
    double mx = 0, my = 0;
    for (int i = 0; i < n; i++) { mx += x[i]; my += y[i]; }
    mx /= n;
    my /= n;
    double sxy = 0, sxx = 0, syy = 0;
    for (int i = 0; i < n; i++) {
        double dx = x[i] - mx, dy = y[i] - my;
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if (!(sxx > 0) || !(syy > 0)) return NAN;
    double r = sxy / sqrt(sxx * syy);
    return r > 1 ? 1 : r < -1 ? -1 : r;   /* rounding can step just outside [-1, 1] */
}

typedef struct { double v; int i; } VI;
static int cmp_vi(const void* a, const void* b) {
    const VI *p = a, *q = b;
    if (p->v < q->v) return -1;
    if (p->v > q->v) return 1;
    return p->i - q->i;
}

void rs_ranks(const double* x, int n, double* r) {
    VI* s = xmalloc((size_t)(n > 0 ? n : 1) * sizeof *s);
    for (int i = 0; i < n; i++) { s[i].v = x[i]; s[i].i = i; }
    qsort(s, (size_t)n, sizeof *s, cmp_vi);
    /* values within 1e-12 of the data's scale tie: derived numbers such as RPG carry ~1e-15
     * relative rounding, which must not break a tie that the inputs had */
    double scale = 0;
    for (int i = 0; i < n; i++)
        if (fabs(x[i]) > scale) scale = fabs(x[i]);
    double eps = 1e-12 * scale;
    for (int a = 0; a < n;) {
        int b = a;
        while (b + 1 < n && s[b + 1].v - s[a].v <= eps) b++;
        double avg = 0.5 * (a + b) + 1.0;   /* mean of the 1-based ranks a+1 .. b+1 */
        for (int k = a; k <= b; k++) r[s[k].i] = avg;
        a = b + 1;
    }
    free(s);
}

double rs_spearman(const double* x, const double* y, int n) {
    if (n < 2) return NAN;
    double* rx = xmalloc((size_t)n * 2 * sizeof(double));
    double* ry = rx + n;
    rs_ranks(x, n, rx);
    rs_ranks(y, n, ry);
    double r = rs_pearson(rx, ry, n);
    free(rx);
    return r;
}

int rs_mean_sd(const double* x, int n, double* mean, double* sd) {
    double s = 0;
    int k = 0;
    for (int i = 0; i < n; i++)
        if (x[i] == x[i]) { s += x[i]; k++; }
    *mean = k ? s / k : NAN;
    double ss = 0;
    for (int i = 0; i < n; i++)
        if (x[i] == x[i]) ss += (x[i] - *mean) * (x[i] - *mean);
    *sd = k > 1 ? sqrt(ss / (k - 1)) : NAN;
    return k;
}

/* points from the runs sel[0..m) (indices into obs) with copy ids: the runs themselves, or
 * the (group, cluster, copy) means */
static int make_points(const RsObs* obs, const int* sel, const int* copy, int m, int by_group,
                       double* px, double* py, int* key_g, int* key_c, int* key_k, int* cnt) {
    if (!by_group) {
        for (int i = 0; i < m; i++) { px[i] = obs[sel[i]].x; py[i] = obs[sel[i]].y; }
        return m;
    }
    int np = 0;
    for (int i = 0; i < m; i++) {
        const RsObs* o = &obs[sel[i]];
        int p = 0;
        while (p < np && !(key_g[p] == o->group && key_c[p] == o->cluster && key_k[p] == copy[i])) p++;
        if (p == np) {
            key_g[p] = o->group; key_c[p] = o->cluster; key_k[p] = copy[i];
            px[p] = py[p] = 0;
            cnt[p] = 0;
            np++;
        }
        px[p] += o->x;
        py[p] += o->y;
        cnt[p]++;
    }
    for (int p = 0; p < np; p++) { px[p] /= cnt[p]; py[p] /= cnt[p]; }
    return np;
}

static int cmp_d(const void* a, const void* b) {
    double p = *(const double*)a, q = *(const double*)b;
    return p < q ? -1 : p > q;
}
/* numpy's default (linear) quantile of sorted v[0..n) */
static double quantile(const double* v, int n, double q) {
    if (n < 1) return NAN;
    double h = (n - 1) * q;
    int lo = (int)floor(h);
    if (lo >= n - 1) return v[n - 1];
    return v[lo] + (h - lo) * (v[lo + 1] - v[lo]);
}

static uint64_t draw(Rng* r, int n) { return (uint64_t)(rng_uniform(r) * n); }

/* 1 if |b| >= |obs|: a permutation that reproduces the observed pairing gives the same r up to
 * summation order, so the comparison allows 1e-12 of rounding (r is in [-1, 1]) */
static int as_extreme(double b, double obs) { return b == b && fabs(b) >= fabs(obs) - 1e-12; }

void rs_correlate(const RsObs* obs, int n, int by_group, uint64_t seed, int n_boot, int n_perm,
                  RsCorr* out) {
    memset(out, 0, sizeof *out);
    out->r = out->r_lo = out->r_hi = out->r_p = NAN;
    out->rho = out->rho_lo = out->rho_hi = out->rho_p = NAN;
    /* units = distinct (cluster, unit) pairs; urun lists each unit's runs, cu each cluster's
     * units (both flat, with offsets) */
    int nc = 0, nun = 0;
    int* cl = xmalloc((size_t)(n + 1) * sizeof(int));      /* cluster ids */
    int* uc = xmalloc((size_t)(n + 1) * sizeof(int));      /* unit -> cluster index */
    int* uv = xmalloc((size_t)(n + 1) * sizeof(int));      /* unit id */
    int* ru = xmalloc((size_t)(n + 1) * sizeof(int));      /* run -> unit index */
    for (int i = 0; i < n; i++) {
        int c = 0;
        while (c < nc && cl[c] != obs[i].cluster) c++;
        if (c == nc) cl[nc++] = obs[i].cluster;
        int u = 0;
        while (u < nun && !(uc[u] == c && uv[u] == obs[i].unit)) u++;
        if (u == nun) { uc[nun] = c; uv[nun] = obs[i].unit; nun++; }
        ru[i] = u;
    }
    int* uoff = xcalloc((size_t)nun + 1, sizeof(int));
    int* urun = xmalloc((size_t)(n + 1) * sizeof(int));
    for (int i = 0; i < n; i++) uoff[ru[i] + 1]++;
    for (int u = 0; u < nun; u++) uoff[u + 1] += uoff[u];
    int* fill = xcalloc((size_t)nun + 1, sizeof(int));
    for (int i = 0; i < n; i++) urun[uoff[ru[i]] + fill[ru[i]]++] = i;
    int* coff = xcalloc((size_t)nc + 1, sizeof(int));
    int* cun = xmalloc((size_t)(nun + 1) * sizeof(int));
    for (int u = 0; u < nun; u++) coff[uc[u] + 1]++;
    for (int c = 0; c < nc; c++) coff[c + 1] += coff[c];
    memset(fill, 0, (size_t)(nun + 1) * sizeof(int));
    for (int u = 0; u < nun; u++) cun[coff[uc[u]] + fill[uc[u]]++] = u;
    /* a replicate holds at most nc x max over clusters of (units x the largest unit) runs */
    size_t cap = (size_t)(n > 16 ? n : 16);
    for (int c = 0; c < nc; c++) {
        int big = 0, k = coff[c + 1] - coff[c];
        for (int j = coff[c]; j < coff[c + 1]; j++) {
            int sz = uoff[cun[j] + 1] - uoff[cun[j]];
            if (sz > big) big = sz;
        }
        if ((size_t)nc * (size_t)k * (size_t)big > cap) cap = (size_t)nc * (size_t)k * (size_t)big;
    }
    int* sel = xmalloc(cap * sizeof(int));
    int* copy = xmalloc(cap * sizeof(int));
    double* px = xmalloc(cap * sizeof(double));
    double* py = xmalloc(cap * sizeof(double));
    int* kg = xmalloc(cap * sizeof(int));
    int* kc = xmalloc(cap * sizeof(int));
    int* kk = xmalloc(cap * sizeof(int));
    int* cnt = xmalloc(cap * sizeof(int));

    for (int i = 0; i < n; i++) { sel[i] = i; copy[i] = 0; }
    int np = make_points(obs, sel, copy, n, by_group, px, py, kg, kc, kk, cnt);
    out->n_points = np;
    out->r = rs_pearson(px, py, np);
    out->rho = rs_spearman(px, py, np);

    /* permutations of y over the observed points */
    if (n_perm > 0 && out->r == out->r) {
        double* ox = xmalloc((size_t)np * 2 * sizeof(double));
        double* oy = ox + np;
        memcpy(ox, px, (size_t)np * sizeof(double));
        Rng rg = rng_stream(seed, 0x7065726dull);   /* "perm" */
        long ge_r = 0, ge_rho = 0;
        for (int b = 0; b < n_perm; b++) {
            memcpy(oy, py, (size_t)np * sizeof(double));
            for (int i = np - 1; i > 0; i--) {
                int j = (int)draw(&rg, i + 1);
                double t = oy[i]; oy[i] = oy[j]; oy[j] = t;
            }
            ge_r += as_extreme(rs_pearson(ox, oy, np), out->r);
            ge_rho += as_extreme(rs_spearman(ox, oy, np), out->rho);
        }
        out->r_p = (1.0 + ge_r) / (n_perm + 1.0);
        out->rho_p = out->rho == out->rho ? (1.0 + ge_rho) / (n_perm + 1.0) : NAN;
        free(ox);
    }

    /* two-level cluster bootstrap */
    if (n_boot > 0 && n > 0) {
        double* br = xmalloc((size_t)n_boot * sizeof(double));
        double* bs = xmalloc((size_t)n_boot * sizeof(double));
        int nbr = 0, nbs = 0;
        Rng rg = rng_stream(seed, 0x626f6f74ull);   /* "boot" */
        for (int b = 0; b < n_boot; b++) {
            int m = 0;
            for (int k = 0; k < nc; k++) {
                int c = (int)draw(&rg, nc), nu = coff[c + 1] - coff[c];
                for (int j = 0; j < nu; j++) {
                    int u = cun[coff[c] + (int)draw(&rg, nu)];
                    for (int t = uoff[u]; t < uoff[u + 1]; t++) {
                        CHECK((size_t)m < cap, "bootstrap replicate larger than its bound");
                        sel[m] = urun[t];
                        copy[m] = k;
                        m++;
                    }
                }
            }
            int q = make_points(obs, sel, copy, m, by_group, px, py, kg, kc, kk, cnt);
            if (q >= 3) {
                double r = rs_pearson(px, py, q), s = rs_spearman(px, py, q);
                if (r == r) br[nbr++] = r;
                if (s == s) bs[nbs++] = s;
            }
        }
        qsort(br, (size_t)nbr, sizeof(double), cmp_d);
        qsort(bs, (size_t)nbs, sizeof(double), cmp_d);
        out->n_boot_r = nbr;
        out->n_boot_rho = nbs;
        out->r_lo = quantile(br, nbr, 0.025);
        out->r_hi = quantile(br, nbr, 0.975);
        out->rho_lo = quantile(bs, nbs, 0.025);
        out->rho_hi = quantile(bs, nbs, 0.975);
        free(br); free(bs);
    }
    free(cl); free(uc); free(uv); free(ru); free(uoff); free(urun); free(fill); free(coff); free(cun);
    free(sel); free(copy); free(px); free(py); free(kg); free(kc); free(kk); free(cnt);
}
