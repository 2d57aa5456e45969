"""tests/test_predict.py — `vita predict` end to end through the binary ($VITA_BUILD/vita):

  vita phantom (20 cases of 20x40x36) -> its /geometry rewritten by h5py with known native
  geometries -> vita train (segment, classify, superres: vit-tiny-3d at 16x32x32, one short
  epoch each) -> vita predict and vita eval on the test split; plus vita predict of the same
  checkpoint on a copy of the dataset without /geometry, whose outputs are the dataset-grid
  predictions themselves (native = grid there); and the import round trip (import_round_trip:
  NIfTI written here -> vita import --layout flat -> train -> predict).

Native geometries of the phantom test cases (alternating):
  A  rotation + x flip, spacing (z,y,x) (3.2, 0.55, 0.6), no resampling, crop inside the native
     grid: the native map is the dataset-grid prediction pasted at crop_offset, 0 elsewhere,
     and its Dice against /seg pasted the same way equals metrics.csv's dice columns.
  B  another rotation + y flip, spacing (3.0, 0.6, 0.6), grid_spacing (1.5, 1.0, 1.0) (z
     upsampled 2x, y/x downsampled 5/3) and crop (-1, 2, -2) with padding on every axis: each
     native voxel must hold the dataset-grid label nearest to its world position, computed
     here from volume.h's formulas (0 outside); no voxel centre is within 0.1 voxel of a
     rounding tie (2z+1, 0.6y-2, 0.6x+2), so the check is exact.
Checks (nibabel reads the NIfTI independently of vita): shape = shape_original (x,y,z order),
affine = RAS of vita's LPS geometry (x, y rows negated) within 1e-4 mm (NIfTI stores the sform
in float32: ~1e-5 mm at |origin| < 130 mm), uint8 labels in 0..3; the --probs map is float32
in [0, 1], 0 outside, > 0.5 where a foreground label won (p0 < p_k means p0 < 1/2) and at most
1 - 1/K where background won; metrics.csv = vita eval's CSV rows + an 'overall' row whose
values are the per-column means (nan skipped, infinite hd95 excluded); classify's
predictions.csv; superres images pasted like the labels (linear interpolation at integer
positions: exact up to float rounding, rel 1e-5); one-line user errors for a missing run dir,
an unknown case id, a missing --out, a segment model on a dataset without /seg.
Runs in about 25-50 s on 2 cores. Needs /usr/bin/python3 with numpy, h5py, nibabel."""
import csv
import math
import os
import shutil
import subprocess
import sys
import tempfile

import h5py
import nibabel as nib
import numpy as np

