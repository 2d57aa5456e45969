/* kernels/ops.h — the op interface: every op, forward and backward, as plain C.
 *
 * Every tensor pointer here is a DEVICE pointer of the backend in use (host memory for the
 * CPU backend, GPU memory for CUDA). Model and engine code reach tensor memory only through
 * these ops and the explicit copies at the bottom of this file.
 *
 * Layouts (row-major, fp32 unless said otherwise):
 *   image      [B, C, D, H, W]           2D images have D = 1 (and pd = 1)
 *   tokens     [B, T, C]                 one row per token; "N" below means B*T rows
 *   qkv        [B, T, 3*C]               timm order: (3, heads, head_dim) inside each row
 *   linear W   [OC, IC]                  PyTorch nn.Linear layout, y = x W^T + b
 *   pos grid   [gd, gh, gw, C]           one row per grid cell, z-major
 *
 * Gradient conventions (one rule, everywhere):
 *   - gradients of INPUTS/activations are written (overwrite, =); a NULL pointer skips them;
 *   - gradients of PARAMETERS are accumulated (+=), so that micro-batches can accumulate
 *     and the engine zeroes the gradient buffer once per optimizer step.
 * Ops never allocate in the hot path; scratch comes from the context's workspace, which grows
 * on first use and is then reused.
 */
#ifndef VITA_OPS_H
#define VITA_OPS_H

#include <stddef.h>
#include <stdint.h>

typedef struct Backend Backend;

typedef struct Ctx {
    const Backend* be;   /* function table of the backend in use */
    int threads;         /* worker threads for the CPU backend (OpenMP + OpenBLAS) */
    int deterministic;   /* 1: fixed reduction orders, results independent of thread count */
    void* ws;            /* workspace (device memory), grown by ctx_workspace() */
    size_t ws_bytes;
    void* impl;          /* backend-private state (streams, handles) */
} Ctx;

/* ---- context and memory --------------------------------------------------------------- */
/* Opens a context on "cpu" (always built) or "cuda" (when compiled with nvcc); "auto" picks
 * cuda when a GPU is present. Returns 0 on success, prints a one-line reason otherwise. */
int   ctx_open(Ctx* c, const char* device, int threads, int deterministic);
void  ctx_close(Ctx* c);
const char* ctx_device_name(const Ctx* c);
void* ctx_workspace(Ctx* c, size_t bytes);           /* grows, never shrinks */

void* dev_alloc(Ctx* c, size_t bytes);               /* zero-filled; aborts with a hint on OOM */
void  dev_free(Ctx* c, void* p);
void  dev_zero(Ctx* c, void* p, size_t bytes);
void  copy_h2d(Ctx* c, void* dst, const void* src, size_t bytes);
void  copy_d2h(Ctx* c, void* dst, const void* src, size_t bytes);
void  copy_d2d(Ctx* c, void* dst, const void* src, size_t bytes);
void  dev_sync(Ctx* c);

/* ---- patch embedding: image <-> patch rows --------------------------------------------
 * patchify: out [B, P, C*pd*ph*pw], P = (D/pd)(H/ph)(W/pw) patches in (z, y, x) raster order;
 * inside a row the order is (c, dz, dy, dx), which is the flattened Conv3d/Conv2d weight
 * [dim, C, pd, ph, pw], so patch embedding = patchify + linear. D, H, W must be multiples of
 * the patch. unpatchify is the exact inverse; each is the other's backward. */
void patchify_forward(Ctx* c, float* out, const float* img,
                      int B, int C, int D, int H, int W, int pd, int ph, int pw);
void unpatchify_forward(Ctx* c, float* img, const float* patches,
                        int B, int C, int D, int H, int W, int pd, int ph, int pw);

/* ---- token concat: [cls | registers | extra | patches] --------------------------------
 * out [B, T, C], T = ncls + R + E + P with ncls = (cls != NULL). cls [C], reg [R, C] are
 * parameters shared by the batch; extra [E, B, C] is per image, token-major so that each
 * extra token's linear writes one contiguous block; patches [B, P, C].
 * backward: dcls, dreg accumulate (parameters); dextra, dpatches overwrite. NULL skips. */
void tokens_concat_forward(Ctx* c, float* out, const float* cls, const float* reg,
                           const float* extra, const float* patches,
                           int B, int R, int E, int P, int C);
void tokens_concat_backward(Ctx* c, float* dcls, float* dreg, float* dextra, float* dpatches,
                            const float* dout, int B, int R, int E, int P, int C);

