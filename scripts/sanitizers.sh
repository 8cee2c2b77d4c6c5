#!/usr/bin/env bash
# Runs the whole test suite under AddressSanitizer (with LeakSanitizer) and under
# ThreadSanitizer, each in its own build folder. Called by .ci/run; usable by hand.
#   scripts/sanitizers.sh [address|thread]...   (default: both)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-deps.sh

sanitizers=("$@")
[ ${#sanitizers[@]} -gt 0 ] || sanitizers=(address thread)
# ThreadSanitizer finds races between threads of one process. These test targets start no
# thread and share nothing between tests: the resource tree, radix tree, metadata and
# arena-table logic, and the command-line tool, whose tests run `daxheap` as processes.
# The plain run and AddressSanitizer cover them; under ThreadSanitizer they only cost time
# (about a third of the stage, mostly starting instrumented processes).
single_threaded='DaxResourceTreeTests|DaxRadixTests|DaxMetadataTests|DaxArenasTests|DaxHeapToolTests'
# AddressSanitizer runs the code under test optimized (Package.swift: with
# DAXHEAP_OPTIMIZE_CODE_UNDER_TEST=1, every target but the test targets gets -O, in the
# debug configuration so that the DEBUG hooks stay): its tests take less than half as long
# as unoptimized (259 s against 587 s), and leaving the test targets unoptimized saves 3
# of the 8 minutes an -O build of everything took, for 1.5 minutes more of tests.
# ThreadSanitizer's tests gain less than its build would lose.
# AddressSanitizer skips the command-line tool's tests: they run `daxheap` as processes,
# and the library code those reach runs in-process under it in DaxHeapTests, while the
# tool's own code is safe Swift (but for `daxheap read`'s copy loop, a checked slice of
# its buffer). They are 50 s of the plain run on their own, most of it spawning processes.
processes_only='DaxHeapToolTests'
for sanitizer in "${sanitizers[@]}"; do
    flags=()
    optimize=0
    [ "$sanitizer" = thread ] && flags=(--skip "^($single_threaded)\\.")
    [ "$sanitizer" = address ] && optimize=1 && flags=(--skip "^($processes_only)\\.")
    echo "== swift test --sanitize=$sanitizer ${flags[*]} (code under test optimized: $optimize)" >&2
    # halt_on_error: the first report fails the run; the guarded copy's SIGBUS handler,
    # installed once at the first guarded copy, must be allowed to replace the sanitizer's
    # (it chains any SIGBUS that is not its own to the handler it replaced).
    ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:allow_user_segv_handler=1:handle_sigbus=0" \
    LSAN_OPTIONS="suppressions=$PWD/.ci/lsan.supp:print_suppressions=0" \
    TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1" \
    DAXHEAP_OPTIMIZE_CODE_UNDER_TEST=$optimize \
        swift test --sanitize="$sanitizer" --scratch-path ".build-$sanitizer" "${flags[@]}"
done
