#!/usr/bin/env bash
# buffer_faults.sh -- a bounded buffer with real processes: the size cap
# (TASKSPAN_MAX_BYTES), a file size limit (ulimit -f), a full tmpfs, a
# read-only tmpfs, a file system that turns read-only under an open
# recorder (ext4 errors=remount-ro on a loop device), and damaged buffers of
# three kinds moved aside by `taskspan emit`. After each fault: the
# documented code and message, the runner keeps going, and what was stored
# is intact (PRAGMA integrity_check, seq 1..last_seq without a gap).
# Mounting needs root: without it those parts say SKIP and the rest runs.
set -euo pipefail
bin=${TASKSPAN_BIN_DIR:?}
mkdir -p "${TASKSPAN_TEST_TMP:-/tmp}"
tmp=$(mktemp -d "${TASKSPAN_TEST_TMP:-/tmp}/faults.XXXXXX" 2>/dev/null || mktemp -d)
mounts=()
loopdev=
cleanup() {
  local i
  if [ -n "${RUNNER_PID:-}" ]; then kill "$RUNNER_PID" 2>/dev/null || true; fi
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do
    umount -l "${mounts[i]}" 2>/dev/null || true
  done
  if [ -n "$loopdev" ]; then losetup -d "$loopdev" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
unset TRACEPARENT TASKSPAN_MAX_BYTES TASKSPAN_DB
export OTEL_SDK_DISABLED=true
fail() { echo "FAIL: $*" >&2; exit 1; }
skip() { echo "SKIP ($1): $2"; }

cli() { ${TASKSPAN_WRAP:-} "$bin/src/cli/taskspan" "$@"; }
# Without the checker: the many processes of the fill loops (the refusal
# that ends each loop runs once more under it), and repeats of paths it
# already ran elsewhere in this script; so the valgrind run stays short.
cli_plain() { "$bin/src/cli/taskspan" "$@"; }
# Runs "$@" with errexit off; sets rc, and out/err to its stdout/stderr.
run() {
  set +e
  "$@" >"$tmp/out" 2>"$tmp/err"
  rc=$?
  set -e
  out=$(cat "$tmp/out")
  err=$(cat "$tmp/err")
}
# The buffer $1 is sound and holds $2 events, each task's seq gap-free.
intact() {
  [ "$(sqlite3 "$1" 'PRAGMA integrity_check')" = ok ] || fail "$3: integrity_check of $1"
  [ "$(sqlite3 "$1" "SELECT count(*) FROM tasks t WHERE last_seq > (SELECT count(*) FROM task_events e WHERE e.task_id = t.task_id) OR (SELECT count(*) FROM task_events e WHERE e.task_id = t.task_id) != (SELECT max(seq) FROM task_events e WHERE e.task_id = t.task_id)")" = 0 ] ||
    fail "$3: a gap in seq"
  local n
  n=$(sqlite3 "$1" 'SELECT count(*) FROM task_events')
  [ "$n" -eq "$2" ] || fail "$3: $n events, want $2"
}

payload=$(head -c 6000 /dev/zero | tr '\0' p)
# Emit into $1 with the CLI until the first failure (at most 300), then
# once more under TASKSPAN_WRAP; sets k to the events recorded, and rc/err
# to the second failure, which must be the same.
cli_fill() {
  k=0
  while [ "$k" -lt 300 ]; do
    run cli_plain emit --db "$1" --task T --type step text="$payload"
    if [ "$rc" -ne 0 ]; then
      local first=$rc
      run cli emit --db "$1" --task T --type step text="$payload"
      [ "$rc" -eq "$first" ] || fail "$1: refused with $first, then $rc: $err"
      return 0
    fi
    k=$((k + 1))
  done
  fail "$1 never filled up"
}

# The runner (tests/tools/buffer_runner.c): one recorder, open throughout.
start_runner() {
  coproc RUNNER { exec ${TASKSPAN_WRAP:-} "$bin/tests/buffer_runner" "$@" 2>>"$tmp/runner.err"; }
  IFS= read -r -t 120 reply <&"${RUNNER[0]}" || fail "runner did not start: $(cat "$tmp/runner.err")"
  case $reply in "open ok"*) ;; *) fail "runner: $reply" ;; esac
}
ask() {
  echo "$1" >&"${RUNNER[1]}"
  IFS= read -r -t 120 reply <&"${RUNNER[0]}" || fail "runner did not answer '$1'"
}
stop_runner() {
  local pid=$RUNNER_PID
  echo quit >&"${RUNNER[1]}"
  set +e
  wait "$pid"
  rc=$?
  set -e
  RUNNER_PID=
  [ "$rc" -eq 0 ] || fail "runner exited $rc: $(cat "$tmp/runner.err")"
}
field() { sed -n "s/.*$1=\([^ ]*\).*/\1/p" <<<"$reply"; }

