/* host.c: probes of the host: architecture and whether KVM can run a guest. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "host.h"
#include "ivlab.h"

const char *host_arch(void)
{
	static char machine[65];
	struct utsname name;

	if (!machine[0]) {
		if (uname(&name) == 0)
			g_strlcpy(machine, name.machine, sizeof(machine));
		else
			g_strlcpy(machine, "unknown", sizeof(machine));
		if (strcmp(machine, "arm64") == 0)
			g_strlcpy(machine, "aarch64", sizeof(machine));
	}
	return machine;
}

/* A paravirtual /dev/kvm opens fine and runs a tiny probe, yet hangs a real
 * guest; the CPU flags are what tell an x86 host with hardware support. */
static gboolean cpu_has_virt_flags(void)
{
	g_autofree char *cpuinfo = NULL;
	g_auto(GStrv) lines = NULL;

	if (!g_file_get_contents("/proc/cpuinfo", &cpuinfo, NULL, NULL))
		return FALSE;
	lines = g_strsplit(cpuinfo, "\n", -1);
	for (char **line = lines; *line; line++) {
		g_auto(GStrv) flags = NULL;

		if (!g_str_has_prefix(*line, "flags"))
			continue;
		flags = g_strsplit_set(strchr(*line, ':') ? strchr(*line, ':') + 1 : "", " \t", -1);
		for (char **flag = flags; *flag; flag++)
			if (strcmp(*flag, "vmx") == 0 || strcmp(*flag, "svm") == 0)
				return TRUE;
		return FALSE;
	}
	return FALSE;
}

gboolean host_kvm_usable(const char *arch, char **why)
{
	const char *dev = "/dev/kvm";
	int fd;

	if (strcmp(arch, host_arch()) != 0) {
		*why = g_strdup_printf("the host is %s, so %s guests need emulation", host_arch(), arch);
		return FALSE;
	}
	fd = open(dev, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		*why = g_strdup_printf("%s cannot be opened: %s", dev, g_strerror(errno));
		return FALSE;
	}
	close(fd);
	if (strcmp(arch, "x86_64") == 0 && !cpu_has_virt_flags()) {
		*why = g_strdup_printf("%s opens, but the CPU shows neither vmx nor svm "
				       "(a paravirtual KVM runs no ordinary guest)", dev);
		return FALSE;
	}
	*why = g_strdup_printf("%s is usable for %s guests", dev, arch);
	return TRUE;
}

gboolean host_pick_kvm(enum lab_accel accel, const char *arch, char **why)
{
	const char *forced = g_getenv("IVLAB_ACCEL");

	if (forced && strcmp(forced, "tcg") == 0)
		accel = LAB_ACCEL_TCG;
	else if (forced && strcmp(forced, "kvm") == 0)
		accel = LAB_ACCEL_KVM;

	switch (accel) {
	case LAB_ACCEL_TCG:
		*why = g_strdup("tcg: the lab asks for emulation");
		return FALSE;
	case LAB_ACCEL_KVM:
		*why = g_strdup("kvm: the lab asks for KVM");
		return TRUE;
	default: {
		g_autofree char *reason = NULL;
		gboolean kvm = host_kvm_usable(arch, &reason);

		*why = g_strdup_printf("%s: %s", kvm ? "kvm" : "tcg", reason);
		return kvm;
	}
	}
}
