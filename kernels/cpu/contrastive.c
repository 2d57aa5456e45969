/* kernels/cpu/contrastive.c — row L2 normalisation and the InfoNCE / NT-Xent loss.
 *
 * l2norm: out = x / max(|x|, 1e-12) per row (F.normalize), |x| in double, saved for backward:
 *   dx = (dout - out (out . dout)) / |x|; where |x| was clamped the map is x / eps, linear,
 *   so dx = dout / eps.
 * InfoNCE over N L2-normalised rows z [N, C], positive pos[i], temperature tau: the cosine
 * similarities are S = z z^T (one sgemm into the context workspace, [N, N] floats), and
 *   loss = 1/N sum_i ( lse_i - S[i, pos i] / tau ),  lse_i = log sum_{j != i} exp(S_ij / tau)
 * (the max-shifted sum in double). With P_ij = exp(S_ij / tau - lse_i) (P_ii = 0),
 *   dL/dS_ij = (P_ij - [j = pos i]) / (tau N) =: G_ij,  and S symmetric in z gives
 *   dz = (G + G^T) z,  one more sgemm. The backward recomputes S (N^2 C flops, the same as the
 *   final product) instead of keeping an [N, N] buffer alive between passes.
 * sgemm is called outside OpenMP regions (see cpu.h); the row loops are per row, the loss sum
 * in row order, so the value depends on the thread count only through sgemm.
 */
#include "cpu.h"
#include "../../engine/check.h"

#include <cblas.h>
#include <math.h>

#define L2_EPS 1e-12

void cpu_l2norm_forward(Ctx* c, float* out, float* norm, const float* x, int N, int C) {
    (void)c;
    CHECK(N > 0 && C > 0, "l2norm: N=%d C=%d", N, C);
    #pragma omp parallel for schedule(static)
    for (long i = 0; i < N; i++) {
        const float* xr = x + i * C;
        double s = 0.0;
        for (int k = 0; k < C; k++) s += (double)xr[k] * xr[k];
        double nr = sqrt(s), den = nr > L2_EPS ? nr : L2_EPS;
        norm[i] = (float)nr;
        for (int k = 0; k < C; k++) out[i * C + k] = (float)(xr[k] / den);
    }
}

void cpu_l2norm_backward(Ctx* c, float* dx, const float* dout, const float* out,
                         const float* norm, int N, int C) {
    (void)c;
    CHECK(N > 0 && C > 0, "l2norm: N=%d C=%d", N, C);
    #pragma omp parallel for schedule(static)
    for (long i = 0; i < N; i++) {
        const float *o = out + i * C, *d = dout + i * C;
        float* r = dx + i * C;
        if (!(norm[i] > L2_EPS)) {
            for (int k = 0; k < C; k++) r[k] = (float)(d[k] / L2_EPS);
            continue;
        }
        double dot = 0.0;
        for (int k = 0; k < C; k++) dot += (double)o[k] * d[k];
        for (int k = 0; k < C; k++) r[k] = (float)((d[k] - o[k] * dot) / norm[i]);
    }
}

/* checks, workspace (S [N, N] floats, then lse [N] doubles at an 8-byte aligned offset),
 * S = z z^T and per row i lse_i = log sum_{j != i} exp(S_ij / tau) in double */
static void sim_lse(Ctx* c, float** Sp, double** lsep, const float* z, const int32_t* pos,
                    int N, int C, float tau) {
    CHECK(N >= 2 && C > 0 && tau > 0, "infonce: N=%d C=%d tau=%g", N, C, tau);
    for (int i = 0; i < N; i++)
        CHECK(pos[i] >= 0 && pos[i] < N && pos[i] != i, "infonce: pos[%d] = %d", i, pos[i]);
    size_t nS = ((size_t)N * N + 1) & ~(size_t)1;
    float* S = (float*)ctx_workspace(c, sizeof(float) * nS + sizeof(double) * (size_t)N);
    double* lse = (double*)(S + nS);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, N, C, 1.0f, z, C, z, C, 0.0f, S, N);
    #pragma omp parallel for schedule(static)
    for (long i = 0; i < N; i++) {
        const float* s = S + i * N;
        double mx = -INFINITY, acc = 0.0;
        for (int j = 0; j < N; j++) if (j != i && s[j] / (double)tau > mx) mx = s[j] / (double)tau;
        for (int j = 0; j < N; j++) if (j != i) acc += exp(s[j] / (double)tau - mx);
        lse[i] = mx + log(acc);
    }
    *Sp = S;
    *lsep = lse;
}

void cpu_infonce_forward(Ctx* c, double* out, const float* z, const int32_t* pos, int N, int C,
                         float tau) {
    float* S;
    double* lse;
    sim_lse(c, &S, &lse, z, pos, N, C, tau);
    double s = 0.0;
    for (int i = 0; i < N; i++) s += lse[i] - S[(size_t)i * N + pos[i]] / (double)tau;
    out[0] = s / N;
}

void cpu_infonce_backward(Ctx* c, float* dz, const float* z, const int32_t* pos, int N, int C,
                          float tau, float scale) {
    float* S;
    double* lse;
    sim_lse(c, &S, &lse, z, pos, N, C, tau);
    const double g = (double)scale / ((double)tau * N);
    #pragma omp parallel for schedule(static)
    for (long i = 0; i < N; i++) {
        float* s = S + i * N;
        for (int j = 0; j < N; j++)
            s[j] = j == i ? 0.0f : (float)(g * (exp(s[j] / (double)tau - lse[i]) - (j == pos[i])));
    }
    /* G + G^T in place: each unordered pair once */
    #pragma omp parallel for schedule(static)
    for (long i = 0; i < N; i++)
        for (long j = i + 1; j < N; j++) {
            float v = S[i * N + j] + S[j * N + i];
            S[i * N + j] = v;
            S[j * N + i] = v;
        }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, C, N, 1.0f, S, N, z, C, 0.0f, dz, C);
}
