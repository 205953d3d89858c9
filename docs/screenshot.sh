#!/usr/bin/env bash
# Renders the relay's /status page in headless Chromium and writes
# docs/status.png. Needs Debian's chromium package (apt-get install
# chromium). Everything runs on loopback; the browser is kept off the
# network by its flags.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"' EXIT

go build -o "$tmp/relaynode" ./relaynode/cmd/relaynode
go build -o "$tmp/server" ./examples/echo/server
go build -o "$tmp/client" ./examples/echo/client

"$tmp/relaynode" -listen 127.0.0.1:18480 -admin-listen 127.0.0.1:18490 -log-level warn &
sleep 0.5
"$tmp/server" -relay http://127.0.0.1:18480 -name echo >/dev/null 2>&1 &
"$tmp/server" -relay http://127.0.0.1:18480 -name billing-api >/dev/null 2>&1 &
sleep 0.5
for i in 1 2 3 4 5; do "$tmp/client" -relay 127.0.0.1:18480 -name echo -msg "hello $i" >/dev/null; done
"$tmp/client" -relay 127.0.0.1:18480 -name billing-api -msg "invoice" >/dev/null
"$tmp/client" -relay 127.0.0.1:18480 -name nobody >/dev/null 2>&1 || true

chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$tmp/profile" --window-size=1100,900 \
  --screenshot=docs/status.png http://127.0.0.1:18490/status 2>/dev/null
echo "wrote docs/status.png"