/* ---- positional embedding -------------------------------------------------------------
 * In place: x[b, t0+i, :] += pos[p0+i, :] for i < n, every b. x is [B, T, C].
 * backward: dpos[p0+i, :] += sum_b dx[b, t0+i, :]. */
void pos_embed_add_forward(Ctx* c, float* x, const float* pos,
                           int B, int T, int C, int t0, int n, int p0);
void pos_embed_add_backward(Ctx* c, float* dpos, const float* dx,
                            int B, int T, int C, int t0, int n, int p0);

/* Resample a grid of embeddings [d0,h0,w0,C] -> [d1,h1,w1,C], align_corners = false.
 * POS_BICUBIC: 2D only (d0 = d1 = 1), cubic convolution a = -0.75 with clamped borders, as
 * torch.nn.functional.interpolate(mode="bicubic") used by timm and DINOv2 (no antialias).
 * POS_TRILINEAR: 3D, as interpolate(mode="trilinear"). backward overwrites din. */
enum { POS_BICUBIC = 0, POS_TRILINEAR = 1 };
void pos_resample_forward(Ctx* c, float* out, const float* in, int C,
                          int d0, int h0, int w0, int d1, int h1, int w1, int mode);
void pos_resample_backward(Ctx* c, float* din, const float* dout, int C,
                           int d0, int h0, int w0, int d1, int h1, int w1, int mode);

/* ---- layernorm over the last axis: x [N, C]; mean, rstd [N] saved for backward -------- */
void layernorm_forward(Ctx* c, float* out, float* mean, float* rstd,
                       const float* x, const float* w, const float* b, int N, int C, float eps);
void layernorm_backward(Ctx* c, float* dx, float* dw, float* db, const float* dout,
                        const float* x, const float* w, const float* mean, const float* rstd,
                        int N, int C);

/* ---- linear: out [N, OC] = x [N, IC] W^T + bias (bias may be NULL) --------------------
 * backward: dx, dW, dbias may each be NULL (skipped); x is read only for dW. */
void linear_forward(Ctx* c, float* out, const float* x, const float* W, const float* bias,
                    int N, int IC, int OC);
void linear_backward(Ctx* c, float* dx, float* dW, float* dbias, const float* dout,
                     const float* x, const float* W, int N, int IC, int OC);

/* ---- multi-head self-attention ---------------------------------------------------------
 * qkv [B, T, 3*H*hd] -> out [B, T, H*hd]; softmax(q k^T / sqrt(hd)) v per (b, head).
 * Saves only lse [B, H, T] (log-sum-exp of each score row): the backward recomputes the
 * probabilities from q, k and lse, so no [T, T] matrix per head is kept between passes. */
void attention_forward(Ctx* c, float* out, float* lse, const float* qkv,
                       int B, int T, int H, int hd);
void attention_backward(Ctx* c, float* dqkv, const float* dout, const float* qkv,
                        const float* out, const float* lse, int B, int T, int H, int hd);

/* ---- elementwise ----------------------------------------------------------------------- */
/* GELU, exact: 0.5 x (1 + erf(x / sqrt 2)). */
void gelu_forward(Ctx* c, float* out, const float* x, long n);
void gelu_backward(Ctx* c, float* dx, const float* dout, const float* x, long n);
/* residual add: out = a + b (out may alias a or b). Backward is the identity to both. */
void add_forward(Ctx* c, float* out, const float* a, const float* b, long n);
/* LayerScale: out [N, C] = x * gamma[C]. */
void layerscale_forward(Ctx* c, float* out, const float* x, const float* gamma, int N, int C);
void layerscale_backward(Ctx* c, float* dx, float* dgamma, const float* dout,
                         const float* x, const float* gamma, int N, int C);
/* drop-path (stochastic depth): out[b, :] = x[b, :] * scale[b], scale[b] in {0, 1/keep}
 * drawn by the engine's RNG; the backward is the same op applied to dout. */
void drop_path_forward(Ctx* c, float* out, const float* x, const float* scale,
                       int B, long per_sample);
/* out = s * x in place (gradient clipping, loss scaling). */
void scale_inplace(Ctx* c, float* x, float s, long n);

/* ---- pooling: out [B, C] = mean of x[b, t0 .. t0+n-1, :] (x is [B, T, C]) ------------
 * backward writes all of dx: dout / n on the pooled tokens, 0 elsewhere. */
