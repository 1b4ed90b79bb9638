#!/bin/sh
# test-lab-ring.sh: the example lab domains/ring.xml as a user runs it, over
# a real libvirtd: up, test, down, all green. Our example driver is built
# for and bound in an x86_64 and an aarch64 guest while ivlab.ko keeps the
# other region (ivlab's checks pass there and leave the ring alone), and the
# producer and consumer programs (native and cross-built) pass messages
# through it. Then the lab's test made to fail on the running lab: a
# consumer expecting more messages than are sent, and a message damaged on
# the way, each a failure shown with the programs' output.
. "$top_srcdir/tests/lib.sh"
. "$top_srcdir/tests/lab-lib.sh"

name=${IVLAB_TEST_LAB:-ivlabtest-ring}
lab_names=$name
for arch in x86_64 aarch64; do
	missing=$(image_tools_missing $arch)
	[ -z "$missing" ] || skip_or_fail "$arch guest: missing$missing"
done
for prog in producer-x86_64 consumer-x86_64 producer-aarch64 consumer-aarch64; do
	[ -x "$top_builddir/domains/ring/ring-$prog" ] ||
		skip_or_fail "domains/ring/ring-$prog is not built (configure found no aarch64 cross compiler?)"
done

# The lab under a test name, next to its sources and to the programs make
# built (the build tree's: the same place in-tree, another in a VPATH
# build), so its relative paths hold; readable by QEMU for the share.
dir=$scratch/lab
mkdir -p "$dir"
cp -r "$top_srcdir/domains/ring" "$dir/"
cp "$top_builddir"/domains/ring/ring-producer-* "$top_builddir"/domains/ring/ring-consumer-* "$dir/ring/"
sed "s/<lab name=\"[^\"]*\"/<lab name=\"$name\"/" "$top_srcdir/domains/ring.xml" >"$dir/ring.xml"
chmod -R u+w,go+rX "$scratch"
lab=$dir/ring.xml
"$IVLAB" -q down "$name" >/dev/null 2>&1 || true

elapsed() {
	awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $1}"
}

start=$(date +%s.%N)
if ! run_logged up "$IVLAB" -f "$lab" up; then
	not_ok "up: the driver built for both guests, the programs delivered"
	tap_done
	exit 1
fi
ok "up: the driver built for both guests, the programs delivered ($(elapsed "$start") s)"

start=$(date +%s.%N)
"$IVLAB" -f "$lab" test --tap --junit "$scratch/junit.xml" >"$scratch/test.tap" 2>"$scratch/test.err"
status=$?
diag "$(cat "$scratch/test.tap")"
check "test passes ($(elapsed "$start") s)" test $status -eq 0
check "the lab's own test passed: consumer on aarch64, producer on x86_64" \
	grep -q '^ok [0-9]* - lab/ring: 4 steps ended as expected' "$scratch/test.tap"
for guest in producer consumer; do
	check "$guest: the ring region is bound to the example driver (ivring) and left unchecked" \
		grep -q "^ok [0-9]* - regions/$guest: scratch 1MiB plain, ring bound to ivring (not checked)" \
		"$scratch/test.tap"
	check "$guest: ivlab's checks run on the region ivlab.ko keeps" \
		grep -q "^ok [0-9]* - pattern/scratch/$guest:" "$scratch/test.tap"
done
check "both programs said every message arrived intact (JUnit system-out)" "$PYTHON3" -c '
import sys, xml.etree.ElementTree as ET
suite = ET.parse(sys.argv[1]).getroot().find("testsuite")
case = [c for c in suite.findall("testcase") if c.get("name") == "lab/ring"][0]
out = case.find("system-out").text
assert "ring-consumer: 1000 messages from IVPosition" in out, out
assert "ring-producer: 1000 messages sent to IVPosition" in out, out
' "$scratch/junit.xml"

# fail_variant CASE SED DESCRIPTION EXPECTED...: the lab's test with its
# commands changed by SED fails, and the TAP shows each EXPECTED line.
fail_variant() {
	_case=$1
	_sed=$2
	_desc=$3
	shift 3
	sed "$_sed" "$lab" >"$dir/$_case.xml"
	"$IVLAB" -f "$dir/$_case.xml" test --filter 'lab/*' --tap >"$scratch/$_case.tap" 2>&1
	_status=$?
	_missing=
	for _line in "$@"; do
		grep -q -- "$_line" "$scratch/$_case.tap" || _missing="$_missing [$_line]"
	done
	if [ $_status -eq 1 ] && grep -q '^not ok [0-9]* - lab/ring: ' "$scratch/$_case.tap" &&
		[ -z "$_missing" ]; then
		ok "$_desc"
	else
		not_ok "$_desc (exit $_status, missing:$_missing)"
	fi
	diag "$(cat "$scratch/$_case.tap")"
}

fail_variant more 's|>ring-consumer<|>ring-consumer -n 1001<|' \
	"a consumer expecting more messages than sent fails the lab test, with both programs' output" \
	'the producer closed the ring after 1000 messages, expected 1001' \
	'the consumer reported a failure after reading 1000 of 1000 messages'
fail_variant damage 's|>ring-producer<|>ring-producer -x 17<|' \
	"a message damaged on the way fails the lab test, the consumer saying which" \
	'message 17: checksum 0x[0-9a-f]* does not match its contents' \
	'the consumer reported a failure after reading 17 of 1000 messages'

"$IVLAB" -f "$lab" test --filter 'lab/*' --tap >"$scratch/again.tap" 2>&1
check "the lab test passes again after the failures" grep -q '^ok [0-9]* - lab/ring: ' "$scratch/again.tap"

start=$(date +%s.%N)
check "down" run_logged down "$IVLAB" -f "$lab" down
diag "down took $(elapsed "$start") s"
check_clean "$name" "after down nothing of the lab remains"
tap_done
