#!/usr/bin/env bash
# cli_dump.sh -- `taskspan dump`: a task's spans as OTLP JSON and protobuf.
#
# Records the demo runner's task (--items 3 --fail-item 2: main and three
# work item spans), then checks that
#   - the otlp-json dump passes tests/collector/verify_json.js (the official
#     schema, round trip) with 4 spans, and its trace id is `taskspan tree`'s;
#   - the otlp-proto dump decodes with protoc as an ExportTraceServiceRequest
#     holding the 4 span names;
#   - a bad format exits 2, an unknown task and a missing buffer exit 1.
#
# Needs node, protoc and the collector's modules (npm ci --prefix
# tests/collector).
set -euo pipefail
bin=${TASKSPAN_BIN_DIR:?TASKSPAN_BIN_DIR must name the build directory}
src=${TASKSPAN_SOURCE_DIR:?TASKSPAN_SOURCE_DIR must name the source directory}
coll=$src/tests/collector
mkdir -p "${TASKSPAN_TEST_TMP:-/tmp}"
tmp=$(mktemp -d "${TASKSPAN_TEST_TMP:-/tmp}/cli_dump.XXXXXX")
ok_to_clean=0
cleanup() {
    if [ "$ok_to_clean" = 1 ] && [ -z "${TASKSPAN_TEST_KEEP:-}" ]; then
        rm -rf "$tmp"
    else
        echo "cli_dump: scratch files kept in $tmp" >&2
    fi
}
trap cleanup EXIT

checks=0
fail() {
    echo "FAIL: cli_dump: $*" >&2
    exit 1
}
pass() { checks=$((checks + 1)); }

while IFS= read -r v; do
    unset "$v"
done < <(env | sed -n 's/^\(OTEL_[A-Za-z0-9_]*\)=.*/\1/p')
unset TRACEPARENT TASKSPAN_TEST_EXPORT_MODE TASKSPAN_TEST_CLOSE_MS
export OTEL_SDK_DISABLED=true

command -v node >/dev/null 2>&1 || fail "node is not installed: run 'npm ci --prefix tests/collector' with Node 18+"
command -v protoc >/dev/null 2>&1 || fail "protoc is not installed"
if [ ! -d "$coll/node_modules/protobufjs" ] ||
    [ ! -f "$coll/node_modules/@opentelemetry/otlp-proto-exporter-base/build/src/generated/root.js" ]; then
    fail "the collector's node modules are missing: run npm ci --prefix tests/collector (in $src)"
fi

read -r -a wrap <<<"${TASKSPAN_WRAP:-}"
demo_bin=$bin/examples/taskspan-demo-runner
cli_bin=$bin/src/cli/taskspan
for f in "$demo_bin" "$cli_bin"; do
    [ -x "$f" ] || fail "missing program $f (build first)"
done
cli() { "${wrap[@]}" "$cli_bin" "$@"; }

db=$tmp/buffer.db
export TASKSPAN_DB=$db
"${wrap[@]}" "$demo_bin" --task T --items 3 --fail-item 2 --item-ms 5 \
    >"$tmp/demo.out" 2>&1 || fail "the demo runner failed: $(cat "$tmp/demo.out")"

# --help
cli dump --help >"$tmp/help.out" || fail "dump --help exited $?"
grep -q -- '--format' "$tmp/help.out" || fail "dump --help does not name --format"
pass

# ---- otlp-json ----
cli dump T --format otlp-json >"$tmp/f.json" 2>"$tmp/err" ||
    fail "dump --format otlp-json exited $?: $(cat "$tmp/err")"
[ "$(wc -l <"$tmp/f.json")" -eq 1 ] || fail "the JSON dump is not one line"
out=$(node "$coll/verify_json.js" "$tmp/f.json") ||
    fail "verify_json.js rejected the dump: $out"
[ "$out" = "spans: 4" ] || fail "verify_json.js: expected 'spans: 4', got '$out'"
pass

