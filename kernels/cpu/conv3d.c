/* kernels/cpu/conv3d.c — 3D (and 2D: D = kd = 1) convolution, stride 1, zero padding k/2.
 *
 * in [B, Ci, D, H, W], W [Co, Ci, kd, kh, kw] (nn.Conv3d layout), out [B, Co, D, H, W]:
 *   out[b,o,z,y,x] = bias[o] + Σ_{i,dz,dy,dx} W[o,i,dz,dy,dx] in[b,i, z+dz-pd, y+dy-ph, x+dx-pw]
 * with pd = kd/2 (odd kernels) and zero outside the volume.
 *
 * Kernels with more than one tap on rows of >= 8 voxels run conv3d_direct.c where the CPU has
 * AVX2 or AVX-512 (use_direct); everything else, and every CPU without them, runs the
 * reference below.
 *
 * im2col + sgemm on blocks: a "row" is one (z, y) pair of W voxels, a block is rb rows of one
 * image, rb fixed by the shape so that the block's column matrix col [K = Ci*kd*kh*kw, rb*W]
 * is <= BLOCK_BYTES (L2-sized: im2col writes it and the sgemm reads it while warm). Row k =
 * ((i*kd + dz)*kh + dy)*kw + dx of col (the flattened weight order) holds the input shifted by
 * (dz, dy, dx). Then out[b, :, block] = W [Co, K] · col (ldc = S). The workspace is one col
 * per thread, so it stays small for any volume (unchunked, a 3x3x3 conv with 32 channels on
 * 32x64x64 would need a 450 MB col matrix). 1x1x1 kernels use the input itself as col.
 *
 * Backward (ops.h: inputs written, parameters accumulated):
 *   dbias[o] += Σ_{b,s} dout[b,o,s]          double, fixed order per channel
 *   dW       += Σ_blocks dout_blk · col_blkᵀ  each block's product is a partial [Co, K];
 *                                             the partials are summed in block order in
 *                                             double, then added to dW once
 *   din       = conv(dout, W') with W'[i,o,k] = W[o,i,kvol-1-k]: the adjoint of a stride-1
 *               "same" convolution with odd kernel is the convolution with the flipped,
 *               channel-transposed kernel (same padding), so the forward code is reused.
 * Determinism: OpenBLAS's own threading does not give the same bits for every thread count
 * (measured on these shapes), so the blocks are distributed over OpenMP threads and each
 * block's sgemm runs single-threaded inside the parallel region (the OpenMP build of
 * OpenBLAS, which the Makefile links, runs calls made inside a parallel region on the calling
 * thread). Every output element then comes from one sgemm call whose shape depends only on
 * the problem shape, and the dW partials are reduced in a fixed order.
 */
#include "cpu.h"
#include "blocks.h"
#include "../../engine/check.h"

#include <cblas.h>
#include <string.h>

#define BLOCK_BYTES ((size_t)1 << 20)     /* one block's column matrix */

static int g_direct = 1;
void cpu_conv3d_set_direct(int mode) { g_direct = mode; }
/* the direct kernel (conv3d_direct.c) for kernels with more than one tap on rows of >= 8
 * voxels (UNETR shapes, 2 threads: 4³ planes measured up to 2x slower than im2col + sgemm,
 * 8³ about even to 1.5x faster, 16³ and up 1.5-2.5x faster) */
static int use_direct(int kd, int kh, int kw, int Wd) {
    if (!g_direct || kd * kh * kw == 1 || Wd < 8) return 0;
    const int isa = conv3d_direct_available();
    return g_direct == 2 && isa > 1 ? 1 : isa;   /* the instruction set, 0: im2col */
}

static void check_conv_args(int B, int Ci, int Co, int D, int H, int Wd, int kd, int kh, int kw) {
    CHECK(B > 0 && Ci > 0 && Co > 0 && D > 0 && H > 0 && Wd > 0,
          "conv3d shape B=%d Ci=%d Co=%d D=%d H=%d W=%d", B, Ci, Co, D, H, Wd);
    /* sgemm dimensions and leading dimensions are int */
    CHECK((long)D * H * Wd <= 2147483647L, "conv3d volume of %ld voxels is too large for int BLAS sizes", (long)D * H * Wd);
    CHECK(kd > 0 && kh > 0 && kw > 0 && (kd & 1) && (kh & 1) && (kw & 1),
          "conv3d kernel %dx%dx%d must be odd (padding k/2 keeps the size)", kd, kh, kw);
}

