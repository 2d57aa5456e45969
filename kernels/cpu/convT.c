/* kernels/cpu/convT.c — transposed convolution with kernel = stride (no overlap).
 *
 * in [B, Ci, D, H, W], W [Ci, Co, fd, fh, fw] (nn.ConvTranspose3d layout), bias [Co] or NULL,
 * out [B, Co, D*fd, H*fh, W*fw]:
 *   out[b, o, z*fd+i, y*fh+j, x*fw+k] = bias[o] + Σ_c in[b,c,z,y,x] W[c,o,i,j,k]
 * Each input voxel owns its own fd x fh x fw output block, so the op is a per-voxel linear
 * map: with W viewed as [Ci, M = Co*F] (F = fd*fh*fw),
 *   Y [M, S] = Wᵀ · in_b [Ci, S]    (sgemm), then a scatter of Y into the output blocks.
 * The voxels go in blocks of rb (z, y) rows of one image, rb fixed by the shape so that a
 * block's Y is <= BLOCK_BYTES; one Y per thread in the workspace.
 * Backward: dY = gather of dout (the scatter's inverse), then per block
 *   din_b [Ci, blk] = W · dY             (written)
 *   dW  [Ci, M]    += Σ_blocks in_blk · dYᵀ  per-block partials summed in block order in
 *                                        double, then added to dW once (one fp32 rounding)
 *   dbias[o]       += Σ dout[b, o, :]    (double, fixed order)
 * Determinism as in conv3d.c: OpenBLAS's threaded sgemm is not bit-identical across thread
 * counts, so blocks are spread over OpenMP threads and each block's sgemm runs single-
 * threaded inside the parallel region (OpenMP build of OpenBLAS); block shapes depend only on
 * the problem shape, scatter/gather touch every element once.
 */
#include "cpu.h"
#include "blocks.h"
#include "../../engine/check.h"

#include <cblas.h>
#include <string.h>

#define BLOCK_BYTES ((size_t)512 << 10)   /* one block's Y */
static void check_convT_args(int B, int Ci, int Co, int D, int H, int Wd, int fd, int fh, int fw) {
    CHECK(B > 0 && Ci > 0 && Co > 0 && D > 0 && H > 0 && Wd > 0,
          "convT shape B=%d Ci=%d Co=%d D=%d H=%d W=%d", B, Ci, Co, D, H, Wd);
    /* sgemm dimensions and leading dimensions are int */
    CHECK((long)D * H * Wd <= 2147483647L, "convT volume of %ld voxels is too large for int BLAS sizes", (long)D * H * Wd);
    CHECK(fd > 0 && fh > 0 && fw > 0, "convT factors %dx%dx%d must be positive", fd, fh, fw);
}

/* dir 0: out rows <- Y (+ bias); dir 1: Y <- dout rows. Y is [M, (r1-r0)*W] for the input
 * rows r0 .. r1-1 of one image (outb: that image); every element of either side is touched
 * exactly once. */
static void block_copy(float* outb, float* Y, const float* bias, int dir, int Co, int D, int H,
                       int Wd, int fd, int fh, int fw, long r0, long r1) {
    const long Ho = (long)H * fh, Wo = (long)Wd * fw, Do = (long)D * fd;
    const long N = (r1 - r0) * Wd;
    for (long o = 0; o < Co; o++)
        for (long i = 0; i < fd; i++)
            for (long r = r0; r < r1; r++)
                for (long j = 0; j < fh; j++) {
                    const long z = r / H, y = r % H;
                    float* row = outb + ((o * Do + z * fd + i) * Ho + y * fh + j) * Wo;
                    /* Y row of (o, i, j, k) is ((o*fd + i)*fh + j)*fw + k; column (r-r0)*W + x */
                    float* yb = Y + (((o * fd + i) * fh + j) * fw) * N + (r - r0) * Wd;
                    if (dir == 0) {
                        const float bo = bias ? bias[o] : 0.0f;
                        for (long x = 0; x < Wd; x++)
                            for (int k = 0; k < fw; k++) row[x * fw + k] = yb[k * N + x] + bo;
                    } else {
                        for (long x = 0; x < Wd; x++)
                            for (int k = 0; k < fw; k++) yb[k * N + x] = row[x * fw + k];
                    }
                }
}

