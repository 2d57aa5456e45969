/* tests/test_ops_decoder_oracle.c — the dense decoder ops against PyTorch float64
 * (tests/oracle/decoder_oracle.py -> $VITA_ORACLE_DIR/decoder.safetensors): nn.Conv3d/Conv2d
 * (padding k//2), nn.ConvTranspose3d/2d (kernel = stride), nn.InstanceNorm3d/2d(affine),
 * nn.BatchNorm3d/1d in training (outputs, gradients and the running statistics after one
 * step) and eval, F.interpolate nearest/trilinear/bilinear (align_corners=False),
 * F.leaky_relu, the token -> grid reshape + torch.cat, and grid_sample(border,
 * align_corners=True) along one axis for resample_axis. This pins the layout conventions
 * (weight orders, which axis is which, the interpolation phase, biased vs unbiased variance);
 * the numerics are covered in depth by test_ops_decoder.c.
 *
 * Thresholds: the reference is stored as float32 (one rounding: U^2 on its own), so
 * NMSE(vita, ref32) <= 2 NMSE(vita, exact) + 2 U^2, with NMSE(vita, exact) the bound derived
 * for the tensor in test_ops_decoder.c (repeated next to each check); copies must be exact.
 */
#include "../kernels/ops.h"
#include "oracle_io.h"

static Ctx ctx;
static StFile io;

static double dot_thr(double K) { return 10.0 * K * T_U * T_U; }
static double vs32(double bound) { return 2 * bound + 2 * T_U * T_U; }

/* the tensor "<case>.<name>" (must have n elements), or NULL with a failed check */
static float* get(const char* cs, const char* name, long n) {
    char key[160];
    snprintf(key, sizeof key, "%s.%s", cs, name);
    const StTensor* t = st_find(&io, key);
    if (!t || t->numel != n) {
        char msg[240];
        snprintf(msg, sizeof msg, "oracle tensor %s present with %ld elements (has %ld)", key, n,
                 t ? (long)t->numel : -1L);
        t_true(msg, 0);
        return NULL;
    }
    float* x = t_fnew(n);
    st_read_f32(&io, t, x);
    return x;
}

static void cmp(const char* cs, const char* name, const float* got, long n, double thr) {
    float* ref = get(cs, name, n);
    if (!ref) return;
    double* r = t_dnew(n);
    t_f2d(r, ref, n);
    char label[200];
    snprintf(label, sizeof label, "%s %s vs torch NMSE", cs, name);
    t_check(label, t_nmse_fd(got, r, n), thr);
    free(r); free(ref);
}

enum { K_CONV, K_CONVT, K_INST, K_BN_TRAIN, K_BN_EVAL, K_NEAREST, K_LINEAR, K_LEAKY, K_LAYOUT, K_RS };

/* keep in sync with main() of tests/oracle/decoder_oracle.py. Per kind:
 *   conv/convT: C1 = Ci, C2 = Co, k = kernel/factors, flag = bias
 *   inst/bn: C1 = C;  nearest/linear: C1 = C, k = factors;  leaky: W = n, slope;
 *   layout: C1 = C, C2 = Cb, k = (T, t0, -);  rs: C1 = C, k[0] = axis */