can_mount=1
mkdir "$tmp/probe"
if mount -t tmpfs -o size=64k tmpfs "$tmp/probe" 2>/dev/null; then
  umount "$tmp/probe"
else
  can_mount=0
  skip "tmpfs, read-only, emergency read-only" "cannot mount a tmpfs$([ "$(id -u)" -ne 0 ] && echo ' (not root)'); the cap, ulimit -f and damaged files still run"
fi
mount_tmpfs() { # dir size
  mkdir -p "$1"
  mount -t tmpfs -o "size=$2,mode=0700" tmpfs "$1"
  mounts+=("$1")
}

# ---- 1. the cap, with the CLI ----------------------------------------------
db=$tmp/cap.db
export TASKSPAN_MAX_BYTES=128K
cli_fill "$db"
[ "$rc" -eq 1 ] || fail "cap: exit $rc, want 1 ($err)"
grep -q 'buffer at its cap of 131072 bytes' <<<"$err" || fail "cap: message: $err"
grep -q 'nothing stored was dropped' <<<"$err" || fail "cap: message: $err"
[ "$k" -ge 3 ] || fail "cap: only $k events before the cap"
intact "$db" "$k" cap
# A bigger cap lets the same buffer grow.
TASKSPAN_MAX_BYTES=1M run cli_plain emit --db "$db" --task T --type step text="$payload"
[ "$rc" -eq 0 ] && [ "$out" = $((k + 1)) ] || fail "raised cap: rc=$rc out=$out $err"
# A malformed TASKSPAN_MAX_BYTES: a warning, and recording goes on.
TASKSPAN_MAX_BYTES=lots run cli emit --db "$db" --task T --type step
[ "$rc" -eq 0 ] && [ "$out" = $((k + 2)) ] || fail "bad TASKSPAN_MAX_BYTES: rc=$rc $err"
grep -q "warning: TASKSPAN_MAX_BYTES='lots' is not a size" <<<"$err" || fail "no warning: $err"
intact "$db" $((k + 2)) "cap after"
unset TASKSPAN_MAX_BYTES

# ---- 2. the cap, with a long-lived runner ----------------------------------
db=$tmp/runner-cap.db
for i in 1 2 3; do run cli_plain emit --db "$db" --task old --type step text="$payload"; done
start_runner "$db" 196608
ask fill
[ "$(field code)" = E_FULL ] || fail "runner cap: $reply"
grep -q 'cap of 196608 bytes' <<<"$reply" || fail "runner cap: $reply"
recorded=$(field recorded)
ask "emit 2"
[ "$(field failed)" = 2 ] || fail "runner cap: still refused: $reply"
ask stats
[ "$(field refused_cap)" = 3 ] && [ "$(field refused_disk)" = 0 ] && [ "$(field last)" = E_FULL ] ||
  fail "runner cap stats: $reply"
# Pruning delivered events (by hand here) makes room for the open runner.
sqlite3 "$db" "BEGIN IMMEDIATE; DELETE FROM task_events WHERE task_id='old'; DELETE FROM tasks WHERE task_id='old'; COMMIT;"
ask "emit 1"
[ "$(field ok)" = 1 ] || fail "runner cap after prune: $reply"
stop_runner
intact "$db" $((recorded + 1)) "runner cap"

