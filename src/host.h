/* host.h: what the host offers guests: the accelerator choice. */
#ifndef IVLAB_HOST_H
#define IVLAB_HOST_H

#include <glib.h>

#include "lab.h"

/* The host's own architecture in libvirt's spelling ("x86_64", "aarch64"). */
const char *host_arch(void);

/* What the choice of accelerator reads from a host. */
struct host_facts {
	const char *arch;    /* the host's architecture, as host_arch() spells it */
	const char *cpuinfo; /* the text of /proc/cpuinfo, NULL when unreadable */
	int kvm_errno;       /* 0 when /dev/kvm opens read-write, else open()'s errno */
};

/* The accelerator a guest of guest_arch gets under accel on a host with
 * these facts: TRUE for KVM; *why explains the choice (for verbose output).
 * With auto, KVM needs the guest's arch to be the host's, /dev/kvm to open
 * and, on x86_64, the CPU flags to show vmx or svm (a paravirtual KVM opens
 * but runs no ordinary guest). A kvm choice that cannot work still yields
 * KVM: libvirt's error then says why. Reads nothing but its arguments. */
gboolean host_accel_decide(enum lab_accel accel, const char *guest_arch,
			   const struct host_facts *facts, char **why);

/* accel, unless $IVLAB_ACCEL (tcg or kvm) overrides it. */
enum lab_accel host_accel_override(enum lab_accel accel);

/* host_accel_decide() with $IVLAB_ACCEL applied and the facts of this host. */
gboolean host_pick_kvm(enum lab_accel accel, const char *arch, char **why);

#endif
