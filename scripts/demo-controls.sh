#!/bin/sh
# scripts/demo-controls.sh BUILD [OUT_DIR] — positive and negative controls for the MMD–transfer
# relation, on phantoms (make demo-controls; also run by make demo-full and tests/slow_controls.sh).
#
# Positive control (the relation must show where we built it in): the downstream task is
# synthesize (T2w -> ADC: the ADC channel removed, the modality-masking degradation). Two
# "foundation" encoders are pretrained on a separate phantom set (seed 1): `aligned` by
# supervised training on exactly that degradation (vita train synthesize), `unrelated` by
# supervised classification (csPCa labels). The aligned checkpoint is transferred whole
# (encoder + its synthesize head: pretrained on exactly the downstream objective), the unrelated
# one as an encoder (its classification head does not fit). Fine-tuned on synthesize from
# {aligned, unrelated, scratch} x 3 seeds, the aligned encoder must transfer better (higher RPG)
# and move less (lower primary MMD²): vita report prints PASS / FAIL per task.
# Negative controls (the relation must vanish or reverse where no pretraining signal exists):
# `random`, a randomly initialised encoder saved as if pretrained (vita pretrain with 0 epochs,
# another seed), and `shuffled`, contrastive pretraining whose positive pairs are views of
# different images (pretrain.shuffle_pairs: true). Fine-tuned on the five tasks with a scratch
# baseline; vita report checks that the MMD²–RPG correlation over these runs has a 95 % CI
# containing 0 or the opposite sign of the paper's relation.
set -e
BUILD=${1:-build}
D=${2:-$BUILD/demo-controls}
VITA="$BUILD/vita"
case "$D" in /*) ;; *) D="$(pwd)/$D" ;; esac
mkdir -p "$D"
start=$(date +%s)
secs() { echo "$(( $(date +%s) - $1 )) s"; }
GEOM="--set model.img_size=[16,32,32] --set model.patch=[4,8,8] --set task.head.feature_size=8"

echo "== phantoms: 160 pretraining cases (seed 1), 100 fine-tuning cases (seed 0), 16x32x32"
"$VITA" phantom --out "$D/pretrain.h5" --cases 160 --size 16,32,32 --seed 1 --quiet
"$VITA" phantom --out "$D/phantoms.h5" --cases 100 --size 16,32,32 --seed 0 --quiet

PRE="--quiet --set data.path=$D/pretrain.h5 --set run.out=$D/pretrain --set run.overwrite=true"
t0=$(date +%s)
echo "== control encoders"
if [ "${REUSE:-0}" = 1 ] && [ -f "$D/pretrain/shuffled/encoder.safetensors" ]; then
  echo "   REUSE=1: keeping the encoders in $D/pretrain"
else
# shellcheck disable=SC2086
"$VITA" train configs/examples/synthesize.yaml $PRE $GEOM --set run.name=aligned \
  --set train.epochs=10 --set align.every=0
# shellcheck disable=SC2086
"$VITA" train configs/examples/classify.yaml $PRE $GEOM --set run.name=unrelated \
  --set train.epochs=10 --set align.every=0
# shellcheck disable=SC2086
"$VITA" pretrain configs/examples/pretrain-contrastive.yaml $PRE --set model.img_size=[16,32,32] \
  --set model.patch=[4,8,8] --set run.name=random --set run.seed=7 --set train.epochs=0
# shellcheck disable=SC2086
"$VITA" pretrain configs/examples/pretrain-contrastive.yaml $PRE --set model.img_size=[16,32,32] \
  --set model.patch=[4,8,8] --set run.name=shuffled --set train.epochs=12 \
  --set pretrain.shuffle_pairs=true
fi
echo "   control encoders: $(secs "$t0")"

cat > "$D/base.yaml" <<EOF
# base run config of the control sweeps (written by scripts/demo-controls.sh)
run: {seed: 0, deterministic: false}
model: {preset: vit-tiny-3d, img_size: [16, 32, 32], patch: [4, 8, 8], weights: null, load_head: false}
task: {name: synthesize, head: {feature_size: 8}}
data: {path: $D/phantoms.h5, batch: 2, workers: 1}
train: {epochs: 6, lr: 3.0e-04, warmup_epochs: 1}
align:
  layers: [2, 4, norm]
  feature: pooled
  probe: {n_images: 16}
  estimators: [mmd2_paired, mmd2_paired_se, mmd2_u, cka_linear, mean_cos_dist]
EOF
UNDISTORT='  undistort: {task.head.output: field, task.head.input_channel: 2, task.head.pe_axis: 1, task.loss.kind: l1, task.metric: psnr}'
TASK_SET="task_set:
  classify: {train.epochs: 12, task.num_classes: 2, task.metric: auroc}
  segment: {task.num_classes: 4, task.metric: dice}
  superres: {task.head.input_channel: 0, task.loss.kind: l1, task.metric: psnr}
$UNDISTORT
  synthesize: {task.loss.kind: l1, task.metric: psnr}"
cat > "$D/positive.yaml" <<EOF
base: base.yaml
name: control-positive
axes:
  weights:
    aligned: pretrain/aligned/checkpoints/best.safetensors
    unrelated: pretrain/unrelated/checkpoints/best.safetensors
    scratch: null
  task: [synthesize]
  seed: [0, 1, 2]
set: {model.load_head: true}
task_set:
  synthesize: {task.loss.kind: l1, task.metric: psnr}
scratch: scratch
controls:
  - {kind: positive, aligned: aligned, reference: unrelated}
primary: {layer: norm, feature: pooled, estimator: mmd2_paired}
EOF
cat > "$D/negative.yaml" <<EOF
base: base.yaml
name: control-negative
axes:
  weights:
    random: pretrain/random/encoder.safetensors
    shuffled: pretrain/shuffled/encoder.safetensors
    scratch: null
  task: [classify, segment, superres, undistort, synthesize]
  seed: [0]
$TASK_SET
scratch: scratch
controls:
  - {kind: negative, arms: [random, shuffled]}
primary: {layer: norm, feature: pooled, estimator: mmd2_paired}
EOF
for s in ${SWEEPS:-positive negative}; do
  "$VITA" sweep "$D/$s.yaml" --out "$D/$s" --force --quiet
  t0=$(date +%s)
  bash scripts/run-sweep-local.sh "$D/$s" -j 2 --threads 1
  echo "   $s control runs: $(secs "$t0")"
done
for s in ${SWEEPS:-positive negative}; do
  echo
  echo "## $s control"
  "$VITA" report "$D/$s" --csv "$D/$s.csv" | tee "$D/$s.md"
done
echo "(controls total: $(secs "$start"))"