# ---- 3. a file size limit (ulimit -f; SIGXFSZ ignored, as a host must) -----
db=$tmp/fsize.db
run cli emit --db "$db" --task T --type step
(
  trap '' XFSZ
  ulimit -f 256
  cli_fill "$db"
  [ "$rc" -eq 1 ] || fail "ulimit -f: exit $rc ($err)"
  grep -Eq 'RLIMIT_FSIZE|File too large' <<<"$err" || fail "ulimit -f: message: $err"
  grep -q "the buffer's cap, the disk or the size limit is full" <<<"$err" || fail "ulimit -f: code: $err"
  echo "$k" >"$tmp/fsize.k"
)
k=$(cat "$tmp/fsize.k")
run cli_plain emit --db "$db" --task T --type step
[ "$rc" -eq 0 ] || fail "after ulimit -f: $err"
intact "$db" $((k + 2)) "ulimit -f"

if [ "$can_mount" = 1 ]; then
  # ---- 4. a full tmpfs, under a runner that keeps going --------------------
  mnt=$tmp/full
  mount_tmpfs "$mnt" 512k
  head -c 131072 /dev/zero >"$mnt/spare"
  db=$mnt/buffer.db
  start_runner "$db"
  ask fill
  [ "$(field code)" = E_FULL ] || fail "tmpfs: $reply"
  grep -q 'disk full writing' <<<"$reply" || fail "tmpfs message: $reply"
  recorded=$(field recorded)
  ask "emit 3"
  [ "$(field failed)" = 3 ] && [ "$(field code)" = E_FULL ] || fail "tmpfs: $reply"
  # Another process: reading works, writing says the disk is full.
  [ "$(sqlite3 -readonly "$db" 'SELECT count(*) FROM task_events')" = "$recorded" ] ||
    fail "tmpfs: reader sees another count"
  run cli_plain emit --db "$db" --task T --type step text="$payload"
  [ "$rc" -eq 1 ] && grep -q 'full' <<<"$err" || fail "tmpfs: second writer: rc=$rc $err"
  ask stats
  [ "$(field refused_disk)" = 4 ] && [ "$(field refused_cap)" = 0 ] || fail "tmpfs stats: $reply"
  rm "$mnt/spare"
  ask "emit 5"
  [ "$(field ok)" = 5 ] || fail "tmpfs after freeing space: $reply"
  stop_runner
  intact "$db" $((recorded + 5)) tmpfs

  # ---- 5. the same file system, read-only ----------------------------------
  mount -o remount,ro "$mnt"
  run cli emit --db "$db" --task T --type step
  [ "$rc" -eq 1 ] && grep -q 'read-only' <<<"$err" || fail "read-only: rc=$rc $err"
  run cli_plain emit --db "$mnt/new.db" --task T --type step
  [ "$rc" -eq 1 ] && grep -q 'Read-only file system' <<<"$err" || fail "read-only new: rc=$rc $err"
  run cli tree --db "$db" runner-task
  [ "$rc" -eq 0 ] && grep -q "seq=$((recorded + 5))" <<<"$out" || fail "read-only tree: rc=$rc $err"
  mount -o remount,rw,size=1m "$mnt"
  intact "$db" $((recorded + 5)) "read-only"
  run cli_plain emit --db "$db" --task T --type step
  [ "$rc" -eq 0 ] || fail "writable again: $err"
  intact "$db" $((recorded + 6)) "writable again"

  # ---- 6. read-only under an open recorder (ext4 errors=remount-ro) --------
  img=$tmp/ext4.img
  ext=$tmp/ext4
  truncate -s 16M "$img"
  if ! command -v mkfs.ext4 >/dev/null || ! mkfs.ext4 -q -F "$img" 2>/dev/null ||
    ! loopdev=$(losetup -f --show "$img" 2>/dev/null); then
    loopdev=
    skip "emergency read-only" "no mkfs.ext4 or loop device"
  elif ! mkdir -p "$ext" || ! mount -o errors=remount-ro "$loopdev" "$ext" 2>/dev/null; then
    skip "emergency read-only" "cannot mount ext4"
  elif [ ! -w "/sys/fs/ext4/${loopdev#/dev/}/trigger_fs_error" ]; then
    umount "$ext"
    skip "emergency read-only" "no /sys/fs/ext4/*/trigger_fs_error"
  else
    mounts+=("$ext")
    db=$ext/buffer.db
    start_runner "$db"
    ask "emit 5"
    [ "$(field ok)" = 5 ] || fail "ext4: $reply"
    sync
    echo 1 >"/sys/fs/ext4/${loopdev#/dev/}/trigger_fs_error"
    ask "emit 3"
    [ "$(field failed)" = 3 ] && [ "$(field code)" = E_READONLY ] || fail "ext4 read-only: $reply"
    grep -q 'Read-only file system' <<<"$reply" || fail "ext4 message: $reply"
    stop_runner
    umount "$ext"
    e2fsck -fy "$loopdev" >/dev/null 2>&1 || true
    mount "$loopdev" "$ext"
    intact "$db" 5 "ext4 after remount"
    run cli_plain emit --db "$db" --task T --type step
    [ "$rc" -eq 0 ] || fail "ext4 writable again: $err"
    intact "$db" 6 "ext4 writable again"
  fi
