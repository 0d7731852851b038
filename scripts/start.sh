#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# start.sh: installs missing Debian packages, builds weft (build/, plus the wasm
# engine the web demo loads), and starts the server `weftd`, which serves the web
# demo on http://127.0.0.1:8080 and keeps its data in ./data. Arguments are passed
# on to weftd.
#
# The server is not written yet: until a weftd binary is built, this script says
# so and exits 0 after the build.
set -euo pipefail
cd "$(dirname "$0")/.."

url=http://127.0.0.1:8080
data=./data
# Where the build puts the server once server/ exists (first match wins).
weftd_candidates=(build/server/weftd build/weftd)

bash scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DWERROR=OFF
cmake --build build -j "$(nproc 2>/dev/null || echo 2)"
bash scripts/build-wasm.sh build/wasm/crdt.wasm

for weftd in "${weftd_candidates[@]}"; do
    if [[ -x $weftd ]]; then
        echo "start.sh: starting $weftd: demo on $url, data in $data"
        exec "$weftd" "$@"
    fi
done

cat <<MSG

weft: the server (weftd) is not built yet.
When it exists, this command will start it to serve the collaborative editing
demo on $url, with the documents and their history stored in $data.
What is built today: the CRDT engine (build/libcrdt.a, build/wasm/crdt.wasm),
its tests (bash scripts/test.sh) and the trace benchmark (build/bench/crdt-trace).
MSG
