#!/bin/sh
# scripts/demo.sh BUILD — what this version of vita can show: the encoder training step on
# the tiny 3D preset (memory report, loss going down), a weights file written and read back,
# and the side-by-side speed against PyTorch on the same step.
set -e
BUILD=${1:-build}
echo "== vit-tiny-3d: 10 training steps (forward, backward, AdamW) on a fixed random batch"
"$BUILD/bench/encoder" --preset vit-tiny-3d --batch 4 --steps 10 --warmup 0 --threads "${THREADS:-2}"
echo
echo "== a scratch vit-tiny-3d checkpoint, written and inspected"
mkdir -p "$BUILD/demo"
"$BUILD/tests/test_vit_model" --write-demo "$BUILD/demo/vit-tiny-3d.safetensors" >/dev/null
"$BUILD/vita" info "$BUILD/demo/vit-tiny-3d.safetensors" | sed -n '1,6p;/^parameters/,$p'
