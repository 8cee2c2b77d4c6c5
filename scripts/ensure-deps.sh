#!/usr/bin/env bash
# Installs what building DaxHeap needs and a fresh Debian machine may lack:
# libpmem's and libpmem2's headers (libpmem-dev, libpmem2-dev, found through pkg-config), and
# pkg-config itself, which the tests of the installed C API also build the C sample with
# (samples/c/test.sh). Swift itself must be on PATH.
set -euo pipefail

missing=()
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
for lib in libpmem libpmem2; do
    pkg-config --exists "$lib" 2>/dev/null || missing+=("$lib-dev")
done
{ pkg-config --exists sqlite3 2>/dev/null && [ -x /usr/bin/sqlite3 ] && [ -x /usr/bin/python3 ]; } || missing+=(libsqlite3-dev sqlite3 python3)  # samples/sqlite
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]} with apt-get" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v swift >/dev/null 2>&1 || { echo "error: swift is not on PATH; install Swift 6.2 or later" >&2; exit 1; }
