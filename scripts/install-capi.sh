#!/usr/bin/env bash
# `make install`'s step for the C API: builds libdaxheap.so in release mode and installs
#   $PREFIX/lib/libdaxheap.so, $PREFIX/include/daxheap.h, $PREFIX/lib/pkgconfig/daxheap.pc
# (under $DESTDIR when set, for packaging; the .pc file names $PREFIX).
#
# The Swift runtime is linked into the library (-static-stdlib), so that a C program needs
# nothing of the Swift toolchain at run time and survives its upgrade (Swift has no stable
# ABI on Linux); the library exports only the daxheap_* functions (scripts/libdaxheap.map),
# so its copy of the runtime stays private. The .pc file adds an rpath to $PREFIX/lib, so a
# program built with `pkg-config --libs daxheap` runs with no LD_LIBRARY_PATH.
#
# The build uses a fixed scratch path (.build-install, or $DAXHEAP_INSTALL_SCRATCH): the
# first install takes minutes, the next ones only relink what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PREFIX="${PREFIX:-/usr/local}"
DESTDIR="${DESTDIR:-}"
SCRATCH="${DAXHEAP_INSTALL_SCRATCH:-.build-install}"
case "$PREFIX" in
    /*) ;;
    *) mkdir -p "$PREFIX"; PREFIX="$(cd "$PREFIX" && pwd)" ;;
esac

swift build -c release --product DaxHeapC --scratch-path "$SCRATCH" \
    -Xswiftc -static-stdlib \
    -Xlinker --version-script="$PWD/scripts/libdaxheap.map" \
    -Xlinker -soname=libdaxheap.so
built="$(swift build -c release --scratch-path "$SCRATCH" --show-bin-path)/libDaxHeapC.so"

root="$DESTDIR$PREFIX"
install -d "$root/lib" "$root/lib/pkgconfig" "$root/include"
install -m 755 "$built" "$root/lib/libdaxheap.so"
install -m 644 Sources/CDaxHeap/include/daxheap.h "$root/include/daxheap.h"
cat > "$root/lib/pkgconfig/daxheap.pc" <<PC
prefix=$PREFIX
libdir=\${prefix}/lib
includedir=\${prefix}/include

Name: daxheap
Description: DaxHeap's C API: a device-dax as a persistent heap of named, resizable arenas
URL: docs/C-API.md in the DaxHeap sources
Version: 0.1.0
Libs: -L\${libdir} -Wl,-rpath,\${libdir} -ldaxheap
Cflags: -I\${includedir}
PC
echo "installed $root/lib/libdaxheap.so, $root/include/daxheap.h, $root/lib/pkgconfig/daxheap.pc"
