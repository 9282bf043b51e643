#!/usr/bin/env bash
# serve_receiver.sh -- `taskspan serve` as an OTLP/HTTP receiver, from the
# outside: real HTTP with curl, bodies encoded by protoc from the real OTLP
# protos. Checks the answers a conforming server gives (200, 400 with a
# google.rpc.Status, 405, 413 before and after gunzip, 415), the --print
# lines, that hostile bodies never bring it down, and a clean SIGTERM exit.
set -euo pipefail
bin=${TASKSPAN_BIN_DIR:?}
src=${TASKSPAN_SOURCE_DIR:?}
mkdir -p "${TASKSPAN_TEST_TMP:-/tmp}"
tmp=$(mktemp -d "${TASKSPAN_TEST_TMP:-/tmp}/serve.XXXXXX" 2>/dev/null || mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ]; then kill -KILL "$pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  echo "--- server stdout:" >&2; cat "$tmp/out" >&2 2>/dev/null || true
  echo "--- server stderr:" >&2; cat "$tmp/err" >&2 2>/dev/null || true
  exit 1
}

# TASKSPAN_WRAP (e.g. valgrind) runs the server under a checker.
cli() { ${TASKSPAN_WRAP:-} "$bin/src/cli/taskspan" "$@"; }
encode() {
  protoc --encode=opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest \
    -I "$src/proto" opentelemetry/proto/collector/trace/v1/trace_service.proto
}
decode_status() {
  protoc --decode=google.rpc.Status -I "$src/proto" google/rpc/status.proto
}

# 1. Start on an ephemeral port with a small limit; wait (bounded) for the
# ready file, which appears only once the socket listens.
# Not through cli(): $! must be the server itself (or its wrapper, which
# passes signals on), not a subshell running a function.
${TASKSPAN_WRAP:-} "$bin/src/cli/taskspan" serve --listen 127.0.0.1:0 \
  --print --max-body 1000 --store "$tmp/viewer.db" --ready-file "$tmp/ready" \
  >"$tmp/out" 2>"$tmp/err" &
pid=$!
for _ in $(seq 300); do
  [ -s "$tmp/ready" ] && break
  kill -0 "$pid" 2>/dev/null || fail "server exited before it was ready"
  sleep 0.1
done
[ -s "$tmp/ready" ] || fail "no ready file after 30 s"
port=$(cat "$tmp/ready")
[[ $port =~ ^[0-9]+$ ]] && [ "$port" -gt 0 ] || fail "ready file holds '$port'"
url=http://127.0.0.1:$port
grep -qx "taskspan serve: listening on $url (POST /v1/traces)" "$tmp/out" ||
  fail "no listening line for port $port"

# post CONTENT-TYPE FILE [curl args...]: prints the status; body in $tmp/resp.
post() {
  local ct=$1 file=$2
  shift 2
  curl -sS --max-time 10 -o "$tmp/resp" -w '%{http_code}' \
    -H "Content-Type: $ct" --data-binary @"$file" "$@" "$url/v1/traces"
}
pb=application/x-protobuf

# 2. A valid request: 200, an empty protobuf body, one line per span.
encode >"$tmp/valid.pb" <<'EOF'
resource_spans {
  resource {
    attributes { key: "service.name" value { string_value: "svc-test" } }
  }
  scope_spans {
    scope { name: "serve_receiver" }
    spans {
      trace_id: "\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10"
      span_id: "\xa1\xa2\xa3\xa4\xa5\xa6\xa7\xa8"
      name: "GET /work"
      start_time_unix_nano: 1000
      end_time_unix_nano: 2000
      events { time_unix_nano: 1500 name: "retry" }
      events { time_unix_nano: 1600 name: "exception" }
      status { code: STATUS_CODE_ERROR message: "boom" }
    }
    spans {
      trace_id: "\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10"
      span_id: "\xb1\xb2\xb3\xb4\xb5\xb6\xb7\xb8"
      parent_span_id: "\xa1\xa2\xa3\xa4\xa5\xa6\xa7\xa8"
      name: "child"
      status { code: STATUS_CODE_OK }
    }
  }
}
EOF
line1='span 0102030405060708090a0b0c0d0e0f10 a1a2a3a4a5a6a7a8 parent=- GET /work status=ERROR events=2 service=svc-test'
line2='span 0102030405060708090a0b0c0d0e0f10 b1b2b3b4b5b6b7b8 parent=a1a2a3a4a5a6a7a8 child status=OK events=0 service=svc-test'
st=$(curl -sS --max-time 10 -o "$tmp/resp" -w '%{http_code} %{content_type}' \
  -H "Content-Type: $pb" --data-binary @"$tmp/valid.pb" "$url/v1/traces")
