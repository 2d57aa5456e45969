#!/bin/sh
# tests/test_sweep.sh — `vita sweep`, scripts/run-sweep-local.sh and scripts/slurm/sweep.sbatch
# (issue 6, "vita sweep and SLURM"). Needs $VITA_BUILD/vita (default build/vita) and $PYTHON
# (default /usr/bin/python3, with numpy, h5py, yaml).
#  (1) expansion: run count = product of the axes, ids count the last axis fastest, index.tsv
#      exactly as computed independently here (Python), every config loads (PyYAML and vita
#      --print-config, which must reproduce the file) and carries its axis values, per-task
#      overrides, extra axes and absolute paths; the resolved sweep.yaml reads back (vita sweep
#      on it gives the same runs); same sweep twice = no-op; a different sweep is refused, then
#      replaced with --force; bad sweep files fail with one line naming the file and key and
#      write nothing.
#  (2) "A sweep interrupted by SIGUSR1 and resumed finishes every run exactly once, with
#      per-step losses identical to an uninterrupted sweep in deterministic mode": 4 tiny runs of 2 x 20
#      steps (classify/segment x 2 seeds, run.deterministic, --threads 1) with -j 2 once straight
#      through (A) and once (B) with SIGUSR1 sent to the runner while runs are in progress
#      (exit 75, some run checkpointed mid-run), then rerun to completion; /steps/loss equal bit
#      for bit and /steps/step = 0..n-1 exactly once in every run.
#  (3) the sbatch script under a fake SLURM (scontrol on PATH records its arguments): USR1 mid-
#      run -> exit 75 and exactly `scontrol requeue JOB_TASK`; rerun finishes the run with
#      the same losses; a third call exits 0 at once (done marker). Also plain `vita train` on
#      a sweep run (only config.yaml in RUN_DIR) starts it, and --resume on a finished run exits 0.
# (4) a finished run whose weights file was pretrained again is stale: vita sweep refuses, and
#      --force deletes it (and only it).
# Bit-for-bit equality is the claim under test (DESIGN.md §3: deterministic CPU runs are
# bit-identical across runs and across resume), so no tolerance applies.
[ -n "$BASH_VERSION" ] || exec bash "$0" "$@"
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
B=${VITA_BUILD:-build}
case "$B" in /*) ;; *) B="$ROOT/$B" ;; esac
V="$B/vita"
PY=${PYTHON:-/usr/bin/python3}
export OMP_NUM_THREADS=1
pass=0; fail=0
ok() {   # ok WHAT CONDITION-EXIT-STATUS
    if [ "$2" -eq 0 ]; then pass=$((pass + 1)); echo "ok   $1"
    else fail=$((fail + 1)); echo "FAIL $1"
    fi
}
finish() { echo "$pass passed, $fail failed"; [ "$fail" -eq 0 ]; exit $?; }
if [ ! -x "$V" ]; then echo "FAIL $V is not built (make BUILD=... $V, or set VITA_BUILD)"; fail=1; finish; fi
T=$(mktemp -d /tmp/vita-test-sweep.XXXXXX)
trap 'rm -rf "$T"' EXIT
cd "$T" || exit 1

# ---- (1) expansion ------------------------------------------------------------------------------
mkdir -p pre pre2 && : > pre/mae.safetensors && : > pre/con.safetensors && : > pre2/mae.safetensors
cat > base.yaml <<'EOF'
run: {deterministic: true}
model: {preset: vit-tiny-3d, img_size: [16, 32, 32], patch: [4, 8, 8]}
task: {name: classify}
data: {path: D.h5, batch: 2, workers: 1}
train: {epochs: 2, steps_per_epoch: 20, warmup_epochs: 1, checkpoint_every: 1}
align: {layers: [2, norm], probe: {n_images: 4}, estimators: [mmd2_paired, mmd2_u]}
log: {swmr: off}
EOF
mkdir -p sub && cat > sub/grid.yaml <<'EOF'
base: ../base.yaml
name: grid
set: {train.epochs: 3}
axes:
  weights: {mae: ../pre/mae.safetensors, con: ../pre/con.safetensors, scratch: null}
  task: [classify, segment]
  lr: [1.0e-4, 3.0e-4]
  seed: [0, 1]
  extra:
    - {name: dp, key: train.drop_path, values: [0.0, 0.1]}
task_set:
  segment: {task.num_classes: 4, data.batch: 1}
scratch: scratch
controls:
  - {kind: positive, aligned: mae, reference: con}
  - {kind: negative, arms: [con]}
primary: {layer: norm, feature: pooled, estimator: mmd2_paired}
EOF
"$V" sweep sub/grid.yaml --out G > out.txt 2>&1
ok "vita sweep of a 3x2x2x2x2 grid exits 0" $?
cat > check_grid.py <<'EOF'
import itertools, os, sys, yaml
d = os.path.abspath(sys.argv[1]); root = os.path.dirname(d)
W = [("mae", root + "/pre/mae.safetensors"), ("con", root + "/pre/con.safetensors"), ("scratch", None)]
axes = [W, ["classify", "segment"], ["1.0e-4", "3.0e-4"], [0, 1], [0.0, 0.1]]
want = ["id\trun_dir\tweights\ttask\tlr\tseed\tfold\tdp"]
bad = []
for r, (w, task, lr, seed, dp) in enumerate(itertools.product(*axes)):   # last axis fastest
    rid = "%04d" % r
    want.append("\t".join([rid, "runs/" + rid, w[0], task, lr, str(seed), "-1", "%.1f" % dp]))
    c = yaml.safe_load(open("%s/runs/%s/config.yaml" % (d, rid)))
    got = (c["run"]["name"], c["run"]["out"], c["model"]["weights"], c["task"]["name"], c["train"]["lr"],
           c["run"]["seed"], c["train"]["drop_path"], c["train"]["epochs"], c["task"]["num_classes"],
           c["data"]["batch"], c["data"]["path"])
    exp = (rid, d + "/runs", w[1], task, float(lr), seed, dp, 3, 4 if task == "segment" else 2,
           1 if task == "segment" else 2, os.getcwd() + "/D.h5")
    if got != exp: bad.append((rid, got, exp))
print("runs", len(want) - 1, "config mismatches", len(bad), bad[:2])
have = open(d + "/index.tsv").read()
print("index_equal", have == "\n".join(want) + "\n")
s = yaml.safe_load(open(d + "/sweep.yaml"))
print("sweep_yaml", s["n_runs"] == 48 and s["base"] == root + "/base.yaml"
      and s["axes"]["weights"]["mae"] == root + "/pre/mae.safetensors" and s["axes"]["weights"]["scratch"] is None
      and s["primary"] == {"layer": "norm", "feature": "pooled", "estimator": "mmd2_paired"}
      and s["controls"][1] == {"kind": "negative", "arms": ["con"]} and s["scratch"] == "scratch")
EOF
o=$("$PY" check_grid.py G 2>&1); echo "$o"
echo "$o" | grep -q "^runs 48 config mismatches 0 "
ok "48 run configs carry their axis values, task_set, extra axis, set and absolute paths" $?
echo "$o" | grep -q "^index_equal True"
ok "index.tsv: header, ids in product order (last axis fastest), labels as written" $?
echo "$o" | grep -q "^sweep_yaml True"
ok "sweep.yaml: absolute base/weights, n_runs, primary, controls, scratch" $?
r=0
for id in 0000 0031 0047; do
    "$V" train "G/runs/$id/config.yaml" --print-config > pc.yaml 2> pc.err && cmp -s pc.yaml "G/runs/$id/config.yaml" || r=1
done
ok "vita train --print-config reproduces run configs 0000, 0031, 0047 byte for byte" $r
"$V" sweep G/sweep.yaml --out G2 --quiet && cmp -s G/index.tsv G2/index.tsv && cmp -s G/sweep.yaml G2/sweep.yaml &&
    sed "s#$T/G2/runs#$T/G/runs#" G2/runs/0045/config.yaml | cmp -s - G/runs/0045/config.yaml
ok "the resolved sweep.yaml is itself a sweep file giving the same runs" $?
snap() { find G -type f -newer sub/grid.yaml -exec md5sum {} + | sort; }
before=$(snap); sleep 0.05
o=$("$V" sweep sub/grid.yaml --out G 2>&1); rc=$?
[ $rc -eq 0 ] && echo "$o" | grep -q "nothing written" && [ "$(snap)" = "$before" ]
ok "the same sweep into the same DIR is a no-op (exit 0, says so, files untouched)" $?
sed 's/lr: \[1.0e-4, 3.0e-4\]/lr: [1.0e-4, 2.0e-4]/' sub/grid.yaml > sub/grid2.yaml
o=$("$V" sweep sub/grid2.yaml --out G 2>&1); rc=$?
[ $rc -eq 1 ] && [ "$(echo "$o" | wc -l)" -eq 1 ] && echo "$o" | grep -q -- "--force" && [ "$(snap)" = "$before" ]
ok "a different sweep into DIR is refused with one line naming --force, nothing changed" $?
mkdir -p G/runs/0047/checkpoints G/runs/0099 && : > G/runs/0047/log.h5
"$V" sweep sub/grid2.yaml --out G --force --quiet && grep -q "	2.0e-4	" G/index.tsv && [ ! -e G/runs/0047/log.h5 ] &&
    [ ! -e G/runs/0099 ] && grep -q "lr: 2.0e-04" G/runs/0047/config.yaml
ok "--force replaces it (a started run whose config changed and a stale run dir are deleted)" $?

# bad sweep files: exit 1, one line naming bad.yaml and the key, nothing written
P='primary: {layer: norm, feature: pooled, estimator: mmd2_paired}'
WM='axes: {weights: {mae: pre/mae.safetensors, scratch: null}}'
bad() {   # bad WHAT EXPECTED-SUBSTRING SWEEP-TEXT
    printf '%s\n' "$3" > bad.yaml
    o=$("$V" sweep bad.yaml --out BAD 2>&1); rc=$?
    [ $rc -eq 1 ] && [ "$(echo "$o" | wc -l)" -eq 1 ] && echo "$o" | grep -q "bad.yaml" && echo "$o" | grep -qF -- "$2" && [ ! -e BAD ]
    r=$?; [ $r -eq 0 ] || echo "  got: $o"
    ok "bad sweep ($1): one line with '$2'" $r
}
bad "missing base" "base: missing" "$P"
bad "base not found" "base: nope.yaml" "base: nope.yaml
$P"
bad "unknown axis" "axes.lrs: unknown key" "base: base.yaml
axes: {lrs: [1.0e-4]}
$P"
bad "empty axis" "axes.seed: empty axis" "base: base.yaml
axes: {seed: []}
$P"
bad "labels not unique" "'mae' appears twice" "base: base.yaml
axes: {weights: [pre/mae.safetensors, pre2/mae.safetensors, null]}
scratch: scratch
$P"
bad "scratch label not among weights" "scratch: 'none' is not a label" "base: base.yaml
$WM
scratch: none
$P"
bad "scratch arm with weights" "trains from scratch" "base: base.yaml
$WM
scratch: mae
$P"
bad "weights file missing" "axes.weights.mae: pre/gone.safetensors" "base: base.yaml
axes: {weights: {mae: pre/gone.safetensors, scratch: null}}
scratch: scratch
$P"
bad "primary.layer not probed" "primary.layer = 3" "base: base.yaml
primary: {layer: 3, feature: pooled, estimator: mmd2_paired}"
bad "primary.estimator not logged" "primary.estimator = cka_linear" "base: base.yaml
primary: {layer: norm, feature: pooled, estimator: cka_linear}"
bad "primary missing" "primary: missing" "base: base.yaml"
bad "invalid task value (config_load per run)" "task.name" "base: base.yaml
axes: {task: [classify, segmnt]}
$P"
bad "extra axis on an unknown key" "train.nope" "base: base.yaml
axes: {extra: [{name: x, key: train.nope, values: [1]}]}
$P"
bad "task_set on an axis key" "task_set.classify.train.lr" "base: base.yaml
axes: {lr: [1.0e-4]}
task_set: {classify: {train.lr: 1.0e-3}}
$P"
bad "control arm unknown" "controls[0].arms: 'zz'" "base: base.yaml
$WM
scratch: scratch
controls: [{kind: negative, arms: [zz]}]
$P"

# ---- (2) interrupted and resumed local sweep = uninterrupted one ------------------------------
"$V" phantom --out D.h5 --cases 40 --size 16,32,32 --seed 3 --quiet
ok "vita phantom: 40 cases of 16x32x32" $?
cat > tiny.yaml <<EOF
base: base.yaml
axes:
  task: [classify, segment]
  seed: [0, 1]
task_set:
  segment: {task.num_classes: 4, task.head.feature_size: 4}
primary: {layer: norm, feature: pooled, estimator: mmd2_paired}
EOF
"$V" sweep tiny.yaml --out A --quiet && "$V" sweep tiny.yaml --out B --quiet && "$V" sweep tiny.yaml --out C --quiet
ok "three copies of a 4-run sweep (A straight, B interrupted, C under the sbatch script)" $?
export VITA="$V"
RUNNER="$ROOT/scripts/run-sweep-local.sh"
bash "$RUNNER" A -j 2 --threads 1 > runA.txt 2>&1; rc=$?
cat runA.txt
[ $rc -eq 0 ] && [ "$(grep -c ' done (' runA.txt)" -eq 4 ] && [ "$(ls A/runs/*/done | wc -l)" -eq 4 ]
ok "sweep A: run-sweep-local.sh -j 2 runs all 4 runs (exit 0, 4 done lines, 4 done markers)" $?
"$V" sweep tiny.yaml --out A 2>&1 | grep -q "nothing written"
ok "re-issuing vita sweep on the finished sweep A is still a no-op (train keeps config.yaml as written)" $?