BUILD = os.environ.get("VITA_BUILD", "build")
VITA = os.path.abspath(os.path.join(BUILD, "vita"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pyharness  # noqa: E402

T = pyharness.Checks()
check = T.check


def vita(*args, expect=0):
    env = dict(os.environ, OMP_NUM_THREADS="2")
    r = subprocess.run([VITA] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True, env=env)
    if r.returncode != expect:
        print("  $ vita %s -> exit %d\n%s%s" % (" ".join(args), r.returncode, r.stdout[-3000:],
                                                r.stderr[-3000:]))
    return r


def rotation(axis, deg):
    a = np.asarray(axis, float) / np.linalg.norm(axis)
    t = math.radians(deg)
    K = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) * math.cos(t) + (1 - math.cos(t)) * np.outer(a, a) + math.sin(t) * K


GEOS = {
    "A": dict(dir=rotation([1, 2, 3], 25) @ np.diag([-1, 1, 1]), sp=(3.2, 0.55, 0.6), gs=None,
              crop=(1, 3, 2), extra=(3, 7, 5), origin=(-41.5, -100.25, -88.0)),
    "B": dict(dir=rotation([-2, 1, 0.5], 40) @ np.diag([1, -1, 1]), sp=(3.0, 0.6, 0.6),
              gs=(1.5, 1.0, 1.0), crop=(-1, 2, -2), shape=(12, 30, 28), origin=(12.0, 3.5, -20.75)),
}


def rewrite_geometry(path):
    """test cases alternate A / B; returns {case_id: kind}"""
    kinds = {}
    with h5py.File(path, "r+") as f:
        D, H, W = f["images"].shape[2:]
        n = f["images"].shape[0]
        split = f["split"][:]
        ids = [c.decode() if isinstance(c, bytes) else c for c in f["case_id"][:]]
        g = f["geometry"]
        if "grid_spacing" in g:
            del g["grid_spacing"]
        grid = g["spacing"][:].copy()
        t = 0
        for i in range(n):
            if split[i] != 2:
                continue
            kind = "AB"[t % 2]
            t += 1
            G = GEOS[kind]
            kinds[ids[i]] = kind
            g["spacing"][i] = G["sp"]
            g["origin"][i] = G["origin"]
            g["direction"][i] = G["dir"].reshape(9)
            g["crop_offset"][i] = G["crop"]
            if kind == "A":
                g["shape_original"][i] = [D + G["extra"][0], H + G["extra"][1], W + G["extra"][2]]
                grid[i] = G["sp"]
            else:
                g["shape_original"][i] = G["shape"]
                grid[i] = G["gs"]
        g.create_dataset("grid_spacing", data=grid)
    return kinds




def ras_affine(G, sp):
    A = np.eye(4)
    A[:3, :3] = G["dir"] @ np.diag([sp[2], sp[1], sp[0]])
    A[:3, 3] = G["origin"]
    return np.diag([-1, -1, 1, 1]) @ A


def zyx(img):
    """nibabel's [x, y, z] array as vita's [z, y, x]"""
    return np.asarray(img.dataobj).transpose(2, 1, 0)


def dice(pred, truth, k):
    t = truth == k
    p = pred == k
    if not t.any():
        return float("nan")
    return 2.0 * (p & t).sum() / float(p.sum() + t.sum())


def same(a, b, rel=1e-8):
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= rel * max(1.0, abs(b))


def read_csv(path):
    with open(path) as f:
        return list(csv.reader(f))


def nn_expected(grid_lab, G, shape, D, H, W):
    """native [z,y,x] labels by hand: native index -> world -> dataset continuous index"""
    z, y, x = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), np.arange(shape[2]), indexing="ij")
    sp, gs, crop = G["sp"], G["gs"], G["crop"]
    idx = np.stack([x * sp[2], y * sp[1], z * sp[0]], -1)          # mm along the index axes
    world = idx @ G["dir"].T + np.asarray(G["origin"])
    back = (world - np.asarray(G["origin"])) @ G["dir"]              # dir orthonormal: inverse = T
    c = [back[..., 0] / gs[2] - crop[2], back[..., 1] / gs[1] - crop[1], back[..., 2] / gs[0] - crop[0]]
    frac = min(float(np.min(np.abs(ci - np.floor(ci) - 0.5))) for ci in c)
    inside = np.ones(x.shape, bool)
    r = []
    for ci, n in zip(c, (W, H, D)):
        inside &= (ci >= -0.5) & (ci <= n - 0.5)
        r.append(np.clip(np.floor(ci + 0.5).astype(int), 0, n - 1))
    out = np.where(inside, grid_lab[r[2], r[1], r[0]], 0)
    return out, frac


def train(work, data, name, task_yaml):
    """a one-epoch run of vit-tiny-3d at 16x32x32 (seconds); returns RUN_DIR or None"""
    cfg = os.path.join(work, name + ".yaml")
    with open(cfg, "w") as f:
        f.write("run:\n  name: %s\n  out: %s/runs/\n  seed: 0\n"
                "model:\n  preset: vit-tiny-3d\n  weights: null\n"
                "task:\n%s"
                "data:\n  path: %s\n  batch: 2\n  workers: 1\n"
                "train:\n  epochs: 1\n  lr: 1.0e-03\n  warmup_epochs: 0\n"
                "align:\n  layers: [1, norm]\n  probe:\n    split: train\n    n_images: 4\n"
                % (name, work, task_yaml, data))
    r = vita("train", cfg, "--set", "model.img_size=[16,32,32]", "--set", "model.patch=[4,8,8]",
             "--threads", "2", "--quiet")
    ok = check("vita train (%s, 1 epoch)" % name, r.returncode == 0)
    return os.path.join(work, "runs", name) if ok else None