[ "$st" = "200 $pb" ] || fail "valid request: '$st'"
[ ! -s "$tmp/resp" ] || fail "valid request: response body is not empty"
# wait_lines N: until stdout holds N copies of both span lines (bounded).
wait_lines() {
  for _ in $(seq 100); do
    [ "$(grep -cxF "$line1" "$tmp/out")" -ge "$1" ] &&
      [ "$(grep -cxF "$line2" "$tmp/out")" -ge "$1" ] && return 0
    sleep 0.1
  done
  fail "expected $1 copies of the span lines"
}
wait_lines 1

# 2b. A span with an all-zero span id is dropped (the other is stored):
# 200 with partial_success in the ExportTraceServiceResponse.
encode >"$tmp/partial.pb" <<'EOF'
resource_spans { scope_spans {
  spans { trace_id: "\x0f\x0f\x0f\x0f\x0f\x0f\x0f\x0f\x0f\x0f\x0f\x0f\x0f\x0f\x0f\x0f"
          span_id: "\x00\x00\x00\x00\x00\x00\x00\x00" name: "zero" }
  spans { trace_id: "\x0f\x0f\x0f\x0f\x0f\x0f\x0f\x0f\x0f\x0f\x0f\x0f\x0f\x0f\x0f\x0f"
          span_id: "\x01\x00\x00\x00\x00\x00\x00\x00" name: "kept" }
} }
EOF
[ "$(post $pb "$tmp/partial.pb")" = 200 ] || fail "partial request not 200"
protoc --decode=opentelemetry.proto.collector.trace.v1.ExportTraceServiceResponse \
  -I "$src/proto" opentelemetry/proto/collector/trace/v1/trace_service.proto \
  <"$tmp/resp" >"$tmp/partial.txt" || fail "partial response does not decode"
grep -q 'rejected_spans: 1' "$tmp/partial.txt" && grep -q 'error_message: ".\+"' "$tmp/partial.txt" ||
  fail "partial response: $(cat "$tmp/partial.txt")"

# 3. The same body gzip'd, and an empty request (success per the spec).
gzip -c "$tmp/valid.pb" >"$tmp/valid.pb.gz"
st=$(post $pb "$tmp/valid.pb.gz" -H 'Content-Encoding: gzip')
[ "$st" = 200 ] || fail "gzip'd request: $st"
wait_lines 2
: >"$tmp/empty"
[ "$(post $pb "$tmp/empty")" = 200 ] || fail "empty request not 200"

# 4. Wrong method, path, media type or encoding.
st=$(curl -sS --max-time 10 -o /dev/null -w '%{http_code}' "$url/v1/traces")
[ "$st" = 405 ] || fail "GET /v1/traces: $st"
st=$(curl -sS --max-time 10 -o /dev/null -w '%{http_code}' "$url/nope")
[ "$st" = 404 ] || fail "GET /nope: $st"
[ "$(post text/plain "$tmp/valid.pb")" = 415 ] || fail "text/plain not 415"
# OTLP/JSON is accepted (serve_api.sh tests it): protobuf bytes sent as
# JSON are a 400 with a JSON google.rpc.Status.
[ "$(post application/json "$tmp/valid.pb")" = 400 ] || fail "protobuf as JSON not 400"
grep -q '^{"code":3,"message":"body is not JSON' "$tmp/resp" ||
  fail "JSON 400 body: $(cat "$tmp/resp")"
