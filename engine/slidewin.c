/* engine/slidewin.c — sliding-window inference over whole cases (MONAI
 * sliding_window_inference semantics) and the per-case metrics of a task.
 *
 * Windows (per axis, MONAI dense_patch_slices): the case is first zero-padded to at least the
 * window (pad before = (window − size) / 2, the rest after, as MONAI); interval = window when
 * the (padded) axis equals the window, else int(window · (1 − overlap)), at least 1; starts
 * 0, interval, 2·interval, ... up to the first start whose window reaches the border, that last
 * one clamped to end exactly at the border.
 * Weights (MONAI compute_importance_map): Gaussian = Π_axes exp(−x²/(2σ²)), x = i − (n−1)/2,
 * σ = 0.125 n (sigma_scale 0.125), then clamped below at max(min, 1e-3); constant = 1.
 * Blending: out = Σ w·pred / Σ w per voxel over the windows covering it, accumulated in double
 * in window order (deterministic); padded voxels are dropped (MONAI crops them afterwards,
 * and the per-voxel normalisation makes that identical).
 * What is blended: segment — softmax probabilities of each window (MONAI blends whatever the
 * predictor returns, usually logits; vita blends probabilities so the result is a probability
 * map and windows with large logits do not dominate); image tasks — the predicted image;
 * classify — the softmax of each window's logits averaged with equal weights.
 *
 * Slice mode (2D models, LOADER_SLICE): every slice z is the centre of its context stack
 * (loader_slice_stack); in-plane windows as above (2D importance map) when the slice is larger
 * than the model input; windows of several slices share a forward batch. Extra tokens: the
 * token named slice_count (else the second one) gets the slice count, any other the slice
 * index, in the case's original geometry exactly as the training batches (loader.c):
 * index = z + crop_offset[0], count = shape_original[0] (= z and D for an uncropped case).
 */
#include "slidewin.h"
#include "check.h"
#include "metrics.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int sw_fail(char* err, size_t errlen, const char* msg) {
    if (err && errlen) snprintf(err, errlen, "%s", msg);
    return 1;
}

/* starts of the windows along one axis of padded length size >= roi; returns the count */
static int axis_starts(int size, int roi, double overlap, int* starts) {
    int interval = size == roi ? roi : (int)(roi * (1.0 - overlap));
    if (interval < 1) interval = 1;
    int n = 0;
    for (int d = 0;; d++) {
        int s = d * interval;
        int over = s + roi - size;
        starts[n++] = over > 0 ? s - over : s;
        if (s + roi >= size) break;
    }
    return n;
}

/* 1-D Gaussian factor of MONAI's importance map */
static void gauss_1d(int n, double* g) {
    double sigma = 0.125 * n;
    for (int i = 0; i < n; i++) {
        double x = i - (n - 1) / 2.0;
        g[i] = exp(x * x / (-2.0 * sigma * sigma));
    }
}

/* importance map [wd, wh, ww] (float, as MONAI's float32 map) */
static float* importance_map(const int w[3], int gaussian) {
    long S = (long)w[0] * w[1] * w[2];
    float* map = xmalloc(sizeof(float) * S);
    if (!gaussian) {
        for (long i = 0; i < S; i++) map[i] = 1.0f;
        return map;
    }
    double* g[3];
    for (int a = 0; a < 3; a++) {
        g[a] = xmalloc(sizeof(double) * w[a]);
        gauss_1d(w[a], g[a]);
    }
    float mn = INFINITY;
    for (int z = 0; z < w[0]; z++)
        for (int y = 0; y < w[1]; y++)
            for (int x = 0; x < w[2]; x++) {
                float v = (float)((float)((float)g[0][z] * (float)g[1][y]) * (float)g[2][x]);
                map[((long)z * w[1] + y) * w[2] + x] = v;
                if (v < mn) mn = v;
            }
    float lo = mn > 1e-3f ? mn : 1e-3f;
    for (long i = 0; i < S; i++)
        if (map[i] < lo) map[i] = lo;
    for (int a = 0; a < 3; a++) free(g[a]);
    return map;
}

/* copies the window at (padded) start s of src [C, sd, sh, sw] (case grid, pad_lo before each
 * axis) into dst [C, w0, w1, w2], zero outside the case */
