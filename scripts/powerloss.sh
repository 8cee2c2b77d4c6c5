#!/usr/bin/env bash
# Longer power-loss sweeps than `swift test` runs (issue 12): every test whose suite name
# starts with "PowerLoss" (daxkv's PowerLossTests, the heap's PowerLossMetadataTests and
# PowerLossSimulatorTests, and any added later), run again and again with the next seed
# until a time budget is spent. Release build by default: the sweeps are CPU-bound.
#
#   scripts/powerloss.sh [--seed N] [--ops N] [--mixed N] [--minutes M] [--debug]
#
#   --seed N     the first seed (default 1); each further run takes the next one
#   --ops N      operations in each test's swept window (default: each test's own)
#   --mixed N    mixed images per crash point (default: each test's own)
#   --minutes M  start no run after M minutes (default 10); the first always runs
#   --debug      build and run the tests in debug rather than release
#
# The seed, the window and the images reach the tests through DAXHEAP_POWERLOSS_SEED,
# DAXHEAP_POWERLOSS_OPS and DAXHEAP_POWERLOSS_MIXED (Tests/DaxTestSupport/PowerLossSettings.swift), which only the tests read (never the
# library). Each run prints the tests' summary lines; the first failing run stops the
# sweep, keeps its whole output in a log and prints how to replay it. A daxkv failure
# names its crash point ("fence F"): DAXHEAP_POWERLOSS_FENCE=F with the same seed crashes
# there only.
#
# Exit status: 0 when every run passed, 1 when one failed (or the build did), 64 for a
# usage error.
set -euo pipefail

usage() {
    sed -n 's/^#   //p' "$0" >&2
    exit 64
}

seed=1 ops="" mixed="" minutes=10 configuration=release
while [ $# -gt 0 ]; do
    case "$1" in
        --seed|--ops|--mixed|--minutes) [ $# -ge 2 ] || { echo "error: $1 needs a value" >&2; usage; } ;;
    esac
    case "$1" in
        --seed) seed="$2"; shift 2 ;;
        --ops) ops="$2"; shift 2 ;;
        --mixed) mixed="$2"; shift 2 ;;
        --minutes) minutes="$2"; shift 2 ;;
        --debug) configuration=debug; shift ;;
        -h|--help) usage ;;
        *) echo "error: unknown argument '$1'" >&2; usage ;;
    esac
done
for number in "$seed" "$minutes" ${ops:+"$ops"} ${mixed:+"$mixed"}; do
    [[ "$number" =~ ^[0-9]+$ ]] || { echo "error: '$number' is not a number" >&2; usage; }
done

cd "$(dirname "$0")/.."
filter='\.PowerLoss'

export DAXHEAP_POWERLOSS_OPS="$ops" DAXHEAP_POWERLOSS_MIXED="$mixed"
[ -n "$ops" ] || unset DAXHEAP_POWERLOSS_OPS
[ -n "$mixed" ] || unset DAXHEAP_POWERLOSS_MIXED
deadline=$(( $(date +%s) + 60 * minutes ))
runs=0
log=$(mktemp "${TMPDIR:-/tmp}/powerloss.XXXXXX.log")
while [ "$runs" -eq 0 ] || [ "$(date +%s)" -lt "$deadline" ]; do
    started=$(date +%s)
    # `swift test` builds (only the first run has anything to build): unlike `swift build`,
    # it compiles for @testable imports in release too.
    if DAXHEAP_POWERLOSS_SEED="$seed" swift test -c "$configuration" --filter "$filter" >"$log" 2>&1; then
        grep -E '^PowerLoss[A-Za-z]*: ' "$log" || true
        echo "seed $seed passed in $(( $(date +%s) - started )) s" >&2
    else
        grep -E '^PowerLoss[A-Za-z]*: ' "$log" || true
        grep -E -A1 'recorded an issue|error:' "$log" | cut -c1-2000 | head -20 >&2 || true
        echo "seed $seed FAILED; the whole output is in $log" >&2
        echo "replay: DAXHEAP_POWERLOSS_SEED=$seed${ops:+ DAXHEAP_POWERLOSS_OPS=$ops}${mixed:+ DAXHEAP_POWERLOSS_MIXED=$mixed}" \
            "swift test -c $configuration --filter '$filter'" >&2
        exit 1
    fi
    runs=$(( runs + 1 ))
    seed=$(( seed + 1 ))
done
rm -f "$log"
echo "$runs runs passed (seeds $(( seed - runs )) to $(( seed - 1 )))" >&2
