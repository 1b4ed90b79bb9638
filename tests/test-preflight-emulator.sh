#!/bin/sh
# test-preflight-emulator.sh: a guest's own <emulator> is checked before `up`
# creates anything, over a real libvirtd: one that does not exist, is not
# executable, is not QEMU, lacks the guest's machine, lacks an ivshmem or
# the 9p device, or that libvirt cannot probe. Each fails `up` with one
# clear line naming the guest and the emulator, exit 1, and leaves no
# domain and no state behind. Nothing boots.
. "$top_srcdir/tests/lib.sh"
. "$top_srcdir/tests/lab-lib.sh"

name=ivlabtest-preflight
lab_names=$name
state=$scratch/state
mkdir -p "$state" "$scratch/share"
chmod 0755 "$scratch" "$state"
export IVLAB_STATE_DIR=$state

# fake_qemu FILE MACHINES DEVICES: a script answering -version, -machine help
# (MACHINES, one a line) and -device help (DEVICES) as QEMU does, and
# nothing else (libvirt's QMP probe fails on it); FILE.calls gets a line
# per call.
fake_qemu() {
	cat >"$1" <<SCRIPT
#!/bin/sh
echo "\$*" >>"$1.calls"
case "\$*" in
-version) echo "QEMU emulator version 8.2.99"; echo "Copyright (c) 2003-2024 Fabrice Bellard" ;;
"-machine help") echo "Supported machines are:"; for m in $2; do echo "\$m                  a machine"; done ;;
*"-device help"*) for d in $3; do echo "name \"\$d\", bus PCI"; done ;;
*) echo "unsupported: \$*" >&2; exit 1 ;;
esac
SCRIPT
	chmod 0755 "$1"
}

all_devices="ivshmem-plain ivshmem-doorbell virtio-9p-pci"
fake_qemu "$scratch/no-ivshmem" "pc q35" "virtio-net-pci virtio-9p-pci"
fake_qemu "$scratch/no-9p" "pc q35" "ivshmem-plain ivshmem-doorbell"
fake_qemu "$scratch/no-q35" "pc" "$all_devices"
fake_qemu "$scratch/unprobeable" "pc q35" "$all_devices"
printf '#!/bin/sh\necho hello\n' >"$scratch/not-qemu"
chmod 0755 "$scratch/not-qemu"
printf '#!/bin/sh\nexit 0\n' >"$scratch/not-executable"
chmod 0644 "$scratch/not-executable"

# try CASE EMULATOR SHARE EXPECTED: `up` of a one-guest lab (a doorbell
# region; a share when SHARE is yes) fails with EXPECTED, and leaves nothing.
try() {
	share=
	[ "$3" = yes ] && share="<share src=\"$scratch/share\" dest=\"/mnt/share\"/>"
	cat >"$scratch/$1.xml" <<LAB
<lab name="$name" accel="tcg">
  <region name="bell" size="1MiB" mode="doorbell" vectors="1"/>
  <guest name="g" arch="x86_64" machine="q35">
    <attach region="bell"/>
    <emulator path="$2"/>
    $share
  </guest>
</lab>
LAB
	status=0
	"$IVLAB" -f "$scratch/$1.xml" up >"$scratch/$1.log" 2>&1 || status=$?
	if [ "$status" -eq 1 ] && [ "$(wc -l <"$scratch/$1.log")" -eq 1 ] &&
	   grep -qF "ivlab: preflight: guest g: $4" "$scratch/$1.log"; then
		ok "$1: $(cat "$scratch/$1.log")"
	else
		not_ok "$1: status $status, expected 1 and: $4"
		diag "$(cat "$scratch/$1.log")"
	fi
	if [ -z "$(virsh -q list --all --name | grep "^$name-")" ] && [ ! -e "$state/labs/$name" ]; then
		ok "$1: no domain, no state left"
	else
		not_ok "$1: something was left behind"
		diag "$(virsh -q list --all --name | grep "^$name-")" "$(ls -la "$state/labs/$name" 2>&1)"
	fi
}

try missing /nonexistent/qemu-system-x86_64 no \
	"emulator /nonexistent/qemu-system-x86_64 does not exist"
try not-executable "$scratch/not-executable" no \
	"emulator $scratch/not-executable is not an executable file"
try not-qemu "$scratch/not-qemu" no \
	"emulator $scratch/not-qemu is not QEMU (-version says: hello)"
try no-machine "$scratch/no-q35" no \
	"emulator $scratch/no-q35 offers no machine 'q35'"
try no-ivshmem "$scratch/no-ivshmem" no \
	"emulator $scratch/no-ivshmem offers no \"ivshmem-doorbell\" device"
try no-9p "$scratch/no-9p" yes \
	"emulator $scratch/no-9p offers no \"virtio-9p-pci\" device, which its <share> needs"
try unprobeable "$scratch/unprobeable" no \
	"libvirt does not accept emulator $scratch/unprobeable for x86_64 machine 'q35' with tcg"

# The device list of a binary that has them all is asked for once (it
# cost 0.13 s of every up); a lacking one every time; another build again.
device_calls() {
	grep -c -- '-device help' "$1.calls"
}
"$IVLAB" -f "$scratch/unprobeable.xml" up >/dev/null 2>&1
check "a complete device list is asked for once per binary" \
	test "$(device_calls "$scratch/unprobeable")" -eq 1
"$IVLAB" -f "$scratch/no-ivshmem.xml" up >/dev/null 2>&1
check "a device list that lacks a device is asked for again" \
	test "$(device_calls "$scratch/no-ivshmem")" -eq 2
fake_qemu "$scratch/unprobeable" "pc q35" "$all_devices virtio-net-pci"
"$IVLAB" -f "$scratch/unprobeable.xml" up >/dev/null 2>&1
check "another build of the binary is asked again" \
	test "$(device_calls "$scratch/unprobeable")" -eq 2
tap_done
