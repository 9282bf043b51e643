#!/usr/bin/env bash
# kill9.sh -- the long kill -9 run: the engine of the kill9_random test
# (tests/integration/lib/kill9.bash) with 500 kills instead of 50. Real
# runner processes (tests/tools/kill9_runner, which reports every emit that
# returned on a pipe) are killed with SIGKILL at random points, restarted
# with the recovery sequence until each task finishes, and everything is
# exported to the test collector (tests/collector/kill9_check.js checks it).
#
#   bench/kill9.sh [BUILD_DIR] [--kills N] [--seed S] [--dir DIR] [--short]
#
# BUILD_DIR (default build/) needs the test tools (TASKSPAN_BUILD_TESTS=ON:
# tests/kill9_runner) and the CLI; node with the collector's modules and the
# sqlite3 shell must be installed. --short is 20 kills (bench/run.sh passes
# it in BENCH_SHORT mode). Like every benchmark it asserts nothing about
# time; it prints its figures (kills tried, events lost, duplicates seen)
# and exits non-zero only when a check fails: an event lost, a span that
# never arrived, a duplicate outside the documented window, ...
set -euo pipefail
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=build
if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then
    bin=$1
    shift
fi
kills=500 seed='' base=/tmp
while [ $# -gt 0 ]; do
    case $1 in
    --kills) kills=${2:?--kills needs a number} && shift 2 ;;
    --seed) seed=${2:?--seed needs a number} && shift 2 ;;
    --dir) base=${2:?--dir needs a directory} && shift 2 ;;
    --short) kills=20 && shift ;;
    --runs) shift 2 ;; # common to every benchmark; one run here
    *)
        echo "usage: bench/kill9.sh [BUILD_DIR] [--kills N] [--seed S] [--dir DIR] [--short]" >&2
        exit 2
        ;;
    esac
done
case $kills in '' | *[!0-9]*) echo "kill9.sh: --kills must be a number" >&2 && exit 2 ;; esac
bin=$(cd "$bin" && pwd)
if [ ! -x "$bin/tests/kill9_runner" ] || [ ! -x "$bin/src/cli/taskspan" ]; then
    echo "kill9.sh: $bin has no tests/kill9_runner or src/cli/taskspan (configure with TASKSPAN_BUILD_TESTS=ON and the CLI)" >&2
    exit 2
fi
tmp=$(mktemp -d "$base/taskspan-kill9.XXXXXX")
# shellcheck disable=SC2034 # read by lib/background.bash
bg_name=bench/kill9.sh
# shellcheck disable=SC1091 # tests/integration/lib, from the source tree
source "$src/tests/integration/lib/background.bash"
fail() {
    echo "kill9.sh: FAILED: $*" >&2
    echo "kill9.sh: reproduce with --seed $K9_SEED" >&2
    exit 1
}
# shellcheck disable=SC2034 # read by lib/kill9.bash: no checker wrapper
wrap=()
export TASKSPAN_DB=$tmp/buffer.db
# shellcheck disable=SC1091
source "$src/tests/integration/lib/kill9.bash"

per_task=5 items=5 item_ms=10
echo "machine: $(uname -srm), $(nproc) cpus online; build $bin; files in $tmp"
k9_seed "$seed"
started=$(k9_now_ms)
k9_start_collector
k9_calibrate "$items" "$item_ms"
i=0
while [ "$K9_KILLS" -lt "$kills" ]; do
    i=$((i + 1))
    [ $i -le "$kills" ] || fail "only $K9_KILLS kills landed in $i tasks"
    left=$((kills - K9_KILLS))
    first=
    [ $i -gt 1 ] || first=after:lease_acquired:2
    k9_task "k9-$i" "$items" "$item_ms" $((left < per_task ? left : per_task)) $first
    if [ $((i % 20)) -eq 0 ]; then
        echo "kill9.sh: $K9_KILLS kills so far"
    fi
done
kill_ms=$(($(k9_now_ms) - started))
K9_REQUIRE_SEED=1 k9_finish
k9_figures
echo "kill9: $i tasks, $(k9_db 'SELECT count(*) FROM task_events') events, $(k9_db 'SELECT coalesce(sum(export_closed), 0) FROM tasks') spans; kill phase $kill_ms ms ($((kill_ms / (K9_KILLS > 0 ? K9_KILLS : 1))) ms per kill)"
[ "$K9_LOST" -eq 0 ] || fail "$K9_LOST events lost"
# shellcheck disable=SC2034 # read by lib/background.bash
ok_to_clean=1
