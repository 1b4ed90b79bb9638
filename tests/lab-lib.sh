# lab-lib.sh: what the end-to-end lab tests share: a running libvirtd (started
# when none runs), the shared state dir (images are built once per machine),
# a shipped lab copied under a test-only name, and checks that nothing of a
# lab is left behind. Source it after lib.sh.

export LIBVIRT_DEFAULT_URI=qemu:///system
unset IVLAB_ACCEL

if [ "$(id -u)" -ne 0 ]; then
	skip_or_fail "the lab tests need root (qemu:///system, libvirtd)"
fi
for tool in virsh libvirtd virtlogd "${PYTHON3:-python3}"; do
	command -v "$tool" >/dev/null 2>&1 || skip_or_fail "$tool is missing (run setup-host.sh)"
done
PYTHON3=${PYTHON3:-python3}

# The state dir ivlab uses (src/util.c).
state=${IVLAB_STATE_DIR:-/var/lib/ivlab}

libvirt_up() {
	virsh -q -c qemu:///system version >/dev/null 2>&1
}

# Start the daemons the way setup-host.sh does when nothing runs them, and
# wait for libvirtd to answer (not just for its socket).
ensure_libvirtd() {
	libvirt_up && return 0
	# As setup-host.sh starts them; never with the suite's lock open (fd 8):
	# the daemons would keep it.
	"$top_srcdir/setup-host.sh" --daemons 8>&- >/dev/null 2>&1
	i=0
	while [ $i -lt 150 ]; do
		libvirt_up && return 0
		sleep 0.2
		i=$((i + 1))
	done
	return 1
}
ensure_libvirtd || skip_or_fail "libvirtd does not start (see /var/log/libvirt)"

# test-lab-libvirtd.sh restarts libvirtd: it runs alone. Every lab test
# holds a shared lock on this file for its whole run, that one an exclusive
# lock (IVLAB_TEST_RESTARTS_LIBVIRTD=1), so make -j runs them side by side
# otherwise.
# A test with a long preparation that needs no libvirtd (a kernel build)
# sets IVLAB_TEST_LOCK_LATER=1 and calls lock_libvirtd once it is done.
lock_libvirtd() {
	exec 8>>"${TMPDIR:-/tmp}/ivlab-tests-libvirtd.lock"
	if [ "${IVLAB_TEST_RESTARTS_LIBVIRTD:-}" = 1 ]; then
		flock -x 8
	else
		flock -s 8
	fi
}
[ "${IVLAB_TEST_LOCK_LATER:-}" = 1 ] || lock_libvirtd

# make_lab SHIPPED NAME: the shipped lab file under lab name NAME, so a test
# never touches a lab of the same machine's user.
make_lab() {
	sed "s/<lab name=\"[^\"]*\"/<lab name=\"$2\"/" "$top_srcdir/domains/$1" >"$scratch/$2.xml"
	echo "$scratch/$2.xml"
}

