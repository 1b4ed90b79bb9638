/* preflight.h: what `ivlab up` checks before it creates anything: libvirt's
 * emulators and devices for the lab, reachability for the QEMU user, and
 * the known host traps (/dev/kvm 0600). */
#ifndef IVLAB_PREFLIGHT_H
#define IVLAB_PREFLIGHT_H

#include <glib.h>

#include "lab.h"
#include "virt.h"

/* The user and group QEMU runs as under this connection, when it is not
 * ourselves (qemu:///system as root: libvirt-qemu, group kvm). */
gboolean preflight_qemu_user(virConnectPtr conn, uid_t *uid, gid_t *gid, char **group_name);

/* Checks every guest's arch/machine/accelerator against libvirt's domain
 * capabilities and the emulator's devices, and that the state directory is
 * reachable by the QEMU user. Warnings (slow paths) go to ivlab_info; every
 * blocking problem is named in one error. */
gboolean preflight_check(virConnectPtr conn, const struct lab *lab, GError **error);

/* /dev/kvm exists but only root may open it: libvirt re-probes QEMU on every
 * start (about 48 s per x86_64 guest). NULL when fine, else the advice. */
char *preflight_kvm_advice(void);

#endif
