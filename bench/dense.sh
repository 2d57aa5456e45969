#!/bin/sh
# bench/dense.sh BUILD OUT — dense-task training steps (ViT encoder + UNETR decoder), vita vs the
# PyTorch peer of the learning tests (tests/oracle/learn_peer.py: the same encoder and head
# written with torch.nn ops, i.e. oneDNN conv3d on this CPU, AdamW, clipping), side by side in
# one run, same shapes, batch and thread count.
#   vita:    `vita train` on 60 phantom cases (32x64x64, vit-tiny-3d, UNETR feature_size 16),
#            2 epochs of 8 steps; s/step = batch / /epochs/samples_per_s of the last epoch
#            (the training loop only: no validation, alignment or checkpointing inside it);
#            augmentation off, as the peer trains on the stored arrays
#   PyTorch: learn_peer.py --bench 9, the wall time of 9 steps (the first step's allocation
#            included, as vita's epoch 2 runs warm: the peer's figure is slightly pessimistic
#            for it, by at most one step's setup in nine)
# Prints one markdown table.
BUILD=${1:-build}
OUT=${2:-$BUILD/bench-results}
PY=${PYTHON:-/usr/bin/python3}
THREADS=${THREADS:-2}
mkdir -p "$OUT"
DATA="$OUT/dense-phantoms.h5"
"$BUILD/vita" phantom --out "$DATA" --cases 60 --quiet || exit 1
# the peer reads image-task targets from /targets/<task> (the learning harness writes them);
# timing does not depend on their values: the T2w channel stands in
PDATA="$OUT/dense-phantoms-peer.h5"
cp "$DATA" "$PDATA" && "$PY" -c '
import h5py, sys
with h5py.File(sys.argv[1], "r+") as f:
    f.create_dataset("targets/superres", data=f["images"][:, 0:1])' "$PDATA" || exit 1
echo "dense-task training step (UNETR decoder, feature_size 16, batch 2), $THREADS threads, $(nproc) cores"
for task in segment superres; do
  case $task in
    segment)  head="num_classes: 4, head: {kind: unetr, feature_size: 16}, loss: {kind: dice_ce}, metric: dice"
              phead='{"kind": "unetr", "num_classes": 4, "feature_size": 16, "input_channel": 0, "output": "image", "pe_axis": 1}'
              loss=dice_ce ;;
    superres) head="head: {kind: unetr, feature_size: 16, input_channel: 0}, loss: {kind: l1}, metric: psnr"
              phead='{"kind": "unetr", "num_classes": 1, "feature_size": 16, "input_channel": 0, "output": "image", "pe_axis": 1}'
              loss=l1 ;;
  esac
  cat > "$OUT/dense-$task.yaml" <<EOF
run: {name: dense-$task, out: $OUT/dense-runs, seed: 0, overwrite: true}
model: {preset: vit-tiny-3d}
task: {name: $task, $head}
data: {path: $DATA, batch: 2, augment: false}
train: {epochs: 2, steps_per_epoch: 8, lr: 3.0e-04, warmup_epochs: 0}
align: {probe: {n_images: 4}}
EOF
  OMP_WAIT_POLICY=PASSIVE "$BUILD/vita" train "$OUT/dense-$task.yaml" --threads "$THREADS" --quiet > "$OUT/dense-vita-$task.txt" 2>&1 ||
    { cat "$OUT/dense-vita-$task.txt"; exit 1; }
  cat > "$OUT/dense-$task.json" <<EOF
{"data": "$PDATA", "task": "$task",
 "model": {"spatial_dims": 3, "img_size": [32, 64, 64], "patch": [8, 16, 16], "in_chans": 3,
  "dim": 128, "depth": 4, "heads": 4, "mlp_ratio": 4.0, "qkv_bias": true, "ln_eps": 1e-06,
  "cls_token": true, "num_registers": 0, "extra_tokens": [], "pos_embed": "learned", "layerscale_init": 0.0},
 "head": $phead, "identity_channel": 0,
 "loss": "$loss", "w_ce": 1.0, "w_dice": 1.0, "epochs": 1, "batch": 2, "lr": 3e-4,
 "min_lr": 1e-6, "warmup_epochs": 0, "weight_decay": 0.05, "layer_decay": 1.0,
 "clip_grad": 1.0, "threads": $THREADS}
EOF
  OMP_NUM_THREADS=$THREADS "$PY" tests/oracle/learn_peer.py --spec "$OUT/dense-$task.json" --bench 9 \
    > "$OUT/dense-torch-$task.txt" 2>&1 || { cat "$OUT/dense-torch-$task.txt"; exit 1; }
done
"$PY" - "$OUT" <<'PYEOF'
import h5py, re, sys, os
out = sys.argv[1]
print()
print("| task | impl | s/step | vita speedup |")
print("|---|---|---|---|")
for task in ("segment", "superres"):
    with h5py.File(os.path.join(out, "dense-runs", f"dense-{task}", "log.h5"), "r") as f:
        vs = 2.0 / float(f["epochs/samples_per_s"][-1])
    m = re.search(r"([0-9.]+) s/step", open(os.path.join(out, f"dense-torch-{task}.txt")).read())
    ts = float(m.group(1))
    print(f"| {task} | vita | {vs:.3f} | {ts / vs:.2f}x |")
    print(f"| {task} | PyTorch | {ts:.3f} | 1.00x |")
PYEOF
