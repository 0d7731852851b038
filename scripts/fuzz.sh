#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# fuzz.sh: builds every libFuzzer target (tests/fuzz/fuzz_*.c) with clang under
# ASan + UBSan in build-fuzz/ and runs each for a bounded time over a temporary
# copy of its committed seed corpus (tests/fuzz/corpus/<name>/). CI runs it
# after the sanitizer tests (.ci/run: 20 seconds per target).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]     default 30
#
# Each target runs with a fixed -seed (printed), -max_total_time, -timeout=10,
# -rss_limit_mb=2048, ASAN_OPTIONS=allocator_may_return_null=1:detect_leaks=1
# and UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1. Prints, per target, the
# runs, seconds and coverage; the full output is kept in build-fuzz/logs/.
# Inputs that crash, leak, time out or run out of memory are written to
# build-fuzz/artifacts/<target>/ (never into the repository): the script then
# prints each one's path and the command that reproduces it, and exits 1 once
# every target has run. Inputs the fuzzer finds otherwise are thrown away with
# the temporary corpus (docs/fuzzing.md: how to add one to the seed corpus).
# Warnings are errors (-DWERROR=ON) when the environment variable CI is set.
set -euo pipefail
cd "$(dirname "$0")/.."

case ${1:-} in
-h | --help)
    sed -n '4,20s/^# \{0,1\}//p' "$0"
    exit 0
    ;;
esac
secs=${1:-30}
if ! [[ $secs =~ ^[1-9][0-9]*$ ]] || (($# > 1)); then
    echo "fuzz.sh: usage: scripts/fuzz.sh [SECONDS_PER_TARGET] (a positive integer)" >&2
    exit 2
fi

# Target -> seed corpus directory under tests/fuzz/corpus/, and its fixed seed.
# Every tests/fuzz/fuzz_*.c must be listed here (the script refuses to run
# otherwise), so a new target cannot run without a committed corpus.
declare -A corpus=(
    [fuzz_apply_update]=apply_update
    [fuzz_load]=load
    [fuzz_lz]=lz
    [fuzz_proto]=proto
    [fuzz_srv_config]=srv_config
    [fuzz_token]=token
    [fuzz_http]=http
    [fuzz_ws]=ws
)
declare -A seed=(
    [fuzz_apply_update]=1001
    [fuzz_load]=1002
    [fuzz_lz]=1003
    [fuzz_proto]=1004
    [fuzz_srv_config]=1005
    [fuzz_token]=1006
    [fuzz_http]=1007
    [fuzz_ws]=1008
)

build=build-fuzz
step() { printf '\n==> %s\n' "$*"; }

targets=()
for src in tests/fuzz/fuzz_*.c; do
    name=$(basename "$src" .c)
    if [[ -z ${corpus[$name]:-} || -z ${seed[$name]:-} ]]; then
        echo "fuzz.sh: $src has no corpus or seed in scripts/fuzz.sh" >&2
        exit 2
    fi
    dir=tests/fuzz/corpus/${corpus[$name]}
    if [[ ! -d $dir ]] || [[ -z $(ls -A "$dir") ]]; then
        echo "fuzz.sh: $name: seed corpus $dir is missing or empty" >&2
        exit 2
    fi
    targets+=("$name")
done

step "dependencies"
bash scripts/deps.sh

cmake_args=(-DCMAKE_C_COMPILER=clang -DFUZZ=ON -DSANITIZE=address,undefined
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DWASM=OFF)
if [[ -n ${CI:-} ]]; then
    cmake_args+=(-DWERROR=ON)
else
    cmake_args+=(-DWERROR=OFF)
fi
step "configure and build ($build: ${targets[*]})"
cmake -S . -B "$build" "${cmake_args[@]}" >/dev/null
cmake --build "$build" -j "$(nproc 2>/dev/null || echo 2)" --target "${targets[@]}"

export ASAN_OPTIONS=allocator_may_return_null=1:detect_leaks=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
work=$(mktemp -d "${TMPDIR:-/tmp}/weft-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$build/logs"

failed=()
summary=()
for name in "${targets[@]}"; do
    dir=tests/fuzz/corpus/${corpus[$name]}
    nseeds=$(find "$dir" -maxdepth 1 -type f | wc -l)
    art=$build/artifacts/$name
    log=$build/logs/$name.log
    mkdir -p "$art" "$work/$name"
    cp -R "$dir/." "$work/$name/"
    step "$name: ${secs}s, -seed=${seed[$name]}, $nseeds seeds from $dir"
    start=$(date +%s)
    rc=0
    "$build/$name" -seed="${seed[$name]}" -max_total_time="$secs" -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$art/" \
        "$work/$name" >"$log" 2>&1 || rc=$?
    elapsed=$(($(date +%s) - start))
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    init=$(grep -E '^#[0-9]+[[:space:]]+INITED' "$log" | tail -n 1 | sed -n 's/.* cov: \([0-9]*\).*/\1/p' || true)
    last=$(grep -E '^#[0-9]+[[:space:]].* cov: ' "$log" | tail -n 1 || true)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$last")
    line=$(printf '%-20s runs %9s  seconds %4s  cov %5s (seeds alone %5s)  ft %6s  corpus %4s -> %s' \
        "$name" "${runs:-?}" "$elapsed" "${cov:-?}" "${init:-?}" "${ft:-?}" "$nseeds" "${corp:-?}")
    echo "$line"
    if ((rc == 0)); then
        summary+=("$line")
        continue
    fi
    summary+=("$line  FAILED (exit $rc)")
    failed+=("$name")
    echo "--- $name failed (exit $rc); last lines of $log:"
    tail -n 60 "$log"
    echo "---"
    inputs=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log")
    if [[ -z $inputs ]]; then
        echo "$name: no input was written (see $log)"
    fi
    while IFS= read -r input; do
        [[ -n $input ]] || continue
        echo "$name: failing input: $input"
        echo "reproduce: ASAN_OPTIONS=$ASAN_OPTIONS UBSAN_OPTIONS=$UBSAN_OPTIONS" \
            "$build/$name -rss_limit_mb=2048 -timeout=10 $input"
    done <<<"$inputs"
done

step "summary (${secs}s per target)"
printf '%s\n' "${summary[@]}"
if ((${#failed[@]} > 0)); then
    echo "fuzz.sh: findings in ${failed[*]}: inputs in $build/artifacts/, logs in $build/logs/" >&2
    exit 1
fi
echo "fuzz.sh: no findings"
