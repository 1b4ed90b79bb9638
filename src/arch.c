/* arch.c: the architecture table: every per-architecture fact ivlab uses,
 * in one place (lab checks, domain XML, image recipes, preflight). */
#include "config.h"

#include <string.h>

#include "arch.h"

static const char *const x86_64_machines[] = { "pc", "q35", NULL };
static const char *const aarch64_machines[] = { "virt", NULL };

static const char *const x86_64_kernel_options[] = { "X86_64", "SERIAL_8250", "SERIAL_8250_CONSOLE",
						     NULL };
/* virt's PL011 console and its generic PCIe host bridge. */
static const char *const aarch64_kernel_options[] = { "ARM64", "SERIAL_AMBA_PL011",
						      "SERIAL_AMBA_PL011_CONSOLE",
						      "PCI_HOST_GENERIC", NULL };

static const struct arch arches[] = {
	{
		.name = "x86_64",
		.debian_arch = "amd64",
		.qemu_binary = "qemu-system-x86_64",
		.qemu_package = "qemu-system-x86",
		.default_machine = "pc",
		.machines = x86_64_machines,
		.console = "ttyS0",
		.cpu_model = NULL,
		.acpi = TRUE,
		.cross_prefix = "x86_64-linux-gnu-",
		.cross_gcc_package = "gcc-x86-64-linux-gnu",
		.kbuild_arch = "x86",
		.agent_file = "ivlab-agent-x86_64",
		.kernel_file = "vmlinuz",
		.initrd_file = "initrd.img",
		.pvh_kernel_file = "vmlinux",
		.quiet_cmdline = "quiet unknown_nmi_panic=1 panic_print=0x20",
		/* The boot protocol's header signature (Documentation/x86/boot.rst). */
		.kernel_magic = "HdrS",
		.kernel_magic_offset = 0x202,
		.kernel_format = "bzImage",
		.kernel_build_image = "arch/x86/boot/bzImage",
		.kernel_options = x86_64_kernel_options,
	},
	{
		.name = "aarch64",
		.debian_arch = "arm64",
		.qemu_binary = "qemu-system-aarch64",
		.qemu_package = "qemu-system-arm",
		.default_machine = "virt",
		.machines = aarch64_machines,
		/* QEMU virt's PL011 UART. */
		.console = "ttyAMA0",
		/* Direct kernel boot without UEFI: no ACPI; TCG needs a named CPU. */
		.cpu_model = "cortex-a57",
		.acpi = FALSE,
		.cross_prefix = "aarch64-linux-gnu-",
		.cross_gcc_package = "gcc-aarch64-linux-gnu",
		.kbuild_arch = "arm64",
		.agent_file = "ivlab-agent-aarch64",
		.kernel_file = "vmlinuz",
		.initrd_file = "initrd.img",
		/* Documentation/arm64/booting.rst's image header. */
		.kernel_magic = "ARM\x64",
		.kernel_magic_offset = 56,
		.kernel_format = "arm64 Image",
		.kernel_build_image = "arch/arm64/boot/Image",
		.kernel_options = aarch64_kernel_options,
	},
};

const struct arch *arch_lookup(const char *name)
{
	for (gsize i = 0; name && i < G_N_ELEMENTS(arches); i++)
		if (strcmp(arches[i].name, name) == 0)
			return &arches[i];
	return NULL;
}

const char *const *arch_names(void)
{
	static const char *list[G_N_ELEMENTS(arches) + 1];
	static gsize done;

	if (g_once_init_enter(&done)) {
		for (gsize i = 0; i < G_N_ELEMENTS(arches); i++)
			list[i] = arches[i].name;
		g_once_init_leave(&done, 1);
	}
	return list;
}

/* Room for every machine of every architecture, and the NULL. */
#define ARCH_MACHINES_MAX 16

const char *const *arch_all_machines(void)
{
	static const char *list[ARCH_MACHINES_MAX + 1];
	static gsize done;

	if (g_once_init_enter(&done)) {
		gsize count = 0;

		for (gsize i = 0; i < G_N_ELEMENTS(arches); i++) {
			for (const char *const *machine = arches[i].machines; *machine; machine++) {
				if (g_strv_contains(list, *machine))
					continue;
				g_assert(count < ARCH_MACHINES_MAX);
				list[count++] = *machine;
			}
		}
		g_once_init_leave(&done, 1);
	}
	return list;
}

gboolean arch_has_machine(const struct arch *arch, const char *machine)
{
	return machine && g_strv_contains(arch->machines, machine);
}

const char *arch_cross_prefix(const struct arch *arch, const char *host_arch)
{
	return strcmp(arch->name, host_arch) == 0 ? NULL : arch->cross_prefix;
}