def import_round_trip(work):
    """NIfTI cases written here (geometry C: rotation + z flip, spacing (z,y,x) (3.0, 0.6, 0.5),
    shape (8, 30, 36)) -> vita import --layout flat --spacing 1.0,1.0,1.5 --size 24,20,16 (z
    upsampled 3x, y/x downsampled 5/3 and 3, padded in y and x) -> train 1 epoch -> predict.
    (1) the lesion label written in, read out of the dataset's /seg and mapped back by hand with
    the /geometry the importer wrote, lands on the same native voxels (Dice 1: the blocks are
    unions of native voxels nearest to runs of resampled voxels, representable on that grid);
    (2) the predicted map's NIfTI has the input's shape and affine, and equals the prediction
    on the dataset grid (predict on a copy without /geometry) mapped back by the same hand
    formula: the prediction lands where the label came from."""
    src = os.path.join(work, "nifti")
    os.makedirs(src)
    G = dict(dir=rotation([0.3, -1, 2], 30) @ np.diag([1, 1, -1]), sp=(3.0, 0.6, 0.5),
             gs=(1.0, 1.0, 1.5), origin=(20.5, -14.25, 33.0))
    shape = (8, 30, 36)
    aff = ras_affine(G, G["sp"])
    rng = np.random.default_rng(0)
    rows = ["case_id,t2w,adc,hbv,seg,cls,split,fold"]
    written = {}
    for i in range(8):
        cid = "nii_%d" % i
        lab = np.zeros(shape, np.uint8)
        z, y, x = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
        # resampled-grid runs (z, y, x) -> the native voxels nearest to them
        kz, ky, kx = z * 3.0, np.floor(y * 0.6 + 0.5), np.floor(x / 3.0 + 0.5)
        lo = 3 + i % 3
        lab[(kz >= 3 * (1 + i % 2)) & (kz <= 3 * (4 + i % 2)) & (ky >= lo) & (ky <= lo + 8) &
            (kx >= 2) & (kx <= 6 + i % 4)] = 1
        img = (rng.normal(0, 1, shape) + 2.0 * lab).astype(np.float32)
        nib.save(nib.Nifti1Image(img.transpose(2, 1, 0), aff), os.path.join(src, cid + "_t2w.nii.gz"))
        nib.save(nib.Nifti1Image(lab.transpose(2, 1, 0), aff), os.path.join(src, cid + "_seg.nii.gz"))
        split = "test" if i >= 6 else "val" if i == 5 else "train"
        rows.append("%s,%s_t2w.nii.gz,,,%s_seg.nii.gz,,%s," % (cid, cid, cid, split))
        written[cid] = lab
    with open(os.path.join(src, "cases.csv"), "w") as f:
        f.write("\n".join(rows) + "\n")
    data = os.path.join(work, "imported.h5")
    r = vita("import", "--layout", "flat", os.path.join(src, "cases.csv"), "--out", data,
             "--label-names", "background,lesion", "--spacing", "1.0,1.0,1.5", "--size", "24,20,16",
             "--quiet")
    if not check("vita import --layout flat of 8 NIfTI cases (rotated, z-flipped, anisotropic)",
                 r.returncode == 0):
        return
    with h5py.File(data, "r") as f:
        ids = [c.decode() if isinstance(c, bytes) else c for c in f["case_id"][:]]
        D, H, W = f["images"].shape[2:]
        g = {k: f["geometry"][k][:] for k in f["geometry"]}
        seg = {ids[i]: f["seg"][i] for i in range(len(ids))}
    i0 = ids.index("nii_6")
    gerr = max(float(np.max(np.abs(g["direction"][i0].reshape(3, 3) - G["dir"]))),
               float(np.max(np.abs(g["spacing"][i0] - G["sp"]))),
               float(np.max(np.abs(g["origin"][i0] - G["origin"]))))
    # the NIfTI sform is float32: direction / spacing / origin back to ~1e-7 relative
    check("import: /geometry = the NIfTI's LPS geometry (max |diff| %.1e <= 1e-4), shape_original "
          "%s, grid_spacing %s" % (gerr, list(g["shape_original"][i0]), list(g.get("grid_spacing", [[0]])[i0])),
          gerr <= 1e-4 and list(g["shape_original"][i0]) == list(shape) and "grid_spacing" in g and
          np.allclose(g["grid_spacing"][i0], G["gs"]))

    def geo_of(cid):
        i = ids.index(cid)
        return dict(dir=g["direction"][i].reshape(3, 3), sp=g["spacing"][i], origin=g["origin"][i],
                    gs=g["grid_spacing"][i], crop=g["crop_offset"][i])

    ok, tie = True, 1.0
    for cid, lab in written.items():
        back, t = nn_expected(seg[cid], geo_of(cid), shape, D, H, W)
        tie = min(tie, t)
        inter = float(((back == 1) & (lab == 1)).sum())
        ok &= lab.sum() > 100 and 2 * inter / float((back == 1).sum() + (lab == 1).sum()) == 1.0
    check("import: every label written in comes back on the same native voxels through /seg and "
          "/geometry (Dice 1; min tie distance %.3f)" % tie, ok and tie > 0.05)
    run = train(work, data, "imp", "  name: segment\n  num_classes: 2\n  head:\n    kind: unetr\n"
                "    feature_size: 8\n  loss:\n    kind: dice_ce\n  metric: dice\n")
    if not run:
        return
    nogeo = os.path.join(work, "imported_nogeo.h5")
    shutil.copy(data, nogeo)
    with h5py.File(nogeo, "r+") as f:
        del f["geometry"]
    out, out0 = os.path.join(work, "pred_imp"), os.path.join(work, "pred_imp_grid")
    r = vita("predict", run, "--data", data, "--out", out, "--quiet")
    r0 = vita("predict", run, "--data", nogeo, "--out", out0, "--quiet")
    if not check("vita predict on the imported dataset (and its copy without /geometry)",
                 r.returncode == 0 and r0.returncode == 0):
        return
    for cid in ("nii_6", "nii_7"):
        img = nib.load(os.path.join(out, cid + "_seg.nii.gz"))
        src_img = nib.load(os.path.join(src, cid + "_t2w.nii.gz"))
        grid = zyx(nib.load(os.path.join(out0, cid + "_seg.nii.gz")))
        exp, t = nn_expected(grid, geo_of(cid), shape, D, H, W)
        aerr = float(np.max(np.abs(img.affine - src_img.affine)))
        check("%s: prediction NIfTI has the input T2w's shape %s and affine (max |diff| %.1e <= 1e-4) "
              "and = the dataset-grid prediction mapped back by hand (differing %d of %d labelled)"
              % (cid, img.shape, aerr, int((zyx(img) != exp).sum()), int((exp > 0).sum())),
              img.shape == src_img.shape and aerr <= 1e-4 and np.array_equal(zyx(img), exp) and t > 0.05)


