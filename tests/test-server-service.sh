#!/bin/sh
# test-server-service.sh: the systemd template unit ivlab-server@.service:
# systemd-analyze verify (where systemd-analyze exists), its hardening, and
# the server started exactly as the unit starts it (its ExecStart with the
# unit's defaults, a /etc/ivlab/servers/NAME.conf and its specifiers) serving
# a guest defined from hand-written libvirt domain XML (README, "A standalone
# ivshmem server"): the guest's driver probes the device with an IVPosition,
# the server lists the guest as a peer, and the unit's ExecStop stops it.
. "$top_srcdir/tests/lib.sh"

instance=ivlabtest$$
runtime=$scratch/run
unit=$scratch/units/ivlab-server@.service
mkdir -p "$scratch/units" "$scratch/etc"
sed "s|@bindir@|$top_builddir|g" "$top_srcdir/src/ivlab-server@.service.in" >"$unit"

# --- the unit file --------------------------------------------------------
if command -v systemd-analyze >/dev/null 2>&1; then
	cp "$unit" "$scratch/units/ivlab-server@$instance.service"
	systemd-analyze verify --man=no "$scratch/units/ivlab-server@$instance.service" \
		>"$scratch/verify" 2>&1
	status=$?
	if [ $status -eq 0 ] && [ ! -s "$scratch/verify" ]; then
		ok "systemd-analyze verify: no complaint"
	else
		not_ok "systemd-analyze verify: exit $status"
		diag "$(cat "$scratch/verify")"
	fi
else
	# Not a real component of ivlab's: a host without systemd still runs the unit's command.
	skip_point "systemd-analyze not found (Debian package systemd): the unit is not verified"
fi
for directive in NoNewPrivileges=yes PrivateTmp=yes ProtectSystem=strict DynamicUser=yes \
	'RuntimeDirectory=ivlab/%i' 'EnvironmentFile=/etc/ivlab/servers/%i.conf' \
	'Before=libvirtd.service virtqemud.service libvirt-guests.service'; do
	check "the unit has $directive" grep -qxF "$directive" "$unit"
done
check "its status helper is ivlab server --status" grep -q '^ExecStartPost=.*/ivlab server --status ' "$unit"

# --- the server as the unit starts it --------------------------------------
if [ "$(id -u)" -ne 0 ]; then
	skip_or_fail "a guest from hand-written XML needs root (qemu:///system)"
fi
for tool in virsh "${PYTHON3:-python3}"; do
	command -v "$tool" >/dev/null 2>&1 || skip_or_fail "$tool is missing (run setup-host.sh)"
done
virsh -q -c qemu:///system version >/dev/null 2>&1 || skip_or_fail "libvirtd does not answer (run setup-host.sh)"
missing=$(image_tools_missing x86_64)
[ -z "$missing" ] || skip_or_fail "ivlab image build needs $missing (run setup-host.sh)"

domain=$instance
cleanup() {
	virsh -q -c qemu:///system destroy "$domain" >/dev/null 2>&1
	"$IVLAB" server --stop --socket "$runtime/ivlab/$instance/ivshmem.sock" >/dev/null 2>&1
	rm -rf "$scratch"
}
trap cleanup EXIT

# What the package documents: a configuration with two vectors and 1MiB.
cat >"$scratch/etc/$instance.conf" <<CONF
# A test server
SIZE=1MiB
VECTORS=2
CONF
unit_command() {
	"${PYTHON3:-python3}" "$top_srcdir/tests/unit-command.py" "$unit" \
		"$scratch/etc/$instance.conf" "$instance" "$runtime" "$@"
}
# systemd makes the runtime directory (RuntimeDirectoryMode=0755) first.
mkdir -p "$runtime/ivlab/$instance"
chmod 0755 "$scratch" "$runtime" "$runtime/ivlab" "$runtime/ivlab/$instance"
sock=$runtime/ivlab/$instance/ivshmem.sock
unit_command ExecStart --print >"$scratch/argv"
check "the unit's command line has the configuration's size and vectors" \
	sh -c 'grep -qx -- --size=1MiB "$1" && grep -qx -- --vectors=2 "$1" && grep -qx -- "--socket=$2" "$1"' - "$scratch/argv" "$sock"
unit_command ExecStart >"$scratch/start.log" 2>&1
check "ExecStart: the server daemon starts (exit 0 once listening)" [ $? -eq 0 ]
check "...writing the unit's PIDFile" test -s "$runtime/ivlab/$instance/server.pid"
unit_command ExecStartPost >"$scratch/status.log" 2>&1
check "ExecStartPost (ivlab server --status) answers" [ $? -eq 0 ]
check "...the socket is mode 0660, group kvm" sh -c '[ "$(stat -c %a:%G "$1")" = 660:kvm ]' - "$sock"

# The image, then the hand-written domain of the README.
"$IVLAB" image build --arch x86_64 >"$scratch/image.log" 2>&1
check "ivlab image build --arch x86_64" [ $? -eq 0 ] || diag "$(tail -5 "$scratch/image.log")"
images=$("$IVLAB" image list --json | "${PYTHON3:-python3}" -c '
import json, sys
image = [i for i in json.load(sys.stdin)["images"] if i["arch"] == "x86_64"][0]
print(image["vmlinuz"], image["initrd"])')
set -- $images
cat >"$scratch/domain.xml" <<XML
<domain type="qemu">
  <name>$domain</name>
  <memory unit="MiB">192</memory>
  <os>
    <type arch="x86_64" machine="pc">hvm</type>
    <kernel>$1</kernel>
    <initrd>$2</initrd>
    <cmdline>console=ttyS0 panic=-1</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <devices>
    <serial type="file"><source path="$scratch/console.log"/><target port="0"/></serial>
    <shmem name="$instance">
      <model type="ivshmem-doorbell"/>
      <server path="$sock"/>
      <msi vectors="2" ioeventfd="on"/>
    </shmem>
    <memballoon model="none"/>
  </devices>
</domain>
XML
virsh -q -c qemu:///system create "$scratch/domain.xml" >"$scratch/virsh.log" 2>&1
check "virsh create: the hand-written domain starts against the server" [ $? -eq 0 ] ||
	diag "$(cat "$scratch/virsh.log")"
peers() {
	"$IVLAB" server --status --json --socket "$sock" 2>/dev/null |
		sed -n 's/.*"peers":\[\([0-9,]*\)\].*/\1/p'
}
peers_are() { [ "$(peers)" = "$1" ]; }
check "the server has the guest as its peer 0" wait_until 30 peers_are 0
check "the guest's ivlab driver probes the device: ivposition 0, 2 vectors" \
	wait_until 120 grep -q "ivposition 0, 2 vectors" "$scratch/console.log"
virsh -q -c qemu:///system destroy "$domain" >/dev/null 2>&1
check "the guest gone, the server has no peer" wait_until 30 peers_are ''
unit_command ExecStop >"$scratch/stop.log" 2>&1
check "ExecStop (ivlab server --stop) stops it" [ $? -eq 0 ]
check "...and the socket is gone" [ ! -e "$sock" ]
tap_done
