#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# check-no-globals.sh: enforces STYLE.md section 7, "no global mutable state in
# crdt/". Compiles every crdt/*.c natively with gcc (twice: -O0 with asserts and
# -O2 -DNDEBUG, so code on either side of an #ifdef NDEBUG is seen) and fails if
# `nm` finds a writable data symbol in an object: types D/d (initialized data),
# B/b (zero-initialized data, also thread-locals), C (common), G/g and S/s
# (small-data variants on some targets). Read-only data (R/r) is fine. Objects are
# built without PIC so that `static const` tables of pointers land in read-only
# data rather than in relocated data that nm reports as `d`.
set -euo pipefail
cd "$(dirname "$0")/.."

shopt -s nullglob
sources=(crdt/*.c)
if ((${#sources[@]} == 0)); then
    echo "check-no-globals.sh: no crdt/*.c sources yet; nothing to check"
    exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

bad=0
for flags in "-O0" "-O2 -DNDEBUG"; do
    for src in "${sources[@]}"; do
        obj="$tmp/$(basename "$src" .c).o"
        # shellcheck disable=SC2086 # $flags is a list of options
        gcc -std=c11 $flags -fno-pic -fno-pie -fcommon -Icrdt -c "$src" -o "$obj"
        found=$(nm -P "$obj" | awk '$2 ~ /^[BbCDdGgSs]$/ { print "    " $2 " " $1 }')
        if [[ -n $found ]]; then
            echo "check-no-globals.sh: $src ($flags) has writable data symbols:" >&2
            echo "$found" >&2
            bad=1
        fi
    done
done
if ((bad)); then
    echo "check-no-globals.sh: FAILED: crdt/ must keep no global mutable state (STYLE.md 7)" >&2
    exit 1
fi
echo "check-no-globals.sh: ${#sources[@]} crdt/ sources, no writable data symbols"
