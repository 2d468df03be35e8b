#!/usr/bin/env bash
# chromium.sh makes sure headless Chromium is installed, for the browser tests
# (cmd/api/browser_test.go), and prints its path on stdout.
#
#   path=$(scripts/chromium.sh)
#
# Idempotent: when `chromium` is on PATH it only prints the path. Otherwise, as
# root, it installs Debian's chromium package with apt-get; as anyone else it
# says how to install it and fails. Browser builds cannot be downloaded here,
# so the distribution's package is the only source.
# Everything but the path goes to stderr.
set -euo pipefail

say() { printf 'chromium.sh: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

if path=$(command -v chromium 2>/dev/null); then
	echo "$path"
	exit 0
fi

[ "$(id -u)" = 0 ] || die "chromium is not installed; install it (Debian/Ubuntu: sudo apt-get install -y chromium) and run again"
command -v apt-get >/dev/null 2>&1 || die "chromium is not installed and apt-get is not available; install Chromium by hand"

say "chromium not found; installing the chromium package with apt-get"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq chromium >&2 </dev/null

path=$(command -v chromium 2>/dev/null) || die "apt-get installed chromium but the chromium command is still missing"
echo "$path"
