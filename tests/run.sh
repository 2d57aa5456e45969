#!/bin/sh
# tests/run.sh BUILD fast|slow — runs every test program of the tier (C programs in
# $BUILD/tests, tests/test_*.py with $PYTHON, tests/test_*.sh with sh; slow_* likewise), each with a time limit,
# sums their "N passed, N failed" last lines, prints the total as the last line and exits
# non-zero if any test failed, crashed, timed out or printed no summary.
BUILD=${1:-build}
TIER=${2:-fast}
case $TIER in
  fast) PATTERN="test_*"; LIMIT=900 ;;
  slow) PATTERN="slow_*"; LIMIT=3600 ;;
  *) echo "usage: tests/run.sh BUILD fast|slow"; exit 2 ;;
esac
export VITA_ORACLE_DIR="$BUILD/oracle"
# as the vita binary does for itself (engine/main.c): no spinning OpenMP threads
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
export VITA_BUILD="$BUILD"
passed=0; failed=0
LOGDIR="$BUILD/test-logs"; mkdir -p "$LOGDIR"
PYTHON=${PYTHON:-/usr/bin/python3}
export PYTHON
# C test programs (built into $BUILD/tests), then Python and shell tests run from the source tree
for t in "$BUILD"/tests/$PATTERN tests/$PATTERN.py tests/$PATTERN.sh; do
  case "$t" in
    *.py) [ -f "$t" ] || continue; runner="$PYTHON" ;;
    *.sh) [ -f "$t" ] || continue; runner="sh" ;;
    *) [ -x "$t" ] || continue; runner="" ;;
  esac
  name=$(basename "$t")
  start=$(date +%s)
  echo "=== $name"
  timeout "$LIMIT" $runner "$t" > "$LOGDIR/$name.log" 2>&1
  rc=$?
  cat "$LOGDIR/$name.log"
  last=$(tail -n 1 "$LOGDIR/$name.log")
  p=$(echo "$last" | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\1/p')
  f=$(echo "$last" | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\2/p')
  if [ -z "$p" ]; then
    echo "FAIL $name: exit $rc without a summary line (crash or timeout ${LIMIT}s)"
    p=0; f=1
  elif [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
    echo "FAIL $name: exit status $rc"
    f=1
  fi
  echo "--- $name: $p passed, $f failed ($(( $(date +%s) - start ))s)"
  passed=$((passed + p)); failed=$((failed + f))
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
