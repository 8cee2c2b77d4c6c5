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
# AddressSanitizer runs optimized code (-O in the debug configuration, so the tests' DEBUG
# hooks stay): the build takes about 4 minutes more, the tests less than half as long
# (259 s against 587 s, here the same day). ThreadSanitizer's tests gain less than its
# build would lose.
for sanitizer in "${sanitizers[@]}"; do
    flags=()
    [ "$sanitizer" = thread ] && flags=(--skip "^($single_threaded)\\.")
    [ "$sanitizer" = address ] && flags=(-Xswiftc -O)
    echo "== swift test --sanitize=$sanitizer ${flags[*]}" >&2
    # halt_on_error: the first report fails the run; the guarded copy's SIGBUS handler,
    # installed once at the first guarded copy, must be allowed to replace the sanitizer's
    # (it chains any SIGBUS that is not its own to the handler it replaced).
    ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:allow_user_segv_handler=1:handle_sigbus=0" \
    LSAN_OPTIONS="suppressions=$PWD/.ci/lsan.supp:print_suppressions=0" \
    TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1" \
        swift test --sanitize="$sanitizer" --scratch-path ".build-$sanitizer" "${flags[@]}"
done
