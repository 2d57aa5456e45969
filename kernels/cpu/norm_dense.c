/* kernels/cpu/norm_dense.c — instance norm and batch norm on volumes [B, C, S], PyTorch
 * semantics (nn.InstanceNorm3d(affine) and nn.BatchNorm1d/2d/3d).
 *
 * Both normalise xhat = (x - mean) * rstd, rstd = 1/sqrt(var + eps), var biased, and apply
 * out = xhat * w + b (w, b NULL: 1, 0). Instance norm takes the statistics per (b, c) over S;
 * batch norm per channel over (B, S) in training, and from run_mean/run_var in eval. Statistics
 * are two-pass (mean, then centred squares) in double; per-element math is fp32.
 *
 * Backward with g = dout * w, n the count behind the statistics:
 *   dx = rstd (g - mean(g) - xhat mean(g xhat))      batch statistics (written)
 *   dx = rstd g                                      eval-mode batch norm: the statistics are
 *                                                    constants, so only the affine scaling
 *   dw += Σ dout xhat,  db += Σ dout                 (accumulated: parameters)
 * Determinism: every sum runs in a fixed order in double; instance-norm partial sums per
 * (b, c) are stored and reduced over b in order 0..B-1, batch-norm sums are per channel. The
 * dx pass reads dout element by element before writing the same index, so dx may alias dout.
 */
#include "cpu.h"
#include "../../engine/check.h"

#include <math.h>

/* mean and centred sum of squares of nrow rows of S floats spaced rs apart (instance norm:
 * one row; batch norm: the channel's row in each image), two passes in double */
static void stats2(const float* x, int nrow, long S, long rs, double* mean, double* m2) {
    double s = 0.0;
    for (int r = 0; r < nrow; r++) {
        const float* p = x + r * rs;
        for (long i = 0; i < S; i++) s += p[i];
    }
    const double m = s / ((double)nrow * S);
    double v = 0.0;
    for (int r = 0; r < nrow; r++) {
        const float* p = x + r * rs;
        for (long i = 0; i < S; i++) { const double d = p[i] - m; v += d * d; }
    }
    *mean = m;
    *m2 = v;
}

static inline void norm_row(float* o, const float* x, long S, float m, float r, float w, float b) {
    for (long i = 0; i < S; i++) o[i] = (x[i] - m) * r * w + b;
}

/* ---- instance norm ---------------------------------------------------------------------- */
void cpu_instnorm_forward(Ctx* c, float* out, float* mean, float* rstd, const float* x,
                          const float* w, const float* b, int B, int C, long S, float eps) {
    (void)c;
    CHECK(B > 0 && C > 0 && S > 0, "instnorm B=%d C=%d S=%ld", B, C, S);
    #pragma omp parallel for schedule(static)
    for (long bc = 0; bc < (long)B * C; bc++) {
        const int ch = (int)(bc % C);
        double m, m2;
        stats2(x + bc * S, 1, S, 0, &m, &m2);
        const float mf = (float)m, rf = (float)(1.0 / sqrt(m2 / S + (double)eps));
        norm_row(out + bc * S, x + bc * S, S, mf, rf, w ? w[ch] : 1.0f, b ? b[ch] : 0.0f);
        if (mean) mean[bc] = mf;
        if (rstd) rstd[bc] = rf;
    }
}

void cpu_instnorm_backward(Ctx* c, float* dx, float* dw, float* db, const float* dout,
                           const float* x, const float* w, const float* mean, const float* rstd,
                           int B, int C, long S) {
    CHECK(B > 0 && C > 0 && S > 0, "instnorm B=%d C=%d S=%ld", B, C, S);
    const long BC = (long)B * C;
    double* sums = (double*)ctx_workspace(c, 2 * (size_t)BC * sizeof(double)); /* Σg, Σg·xhat */
    #pragma omp parallel for schedule(static)
    for (long bc = 0; bc < BC; bc++) {
        const float* g = dout + bc * S;
        const float* xr = x + bc * S;
        const float m = mean[bc], r = rstd[bc];
        double sg = 0.0, sgx = 0.0;
        for (long i = 0; i < S; i++) {
            sg += g[i];
            sgx += (double)g[i] * ((xr[i] - m) * r);
        }
        sums[2 * bc] = sg;
        sums[2 * bc + 1] = sgx;
    }
    if (dw || db) {
        for (int ch = 0; ch < C; ch++) {   /* C x B doubles: serial, fixed order */
            double aw = 0.0, ab = 0.0;
            for (int bb = 0; bb < B; bb++) {
                ab += sums[2 * ((long)bb * C + ch)];
                aw += sums[2 * ((long)bb * C + ch) + 1];
            }
            if (dw) dw[ch] += (float)aw;
            if (db) db[ch] += (float)ab;
        }
    }
    if (!dx) return;
    #pragma omp parallel for schedule(static)
    for (long bc = 0; bc < BC; bc++) {
        const float wc = w ? w[bc % C] : 1.0f;
        const float m = mean[bc], r = rstd[bc];
        const float mg = (float)(wc * sums[2 * bc] / S), mgx = (float)(wc * sums[2 * bc + 1] / S);
        const float* g = dout + bc * S;
        const float* xr = x + bc * S;
        float* d = dx + bc * S;
        for (long i = 0; i < S; i++) d[i] = r * (g[i] * wc - mg - (xr[i] - m) * r * mgx);
    }
}

