/* kernels/cpu/mmd.c — fused Gaussian-kernel statistics (ops.h "fused Gaussian-kernel
 * statistics"): mmd_stats, mmd_center, sqdist_forward.
 *
 * mmd_stats, one pass over tiles of the pooled set Z = [X; Y] (N = n + m rows):
 *  - Z is cut into blocks of MT rows: the blocks of X, then the blocks of Y (a block never
 *    straddles X/Y). A tile (a, b) is G = -2 Z_a Z_bᵀ (one sgemm, MT x MT, stays in L2), turned
 *    row by row into d² = max(0, |z_i|² + |z_j|² + G_ij) while hot (close pairs, see NEAR,
 *    recomputed as Σ(a-b)² so exact duplicates get d² = 0); for each bandwidth s the
 *    row of k_s = exp(-γ_s d²) is computed with a vectorised exp (fastexp.h) and reduced: row
 *    sum (fp32, 16-way blocked), column sums (fp32 over chunks of CH rows, flushed to fp64),
 *    kmix = (1/S) Σ_s k_s kept for K·V. Symmetric XX / YY tiles are computed once (a ≤ b): the
 *    row sums feed the rows of block a, the column sums those of block b, scalar sums count
 *    twice. A diagonal tile (a = b) is computed in full with i = j masked by index.
 *  - K·V: two small sgemms per tile, kmix (ta x tb) · V_b and kmixᵀ · V_a.
 *  - Paired mode (n = m): the XX and YY tiles with the same block indices are one task, so
 *    RBF-CKA sees Kx_ij and Ly_ij for the same (i, j); the XY tile of blocks (k, k) holds the
 *    pairs (x_i, y_i) on its diagonal.
 *  - Determinism (bit-identical for any thread count): the outer loop over row blocks a is
 *    sequential; inside it, the tasks (tiles (a, b), b ≥ a) run in parallel with any schedule.
 *    A task adds its column results straight into the outputs of block b (in step a no other
 *    task touches those fields of block b); its row results for block a go to its own slot
 *    (per-tile fp32 values), reduced in task order after the step; its scalar sums (fp64)
 *    likewise. Everything across tiles is fp64 in a fixed order. OpenBLAS is called INSIDE the
 *    parallel region: Debian's OpenMP build then runs each sgemm single-threaded, so a tile's
 *    product does not depend on the thread count (checked by tests/test_mmd_kernel.c).
 *  - Memory: O(N d) inputs + per thread 1–3 MT x MT tiles, MT x B, + slots O(N (S + B)).
 */
/* no-trapping-math lets GCC if-convert the clamps of the exp and the d² (selects, not
 * branches), so the loops vectorise at the project's -O2; it changes no result. */
#pragma GCC optimize("O3", "no-trapping-math")
#include "cpu.h"
#include "blocks.h"
#include "fastexp.h"
#include "../../engine/check.h"

#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

enum { MT = 256,  /* tile rows: a 256 x 256 fp32 tile is 256 KB (L2) */
       CH = 16 }; /* rows per fp32 column-sum chunk before the fp64 flush */
/* close pairs: d² < NEAR·(|a|² + |b|²) (cosine ≳ 0.97 on centred data) are recomputed as
 * Σ(a_k - b_k)²: the expansion's error ~ sqrt(d)·u·|a||b| is large against such a small d²
 * (an exact duplicate would get d² ~ 1e-6 |a|² instead of 0, k < 1, sqrt(d²) ~ 1e-3 |a|).
 * Also the paired diagonal (x_i, y_i) and self pairs (i = i, so cka's diagonal is exactly 1). */
#define NEAR 0.03125f

