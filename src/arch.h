/* arch.h: the one table of guest architectures: what Debian, QEMU, libvirt,
 * Kbuild and the guest images call each one, and what it boots with. */
#ifndef IVLAB_ARCH_H
#define IVLAB_ARCH_H

#include <glib.h>

struct arch {
	const char *name;             /* libvirt's and uname's: "x86_64", "aarch64" */
	const char *debian_arch;      /* dpkg's: "amd64", "arm64" */
	const char *qemu_binary;      /* "qemu-system-x86_64" */
	const char *qemu_package;     /* the Debian package that has it */
	const char *default_machine;  /* what a guest without machine= gets */
	const char *const *machines;  /* the machines it may have, NULL-terminated */
	const char *console;          /* the serial console's device name in the guest */
	const char *cpu_model;        /* the CPU model its domain asks for, NULL: QEMU's default */
	gboolean acpi;                /* its domain has ACPI (x86 powers off through it) */
	const char *cross_prefix;     /* the GNU toolchain prefix of its cross-compiler */
	const char *cross_gcc_package; /* the Debian package with that compiler */
	const char *kbuild_arch;      /* ARCH= for Kbuild */
	const char *agent_file;       /* the static agent's file name, in the build and libexec dirs */
	const char *kernel_file;      /* the image's files in its image directory */
	const char *initrd_file;
	/* The file the guest boots, made by the image build from kernel_file
	 * (x86 only; NULL: kernel_file itself): the uncompressed ELF kernel
	 * QEMU enters through PVH, or kernel_file again when it has no PVH
	 * entry. */
	const char *pvh_kernel_file;
	/* Kernel options for a quiet console, NULL: the full log. Only where
	 * the log of a guest that hangs can still be had: x86 panics on an
	 * NMI `up` sends (labup.c) and replays its whole log then; QEMU's
	 * aarch64 virt machine cannot inject an NMI. */
	const char *quiet_cmdline;
	/* A <kernel>'s image: magic bytes at an offset, what they are called,
	 * and where a kernel build leaves it (for messages). */
	const char *kernel_magic;
	gsize kernel_magic_offset;
	const char *kernel_format;
	const char *kernel_build_image;
	/* The Kconfig options (without CONFIG_) a <kernel> must have built in
	 * for this architecture: the architecture itself, its console and PCI
	 * host (labkernel.c has the ones every architecture needs),
	 * NULL-terminated. */
	const char *const *kernel_options;
};

/* The entry for a name, NULL if ivlab has none. */
const struct arch *arch_lookup(const char *name);
/* The names, NULL-terminated, in table order: x86_64, aarch64. */
const char *const *arch_names(void);
/* Every machine any architecture may have, NULL-terminated, in table order. */
const char *const *arch_all_machines(void);
gboolean arch_has_machine(const struct arch *arch, const char *machine);

/* CROSS_COMPILE for building for arch on a host of host_arch: NULL when
 * native (the host's own gcc builds it), else arch's cross prefix. */
const char *arch_cross_prefix(const struct arch *arch, const char *host_arch);

#endif
