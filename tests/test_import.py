#!/usr/bin/env python3
"""tests/test_import.py — `vita import` end to end on tiny synthetic PI-CAI (MetaImage, written by
a hand-rolled MHA writer here) and Prostate158 (NIfTI, written by nibabel) trees: shapes, the
T2w/hbv per-case z-scores, ADC clipping/normalisation from the stored attrs, label mapping
(ISUP >= 2 -> csPCa; gland/lesion; tz/pz/lesion), folds -> splits, geometry equal to what was
written (LPS; nibabel's RAS affine with x, y negated), ADC resampled onto the T2w grid at known
world points, --spacing/--size (grid_spacing, crop_offset at the gland centroid), and a broken
case (one-line error; listed in the report with --skip-bad).
Independent orientation check: where SimpleITK is importable (or VITA_SITK_PYTHON names a Python
that has it, e.g. a venv with `pip install SimpleITK`), ITK reads the written inputs and its
origin/spacing/direction must equal the geometry vita stored. Last line: "N passed, N failed"."""
import json, os, shutil, subprocess, sys, tempfile, zlib
import numpy as np
import h5py
import nibabel as nib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pyharness  # noqa: E402

T = pyharness.Checks()
check = T.check


def rot(a, b):
    """a non-identity LPS direction: rotation about z by a, then about x by b (columns = axes)"""
    Rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    Rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return Rx @ Rz


def write_mha(path, arr_zyx, sp_xyz, origin, D, compress=True):
    """MetaImage as ITK writes it: TransformMatrix lists the direction of axis x, then y, then z"""
    met = {np.dtype(np.float32): "MET_FLOAT", np.dtype(np.int16): "MET_SHORT",
           np.dtype(np.uint8): "MET_UCHAR"}[arr_zyx.dtype]
    raw = np.ascontiguousarray(arr_zyx).astype(arr_zyx.dtype.newbyteorder("<")).tobytes()
    data = zlib.compress(raw) if compress else raw
    tm = " ".join(repr(float(D[r, c])) for c in range(3) for r in range(3))
    nz, ny, nx = arr_zyx.shape
    hdr = (f"ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
           f"CompressedData = {'True' if compress else 'False'}\n"
           + (f"CompressedDataSize = {len(data)}\n" if compress else "")
           + f"TransformMatrix = {tm}\nOffset = {' '.join(repr(float(o)) for o in origin)}\n"
           f"AnatomicalOrientation = RAI\nElementSpacing = {' '.join(repr(float(s)) for s in sp_xyz)}\n"
           f"DimSize = {nx} {ny} {nz}\nElementType = {met}\nElementDataFile = LOCAL\n")
    with open(path, "wb") as f:
        f.write(hdr.encode() + data)


def lps_affine(sp_xyz, origin, D):
    A = np.eye(4)
    A[:3, :3] = D @ np.diag(sp_xyz)
    A[:3, 3] = origin
    return A


def write_nii(path, arr_zyx, sp_xyz, origin, D):
    """nibabel wants RAS: negate the x and y rows of the LPS affine"""
    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps_affine(sp_xyz, origin, D)
    img = nib.Nifti1Image(np.ascontiguousarray(arr_zyx.transpose(2, 1, 0)), ras)
    img.set_sform(ras, code=1)
    img.set_qform(ras, code=1)
    nib.save(img, path)
    return ras


def world(A_lps, ijk):
    return (A_lps @ np.append(np.asarray(ijk, float), 1.0))[:3]


VITA = os.path.join(os.environ.get("VITA_BUILD", "build"), "vita")


def vita(*args):
    r = subprocess.run([VITA, *args], capture_output=True, text=True)
    return r.returncode, r.stdout, r.stderr


def blob(shape, centre, radius):
    z, y, x = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    return ((z - centre[0]) ** 2 / 1.0 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2) <= radius ** 2


def sitk_geometry(paths):
    """(origin, spacing, direction) per file as ITK reads them, or None without SimpleITK"""
    code = ("import json,sys,SimpleITK as s\n"
            "out=[]\n"
            "for p in sys.argv[1:]:\n"
            "    i=s.ReadImage(p); out.append([list(i.GetOrigin()),list(i.GetSpacing()),list(i.GetDirection())])\n"
            "print(json.dumps(out))\n")
    peers = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".venv-peers", "bin", "python")
    for py in [sys.executable, os.environ.get("VITA_SITK_PYTHON", ""), peers if os.path.exists(peers) else ""]:
        if not py:
            continue
        r = subprocess.run([py, "-c", code, *paths], capture_output=True, text=True)
        if r.returncode == 0:
            return json.loads(r.stdout)
    return None


