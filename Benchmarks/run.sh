#!/usr/bin/env bash
# Benchmarks/run.sh -- issue 6: build in release, run DaxHeap's suites and the anchors
# (../shared/anchors, beside the clone) in one go, print one line per figure
# (`name value unit`), then a table of ratios DaxHeap/anchor against the issue's targets.
#
#   Benchmarks/run.sh [> figures.txt]
#
# stdout: figure lines, `#` notes, then the ratio table.
# Detail (per-repetition values, build logs) goes to $DAXBENCH_OUT (default
# Benchmarks/.build/run-<time>/): figures.txt, detail.log, anchors.log, build.log.
#
# Environment:
#   DAXBENCH_REPS       repetitions per DaxHeap figure, median reported   (default 3)
#   DAXBENCH_DIR        where the emulated devices live (sparse files)     (default /dev/shm)
#   DAXBENCH_BIGDIR     fallback for the 1 TiB file if DAXBENCH_DIR refuses (default a mktemp dir under /var/tmp)
#   DAXKV_KEYS          keys for the daxkv workload (default: ANCHOR_N, else 1000000)
#   ANCHORS_DIR         the anchors (default <repo>/../shared/anchors); ANCHOR_N etc. pass through
#   SKIP_ANCHORS=1      do not run the anchors (no ratio for the rows that need them)
#   SKIP_CEILING=1      do not run the C bound of the two-fence key-value design (Benchmarks/ceiling)
#   SKIP_ALLOC_GUARD=1  do not run the package-benchmark allocation guard (check-allocations.sh)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
anchors="${ANCHORS_DIR:-$root/../shared/anchors}"
reps="${DAXBENCH_REPS:-3}"
dir="${DAXBENCH_DIR:-/dev/shm}"
keys="${DAXKV_KEYS:-${ANCHOR_N:-1000000}}"
out="${DAXBENCH_OUT:-$here/.build/run-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$out"
figures="$out/figures.txt"
: > "$figures"
started=$(date +%s)

bigdir_made=""
bigdir="${DAXBENCH_BIGDIR:-}"
if [ -z "$bigdir" ]; then
	bigdir="$(mktemp -d /var/tmp/daxbench.XXXXXX)"
	bigdir_made="$bigdir"
fi
tmp="$dir/daxbench-run.$$"
cleanup() {
	rm -f -- "$tmp".*
	[ -n "$bigdir_made" ] && rm -rf -- "$bigdir_made"
	return 0
}
trap cleanup EXIT

say() { echo "$@"; }                      # a note on stdout
fig() { tee -a "$figures"; }              # figure lines: stdout and figures.txt

export PMEM_IS_PMEM_FORCE=1

