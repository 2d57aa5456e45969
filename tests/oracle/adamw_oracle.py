#!/usr/bin/python3
"""tests/oracle/adamw_oracle.py DIR — expected AdamW trajectory from torch.optim.AdamW.

Two parameter tensors in two groups (different lr and weight decay, one with wd = 0),
betas (0.9, 0.999), eps 1e-8, seeded gradients injected for 6 steps, all in float64.
Initial values and gradients are float32-representable, so the C test (fp32) starts from
exactly the same numbers. Writes DIR/adamw.txt, whitespace-separated text:

  adamw_oracle 1
  nparams P steps S beta1 B1 beta2 B2 eps E
  P x: param INDEX N LR WD, then N initial values
  S x P x: grad STEP INDEX N, then N values
  P x: final INDEX N, then N values of p, N of m (exp_avg), N of v (exp_avg_sq)
"""
import os
import sys

import numpy as np
import torch


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else "build/oracle"
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(1234)
    shapes = [(10, 100), (37,)]
    groups = [dict(lr=1e-2, weight_decay=0.1), dict(lr=3e-3, weight_decay=0.0)]
    betas, eps, steps = (0.9, 0.999), 1e-8, 6

    init = [rng.standard_normal(s).astype(np.float32).astype(np.float64) for s in shapes]
    params = [torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in init]
    kw = dict(betas=betas, eps=eps, amsgrad=False)
    try:
        opt = torch.optim.AdamW([dict(params=[p], **g) for p, g in zip(params, groups)],
                                foreach=False, **kw)
    except TypeError:  # torch without the foreach argument
        opt = torch.optim.AdamW([dict(params=[p], **g) for p, g in zip(params, groups)], **kw)

    lines = ["adamw_oracle 1",
             "nparams %d steps %d beta1 %r beta2 %r eps %r" % (len(shapes), steps, betas[0], betas[1], eps)]
    fmt = lambda a: " ".join("%.17g" % v for v in np.asarray(a).ravel())
    for i, (x, g) in enumerate(zip(init, groups)):
        lines += ["param %d %d %r %r" % (i, x.size, g["lr"], g["weight_decay"]), fmt(x)]
    for s in range(steps):
        for i, p in enumerate(params):
            # gradient scales vary by step and element: some tiny (eps matters), some zero
            scale = 10.0 ** rng.uniform(-6, 1, size=p.shape)
            g = (rng.standard_normal(p.shape) * scale).astype(np.float32)
            g[rng.uniform(size=p.shape) < 0.05] = 0.0
            g = g.astype(np.float64)
            p.grad = torch.tensor(g, dtype=torch.float64)
            lines += ["grad %d %d %d" % (s, i, g.size), fmt(g)]
        opt.step()
    for i, p in enumerate(params):
        st = opt.state[p]
        lines += ["final %d %d" % (i, p.numel()), fmt(p.detach().numpy()),
                  fmt(st["exp_avg"].numpy()), fmt(st["exp_avg_sq"].numpy())]
    with open(os.path.join(out_dir, "adamw.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
