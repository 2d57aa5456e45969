/* kernels/ops.c — dispatch: each op of ops.h forwards to the context's backend table.
 * Also context set-up and the memory/copy calls. */
#include "backend.h"
#include "../engine/check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int ctx_open(Ctx* c, const char* device, int threads, int deterministic) {
    memset(c, 0, sizeof *c);
    c->threads = threads;
    c->deterministic = deterministic;
    if (!device || !strcmp(device, "cpu")) {
        c->be = &vita_cpu_backend;
    } else if (!strcmp(device, "cuda") || !strcmp(device, "auto")) {
#ifdef VITA_CUDA
        if (vita_cuda_device_count() > 0) c->be = &vita_cuda_backend;
#endif
        if (!c->be) {
            if (!strcmp(device, "cuda")) {
                fprintf(stderr, "vita: --device cuda: no usable CUDA device (this build: %s); "
                        "use --device cpu or auto\n",
#ifdef VITA_CUDA
                        "built with CUDA"
#else
                        "built without nvcc"
#endif
                );
                return 1;
            }
            c->be = &vita_cpu_backend;
        }
    } else {
        fprintf(stderr, "vita: --device '%s' is not one of cpu, cuda, auto\n", device);
        return 1;
    }
    return c->be->open(c);
}

void ctx_close(Ctx* c) {
    if (!c->be) return;
    if (c->ws) c->be->free(c, c->ws);
    c->be->close(c);
    c->ws = NULL;
    c->ws_bytes = 0;
    c->be = NULL;
}

const char* ctx_device_name(const Ctx* c) { return c->be ? c->be->name : "none"; }

void* ctx_workspace(Ctx* c, size_t bytes) {
    if (bytes > c->ws_bytes) {
        if (c->ws) c->be->free(c, c->ws);
        c->ws = c->be->alloc(c, bytes);
        c->ws_bytes = bytes;
    }
    return c->ws;
}

void* dev_alloc(Ctx* c, size_t bytes) { return c->be->alloc(c, bytes); }
void dev_free(Ctx* c, void* p) { if (p) c->be->free(c, p); }
void dev_zero(Ctx* c, void* p, size_t bytes) { c->be->zero(c, p, bytes); }
void copy_h2d(Ctx* c, void* d, const void* s, size_t n) { c->be->h2d(c, d, s, n); }
void copy_d2h(Ctx* c, void* d, const void* s, size_t n) { c->be->d2h(c, d, s, n); }
void copy_d2d(Ctx* c, void* d, const void* s, size_t n) { c->be->d2d(c, d, s, n); }
void dev_sync(Ctx* c) { c->be->sync(c); }

/* One forwarding definition per op. The argument list is spelled once more here; the
 * compiler checks it against ops.h through the table's __typeof__ fields. */
#define FWD(name, params, args) void name params { c->be->name args; }

FWD(patchify_forward, (Ctx* c, float* out, const float* img, int B, int C, int D, int H, int W,
    int pd, int ph, int pw), (c, out, img, B, C, D, H, W, pd, ph, pw))
FWD(unpatchify_forward, (Ctx* c, float* img, const float* patches, int B, int C, int D, int H,
    int W, int pd, int ph, int pw), (c, img, patches, B, C, D, H, W, pd, ph, pw))
FWD(tokens_concat_forward, (Ctx* c, float* out, const float* cls, const float* reg,
    const float* extra, const float* patches, int B, int R, int E, int P, int C),
    (c, out, cls, reg, extra, patches, B, R, E, P, C))
FWD(tokens_concat_backward, (Ctx* c, float* dcls, float* dreg, float* dextra, float* dpatches,
    const float* dout, int B, int R, int E, int P, int C),
    (c, dcls, dreg, dextra, dpatches, dout, B, R, E, P, C))
FWD(pos_embed_add_forward, (Ctx* c, float* x, const float* pos, int B, int T, int C, int t0,
    int n, int p0), (c, x, pos, B, T, C, t0, n, p0))
FWD(pos_embed_add_backward, (Ctx* c, float* dpos, const float* dx, int B, int T, int C, int t0,
    int n, int p0), (c, dpos, dx, B, T, C, t0, n, p0))
