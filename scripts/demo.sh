#!/bin/sh
# scripts/demo.sh BUILD — what this version of vita shows: a vit-tiny-3d encoder trained from
# scratch (forward, backward, AdamW, warmup + cosine, grad clipping) on seeded synthetic
# volumes until it classifies which sequence holds a lesion-like sphere, then a weights file
# written and inspected.
set -e
BUILD=${1:-build}
echo "== vit-tiny-3d + linear head, 150 steps of batch 8 on synthetic 3-channel volumes"
"$BUILD/tests/slow_learning" --demo
echo
echo "== a scratch vit-tiny-3d checkpoint, written and inspected"
mkdir -p "$BUILD/demo"
"$BUILD/tests/test_vit_model" --write-demo "$BUILD/demo/vit-tiny-3d.safetensors" >/dev/null
"$BUILD/vita" info "$BUILD/demo/vit-tiny-3d.safetensors" | sed -n '1,6p;/^parameters/,$p'
