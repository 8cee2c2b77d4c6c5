#!/usr/bin/env bash
# The SQLite VFS against an installed DaxHeap (scripts/test-installed.sh runs it after
# `make install` into a temporary PREFIX): Debian's sqlite3 shell and /usr/bin/python3 load
# PREFIX/lib/libdaxheap_sqlite.so as users do; then the SIGKILL crash test.
#
#   samples/sqlite/test.sh PREFIX                 # as `make test` runs it
#   samples/sqlite/test.sh PREFIX --kills 200     # a longer crash run (kills per journal mode)
#   samples/sqlite/test.sh                        # installs into a temporary PREFIX first
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/daxheap-sample-sqlite.XXXXXX")"
trap 'rm -rf "$work"' EXIT

if [ $# -ge 1 ]; then
    prefix="$1"
    shift
else
    prefix="$work/prefix"
    make --no-print-directory -C "$here/../.." install PREFIX="$prefix"
fi
[ -f "$prefix/lib/libdaxheap_sqlite.so" ] || { echo "FAIL: no $prefix/lib/libdaxheap_sqlite.so (make install)" >&2; exit 1; }
[ -x /usr/bin/sqlite3 ] && [ -x /usr/bin/python3 ] \
    || { echo "FAIL: the tests need Debian's sqlite3 and python3 (scripts/ensure-deps.sh installs them)" >&2; exit 1; }

export DAXHEAP_SQLITE="$prefix/lib/libdaxheap_sqlite.so"
export DAXHEAP_LIB="$prefix/lib/libdaxheap.so"
export PYTHONDONTWRITEBYTECODE=1
export DAXTEST_DIR="${DAXTEST_DIR:-/dev/shm}"
/usr/bin/python3 "$here/Tests/vfs_test.py"
/usr/bin/python3 "$here/Tests/crash_test.py" "$@"
echo "samples/sqlite: ok"