def main():
    if not os.access(VITA, os.X_OK):
        check("vita binary at " + VITA, False, "build it first (make)")
        print(T.summary())
        return 1
    work = tempfile.mkdtemp(prefix="vita_test_predict_")
    data = os.path.join(work, "D.h5")
    r = vita("phantom", "--out", data, "--cases", "20", "--size", "20,40,36", "--seed", "5")
    if not check("vita phantom 20 cases of 20x40x36", r.returncode == 0):
        return 1
    kinds = rewrite_geometry(data)
    nogeo = os.path.join(work, "D_nogeo.h5")
    shutil.copy(data, nogeo)
    with h5py.File(nogeo, "r+") as f:
        del f["geometry"]
    check("test split has cases of both geometries", sorted(set(kinds.values())) == ["A", "B"],
          str(kinds))

    run = train(work, data, "seg", "  name: segment\n  num_classes: 4\n  head:\n    kind: unetr\n"
                "    feature_size: 8\n  loss:\n    kind: dice_ce\n  metric: dice\n")
    if not run:
        return 1

    out = os.path.join(work, "pred")
    r = vita("predict", run, "--out", out, "--probs", "--threads", "2")
    if not check("vita predict RUN_DIR --probs exits 0", r.returncode == 0):
        return 1
    out0 = os.path.join(work, "pred_grid")
    r = vita("predict", run, "--data", nogeo, "--out", out0, "--probs", "--quiet")
    check("vita predict on the copy without /geometry exits 0", r.returncode == 0)
    ecsv = os.path.join(work, "eval.csv")
    r = vita("eval", run, "--csv", ecsv, "--quiet")
    check("vita eval RUN_DIR exits 0", r.returncode == 0)

    with h5py.File(data, "r") as f:
        D, H, W = f["images"].shape[2:]
        ids = [c.decode() if isinstance(c, bytes) else c for c in f["case_id"][:]]
        truth = {ids[i]: f["seg"][i] for i in range(len(ids))}
        geo = {k: f["geometry"][k][:] for k in f["geometry"]}
    m = read_csv(os.path.join(out, "metrics.csv"))
    hdr, rows = m[0], {row[0]: row for row in m[1:]}
    for cid, kind in sorted(kinds.items()):
        i = ids.index(cid)
        G = GEOS[kind]
        so = [int(v) for v in geo["shape_original"][i]]
        seg_img = nib.load(os.path.join(out, cid + "_seg.nii.gz"))
        prob_img = nib.load(os.path.join(out, cid + "_prob.nii.gz"))
        grid_seg = zyx(nib.load(os.path.join(out0, cid + "_seg.nii.gz")))
        grid_prob = zyx(nib.load(os.path.join(out0, cid + "_prob.nii.gz")))
        seg = zyx(seg_img)
        prob = zyx(prob_img)
        check("%s (%s): NIfTI shape = shape_original %s (x,y,z %s)" % (cid, kind, so, seg_img.shape),
              seg.shape == tuple(so) and prob.shape == tuple(so) and grid_seg.shape == (D, H, W))
        aff_err = max(float(np.max(np.abs(seg_img.affine - ras_affine(G, G["sp"])))),
                      float(np.max(np.abs(prob_img.affine - ras_affine(G, G["sp"])))))
        check("%s: affine = RAS of the LPS native geometry (max |diff| %.2e mm <= 1e-4)" % (cid, aff_err),
              aff_err <= 1e-4)
        check("%s: uint8 labels within 0..3, float32 probabilities in [0, 1]" % cid,
              seg_img.get_data_dtype() == np.uint8 and prob_img.get_data_dtype() == np.float32 and
              seg.max() <= 3 and prob.min() >= 0 and prob.max() <= 1 + 1e-6)
        # the argmax / probability relation on the dataset grid (float slack 1e-6)
        fg = grid_seg > 0
        check("%s: foreground prob > 1/2 where a foreground label won, <= 3/4 elsewhere" % cid,
              (not fg.any() or grid_prob[fg].min() > 0.5 - 1e-6) and
              (fg.all() or grid_prob[~fg].max() <= 0.75 + 1e-6))
        if kind == "A":
            c = G["crop"]
            box = (slice(c[0], c[0] + D), slice(c[1], c[1] + H), slice(c[2], c[2] + W))
            exp = np.zeros(so, np.uint8)
            exp[box] = grid_seg
            check("%s: native labels = dataset-grid prediction pasted at crop_offset (voxels differing: %d)"
                  % (cid, int((exp != seg).sum())), np.array_equal(exp, seg))
            expp = np.zeros(so, np.float32)
            expp[box] = grid_prob
            perr = float(np.max(np.abs(expp - prob)))
            check("%s: native probabilities = pasted dataset-grid ones (max |diff| %.1e)" % (cid, perr),
                  perr == 0)
            t = np.zeros(so, np.uint8)
            t[box] = truth[cid]
            row = rows.get(cid)
            ok = row is not None
            for k, name in enumerate(["tz", "pz", "lesion"], 1):
                if ok:
                    ok = same(float(row[hdr.index("dice_" + name)]), dice(seg, t, k), 1e-8)
            check("%s: Dice per class in native space = metrics.csv's (dataset grid)" % cid, ok)
        else:
            exp, tie = nn_expected(grid_seg, G, so, D, H, W)
            check("%s: native labels = hand-computed nearest dataset voxel (differing: %d; min tie "
                  "distance %.3f)" % (cid, int((exp != seg).sum()), tie), np.array_equal(exp, seg) and tie > 0.09)
            check("%s: both the resampled and the padded parts occur (labelled %d, zero rim %d)"
                  % (cid, int((seg > 0).sum()), int((exp == 0).sum())), (seg > 0).sum() > 50)

    # metrics.csv vs vita eval's CSV
    e = read_csv(ecsv)
    check("metrics.csv header = eval CSV header (%s)" % ",".join(hdr), e[0] == hdr and hdr[:2] == ["case_id", "split"])
    check("metrics.csv rows = test cases + overall (%d = %d + 1)" % (len(m) - 1, len(kinds)),
          len(m) - 1 == len(kinds) + 1 and m[-1][0] == "overall")
    check("metrics.csv per-case rows = vita eval's rows", m[1:-1] == e[1:])
    ok = True
    for k in range(2, len(hdr)):
        col = np.array([float(row[k]) for row in m[1:-1]])
        if hdr[k] != "psnr":
            col[np.isinf(col)] = np.nan
        want = float(np.nanmean(col)) if np.isfinite(col).any() else float("nan")
        ok &= same(float(m[-1][k]), want, 1e-8)
    check("overall row = per-column means (nan skipped, infinite hd95 excluded)", ok)

    # classify: predictions.csv; superres: float32 images in native geometry
    crun = train(work, data, "cls", "  name: classify\n  num_classes: 2\n  head:\n    kind: mlp\n"
                 "  loss:\n    kind: ce\n  metric: auroc\n")
    if crun:
        cout = os.path.join(work, "pred_cls")
        r = vita("predict", crun, "--out", cout, "--quiet")
        p = read_csv(os.path.join(cout, "predictions.csv")) if r.returncode == 0 else [[]]
        cm = read_csv(os.path.join(cout, "metrics.csv")) if r.returncode == 0 else [[]]
        with h5py.File(data, "r") as f:
            cls = {ids[i]: int(f["cls"][i]) for i in range(len(ids))}
        ok = p[0] == ["case_id", "split", "p_benign", "p_csPCa", "pred", "label"] and len(p) == len(kinds) + 1
        for row in p[1:]:
            pr = [float(row[2]), float(row[3])]
            mrow = [x for x in cm[1:] if x[0] == row[0]]
            ok &= (row[1] == "test" and abs(sum(pr) - 1) < 1e-6 and int(row[4]) == int(pr[1] > pr[0])
                   and int(row[5]) == cls[row[0]] and len(mrow) == 1 and
                   same(float(mrow[0][cm[0].index("score")]), pr[1], 1e-8))
        check("classify: predictions.csv = case_id,split,p_<class>,pred,label per test case; p sums "
              "to 1, pred = argmax, label = /cls, p_csPCa = metrics.csv score", ok)
    srun = train(work, data, "sr", "  name: superres\n  head:\n    input_channel: 0\n"
                 "  loss:\n    kind: l1\n  metric: psnr\n")
    if srun:
        sout, sout0 = os.path.join(work, "pred_sr"), os.path.join(work, "pred_sr_grid")
        r = vita("predict", srun, "--out", sout, "--quiet")
        r0 = vita("predict", srun, "--data", nogeo, "--out", sout0, "--quiet")
        ok = r.returncode == 0 and r0.returncode == 0
        for cid, kind in sorted(kinds.items()):
            if not ok or kind != "A":
                continue
            img = nib.load(os.path.join(sout, cid + "_superres.nii.gz"))
            grid = zyx(nib.load(os.path.join(sout0, cid + "_superres.nii.gz")))
            c = GEOS[kind]["crop"]
            exp = np.zeros(img.shape[::-1], np.float32)
            exp[c[0]:c[0] + D, c[1]:c[1] + H, c[2]:c[2] + W] = grid
            # linear interpolation at positions that are integers up to ~1e-13: float rounding
            err = float(np.max(np.abs(zyx(img) - exp))) / max(1e-6, float(np.max(np.abs(grid))))
            aff = float(np.max(np.abs(img.affine - ras_affine(GEOS[kind], GEOS[kind]["sp"]))))
            ok &= img.get_data_dtype() == np.float32 and err < 1e-5 and aff <= 1e-4
        check("superres: <case>_superres.nii.gz float32 in native geometry = the dataset-grid "
              "image pasted at crop_offset (rel 1e-5)", ok)

    import_round_trip(work)

    # --cases / --limit and user errors
    one = sorted(kinds)[0]
    r = vita("predict", run, "--out", os.path.join(work, "one"), "--cases", one, "--quiet")
    files = sorted(os.listdir(os.path.join(work, "one"))) if r.returncode == 0 else []
    check("--cases %s writes that case only" % one, files == sorted([one + "_seg.nii.gz", "metrics.csv"]), str(files))
    r = vita("predict", run, "--out", os.path.join(work, "lim"), "--limit", "1", "--quiet")
    check("--limit 1: metrics.csv has one case + overall",
          r.returncode == 0 and len(read_csv(os.path.join(work, "lim", "metrics.csv"))) == 3)
    for what, args in [("missing run dir", [os.path.join(work, "nope"), "--out", out]),
                       ("unknown case id", [run, "--out", out, "--cases", "case_zz"]),
                       ("missing --out", [run]),
                       ("a dataset without the split",
                        [run, "--out", out, "--data", os.path.join(work, "imported.h5"), "--split", "probe"]),
                       ("a classify model on a dataset without /cls",
                        [crun or run, "--out", out, "--data", os.path.join(work, "imported.h5")])]:
        r = vita("predict", *args, expect=1)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        check("user error, one line (%s): %s" % (what, lines[-1] if lines else ""),
              r.returncode == 1 and len(lines) == 1 and lines[0].startswith("vita: "))
    # unlabelled clinical data: a segment model predicts a dataset without /seg; the masks are
    # the labelled run's (same model, same images), metrics.csv has no metric columns
    noseg = os.path.join(work, "noseg.h5")
    shutil.copy(data, noseg)
    with h5py.File(noseg, "r+") as f:
        del f["seg"]
        del f.attrs["label_names"]
    out_u = os.path.join(work, "pred_unlabelled")
    r = vita("predict", run, "--out", out_u, "--data", noseg, "--quiet")
    check("vita predict: segment model on a dataset without /seg exits 0", r.returncode == 0,
          r.stderr.strip())
    if r.returncode == 0:
        m_u = read_csv(os.path.join(out_u, "metrics.csv"))
        check("  metrics.csv without labels: case_id,split only, one row per case + overall",
              m_u[0] == ["case_id", "split"] and len(m_u) == len(kinds) + 2, str(m_u[0]))
        same_masks = all(np.array_equal(zyx(nib.load(os.path.join(out_u, c + "_seg.nii.gz"))),
                                        zyx(nib.load(os.path.join(out, c + "_seg.nii.gz"))))
                         for c in kinds)
        check("  its masks equal the labelled dataset's predictions voxel for voxel", same_masks)
    r = vita("eval", run, "--data", noseg, "--csv", os.path.join(work, "e.csv"), expect=1)
    check("vita eval still refuses a segment dataset without /seg (one line)",
          r.returncode == 1 and len([ln for ln in r.stderr.splitlines() if ln.strip()]) == 1)
    if T.failed == 0:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print("  work files kept in " + work)
    print(T.summary())
    return 1 if T.failed else 0


if __name__ == "__main__":
    sys.exit(main())
