#!/usr/bin/env bash
# kill9_random.sh -- kill -9 at random points, at least 50 times: real
# runner processes (tests/tools/kill9_runner, which reports every returned
# emit on a pipe) killed with SIGKILL mid-run, restarted with the report's
# recovery sequence (the dead runner's leases detected and requeued,
# resumed from the last verified checkpoint, as read from the buffer; the
# library's own sweep is killed at random by kill9_demo.sh), each task run
# to the end, everything exported by the runners' own background exporters
# (killed with them) and a final `taskspan export` to the test collector.
#
# Asserted (tests/integration/lib/kill9.bash, tests/collector/kill9_check.js):
# every event whose emit had returned is in the buffer; each run's events
# are the next seqs and seq is gap-free; at most the one emit in flight is
# committed without having returned; every span is closed and arrived at
# least once; every event arrived on the span the seed's table names, in
# its incarnation, in the task's one trace; killed incarnations are marked
# crashed; duplicates are byte-identical and come only from runners killed
# after the collector took the request (docs/durability.md); and the seed's
# "Kill -9 Recovery Visible" sequence happened (the first kill is placed
# after a checkpoint, with a lease held).
#
# KILL9_SEED reproduces a run (the seed is printed first); KILL9_TARGET
# sets the number of kills (kill9_journal.sh runs it in the journal mode). Under valgrind
# (TASKSPAN_WRAP set) it kills 10 times instead of 50, and says so.
# Needs node with the collector's modules and the sqlite3 shell.
set -euo pipefail
k9_test=kill9_random
# shellcheck source-path=SCRIPTDIR source=lib/kill9_test.bash
source "$(dirname "$0")/lib/kill9_test.bash"
# shellcheck disable=SC2154 # k9_runner is set by lib/kill9.bash
[ -x "$k9_runner" ] || fail "missing program $k9_runner (build first)"

target=${KILL9_TARGET:-50} per_task=5 items=5 item_ms=10
if [ ${#wrap[@]} -gt 0 ]; then
    target=$((target < 10 ? target : 10))
    echo "kill9_random: under ${wrap[0]##*/}: $target kills instead of 50 (each run is slow)"
fi

k9_seed "${KILL9_SEED:-}"
k9_start_collector
k9_calibrate "$items" "$item_ms"
# Tasks of up to $per_task kills each until $target kills have landed on
# a live runner (a kill during close ends its task early: it had finished).
# The first task's first kill comes after item 1's checkpoint was verified,
# while item 2's lease is held, so the seed's recovery sequence follows.
i=0
while [ "$K9_KILLS" -lt "$target" ]; do
    i=$((i + 1))
    [ $i -le $((target * 2)) ] || fail "only $K9_KILLS kills landed in $i tasks"
    left=$((target - K9_KILLS))
    first=
    [ $i -gt 1 ] || first=after:lease_acquired:2
    k9_task "k9-$i" "$items" "$item_ms" $((left < per_task ? left : per_task)) $first
done
K9_REQUIRE_SEED=1 k9_finish
k9_figures
[ "$K9_LOST" -eq 0 ] || fail "$K9_LOST events lost"
# In the journal mode an emit returns seq 0: none at all means the mode
# was not on, and the run proved nothing about it.
[ "${TASKSPAN_JOURNAL:-}" != 1 ] || [ "${K9_JOURNALED:-0}" -gt 0 ] ||
    fail "TASKSPAN_JOURNAL=1 but no emit returned a journaled (seq 0) event"
[ "${TASKSPAN_JOURNAL:-}" != 1 ] ||
    echo "kill9_random: journal mode: ${K9_JOURNALED:-0} witnessed emits were journaled"

# shellcheck disable=SC2034 # read by lib/background.bash
ok_to_clean=1
echo "kill9_random: all checks passed ($((SECONDS - started)) s)"
