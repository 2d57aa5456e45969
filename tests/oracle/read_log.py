#!/usr/bin/env python3
"""tests/oracle/read_log.py — the h5py side of tests/test_runlog.c (SPEC.md §4 log.h5).

  read_log.py dump PATH [--swmr]   prints the whole file as one JSON object:
        {"attrs": {...root attrs}, "objects": {"/steps/lr": {"shape": [...], "dtype": "float64",
         "data": [...], "attrs": {...}}, "/align": {"attrs": {...}}, ...}}
        NaN becomes null. Exit 3 when h5py cannot open the file (e.g. a killed writer's flags).
  read_log.py follow PATH           opens PATH with swmr=True once and then, for every line
        "check" on stdin, refreshes the row datasets and prints one JSON line
        {"steps": n, "epochs": n, "align": n, "last_step": x, "last_loss": x, "last_epoch": x,
         "last_val_metric": x, "last_align_epoch": x}; "quit" (or EOF) ends it. Prints
        {"ready": 1} once open, or {"error": "..."} and exits 3.
"""
import json
import math
import sys

import h5py
import numpy as np


def plain(v):
    if isinstance(v, bytes):
        return v.decode("utf-8")
    if isinstance(v, np.ndarray):
        return [plain(x) for x in v.tolist()] if v.dtype.kind in "OSU" else plain(v.tolist())
    if isinstance(v, np.generic):
        return plain(v.item())
    if isinstance(v, float):
        return None if math.isnan(v) else v
    if isinstance(v, list):
        return [plain(x) for x in v]
    if isinstance(v, h5py.Empty):
        return None
    return v


def attrs_of(obj):
    return {k: plain(obj.attrs[k]) for k in obj.attrs.keys()}


def dump(path, swmr):
    try:
        f = h5py.File(path, "r", swmr=swmr)
    except OSError as e:
        print(json.dumps({"error": str(e)}))
        sys.exit(3)
    out = {"attrs": attrs_of(f), "objects": {}}

    def visit(name, obj):
        rec = {"attrs": attrs_of(obj)}
        if isinstance(obj, h5py.Dataset):
            rec["shape"] = list(obj.shape)
            rec["dtype"] = str(obj.dtype) if obj.dtype.kind != "O" else "str"
            data = obj[()]
            rec["data"] = plain(data)
            rec["maxshape"] = [(-1 if m is None else m) for m in obj.maxshape]
        out["objects"]["/" + name] = rec

    f.visititems(visit)
    f.close()
    print(json.dumps(out, allow_nan=False))


def follow(path):
    try:
        f = h5py.File(path, "r", swmr=True)
    except OSError as e:
        print(json.dumps({"error": str(e)}), flush=True)
        sys.exit(3)
    names = ["/steps/step", "/steps/loss", "/epochs/epoch", "/epochs/val_metric", "/align/epoch"]
    ds = {n: f[n] for n in names}
    print(json.dumps({"ready": 1}), flush=True)
    for line in sys.stdin:
        if line.strip() != "check":
            break
        for d in ds.values():
            d.refresh()
        rec = {"steps": ds["/steps/step"].shape[0], "epochs": ds["/epochs/epoch"].shape[0],
               "align": ds["/align/epoch"].shape[0]}

        def last(n):
            d = ds[n]
            return plain(d[d.shape[0] - 1]) if d.shape[0] else None

        rec["last_step"] = last("/steps/step")
        rec["last_loss"] = last("/steps/loss")
        rec["last_epoch"] = last("/epochs/epoch")
        rec["last_val_metric"] = last("/epochs/val_metric")
        rec["last_align_epoch"] = last("/align/epoch")
        print(json.dumps(rec, allow_nan=False), flush=True)
    f.close()


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "dump":
        dump(sys.argv[2], "--swmr" in sys.argv[3:])
    elif len(sys.argv) == 3 and sys.argv[1] == "follow":
        follow(sys.argv[2])
    else:
        print(__doc__)
        sys.exit(2)


if __name__ == "__main__":
    main()
