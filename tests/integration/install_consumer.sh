#!/usr/bin/env bash
# install_consumer.sh -- install the build into a scratch prefix, then build
# an outside program against it three ways: CMake find_package (shared and
# static targets) and pkg-config. Each must record an event.
set -euo pipefail
bin=${TASKSPAN_BIN_DIR:?} src=${TASKSPAN_SOURCE_DIR:?}
mkdir -p "${TASKSPAN_TEST_TMP:-/tmp}"
tmp=$(mktemp -d "${TASKSPAN_TEST_TMP:-/tmp}/install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
# A sanitizer build's library needs its runtime in every program using it.
san=${TASKSPAN_SAN_FLAGS:-}

cmake --install "$bin" --prefix "$tmp/prefix" >/dev/null
for f in include/taskspan/taskspan.h lib/pkgconfig/taskspan.pc \
         lib/cmake/taskspan/taskspanConfig.cmake lib/libtaskspan.a \
         bin/taskspan bin/taskspan-demo-runner; do
  [ -e "$tmp/prefix/$f" ] || fail "not installed: $f"
done
ls "$tmp/prefix"/lib/libtaskspan.so.0* >/dev/null 2>&1 || fail "no versioned shared library"

cmake -S "$src/tests/install" -B "$tmp/consumer" -DCMAKE_PREFIX_PATH="$tmp/prefix" \
  -DCMAKE_C_FLAGS="$san" -DCMAKE_EXE_LINKER_FLAGS="$san" >/dev/null ||
  fail "find_package(taskspan) failed"
cmake --build "$tmp/consumer" >/dev/null || fail "consumer build failed"
LD_LIBRARY_PATH=$tmp/prefix/lib "$tmp/consumer/consumer_shared" "$tmp/a.db" | grep -q '^success seq=1 ' ||
  fail "shared consumer"
"$tmp/consumer/consumer_static" "$tmp/b.db" | grep -q '^success seq=1 ' || fail "static consumer"

export PKG_CONFIG_PATH=$tmp/prefix/lib/pkgconfig
# shellcheck disable=SC2046
cc -std=c11 $san -o "$tmp/pc" "$src/tests/install/consumer.c" $(pkg-config --cflags --libs taskspan) ||
  fail "pkg-config build failed"
LD_LIBRARY_PATH=$tmp/prefix/lib "$tmp/pc" "$tmp/c.db" | grep -q '^success seq=1 ' || fail "pkg-config consumer"
# Static: libtaskspan.a plus its dependencies' shared libraries, as on a
# distribution where only those have -dev packages (pkg-config --static
# would ask for every static library libcurl was built with).
# shellcheck disable=SC2046
cc -std=c11 $san -o "$tmp/pcs" "$src/tests/install/consumer.c" -DTASKSPAN_STATIC \
  $(pkg-config --cflags taskspan) "$tmp/prefix/lib/libtaskspan.a" \
  $(pkg-config --libs sqlite3 jansson libxxhash libprotobuf-c libcurl zlib) -lpthread -lm ||
  fail "static build against libtaskspan.a failed"
"$tmp/pcs" "$tmp/d.db" | grep -q '^success seq=1 ' || fail "static pkg-config consumer"
echo "install_consumer: find_package and pkg-config consumers work"