void meanpool_forward(Ctx* c, float* out, const float* x, int B, int T, int C, int t0, int n);
void meanpool_backward(Ctx* c, float* dx, const float* dout, int B, int T, int C, int t0, int n);

/* ---- cross-entropy: losses[b] = logsumexp(logits[b]) - logits[b, y_b] ------------------
 * logits [B, V], targets int32 [B] in [0, V). backward: dlogits[b] = (softmax - onehot) *
 * dlosses[b] (dlosses = 1/B for a mean). */
void crossentropy_forward(Ctx* c, float* losses, const float* logits, const int32_t* targets,
                          int B, int V);
void crossentropy_backward(Ctx* c, float* dlogits, const float* logits, const int32_t* targets,
                           const float* dlosses, int B, int V);

/* ---- optimizer ----------------------------------------------------------------------
 * AdamW (torch.optim.AdamW semantics), t = 1-based step count of this parameter group:
 *   p -= lr*wd*p;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
 *   p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)
 * Called once per parameter range with that range's group lr and weight decay. */
void adamw_update(Ctx* c, float* p, const float* g, float* m, float* v, long n,
                  float lr, float beta1, float beta2, float eps, float wd, int t);
/* out[0] (device, one double) = sum of x^2 accumulated in double, in a fixed order. The
 * global grad norm of the whole gradient buffer is sqrt of this (grads are one allocation). */
void sumsq(Ctx* c, double* out, const float* x, long n);

/* ---- fused Gaussian-kernel statistics (MMD², energy distance, RBF-CKA) -------------------
 * X [n, d] and Y [m, d]; Z = [X; Y] is the pooled set (N = n + m rows). One pass over tiles of
 * the pooled pairwise distances: the n x m kernel matrix is never stored (memory O(N·d + tile)).
 * d2(a, b) = max(0, |a|^2 + |b|^2 - 2 a·b), norms taken from the same fp32 rows that enter the
 * dot products; pairs so close that the expansion cancels (d2 < (|a|^2 + |b|^2) / 32), self pairs
 * and the paired diagonal get d2 recomputed as |a - b|^2 from the rows (exact duplicates give
 * k = 1 and distance 0, which the expansion alone cannot); k_s(a, b) = exp(-gamma[s] d2), s < S; kmix = (1/S) Σ_s k_s. Self pairs are
 * masked by index (i = j), never by assuming k = 1. Per-tile sums are accumulated in fp32
 * (pairwise), combined in fp64 in a fixed order: results are bit-identical for any thread count.
 * Rows should be centred on the pooled mean first (mmd_center): it keeps |a|^2 small against
 * the distances, which is what the fp32 expansion above needs.
 * All outputs are device doubles, overwritten; a NULL output is skipped.
 *   sums[q*S + s], q = MMD_SXX: Σ_{i≠j} k_s(x_i,x_j) (both orders)   MMD_SYY: same over Y
 *                  MMD_SXY: Σ_{i,j} k_s(x_i,y_j)   MMD_DXY: Σ_i k_s(x_i,y_i) (paired, else 0)
 *   dsum[3]:   Σ_{i≠j} |x_i-x_j|,  Σ_{i≠j} |y_i-y_j|,  Σ_{i,j} |x_i-y_j|   (energy distance)
 *   rows_x[(i*3 + r)*S + s]: r=0 Σ_{j≠i} k_s(x_i,x_j), r=1 Σ_j k_s(x_i,y_j), r=2 k_s(x_i,y_i) (paired)
 *   rows_y[(j*2 + r)*S + s]: r=0 Σ_{i≠j} k_s(y_j,y_i), r=1 Σ_i k_s(x_i,y_j)
 *   cka[3] (paired, gamma_cka_x, gamma_cka_y > 0): with Kx_ij = exp(-gamma_cka_x d2(x_i,x_j)),
 *          Ly_ij likewise, over ALL i, j (diagonal from the computed d2):
 *          Σ Kx∘Ly, Σ Kx∘Kx, Σ Ly∘Ly;   cka_rows[i*2 + r]: r=0 Σ_j Kx_ij, r=1 Σ_j Ly_ij
 *   kv[(i*2 + h)*B + b] (B > 0, V [N, B] device weights): with K~ = kmix on Z with the pooled
 *          diagonal zeroed, h=0: Σ_{j<n} K~(z_i,z_j) V[j,b] (columns from X), h=1: Σ_{j>=n} (from Y).
 *          Every permutation / bootstrap replicate is a quadratic form in these (K·V in one pass).
 */
