#!/bin/sh
# bench-boot.sh: boot times side by side, RUNS rounds (each variant
# once a round, round-robin), medians:
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
bench=boot
. "$top_srcdir/tests/bench-lib.sh"
runs=${1:-5}
name=${IVLAB_BENCH_LAB:-ivlabbench-boot}
trap '"$IVLAB" -q down "$name" >/dev/null 2>&1; "$IVLAB" -q down "$name-big" >/dev/null 2>&1; rm -rf "$scratch"' EXIT

"$IVLAB" -q image build --arch all || die "the images do not build"
images=$("$IVLAB" image list --json | python3 -c '
import json, os, sys
print(os.path.dirname(os.path.dirname(json.load(sys.stdin)["images"][0]["vmlinuz"])))')

# ready JSON-FILE: the median seconds to agent-ready of the slowest machine.
ready() {
	python3 -c '
import json, sys
doc = json.load(open(sys.argv[1]))
print(max(m["median"]["ready"] for m in doc["machines"]))' "$1"
}

# Variants are booted round-robin, one boot each per round, so that a
# change in the host's load touches all of them alike, and in a new random
# order each round: in a fixed order (or a rotated one) each variant follows
# the same one every round, and a boot shows what ran before it (a fixed
# order made aarch64-gzip 0.3 s slower than aarch64-none; booted in
# alternating order the two were equal, 1.94 and 1.93 s).
# round LABEL ARG...: one `ivlab bench boot --runs 1 --json ARG...` into
# $scratch/LABEL.ROUND.json ($round).
round() {
	label=$1
	shift
	"$IVLAB" bench boot --runs 1 --json "$@" >"$scratch/$label.$round.json" ||
		die "bench boot $* failed"
}

# shuffled WORD...: the words in a random order.
shuffled() {
	printf '%s\n' "$@" | shuf | tr '\n' ' '
}

# medians LABEL...: per label, the median of each stage over its rounds
# (one table row; LABEL=TEXT names the row), then "LABEL READY" lines on fd 3.
medians() {
	python3 - "$scratch" "$@" <<'PY'
import glob, json, os, statistics, sys
scratch, labels = sys.argv[1], sys.argv[2:]
stages = ["qemu", "firmware", "kernel", "init", "modules", "agent", "ready"]
print("%-24s %-8s" % ("VARIANT", "BYTES") + "".join("%9s" % s.upper() for s in stages))
for spec in labels:
    label, _, text = spec.partition("=")
    boots = [json.load(open(f))["machines"][0]["boots"][0]
             for f in glob.glob(os.path.join(scratch, label + ".[0-9]*.json"))]
    row = {s: statistics.median(b.get(s, 0) for b in boots) for s in stages}
    print("%-24s %-8s" % (label, text) + "".join("%9.2f" % row[s] for s in stages))
    os.write(3, ("%s %.3f\n" % (label, row["ready"])).encode())
PY
}

echo "== 1. a guest alone, plain QEMU, $runs rounds, median stages (s)"
for round in $(seq "$runs"); do
	for variant in $(shuffled x86_64-vmlinux x86_64-bzimage aarch64); do
		case $variant in
		x86_64-vmlinux) round "$variant" --arch x86_64 ;;
		x86_64-bzimage) round "$variant" --arch x86_64 --kernel "$images/x86_64/vmlinuz" ;;
		aarch64) round "$variant" --arch aarch64 ;;
		esac
	done
done
medians x86_64-vmlinux x86_64-bzimage aarch64 3>"$scratch/ready"
pvh=$(awk '$1 == "x86_64-vmlinux" { print $2 }' "$scratch/ready")
bz=$(awk '$1 == "x86_64-bzimage" { print $2 }' "$scratch/ready")
echo "x86_64 agent-ready: ivlab's image ${pvh} s, stock bzImage ${bz} s: ratio $(echo "$pvh $bz" | awk '{ printf "%.2f", $1 / $2 }') (goal <= 0.4)"

# lab_as LAB NAME: LAB renamed NAME, in $scratch/NAME.lab.xml; no such lab up.
lab_as() {
	renamed "$1" "$2" >"$scratch/$2.lab.xml"
	: >"$scratch/$2.up"
	"$IVLAB" -q down "$2" >/dev/null 2>&1
}

# up_once NAME: `up` then `down` of lab NAME, the up's wall seconds
# appended to $scratch/NAME.up.
up_once() {
	timed "$scratch/$1.up" "$IVLAB" -q -f "$scratch/$1.lab.xml" up || die "up of $1 failed"
	"$IVLAB" -q -f "$scratch/$1.lab.xml" down || die "down of $1 failed"
}

lab=${LAB:-$top_srcdir/domains/default.xml}
echo "== 2. ivlab up of $(basename "$lab") against bare QEMU, $runs rounds"
lab_as "$lab" "$name"
: >"$scratch/bare"
for round in $(seq "$runs"); do
	up_once "$name"
	"$IVLAB" -f "$scratch/$name.lab.xml" bench boot --lab --runs 1 --json >"$scratch/bare.json" ||
		die "bench boot --lab"
	ready "$scratch/bare.json" >>"$scratch/bare"
	echo "  round $round: up $(tail -1 "$scratch/$name.up") s, bare QEMU $(tail -1 "$scratch/bare") s"
done
up=$(median "$scratch/$name.up")
bare=$(median "$scratch/bare")
echo "up ${up} s, the same images together under bare QEMU ${bare} s: ratio $(echo "$up $bare" | awk '{ printf "%.2f", $1 / $2 }') (goal <= 1.15)"

echo "== 3. initramfs compression, each arch alone, $runs rounds, medians (kernel includes the unpacking)"
for arch in x86_64 aarch64; do
	# The image's archive, whatever its recipe compresses it with.
	case $(od -An -tx1 -N4 "$images/$arch/initrd.img" | tr -d ' ') in
	1f8b*) gzip -dc "$images/$arch/initrd.img" ;;
	28b52ffd) zstd -q -dc "$images/$arch/initrd.img" ;;
	*) cat "$images/$arch/initrd.img" ;;
	esac >"$scratch/$arch.cpio" || die "$arch: cannot read the image's initramfs"
	cp "$scratch/$arch.cpio" "$scratch/$arch.none"
	gzip -9 -c "$scratch/$arch.cpio" >"$scratch/$arch.gzip"
	lz4 -l -9 -q -c "$scratch/$arch.cpio" >"$scratch/$arch.lz4" # the kernel reads lz4's legacy frames
	zstd -19 -q -c "$scratch/$arch.cpio" >"$scratch/$arch.zstd"
done
variants=
for arch in x86_64 aarch64; do
	for format in none gzip lz4 zstd; do
		variants="$variants $arch-$format"
	done
done
for round in $(seq "$runs"); do
	# shellcheck disable=SC2086 # one word per variant
	for variant in $(shuffled $variants); do
		round "$variant" --arch "${variant%-*}" --initrd "$scratch/${variant%-*}.${variant##*-}"
	done
done
rows=
for arch in x86_64 aarch64; do
	for format in none gzip lz4 zstd; do
		rows="$rows $arch-$format=$(stat -c %s "$scratch/$arch.$format")"
	done
done
# shellcheck disable=SC2086 # one word per row
medians $rows 3>/dev/null

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
	lab_as "$scratch/big.xml" "$name-big"
	for round in $(seq "$runs"); do
		up_once "$name-big"
		echo "  run $round: up $(tail -1 "$scratch/$name-big.up") s"
	done
	echo "16 guests: up $(median "$scratch/$name-big.up") s (median)"
fi
