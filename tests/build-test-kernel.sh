#!/bin/sh
# build-test-kernel.sh [--cached] ARCH: builds the small kernel of
# tests/data/kernel/ARCH.config from Debian's linux-source-6.1 (out of tree,
# make O=) and prints its build directory. Cached in
# $IVLAB_STATE_DIR/cache/kernels/ARCH-DIGEST (DIGEST: the config fragment,
# the source tarball and RECIPE), so CI pays it once. With --cached, only
# says whether it is built: prints the directory, or fails with status 4.
set -eu

# Bump when the way the kernel is built below changes.
RECIPE=1
cached_only=
if [ "$1" = --cached ]; then
	cached_only=1
	shift
fi
arch=$1
here=$(cd "$(dirname "$0")" && pwd)
fragment=$here/data/kernel/$arch.config
tarball=${IVLAB_LINUX_SOURCE:-/usr/src/linux-source-6.1.tar.xz}
state=${IVLAB_STATE_DIR:-/var/lib/ivlab}
cache=$state/cache/kernels

case $arch in
x86_64) karch=x86_64 cross= image=arch/x86/boot/bzImage ;;
aarch64) karch=arm64 cross=aarch64-linux-gnu- image=arch/arm64/boot/Image ;;
*) echo "build-test-kernel.sh: unknown arch $arch" >&2; exit 2 ;;
esac
[ -r "$tarball" ] || { echo "build-test-kernel.sh: no $tarball (apt-get install linux-source-6.1)" >&2; exit 3; }

source_id=$(stat -c '%s %Y' "$tarball")
digest=$( (cat "$fragment"; echo "$source_id $arch recipe $RECIPE") | sha256sum | cut -c1-16)
out=$cache/$arch-$digest
if [ -r "$out/.ivlab-built" ]; then
	echo "$out"
	exit 0
fi
[ -z "$cached_only" ] || exit 4

src_digest=$(echo "$source_id" | sha256sum | cut -c1-16)
src=$cache/src-$src_digest
mkdir -p "$cache"
# One build at a time per cache: a second caller waits for the first and
# then finds its result, rather than both writing one build directory.
exec 9>"$cache/.lock"
flock 9
if [ -r "$out/.ivlab-built" ]; then
	echo "$out"
	exit 0
fi
if [ ! -r "$src/.ivlab-unpacked" ]; then
	rm -rf "$src" "$src.tmp"
	mkdir -p "$src.tmp"
	tar -xJf "$tarball" -C "$src.tmp" --strip-components=1
	touch "$src.tmp/.ivlab-unpacked"
	mv "$src.tmp" "$src"
fi

rm -rf "$out"
mkdir -p "$out"
log=$out/build.log
start=$(date +%s)
jobs=$(nproc)
if ! { make -C "$src" O="$out" ARCH=$karch CROSS_COMPILE=$cross \
		KCONFIG_ALLCONFIG="$fragment" allnoconfig &&
	make -C "$src" O="$out" ARCH=$karch CROSS_COMPILE=$cross -j"$jobs" \
		"$(basename "$image")" modules; } >"$log" 2>&1; then
	tail -n 30 "$log" >&2
	echo "build-test-kernel.sh: kernel build failed, log in $log" >&2
	exit 1
fi
# What the fragment asked for and Kconfig dropped (an unmet dependency) is a
# bug in the fragment: say so rather than boot a kernel that lacks it.
grep '^CONFIG_' "$fragment" | while IFS= read -r line; do
	grep -qx "$line" "$out/.config" || {
		echo "build-test-kernel.sh: $line did not make it into $out/.config" >&2
		exit 1
	}
done
echo "built in $(($(date +%s) - start)) s" >>"$log"
touch "$out/.ivlab-built"
echo "$out"
