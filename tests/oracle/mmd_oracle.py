"""tests/oracle/mmd_oracle.py OUTDIR — float64 full-matrix references for engine/mmd.c
(tests/test_mmd.c): every estimator of SPEC.md §6, the median / mean bandwidth rules (full and
seeded-subsample median), the delta-method SEs, and permutation / bootstrap replicates computed
by brute force over the SAME draws, which this script generates and writes for the C side to
replay (engine/mmd_internal.h documents the draw matrices).

Inputs are rounded to float32 first, so both sides see identical numbers. Doubles are written
as (hi, lo) float32 pairs (hi = fl32(x), lo = fl32(x - hi)): safetensors here is F32 only and
the C comparisons need more than 24 bits. The fixed bandwidth of the estimator runs is a
float32 number, and gamma_s = fl32(1 / (2 (scale_s sigma)^2)) exactly as the C side rounds it.

Conventions mirrored from engine/mmd.c (see its header): case-level SEs, mmd2_linear pairs
(2p, 2p+1) with ddof-1 sd, bootstrap replicates that exclude pairs of two copies of the same
row, percentile CI with numpy's default (linear) quantile, p = (1 + #{T_b >= T_obs})/(B + 1)
(here with a 1e-12 relative tie tolerance for float64 summation order).
Brute force is deliberately independent of the C algebra: permuted / resampled sets are built
explicitly and the statistics recomputed from the kernel matrix.
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_io  # noqa: E402

EST = ["mmd2_u", "mmd2_b", "mmd2_paired", "mmd2_paired_se", "mmd2_u_se", "mmd2_linear",
       "mmd2_linear_z", "energy", "cka_linear", "cka_linear_u", "cka_rbf", "mean_cos_dist"]
E = {k: i for i, k in enumerate(EST)}
SCALES = [0.5, 1.0, 2.0]
M64 = (1 << 64) - 1


def dd(x):
    x = np.asarray(x, dtype=np.float64)
    hi = x.astype(np.float32)
    with np.errstate(invalid="ignore"):
        lo = (x - hi.astype(np.float64)).astype(np.float32)
    return np.stack([hi, lo], -1)


# ---- engine/rng.h splitmix64, for the seeded median subsample ------------------------------
class Rng:
    def __init__(self, seed, tag):
        self.s = ((seed * 0xD1B54A32D192ED03) & M64) ^ ((tag + 0x8CB92BA72F3D8DD7) & M64)
        self.u64()

    def u64(self):
        self.s = (self.s + 0x9E3779B97F4A7C15) & M64
        z = self.s
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
        return z ^ (z >> 31)

    def uniform(self):
        return (self.u64() >> 11) * (1.0 / 9007199254740992.0)


def subsample(N, cap, seed, tag):
    """engine/mmd.c median_pair_d2: partial Fisher-Yates, first cap indices, sorted"""
    idx = list(range(N))
    if cap >= N:
        return idx
    r = Rng(seed, tag)
    for i in range(cap):
        j = i + int(r.uniform() * (N - i))
        idx[i], idx[j] = idx[j], idx[i]
    return sorted(idx[:cap])


def sqd(A, B):
    return ((A[:, None, :] - B[None, :, :]) ** 2).sum(-1)


def pair_vals(D2):
    return D2[np.triu_indices(D2.shape[0], 1)]


def sig_median(Z):
    return np.sqrt(np.median(pair_vals(sqd(Z, Z))) / 2)


def sig_mean(Z):
    return np.sqrt(pair_vals(sqd(Z, Z)).mean() / 2)


def gammas(sigma):
    return [float(np.float32(1.0 / (2.0 * (s * sigma) * (s * sigma)))) for s in SCALES]


# ---- statistics from explicit kernel blocks ---------------------------------------------------
def offdiag_sum(K):
    return K.sum() - np.trace(K)


def u_b_from_blocks(Kxx, Kyy, Kxy):
    n, m = Kxx.shape[0], Kyy.shape[0]
    sxx, syy, sxy = offdiag_sum(Kxx), offdiag_sum(Kyy), Kxy.sum()
    u = sxx / (n * (n - 1)) + syy / (m * (m - 1)) - 2 * sxy / (n * m)
    b = Kxx.sum() / n**2 + Kyy.sum() / m**2 - 2 * sxy / (n * m)
    return u, b


def paired_from_blocks(Kxx, Kyy, Kxy):
    n = Kxx.shape[0]
    H = Kxx + Kyy - Kxy - Kxy.T
    return offdiag_sum(H) / (n * (n - 1))


def case_var(h, g):
    n = len(h)
    G = h.reshape(n // g, g).sum(1)
    return 4.0 * (n // g) / n**2 * G.var()


def hsic_u(K, L):
    n = K.shape[0]
    K = K.copy(); L = L.copy()
    np.fill_diagonal(K, 0); np.fill_diagonal(L, 0)
    one = np.ones(n)
    t = np.trace(K @ L) + (one @ K @ one) * (one @ L @ one) / ((n - 1) * (n - 2)) \
        - 2.0 / (n - 2) * (one @ K @ L @ one)
    return t / (n * (n - 3))


def hsic_b(K, L):
    n = K.shape[0]
    H = np.eye(n) - np.ones((n, n)) / n
    return np.trace(K @ H @ L @ H)


def cka_rbf(X, Y, gx, gy):
    Kx = np.exp(-gx * sqd(X, X))
    Ly = np.exp(-gy * sqd(Y, Y))
    return hsic_b(Kx, Ly) / np.sqrt(hsic_b(Kx, Kx) * hsic_b(Ly, Ly))


def compute(X, Y, paired, g, sigma, ci, Vp, Vb):
    n, m = len(X), len(Y)
    N = n + m
    Z = np.vstack([X, Y])
    D2 = sqd(Z, Z)
    gam = gammas(sigma)
    Ks = [np.exp(-gm * D2) for gm in gam]
    K = sum(Ks) / len(Ks)
    val = np.full(len(EST), np.nan); se = np.full(len(EST), np.nan)
    pv = np.full(len(EST), np.nan); lo = np.full(len(EST), np.nan); hi = np.full(len(EST), np.nan)
    per_bw = np.full((3, len(SCALES)), np.nan)
    blk = lambda A: (A[:n, :n], A[n:, n:], A[:n, n:])  # noqa: E731
    for s, Kc in enumerate(Ks):
        per_bw[0, s], per_bw[1, s] = u_b_from_blocks(*blk(Kc))
        if paired:
            per_bw[2, s] = paired_from_blocks(*blk(Kc))
    Kxx, Kyy, Kxy = blk(K)
    val[E["mmd2_u"]], val[E["mmd2_b"]] = u_b_from_blocks(Kxx, Kyy, Kxy)
    scale = offdiag_sum(Kxx) / (n * (n - 1)) + offdiag_sum(Kyy) / (m * (m - 1)) + 2 * Kxy.mean()
    # delta-method SEs (case level)
    psx = (Kxx.sum(1) - np.diag(Kxx)) / (n - 1) - Kxy.sum(1) / m
    psy = (Kyy.sum(1) - np.diag(Kyy)) / (m - 1) - Kxy.sum(0) / n
    val[E["mmd2_u_se"]] = se[E["mmd2_u"]] = np.sqrt(case_var(psx, g) + case_var(psy, g))
    if paired:
        val[E["mmd2_paired"]] = paired_from_blocks(Kxx, Kyy, Kxy)
        H = Kxx + Kyy - Kxy - Kxy.T
        h1 = (H.sum(1) - np.diag(H)) / (n - 1)
        val[E["mmd2_paired_se"]] = se[E["mmd2_paired"]] = np.sqrt(case_var(h1, g))
    # linear time
    P = min(n, m) // 2
    kf = lambda a, b: np.mean([np.exp(-gm * ((a - b) ** 2).sum(-1)) for gm in gam], 0)  # noqa: E731
    x0, x1, y0, y1 = X[0:2 * P:2], X[1:2 * P:2], Y[0:2 * P:2], Y[1:2 * P:2]
    h = kf(x0, x1) + kf(y0, y1) - kf(x0, y1) - kf(x1, y0)
    sd = h.std(ddof=1)
    val[E["mmd2_linear"]] = h.mean()
    se[E["mmd2_linear"]] = sd / np.sqrt(P)
    val[E["mmd2_linear_z"]] = h.mean() / (sd / np.sqrt(P)) if sd > 0 else np.nan
    # energy
    Dm = np.sqrt(D2)
    dxx, dyy, dxy = Dm[:n, :n], Dm[n:, n:], Dm[:n, n:]
    val[E["energy"]] = 2 * dxy.mean() - dxx.sum() / (n * (n - 1)) - dyy.sum() / (m * (m - 1))
    escale = 2 * dxy.mean() + dxx.sum() / (n * (n - 1)) + dyy.sum() / (m * (m - 1))
    # mean cosine distance (stable form)
    xm, ym = X.mean(0), Y.mean(0)
    val[E["mean_cos_dist"]] = 0.5 * ((xm / np.linalg.norm(xm) - ym / np.linalg.norm(ym)) ** 2).sum()
    if paired:
        Xh, Yh = X - xm, Y - ym
        fro = lambda A: np.sqrt((A ** 2).sum())  # noqa: E731
        val[E["cka_linear"]] = fro(Yh.T @ Xh) ** 2 / (fro(Xh.T @ Xh) * fro(Yh.T @ Yh))
        # unbiased HSIC on the RAW linear Gram matrices: checks the C side's per-set centring
        Kl, Ll = X @ X.T, Y @ Y.T
        val[E["cka_linear_u"]] = hsic_u(Kl, Ll) / np.sqrt(hsic_u(Kl, Kl) * hsic_u(Ll, Ll))
        gc = float(np.float32(1.0 / (2.0 * sigma * sigma)))
        val[E["cka_rbf"]] = cka_rbf(X, Y, gc, gc)

    # ---- permutations, brute force ----
    Bp = Vp.shape[1]
    est3 = [E["mmd2_u"], E["mmd2_b"], E["mmd2_paired"]]
    permT = np.full((3, Bp), np.nan)
    for b in range(Bp):
        if paired:
            s = Vp[:n, b]
            ix = np.where(s > 0, np.arange(n), n + np.arange(n))   # pooled index of new x_i
            iy = np.where(s > 0, n + np.arange(n), np.arange(n))
        else:
            ix = np.where(Vp[:, b] > 0)[0]
            iy = np.where(Vp[:, b] == 0)[0]
        bx, by, bxy = K[np.ix_(ix, ix)], K[np.ix_(iy, iy)], K[np.ix_(ix, iy)]
        permT[0, b], permT[1, b] = u_b_from_blocks(bx, by, bxy)
        if paired:
            permT[2, b] = paired_from_blocks(bx, by, bxy)
    for r in range(3):
        if r == 2 and not paired:
            continue
        pv[est3[r]] = (1 + np.sum(permT[r] >= val[est3[r]] - 1e-12 * scale)) / (Bp + 1)

    # ---- bootstrap, brute force over the expanded resample ----
    Bb = Vb.shape[1]
    bootT = np.full((3, Bb), np.nan)
    for b in range(Bb):
        wx = Vb[:n, b].astype(int)
        wy = Vb[n:, b].astype(int)
        ix = np.repeat(np.arange(n), wx)            # original X row of each position
        iy = n + np.repeat(np.arange(m), wy)
        bx, by, bxy = K[np.ix_(ix, ix)], K[np.ix_(iy, iy)], K[np.ix_(ix, iy)]
        keepx = ix[:, None] != ix[None, :]          # pairs of distinct original rows
        keepy = iy[:, None] != iy[None, :]
        bootT[0, b] = (bx[keepx].mean() + by[keepy].mean() - 2 * bxy.mean())
        bootT[1, b] = bx.mean() + by.mean() - 2 * bxy.mean()
        if paired:
            Hb = bx + by - bxy - bxy.T               # positions a, b: h(case ix_a, case ix_b)
            bootT[2, b] = Hb[keepx].mean()
    q = [(1 - ci) / 2, 1 - (1 - ci) / 2]
    for r in range(3):
        if r == 2 and not paired:
            continue
        lo[est3[r]], hi[est3[r]] = np.quantile(bootT[r], q)
    return dict(value=val, se=se, pvalue=pv, ci_lo=lo, ci_hi=hi, per_bw=per_bw, perm_T=permT,
                boot_T=bootT, scale=scale, escale=escale, linear_sd=sd, linear_P=P)


def draws(rng, n, m, paired, g, Bp, Bb):
    N = n + m
    nc, mc = n // g, m // g
    Vp = np.zeros((N, Bp), np.float32)
    for b in range(Bp):
        if paired:
            s = np.repeat(rng.choice([-1.0, 1.0], nc), g)
            Vp[:n, b] = s
            Vp[n:, b] = s
        else:
            cases = rng.permutation(nc + mc)[:nc]
            for c in cases:
                Vp[c * g:(c + 1) * g, b] = 1
    Vb = np.zeros((N, Bb), np.float32)
    for b in range(Bb):
        cx = np.bincount(rng.integers(0, nc, nc), minlength=nc)
        Vb[:n, b] = np.repeat(cx, g)
        if paired:
            Vb[n:, b] = Vb[:n, b]
        else:
            cy = np.bincount(rng.integers(0, mc, mc), minlength=mc)
            Vb[n:, b] = np.repeat(cy, g)
    return Vp, Vb


def make_case(out, name, X, Y, paired, g, Bp, Bb, rng, ci=0.95, sub=None):
    X = X.astype(np.float32).astype(np.float64)
    Y = Y.astype(np.float32).astype(np.float64)
    n, m = len(X), len(Y)
    Z = np.vstack([X, Y])
    sigma = float(np.float32(sig_median(Z)))     # float32-exact fixed bandwidth
    Vp, Vb = draws(rng, n, m, paired, g, Bp, Bb)
    r = compute(X, Y, paired, g, sigma, ci, Vp, Vb)
    t = {
        "X": X, "Y": Y, "Vperm": Vp, "Vboot": Vb,
        "cfg": np.array([sigma, paired, g, ci, len(SCALES)] + SCALES),
        "exp.value": dd(r["value"]), "exp.se": dd(r["se"]), "exp.pvalue": dd(r["pvalue"]),
        "exp.ci_lo": dd(r["ci_lo"]), "exp.ci_hi": dd(r["ci_hi"]), "exp.per_bw": dd(r["per_bw"]),
        "exp.perm_T": dd(r["perm_T"]), "exp.boot_T": dd(r["boot_T"]),
        "exp.scale": dd(r["scale"]), "exp.escale": dd(r["escale"]),
        "exp.linear_sd": dd(r["linear_sd"]), "exp.linear_P": dd(r["linear_P"]),
        "exp.sigma_median": dd(sig_median(Z)), "exp.sigma_mean": dd(sig_mean(Z)),
    }
    if paired:
        # cka_rbf under the median / mean rules: per-set bandwidths at scale 1
        for rule, f in (("median", sig_median), ("mean", sig_mean)):
            gx = float(np.float32(1.0 / (2.0 * f(X) ** 2)))
            gy = float(np.float32(1.0 / (2.0 * f(Y) ** 2)))
            t["exp.cka_rbf_" + rule] = dd(cka_rbf(X, Y, gx, gy))
    if sub is not None:   # (cap, seed): median over the seeded subsample of the pooled rows
        cap, seed = sub
        idx = subsample(n + m, cap, seed, 1)
        t["exp.sub"] = np.array([cap, seed], np.float64)
        t["exp.sigma_median_sub"] = dd(np.sqrt(np.median(pair_vals(sqd(Z[idx], Z[idx]))) / 2))
    st_io.save(os.path.join(out, "mmd_%s.safetensors" % name), t)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "build/oracle"
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(20240607)
    d = 16
    off = 2.0 * rng.standard_normal(d)              # a common offset: the centring must cope
    # paired, small shift: y_i = x_i + noise + shift
    X = off + rng.standard_normal((40, d))
    Y = X + 0.4 * rng.standard_normal((40, d)) + 0.15
    make_case(out, "paired", X, Y, 1, 1, 199, 100, rng)
    # independent sets of different sizes
    X = off + rng.standard_normal((50, d))
    Y = off + 0.3 + 1.1 * rng.standard_normal((35, d))
    make_case(out, "unpaired", X, Y, 0, 1, 199, 100, rng, sub=(25, 7))
    # paired with identical X and Y
    X = off + rng.standard_normal((30, d))
    make_case(out, "identical", X, X.copy(), 1, 1, 99, 50, rng)
    # token features: 12 cases x 4 tokens, tokens of a case share a case effect; before and
    # after differ by exchangeable noise and a small shift (near the null: mid-range p-values)
    cx = np.repeat(rng.standard_normal((12, d)), 4, axis=0)
    X = off + cx + 0.5 * rng.standard_normal((48, d))
    Y = off + cx + 0.5 * rng.standard_normal((48, d)) + 0.05
    make_case(out, "tokens", X, Y, 1, 4, 99, 60, rng)
    # token features, independent sets (12 and 8 cases)
    cy = np.repeat(rng.standard_normal((8, d)), 4, axis=0)
    Y = off + 0.2 + cy + 0.5 * rng.standard_normal((32, d))
    make_case(out, "tokens_unpaired", X, Y, 0, 4, 99, 60, rng)


if __name__ == "__main__":
    main()
