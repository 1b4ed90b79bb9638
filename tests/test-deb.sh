#!/bin/sh
# test-deb.sh: the Debian package. Builds it (dpkg-buildpackage -b from the
# checked-out tree), checks it with lintian, unpacks it into a scratch root
# (an overlay of this host with the package added, the source tree hidden)
# and there brings the default lab up, tests it and takes it down with the
# installed files only. Slow (minutes): runs when CI=true or IVLAB_TEST_DEB=1.
. "$top_srcdir/tests/lib.sh"

if [ "${CI:-}" != true ] && [ "${IVLAB_TEST_DEB:-}" != 1 ]; then
	echo "1..0 # SKIP slow (builds the package, boots the default lab): CI=true or IVLAB_TEST_DEB=1"
	exit 0
fi
[ "$(id -u)" -eq 0 ] || skip_or_fail "the installed lab needs root (qemu:///system, a mount namespace)"
for tool in dpkg-buildpackage dh lintian git unshare chroot virsh; do
	command -v "$tool" >/dev/null 2>&1 || skip_or_fail "$tool is missing (run setup-host.sh)"
done
git -C "$top_srcdir" rev-parse --git-dir >/dev/null 2>&1 || skip_or_fail "$top_srcdir is not a git checkout"

# The tree as committed plus what is new and not ignored, built apart from
# the developer's (configured) tree.
version=$(sed -n '1s/^ivlab (\([^)]*\)).*/\1/p' "$top_srcdir/debian/changelog")
src=$scratch/build/ivlab-$version
mkdir -p "$src"
(cd "$top_srcdir" && git ls-files -z --cached --others --exclude-standard) |
	(cd "$top_srcdir" && tar --null -T - -cf -) | tar -xf - -C "$src"
start=$(date +%s)
# Not the suite's make's flags: they carry its TEST_LOGS (every test), which
# would override the package build's own TESTS and run the whole suite there.
(cd "$src" && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u MAKEOVERRIDES \
	dpkg-buildpackage -b -us -uc) >"$scratch/build.log" 2>&1
status=$?
deb=$scratch/build/ivlab_${version}_amd64.deb
check "dpkg-buildpackage -b -us -uc makes ivlab_${version}_amd64.deb ($(($(date +%s) - start)) s)" \
	[ $status -eq 0 ] && [ -f "$deb" ]
[ -f "$deb" ] || { diag "$(tail -30 "$scratch/build.log")"; tap_done; exit; }
diag "$(dpkg-deb -f "$deb" Installed-Size Depends Recommends | sed 's/^/package: /')"
diag "package: $(stat -c %s "$deb") bytes"

lintian "$deb" >"$scratch/lintian" 2>&1
diag "$(sed 's/^/lintian: /' "$scratch/lintian")"
check "lintian: no error" sh -c '! grep -q "^E: " "$1"' - "$scratch/lintian"

dpkg-deb -c "$deb" >"$scratch/contents"
for path in ./usr/bin/ivlab ./usr/share/ivlab/domains/default.xml ./usr/share/ivlab/domains/lab.rng \
	./usr/share/ivlab/guest/ivlab_drv.c ./usr/share/ivlab/guest/init ./usr/share/ivlab/images/x86_64.conf \
	./usr/libexec/ivlab/ivlab-agent-x86_64 ./usr/libexec/ivlab/ivlab-agent-aarch64 \
	./usr/share/ivlab/schema/status.schema.json ./usr/share/bash-completion/completions/ivlab \
	./lib/systemd/system/ivlab-server@.service ./usr/share/man/man1/ivlab.1.gz; do
	check "the package has $path" grep -q " $path\$" "$scratch/contents"
done
dpkg-deb -x "$deb" "$scratch/pkg"
check "no path of the build tree is in the installed ivlab" \
	sh -c '! grep -qF "$1" "$2"' - "$src" "$scratch/pkg/usr/bin/ivlab"
