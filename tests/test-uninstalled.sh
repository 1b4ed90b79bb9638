#!/bin/sh
# test-uninstalled.sh: no path of the source or build tree is compiled into
# ivlab; an ivlab run from its build tree finds the tree through the
# ivlab-uninstalled.conf make writes beside it, and a copy without it does not.
. "$top_srcdir/tests/lib.sh"

conf=$top_builddir/ivlab-uninstalled.conf
check "make wrote ivlab-uninstalled.conf beside ivlab" [ -f "$conf" ]
check "it names the source tree" grep -qxF "srcdir=$top_srcdir" "$conf"
check "it names the build tree" grep -qxF "builddir=$top_builddir" "$conf"

# Debug information may name the trees; the constant strings the code sees
# (.rodata) must not.
if objcopy -O binary --only-section=.rodata "$IVLAB" "$scratch/rodata" 2>"$scratch/err"; then
	tr '\0' '\n' <"$scratch/rodata" >"$scratch/strings"
	check ".rodata has strings" [ -s "$scratch/strings" ]
	check "the source tree's path is not one of ivlab's constant strings" \
		sh -c '! grep -qxF "$1" "$2"' - "$top_srcdir" "$scratch/strings"
	check "the build tree's path is not one of ivlab's constant strings" \
		sh -c '! grep -qxF "$1" "$2"' - "$top_builddir" "$scratch/strings"
else
	not_ok "objcopy reads ivlab's .rodata"
	diag "$(cat "$scratch/err")"
fi

# The same binary elsewhere: with the file beside it, it is the build tree's
# ivlab; without it, nothing leads it to the source tree.
mkdir "$scratch/bin" "$scratch/state"
cp "$IVLAB" "$scratch/bin/ivlab"
run() {
	(cd "$scratch" && env -u IVLAB_DATADIR IVLAB_STATE_DIR="$scratch/state" "$scratch/bin/ivlab" "$@")
}
run xml >"$scratch/bare.out" 2>&1
check "without the file the copy does not find the source tree's labs" \
	sh -c '! grep -qF "$1" "$2"' - "$top_srcdir" "$scratch/bare.out"
cp "$conf" "$scratch/bin/"
check "with the file beside the copy, it reads the source tree's default lab" \
	run xml x86a
run xml x86a >"$scratch/copy.xml" 2>&1
(cd "$scratch" && env -u IVLAB_DATADIR IVLAB_STATE_DIR="$scratch/state" "$IVLAB" xml x86a) >"$scratch/built.xml" 2>&1
check "and prints what the built ivlab prints" cmp -s "$scratch/copy.xml" "$scratch/built.xml"
tap_done
