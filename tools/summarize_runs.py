#!/usr/bin/python3
"""tools/summarize_runs.py RUNS_DIR — one line per run directory under RUNS_DIR: task, init,
best validation metric (and its epoch), epochs to 95 % of the improvement, the test metric of
the best checkpoint, and the final mmd2_paired per probed layer (features moved from the
initial encoder), read from each run's log.h5 (SPEC.md §4) with h5py."""
import os
import sys

import h5py


def attr(g, k, default=float("nan")):
    return g.attrs[k] if k in g.attrs else default


def s(x):
    return x.decode() if isinstance(x, bytes) else str(x)


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "runs"
    rows = []
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name, "log.h5")
        if not os.path.exists(path):
            continue
        with h5py.File(path, "r") as f:
            task, init, metric = s(attr(f, "task", "?")), s(attr(f, "init", "?")), s(attr(f, "metric", "?"))
            sm = f["summary"] if "summary" in f else None
            te = f["test"] if "test" in f else None
            layers = [s(x) for x in f["align/layers"][:]] if "align/layers" in f else []
            mmd = f["align/mmd2_paired"][-1] if "align/mmd2_paired" in f and len(f["align/mmd2_paired"]) else []
            rows.append((name, task, init, metric,
                         attr(sm, "best_val_metric") if sm is not None else float("nan"),
                         int(attr(sm, "best_epoch", -1)) if sm is not None else -1,
                         attr(sm, "epochs_to_95") if sm is not None else float("nan"),
                         attr(te, metric) if te is not None else float("nan"),
                         " ".join(f"{l}:{v:.4f}" for l, v in zip(layers, mmd)),
                         os.path.join(root, name)))
    print(f"{'run':28s} {'task':10s} {'init':10s} {'metric':8s} {'best val':>9s} {'@ep':>4s} "
          f"{'ep->95%':>7s} {'test':>8s}  final mmd2_paired per layer")
    for r in rows:
        print(f"{r[0]:28s} {r[1]:10s} {r[2]:10s} {r[3]:8s} {r[4]:9.4f} {r[5]:4d} {r[6]:7.0f} "
              f"{r[7]:8.4f}  {r[8]}")
    print(f"logs: {root}/<run>/log.h5 (h5py.File(path, 'r', swmr=True) while a run goes)")


if __name__ == "__main__":
    main()
