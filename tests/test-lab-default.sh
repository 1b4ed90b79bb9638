#!/bin/sh
# test-lab-default.sh: end to end on domains/default.xml (x86_64 and aarch64
# guests, a doorbell and a plain region) over a real libvirtd.
. "$top_srcdir/tests/lib.sh"
. "$top_srcdir/tests/lab-lib.sh"

run_e2e default.xml ivlabtest-default
tap_done
