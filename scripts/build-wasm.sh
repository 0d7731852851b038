#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# build-wasm.sh: builds the crdt/ engine (crdt/*.c) and its JavaScript exports
# (crdt/wasm/exports.c) into one WebAssembly module, build/wasm/crdt.wasm, with
# Debian's clang, lld and wasi-libc (scripts/deps.sh installs them). The module is
# a WASI reactor: call its `_initialize` export once after instantiation. It is
# built with -DNDEBUG, so asserts (and the WASI imports they would pull in) are
# compiled out and it instantiates with an empty import object. Warnings are
# errors when the environment variable CI is set, as in the CMake build. The
# compiler is `clang` unless WASM_CC names another (CMake passes the one it found).
# Usage: scripts/build-wasm.sh [OUTPUT]   (default build/wasm/crdt.wasm)
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-build/wasm/crdt.wasm}
cc=${WASM_CC:-clang}

shopt -s nullglob
sources=(crdt/*.c)
if ((${#sources[@]} == 0)); then
    echo "build-wasm.sh: no crdt/*.c sources to build" >&2
    exit 1
fi

warnings=(-Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wformat=2)
if [[ -n ${CI:-} ]]; then
    warnings+=(-Werror)
fi

mkdir -p "$(dirname "$out")"
"$cc" --target=wasm32-wasi -std=c11 -O2 -DNDEBUG "${warnings[@]}" -Icrdt \
    -mexec-model=reactor \
    -Wl,--strip-all -Wl,--stack-first -Wl,-z,stack-size=1048576 \
    -o "$out" "${sources[@]}" crdt/wasm/exports.c
echo "build-wasm.sh: wrote $out ($(stat -c %s "$out") bytes)"
