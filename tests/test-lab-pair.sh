#!/bin/sh
# test-lab-pair.sh: end to end on domains/pair.xml over a real libvirtd: up,
# virsh, status, the suite, the console, down, nothing left.
. "$top_srcdir/tests/lib.sh"
. "$top_srcdir/tests/lab-lib.sh"

run_e2e pair.xml ivlabtest-pair
tap_done