def picai(tmp):
    rng = np.random.default_rng(0)
    src, lab, gl = (os.path.join(tmp, d) for d in ("images", "labels", "gland"))
    for d in (src, lab, gl):
        os.makedirs(d)
    D = rot(0.4, 0.25)
    nz, ny, nx = 6, 20, 24
    t2_sp = np.array([0.5, 0.6, 3.0])           # x, y, z
    cases = {"10001_1000001": (3, 3), "10002_1000002": (0, 1), "10003_1000003": (1, None)}
    truth = {}
    for k, (cid, (lesion_val, isup)) in enumerate(cases.items()):
        pid = cid.split("_")[0]
        os.makedirs(os.path.join(src, pid), exist_ok=True)
        origin = np.array([-10.0 + k, 20.0, 5.0 - 2 * k])
        t2 = (rng.normal(300, 40, (nz, ny, nx)) + 100 * k).astype(np.float32)
        write_mha(os.path.join(src, pid, f"{cid}_t2w.mha"), t2, t2_sp, origin, D, compress=(k != 1))
        # ADC / hbv on a coarser grid covering the T2w field of view with a 6-voxel margin
        a_sp = np.array([1.5, 1.8, 3.0])
        A_t2 = lps_affine(t2_sp, origin, D)
        a_origin = world(A_t2, [-12, -12, 0])
        A_adc = lps_affine(a_sp, a_origin, D)
        an = (nz, 7 + 2 * 8 + 1, 8 + 2 * 8 + 1)
        zz, yy, xx = np.meshgrid(*[np.arange(n) for n in an], indexing="ij")
        pts = A_adc @ np.stack([xx.ravel(), yy.ravel(), zz.ravel(), np.ones(xx.size)])
        adc = (1000 + 20 * pts[0] + 10 * pts[1] - 5 * pts[2]).reshape(an).astype(np.float32)
        write_mha(os.path.join(src, pid, f"{cid}_adc.mha"), adc, a_sp, a_origin, D)
        hbv = rng.normal(50, 5, an).astype(np.int16)
        write_mha(os.path.join(src, pid, f"{cid}_hbv.mha"), hbv, a_sp, a_origin, D)
        g = blob((nz, ny, nx), (3, 9 + k, 12), 6).astype(np.uint8)
        les = (blob((nz, ny, nx), (3, 9 + k, 12), 3) * lesion_val).astype(np.uint8)
        write_nii(os.path.join(gl, f"{cid}.nii.gz"), g, t2_sp, origin, D)
        write_nii(os.path.join(lab, f"{cid}.nii.gz"), les, t2_sp, origin, D)
        truth[cid] = dict(origin=origin, t2=t2, gland=g, lesion=les, A=A_t2, isup=isup)
    with open(os.path.join(tmp, "marksheet.csv"), "w") as f:
        f.write("patient_id,study_id,mri_date,case_ISUP,case_csPCa\n10001,1000001,x,3,YES\n10002,1000002,x,1,NO\n")
    with open(os.path.join(tmp, "folds.csv"), "w") as f:
        f.write("case_id,fold\n10001_1000001,0\n10002_1000002,1\n10003_1000003,2\n")
    out = os.path.join(tmp, "picai.h5")
    rc, so, se = vita("import", "--layout", "picai", src, "--labels", lab, "--gland", gl,
                      "--marksheet", os.path.join(tmp, "marksheet.csv"), "--folds",
                      os.path.join(tmp, "folds.csv"), "--val-fold", "1", "--test-fold", "2",
                      "--out", out, "--quiet")
    check("picai import exits 0", rc == 0, se.strip()[-300:])
    if rc:
        return
    with h5py.File(out, "r") as h:
        ids = [s.decode() if isinstance(s, bytes) else s for s in h["case_id"][:]]
        check("case ids in listing order", ids == list(cases), str(ids))
        img, seg = h["images"][:], h["seg"][:]
        check("images [3,3,6,20,24] (no --size: the T2w grid)", img.shape == (3, 3, nz, ny, nx), str(img.shape))
        check("label_names background,gland,lesion", h.attrs["label_names"] == "background,gland,lesion")
        check("cls: marksheet ISUP 3 -> 1, ISUP 1 -> 0, not in marksheet + lesion voxels -> 1",
              list(h["cls"][:]) == [1, 0, 1], str(list(h["cls"][:])))
        check("splits from folds: fold 1 -> val, fold 2 -> test", list(h["split"][:]) == [0, 1, 2])
        check("fold carried", list(h["fold"][:]) == [0, 1, 2])
        clip, (mean, sd) = h.attrs["adc_clip"], h.attrs["adc_mean_std"]
        for i, cid in enumerate(ids):
            t = truth[cid]
            # the T2w grid is the native grid: labels land voxel for voxel (nearest on the same grid)
            want = np.where(t["lesion"] > 0, 2, t["gland"]).astype(np.uint8)
            check(f"{cid}: seg = gland 1 / lesion 2 voxel for voxel", np.array_equal(seg[i], want))
            # z-score per case over the whole grid: mean 0, std 1 (float32 sums: 1e-5)
            for c, name in ((0, "t2w"), (2, "hbv")):
                x = img[i, c].astype(np.float64)
                check(f"{cid}: {name} z-scored (|mean| + |std - 1|)", abs(x.mean()) + abs(x.std() - 1) < 1e-4,
                      f"{x.mean():.2e} {x.std():.6f}")
            t2z = (t["t2"] - t["t2"].mean()) / t["t2"].std()
            check(f"{cid}: t2w = z-score of the written T2w", np.abs(img[i, 0] - t2z).max() < 1e-4)
            g = h["geometry"]
            check(f"{cid}: geometry origin/spacing/direction/shape = written (LPS)",
                  np.allclose(g["origin"][i], t["origin"], atol=1e-9) and
                  np.allclose(g["spacing"][i], t2_sp[::-1], atol=1e-12) and
                  np.allclose(np.array(g["direction"][i]).reshape(3, 3), D, atol=1e-12) and
                  list(g["shape_original"][i]) == [nz, ny, nx] and list(g["crop_offset"][i]) == [0, 0, 0])
            # ADC at every dataset voxel = the linear world function, undone from the stored
            # normalisation. The T2w field of view lies >= 6 ADC voxels inside the ADC grid, where
            # the mirror boundary's effect on the B-spline is <= 0.268^6 (4e-4) of the ramp's
            # range across the grid (~600): 0.25 raw units; float32 normalised values add
            # 1e-7 * 600. Voxels at the clip limits are excluded.
            raw = img[i, 1].astype(np.float64) * sd + mean
            zz, yy, xx = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
            P = t["A"] @ np.stack([xx.ravel(), yy.ravel(), zz.ravel(), np.ones(xx.size)])
            f = (1000 + 20 * P[0] + 10 * P[1] - 5 * P[2]).reshape(nz, ny, nx)
            inside = (raw > clip[0] + 1e-3) & (raw < clip[1] - 1e-3)
            err = np.abs(raw - f)[inside].max()
            check(f"{cid}: ADC on the T2w grid matches the world function (max err {err:.3g} < 0.3)",
                  err < 0.3 and inside.mean() > 0.9)
        allraw = img[:, 1].astype(np.float64) * sd + mean
        check("ADC clip = 0.5/99.5 percentiles of the resampled ADC (within 0.5%)",
              abs(np.percentile(allraw, 0.5) - clip[0]) < 0.005 * (clip[1] - clip[0]) and
              abs(np.percentile(allraw, 99.5) - clip[1]) < 0.005 * (clip[1] - clip[0]), str(clip))
        check("normalised ADC has mean 0, std 1", abs(img[:, 1].mean()) < 1e-4 and abs(img[:, 1].std() - 1) < 1e-4)
        check("import_report attr present", "3 cases written" in h.attrs["import_report"])
    geo = sitk_geometry([os.path.join(src, "10001", "10001_1000001_t2w.mha"),
                         os.path.join(lab, "10001_1000001.nii.gz")])
    if geo is None:
        print("note: SimpleITK not available (scripts/setup-peers.sh installs it into .venv-peers, or set VITA_SITK_PYTHON); ITK cross-check skipped")
    else:
        with h5py.File(out, "r") as h:
            g = h["geometry"]
            for (o, s, d), what in zip(geo, ("MHA written here", "NIfTI written by nibabel")):
                check(f"SimpleITK reads the {what} with vita's geometry (LPS)",
                      np.allclose(o, g["origin"][0], atol=1e-5) and np.allclose(s, g["spacing"][0][::-1], atol=1e-5)
                      and np.allclose(d, g["direction"][0], atol=1e-5), f"{o} {s}")
    # a broken case: its hbv is missing
    os.remove(os.path.join(src, "10002", "10002_1000002_hbv.mha"))
    rc, so, se = vita("import", "--layout", "picai", src, "--out", out + "2", "--quiet")
    lines = [l for l in se.splitlines() if l.strip()]
    check("missing file: exit 1 with one line naming the case and the file",
          rc == 1 and len(lines) == 1 and "10002_1000002" in se and "_hbv.mha" in se, se.strip())
    rc, so, se = vita("import", "--layout", "picai", src, "--out", out + "2", "--quiet", "--skip-bad")
    check("--skip-bad: exit 0, report lists the skipped case",
          rc == 0 and "2 cases written" in so and "skipped 10002_1000002" in so, so + se)
    if rc == 0:
        with h5py.File(out + "2", "r") as h:
            check("--skip-bad: the dataset holds the 2 good cases and the report attr names the bad one",
                  h["images"].shape[0] == 2 and "10002_1000002" in h.attrs["import_report"])