check "...nor of the source tree" sh -c '! grep -qF "$1" "$2"' - "$top_srcdir" "$scratch/pkg/usr/bin/ivlab"
check "the unit runs the installed ivlab" grep -q '^ExecStart=/usr/bin/ivlab server ' \
	"$scratch/pkg/lib/systemd/system/ivlab-server@.service"

# The scratch root: this host (its libraries, libvirt, QEMU) through an
# overlay, the package unpacked into it, the source tree hidden; /tmp, /run,
# /dev, /proc and /sys shared, so libvirtd (outside) sees the state dir and
# the servers' sockets at the same paths.
root=$scratch/root
state=$scratch/state
mkdir -p "$root" "$scratch/upper" "$scratch/work" "$state"
# The Debian packages the images are built from, when this host has them.
for cache in "${IVLAB_STATE_DIR:-}" /var/lib/ivlab; do
	[ -n "$cache" ] && [ -d "$cache/cache" ] && { cp -a "$cache/cache" "$state/"; break; }
done
chmod 0755 "$scratch"
name=debtest
cat >"$scratch/in-root.sh" <<SCRIPT
set -e
mount --make-rprivate /
mount -t overlay overlay -o lowerdir=/,upperdir=$scratch/upper,workdir=$scratch/work $root
for dir in proc sys dev run tmp; do mount --rbind /\$dir $root/\$dir; done
# The trees themselves, not their top directory: that may be /tmp, where the
# state dir is.
mount -t tmpfs none $root$(cd "$top_srcdir" && pwd -P)
[ "$top_builddir" = "$top_srcdir" ] || mount -t tmpfs none $root$(cd "$top_builddir" && pwd -P) || :
# Into the merged /usr's directories, not over its /lib -> usr/lib link.
dpkg-deb --fsys-tarfile $deb | tar -x --keep-directory-symlink -C $root
exec chroot $root env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root IVLAB_STATE_DIR=$state \
	LIBVIRT_DEFAULT_URI=qemu:///system sh -c "\$1" - "\$2"
SCRIPT
in_root() {
	unshare -m sh "$scratch/in-root.sh" "$1" "$2"
}
in_root 'command -v ivlab; ivlab -c test:///default status --json' x >"$scratch/status.json" 2>"$scratch/status.err"
check "in the scratch root ivlab is /usr/bin/ivlab and finds the installed default lab" \
	sh -c 'head -1 "$1" | grep -qx /usr/bin/ivlab && grep -q "\"file\":\"/usr/share/ivlab/domains/default.xml\"" "$1"' \
	- "$scratch/status.json"
grep -qx /usr/bin/ivlab "$scratch/status.json" || diag "$(cat "$scratch/status.err")"
check "...and the source tree is out of sight" in_root '[ ! -e "$1" ]' "$top_srcdir/configure.ac"

# The default lab under a name of this test's (libvirt's domain names are
# global: the user's own default lab is left alone).
start=$(date +%s)
in_root 'cd /tmp && sed "s/<lab name=\"default\"/<lab name=\"$1\"/" /usr/share/ivlab/domains/default.xml >"$IVLAB_STATE_DIR/$1.xml" &&
	ivlab -f "$IVLAB_STATE_DIR/$1.xml" up && ivlab -f "$IVLAB_STATE_DIR/$1.xml" test &&
	ivlab -f "$IVLAB_STATE_DIR/$1.xml" down' "$name" >"$scratch/lab.log" 2>&1
status=$?
check "installed: ivlab up && ivlab test && ivlab down on the default lab ($(($(date +%s) - start)) s)" [ $status -eq 0 ]
[ $status -eq 0 ] || diag "$(tail -40 "$scratch/lab.log")"
grep -E "checks:|is up" "$scratch/lab.log" | while read -r line; do diag "$line"; done
if [ $status -ne 0 ]; then
	in_root 'ivlab -f "$IVLAB_STATE_DIR/$1.xml" down' "$name" >/dev/null 2>&1
fi
check "nothing of the lab is left in libvirt" sh -c '! virsh -q list --all --name | grep -q "^$1-"' - "$name"
tap_done
