#!/bin/sh
# test-image-source.sh: the other kernel sources of `ivlab image build`, in a
# scratch state dir: --kernel-url (a linux-image .deb served on loopback:
# sha256 checked, cached, a damaged image rebuilt, a wrong sha256 leaving
# the image alone) and --kernel with --kernel-build-dir (modules from the
# build dir; a changed module source rebuilds). Reuses the shared debs.
. "$top_srcdir/tests/lib.sh"

PYTHON3=${PYTHON3:-python3}
if [ -n "${IVLAB_STATE_DIR:-}" ]; then
	shared=$IVLAB_STATE_DIR
elif [ "$(id -u)" -eq 0 ]; then
	shared=/var/lib/ivlab
else
	shared=${XDG_STATE_HOME:-$HOME/.local/state}/ivlab
fi
missing=$(image_tools_missing x86_64)
[ -z "$missing" ] || skip_or_fail "ivlab image build needs $missing (run setup-host.sh)"
if ! "$IVLAB" image build --arch x86_64 >"$scratch/shared.out" 2>&1; then
	not_ok "the shared x86_64 image builds"
	diag "$(cat "$scratch/shared.out")"
	tap_done
	exit 1
fi
deb_name=$(sed -n 's/^kernel-deb=//p' "$shared/images/x86_64/manifest")
release=$(sed -n 's/^kernel-release=//p' "$shared/images/x86_64/manifest")
deb="$shared/cache/debs/$deb_name"
if [ ! -f "$deb" ]; then
	not_ok "the shared cache keeps the kernel package the manifest names ($deb_name)"
	tap_done
	exit 1
fi
deb_sha=$(sha256sum "$deb" | cut -d' ' -f1)

