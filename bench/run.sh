#!/bin/sh
# Run every benchmark of a build directory, then print the summary of the
# figures (bench/summary.py). Builds nothing.
#
#   bench/run.sh [BUILD_DIR]      BUILD_DIR defaults to build/
#   BENCH_SHORT=1 bench/run.sh    pass --short to every benchmark
#
# Runs every bench_* executable under BUILD_DIR, then bench/viewer.sh (when
# the build has the CLI and node is installed), then prints the summary: one
# table of every figure of issue 7 with its same-run limit and ratio, and
# one "BENCH_FIGURE {...}" line per figure. Then bench/kill9.sh runs (20
# kills with BENCH_SHORT) if the build has the test tools. Any further
# arguments go to every benchmark (e.g. --dir /mnt/ssd). Exits non-zero if a
# benchmark fails (an error, never a figure) or none is found.
set -u

here=$(dirname "$0")
build=${1:-build}
[ "$#" -gt 0 ] && shift

if [ ! -d "$build" ]; then
    echo "run.sh: no build directory '$build' (build first: cmake --build $build)" >&2
    exit 2
fi

short=
if [ "${BENCH_SHORT:-0}" = 1 ]; then
    short=--short
fi

list=$(find "$build" -name CMakeFiles -prune -o \
            -type f -name 'bench_*' -perm -u+x -print | sort)
if [ -z "$list" ]; then
    echo "run.sh: no bench_* executable under '$build'" \
         "(configure with -DTASKSPAN_BUILD_BENCH=ON)" >&2
    exit 2
fi

logdir=$(mktemp -d "${TMPDIR:-/tmp}/taskspan-run.XXXXXX") || exit 2
log=$logdir/bench.log
trap 'rm -rf "$logdir"' EXIT INT TERM

echo "run.sh: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), load average" \
    "$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?'), build $build"
failed=0
for exe in $list; do
    echo "== $exe $short $*"
    # The exit status of the benchmark, not of tee.
    if { "$exe" $short "$@"; echo $? >"$logdir/rc"; } | tee -a "$log" &&
        [ "$(cat "$logdir/rc")" = 0 ]; then
        echo "== $exe: ok"
    else
        echo "== $exe: FAILED (exit $(cat "$logdir/rc"))" >&2
        failed=$((failed + 1))
    fi
done

# The viewer: taskspan serve's ingest, a 10,000-span trace, the trace list.
if [ -x "$build/src/cli/taskspan" ] && command -v node >/dev/null 2>&1; then
    echo "== bench/viewer.sh $build $short $*"
    if { bash "$here/viewer.sh" "$build" $short "$@"; echo $? >"$logdir/rc"; } |
        tee -a "$log" && [ "$(cat "$logdir/rc")" = 0 ]; then
        echo "== bench/viewer.sh: ok"
    else
        echo "== bench/viewer.sh: FAILED (exit $(cat "$logdir/rc"))" >&2
        failed=$((failed + 1))
    fi
else
    echo "== bench/viewer.sh: skipped (no $build/src/cli/taskspan or node)"
fi

echo
if command -v python3 >/dev/null 2>&1; then
    python3 "$here/summary.py" "$log" || echo "run.sh: the summary failed" >&2
else
    echo "run.sh: no python3, no summary (the BENCH_JSON lines above have every figure)"
fi
echo "run.sh: load average at the end $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')"

# bench/kill9.sh, the long kill -9 run, when the build has the test tools
# (tests/kill9_runner) and node and sqlite3 are installed. Of the extra
# arguments only --dir applies to it.
k9dir=
while [ "$#" -gt 0 ]; do
    if [ "$1" = --dir ] && [ "$#" -gt 1 ]; then
        k9dir=$2
        shift
    fi
    shift
done
if [ "${BENCH_KILL9:-1}" = 0 ]; then
    echo "== bench/kill9.sh: skipped (BENCH_KILL9=0)"
elif [ -x "$build/tests/kill9_runner" ] && command -v node >/dev/null 2>&1 &&
    command -v sqlite3 >/dev/null 2>&1; then
    echo "== bench/kill9.sh $build $short${k9dir:+ --dir $k9dir}"
    if bash "$here/kill9.sh" "$build" $short ${k9dir:+--dir "$k9dir"}; then
        echo "== bench/kill9.sh: ok"
    else
        rc=$?
        echo "== bench/kill9.sh: FAILED (exit $rc)" >&2
        failed=$((failed + 1))
    fi
else
    echo "== bench/kill9.sh: skipped (no $build/tests/kill9_runner, node or sqlite3)"
fi

if [ "$failed" -ne 0 ]; then
    echo "run.sh: $failed benchmark(s) failed" >&2
    exit 1
fi
exit 0
