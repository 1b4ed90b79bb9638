#!/bin/sh
# test-lab-guestfuzz.sh: fuzzing inside real guests, an x86_64 and an
# aarch64 one on a doorbell region: the driver's ioctls with random
# commands, sizes and pointers (NULL, unmapped, kernel addresses, cut by an
# unmapped page) from four processes at once, then racing an unbind and
# rebind of the device (agent verb drvfuzz); then random agent requests
# (tests/lab-agent-fuzz.py). Afterwards the kernel log has no oops, BUG or
# WARNING, the agents still answer, and ivlab's suite still passes.
. "$top_srcdir/tests/lib.sh"
. "$top_srcdir/tests/lab-lib.sh"

for arch in x86_64 aarch64; do
	missing=$(image_tools_missing $arch)
	[ -z "$missing" ] || skip_or_fail "$arch images need: $missing"
done

name=${IVLAB_TEST_LAB_NAME:-ivlabtest-gfuzz}
lab=$scratch/$name.xml
cat >"$lab" <<LAB
<?xml version="1.0"?>
<lab name="$name">
  <region name="bell" size="1MiB" mode="doorbell" vectors="4"/>
  <guest name="x" arch="x86_64" memory="384MiB">
    <attach region="bell"/>
  </guest>
  <guest name="a" arch="aarch64" memory="256MiB">
    <attach region="bell"/>
  </guest>
</lab>
LAB
lab_names=$name
"$IVLAB" -q down "$name" >/dev/null 2>&1 || true
if ! run_logged up "$IVLAB" -f "$lab" up; then
	not_ok "up"
	tap_done
	exit 1
fi
ok "up: an x86_64 and an aarch64 guest"

seed=${IVLAB_FUZZ_SEED:-20261202}
diag "seed $seed (a fixed default: IVLAB_FUZZ_SEED=N tries another)"
for guest in x a; do
	if "$PYTHON3" "$top_srcdir/tests/lab-agent-fuzz.py" "$name-$guest" bell "$seed" 3000 \
		>"$scratch/fuzz-$guest.out" 2>&1; then
		ok "$guest: ioctls and agent requests fuzzed, every one answered"
	else
		not_ok "$guest: ioctls and agent requests fuzzed, every one answered"
	fi
	diag "$(cat "$scratch/fuzz-$guest.out")"
	"$IVLAB" -f "$lab" exec "$guest" dmesg >"$scratch/dmesg-$guest" 2>&1
	bad=$(grep -E 'Oops|BUG:|WARNING:|Call trace|Call Trace|general protection|Unable to handle kernel|KASAN|refcount_t:|list_add corruption' "$scratch/dmesg-$guest")
	check "$guest: the kernel log has no oops, BUG or WARNING" test -z "$bad"
	[ -z "$bad" ] || diag "$(grep -E -B2 -A12 'Oops|BUG:|WARNING:' "$scratch/dmesg-$guest" | head -40)"
done
check "ivlab's suite still passes after the fuzzing" \
	run_logged suite "$IVLAB" -f "$lab" test --no-restart
check "down" run_logged down "$IVLAB" -f "$lab" down
check_clean "$name" "after down nothing of the lab remains"
tap_done
