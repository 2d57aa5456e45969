#!/bin/sh
# bench/run.sh BUILD — the encoder training-step benchmark, vita vs PyTorch, side by side in
# one run on this machine, same config, batch, loss, optimizer and thread count (2 threads by
# default; THREADS=N to change). Prints a markdown table for the README.
BUILD=${1:-build}
PY=${PYTHON:-/usr/bin/python3}
THREADS=${THREADS:-2}
OUT="$BUILD/bench-results"; mkdir -p "$OUT"
run_pair() { # preset batch steps
  "$BUILD/bench/encoder" --preset "$1" --batch "$2" --steps "$3" --warmup 1 --threads "$THREADS" --json \
    | tail -n 1 > "$OUT/vita-$1.json" || exit 1
  OMP_NUM_THREADS=$THREADS "$PY" bench/encoder_peer.py --preset "$1" --batch "$2" --steps "$3" --warmup 1 \
    --threads "$THREADS" --json | tail -n 1 > "$OUT/torch-$1.json" || exit 1
}
echo "encoder training step (forward + backward + AdamW), $THREADS threads, $(nproc) cores"
run_pair vit-tiny-3d 4 10
run_pair vit-s16 8 3
"$PY" - "$OUT" <<'PYEOF'
import json, sys, os
out = sys.argv[1]
mib = lambda b: b / 2**20
print()
print("| config | impl | s/step | samples/s | GFLOP/s | tensor MiB (params+grads+opt+acts) | peak RSS MiB | vita speedup | vita/torch tensor memory |")
print("|---|---|---|---|---|---|---|---|---|")
for p, b in (("vit-tiny-3d", 4), ("vit-s16", 8)):
    v = json.load(open(os.path.join(out, f"vita-{p}.json")))
    t = json.load(open(os.path.join(out, f"torch-{p}.json")))
    for r in (v, t):
        by = r["bytes"]
        tens = by["params"] + by["grads"] + by["optimizer"] + by["activations"] + by.get("scratch", 0)
        r["tensor"] = tens
    for r in (v, t):
        sp = t["s_per_step"] / v["s_per_step"]
        print(f"| {p} batch {b} | {r['impl']} | {r['s_per_step']:.3f} | {r['samples_per_s']:.2f} | "
              f"{r['gflops']:.1f} | {mib(r['tensor']):.1f} | {mib(r['peak_rss']):.0f} | "
              f"{sp:.2f}x | {v['tensor'] / t['tensor']:.2f} |" if r is v else
              f"| {p} batch {b} | {r['impl']} {r.get('torch', '')} | {r['s_per_step']:.3f} | {r['samples_per_s']:.2f} | "
              f"{r['gflops']:.1f} | {mib(r['tensor']):.1f} | {mib(r['peak_rss']):.0f} | 1.00x | |")
PYEOF
