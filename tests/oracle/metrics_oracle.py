"""tests/oracle/metrics_oracle.py OUTDIR — independent float64 references for engine/metrics.c,
read by tests/test_metrics.c from OUTDIR/metrics.safetensors.

  dice:  numpy per class, NaN when the class is absent from the ground truth (MONAI
         ignore_empty=True)
  hd:    MONAI compute_hausdorff_distance(percentile, directed=False, spacing) re-derived with
         scipy (MONAI is not installed): edges = mask XOR binary_erosion(mask) (cross
         structure, border_value 0), directed distances from scipy.ndimage.
         distance_transform_edt(~edges_other, sampling=spacing) at the edges, np.percentile
         (linear) of each direction, max of the two; one mask empty -> inf (MONAI: inf for the
         plain HD, nan for a percentile, see hd_ref), both -> nan
  cls:   sklearn roc_auc_score, average_precision_score, accuracy_score,
         balanced_accuracy_score
  img:   skimage peak_signal_noise_ratio / structural_similarity(gaussian_weights=True,
         sigma=1.5, use_sample_covariance=False, K1=0.01, K2=0.03), data_range = max - min of
         the target, on float64 copies; MAE with numpy

Inputs are fp32 (masks and labels as 0/1/k floats). Expected values are float64 stored as
hi = fp32(x), lo = fp32(x - hi) (~48 bits); a non-finite value is stored as hi = lo = x.
"""
import os
import sys
import warnings

import numpy as np
from scipy import ndimage
from sklearn.metrics import (accuracy_score, average_precision_score, balanced_accuracy_score,
                             roc_auc_score)
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_io  # noqa: E402

warnings.simplefilter("ignore")
T = {}


def hilo(name, x):
    x = np.atleast_1d(np.asarray(x, dtype=np.float64))
    hi = x.astype(np.float32)
    lo = np.where(np.isfinite(x), x - hi.astype(np.float64), x).astype(np.float32)
    T[name + "_hi"] = hi
    T[name + "_lo"] = lo


rng = np.random.default_rng(7)

# ---------------------------------------------------------------- dice per class
dice_cases = []
p = rng.integers(0, 4, size=(6, 10, 12))
g = rng.integers(0, 3, size=(6, 10, 12))        # class 3 absent from gt -> NaN
dice_cases.append((p, g, 4))
zz, yy, xx = np.mgrid[0:16, 0:24, 0:24]
g2 = ((zz - 8) ** 2 + (yy - 12) ** 2 + (xx - 11) ** 2 < 36).astype(int)
p2 = ((zz - 8) ** 2 + (yy - 13) ** 2 + (xx - 12) ** 2 < 40).astype(int)
g2[(zz < 3) & (yy < 4)] = 2
dice_cases.append((p2, g2, 3))                  # class 2 in gt, never predicted -> 0
for i, (p, g, K) in enumerate(dice_cases):
    d = []
    for k in range(K):
        P, G = p == k, g == k
        d.append(np.nan if G.sum() == 0 else 2.0 * (P & G).sum() / (P.sum() + G.sum()))
    T[f"dice{i}.pred"] = p.astype(np.float32)
    T[f"dice{i}.gt"] = g.astype(np.float32)
    T[f"dice{i}.K"] = np.array([K], np.float32)
    hilo(f"dice{i}.exp", d)


# ---------------------------------------------------------------- Hausdorff / HD95
def edges(m):
    st = ndimage.generate_binary_structure(m.ndim, 1)
    return m & ~ndimage.binary_erosion(m, structure=st, border_value=0)


def surface_distance(from_e, to_e, sp):  # MONAI get_surface_distance(seg_pred, seg_gt)
    if not to_e.any():
        return np.full(int(from_e.sum()), np.inf)
    if not from_e.any():
        return np.full(int(to_e.sum()), np.inf)
    return ndimage.distance_transform_edt(~to_e, sampling=sp)[from_e]


