/* bootbench.c: guests booted under plain QEMU, each in its own thread:
 * started paused, resumed through QMP, profiled from its agent's hello
 * (bootprofile.c), then told to quit. The devices are a lab guest's but
 * for ivshmem, which needs the lab's servers. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <glib/gstdio.h>

#include "agentlink.h"
#include "arch.h"
#include "bootbench.h"
#include "domxml.h"
#include "host.h"
#include "ivlab-agent.h"
#include "ivlab.h"

/* How long QEMU may take to quit when asked before it is killed. */
#define QUIT_GRACE_MS 5000

void bootbench_machine_free(struct bootbench_machine *machine)
{
	if (!machine)
		return;
	g_free(machine->name);
	g_free(machine->machine);
	g_free(machine->kernel);
	g_free(machine->initrd);
	g_free(machine->cmdline);
	g_free(machine);
}

struct bootbench_machine *bootbench_machine_for_guest(const struct lab *lab,
						      const struct lab_guest *guest,
						      const char *extra_cmdline)
{
	struct bootbench_machine *machine = g_new0(struct bootbench_machine, 1);
	g_autofree char *image_dir = ivlab_image_dir(guest->arch);
	g_autofree char *lab_initrd = domxml_guest_initrd(lab, guest);
	g_autofree char *cmdline = domxml_kernel_cmdline(lab, guest);

	machine->name = g_strdup(guest->name);
	machine->arch = arch_lookup(guest->arch)->name;
	machine->machine = g_strdup(guest->machine);
	machine->memory = guest->memory;
	machine->vcpus = guest->vcpus;
	machine->kernel = domxml_guest_kernel(lab, guest);
	/* The lab's own initrd exists once `up` made it; else the image's. */
	if (lab_initrd && g_file_test(lab_initrd, G_FILE_TEST_EXISTS))
		machine->initrd = g_steal_pointer(&lab_initrd);
	else
		machine->initrd = g_build_filename(image_dir, arch_lookup(guest->arch)->initrd_file,
						   NULL);
	machine->cmdline = extra_cmdline && *extra_cmdline ?
				   g_strdup_printf("%s %s", cmdline, extra_cmdline) :
				   g_steal_pointer(&cmdline);
	return machine;
}

struct boot {
	const struct bootbench_machine *machine;
	const char *workdir;
	int timeout_ms;
	GPid pid;
	int qmp;
	char *qmp_path, *agent_path, *log_path;
	struct bootprofile *profile;
	GError *error;
};

static char *qemu_log_tail(struct boot *boot)
{
	g_autofree char *text = NULL;
	gsize length = 0;

	if (!g_file_get_contents(boot->log_path, &text, &length, NULL) || !length)
		return g_strdup("no message");
	g_strstrip(text);
	length = strlen(text);
	return g_strdup(length > 400 ? text + length - 400 : text);
}

static gboolean exited(struct boot *boot, GError **error)
{
	int status;

	if (waitpid(boot->pid, &status, WNOHANG) != boot->pid)
		return FALSE;
	boot->pid = 0;
	g_autofree char *tail = qemu_log_tail(boot);

	return !ivlab_fail(error, "%s: QEMU exited (%s %d): %s", boot->machine->name,
			   WIFEXITED(status) ? "status" : "signal",
			   WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), tail);
}

/* A connection to a UNIX socket QEMU listens on, once it exists. QEMU has
 * no way to say its sockets are there, so this is the one place that retries. */
static int connect_when_listening(struct boot *boot, const char *path, gint64 deadline,
				  GError **error)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };

	if (strlen(path) >= sizeof(addr.sun_path)) {
		ivlab_fail(error, "%s: socket path too long", path);
		return -1;
	}
	strcpy(addr.sun_path, path);
	for (;;) {
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

		if (fd < 0) {
			ivlab_fail_errno(error, "socket");
			return -1;
		}
		if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0)
			return fd;
		close(fd);
		if (exited(boot, error))
			return -1;
		if (g_get_monotonic_time() > deadline) {
			ivlab_fail(error, "%s: QEMU did not open %s in time", boot->machine->name, path);
			return -1;
		}
		g_usleep(10000);
	}
}

/* Send one QMP command and read lines until its answer; without a
 * command, read QEMU's greeting. */
