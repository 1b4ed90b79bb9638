#!/bin/sh
# test-lab-steps.sh: a lab's own tests on a real guest over a real libvirtd:
# a passing test with a background step and an expected non-zero status, a
# failing step and a timed-out step reported with their output in the
# table, TAP and JUnit, beside the built-in checks.
. "$top_srcdir/tests/lib.sh"
. "$top_srcdir/tests/lab-lib.sh"

name=ivlabtest-steps
lab=$scratch/$name.xml
lab_names=$name
cat >"$lab" <<LAB
<lab name="$name">
  <region name="mem" size="1MiB" mode="plain"/>
  <guest name="solo" arch="x86_64" memory="192MiB"><attach region="mem"/></guest>
  <test name="pass" timeout="60s">
    <step guest="solo" background="yes">while [ ! -e /tmp/go ]; do sleep 0.1; done; echo background saw go</step>
    <step guest="solo">echo foreground; touch /tmp/go</step>
    <step guest="solo" expect="3">exit 3</step>
  </test>
  <test name="fails">
    <step guest="solo">echo about to fail; exit 2</step>
  </test>
  <test name="slow" timeout="2s">
    <step guest="solo">echo slow start; sleep 120</step>
  </test>
</lab>
LAB
"$IVLAB" -q down "$name" >/dev/null 2>&1 || true

if ! run_logged up "$IVLAB" -f "$lab" up; then
	not_ok "up"
	tap_done
	exit 1
fi
ok "up"

"$IVLAB" -f "$lab" test --filter 'lab/*' --tap --junit "$scratch/junit.xml" >"$scratch/test.tap" 2>"$scratch/test.err"
status=$?
diag "$(cat "$scratch/test.tap")"
check "test exits 1 when a lab test failed" test $status -eq 1
check "the passing lab test passes (background first, expected status 3)" \
	grep -q '^ok [0-9]* - lab/pass: 3 steps ended as expected' "$scratch/test.tap"
check "a failing step is named with its status and output" \
	grep -q '^not ok [0-9]* - lab/fails: step 1 (solo) exited with status 2, expected 0; output: about to fail' "$scratch/test.tap"
check "its output follows as TAP comments" grep -q '^# \[solo step 1\] about to fail' "$scratch/test.tap"
check "a step past the test's timeout is killed and reported" \
	grep -q '^not ok [0-9]* - lab/slow: timed out after 2.0 s: step 1 (solo) still ran' "$scratch/test.tap"
check "--filter 'lab/*' ran the three lab tests and no data check" \
	sh -c "[ \$(grep -c ' - lab/' '$scratch/test.tap') -eq 3 ] && ! grep '^\(not \)\?ok' '$scratch/test.tap' | grep -v ' - lab/\| - agent/' | grep -q ."
check "JUnit carries each lab test's output in system-out" "$PYTHON3" -c '
import sys, xml.etree.ElementTree as ET
suite = ET.parse(sys.argv[1]).getroot().find("testsuite")
cases = {case.get("name"): case for case in suite.findall("testcase")}
assert {"lab/pass", "lab/fails", "lab/slow"} <= set(cases), cases
assert "background saw go" in cases["lab/pass"].find("system-out").text
assert cases["lab/fails"].find("failure") is not None
assert "about to fail" in cases["lab/fails"].find("system-out").text
' "$scratch/junit.xml"

"$IVLAB" -f "$lab" exec solo -- pgrep -f "sleep 120" >"$scratch/pgrep.out" 2>&1
check "the timed-out step's process is gone from the guest" test $? -ne 0
check "down" run_logged down "$IVLAB" -f "$lab" down
check_clean "$name" "after down nothing of the lab remains"
tap_done