/* ---- batch norm ------------------------------------------------------------------------- */
void cpu_batchnorm_forward(Ctx* c, float* out, float* mean, float* rstd, float* run_mean,
                           float* run_var, const float* x, const float* w, const float* b,
                           int B, int C, long S, float eps, float momentum, int training) {
    CHECK(B > 0 && C > 0 && S > 0, "batchnorm B=%d C=%d S=%ld", B, C, S);
    const double n = (double)B * S;
    /* per-channel (mean, rstd) as floats, shared by the normalisation pass */
    float* st = (float*)ctx_workspace(c, 2 * (size_t)C * sizeof(float));
    if (training) {
        /* torch raises for one value per channel: the unbiased variance would divide by 0 */
        CHECK(n > 1, "batchnorm training needs more than one value per channel (B*S=%.0f)", n);
        #pragma omp parallel for schedule(static)
        for (int ch = 0; ch < C; ch++) {
            double m, m2;
            stats2(x + (long)ch * S, B, S, (long)C * S, &m, &m2);
            st[2 * ch] = (float)m;
            st[2 * ch + 1] = (float)(1.0 / sqrt(m2 / n + (double)eps));
            if (run_mean) run_mean[ch] = (float)((1.0 - momentum) * run_mean[ch] + momentum * m);
            if (run_var)
                run_var[ch] = (float)((1.0 - momentum) * run_var[ch] + momentum * (m2 / (n - 1)));
        }
    } else {
        CHECK(run_mean && run_var, "batchnorm eval needs run_mean and run_var");
        for (int ch = 0; ch < C; ch++) {
            st[2 * ch] = run_mean[ch];
            st[2 * ch + 1] = (float)(1.0 / sqrt((double)run_var[ch] + (double)eps));
        }
    }
    /* saved for the backward in both modes (eval: the running statistics) */
    for (int ch = 0; ch < C; ch++) {
        if (mean) mean[ch] = st[2 * ch];
        if (rstd) rstd[ch] = st[2 * ch + 1];
    }
    #pragma omp parallel for schedule(static)
    for (long bc = 0; bc < (long)B * C; bc++) {
        const int ch = (int)(bc % C);
        norm_row(out + bc * S, x + bc * S, S, st[2 * ch], st[2 * ch + 1], w ? w[ch] : 1.0f,
                 b ? b[ch] : 0.0f);
    }
}

void cpu_batchnorm_backward(Ctx* c, float* dx, float* dw, float* db, const float* dout,
                            const float* x, const float* w, const float* mean, const float* rstd,
                            int B, int C, long S, int training) {
    CHECK(B > 0 && C > 0 && S > 0, "batchnorm B=%d C=%d S=%ld", B, C, S);
    const double n = (double)B * S;
    double* sums = (double*)ctx_workspace(c, 2 * (size_t)C * sizeof(double)); /* Σg, Σg·xhat */
    #pragma omp parallel for schedule(static)
    for (int ch = 0; ch < C; ch++) {
        const float m = mean[ch], r = rstd[ch];
        double sg = 0.0, sgx = 0.0;
        for (int bb = 0; bb < B; bb++) {
            const float* g = dout + ((long)bb * C + ch) * S;
            const float* xr = x + ((long)bb * C + ch) * S;
            for (long i = 0; i < S; i++) {
                sg += g[i];
                sgx += (double)g[i] * ((xr[i] - m) * r);
            }
        }
        sums[2 * ch] = sg;
        sums[2 * ch + 1] = sgx;
        if (dw) dw[ch] += (float)sgx;
        if (db) db[ch] += (float)sg;
    }
    if (!dx) return;
    #pragma omp parallel for schedule(static)
    for (long bc = 0; bc < (long)B * C; bc++) {
        const int ch = (int)(bc % C);
        const float wc = w ? w[ch] : 1.0f;
        const float m = mean[ch], r = rstd[ch];
        const float* g = dout + bc * S;
        const float* xr = x + bc * S;
        float* d = dx + bc * S;
        if (training) {
            const float mg = (float)(wc * sums[2 * ch] / n), mgx = (float)(wc * sums[2 * ch + 1] / n);
            for (long i = 0; i < S; i++) d[i] = r * (g[i] * wc - mg - (xr[i] - m) * r * mgx);
        } else {
            const float s = wc * r;
            for (long i = 0; i < S; i++) d[i] = g[i] * s;
        }
    }
}
