"""tests/convert_harness.py — shared pieces of tests/test_convert.py and tests/test_parity.py:
running vita and the checkpoint tools, a minimal vita dataset (SPEC.md §2) written with h5py,
`vita features` read back, the float64 reference of vita's encoder (tests/oracle/vit_oracle.py's
plain-torch ViT), NMSE, and the "N passed, N failed" bookkeeping of tests/testing.h.
"""
import os
import subprocess
import sys

import h5py
import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
sys.path.insert(0, os.path.join(ROOT, "tests", "oracle"))
import checkpoint_io  # noqa: E402,F401
import vit_layout  # noqa: E402,F401
import vit_oracle  # noqa: E402

BUILD = os.environ.get("VITA_BUILD", "build")
VITA = os.path.join(ROOT, BUILD, "vita") if not os.path.isabs(BUILD) else os.path.join(BUILD, "vita")
PYTHON = os.environ.get("PYTHON", "/usr/bin/python3")


class Checks:
    def __init__(self):
        self.passed = self.failed = 0

    def check(self, what, value, threshold):
        """passes when value <= threshold; prints the value as a percent of the threshold"""
        ok = bool(np.isfinite(value)) and value <= threshold
        pct = 100.0 * value / threshold if threshold else (0.0 if value == 0 else float("inf"))
        print(f"{'ok  ' if ok else 'FAIL'} {what}: {value:.3g} ({pct:.1f}% of {threshold:.3g})")
        self.passed += ok
        self.failed += not ok
        return ok

    def true(self, what, cond, detail=""):
        print(f"{'ok  ' if cond else 'FAIL'} {what}{': ' + detail if detail and not cond else ''}")
        self.passed += bool(cond)
        self.failed += not cond
        return cond

    def finish(self):
        print(f"{self.passed} passed, {self.failed} failed")
        sys.exit(1 if self.failed else 0)


def run(args, python=None):
    """-> (exit code, stdout + stderr)"""
    cmd = ([python or PYTHON] if args[0].endswith(".py") else []) + list(args)
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    return p.returncode, p.stdout.decode(errors="replace")


def _in_process(module, argv):
    """a tool's main(argv) in this process (no interpreter + torch start per call) ->
    (exit code, stdout + stderr)"""
    import contextlib
    import io
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        try:
            rc = module.main(argv)
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else 1
    return rc, buf.getvalue()


def convert(src, out, *flags, subprocess_cli=False):
    if subprocess_cli:
        return run([os.path.join(ROOT, "tools", "convert_checkpoint.py"), src, out] + list(flags))
    import convert_checkpoint
    return _in_process(convert_checkpoint, [src, out] + list(flags))


def export(src, out, *flags):
    import export_checkpoint
    return _in_process(export_checkpoint, [src, out] + list(flags))


def write_dataset(path, images, channels):
    """images float32 [N, C, D, H, W]: all cases in the train split, identity geometry"""
    N = images.shape[0]
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "vita-dataset"
        f.attrs["version"] = np.int32(1)
        f.attrs["channels"] = ",".join(channels)
        f.attrs["spacing_zyx"] = np.ones(3)
        f.create_dataset("images", data=images.astype(np.float32), chunks=(1,) + images.shape[1:])
        f.create_dataset("case_id", data=[f"case{i:03d}" for i in range(N)],
                         dtype=h5py.string_dtype())
        f.create_dataset("split", data=np.zeros(N, np.uint8))


def model_inputs(images, cfg):
    """the inputs `vita features` feeds the encoder from write_dataset's volumes whose (H, W)
    (3D: (D, H, W)) equal the model's img size: 3D whole volumes; 2D the central slice
    z = D // 2 of each channel (context 1), with extra tokens slice_index = z, slice_count = D"""
    D = images.shape[2]
    if cfg["spatial_dims"] == 3:
        x = images
    else:
        x = images[:, :, D // 2]
    ext = []
    for e in cfg["extra_tokens"]:
        ext.append(np.full(images.shape[0], D // 2 if e == "slice_index" else D, np.float64))
    return x, np.array(ext).reshape(len(ext), images.shape[0])


def features(weights, data, layers, out):
    rc, log = run([VITA, "features", "--weights", weights, "--data", data, "--out", out,
                   "--layers", layers, "--quiet", "--threads", "2"])
    if rc:
        return None, log
    with h5py.File(out, "r") as f:
        return {k[len("layer_"):]: f[k]["pooled"][...].astype(np.float64)
                for k in f if k.startswith("layer_")}, log


def pooled(tokens, cfg):
    """mean over the patch tokens (cls, registers, extra tokens excluded), SPEC.md §6"""
    skip = (1 if cfg["cls_token"] else 0) + cfg["num_registers"] + len(cfg["extra_tokens"])
    return tokens[:, skip:].mean(1)


def reference(weights, cfg, x, extra, dtype=torch.float64):
    """vita's encoder semantics in plain torch (tests/oracle/vit_oracle.py) -> {layer: pooled}"""
    c = dict(cfg)
    if c["spatial_dims"] == 2:
        c["img_size"], c["patch"] = list(c["img_size"][-2:]), list(c["patch"][-2:])
    model = vit_oracle.ViT(c)
    with torch.no_grad():
        for n, p in model.named().items():
            p.copy_(torch.from_numpy(np.asarray(weights[n], np.float64)).reshape(p.shape))
    model = model.to(dtype)
    with torch.no_grad():
        out, blocks = model(torch.from_numpy(np.asarray(x, np.float64)).to(dtype),
                            torch.from_numpy(extra).to(dtype))
    res = {str(i + 1): pooled(b, cfg).double().numpy() for i, b in enumerate(blocks)}
    res["norm"] = pooled(out, cfg).double().numpy()
    return res


def nmse(a, ref):
    a, ref = np.asarray(a, np.float64), np.asarray(ref, np.float64)
    return float(((a - ref) ** 2).sum() / max(float((ref ** 2).sum()), 1e-300))


def layers_arg(depth):
    return ",".join([str(i) for i in range(1, depth + 1)] + ["norm"])
