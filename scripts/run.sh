#!/usr/bin/env bash
# run.sh is `make run`: the service on $ADDR (default :8080) with everything it needs.
# With DATABASE_URL unset it starts (and on exit stops) a private PostgreSQL cluster
# under .data/pg, which keeps its data between runs. With SECRET_KEY unset it uses
# one generated once and kept in .data/secret_key (development only: production
# must set SECRET_KEY itself).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .data

started_pg=
if [ -z "${DATABASE_URL:-}" ]; then
	DATABASE_URL=$(scripts/pg.sh start .data/pg)
	export DATABASE_URL
	started_pg=1
fi
if [ -z "${SECRET_KEY:-}" ]; then
	if [ ! -s .data/secret_key ]; then
		(umask 077 && od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >.data/secret_key)
		echo "run.sh: generated a development SECRET_KEY in .data/secret_key" >&2
	fi
	SECRET_KEY=$(cat .data/secret_key)
	export SECRET_KEY
fi

go build -o .data/api ./cmd/api

# Run the service as a child so the cluster can be stopped when it exits.
.data/api serve &
api=$!

# Say where to go once it answers.
addr=${ADDR:-:8080}
host=${addr%:*}
case "$host" in "" | 0.0.0.0 | "[::]") host=localhost ;; esac
url=${PUBLIC_URL:-http://$host:${addr##*:}}
for _ in $(seq 1 150); do
	if curl -sf "$url/healthz" >/dev/null 2>&1; then
		printf '\nhybridrt is up: console at %s/console, API at %s (Ctrl-C stops it)\n\n' "$url" "$url" >&2
		break
	fi
	kill -0 $api 2>/dev/null || break
	sleep 0.2
done
trap 'kill -TERM $api 2>/dev/null || true' INT TERM
status=0
wait $api || status=$?
# A signal interrupts the first wait; wait again for the service to finish draining.
kill -0 $api 2>/dev/null && { wait $api || status=$?; }
[ -n "$started_pg" ] && scripts/pg.sh stop .data/pg
exit $status