/* col [K, (r1-r0)*W] from one image [Ci, D, H, W], output rows r0 .. r1-1 */
static void im2col(float* col, const float* in, int Ci, int D, int H, int Wd,
                   int kd, int kh, int kw, long r0, long r1) {
    const int pd = kd / 2, ph = kh / 2, pw = kw / 2;
    float* dst = col;
    for (long ci = 0; ci < Ci; ci++)
        for (int dz = 0; dz < kd; dz++)
            for (int dy = 0; dy < kh; dy++)
                for (int dx = 0; dx < kw; dx++) {
                    const int s = dx - pw;                 /* dst[x] = src[x + s] where in range */
                    int x0 = s < 0 ? -s : 0, x1 = s > 0 ? Wd - s : Wd;
                    if (x0 > Wd) x0 = Wd;
                    if (x1 < x0) x1 = x0;
                    for (long r = r0; r < r1; r++, dst += Wd) {
                        const long z = r / H + dz - pd, y = r % H + dy - ph;
                        if (z < 0 || z >= D || y < 0 || y >= H) {
                            memset(dst, 0, (size_t)Wd * sizeof(float));
                            continue;
                        }
                        const float* src = in + ((ci * D + z) * H + y) * Wd;
                        /* memcpy: the element loop compiles to a scalar copy (src and dst
                         * could alias as far as the compiler knows); it was half of im2col */
                        for (int x = 0; x < x0; x++) dst[x] = 0.0f;
                        memcpy(dst + x0, src + x0 + s, (size_t)(x1 - x0) * sizeof(float));
                        for (int x = x1; x < Wd; x++) dst[x] = 0.0f;
                    }
                }
}

/* the forward; col holds one [K, rb*W] slot per thread */
static void conv_fwd(float* out, const float* in, const float* W, const float* bias,
                     int B, int Ci, int Co, int D, int H, int Wd, int kd, int kh, int kw,
                     float* col, long rb) {
    const long S = (long)D * H * Wd, R = (long)D * H, K = (long)Ci * kd * kh * kw;
    const long nb = (R + rb - 1) / rb;
    const int one = kd * kh * kw == 1;
    #pragma omp parallel
    {
        float* mycol = one ? NULL : col + (size_t)thread_id() * K * rb * Wd;
        #pragma omp for schedule(static)
        for (long t = 0; t < B * nb; t++) {
            const long b = t / nb, r0 = t % nb * rb, r1 = r0 + rb < R ? r0 + rb : R;
            const long N = (r1 - r0) * Wd;
            float* ob = out + b * Co * S + r0 * Wd;
            const float* ib = in + b * Ci * S;
            if (bias)   /* pre-fill with the bias and let sgemm accumulate onto it */
                for (int o = 0; o < Co; o++)
                    for (long s = 0; s < N; s++) ob[o * S + s] = bias[o];
            const float* cb = one ? ib + r0 * Wd : mycol;
            if (!one) im2col(mycol, ib, Ci, D, H, Wd, kd, kh, kw, r0, r1);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Co, (int)N, (int)K, 1.0f,
                        W, (int)K, cb, (int)(one ? S : N), bias ? 1.0f : 0.0f, ob, (int)S);
        }
    }
}

void cpu_conv3d_forward(Ctx* c, float* out, const float* in, const float* W, const float* bias,
                        int B, int Ci, int Co, int D, int H, int Wd, int kd, int kh, int kw) {
    check_conv_args(B, Ci, Co, D, H, Wd, kd, kh, kw);
    const int isa = use_direct(kd, kh, kw, Wd);
    if (isa) {
        void* ws = ctx_workspace(c, conv3d_direct_ws_bytes(Ci, Co, H, Wd, kd, kh, kw));
        conv3d_direct(isa, out, in, W, 0, bias, B, Ci, Co, D, H, Wd, kd, kh, kw, ws);
        return;
    }
    const long K = (long)Ci * kd * kh * kw, rb = block_rows(BLOCK_BYTES, K, D, H, Wd);
    float* col = kd * kh * kw == 1 ? NULL
               : (float*)ctx_workspace(c, (size_t)max_threads() * K * rb * Wd * sizeof(float));
    conv_fwd(out, in, W, bias, B, Ci, Co, D, H, Wd, kd, kh, kw, col, rb);
}

