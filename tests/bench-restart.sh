#!/bin/sh
# bench-restart.sh: the edit -> restart -> test loop, timed. Brings up
# tests/data/restart/restart.lab.xml (guests a and b on a doorbell region)
# under a bench-only name, then RUNS times: edits one line of guest a's
# module, runs `ivlab -v restart` and `ivlab test --filter 'doorbell/*'`,
# and prints the wall seconds from the edit to the passing test, split into
# the rebuild (until the guest is stopped), the restart to the agent's hello
# and the test. Takes the lab down at the end.
#   make bench-restart [RUNS=3]   or   tests/bench-restart.sh [RUNS]
# Needs what tests/test-lab-restart.sh needs (root, libvirtd); honours
# IVLAB_STATE_DIR and IVLAB (the ivlab binary, default ./ivlab).
set -u
top_srcdir=${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}
bench=restart
. "$top_srcdir/tests/bench-lib.sh"
runs=${1:-3}
name=${IVLAB_BENCH_LAB:-ivlabbench-restart}
trap '"$IVLAB" -q down "$name" >/dev/null 2>&1; rm -rf "$scratch"' EXIT

cp -r "$top_srcdir/tests/data/restart" "$top_srcdir/tests/data/modules" "$scratch/"
chmod -R u+w "$scratch"
chmod 0755 "$scratch" "$scratch/restart"
lab=$scratch/restart/restart.lab.xml
renamed "$lab" "$name" >"$scratch/lab.xml" && mv "$scratch/lab.xml" "$lab"
source=$scratch/modules/ivtest/ivtest.c

now() { date +%s.%N; }

"$IVLAB" -q down "$name" >/dev/null 2>&1
echo "bringing up $name ..."
"$IVLAB" -q -f "$lab" up || exit 1

echo "run  edit->pass  rebuild  restart->hello  test   (wall seconds)"
i=1
while [ "$i" -le "$runs" ]; do
	edited=$(now)
	sed -i "s/static char \*greeting = \"[^\"]*\";/static char *greeting = \"run$i\";/" "$source"
	# Each line of restart's -v output, stamped as it arrives.
	"$IVLAB" -v -f "$lab" restart 2>&1 | while IFS= read -r line; do
		echo "$(now) $line"
	done >"$scratch/restart.$i.log"
	stopped=$(awk '/: stopped$/ { print $1; exit }' "$scratch/restart.$i.log")
	restarted=$(now)
	grep -q 'guests restarted' "$scratch/restart.$i.log" || {
		echo "run $i: restart failed:"; tail -20 "$scratch/restart.$i.log"; exit 1; }
	"$IVLAB" -f "$lab" test --filter 'doorbell/*' >"$scratch/test.$i.log" 2>&1 || {
		echo "run $i: test failed:"; cat "$scratch/test.$i.log"; exit 1; }
	passed=$(now)
	[ "$("$IVLAB" -f "$lab" exec a cat /sys/module/ivtest/parameters/greeting)" = "run$i" ] || {
		echo "run $i: guest a does not run the edited module"; exit 1; }
	awk -v i="$i" -v e="$edited" -v s="$stopped" -v r="$restarted" -v p="$passed" \
		'BEGIN { printf "%3d  %10.1f  %7.1f  %14.1f  %5.1f\n", i, p - e, s - e, r - s, p - r }'
	i=$((i + 1))
done
