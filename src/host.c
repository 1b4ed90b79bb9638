/* host.c: probes of the host: architecture and whether KVM can run a guest. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "host.h"
#include "ivlab.h"

#define HOST_KVM_DEVICE "/dev/kvm"

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

/* Whether the first "flags" line of cpuinfo names vmx or svm. */
static gboolean cpuinfo_has_virt_flags(const char *cpuinfo)
{
	g_auto(GStrv) lines = NULL;

	if (!cpuinfo)
		return FALSE;
	lines = g_strsplit(cpuinfo, "\n", -1);
	for (char **line = lines; *line; line++) {
		const char *colon;
		g_auto(GStrv) flags = NULL;

		if (!g_str_has_prefix(*line, "flags"))
			continue;
		colon = strchr(*line, ':');
		flags = g_strsplit_set(colon ? colon + 1 : "", " \t", -1);
		for (char **flag = flags; *flag; flag++)
			if (strcmp(*flag, "vmx") == 0 || strcmp(*flag, "svm") == 0)
				return TRUE;
		return FALSE;
	}
	return FALSE;
}

/* Can KVM run an ordinary guest of guest_arch on a host with these facts? */
static gboolean kvm_usable(const char *guest_arch, const struct host_facts *facts, char **why)
{
	if (strcmp(guest_arch, facts->arch) != 0) {
		*why = g_strdup_printf("the host is %s, so %s guests need emulation", facts->arch,
				       guest_arch);
		return FALSE;
	}
	if (facts->kvm_errno) {
		*why = g_strdup_printf("%s cannot be opened: %s", HOST_KVM_DEVICE,
				       g_strerror(facts->kvm_errno));
		return FALSE;
	}
	/* A paravirtual /dev/kvm opens fine and runs a tiny probe, yet hangs a
	 * real guest; the CPU flags are what tell an x86 host with hardware
	 * support. */
	if (strcmp(guest_arch, "x86_64") == 0 && !cpuinfo_has_virt_flags(facts->cpuinfo)) {
		*why = g_strdup_printf("%s opens, but the CPU shows neither vmx nor svm "
				       "(a paravirtual KVM runs no ordinary guest)", HOST_KVM_DEVICE);
		return FALSE;
	}
	*why = g_strdup_printf("%s is usable for %s guests", HOST_KVM_DEVICE, guest_arch);
	return TRUE;
}

gboolean host_accel_decide(enum lab_accel accel, const char *guest_arch,
			   const struct host_facts *facts, char **why)
{
	g_autofree char *reason = NULL;
	gboolean kvm;

	switch (accel) {
	case LAB_ACCEL_TCG:
		*why = g_strdup("tcg: the lab asks for emulation");
		return FALSE;
	case LAB_ACCEL_KVM:
		*why = g_strdup("kvm: the lab asks for KVM");
		return TRUE;
	default:
		kvm = kvm_usable(guest_arch, facts, &reason);
		*why = g_strdup_printf("%s: %s", kvm ? "kvm" : "tcg", reason);
		return kvm;
	}
}

enum lab_accel host_accel_override(enum lab_accel accel)
{
	const char *forced = g_getenv("IVLAB_ACCEL");

	if (forced && strcmp(forced, "tcg") == 0)
		return LAB_ACCEL_TCG;
	if (forced && strcmp(forced, "kvm") == 0)
		return LAB_ACCEL_KVM;
	return accel;
}

gboolean host_pick_kvm(enum lab_accel accel, const char *arch, char **why)
{
	g_autofree char *cpuinfo = NULL;
	struct host_facts facts = { .arch = host_arch() };
	int fd;

	accel = host_accel_override(accel);
	if (accel == LAB_ACCEL_AUTO) {
		/* Unreadable: NULL, which shows no vmx or svm. */
		g_file_get_contents("/proc/cpuinfo", &cpuinfo, NULL, NULL);
		facts.cpuinfo = cpuinfo;
		fd = open(HOST_KVM_DEVICE, O_RDWR | O_CLOEXEC);
		facts.kvm_errno = fd < 0 ? errno : 0;
		if (fd >= 0)
			close(fd);
	}
	return host_accel_decide(accel, arch, &facts, why);
}