static gboolean qmp_execute(struct boot *boot, const char *command, gint64 deadline,
			    GError **error)
{
	g_autofree char *line = g_strdup_printf("{\"execute\": \"%s\"}\n", command ?: "");
	g_autoptr(GString) input = g_string_new(NULL);

	if (command && send(boot->qmp, line, strlen(line), MSG_NOSIGNAL) < 0)
		return ivlab_fail_errno(error, "%s: QMP %s", boot->machine->name, command);
	for (;;) {
		struct pollfd pfd = { .fd = boot->qmp, .events = POLLIN };
		gint64 left = (deadline - g_get_monotonic_time()) / 1000;
		char buffer[4096];
		ssize_t got;

		if (left <= 0)
			return ivlab_fail(error, "%s: QMP %s: no answer in time", boot->machine->name,
					  command ?: "greeting");
		if (poll(&pfd, 1, (int)MIN(left, 1000)) <= 0)
			continue;
		got = recv(boot->qmp, buffer, sizeof(buffer), 0);
		if (got <= 0)
			return ivlab_fail(error, "%s: QMP %s: QEMU closed the connection",
					  boot->machine->name, command ?: "greeting");
		g_string_append_len(input, buffer, got);
		/* The greeting names "QMP"; a command's answer "return" or "error". */
		if (strchr(input->str, '\n') &&
		    strstr(input->str, command ? "\"return\"" : "\"QMP\""))
			return TRUE;
		if (command && strstr(input->str, "\"error\""))
			return ivlab_fail(error, "%s: QMP %s: %.300s", boot->machine->name, command,
					  input->str);
	}
}

static GPtrArray *qemu_argv(struct boot *boot, gboolean kvm)
{
	const struct bootbench_machine *machine = boot->machine;
	const struct arch *arch = arch_lookup(machine->arch);
	GPtrArray *argv = g_ptr_array_new_with_free_func(g_free);

#define ARG(...) g_ptr_array_add(argv, g_strdup_printf(__VA_ARGS__))
	ARG("%s", arch->qemu_binary);
	ARG("-name");
	ARG("%s", machine->name);
	ARG("-machine");
	ARG("%s", machine->machine);
	ARG("-accel");
	ARG("%s", kvm ? "kvm" : "tcg");
	if (arch->cpu_model) {
		ARG("-cpu");
		ARG("%s", arch->cpu_model);
	}
	ARG("-m");
	ARG("%" G_GUINT64_FORMAT "M", machine->memory >> 20);
	/* As the domain XML has it (domxml.c): one vCPU of two under TCG. */
	ARG("-smp");
	if (!kvm && machine->vcpus == 1)
		ARG("1,maxcpus=2");
	else
		ARG("%u", machine->vcpus);
	ARG("-nodefaults");
	ARG("-no-user-config");
	ARG("-display");
	ARG("none");
	ARG("-no-reboot");
	ARG("-S");
	ARG("-qmp");
	ARG("unix:%s,server=on,wait=off", boot->qmp_path);
	ARG("-serial");
	ARG("file:%s/%s.console.log", boot->workdir, machine->name);
	ARG("-kernel");
	ARG("%s", machine->kernel);
	ARG("-initrd");
	ARG("%s", machine->initrd);
	ARG("-append");
	ARG("%s", machine->cmdline);
	ARG("-device");
	ARG("virtio-serial-pci,id=serial0");
	ARG("-chardev");
	ARG("socket,id=agent,path=%s,server=on,wait=off", boot->agent_path);
	ARG("-device");
	ARG("virtserialport,bus=serial0.0,chardev=agent,name=%s", IVLAB_AGENT_PORT);
#undef ARG
	g_ptr_array_add(argv, NULL);
	return argv;
}