typedef struct { const char* name; int kind, B, C1, C2, D, H, W, k[3], flag; float slope; } OCase;
static const OCase cases[] = {
    { "conv3d_333", K_CONV, 2, 3, 4, 5, 6, 7, { 3, 3, 3 }, 1, 0 },
    { "conv3d_133", K_CONV, 1, 2, 3, 4, 5, 6, { 1, 3, 3 }, 1, 0 },
    { "conv3d_351", K_CONV, 1, 2, 2, 4, 6, 5, { 3, 5, 1 }, 0, 0 },
    { "conv2d_33", K_CONV, 2, 3, 5, 1, 9, 8, { 1, 3, 3 }, 1, 0 },
    { "convT3d_222", K_CONVT, 2, 4, 3, 2, 3, 2, { 2, 2, 2 }, 1, 0 },
    { "convT3d_244", K_CONVT, 1, 3, 2, 2, 2, 3, { 2, 4, 4 }, 1, 0 },
    { "convT3d_122", K_CONVT, 2, 3, 4, 3, 2, 2, { 1, 2, 2 }, 1, 0 },
    { "convT2d_22", K_CONVT, 2, 4, 3, 1, 3, 5, { 1, 2, 2 }, 1, 0 },
    { "inst3d", K_INST, 2, 3, 0, 4, 5, 6, { 0 }, 1, 0 },
    { "inst2d", K_INST, 2, 4, 0, 1, 7, 9, { 0 }, 1, 0 },
    { "bn3d_train", K_BN_TRAIN, 3, 3, 0, 3, 4, 5, { 0 }, 1, 0 },
    { "bn3d_eval", K_BN_EVAL, 2, 3, 0, 3, 4, 5, { 0 }, 1, 0 },
    { "bn1d_train", K_BN_TRAIN, 8, 5, 0, 1, 1, 1, { 0 }, 1, 0 },
    { "near3d_222", K_NEAREST, 2, 3, 0, 3, 4, 5, { 2, 2, 2 }, 0, 0 },
    { "near3d_123", K_NEAREST, 1, 2, 0, 2, 3, 4, { 1, 2, 3 }, 0, 0 },
    { "near2d_22", K_NEAREST, 2, 3, 0, 1, 5, 4, { 1, 2, 2 }, 0, 0 },
    { "tri3d_222", K_LINEAR, 2, 3, 0, 3, 4, 5, { 2, 2, 2 }, 0, 0 },
    { "tri3d_124", K_LINEAR, 1, 2, 0, 2, 3, 4, { 1, 2, 4 }, 0, 0 },
    { "tri3d_323", K_LINEAR, 1, 2, 0, 3, 2, 3, { 3, 2, 3 }, 0, 0 },
    { "bil2d_22", K_LINEAR, 2, 3, 0, 1, 5, 4, { 1, 2, 2 }, 0, 0 },
    { "leaky_001", K_LEAKY, 1, 1, 0, 1, 1, 1000, { 0 }, 0, 0.01f },
    { "leaky_0", K_LEAKY, 1, 1, 0, 1, 1, 1000, { 0 }, 0, 0.0f },
    { "layout", K_LAYOUT, 2, 5, 3, 2, 3, 4, { 30, 3, 0 }, 0, 0 },
    { "rs_axis0", K_RS, 2, 3, 0, 5, 4, 6, { 0 }, 0, 0 },
    { "rs_axis1", K_RS, 2, 3, 0, 5, 4, 6, { 1 }, 0, 0 },
    { "rs_axis2", K_RS, 2, 3, 0, 5, 4, 6, { 2 }, 0, 0 },
    { "rs_2d_axis1", K_RS, 2, 2, 0, 1, 7, 9, { 1 }, 0, 0 },
};

