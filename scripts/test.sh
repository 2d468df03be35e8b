#!/usr/bin/env bash
# test.sh is `make test`: static checks, then the whole suite with the race detector
# against a real, throwaway PostgreSQL cluster (or TEST_DATABASE_URL when set).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== static checks"
unformatted=$(find . -name '*.go' -not -path './.data/*' -not -path '*/node_modules/*' -print0 | xargs -0 gofmt -l)
if [ -n "$unformatted" ]; then
	echo "gofmt would change these files (run gofmt -w):"; echo "$unformatted"; exit 1
fi
go vet ./...
# Generated templ code is committed; it must be what the .templ files generate.
go tool templ generate >/dev/null
if [ -n "$(git status --porcelain -- '*_templ.go' 2>/dev/null)" ]; then
	echo "go tool templ generate changed these generated files; commit them:"
	git status --porcelain -- '*_templ.go'
	exit 1
fi

if [ -z "${TEST_DATABASE_URL:-}" ]; then
	tmp=$(mktemp -d /tmp/hybridrt-test.XXXXXX)
	chmod 755 "$tmp"
	cleanup() { scripts/pg.sh stop "$tmp/pg"; rm -rf "$tmp"; }
	trap cleanup EXIT
	echo "== starting a throwaway PostgreSQL cluster in $tmp/pg"
	# Durability is irrelevant for a throwaway cluster; speed is not.
	TEST_DATABASE_URL=$(PG_DATABASE=postgres PG_MAX_CONNECTIONS=500 \
		PG_EXTRA_CONF=$'fsync = off\nsynchronous_commit = off\nfull_page_writes = off' \
		scripts/pg.sh start "$tmp/pg")
	export TEST_DATABASE_URL
fi

echo "== JavaScript SDK: build check and unit tests"
(cd clients/js && npm ci --no-audit --no-fund --loglevel=error && npm run --silent check && npm test)

echo "== go test -race ./..."
go test -race -count=1 "$@" ./...

# A short run of every fuzz target; seeds and past crashers live in testdata/fuzz.
fuzztime=${FUZZTIME:-5s}
echo "== fuzzing each target for $fuzztime"
for target in \
	./internal/realtime:FuzzSSEEncode ./internal/realtime:FuzzPublishDecode \
	./internal/realtime:FuzzLastEventID ./internal/channel:FuzzChannelName \
	./internal/auth:FuzzAPIKeyParse ./internal/auth:FuzzJWTVerify \
	./internal/ssetest:FuzzParserChunking; do
	go test -run '^$' -fuzz "^${target#*:}\$" -fuzztime "$fuzztime" "${target%%:*}" >/dev/null ||
		{ echo "fuzz target ${target#*:} failed; rerun: go test -run '^$' -fuzz '^${target#*:}\$' ${target%%:*}"; exit 1; }
	echo "ok   ${target#*:}"
done