/* ---- small vectorisable helpers --------------------------------------------------------- */
/* blocked fp32 sum: 16 interleaved partial sums (vector lanes), combined as a tree */
static inline float bsum(const float* x, int n) {
    float acc[16] = {0};
    int j = 0;
    for (; j + 16 <= n; j += 16)
        for (int l = 0; l < 16; l++) acc[l] += x[j + l];
    for (int l = 0; j < n; j++, l++) acc[l] += x[j];
    for (int h = 8; h >= 1; h >>= 1)
        for (int l = 0; l < h; l++) acc[l] += acc[l + h];
    return acc[0];
}
static inline float bdot(const float* x, const float* y, int n) {
    float acc[16] = {0};
    int j = 0;
    for (; j + 16 <= n; j += 16)
        for (int l = 0; l < 16; l++) acc[l] += x[j + l] * y[j + l];
    for (int l = 0; j < n; j++, l++) acc[l] += x[j] * y[j];
    for (int h = 8; h >= 1; h >>= 1)
        for (int l = 0; l < h; l++) acc[l] += acc[l + h];
    return acc[0];
}

/* |a - b|² directly: differences in fp32, squares summed in fp64 (2 lanes), rounded once */
static float direct_d2(const float* a, const float* b, int d) {
    double s = 0;
#pragma omp simd reduction(+:s)
    for (int k = 0; k < d; k++) {
        double t = (double)a[k] - (double)b[k];
        s += t * t;
    }
    return (float)s;
}

/* y = sqrt(x) (x >= 0 or NaN): sqrtf is not vectorised while it may set errno */
static inline void sqrt_row(float* y, const float* x, int n) {
    int j = 0;
#ifdef __SSE2__
    for (; j + 4 <= n; j += 4) _mm_storeu_ps(y + j, _mm_sqrt_ps(_mm_loadu_ps(x + j)));
#endif
    for (; j < n; j++) y[j] = sqrtf(x[j]);
}

/* ---- parameters, per-thread scratch, per-task results ----------------------------------- */
typedef struct {
    int n, m, d, S, B, N, paired;
    float ng[MMD_MAX_S];            /* -gamma_s */
    float invS, ngcx, ngcy;
    int want_rows, want_kv, want_dsum, want_cka;
    const MmdOut* out;
    const float *X, *Y, *V, *nrm;   /* nrm [N]: |z_p|² (fp32, from fp64 sums) */
} Par;

typedef struct {
    float *G0, *G1;   /* [MT*MT] tiles: -2 Z_a Z_bᵀ, then d² in place (G1: paired + cka) */
    float *Km;        /* [MT*MT] kmix of the tile (kv only) */
    float *k, *kx, *ly; /* [MT] row temporaries */
    float* colf;      /* [(S+2)*MT] fp32 column partial sums over one chunk of CH rows */
    double* cold;     /* [(S+2)*MT] fp64 column sums of the tile (S kernels, then Kx, Ly) */
    float* kvc;       /* [MT*B] kmixᵀ V_a of the current tile */
} Scr;

enum { F_SAME = 1, F_CROSS = 2, F_CKA = 4, F_KV = 8 };
typedef struct {
    double sums[MMD_NSUM][MMD_MAX_S], dsum[3], cka[3];
    unsigned flags[2];  /* per slot half (0: rows of X block a, 1: Y block a in paired mode) */
    int kvh[2];         /* the kv half (h) that the slot's kv rows belong to */
} TaskRes;

enum { T_SAME = 0, T_XY = 1, T_PAIR = 2 };
typedef struct { int type, a, b; } Task;

typedef struct { int p0, len, isy; } Blk;  /* pooled start row, rows, 0 = X, 1 = Y */

static inline const float* zrow(const Par* P, int p) {
    return p < P->n ? P->X + (size_t)p * P->d : P->Y + (size_t)(p - P->n) * P->d;
}

/* ---- the tile epilogue ------------------------------------------------------------------
 * G [ta, tb] holds -2 a·b; on return it holds d². Per row i: rowout[i*rowld + s] = Σ_j k_s
 * (fp32), sum[s] += that (fp64), dsum += Σ_j sqrt(d²); self: i = j masked (diagonal tile);
 * pairdiag: diag[s] += k_s(i, i) and kd[i*kdld + s] = k_s(i, i) (XY tile of paired blocks).
 * want_col: w->cold[s*tb + j] = Σ_i k_s (fp64 over fp32 chunks). want_kv: w->Km = kmix. */
typedef struct { double sum[MMD_MAX_S], diag[MMD_MAX_S], dsum; } TileSums;

