#!/usr/bin/python3
"""PyTorch reference peer for vita's MMD benchmark (bench/mmd.c).

What it computes
----------------
The two-sample unbiased MMD^2 with a multi-bandwidth Gaussian kernel, in the
full-matrix formulation of alibi-detect's PyTorch backend (MMDDrift,
`mmd2_from_kernel_matrix` with zero_diag, `GaussianRBF` with several sigmas):

  1. Z = [X; Y]  (N = n + m rows, float32);
  2. the full N x N squared-distance matrix
         D = |z_i|^2 + |z_j|^2 - 2 z_i . z_j,  clamped at 0
     (alibi's `squared_pairwise_distance`, one matmul);
  3. K = (1/S) sum_s exp(-D / (2 sigma_s^2))  (alibi's GaussianRBF averages the
     per-bandwidth kernels);
  4. MMD^2_u = sum_{i!=j} Kxx / (n(n-1)) + sum_{i!=j} Kyy / (m(m-1))
               - 2 sum Kxy / (n m)    from the blocks of K.

Memory: alibi stacks the S kernel matrices (torch.cat) before averaging, S+1
N^2 buffers; here they are accumulated in place, so the peak is ~3 N^2 floats
(D, K and one temporary) -- kinder to PyTorch than alibi itself.  Block sums:
float32 row sums (torch's cascade summation) added in float64.

Data: X then Y as raw float32 [n, d] each from --data (written by
bench/mmd.c --write), so both implementations see the same numbers; the sigmas
come from vita (median rule x scales) via --sigmas.

How
---
* Threads: OMP/MKL/OPENBLAS_NUM_THREADS set from --threads before torch is
  imported, then torch.set_num_threads(N), interop threads 1.
* Time: steps 1-4 (data already in memory), best of --repeats.
* Peak memory: getrusage(RUSAGE_SELF).ru_maxrss * 1024 (includes the torch
  import, ~0.3 GiB) and the analytic matrix bytes 3 N^2 * 4.
* --max-gb G: if 3 N^2 * 4 bytes exceed G GB, prints "PyTorch: needs X GiB,
  not run" and exits 0 (with --json: {"skipped": true, ...}).

Output: one human-readable line; with --json, one JSON object on the last line.
"""

import argparse
import json
import os
import resource
import sys
import time


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--d", type=int, default=768)
    ap.add_argument("--data", help="raw float32 X then Y, each [n, d]")
    ap.add_argument("--sigmas", required=True, help="comma list of bandwidths")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--max-gb", type=float, default=14.0)
    ap.add_argument("--json", action="store_true")
    return ap.parse_args()


ARGS = parse_args()
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = str(ARGS.threads)

import torch  # noqa: E402  (after the thread env vars are set)


def mmd2_full_matrix(x, y, sigmas):
    n, m = x.shape[0], y.shape[0]
    z = torch.cat([x, y], 0)
    sq = z.pow(2).sum(1)
    dist = z @ z.T                                   # N x N
    dist.mul_(-2).add_(sq[:, None]).add_(sq[None, :]).clamp_(min=0)
    k = None
    for s in sigmas:
        e = dist.mul(-1.0 / (2.0 * s * s)).exp_()    # one temporary N x N
        if k is None:
            k = e
        else:
            k.add_(e)
            del e
    k.div_(len(sigmas))
    del dist

    def block_sum(b):
        return b.sum(1).double().sum().item()

    kxx = block_sum(k[:n, :n]) - k[:n, :n].diagonal().double().sum().item()
    kyy = block_sum(k[n:, n:]) - k[n:, n:].diagonal().double().sum().item()
    kxy = block_sum(k[:n, n:])
    return kxx / (n * (n - 1)) + kyy / (m * (m - 1)) - 2.0 * kxy / (n * m)


def main():
    a = ARGS
    sigmas = [float(s) for s in a.sigmas.split(",")]
    N = 2 * a.n
    need = 3 * N * N * 4
    if need > a.max_gb * 1e9:
        print(f"PyTorch: needs {need / 2**30:.0f} GiB, not run")
        if a.json:
            print(json.dumps({"impl": "pytorch", "n": a.n, "d": a.d, "skipped": True,
                              "matrix_bytes": need}))
        return 0
    torch.set_num_threads(a.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    import numpy as np
    raw = np.fromfile(a.data, dtype="<f4")
    if raw.size != 2 * a.n * a.d:
        print(f"mmd_peer: {a.data} holds {raw.size} floats, expected {2 * a.n * a.d}",
              file=sys.stderr)
        return 1
    x = torch.from_numpy(raw[: a.n * a.d].reshape(a.n, a.d))
    y = torch.from_numpy(raw[a.n * a.d:].reshape(a.n, a.d))
    best, val = float("inf"), None
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        with torch.no_grad():
            val = mmd2_full_matrix(x, y, sigmas)
        best = min(best, time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(f"pytorch mmd n=m={a.n} d={a.d} threads {a.threads}: {best:.3f} s (best of "
          f"{a.repeats}), mmd2_u {val:.9g}, matrices {need / 2**30:.2f} GiB, "
          f"peak RSS {peak / 2**20:.1f} MiB")
    if a.json:
        print(json.dumps({"impl": "pytorch", "n": a.n, "m": a.n, "d": a.d,
                          "threads": a.threads, "repeats": a.repeats, "seconds": best,
                          "mmd2_u": val, "matrix_bytes": need, "peak_rss": peak,
                          "skipped": False, "torch": torch.__version__}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