# -o FILE writes the same bytes.
cli dump --format otlp-json -o "$tmp/g.json" T || fail "dump -o exited $?"
cmp -s "$tmp/f.json" "$tmp/g.json" || fail "dump -o FILE differs from stdout"
pass

# Every span's trace id is the one `taskspan tree` shows.
tree_trace=$(cli tree T | sed -n '1s/.*(trace \([0-9a-f]\{32\}\)).*/\1/p')
[ -n "$tree_trace" ] || fail "taskspan tree printed no trace id"
ids=$(node -e '
const d = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
const ids = new Set();
for (const rs of d.resourceSpans)
  for (const ss of rs.scopeSpans)
    for (const s of ss.spans) ids.add(s.traceId);
console.log([...ids].join(" "));' "$tmp/f.json")
[ "$ids" = "$tree_trace" ] ||
    fail "trace ids in the dump ($ids) are not tree's ($tree_trace)"
pass

# The field forms OTLP JSON requires, as text.
grep -q '"kind":1' "$tmp/f.json" || fail "no kind 1 (INTERNAL) in the dump"
grep -q '"startTimeUnixNano":"[0-9]*"' "$tmp/f.json" ||
    fail "times are not decimal strings"
grep -q '"status":{"code":2,"message":"' "$tmp/f.json" ||
    fail "the failed work item has no ERROR status with a message"
pass

# ---- otlp-proto ----
cli dump T --format otlp-proto >"$tmp/f.bin" 2>"$tmp/err" ||
    fail "dump --format otlp-proto exited $?: $(cat "$tmp/err")"
protoc --decode=opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest \
    -I "$src/proto" opentelemetry/proto/collector/trace/v1/trace_service.proto \
    <"$tmp/f.bin" >"$tmp/f.txt" 2>"$tmp/err" ||
    fail "protoc cannot decode the protobuf dump: $(cat "$tmp/err")"
for name in main work_wi_001 work_wi_002 work_wi_003; do
    grep -q "^      name: \"$name\"\$" "$tmp/f.txt" ||
        fail "span $name is missing from the protobuf dump"
done
[ "$(grep -c '^    spans {' "$tmp/f.txt")" -eq 4 ] ||
    fail "the protobuf dump does not hold 4 spans"
pass

# ---- failures ----
set +e
cli dump T --format xml >/dev/null 2>"$tmp/err"
st=$?
set -e
[ "$st" -eq 2 ] || fail "a bad format exited $st, not 2"
grep -q "unknown format 'xml'" "$tmp/err" || fail "bad format: $(cat "$tmp/err")"
set +e
cli dump T >/dev/null 2>"$tmp/err"
st=$?
set -e
[ "$st" -eq 2 ] || fail "a missing --format exited $st, not 2"
pass

set +e
cli dump no-such-task --format otlp-json >"$tmp/out" 2>"$tmp/err"
st=$?
set -e
[ "$st" -eq 1 ] || fail "an unknown task exited $st, not 1"
[ "$(wc -l <"$tmp/err")" -eq 1 ] || fail "unknown task: not one line: $(cat "$tmp/err")"
grep -q "^taskspan dump: no events for task 'no-such-task'" "$tmp/err" ||
    fail "unknown task: unclear message: $(cat "$tmp/err")"
[ ! -s "$tmp/out" ] || fail "unknown task: something was written to stdout"
pass

set +e
cli dump T --format otlp-json --db "$tmp/none/buffer.db" >/dev/null 2>"$tmp/err"
st=$?
set -e
[ "$st" -eq 1 ] || fail "a missing buffer exited $st, not 1"
grep -q '^taskspan dump: ' "$tmp/err" || fail "missing buffer: $(cat "$tmp/err")"
[ ! -e "$tmp/none/buffer.db" ] || fail "dump created a buffer"
pass

ok_to_clean=1
echo "cli_dump: $checks checks passed"
