#!/usr/bin/env bash
# kill9_journal.sh -- kill9_random.sh in the journal mode (TASKSPAN_JOURNAL=1
# in every runner's environment): 20 kills -9 at random points, each run's
# witnessed events checked against the buffer after the journal of the
# killed runner was replayed by the next open (tests/integration/lib/
# kill9.bash), everything exported and checked by the collector as in the
# default mode. Fewer kills than kill9_random.sh keep CI short; under
# valgrind kill9_random.sh's own limit (10) applies.
set -euo pipefail
src=${TASKSPAN_SOURCE_DIR:?TASKSPAN_SOURCE_DIR must name the source directory}
export TASKSPAN_JOURNAL=1
export KILL9_TARGET=${KILL9_TARGET:-20}
exec bash "$src/tests/integration/kill9_random.sh" "$@"
