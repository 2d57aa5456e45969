/* kernels/cpu/masking.c — MAE token masking: gather the kept patch tokens by a per-image
 * permutation, and put tokens back in patch order with a mask token in the dropped rows.
 *
 * perm int32 [B, P]: per image a permutation of 0..P-1, the first n entries are kept (MAE's
 * ids_shuffle). Both ops are pure row copies (no arithmetic except the mask-token gradient
 * sum), so forward and backward are exact; threads own disjoint output rows. The mask-token
 * gradient is summed per channel over (b, i) in order in double: bits independent of the
 * thread count. Indices are checked (a bad permutation is an engine bug, not user input).
 */
#include "cpu.h"
#include "../../engine/check.h"

#include <string.h>

static void check_perm(const int32_t* perm, int B, int P) {
    for (long i = 0; i < (long)B * P; i++)
        CHECK(perm[i] >= 0 && perm[i] < P, "mask permutation entry %ld = %d outside 0..%d",
              i % P, perm[i], P - 1);
}

static void check_gather(const int32_t* perm, int B, int P, int n, int C) {
    CHECK(B > 0 && P > 0 && n >= 0 && n <= P && C > 0, "tokens_gather: B=%d P=%d n=%d C=%d", B, P, n, C);
    check_perm(perm, B, P);
}

void cpu_tokens_gather_forward(Ctx* c, float* out, const float* x, const int32_t* perm,
                               int B, int P, int n, int C) {
    (void)c;
    check_gather(perm, B, P, n, C);
    #pragma omp parallel for schedule(static)
    for (long bi = 0; bi < (long)B * n; bi++) {
        const long b = bi / n, i = bi % n;
        memcpy(out + bi * C, x + (b * P + perm[b * P + i]) * C, sizeof(float) * (size_t)C);
    }
}

void cpu_tokens_gather_backward(Ctx* c, float* dx, const float* dout, const int32_t* perm,
                                int B, int P, int n, int C) {
    (void)c;
    check_gather(perm, B, P, n, C);
    /* every row of dx is written exactly once: a permutation covers all P rows */
    #pragma omp parallel for schedule(static)
    for (long bi = 0; bi < (long)B * P; bi++) {
        const long b = bi / P, i = bi % P;
        float* d = dx + (b * P + perm[b * P + i]) * C;
        if (i < n) memcpy(d, dout + (b * n + i) * C, sizeof(float) * (size_t)C);
        else memset(d, 0, sizeof(float) * (size_t)C);
    }
}

static void check_unshuffle(const int32_t* perm, int B, int P, int n, int C, int t0, int Ts,
                            int s0) {
    CHECK(B > 0 && P > 0 && n >= 0 && n <= P && C > 0 && t0 >= 0 && t0 <= s0 && s0 + n <= Ts,
          "tokens_unshuffle: B=%d P=%d n=%d C=%d t0=%d Ts=%d s0=%d", B, P, n, C, t0, Ts, s0);
    check_perm(perm, B, P);
}

void cpu_tokens_unshuffle_forward(Ctx* c, float* out, const float* src, const float* fill,
                                  const int32_t* perm, int B, int P, int n, int C, int t0,
                                  int Ts, int s0) {
    (void)c;
    check_unshuffle(perm, B, P, n, C, t0, Ts, s0);
    const int To = t0 + P;
    const size_t row = sizeof(float) * (size_t)C;
    #pragma omp parallel for schedule(static)
    for (long bi = 0; bi < (long)B * To; bi++) {
        const long b = bi / To, i = bi % To;
        if (i < t0) { memcpy(out + bi * C, src + (b * Ts + i) * C, row); continue; }
        const long k = i - t0;                       /* k-th entry of the permutation */
        float* o = out + (b * To + t0 + perm[b * P + k]) * C;
        if (k < n) memcpy(o, src + (b * Ts + s0 + k) * C, row);
        else memcpy(o, fill, row);
    }
}

void cpu_tokens_unshuffle_backward(Ctx* c, float* dsrc, float* dfill, const float* dout,
                                   const int32_t* perm, int B, int P, int n, int C, int t0,
                                   int Ts, int s0) {
    (void)c;
    check_unshuffle(perm, B, P, n, C, t0, Ts, s0);
    const int To = t0 + P;
    const size_t row = sizeof(float) * (size_t)C;
    if (dsrc) {
        #pragma omp parallel for schedule(static)
        for (long bi = 0; bi < (long)B * Ts; bi++) {
            const long b = bi / Ts, i = bi % Ts;
            float* d = dsrc + bi * C;
            if (i < t0) memcpy(d, dout + (b * To + i) * C, row);
            else if (i >= s0 && i < s0 + n)
                memcpy(d, dout + (b * To + t0 + perm[b * P + (i - s0)]) * C, row);
            else memset(d, 0, row);
        }
    }
    if (dfill && n < P) {
        #pragma omp parallel for schedule(static)
        for (int ch = 0; ch < C; ch++) {
            double acc = 0.0;
            for (int b = 0; b < B; b++)
                for (int k = n; k < P; k++) acc += dout[((long)b * To + t0 + perm[(long)b * P + k]) * C + ch];
            dfill[ch] += (float)acc;
        }
    }
}
