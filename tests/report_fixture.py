#!/usr/bin/python3
"""tests/report_fixture.py OUT_DIR — writes a small fake sweep directory for `vita report`:
OUT_DIR/sweep.yaml, OUT_DIR/index.tsv and OUT_DIR/runs/NNNN/log.h5 files laid out as
engine/runlog.c writes them (SPEC.md §4), with hand-chosen numbers whose report is known by
hand. EXPECTED (below) holds those numbers; each is derived in the comments, never by running
vita.

Design: 4 arms (scratch, mae, clr and rand, the negative control) x 2 tasks x 2 lrs x 3 seeds
(48 runs) plus 2 broken index rows (a missing run directory, an unfinished run without /test).
Tasks: segment (metric dice_mean, higher is better) and synthesize (metric mae, lower is
better: RPG's sign flips). Every run: 5 validation epochs (0..4), 10 optimizer steps per epoch
(steps done by the end of epoch e = 10 e), /epochs/time_s = 1 + 2 e (the cumulative wall
clock), /align rows at epochs 0, 2, 4 (only the last counts) for layers "1" and "norm" with
noise floor [0, 0.05] (layer 1: floor 0 -> reported as a difference; norm: ratio).

Selection (mean over seeds of each run's best validation value; the OTHER lr gets absurd test
values so that a wrong selection or a best-validation-epoch value would show):
  scratch/segment  lr 3e-4 (best 0.57 vs 0.52)     scratch/synthesize lr 1e-4 (0.21 vs 0.25, lower)
  mae/segment      lr 1e-4 (0.66 vs 0.60)          mae/synthesize     lr 3e-4 (0.15 vs 0.19)
  clr/segment      lr 3e-4 (0.62 vs 0.58)          clr/synthesize     lr 1e-4 (0.19667 vs 0.23)
  rand/segment     lr 1e-4 (0.48 vs 0.40)          rand/synthesize    lr 1e-4 (0.30 vs 0.35)
Test metric of the selected setting per seed 0, 1, 2:
  scratch: segment 0.50 0.50 0.50; synthesize 0.20 0.20 0.20
  mae/segment 0.69 0.70 0.71 -> RPG (t-0.5)/0.5*100 = 38 40 42: 40 ± 2
  clr/segment 0.59 0.60 0.61 -> 18 20 22: 20 ± 2
  mae/synthesize 0.138 0.140 0.142 -> -(t-0.2)/0.2*100 = 31 30 29: 30 ± 1
  clr/synthesize 0.178 0.180 0.182 -> 11 10 9: 10 ± 1
  rand/segment 0.45 0.50 0.55 -> -10 0 10;  rand/synthesize 0.20 0.22 0.18 -> 0 -10 10
Primary = mmd2_paired at layer norm (sweep.yaml), per seed (means):
  mae/segment 0.09 0.10 0.11 (0.1); clr/segment 0.19 0.20 0.21 (0.2);
  mae/synthesize 0.29 0.30 0.31 (0.3); clr/synthesize 0.39 0.40 0.41 (0.4);
  rand: 0.5 0.6 0.7 in both tasks.   vs floor 0.05: mae/segment 0.1/0.05 = 2x.
Across arms (mae, clr; rand is a negative control): x = (0.1, 0.2, 0.3, 0.4), RPG y = (40, 20,
  30, 10): centred x = 0.1 (-1.5, -.5, .5, 1.5), y = (15, -5, 5, -15); Sxy = 0.1 (-22.5 + 2.5 +
  2.5 - 22.5) = -4, Sxx = 0.05, Syy = 500 -> r = -4 / sqrt(25) = -0.8. Ranks x (1,2,3,4), y (4,2,
  3,1): d = (-3,0,0,3) -> rho = 1 - 6*18/(4*15) = -0.8.
Convergence (threshold = scratch mean test: segment 0.50 reached when val >= 0.50; synthesize
  0.20 reached when val <= 0.20):
  mae/segment reaches at epochs 1, 2, 3 -> steps 10 20 30 = 20 ± 10, seconds 3 5 7 = 5 ± 2
  clr/segment epochs 2, 2, 2 -> 20 ± 0;  mae/synthesize epoch 1 each -> 10 ± 0
  clr/synthesize: seeds 0, 1 reach at epoch 4, seed 2 never -> censored ">40"
  rand never (segment: >40, synthesize: >40); scratch/segment epoch 3 (30); scratch/synthesize
  never (>40).
  Steps vs MMD across non-censored main arms: x = (0.1, 0.2, 0.3), y = (20, 20, 10): centred y
  = (10/3, 10/3, -20/3); Sxy = -1/3 - 2/3 = -1, Sxx = 0.02, Syy = 200/3 -> r = -1/sqrt(4/3) =
  -sqrt(3)/2; ranks y (2.5, 2.5, 1): Sxy = -1.5, Sxx = 2, Syy = 1.5 -> rho = -1.5/sqrt(3) =
  -sqrt(3)/2.
Controls: positive (aligned mae, reference clr): segment 40 > 20 and 0.1 < 0.2 PASS, synthesize
  30 > 10 and 0.3 < 0.4 PASS -> overall PASS; the swapped one (aligned clr) FAILs both.
  Negative [rand], runs: x = (.5,.6,.7,.5,.6,.7), y = (-10,0,10,0,-10,10): Sxy = 3 (0.1*10 units),
  Sxx = 0.04, Syy = 400 -> r = 3/4 = 0.75; ranks with ties (average ranks) x (1.5,3.5,5.5,1.5,3.5,
  5.5), y (1.5,3.5,5.5,3.5,1.5,5.5): Sxy = 12, Sxx = Syy = 16 -> rho = 0.75 -> r >= 0: reverses,
  PASS.
Within each task the points are every run of mae and clr (both lrs): EXPECTED_WITHIN gives their
x (MMD) and y (RPG vs the seed-matched scratch test) so that the test computes r / rho in closed
form with numpy, independently of vita.
"""
import os
import sys

