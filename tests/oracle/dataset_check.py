#!/usr/bin/env python3
"""tests/oracle/dataset_check.py DATA.h5 — reads a vita dataset (SPEC.md §2) with h5py, an
independent HDF5 reader, and checks its schema and values. Exit 0 and "ok ..." on success,
1 with the first problem on stderr otherwise. Used by tests/test_phantom.c and test_dataset.c."""
import sys

import h5py
import numpy as np


def fail(msg):
    print(f"dataset_check: {sys.argv[1]}: {msg}", file=sys.stderr)
    sys.exit(1)


def s(v):
    return v.decode() if isinstance(v, bytes) else str(v)


with h5py.File(sys.argv[1], "r") as f:
    a = f.attrs
    if s(a.get("format", "")) != "vita-dataset":
        fail("format attribute is not vita-dataset")
    if int(a["version"]) != 1:
        fail("version != 1")
    channels = s(a["channels"]).split(",")
    labels = s(a["label_names"]).split(",") if "label_names" in a else None
    classes = s(a["class_names"]).split(",") if "class_names" in a else None
    sp = np.asarray(a["spacing_zyx"], dtype=np.float64)
    if sp.shape != (3,) or not (sp > 0).all():
        fail("spacing_zyx")
    img = f["images"]
    if img.ndim != 5 or img.dtype not in (np.float32, np.int16):
        fail(f"/images {img.shape} {img.dtype}")
    N, C, D, H, W = img.shape
    if len(channels) != C:
        fail("channels vs C")
    if img.chunks is None or img.chunks[0] != 1 or tuple(img.chunks[1:]) != (C, D, H, W):
        fail(f"/images chunks {img.chunks} are not one case per chunk")
    ids = [s(x) for x in f["case_id"][...]]
    if len(ids) != N or len(set(ids)) != N:
        fail("case_id length or uniqueness")
    split = f["split"][...]
    if split.dtype != np.uint8 or split.shape != (N,) or split.max() > 3 or (split == 0).sum() == 0:
        fail("split")
    fold = f["fold"][...]
    if fold.dtype != np.int8 or fold.shape != (N,) or fold.min() < -1:
        fail("fold")
    cp = f["channel_present"][...]
    if cp.dtype != np.uint8 or cp.shape != (N, C):
        fail("channel_present")
    g = f["geometry"]
    for k, w, dt in (("spacing", 3, np.float64), ("origin", 3, np.float64), ("direction", 9, np.float64),
                     ("shape_original", 3, np.int32), ("crop_offset", 3, np.int32)):
        if g[k].shape != (N, w) or g[k].dtype != dt:
            fail(f"/geometry/{k} {g[k].shape} {g[k].dtype}")
    d = g["direction"][...].reshape(N, 3, 3)
    if "phantom" in s(a.get("source", "")) and np.abs(np.einsum("nij,nkj->nik", d, d) - np.eye(3)).max() > 1e-6:
        fail("/geometry/direction is not orthonormal")
    total, nlab = 0.0, np.zeros(16, np.int64)
    for i in range(N):
        x = img[i]
        if not np.isfinite(x).all():
            fail(f"/images case {i} ({ids[i]}) has NaN/Inf")
        total += float(x.astype(np.float64).sum())
    if "seg" in f:
        seg = f["seg"]
        if seg.dtype != np.uint8 or seg.shape != (N, D, H, W) or labels is None:
            fail("/seg")
        for i in range(N):
            b = np.bincount(seg[i].ravel(), minlength=16)
            if len(b) > len(labels) and b[len(labels):].sum():
                fail(f"/seg case {i} label out of range")
            nlab[:16] += b[:16]
    if "cls" in f:
        cls = f["cls"][...]
        if cls.dtype != np.int32 or cls.shape != (N,) or classes is None or cls.max() >= len(classes) or cls.min() < -1:
            fail("/cls")
    print(f"ok N={N} C={C} D={D} H={H} W={W} sum={total:.6e} labels={nlab[:len(labels) if labels else 0].tolist()}")