static void tile_epilogue(const Par* P, Scr* w, float* G, int ta, int tb, const float* na,
                          const float* nb, const float* Za, const float* Zb, int self, int pairdiag, int want_col,
                          float* rowout, int rowld, double* kd, int kdld, TileSums* ts) {
    const int S = P->S;
    float* k = w->k;
    memset(ts, 0, sizeof *ts);
    if (want_col) memset(w->cold, 0, (size_t)S * tb * sizeof(double));
    for (int i0 = 0; i0 < ta; i0 += CH) {
        int i1 = i0 + CH < ta ? i0 + CH : ta;
        if (want_col) memset(w->colf, 0, (size_t)S * tb * sizeof(float));
        for (int i = i0; i < i1; i++) {
            float* g = G + (size_t)i * tb;
            const float ni = na[i];
            int near = 0;
#pragma omp simd reduction(+:near)
            for (int j = 0; j < tb; j++) {
                float v = (ni + nb[j]) + g[j];
                g[j] = v < 0.0f ? 0.0f : v;   /* NaN propagates */
                near += g[j] < NEAR * (ni + nb[j]);
            }
            if (near || pairdiag) {  /* rare: recompute close pairs directly (see top) */
                const float* za = Za + (size_t)i * P->d;
                for (int j = 0; j < tb; j++)
                    if (g[j] < NEAR * (ni + nb[j]) || (pairdiag && j == i))
                        g[j] = direct_d2(za, Zb + (size_t)j * P->d, P->d);
            }
            if (P->want_dsum) {
                sqrt_row(k, g, tb);
                if (self) k[i] = 0.0f;
                ts->dsum += bsum(k, tb);
            }
            float* km = P->want_kv ? w->Km + (size_t)i * tb : NULL;
            for (int s = 0; s < S; s++) {
                const float ng = P->ng[s];
#pragma omp simd
                for (int j = 0; j < tb; j++) k[j] = vita_fast_expf(ng * g[j]);
                if (self) k[i] = 0.0f;
                if (pairdiag) {
                    ts->diag[s] += k[i];
                    if (kd) kd[(size_t)i * kdld + s] = k[i];
                }
                float rs = bsum(k, tb);
                ts->sum[s] += rs;
                if (rowout) rowout[(size_t)i * rowld + s] = rs;
                if (want_col) {
                    float* cf = w->colf + (size_t)s * tb;
#pragma omp simd
                    for (int j = 0; j < tb; j++) cf[j] += k[j];
                }
                if (km) {
                    if (s == 0) memcpy(km, k, (size_t)tb * sizeof(float));
                    else {
#pragma omp simd
                        for (int j = 0; j < tb; j++) km[j] += k[j];
                    }
                }
            }
            if (km && S > 1) {
                const float inv = P->invS;
#pragma omp simd
                for (int j = 0; j < tb; j++) km[j] *= inv;
            }
        }
        if (want_col) {
            for (int s = 0; s < S; s++) {
                const float* cf = w->colf + (size_t)s * tb;
                double* cd = w->cold + (size_t)s * tb;
#pragma omp simd
                for (int j = 0; j < tb; j++) cd[j] += cf[j];
            }
        }
    }
}

/* RBF-CKA on a pair task: DX, DY [ta, tb] hold d² of the XX and YY tiles of the same blocks.
 * Kx = exp(-gcx d²x), Ly = exp(-gcy d²y) over all (i, j) including i = j. Row sums go to the
 * slot (xrow, yrow; ld rowld), column sums (off-diagonal tiles) to w->cold + S*tb (Kx) and
 * + (S+1)*tb (Ly). t3 += Σ Kx∘Ly, Σ Kx∘Kx, Σ Ly∘Ly (tile sums, not yet doubled). */