st=$(post $pb "$tmp/valid.pb.gz" -H 'Content-Encoding: br')
[ "$st" = 415 ] || fail "Content-Encoding br: $st"

# 5. Size limits: by Content-Length, while streaming (chunked), and after
# gunzip (a ~200-byte gzip bomb that inflates to 200 kB).
head -c 2000 /dev/urandom >"$tmp/big"
[ "$(post $pb "$tmp/big")" = 413 ] || fail "2000-byte body not 413"
decode_status <"$tmp/resp" | grep -q 'message: ".*exceeds the 1000-byte limit' ||
  fail "413 body is not a google.rpc.Status with a message"
st=$(post $pb "$tmp/big" -H 'Transfer-Encoding: chunked')
[ "$st" = 413 ] || fail "chunked 2000-byte body: $st"
head -c 200000 /dev/zero | gzip -c >"$tmp/bomb.gz"
[ "$(stat -c %s "$tmp/bomb.gz")" -lt 1000 ] || fail "the bomb is too big"
st=$(post $pb "$tmp/bomb.gz" -H 'Content-Encoding: gzip')
[ "$st" = 413 ] || fail "gzip bomb: $st"

# 6. Bodies that do not decode: 400 with a google.rpc.Status {code 3}.
printf 'this is not protobuf at all\377\377' >"$tmp/garbage"
[ "$(post $pb "$tmp/garbage")" = 400 ] || fail "garbage not 400"
decode_status <"$tmp/resp" >"$tmp/status.txt" || fail "400 body does not decode"
grep -qx 'code: 3' "$tmp/status.txt" || fail "400 status code: $(cat "$tmp/status.txt")"
grep -q '^message: ".\+"' "$tmp/status.txt" || fail "400 without a message"
encode >"$tmp/short_id.pb" <<'EOF'
resource_spans { scope_spans { spans {
  trace_id: "\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10"
  span_id: "\x01\x02\x03"
  name: "short id"
} } }
EOF
[ "$(post $pb "$tmp/short_id.pb")" = 400 ] || fail "3-byte span_id not 400"
decode_status <"$tmp/resp" | grep -q 'span_id is 3 bytes' ||
  fail "3-byte span_id message: $(decode_status <"$tmp/resp")"
printf 'junk' | gzip -c | head -c 12 >"$tmp/truncated.gz"
st=$(post $pb "$tmp/truncated.gz" -H 'Content-Encoding: gzip')
[ "$st" = 400 ] || fail "truncated gzip: $st"

# 7. Nesting: a resource attribute holding arrays in arrays. 10 levels
# decode; 60 (120 nested messages) are refused before protobuf-c, whose
# unpacker recurses without a limit.
varint() {
  local n=$1
  while [ "$n" -ge 128 ]; do
    printf '\\x%02x' $(((n & 127) | 128))
    n=$((n >> 7))
  done
  printf '\\x%02x' "$n"
}
# field TAG IN OUT: OUT = TAG, varint length of IN, IN.
field() {
  { printf '%b' "\\x$1" "$(varint "$(stat -c %s "$2")")"; cat "$2"; } >"$3"
}
nested() {
  printf '\x0a\x01x' >"$tmp/n.any" # AnyValue{string_value: "x"}
  for _ in $(seq "$1"); do
    field 0a "$tmp/n.any" "$tmp/n.arr" # ArrayValue{values}
    field 2a "$tmp/n.arr" "$tmp/n.any" # AnyValue{array_value}
  done
  { printf '\x0a\x01k'; field 12 "$tmp/n.any" /dev/stdout; } >"$tmp/n.kv"
  field 0a "$tmp/n.kv" "$tmp/n.res"  # Resource{attributes}
  field 0a "$tmp/n.res" "$tmp/n.rs"  # ResourceSpans{resource}
  field 0a "$tmp/n.rs" "$tmp/nested" # ExportTraceServiceRequest
}
nested 10
[ "$(post $pb "$tmp/nested")" = 200 ] || fail "10 nested arrays not 200"
nested 60
[ "$(post $pb "$tmp/nested")" = 400 ] || fail "60 nested arrays not 400"
decode_status <"$tmp/resp" | grep -q 'nest more than 100 levels' ||
  fail "deep nesting message: $(decode_status <"$tmp/resp")"