def prostate158(tmp):
    rng = np.random.default_rng(1)
    src = os.path.join(tmp, "p158")
    D = rot(-0.3, 0.1) @ np.diag([1.0, 1.0, -1.0])   # with a flipped axis
    nz, ny, nx = 8, 16, 20
    sp = np.array([0.5, 0.5, 3.0])
    truth = {}
    for k in range(2):
        cdir = os.path.join(src, f"{k:03d}")
        os.makedirs(cdir)
        origin = np.array([3.0, -4.0 + k, 10.0])
        write_nii(os.path.join(cdir, "t2.nii.gz"), rng.normal(200, 20, (nz, ny, nx)).astype(np.float32), sp, origin, D)
        write_nii(os.path.join(cdir, "adc.nii.gz"), rng.normal(1200, 50, (nz, ny, nx)).astype(np.float32), sp, origin, D)
        ras = write_nii(os.path.join(cdir, "dwi.nii.gz"), rng.normal(30, 3, (nz, ny, nx)).astype(np.float32), sp, origin, D)
        anat = np.zeros((nz, ny, nx), np.uint8)
        anat[2:6, 4:12, 6:16] = 1
        anat[2:6, 4:12, 6 + 2 * k:9 + 2 * k] = 2
        tum = np.zeros_like(anat)
        if k == 0:
            tum[3:5, 6:8, 10:12] = 1
        write_nii(os.path.join(cdir, "t2_anatomy_reader1.nii.gz"), anat, sp, origin, D)
        write_nii(os.path.join(cdir, "t2_tumor_reader1.nii.gz"), tum, sp, origin, D)
        truth[f"{k:03d}"] = dict(ras=ras, anat=anat, tum=tum)
    out = os.path.join(tmp, "p158.h5")
    # --spacing doubles x, y spacing: grid voxel i = native voxel 2i (same origin), so nearest
    # picks native labels exactly; --size crops around the anatomy centroid
    rc, so, se = vita("import", "--layout", "prostate158", src, "--out", out, "--spacing", "3,1,1",
                      "--size", "4,6,8", "--quiet", "--val-frac", "0.5")
    check("prostate158 import exits 0", rc == 0, se.strip()[-300:])
    if rc:
        return
    with h5py.File(out, "r") as h:
        check("p158: images [2,3,4,6,8], labels background,tz,pz,lesion",
              h["images"].shape == (2, 3, 4, 6, 8) and h.attrs["label_names"] == "background,tz,pz,lesion")
        check("p158: cls = tumour present", list(h["cls"][:]) == [1, 0])
        check("p158: one val, one train case (seeded --val-frac 0.5)", sorted(h["split"][:]) == [0, 1])
        g = h["geometry"]
        for i, cid in enumerate(["000", "001"]):
            t = truth[cid]
            lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ t["ras"]   # nibabel RAS affine -> LPS
            A = lps[:3, :3]
            spx = np.linalg.norm(A, axis=0)
            check(f"p158 {cid}: geometry = nibabel's affine in LPS",
                  np.allclose(g["origin"][i], lps[:3, 3], atol=1e-5) and
                  np.allclose(g["spacing"][i], spx[::-1], atol=1e-6) and
                  np.allclose(np.array(g["direction"][i]).reshape(3, 3), A / spx, atol=1e-6))
            check(f"p158 {cid}: grid_spacing 3,1,1", np.allclose(h["geometry/grid_spacing"][i], [3, 1, 1]))
            sub = np.where(t["tum"] > 0, 3, t["anat"])[:, ::2, ::2]       # the resampled grid
            m = t["anat"][:, ::2, ::2] > 0
            cen = np.array(np.nonzero(m)).mean(axis=1)
            size = np.array([4, 6, 8])
            off = np.floor(cen - (size - 1) / 2 + 0.5).astype(int)
            check(f"p158 {cid}: crop_offset at the anatomy centroid", list(g["crop_offset"][i]) == list(off),
                  f"{list(g['crop_offset'][i])} vs {list(off)}")
            want = np.zeros(size, np.uint8)
            for z in range(4):
                for y in range(6):
                    for x in range(8):
                        zz, yy, xx = z + off[0], y + off[1], x + off[2]
                        if 0 <= zz < sub.shape[0] and 0 <= yy < sub.shape[1] and 0 <= xx < sub.shape[2]:
                            want[z, y, x] = sub[zz, yy, xx]
            check(f"p158 {cid}: seg = tz 1 / pz 2 / lesion 3 cropped from the resampled grid",
                  np.array_equal(h["seg"][i], want))
    rc, so, se = vita("info", out)
    check("p158: the dataset opens and validates (vita info, incl. /geometry/grid_spacing)", rc == 0, se.strip())