FWD(pos_resample_forward, (Ctx* c, float* out, const float* in, int C, int d0, int h0, int w0,
    int d1, int h1, int w1, int mode), (c, out, in, C, d0, h0, w0, d1, h1, w1, mode))
FWD(pos_resample_backward, (Ctx* c, float* din, const float* dout, int C, int d0, int h0,
    int w0, int d1, int h1, int w1, int mode), (c, din, dout, C, d0, h0, w0, d1, h1, w1, mode))
FWD(layernorm_forward, (Ctx* c, float* out, float* mean, float* rstd, const float* x,
    const float* w, const float* b, int N, int C, float eps), (c, out, mean, rstd, x, w, b, N, C, eps))
FWD(layernorm_backward, (Ctx* c, float* dx, float* dw, float* db, const float* dout,
    const float* x, const float* w, const float* mean, const float* rstd, int N, int C),
    (c, dx, dw, db, dout, x, w, mean, rstd, N, C))
FWD(linear_forward, (Ctx* c, float* out, const float* x, const float* W, const float* bias,
    int N, int IC, int OC), (c, out, x, W, bias, N, IC, OC))
FWD(linear_backward, (Ctx* c, float* dx, float* dW, float* dbias, const float* dout,
    const float* x, const float* W, int N, int IC, int OC), (c, dx, dW, dbias, dout, x, W, N, IC, OC))
FWD(attention_forward, (Ctx* c, float* out, float* lse, const float* qkv, int B, int T, int H,
    int hd), (c, out, lse, qkv, B, T, H, hd))
FWD(attention_backward, (Ctx* c, float* dqkv, const float* dout, const float* qkv,
    const float* out, const float* lse, int B, int T, int H, int hd),
    (c, dqkv, dout, qkv, out, lse, B, T, H, hd))
FWD(gelu_forward, (Ctx* c, float* out, const float* x, long n), (c, out, x, n))
FWD(gelu_backward, (Ctx* c, float* dx, const float* dout, const float* x, long n), (c, dx, dout, x, n))
FWD(add_forward, (Ctx* c, float* out, const float* a, const float* b, long n), (c, out, a, b, n))
FWD(layerscale_forward, (Ctx* c, float* out, const float* x, const float* gamma, int N, int C),
    (c, out, x, gamma, N, C))
FWD(layerscale_backward, (Ctx* c, float* dx, float* dgamma, const float* dout, const float* x,
    const float* gamma, int N, int C), (c, dx, dgamma, dout, x, gamma, N, C))
FWD(drop_path_forward, (Ctx* c, float* out, const float* x, const float* scale, int B,
    long per_sample), (c, out, x, scale, B, per_sample))
FWD(scale_inplace, (Ctx* c, float* x, float s, long n), (c, x, s, n))
FWD(meanpool_forward, (Ctx* c, float* out, const float* x, int B, int T, int C, int t0, int n),
    (c, out, x, B, T, C, t0, n))
FWD(meanpool_backward, (Ctx* c, float* dx, const float* dout, int B, int T, int C, int t0, int n),
    (c, dx, dout, B, T, C, t0, n))
FWD(crossentropy_forward, (Ctx* c, float* losses, const float* logits, const int32_t* targets,
    int B, int V), (c, losses, logits, targets, B, V))
FWD(crossentropy_backward, (Ctx* c, float* dlogits, const float* logits, const int32_t* targets,
    const float* dlosses, int B, int V), (c, dlogits, logits, targets, dlosses, B, V))
FWD(adamw_update, (Ctx* c, float* p, const float* g, float* m, float* v, long n, float lr,
    float beta1, float beta2, float eps, float wd, int t), (c, p, g, m, v, n, lr, beta1, beta2, eps, wd, t))
FWD(sumsq, (Ctx* c, double* out, const float* x, long n), (c, out, x, n))
FWD(mmd_stats, (Ctx* c, const MmdOut* out, const float* X, const float* Y, const float* V,
    const MmdDims* dims), (c, out, X, Y, V, dims))
FWD(mmd_center, (Ctx* c, float* Xc, float* Yc, float* mu, const float* X, const float* Y, int n,
    int m, int d), (c, Xc, Yc, mu, X, Y, n, m, d))
