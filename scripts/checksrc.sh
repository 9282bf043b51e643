#!/usr/bin/env bash
#
# checksrc.sh -- mechanical source checks for libtaskspan.
#
# Checks every .c and .h file under src/, include/, examples/, bench/ and
# tests/ (or only the files and directories given as arguments) for:
#   1. calls to banned functions: sprintf, vsprintf, strcpy, strcat, strtok,
#      atoi, atol, gets. Use snprintf, vsnprintf, a bounded copy, strtok_r,
#      strtol/strtoll with error checks, fgets. Names inside comments and
#      string literals, longer names (snprintf, fgets, strtok_r) and member
#      calls (ops->gets(...)) are not reported.
#   2. lines longer than 80 columns, in src/ and include/ only. Columns are
#      characters (UTF-8), with tabs expanded to 8.
#
# Prints one "file:line: message" per problem and exits 1 if there was any,
# 0 if there was none, 2 on a usage error. Run it from anywhere; paths are
# relative to the repository root.
#
# Usage: scripts/checksrc.sh [FILE|DIR]...
set -euo pipefail

readonly MAX_COLUMNS=80
readonly BANNED="sprintf vsprintf strcpy strcat strtok atoi atol gets"
readonly DEFAULT_DIRS=(src include examples bench tests)

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

case "${1:-}" in
-h | --help)
    sed -n '3,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
esac

# The files to check, one per line, sorted so the report is stable.
list_files() {
    local t
    if [ $# -eq 0 ]; then
        for t in "${DEFAULT_DIRS[@]}"; do
            if [ -d "$t" ]; then
                find "$t" -type f \( -name '*.c' -o -name '*.h' \)
            fi
        done
    else
        for t in "$@"; do
            if [ -d "$t" ]; then
                find "$t" -type f \( -name '*.c' -o -name '*.h' \)
            elif [ -f "$t" ]; then
                printf '%s\n' "$t"
            else
                echo "checksrc.sh: no such file or directory: $t" >&2
                exit 2
            fi
        done
    fi | sed 's|^\./||' | LC_ALL=C sort -u
}

# Banned calls in one file. Comments and the contents of string and
# character literals are blanked first, keeping line numbers, so only code
# is matched. "->" becomes " ." so that member calls can be told apart.
check_banned() {
    awk -v file="$1" -v banned="$BANNED" '
    BEGIN { n_banned = split(banned, names, " "); in_comment = 0 }
    {
        line = $0; out = ""; i = 1; len = length(line)
        while (i <= len) {
            c = substr(line, i, 1); c2 = substr(line, i, 2)
            if (in_comment) {
                if (c2 == "*/") { in_comment = 0; out = out "  "; i += 2 }
                else { out = out " "; i++ }
                continue
            }
            if (c2 == "/*") { in_comment = 1; out = out "  "; i += 2; continue }
            if (c2 == "//") { break }
            if (c == "\"" || c == "\047") {
                quote = c; out = out c; i++
                while (i <= len) {
                    c = substr(line, i, 1)
                    if (c == "\\") { out = out "  "; i += 2; continue }
                    if (c == quote) { break }
                    out = out " "; i++
                }
                out = out quote; i++
                continue
            }
            out = out c; i++
        }
        gsub(/->/, " .", out)
        for (k = 1; k <= n_banned; k++) {
            re = "(^|[^A-Za-z0-9_.])" names[k] "[ \t]*\\("
            if (out ~ re) {
                printf "%s:%d: banned function %s()\n", file, FNR, names[k]
                found = 1
            }
        }
    }
    END { exit found ? 1 : 0 }
    ' "$1"
}

# Lines over MAX_COLUMNS in one file.
check_length() {
    local lineno text cols
    expand -t 8 "$1" |
        { LC_ALL=C.UTF-8 grep -nE "^.{$((MAX_COLUMNS + 1)),}" || true; } |
        while IFS=: read -r lineno text; do
            cols=$(printf '%s' "$text" | LC_ALL=C.UTF-8 wc -m)
            printf '%s:%s: line is %s columns, more than %s\n' \
                "$1" "$lineno" "$cols" "$MAX_COLUMNS"
        done
}

status=0
files=$(list_files "$@")
if [ -z "$files" ]; then
    echo "checksrc.sh: no .c or .h files to check" >&2
    exit 0
fi
while IFS= read -r f; do
    check_banned "$f" || status=1
    case "$f" in
    src/* | include/*)
        report=$(check_length "$f")
        if [ -n "$report" ]; then
            printf '%s\n' "$report"
            status=1
        fi
        ;;
    esac
done <<<"$files"

if [ "$status" -ne 0 ]; then
    echo "checksrc.sh: problems found" >&2
fi
exit "$status"
