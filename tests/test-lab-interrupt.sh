#!/bin/sh
# test-lab-interrupt.sh: faults in the middle of the lifecycle, over a real
# libvirtd: `up` interrupted (SIGINT, SIGTERM) once its servers run and
# while its guests boot undoes what it made and exits 128+N; two `up`s of
# one lab at once bring it up once (the second waits for the first, then
# finds it up); the server killed in the middle of `ivlab test` makes the
# suite fail with a reason, in bounded time, and `down` still cleans up.
. "$top_srcdir/tests/lib.sh"
. "$top_srcdir/tests/lab-lib.sh"

missing=$(image_tools_missing x86_64)
[ -z "$missing" ] || skip_or_fail "x86_64 images need: $missing"

name=${IVLAB_TEST_LAB_NAME:-ivlabtest-intr}
lab=$(make_lab pair.xml "$name")
lab_names=$name
"$IVLAB" -q down "$name" >/dev/null 2>&1 || true

# interrupt_at SIGNAL PATTERN DESCRIPTION: start up, send SIGNAL once its
# -v output shows PATTERN, then check the status and that nothing is left.
interrupt_at() {
	"$IVLAB" -v -f "$lab" up >"$scratch/intr.log" 2>&1 &
	up_pid=$!
	if ! wait_until 300 grep -q "$2" "$scratch/intr.log"; then
		not_ok "$3: up never printed '$2'"
		diag "$(tail -20 "$scratch/intr.log")"
		kill -9 $up_pid 2>/dev/null
		wait $up_pid
		"$IVLAB" -q -f "$lab" down >/dev/null 2>&1
		return
	fi
	kill -"$1" $up_pid
	wait $up_pid
	status=$?
	case $1 in
	INT) want=130 ;;
	TERM) want=143 ;;
	esac
	check "$3: up exits $want (got $status) and says it was interrupted" \
		sh -c "[ $status -eq $want ] && grep -q 'interrupted by SIG$1' '$scratch/intr.log'"
	check_clean "$name" "$3: nothing of the lab is left"
	[ "$(leftovers "$name")" ] && diag "$(tail -20 "$scratch/intr.log")"
	"$IVLAB" -q -f "$lab" down >/dev/null 2>&1
}

interrupt_at INT "server for region bell: listening" "Ctrl-C once the server runs"
interrupt_at TERM "$name-left: starting" "SIGTERM while the guests boot"

# Two ups at once: one lab, once.
"$IVLAB" -f "$lab" up >"$scratch/up1.log" 2>&1 &
up1=$!
"$IVLAB" -f "$lab" up >"$scratch/up2.log" 2>&1 &
up2=$!
wait $up1
s1=$?
wait $up2
s2=$?
check "two ups of one lab at once both succeed (exit $s1 and $s2)" test $s1 -eq 0 -a $s2 -eq 0
check "... one waited for the other and found the lab up" \
	sh -c "cat '$scratch/up1.log' '$scratch/up2.log' | grep -q \"lab '$name': waiting for another ivlab command\" &&
	       cat '$scratch/up1.log' '$scratch/up2.log' | grep -q 'already up'"
domains=$(virsh -q list --name | grep -c "^$name-")
check "... and the lab has its two guests running ($domains)" test "$domains" -eq 2
[ $s1 -eq 0 ] && [ $s2 -eq 0 ] || diag "$(cat "$scratch/up1.log" "$scratch/up2.log")"

# The server killed in the middle of the suite.
# The suite takes a second here: right is paused so that it waits for
# right's hello after it checked left; the server is killed then, and
# right resumed.
virsh -q suspend "$name-right" >/dev/null
"$IVLAB" -f "$lab" test --tap --no-restart --timeout 60 >"$scratch/test.tap" 2>"$scratch/test.err" &
test_pid=$!
wait_until 120 grep -q '^ok 1 - agent/left' "$scratch/test.tap"
pkill -f "[i]vlab server.*$state/labs/$name/"
virsh -q resume "$name-right" >/dev/null
start=$(date +%s)
wait $test_pid
status=$?
took=$(($(date +%s) - start))
check "test with its server killed fails (exit $status) within 5 minutes ($took s)" \
	test $status -eq 1 -a $took -lt 300
check "... and a failed check says the server is gone" \
	grep -q "^not ok .*server" "$scratch/test.tap"
diag "$(grep '^not ok' "$scratch/test.tap" | head -5)" "$(tail -3 "$scratch/test.err")"
check "down after the server was killed" run_logged down "$IVLAB" -f "$lab" down
check_clean "$name" "after down nothing of the lab remains"
tap_done