static void cka_pass(const Par* P, Scr* w, const float* DX, const float* DY, int ta, int tb,
                     int want_col, float* xrow, float* yrow, int rowld, double* t3) {
    const int S = P->S;
    float *kx = w->kx, *ly = w->ly;
    double* cdx = w->cold + (size_t)S * tb;
    float* cfx = w->colf + (size_t)S * tb;
    float* cfy = cfx + tb;
    if (want_col) memset(cdx, 0, 2 * (size_t)tb * sizeof(double));
    for (int i0 = 0; i0 < ta; i0 += CH) {
        int i1 = i0 + CH < ta ? i0 + CH : ta;
        if (want_col) memset(cfx, 0, 2 * (size_t)tb * sizeof(float));
        for (int i = i0; i < i1; i++) {
            const float* dx = DX + (size_t)i * tb;
            const float* dy = DY + (size_t)i * tb;
            const float gx = P->ngcx, gy = P->ngcy;
#pragma omp simd
            for (int j = 0; j < tb; j++) {
                kx[j] = vita_fast_expf(gx * dx[j]);
                ly[j] = vita_fast_expf(gy * dy[j]);
            }
            t3[0] += bdot(kx, ly, tb);
            t3[1] += bdot(kx, kx, tb);
            t3[2] += bdot(ly, ly, tb);
            if (xrow) { xrow[(size_t)i * rowld] = bsum(kx, tb); yrow[(size_t)i * rowld] = bsum(ly, tb); }
            if (want_col) {
#pragma omp simd
                for (int j = 0; j < tb; j++) { cfx[j] += kx[j]; cfy[j] += ly[j]; }
            }
        }
        if (want_col) {
#pragma omp simd
            for (int j = 0; j < 2 * tb; j++) cdx[j] += cfx[j];
        }
    }
}

/* ---- tiles -------------------------------------------------------------------------------- */
/* pointers of pooled row p in the row outputs; NULL when that output is not requested */
static inline double* rows_ptr(const Par* P, int p, int r) {
    const MmdOut* o = P->out;
    if (p < P->n) return o->rows_x ? o->rows_x + ((size_t)p * 3 + r) * P->S : NULL;
    return o->rows_y ? o->rows_y + ((size_t)(p - P->n) * 2 + r) * P->S : NULL;
}

/* kv of a tile: rows of block a -> slot (skv, ld B), columns (if col) -> outputs of block b */
static void tile_kv(const Par* P, Scr* w, const Blk* A, const Blk* Bk, int ta, int tb,
                    float* skv, int col) {
    const int B = P->B;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, ta, B, tb, 1.0f, w->Km, tb,
                P->V + (size_t)Bk->p0 * B, B, 0.0f, skv, B);
    if (!col) return;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, tb, B, ta, 1.0f, w->Km, tb,
                P->V + (size_t)A->p0 * B, B, 0.0f, w->kvc, B);
    for (int j = 0; j < tb; j++) {
        double* o = P->out->kv + ((size_t)(Bk->p0 + j) * 2 + A->isy) * B;
        const float* v = w->kvc + (size_t)j * B;
        for (int c = 0; c < B; c++) o[c] += v[c];
    }
}

/* same-set tile (a ≤ b, both X or both Y); G is the tile buffer to use */
static void do_same(const Par* P, Scr* w, float* G, const Blk* A, const Blk* Bk, TaskRes* R,
                    int half, float* srs, float* skv, int NF) {
    const int S = P->S, ta = A->len, tb = Bk->len, d = P->d;
    const int self = A->p0 == Bk->p0, col = !self;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, ta, tb, d, -2.0f, zrow(P, A->p0), d,
                zrow(P, Bk->p0), d, 0.0f, G, tb);
    TileSums ts;
    tile_epilogue(P, w, G, ta, tb, P->nrm + A->p0, P->nrm + Bk->p0, zrow(P, A->p0),
                  zrow(P, Bk->p0), self, 0,
                  P->want_rows && col, P->want_rows ? srs : NULL, NF, NULL, 0, &ts);
    const double mult = col ? 2.0 : 1.0;
    const int q = A->isy ? MMD_SYY : MMD_SXX;
    for (int s = 0; s < S; s++) R->sums[q][s] += mult * ts.sum[s];
    R->dsum[A->isy] += mult * ts.dsum;
    if (P->want_rows) {
        R->flags[half] |= F_SAME;
        if (col)
            for (int j = 0; j < tb; j++) {
                double* o = rows_ptr(P, Bk->p0 + j, 0);
                if (o) for (int s = 0; s < S; s++) o[s] += w->cold[(size_t)s * tb + j];
            }
    }
    if (P->want_kv) {
        tile_kv(P, w, A, Bk, ta, tb, skv, col);
        R->flags[half] |= F_KV;
        R->kvh[half] = Bk->isy;
    }
}

