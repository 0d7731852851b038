#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# test.sh: the project's whole test run, as CI runs it. Installs missing Debian
# packages (scripts/deps.sh), configures and builds with CMake, checks that crdt/
# keeps no global mutable state (scripts/check-no-globals.sh), runs every ctest
# test (unit tests, and integration tests against real weftd processes), then
# the engine's tests on its WebAssembly build under Node.js, builds the web demo
# (scripts/build-web.sh), and runs the JS client's tests against weftd and the
# browser tests in headless Chromium.
#
#   scripts/test.sh              build/ (RelWithDebInfo), ctest, wasm, client, browser
#   scripts/test.sh --sanitize   build-asan/ with -DSANITIZE=address,undefined, ctest
#                                (no wasm)
#
# Warnings are errors (-DWERROR=ON) when the environment variable CI is set.
# Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."

sanitize=0
for arg in "$@"; do
    case $arg in
    --sanitize) sanitize=1 ;;
    -h | --help)
        sed -n '4,19s/^# \{0,1\}//p' "$0"
        exit 0
        ;;
    *)
        echo "test.sh: unknown argument '$arg' (try --help)" >&2
        exit 2
        ;;
    esac
done

step() { printf '\n==> %s\n' "$*"; }

step "dependencies"
bash scripts/deps.sh

cmake_args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo)
if [[ -n ${CI:-} ]]; then
    cmake_args+=(-DWERROR=ON)
else
    cmake_args+=(-DWERROR=OFF) # do not keep ON from an earlier CI-style run
fi
if ((sanitize)); then
    build=build-asan
    cmake_args+=(-DSANITIZE=address,undefined)
    export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
    export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
else
    build=build
fi
jobs=$(nproc 2>/dev/null || echo 2)

step "configure and build ($build)"
cmake -S . -B "$build" "${cmake_args[@]}"
cmake --build "$build" -j "$jobs"

step "no global mutable state in crdt/"
bash scripts/check-no-globals.sh

step "ctest ($build)"
ctest --test-dir "$build" --output-on-failure --no-tests=error -j2

if ((!sanitize)); then
    step "wasm build"
    bash scripts/build-wasm.sh build/wasm/crdt.wasm
    step "wasm tests: the engine's tests on the wasm build (Node.js $(node --version))"
    node tests/wasm/smoke.mjs build/wasm/crdt.wasm
    WEFT_WASM=build/wasm/crdt.wasm node --test tests/wasm/*.test.mjs

    step "web demo build (npm ci when needed, esbuild)"
    bash scripts/build-web.sh
    step "JS client against a real weftd"
    node --test tests/client/*.test.mjs
    step "browser tests (headless Chromium)"
    node --test tests/browser/*.test.mjs
fi

step "all tests passed ($build)"
