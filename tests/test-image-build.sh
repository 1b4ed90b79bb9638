#!/bin/sh
# test-image-build.sh: `ivlab image build` makes vmlinuz + initrd.img for
# both architectures in the shared state dir (built once per machine), the
# initramfs is a newc cpio with the layout /init expects, the files are
# readable by libvirt-qemu, a second build is a no-op, and concurrent builds
# wait for each other.
. "$top_srcdir/tests/lib.sh"

# The state dir ivlab uses (src/util.c): shared, so images are built once.
if [ -n "${IVLAB_STATE_DIR:-}" ]; then
	state=$IVLAB_STATE_DIR
elif [ "$(id -u)" -eq 0 ]; then
	state=/var/lib/ivlab
else
	state=${XDG_STATE_HOME:-$HOME/.local/state}/ivlab
fi
command -v cpio >/dev/null 2>&1 || skip_or_fail "cpio not found (Debian package cpio)"
command -v apt-get >/dev/null 2>&1 || skip_or_fail "apt-get not found: Debian kernels need a Debian host"

for arch in x86_64 aarch64; do
	dir="$state/images/$arch"
	missing=$(image_tools_missing "$arch")
	if [ -n "$missing" ]; then
		skip_or_fail_point "$arch: ivlab image build needs $missing (run setup-host.sh)"
		continue
	fi
	start=$(date +%s.%N)
	if ! "$IVLAB" image build --arch "$arch" >"$scratch/build.out" 2>&1; then
		not_ok "$arch: ivlab image build"
		diag "$(cat "$scratch/build.out")"
		continue
	fi
	end=$(date +%s.%N)
	ok "$arch: ivlab image build"
	diag "$arch: first build in this run took $(awk "BEGIN { printf \"%.1f\", $end - $start }") s: $(tail -n 1 "$scratch/build.out")"
	check "$arch: vmlinuz is there" [ -s "$dir/vmlinuz" ]
	check "$arch: initrd.img is there" [ -s "$dir/initrd.img" ]
	check "$arch: files are mode 0644" \
		[ "$(stat -c %a "$dir/vmlinuz") $(stat -c %a "$dir/initrd.img")" = "644 644" ]
	check "$arch: the image directory is mode 0755" [ "$(stat -c %a "$dir")" = 755 ]
	if id libvirt-qemu >/dev/null 2>&1 && command -v runuser >/dev/null 2>&1; then
		check "$arch: libvirt-qemu can read the kernel and initramfs" \
			runuser -u libvirt-qemu -- sh -c "cat '$dir/vmlinuz' '$dir/initrd.img' >/dev/null"
	fi

	# The initramfs: the recipe's compression, newc cpio, the layout
	# src/guest/init documents.
	compression=$(sed -n 's/^compression=//p' "$top_srcdir/images/$arch.conf")
	case $compression in
	gzip)
		check "$arch: initrd.img is gzip" sh -c "gzip -t '$dir/initrd.img'"
		gzip -dc "$dir/initrd.img" >"$scratch/initrd.cpio"
		;;
	zstd)
		check "$arch: initrd.img is zstd" sh -c "zstd -q -t '$dir/initrd.img'"
		zstd -q -dc "$dir/initrd.img" >"$scratch/initrd.cpio"
		;;
	*) cp "$dir/initrd.img" "$scratch/initrd.cpio" ;;
	esac
	check "$arch: the archive is newc cpio (070701)" [ "$(head -c 6 "$scratch/initrd.cpio")" = 070701 ]
	cpio -t --quiet <"$scratch/initrd.cpio" >"$scratch/listing" 2>"$scratch/cpio.err"
	check "$arch: cpio -t reads it" [ $? -eq 0 ]
	for file in init bin/busybox bin/sh sbin/ivlab-agent dev/console lib/modules/ivlab.ko \
		lib/modules/load.list lib/modules/virtio_console.ko lib/modules/virtio_pci.ko; do
		check "$arch: has /$file" grep -qx "$file" "$scratch/listing"
	done
	mkdir -p "$scratch/root-$arch"
	(cd "$scratch/root-$arch" && cpio -id --quiet <"$scratch/initrd.cpio" 2>/dev/null)
	root="$scratch/root-$arch"
	missing=
	while read -r module; do
		case $module in '#'*) continue ;; esac
		[ -f "$root/lib/modules/$module" ] || missing="$missing $module"
	done <"$root/lib/modules/load.list"
	check "$arch: every module in load.list is in the archive" [ -z "$missing" ]
	check "$arch: the modules only shares need come after '# share'" \
		sh -c 'sed -n "/^# share\$/,\$p" "$1" | grep -qx 9p.ko && ! sed "/^# share\$/,\$d" "$1" | grep -q "^9p"' \
		- "$root/lib/modules/load.list"
	check "$arch: virtio_console is loaded after virtio_pci" \
		awk '/^virtio_pci.ko$/ { p = NR } /^virtio_console.ko$/ { c = NR } END { exit !(p && c && p < c) }' \
		"$root/lib/modules/load.list"
	if [ "$arch" = x86_64 ]; then
		check "$arch: virtio (a module here) comes first" \
			awk 'NR == 1 { exit !($0 == "virtio_ring.ko" || $0 == "virtio.ko") }' "$root/lib/modules/load.list"
	fi
	case $arch in
	x86_64) magic='ELF 64-bit LSB.*x86-64' ;;
	aarch64) magic='ELF 64-bit LSB.*aarch64' ;;
	esac
	if command -v file >/dev/null 2>&1; then
		check "$arch: the agent is a static $arch binary" \
			sh -c "file -L '$root/sbin/ivlab-agent' | grep -E '$magic' | grep -q 'statically linked'"
		check "$arch: busybox is for $arch" sh -c "file -L '$root/bin/busybox' | grep -qE '$magic'"
	fi
	release=$(sed -n 's/^kernel-release=//p' "$dir/manifest")
	check "$arch: ivlab.ko is built for the image's kernel ($release)" \
		sh -c "tr '\\000' '\\n' <'$root/lib/modules/ivlab.ko' | grep -q '^vermagic=$release '"
	check "$arch: the agent in the image is the built one" \
		cmp -s "$root/sbin/ivlab-agent" "$top_builddir/src/guest/ivlab-agent-$arch"
	check "$arch: /init is the source tree's" cmp -s "$root/init" "$top_srcdir/src/guest/init"

	# Nothing changed: a second build is a fast no-op.
	before=$(stat -c %Y.%i "$dir/vmlinuz" "$dir/initrd.img" "$dir/manifest")
	"$IVLAB" image build --arch "$arch" >"$scratch/again.out" 2>&1
	check "$arch: a second build succeeds" [ $? -eq 0 ]
	check "$arch: ...says up to date" grep -q "$arch: image up to date" "$scratch/again.out"
	check "$arch: ...and rewrote nothing" [ "$(stat -c %Y.%i "$dir/vmlinuz" "$dir/initrd.img" "$dir/manifest")" = "$before" ]