/* cross tile: A an X block, Bk a Y block */
static void do_xy(const Par* P, Scr* w, const Blk* A, const Blk* Bk, TaskRes* R, float* srs,
                  float* skv, int NF) {
    const int S = P->S, ta = A->len, tb = Bk->len, d = P->d;
    const int pairdiag = P->paired && A->p0 == Bk->p0 - P->n;
    float* G = w->G0;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, ta, tb, d, -2.0f, zrow(P, A->p0), d,
                zrow(P, Bk->p0), d, 0.0f, G, tb);
    TileSums ts;
    double* kd = P->out->rows_x ? P->out->rows_x + ((size_t)A->p0 * 3 + 2) * S : NULL;
    tile_epilogue(P, w, G, ta, tb, P->nrm + A->p0, P->nrm + Bk->p0, zrow(P, A->p0),
                  zrow(P, Bk->p0), 0, pairdiag,
                  P->want_rows, P->want_rows ? srs + S : NULL, NF, kd, 3 * S, &ts);
    for (int s = 0; s < S; s++) {
        R->sums[MMD_SXY][s] += ts.sum[s];
        R->sums[MMD_DXY][s] += ts.diag[s];
    }
    R->dsum[2] += ts.dsum;
    if (P->want_rows) {
        R->flags[0] |= F_CROSS;
        for (int j = 0; j < tb; j++) {
            double* o = rows_ptr(P, Bk->p0 + j, 1);
            if (o) for (int s = 0; s < S; s++) o[s] += w->cold[(size_t)s * tb + j];
        }
    }
    if (P->want_kv) {
        tile_kv(P, w, A, Bk, ta, tb, skv, 1);
        R->flags[0] |= F_KV;
        R->kvh[0] = 1;
    }
}

/* paired mode: XX tile (a, b) and YY tile (a, b) in one task, plus RBF-CKA on both */
static void do_pair(const Par* P, Scr* w, const Blk* blk, int nbx, int a, int b, TaskRes* R,
                    float* srs, float* skv, int NF, int SRH) {
    do_same(P, w, w->G0, &blk[a], &blk[b], R, 0, srs, skv, NF);
    float* GY = P->want_cka ? w->G1 : w->G0;
    do_same(P, w, GY, &blk[nbx + a], &blk[nbx + b], R, 1, srs + (size_t)SRH * NF,
            skv + (size_t)SRH * P->B, NF);
    if (!P->want_cka) return;
    const int ta = blk[a].len, tb = blk[b].len, S = P->S, col = a != b;
    const double mult = col ? 2.0 : 1.0;
    double t3[3] = {0, 0, 0};
    const int want_rows = P->out->cka_rows != NULL;
    cka_pass(P, w, w->G0, w->G1, ta, tb, want_rows && col, want_rows ? srs + 2 * S : NULL,
             want_rows ? srs + (size_t)SRH * NF + 2 * S : NULL, NF, t3);
    for (int t = 0; t < 3; t++) R->cka[t] += mult * t3[t];
    if (want_rows) {
        R->flags[0] |= F_CKA;
        R->flags[1] |= F_CKA;
        if (col) {
            const double* cdx = w->cold + (size_t)S * tb;
            for (int j = 0; j < tb; j++) {
                double* o = P->out->cka_rows + (size_t)(blk[b].p0 + j) * 2;
                o[0] += cdx[j];
                o[1] += cdx[tb + j];
            }
        }
    }
}

