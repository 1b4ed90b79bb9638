#!/bin/sh
# test-lab-libvirtd.sh: libvirtd restarted in the middle of `up`, `test` and
# `down` (the guests' QEMU processes live on; ivlab's connection and agent
# streams do not). Each fails with a message or completes; afterwards the
# lab works again, or `down` removes all of it. Runs alone (lab-lib.sh's
# exclusive lock): it takes libvirtd away from every other test.
IVLAB_TEST_RESTARTS_LIBVIRTD=1
. "$top_srcdir/tests/lib.sh"
. "$top_srcdir/tests/lab-lib.sh"

missing=$(image_tools_missing x86_64)
[ -z "$missing" ] || skip_or_fail "x86_64 images need: $missing"

# restart_libvirtd: as the host runs it (systemd, or as setup-host.sh
# starts it), then wait until it answers again.
restart_libvirtd() {
	if [ -d /run/systemd/system ]; then
		systemctl restart libvirtd
	else
		pkill -x libvirtd
		wait_until 30 sh -c '! pgrep -x libvirtd >/dev/null'
		# Not with the suite's lock (fd 8): a daemon that kept it would
		# hold every later lab test off for good.
		"$top_srcdir/setup-host.sh" --daemons 8>&-
	fi
	wait_until 60 libvirt_up
}

name=${IVLAB_TEST_LAB_NAME:-ivlabtest-lvd}
lab=$(make_lab pair.xml "$name")
lab_names=$name
"$IVLAB" -q down "$name" >/dev/null 2>&1 || true

# During up, while the guests boot.
"$IVLAB" -v -f "$lab" up >"$scratch/up.log" 2>&1 &
up_pid=$!
wait_until 300 grep -q "$name-left: starting" "$scratch/up.log"
check "libvirtd restarted during up" restart_libvirtd
wait $up_pid
status=$?
diag "up exited $status: $(grep -v console "$scratch/up.log" | tail -3)"
if [ $status -eq 0 ]; then
	ok "up survived the restart"
else
	check "up that lost libvirtd fails with a message" \
		grep -qi "libvirt" "$scratch/up.log"
fi
# Whatever up left, up again completes the lab.
check "up after the restart brings the lab up" run_logged up2 "$IVLAB" -f "$lab" up
check "... and the suite passes" run_logged test1 "$IVLAB" -f "$lab" test --no-restart

# During test: the agents' streams go through libvirtd.
virsh -q suspend "$name-right" >/dev/null
"$IVLAB" -f "$lab" test --tap --no-restart --timeout 60 >"$scratch/test.tap" 2>"$scratch/test.err" &
test_pid=$!
wait_until 120 grep -q '^ok 1 - agent/left' "$scratch/test.tap"
check "libvirtd restarted during test" restart_libvirtd
virsh -q resume "$name-right" >/dev/null
start=$(date +%s)
wait $test_pid
status=$?
took=$(($(date +%s) - start))
check "test that lost libvirtd fails (exit $status) in bounded time ($took s)" \
	test $status -eq 1 -a $took -lt 300
check "... naming a failed check with its reason" grep -q "^not ok .* - .*: ." "$scratch/test.tap"
diag "$(grep '^not ok' "$scratch/test.tap" | head -3)" "$(tail -2 "$scratch/test.err")"
check "the suite passes again after the restart" run_logged test2 "$IVLAB" -f "$lab" test --no-restart

# During down.
"$IVLAB" -f "$lab" down >"$scratch/down.log" 2>&1 &
down_pid=$!
restart_libvirtd
wait $down_pid
status=$?
diag "down during the restart exited $status: $(tail -2 "$scratch/down.log")"
check "down after the restart completes" run_logged down2 "$IVLAB" -f "$lab" down
check_clean "$name" "after down nothing of the lab remains"
tap_done
