#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# start.sh: installs missing Debian packages, builds weft (build/, plus the wasm
# engine the web demo loads), and starts the server `weftd`, which serves the web
# demo on http://127.0.0.1:8080 and keeps its data in ./data. Arguments are passed
# on to weftd.
#
# The web demo (web-demo/, built into web-demo/dist) is served at / once it
# exists; until then / says that it is not built, and the WebSocket and REST
# endpoints work on their own.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DWERROR=OFF
cmake --build build -j "$(nproc 2>/dev/null || echo 2)"
bash scripts/build-wasm.sh build/wasm/crdt.wasm

echo "start.sh: weftd on http://127.0.0.1:8080, data in ./data (Ctrl-C stops it)"
exec build/weftd --listen 127.0.0.1:8080 --data ./data --web-root web-demo/dist "$@"
