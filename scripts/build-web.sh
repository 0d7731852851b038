#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# build-web.sh: builds the web demo that weftd serves at / into OUTDIR
# (default web-demo/dist): app.js (web-demo/src/main.js and everything it
# imports, bundled by esbuild: ES2022, minified, with a source map), app.css
# (Quill's snow theme and web-demo/src/style.css), index.html and crdt.wasm.
#
# - Runs `npm ci` in web-demo/ when node_modules is missing or older than
#   package-lock.json.
# - Builds build/wasm/crdt.wasm (scripts/build-wasm.sh) when it is missing or
#   older than a crdt/ source.
# - Idempotent and safe next to a running weftd: the bundle is made in a
#   temporary directory and each file is moved into OUTDIR (an atomic rename) only
#   when its bytes changed. Concurrent runs on one OUTDIR wait for each other.
#
# Usage: scripts/build-web.sh [OUTDIR]
set -euo pipefail

if [[ ${1:-} == -h || ${1:-} == --help ]]; then
    sed -n '4,17s/^# \{0,1\}//p' "$0"
    exit 0
fi
# OUTDIR is relative to the caller's directory; the default to the repository.
if [[ -n ${1:-} ]]; then
    out=$(realpath -m -- "$1")
fi
cd "$(dirname "$0")/.."
out=${out:-$PWD/web-demo/dist}
mkdir -p "$out"

exec 9>"$out/.build.lock"
flock 9

if [[ ! -f web-demo/node_modules/.package-lock.json ||
    web-demo/package-lock.json -nt web-demo/node_modules/.package-lock.json ]]; then
    echo "build-web.sh: npm ci in web-demo/"
    (cd web-demo && npm ci --no-audit --no-fund)
fi

wasm=build/wasm/crdt.wasm
if [[ ! -f $wasm ]] || [[ -n $(find crdt -name '*.[ch]' -newer "$wasm" -print -quit) ]]; then
    bash scripts/build-wasm.sh "$wasm"
fi

tmp=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

web-demo/node_modules/.bin/esbuild web-demo/src/main.js \
    --bundle --format=esm --target=es2022 --minify --sourcemap \
    --legal-comments=linked --log-level=warning \
    --outfile="$tmp/app.js"
cp web-demo/index.html "$wasm" "$tmp/"

changed=()
for f in "$tmp"/*; do
    name=$(basename "$f")
    if ! cmp -s "$f" "$out/$name"; then
        mv -f "$f" "$out/$name"
        changed+=("$name")
    fi
done
if ((${#changed[@]})); then
    echo "build-web.sh: $out: updated ${changed[*]} (app.js $(stat -c %s "$out/app.js") bytes)"
else
    echo "build-web.sh: $out is up to date"
fi
