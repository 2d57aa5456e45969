#!/bin/sh
# tests/slow_controls.sh — the controls of the MMD-transfer relation behave as stated (issue 6):
# runs scripts/demo-controls.sh (phantoms, 4 control encoders, 9 + 15 fine-tuning runs, about
# 10 minutes on 2 cores) and checks vita report's verdicts:
#   positive: on synthesize the encoder pretrained on exactly that degradation transfers better
#             (higher RPG) AND moves less (lower mmd2_paired at the final norm) than the encoder
#             pretrained on an unrelated objective (classification), for the mean over 3 seeds;
#   negative: over the runs of a randomly initialised "pretrained" encoder and of contrastive
#             pretraining on shuffled pairs, the MMD²-RPG correlation vanishes (95 % cluster-
#             bootstrap CI contains 0) or reverses.
# The verdict lines are vita report's own; this script only asserts them. Last line: N passed, N failed.
BUILD=${VITA_BUILD:-build}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
pass=0; fail=0
check() { # description, command...
  what=$1; shift
  if "$@"; then echo "PASS $what"; pass=$((pass + 1)); else echo "FAIL $what"; fail=$((fail + 1)); fi
}
sh scripts/demo-controls.sh "$BUILD" "$OUT/c" > "$OUT/log" 2>&1
rc=$?
cat "$OUT/log" | grep -v "^run [0-9]* started"
check "demo-controls.sh exits 0 (got $rc)" test "$rc" -eq 0
check "positive control: every seed-averaged task passes" grep -q "^positive control overall: PASS" "$OUT/log"
check "positive control: synthesize line is PASS" grep -q "^- synthesize: PASS" "$OUT/log"
check "negative control: the MMD-RPG relation vanishes or reverses" \
  grep -q "^negative control \[.*-> PASS" "$OUT/log"
check "no run failed" sh -c "! grep -q 'failed (exit' '$OUT/log'"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
