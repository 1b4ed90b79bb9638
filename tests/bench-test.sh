#!/bin/sh
# bench-test.sh: how long `ivlab test` takes on a running lab, RUNS times,
# median: the whole suite, and without its restart check (--no-restart),
# which shows what the restart still costs after the overlap. With
# BEFORE=/path/to/an/older/ivlab, that binary's suite runs alternately on
# the same lab, side by side.
#   make bench-test [TEST_RUNS=5] [BEFORE=...]   or   tests/bench-test.sh [RUNS]
# Needs root, libvirtd and the images; honours IVLAB, LAB and IVLAB_STATE_DIR.
set -u
top_srcdir=${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}
bench="test"
. "$top_srcdir/tests/bench-lib.sh"
runs=${1:-5}
name=${IVLAB_BENCH_LAB:-ivlabbench-test}
lab=${LAB:-$top_srcdir/domains/default.xml}
trap '"$IVLAB" -q -f "$scratch/lab.xml" down >/dev/null 2>&1; rm -rf "$scratch"' EXIT

# suite FILE IVLAB ARG...: `IVLAB -f LAB test ARG...`, its wall seconds
# appended to FILE.
suite() {
	file=$1 binary=$2
	shift 2
	timed "$file" "$binary" -q -f "$scratch/lab.xml" test "$@" >"$scratch/out" 2>&1 ||
		{ cat "$scratch/out" >&2; die "$binary test $* failed"; }
}

renamed "$lab" "$name" >"$scratch/lab.xml"
"$IVLAB" -q -f "$scratch/lab.xml" up || die "up of $lab failed"
: >"$scratch/full"
: >"$scratch/norestart"
: >"$scratch/before"
for run in $(seq "$runs"); do
	suite "$scratch/full" "$IVLAB"
	suite "$scratch/norestart" "$IVLAB" --no-restart
	line="run $run: test $(tail -1 "$scratch/full") s, --no-restart $(tail -1 "$scratch/norestart") s"
	if [ -n "${BEFORE:-}" ]; then
		suite "$scratch/before" "$BEFORE"
		line="$line, before: test $(tail -1 "$scratch/before") s"
	fi
	echo "  $line"
done
echo "ivlab test of $(basename "$lab"), median of $runs runs: $(median "$scratch/full") s" \
	"(--no-restart $(median "$scratch/norestart") s)"
[ -n "${BEFORE:-}" ] && echo "the same suite by $BEFORE: $(median "$scratch/before") s"
exit 0
