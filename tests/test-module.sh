#!/bin/sh
# test-module.sh: the guest module, as make built it against the host's
# kernel headers with W=1, built without a warning, and checkpatch.pl finds
# nothing wrong with its sources (Linux kernel coding style).
. "$top_srcdir/tests/lib.sh"

[ "$IVLAB_MODULE_BUILD" = yes ] ||
	skip_or_fail "make did not build the module: configure found no kernel headers (Debian package linux-headers-amd64) or had --disable-module-build"

dir=$top_builddir/src/guest/module
check "make built ivlab.ko against $KERNEL_BUILD_DIR" [ -s "$dir/ivlab.ko" ]
check "the W=1 build log is there" [ -s "$dir/build.log" ]
if grep -qi 'warning' "$dir/build.log"; then
	not_ok "the module builds with W=1 without a warning"
	diag "$(grep -i 'warning' "$dir/build.log")"
else
	ok "the module builds with W=1 without a warning"
fi

# No Debian package installs checkpatch.pl; configure takes it from the
# kernel source tarball of linux-source-X (setup-host.sh installs it).
sources="$top_srcdir/src/guest/ivlab_drv.c $top_srcdir/src/guest/include/uapi/ivlab.h"
if [ -z "$CHECKPATCH" ] || [ ! -f "$CHECKPATCH" ]; then
	if [ "${CI:-}" = true ]; then
		not_ok "checkpatch.pl is there (Debian package linux-source-6.1, then configure)"
	else
		ok "checkpatch.pl finds nothing # SKIP no checkpatch.pl (Debian package linux-source-6.1, then configure)"
	fi
else
	# shellcheck disable=SC2086
	if perl "$CHECKPATCH" --no-tree --quiet --show-types -f $sources >"$scratch/checkpatch" 2>&1; then
		ok "checkpatch.pl finds nothing in the module's sources"
	else
		not_ok "checkpatch.pl finds nothing in the module's sources"
		diag "$(cat "$scratch/checkpatch")"
	fi
fi
tap_done
