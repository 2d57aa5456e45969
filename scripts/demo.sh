#!/bin/sh
# scripts/demo.sh BUILD — the README's first command: synthetic prostate mpMRI phantoms, then
# vit-tiny-3d fine-tuned on all five tasks from two initialisations (scratch, and the encoder
# of a short supervised run on another task), each run logging validation curves and the
# alignment (MMD², CKA, weight distance) of its features with the initial encoder's. Sized to
# finish in under 10 minutes on 2 cores: 100 phantoms of 16x32x32 (the preset's patch halved
# to 4x8x8, so 64 tokens as in vit-tiny-3d), a few epochs per task. The numbers illustrate
# the pipeline; they are not results.
set -e
BUILD=${1:-build}
PY=${PYTHON:-/usr/bin/python3}
VITA="$BUILD/vita"
D="$BUILD/demo"
mkdir -p "$D"
start=$(date +%s)
echo "== phantoms: 100 cases of 16x32x32 -> $D/phantoms.h5"
"$VITA" phantom --out "$D/phantoms.h5" --cases 100 --size 16,32,32 --quiet
COMMON="--quiet --set data.path=$D/phantoms.h5 --set model.img_size=[16,32,32] \
 --set model.patch=[4,8,8] --set task.head.feature_size=8 --set align.probe.n_images=16 \
 --set run.out=$D/runs --set run.overwrite=true"
run() { # task name epochs [extra --set ...]
  task=$1; name=$2; ep=$3; shift 3
  t0=$(date +%s)
  # shellcheck disable=SC2086
  "$VITA" train "configs/examples/$task.yaml" $COMMON --set run.name="$name" \
    --set train.epochs="$ep" "$@"
  echo "   $name: $(( $(date +%s) - t0 )) s"
}
echo "== short supervised runs that serve as the second initialisation"
run segment init-segment 6
run synthesize init-synthesize 6
SEG="$D/runs/init-segment/checkpoints/best.safetensors"
SYN="$D/runs/init-synthesize/checkpoints/best.safetensors"
echo "== fine-tuning: 5 tasks x {scratch, supervised init}"
for task in classify segment superres undistort synthesize; do
  ep=8; [ "$task" = classify ] && ep=20
  init=$SEG; [ "$task" = segment ] && init=$SYN
  run "$task" "$task-scratch" "$ep"
  run "$task" "$task-supervised" "$ep" --set model.weights="$init"
done
echo
"$PY" tools/summarize_runs.py "$D/runs"
echo "(illustrative numbers: 100 small phantoms, a few epochs; total $(( $(date +%s) - start )) s)"
