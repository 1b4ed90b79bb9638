#!/bin/sh
# test-lab-boot.sh: what a lab's guests bring, over a real libvirtd
# (tests/data/boot/boot.lab.xml): our out-of-tree test module built and
# loaded with its parameter and bound to one region, a file, an overlay, a
# read-only 9p share written on the host after `up`, a boot command. Then
# what goes wrong: a module that does not compile, one that does not load
# and a boot command that fails each make `up` fail, say why, and leave
# nothing behind.
. "$top_srcdir/tests/lib.sh"
. "$top_srcdir/tests/lab-lib.sh"

name=${IVLAB_TEST_LAB:-ivlabtest-boot}
lab_names=$name
cp -r "$top_srcdir/tests/data/boot" "$top_srcdir/tests/data/modules" "$scratch/"
chmod -R u+w "$scratch"
mkdir -p "$scratch/boot/share"
# qemu may run as another user: it reads the share and the lab's files.
chmod 0755 "$scratch" "$scratch/boot" "$scratch/boot/share"
lab=$scratch/boot/boot.lab.xml
sed -i "s/<lab name=\"[^\"]*\"/<lab name=\"$name\"/" "$lab"
"$IVLAB" -q down "$name" >/dev/null 2>&1 || true

guest=g
in_guest() {
	"$PYTHON3" "$top_srcdir/tests/lab-agent.py" "$name-$guest" "$1"
}

# expect_output DESCRIPTION EXPECTED COMMAND: COMMAND's output in the guest.
expect_output() {
	got=$(in_guest "$3" 2>&1)
	if [ "$got" = "$2" ]; then
		ok "$1"
	else
		not_ok "$1"
		diag "in the guest: $3" "expected: $2" "got: $got"
	fi
}

if ! run_logged up "$IVLAB" -f "$lab" up; then
	not_ok "up with a module, files, an overlay, a share and a boot command"
	tap_done
	exit 1
fi
ok "up with a module, files, an overlay, a share and a boot command"

expect_output "the module is loaded with its parameter" bonjour \
	"cat /sys/module/ivtest/parameters/greeting"
expect_output "the bound region's device belongs to the module" ivtest \
	'basename "$(readlink /sys/bus/pci/devices/*:11.0/driver)"'
expect_output "the other region's device stays with ivlab.ko" ivlab \
	'basename "$(readlink /sys/bus/pci/devices/*:10.0/driver)"'
expect_output "a <file> is there with its mode" "755 hello from g" \
	'echo $(stat -c %a /usr/bin/ivtest-hello) $(ivtest-hello)'
expect_output "a <file> for another arch is not" absent \
	'test -e /etc/ivtest/arm-only && echo present || echo absent'
expect_output "an <overlay>'s files are there, modes kept" "delivered by an overlay overlay script" \
	'echo $(cat /etc/ivtest/overlay.txt) $(/usr/lib/ivtest/run.sh)'
expect_output "the boot command ran" "hello from g" "cat /run/ivtest-marker"
expect_output "a daemon a boot command started runs on, and the boot went past it" yes \
	'ps | grep -q "[s]leep 60" && echo yes'
expect_output "a boot command's output was streamed while it ran (its own check passed)" \
	streamed "cat /run/ivlab/run-3.log"
echo "written on the host after up" >"$scratch/boot/share/note"
expect_output "a file written on the host after up is read through the share" \
	"written on the host after up" "cat /mnt/share/note"
expect_output "a readonly share is read-only" refused \
	'touch /mnt/share/new 2>/dev/null && echo written || echo refused'
check "the share did not change on the host" test ! -e "$scratch/boot/share/new"
run_logged up2 "$IVLAB" -f "$lab" up && grep -q "already up" "$scratch/up2.log"
check "a second up is a no-op" test $? -eq 0

# ivlab's own checks keep to the region ivlab.ko drives and say why they
# leave the bound one alone.
"$IVLAB" -f "$lab" test --tap >"$scratch/test.tap" 2>"$scratch/test.err"
status=$?
check "ivlab test passes beside a region bound to the user's driver" test $status -eq 0
check "the bound region is named and left unchecked" \
	grep -q '^ok [0-9]* - regions/g: .*mine bound to ivtest (not checked)' "$scratch/test.tap"
check "the region ivlab.ko keeps is checked" grep -q '^ok [0-9]* - pattern/kept/g' "$scratch/test.tap"
diag "$(grep -v '^ok' "$scratch/test.tap")" "$(cat "$scratch/test.err")"

check "down" run_logged down "$IVLAB" -f "$lab" down
check_clean "$name" "after down nothing of the lab remains"
check "down removed the guest's initramfs and the lab directory" test ! -e "$state/labs/$name"