static void run_case(const OCase* o) {
    const int B = o->B, D = o->D, H = o->H, W = o->W;
    const long S = (long)D * H * W;
    const char* cs = o->name;
    switch (o->kind) {
    case K_CONV: case K_CONVT: {
        const int Ci = o->C1, Co = o->C2, a = o->k[0], b = o->k[1], c = o->k[2];
        const long kv = (long)a * b * c, F = o->kind == K_CONVT ? kv : 1;
        const long nx = B * Ci * S, no = B * Co * S * F, nw = (long)Co * Ci * kv;
        float *x = get(cs, "x", nx), *w = get(cs, "w", nw), *g = get(cs, "g", no);
        float* bias = o->flag ? get(cs, "b", Co) : NULL;
        if (!x || !w || !g || (o->flag && !bias)) break;
        float *out = t_fnew(no), *dx = t_fnew(nx), *dw = t_fnew(nw), *db = t_fnew(Co);
        if (o->kind == K_CONV) {
            conv3d_forward(&ctx, out, x, w, bias, B, Ci, Co, D, H, W, a, b, c);
            conv3d_backward(&ctx, dx, dw, db, g, x, w, B, Ci, Co, D, H, W, a, b, c);
            cmp(cs, "out", out, no, vs32(dot_thr(Ci * kv + 2)));
            cmp(cs, "dx", dx, nx, vs32(dot_thr(Co * kv + 1)));
        } else {
            convT_forward(&ctx, out, x, w, bias, B, Ci, Co, D, H, W, a, b, c);
            convT_backward(&ctx, dx, dw, db, g, x, w, B, Ci, Co, D, H, W, a, b, c);
            cmp(cs, "out", out, no, vs32(dot_thr(Ci + 2)));
            cmp(cs, "dx", dx, nx, vs32(dot_thr(Co * F + 1)));
        }
        cmp(cs, "dw", dw, nw, vs32(dot_thr((double)B * S + 2)));   /* B·S-term sums */
        if (bias) cmp(cs, "db", db, Co, vs32(T_U * T_U));
        free(x); free(w); free(g); free(bias); free(out); free(dx); free(dw); free(db);
        break;
    }
    case K_INST: case K_BN_TRAIN: case K_BN_EVAL: {
        const int C = o->C1;
        const long n = B * C * S, ns = o->kind == K_INST ? (long)B * C : C;
        float *x = get(cs, "x", n), *w = get(cs, "w", C), *b = get(cs, "b", C), *g = get(cs, "g", n);
        float *rm = NULL, *rv = NULL;
        if (o->kind != K_INST) { rm = get(cs, "rm0", C); rv = get(cs, "rv0", C); if (!rm || !rv) break; }
        if (!x || !w || !b || !g) break;
        float *out = t_fnew(n), *mean = t_fnew(ns), *rstd = t_fnew(ns), *dx = t_fnew(n), *dw = t_fnew(C), *db = t_fnew(C);
        if (o->kind == K_INST) {
            instnorm_forward(&ctx, out, mean, rstd, x, w, b, B, C, S, 1e-5f);
            instnorm_backward(&ctx, dx, dw, db, g, x, w, mean, rstd, B, C, S);
        } else {
            const int tr = o->kind == K_BN_TRAIN;
            batchnorm_forward(&ctx, out, mean, rstd, rm, rv, x, w, b, B, C, S, 1e-5f, 0.1f, tr);
            batchnorm_backward(&ctx, dx, dw, db, g, x, w, mean, rstd, B, C, S, tr);
            /* running stats: one rounding of a double expression vs torch's float64 */
            cmp(cs, "rm1", rm, C, vs32(T_U * T_U));
            cmp(cs, "rv1", rv, C, vs32(T_U * T_U));
        }
        /* inputs have mean 1-2 and σ 1: ε = (5 + 2) U, 4 ε^2 (out, dw); dx: ~10 roundings
         * + |m|/σ -> 4 (12 U)^2; db: one rounding */
        cmp(cs, "out", out, n, vs32(4 * 49 * T_U * T_U));
        cmp(cs, "dx", dx, n, vs32(4 * 144 * T_U * T_U));
        cmp(cs, "dw", dw, C, vs32(4 * 49 * T_U * T_U));
        cmp(cs, "db", db, C, vs32(T_U * T_U));
        free(x); free(w); free(b); free(g); free(rm); free(rv);
        free(out); free(mean); free(rstd); free(dx); free(dw); free(db);
        break;
    }
    case K_NEAREST: case K_LINEAR: {
        const int C = o->C1, fd = o->k[0], fh = o->k[1], fw = o->k[2], mode = o->kind == K_LINEAR ? UPS_LINEAR : UPS_NEAREST;
        const long n = B * C * S, no = n * fd * fh * fw;
        float *x = get(cs, "x", n), *g = get(cs, "g", no);
        if (!x || !g) break;
        float *out = t_fnew(no), *dx = t_fnew(n);
        upsample_forward(&ctx, out, x, B, C, D, H, W, fd, fh, fw, mode);
        upsample_backward(&ctx, dx, g, B, C, D, H, W, fd, fh, fw, mode);
        /* nearest: a copy; linear: 8 (20U)^2. backward: sums of <= 3f terms per axis */
        cmp(cs, "out", out, no, mode ? vs32(8 * 400 * T_U * T_U) : 0);
        cmp(cs, "dx", dx, n, vs32(dot_thr(3.0 * (fd + fh + fw) + 3)));
        free(x); free(g); free(out); free(dx);
        break;
    }
    case K_LEAKY: {
        const long n = W;
        float *x = get(cs, "x", n), *g = get(cs, "g", n);
        if (!x || !g) break;
        float *out = t_fnew(n), *dx = t_fnew(n);
        leaky_relu_forward(&ctx, out, x, o->slope, n);
        leaky_relu_backward(&ctx, dx, g, x, o->slope, n);
        cmp(cs, "out", out, n, vs32(T_U * T_U));
        cmp(cs, "dx", dx, n, vs32(T_U * T_U));
        free(x); free(g); free(out); free(dx);
        break;
    }
    case K_LAYOUT: {
        const int C = o->C1, Cb = o->C2, T = o->k[0], t0 = o->k[1];
        const long nt = (long)B * T * C, no = B * (C + Cb) * S;
        float *tok = get(cs, "tok", nt), *oth = get(cs, "other", B * Cb * S), *g = get(cs, "g", no);
        if (!tok || !oth || !g) break;
        float *vol = t_fnew(B * C * S), *out = t_fnew(no), *dvol = t_fnew(B * C * S),
              *dtok = t_fnew(nt), *doth = t_fnew(B * Cb * S);
        tokens_to_grid_forward(&ctx, vol, tok, B, T, C, t0, S);
        concat_channels_forward(&ctx, out, vol, oth, B, C, Cb, S);
        concat_channels_backward(&ctx, dvol, doth, g, B, C, Cb, S);
        tokens_to_grid_backward(&ctx, dtok, dvol, B, T, C, t0, S);   /* other rows stay 0 */
        cmp(cs, "out", out, no, 0);
        cmp(cs, "dtok", dtok, nt, 0);
        cmp(cs, "dother", doth, B * Cb * S, 0);
        free(tok); free(oth); free(g); free(vol); free(out); free(dvol); free(dtok); free(doth);
        break;
    }
    case K_RS: {
        const int C = o->C1, axis = o->k[0];
        const long n = B * C * S, nd = B * S;
        float *x = get(cs, "x", n), *disp = get(cs, "disp", nd), *g = get(cs, "g", n);
        if (!x || !disp || !g) break;
        float *out = t_fnew(n), *dx = t_fnew(n), *dd = t_fnew(nd);
        resample_axis_forward(&ctx, out, x, disp, B, C, D, H, W, axis);
        resample_axis_backward(&ctx, dx, dd, g, x, disp, B, C, D, H, W, axis);
        /* out: 8 (5U)^2; din: <= 12 taps, 2 roundings each; ddisp: C products of a
         * difference, double sum: dot_thr(2 (C + 1)) */
        cmp(cs, "out", out, n, vs32(8 * 25 * T_U * T_U));
        cmp(cs, "dx", dx, n, vs32(dot_thr(24)));
        cmp(cs, "ddisp", dd, nd, vs32(dot_thr(2.0 * (C + 1))));
        free(x); free(disp); free(g); free(out); free(dx); free(dd);
        break;
    }
    }
}

int main(void) {
    if (ctx_open(&ctx, "cpu", 0, 1)) return 2;
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/decoder.safetensors", oracle_dir());
    if (st_open(&io, path, err, sizeof err)) {
        printf("%s\n", err);
        t_true("decoder oracle readable (run make oracle)", 0);
        return t_summary();
    }
    for (unsigned i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&cases[i]);
    st_close(&io);
    ctx_close(&ctx);
    return t_summary();
}