#define MMD_MAX_S 8
enum { MMD_SXX = 0, MMD_SYY = 1, MMD_SXY = 2, MMD_DXY = 3, MMD_NSUM = 4 };
typedef struct {
    int n, m, d, S, B;
    int paired;                    /* n == m and row i of X pairs with row i of Y */
    float gamma[MMD_MAX_S];        /* 1 / (2 sigma_s^2) */
    float gamma_cka_x, gamma_cka_y;
} MmdDims;
typedef struct {
    double *sums, *dsum, *rows_x, *rows_y, *cka, *cka_rows, *kv;
} MmdOut;
void mmd_stats(Ctx* c, const MmdOut* out, const float* X, const float* Y, const float* V,
               const MmdDims* dims);
/* Xc = X - mu, Yc = Y - mu with mu the pooled mean of [X; Y] (accumulated in double); mu out
 * [d] (device float, may be NULL). In place allowed. */
void mmd_center(Ctx* c, float* Xc, float* Yc, float* mu, const float* X, const float* Y,
                int n, int m, int d);
/* out [n1, n2] = max(0, |a_i|^2 + |b_j|^2 - 2 a_i·b_j) (pairwise squared distances, fp32) */
void sqdist_forward(Ctx* c, float* out, const float* A, const float* Bm, int n1, int n2, int d);

/* ==== dense decoder ops (task heads) ========================================================
 * Volumes are [B, C, D, H, W], channels first (PyTorch's layout), S = D*H*W voxels; 2D is D = 1
 * (and kd = 1, fd = 1). Same gradient rule as above: inputs written, parameters accumulated. */

/* Convolution, stride 1, zero padding (k-1)/2 per axis (odd kernels), W [Co, Ci, kd, kh, kw]
 * (nn.Conv3d layout), bias [Co] or NULL. */
void conv3d_forward(Ctx* c, float* out, const float* in, const float* W, const float* bias,
                    int B, int Ci, int Co, int D, int H, int Wd, int kd, int kh, int kw);
void conv3d_backward(Ctx* c, float* din, float* dW, float* dbias, const float* dout,
                     const float* in, const float* W, int B, int Ci, int Co, int D, int H, int Wd,
                     int kd, int kh, int kw);
/* Transposed convolution with kernel = stride = (fd, fh, fw) (no overlap): in [B, Ci, D, H, W]
 * -> out [B, Co, D*fd, H*fh, W*fw]; W [Ci, Co, fd, fh, fw] (nn.ConvTranspose3d layout). */
void convT_forward(Ctx* c, float* out, const float* in, const float* W, const float* bias,
                   int B, int Ci, int Co, int D, int H, int Wd, int fd, int fh, int fw);
void convT_backward(Ctx* c, float* din, float* dW, float* dbias, const float* dout,
                    const float* in, const float* W, int B, int Ci, int Co, int D, int H, int Wd,
                    int fd, int fh, int fw);
/* Instance norm: per (b, c) over the S voxels, biased variance; w, b [C] or NULL (no affine);
 * saves mean, rstd [B*C]. */
void instnorm_forward(Ctx* c, float* out, float* mean, float* rstd, const float* x,
                      const float* w, const float* b, int B, int C, long S, float eps);
void instnorm_backward(Ctx* c, float* dx, float* dw, float* db, const float* dout,
                       const float* x, const float* w, const float* mean, const float* rstd,
                       int B, int C, long S);
/* Batch norm over (B, S) per channel (BatchNorm1d: S = 1; BatchNorm2d/3d: S voxels). training:
 * normalise with the batch statistics (biased), save mean/rstd [C], and update run_mean/run_var
 * (device, may be NULL) as PyTorch: r = (1-momentum) r + momentum * batch stat, run_var with
 * the unbiased variance. Eval (training = 0): normalise with run_mean/run_var. w, b may be
 * NULL (no affine). backward needs the mode of the forward. */
void batchnorm_forward(Ctx* c, float* out, float* mean, float* rstd, float* run_mean,
                       float* run_var, const float* x, const float* w, const float* b,
                       int B, int C, long S, float eps, float momentum, int training);
void batchnorm_backward(Ctx* c, float* dx, float* dw, float* db, const float* dout,
                        const float* x, const float* w, const float* mean, const float* rstd,
                        int B, int C, long S, int training);
