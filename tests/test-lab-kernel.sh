#!/bin/sh
# test-lab-kernel.sh: a guest that boots a kernel under test (<kernel>) beside
# one on the stock image, over a real libvirtd. The kernel is a small x86_64
# one built from Debian's linux-source-6.1 (tests/build-test-kernel.sh,
# cached by its config in the state dir, so CI pays the build once):
# ivlab.ko built against it drives the shared region, the suite passes, and
# each guest runs its own kernel, a lab <module> built against it loads. Then a <kernel> that cannot work (a build
# dir without .config, an image that is not a kernel, a needed option
# missing) fails `up` with the reason, exit 1, before anything is made.
# Outside CI the kernel is built only with IVLAB_TEST_KERNEL_BUILD=1.
. "$top_srcdir/tests/lib.sh"
IVLAB_TEST_LOCK_LATER=1 # the kernel build needs no libvirtd
. "$top_srcdir/tests/lab-lib.sh"

name=${IVLAB_TEST_LAB:-ivlabtest-kernel}
lab_names=$name
"$IVLAB" -q down "$name" >/dev/null 2>&1 || true

[ -r /usr/src/linux-source-6.1.tar.xz ] ||
	skip_or_fail "linux-source-6.1 is not installed (run setup-host.sh)"
for tool in make gcc flex bison bc; do
	command -v "$tool" >/dev/null 2>&1 || skip_or_fail "$tool is missing (run setup-host.sh)"
done
[ -r /usr/include/gelf.h ] || skip_or_fail "libelf-dev is missing (run setup-host.sh)"
missing=$(image_tools_missing x86_64)
[ -z "$missing" ] || skip_or_fail "x86_64 image: missing $missing"

# The build takes about 15 CPU-minutes (8 min on an idle 2-core machine):
# CI builds it (once: it is cached), a laptop only when asked.
build=$top_srcdir/tests/build-test-kernel.sh
if ! "$build" --cached x86_64 >/dev/null && [ "${CI:-}" != true ] &&
	[ "${IVLAB_TEST_KERNEL_BUILD:-}" != 1 ]; then
	echo "1..0 # SKIP the test kernel is not built: IVLAB_TEST_KERNEL_BUILD=1 builds it (8 min)"
	exit 0
fi
start=$(date +%s)
if ! kdir=$(nice "$build" x86_64 2>"$scratch/kbuild.err"); then
	not_ok "the test kernel builds"
	diag "$(tail -30 "$scratch/kbuild.err")"
	tap_done
	exit 1
fi
ok "the test kernel is there ($(($(date +%s) - start)) s; $(tail -1 "$kdir/build.log"))"
lock_libvirtd
release=$(cat "$kdir/include/config/kernel.release")
image=$kdir/arch/x86/boot/bzImage

# write_lab FILE IMAGE BUILD-DIR: a kernel-under-test guest (with our test
# module, built against BUILD-DIR) and a stock one sharing a doorbell
# region. The <kernel> element is on line 6.
write_lab() {
	cat >"$1" <<LAB
<?xml version="1.0"?>
<lab name="$name">
  <region name="shared" size="1MiB" mode="doorbell" vectors="1"/>
  <guest name="own" arch="x86_64">
    <attach region="shared"/>
    <kernel src="$2" build-dir="$3"/>
    <module src="$top_srcdir/tests/data/modules/ivtest" params="greeting=bonjour"/>
  </guest>
  <guest name="stock" arch="x86_64">
    <attach region="shared"/>
  </guest>
</lab>
LAB
}
lab=$scratch/kernel.lab.xml
write_lab "$lab" "$image" "$kdir"

if ! run_logged up "$IVLAB" -f "$lab" up; then
	not_ok "up with a guest on the test kernel and one on the stock image"
	tap_done
	exit 1
fi
ok "up with a guest on the test kernel and one on the stock image"

got=$("$IVLAB" -f "$lab" exec own -- uname -r 2>&1)
check "the <kernel> guest runs the test kernel ($got)" test "$got" = "$release"
stock=$("$IVLAB" -f "$lab" exec stock -- uname -r 2>&1)
check "the other guest runs the stock image's kernel ($stock)" \
	sh -c "[ '$stock' != '$release' ] && [ -n '$stock' ] && [ '$stock' = \"\$(cat '$state/images/x86_64/manifest' 2>/dev/null | sed -n 's/^kernel-release=//p')\" ]"
got=$("$IVLAB" -f "$lab" exec own -- sh -c 'basename "$(readlink /sys/bus/pci/devices/*:10.0/driver)"; test -d /sys/module/ivlab && echo loaded' 2>&1)
check "ivlab.ko built against the test kernel drives the region" test "$got" = "ivlab
loaded"
diag "$got"

got=$("$IVLAB" -f "$lab" exec own -- cat /sys/module/ivtest/parameters/greeting 2>&1)
check "a <module> built against the build-dir loads into the test kernel ($got)" test "$got" = bonjour

"$IVLAB" -f "$lab" test --tap >"$scratch/test.tap" 2>"$scratch/test.err"
status=$?
check "ivlab test passes across the two kernels" test $status -eq 0
diag "$(grep -v '^ok' "$scratch/test.tap")" "$(tail -5 "$scratch/test.err")"

check "down" run_logged down "$IVLAB" -f "$lab" down
check_clean "$name" "after down nothing of the lab remains"

# expect_refused DESCRIPTION LAB MESSAGE: up fails with exit 1 and MESSAGE
# (a grep pattern), and leaves nothing.
expect_refused() {
	"$IVLAB" -f "$2" up >"$scratch/refused.log" 2>&1
	status=$?
	check "$1: exit 1 with the reason" \
		sh -c "[ $status -eq 1 ] && grep -q -- \"\$1\" '$scratch/refused.log'" - "$3"
	diag "$(tail -2 "$scratch/refused.log")"
	check_clean "$name" "$1: nothing was made"
	check "$1: no lab directory" test ! -e "$state/labs/$name"
}

mkdir -p "$scratch/empty"
write_lab "$scratch/no-config.lab.xml" "$image" "$scratch/empty"
expect_refused "a build-dir without .config" "$scratch/no-config.lab.xml" \
	"no-config.lab.xml:6: kernel build-dir $scratch/empty: no .config (not a built kernel tree"

echo "not a kernel" >"$scratch/bzImage"
write_lab "$scratch/not-kernel.lab.xml" "$scratch/bzImage" "$kdir"
expect_refused "an image that is not a kernel" "$scratch/not-kernel.lab.xml" \
	"not-kernel.lab.xml:6: kernel $scratch/bzImage: not an x86_64 kernel (no bzImage header"

# The test kernel's tree without CONFIG_PCI_MSI: the files ivlab reads.
fake=$scratch/no-msi
mkdir -p "$fake/include/config" "$fake/include/generated"
grep -v '^CONFIG_PCI_MSI=' "$kdir/.config" >"$fake/.config"
cp "$kdir/Module.symvers" "$fake/"
cp "$kdir/include/config/kernel.release" "$fake/include/config/"
cp "$kdir/include/generated/utsrelease.h" "$fake/include/generated/"
write_lab "$scratch/no-msi.lab.xml" "$image" "$fake"
expect_refused "a needed option missing" "$scratch/no-msi.lab.xml" \
	"no-msi.lab.xml:6: kernel build-dir $fake: CONFIG_PCI_MSI is not set (ivlab needs it for the doorbells' MSI-X interrupts)"

tap_done