static void extract_window(const float* src, int C, const int sdims[3], const int pad[3],
                           const int s[3], const int w[3], float* dst) {
    long plane = (long)sdims[1] * sdims[2], vol = plane * sdims[0];
    for (int c = 0; c < C; c++)
        for (int z = 0; z < w[0]; z++) {
            int gz = s[0] + z - pad[0];
            for (int y = 0; y < w[1]; y++) {
                int gy = s[1] + y - pad[1];
                float* d = dst + (((long)c * w[0] + z) * w[1] + y) * w[2];
                if (gz < 0 || gz >= sdims[0] || gy < 0 || gy >= sdims[1]) {
                    memset(d, 0, sizeof(float) * w[2]);
                    continue;
                }
                const float* r = src + c * vol + gz * plane + (long)gy * sdims[2];
                for (int x = 0; x < w[2]; x++) {
                    int gx = s[2] + x - pad[2];
                    d[x] = gx >= 0 && gx < sdims[2] ? r[gx] : 0.0f;
                }
            }
        }
}

/* acc[k * kstride + voxel] += map * pred[k], wsum[voxel] += map over the window's voxels inside
 * the grid cdims; the window covers grid rows s - pad + (0..w) on each axis */
static void blend_window(double* acc, double* wsum, const float* pred, const float* map, int K,
                         long kstride, const int cdims[3], const int pad[3], const int s[3],
                         const int w[3]) {
    long plane = (long)cdims[1] * cdims[2];
    long S = (long)w[0] * w[1] * w[2];
    #pragma omp parallel for schedule(static)
    for (int zy = 0; zy < w[0] * w[1]; zy++) {
        int z = zy / w[1], y = zy % w[1];
        int gz = s[0] + z - pad[0], gy = s[1] + y - pad[1];
        if (gz < 0 || gz >= cdims[0] || gy < 0 || gy >= cdims[1]) continue;
        long wrow = ((long)z * w[1] + y) * w[2];
        long grow = gz * plane + (long)gy * cdims[2];
        for (int x = 0; x < w[2]; x++) {
            int gx = s[2] + x - pad[2];
            if (gx < 0 || gx >= cdims[2]) continue;
            double wt = map[wrow + x];
            wsum[grow + gx] += wt;
            for (int k = 0; k < K; k++) acc[k * kstride + grow + gx] += wt * pred[k * S + wrow + x];
        }
    }
}

typedef struct { int z; int s[3]; } Win;   /* slice (slice mode) and padded start */

void slide_extra_slots(const VitConfig* vc, int* idx_out, int* cnt_out) {
    int E = vc->num_extra, idx_slot = -1, cnt_slot = -1;
    for (int e = 0; e < E; e++) {
        if (!strcmp(vc->extra_tokens[e], "slice_count")) cnt_slot = e;
        else if (!strcmp(vc->extra_tokens[e], "slice_index")) idx_slot = e;
    }
    if (E == 2 && cnt_slot < 0 && idx_slot < 0) { idx_slot = 0; cnt_slot = 1; }
    else if (E == 2 && cnt_slot < 0) cnt_slot = 1 - idx_slot;
    else if (E == 2 && idx_slot < 0) idx_slot = 1 - cnt_slot;
    else if (E == 1 && cnt_slot < 0) idx_slot = 0;
    *idx_out = idx_slot;
    *cnt_out = cnt_slot;
}