fi

# ---- 7. damaged buffers: refused by readers, moved aside by a writer -------
good=$tmp/good.db
start_runner "$good"
ask "emit 30"
[ "$(field ok)" = 30 ] || fail "good buffer: $reply"
stop_runner
[ ! -e "$good-wal" ] || fail "the closed buffer kept its -wal"
root=$(sqlite3 "$good" "SELECT rootpage FROM sqlite_master WHERE name='task_events'")
for kind in header truncated page; do
  db=$tmp/$kind.db
  cp "$good" "$db"
  case $kind in
  header) printf 'this is no longer an SQLite header' | dd of="$db" conv=notrunc status=none ;;
  truncated) truncate -s $(($(stat -c %s "$db") / 2 + 123)) "$db" ;;
  page) head -c 4000 /dev/zero | tr '\0' '\245' | dd of="$db" bs=1 seek=$(((root - 1) * 4096 + 1)) conv=notrunc status=none ;;
  esac
  sum=$(cksum <"$db")
  # The checker runs the first kind; the other two take the same paths.
  if [ "$kind" = header ]; then c=cli; else c=cli_plain; fi
  run $c tree --db "$db" runner-task
  [ "$rc" -eq 1 ] && grep -q 'is a damaged buffer' <<<"$err" || fail "$kind: tree: rc=$rc $err"
  [ "$(cksum <"$db")" = "$sum" ] || fail "$kind: a reader changed the file"
  run $c emit --db "$db" --task T --type step
  [ "$rc" -eq 0 ] && [ "$out" = 1 ] || fail "$kind: emit: rc=$rc out=$out $err"
  grep -q "warning: $db was damaged (.*); moved it to $db.corrupt-[0-9TZ]* and started a new buffer" <<<"$err" ||
    fail "$kind: warning: $err"
  aside=$(sed -n 's/.*moved it to \([^ ]*\) and.*/\1/p' <<<"$err")
  [ "$(cksum <"$aside")" = "$sum" ] || fail "$kind: the moved file is not the damaged one"
  intact "$db" 1 "$kind: new buffer"
done
# Not a database, nor shaped like one: refused and left alone.
echo "shopping list" >"$tmp/notes.db"
run cli_plain emit --db "$tmp/notes.db" --task T --type step
[ "$rc" -eq 1 ] && grep -q 'left as it is' <<<"$err" || fail "text file: rc=$rc $err"
[ "$(cat "$tmp/notes.db")" = "shopping list" ] || fail "text file changed"
! ls "$tmp"/notes.db.corrupt-* >/dev/null 2>&1 || fail "text file moved"

echo "buffer_faults: ok"
