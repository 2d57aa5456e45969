#!/usr/bin/python3
"""tools/plot.py — the figures of vita runs and sweeps (PNG and PDF each), with Debian's
python3-h5py and python3-matplotlib (Agg backend, no display needed).

  plot.py run RUN_DIR... --out DIR
      per run: training loss vs step, validation metric vs epoch, mmd2_paired per probed layer
      vs epoch (dashed: the layer's noise floor), read from RUN_DIR/log.h5 (SPEC.md §4).
  plot.py sweep SWEEP_DIR [SWEEP_DIR...] --out DIR [--csv REPORT.csv] [--vita PATH] [--seed S]
      runs `vita report SWEEP_DIR... --csv DIR/report.csv` (or reads the given CSV and the
      REPORT.corr.csv beside it) and draws: RPG vs the primary MMD² (one point per arm, ± SD
      over seeds, least-squares fit over the arms of the primary analysis, Pearson r and
      Spearman ρ with their bootstrap CIs in the legend; negative-control arms hollow and out of
      the fit), steps to the scratch level vs the primary MMD² (censored arms drawn as upward
      triangles at the step count they ran), and a heatmap of RPG (weights x task).
Exit status 1 with one line on bad input (missing log, unreadable CSV, vita failing)."""
import argparse
import csv
import math
import os
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402


def die(msg):
    print(f"plot.py: {msg}", file=sys.stderr)
    sys.exit(1)


def save(fig, out, name):
    paths = []
    for ext in ("png", "pdf"):
        p = os.path.join(out, f"{name}.{ext}")
        tmp = p + ".tmp"
        fig.savefig(tmp, dpi=150, bbox_inches="tight", format=ext)
        os.replace(tmp, p)
        paths.append(p)
    plt.close(fig)
    print("wrote " + " ".join(paths))


def s(x):
    return x.decode() if isinstance(x, bytes) else str(x)


# ---- runs ---------------------------------------------------------------------------------------
def plot_run(run_dir, out):
    import h5py

    path = os.path.join(run_dir, "log.h5")
    if not os.path.exists(path):
        die(f"{run_dir}: no log.h5 (pass a run directory written by vita train)")
    try:
        f = h5py.File(path, "r", swmr=True)
    except OSError:
        try:
            f = h5py.File(path, "r")
        except OSError as e:
            die(f"{path}: cannot open ({e})")
    with f:
        task, metric = s(f.attrs.get("task", "?")), s(f.attrs.get("metric", "metric"))
        weights = s(f.attrs.get("weights", "")) or "scratch"
        step = f["steps/step"][:] if "steps/step" in f else np.zeros(0)
        sep = f["steps/epoch"][:] if "steps/epoch" in f else np.zeros(0)
        loss = f["steps/loss"][:] if "steps/loss" in f else np.zeros(0)
        ep = f["epochs/epoch"][:] if "epochs/epoch" in f else np.zeros(0)
        val = f["epochs/val_metric"][:] if "epochs/val_metric" in f else np.zeros(0)
        vloss = f["epochs/val_loss"][:] if "epochs/val_loss" in f else np.zeros(0)
        test = f["test"].attrs.get(metric) if "test" in f else None
        layers = [s(x) for x in f["align/layers"][:]] if "align/layers" in f else []
        aep = f["align/epoch"][:] if "align/epoch" in f else np.zeros(0)
        mmd = f["align/mmd2_paired"][:] if "align/mmd2_paired" in f else np.zeros((0, 0))
        floor = f["align"].attrs.get("noise_floor") if "align" in f else None
    name = os.path.basename(os.path.normpath(run_dir))
    fig, ax = plt.subplots(1, 3, figsize=(15, 4.2))
    fig.suptitle(f"{name}: {task}, init {os.path.basename(weights)}", fontsize=12)
    a = ax[0]
    if len(step):
        a.plot(step, loss, lw=0.8, color="C0", label="train loss (per step)")
    if len(ep) > 0 and len(vloss) == len(ep) and len(sep) == len(step):
        # validation loss at the optimizer steps done by the end of each epoch
        at = [int((sep <= e).sum()) for e in ep]
        a.plot(at, vloss, "o-", color="C3", ms=4, label="validation loss (end of epoch)")
    a.set_xlabel("optimizer step")
    a.set_ylabel("loss")
    a.set_title("loss")
    a.legend(fontsize=8)
    a = ax[1]
    if len(ep):
        a.plot(ep, val, "o-", color="C2", ms=4, label=f"validation {metric}")
    if test is not None and not math.isnan(float(test)):
        a.axhline(float(test), color="k", ls=":", lw=1, label=f"test {metric} (selected ckpt) = {float(test):.4g}")
    a.set_xlabel("epoch (0 = before training)")
    a.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    a.set_ylabel(metric)
    a.set_title(f"validation {metric}")
    a.legend(fontsize=8)
    a = ax[2]
    if len(aep) and mmd.size:
        for j, l in enumerate(layers):
            a.plot(aep, mmd[:, j], "o-", ms=3, color=f"C{j % 10}", label=f"layer {l}")
            if floor is not None and j < len(floor):
                a.axhline(float(floor[j]), color=f"C{j % 10}", ls="--", lw=0.8)
        a.legend(fontsize=8, title="dashed: noise floor", title_fontsize=8)
    else:
        a.text(0.5, 0.5, "no alignment logged", ha="center", va="center", transform=a.transAxes)
    a.set_xlabel("epoch")
    a.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    a.set_ylabel("MMD² (paired) vs initial encoder")
    a.set_title("feature movement per layer")
    fig.tight_layout()
    save(fig, out, f"run_{name}")


