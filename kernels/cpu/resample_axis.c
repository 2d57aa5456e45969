/* kernels/cpu/resample_axis.c — linear resampling along one axis by a displacement field
 * (susceptibility-distortion style: voxels move along the phase-encode axis only).
 *
 * in, out [B, C, D, H, W]; disp [B, D, H, W] in voxels, shared by the channels. With the
 * volume viewed as [outer, L, inner] along the axis (axis 0: [1, D, H*W], 1: [D, H, W],
 * 2: [D*H, W, 1]) and q = p + disp at position (o, p, j):
 *   q clamped to [0, L-1] (border), i0 = floor(q), i1 = min(i0 + 1, L - 1), t = q - i0,
 *   out[b,c,o,p,j] = (1 - t) in[b,c,o,i0,j] + t in[b,c,o,i1,j].
 * Backward:
 *   din[b,c,o,i,j] = Σ_p of the weights above times dout (a scatter along the line; written)
 *   ddisp[b,o,p,j] = Σ_c dout · (in[i1] - in[i0]), the slope of the interpolant, and 0 where
 *                    the position is clamped (q <= 0 or q >= L-1, as grid_sample's border
 *                    padding) — written; NULL skips.
 * The scatter stays inside one line (o, ·, j), so tasks own (b, c, o, block of j) and run
 * p = 0..L-1 in order; ddisp sums channels in order in double. Bits do not depend on the
 * thread count. Positions are computed in double (p + disp exactly for any volume size).
 */
#include "cpu.h"
#include "../../engine/check.h"


enum { JB = 64 };   /* inner elements per task: contiguous, stack accumulators */

typedef struct { long outer, L, inner; } AxisView;

static AxisView axis_view(int D, int H, int W, int axis) {
    CHECK(D > 0 && H > 0 && W > 0, "resample_axis D=%d H=%d W=%d", D, H, W);
    CHECK(axis >= 0 && axis <= 2, "resample_axis axis=%d (0 = D, 1 = H, 2 = W)", axis);
    AxisView v;
    if (axis == 0) { v.outer = 1; v.L = D; v.inner = (long)H * W; }
    else if (axis == 1) { v.outer = D; v.L = H; v.inner = W; }
    else { v.outer = (long)D * H; v.L = W; v.inner = 1; }
    return v;
}

/* interpolation taps of position p displaced by d along an axis of length L; returns 1 when
 * the position is inside (0, L-1), i.e. not clamped */
static inline int taps(long p, float d, long L, long* i0, long* i1, float* t) {
    double q = (double)p + d;
    int inside = 1;
    if (!(q > 0)) { q = 0; inside = 0; }            /* also catches NaN -> 0 */
    else if (q >= (double)(L - 1)) { q = (double)(L - 1); inside = 0; }
    long a = (long)q;
    if (a > L - 1) a = L - 1;
    *i0 = a;
    *i1 = a < L - 1 ? a + 1 : a;
    *t = (float)(q - a);
    return inside;
}

void cpu_resample_axis_forward(Ctx* c, float* out, const float* in, const float* disp, int B,
                               int C, int D, int H, int W, int axis) {
    (void)c;
    CHECK(B > 0 && C > 0, "resample_axis B=%d C=%d", B, C);
    const AxisView v = axis_view(D, H, W, axis);
    const long S = v.outer * v.L * v.inner;
    const long nrow = (long)B * C * v.outer * v.L;
    #pragma omp parallel for schedule(static)
    for (long r = 0; r < nrow; r++) {
        const long p = r % v.L, o = r / v.L % v.outer, bc = r / (v.L * v.outer), b = bc / C;
        const float* dl = disp + b * S + (o * v.L + p) * v.inner;
        const float* line = in + bc * S + o * v.L * v.inner;
        float* orow = out + bc * S + (o * v.L + p) * v.inner;
        for (long j = 0; j < v.inner; j++) {
            long i0, i1;
            float t;
            taps(p, dl[j], v.L, &i0, &i1, &t);
            orow[j] = (1.0f - t) * line[i0 * v.inner + j] + t * line[i1 * v.inner + j];
        }
    }
}

void cpu_resample_axis_backward(Ctx* c, float* din, float* ddisp, const float* dout,
                                const float* in, const float* disp, int B, int C, int D, int H,
                                int W, int axis) {
    (void)c;
    CHECK(B > 0 && C > 0, "resample_axis B=%d C=%d", B, C);
    const AxisView v = axis_view(D, H, W, axis);
    const long S = v.outer * v.L * v.inner, nj = (v.inner + JB - 1) / JB;
    if (din) {
        #pragma omp parallel for schedule(static)
        for (long task = 0; task < (long)B * C * v.outer * nj; task++) {
            const long jb = task % nj, o = task / nj % v.outer, bc = task / (nj * v.outer);
            const long b = bc / C, j0 = jb * JB, j1 = j0 + JB < v.inner ? j0 + JB : v.inner;
            float* line = din + bc * S + o * v.L * v.inner;
            const float* gl = dout + bc * S + o * v.L * v.inner;
            const float* dl = disp + b * S + o * v.L * v.inner;
            for (long i = 0; i < v.L; i++)
                for (long j = j0; j < j1; j++) line[i * v.inner + j] = 0.0f;
            for (long p = 0; p < v.L; p++)
                for (long j = j0; j < j1; j++) {
                    long i0, i1;
                    float t;
                    taps(p, dl[p * v.inner + j], v.L, &i0, &i1, &t);
                    const float g = gl[p * v.inner + j];
                    line[i0 * v.inner + j] += (1.0f - t) * g;
                    line[i1 * v.inner + j] += t * g;
                }
        }
    }
    if (ddisp) {
        #pragma omp parallel for schedule(static)
        for (long task = 0; task < (long)B * v.outer * v.L * nj; task++) {
            const long jb = task % nj, p = task / nj % v.L, o = task / (nj * v.L) % v.outer;
            const long b = task / (nj * v.L * v.outer);
            const long j0 = jb * JB, j1 = j0 + JB < v.inner ? j0 + JB : v.inner;
            const long row = (o * v.L + p) * v.inner;
            const float* dl = disp + b * S + row;
            double acc[JB] = { 0 };
            for (int ch = 0; ch < C; ch++) {
                const float* line = in + ((long)b * C + ch) * S + o * v.L * v.inner;
                const float* g = dout + ((long)b * C + ch) * S + row;
                for (long j = j0; j < j1; j++) {
                    long i0, i1;
                    float t;
                    if (taps(p, dl[j], v.L, &i0, &i1, &t))
                        acc[j - j0] += (double)g[j] * (line[i1 * v.inner + j] - line[i0 * v.inner + j]);
                }
            }
            for (long j = j0; j < j1; j++) ddisp[b * S + row + j] = (float)acc[j - j0];
        }
    }
}