static gboolean boot_spawn(struct boot *boot, GError **error)
{
	g_autofree char *why = NULL;
	gboolean kvm = host_pick_kvm(LAB_ACCEL_AUTO, boot->machine->arch, &why);
	g_autoptr(GPtrArray) argv = qemu_argv(boot, kvm);
	int log_fd = open(boot->log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	gboolean ok;

	if (log_fd < 0)
		return ivlab_fail_errno(error, "%s", boot->log_path);
	g_autofree char *line = g_strjoinv(" ", (char **)argv->pdata);

	ivlab_debug("%s: %s (%s)", boot->machine->name, line, why);
	ok = g_spawn_async_with_fds(NULL, (char **)argv->pdata, NULL,
				    G_SPAWN_SEARCH_PATH | G_SPAWN_DO_NOT_REAP_CHILD, NULL, NULL,
				    &boot->pid, -1, log_fd, log_fd, error);
	close(log_fd);
	return ok;
}

static gboolean boot_run(struct boot *boot, GError **error)
{
	gint64 deadline = g_get_monotonic_time() + (gint64)boot->timeout_ms * 1000;
	gint64 started, resumed;
	struct agent_link *agent;
	AgentReply *hello;
	g_autoptr(GError) no_profile = NULL;
	int fd;
	gboolean ok;

	started = g_get_monotonic_time();
	if (!boot_spawn(boot, error))
		return FALSE;
	boot->qmp = connect_when_listening(boot, boot->qmp_path, deadline, error);
	if (boot->qmp < 0 || !qmp_execute(boot, NULL, deadline, error) ||
	    !qmp_execute(boot, "qmp_capabilities", deadline, error))
		return FALSE;
	fd = connect_when_listening(boot, boot->agent_path, deadline, error);
	if (fd < 0 || !qmp_execute(boot, "cont", deadline, error)) {
		if (fd >= 0)
			close(fd);
		return FALSE;
	}
	resumed = g_get_monotonic_time();
	agent = agent_link_new_fd(fd, boot->machine->name);
	hello = agent_hello(agent, (int)MAX((deadline - resumed) / 1000, 1), error);
	if (!hello) {
		agent_link_free(agent);
		return FALSE;
	}
	ok = bootprofile_from_hello(boot->profile, started, resumed, g_get_monotonic_time(), hello,
				    &no_profile);
	if (!ok)
		ivlab_fail(error, "%s (the agent in %s is older than the boot profile: rebuild "
			   "the image with 'ivlab image build --arch %s')", no_profile->message,
			   boot->machine->initrd, boot->machine->arch);
	g_hash_table_unref(hello);
	agent_link_free(agent);
	return ok;
}

/* QEMU asked to quit, killed when it does not, reaped either way. */
static void boot_stop(struct boot *boot)
{
	if (boot->pid > 0) {
		gint64 deadline = g_get_monotonic_time() + QUIT_GRACE_MS * 1000;
		int status;

		if (boot->qmp >= 0)
			qmp_execute(boot, "quit", deadline, NULL);
		while (waitpid(boot->pid, &status, WNOHANG) == 0) {
			if (g_get_monotonic_time() > deadline) {
				kill(boot->pid, SIGKILL);
				waitpid(boot->pid, &status, 0);
				break;
			}
			g_usleep(10000);
		}
		boot->pid = 0;
	}
	if (boot->qmp >= 0)
		close(boot->qmp);
	boot->qmp = -1;
	g_unlink(boot->qmp_path);
	g_unlink(boot->agent_path);
}

static gpointer boot_thread(gpointer data)
{
	struct boot *boot = data;

	boot_run(boot, &boot->error);
	return NULL;
}

gboolean bootbench_boot(GPtrArray *machines, const char *workdir, int timeout_ms,
			struct bootprofile *profiles, GError **error)
{
	g_autofree struct boot *boots = g_new0(struct boot, machines->len);
	g_autofree GThread **threads = g_new0(GThread *, machines->len);
	GError *first = NULL;

	for (guint i = 0; i < machines->len; i++) {
		struct boot *boot = &boots[i];

		boot->machine = g_ptr_array_index(machines, i);
		boot->workdir = workdir;
		boot->timeout_ms = timeout_ms;
		boot->qmp = -1;
		boot->profile = &profiles[i];
		boot->qmp_path = g_strdup_printf("%s/%s.qmp", workdir, boot->machine->name);
		boot->agent_path = g_strdup_printf("%s/%s.agent", workdir, boot->machine->name);
		boot->log_path = g_strdup_printf("%s/%s.qemu.log", workdir, boot->machine->name);
		g_unlink(boot->qmp_path);
		g_unlink(boot->agent_path);
	}
	/* Every machine at once, as `up` starts a lab's guests. */
	for (guint i = 0; i < machines->len; i++)
		threads[i] = g_thread_new("boot", boot_thread, &boots[i]);
	for (guint i = 0; i < machines->len; i++) {
		struct boot *boot = &boots[i];

		g_thread_join(threads[i]);
		boot_stop(boot);
		if (boot->error && !first)
			first = g_steal_pointer(&boot->error);
		g_clear_error(&boot->error);
		g_free(boot->qmp_path);
		g_free(boot->agent_path);
		g_free(boot->log_path);
	}
	if (first) {
		g_propagate_error(error, first);
		return FALSE;
	}
	return TRUE;
}