import h5py
import numpy as np

TASKS = {"segment": ("dice_mean", True), "synthesize": ("mae", False)}
ARMS = ["scratch", "mae", "clr", "rand"]
LRS = [1.0e-4, 3.0e-4]
SEEDS = [0, 1, 2]
STEPS_PER_EPOCH = 10
N_EP = 5

# per (arm, task, lr): best validation value per seed and the test value per seed; val curves
# are built below so that the best equals these and the epoch the threshold is reached is CROSS.
# (selected lr marked in the module docstring)
SPEC = {
    ("scratch", "segment", 1e-4): dict(best=[0.50, 0.52, 0.54], test=[0.9, 0.9, 0.9]),
    ("scratch", "segment", 3e-4): dict(best=[0.55, 0.57, 0.59], test=[0.50, 0.50, 0.50]),
    ("scratch", "synthesize", 1e-4): dict(best=[0.21, 0.21, 0.21], test=[0.20, 0.20, 0.20]),
    ("scratch", "synthesize", 3e-4): dict(best=[0.25, 0.25, 0.25], test=[0.01, 0.01, 0.01]),
    ("mae", "segment", 1e-4): dict(best=[0.66, 0.66, 0.66], test=[0.69, 0.70, 0.71]),
    ("mae", "segment", 3e-4): dict(best=[0.60, 0.60, 0.60], test=[0.95, 0.95, 0.95]),
    ("mae", "synthesize", 1e-4): dict(best=[0.19, 0.19, 0.19], test=[0.01, 0.02, 0.03]),
    ("mae", "synthesize", 3e-4): dict(best=[0.15, 0.15, 0.15], test=[0.138, 0.140, 0.142]),
    ("clr", "segment", 1e-4): dict(best=[0.58, 0.58, 0.58], test=[0.96, 0.97, 0.98]),
    ("clr", "segment", 3e-4): dict(best=[0.62, 0.62, 0.62], test=[0.59, 0.60, 0.61]),
    ("clr", "synthesize", 1e-4): dict(best=[0.19, 0.19, 0.21], test=[0.178, 0.180, 0.182]),
    ("clr", "synthesize", 3e-4): dict(best=[0.23, 0.23, 0.23], test=[0.05, 0.05, 0.05]),
    ("rand", "segment", 1e-4): dict(best=[0.48, 0.48, 0.48], test=[0.45, 0.50, 0.55]),
    ("rand", "segment", 3e-4): dict(best=[0.40, 0.40, 0.40], test=[0.99, 0.99, 0.99]),
    ("rand", "synthesize", 1e-4): dict(best=[0.30, 0.30, 0.30], test=[0.20, 0.22, 0.18]),
    ("rand", "synthesize", 3e-4): dict(best=[0.35, 0.35, 0.35], test=[0.01, 0.01, 0.01]),
}
# epoch at which the validation curve first reaches the scratch level (None = never); only the
# selected settings' values enter EXPECTED, the others just need consistent curves
CROSS = {
    ("mae", "segment", 1e-4): [1, 2, 3],
    ("clr", "segment", 3e-4): [2, 2, 2],
    ("mae", "synthesize", 3e-4): [1, 1, 1],
    ("clr", "synthesize", 1e-4): [4, 4, None],
    ("scratch", "segment", 3e-4): [3, 3, 3],
}
# primary statistic mmd2_paired@norm per seed for every (arm, task, lr)
MMD = {
    ("mae", "segment"): [0.09, 0.10, 0.11],
    ("clr", "segment"): [0.19, 0.20, 0.21],
    ("mae", "synthesize"): [0.29, 0.30, 0.31],
    ("clr", "synthesize"): [0.39, 0.40, 0.41],
    ("rand", "segment"): [0.5, 0.6, 0.7],
    ("rand", "synthesize"): [0.5, 0.6, 0.7],
    ("scratch", "segment"): [0.8, 0.8, 0.8],
    ("scratch", "synthesize"): [0.9, 0.9, 0.9],
}
# the non-selected lr moves features by a different, known amount
MMD_OTHER_LR = {"mae": 0.25, "clr": 0.05, "rand": 0.0, "scratch": 0.0}
SELECTED = {("scratch", "segment"): 3e-4, ("scratch", "synthesize"): 1e-4,
            ("mae", "segment"): 1e-4, ("mae", "synthesize"): 3e-4,
            ("clr", "segment"): 3e-4, ("clr", "synthesize"): 1e-4,
            ("rand", "segment"): 1e-4, ("rand", "synthesize"): 1e-4}
