#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# start.sh: installs missing Debian packages, builds weft (build/, plus the wasm
# engine the web demo loads), and starts the server `weftd`, which serves the web
# demo on http://127.0.0.1:8080 and keeps its data in ./data. Arguments are passed
# on to weftd.
#
# The web demo (web-demo/, built into web-demo/dist by scripts/build-web.sh)
# is served at /; open http://127.0.0.1:8080/?doc=NAME in two browsers.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DWERROR=OFF
cmake --build build -j "$(nproc 2>/dev/null || echo 2)"
bash scripts/build-wasm.sh build/wasm/crdt.wasm
bash scripts/build-web.sh

echo "start.sh: weftd on http://127.0.0.1:8080, data in ./data (Ctrl-C stops it)"
exec build/weftd --listen 127.0.0.1:8080 --data ./data --web-root web-demo/dist "$@"
