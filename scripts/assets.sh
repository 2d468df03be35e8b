#!/usr/bin/env bash
# assets.sh re-vendors the third-party files of the admin console, htmx and its
# SSE extension, into views/static/ from the exact versions pinned there.
#
#   scripts/assets.sh           # install the pinned versions, overwrite the two files
#   scripts/assets.sh --check   # install them, only compare; exit 1 if a file differs
#
# Why: the console is served from the Go binary to machines that are offline, so
# the files are committed rather than loaded from a CDN. views/static/package.json
# and package-lock.json record which versions they are, and the lock's integrity
# hashes pin the exact tarballs; `npm ci` refuses anything that does not match.
# Running this script and seeing no `git diff` proves the committed files are
# those of the recorded versions. To move to another version, change the two
# pins in package.json, regenerate the lock (npm install --package-lock-only in
# a copy of the folder), run this script and update LICENSES.txt and README.md.
#
# npm runs in a throwaway folder, so no node_modules is ever left in the
# repository; the folder is removed on exit, whatever happens.
set -euo pipefail

say() { printf 'assets.sh: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

check=false
case "${1:-}" in
	"") ;;
	--check) check=true ;;
	*) die "usage: scripts/assets.sh [--check]" ;;
esac

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
static="$root/views/static"
command -v npm >/dev/null 2>&1 || die "npm is not installed (Debian/Ubuntu: apt-get install -y npm)"
[ -f "$static/package.json" ] && [ -f "$static/package-lock.json" ] ||
	die "$static/package.json or package-lock.json is missing"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/hybridrt-assets.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

cp "$static/package.json" "$static/package-lock.json" "$tmp/"
# --ignore-scripts: nothing from the registry runs on this machine; these
# packages ship their built files and need no install step.
(cd "$tmp" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2)

# source in node_modules -> file in views/static
files=(
	"htmx.org/dist/htmx.min.js:htmx.min.js"
	"htmx-ext-sse/dist/sse.min.js:htmx-ext-sse.js"
)

differ=0
for f in "${files[@]}"; do
	src="$tmp/node_modules/${f%%:*}"
	dst="$static/${f#*:}"
	[ -f "$src" ] || die "the installed package has no ${f%%:*}; did its layout change?"
	if cmp -s "$src" "$dst"; then
		say "${f#*:}: unchanged"
	elif $check; then
		say "${f#*:}: DIFFERS from ${f%%:*} of the pinned version"
		differ=1
	else
		cp "$src" "$dst"
		say "${f#*:}: updated from ${f%%:*}"
	fi
done

for p in htmx.org htmx-ext-sse; do
	v=$(sed -n 's/^  "version": "\(.*\)",$/\1/p' "$tmp/node_modules/$p/package.json")
	say "$p $v"
done
exit "$differ"
