#!/usr/bin/env bash
# run.sh -- SQLite on the daxheap VFS against SQLite's unix VFS on a tmpfs file (issue 14,
# part 3): installs the C API and the VFS into Benchmarks/sqlite/.build/prefix (`make install`,
# release; minutes the first time), builds bench.c, runs it once.
#
# stdout: "sqlite.<daxheap|unix>.<delete|wal>.<insert1|insert1000|select> <value> <unit>"
# stderr: '#' lines (parameters, per-run figures) and the build's output
#
#   SQLITE_BENCH_ROWS     rows for the SELECTs              (default 1000000)
#   SQLITE_BENCH_SELECTS  random primary-key SELECTs timed   (default 300000)
#   SQLITE_BENCH_INSERT1  single-row transactions timed      (default 5000)
#   SQLITE_BENCH_INSERT1000  1000-row transactions timed     (default 300)
#   SQLITE_BENCH_REPS     runs per figure, median reported   (default 3)
#   SQLITE_BENCH_QUICK=1  100000 rows, 1 run (a minute less)
#   DAXBENCH_DIR          where the heap and the unix VFS's files live (default /dev/shm)
#
# Both VFSs run in one process on the same memory (tmpfs), the heap with libpmem's cache
# flushes (PMEM_IS_PMEM_FORCE=1, as on persistent memory): the difference is the VFS.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
dir="${DAXBENCH_DIR:-/dev/shm}"
prefix="$here/.build/prefix"
if [ "${SQLITE_BENCH_QUICK:-0}" = 1 ]; then
	export SQLITE_BENCH_ROWS="${SQLITE_BENCH_ROWS:-100000}" SQLITE_BENCH_REPS="${SQLITE_BENCH_REPS:-1}"
fi

mkdir -p "$here/.build"
make --no-print-directory -C "$root" install PREFIX="$prefix" >&2
cc -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror "$here/bench.c" \
	$(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --cflags --libs daxheap sqlite3) -o "$here/.build/bench"

heap="$dir/sqlite-bench.$$.heap"
trap 'rm -f -- "$heap" "$dir"/sqlite-bench-$$-*' EXIT
echo "# $(grep -m1 'model name' /proc/cpuinfo | sed 's/[[:space:]]*:[[:space:]]*/: /'), nproc $(nproc); load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
PMEM_IS_PMEM_FORCE=1 "$here/.build/bench" "$prefix/lib/libdaxheap_sqlite.so" "$heap" "$dir"