/* adds the slot rows of every task of a step to the outputs of pooled row p, in task order */
static void reduce_row(const Par* P, int p, int half, int lr, int ntask, const TaskRes* res,
                       const float* slot_rs, const float* slot_kv, int SR, int SRH, int NF) {
    const int S = P->S, B = P->B, isy = p >= P->n;
    const int i = isy ? p - P->n : p;
    double* same = rows_ptr(P, p, 0);
    double* cross = rows_ptr(P, p, 1);
    double* ck = P->out->cka_rows ? P->out->cka_rows + (size_t)i * 2 + isy : NULL;
    for (int t = 0; t < ntask; t++) {
        const unsigned f = res[t].flags[half];
        const size_t row = (size_t)t * SR + (size_t)half * SRH + lr;
        const float* rs = slot_rs + row * NF;
        if ((f & F_SAME) && same) for (int s = 0; s < S; s++) same[s] += rs[s];
        if ((f & F_CROSS) && cross) for (int s = 0; s < S; s++) cross[s] += rs[S + s];
        if ((f & F_CKA) && ck) *ck += rs[2 * S];
        if (f & F_KV) {
            double* o = P->out->kv + ((size_t)p * 2 + res[t].kvh[half]) * B;
            const float* v = slot_kv + row * B;
            for (int c = 0; c < B; c++) o[c] += v[c];
        }
    }
}

/* carves aligned pieces out of the workspace; with base NULL it only measures */
static void* carve(char* base, size_t* off, size_t bytes) {
    size_t o = ALIGN64(*off);
    *off = o + bytes;
    return base ? base + o : NULL;
}

