#!/usr/bin/env bash
# The C sample against an installed DaxHeap, as a user builds it: with cc and the
# installed pkg-config file only, no other flags, no LD_LIBRARY_PATH.
#
#   samples/c/test.sh PREFIX    # after `make install PREFIX=...` (scripts/test-installed.sh)
#   samples/c/test.sh           # installs into a temporary PREFIX first
#
# Checks: the two-line build works; the program runs with an empty environment (the
# library is found through the .pc file's rpath, the Swift runtime is inside it); data
# persists between runs, the object layer's linked list included; the error paths print their codes and messages; a path that holds
# no heap fails cleanly; the library exports exactly the header's functions, needs no
# Swift library at run time and loads with dlopen; the sample and the header compile with -Wall -Wextra -Werror
# -pedantic as C11 (and the header as C++ when a C++ compiler is there).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/daxheap-sample-c.XXXXXX")"
heap="/dev/shm/daxheap-sample-c-$$.heap"
trap 'rm -rf "$work"; rm -f "$heap"' EXIT

if [ $# -ge 1 ]; then
    prefix="$1"
else
    prefix="$work/prefix"
    make --no-print-directory -C "$here/../.." install PREFIX="$prefix"
fi
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"

fail() { echo "FAIL: $*" >&2; exit 1; }

# The system's C compiler, or the Swift toolchain's clang where there is none.
cc="${CC:-cc}"
command -v "$cc" >/dev/null 2>&1 || cc=clang
command -v "$cc" >/dev/null 2>&1 || fail "no C compiler: install gcc, or put the Swift toolchain's clang on PATH"

# The README's build command, as is.
"$cc" "$here/example.c" $(pkg-config --cflags --libs daxheap) -o "$work/example"
# Strict: warnings are errors.
"$cc" -std=c11 -Wall -Wextra -Werror -pedantic "$here/example.c" $(pkg-config --cflags --libs daxheap) -o "$work/example-strict"
if command -v c++ >/dev/null 2>&1; then
    echo '#include <daxheap.h>' | c++ -x c++ -Wall -Wextra -Werror -pedantic $(pkg-config --cflags daxheap) -fsyntax-only -
fi

# The Swift runtime is linked into the library: it needs no Swift library at run time.
if command -v readelf >/dev/null 2>&1; then
    ! readelf -d "$prefix/lib/libdaxheap.so" | grep -q 'NEEDED.*libswift' || fail "libdaxheap.so needs a Swift runtime library"
fi

# The library exports exactly the header's functions (scripts/libdaxheap.map).
if command -v nm >/dev/null 2>&1; then
    grep -E '^[a-z]' "$prefix/include/daxheap.h" | grep -v '^typedef' | grep -oE 'daxheap_[a-z0-9_]+\(' | tr -d '(' | sort > "$work/declared"
    # Global symbols only (upper-case types): the dynamic table also lists local ones.
    nm -D --defined-only "$prefix/lib/libdaxheap.so" | awk '$2 ~ /^[A-Z]$/ { print $NF }' | sort > "$work/exported"
    diff "$work/declared" "$work/exported" >&2 || fail "libdaxheap.so's exports differ from daxheap.h's functions (< declared, > exported)"
fi

# First run creates the heap; the second opens it and finds the first run's data. An
# empty environment: nothing but the rpath finds the library.
env -i "$work/example" "$heap" > "$work/run1.out" || { cat "$work/run1.out"; fail "first run"; }
env -i "$work/example-strict" "$heap" > "$work/run2.out" || { cat "$work/run2.out"; fail "second run"; }
cat "$work/run1.out" "$work/run2.out"
grep -q '^created a heap' "$work/run1.out" || fail "the first run did not create the heap"
grep -q '^run 1: read back "hello from run 1"' "$work/run1.out" || fail "run 1's message"
grep -q '^opened ' "$work/run2.out" || fail "the second run did not open the heap"
grep -q '^run 2: read back "hello from run 2"' "$work/run2.out" || fail "the run counter did not persist"
grep -q 'at 2097152: "stored through the window"' "$work/run2.out" || fail "the window's store"
grep -q "^destroy while mapped: status -5 .*mapped by 1 window" "$work/run2.out" || fail "EBUSY for a mapped arena"
grep -q "^a 3 MiB arena: status -1: size 3145728 is not a positive multiple of 2 MiB" "$work/run2.out" || fail "EINVAL size"
grep -q "^a NULL name: status -1: the arena name is NULL" "$work/run2.out" || fail "EINVAL NULL"
grep -q "^reading past the end: status -9" "$work/run2.out" || fail "ERANGE"

# The object layer: a persistent list, one node pushed per run in a transaction; the
# fourth run drops the oldest node with daxheap_free.
grep -q '^created an object heap in the arena "list"' "$work/run1.out" || fail "the first run did not create the object heap"
grep -q '^list: 1$' "$work/run1.out" || fail "run 1's list"
grep -q '^list: 2 1$' "$work/run2.out" || fail "the list did not persist"
grep -q '^allocating into a full slot: status -3: the slot at offset .* already holds' "$work/run2.out" || fail "EEXIST for a full slot"
grep -q '^object heap: 2 objects' "$work/run2.out" || fail "the object heap's statistics"
grep -q '^size class 64 bytes: 2 objects in 1 chunks$' "$work/run2.out" || fail "the size classes' statistics"
grep -q '^arena "list": 8388608 bytes$' "$work/run1.out" || fail "the arena list"
env -i "$work/example" "$heap" > "$work/run3.out" || { cat "$work/run3.out"; fail "third run"; }
env -i "$work/example" "$heap" > "$work/run4.out" || { cat "$work/run4.out"; fail "fourth run"; }
cat "$work/run4.out"
grep -q '^list: 3 2 1$' "$work/run3.out" || fail "run 3's list"
grep -q '^list: 4 3 2$' "$work/run4.out" || fail "run 4's list"
grep -q '^dropping node 1$' "$work/run4.out" || fail "the oldest node was not dropped"
grep -q '^object heap: 3 objects' "$work/run4.out" || fail "the dropped node is still counted"
grep -q '^size class 64 bytes: 3 objects in 1 chunks$' "$work/run4.out" || fail "the size classes after the drop"

# Loaded with dlopen, as SQLite's and Python's extension loading load libraries (the Swift
# runtime's thread-local storage inside must not need the static TLS block).
cat > "$work/dlopen.c" <<'C'
#include <dlfcn.h>
#include <stdio.h>
int main(int argc, char **argv) {
    void *library = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!library) { fprintf(stderr, "dlopen: %s\n", dlerror()); return 1; }
    int (*open_heap)(const char *, int, void **) = (int (*)(const char *, int, void **))dlsym(library, "daxheap_open");
    const char *(*errmsg)(void) = (const char *(*)(void))dlsym(library, "daxheap_errmsg");
    void *heap;
    if (!open_heap || !errmsg || open_heap("/nonexistent/heap", 0, &heap) != -4) return 1;
    printf("dlopen: %s\n", errmsg());
    return 0;
}
C
"$cc" "$work/dlopen.c" -o "$work/dlopen" -ldl
env -i "$work/dlopen" "$prefix/lib/libdaxheap.so" | grep -q '^dlopen: /nonexistent/heap does not exist' || fail "loading with dlopen"

# A path that holds no heap: a clean error, exit status 1, the file untouched.
head -c $((8 << 20)) /dev/urandom > "$work/not-a-heap"
cp "$work/not-a-heap" "$work/not-a-heap.before"
if "$work/example" "$work/not-a-heap" > "$work/bad.out" 2> "$work/bad.err"; then fail "opened a file that holds no heap"; fi
cat "$work/bad.err"
grep -q "^daxheap_open failed (-7): .*is not a DaxHeap device" "$work/bad.err" || fail "ENOTHEAP message"
cmp -s "$work/not-a-heap" "$work/not-a-heap.before" || fail "the file that holds no heap was changed"

echo "samples/c: ok"
