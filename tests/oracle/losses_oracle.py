"""tests/oracle/losses_oracle.py OUTDIR — float64 PyTorch (Debian torch 1.13) references for the
loss ops, read by tests/test_ops_losses.c from OUTDIR/losses.safetensors.

  dice<i>:  MONAI DiceCELoss(softmax=True, to_onehot_y=True, include_background, smooth_nr =
            smooth_dr = 1e-5, batch=False, reduction="mean") written out in torch (MONAI is not
            installed): CE = torch CrossEntropyLoss(weight) on the logits, Dice per sample and
            class, then averaged. Gradient of w_ce*CE + w_dice*Dice w.r.t. the logits.
  cls<i>:   torch.nn.CrossEntropyLoss(weight, label_smoothing) itself, or the focal loss
            FL = mean_b -alpha_y (1 - p_y)^gamma log p_y written in torch; gradient (scale 1).
  reg<i>:   torch.nn.L1Loss / MSELoss (mean); gradients by autograd (sign(0) = 0).

Inputs are fp32-representable (the C op sees exactly them). Expected float64 values are
stored as two F32 tensors, hi = fp32(x) and lo = fp32(x - hi): hi + lo carries ~48 bits, so
the reference is exact to ~4e-15 relative although safetensors here is F32 only.
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_io  # noqa: E402

torch.set_default_dtype(torch.float64)
T = {}


def hilo(name, x):
    x = np.asarray(x, dtype=np.float64)
    hi = x.astype(np.float32)
    lo = (x - hi.astype(np.float64)).astype(np.float32)
    T[name + "_hi"] = hi.reshape(-1) if x.ndim else hi.reshape(1)
    T[name + "_lo"] = lo.reshape(-1) if x.ndim else lo.reshape(1)


def f32(rng, shape, scale):
    return (scale * rng.standard_normal(shape)).astype(np.float32)


def dicece(logits, labels, weight, incl, K):
    ce = F.cross_entropy(logits, labels, weight=weight)  # weighted mean as torch
    p = torch.softmax(logits, 1)
    g = F.one_hot(labels, K).movedim(-1, 1).to(p.dtype)
    if not incl:
        p, g = p[:, 1:], g[:, 1:]
    ax = list(range(2, p.ndim))
    inter = (p * g).sum(ax)
    f = 1.0 - (2.0 * inter + 1e-5) / (g.sum(ax) + p.sum(ax) + 1e-5)
    return ce, f.mean()


# every scalar the C op receives as fp32 (w_ce, w_dice, smoothing) is fp32-exact here
dice_cases = [  # B, K, D, H, W, include_background, weighted, w_ce, w_dice, logit scale
    (2, 3, 4, 5, 6, 1, 0, 1.0, 1.0, 2.0),
    (2, 3, 4, 5, 6, 0, 1, 0.75, 1.25, 2.0),
    (3, 4, 1, 9, 7, 0, 0, 1.0, 1.0, 3.0),   # 2D, one class absent in sample 0 (see below)
    (1, 2, 3, 8, 8, 1, 1, 0.5, 2.0, 1.0),
]
rng = np.random.default_rng(20240611)
for i, (B, K, D, H, W, incl, wtd, wce, wdice, sc) in enumerate(dice_cases):
    x = f32(rng, (B, K, D, H, W), sc)
    y = rng.integers(0, K, size=(B, D, H, W))
    if i == 2:
        y[0][y[0] == 2] = 1  # class 2 absent from sample 0: Dice term is 1 - s/(P + s)
    w = (0.25 + rng.random(K)).astype(np.float32) if wtd else None
    xt = torch.tensor(x.astype(np.float64), requires_grad=True)
    yt = torch.tensor(y, dtype=torch.long)
    wt = torch.tensor(w.astype(np.float64)) if wtd else None
    ce, dc = dicece(xt, yt, wt, incl, K)
    (wce * ce + wdice * dc).backward()
    p = f"dice{i}."
    T[p + "cfg"] = np.array([B, K, D, H, W, incl, wtd, wce, wdice], dtype=np.float32)
    T[p + "logits"] = x
    T[p + "labels"] = y.astype(np.float32)
    if wtd:
        T[p + "weights"] = w
    hilo(p + "ce", ce.item())
    hilo(p + "dice", dc.item())
    hilo(p + "grad", xt.grad.numpy())

cls_cases = [  # B, V, weighted, smoothing, gamma, logit scale
    (8, 5, 0, 0.0, 0.0, 2.0),
    (8, 5, 1, 0.0, 0.0, 2.0),
    (8, 5, 0, 0.125, 0.0, 2.0),
    (16, 3, 1, 0.25, 0.0, 3.0),
    (16, 4, 1, 0.0, 2.0, 2.0),
    (12, 2, 0, 0.0, 0.5, 4.0),
    (1, 7, 1, 0.375, 0.0, 1.0),
]
for i, (B, V, wtd, eps, gam, sc) in enumerate(cls_cases):
    x = f32(rng, (B, V), sc)
    y = rng.integers(0, V, size=B)
    w = (0.25 + rng.random(V)).astype(np.float32) if wtd else None
    xt = torch.tensor(x.astype(np.float64), requires_grad=True)
    yt = torch.tensor(y, dtype=torch.long)
    wt = torch.tensor(w.astype(np.float64)) if wtd else None
    if gam > 0:
        lp = torch.log_softmax(xt, 1).gather(1, yt[:, None])[:, 0]
        a = wt[yt] if wtd else torch.ones(B)
        L = (-a * (1.0 - lp.exp()) ** gam * lp).mean()
    else:
        L = torch.nn.CrossEntropyLoss(weight=wt, label_smoothing=eps)(xt, yt)
    L.backward()
    p = f"cls{i}."
    T[p + "cfg"] = np.array([B, V, wtd, eps, gam], dtype=np.float32)
    T[p + "logits"] = x
    T[p + "targets"] = y.astype(np.float32)
    if wtd:
        T[p + "weights"] = w
    hilo(p + "loss", L.item())
    hilo(p + "grad", xt.grad.numpy())

for i, (n, kind) in enumerate([(1000, 0), (1000, 1), (37, 0)]):
    a = f32(rng, n, 1.0)
    t = f32(rng, n, 1.0)
    t[::7] = a[::7]  # exact ties: torch's sign(0) = 0 for L1
    at = torch.tensor(a.astype(np.float64), requires_grad=True)
    tt = torch.tensor(t.astype(np.float64))
    L = (torch.nn.L1Loss() if kind == 0 else torch.nn.MSELoss())(at, tt)
    L.backward()
    p = f"reg{i}."
    T[p + "cfg"] = np.array([n, kind], dtype=np.float32)
    T[p + "pred"] = a
    T[p + "target"] = t
    hilo(p + "loss", L.item())
    hilo(p + "grad", at.grad.numpy())

out = sys.argv[1] if len(sys.argv) > 1 else "build/oracle"
os.makedirs(out, exist_ok=True)
st_io.save(os.path.join(out, "losses.safetensors"), T,
           {"dice": len(dice_cases), "cls": len(cls_cases), "reg": 3, "torch": torch.__version__})
print("losses_oracle: wrote", os.path.join(out, "losses.safetensors"))
