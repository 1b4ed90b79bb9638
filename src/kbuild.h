/* kbuild.h: building the ivlab module (src/guest: Kbuild, ivlab_drv.c,
 * include/) with Kbuild against a kernel's headers or build directory,
 * natively or cross (make runs through ivlab_run()). */
#ifndef IVLAB_KBUILD_H
#define IVLAB_KBUILD_H

#include <glib.h>

#include "apt.h"
#include "arch.h"

/* The module's sources in the guest directory, NULL-terminated: what a
 * build copies and what the image's inputs hash. */
extern const char *const kbuild_module_sources[];

/* Builds ivlab.ko for arch against kdir from a copy of guest_dir's
 * sources in work_dir/module: `make -C KDIR M=DIR modules`, with ARCH and
 * CROSS_COMPILE when arch is not the host's. */
GBytes *kbuild_module(const struct arch *arch, const char *kdir, const char *guest_dir,
		      const char *work_dir, GError **error);

/* Debian's linux-headers packages for release, unpacked once under
 * cache_dir/RELEASE and made to work from there; returns the directory to
 * build against. */
char *kbuild_prepare_debian(const char *cache_dir, const char *release,
			    const struct apt_deb *headers, const struct apt_deb *common,
			    GError **error);

/* The release a kernel build directory builds modules for (its UTS_RELEASE). */
char *kbuild_dir_release(const char *dir, GError **error);

/* A kernel build directory's identity: what a rebuild of it changes. */
char *kbuild_dir_identity(const char *dir);

#endif

/* An out-of-tree module of the user's (a directory with its own Kbuild or
 * Makefile: nothing is assumed beyond obj-m), built for arch against kdir
 * (whose UTS release is release) from a copy of src_dir, into
 * cache_dir/ARCH-RELEASE-HASH where HASH is the sources' content: an
 * unchanged module is not rebuilt. Returns the built .ko's path; it must
 * build exactly one. A compile failure reads "module DIR (ARCH): FIRST
 * ERROR LINE (log: PATH)". */
char *kbuild_user_module(const struct arch *arch, const char *kdir, const char *release,
			 const char *src_dir, const char *cache_dir, GError **error);
/* The module src_dir builds, as the first obj-m of its Kbuild or Makefile
 * names it ("obj-m := ivring.o": "ivring"), else the directory's name: for
 * messages before (or without) a build. */
char *kbuild_module_name(const char *src_dir);
