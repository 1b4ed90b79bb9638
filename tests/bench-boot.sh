#!/bin/sh
# bench-boot.sh: boot times side by side, RUNS times each, medians:
#  1. an x86_64 guest alone to agent-ready: ivlab's image (its vmlinux,
#     entered through PVH) against the stock Debian bzImage with the same
#     initramfs, booted by QEMU the obvious way (-kernel vmlinuz: SeaBIOS,
#     linuxboot, decompression), same devices; and the aarch64 image alone;
#  2. `ivlab up` of a lab (default: the default lab, under a bench-only
#     name) against the same images booted together by bare QEMU (`ivlab
#     bench boot --lab`: no libvirt, no ivshmem servers);
#  3. the initramfs compressed each way Debian's kernels unpack (none,
#     gzip, lz4, zstd), each arch alone: size against the kernel stage
#     (which includes the unpacking) and agent-ready;
#  4. with BIG=1, also `up` of a 16-guest lab (12 x86_64 + 4 aarch64).
#   make bench-boot [BOOT_RUNS=5] [BIG=1]   or   tests/bench-boot.sh [RUNS]
# Needs root, libvirtd and the images (ivlab image build); honours
# IVLAB_STATE_DIR and IVLAB (the ivlab binary, default ./ivlab).
set -u
top_srcdir=${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}
IVLAB=${IVLAB:-$top_srcdir/ivlab}
runs=${1:-5}
name=${IVLAB_BENCH_LAB:-ivlabbench-boot}
export LIBVIRT_DEFAULT_URI=${LIBVIRT_DEFAULT_URI:-qemu:///system}
scratch=$(mktemp -d /tmp/bench-boot-XXXXXX)
trap '"$IVLAB" -q down "$name" >/dev/null 2>&1; "$IVLAB" -q down "$name-big" >/dev/null 2>&1; rm -rf "$scratch"' EXIT

die() {
	echo "bench-boot: $*" >&2
	exit 1
}

"$IVLAB" -q image build --arch all || die "the images do not build"
images=$("$IVLAB" image list --json | python3 -c '
import json, os, sys
print(os.path.dirname(os.path.dirname(json.load(sys.stdin)["images"][0]["vmlinuz"])))')

# median FILE: the median of the numbers in FILE, one a line.
median() {
	sort -n "$1" | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# ready JSON-FILE: the median seconds to agent-ready of the slowest machine.
ready() {
	python3 -c '
import json, sys
doc = json.load(open(sys.argv[1]))
print(max(m["median"]["ready"] for m in doc["machines"]))' "$1"
}

echo "== 1. a guest alone, plain QEMU, $runs runs, median stages (s)"
"$IVLAB" bench boot --arch x86_64 --runs "$runs" || die "bench boot x86_64"
"$IVLAB" bench boot --arch x86_64 --runs "$runs" --kernel "$images/x86_64/vmlinuz" ||
	die "bench boot x86_64 (bzImage)"
"$IVLAB" bench boot --arch aarch64 --runs "$runs" || die "bench boot aarch64"
"$IVLAB" bench boot --arch x86_64 --runs "$runs" --json >"$scratch/pvh.json" &&
	"$IVLAB" bench boot --arch x86_64 --runs "$runs" --json \
		--kernel "$images/x86_64/vmlinuz" >"$scratch/bzimage.json" || die "bench boot --json"
pvh=$(ready "$scratch/pvh.json")
bz=$(ready "$scratch/bzimage.json")
echo "x86_64 agent-ready: ivlab's image ${pvh} s, stock bzImage ${bz} s: ratio $(echo "$pvh $bz" | awk '{ printf "%.2f", $1 / $2 }') (goal <= 0.4)"

# up_times LAB NAME: RUNS times `up` then `down` of LAB as NAME, the up's
# wall seconds in $scratch/NAME.up.
up_times() {
	sed "s/<lab name=\"[^\"]*\"/<lab name=\"$2\"/" "$1" >"$scratch/$2.lab.xml"
	: >"$scratch/$2.up"
	"$IVLAB" -q down "$2" >/dev/null 2>&1
	for run in $(seq "$runs"); do
		start=$(date +%s.%N)
		"$IVLAB" -q -f "$scratch/$2.lab.xml" up || die "up of $2 failed"
		end=$(date +%s.%N)
		echo "$start $end" | awk '{ printf "%.2f\n", $2 - $1 }' >>"$scratch/$2.up"
		"$IVLAB" -q -f "$scratch/$2.lab.xml" down || die "down of $2 failed"
		echo "  $2: up run $run: $(tail -1 "$scratch/$2.up") s"
	done
}

lab=${LAB:-$top_srcdir/domains/default.xml}
echo "== 2. ivlab up of $(basename "$lab") against bare QEMU, $runs runs"
up_times "$lab" "$name"
"$IVLAB" -f "$scratch/$name.lab.xml" bench boot --lab --runs "$runs" --json >"$scratch/bare.json" ||
	die "bench boot --lab"
"$IVLAB" -f "$scratch/$name.lab.xml" bench boot --lab --runs "$runs"
up=$(median "$scratch/$name.up")
bare=$(ready "$scratch/bare.json")
echo "up ${up} s, the same images together under bare QEMU ${bare} s: ratio $(echo "$up $bare" | awk '{ printf "%.2f", $1 / $2 }') (goal <= 1.15)"

echo "== 3. initramfs compression, each arch alone, $runs runs, medians"
printf '%-8s %-6s %10s %8s %8s\n' ARCH FORMAT BYTES KERNEL READY
for arch in x86_64 aarch64; do
	gzip -dc "$images/$arch/initrd.img" >"$scratch/$arch.cpio" || die "$arch: initrd is not gzip"
	cp "$scratch/$arch.cpio" "$scratch/$arch.none"
	gzip -9 -c "$scratch/$arch.cpio" >"$scratch/$arch.gzip"
	lz4 -l -9 -q -c "$scratch/$arch.cpio" >"$scratch/$arch.lz4" # the kernel reads lz4's legacy frames
	zstd -19 -q -c "$scratch/$arch.cpio" >"$scratch/$arch.zstd"
	for format in none gzip lz4 zstd; do
		"$IVLAB" bench boot --arch "$arch" --runs "$runs" --initrd "$scratch/$arch.$format" \
			--json >"$scratch/$arch.$format.json" || die "$arch with a $format initramfs"
		python3 -c '
import json, sys
m = json.load(open(sys.argv[1]))["machines"][0]["median"]
print("%-8s %-6s %10s %8.2f %8.2f" % (sys.argv[2], sys.argv[3], sys.argv[4], m["kernel"], m["ready"]))' \
			"$scratch/$arch.$format.json" "$arch" "$format" "$(stat -c %s "$scratch/$arch.$format")"
	done
done

if [ "${BIG:-}" = 1 ]; then
	echo "== 4. ivlab up of a 16-guest lab (12 x86_64 + 4 aarch64), $runs runs"
	{
		echo '<lab name="big">'
		echo '  <region name="bell" size="1MiB" mode="doorbell" vectors="1"/>'
		for i in $(seq 12); do
			echo "  <guest name=\"x$i\" arch=\"x86_64\"><attach region=\"bell\"/></guest>"
		done
		for i in $(seq 4); do
			echo "  <guest name=\"a$i\" arch=\"aarch64\"><attach region=\"bell\"/></guest>"
		done
		echo '</lab>'
	} >"$scratch/big.xml"
	up_times "$scratch/big.xml" "$name-big"
	echo "16 guests: up $(median "$scratch/$name-big.up") s (median)"
fi