int slide_case(Vit* m, Head* h, Loader* L, int case_idx, const SlideConfig* sc, float* out,
               int32_t* seg, int32_t* cls, float* target, char* err, size_t errlen) {
    Dataset* ds = L->ds;
    Ctx* c = m->ctx;
    const VitConfig* vc = &m->cfg;
    int task = h->cfg.task;
    int slice = L->cfg.mode == LOADER_SLICE;
    int ctxn = slice ? L->cfg.context : 1;
    int Cm = L->C_seq * ctxn;
    if (case_idx < 0 || case_idx >= ds->n) return sw_fail(err, errlen, "slide_case: case index out of range");
    if (Cm != vc->in_chans) {
        if (err) snprintf(err, errlen, "the loader gives %d input channels (%d sequences x context "
                          "%d) but the model takes model.in_chans = %d", Cm, L->C_seq, ctxn, vc->in_chans);
        return 1;
    }
    if (slice && vc->img[0] != 1)
        return sw_fail(err, errlen, "slice mode (data.input.mode = slice) needs a 2D model (img depth 1)");
    int E = vc->num_extra;
    if (E > 2 || (E > 0 && !slice))
        return sw_fail(err, errlen, "extra tokens (slice index / count) need slice mode and at most 2 tokens");
    if (!(sc->overlap >= 0 && sc->overlap < 1))
        return sw_fail(err, errlen, "eval.sliding_window.overlap must be in [0, 1)");
    int K = h->out_channels;
    if (task != HEAD_CLASSIFY && task != HEAD_SEGMENT) K = 1;

    int cd[3] = {ds->D, ds->H, ds->W};
    long vol = (long)cd[0] * cd[1] * cd[2], plane = (long)cd[1] * cd[2];
    float* img = xmalloc(sizeof(float) * L->C_seq * vol);
    uint8_t present[DS_MAX_CHANNELS];
    if (loader_case(L, case_idx, img, present, seg, target, err, errlen)) { free(img); return 1; }
    if (cls) *cls = ds->cls ? ds->cls[case_idx] : -1;

    /* window grid: the source each window is cut from has sdims (slice mode: one slice) */
    int w[3] = {vc->img[0], vc->img[1], vc->img[2]};
    int sdims[3] = {slice ? 1 : cd[0], cd[1], cd[2]};
    int pad[3], P[3], *st[3], ns[3];
    for (int a = 0; a < 3; a++) {
        P[a] = sdims[a] > w[a] ? sdims[a] : w[a];
        pad[a] = (P[a] - sdims[a]) / 2;
        st[a] = xmalloc(sizeof(int) * (P[a] + 1));
        ns[a] = axis_starts(P[a], w[a], sc->overlap, st[a]);
    }
    int nz = slice ? cd[0] : 1;
    long nwin = (long)nz * ns[0] * ns[1] * ns[2];
    Win* wins = xmalloc(sizeof(Win) * nwin);
    long q = 0;
    for (int z = 0; z < nz; z++)
        for (int i = 0; i < ns[0]; i++)
            for (int j = 0; j < ns[1]; j++)
                for (int k = 0; k < ns[2]; k++) {
                    wins[q].z = z;
                    wins[q].s[0] = st[0][i]; wins[q].s[1] = st[1][j]; wins[q].s[2] = st[2][k];
                    q++;
                }

    int bs = sc->batch > 0 ? sc->batch : 1;
    if (bs > m->max_batch) bs = m->max_batch;
    if (bs > h->max_batch) bs = h->max_batch;
    CHECK(bs >= 1, "slide_case needs allocated activations (max_batch %d / %d)", m->max_batch, h->max_batch);
    long S = (long)w[0] * w[1] * w[2];
    long win_in = (long)Cm * S;
    float* hin = xmalloc(sizeof(float) * win_in * bs);
    float* din = dev_alloc(c, sizeof(float) * win_in * bs);
    float* dextra = E ? dev_alloc(c, sizeof(float) * E * bs) : NULL;
    float* hextra = E ? xmalloc(sizeof(float) * E * bs) : NULL;
    long outw = task == HEAD_CLASSIFY ? K : K * S;      /* output floats per window */
    float* hout = xmalloc(sizeof(float) * outw * bs);
    float* dprob = task == HEAD_SEGMENT ? dev_alloc(c, sizeof(float) * outw * bs) : NULL;
    float* map = importance_map(w, sc->gaussian);
    double* acc = task == HEAD_CLASSIFY ? xcalloc(K, sizeof(double)) : xcalloc(K * vol, sizeof(double));
    double* wsum = task == HEAD_CLASSIFY ? NULL : xcalloc(vol, sizeof(double));
    float* stack = slice ? xmalloc(sizeof(float) * Cm * plane) : NULL;
    int stack_z = -1;
    int idx_slot, cnt_slot;
    slide_extra_slots(vc, &idx_slot, &cnt_slot);
    int off0 = ds->g_crop_offset ? ds->g_crop_offset[(long)case_idx * 3] : 0;
    int cnt0 = ds->g_shape_original ? ds->g_shape_original[(long)case_idx * 3] : cd[0];

    int m_tr = m->training, h_tr = h->training;
    m->training = 0;
    h->training = 0;
    for (long b0 = 0; b0 < nwin; b0 += bs) {
        int nb = (int)(nwin - b0 < bs ? nwin - b0 : bs);
        for (int b = 0; b < nb; b++) {
            const Win* wi = &wins[b0 + b];
            if (slice) {
                if (wi->z != stack_z) { loader_slice_stack(L, img, wi->z, stack); stack_z = wi->z; }
                extract_window(stack, Cm, sdims, pad, wi->s, w, hin + b * win_in);
                if (idx_slot >= 0) hextra[idx_slot * nb + b] = (float)(wi->z + off0);
                if (cnt_slot >= 0) hextra[cnt_slot * nb + b] = (float)cnt0;
            } else {
                extract_window(img, Cm, sdims, pad, wi->s, w, hin + b * win_in);
            }
        }
        copy_h2d(c, din, hin, sizeof(float) * win_in * nb);
        if (E) copy_h2d(c, dextra, hextra, sizeof(float) * E * nb);
        vit_forward(m, din, dextra, nb);
        const float* y = head_forward(h, m, din, nb);
        if (task == HEAD_SEGMENT) {
            softmax_channels_forward(c, dprob, y, nb, K, S);
            y = dprob;
        }
        copy_d2h(c, hout, y, sizeof(float) * outw * nb);
        for (int b = 0; b < nb; b++) {
            const Win* wi = &wins[b0 + b];
            const float* p = hout + b * outw;
            if (task == HEAD_CLASSIFY) {
                double mx = -INFINITY, sum = 0;
                for (int k = 0; k < K; k++) mx = fmax(mx, p[k]);
                for (int k = 0; k < K; k++) sum += exp((double)p[k] - mx);
                for (int k = 0; k < K; k++) acc[k] += exp((double)p[k] - mx) / sum;
            } else if (slice) {
                /* one slice: a [1, H, W] grid at plane z of the [K, D, H, W] accumulators */
                int pd[3] = {1, cd[1], cd[2]};
                long zoff = (long)wi->z * plane;
                blend_window(acc + zoff, wsum + zoff, p, map, K, vol, pd, pad, wi->s, w);
            } else {
                blend_window(acc, wsum, p, map, K, vol, cd, pad, wi->s, w);
            }
        }
    }
    m->training = m_tr;
    h->training = h_tr;

    if (task == HEAD_CLASSIFY) {
        for (int k = 0; k < K; k++) out[k] = (float)(acc[k] / (double)nwin);
    } else {
        for (int k = 0; k < K; k++)
            for (long v = 0; v < vol; v++) out[k * vol + v] = (float)(acc[k * vol + v] / wsum[v]);
    }
    free(img); free(wins); free(hin); free(hout); free(map); free(acc); free(wsum); free(stack);
    free(hextra);
    for (int a = 0; a < 3; a++) free(st[a]);
    dev_free(c, din);
    if (dextra) dev_free(c, dextra);
    if (dprob) dev_free(c, dprob);
    return 0;
}