void cpu_mmd_stats(Ctx* c, const MmdOut* out, const float* X, const float* Y, const float* V,
                   const MmdDims* dm) {
    const int n = dm->n, m = dm->m, d = dm->d, S = dm->S, N = dm->n + dm->m;
    const int B = (out->kv && dm->B > 0) ? dm->B : 0;
    CHECK(S >= 1 && S <= MMD_MAX_S, "mmd_stats: S = %d", S);
    CHECK(n >= 0 && m >= 0 && d >= 1, "mmd_stats: n = %d, m = %d, d = %d", n, m, d);
    CHECK(!dm->paired || n == m, "mmd_stats: paired needs n == m (%d, %d)", n, m);
    CHECK(!B || V, "mmd_stats: kv requested without V");

    /* outputs are overwritten */
    if (out->sums) memset(out->sums, 0, (size_t)MMD_NSUM * S * sizeof(double));
    if (out->dsum) memset(out->dsum, 0, 3 * sizeof(double));
    if (out->rows_x) memset(out->rows_x, 0, (size_t)n * 3 * S * sizeof(double));
    if (out->rows_y) memset(out->rows_y, 0, (size_t)m * 2 * S * sizeof(double));
    if (out->cka) memset(out->cka, 0, 3 * sizeof(double));
    if (out->cka_rows) memset(out->cka_rows, 0, (size_t)n * 2 * sizeof(double));
    if (out->kv && dm->B > 0) memset(out->kv, 0, (size_t)N * 2 * dm->B * sizeof(double));
    if (N == 0) return;

    Par P = {0};
    P.n = n; P.m = m; P.d = d; P.S = S; P.B = B; P.N = N; P.paired = dm->paired;
    for (int s = 0; s < S; s++) P.ng[s] = -dm->gamma[s];
    P.invS = 1.0f / (float)S;
    P.ngcx = -dm->gamma_cka_x; P.ngcy = -dm->gamma_cka_y;
    P.want_rows = out->rows_x || out->rows_y;
    P.want_kv = B > 0;
    P.want_dsum = out->dsum != NULL;
    P.want_cka = dm->paired && n > 0 && dm->gamma_cka_x > 0 && dm->gamma_cka_y > 0 &&
                 (out->cka || out->cka_rows);
    P.out = out; P.X = X; P.Y = Y; P.V = V;

    /* blocks and the task list of every step */
    const int nbx = (n + MT - 1) / MT, nby = (m + MT - 1) / MT, nb = nbx + nby;
    const int paired = dm->paired && n > 0;
    const int nsteps = paired ? nbx : nb;
    const int maxtask = paired ? 2 * nbx : nb;
    const int SR = paired ? 2 * MT : MT, SRH = MT, NF = 2 * S + 1;
    const int nth = max_threads();

    /* workspace layout (measured first with base NULL, then carved) */
    char* base = NULL;
    Blk* blk = NULL; Task* tasks = NULL; int* step0 = NULL; TaskRes* res = NULL;
    float *nrm = NULL, *slot_rs = NULL, *slot_kv = NULL;
    Scr* scr = NULL;
    size_t ntasks_all = paired ? (size_t)nbx * (nbx + 1) / 2 + (size_t)nbx * nby
                               : (size_t)nb * (nb + 1) / 2;
    for (int pass = 0; pass < 2; pass++) {
        size_t off = 0;
        blk = carve(base, &off, (size_t)nb * sizeof(Blk));
        tasks = carve(base, &off, ntasks_all * sizeof(Task));
        step0 = carve(base, &off, (size_t)(nsteps + 1) * sizeof(int));
        res = carve(base, &off, (size_t)maxtask * sizeof(TaskRes));
        nrm = carve(base, &off, (size_t)N * sizeof(float));
        slot_rs = carve(base, &off, (size_t)maxtask * SR * NF * sizeof(float));
        slot_kv = carve(base, &off, (size_t)maxtask * SR * B * sizeof(float));
        scr = carve(base, &off, (size_t)nth * sizeof(Scr));
        for (int t = 0; t < nth; t++) {
            Scr w;
            w.G0 = carve(base, &off, (size_t)MT * MT * sizeof(float));
            w.G1 = P.want_cka ? carve(base, &off, (size_t)MT * MT * sizeof(float)) : NULL;
            w.Km = P.want_kv ? carve(base, &off, (size_t)MT * MT * sizeof(float)) : NULL;
            w.k = carve(base, &off, MT * sizeof(float));
            w.kx = carve(base, &off, MT * sizeof(float));
            w.ly = carve(base, &off, MT * sizeof(float));
            w.colf = carve(base, &off, (size_t)(S + 2) * MT * sizeof(float));
            w.cold = carve(base, &off, (size_t)(S + 2) * MT * sizeof(double));
            w.kvc = carve(base, &off, (size_t)MT * (B ? B : 1) * sizeof(float));
            if (base) scr[t] = w;
        }
        if (!base) base = ctx_workspace(c, off + 64);
    }
    for (int k = 0; k < nb; k++) {
        Blk* b = &blk[k];
        b->isy = k >= nbx;
        b->p0 = b->isy ? n + (k - nbx) * MT : k * MT;
        int end = b->isy ? N : n;
        b->len = b->p0 + MT < end ? MT : end - b->p0;
    }
    {
        int t = 0;
        for (int a = 0; a < nsteps; a++) {
            step0[a] = t;
            if (paired) {  /* pair tasks (twice the work) first, then the XY tiles */
                for (int b = a; b < nbx; b++) tasks[t++] = (Task){T_PAIR, a, b};
                for (int b = nbx; b < nb; b++) tasks[t++] = (Task){T_XY, a, b};
            } else {
                for (int b = a; b < nb; b++)
                    tasks[t++] = (Task){blk[a].isy == blk[b].isy ? T_SAME : T_XY, a, b};
            }
        }
        step0[nsteps] = t;
    }

    P.nrm = nrm;
#pragma omp parallel
    {
        /* |z|² in fp64 from the fp32 rows, rounded once */
#pragma omp for schedule(static)
        for (int p = 0; p < N; p++) {
            const float* z = zrow(&P, p);
            double s = 0;
            for (int k = 0; k < d; k++) s += (double)z[k] * z[k];
            nrm[p] = (float)s;
        }
        Scr* w = &scr[thread_id()];
        for (int a = 0; a < nsteps; a++) {
            const int t0 = step0[a], nt = step0[a + 1] - t0;
#pragma omp for schedule(dynamic, 1)
            for (int t = 0; t < nt; t++) {
                const Task* T = &tasks[t0 + t];
                TaskRes* R = &res[t];
                memset(R, 0, sizeof *R);
                float* srs = slot_rs + (size_t)t * SR * NF;
                float* skv = slot_kv + (size_t)t * SR * B;
                if (T->type == T_PAIR)
                    do_pair(&P, w, blk, nbx, T->a, T->b, R, srs, skv, NF, SRH);
                else if (T->type == T_SAME)
                    do_same(&P, w, w->G0, &blk[T->a], &blk[T->b], R, 0, srs, skv, NF);
                else
                    do_xy(&P, w, &blk[T->a], &blk[T->b], R, srs, skv, NF);
            }
            /* rows of block a (and, paired, of Y block a): slots in task order */
            const int la = blk[a].len, nrow = paired ? 2 * la : la;
#pragma omp for schedule(static)
            for (int r = 0; r < nrow; r++) {
                const int half = r >= la, lr = half ? r - la : r;
                const int p = (half ? blk[nbx + a].p0 : blk[a].p0) + lr;
                reduce_row(&P, p, half, lr, nt, res, slot_rs, slot_kv, SR, SRH, NF);
            }
#pragma omp single
            for (int t = 0; t < nt; t++) {
                if (out->sums)
                    for (int q = 0; q < MMD_NSUM; q++)
                        for (int s = 0; s < S; s++) out->sums[q * S + s] += res[t].sums[q][s];
                if (out->dsum) for (int k = 0; k < 3; k++) out->dsum[k] += res[t].dsum[k];
                if (out->cka && P.want_cka) for (int k = 0; k < 3; k++) out->cka[k] += res[t].cka[k];
            }
        }
    }
}

