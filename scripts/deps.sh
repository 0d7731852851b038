#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# deps.sh: installs the Debian 12 packages that weft's build and tests need
# (compilers, H2O, wslay, OpenSSL, LMDB, msgpack-c, cmocka, chromium for the
# browser tests), but only those that are missing. Runs apt-get update only when something has to be installed,
# so a second run on a ready machine takes a fraction of a second. Meant to run as
# root (uses sudo when it is not root and sudo exists). Idempotent.
#
# Node.js: if `node` exists it is kept (weft expects version 20 or newer and
# warns otherwise); if it is missing, Debian's `nodejs` package is installed.
set -euo pipefail

packages=(
    # C toolchain and build
    build-essential cmake pkg-config
    # clang: fuzz targets (libFuzzer runtime in libclang-rt-14-dev) and the
    # wasm32 build of crdt/ (lld, wasi-libc, wasm32 compiler runtime)
    clang lld libclang-rt-14-dev wasi-libc libclang-rt-14-dev-wasm32
    # tests and benchmarks
    libcmocka-dev zlib1g-dev
    # weftd, storage/, protocol/
    libh2o-evloop-dev libwslay-dev libssl-dev liblmdb-dev lmdb-utils libmsgpack-dev
    # browser tests of the web demo (driven by npm's playwright-core)
    chromium
)

# One dpkg-query for all packages: it prints a line for each package it knows
# (and complains on stderr about the ones it has never heard of).
declare -A installed=()
while IFS=' ' read -r name status; do
    [[ $status == *" ok installed" ]] && installed[$name]=1
done < <(dpkg-query -W -f='${Package} ${Status}\n' "${packages[@]}" 2>/dev/null || true)

missing=()
for p in "${packages[@]}"; do
    [[ -n ${installed[$p]:-} ]] || missing+=("$p")
done
if ! command -v node >/dev/null 2>&1; then
    missing+=(nodejs)
fi
if ! command -v npm >/dev/null 2>&1; then
    missing+=(npm)
fi

if ((${#missing[@]} > 0)); then
    sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        if command -v sudo >/dev/null 2>&1; then
            sudo=(sudo)
        else
            echo "deps.sh: missing packages (${missing[*]}) and not root; run as root" >&2
            exit 1
        fi
    fi
    echo "deps.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get -q -o DPkg::Lock::Timeout=300 update
    "${sudo[@]}" apt-get -q -y -o DPkg::Lock::Timeout=300 --no-install-recommends \
        install "${missing[@]}"
fi

node_version=$(node --version 2>/dev/null || true)
node_major=${node_version#v}
node_major=${node_major%%.*}
if ! [[ $node_major =~ ^[0-9]+$ ]]; then
    echo "deps.sh: 'node --version' printed '$node_version'; Node.js is needed" >&2
    exit 1
fi
if ((node_major < 20)); then
    # Debian 12's own nodejs is 18: the wasm tests run on it, but the web demo
    # tooling of the next milestone expects Node.js 20.
    echo "deps.sh: warning: Node.js $node_version found; weft expects Node.js >= 20" >&2
fi
