/* host.h: what the host offers guests: the accelerator choice. */
#ifndef IVLAB_HOST_H
#define IVLAB_HOST_H

#include <glib.h>

#include "lab.h"

/* The host's own architecture in libvirt's spelling ("x86_64", "aarch64"). */
const char *host_arch(void);

/* Can KVM run an ordinary guest of this arch here? FALSE with *why set when not. */
gboolean host_kvm_usable(const char *arch, char **why);

/* The accelerator a guest gets under the lab's choice: TRUE for KVM; *why
 * explains the choice (for verbose output). A kvm choice that cannot work
 * still yields KVM: libvirt's error then says why. */
gboolean host_pick_kvm(enum lab_accel accel, const char *arch, char **why);

#endif