bash "$RUNNER" B -j 2 --threads 1 > runB1.txt 2>&1 &
rp=$!
# signal while runs are in progress: once some unfinished run has a complete checkpoint
# (epoch 1 of 2 done), it is mid-way through epoch 2
waited=0
while :; do
    mid=""
    for r in B/runs/*; do [ -e "$r/checkpoints/latest" ] && [ ! -e "$r/done" ] && mid=$r; done
    [ -n "$mid" ] && break
    kill -0 $rp 2> /dev/null || break
    sleep 0.05; waited=$((waited + 1)); [ $waited -lt 1200 ] || break
done
kill -USR1 $rp
wait $rp; rc=$?
cat runB1.txt
ndone=$(ls B/runs/*/done 2> /dev/null | wc -l)
[ $rc -eq 75 ] && grep -q "preempted" runB1.txt && [ "$ndone" -lt 4 ]
ok "sweep B: SIGUSR1 to the runner mid-sweep -> exit 75, preempted runs reported, $ndone of 4 finished" $?
cat > rows.py <<'EOF'
import h5py, sys
for p in sys.argv[1:]:
    with h5py.File(p, "r") as f: print(p, len(f["steps/step"]))
EOF
partial=0
for r in B/runs/*; do
    [ -e "$r/done" ] && continue
    [ -e "$r/checkpoints/latest" ] || continue
    n=$("$PY" rows.py "$r/log.h5" | awk '{print $2}')
    [ "$n" -gt 0 ] && [ "$n" -lt 40 ] && partial=1 && echo "  $r checkpointed after $n of 40 steps"
done
ok "sweep B: some run was checkpointed mid-run (0 < logged steps < 40, no done marker)" $((1 - partial))
bash "$RUNNER" B -j 2 --threads 1 > runB2.txt 2>&1; rc=$?
cat runB2.txt
[ $rc -eq 0 ] && [ "$(ls B/runs/*/done | wc -l)" -eq 4 ] && [ "$(grep -c ' skipped (finished' runB2.txt)" -eq "$ndone" ] &&
    [ "$(grep -c ' started (' runB2.txt)" -eq $((4 - ndone)) ]
