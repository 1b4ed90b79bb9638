#!/bin/sh
# test-image-diskfull.sh: the disk fills up in the middle of `ivlab image
# build` (a state directory on a small tmpfs, the Debian packages already
# in its cache so the build gets as far as unpacking the kernel's headers):
# a clear error naming the full disk, exit 1, and no image left that looks
# usable; with room again, the same build succeeds.
. "$top_srcdir/tests/lib.sh"

missing=$(image_tools_missing x86_64)
[ -z "$missing" ] || skip_or_fail "x86_64 images need: $missing"
[ "$(id -u)" -eq 0 ] || skip_or_fail "mounting a small tmpfs needs root"

if [ -n "${IVLAB_STATE_DIR:-}" ]; then
	shared=$IVLAB_STATE_DIR
else
	shared=/var/lib/ivlab
fi
full=$scratch/full
mkdir -p "$full"
mount -t tmpfs -o size=150M,mode=0755 ivlabtest-full "$full" ||
	skip_or_fail "cannot mount a tmpfs on $full"
trap 'umount "$full" 2>/dev/null; rm -rf "$scratch"' EXIT
# The packages from the shared cache when it has them (else they download
# into the small disk, and that fills it just the same).
if [ -d "$shared/cache/debs" ]; then
	mkdir -p "$full/cache"
	cp -a "$shared/cache/debs" "$full/cache/" 2>/dev/null
fi
diag "tmpfs: $(df -h "$full" | tail -1)"

IVLAB_STATE_DIR=$full "$IVLAB" image build --arch x86_64 >"$scratch/build.out" 2>&1
status=$?
check "image build on a full disk fails (exit $status)" test $status -eq 1
check "... saying the disk is full" grep -q "No space left on device" "$scratch/build.out"
diag "$(grep -v '^ *[0-9.]* MiB' "$scratch/build.out" | tail -3)"
check "... and no image is left that looks usable (no manifest, initrd or vmlinuz)" \
	sh -c "! ls '$full/images/x86_64/manifest' '$full/images/x86_64/initrd.img' \
		'$full/images/x86_64/vmlinuz' 2>/dev/null | grep -q ."
IVLAB_STATE_DIR=$full "$IVLAB" image list >"$scratch/list.out" 2>&1
check "image list on that state dir says there is no x86_64 image" \
	sh -c "! grep -q '^x86_64 ' '$scratch/list.out'"
diag "$(cat "$scratch/list.out")"

# Room again: the same state directory builds.
mount -o remount,size=1G "$full"
if IVLAB_STATE_DIR=$full "$IVLAB" image build --arch x86_64 >"$scratch/build2.out" 2>&1; then
	ok "with room again, the build in the same state directory succeeds"
else
	not_ok "with room again, the build in the same state directory succeeds"
	diag "$(tail -5 "$scratch/build2.out")"
fi
tap_done