/* out = x > 0 ? x : slope * x (slope 0: ReLU); backward uses x. In place allowed. */
void leaky_relu_forward(Ctx* c, float* out, const float* x, float slope, long n);
void leaky_relu_backward(Ctx* c, float* dx, const float* dout, const float* x, float slope, long n);
/* Upsampling by integer factors per axis: UPS_NEAREST, or UPS_LINEAR = F.interpolate
 * trilinear/bilinear with align_corners = False. out [B, C, D*fd, H*fh, W*fw]. */
enum { UPS_NEAREST = 0, UPS_LINEAR = 1 };
void upsample_forward(Ctx* c, float* out, const float* in, int B, int C, int D, int H, int W,
                      int fd, int fh, int fw, int mode);
void upsample_backward(Ctx* c, float* din, const float* dout, int B, int C, int D, int H, int W,
                       int fd, int fh, int fw, int mode);
/* channel concat: out [B, Ca + Cb, S] = [a | b]; backward splits (da, db may be NULL). */
void concat_channels_forward(Ctx* c, float* out, const float* a, const float* b, int B, int Ca,
                             int Cb, long S);
void concat_channels_backward(Ctx* c, float* da, float* db, const float* dout, int B, int Ca,
                              int Cb, long S);
/* patch tokens [B, T, C] rows t0 .. t0+S-1 (S = gd*gh*gw, raster order) -> volume [B, C, S];
 * backward writes dtokens rows t0 .. t0+S-1 only (other rows untouched). */
void tokens_to_grid_forward(Ctx* c, float* out, const float* tokens, int B, int T, int C, int t0,
                            long S);
void tokens_to_grid_backward(Ctx* c, float* dtokens, const float* dout, int B, int T, int C,
                             int t0, long S);
/* Resampling along one axis (0 = D, 1 = H, 2 = W; the phase-encode axis) by a displacement
 * field disp [B, D, H, W] in voxels: out[b,c,p] = linear interpolation of in[b,c,·] along the
 * axis at p_axis + disp[b,p], clamped to the border. backward: din (written) and ddisp
 * (written; NULL skips). */
void resample_axis_forward(Ctx* c, float* out, const float* in, const float* disp, int B, int C,
                           int D, int H, int W, int axis);
void resample_axis_backward(Ctx* c, float* din, float* ddisp, const float* dout,
                            const float* in, const float* disp, int B, int C, int D, int H,
                            int W, int axis);

/* ==== losses (device; reductions in double, fixed order) =================================== */
/* Dense softmax: prob [B, K, S] = softmax over K of logits [B, K, S]. */
void softmax_channels_forward(Ctx* c, float* prob, const float* logits, int B, int K, long S);
/* Dice + cross-entropy for segmentation. labels int32 [B, S] in [0, K). out (device doubles):
 * out[0] = mean CE over B*S voxels (optionally class-weighted: weights [K] device or NULL),
 * out[1] = mean over (b, class k >= k0) of soft Dice loss 1 - (2 Σ p g + smooth)/(Σ p + Σ g +
 * smooth), k0 = include_background ? 0 : 1, smooth = 1e-5 (MONAI's smooth_nr/smooth_dr).
 * backward: dlogits = w_ce * dCE/dlogits + w_dice * dDice/dlogits, from prob (forward's). */
void dice_ce_forward(Ctx* c, double* out, const float* prob, const int32_t* labels,
                     const float* weights, int B, int K, long S, int include_background);
void dice_ce_backward(Ctx* c, float* dlogits, const float* prob, const int32_t* labels,
                      const float* weights, int B, int K, long S, int include_background,
                      float w_ce, float w_dice);
/* Classification loss on logits [B, V]: cross-entropy with optional class weights [V],
 * label smoothing eps, or focal loss (gamma > 0; alpha = class weights). out[0] = the mean
 * loss (weighted mean when weighted, as torch's CrossEntropyLoss). backward: dlogits = dL/d
 * logits times scale. */
void cls_loss_forward(Ctx* c, double* out, const float* logits, const int32_t* targets,
                      const float* weights, int B, int V, float smoothing, float focal_gamma);
void cls_loss_backward(Ctx* c, float* dlogits, const float* logits, const int32_t* targets,
                       const float* weights, int B, int V, float smoothing, float focal_gamma,
                       float scale);
/* Regression losses: out[0] = mean |p - t| (L1) or mean (p - t)^2 (MSE) over n;
 * backward dpred = scale * dmean/dpred (sign(0) = 0 for L1, as torch). */
