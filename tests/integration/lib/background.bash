# shellcheck shell=bash disable=SC2154 # tmp and bg_name come from the test
# background.bash -- sourced by the export tests: the background processes
# a test starts (bg_pids) all die when it exits, and its scratch directory
# ($tmp) is removed unless the test failed or TASKSPAN_TEST_KEEP is set.
# Before sourcing, set tmp and bg_name (the test's name, for messages); set
# ok_to_clean=1 once the test has passed.
bg_pids=()
ok_to_clean=0
cleanup() {
    local p
    for p in "${bg_pids[@]}"; do
        kill -9 "$p" 2>/dev/null || true
    done
    for p in "${bg_pids[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    if [ "$ok_to_clean" = 1 ] && [ -z "${TASKSPAN_TEST_KEEP:-}" ]; then
        rm -rf "$tmp"
    else
        echo "$bg_name: scratch files kept in $tmp" >&2
    fi
}
trap cleanup EXIT
# forget PID: a process that was reaped leaves the list (its pid may be reused).
forget() {
    local p keep=()
    for p in "${bg_pids[@]}"; do
        [ "$p" = "$1" ] || keep+=("$p")
    done
    bg_pids=("${keep[@]}")
}
