#!/usr/bin/env bash
# Runs the whole test suite under AddressSanitizer (with LeakSanitizer) and under
# ThreadSanitizer, each in its own build folder. Called by .ci/run; usable by hand.
#   scripts/sanitizers.sh [address|thread]...   (default: both)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-deps.sh

sanitizers=("$@")
[ ${#sanitizers[@]} -gt 0 ] || sanitizers=(address thread)
for sanitizer in "${sanitizers[@]}"; do
    echo "== swift test --sanitize=$sanitizer" >&2
    # halt_on_error: the first report fails the run; the guarded copy's SIGBUS handler,
    # installed once at the first guarded copy, must be allowed to replace the sanitizer's
    # (it chains any SIGBUS that is not its own to the handler it replaced).
    ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:allow_user_segv_handler=1:handle_sigbus=0" \
    LSAN_OPTIONS="suppressions=$PWD/.ci/lsan.supp:print_suppressions=0" \
    TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1" \
        swift test --sanitize="$sanitizer" --scratch-path ".build-$sanitizer"
done
