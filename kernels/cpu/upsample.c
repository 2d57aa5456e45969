/* kernels/cpu/upsample.c — upsampling by integer factors per axis, as F.interpolate.
 *
 * in [B, C, D, H, W] -> out [B, C, D*fd, H*fh, W*fw]. Both modes are separable: along each
 * axis (length L, factor f) output index o reads
 *   UPS_NEAREST: in[o / f]                                  (floor(o * L / (L f)))
 *   UPS_LINEAR:  src = max(0, (o + 0.5)/f - 0.5), i0 = floor(src), i1 = min(i0 + 1, L - 1),
 *                l1 = src - i0: (1 - l1) in[i0] + l1 in[i1]  (align_corners = False)
 * and the 3D value is the tensor product (trilinear; bilinear/linear when factors are 1,
 * which is the identity along that axis). Forward: a direct gather per output element.
 * Backward is the exact transpose, applied axis by axis (W, then H, then D), each pass a
 * gather over the few outputs that read a given input index (o in [(i-1)f, (i+2)f)), summed
 * in increasing o: no scatter races and a fixed order for any thread count. The two
 * intermediate volumes live in the workspace; (b, c) planes go in groups so that it stays
 * <= TMP_BYTES.
 */
#include "cpu.h"
#include "../../engine/check.h"

#include <string.h>

#define TMP_BYTES ((size_t)64 << 20)

static void check_ups_args(int B, int C, int D, int H, int W, int fd, int fh, int fw, int mode) {
    CHECK(B > 0 && C > 0 && D > 0 && H > 0 && W > 0, "upsample B=%d C=%d D=%d H=%d W=%d",
          B, C, D, H, W);
    CHECK(fd > 0 && fh > 0 && fw > 0, "upsample factors %dx%dx%d", fd, fh, fw);
    CHECK(mode == UPS_NEAREST || mode == UPS_LINEAR, "upsample mode %d", mode);
}

/* source indices and weights of output index o along an axis of input length L */
static inline void coef(long o, int f, long L, int mode, long* i0, long* i1, float* l0, float* l1) {
    if (mode == UPS_NEAREST) { *i0 = *i1 = o / f; *l0 = 1.0f; *l1 = 0.0f; return; }
    double src = (o + 0.5) / f - 0.5;
    if (src < 0) src = 0;
    long a = (long)src;              /* floor: src >= 0; a <= L-1 since src < L - 1/2 */
    *i0 = a;
    *i1 = a < L - 1 ? a + 1 : a;
    *l1 = (float)(src - a);
    *l0 = 1.0f - *l1;
}

void cpu_upsample_forward(Ctx* c, float* out, const float* in, int B, int C, int D, int H, int W,
                          int fd, int fh, int fw, int mode) {
    (void)c;
    check_ups_args(B, C, D, H, W, fd, fh, fw, mode);
    const long Do = (long)D * fd, Ho = (long)H * fh, Wo = (long)W * fw;
    const long nrow = (long)B * C * Do * Ho;
    #pragma omp parallel for schedule(static)
    for (long t = 0; t < nrow; t++) {
        const long oh = t % Ho, od = t / Ho % Do, bc = t / (Ho * Do);
        long d0, d1, h0, h1;
        float ld0, ld1, lh0, lh1;
        coef(od, fd, D, mode, &d0, &d1, &ld0, &ld1);
        coef(oh, fh, H, mode, &h0, &h1, &lh0, &lh1);
        const float* p = in + bc * D * H * W;
        const float* r00 = p + (d0 * H + h0) * W;
        const float* r01 = p + (d0 * H + h1) * W;
        const float* r10 = p + (d1 * H + h0) * W;
        const float* r11 = p + (d1 * H + h1) * W;
        float* o = out + t * Wo;
        for (long ow = 0; ow < Wo; ow++) {
            long w0, w1;
            float lw0, lw1;
            coef(ow, fw, W, mode, &w0, &w1, &lw0, &lw1);
            o[ow] = ld0 * (lh0 * (lw0 * r00[w0] + lw1 * r00[w1]) + lh1 * (lw0 * r01[w0] + lw1 * r01[w1]))
                  + ld1 * (lh0 * (lw0 * r10[w0] + lw1 * r10[w1]) + lh1 * (lw0 * r11[w0] + lw1 * r11[w1]));
        }
    }
}

/* transpose along one axis: src viewed [outer, Lo, inner] -> dst [outer, L, inner], Lo = L f */
static void axis_transpose(float* dst, const float* src, long outer, long L, int f, long inner,
                           int mode) {
    const long Lo = L * f;
    #pragma omp parallel for schedule(static)
    for (long t = 0; t < outer * L; t++) {
        const long i = t % L, q = t / L;
        float* d = dst + t * inner;
        for (long j = 0; j < inner; j++) d[j] = 0.0f;
        const long o0 = (i - 1) * f > 0 ? (i - 1) * f : 0, o1 = (i + 2) * f < Lo ? (i + 2) * f : Lo;
        for (long o = o0; o < o1; o++) {
            long i0, i1;
            float l0, l1;
            coef(o, f, L, mode, &i0, &i1, &l0, &l1);
            const float wgt = (i0 == i ? l0 : 0.0f) + (i1 == i ? l1 : 0.0f);
            if (wgt == 0.0f) continue;
            const float* s = src + (q * Lo + o) * inner;
            for (long j = 0; j < inner; j++) d[j] += wgt * s[j];
        }
    }
}

void cpu_upsample_backward(Ctx* c, float* din, const float* dout, int B, int C, int D, int H,
                           int W, int fd, int fh, int fw, int mode) {
    check_ups_args(B, C, D, H, W, fd, fh, fw, mode);
    const long Do = (long)D * fd, Ho = (long)H * fh, Wo = (long)W * fw;
    const long So = Do * Ho * Wo, S = (long)D * H * W, BC = (long)B * C;
    /* per-plane intermediates, only where a pass is followed by another */
    const long n1 = (fw > 1 && (fh > 1 || fd > 1)) ? Do * Ho * W : 0;
    const long n2 = (fh > 1 && fd > 1) ? Do * H * W : 0;
    long g = n1 + n2 ? (long)(TMP_BYTES / ((size_t)(n1 + n2) * sizeof(float))) : BC;
    if (g < 1) g = 1;
    if (g > BC) g = BC;
    float* t1 = n1 + n2 ? (float*)ctx_workspace(c, (size_t)g * (n1 + n2) * sizeof(float)) : NULL;
    float* t2 = t1 ? t1 + g * n1 : NULL;
    for (long p0 = 0; p0 < BC; p0 += g) {
        const long np = p0 + g < BC ? g : BC - p0;
        const float* cur = dout + p0 * So;
        float* dst = din + p0 * S;
        if (fw > 1) {
            float* nxt = (fh > 1 || fd > 1) ? t1 : dst;
            axis_transpose(nxt, cur, np * Do * Ho, W, fw, 1, mode);
            cur = nxt;
        }
        if (fh > 1) {
            float* nxt = fd > 1 ? t2 : dst;
            axis_transpose(nxt, cur, np * Do, H, fh, W, mode);
            cur = nxt;
        }
        if (fd > 1) axis_transpose(dst, cur, np, D, fd, (long)H * W, mode);
        if (fw == 1 && fh == 1 && fd == 1) memcpy(dst, cur, (size_t)np * S * sizeof(float));
    }
}