ok "sweep B rerun: skips the $ndone finished runs, resumes the rest, exit 0, all done" $?
grep -q "resumed from" B/logs/*.log
ok "sweep B: the resumed runs continued from their checkpoints (\"resumed from\" in their logs)" $?

cat > same.py <<'EOF'
import h5py, numpy as np, sys
a, b, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
bad = 0
for r in range(4):
    la = h5py.File("%s/runs/%04d/log.h5" % (a, r), "r"); lb = h5py.File("%s/runs/%04d/log.h5" % (b, r), "r")
    xa, xb = la["steps/loss"][:], lb["steps/loss"][:]
    sa, sb = la["steps/step"][:], lb["steps/step"][:]
    same = xa.dtype == xb.dtype and xa.shape == xb.shape and xa.tobytes() == xb.tobytes()
    once = all(np.array_equal(s, np.arange(n)) for s in (sa, sb))
    print("run %04d: %d / %d steps, losses bit-identical %s, steps 0..%d once %s" % (r, len(xa), len(xb), same, n - 1, once))
    bad += not (same and once)
print("mismatching runs", bad)
EOF
o=$("$PY" same.py A B 40 2>&1); echo "$o"
echo "$o" | grep -q "^mismatching runs 0$"
ok "every run of B: /steps/loss bit-identical to A, /steps/step = 0..39 exactly once" $?

# a sweep run directory holds only config.yaml: plain `vita train` starts there too
"$V" train C/runs/0000/config.yaml --threads 1 --quiet > t0.txt 2>&1 && [ -e C/runs/0000/done ]
ok "vita train (no --resume) starts a run whose directory holds only the sweep's config.yaml" $?
"$V" train C/runs/0000/config.yaml --threads 1 --quiet > t1.txt 2>&1; rc=$?
[ $rc -eq 1 ] && grep -q "exists: continue it with --resume" t1.txt
ok "... and refuses it once started (exit 1, names --resume)" $?
o=$("$V" train C/runs/0000/config.yaml --threads 1 --resume 2>&1); rc=$?
[ $rc -eq 0 ] && echo "$o" | grep -q "already finished"
ok "vita train --resume on a finished run (done marker) exits 0 at once" $?

# ---- (3) the sbatch script under a fake SLURM --------------------------------------------------
mkdir -p fakebin
cat > fakebin/scontrol <<EOF
#!/bin/sh
echo "\$*" >> "$T/scontrol.calls"
EOF
chmod +x fakebin/scontrol
SB="$ROOT/scripts/slurm/sweep.sbatch"
# run 0003 = segment, seed 1 (the slow one)
PATH="$T/fakebin:$PATH" SLURM_ARRAY_JOB_ID=4242 SLURM_ARRAY_TASK_ID=3 SLURM_CPUS_PER_TASK=1 bash "$SB" C > sb1.txt 2>&1 &
sp=$!
waited=0
while [ ! -e C/runs/0003/checkpoints/latest ] && kill -0 $sp 2> /dev/null && [ $waited -lt 1200 ]; do
    sleep 0.05; waited=$((waited + 1))
done
kill -USR1 $sp
wait $sp; rc=$?
cat sb1.txt
[ $rc -eq 75 ] && [ "$(cat scontrol.calls 2> /dev/null)" = "requeue 4242_3" ] && [ ! -e C/runs/0003/done ]
ok "sbatch script: USR1 -> vita checkpoints, exit 75, exactly 'scontrol requeue 4242_3'" $?
PATH="$T/fakebin:$PATH" SLURM_ARRAY_JOB_ID=4242 SLURM_ARRAY_TASK_ID=3 SLURM_CPUS_PER_TASK=1 bash "$SB" C > sb2.txt 2>&1; rc=$?
cat sb2.txt
[ $rc -eq 0 ] && [ -e C/runs/0003/done ] && [ "$(wc -l < scontrol.calls)" -eq 1 ]
ok "sbatch script: the requeued element resumes and finishes the run (exit 0, done, no new requeue)" $?
o=$("$PY" - <<'EOF'
import h5py
a = h5py.File("A/runs/0003/log.h5", "r"); c = h5py.File("C/runs/0003/log.h5", "r")
print(a["steps/loss"][:].tobytes() == c["steps/loss"][:].tobytes(), list(c["steps/step"][:]) == list(range(40)))
EOF
)
[ "$o" = "True True" ]
ok "sbatch script: the resumed run's /steps/loss equals sweep A's run 0003 bit for bit, steps 0..39 once ($o)" $?
PATH="$T/fakebin:$PATH" SLURM_ARRAY_JOB_ID=4242 SLURM_ARRAY_TASK_ID=3 bash "$SB" C > sb3.txt 2>&1; rc=$?
[ $rc -eq 0 ] && grep -q "already finished" sb3.txt
ok "sbatch script: a finished run exits 0 at once" $?

# ---- (4) an encoder pretrained again makes its finished runs stale ------------------------------
# (epochs 0: vita pretrain writes its initial encoder; another seed = other weights)
pre() {   # pre SEED
    "$V" pretrain "$ROOT/configs/examples/pretrain-mae.yaml" --quiet --threads 1 \
        --set model.img_size=[16,32,32] --set model.patch=[4,8,8] --set data.path=D.h5 \
        --set run.out="$T/pw" --set run.name=mae --set run.overwrite=true --set train.epochs=0 \
        --set run.seed="$1" > pre.txt 2>&1 && cp pw/mae/encoder.safetensors W.safetensors
}
cat > wsweep.yaml <<EOF
base: base.yaml
set: {train.epochs: 1, train.steps_per_epoch: 4}
axes:
  weights: {mae: W.safetensors, scratch: null}
scratch: scratch
primary: {layer: norm, feature: pooled, estimator: mmd2_paired}
EOF
pre 1 && "$V" sweep wsweep.yaml --out WS --quiet && bash "$RUNNER" WS -j 1 --threads 1 > ws1.txt 2>&1 &&
    [ -e WS/runs/0000/done ] && [ -e WS/runs/0001/done ]
ok "weights sweep: encoder (seed 1) pretrained, 2 runs (mae, scratch) finished" $?
"$V" sweep wsweep.yaml --out WS 2>&1 | grep -q "nothing written"
ok "same weights: re-issuing the sweep is a no-op" $?
pre 2 && "$V" sweep wsweep.yaml --out WS > ws2.txt 2>&1; rc=$?
cat ws2.txt
[ $rc -eq 1 ] && grep -q "weights file changed" ws2.txt && grep -q "runs/0000 started from another" ws2.txt &&
    [ -e WS/runs/0000/done ]
ok "encoder pretrained again (seed 2): vita sweep refuses, naming run 0000 and its weights (kept)" $?
rsha() { "$PY" -c 'import h5py, sys; v = h5py.File(sys.argv[1], "r").attrs["weights_sha256"]; print(v.decode() if isinstance(v, bytes) else v)' "$1"; }
sha1=$(rsha WS/runs/0000/log.h5)
rm WS/runs/0000/done && "$V" train WS/runs/0000/config.yaml --resume --threads 1 --quiet > wr.txt 2>&1; rc=$?
cat wr.txt
sha2=$(rsha WS/runs/0000/log.h5)
[ $rc -eq 0 ] && grep -q "changed since this run started" wr.txt && [ -n "$sha1" ] && [ "$sha1" = "$sha2" ]
ok "a run resumed after its weights changed warns, and its log keeps the sha256 it started from" $?
"$V" sweep wsweep.yaml --out WS --force > ws3.txt 2>&1; rc=$?
cat ws3.txt
[ $rc -eq 0 ] && [ ! -e WS/runs/0000/done ] && [ -e WS/runs/0001/done ] &&
    grep -q "1 old run directories deleted, 1 started runs kept" ws3.txt
ok "--force deletes the stale mae run, keeps the scratch run" $?
bash "$RUNNER" WS -j 1 --threads 1 > ws4.txt 2>&1 && [ -e WS/runs/0000/done ] &&
    "$V" sweep wsweep.yaml --out WS 2>&1 | grep -q "nothing written"
ok "the rerun trains it on the new encoder; the sweep is current again (no-op)" $?
finish