FWD(sqdist_forward, (Ctx* c, float* out, const float* A, const float* Bm, int n1, int n2, int d),
    (c, out, A, Bm, n1, n2, d))
FWD(conv3d_forward, (Ctx* c, float* out, const float* in, const float* W, const float* bias, int B, int Ci, int Co, int D, int H, int Wd, int kd, int kh, int kw),
    (c, out, in, W, bias, B, Ci, Co, D, H, Wd, kd, kh, kw))
FWD(conv3d_backward, (Ctx* c, float* din, float* dW, float* dbias, const float* dout, const float* in, const float* W, int B, int Ci, int Co, int D, int H, int Wd, int kd, int kh, int kw),
    (c, din, dW, dbias, dout, in, W, B, Ci, Co, D, H, Wd, kd, kh, kw))
FWD(convT_forward, (Ctx* c, float* out, const float* in, const float* W, const float* bias, int B, int Ci, int Co, int D, int H, int Wd, int fd, int fh, int fw),
    (c, out, in, W, bias, B, Ci, Co, D, H, Wd, fd, fh, fw))
FWD(convT_backward, (Ctx* c, float* din, float* dW, float* dbias, const float* dout, const float* in, const float* W, int B, int Ci, int Co, int D, int H, int Wd, int fd, int fh, int fw),
    (c, din, dW, dbias, dout, in, W, B, Ci, Co, D, H, Wd, fd, fh, fw))
FWD(instnorm_forward, (Ctx* c, float* out, float* mean, float* rstd, const float* x, const float* w, const float* b, int B, int C, long S, float eps),
    (c, out, mean, rstd, x, w, b, B, C, S, eps))
FWD(instnorm_backward, (Ctx* c, float* dx, float* dw, float* db, const float* dout, const float* x, const float* w, const float* mean, const float* rstd, int B, int C, long S),
    (c, dx, dw, db, dout, x, w, mean, rstd, B, C, S))
FWD(batchnorm_forward, (Ctx* c, float* out, float* mean, float* rstd, float* run_mean, float* run_var, const float* x, const float* w, const float* b, int B, int C, long S, float eps, float momentum, int training),
    (c, out, mean, rstd, run_mean, run_var, x, w, b, B, C, S, eps, momentum, training))
FWD(batchnorm_backward, (Ctx* c, float* dx, float* dw, float* db, const float* dout, const float* x, const float* w, const float* mean, const float* rstd, int B, int C, long S, int training),
    (c, dx, dw, db, dout, x, w, mean, rstd, B, C, S, training))
FWD(leaky_relu_forward, (Ctx* c, float* out, const float* x, float slope, long n),
    (c, out, x, slope, n))
FWD(leaky_relu_backward, (Ctx* c, float* dx, const float* dout, const float* x, float slope, long n),
    (c, dx, dout, x, slope, n))
FWD(upsample_forward, (Ctx* c, float* out, const float* in, int B, int C, int D, int H, int W, int fd, int fh, int fw, int mode),
    (c, out, in, B, C, D, H, W, fd, fh, fw, mode))
FWD(upsample_backward, (Ctx* c, float* din, const float* dout, int B, int C, int D, int H, int W, int fd, int fh, int fw, int mode),
    (c, din, dout, B, C, D, H, W, fd, fh, fw, mode))
FWD(concat_channels_forward, (Ctx* c, float* out, const float* a, const float* b, int B, int Ca, int Cb, long S),
    (c, out, a, b, B, Ca, Cb, S))
FWD(concat_channels_backward, (Ctx* c, float* da, float* db, const float* dout, int B, int Ca, int Cb, long S),
    (c, da, db, dout, B, Ca, Cb, S))
FWD(tokens_to_grid_forward, (Ctx* c, float* out, const float* tokens, int B, int T, int C, int t0, long S),
    (c, out, tokens, B, T, C, t0, S))
FWD(tokens_to_grid_backward, (Ctx* c, float* dtokens, const float* dout, int B, int T, int C, int t0, long S),
    (c, dtokens, dout, B, T, C, t0, S))
