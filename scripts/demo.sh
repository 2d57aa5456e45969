#!/bin/sh
# scripts/demo.sh BUILD [quick|full] — the README's first command: the paper's experiment on
# synthetic prostate mpMRI phantoms, end to end.
#   1. two phantom datasets: a larger one for pretraining (its labels are never used) and the
#      fine-tuning one (train / val / test splits);
#   2. two tiny 3D "foundation models" pretrained on the first: MAE (reconstruction) and
#      contrastive (InfoNCE on two augmented views) — vita pretrain;
#   3. a sweep (vita sweep): {mae, contrastive, scratch} x the five tasks (x lrs x seeds in
#      full mode), run by scripts/run-sweep-local.sh, every run logging validation curves and
#      the alignment (MMD², CKA, weight distance) of its features with its initial encoder;
#   4. vita report: test metric of the validation-selected checkpoint, RPG over scratch,
#      convergence, final MMD² per layer, and the MMD²-vs-RPG / convergence correlations with
#      cluster-bootstrap CIs; tools/plot.py draws the figures next to it.
# quick (make demo): 16x32x32 phantoms (vit-tiny-3d with its patch halved to 4x8x8, so 64 tokens
# as in the preset), one lr, one seed, a few epochs: the training part stays under 10 minutes
# on 2 cores. Its numbers illustrate the pipeline; they are not results (one seed per arm).
# full (make demo-full): more cases, 3 seeds, a 2-point lr grid and longer runs (about an hour on
# 2 cores; minutes on a GPU node).
set -e
BUILD=${1:-build}
MODE=${2:-quick}
PY=${PYTHON:-/usr/bin/python3}
VITA="$BUILD/vita"
case "$MODE" in
  quick) D="$BUILD/demo"; N_PRE=160; N_FT=100; PRE_EP=30; FT_EP=8; CLS_EP=16
         LRS="[3.0e-4]"; SEEDS="[0]"; JOBS=2 ;;
  full)  D="$BUILD/demo-full"; N_PRE=400; N_FT=200; PRE_EP=40; FT_EP=20; CLS_EP=30
         LRS="[1.0e-4, 3.0e-4]"; SEEDS="[0, 1, 2]"; JOBS=2 ;;
  *) echo "usage: scripts/demo.sh BUILD [quick|full]" >&2; exit 1 ;;
esac
case "$D" in /*) ;; *) D="$(pwd)/$D" ;; esac
mkdir -p "$D"
start=$(date +%s)
secs() { echo "$(( $(date +%s) - $1 )) s"; }

echo "== phantoms: $N_PRE pretraining cases (seed 1), $N_FT fine-tuning cases (seed 0), 16x32x32"
"$VITA" phantom --out "$D/pretrain.h5" --cases "$N_PRE" --size 16,32,32 --seed 1 --quiet
"$VITA" phantom --out "$D/phantoms.h5" --cases "$N_FT" --size 16,32,32 --seed 0 --quiet

# shared model geometry of every run (pretraining and fine-tuning must agree)
GEOM="--set model.img_size=[16,32,32] --set model.patch=[4,8,8]"
for obj in mae contrastive; do
  t0=$(date +%s)
  echo "== pretraining: $obj ($PRE_EP epochs on $D/pretrain.h5)"
  # shellcheck disable=SC2086
  "$VITA" pretrain "configs/examples/pretrain-$obj.yaml" --quiet $GEOM \
    --set data.path="$D/pretrain.h5" --set run.out="$D/pretrain" --set run.name="$obj" \
    --set run.overwrite=true --set train.epochs="$PRE_EP"
  echo "   $obj: $(secs "$t0")"
done

cat > "$D/base.yaml" <<EOF
# base run config of the demo sweep (written by scripts/demo.sh)
run: {seed: 0, deterministic: false}
model: {preset: vit-tiny-3d, img_size: [16, 32, 32], patch: [4, 8, 8], weights: null}
task: {name: classify, head: {feature_size: 8}}
data: {path: $D/phantoms.h5, batch: 2, workers: 1}
train: {epochs: $FT_EP, lr: 3.0e-04, warmup_epochs: 1}
align:
  layers: [2, 4, norm]
  feature: pooled
  probe: {n_images: 16}
  estimators: [mmd2_paired, mmd2_paired_se, mmd2_u, cka_linear, mean_cos_dist]
EOF
cat > "$D/sweep.yaml" <<EOF
# the paper's experiment on phantoms (written by scripts/demo.sh; format: vita sweep --help)
base: base.yaml
name: demo-$MODE
axes:
  weights:
    mae: pretrain/mae/encoder.safetensors
    contrastive: pretrain/contrastive/encoder.safetensors
    scratch: null
  task: [classify, segment, superres, undistort, synthesize]
  lr: $LRS
  seed: $SEEDS
task_set:
  classify: {train.epochs: $CLS_EP, task.num_classes: 2, task.metric: auroc}
  segment: {task.num_classes: 4, task.metric: dice}
  superres: {task.head.input_channel: 0, task.loss.kind: l1, task.metric: psnr}
  undistort: {task.head.output: field, task.head.input_channel: 2, task.head.pe_axis: 1, task.loss.kind: l1, task.metric: psnr}
  synthesize: {task.loss.kind: l1, task.metric: psnr}
scratch: scratch
primary: {layer: norm, feature: pooled, estimator: mmd2_paired}
EOF
echo "== sweep: $D/sweep"
"$VITA" sweep "$D/sweep.yaml" --out "$D/sweep" --force --quiet
t0=$(date +%s)
bash scripts/run-sweep-local.sh "$D/sweep" -j "$JOBS" --threads 1
echo "   fine-tuning: $(secs "$t0"); training part total: $(secs "$start")"
echo
"$VITA" report "$D/sweep" --csv "$D/report.csv" | tee "$D/report.md"
"$PY" tools/plot.py sweep "$D/sweep" --csv "$D/report.csv" --out "$D/plots" >/dev/null &&
  echo "figures: $D/plots"
if [ "$MODE" = quick ]; then
  echo "(illustrative numbers: $N_FT small phantoms, one seed per arm, $FT_EP epochs; not results)"
fi
