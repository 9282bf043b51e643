#!/usr/bin/env bash
# kill9_full.sh -- kill9_random.sh with TASKSPAN_SYNC_FULL (every runner
# gets --sync full): the kill -9 promises hold in every sync mode, and
# FULL keeps SQLite's own checkpoints in the commit (no checkpointer
# thread; docs/buffer.md), so it is a path of its own. 10 kills keep CI
# short (each FULL commit fsyncs); under valgrind kill9_random.sh's own
# limit applies.
set -euo pipefail
src=${TASKSPAN_SOURCE_DIR:?TASKSPAN_SOURCE_DIR must name the source directory}
export K9_RUNNER_ARGS="--sync full"
export KILL9_TARGET=${KILL9_TARGET:-10}
exec bash "$src/tests/integration/kill9_random.sh" "$@"