E95 = {("mae", "segment"): [2, 3, 4]}

EXPECTED = {
    # (weights, task): (selected lr, test mean, test sd, rpg mean, rpg sd, steps mean or
    #                   None when censored, steps sd, censored at, secs mean, secs sd)
    ("mae", "segment"): (1e-4, 0.70, 0.01, 40.0, 2.0, 20.0, 10.0, None, 5.0, 2.0),
    ("clr", "segment"): (3e-4, 0.60, 0.01, 20.0, 2.0, 20.0, 0.0, None, 5.0, 0.0),
    ("mae", "synthesize"): (3e-4, 0.140, 0.002, 30.0, 1.0, 10.0, 0.0, None, 3.0, 0.0),
    ("clr", "synthesize"): (1e-4, 0.180, 0.002, 10.0, 1.0, None, None, 40.0, None, None),
    ("scratch", "segment"): (3e-4, 0.50, 0.0, 0.0, 0.0, 30.0, 0.0, None, 7.0, 0.0),
    ("scratch", "synthesize"): (1e-4, 0.20, 0.0, 0.0, 0.0, None, None, 40.0, None, None),
    ("rand", "segment"): (1e-4, 0.50, 0.05, 0.0, 10.0, None, None, 40.0, None, None),
    ("rand", "synthesize"): (1e-4, 0.20, 0.02, 0.0, 10.0, None, None, 40.0, None, None),
}
EXPECTED_PRIMARY_MEAN = {("mae", "segment"): 0.1, ("clr", "segment"): 0.2,
                         ("mae", "synthesize"): 0.3, ("clr", "synthesize"): 0.4}
