#!/bin/sh
# test-boot-profile.sh: the images boot under plain QEMU through `ivlab bench
# boot`, and each boot's profile has every stage, in order: x86_64 through
# its vmlinux (the PVH entry) and through its bzImage (SeaBIOS and
# decompression), each on pc and q35; aarch64 on virt. Then bench boot's
# usage errors.
. "$top_srcdir/tests/lib.sh"

for arch in x86_64 aarch64; do
	command -v "qemu-system-$arch" >/dev/null 2>&1 ||
		skip_or_fail "qemu-system-$arch is missing (run setup-host.sh)"
	missing=$(image_tools_missing "$arch")
	[ -z "$missing" ] || skip_or_fail "$arch image: missing $missing"
done
if ! "$IVLAB" -q image build --arch all >"$scratch/build.log" 2>&1; then
	not_ok "the images build"
	diag "$(tail -20 "$scratch/build.log")"
	tap_done
	exit 1
fi
images=$("$IVLAB" image list --json | "$PYTHON3" -c '
import json, os, sys
print(os.path.dirname(os.path.dirname(json.load(sys.stdin)["images"][0]["vmlinuz"])))')

magic=$(head -c 4 "$images/x86_64/vmlinux" | od -An -c | tr -d ' ')
check "the x86_64 image has its kernel as an ELF vmlinux ($magic)" test "$magic" = '177ELF'

# boot NAME KERNEL-FILE-NAME BENCH-ARGS...: one boot, its JSON checked: the
# kernel it booted, every stage there, none negative, and they add up to
# the time the agent was ready.
boot() {
	name=$1
	kernel=$2
	shift 2
	if ! "$IVLAB" bench boot --runs 1 --json "$@" >"$scratch/$name.json" 2>"$scratch/$name.err"; then
		not_ok "$name: boots to agent-ready"
		diag "$(tail -20 "$scratch/$name.err")"
		return
	fi
	if "$PYTHON3" - "$scratch/$name.json" "$kernel" >"$scratch/$name.out" 2>&1 <<'EOF'; then
import json, os, sys
doc = json.load(open(sys.argv[1]))
machine = doc["machines"][0]
assert os.path.basename(machine["kernel"]) == sys.argv[2], machine["kernel"]
stages = ["qemu", "firmware", "kernel", "init", "modules", "agent"]
boot = machine["boots"][0]
missing = [s for s in stages if s not in boot]
assert not missing, "stages missing: %s" % missing
assert all(boot[s] >= 0 for s in stages), boot
assert abs(sum(boot[s] for s in stages) - boot["ready"]) < 0.01, boot
assert boot["ready"] > boot["kernel"] > 0, boot
print(" ".join("%s %.2f" % (s, boot[s]) for s in stages + ["ready"]))
EOF
		ok "$name: boots to agent-ready, stages in order ($(cat "$scratch/$name.out"))"
		json_schema_check "$name: the JSON matches bench-boot.schema.json" \
			bench-boot.schema.json "$scratch/$name.json"
	else
		not_ok "$name: its profile"
		diag "$(cat "$scratch/$name.out")"
	fi
}

boot "x86_64 pc through PVH" vmlinux --arch x86_64 --machine pc
boot "x86_64 q35 through PVH" vmlinux --arch x86_64 --machine q35
boot "x86_64 pc through the bzImage" vmlinuz --arch x86_64 --machine pc \
	--kernel "$images/x86_64/vmlinuz"
boot "x86_64 q35 through the bzImage" vmlinuz --arch x86_64 --machine q35 \
	--kernel "$images/x86_64/vmlinuz"
boot "aarch64 virt" vmlinuz --arch aarch64

# expect_error DESCRIPTION STATUS MESSAGE ARGS...
expect_error() {
	desc=$1 status=$2 message=$3
	shift 3
	"$IVLAB" bench boot "$@" >"$scratch/out" 2>"$scratch/err"
	got=$?
	if [ "$got" = "$status" ] && grep -q -- "$message" "$scratch/err"; then
		ok "$desc: exit $got, '$message'"
	else
		not_ok "$desc: exit $got (want $status): $(cat "$scratch/err")"
	fi
}
expect_error "an unknown architecture" 2 "unknown architecture 'sparc'" --arch sparc
expect_error "no runs" 2 "runs must be" --runs 0
expect_error "a kernel without --arch" 2 "kernel needs --arch" --kernel /nonexistent
expect_error "a kernel that is not there" 1 "no /nonexistent" --arch x86_64 --kernel /nonexistent
expect_error "an operand" 2 "unexpected argument 'x'" x
left=$(pgrep -f "qemu-system.*ivlab-bench-boot" | wc -l)
check "no QEMU left running ($left)" test "$left" = 0
tap_done
