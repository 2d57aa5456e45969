#!/bin/bash
# scripts/run-sweep-local.sh DIR [-j N] [--threads T] — runs the unfinished runs of a `vita sweep`
# directory on this machine, N at a time (default 1), each as `vita train RUN/config.yaml
# --resume --threads T` (T default: cores / N), so an interrupted sweep continues where it
# stopped. Finished runs (RUN_DIR/done, written by vita train as its last act) are skipped.
#
# One line per run: "run NNNN started|done|preempted|failed (exit C)|skipped (finished)" with
# its log file (DIR/logs/NNNN.log, appended across attempts).
# Signals: SIGUSR1 / SIGTERM are forwarded to the running vita processes, SIGINT as SIGTERM
# (a terminal's Ctrl-C already reaches them, and vita aborts without a checkpoint on a second
# SIGINT); every run checkpoints and exits 75, no new run starts, and the script exits 75 (rerun
# it to continue). Exit codes: 0 all runs done, 75 some run preempted, 1 some run failed.
# VITA overrides the binary (default: build/vita next to this script, else vita on PATH).
set -u
usage() { echo "usage: scripts/run-sweep-local.sh DIR [-j N] [--threads T]" >&2; exit 1; }
DIR=""
jobs=1
threads=""
while [ $# -gt 0 ]; do
    case "$1" in
        -j) [ $# -ge 2 ] || usage; jobs=$2; shift 2 ;;
        -j*) jobs=${1#-j}; shift ;;
        --threads) [ $# -ge 2 ] || usage; threads=$2; shift 2 ;;
        -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "run-sweep-local.sh: unknown option $1" >&2; usage ;;
        *) [ -z "$DIR" ] || usage; DIR=$1; shift ;;
    esac
done
[ -n "$DIR" ] || usage
case "$jobs" in ''|*[!0-9]*|0) echo "run-sweep-local.sh: -j $jobs: give a positive integer" >&2; exit 1 ;; esac
if [ ! -f "$DIR/sweep.yaml" ] || [ ! -f "$DIR/index.tsv" ]; then
    echo "run-sweep-local.sh: $DIR is not a vita sweep directory (no sweep.yaml / index.tsv): make it with vita sweep" >&2
    exit 1
fi
if [ -z "$threads" ]; then
    cores=$(nproc 2> /dev/null || echo 1)
    threads=$((cores / jobs))
    [ "$threads" -ge 1 ] || threads=1
fi
case "$threads" in ''|*[!0-9]*|0) echo "run-sweep-local.sh: --threads $threads: give a positive integer" >&2; exit 1 ;; esac
if [ -z "${VITA:-}" ]; then
    here=$(cd "$(dirname "$0")/.." && pwd)
    if [ -x "$here/build/vita" ]; then VITA=$here/build/vita; else VITA=vita; fi
fi
mkdir -p "$DIR/logs" || exit 1

declare -A pid_id=()      # running vita pid -> run id
stopping=""
n_pre=0
n_fail=0
stop() {
    stopping=$1
    local p
    for p in "${!pid_id[@]}"; do kill -s "$1" "$p" 2> /dev/null; done
}
trap 'stop USR1' USR1
trap 'stop TERM' TERM
trap 'stop TERM' INT

# one finished child: report it
reap() {
    local p=$1 rc=$2 id=${pid_id[$1]}
    unset "pid_id[$p]"
    case "$rc" in
        0) echo "run $id done ($DIR/logs/$id.log)" ;;
        75) echo "run $id preempted ($DIR/logs/$id.log)"; n_pre=$((n_pre + 1)) ;;
        *) echo "run $id failed (exit $rc; $DIR/logs/$id.log)"; n_fail=$((n_fail + 1)) ;;
    esac
}
# waits for any child; a trapped signal interrupts wait (status > 128, no pid): wait again
wait_one() {
    local p rc
    while [ ${#pid_id[@]} -gt 0 ]; do
        p=""
        wait -n -p p "${!pid_id[@]}"
        rc=$?
        if [ -n "${p:-}" ]; then reap "$p" "$rc"; return; fi
    done
}

while IFS=$'\t' read -r id run_dir _; do
    [ "$id" = "id" ] && continue
    [ -z "$stopping" ] || break
    run="$DIR/$run_dir"
    if [ -e "$run/done" ]; then
        echo "run $id skipped (finished; $DIR/logs/$id.log)"
        continue
    fi
    while [ ${#pid_id[@]} -ge "$jobs" ]; do wait_one; done
    [ -z "$stopping" ] || break
    "$VITA" train "$run/config.yaml" --resume --threads "$threads" >> "$DIR/logs/$id.log" 2>&1 &
    pid_id[$!]=$id
    [ -z "$stopping" ] || kill -s "$stopping" "$!" 2> /dev/null   # a signal during the start
    echo "run $id started ($DIR/logs/$id.log)"
done < "$DIR/index.tsv"
while [ ${#pid_id[@]} -gt 0 ]; do wait_one; done

if [ "$n_pre" -gt 0 ] || [ -n "$stopping" ]; then
    echo "sweep $DIR: stopped${stopping:+ by SIG$stopping}; $n_pre runs preempted and checkpointed, $n_fail failed: rerun to continue"
    exit 75
fi
if [ "$n_fail" -gt 0 ]; then
    echo "sweep $DIR: $n_fail runs failed"
    exit 1
fi
echo "sweep $DIR: every run done"
exit 0
