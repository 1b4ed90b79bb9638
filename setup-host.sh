#!/bin/sh
# setup-host.sh: prepare a Debian 12 host (as root) for ivlab: packages,
# arm64 multiarch for guest packages, /dev/kvm permissions, the libvirt
# daemons when no systemd runs them; then build ivlab in the source tree.
set -eu
cd "$(dirname "$0")"

if [ "$(id -u)" -ne 0 ]; then
	echo "setup-host.sh: run me as root (apt-get, libvirtd)" >&2
	exit 1
fi

# linux-headers-ARCH: make builds the guest module against them (W=1);
# linux-source-6.1: its tarball carries checkpatch.pl, which no Debian package
# installs, for make check, and the sources of the kernel tests/build-test-kernel.sh
# builds (with flex, bison, bc and libelf-dev) for test-lab-kernel.sh; clang (with
# libFuzzer and its sanitizers): make fuzz and its smoke test in make check.
packages="
	autoconf automake libtool pkg-config make gcc libc6-dev
	libglib2.0-dev libjson-glib-dev libvirt-dev libxml2-dev libxml2-utils libcurl4-gnutls-dev libarchive-dev
	liblzma-dev zlib1g-dev libzstd-dev
	libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients
	qemu-system-x86 qemu-system-arm qemu-system-data
	gcc-aarch64-linux-gnu libc6-dev-arm64-cross linux-kbuild-6.1
	linux-headers-$(dpkg --print-architecture) linux-source-6.1 perl
	flex bison bc libelf-dev
	busybox-static cpio xz-utils zstd
	bash-completion debhelper dpkg-dev fakeroot lintian git
	python3 python3-jsonschema mandoc valgrind tmux socat procps psmisc clang tini
"

# Without systemd nobody starts the daemons. libvirtd runs under tini as a
# subreaper: the QEMU processes it daemonizes are then reaped as they exit.
# A container's PID 1 may reap late (1.5 s here) or never, and libvirt waits
# for the reaping on every destroy.
start_daemons() {
	[ -d /run/systemd/system ] && return 0
	pgrep -x virtlogd >/dev/null || virtlogd -d
	if ! pgrep -x libvirtd >/dev/null; then
		if command -v tini >/dev/null; then
			setsid tini -s -- libvirtd </dev/null >>/var/log/libvirt/libvirtd.log 2>&1 &
		else
			libvirtd -d
		fi
	fi
	for _ in $(seq 150); do
		[ -S /run/libvirt/libvirt-sock ] && return 0
		sleep 0.2
	done
	echo "setup-host.sh: libvirtd did not start (see /var/log/libvirt/libvirtd.log)" >&2
	return 1
}

# --daemons: only start the daemons (the tests restart libvirtd this way).
if [ "${1:-}" = --daemons ]; then
	start_daemons
	exit
fi

export DEBIAN_FRONTEND=noninteractive
# Guest packages for aarch64 (kernel, busybox) come from the arm64 archive.
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
	dpkg --add-architecture arm64
fi
apt-get update
# shellcheck disable=SC2086
apt-get install -y --no-install-recommends $packages

# Debian's udev rule, which nothing applies without udev: QEMU runs as
# libvirt-qemu (group kvm); a root-only /dev/kvm makes libvirt re-probe QEMU
# on every start (about 48 s instead of 0.4 s per x86_64 domain).
if [ -c /dev/kvm ]; then
	chgrp kvm /dev/kvm
	chmod 0660 /dev/kvm
fi

start_daemons || exit 1

[ -x configure ] || ./autogen.sh
[ -f Makefile ] || ./configure
make -j"$(nproc)"
