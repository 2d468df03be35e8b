#!/usr/bin/env bash
# pg.sh manages a private PostgreSQL cluster for `make run` and `make test`.
#
#   scripts/pg.sh start DIR   init (first time) and start a cluster in DIR; print its DATABASE_URL
#   scripts/pg.sh stop DIR    stop it
#   scripts/pg.sh restart DIR restart it (fast shutdown), as fault tests do
#   scripts/pg.sh crash DIR   stop it as a crash would (immediate shutdown: no checkpoint,
#                             crash recovery on the next start), as fault tests do
#
# PostgreSQL refuses to run as root, so when we are root the cluster runs as the
# unprivileged `postgres` user. That user must be able to reach DIR: when DIR sits
# under a folder it cannot enter (a checkout under /root, say), the cluster lives
# in /var/lib/hybridrt/<name> instead, and this script says so on stderr.
# Everything but the DATABASE_URL goes to stderr, so `url=$(scripts/pg.sh start d)` works.
set -euo pipefail

say() { printf 'pg.sh: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

find_bindir() {
	local d
	for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
		[ -x "$d/initdb" ] && { echo "$d"; return 0; }
	done
	if command -v initdb >/dev/null 2>&1; then dirname "$(command -v initdb)"; return 0; fi
	return 1
}

bindir() {
	local d
	if d=$(find_bindir); then echo "$d"; return; fi
	[ "$(id -u)" = 0 ] || die "PostgreSQL binaries not found; install them (Debian/Ubuntu: sudo apt-get install -y postgresql) or set DATABASE_URL"
	say "PostgreSQL binaries not found; installing the postgresql package with apt-get"
	DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
	find_bindir || die "apt-get installed postgresql but initdb is still missing"
}

# as_pg runs a command as the cluster's owner: ourselves, or `postgres` when we are root.
as_pg() {
	if [ "$(id -u)" = 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

ensure_pg_user() {
	[ "$(id -u)" = 0 ] || return 0
	id postgres >/dev/null 2>&1 && return 0
	say "creating the unprivileged system user 'postgres' to own the cluster"
	useradd --system --home-dir /var/lib/postgresql --shell /usr/sbin/nologin postgres
}

# resolve_dir prints where the cluster for DIR really lives.
resolve_dir() {
	local dir=$1 parent
	mkdir -p "$(dirname "$dir")"
	parent=$(cd "$(dirname "$dir")" && pwd)
	if [ "$(id -u)" = 0 ] && ! runuser -u postgres -- test -x "$parent" 2>/dev/null; then
		local alt
		alt=/var/lib/hybridrt/$(printf '%s' "$parent/$(basename "$dir")" | cksum | cut -d' ' -f1)
		say "user postgres cannot enter $parent; keeping the cluster in $alt"
		echo "$alt"
		return
	fi
	echo "$parent/$(basename "$dir")"
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# pick_port starts its search at a random port of the range, so clusters
# started at the same moment (parallel fault tests) rarely race for one port.
pick_port() {
	local want=$1 p i start=$((RANDOM % 101))
	if [ -n "$want" ] && port_free "$want"; then echo "$want"; return; fi
	for i in $(seq 0 100); do
		p=$((54320 + (start + i) % 101))
		port_free "$p" && { echo "$p"; return; }
	done
	die "no free TCP port in 54320-54420 for PostgreSQL"
}

cmd_start() {
	local dir bin port
	bin=$(bindir)
	ensure_pg_user
	dir=$(resolve_dir "$1")
	mkdir -p "$dir"
	[ "$(id -u)" = 0 ] && chown postgres: "$dir"
	chmod 700 "$dir"

	if [ ! -f "$dir/PG_VERSION" ]; then
		say "initialising a PostgreSQL cluster in $dir"
		as_pg "$bin/initdb" -D "$dir" -U postgres --auth=trust -E UTF8 --no-locale >"$dir.initdb.log" 2>&1 ||
			{ cat "$dir.initdb.log" >&2; die "initdb failed"; }
		rm -f "$dir.initdb.log"
		# Loopback TCP only; no Unix socket, so nothing clashes with a system cluster.
		as_pg tee -a "$dir/postgresql.conf" >/dev/null <<-CONF
			listen_addresses = '127.0.0.1'
			unix_socket_directories = ''
			max_connections = ${PG_MAX_CONNECTIONS:-200}
			${PG_EXTRA_CONF:-}
		CONF
	fi

	if as_pg "$bin/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
		port=$(cat "$dir/hybridrt.port")
	else
		# PG_PORT asks for a port on the first start (a test that crashes its
		# cluster keeps it outside the range other clusters scan, so none
		# takes it while this one is down); later starts reuse the same one.
		local want attempt
		want=$(cat "$dir/hybridrt.port" 2>/dev/null || echo "${PG_PORT:-}")
		# A port can be free to connect to yet not to bind (another cluster
		# starting at the same moment, or a client's ephemeral port): then
		# try another one.
		for attempt in 1 2 3 4 5; do
			port=$(pick_port "$want")
			echo "$port" | as_pg tee "$dir/hybridrt.port" >/dev/null
			as_pg "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 -o "-p $port" start >/dev/null && break
			if [ "$attempt" = 5 ] || ! grep -q "could not bind" "$dir/server.log"; then
				tail -n 20 "$dir/server.log" >&2
				die "PostgreSQL did not start; see $dir/server.log"
			fi
			say "port $port is taken; trying another"
			want=
		done
	fi

	local db=${PG_DATABASE:-hybridrt}
	if ! as_pg "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -tAqc \
		"SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1; then
		as_pg "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres "$db"
	fi
	echo "postgres://postgres@127.0.0.1:$port/$db?sslmode=disable"
}

cmd_stop() {
	local dir bin
	bin=$(bindir)
	dir=$(resolve_dir "$1")
	[ -f "$dir/PG_VERSION" ] || return 0
	as_pg "$bin/pg_ctl" -D "$dir" -m fast -w stop >/dev/null 2>&1 || true
}

cmd_restart() {
	local dir bin
	bin=$(bindir)
	dir=$(resolve_dir "$1")
	as_pg "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -m fast -w -t 60 -o "-p $(cat "$dir/hybridrt.port")" restart >/dev/null
}

cmd_crash() {
	local dir bin
	bin=$(bindir)
	dir=$(resolve_dir "$1")
	as_pg "$bin/pg_ctl" -D "$dir" -m immediate -w stop >/dev/null
}

case "${1:-}" in
start) [ $# -eq 2 ] || die "usage: pg.sh start DIR"; cmd_start "$2" ;;
stop) [ $# -eq 2 ] || die "usage: pg.sh stop DIR"; cmd_stop "$2" ;;
restart) [ $# -eq 2 ] || die "usage: pg.sh restart DIR"; cmd_restart "$2" ;;
crash) [ $# -eq 2 ] || die "usage: pg.sh crash DIR"; cmd_crash "$2" ;;
*) die "usage: pg.sh start|stop|restart|crash DIR" ;;
esac