done

# `ivlab image list`
"$IVLAB" image list >"$scratch/list" 2>&1
check "image list succeeds" [ $? -eq 0 ]
check "image list has a header" grep -q "^ARCH *KERNEL *SIZE *BUILT *PATH" "$scratch/list"
"$IVLAB" image list --json >"$scratch/list.json" 2>&1
check "image list --json is JSON" "${PYTHON3:-python3}" -c "
import json, sys
images = json.load(open(sys.argv[1]))['images']
assert isinstance(images, list)
for image in images:
    assert image['arch'] in ('x86_64', 'aarch64'), image
    assert image['intact'] is True, image
    assert image['vmlinuz_size'] > 0 and image['initrd_size'] > 0, image
" "$scratch/list.json"
json_schema_check "image list --json matches image-list.schema.json" image-list.schema.json "$scratch/list.json"

# Concurrent builds of one arch wait on the image's lock instead of colliding.
if command -v flock >/dev/null 2>&1 && [ -f "$state/images/x86_64/manifest" ]; then
	mkfifo "$scratch/release"
	flock "$state/images/x86_64/.lock" sh -c "read _ <'$scratch/release'" &
	holder=$!
	for _ in $(seq 100); do
		flock -n "$state/images/x86_64/.lock" true || break
		sleep 0.05
	done
	"$IVLAB" image build --arch x86_64 >"$scratch/wait.out" 2>&1 &
	builder=$!
	for _ in $(seq 200); do
		grep -q "the x86_64 image: waiting for another ivlab command" "$scratch/wait.out" && break
		sleep 0.05
	done
	check "a build waits for the lock another build holds" grep -q "the x86_64 image: waiting for another ivlab command" "$scratch/wait.out"
	check "...and has not finished while it is held" kill -0 $builder
	echo go >"$scratch/release"
	wait $holder
	wait $builder
	check "...then finishes once it is released" [ $? -eq 0 ]
	check "...finding the image up to date" grep -q "image up to date" "$scratch/wait.out"
fi

# Without arm64 in dpkg's architectures, the aarch64 build says what to do
# (a dpkg that knows only amd64 stands in for such a host).
mkdir -p "$scratch/fakebin"
cat >"$scratch/fakebin/dpkg" <<'EOT'
#!/bin/sh
case $1 in
--print-architecture) echo amd64 ;;
--print-foreign-architectures) ;;
*) exit 2 ;;
esac
EOT
chmod +x "$scratch/fakebin/dpkg"
if [ "$(uname -m)" = x86_64 ]; then
	IVLAB_STATE_DIR="$scratch/nostate" PATH="$scratch/fakebin:$PATH" \
		"$IVLAB" image build --arch aarch64 >/dev/null 2>"$scratch/err"
	check "no arm64 packages: the aarch64 build fails" [ $? -eq 1 ]
	check "...telling how to add them" grep -q "arm64 packages are not available to apt: run 'dpkg --add-architecture arm64 && apt-get update'" "$scratch/err"
	check "...having downloaded nothing" [ ! -d "$scratch/nostate/cache/debs" ] || [ -z "$(ls "$scratch/nostate/cache/debs")" ]
fi

"$IVLAB" image build --arch sparc >/dev/null 2>"$scratch/err"
check "an unknown --arch is a usage error" [ $? -eq 2 ]
check "...naming the choices" grep -q "x86_64, aarch64 or all" "$scratch/err"
"$IVLAB" image build --kernel /nonexistent >/dev/null 2>"$scratch/err"
check "--kernel without --kernel-build-dir is refused" [ $? -eq 2 ]
"$IVLAB" image frobnicate >/dev/null 2>"$scratch/err"
check "an unknown image subcommand is a usage error" [ $? -eq 2 ]
tap_done