def hd_ref(pred, gt, sp, pct):
    # exactly one mask empty: MONAI's directed distances are all inf; its percentile path then
    # returns torch.quantile(inf...) = nan (inf - inf in the interpolation) while its plain HD
    # returns inf. vita states +inf for both (a missed or hallucinated structure is not a
    # missing value); both empty: nan, as MONAI.
    if pred.any() != gt.any():
        return np.inf
    if pred.shape[0] == 1:                      # 2D image
        pred, gt, sp = pred[0], gt[0], sp[1:]
    ep, eg = edges(pred.astype(bool)), edges(gt.astype(bool))
    vals = []
    for d in (surface_distance(ep, eg, sp), surface_distance(eg, ep, sp)):
        vals.append(np.nan if d.size == 0 else np.percentile(d, pct))
    return np.nan if np.isnan(vals).any() else max(vals)


def blob(shape, thr, smooth):
    f = ndimage.gaussian_filter(rng.standard_normal(shape), smooth)
    return f > thr * f.std()


hd_cases = []
zz, yy, xx = np.mgrid[0:20, 0:32, 0:28]
a = (((zz - 10) * 3.0) ** 2 + ((yy - 15) * 0.5) ** 2 + ((xx - 13) * 0.6) ** 2) < 81
b = (((zz - 11) * 3.0) ** 2 + ((yy - 17) * 0.5) ** 2 + ((xx - 12) * 0.6) ** 2) < 64
hd_cases.append((a, b, (3.0, 0.5, 0.6), 95.0))              # anisotropic ellipsoids
hd_cases.append((blob((18, 30, 26), 0.5, 2.0), blob((18, 30, 26), 0.6, 2.0), (2.5, 0.7, 0.7), 95.0))
hd_cases.append((blob((18, 30, 26), 0.5, 2.0), blob((18, 30, 26), 0.6, 2.0), (2.5, 0.7, 0.7), 100.0))
hd_cases.append((blob((1, 40, 36), 0.3, 2.5), blob((1, 40, 36), 0.4, 2.5), (1.0, 0.8, 1.1), 95.0))  # 2D
m = np.zeros((12, 16, 16), bool)
m[0:12, 0:9, 3:16] = True                                  # touches the volume border
m2 = np.zeros_like(m)
m2[2:12, 1:10, 0:14] = True
hd_cases.append((m, m2, (1.5, 1.0, 1.0), 95.0))
hd_cases.append((a, a.copy(), (3.0, 0.5, 0.6), 95.0))      # identical: 0
flat = np.zeros((10, 14, 14), bool)
flat[4, 3:10, 2:9] = True                                  # one slice of a 3D volume
flat2 = np.zeros_like(flat)
flat2[4:6, 4:11, 3:11] = True
hd_cases.append((flat, flat2, (4.0, 0.6, 0.6), 95.0))
hd_cases.append((np.zeros_like(a), b, (3.0, 0.5, 0.6), 95.0))              # pred empty: inf
hd_cases.append((a, np.zeros_like(a), (3.0, 0.5, 0.6), 95.0))              # gt empty: inf
hd_cases.append((np.zeros_like(a), np.zeros_like(a), (3.0, 0.5, 0.6), 95.0))  # both: nan
one = np.zeros((9, 9, 9), bool)
one[4, 4, 4] = True
two = np.zeros_like(one)
two[1, 7, 2] = True
hd_cases.append((one, two, (2.0, 0.5, 0.25), 95.0))        # single voxels: exact distance
for i, (p, g, sp, pct) in enumerate(hd_cases):
    T[f"hd{i}.pred"] = p.astype(np.float32)
    T[f"hd{i}.gt"] = g.astype(np.float32)
    T[f"hd{i}.spacing"] = np.array(sp, np.float32)         # the reference uses these fp32 values
    T[f"hd{i}.pct"] = np.array([pct], np.float32)
    hilo(f"hd{i}.exp", hd_ref(p, g, np.array(sp, np.float32).astype(np.float64), pct))