void cpu_convT_forward(Ctx* c, float* out, const float* in, const float* W, const float* bias,
                       int B, int Ci, int Co, int D, int H, int Wd, int fd, int fh, int fw) {
    check_convT_args(B, Ci, Co, D, H, Wd, fd, fh, fw);
    const long F = (long)fd * fh * fw, M = Co * F, S = (long)D * H * Wd, R = (long)D * H;
    const long rb = block_rows(BLOCK_BYTES, M, D, H, Wd), nb = (R + rb - 1) / rb, slot = M * rb * Wd;
    float* Y = (float*)ctx_workspace(c, (size_t)max_threads() * slot * sizeof(float));
    #pragma omp parallel
    {
        float* myY = Y + (size_t)thread_id() * slot;
        #pragma omp for schedule(static)
        for (long t = 0; t < B * nb; t++) {
            const long b = t / nb, r0 = t % nb * rb, r1 = r0 + rb < R ? r0 + rb : R;
            const long N = (r1 - r0) * Wd;
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)M, (int)N, Ci, 1.0f,
                        W, (int)M, in + b * Ci * S + r0 * Wd, (int)S, 0.0f, myY, (int)N);
            block_copy(out + b * Co * S * F, myY, bias, 0, Co, D, H, Wd, fd, fh, fw, r0, r1);
        }
    }
}

void cpu_convT_backward(Ctx* c, float* din, float* dW, float* dbias, const float* dout,
                        const float* in, const float* W, int B, int Ci, int Co, int D, int H,
                        int Wd, int fd, int fh, int fw) {
    check_convT_args(B, Ci, Co, D, H, Wd, fd, fh, fw);
    const long F = (long)fd * fh * fw, M = Co * F, S = (long)D * H * Wd, R = (long)D * H;
    const long So = S * F;
    if (dbias) bias_grad(dbias, dout, B, Co, So);
    if (!din && !dW) return;
    const long rb = block_rows(BLOCK_BYTES, M, D, H, Wd), nb = (R + rb - 1) / rb, ntask = B * nb;
    const long slot = M * rb * Wd, nW = Ci * M;
    const int nth = max_threads();
    const long wave = dW ? part_wave(nW, nth, ntask) : ntask;
    /* workspace: [dW sums (double) nW][partials wave*nW][dY slots] */
    const size_t b_acc = dW ? ALIGN64((size_t)nW * sizeof(double)) : 0;
    const size_t b_part = dW ? ALIGN64((size_t)wave * nW * sizeof(float)) : 0;
    char* ws = (char*)ctx_workspace(c, b_acc + b_part + (size_t)nth * slot * sizeof(float));
    double* acc = (double*)ws;
    float* part = (float*)(ws + b_acc);
    float* dY = (float*)(ws + b_acc + b_part);
    if (dW) memset(acc, 0, (size_t)nW * sizeof(double));
    for (long w0 = 0; w0 < ntask; w0 += wave) {
        const long w1 = w0 + wave < ntask ? w0 + wave : ntask;
        #pragma omp parallel
        {
            float* myY = dY + (size_t)thread_id() * slot;
            #pragma omp for schedule(static)
            for (long t = w0; t < w1; t++) {
                const long b = t / nb, r0 = t % nb * rb, r1 = r0 + rb < R ? r0 + rb : R;
                const long N = (r1 - r0) * Wd;
                /* dir 1 only reads dout */
                block_copy((float*)(dout + b * Co * So), myY, NULL, 1, Co, D, H, Wd, fd, fh, fw, r0, r1);
                if (din)
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Ci, (int)N, (int)M, 1.0f,
                                W, (int)M, myY, (int)N, 0.0f, din + b * Ci * S + r0 * Wd, (int)S);
                if (dW)
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Ci, (int)M, (int)N, 1.0f,
                                in + b * Ci * S + r0 * Wd, (int)S, myY, (int)N, 0.0f,
                                part + (t - w0) * nW, (int)M);
            }
            if (dW) add_parts(acc, part, nW, w1 - w0);
        }
    }
    if (dW) add_acc(dW, acc, nW);
}
