#!/usr/bin/env bash
# Tests of an installed DaxHeap: `make install` into a fresh temporary PREFIX, then each
# test script given as an argument, run with that PREFIX as its one argument (a script
# builds and runs programs against PREFIX/lib/pkgconfig, as a user would). `make test`
# runs it after `swift test` with the Makefile's INSTALLED_TESTS.
set -euo pipefail
cd "$(dirname "$0")/.."

prefix="$(mktemp -d "${TMPDIR:-/tmp}/daxheap-prefix.XXXXXX")"
trap 'rm -rf "$prefix"' EXIT
make --no-print-directory install PREFIX="$prefix"
for test in "$@"; do
    echo "== $test $prefix"
    "$test" "$prefix"
done
echo "installed tests passed: $*"