void cpu_conv3d_backward(Ctx* c, float* din, float* dW, float* dbias, const float* dout,
                         const float* in, const float* W, int B, int Ci, int Co, int D, int H,
                         int Wd, int kd, int kh, int kw) {
    check_conv_args(B, Ci, Co, D, H, Wd, kd, kh, kw);
    const long S = (long)D * H * Wd, R = (long)D * H, kvol = (long)kd * kh * kw;
    const long K = Ci * kvol, K2 = Co * kvol;      /* col rows for dW (of in), din (of dout) */
    const int isa = use_direct(kd, kh, kw, Wd);
    if (isa) {   /* conv3d_direct.c; one workspace, used by din then dW */
        const size_t bd = din ? conv3d_direct_ws_bytes(Co, Ci, H, Wd, kd, kh, kw) : 0;
        const size_t bw = dW ? conv3d_direct_dw_ws_bytes(H, Wd, kd, kh, kw) : 0;
        void* ws = ctx_workspace(c, bd > bw ? bd : bw);
        if (dbias) bias_grad(dbias, dout, B, Co, S);
        if (din) conv3d_direct(isa, din, dout, W, 1, NULL, B, Co, Ci, D, H, Wd, kd, kh, kw, ws);
        if (dW) conv3d_direct_dw(isa, dW, dout, in, B, Ci, Co, D, H, Wd, kd, kh, kw, ws);
        return;
    }
    const long rb1 = block_rows(BLOCK_BYTES, K, D, H, Wd);
    const long rb2 = block_rows(BLOCK_BYTES, K2, D, H, Wd);
    const long nb = (R + rb1 - 1) / rb1, ntask = B * nb, nW = Co * K;
    const int nth = max_threads();
    const long wave = part_wave(nW, nth, ntask);

    /* workspace: [dW sums (double) nW][partials wave*nW][W' Ci*K2][col slots] */
    const size_t b_acc = dW ? ALIGN64((size_t)nW * sizeof(double)) : 0;
    const size_t b_part = dW ? ALIGN64((size_t)wave * nW * sizeof(float)) : 0;
    const size_t b_wf = din ? ALIGN64((size_t)Ci * K2 * sizeof(float)) : 0;
    const size_t slot = (size_t)(K * rb1 > K2 * rb2 ? K * rb1 : K2 * rb2) * Wd;
    const size_t b_col = kvol == 1 ? 0 : (size_t)nth * slot * sizeof(float);
    char* ws = (char*)ctx_workspace(c, b_acc + b_part + b_wf + b_col + 64);
    double* acc = (double*)ws;
    float* part = (float*)(ws + b_acc);
    float* Wf = (float*)(ws + b_acc + b_part);
    float* col = (float*)(ws + b_acc + b_part + b_wf);

    if (dbias) bias_grad(dbias, dout, B, Co, S);
    if (dW) {
        memset(acc, 0, (size_t)nW * sizeof(double));
        for (long w0 = 0; w0 < ntask; w0 += wave) {
            const long w1 = w0 + wave < ntask ? w0 + wave : ntask;
            #pragma omp parallel
            {
                float* mycol = kvol == 1 ? NULL : col + (size_t)thread_id() * slot;
                #pragma omp for schedule(static)
                for (long t = w0; t < w1; t++) {
                    const long b = t / nb, r0 = t % nb * rb1, r1 = r0 + rb1 < R ? r0 + rb1 : R;
                    const long N = (r1 - r0) * Wd;
                    const float* ib = in + b * Ci * S;
                    const float* cb = kvol == 1 ? ib + r0 * Wd : mycol;
                    if (kvol != 1) im2col(mycol, ib, Ci, D, H, Wd, kd, kh, kw, r0, r1);
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Co, (int)K, (int)N, 1.0f,
                                dout + b * Co * S + r0 * Wd, (int)S, cb, (int)(kvol == 1 ? S : N),
                                0.0f, part + (t - w0) * nW, (int)K);
                }
                add_parts(acc, part, nW, w1 - w0);
            }
        }
        add_acc(dW, acc, nW);
    }
    if (din) {
        #pragma omp parallel for schedule(static)
        for (long ik = 0; ik < Ci * K2; ik++) {     /* W'[i, o, k] = W[o, i, kvol-1-k] */
            const long i = ik / K2, o = ik % K2 / kvol, k = ik % kvol;
            Wf[ik] = W[(o * Ci + i) * kvol + (kvol - 1 - k)];
        }
        conv_fwd(din, dout, Wf, NULL, B, Co, Ci, D, H, Wd, kd, kh, kw, col, rb2);
    }
}
