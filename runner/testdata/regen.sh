#!/usr/bin/env bash
# Regenerates the per-version fixtures in runner/testdata/<version>/ from real
# runs of the pinned restic binaries (see README.md). Run from anywhere:
#
#   runner/testdata/regen.sh
#
# RESTIC and RESTIC014 override the binaries (default: .tools/bin/restic and
# .tools/bin/restic-0.14.0, built by `make tools`). The repository and data
# live under a fixed directory, $FIX, so that paths in the fixtures are
# stable; it is removed first and at the end.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
RESTIC=${RESTIC:-$root/.tools/bin/restic}
RESTIC014=${RESTIC014:-$root/.tools/bin/restic-0.14.0}
FIX=/tmp/restic-manager-fixture

cleanup() {
	if [ -n "${holder:-}" ]; then kill -9 "$holder" 2>/dev/null || true; wait "$holder" 2>/dev/null || true; fi
	rm -rf "$FIX"
}
trap cleanup EXIT

# rec NAME ARGS...: run restic, keep its stdout, stderr and exit code.
rec() {
	local name=$1; shift
	local code=0
	"$R" "$@" >"$out/$name.stdout" 2>"$out/$name.stderr" </dev/null || code=$?
	echo "$code" >"$out/$name.exit"
	echo "  $name: exit $code"
}

ids() { grep -o '"id":"[0-9a-f]\{64\}"' "$1" | cut -d'"' -f4; }

gen() {
	R=$1
	local version
	version=$("$R" version | awk '{print $2}')
	out=$here/$version
	echo "restic $version -> $out"
	rm -rf "$out" "$FIX"
	mkdir -p "$out" "$FIX/src/sub/deeper"
	printf 'fixture-password\n' >"$FIX/pw"
	printf 'wrong-password\n' >"$FIX/wrong-pw"
	export RESTIC_REPOSITORY=$FIX/repo RESTIC_PASSWORD_FILE=$FIX/pw RESTIC_CACHE_DIR=$FIX/cache
	unset RESTIC_PASSWORD RESTIC_PASSWORD_COMMAND RESTIC_REPOSITORY_FILE RESTIC_PROGRESS_FPS

	"$R" init >/dev/null
	echo one >"$FIX/src/a.txt"
	echo two >"$FIX/src/sub/b.txt"
	echo three >"$FIX/src/sub/deeper/c.txt"
	"$R" backup --json --host h1 --tag t1 "$FIX/src" >/dev/null
	echo changed >"$FIX/src/a.txt"
	echo new >"$FIX/src/sub/new.txt"
	rm "$FIX/src/sub/deeper/c.txt"
	"$R" backup --json --host h1 --tag t1 "$FIX/src" >/dev/null
	"$R" backup --json --host h2 "$FIX/src" >/dev/null

	# Three snapshots: h1 (a.txt "one", sub/b.txt, sub/deeper/c.txt), h1
	# (a.txt changed, sub/new.txt added, c.txt removed), h2 (same tree).
	rec snapshots snapshots --json
	mapfile -t snap < <(ids "$out/snapshots.stdout")
	rec snapshots-h2 snapshots --json --host=h2
	rec stats stats --json
	rec stats-raw stats --json --mode=raw-data
	rec diff diff --json "${snap[0]}" "${snap[1]}"
	rec ls ls --json "${snap[0]}" "$FIX/src/sub"
	rec ls-root ls --json "${snap[0]}" /
	rec ls-all ls --json "${snap[0]}"
	rec restore restore --json --target="$FIX/target" --verify "${snap[1]}"
	rec restore-include restore --json --target="$FIX/target2" --include="$FIX/src/sub" "${snap[0]}"

	# A live lock (a backup reading stdin), then a stale one (killed).
	mkfifo "$FIX/fifo"
	"$R" backup --stdin --host h3 <"$FIX/fifo" >/dev/null 2>&1 &
	holder=$!
	exec 3>"$FIX/fifo"
	for _ in $(seq 100); do
		[ -n "$("$R" list locks --no-lock 2>/dev/null)" ] && break
		sleep 0.1
	done
	rec list-locks list locks --no-lock
	rec cat-lock cat lock "$(head -1 "$out/list-locks.stdout")" --no-lock
	rec locked prune
	rec unlock-live unlock
	kill -9 "$holder"; wait "$holder" 2>/dev/null || true; holder=
	exec 3>&-
	rec unlock unlock
	rec unlock-none unlock

	rec forget-dry forget --json --dry-run --keep-last=1 --keep-within=1h
	rec forget forget --json --keep-last=1
	echo newer >"$FIX/src/a.txt"
	"$R" backup --json --host h1 --tag t1 "$FIX/src" >/dev/null
	rec forget-prune forget --json --keep-last=1 --host=h1 --prune
	rec forget-none forget --json
	echo newest >"$FIX/src/a.txt"
	"$R" backup --json --host h1 --tag t1 "$FIX/src" >/dev/null
	"$R" forget --keep-last=1 --host=h1 >/dev/null
	rec prune prune
	rec prune-nothing prune
	rec check check --json
	rec check-subset check --json --read-data-subset=1/2

	rec wrong-password snapshots --json --password-file="$FIX/wrong-pw"
	rec no-repo snapshots --json --repo="$FIX/no-repo"

	# Damage one data pack (the largest file under data/), then check.
	local pack
	pack=$(find "$FIX/repo/data" -type f -printf '%s %p\n' | sort -n | tail -1 | cut -d' ' -f2)
	chmod u+w "$pack"
	printf 'garbage!' | dd of="$pack" bs=1 seek=40 conv=notrunc status=none
	rec check-errors check --json --read-data

	# The machine's host name, where restic records it (locks).
	local h
	h=$(hostname)
	sed -i -e "s/\"hostname\": *\"$h\"/\"hostname\": \"fixture-host\"/g" -e "s/ on $h by / on fixture-host by /g" \
		"$out"/*.stdout "$out"/*.stderr
	rm -rf "$FIX"
}

gen "$RESTIC014"
gen "$RESTIC"