EXPECTED_VS_FLOOR_MAE_SEG = 2.0          # 0.1 / 0.05, a ratio
EXPECTED_E95_MAE_SEG = (3.0, 1.0)        # mean, sd of 2, 3, 4
EXPECTED_ACROSS = {"rpg": (-0.8, -0.8, 4), "steps": (-(3 ** 0.5) / 2, -(3 ** 0.5) / 2, 3)}
EXPECTED_NEGATIVE = (0.75, 0.75, 6)
N_RUNS_OK = 48
N_BROKEN = 2


def curve(arm, task, lr, seed):
    """validation curve over epochs 0..4 ending at SPEC best[seed] (its best value): linear
    from the start value, or, where CROSS names an epoch, held just short of the scratch level
    before it and ramping past the level from it on"""
    metric, higher = TASKS[task]
    best = SPEC[(arm, task, lr)]["best"][seed]
    level = 0.50 if task == "segment" else 0.20
    cross = CROSS.get((arm, task, lr), [None] * 3)[seed]
    start = 0.10 if higher else 0.50
    c = [start + (best - start) * e / (N_EP - 1) for e in range(N_EP)]
    if cross is None:
        return c
    for e in range(N_EP):
        if e < cross:
            c[e] = min(c[e], level - 0.01) if higher else max(c[e], level + 0.005)
        else:
            c[e] = level + (best - level) * (e - cross + 1) / (N_EP - cross)
    return c