# 8. 200 hostile bodies: random bytes, the valid body with a random tail or
# random bytes written over it, random gzip. Every answer is 200, 400 or
# 413, and the server still answers afterwards.
valid_len=$(stat -c %s "$tmp/valid.pb")
for i in $(seq 200); do
  enc=()
  case $((i % 4)) in
  0) head -c $((RANDOM % 900)) /dev/urandom >"$tmp/fuzz" ;;
  1)
    head -c $((RANDOM % valid_len)) "$tmp/valid.pb" >"$tmp/fuzz"
    head -c $((RANDOM % 200)) /dev/urandom >>"$tmp/fuzz"
    ;;
  2)
    cp "$tmp/valid.pb" "$tmp/fuzz"
    dd if=/dev/urandom of="$tmp/fuzz" bs=1 count=$((1 + RANDOM % 8)) \
      seek=$((RANDOM % valid_len)) conv=notrunc status=none
    ;;
  3)
    head -c $((RANDOM % 600)) /dev/urandom | gzip -c >"$tmp/fuzz"
    enc=(-H 'Content-Encoding: gzip')
    ;;
  esac
  st=$(post $pb "$tmp/fuzz" "${enc[@]}") || fail "fuzz body $i: curl failed"
  case $st in
  200 | 400 | 413) ;;
  *) cp "$tmp/fuzz" "${TASKSPAN_TEST_TMP:-/tmp}/serve_fuzz_failure"
     fail "fuzz body $i (kept as serve_fuzz_failure): status $st" ;;
  esac
done
kill -0 "$pid" 2>/dev/null || fail "server died during the fuzz round"
st=$(curl -sS --max-time 10 -w ' %{http_code}' "$url/healthz")
[ "$st" = "ok 200" ] || fail "healthz after fuzzing: '$st'"

# 9. The port is taken: exit 1 with advice. Usage errors: exit 2.
set +e
cli serve --listen "127.0.0.1:$port" --store "$tmp/v2.db" >/dev/null 2>"$tmp/err2"; rc=$?
[ $rc -eq 1 ] && grep -q 'already in use.*--listen 127.0.0.1:0' "$tmp/err2" ||
  fail "port in use: rc=$rc $(cat "$tmp/err2")"
cli serve --listen 127.0.0.1 --store "$tmp/v2.db" >/dev/null 2>&1; rc=$?
[ $rc -eq 2 ] || fail "bad --listen: rc=$rc"
cli serve --bogus >/dev/null 2>&1; rc=$?
[ $rc -eq 2 ] || fail "unknown option: rc=$rc"
cli serve --max-body 12x >/dev/null 2>&1; rc=$?
[ $rc -eq 2 ] || fail "bad --max-body: rc=$rc"

# 10. SIGTERM: a clean exit 0 (under valgrind, also leak-free).
kill -TERM "$pid"
for _ in $(seq 300); do
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
kill -0 "$pid" 2>/dev/null && fail "server still running 30 s after SIGTERM"
wait "$pid"; rc=$?
pid=
set -e
[ $rc -eq 0 ] || fail "exit status after SIGTERM: $rc"
echo "serve_receiver: all checks passed"
