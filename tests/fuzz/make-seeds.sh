#!/bin/sh
# make-seeds.sh OUT: the seed inputs of each fuzz target that are made from
# the tree rather than committed: the labs (domains/, tests/data), small
# Debian packages (ar + tar, each compression), fake busybox binaries, an
# ELF object with a .modinfo, ivshmem server conversations, and bzImages
# (gzip, xz, zstd; with and without the PVH note) from tests/unit-kimage's
# generator. Written to OUT/TARGET/, one file per input. Needs: ar, tar,
# gzip, xz, zstd, cc, and tests/unit-kimage built (else one header-only seed).
set -eu
out=$1
src=${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}
rm -rf "$out"
for target in lab deb initramfs kmod server peer kimage; do
	mkdir -p "$out/$target"
done

# lab: every lab file of the tree, good and bad.
n=0
for file in "$src"/domains/*.xml "$src"/tests/data/*.lab.xml "$src"/tests/data/*/*.lab.xml; do
	[ -f "$file" ] || continue
	n=$((n + 1))
	cp "$file" "$out/lab/$n-$(basename "$file")"
done

scratch=$(mktemp -d "${TMPDIR:-/tmp}/fuzz-seeds-XXXXXX")
trap 'rm -rf "$scratch"' EXIT

# deb: debian-binary, control.tar.gz, data.tar.{gz,xz,zst,} with a kernel,
# a directory, a symlink and a hard link.
mkdir -p "$scratch/root/boot" "$scratch/root/lib/modules/6.1.0-57-amd64" "$scratch/ctl"
printf 'kernel\n' >"$scratch/root/boot/vmlinuz"
printf 'kernel/fs/x.ko\n' >"$scratch/root/lib/modules/6.1.0-57-amd64/modules.builtin"
ln -s vmlinuz "$scratch/root/boot/vmlinuz.link"
ln "$scratch/root/boot/vmlinuz" "$scratch/root/boot/vmlinuz.hard"
printf 'Package: fuzz\nVersion: 1\nArchitecture: amd64\n' >"$scratch/ctl/control"
printf '2.0\n' >"$scratch/debian-binary"
tar -C "$scratch/ctl" -czf "$scratch/control.tar.gz" ./control
for z in gz xz zst none; do
	case $z in
	gz) tar -C "$scratch/root" -czf "$scratch/data.tar.gz" . ; member=data.tar.gz ;;
	xz) tar -C "$scratch/root" -cJf "$scratch/data.tar.xz" . ; member=data.tar.xz ;;
	zst) tar -C "$scratch/root" -cf - . | zstd -q >"$scratch/data.tar.zst"; member=data.tar.zst ;;
	none) tar -C "$scratch/root" -cf "$scratch/data.tar" . ; member=data.tar ;;
	esac
	(cd "$scratch" && ar rc "$out/deb/fuzz-$z.deb" debian-binary control.tar.gz "$member")
done

# deb: a package whose hard links go through its own symlink to "..", one
# with data (extraction must keep them inside its directory).
if command -v "${PYTHON3:-python3}" >/dev/null 2>&1; then
	"${PYTHON3:-python3}" - "$scratch/data.tar" <<'PY'
import io, sys, tarfile
with tarfile.open(sys.argv[1], "w") as tar:
    link = tarfile.TarInfo("./l"); link.type = tarfile.SYMTYPE; link.linkname = ".."
    tar.addfile(link)
    hard = tarfile.TarInfo("./h"); hard.type = tarfile.LNKTYPE; hard.linkname = "./l/sentinel"
    tar.addfile(hard)
    data = b"replaced\n"
    full = tarfile.TarInfo("./h2"); full.type = tarfile.LNKTYPE; full.linkname = "l/sentinel"
    full.size = len(data)
    tar.addfile(full, io.BytesIO(data))
PY
	(cd "$scratch" && ar rc "$out/deb/links-escape.deb" debian-binary control.tar.gz data.tar)
fi

# initramfs: a "binary" with busybox's applet table (and one too short).
{
	printf '\177ELF\2\1\1\0junk before the table\0['
	printf '\0[[\0acpid\0addgroup\0adduser\0ar\0arch\0ash\0awk\0basename\0cat\0chmod\0sh\0\0tail'
} >"$out/initramfs/busybox-like"
printf 'x\0[\0[[\0ls\0\0' >"$out/initramfs/short-table"

# kmod: an object with a .modinfo section, as a module has.
cc=${CC:-cc}
printf '%s\n' \
	'__attribute__((section(".modinfo"), used)) static const char info[] =' \
	'	"license=GPL\0vermagic=6.1.0-57-amd64 SMP preempt mod_unload modversions \0"' \
	'	"depends=virtio\0name=fuzz";' >"$scratch/mod.c"
if $cc -c -o "$out/kmod/mod.o" "$scratch/mod.c" 2>/dev/null; then :; else
	printf '\177ELF\2\1\1' >"$out/kmod/elf-header"
fi

# kimage: the unit test's synthetic kernels (a boot header, a tiny ELF64
# with the PVH note or without, compressed) and that ELF alone.
unit_kimage=${top_builddir:-$src}/tests/unit-kimage
if [ -x "$unit_kimage" ] && "$unit_kimage" --write-seeds "$out/kimage"; then :; else
	{
		head -c 514 /dev/zero
		printf 'HdrS\017\002'
	} >"$out/kimage/header-only"
fi

# server: scripts of operations (fuzz-server.c): connect two, query, read,
# send garbage, half-close, reset; each op one byte, operands after it.
printf '\000\000\005\004\000\004\001' >"$out/server/connect-query-read"
printf '\000\000\000\002\001\003abc\003\000\007\000\005' >"$out/server/garbage-halfclose-reset"
printf '\000\000\000\000\000\000\000\000\005\001\000\001\000\005' >"$out/server/refused-at-max"
printf '\000\006\000\004x\005' >"$out/server/send-fd"

# peer: the setup of a server with 2 vectors (version 0, id 1, memory),
# peer 2's two vectors, our two, then peer 2 leaving; messages of
# 8 LE bytes + fd kind (0 none, 1 eventfd, 2 memfd) + split.
le() { printf "$1"'\000\000\000\000\000\000\000'; }
{
	printf '\002'
	le '\000'; printf '\000\000'
	le '\001'; printf '\000\000'
	printf '\377\377\377\377\377\377\377\377\002\000'
	le '\002'; printf '\001\000'
	le '\002'; printf '\001\003'
	le '\001'; printf '\001\000'
	le '\001'; printf '\001\024'
	le '\002'; printf '\000\000'
} >"$out/peer/setup-two-vectors"
{
	printf '\000'
	le '\000'; printf '\000\000'
	le '\007'; printf '\000\000'
	printf '\377\377\377\377\377\377\377\377\002\000'
	le '\007'; printf '\001\000'
} >"$out/peer/setup-unknown-vectors"
