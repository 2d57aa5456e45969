#!/usr/bin/env python3
"""tests/oracle/mmd_recompute.py — float64 recomputation of the run log's alignment values
from features written by `vita features` (tests/test_train_e2e.c).

usage: mmd_recompute.py LOG.h5 F_INIT.h5 EPOCH:F_EPOCH.h5 [EPOCH:F.h5 ...]

F_INIT.h5 holds the features of the initial weights (checkpoints/init.safetensors), each
EPOCH:F.h5 those of the checkpoint written at the end of that epoch (epoch 0 may name the
initial weights again). For every listed epoch e and every layer l of /align/layers:

  mmd2_paired = 1/(n(n-1)) sum_{i != j} [k(x_i,x_j) + k(y_i,y_j) - k(x_i,y_j) - k(x_j,y_i)]
  k(a,b) = (1/S) sum_s exp(-|a-b|^2 / (2 sigma_s^2)),  sigma_s = /align attrs bandwidths[l, s]

(SPEC.md section 6) on the full matrices in float64, X = the initial features, Y = epoch e's,
both limited to the first probe_n_images rows (the run's probe set is the first
probe_n_images cases of the probe split in file order; `vita features --split` writes that
split in the same order). The tolerance is
  |logged - recomputed| <= 1e-7 * (mean k_XX + mean k_YY + 2 mean k_XY)   (means over i != j).

Prints one line per comparison and, for tests/test_train_e2e.c to turn into checks,
  CHECK <name> <value> <threshold>
lines; exit status 0 when every comparison is within tolerance, 1 otherwise, 2 on bad input.
"""
import sys

import h5py
import numpy as np


def kernel(A, B, sig):
    d2 = ((A[:, None, :] - B[None, :, :]) ** 2).sum(-1)
    return np.mean([np.exp(-d2 / (2.0 * s * s)) for s in sig], axis=0)


def mmd2_paired(X, Y, sig):
    n = X.shape[0]
    kxx, kyy, kxy = kernel(X, X, sig), kernel(Y, Y, sig), kernel(X, Y, sig)
    off = ~np.eye(n, dtype=bool)
    h = kxx + kyy - kxy - kxy.T
    val = h[off].sum() / (n * (n - 1))
    scale = kxx[off].mean() + kyy[off].mean() + 2.0 * kxy[off].mean()
    return val, scale


def read_pooled(path, layer, n):
    with h5py.File(path, "r") as f:
        fmt = f.attrs.get("format")
        if isinstance(fmt, bytes):
            fmt = fmt.decode()
        if fmt != "vita-features":
            raise SystemExit("%s: format %r, expected vita-features" % (path, fmt))
        name = "/layer_%s/pooled" % layer
        if name not in f:
            raise SystemExit("%s: no dataset %s" % (path, name))
        a = np.asarray(f[name][...], dtype=np.float64)
    if a.shape[0] < n:
        print("NOTE %s has %d rows, fewer than the %d probe images: comparing %d rows"
              % (path, a.shape[0], n, a.shape[0]))
    return a[:n]


def main(argv):
    if len(argv) < 4:
        print(__doc__)
        return 2
    log, finit = argv[1], argv[2]
    pairs = []
    for a in argv[3:]:
        e, _, p = a.partition(":")
        pairs.append((int(e), p))
    with h5py.File(log, "r", swmr=True) as f:
        g = f["/align"]
        layers = [x.decode() if isinstance(x, bytes) else str(x) for x in g["layers"][...]]
        epochs = list(g["epoch"][...])
        bw = np.asarray(g.attrs["bandwidths"], dtype=np.float64).reshape(len(layers), -1)
        n_img = int(g.attrs["probe_n_images"])
        kind = g.attrs["feature_kind"]
        kind = kind.decode() if isinstance(kind, bytes) else str(kind)
        logged = np.asarray(g["mmd2_paired"][...], dtype=np.float64)
    if kind != "pooled":
        print("feature_kind %s: this oracle handles pooled features only" % kind)
        return 2
    worst, bad = 0.0, 0
    for li, lname in enumerate(layers):
        X = read_pooled(finit, lname, n_img)
        for e, path in pairs:
            if e not in epochs:
                print("epoch %d: no /align row in %s" % (e, log))
                bad += 1
                continue
            r = epochs.index(e)
            Y = read_pooled(path, lname, n_img)
            m = min(X.shape[0], Y.shape[0])
            val, scale = mmd2_paired(X[:m], Y[:m], bw[li])
            tol = 1e-7 * scale
            d = abs(logged[r, li] - val)
            pct = 100.0 * d / tol
            worst = max(worst, pct)
            ok = d <= tol
            bad += not ok
            print("%s epoch %d layer %-5s n %3d  logged %+.10e  float64 %+.10e  |diff| %.2e  "
                  "tol %.2e  (%.1f%%)" % ("ok  " if ok else "FAIL", e, lname, m, logged[r, li],
                                          val, d, tol, pct))
            print("CHECK mmd2_paired[epoch=%d,layer=%s]-vs-float64 %.6e %.6e" % (e, lname, d, tol))
    print("worst: %.1f%% of the tolerance" % worst)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
