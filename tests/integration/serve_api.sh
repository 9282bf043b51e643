#!/usr/bin/env bash
# serve_api.sh -- `taskspan serve` as a viewer, from the outside, over real
# HTTP on loopback: what our exporter, a JSON body from `taskspan dump
# --format otlp-json` and the official OpenTelemetry JS exporter send is
# what the JSON API gives back (and the OTLP/JSON download, checked against
# the official schema); a span sent twice is stored once; the filters; the
# error answers of the API and of OTLP/JSON ingest; hostile JSON bodies;
# the live stream and its resumption with Last-Event-ID (no gap, no
# duplicate); eviction past --max-store-bytes; --db's open spans; a clean
# SIGTERM with a stream open.
set -euo pipefail
bin=${TASKSPAN_BIN_DIR:?}
src=${TASKSPAN_SOURCE_DIR:?}
mkdir -p "${TASKSPAN_TEST_TMP:-/tmp}"
tmp=$(mktemp -d "${TASKSPAN_TEST_TMP:-/tmp}/serve_api.XXXXXX" 2>/dev/null || mktemp -d)
# shellcheck disable=SC2034 # read by lib/background.bash
bg_name=serve_api
# shellcheck source=lib/background.bash
. "$src/tests/integration/lib/background.bash"
lib=$src/tests/integration/lib
export NODE_PATH=$src/tests/collector/node_modules
unset TRACEPARENT OTEL_EXPORTER_OTLP_ENDPOINT OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
export OTEL_SERVICE_NAME=serve-api-test
fail() {
  echo "FAIL: $*" >&2
  for f in "$tmp"/*.out "$tmp"/*.err; do
    [ -s "$f" ] && { echo "--- $f:" >&2; tail -c 1500 "$f" >&2; echo >&2; }
  done
  exit 1
}
command -v node >/dev/null || fail "node is needed (tests/collector)"
# Fewer hostile bodies under valgrind, still every kind.
rounds=120
[ -n "${TASKSPAN_WRAP:-}" ] && rounds=24

# start NAME ARGS...: a server on a free port; sets $url.
start() {
  local name=$1
  shift
  ${TASKSPAN_WRAP:-} "$bin/src/cli/taskspan" serve --listen 127.0.0.1:0 \
    --ready-file "$tmp/$name.port" "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" &
  server=$!
  bg_pids+=("$server")
  for _ in $(seq 300); do
    [ -s "$tmp/$name.port" ] && break
    kill -0 "$server" 2>/dev/null || fail "$name exited before it was ready"
    sleep 0.1
  done
  [ -s "$tmp/$name.port" ] || fail "$name: no ready file after 30 s"
  url=http://127.0.0.1:$(cat "$tmp/$name.port")
}
# stop: SIGTERM, exit 0 within 30 s.
stop() {
  kill -TERM "$server"
  local rc=0
  for _ in $(seq 300); do
    kill -0 "$server" 2>/dev/null || break
    sleep 0.1
  done
  wait "$server" || rc=$?
  forget "$server"
  [ $rc -eq 0 ] || fail "server exit status after SIGTERM: $rc"
}
# get PATH: body in $tmp/resp, prints the status.
get() {
  curl -sS --max-time 10 -o "$tmp/resp" -w '%{http_code}' "$url$1" "${@:2}"
}
# post CT FILE [curl args]: body in $tmp/resp, prints the status.
post() {
  local ct=$1 file=$2
  shift 2
  curl -sS --max-time 10 -o "$tmp/resp" -w '%{http_code}' \
    -H "Content-Type: $ct" --data-binary @"$file" "$@" "$url/v1/traces"
}
# jq-less JSON access: js EXPR reads $tmp/resp as `r`.
js() { node -e "const r=JSON.parse(require('fs').readFileSync('$tmp/resp','utf8')); console.log($1)"; }
spans_in_store() { sqlite3 "$tmp/viewer.db" "SELECT count(*) FROM spans"; }
last_seq() { sqlite3 "$tmp/viewer.db" "SELECT COALESCE(MAX(seq),0) FROM spans"; }
demo() {
  "$bin/examples/taskspan-demo-runner" --task "$1" --items 3 --fail-item 2 \
    --item-ms 1 >"$tmp/demo.out"
}

start main --store "$tmp/viewer.db" --max-body 200000
grep -qx "taskspan serve: open $url/ in a browser" "$tmp/main.out" ||
  fail "no 'open' line for $url"

# 1. Our exporter: the demo runner exports to the server; the stored
# trace, downloaded as OTLP/JSON, equals what `taskspan dump` says the
# exporter sent, and passes the official schema.
export TASKSPAN_DB=$tmp/buffer.db
OTEL_EXPORTER_OTLP_ENDPOINT=$url demo T-otlp ||
  fail "demo runner exited $?: $(cat "$tmp/demo.out")"
grep -q 'exported 4 spans' "$tmp/demo.out" || fail "demo: $(cat "$tmp/demo.out")"
[ "$(get '/api/traces?task=T-otlp')" = 200 ] || fail "list: $(cat "$tmp/resp")"
[ "$(js 'r.traces.length')" = 1 ] || fail "T-otlp listed $(js 'r.traces.length') times"
tid=$(js 'r.traces[0].trace_id')
[[ $tid =~ ^[0-9a-f]{32}$ ]] || fail "trace id '$tid'"
[ "$(js '[r.traces[0].span_count, r.traces[0].error_count, r.traces[0].status, r.traces[0].source, r.traces[0].root_name, r.traces[0].service].join()')" = \
  "4,1,error,otlp,main,serve-api-test" ] || fail "summary: $(cat "$tmp/resp")"
"$bin/src/cli/taskspan" dump --format otlp-json -o "$tmp/sent.json" T-otlp
[ "$(get "/api/traces/$tid/otlp.json")" = 200 ] || fail "download: $(cat "$tmp/resp")"
cp "$tmp/resp" "$tmp/stored.json"
curl -sS -D - -o /dev/null "$url/api/traces/$tid/otlp.json" | tr -d '\r' >"$tmp/headers"
grep -qi "^content-disposition: attachment; filename=\"trace-$tid.json\"" "$tmp/headers" ||
  fail "download headers: $(cat "$tmp/headers")"
node "$lib/otlp_json_same.js" "$tmp/sent.json" "$tmp/stored.json" >"$tmp/same.out" ||
  fail "stored != sent: $(cat "$tmp/same.out")"
node "$src/tests/collector/verify_json.js" "$tmp/stored.json" >"$tmp/verify.out" ||
  fail "download fails the schema: $(cat "$tmp/verify.out")"
[ "$(get "/api/traces/$tid")" = 200 ] || fail "trace: $(cat "$tmp/resp")"
[ "$(js 'r.spans.length + " " + r.task_id + " " + r.spans.filter(s => s.status.code === 2).length')" = "4 T-otlp 1" ] ||
  fail "trace detail: $(head -c 600 "$tmp/resp")"
[ "$(js 'r.spans.find(s => s.name === "main").parent_span_id')" = "" ] ||
  fail "main has a parent"

# 2. The same spans again, as OTLP/JSON (the exporter's twin encoding,
# gzip'd too): 200 {}, and stored once: no new row, no new stream id.
before=$(last_seq)
[ "$(post application/json "$tmp/sent.json")" = 200 ] || fail "JSON ingest: $(cat "$tmp/resp")"
[ "$(cat "$tmp/resp")" = '{}' ] || fail "JSON success body: $(cat "$tmp/resp")"
gzip -c "$tmp/sent.json" >"$tmp/sent.json.gz"
[ "$(post application/json "$tmp/sent.json.gz" -H 'Content-Encoding: gzip')" = 200 ] ||
  fail "gzip'd JSON ingest: $(cat "$tmp/resp")"
[ "$(last_seq)" = "$before" ] && [ "$(spans_in_store)" = 4 ] ||
  fail "a re-sent span was stored again: $(spans_in_store) rows, seq $(last_seq)"

# 3. A task recorded with export off reaches the viewer only as JSON.
# (Its own buffer: an exporter on the shared one would later send it.)
TASKSPAN_DB=$tmp/json-buffer.db OTEL_SDK_DISABLED=true demo T-json
TASKSPAN_DB=$tmp/json-buffer.db "$bin/src/cli/taskspan" dump \
  --format otlp-json -o "$tmp/json.json" T-json
[ "$(post 'application/json; charset=utf-8' "$tmp/json.json")" = 200 ] ||
  fail "JSON ingest: $(cat "$tmp/resp")"
[ "$(get '/api/traces?task=T-json')" = 200 ] && [ "$(js 'r.traces.length')" = 1 ] ||
  fail "T-json not listed: $(cat "$tmp/resp")"
tid_json=$(js 'r.traces[0].trace_id')
get "/api/traces/$tid_json/otlp.json" >/dev/null
node "$lib/otlp_json_same.js" "$tmp/json.json" "$tmp/resp" >"$tmp/same.out" ||
  fail "JSON stored != sent: $(cat "$tmp/same.out")"

# 4. The official OpenTelemetry JS exporter (protobuf, then gzip'd).
node "$lib/viewer_js_export.js" "$url" >"$tmp/js.out" 2>&1 ||
  fail "JS exporter: $(cat "$tmp/js.out")"
node "$lib/viewer_js_export.js" "$url" gzip >"$tmp/js.out" 2>&1 ||
  fail "JS exporter, gzip: $(cat "$tmp/js.out")"

# 5. Filters and services.
count() { [ "$(get "$1")" = 200 ] || fail "$1: $(cat "$tmp/resp")"; js 'r.traces.length'; }
[ "$(count '/api/traces')" = 4 ] || fail "4 traces expected: $(cat "$tmp/resp")"
[ "$(count '/api/traces?limit=2')" = 2 ] || fail "limit=2"
[ "$(count '/api/traces?service=js-viewer-test')" = 2 ] || fail "service filter"
[ "$(count '/api/traces?task=js-task')" = 2 ] || fail "task filter"
[ "$(count '/api/traces?event=work_item_failed')" = 2 ] || fail "event filter"
[ "$(count '/api/traces?event=no_such_event')" = 0 ] || fail "event filter (none)"
[ "$(count '/api/traces?attr=taskspan.task_id=T-json')" = 1 ] || fail "attr filter"
[ "$(count '/api/traces?attr=http.status=200')" = 2 ] || fail "int attr filter"
[ "$(count '/api/traces?status=running')" = 0 ] || fail "status=running"
[ "$(count '/api/traces?status=error')" = 4 ] || fail "status=error"
[ "$(count '/api/traces?status=ok')" = 0 ] || fail "status=ok"
[ "$(count '/api/traces?from=0&to=1')" = 0 ] || fail "from/to"
get '/api/traces' >/dev/null
[ "$(js 'r.traces.every((t, i, a) => i === 0 || BigInt(a[i-1].start_ns) >= BigInt(t.start_ns))')" = true ] ||
  fail "not newest first"
[ "$(get '/api/services')" = 200 ] &&
  [ "$(js 'r.services.join()')" = "js-viewer-test,serve-api-test" ] ||
  fail "services: $(cat "$tmp/resp")"

# 6. API errors.
[ "$(get /api/traces/0123)" = 400 ] || fail "short id not 400"
[ "$(get /api/traces/zz23456789abcdef0123456789abcdef)" = 400 ] || fail "non-hex id not 400"
[ "$(get /api/traces/0123456789abcdef0123456789abcdef)" = 404 ] || fail "unknown id not 404"
[ "$(js 'typeof r.error')" = string ] || fail "404 body: $(cat "$tmp/resp")"
[ "$(get /api/traces/0123456789abcdef0123456789abcdef/otlp.json)" = 404 ] || fail "unknown download not 404"
[ "$(get '/api/traces?limit=0')" = 400 ] || fail "limit=0 not 400"
[ "$(get '/api/traces?status=maybe')" = 400 ] || fail "status=maybe not 400"
[ "$(get '/api/traces?attr=novalue')" = 400 ] || fail "attr without = not 400"
[ "$(get '/api/traces?from=yesterday')" = 400 ] || fail "from=yesterday not 400"
[ "$(get /api/nope)" = 404 ] || fail "/api/nope not 404"
[ "$(get /api/traces -X DELETE)" = 405 ] || fail "DELETE not 405"
[ "$(get /api/traces -H 'Host: rebind.example:80')" = 403 ] || fail "foreign Host not 403"
[ "$(get /api/traces -H 'Host: localhost')" = 200 ] || fail "Host localhost refused"
[ "$(get '/api/stream?trace=xyz')" = 400 ] || fail "bad stream trace not 400"
[ "$(get '/api/stream' -H 'Last-Event-ID: -5')" = 400 ] || fail "bad Last-Event-ID not 400"

# 7. The UI's files: / is the index, with the security headers.
st=$(curl -sS --max-time 10 -D "$tmp/headers" -o "$tmp/resp" -w '%{http_code}' "$url/")
tr -d '\r' <"$tmp/headers" >"$tmp/h"
if [ -f "$src/src/viewer/ui/CMakeLists.txt" ]; then
  [ "$st" = 200 ] || fail "GET /: $st"
  grep -qi '^content-type: text/html' "$tmp/h" || fail "/ content type: $(cat "$tmp/h")"
else
  [ "$st" = 404 ] || fail "GET / without a UI: $st"
fi
grep -qi "^content-security-policy: default-src 'self'" "$tmp/h" || fail "no CSP: $(cat "$tmp/h")"
grep -qi '^x-content-type-options: nosniff' "$tmp/h" || fail "no nosniff"

# 8. OTLP/JSON errors: each a 400 with a JSON google.rpc.Status (code 3).
bad_json() {
  printf '%s' "$2" >"$tmp/bad.json"
  [ "$(post application/json "$tmp/bad.json")" = 400 ] || fail "$1: not 400 ($(cat "$tmp/resp"))"
  [ "$(js 'r.code')" = 3 ] && [ -n "$(js 'r.message')" ] || fail "$1: body $(cat "$tmp/resp")"
}
span='"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"a1a2a3a4a5a6a7a8"'
bad_json "not JSON" 'this is not json'
bad_json "an array" '[1,2]'
bad_json "non-hex traceId" '{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"xyz","spanId":"a1a2a3a4a5a6a7a8"}]}]}]}'
bad_json "short spanId" '{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"a1a2"}]}]}]}'
bad_json "string as number" "{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{$span,\"startTimeUnixNano\":\"soon\"}]}]}]}"
bad_json "object as array" '{"resourceSpans":{"a":1}}'
bad_json "truncated" "{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{$span"
deep=$(printf '{"kvlistValue":{"values":[{"key":"k","value":%.0s' $(seq 120))'{"stringValue":"x"}'$(printf '}]}}%.0s' $(seq 120))
bad_json "120 nested values" "{\"resourceSpans\":[{\"resource\":{\"attributes\":[{\"key\":\"a\",\"value\":$deep}]}}]}"
printf '%s' "$(printf '[%.0s' $(seq 5000))" >"$tmp/deep.json"
[ "$(post application/json "$tmp/deep.json")" = 400 ] || fail "5000 nested arrays not 400"
# Spelled as the spec allows: enum names, int64 as numbers, snake_case.
printf '%s' "{\"resource_spans\":[{\"scopeSpans\":[{\"spans\":[{$span,\"name\":\"ok\",\"kind\":\"SPAN_KIND_SERVER\",\"startTimeUnixNano\":1000,\"endTimeUnixNano\":\"2000\",\"status\":{\"code\":\"STATUS_CODE_OK\"},\"attributes\":[{\"key\":\"n\",\"value\":{\"intValue\":7}}],\"unknownField\":[1]}]}]}]}" >"$tmp/ok.json"
[ "$(post application/json "$tmp/ok.json")" = 200 ] || fail "spec-valid JSON: $(cat "$tmp/resp")"
[ "$(get /api/traces/0102030405060708090a0b0c0d0e0f10)" = 200 ] || fail "JSON span not stored"
[ "$(js '[r.spans[0].kind, r.spans[0].start_ns, r.spans[0].end_ns, r.spans[0].status.code, r.spans[0].attributes[0].value].join()')" = "2,1000,2000,1,7" ] ||
  fail "JSON span stored as $(cat "$tmp/resp")"
# A span with an all-zero trace id is dropped, the other stored: 200 with
# partialSuccess.
printf '%s' "{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{\"traceId\":\"00000000000000000000000000000000\",\"spanId\":\"a1a2a3a4a5a6a7a8\"},{\"traceId\":\"0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f\",\"spanId\":\"b1b2b3b4b5b6b7b8\",\"name\":\"kept\",\"endTimeUnixNano\":\"5\"}]}]}]}" >"$tmp/partial.json"
[ "$(post application/json "$tmp/partial.json")" = 200 ] || fail "partial: $(cat "$tmp/resp")"
[ "$(js 'r.partialSuccess.rejectedSpans')" = 1 ] && [ -n "$(js 'r.partialSuccess.errorMessage')" ] ||
  fail "partial success body: $(cat "$tmp/resp")"
[ "$(get /api/traces/0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f)" = 200 ] || fail "the valid span of a partial request was not stored"
[ "$(get /api/traces/00000000000000000000000000000000)" = 404 ] || fail "an all-zero trace was stored"
head -c 300000 /dev/zero | tr '\0' ' ' >"$tmp/big.json"
[ "$(post application/json "$tmp/big.json")" = 413 ] || fail "300 kB JSON not 413"
[ "$(js 'r.code')" = 8 ] || fail "413 body: $(cat "$tmp/resp")"

# 9. Hostile JSON bodies: random bytes, the valid body cut short or with
# bytes overwritten, random gzip. Only 200, 400 or 413, and it lives.
valid_len=$(stat -c %s "$tmp/json.json")
for i in $(seq "$rounds"); do
  enc=()
  case $((i % 4)) in
  0) head -c $((RANDOM % 900)) /dev/urandom >"$tmp/fuzz" ;;
  1) head -c $((RANDOM % valid_len)) "$tmp/json.json" >"$tmp/fuzz" ;;
  2)
    cp "$tmp/json.json" "$tmp/fuzz"
    dd if=/dev/urandom of="$tmp/fuzz" bs=1 count=$((1 + RANDOM % 8)) \
      seek=$((RANDOM % valid_len)) conv=notrunc status=none
    ;;
  3)
    head -c $((RANDOM % 600)) /dev/urandom | gzip -c >"$tmp/fuzz"
    enc=(-H 'Content-Encoding: gzip')
    ;;
  esac
  st=$(post application/json "$tmp/fuzz" "${enc[@]}") || fail "fuzz $i: curl failed"
  case $st in
  200 | 400 | 413) ;;
  *) cp "$tmp/fuzz" "${TASKSPAN_TEST_TMP:-/tmp}/serve_api_fuzz_failure"
     fail "fuzz body $i (kept as serve_api_fuzz_failure): status $st" ;;
  esac
done
# Hostile URLs: random percent-encoded bytes in the path and the query.
for i in $(seq $((rounds / 2))); do
  junk=$(head -c $((1 + RANDOM % 60)) /dev/urandom | od -An -tx1 | tr -d ' \n' | sed 's/../%&/g')
  for path in "/api/traces/$junk" "/api/traces?attr=$junk&limit=$junk" \
    "/api/stream?trace=$junk&last_event_id=$junk" "/$junk" "/api/traces/$junk/otlp.json"; do
    # A query that decodes to nothing (%00...) opens a real stream, which
    # never ends: curl gives up after a second, the status is still 200.
    st=$(curl -sS --max-time 2 -o /dev/null -w '%{http_code}' "$url$path" 2>/dev/null || true)
    case $st in
    200 | 400 | 404) ;;
    *) fail "URL fuzz $i ($path): status $st" ;;
    esac
  done
done
kill -0 "$server" 2>/dev/null || fail "server died during the fuzz round"

# 10. The stream: all stored spans from the start, live spans as they
# come, and after a reconnect with Last-Event-ID exactly the missed ones.
n=$(spans_in_store)
node "$lib/sse_read.js" "$url/api/stream" "$n" >"$tmp/sse1.out" 2>"$tmp/sse1.err" ||
  fail "stream replay: $(cat "$tmp/sse1.err")"
sqlite3 "$tmp/viewer.db" "SELECT seq FROM spans ORDER BY seq" >"$tmp/seqs"
cut -d' ' -f1 "$tmp/sse1.out" | diff - "$tmp/seqs" >/dev/null ||
  fail "replayed ids differ from the store's: $(cut -d' ' -f1 "$tmp/sse1.out" | tr '\n' ' ')"
seen=$(last_seq)
# A live client waits for 4 more; meanwhile a task is exported.
node "$lib/sse_read.js" "$url/api/stream" 4 "$seen" >"$tmp/live.out" 2>"$tmp/live.err" &
live=$!
bg_pids+=("$live")
OTEL_EXPORTER_OTLP_ENDPOINT=$url demo T-live
wait "$live" || fail "live stream: $(cat "$tmp/live.err")"
forget "$live"
sqlite3 "$tmp/viewer.db" "SELECT seq FROM spans WHERE seq > $seen ORDER BY seq" >"$tmp/missed"
[ "$(wc -l <"$tmp/missed")" = 4 ] || fail "expected 4 new spans, store has $(wc -l <"$tmp/missed")"
cut -d' ' -f1 "$tmp/live.out" | diff - "$tmp/missed" >/dev/null || fail "live ids: $(cat "$tmp/live.out")"
# Reconnect from the first client's last id: exactly the 4 missed.
node "$lib/sse_read.js" "$url/api/stream" 4 "$seen" >"$tmp/resume.out" 2>"$tmp/resume.err" ||
  fail "resume: $(cat "$tmp/resume.err")"
cut -d' ' -f1 "$tmp/resume.out" | diff - "$tmp/missed" >/dev/null ||
  fail "resumed ids $(cut -d' ' -f1 "$tmp/resume.out" | tr '\n' ' ') != missed $(tr '\n' ' ' <"$tmp/missed")"
# ?last_event_id= does the same, and ?trace= keeps to one trace.
node "$lib/sse_read.js" "$url/api/stream?last_event_id=$seen" 4 >"$tmp/resume2.out" 2>&1 ||
  fail "resume by query: $(cat "$tmp/resume2.out")"
cmp -s "$tmp/resume.out" "$tmp/resume2.out" || fail "last_event_id differs from Last-Event-ID"
node "$lib/sse_read.js" "$url/api/stream?trace=$tid" 4 >"$tmp/one.out" 2>&1 ||
  fail "trace stream: $(cat "$tmp/one.out")"
[ "$(cut -d' ' -f2 "$tmp/one.out" | sort -u)" = "$tid" ] || fail "trace stream mixed traces"

traces_before=$(count '/api/traces?limit=1000')

# 11. SIGTERM with a stream open: a clean exit 0 (leak-free under valgrind).
node "$lib/sse_read.js" "$url/api/stream" 1000000 >/dev/null 2>&1 &
bg_pids+=("$!")
sleep 0.5
stop

# 12. The store outlives the server: a restart serves the same traces and
# continues the stream ids.
start again --store "$tmp/viewer.db" --max-streams 2
[ "$(count '/api/traces?limit=1000')" = "$traces_before" ] ||
  fail "after restart: $(cat "$tmp/resp")"
[ "$(get "/api/traces/$tid")" = 200 ] && [ "$(js 'r.spans.length')" = 4 ] ||
  fail "T-otlp after restart: $(cat "$tmp/resp")"
# --max-streams 2: with two streams open, a third is a 503.
for _ in 1 2; do
  node "$lib/sse_read.js" "$url/api/stream" 1000000 >/dev/null 2>&1 &
  bg_pids+=("$!")
done
st=
for _ in $(seq 100); do
  st=$(curl -sS --max-time 1 -o /dev/null -w '%{http_code}' "$url/api/stream" 2>/dev/null || true)
  [ "$st" = 503 ] && break
  sleep 0.1
done
[ "$st" = 503 ] || fail "a third stream past --max-streams 2: $st"
stop

# 13. Eviction: with a small cap the least recently updated traces go,
# the newest stays.
start small --store "$tmp/small.db" --max-store-bytes 20000
for t in 1 2 3 4 5 6; do
  sed "s/T-json/T-evict-$t/g" "$tmp/json.json" |
    node -e "const r=JSON.parse(require('fs').readFileSync(0,'utf8')); for (const rs of r.resourceSpans) for (const ss of rs.scopeSpans) for (const s of ss.spans) s.traceId = '$t'.repeat(32); console.log(JSON.stringify(r))" >"$tmp/evict.json"
  [ "$(post application/json "$tmp/evict.json")" = 200 ] || fail "evict ingest $t: $(cat "$tmp/resp")"
done
kept=$(count '/api/traces')
[ "$kept" -ge 1 ] && [ "$kept" -lt 6 ] || fail "eviction kept $kept of 6 traces"
[ "$(get /api/traces/66666666666666666666666666666666)" = 200 ] || fail "the newest trace was evicted"
[ "$(get /api/traces/11111111111111111111111111111111)" = 404 ] || fail "the oldest trace was kept"
stop

# 14. --db: a task still running in a local buffer shows with its open
# span, before anything was exported.
cli() { "$bin/src/cli/taskspan" "$@"; }
cli emit --db "$tmp/live.db" --task T-open --type runner_spawn --actor runner runner_pid:=1 >/dev/null
cli emit --db "$tmp/live.db" --task T-open --type work_item_start --span work_wi_1 --parent main work_item_id=wi_1 >/dev/null
start buf --store "$tmp/buf-view.db" --db "$tmp/live.db"
[ "$(count '/api/traces?status=running')" = 1 ] || fail "running buffer task: $(cat "$tmp/resp")"
[ "$(js '[r.traces[0].source, r.traces[0].task_id, r.traces[0].end_ns].join()')" = "buffer,T-open," ] ||
  fail "buffer summary: $(cat "$tmp/resp")"
btid=$(js 'r.traces[0].trace_id')
[ "$(get "/api/traces/$btid")" = 200 ] || fail "buffer trace: $(cat "$tmp/resp")"
[ "$(js 'r.spans.length + " " + r.spans.every(s => s.open && s.end_ns === "")')" = "2 true" ] ||
  fail "open spans: $(cat "$tmp/resp")"
# Its download is the buffer's dump: open spans marked taskspan.open.
[ "$(get "/api/traces/$btid/otlp.json")" = 200 ] || fail "buffer download: $(cat "$tmp/resp")"
cp "$tmp/resp" "$tmp/open.json"
node "$src/tests/collector/verify_json.js" "$tmp/open.json" >"$tmp/verify.out" ||
  fail "buffer download fails the schema: $(cat "$tmp/verify.out")"
grep -q '"taskspan.open"' "$tmp/open.json" || fail "buffer download without taskspan.open"
cli emit --db "$tmp/live.db" --task T-open --type work_item_done --span work_wi_1 --parent main >/dev/null
get "/api/traces/$btid" >/dev/null
[ "$(js 'r.spans.filter(s => s.open).length')" = 1 ] || fail "closed span still open: $(cat "$tmp/resp")"
stop
set +e
cli serve --listen 127.0.0.1:0 --store "$tmp/x.db" --db "$tmp/missing.db" >/dev/null 2>"$tmp/err"
rc=$?
[ $rc -eq 1 ] || fail "--db of a missing buffer: exit $rc"
cli serve --store "$tmp/x.db" --max-streams 0 >/dev/null 2>&1
[ $? -eq 2 ] || fail "--max-streams 0 is not a usage error"
cli serve --store "$tmp/x.db" --max-store-bytes 12k >/dev/null 2>&1
[ $? -eq 2 ] || fail "--max-store-bytes 12k is not a usage error"
printf 'not sqlite at all' >"$tmp/junk.db"
cli serve --listen 127.0.0.1:0 --store "$tmp/junk.db" >/dev/null 2>&1
[ $? -eq 1 ] || fail "a store that is not SQLite did not exit 1"
set -e
# shellcheck disable=SC2034 # read by lib/background.bash
ok_to_clean=1
echo "serve_api: all checks passed"
