#!/bin/sh
# test-lab-restart.sh: iterating on a running lab over a real libvirtd
# (tests/data/restart/restart.lab.xml: guests a and b on one doorbell
# region, a with two modules and a file). One line of a module changes:
# `up` says so and leaves the lab alone, `restart` rebuilds only that
# module (the other is cached), boots only guest a again (b's domain and
# the server keep running) and the suite passes after. Then a module that
# does not compile leaves the guest running, a named guest is restarted
# although unchanged, and a lab file whose domains changed is refused.
# Prints the time from the edit to a passing `ivlab test --filter`.
. "$top_srcdir/tests/lib.sh"
. "$top_srcdir/tests/lab-lib.sh"

name=${IVLAB_TEST_LAB:-ivlabtest-restart}
lab_names=$name
cp -r "$top_srcdir/tests/data/restart" "$top_srcdir/tests/data/modules" "$scratch/"
chmod -R u+w "$scratch"
chmod 0755 "$scratch" "$scratch/restart"
lab=$scratch/restart/restart.lab.xml
sed -i "s/<lab name=\"[^\"]*\"/<lab name=\"$name\"/" "$lab"
source=$scratch/modules/ivtest/ivtest.c
"$IVLAB" -q down "$name" >/dev/null 2>&1 || true

iv() {
	"$IVLAB" -f "$lab" "$@"
}

# expect_status DESCRIPTION STATUS CMD...: the exit status; output in $scratch/out.
expect_status() {
	_desc=$1
	_want=$2
	shift 2
	"$@" >"$scratch/out" 2>&1
	_got=$?
	if [ "$_got" -eq "$_want" ]; then
		ok "$_desc"
	else
		not_ok "$_desc: exit $_got, expected $_want"
		diag "$(tail -20 "$scratch/out")"
	fi
}

domid() {
	virsh -q domid "$name-$1" 2>/dev/null | tr -d ' \n'
}

server_pid() {
	cat "$state/labs/$name/ring.pid" 2>/dev/null
}

now() {
	date +%s.%N
}

since() {
	awk "BEGIN{printf \"%.1f\", $(now) - $1}"
}

expect_status "restart of a lab that is not up fails and says so" 1 iv restart
check "... naming the lab and what to run" grep -q "lab '$name' is not up.*ivlab up" "$scratch/out"
expect_status "restart of an unknown guest is a usage error" 2 iv restart a nosuch
check "... naming the guest" grep -q "has no guest 'nosuch'" "$scratch/out"

if ! run_logged up "$IVLAB" -f "$lab" up; then
	not_ok "up with two modules and a file on guest a"
	tap_done
	exit 1
fi
ok "up with two modules and a file on guest a"
a_id=$(domid a)
b_id=$(domid b)
pid=$(server_pid)

expect_status "restart with nothing changed does nothing" 0 iv restart
check "... and says so" grep -q "nothing changed" "$scratch/out"
check "... both domains kept their ids" test "$(domid a) $(domid b)" = "$a_id $b_id"

# One line of one module.
edited=$(now)
# A comment unique to this run: the module cache (keyed by content) cannot
# have the edited module from an earlier run on this host.
sed -i -e 's/static char \*greeting = "hello";/static char *greeting = "edited";/' \
	-e "1a /* edited by test-lab-restart.sh, run $(date +%s%N) */" "$source"
expect_status "up after a module changed exits 0" 0 iv up
check "up says which guest's module changed and how to apply it" \
	grep -q "guest a: module $scratch/modules/ivtest changed; run 'ivlab restart a' to apply" "$scratch/out"
check "up names no other input or guest" \
	sh -c "! grep -q 'ivnote\|guest b:\|note.txt' '$scratch/out'"
check "up left the lab as it was" test "$(domid a) $(domid b)" = "$a_id $b_id"
diag "$(cat "$scratch/out")"

start=$(now)
expect_status "restart applies it" 0 iv -v restart
restart_s=$(since "$start")
cp "$scratch/out" "$scratch/restart.log"
check "restart rebuilt the changed module" \
	grep -q "building the module $scratch/modules/ivtest " "$scratch/restart.log"
check "the unchanged module came from the cache" \
	sh -c "grep -q 'module $scratch/modules/ivnote (x86_64): cached' '$scratch/restart.log' && ! grep -q 'building the module $scratch/modules/ivnote' '$scratch/restart.log'"
check "restart said why it restarts guest a, and only a" \
	sh -c "grep -q 'guest a: module .*ivtest changed: restarting' '$scratch/restart.log' && ! grep -q 'guest b:' '$scratch/restart.log' && grep -q '1 of 2 guests restarted' '$scratch/restart.log'"
check "guest a was booted again (new domain id)" test "$(domid a)" != "$a_id" -a -n "$(domid a)"
check "guest b kept running (same domain id)" test "$(domid b)" = "$b_id"
check "the server kept running (same pid, alive)" sh -c "[ '$(server_pid)' = '$pid' ] && kill -0 '$pid'"
check "guest a runs the edited module" sh -c "[ \"\$('$IVLAB' -f '$lab' exec a cat /sys/module/ivtest/parameters/greeting)\" = edited ]"
start=$(now)
iv test --tap --filter 'doorbell/*' >"$scratch/test.tap" 2>"$scratch/test.err"
status=$?
test_s=$(since "$start")
total_s=$(since "$edited")
check "ivlab test --filter 'doorbell/*' passes: a rejoined the region" \
	sh -c "[ $status -eq 0 ] && grep -q '^ok .* doorbell/ring/a->b' '$scratch/test.tap' && grep -q '^ok .* doorbell/ring/b->a' '$scratch/test.tap' && ! grep -q '^not ok' '$scratch/test.tap'"
diag "edit to passing test: $total_s s (restart $restart_s s, test $test_s s)"
expect_status "up afterwards has nothing to do" 0 iv up
check "... and says so" grep -q "nothing to do" "$scratch/out"

# A module that does not compile: the guest stays as it is.
a_id=$(domid a)
cp "$source" "$scratch/ivtest.c.good"
echo "this does not compile;" >>"$source"
expect_status "restart with a module that does not compile fails" 1 iv restart
check "... with the compiler's error, the module and the arch" \
	grep -q "module $scratch/modules/ivtest (x86_64) did not compile" "$scratch/out"
check "... and guest a was not stopped" test "$(domid a)" = "$a_id"
cp "$scratch/ivtest.c.good" "$source"

# A guest named is restarted although nothing changed; the others stay.
expect_status "restart b (unchanged) restarts exactly b" 0 iv restart b
check "... b booted again, a kept running" \
	sh -c "[ '$(domid a)' = '$a_id' ] && [ '$(domid b)' != '$b_id' ] && grep -q 'guest b: nothing changed: restarting' '$scratch/out'"
check "the suite's ids check passes with both guests back" \
	sh -c "'$IVLAB' -f '$lab' test --tap --filter 'ids/*' >'$scratch/ids.tap' 2>&1 && grep -q '^ok .* ids/ring' '$scratch/ids.tap'"

# A lab file whose domains changed is for down and up.
cp "$lab" "$scratch/lab.orig"
sed -i 's/memory="256MiB"/memory="320MiB"/' "$lab"
expect_status "restart refuses a lab file whose domains changed" 1 iv restart a
check "... says what differs and to run down and up" \
	sh -c "grep -q 'memory' '$scratch/out' && grep -q \"ivlab down', then 'ivlab up'\" '$scratch/out'"
cp "$scratch/lab.orig" "$lab"

check "down" run_logged down "$IVLAB" -f "$lab" down
check_clean "$name" "after down nothing of the lab remains"
tap_done