# What the build and the anchors need and a fresh Debian machine may lack: libpmem and
# libpmem2 (the package), libpmemobj and LMDB (the anchors), matplotlib is optional (chart.py).
"$root/scripts/ensure-deps.sh"
anchor_libs=()
[ -f /usr/include/libpmemobj.h ] || anchor_libs+=(libpmemobj-dev)
[ -f /usr/include/lmdb.h ] || anchor_libs+=(liblmdb-dev)
if [ ${#anchor_libs[@]} -gt 0 ] && [ -z "${SKIP_ANCHORS:-}" ]; then
	sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
	$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${anchor_libs[@]}" >/dev/null
fi

{
	echo "# $(grep -m1 'model name' /proc/cpuinfo | sed 's/[[:space:]]*:[[:space:]]*/: /'), nproc $(nproc), $(uname -r)"
	echo "# swift: $(swift --version 2>&1 | head -1)"
	echo "# load average at start: $(cut -d' ' -f1-3 /proc/loadavg); other compiler/test processes running: $(pgrep -c -f 'swift-frontend|swift-build|swift-test|xctest|cc1' || true)"
	echo "# root: $root ($(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?'))"
} | tee "$out/machine.txt"

# 1. Build (release).
# SwiftPM keeps this package's build plan while only the root package (a path dependency
# here) changes; a source file added there is then missing from the build ("type
# 'MetadataIO' has no member 'locate'"). A newer manifest makes it plan again (seconds).
touch "$here/Package.swift"
say "# building DaxBench (release)"
swift build -c release --package-path "$here" --scratch-path "$here/.build" --product DaxBench >"$out/build.log" 2>&1 \
	|| { say "# build of DaxBench failed; see $out/build.log"; tail -20 "$out/build.log" >&2; exit 1; }
bench="$(swift build -c release --package-path "$here" --scratch-path "$here/.build" --show-bin-path 2>/dev/null)/DaxBench"

daxkv=""
if swift build -c release --package-path "$root" --scratch-path "$here/.build/root" --product daxkv >"$out/build-daxkv.log" 2>&1; then
	daxkv="$(swift build -c release --package-path "$root" --scratch-path "$here/.build/root" --show-bin-path 2>/dev/null)/daxkv"
else
	say "# daxkv: not built (swift build -c release --product daxkv failed: $(grep -m1 -E 'error' "$out/build-daxkv.log" | cut -c1-160)); key-value figures skipped"
fi

# 2. Anchors, built and run here (about 90 s).
if [ "${SKIP_ANCHORS:-0}" != 1 ]; then
	if [ -x "$anchors/run.sh" ]; then
		say "# anchors: $anchors/run.sh"
		"$anchors/run.sh" 2>"$out/anchors.log" | fig || say "# anchors: run.sh failed; see $out/anchors.log"
	else
		say "# anchors: $anchors/run.sh not found; anchor figures skipped"
	fi
fi

# 3. DaxHeap suites: persist, translate, provision, open, window, objects.
"$bench" --dir "$dir" --bigdir "$bigdir" --reps "$reps" persist translate provision open window objects 2>"$out/detail.log" | fig

# 4. Key-value: daxkv bench on a fresh 4 GiB sparse heap per run, 1 and 2 threads,
#    $reps runs each, median per figure.
if [ -n "$daxkv" ]; then
	kvraw="$out/daxkv.raw"
	: > "$kvraw"
	kvok=1
	for r in $(seq 1 "$reps"); do
		for t in 1 2; do
			rm -f -- "$tmp.kv"
			"$bench" mkheap "$tmp.kv" $((4 << 30)) 2>>"$out/detail.log"
			if ! "$daxkv" bench "$tmp.kv" --keys "$keys" --value-size 128 --threads "$t" >>"$kvraw" 2>>"$out/daxkv.log"; then
				say "# daxkv bench --threads $t failed (run $r); see $out/daxkv.log"
				kvok=0
			fi
			rm -f -- "$tmp.kv"
		done
	done
	echo "# daxkv raw (run $reps x {t1,t2}):" >>"$out/detail.log"
	sed 's/^/# /' "$kvraw" >>"$out/detail.log"
	{ grep -E '^daxkv\.' "$kvraw" || true; } | awk '
		{ v[$1] = v[$1] " " $2; u[$1] = $3; if (!($1 in seen)) { seen[$1] = 1; order[++n] = $1 } }
		END {
			for (i = 1; i <= n; i++) {
				k = order[i]; m = split(substr(v[k], 2), a, " ")
				for (x = 1; x <= m; x++) for (y = x + 1; y <= m; y++) if (a[y] + 0 < a[x] + 0) { t = a[x]; a[x] = a[y]; a[y] = t }
				med = (m % 2) ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
				printf "%s %.0f %s\n", k, med, u[k]
			}
		}' | fig
	grep -qE '^daxkv\.' "$kvraw" \
		|| say "# daxkv: built, but 'daxkv bench' printed no daxkv.* figures (not implemented yet?); key-value figures skipped"
fi

# 4b. The ceiling: a lean C program of the key-value design (two dependent misses per get;
#     two fences per put, daxkv's one-fence put as the variant one_fence, and that put with
#     the writer's copy of the keys as key_copy), what any implementation of it reaches
#     here (~55 s).
if [ "${SKIP_CEILING:-0}" != 1 ]; then
	"$here/ceiling/run.sh" 2>"$out/ceiling.log" | fig || say "# ceiling: run.sh failed; see $out/ceiling.log"
fi

[ "${SKIP_SQLITE:-0}" = 1 ] || "$here/sqlite/run.sh" 2>"$out/sqlite.log" | fig || say "# sqlite: run.sh failed; see $out/sqlite.log"

# 5. Allocation guard (package-benchmark, mallocCountTotal thresholds of 0).
if [ "${SKIP_ALLOC_GUARD:-0}" != 1 ]; then
	if "$here/check-allocations.sh" >"$out/alloc-guard.log" 2>&1; then
		say "# allocation guard: passed (hot paths allocate nothing; $out/alloc-guard.log)"
	else
		rc=$?
		say "# allocation guard: FAILED, exit $rc (a hot path allocates, or malloc counting is off); see $out/alloc-guard.log"
	fi
fi

say "# load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"

# 6. Ratios.
say ""
python3 "$here/report.py" "$figures"
say "# total $(( $(date +%s) - started )) s; detail in $out"
