#!/usr/bin/env bash
# `make install`'s step for the SQLite VFS: builds libdaxheap_sqlite.so against the C API
# just installed ($DESTDIR$PREFIX/{include,lib}) and installs it as $PREFIX/lib/libdaxheap_sqlite.so.
# Runs after scripts/install-capi.sh (the Makefile's INSTALL_STEPS). The extension finds
# libdaxheap.so beside it ($ORIGIN) or in $PREFIX/lib (rpath).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
PREFIX="${PREFIX:-/usr/local}"
DESTDIR="${DESTDIR:-}"
case "$PREFIX" in
    /*) ;;
    *) mkdir -p "$PREFIX"; PREFIX="$(cd "$PREFIX" && pwd)" ;;
esac
root="$DESTDIR$PREFIX"
[ -f "$root/include/daxheap.h" ] && [ -f "$root/lib/libdaxheap.so" ] \
    || { echo "samples/sqlite/install.sh: no C API under $root (run scripts/install-capi.sh first)" >&2; exit 1; }
pkg-config --exists sqlite3 \
    || { echo "samples/sqlite/install.sh: pkg-config finds no sqlite3; install libsqlite3-dev (scripts/ensure-deps.sh)" >&2; exit 1; }
out="$(mktemp -d "${TMPDIR:-/tmp}/daxheap-sqlite-build.XXXXXX")"
trap 'rm -rf "$out"' EXIT
make --no-print-directory -C "$here" OUT="$out" \
    DAXHEAP_CFLAGS="-I$root/include" DAXHEAP_LIBS="-L$root/lib -ldaxheap" DAXHEAP_LIBDIR="$PREFIX/lib"
install -m 755 "$out/libdaxheap_sqlite.so" "$root/lib/libdaxheap_sqlite.so"
echo "installed $root/lib/libdaxheap_sqlite.so"
