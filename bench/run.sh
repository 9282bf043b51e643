#!/bin/sh
# Run every bench_* executable of a build directory. Builds nothing.
#
#   bench/run.sh [BUILD_DIR]      BUILD_DIR defaults to build/
#   BENCH_SHORT=1 bench/run.sh    pass --short to every benchmark
#
# Any further arguments go to every benchmark (e.g. --dir /mnt/ssd); then
# bench/kill9.sh runs (20 kills with BENCH_SHORT) if the build has the test
# tools. Exits non-zero if a benchmark fails or none is found.
set -u

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

failed=0
for exe in $list; do
    echo "== $exe $short $*"
    if "$exe" $short "$@"; then
        echo "== $exe: ok"
    else
        rc=$?
        echo "== $exe: FAILED (exit $rc)" >&2
        failed=$((failed + 1))
    fi
done

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
if [ -x "$build/tests/kill9_runner" ] && command -v node >/dev/null 2>&1 &&
    command -v sqlite3 >/dev/null 2>&1; then
    echo "== bench/kill9.sh $build $short${k9dir:+ --dir $k9dir}"
    if bash "$(dirname "$0")/kill9.sh" "$build" $short ${k9dir:+--dir "$k9dir"}; then
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
