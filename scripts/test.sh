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

# The real Pusher clients the Pusher door's tests drive (pusherjs_helpers_test.go):
# installed when missing or older than their lock file; the Go library's module too.
pusher=cmd/api/testdata/pusher
if [ "$pusher/package-lock.json" -nt "$pusher/node_modules/.package-lock.json" ]; then
	echo "== installing the Pusher clients in $pusher"
	(cd "$pusher" && npm ci --no-audit --no-fund --loglevel=error)
fi
(cd "$pusher/goserver" && go mod download)

echo "== go test -race ./..."
go test -race -count=1 "$@" ./...

# A short run of every fuzz target; seeds and past crashers live in testdata/fuzz.
fuzztime=${FUZZTIME:-5s}
echo "== fuzzing each target for $fuzztime"
for target in \
	./internal/realtime:FuzzSSEEncode ./internal/realtime:FuzzPublishDecode \
	./internal/realtime:FuzzLastEventID ./internal/channel:FuzzChannelName \
	./internal/auth:FuzzAPIKeyParse ./internal/auth:FuzzJWTVerify ./internal/web:FuzzResolve \
	./internal/ssetest:FuzzParserChunking; do
	pkg=${target%%:*} name=${target#*:}
	log=$(mktemp)
	ok=
	for attempt in 1 2; do
		if go test -run '^$' -fuzz "^$name\$" -fuzztime "$fuzztime" "$pkg" >"$log" 2>&1; then
			ok=1
			break
		fi
		# A failing input is saved under testdata/fuzz: a real finding, not
		# retried. Without one, the fuzzer's own machinery failed (a worker
		# lost under load): try once more.
		if [ -n "$(git status --porcelain -- "$pkg/testdata/fuzz/$name")" ]; then
			break
		fi
		echo "fuzz target $name failed without a failing input (attempt $attempt):"
		tail -n 5 "$log"
	done
	if [ -z "$ok" ]; then
		cat "$log"
		echo "fuzz target $name failed; rerun: go test -run '^$' -fuzz '^$name\$' $pkg"
		rm -f "$log"
		exit 1
	fi
	rm -f "$log"
	echo "ok   $name"
done
