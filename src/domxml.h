/* domxml.h: the libvirt domain XML each guest of a lab gets. */
#ifndef IVLAB_DOMXML_H
#define IVLAB_DOMXML_H

#include <glib.h>

#include "lab.h"

#define DOMXML_METADATA_NS "http://ivlab.org/xmlns/ivlab/1"
#define DOMXML_METADATA_PREFIX "ivlab"
/* The first PCI slot of the shmem devices; region i of a guest sits at
 * slot DOMXML_SHMEM_SLOT + i on the bus that carries them. */
#define DOMXML_SHMEM_SLOT 0x10

/* The guest's domain XML as a string; kvm chooses domain type kvm or qemu. */
char *domxml_build(const struct lab *lab, const struct lab_guest *guest, gboolean kvm,
		   GError **error);

/* The guest kernel's command line, also passed to libvirt in <cmdline>:
 * it names the console and tells the agent which PCI slot is which region. */
char *domxml_kernel_cmdline(const struct lab *lab, const struct lab_guest *guest);

/* The initramfs a guest that brings its own kernel, modules, files,
 * overlays, shares or boot commands boots (its image's, with the guest's own archive appended:
 * labboot.c writes it), in the lab's state directory; NULL for a guest that
 * brings nothing and boots its image's initramfs as it is. */
/* The kernel file the guest boots: on x86, the image's vmlinux (or, for a
 * <kernel>, GUEST.vmlinux in the lab's state dir); else the image's kernel
 * or the <kernel>. */
char *domxml_guest_kernel(const struct lab *lab, const struct lab_guest *guest);
char *domxml_guest_initrd(const struct lab *lab, const struct lab_guest *guest);

/* The 9p mount tag of the guest's share number index. */
char *domxml_share_tag(const struct lab_share *share, guint index);

#endif
