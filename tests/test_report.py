#!/usr/bin/python3
"""tests/test_report.py — `vita report` on the hand-made sweep of tests/report_fixture.py:
skipped runs listed, lr selection, test metric of the selected checkpoint (never the best
validation value), RPG (sign flipped for a lower-is-better metric), convergence and its
censoring, vs-noise-floor ratio, across-arm r and ρ, within-task r and ρ (closed form with
numpy / scipy), the controls' outcome lines, CI reproducibility per --seed, one-line errors,
the plain-run-directory mode, and tools/plot.py's PNG + PDF files.

Tolerances: the CSVs print 9 significant digits, so a CSV number is within half a unit of its
9th digit, 5e-9 relative, of vita's double; vita's double is within ~1e-15 of the exact value
(a few additions of 3-12 terms). TOL = 1e-8 relative (floor 1e-8 absolute for values near 0)
covers both with a factor 2 and still fails any error in the 8th significant digit, far below
every hand-chosen difference (the smallest: 0.002 in a test SD). Markdown lines are compared
as text (their rounding is part of what is checked)."""
import csv
import math
import os
import subprocess
import sys
import tempfile

import numpy as np
from scipy.stats import rankdata

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import report_fixture as F  # noqa: E402

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("VITA_BUILD", "build")
VITA = os.path.join(BUILD, "vita") if os.path.isabs(BUILD) else os.path.join(HERE, BUILD, "vita")
PYTHON = os.environ.get("PYTHON", "/usr/bin/python3")
TOL = 1e-8
import pyharness  # noqa: E402

T = pyharness.Checks(paren=False)
check = T.check


def near(what, got, want):
    err = abs(got - want) if not (math.isnan(got) or math.isnan(want)) else float("inf")
    thr = TOL * max(1.0, abs(want))
    check(what, err <= thr, f"got {got!r} want {want!r} ({100 * err / thr:.2f}% of {thr:.1e})")


