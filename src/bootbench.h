/* bootbench.h: `ivlab bench boot`: guests booted under plain QEMU (no
 * libvirt), their boot profiles measured, so a change to the images or the
 * command line is judged by numbers. */
#ifndef IVLAB_BOOTBENCH_H
#define IVLAB_BOOTBENCH_H

#include <glib.h>

#include "bootprofile.h"
#include "lab.h"

/* One machine to boot: what QEMU gets. */
struct bootbench_machine {
	char *name; /* for messages and the agent link: the guest's or the arch's */
	const char *arch;
	char *machine;
	guint64 memory;
	guint vcpus;
	char *kernel; /* the kernel QEMU boots (-kernel) */
	char *initrd;
	char *cmdline;
};

void bootbench_machine_free(struct bootbench_machine *machine);

/* The machine a guest of lab gets in the lab (its image's kernel, or its
 * <kernel>; the image's initrd), with extra appended to its command line. */
struct bootbench_machine *bootbench_machine_for_guest(const struct lab *lab,
						      const struct lab_guest *guest,
						      const char *extra_cmdline);

/* Boot the machines together under QEMU (KVM when it can work, else TCG),
 * wait for every agent's hello, stop them: one profile per machine, in
 * order, or FALSE with an error (a QEMU that exits, a timeout) and no QEMU
 * left running. workdir keeps the consoles and QEMU's messages. */
gboolean bootbench_boot(GPtrArray *machines, const char *workdir, int timeout_ms,
			struct bootprofile *profiles, GError **error);

#endif