enum { LOSS_L1 = 0, LOSS_MSE = 1 };
void regress_loss_forward(Ctx* c, double* out, const float* pred, const float* target, long n,
                          int kind);
void regress_loss_backward(Ctx* c, float* dpred, const float* pred, const float* target, long n,
                           int kind, float scale);

/* ==== pretraining objectives (models/pretext*.c) ==========================================
 * MAE masking. perm int32 [B, P] (device): per image a permutation of the patch indices
 * 0..P-1 whose first n entries are the kept (visible) patches, the rest the masked ones (MAE's
 * ids_shuffle).
 * tokens_gather: out [B, n, C] = x[b, perm[b, i], :] for i < n (x [B, P, C]).
 *   backward writes all of dx [B, P, C]: dout on the kept rows, 0 on the masked ones. */
void tokens_gather_forward(Ctx* c, float* out, const float* x, const int32_t* perm,
                           int B, int P, int n, int C);
void tokens_gather_backward(Ctx* c, float* dx, const float* dout, const int32_t* perm,
                            int B, int P, int n, int C);
/* tokens_unshuffle (MAE decoder input): src [B, Ts, C] = [head (t0 rows) | skipped rows |
 * n kept patch tokens starting at row s0]; out [B, t0 + P, C]:
 *   out[b, t, :] = src[b, t, :] for t < t0 (cls);  out[b, t0 + perm[b, i], :] = src[b, s0 + i, :]
 *   for i < n;  = fill[:] (the mask token) for i >= n.   Requires t0 <= s0, s0 + n <= Ts.
 * backward: dsrc written in full (rows t0 .. s0-1, e.g. registers, get 0); dfill [C] accumulates
 * (a parameter) the sum over the masked rows; NULL skips either. */
void tokens_unshuffle_forward(Ctx* c, float* out, const float* src, const float* fill,
                              const int32_t* perm, int B, int P, int n, int C, int t0,
                              int Ts, int s0);
void tokens_unshuffle_backward(Ctx* c, float* dsrc, float* dfill, const float* dout,
                               const int32_t* perm, int B, int P, int n, int C, int t0,
                               int Ts, int s0);
/* MAE loss: pred [B, Tp, K] whose rows t0 .. t0+P-1 are the patches; target [B, P, K] =
 * patchify(img). With norm_pix, each target row is replaced by (t - mean) / sqrt(var + 1e-6),
 * var unbiased (K - 1), as MAE. out[0] (device double) = mean over the masked patches
 * (perm[b, i], n <= i < P; n < P) of mean_k (pred - target')^2. backward writes all of dpred: scale *
 * d out[0] / d pred on masked patch rows, 0 elsewhere (cls row, kept patches). */
void mae_loss_forward(Ctx* c, double* out, const float* pred, const float* target,
                      const int32_t* perm, int B, int P, int n, int K, int Tp, int t0,
                      int norm_pix);
void mae_loss_backward(Ctx* c, float* dpred, const float* pred, const float* target,
                       const int32_t* perm, int B, int P, int n, int K, int Tp, int t0,
                       int norm_pix, float scale);
/* Row L2 normalisation (F.normalize, eps 1e-12): out [N, C] = x / max(|x|, 1e-12); norm [N]
 * saved (the unclamped |x|). backward: dx = (dout - out (out . dout)) / |x| (dout / eps when
 * clamped). In place allowed (out == x; dx == dout). */
void l2norm_forward(Ctx* c, float* out, float* norm, const float* x, int N, int C);
void l2norm_backward(Ctx* c, float* dx, const float* dout, const float* out, const float* norm,
                     int N, int C);
/* InfoNCE / NT-Xent over N rows z [N, C] (L2-normalised, so s_ij = z_i . z_j is the cosine
 * similarity), positive pos int32 [N] (pos[i] != i), temperature tau:
 *   out[0] (device double) = mean_i ( log sum_{j != i} exp(s_ij / tau) - s_{i,pos(i)} / tau ).
 * The similarity matrix [N, N] comes from one sgemm into the context workspace (recomputed in
 * the backward). backward: dz = scale * dL/dz = scale (G + G^T) z / N with G_ij = (softmax_j(
 * s_ij / tau, j != i) - [j = pos(i)]) / tau, written. */
void infonce_forward(Ctx* c, double* out, const float* z, const int32_t* pos, int N, int C,
                     float tau);
void infonce_backward(Ctx* c, float* dz, const float* z, const int32_t* pos, int N, int C,
                      float tau, float scale);

#endif