# A module that does not compile: named with its arch and the compiler's
# error, before anything is created.
sed 's|modules/ivtest|modules/broken|' "$lab" >"$scratch/boot/broken.lab.xml"
"$IVLAB" -f "$scratch/boot/broken.lab.xml" up >"$scratch/broken.log" 2>&1
status=$?
check "a module that does not compile fails up naming the module, the arch and the error" \
	sh -c "[ $status -eq 1 ] && grep -q 'module .*/modules/broken (x86_64) did not compile: .*not_declared_anywhere.*(log: ' '$scratch/broken.log'"
diag "$(tail -1 "$scratch/broken.log")"
check "the user's module directory was not written into" \
	sh -c "[ -z \"\$(ls '$scratch/modules/broken' | grep -v '^broken.c\$\|^Kbuild\$')\" ]"
check_clean "$name" "the failed up left no domain"
check "the failed up left no lab directory" test ! -e "$state/labs/$name"

# A module that does not load and a boot command that fails: up fails with
# the first, the console tail shows both, and the lab is undone.
sed -e 's|params="greeting=bonjour"|params="fail=1"|' \
	-e 's|<run>.*</run>|<run>echo about to fail; exit 3</run>|' "$lab" >"$scratch/boot/fail.lab.xml"
"$IVLAB" -f "$scratch/boot/fail.lab.xml" up >"$scratch/fail.log" 2>&1
status=$?
check "a module that does not load fails up with the kernel's reason" \
	sh -c "[ $status -eq 1 ] && grep -q 'at boot: module ivtest failed to load: Invalid argument (kernel: .*refusing to load: asked to with fail=1' '$scratch/fail.log'"
check "a failing boot command is reported with its status and output" \
	grep -q 'ivlab: run 1 failed with status 3: about to fail' "$scratch/fail.log"
diag "$(grep -v 'console: ' "$scratch/fail.log" | tail -3)"
check_clean "$name" "the failed up was undone"

# A guest that hangs before its agent starts (its /init replaced by one
# that sleeps): up fails after its timeout and shows the useful tail of the
# kernel's log although the console is quiet (x86 replays it on the NMI up
# sends), and the lab is undone.
printf '#!/bin/busybox sh\nexec /bin/busybox sleep 100000\n' >"$scratch/boot/hang-init"
cat >"$scratch/boot/hang.lab.xml" <<LAB
<?xml version="1.0"?>
<lab name="$name">
  <region name="r" size="1MiB" mode="plain"/>
  <guest name="g" arch="x86_64">
    <attach region="r"/>
    <file src="hang-init" dest="/init" mode="0755"/>
  </guest>
</lab>
LAB
"$IVLAB" -f "$scratch/boot/hang.lab.xml" up --timeout 40 >"$scratch/hang.log" 2>&1
status=$?
check "a guest that hangs in boot fails up (exit $status)" test $status -eq 1
check "its console tail has the kernel's quiet lines, replayed" \
	grep -q 'g console: .*Run /init as init process' "$scratch/hang.log"
diag "$(grep 'g console: ' "$scratch/hang.log" | tail -3)"
check_clean "$name" "the hung up was undone"

# The same module cross-built for an aarch64 guest, bound there too.
missing=$(image_tools_missing aarch64)
if [ -n "$missing" ]; then
	skip_or_fail_point "aarch64 guest: missing $missing"
	tap_done
	exit
fi
arm=$scratch/boot/arm.lab.xml
# a writable share: qemu (maybe another user) creates files in it
chmod 0777 "$scratch/boot/share"
sed -i "s/<lab name=\"[^\"]*\"/<lab name=\"$name\"/" "$arm"
guest=a
if run_logged up-arm "$IVLAB" -f "$arm" up; then
	ok "aarch64: up with the module cross-built"
	expect_output "aarch64: the module is loaded with its parameter" hej \
		"cat /sys/module/ivtest/parameters/greeting"
	expect_output "aarch64: the bound region's device belongs to the module" ivtest \
		'basename "$(readlink /sys/bus/pci/devices/*:11.0/driver)"'
	expect_output "aarch64: the other region's device stays with ivlab.ko" ivlab \
		'basename "$(readlink /sys/bus/pci/devices/*:10.0/driver)"'
	expect_output "aarch64: only the files for its arch are there" "hello from a absent" \
		'echo $(ivtest-hello) $(test -e /etc/ivtest/x86-only && echo present || echo absent)'
	expect_output "aarch64: a host file is read through the 9p share" \
		"written on the host after up" "cat /mnt/share/note"
	check "aarch64: a file its boot command wrote into the share is on the host" \
		grep -qx "from the aarch64 guest" "$scratch/boot/share/from-arm"
else
	not_ok "aarch64: up with the module cross-built"
fi
check "aarch64: down" run_logged down-arm "$IVLAB" -f "$arm" down
check_clean "$name" "aarch64: nothing of the lab remains"

tap_done