# leftovers NAME: print what of lab NAME still exists (nothing when clean).
leftovers() {
	virsh -q list --all --name 2>/dev/null | grep "^$1-" | sed 's/^/domain /'
	for f in "$state/labs/$1"/*.sock "$state/labs/$1"/*.pid "$state/labs/$1/state"; do
		[ -e "$f" ] && echo "file $f"
	done
	for f in /dev/shm/ivlab-"$1"-*; do
		[ -e "$f" ] && echo "shm $f"
	done
	pgrep -af "[i]vlab server.*$state/labs/$1/" | sed 's/^/process /'
	return 0
}

# check_clean NAME DESCRIPTION: one test point: nothing of lab NAME remains.
check_clean() {
	left=$(leftovers "$1")
	if [ -z "$left" ]; then
		ok "$2"
	else
		not_ok "$2"
		diag "$left"
	fi
}

# run_logged NAME CMD...: run, keep stdout+stderr in $scratch/NAME.log,
# and show it as diagnostics when it fails.
run_logged() {
	_log=$scratch/$1.log
	shift
	if "$@" >"$_log" 2>&1; then
		return 0
	else
		_status=$?
		diag "$* exited $_status:"
		diag "$(tail -40 "$_log")"
		return $_status
	fi
}

# The lab each test brings up, taken down however the test ends.
lab_names=
cleanup_labs() {
	for _lab in $lab_names; do
		"$IVLAB" -q down "$_lab" >/dev/null 2>&1 || true
	done
	rm -rf "$scratch"
}
trap cleanup_labs EXIT

# run_e2e SHIPPED NAME: the whole life of a lab: up, what virsh shows, a
# second up, status and --json, the suite, the console, a changed lab file,
# down, down again, and nothing left.
run_e2e() {
	lab=$(make_lab "$1" "$2")
	name=$2
	lab_names="$lab_names $name"
	"$IVLAB" -q down "$name" >/dev/null 2>&1 || true

	start=$(date +%s.%N)
	if run_logged up "$IVLAB" -f "$lab" up; then
		ok "up: every agent answered ($(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $start}") s)"
	else
		not_ok "up"
		tap_done
		exit 1
	fi
	diag "$(grep 'is up' "$scratch/up.log")"

	guests=$(sed -n 's/.*<guest name="\([^"]*\)".*/\1/p' "$lab")
	missing=
	for guest in $guests; do
		virsh -q list --all --name | grep -qx "$name-$guest" || missing="$missing $guest"
	done
	check "virsh list --all shows every domain of the lab" test -z "$missing"
	first=$(echo $guests | cut -d' ' -f1)
	virsh dumpxml "$name-$first" >"$scratch/dump.xml"
	check "virsh dumpxml carries the ivlab metadata" \
		grep -q "<ivlab:lab xmlns:ivlab=\"http://ivlab.org/xmlns/ivlab/1\" name=\"$name\" guest=\"$first\"" "$scratch/dump.xml"
	check "the domain has a title and a description" \
		sh -c "grep -q '<title>ivlab $name: $first' '$scratch/dump.xml' && grep -q '<description>' '$scratch/dump.xml'"

	run_logged up2 "$IVLAB" -f "$lab" up && grep -q "already up" "$scratch/up2.log"
	check "a second up is a no-op that says so" test $? -eq 0

	run_logged status "$IVLAB" -f "$lab" status
	check "status" grep -q "^$first " "$scratch/status.log"
	"$IVLAB" -f "$lab" status --json >"$scratch/status.json" 2>"$scratch/status.err"
	check "status --json: every guest running with its agent, servers with all peers" \
		"$PYTHON3" -c '
import json, sys
status = json.load(open(sys.argv[1]))
guests = status["guests"]
assert status["up"] and guests, status
for guest in guests:
    assert guest["state"] == "running" and guest["agent"], guest
for server in status["servers"]:
    assert server["running"] and server["pid"] > 0, server
    ids = sorted(guest["regions"][server["region"]] for guest in guests
                 if server["region"] in guest["regions"])
    assert ids == sorted(server["peers"]), (ids, server)
for region in status["regions"]:
    assert region["shm_present"], region
' "$scratch/status.json"
	json_schema_check "status --json of the running lab matches status.schema.json" \
		status.schema.json "$scratch/status.json"

	start=$(date +%s.%N)
	"$IVLAB" -f "$lab" test --tap --junit "$scratch/junit.xml" >"$scratch/test.tap" 2>"$scratch/test.err"
	test_status=$?
	elapsed=$(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $start}")
	checks=$(grep -c '^ok ' "$scratch/test.tap")
	if [ $test_status -eq 0 ] && ! grep -q '^not ok' "$scratch/test.tap" && [ "$checks" -gt 10 ]; then
		ok "test: all $checks checks passed (${elapsed} s)"
	else
		not_ok "test: exit $test_status"
		diag "$(grep '^not ok' "$scratch/test.tap")" "$(cat "$scratch/test.err")"
	fi
	for kind in agent regions ids pattern slices atomic unaligned doorbell restart; do
		if ! grep -q "^ok [0-9]* - $kind/" "$scratch/test.tap"; then
			case "$kind" in
			ids|doorbell|restart) grep -q 'mode="doorbell"' "$lab" || continue ;;
			esac
			not_ok "test ran the $kind checks"
		fi
	done
	check "test --junit wrote JUnit XML with every check" "$PYTHON3" -c '
import sys, xml.etree.ElementTree as ET
suite = ET.parse(sys.argv[1]).getroot().find("testsuite")
assert int(suite.get("tests")) == int(sys.argv[2]) and suite.get("failures") == "0"
' "$scratch/junit.xml" "$checks"
	check "test --junit matches junit.rng" \
		xmllint --noout --relaxng "$top_srcdir/man/schema/junit.rng" "$scratch/junit.xml"

	"$IVLAB" -f "$lab" test --filter 'agent/*' --tap >"$scratch/filter.tap" 2>/dev/null
	check "test --filter runs only the matching checks" \
		sh -c "[ \$(grep -c '^ok' '$scratch/filter.tap') -eq $(echo $guests | wc -w) ] && ! grep -v '^ok [0-9]* - agent/' '$scratch/filter.tap' | grep -q '^ok'"

	check "console: a command typed in the guest shell gets its answer" \
		run_logged console "$PYTHON3" "$top_srcdir/tests/lab-console.py" "$IVLAB" "$lab" "$first"

	sed 's/memory="\([0-9]*\)MiB"/memory="320MiB"/' "$lab" >"$scratch/changed.xml"
	sed -i "s/<lab name=\"[^\"]*\"/<lab name=\"$name\"/" "$scratch/changed.xml"
	cp "$lab" "$scratch/orig.xml"
	cp "$scratch/changed.xml" "$lab"
	"$IVLAB" -f "$lab" up >"$scratch/up3.log" 2>&1
	up3=$?
	cp "$scratch/orig.xml" "$lab"
	check "up after the lab file changed fails and says what differs" \
		sh -c "[ $up3 -eq 1 ] && grep -q 'differs from what runs' '$scratch/up3.log' && grep -q 'memory' '$scratch/up3.log' && grep -q 'ivlab down' '$scratch/up3.log'"
	diag "$(cat "$scratch/up3.log")"

	check "down" run_logged down "$IVLAB" -f "$lab" down
	check_clean "$name" "after down no domain, server, socket, pidfile or shm object of the lab remains"
	check "down again is fine" run_logged down2 "$IVLAB" -f "$lab" down
	check "console of a guest that is not running says so" \
		sh -c "! '$IVLAB' -f '$lab' console '$first' 2>'$scratch/console-down.err' && grep -q 'not defined\|not running' '$scratch/console-down.err'"
}