# ---- sweeps -------------------------------------------------------------------------------------
def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def read_csv(path):
    try:
        with open(path, newline="") as f:
            return list(csv.DictReader(f))
    except OSError as e:
        die(f"cannot read {path}: {e.strerror} (run vita report --csv first, or omit --csv)")


def corr_label(corr, y):
    for r in corr:
        if r["scope"] == "across" and r["role"] == "primary" and r["y"] == y:
            def ci(v, lo, hi):
                if math.isnan(num(v)):
                    return "n/a"
                if math.isnan(num(lo)):
                    return f"{num(v):+.2f}"
                return f"{num(v):+.2f} [{num(lo):+.2f}, {num(hi):+.2f}]"
            p = num(r["r_p"])
            p = "n/a" if math.isnan(p) else f"{p:.3g}"
            return (f"Pearson r = {ci(r['r'], r['r_lo'], r['r_hi'])}, p = {p}\n"
                    f"Spearman ρ = {ci(r['rho'], r['rho_lo'], r['rho_hi'])}, n = {r['n']}")
    return "no correlation row"


def fit_line(ax, x, y):
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() >= 2 and np.ptp(x[ok]) > 0:
        b, a = np.polyfit(x[ok], y[ok], 1)
        xs = np.linspace(x[ok].min(), x[ok].max(), 50)
        ax.plot(xs, a + b * xs, "k--", lw=1, label="least-squares fit")


def markers(arms):
    m = ["o", "s", "D", "v", "P", "X", "*", "h"]
    return {w: m[i % len(m)] for i, w in enumerate(arms)}