/* ---- centring and pairwise distances ------------------------------------------------------ */
void cpu_mmd_center(Ctx* c, float* Xc, float* Yc, float* mu, const float* X, const float* Y,
                    int n, int m, int d) {
    if (d <= 0) return;
    float* muf = mu ? mu : (float*)ctx_workspace(c, (size_t)d * sizeof(float));
    const int N = n + m;
    enum { CB = 64 };  /* columns per block: rows are read contiguously, acc stays in L1 */
    const int nblk = (d + CB - 1) / CB;
#pragma omp parallel
    {
#pragma omp for schedule(static)
        for (int blkc = 0; blkc < nblk; blkc++) {
            const int c0 = blkc * CB, c1 = c0 + CB < d ? c0 + CB : d;
            double acc[CB] = {0};
            for (int i = 0; i < n; i++) {
                const float* r = X + (size_t)i * d;
                for (int k = c0; k < c1; k++) acc[k - c0] += r[k];
            }
            for (int i = 0; i < m; i++) {
                const float* r = Y + (size_t)i * d;
                for (int k = c0; k < c1; k++) acc[k - c0] += r[k];
            }
            for (int k = c0; k < c1; k++) muf[k] = N > 0 ? (float)(acc[k - c0] / N) : 0.0f;
        }
        /* implicit barrier: mu complete before any row is overwritten (in place allowed) */
#pragma omp for schedule(static)
        for (int i = 0; i < N; i++) {
            const float* r = i < n ? X + (size_t)i * d : Y + (size_t)(i - n) * d;
            float* o = i < n ? Xc + (size_t)i * d : Yc + (size_t)(i - n) * d;
            for (int k = 0; k < d; k++) o[k] = r[k] - muf[k];
        }
    }
}

void cpu_sqdist_forward(Ctx* c, float* out, const float* A, const float* Bm, int n1, int n2,
                        int d) {
    if (n1 <= 0 || n2 <= 0) return;
    float* na = (float*)ctx_workspace(c, (size_t)(n1 + n2) * sizeof(float));
    float* nb = na + n1;
#pragma omp parallel for schedule(static)
    for (int p = 0; p < n1 + n2; p++) {
        const float* z = p < n1 ? A + (size_t)p * d : Bm + (size_t)(p - n1) * d;
        double s = 0;
        for (int k = 0; k < d; k++) s += (double)z[k] * z[k];
        na[p] = (float)s;
    }
    if (d > 0)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n1, n2, d, -2.0f, A, d, Bm, d,
                    0.0f, out, n2);
    else
        memset(out, 0, (size_t)n1 * n2 * sizeof(float));
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n1; i++) {
        float* o = out + (size_t)i * n2;
        const float ni = na[i];
        for (int j = 0; j < n2; j++) {
            float v = (ni + nb[j]) + o[j];
            o[j] = v < 0.0f ? 0.0f : v;
        }
    }
}
