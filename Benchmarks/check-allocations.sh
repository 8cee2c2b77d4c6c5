#!/usr/bin/env bash
# Benchmarks/check-allocations.sh -- the allocation guard of issue 6: runs the
# package-benchmark suite DaxHeapAllocations and checks every benchmark's
# mallocCountTotal against the thresholds checked in for this toolchain
# (Thresholds/<swift major.minor>/DaxHeapAllocations.<name>.p90.json, all 0).
#
# Exit status: 0 when every benchmark equals its threshold; non-zero otherwise (the
# plugin reports `benchmarkThresholdRegression` and a table of deviations when a hot
# path allocates, or when the control benchmark stops counting its allocations).
#
# To record new thresholds after a deliberate change:
#   cd Benchmarks && PMEM_IS_PMEM_FORCE=1 swift package --scratch-path .build \
#       --allow-writing-to-package-directory benchmark thresholds update --path Thresholds/6.3
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
version="$(swift --version 2>&1 | sed -n 's/.*Swift version \([0-9]*\.[0-9]*\).*/\1/p' | head -1)"
[ -d "Thresholds/$version" ] || { echo "no thresholds for Swift $version under $here/Thresholds" >&2; exit 1; }
export PMEM_IS_PMEM_FORCE=1
status=0
# One target at a time, so that a sample that does not build cannot hide the heap's guard.
for target in DaxHeapAllocations DaxKVAllocations; do
	echo "== $target"
	swift package --scratch-path .build benchmark thresholds check --path "Thresholds/$version" \
		--target "$target" --no-progress || { echo "== $target: FAILED"; status=1; }
done
exit $status