# ---------------------------------------------------------------- classification
cls_cases = []
n = 500
lab = (rng.random(n) < 0.3).astype(int)
cls_cases.append((rng.standard_normal(n) + 1.2 * lab, lab))           # continuous scores
n = 300
lab = (rng.random(n) < 0.4).astype(int)
cls_cases.append((np.round(4 * rng.random(n) + 1.5 * lab) / 4, lab))  # heavy ties
lab = np.array([0, 1, 0, 1, 1, 0, 0])
cls_cases.append((np.full(7, 0.5), lab))                              # all tied: AUROC 0.5
cls_cases.append((np.array([0.9, 0.8, 0.8, 0.3, 0.1]), np.array([1, 1, 0, 0, 0])))
cls_cases.append((np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])))  # sklearn doc
n = 64
lab = (rng.random(n) < 0.1).astype(int)
lab[0] = 1
cls_cases.append((rng.random(n).astype(np.float32).astype(np.float64), lab))
for i, (s, y) in enumerate(cls_cases):
    s = np.asarray(s, np.float32).astype(np.float64)   # the C side reads fp32 scores
    auc = roc_auc_score(y, s)
    ap = average_precision_score(y, s)
    T[f"cls{i}.score"] = s.astype(np.float32)
    T[f"cls{i}.label"] = y.astype(np.float32)
    hilo(f"cls{i}.exp", [auc, ap, (auc + ap) / 2])

mc_cases = []
n = 400
gt = rng.choice(4, size=n, p=[0.6, 0.25, 0.1, 0.05])
pr = np.where(rng.random(n) < 0.6, gt, rng.integers(0, 5, size=n))   # class 4 only predicted
mc_cases.append((pr, gt, 5))
gt = rng.integers(0, 2, size=50)
pr = rng.integers(0, 2, size=50)
mc_cases.append((pr, gt, 2))
for i, (pr, gt, K) in enumerate(mc_cases):
    T[f"mc{i}.pred"] = pr.astype(np.float32)
    T[f"mc{i}.gt"] = gt.astype(np.float32)
    T[f"mc{i}.K"] = np.array([K], np.float32)
    hilo(f"mc{i}.exp", [accuracy_score(gt, pr), balanced_accuracy_score(gt, pr)])

# ---------------------------------------------------------------- image metrics
img_cases = []
t = ndimage.gaussian_filter(rng.standard_normal((1, 40, 48)), 3.0) * 5 + 2
img_cases.append((t, t + 0.2 * rng.standard_normal(t.shape)))                  # 2D
t = ndimage.gaussian_filter(rng.standard_normal((16, 20, 24)), 2.0) * 4
img_cases.append((t, 0.8 * t + 0.1 * rng.standard_normal(t.shape) + 0.05))      # 3D
t = rng.random((1, 11, 13)) * 100
img_cases.append((t, t + rng.standard_normal(t.shape)))                         # minimal 2D
t = ndimage.gaussian_filter(rng.standard_normal((12, 11, 30)), 1.0) + 100.0
img_cases.append((t, t + 0.05 * rng.standard_normal(t.shape)))                  # large offset
for i, (t, p) in enumerate(img_cases):
    t = t.astype(np.float32).astype(np.float64)
    p = p.astype(np.float32).astype(np.float64)
    R = t.max() - t.min()
    tt, pp = (t[0], p[0]) if t.shape[0] == 1 else (t, p)
    ssim = structural_similarity(tt, pp, data_range=R, gaussian_weights=True, sigma=1.5,
                                 use_sample_covariance=False, K1=0.01, K2=0.03)
    psnr = peak_signal_noise_ratio(tt, pp, data_range=R)
    T[f"img{i}.target"] = t.astype(np.float32)
    T[f"img{i}.pred"] = p.astype(np.float32)
    hilo(f"img{i}.exp", [np.mean(np.abs(p - t)), psnr, ssim])

out = sys.argv[1] if len(sys.argv) > 1 else "build/oracle"
os.makedirs(out, exist_ok=True)
st_io.save(os.path.join(out, "metrics.safetensors"), T,
           {"dice": len(dice_cases), "hd": len(hd_cases), "cls": len(cls_cases),
            "mc": len(mc_cases), "img": len(img_cases)})
print("metrics_oracle: wrote", os.path.join(out, "metrics.safetensors"))
