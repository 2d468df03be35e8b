#!/usr/bin/env bash
# check-drivers.sh runs the Pusher real-client drivers of cmd/api/testdata/pusher
# (pusher-js in Node and Chromium, Laravel Echo, the Node and Go server
# libraries) against Soketi, through TestPusherDriversSoketi, and logs the
# frames Soketi sent. Installs Soketi and the drivers' packages when missing.
#
#   bench/soketi/check-drivers.sh [go test flags]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

if [ ! -x "$here/node_modules/.bin/soketi" ]; then
	echo "== installing Soketi"
	(cd "$here" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
fi
if [ ! -d "$root/cmd/api/testdata/pusher/node_modules" ]; then
	echo "== installing the Pusher clients"
	(cd "$root/cmd/api/testdata/pusher" && npm ci --no-audit --no-fund --loglevel=error)
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
metrics=$(free_port)
log=$(mktemp /tmp/soketi.XXXXXX.log)
SOKETI_DEFAULT_APP_ID=app-id SOKETI_DEFAULT_APP_KEY=app-key SOKETI_DEFAULT_APP_SECRET=app-secret \
SOKETI_DEFAULT_APP_ENABLE_CLIENT_MESSAGES=true SOKETI_DEFAULT_APP_USER_AUTHENTICATION=true \
SOKETI_DEFAULT_APP_MAX_CLIENT_EVENTS_PER_SEC=10 \
SOKETI_HOST=127.0.0.1 SOKETI_PORT=$port SOKETI_METRICS_SERVER_PORT=$metrics \
	"$here/node_modules/.bin/soketi" start >"$log" 2>&1 &
soketi=$!
trap 'kill $soketi 2>/dev/null; wait $soketi 2>/dev/null; rm -f "$log"' EXIT

for _ in $(seq 1 100); do
	curl -fs "http://127.0.0.1:$port/ready" >/dev/null 2>&1 && break
	kill -0 $soketi 2>/dev/null || { cat "$log"; echo "Soketi did not start"; exit 1; }
	sleep 0.1
done
curl -fs "http://127.0.0.1:$port/ready" >/dev/null || { cat "$log"; echo "Soketi is not ready"; exit 1; }
echo "== Soketi on 127.0.0.1:$port"

cd "$root/cmd/api"
SOKETI_URL=http://127.0.0.1:$port SOKETI_APP_ID=app-id SOKETI_KEY=app-key SOKETI_SECRET=app-secret \
	go test -count=1 -run '^TestPusherDriversSoketi$' -v "$@" .