FWD(resample_axis_forward, (Ctx* c, float* out, const float* in, const float* disp, int B, int C, int D, int H, int W, int axis),
    (c, out, in, disp, B, C, D, H, W, axis))
FWD(resample_axis_backward, (Ctx* c, float* din, float* ddisp, const float* dout, const float* in, const float* disp, int B, int C, int D, int H, int W, int axis),
    (c, din, ddisp, dout, in, disp, B, C, D, H, W, axis))
FWD(softmax_channels_forward, (Ctx* c, float* prob, const float* logits, int B, int K, long S),
    (c, prob, logits, B, K, S))
FWD(dice_ce_forward, (Ctx* c, double* out, const float* prob, const int32_t* labels, const float* weights, int B, int K, long S, int include_background),
    (c, out, prob, labels, weights, B, K, S, include_background))
FWD(dice_ce_backward, (Ctx* c, float* dlogits, const float* prob, const int32_t* labels, const float* weights, int B, int K, long S, int include_background, float w_ce, float w_dice),
    (c, dlogits, prob, labels, weights, B, K, S, include_background, w_ce, w_dice))
FWD(cls_loss_forward, (Ctx* c, double* out, const float* logits, const int32_t* targets, const float* weights, int B, int V, float smoothing, float focal_gamma),
    (c, out, logits, targets, weights, B, V, smoothing, focal_gamma))
FWD(cls_loss_backward, (Ctx* c, float* dlogits, const float* logits, const int32_t* targets, const float* weights, int B, int V, float smoothing, float focal_gamma, float scale),
    (c, dlogits, logits, targets, weights, B, V, smoothing, focal_gamma, scale))
FWD(regress_loss_forward, (Ctx* c, double* out, const float* pred, const float* target, long n, int kind),
    (c, out, pred, target, n, kind))
FWD(regress_loss_backward, (Ctx* c, float* dpred, const float* pred, const float* target, long n, int kind, float scale),
    (c, dpred, pred, target, n, kind, scale))
FWD(tokens_gather_forward, (Ctx* c, float* out, const float* x, const int32_t* perm, int B, int P, int n, int C),
    (c, out, x, perm, B, P, n, C))
FWD(tokens_gather_backward, (Ctx* c, float* dx, const float* dout, const int32_t* perm, int B, int P, int n, int C),
    (c, dx, dout, perm, B, P, n, C))
FWD(tokens_unshuffle_forward, (Ctx* c, float* out, const float* src, const float* fill, const int32_t* perm, int B, int P, int n, int C, int t0, int Ts, int s0),
    (c, out, src, fill, perm, B, P, n, C, t0, Ts, s0))
FWD(tokens_unshuffle_backward, (Ctx* c, float* dsrc, float* dfill, const float* dout, const int32_t* perm, int B, int P, int n, int C, int t0, int Ts, int s0),
    (c, dsrc, dfill, dout, perm, B, P, n, C, t0, Ts, s0))
FWD(mae_loss_forward, (Ctx* c, double* out, const float* pred, const float* target, const int32_t* perm, int B, int P, int n, int K, int Tp, int t0, int norm_pix),
    (c, out, pred, target, perm, B, P, n, K, Tp, t0, norm_pix))
FWD(mae_loss_backward, (Ctx* c, float* dpred, const float* pred, const float* target, const int32_t* perm, int B, int P, int n, int K, int Tp, int t0, int norm_pix, float scale),
    (c, dpred, pred, target, perm, B, P, n, K, Tp, t0, norm_pix, scale))
FWD(l2norm_forward, (Ctx* c, float* out, float* norm, const float* x, int N, int C), (c, out, norm, x, N, C))
FWD(l2norm_backward, (Ctx* c, float* dx, const float* dout, const float* out, const float* norm, int N, int C),
    (c, dx, dout, out, norm, N, C))
FWD(infonce_forward, (Ctx* c, double* out, const float* z, const int32_t* pos, int N, int C, float tau),
    (c, out, z, pos, N, C, tau))
FWD(infonce_backward, (Ctx* c, float* dz, const float* z, const int32_t* pos, int N, int C, float tau, float scale),
    (c, dz, z, pos, N, C, tau, scale))
