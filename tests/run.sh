#!/usr/bin/env bash
# The test command of the README: installs what is needed, builds credagent twice (a normal
# build and an ASan+UBSan build) and runs the whole suite (unit tests and integration tests
# against a real SoftHSM2 token and a real OAuth server) in both.
#
#   tests/run.sh            everything
#   tests/run.sh --quick    the normal build only
set -euo pipefail
cd "$(dirname "$0")/.."

quick=false
[ "${1:-}" = "--quick" ] && quick=true

contrib/install-deps.sh
(cd tests/idp && npm ci --no-audit --no-fund --loglevel=error)

status=0
run_build() {
        local dir=$1; shift
        if [ ! -d "$dir" ]; then
                meson setup "$dir" "$@"
        else
                meson setup --reconfigure "$dir" "$@" >/dev/null
        fi
        ninja -C "$dir"
        meson test -C "$dir" --print-errorlogs --num-processes 2 || status=1
}

# Test builds (build-test, build-sanitize) compile the test hooks (-Dtest_hooks=true: SIGUSR2 makes a sandboxed process try a
# forbidden syscall, for the sandbox tests); the quickstart's build does not.
run_build build-test -Dtest_hooks=true
if ! $quick; then
        # Sanitizers: leaks inside the PKCS#11 module at unload are not ours (tests/lsan.supp).
        export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=1
        export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
        [ -f tests/lsan.supp ] && export LSAN_OPTIONS="suppressions=$PWD/tests/lsan.supp:print_suppressions=0"
        run_build build-sanitize -Dtest_hooks=true -Db_sanitize=address,undefined -Db_lundef=false
fi
exit $status
