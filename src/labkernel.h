/* labkernel.h: a guest's <kernel src="IMAGE" build-dir="DIR">: what `up`
 * checks before it creates anything, and the archive that gives that
 * kernel its own modules in place of the stock image's. */
#ifndef IVLAB_LABKERNEL_H
#define IVLAB_LABKERNEL_H

#include <glib.h>

#include "initramfs.h"
#include "lab.h"

/* Every guest with a <kernel>: IMAGE is a kernel for the guest's arch (an
 * x86_64 bzImage; an arm64 Image or Image.gz) of the release DIR builds
 * for, and DIR is a built kernel tree (.config, Module.symvers,
 * include/config/kernel.release) whose .config has what ivlab needs,
 * built in or as modules DIR has built. Errors read "FILE:LINE: kernel
 * ...", every missing option named. */
gboolean labkernel_check(const struct lab *lab, GError **error);

/* The build directory modules for guest build against and its release:
 * its <kernel>'s build-dir. */
char *labkernel_build_dir(const struct lab_guest *guest, char **release, GError **error);

/* Into initramfs: ivlab.ko built against the guest's build-dir (cached),
 * the modules of its kernel that ivlab needs and that are not built in,
 * with their dependencies, and /lib/modules/load.list naming them in load
 * order: the image's own, for Debian's kernel, are replaced. */
gboolean labkernel_add_modules(const struct lab_guest *guest, Initramfs *initramfs,
			       GError **error);

/* On x86, the file the guest boots in dir (domxml_guest_kernel()): its
 * <kernel>'s vmlinux with the PVH entry, or the bzImage itself when it
 * has none (-v says why). Redone only when the <kernel> changed. */
gboolean labkernel_make_boot_kernel(const struct lab *lab, const struct lab_guest *guest,
				    GError **error);

#endif
