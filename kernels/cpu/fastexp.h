/* kernels/cpu/fastexp.h — an inline, branch-free expf that GCC vectorises inside
 * `#pragma omp simd` loops (no libm call, no table lookup).
 *
 * exp(x) = 2^n · e^r with n = round(x·log2 e) and r = x − n·ln2 (Cody–Waite: ln2 split into
 * C1 = 0.693359375, exact in 9 bits so n·C1 is exact for |n| < 2^15, and C2 = ln2 − C1), so
 * |r| ≤ ln2/2; e^r = 1 + r + r²·P(r) with P the degree-5 minimax polynomial of Cephes expf
 * (relative error of the polynomial ≲ 2e-9; the result is within ~2 ulp, i.e. ≤ 1.2e-7
 * relative, measured in tests/test_mmd_kernel.c). round() is the 1.5·2^23 trick (exact for
 * |x·log2e| < 2^22; needs strict IEEE evaluation, i.e. no -ffast-math). 2^n is built in the
 * exponent field. Range: x < −87 returns 0 (results below e^-87 ≈ 1.6e-38, never a
 * denormal); x > 88 overflows to garbage, so callers pass x ≤ 0 (here x = −γ·d², γ, d² ≥ 0).
 * NaN in, NaN out.
 */
#ifndef VITA_FASTEXP_H
#define VITA_FASTEXP_H

#include <stdint.h>

static inline float vita_fast_expf(float x) {
    const float log2e = 1.44269504088896341f;
    const float C1 = 0.693359375f, C2 = -2.12194440e-4f;
    const float magic = 12582912.0f; /* 1.5 * 2^23 */
    float xc = x < -87.0f ? -87.0f : x;
    float fn = (xc * log2e + magic) - magic;   /* round to nearest integer */
    float r = xc - fn * C1;
    r = r - fn * C2;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float y = p * (r * r) + r + 1.0f;
    union { int32_t i; float f; } sc;
    sc.i = ((int32_t)fn + 127) << 23;
    y = y * sc.f;
    return x < -87.0f ? 0.0f : y;
}

#endif