def vita(*args):
    p = subprocess.run([VITA, "report", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return p.returncode, p.stdout, p.stderr


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def num(v):
    return float(v) if v != "" else float("nan")


def main():
    if not os.path.exists(VITA):
        return T.missing(f"no {VITA} (build it first: make BUILD={BUILD})")
    tmp = tempfile.mkdtemp(prefix="vita_test_report_")
    sw = os.path.join(tmp, "sweep")
    F.write_fixture(sw)
    out = os.path.join(tmp, "out")
    os.makedirs(out)

    rc, so, se = vita(sw, "--csv", os.path.join(out, "r.csv"), "--seed", "1")
    check("vita report on the fixture sweep exits 0", rc == 0, se.strip())
    if rc != 0:
        print(so)
        print(T.summary(extra_failed=1))
        return 1

    # skipped runs
    check("runs line: 50 listed, 48 usable, 2 skipped",
          f"runs: {F.N_RUNS_OK + F.N_BROKEN} listed, {F.N_RUNS_OK} usable, {F.N_BROKEN} skipped" in so)
    check("missing run listed", "skipped run 0048" in so and "missing" in so)
    check("unfinished run listed", "skipped run 0049" in so and "unfinished" in so)

    arms = {(r["weights"], r["task"]): r for r in read_csv(os.path.join(out, "r.csv"))}
    check("8 arms in the CSV", len(arms) == 8, str(sorted(arms)))
    for key, (lr, tm, tsd, rm, rsd, sm, ssd, cens, secm, secsd) in F.EXPECTED.items():
        a = arms.get(key)
        if a is None:
            check(f"arm {key} present", False)
            continue
        name = "/".join(key)
        near(f"{name} selected lr", num(a["selected_lr"]), lr)
        near(f"{name} test mean", num(a["test_mean"]), tm)
        near(f"{name} test sd", num(a["test_sd"]), tsd)
        near(f"{name} RPG mean", num(a["rpg_mean"]), rm)
        near(f"{name} RPG sd", num(a["rpg_sd"]), rsd)
        if cens is None:
            check(f"{name} convergence not censored", a["steps_censored"] == "0")
            near(f"{name} steps mean", num(a["steps_mean"]), sm)
            near(f"{name} steps sd", num(a["steps_sd"]), ssd)
            near(f"{name} seconds mean", num(a["secs_mean"]), secm)
            near(f"{name} seconds sd", num(a["secs_sd"]), secsd)
        else:
            check(f"{name} convergence censored", a["steps_censored"] == "1")
            near(f"{name} censored at steps", num(a["censored_at_steps"]), cens)
    for key, v in F.EXPECTED_PRIMARY_MEAN.items():
        near(f"{'/'.join(key)} primary mmd2_paired@norm mean", num(arms[key]["primary_mean"]), v)
    mseg = arms[("mae", "segment")]
    near("mae/segment mmd2_paired@norm vs floor", num(mseg["mmd2_paired_norm_vs_floor"]), F.EXPECTED_VS_FLOOR_MAE_SEG)
    check("vs floor of layer norm is a ratio, of layer 1 (floor 0) a difference",
          mseg["mmd2_paired_norm_vs_floor_kind"] == "ratio" and mseg["mmd2_paired_1_vs_floor_kind"] == "difference")
    near("mae/segment epochs to 95% mean", num(mseg["epochs_to_95_mean"]), F.EXPECTED_E95_MAE_SEG[0])
    near("mae/segment epochs to 95% sd", num(mseg["epochs_to_95_sd"]), F.EXPECTED_E95_MAE_SEG[1])
    check("negative-control arm rand is out of the main analysis",
          arms[("rand", "segment")]["in_main"] == "0" and mseg["in_main"] == "1")

    # markdown rows, as printed
    check("markdown row of mae/segment",
          "| mae | segment | dice_mean | lr=0.0001 wd=0.05 | 3 | 0.7000 ± 0.0100 | 40.00 ± 2.00 | 20.0 ± 10.0 | "
          "5.0 ± 2.0 | 3.0 ± 1.0 | 0.1 ± 0.01 | 2× floor |" in so)
    check("markdown row of clr/synthesize (censored '>40')",
          "| clr | synthesize | mae | lr=0.0001 wd=0.05 | 3 | 0.1800 ± 0.0020 | 10.00 ± 1.00 | >40 | – |" in so)
    check("selection table marks mae/synthesize lr 3e-4 (lower is better)",
          "| mae | synthesize | mae ↓ | lr=0.0003 wd=0.05 | 3 | 0.1500 | yes |" in so)

    corr = read_csv(os.path.join(out, "r.corr.csv"))

    def row(scope, role, y, est="mmd2_paired", layer="norm"):
        for r in corr:
            if r["scope"] == scope and r["role"] == role and r["y"] == y and r["estimator"] == est and r["layer"] == layer:
                return r
        return None

    for y, (r, rho, n) in F.EXPECTED_ACROSS.items():
        k = row("across", "primary", y)
        check(f"across-arm {y} row present", k is not None)
        if k:
            near(f"across-arm Pearson r (MMD vs {y})", num(k["r"]), r)
            near(f"across-arm Spearman rho (MMD vs {y})", num(k["rho"]), rho)
            check(f"across-arm n points (MMD vs {y}) = {n}", int(k["n"]) == n, k["n"])
            check(f"across-arm CI of r (MMD vs {y}) brackets r",
                  num(k["r_lo"]) <= num(k["r"]) + 1e-12 and num(k["r"]) <= num(k["r_hi"]) + 1e-12)
            ptrue = 0 < num(k["r_p"]) <= 1
            check(f"across-arm permutation p (MMD vs {y}) in (0, 1]", ptrue, k["r_p"])
    check("markdown across-arm RPG row", "| across arms | mmd2_paired@norm | RPG | 4 | -0.800 [" in so)
    for task in F.TASKS:
        x, y = F.within_points(task)
        k = row(f"within:{task}", "primary", "rpg")
        check(f"within {task} row present", k is not None)
        if k:
            near(f"within {task} Pearson r", num(k["r"]), float(np.corrcoef(x, y)[0, 1]))
            near(f"within {task} Spearman rho", num(k["rho"]), float(np.corrcoef(rankdata(x), rankdata(y))[0, 1]))
            check(f"within {task} n = 12 runs", int(k["n"]) == 12, k["n"])
    neg = [r for r in corr if r["scope"].startswith("negative:")]
    check("one negative-control row", len(neg) == 1)
    if neg:
        near("negative control r (ties)", num(neg[0]["r"]), F.EXPECTED_NEGATIVE[0])
        near("negative control rho (average ranks of ties)", num(neg[0]["rho"]), F.EXPECTED_NEGATIVE[1])
        check("negative control n = 6 runs", int(neg[0]["n"]) == F.EXPECTED_NEGATIVE[2])

    # controls' outcome lines
    check("positive control mae > clr: segment PASS", "- segment: PASS (RPG 40.00 vs 20.00; mmd2_paired@norm 0.1 vs 0.2)" in so)
    check("positive control mae > clr: overall PASS", "positive control overall: PASS (2 of 2 tasks pass)" in so)
    check("swapped positive control: synthesize FAIL", "- synthesize: FAIL (RPG 10.00 vs 30.00; mmd2_paired@norm 0.4 vs 0.3)" in so)
    check("swapped positive control: overall FAIL", "positive control overall: FAIL (0 of 2 tasks pass)" in so)
    check("negative control line: reverses, PASS",
          "negative control [rand]: mmd2_paired@norm vs RPG over 6 runs: r = +0.750 [" in so and "-> PASS (reverses: r >= 0)" in so)
    check("SECONDARY rows labelled", "| SECONDARY across arms | cka_linear@norm | RPG | 4 |" in so)

    # CIs: same seed identical, another seed different (r itself unchanged)
    with open(os.path.join(out, "r.corr.csv")) as f:
        c1 = f.read()
    rc2, so2, _ = vita(sw, "--csv", os.path.join(out, "r2.csv"), "--seed", "1")
    with open(os.path.join(out, "r2.corr.csv")) as f:
        c2 = f.read()
    def body(text):   # stdout without the closing "wrote PATHS" line
        return [l for l in text.splitlines() if not l.startswith("wrote ")]
    check("same --seed: identical correlation CSV and stdout", rc2 == 0 and c1 == c2 and body(so) == body(so2))
    rc3, _, _ = vita(sw, "--csv", os.path.join(out, "r3.csv"), "--seed", "2")
    c3 = read_csv(os.path.join(out, "r3.corr.csv"))
    a1, a3 = row("across", "primary", "rpg"), [r for r in c3 if r["scope"] == "across" and r["role"] == "primary" and r["y"] == "rpg"][0]
    differ = any(a1[k] != a3[k] for k in ("r_lo", "r_hi", "rho_lo", "rho_hi", "r_p", "rho_p"))
    w1, w3 = row("within:segment", "primary", "rpg"), [r for r in c3 if r["scope"] == "within:segment" and r["y"] == "rpg"][0]
    differ = differ or any(w1[k] != w3[k] for k in ("r_lo", "r_hi", "rho_lo", "rho_hi"))
    check("another --seed: the CIs / p-values differ", rc3 == 0 and differ)
    check("another --seed: r and rho unchanged", a1["r"] == a3["r"] and a1["rho"] == a3["rho"])

    # --primary overrides sweep.yaml; a similarity (CKA) flips "moved less" to higher
    rc, so_c, se_c = vita(sw, "--primary", "layer=1,estimator=cka_linear", "--bootstrap", "100", "--permutations", "100")
    check("--primary names its source", rc == 0 and "primary statistic: cka_linear at layer 1 (--primary)" in so_c, se_c.strip())
    check("--primary cka_linear: positive control wants the higher CKA and passes",
          "- segment: PASS (RPG 40.00 vs 20.00; cka_linear@1 0.99 vs 0.98)" in so_c and
          "(aligned must have higher RPG AND higher cka_linear@1)" in so_c)

    # one-line errors
    empty = os.path.join(tmp, "empty")
    os.makedirs(empty)
    other = os.path.join(tmp, "other")
    os.makedirs(other)
    with open(os.path.join(other, "notes.txt"), "w") as f:
        f.write("not a run\n")
    half = os.path.join(tmp, "half")
    os.makedirs(half)
    with open(os.path.join(half, "sweep.yaml"), "w") as f:
        f.write(F.SWEEP_YAML)
    for what, args, needle in (("empty dir", [empty], empty), ("dir without a log", [other], other),
                               ("sweep dir without index.tsv", [half], "index.tsv"),
                               ("no such dir", [os.path.join(tmp, "nope")], "nope"),
                               ("unknown flag", [sw, "--bogus"], "--bogus"),
                               ("bad --bootstrap", [sw, "--bootstrap", "x"], "--bootstrap"),
                               ("bad --primary", [sw, "--primary", "layer"], "--primary"),
                               ("unwritable --csv", [sw, "--csv", os.path.join(tmp, "nodir", "x.csv")], "nodir")):
        rc, so_e, se_e = vita(*args)
        lines = [l for l in se_e.splitlines() if l.strip()]
        check(f"error, {what}: exit 1, one line naming it", rc == 1 and len(lines) == 1 and needle in lines[0]
              and lines[0].startswith("vita: "), repr(se_e.strip()))

    # a plain run directory: identity from the log
    rc, so_p, se_p = vita(os.path.join(sw, "runs", "0012"), "--bootstrap", "50", "--permutations", "50")
    check("plain run dir: weights label from the weights attr, lr from the config",
          rc == 0 and "| mae | segment | dice_mean | lr=0.0001 | 1 | 0.6900 |" in so_p, se_p.strip())
    rc, so_p, se_p = vita(os.path.join(sw, "runs", "0012"), os.path.join(sw, "runs", "0003"), "--bootstrap", "50")
    check("plain run dirs: RPG against a scratch run of the same seed (0.69 vs 0.50 -> 38 %)",
          rc == 0 and "| 0.6900 | 38.00 |" in so_p, se_p.strip())

    # plots
    pdir = os.path.join(tmp, "plots")
    env = dict(os.environ, VITA=VITA)
    p = subprocess.run([PYTHON, os.path.join(HERE, "tools", "plot.py"), "sweep", sw, "--out", pdir, "--seed", "1"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    check("plot.py sweep exits 0", p.returncode == 0, p.stderr.strip()[-300:])
    p2 = subprocess.run([PYTHON, os.path.join(HERE, "tools", "plot.py"), "run", os.path.join(sw, "runs", "0012"),
                         "--out", pdir], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    check("plot.py run exits 0", p2.returncode == 0, p2.stderr.strip()[-300:])
    for name in ("rpg_vs_mmd", "convergence_vs_mmd", "rpg_heatmap", "run_0012"):
        for ext, magic in (("png", b"\x89PNG"), ("pdf", b"%PDF")):
            path = os.path.join(pdir, f"{name}.{ext}")
            ok = os.path.exists(path) and os.path.getsize(path) > 1000
            if ok:
                with open(path, "rb") as f:
                    ok = f.read(4) == magic
            check(f"plot {name}.{ext} written (non-empty, {ext} header)", ok)
    p3 = subprocess.run([PYTHON, os.path.join(HERE, "tools", "plot.py"), "run", empty, "--out", pdir],
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    check("plot.py run on a dir without log.h5: exit 1, one line",
          p3.returncode == 1 and len(p3.stderr.strip().splitlines()) == 1, p3.stderr.strip())

    print(T.summary())
    return 1 if T.failed else 0


if __name__ == "__main__":
    sys.exit(main())