export IVLAB_STATE_DIR="$scratch/state"
# A snapshot of the guest sources: edits to the tree while this runs must
# not look like changes to the images built here.
cp -r "$top_srcdir/src/guest" "$scratch/guest-sources"
export IVLAB_GUEST_DIR="$scratch/guest-sources"
# The shared packages, but a damaged busybox: it must be noticed (apt's
# sha256) and downloaded again.
mkdir -p "$IVLAB_STATE_DIR/cache/debs"
for file in "$shared"/cache/debs/*.deb; do
	ln -s "$file" "$IVLAB_STATE_DIR/cache/debs/"
done
busybox_deb=$(sed -n 's/^busybox-deb=//p' "$shared/images/x86_64/manifest")
rm -f "$IVLAB_STATE_DIR/cache/debs/$busybox_deb"
cp "$shared/cache/debs/$busybox_deb" "$IVLAB_STATE_DIR/cache/debs/$busybox_deb"
printf 'damage' | dd of="$IVLAB_STATE_DIR/cache/debs/$busybox_deb" bs=1 seek=5000 conv=notrunc 2>/dev/null
dir="$IVLAB_STATE_DIR/images/x86_64"

log="$scratch/requests.log"
: >"$log"
"$PYTHON3" "$top_srcdir/tests/image-http-server.py" "$shared/cache/debs" "$log" >"$scratch/server.out" 2>&1 &
server_pid=$!
trap 'kill $server_pid 2>/dev/null; wait $server_pid 2>/dev/null; rm -rf "$scratch"' EXIT
port=
for _ in $(seq 100); do
	port=$(sed -n 's/^port //p' "$scratch/server.out")
	[ -n "$port" ] && break
	sleep 0.05
done
[ -n "$port" ] || { not_ok "loopback HTTP server started"; tap_done; exit 1; }
url="http://127.0.0.1:$port/$deb_name"
requests() { grep -c "\"path\": \"/$deb_name\"" "$log"; }

# --kernel-url with Debian's own .deb: headers of the same release from apt.
"$IVLAB" image build --arch x86_64 --kernel-url "$url" --kernel-sha256 "$deb_sha" >"$scratch/out" 2>&1
status=$?
check "--kernel-url builds the image" [ $status -eq 0 ]
[ $status -eq 0 ] || diag "$(cat "$scratch/out")"
check "...noticing the damaged busybox package" grep -q "$busybox_deb: damaged in the cache, downloading it again" "$scratch/out"
check "...and replacing it" cmp -s "$IVLAB_STATE_DIR/cache/debs/$busybox_deb" "$shared/cache/debs/$busybox_deb"
check "...vmlinuz and initrd.img are there" [ -s "$dir/vmlinuz" ] && [ -s "$dir/initrd.img" ]
check "...the manifest names the URL" grep -qx "source=url $url" "$dir/manifest"
check "...and the kernel release" grep -qx "kernel-release=$release" "$dir/manifest"
check "...the vmlinuz is the package's" cmp -s "$dir/vmlinuz" "$shared/images/x86_64/vmlinuz"
check "...fetched once" [ "$(requests)" -eq 1 ]
"$IVLAB" image build --arch x86_64 --kernel-url "$url" --kernel-sha256 "$deb_sha" >"$scratch/out" 2>&1
check "the same --kernel-url again is up to date" grep -q "image up to date" "$scratch/out"
check "...and downloads nothing" [ "$(requests)" -eq 1 ]

# A damaged image is noticed and rebuilt, from the cached download.
printf x >>"$dir/initrd.img"
"$IVLAB" image list >"$scratch/list" 2>&1
check "image list marks a damaged image" grep -q "damaged" "$scratch/list"
"$IVLAB" image build --arch x86_64 --kernel-url "$url" --kernel-sha256 "$deb_sha" >"$scratch/out" 2>&1
check "a damaged image is rebuilt" grep -q "building the image" "$scratch/out"
check "...from the cache (no request)" [ "$(requests)" -eq 1 ]
"$IVLAB" image list --json >"$scratch/list.json" 2>&1
check "...and is intact again" "${PYTHON3:-python3}" -c "
import json, sys
images = json.load(open(sys.argv[1]))['images']
assert [i['intact'] for i in images if i['arch'] == 'x86_64'] == [True], images
" "$scratch/list.json"

# A wrong sha256 is refused and leaves the built image as it was.
before=$(sha256sum "$dir/vmlinuz" "$dir/initrd.img" "$dir/manifest")
wrong=1111111111111111111111111111111111111111111111111111111111111111
"$IVLAB" image build --arch x86_64 --kernel-url "$url" --kernel-sha256 "$wrong" >"$scratch/out" 2>&1
check "a wrong --kernel-sha256 fails" [ $? -eq 1 ]
check "...with the mismatch message" grep -q "$url: sha256 mismatch: expected $wrong, got $deb_sha; the download was deleted" "$scratch/out"
check "...leaving the image untouched" [ "$(sha256sum "$dir/vmlinuz" "$dir/initrd.img" "$dir/manifest")" = "$before" ]
check "...and no work directory behind" [ -z "$(find "$dir" -name 'work-*')" ]
check "...and no download behind" [ -z "$(find "$IVLAB_STATE_DIR/cache/downloads" -path "*$wrong*")" ]

# --kernel with a build directory: first one without modules.
headers="$IVLAB_STATE_DIR/cache/kbuild/$release/usr/src/linux-headers-$release"
cp "$shared/images/x86_64/vmlinuz" "$scratch/bzImage"
if [ ! -d "/lib/modules/$release" ]; then
	"$IVLAB" image build --arch x86_64 --kernel "$scratch/bzImage" --kernel-build-dir "$headers" >"$scratch/out" 2>&1
	check "a build dir without modules is refused" [ $? -eq 1 ]
	check "...saying where it looked" grep -q "has neither modules nor modules.builtin; nor is there /lib/modules/$release" "$scratch/out"
fi
# A build dir with the modules (Debian's headers plus the package's modules).
build="$scratch/build"
mkdir -p "$build" "$scratch/pkg"
for entry in "$headers"/* "$headers"/.config "$headers"/.kernelvariables; do
	ln -s "$entry" "$build/$(basename "$entry")"
done
dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$scratch/pkg" "./lib/modules/$release/kernel/drivers/virtio" \
	"./lib/modules/$release/kernel/drivers/char/virtio_console.ko" "./lib/modules/$release/modules.builtin"
mkdir -p "$build/drivers/char"
cp -r "$scratch/pkg/lib/modules/$release/kernel/drivers/virtio" "$build/drivers/"
cp "$scratch/pkg/lib/modules/$release/kernel/drivers/char/virtio_console.ko" "$build/drivers/char/"
cp "$scratch/pkg/lib/modules/$release/modules.builtin" "$build/"
"$IVLAB" image build --arch x86_64 --kernel "$scratch/bzImage" --kernel-build-dir "$build" >"$scratch/out" 2>&1
status=$?
check "--kernel with --kernel-build-dir builds the image" [ $status -eq 0 ]
[ $status -eq 0 ] || diag "$(cat "$scratch/out")"
check "...the manifest names the local kernel" grep -qx "source=local $scratch/bzImage" "$dir/manifest"
check "...with the virtio modules from the build dir" grep -q "^modules=.*virtio_console" "$dir/manifest"
gzip -dc "$dir/initrd.img" | cpio -t --quiet >"$scratch/listing" 2>/dev/null
check "...in the initramfs" grep -qx "lib/modules/virtio_pci.ko" "$scratch/listing"
"$IVLAB" image build --arch x86_64 --kernel "$scratch/bzImage" --kernel-build-dir "$build" >"$scratch/out" 2>&1
check "the same local kernel again is up to date" grep -q "image up to date" "$scratch/out"

# A change in the module's source rebuilds the image.
cp -r "$IVLAB_GUEST_DIR" "$scratch/guest"
echo "/* changed */" >>"$scratch/guest/ivlab_drv.c"
IVLAB_GUEST_DIR="$scratch/guest" "$IVLAB" image build --arch x86_64 --kernel "$scratch/bzImage" \
	--kernel-build-dir "$build" >"$scratch/out" 2>&1
check "a changed module source rebuilds" grep -q "building the image" "$scratch/out"

# A module built against the wrong kernel is caught before it is shipped.
"$IVLAB" image build --arch x86_64 --kernel-url "$url" --kernel-sha256 "$deb_sha" \
	--kernel-build-dir "$IVLAB_STATE_DIR/cache/kbuild" >"$scratch/out" 2>&1
check "a build dir that is not a kernel's fails" [ $? -eq 1 ]
tap_done
