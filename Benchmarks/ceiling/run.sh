#!/usr/bin/env bash
# run.sh -- build kv_ceiling and run it once (R repetitions, medians on stdout)
# on a file under ${DAXBENCH_DIR:-/dev/shm}, removed afterwards.
#
# stdout: "ceiling.kv.<variant>.<phase> <ops/s> ops/s", "ceiling.fence_ns <ns> ns",
#         "ceiling.random_miss_ns <ns> ns"
# stderr: '#' comment lines (parameters, per-repetition figures, page faults)
#
#   ANCHOR_N       keys, as for ../shared/anchors/run.sh   (default 1000000)
#   CEILING_REPS   repetitions, medians reported            (default 3)
#   DAXBENCH_DIR   directory for the file                   (default /dev/shm)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

N="${ANCHOR_N:-1000000}"
REPS="${CEILING_REPS:-3}"
DIR="${DAXBENCH_DIR:-/dev/shm}"

if [[ ! -d "$DIR" || ! -w "$DIR" ]]; then
	echo "ceiling/run.sh: $DIR is not a writable directory" >&2
	exit 1
fi
if [[ ! -f ../../../shared/anchors/kv_common.h ]]; then
	echo "ceiling/run.sh: ../shared/anchors/kv_common.h (the workload) not found" >&2
	exit 1
fi
make -s >&2

file="$DIR/kv_ceiling.$$"
cleanup() {
	rm -f -- "$file"
}
trap cleanup EXIT
cleanup

echo "# $(grep -m1 'model name' /proc/cpuinfo | sed 's/[[:space:]]*:[[:space:]]*/: /'), nproc $(nproc), $(uname -r)" >&2
echo "# $(uptime)" >&2
PMEM_IS_PMEM_FORCE=1 ./kv_ceiling -r "$REPS" "$file" "$N"
