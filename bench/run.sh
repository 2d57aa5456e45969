#!/bin/sh
# bench/run.sh BUILD — vita vs PyTorch, side by side in one run on this machine, same inputs
# and thread count (2 threads by default; THREADS=N to change), each printed as a markdown
# table for the README:
#   encoder  one training step (same config, batch, loss, optimizer)
#   mmd      two-sample MMD² with 5 bandwidths, d = 768, n = m = 1024 ... 65536
#   dense    dense-task training steps (encoder + UNETR decoder), bench/dense.sh
# BENCH=encoder, BENCH=mmd or BENCH=dense runs one of them (default: all). vita runs with
# OMP_WAIT_POLICY=PASSIVE, as the vita binary sets for itself (engine/main.c).
BUILD=${1:-build}
PY=${PYTHON:-/usr/bin/python3}
THREADS=${THREADS:-2}
BENCH=${BENCH:-all}
OUT="$BUILD/bench-results"; mkdir -p "$OUT"
if [ "$BENCH" = all ] || [ "$BENCH" = encoder ]; then
run_pair() { # preset batch steps
  OMP_WAIT_POLICY=PASSIVE "$BUILD/bench/encoder" --preset "$1" --batch "$2" --steps "$3" --warmup 1 --threads "$THREADS" --json \
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
fi

# ---- MMD² ---------------------------------------------------------------------------------
# vita's fused, tiled estimator (bench/mmd.c) vs the full-matrix PyTorch formulation of
# alibi-detect (bench/mmd_peer.py) on the same data file and the same σ's (vita's median rule
# x 0.25,0.5,1,2,4). The peer is skipped where its N² matrices would exceed MMD_MAX_GB.
if [ "$BENCH" = all ] || [ "$BENCH" = mmd ]; then
MMD_SIZES=${MMD_SIZES:-"1024 4096 16384 65536"}
MMD_MAX_GB=${MMD_MAX_GB:-14}
echo "MMD² two-sample, d = 768, 5 bandwidths, $THREADS threads, $(nproc) cores"
for n in $MMD_SIZES; do
  reps=3; [ "$n" -ge 16384 ] && reps=1   # the big sizes are timed once
  data="$OUT/mmd-data-$n.f32"
  # 3 N² float32 matrices, N = 2n: skip writing data the peer will not read
  if [ $((48 * n * n)) -le $((MMD_MAX_GB * 1000000000)) ]; then wr="--write $data"; else wr=""; fi
  OMP_WAIT_POLICY=PASSIVE "$BUILD/bench/mmd" --n "$n" --d 768 --threads "$THREADS" --repeats "$reps" $wr --json \
    | tail -n 1 > "$OUT/mmd-vita-$n.json" || exit 1
  sig=$("$PY" -c 'import json,sys; print(",".join(repr(s) for s in json.load(open(sys.argv[1]))["sigmas"]))' \
        "$OUT/mmd-vita-$n.json") || exit 1
  OMP_NUM_THREADS=$THREADS "$PY" bench/mmd_peer.py --n "$n" --d 768 --data "$data" --sigmas "$sig" \
    --threads "$THREADS" --repeats "$reps" --max-gb "$MMD_MAX_GB" --json | tail -n 1 > "$OUT/mmd-torch-$n.json" || exit 1
  rm -f "$data"
done
"$PY" - "$OUT" $MMD_SIZES <<'PYEOF'
import json, sys, os
out, sizes = sys.argv[1], [int(s) for s in sys.argv[2:]]
mib = lambda b: b / 2**20
print()
print("| n = m | impl | seconds | vita speedup | peak RSS MiB | working memory MiB | MMD² (u) | rel. diff |")
print("|---|---|---|---|---|---|---|---|")
for n in sizes:
    v = json.load(open(os.path.join(out, f"mmd-vita-{n}.json")))
    t = json.load(open(os.path.join(out, f"mmd-torch-{n}.json")))
    if t.get("skipped"):
        print(f"| {n} | vita | {v['seconds']:.3f} | | {mib(v['peak_rss']):.0f} | "
              f"{mib(v['heap_bytes']):.0f} (heap) | {v['mmd2_u']:.6g} | |")
        print(f"| {n} | PyTorch | needs {t['matrix_bytes'] / 2**30:.0f} GiB, not run | | | | | |")
        continue
    rel = abs(v["mmd2_u"] - t["mmd2_u"]) / max(abs(t["mmd2_u"]), 1e-300)
    ok = "ok" if rel <= 1e-4 else "DIFFERS"
    print(f"| {n} | vita | {v['seconds']:.3f} | {t['seconds'] / v['seconds']:.1f}x | "
          f"{mib(v['peak_rss']):.0f} | {mib(v['heap_bytes']):.0f} (heap) | {v['mmd2_u']:.8g} | "
          f"{rel:.1e} {ok} |")
    print(f"| {n} | PyTorch {t.get('torch', '')} | {t['seconds']:.3f} | 1.0x | {mib(t['peak_rss']):.0f} | "
          f"{mib(t['matrix_bytes']):.0f} (3 N² matrices) | {t['mmd2_u']:.8g} | |")
PYEOF
fi

if [ "$BENCH" = all ] || [ "$BENCH" = dense ]; then
  THREADS=$THREADS PYTHON="$PY" sh bench/dense.sh "$BUILD" "$OUT" || exit 1
fi