/* ---- metrics ------------------------------------------------------------------------------ */
static const char* const DICE_NAMES[DS_MAX_LABELS] = {
    "dice_0", "dice_1", "dice_2", "dice_3", "dice_4", "dice_5", "dice_6", "dice_7",
    "dice_8", "dice_9", "dice_10", "dice_11", "dice_12", "dice_13", "dice_14", "dice_15"};

int slide_case_metrics(int task, int K, const float* out, const int32_t* seg, const float* target,
                       int D, int H, int W, const double spacing[3], double* metrics,
                       const char** names, int max_metrics) {
    int n = 0;
    long vol = (long)D * H * W;
#define PUT(nm, v) do { if (n < max_metrics) { if (names) names[n] = (nm); metrics[n] = (v); } n++; } while (0)
    if (task == HEAD_CLASSIFY) {
        int am = 0;
        for (int k = 1; k < K; k++)
            if (out[k] > out[am]) am = k;
        double score = K == 2 ? out[1] : out[am];
        int32_t y = seg ? seg[0] : -1;
        PUT("score", score);
        PUT("pred", am);
        PUT("correct", y >= 0 ? (double)(am == y) : NAN);
    } else if (task == HEAD_SEGMENT) {
        CHECK(K >= 1 && K <= DS_MAX_LABELS, "segment K = %d", K);
        int32_t* pred = xmalloc(sizeof(int32_t) * (vol ? vol : 1));
        uint8_t* pm = xmalloc(vol ? vol : 1);
        uint8_t* gm = xmalloc(vol ? vol : 1);
        for (long v = 0; v < vol; v++) {
            int am = 0;
            float best = out[v];
            for (int k = 1; k < K; k++)
                if (out[k * vol + v] > best) { best = out[k * vol + v]; am = k; }
            pred[v] = am;
            pm[v] = am > 0;
            gm[v] = seg[v] > 0;
        }
        double dice[DS_MAX_LABELS];
        metric_dice_per_class(pred, seg, vol, K, dice);
        for (int k = 1; k < K; k++) PUT(DICE_NAMES[k], dice[k]);
        PUT("dice_mean", K > 1 ? metric_nanmean(dice + 1, K - 1) : NAN);
        PUT("hd95", metric_hd95(pm, gm, D, H, W, spacing));
        free(pred); free(pm); free(gm);
    } else {
        double R = metric_data_range(target, vol);
        PUT("psnr", metric_psnr(out, target, vol, R));
        double ssim;
        if (D >= 11) {
            ssim = metric_ssim(out, target, D, H, W, R);
        } else {
            double* s = xmalloc(sizeof(double) * (D ? D : 1));
            for (int z = 0; z < D; z++)
                s[z] = metric_ssim(out + (long)z * H * W, target + (long)z * H * W, 1, H, W, R);
            ssim = metric_nanmean(s, D);
            free(s);
        }
        PUT("ssim", ssim);
        PUT("mae", metric_mae(out, target, vol));
    }
#undef PUT
    return n;
}
