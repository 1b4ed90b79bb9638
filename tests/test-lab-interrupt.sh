#!/bin/sh
# test-lab-interrupt.sh: faults in the middle of the lifecycle, over a real
# libvirtd: `up` interrupted (SIGINT, SIGTERM) while it builds images, once
# its servers run, once a domain is defined and while its guests boot undoes
# what it made and exits 128+N; two `up`s of
# one lab at once bring it up once (the second waits for the first, then
# finds it up); the server killed in the middle of `ivlab test` makes the
# suite fail with a reason, in bounded time, `up` starts it again (with the
# guests attached) and `down` still cleans up; a
# guest's kernel crashing mid-test fails the suite naming it, and the guest
# comes back.
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
interrupt_at INT "$name-left: defined" "Ctrl-C once a domain is defined"
interrupt_at TERM "$name-left: starting" "SIGTERM while the guests boot"

# While the images are built: a state directory with the Debian packages
# in its cache but no image yet. No image is left half-made.
fresh=$scratch/fresh-state
mkdir -p "$fresh/cache"
chmod 0755 "$scratch" "$fresh"
[ -d "$state/cache/debs" ] && cp -a "$state/cache/debs" "$fresh/cache/"
IVLAB_STATE_DIR=$fresh "$IVLAB" -v -f "$lab" up >"$scratch/img.log" 2>&1 &
up_pid=$!
if wait_until 300 grep -q "x86_64: reading linux-image" "$scratch/img.log"; then
	kill -INT $up_pid
	wait $up_pid
	status=$?
	check "Ctrl-C while the images are built: up exits 130 (got $status)" test $status -eq 130
	check "... no image is left that looks usable" \
		sh -c "! ls '$fresh'/images/*/manifest 2>/dev/null | grep -q ."
	check "... and nothing of the lab" sh -c "[ -z \"\$(virsh -q list --all --name | grep '^$name-')\" ] &&
		! pgrep -f '[i]vlab server.*$fresh/labs/$name/' >/dev/null"
else
	not_ok "Ctrl-C while the images are built: up never started building"
	kill -9 $up_pid 2>/dev/null
	wait $up_pid
fi
diag "$(tail -3 "$scratch/img.log")"

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
check "up after the server died starts it again, with the guests attached" \
	run_logged upagain "$IVLAB" -f "$lab" up
check "... and says so" grep -q "server is gone: starting it again, and the guests attached to it ($name-left, $name-right)" \
	"$scratch/upagain.log"
check "... and the suite passes again" run_logged testagain "$IVLAB" -f "$lab" test --no-restart
check "down after the server was killed" run_logged down "$IVLAB" -f "$lab" down
check_clean "$name" "after down nothing of the lab remains"

# A guest's kernel crashing in the middle of the suite: a lab test whose
# step panics right (panic=-1: it reboots). The suite fails naming it, in
# bounded time; right comes back by itself and the checks pass again.
crash=$scratch/crash.xml
sed 's|</lab>|  <test name="crash" timeout="60s"><step guest="right">echo c \> /proc/sysrq-trigger</step></test>\n</lab>|' \
	"$lab" >"$crash"
if run_logged up2 "$IVLAB" -f "$crash" up; then
	start=$(date +%s)
	"$IVLAB" -f "$crash" test --tap --no-restart --timeout 60 >"$scratch/crash.tap" 2>"$scratch/crash.err"
	status=$?
	took=$(($(date +%s) - start))
	check "test with a guest crashing in a step fails (exit $status) in bounded time ($took s)" \
		test $status -eq 1 -a $took -lt 300
	check "... the crash test fails naming the guest" grep -q "^not ok .* - lab/crash: .*right" "$scratch/crash.tap"
	check "... and the built-in checks before it passed" grep -q "^ok .* - pattern/bell/host" "$scratch/crash.tap"
	diag "$(grep '^not ok' "$scratch/crash.tap" | head -3)"
	"$IVLAB" -f "$lab" test --tap --no-restart --timeout 300 >"$scratch/after.tap" 2>&1
	status=$?
	check "after its reboot the crashed guest passes the suite again (exit $status)" test $status -eq 0
	[ $status -eq 0 ] || diag "$(grep '^not ok' "$scratch/after.tap" | head -3)"
else
	not_ok "up for the crash test"
fi
check "down after the crash" run_logged down2 "$IVLAB" -f "$lab" down
check_clean "$name" "after down nothing of the lab remains"
tap_done
