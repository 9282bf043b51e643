#!/usr/bin/env bash
# viewer_browser.sh -- the web UI in a real browser, against the real
# `taskspan serve` fed by the real demo runner over OTLP/HTTP: starts the
# server on a free loopback port, runs the demo (3 items, the 2nd failing),
# then tests/browser/ui.test.js drives Debian's chromium through
# playwright-core (list and filters, waterfall, detail, escaping, live
# update, stream resume across a server restart, link, zoom, work items,
# checkpoint drawer, download, a runner killed with SIGKILL, a 10,000-span
# trace). It saves screenshots in $TASKSPAN_TEST_TMP (viewer_browser*.png)
# and prints the 10,000-span render time.
#
# Chromium, node and the npm packages are required: a missing one FAILS
# the test with advice (scripts/setup test installs them), never skips it.
set -euo pipefail
bin=${TASKSPAN_BIN_DIR:?}
src=${TASKSPAN_SOURCE_DIR:?}
mkdir -p "${TASKSPAN_TEST_TMP:-/tmp}"
tmp=$(mktemp -d "${TASKSPAN_TEST_TMP:-/tmp}/viewer_browser.XXXXXX" \
  2>/dev/null || mktemp -d)
# shellcheck disable=SC2034 # read by lib/background.bash
bg_name=viewer_browser
# shellcheck source=lib/background.bash
. "$(dirname "$0")/lib/background.bash"
fail() {
  echo "FAIL: $*" >&2
  echo "--- server output:" >&2
  cat "$tmp/server" >&2 2>/dev/null || true
  echo "--- restarted server output:" >&2
  cat "$tmp/server2" >&2 2>/dev/null || true
  exit 1
}

chromium=${CHROMIUM:-/usr/bin/chromium}
[ -x "$chromium" ] ||
  fail "no chromium at $chromium: run scripts/setup test (apt-get install chromium)"
command -v node >/dev/null || fail "node is not installed: run scripts/setup test"
[ -d "$src/tests/browser/node_modules/playwright-core" ] ||
  fail "tests/browser/node_modules is missing: run npm ci --prefix tests/browser"
[ -d "$src/tests/collector/node_modules/@opentelemetry" ] ||
  fail "tests/collector/node_modules is missing: run npm ci --prefix tests/collector"

export TASKSPAN_DB=$tmp/buffer.db
unset TRACEPARENT OTEL_SDK_DISABLED OTEL_EXPORTER_OTLP_TRACES_ENDPOINT

# The server runs without TASKSPAN_WRAP: under valgrind every browser
# request (the page polls and streams) is too slow for a page that must
# render 10,000 spans, and the server's memory checks are the API and
# receiver tests' job. Sanitizer builds still check it here.
"$bin/src/cli/taskspan" serve --listen 127.0.0.1:0 \
  --store "$tmp/viewer.db" --ready-file "$tmp/ready" >"$tmp/server" 2>&1 &
server=$!
bg_pids+=("$server")
for _ in $(seq 300); do
  [ -s "$tmp/ready" ] && break
  kill -0 "$server" 2>/dev/null || fail "the server exited before it was ready"
  sleep 0.1
done
[ -s "$tmp/ready" ] || fail "no ready file after 30 s"
url=http://127.0.0.1:$(cat "$tmp/ready")

# The demo exports to the server (real OTLP/HTTP protobuf, flushed before it
# exits). The runner may run under the wrapper: it is quick.
export OTEL_EXPORTER_OTLP_ENDPOINT=$url
export OTEL_SERVICE_NAME=taskspan-demo
task=T-browser-$$
rc=0
${TASKSPAN_WRAP:-} "$bin/examples/taskspan-demo-runner" --task "$task" \
  --items 3 --fail-item 2 --item-ms 20 >"$tmp/demo" 2>&1 || rc=$?
[ "$rc" -eq 0 ] || { cat "$tmp/demo" >&2; fail "the demo runner exited $rc"; }
grep -q '^exported ' "$tmp/demo" || { cat "$tmp/demo" >&2; fail "the demo did not export"; }

# The browser test also restarts the server (SIGTERM, then the same port
# and store) to check that the page's stream resumes: it gets the command
# and the pid, and kills the server it started itself when it ends.
TASKSPAN_URL=$url TASKSPAN_TASK=$task CHROMIUM=$chromium \
  TASKSPAN_DEMO_RUNNER=$bin/examples/taskspan-demo-runner \
  TASKSPAN_SERVE_BIN=$bin/src/cli/taskspan TASKSPAN_SERVER_PID=$server \
  TASKSPAN_STORE=$tmp/viewer.db TASKSPAN_SCRATCH=$tmp \
  TASKSPAN_TEST_TMP=${TASKSPAN_TEST_TMP:-/tmp} \
  node "$src/tests/browser/ui.test.js" || fail "the browser test failed"
# The first server was stopped by the test with SIGTERM: a clean exit, and
# no sanitizer report from either server.
rc=0
wait "$server" || rc=$?
forget "$server"
[ "$rc" -eq 0 ] || fail "the server exited $rc after SIGTERM"
if grep -E 'Sanitizer|runtime error:' "$tmp/server" "$tmp/server2"; then
  fail "a sanitizer reported a problem in the server"
fi
# shellcheck disable=SC2034 # read by lib/background.bash
ok_to_clean=1
echo "viewer_browser: all checks passed"