def plot_sweep(rows, corr, out, title):
    est = rows[0]["primary_estimator"] if rows else "mmd2_paired"
    layer = rows[0]["primary_layer"] if rows else "norm"
    xlab = f"{est} at layer {layer} (mean ± SD over seeds)"
    pre = [r for r in rows if r["is_scratch"] != "1"]
    tasks = sorted({r["task"] for r in rows})
    weights = [w for w in dict.fromkeys(r["weights"] for r in pre)]
    tcol = {t: f"C{i % 10}" for i, t in enumerate(tasks)}
    wm = markers(weights)

    def scatter(ax, ykey, yerr_key, censor):
        fit_x, fit_y = [], []
        for r in pre:
            x, xe = num(r["primary_mean"]), num(r["primary_sd"])
            cens = censor and r["steps_censored"] == "1"
            y = num(r["censored_at_steps"]) if cens else num(r[ykey])
            ye = float("nan") if cens else num(r[yerr_key])
            if math.isnan(x) or math.isnan(y):
                continue
            main = r["in_main"] == "1"
            face = tcol[r["task"]] if main else "none"
            mk = "^" if cens else wm[r["weights"]]
            ax.errorbar(x, y, xerr=None if math.isnan(xe) else xe, yerr=None if math.isnan(ye) else ye,
                        fmt=mk, ms=8, mfc=face, mec=tcol[r["task"]], ecolor=tcol[r["task"]], elinewidth=0.8,
                        capsize=2, alpha=1.0 if main else 0.7)
            ax.annotate(r["weights"], (x, y), textcoords="offset points", xytext=(6, 4), fontsize=7)
            if main and not cens:
                fit_x.append(x)
                fit_y.append(y)
        fit_line(ax, fit_x, fit_y)
        # legend: tasks by colour, arms by marker, the correlation
        from matplotlib.lines import Line2D
        h = [Line2D([], [], ls="", marker="o", color=tcol[t], label=t) for t in tasks]
        h += [Line2D([], [], ls="", marker=wm[w], color="0.3", mfc="0.3", label=w) for w in weights]
        if any(r["in_main"] != "1" for r in pre):
            h.append(Line2D([], [], ls="", marker="o", color="0.3", mfc="none", label="negative control (not fitted)"))
        if censor:
            h.append(Line2D([], [], ls="", marker="^", color="0.3", mfc="0.3", label="censored: not reached (at steps run)"))
        h.append(Line2D([], [], ls="--", color="k", label="least-squares fit"))
        h.append(Line2D([], [], ls="", label=corr_label(corr, "rpg" if not censor else "steps")))
        ax.legend(handles=h, fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
        ax.grid(alpha=0.3)

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    scatter(ax, "rpg_mean", "rpg_sd", False)
    ax.axhline(0, color="0.5", lw=0.6)
    ax.set_xlabel(xlab)
    ax.set_ylabel("RPG over scratch (%, test metric, mean ± SD)")
    ax.set_title(f"{title}: gain vs feature movement")
    save(fig, out, "rpg_vs_mmd")

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    scatter(ax, "steps_mean", "steps_sd", True)
    ax.set_xlabel(xlab)
    ax.set_ylabel("optimizer steps to the scratch arm's test level")
    ax.set_title(f"{title}: convergence vs feature movement")
    save(fig, out, "convergence_vs_mmd")

    ws = [w for w in weights]
    M = np.full((len(ws), len(tasks)), np.nan)
    S = np.full_like(M, np.nan)
    for r in pre:
        M[ws.index(r["weights"]), tasks.index(r["task"])] = num(r["rpg_mean"])
        S[ws.index(r["weights"]), tasks.index(r["task"])] = num(r["rpg_sd"])
    fig, ax = plt.subplots(figsize=(1.6 * len(tasks) + 2.5, 0.7 * len(ws) + 1.8))
    lim = np.nanmax(np.abs(M)) if np.isfinite(M).any() else 1.0
    im = ax.imshow(M, cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
    for i in range(len(ws)):
        for j in range(len(tasks)):
            if np.isfinite(M[i, j]):
                txt = f"{M[i, j]:.1f}" + (f"\n± {S[i, j]:.1f}" if np.isfinite(S[i, j]) else "")
                ax.text(j, i, txt, ha="center", va="center", fontsize=8,
                        color="white" if abs(M[i, j]) > 0.6 * lim else "black")
    ax.set_xticks(range(len(tasks)))
    ax.set_xticklabels(tasks, rotation=20, ha="right")
    ax.set_yticks(range(len(ws)))
    ax.set_yticklabels(ws)
    fig.colorbar(im, ax=ax, label="RPG (%)")
    ax.set_title(f"{title}: RPG over scratch (mean ± SD over seeds)", fontsize=10)
    save(fig, out, "rpg_heatmap")


def find_vita(arg):
    if arg:
        return arg
    if os.environ.get("VITA"):
        return os.environ["VITA"]
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    b = os.environ.get("VITA_BUILD", "build")
    for p in (os.path.join(b, "vita"), os.path.join(here, b, "vita"), os.path.join(here, "build", "vita")):
        if os.path.exists(p):
            return p
    return "vita"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="per-run curves")
    r.add_argument("dirs", nargs="+")
    r.add_argument("--out", required=True)
    w = sub.add_parser("sweep", help="sweep figures (runs vita report --csv)")
    w.add_argument("dirs", nargs="+")
    w.add_argument("--out", required=True)
    w.add_argument("--csv", help="read this vita report CSV instead of running vita report")
    w.add_argument("--vita", help="the vita binary (default: $VITA, $VITA_BUILD/vita, build/vita)")
    w.add_argument("--seed", default="0")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    if a.cmd == "run":
        for d in a.dirs:
            plot_run(d, a.out)
        return
    path = a.csv
    if not path:
        path = os.path.join(a.out, "report.csv")
        cmd = [find_vita(a.vita), "report", *a.dirs, "--csv", path, "--seed", a.seed]
        try:
            p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        except OSError as e:
            die(f"cannot run {cmd[0]}: {e.strerror} (pass --vita PATH or set VITA)")
        if p.returncode != 0:
            die(f"vita report failed: {p.stderr.strip().splitlines()[-1] if p.stderr.strip() else p.returncode}")
        with open(os.path.join(a.out, "report.md"), "w") as f:
            f.write(p.stdout)
    corr_path = path[:-4] + ".corr.csv" if path.endswith(".csv") else path + ".corr.csv"
    rows, corr = read_csv(path), read_csv(corr_path)
    if not rows:
        die(f"{path}: no arms (is it a vita report CSV?)")
    title = os.path.basename(os.path.normpath(a.dirs[0]))
    plot_sweep(rows, corr, a.out, title)


if __name__ == "__main__":
    main()