def flat(tmp):
    rng = np.random.default_rng(2)
    d = os.path.join(tmp, "flat")
    os.makedirs(os.path.join(d, "img"))
    D = np.eye(3)
    sp = np.array([0.8, 0.8, 2.5])
    for k in range(2):
        write_nii(os.path.join(d, "img", f"c{k}_t2.nii"), rng.normal(5, 2, (4, 8, 8)).astype(np.float32), sp, np.zeros(3), D)
        write_mha(os.path.join(d, "img", f"c{k}_adc.mha"), rng.normal(900, 30, (4, 8, 8)).astype(np.float32), sp, np.zeros(3), D)
        seg = np.zeros((4, 8, 8), np.uint8)
        seg[1:3, 2:5, 2:5] = 1 + k
        write_nii(os.path.join(d, "img", f"c{k}_seg.nii.gz"), seg, sp, np.zeros(3), D)
    with open(os.path.join(d, "cases.csv"), "w") as f:
        f.write("case_id,t2w,adc,hbv,seg,cls,split,fold\n"
                "c0,img/c0_t2.nii,img/c0_adc.mha,,img/c0_seg.nii.gz,0,train,3\n"
                "c1,img/c1_t2.nii,,,img/c1_seg.nii.gz,1,test,\n")
    out = os.path.join(tmp, "flat.h5")
    rc, so, se = vita("import", "--layout", "flat", os.path.join(d, "cases.csv"), "--out", out, "--quiet",
                      "--label-names", "background,a,b")
    check("flat import exits 0", rc == 0, se.strip()[-300:])
    if rc:
        return
    with h5py.File(out, "r") as h:
        check("flat: channel_present marks empty columns 0", h["channel_present"][:].tolist() == [[1, 1, 0], [1, 0, 0]])
        check("flat: missing channels stored as zeros", not h["images"][0, 2].any() and not h["images"][1, 1].any())
        check("flat: cls / split / fold from the CSV",
              list(h["cls"][:]) == [0, 1] and list(h["split"][:]) == [0, 2] and list(h["fold"][:]) == [3, -1])
        check("flat: seg values kept", h["seg"][0].max() == 1 and h["seg"][1].max() == 2)
    rc, so, se = vita("import", "--layout", "flat", os.path.join(d, "cases.csv"), "--out", out, "--quiet")
    check("flat: a label beyond --label-names -> one-line error naming case and file",
          rc == 1 and "c1" in se and "c1_seg.nii.gz" in se and len(se.strip().splitlines()) == 1, se.strip())


def main():
    if not os.path.exists(VITA):
        return T.missing(f"FAIL {VITA} not built")
    tmp = tempfile.mkdtemp(prefix="vita_test_import_")
    try:
        picai(tmp)
        prostate158(tmp)
        flat(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(T.summary())
    return 1 if T.failed else 0


if __name__ == "__main__":
    sys.exit(main())
