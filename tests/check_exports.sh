#!/usr/bin/env bash
# check_exports.sh LIB HEADER -- the shared library's dynamic symbols are
# exactly the functions the public header declares with TASKSPAN_API.
set -euo pipefail
lib=$1 header=$2
expected=$(tr '\n' ' ' <"$header" | grep -oE 'TASKSPAN_API [^;]*;' |
           grep -oE 'taskspan_[a-z0-9_]+ *\(' | head -n 1000 | tr -d ' (' | sort -u)
actual=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBR]$/ {print $3}' | sort -u)
if [ "$expected" != "$actual" ]; then
  echo "exported symbols differ from the public API (< header, > library):"
  diff <(echo "$expected") <(echo "$actual") || true
  exit 1
fi
echo "$(echo "$actual" | wc -l) exported symbols, all declared in taskspan.h"
