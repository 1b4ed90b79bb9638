#!/bin/sh
# test-lab-faults.sh: what goes wrong, over a real libvirtd: no libvirtd, a
# missing image source, a lab name taken by a different running lab, a
# guest killed during `ivlab test`. Each gives a clear error, and nothing is
# left behind.
. "$top_srcdir/tests/lib.sh"
. "$top_srcdir/tests/lab-lib.sh"

name=ivlabtest-faults
lab=$(make_lab pair.xml "$name")
lab_names=$name
"$IVLAB" -q down "$name" >/dev/null 2>&1 || true

# libvirtd not running: a URI whose socket does not exist.
"$IVLAB" -c "qemu:///system?socket=$scratch/no-libvirtd/libvirt-sock" -f "$lab" up \
	>"$scratch/nolibvirt.log" 2>&1
status=$?
check "up without libvirtd fails and says how to start it" \
	sh -c "[ $status -eq 1 ] && grep -q 'libvirtd is not running' '$scratch/nolibvirt.log' && grep -q 'libvirtd -d' '$scratch/nolibvirt.log'"
diag "$(cat "$scratch/nolibvirt.log")"
check_clean "$name" "up without libvirtd leaves nothing behind"

# A missing image source: a recipe naming a kernel package the archive does
# not have, with a state dir that has no image yet.
mkdir -p "$scratch/data/images" "$scratch/state"
chmod 0755 "$scratch" "$scratch/state"
cp -r "$top_srcdir/domains" "$scratch/data/"
for conf in "$top_srcdir"/images/*.conf; do
	sed 's/^kernel-metapackage=.*/kernel-metapackage=linux-image-ivlab-does-not-exist/' "$conf" \
		>"$scratch/data/images/$(basename "$conf")"
done
IVLAB_DATADIR=$scratch/data IVLAB_STATE_DIR=$scratch/state \
	IVLAB_GUEST_DIR=$top_srcdir/src/guest IVLAB_AGENT_DIR=$top_builddir/src/guest "$IVLAB" -f "$lab" up \
	>"$scratch/noimage.log" 2>&1
status=$?
check "up with a missing image source fails naming it" \
	sh -c "[ $status -eq 1 ] && grep -q 'images for x86_64' '$scratch/noimage.log' && grep -q 'linux-image-ivlab-does-not-exist' '$scratch/noimage.log'"
diag "$(tail -3 "$scratch/noimage.log")"
check "up with a missing image source leaves nothing behind" \
	sh -c "[ ! -e '$scratch/state/labs/$name' ] && [ -z \"\$(virsh -q list --all --name | grep '^$name-')\" ] && ! ls /dev/shm/ivlab-$name-* >/dev/null 2>&1"

# Guests that do not come up in time (no guest boots in a second under TCG
# or KVM with an initramfs to unpack): named with their console, undone.
"$IVLAB" -f "$lab" up --timeout 1 >"$scratch/slow.log" 2>&1
status=$?
check "up whose guests do not come up in time fails naming them" \
	sh -c "[ $status -eq 1 ] && grep -q 'guests failed to come up (timeout 1 s) (left, right\|right, left)' '$scratch/slow.log' && grep -q 'console: \|printed nothing' '$scratch/slow.log'"
diag "$(grep -v 'console: ' "$scratch/slow.log" | tail -4)"
check_clean "$name" "the failed up was undone"

# The lab up for real, for the faults that need one.
if ! run_logged up "$IVLAB" -f "$lab" up; then
	not_ok "up"
	tap_done
	exit 1
fi
ok "up"

# Another lab file with the same lab name, differently: its regions, sockets
# and domains would collide.
sed 's/size="1MiB"/size="2MiB"/' "$lab" >"$scratch/other.xml"
# Only this lab's domains: the other tests define and remove theirs meanwhile.
lab_domains() { virsh -q list --all --uuid --name | grep " $name-" | sort; }
before=$(lab_domains)
"$IVLAB" -f "$scratch/other.xml" up >"$scratch/collide.log" 2>&1
status=$?
check "up of a different lab with the same name fails and names the running one" \
	sh -c "[ $status -eq 1 ] && grep -q 'taken by a running lab from $lab' '$scratch/collide.log' && grep -q 'collide' '$scratch/collide.log'"
diag "$(cat "$scratch/collide.log")"
after=$(lab_domains)
check "the collision created no domain" test "$before" = "$after"
mkdir -p "$scratch/state2"
IVLAB_STATE_DIR=$scratch/state2 "$IVLAB" -f "$lab" up >"$scratch/state2.log" 2>&1
status=$?
check "up of the running lab from another state dir fails and says why" \
	sh -c "[ $status -eq 1 ] && grep -q 'has no record of them' '$scratch/state2.log' && [ ! -e '$scratch/state2/labs/$name' ]"
check "the running lab is untouched" \
	run_logged agents "$IVLAB" -f "$lab" test --filter 'agent/*' --tap

# A guest killed while `ivlab test` runs: right is paused first, so the
# suite waits for right's hello after it checked left (its TAP streams);
# right is killed right then.
socket=$state/labs/$name/bell.sock
virsh -q suspend "$name-right" >/dev/null
"$IVLAB" -f "$lab" test --tap --no-restart --timeout 120 >"$scratch/killed.tap" 2>"$scratch/killed.err" &
test_pid=$!
i=0
while [ $i -lt 1200 ] && ! grep -q '^ok 1 - agent/left' "$scratch/killed.tap"; do
	sleep 0.1
	i=$((i + 1))
done
virsh -q destroy "$name-right" >/dev/null
wait $test_pid
status=$?
check "a guest killed during test makes it fail" test $status -eq 1
check "the failure names the guest and why" \
	sh -c "grep -q '^not ok 2 - agent/right: guest right is not running any more' '$scratch/killed.tap' && grep -q 'checks failed' '$scratch/killed.err'"
diag "$(grep '^not ok' "$scratch/killed.tap" | head -3)" "$(cat "$scratch/killed.err")"

check "down --keep after the kill" run_logged keep "$IVLAB" -f "$lab" down --keep
states=$(for guest in left right; do virsh -q domstate "$name-$guest" 2>&1; done | sort -u)
check "down --keep leaves the domains defined and shut off" test "$states" = "shut off"
check "down --keep stops the servers" sh -c "! pgrep -f '[i]vlab server.*$state/labs/$name/' >/dev/null && [ ! -e '$socket' ]"
check "down after down --keep" run_logged down "$IVLAB" -f "$lab" down
check_clean "$name" "after down nothing of the lab remains"
tap_done