def write_log(path, arm, task, lr, seed, finished=True):
    metric, higher = TASKS[task]
    sel = SELECTED[(arm, task)] == lr
    with h5py.File(path, "w") as f:
        wpath = "" if arm == "scratch" else f"/weights/{arm}.safetensors"
        cfg = (f"run:\n  name: x\n  seed: {seed}\nmodel:\n  weights: {wpath or 'null'}\n"
               f"task:\n  name: {task}\ntrain:\n  lr: {lr:.1e}\ndata:\n  fold: -1\n")
        for k, v in dict(format="vita-log", config=cfg, task=task, model="vit-tiny-3d",
                         init="scratch" if arm == "scratch" else "pretrained", weights=wpath,
                         seed=str(seed), metric=metric,
                         metric_direction="higher_is_better" if higher else "lower_is_better").items():
            f.attrs[k] = v
        f.attrs["version"] = np.int32(1)
        n_steps = STEPS_PER_EPOCH * (N_EP - 1)
        f["steps/step"] = np.arange(n_steps, dtype=np.int64)
        f["steps/epoch"] = (1 + np.arange(n_steps) // STEPS_PER_EPOCH).astype(np.int64)
        f["steps/loss"] = np.linspace(2, 1, n_steps)
        f["steps/grad_norm"] = np.ones(n_steps)
        f["steps/lr"] = np.full((n_steps, 1), lr)
        f["steps/time_s"] = 1.0 + 2.0 * (1 + np.arange(n_steps)) / STEPS_PER_EPOCH
        c = curve(arm, task, lr, seed)
        f["epochs/epoch"] = np.arange(N_EP, dtype=np.int64)
        f["epochs/train_loss"] = np.linspace(2, 1, N_EP)
        f["epochs/val_loss"] = np.linspace(2.1, 1.1, N_EP)
        f["epochs/val_metric"] = np.array(c)
        vm = f.create_dataset("epochs/val_metrics", data=np.array(c)[:, None])
        vm.attrs["metric_names"] = [metric]
        f["epochs/time_s"] = 1.0 + 2.0 * np.arange(N_EP)
        f["epochs/samples_per_s"] = np.ones(N_EP)
        layers = ["1", "norm"]
        f.create_dataset("align/layers", data=layers, dtype=h5py.string_dtype())
        f["align/epoch"] = np.array([0, 2, 4], dtype=np.int64)
        m = MMD[(arm, task)][seed] + (0.0 if sel else MMD_OTHER_LR[arm])
        last = {"mmd2_paired": [m / 10, m], "mmd2_paired_se": [0.001, 0.01],
                "mmd2_u": [m / 20, m / 2], "cka_linear": [1 - m / 10, 1 - m],
                "weight_dist": [m / 100, m / 50]}
        for k, v in last.items():
            f[f"align/{k}"] = np.array([[0.0, 0.0], [v[0] / 2, v[1] / 2], v])
        g = f["align"]
        g.attrs["noise_floor"] = np.array([0.0, 0.05])
        g.attrs["feature_kind"] = "pooled"
        g.attrs["bandwidth_rule"] = "median"
        if not finished:
            return
        e95 = E95.get((arm, task), [3, 3, 3])[seed]
        s = f.create_group("summary")
        best = SPEC[(arm, task, lr)]["best"][seed]
        for k, v in dict(best_epoch=4.0, best_val_metric=best, epochs_to_90=float(e95),
                         epochs_to_95=float(e95), auc_val_curve=0.5, wall_time_s=9.0).items():
            s.attrs[k] = v
        t = f.create_group("test")
        t.attrs[metric] = SPEC[(arm, task, lr)]["test"][seed]
        t.attrs["loss"] = 1.0
        t.attrs["n_cases"] = 10.0
        t.attrs["best_epoch"] = 4.0


SWEEP_YAML = """# vita sweep (fixture written by tests/report_fixture.py)
base: base.yaml
name: fixture
set: []
axes:
  weights: {scratch: null, mae: /weights/mae.safetensors, clr: /weights/clr.safetensors, rand: /weights/rand.safetensors}
  task: [segment, synthesize]
  lr: [1.0e-04, 3.0e-04]
  seed: [0, 1, 2]
  fold: [-1]
  extra:
    - {name: wd, key: train.weight_decay, values: [0.05]}
task_set: {}
scratch: scratch
controls:
  - {kind: positive, aligned: mae, reference: clr}
  - {kind: positive, aligned: clr, reference: mae}
  - {kind: negative, arms: [rand]}
primary: {layer: norm, feature: pooled, estimator: mmd2_paired}
n_runs: 50
"""


def write_fixture(out):
    os.makedirs(os.path.join(out, "runs"), exist_ok=True)
    with open(os.path.join(out, "sweep.yaml"), "w") as f:
        f.write(SWEEP_YAML)
    rows = ["id\trun_dir\tweights\ttask\tlr\tseed\tfold\twd"]
    i = 0
    for arm in ARMS:
        for task in TASKS:
            for lr in LRS:
                for seed in SEEDS:
                    d = f"runs/{i:04d}"
                    os.makedirs(os.path.join(out, d), exist_ok=True)
                    write_log(os.path.join(out, d, "log.h5"), arm, task, lr, seed)
                    rows.append(f"{i:04d}\t{d}\t{arm}\t{task}\t{lr:.1e}\t{seed}\t-1\t0.05")
                    i += 1
    # a run that never started, and one still running (no /test)
    rows.append(f"{i:04d}\truns/{i:04d}\tmae\tsegment\t1.0e-04\t3\t-1\t0.05")
    i += 1
    d = f"runs/{i:04d}"
    os.makedirs(os.path.join(out, d), exist_ok=True)
    write_log(os.path.join(out, d, "log.h5"), "mae", "segment", 1e-4, 0, finished=False)
    rows.append(f"{i:04d}\t{d}\tmae\tsegment\t1.0e-04\t4\t-1\t0.05")
    with open(os.path.join(out, "index.tsv"), "w") as f:
        f.write("\n".join(rows) + "\n")


def within_points(task):
    """(x, y) of every mae / clr run of a task (both lrs): x = mmd2_paired@norm, y = RPG
    against the seed-matched scratch test of the selected scratch lr"""
    metric, higher = TASKS[task]
    scr = SPEC[("scratch", task, SELECTED[("scratch", task)])]["test"]
    xs, ys = [], []
    for arm in ("mae", "clr"):
        for lr in LRS:
            for seed in SEEDS:
                sel = SELECTED[(arm, task)] == lr
                xs.append(MMD[(arm, task)][seed] + (0.0 if sel else MMD_OTHER_LR[arm]))
                t = SPEC[(arm, task, lr)]["test"][seed]
                s = 1.0 if higher else -1.0
                ys.append(s * (t - scr[seed]) / abs(scr[seed]) * 100)
    return np.array(xs), np.array(ys)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: tests/report_fixture.py OUT_DIR")
    write_fixture(sys.argv[1])
    print(f"wrote {sys.argv[1]}")
