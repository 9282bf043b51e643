# shellcheck shell=bash disable=SC2034 # bin, src, tmp, wrap, started: the caller's
# kill9_test.bash -- the common start of the kill -9 tests (kill9_random.sh,
# kill9_demo.sh): the build and source directories, a scratch directory,
# background-process bookkeeping, fail() (which prints the seed to replay
# a run), the tools they need, and the kill -9 engine (lib/kill9.bash).
# The caller sets k9_test (its name) and `set -euo pipefail` first.
bin=${TASKSPAN_BIN_DIR:?TASKSPAN_BIN_DIR must name the build directory}
src=${TASKSPAN_SOURCE_DIR:?TASKSPAN_SOURCE_DIR must name the source directory}
mkdir -p "${TASKSPAN_TEST_TMP:-/tmp}"
tmp=$(mktemp -d "${TASKSPAN_TEST_TMP:-/tmp}/$k9_test.XXXXXX")
started=$SECONDS

# read by lib/background.bash
bg_name=$k9_test
# shellcheck source-path=SCRIPTDIR source=background.bash
source "$src/tests/integration/lib/background.bash"
fail() {
    echo "FAIL: $k9_test: $*" >&2
    [ -z "${K9_SEED:-}" ] || echo "$k9_test: reproduce with KILL9_SEED=$K9_SEED" >&2
    exit 1
}
command -v node >/dev/null 2>&1 || fail "node is not installed (the test collector needs Node 18+)"
command -v sqlite3 >/dev/null 2>&1 || fail "sqlite3 (the CLI) is not installed"
[ -d "$src/tests/collector/node_modules/protobufjs" ] ||
    fail "the collector's node modules are missing: npm ci --prefix tests/collector"
read -r -a wrap <<<"${TASKSPAN_WRAP:-}"
export TASKSPAN_DB=$tmp/buffer.db
# shellcheck source-path=SCRIPTDIR source=kill9.bash
source "$src/tests/integration/lib/kill9.bash"
