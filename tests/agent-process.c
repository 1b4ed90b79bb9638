/* agent-process.c: the real agent as a host process on a socket pair, in
 * place of the libvirt channel, for the session layer's unit tests. */
#include "config.h"

#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>
#include <gio/gio.h>

#include "agent-process.h"
#include "ivlab.h"

static char *agent_binary(void)
{
	const char *builddir = g_getenv("top_builddir");

	return g_build_filename(builddir ? builddir : ".", "src", "guest", "ivlab-agent-x86_64", NULL);
}

struct agent_link *agent_process_open(struct lab_session *session, struct session_guest *sg,
				      gboolean force, gpointer data, GError **error)
{
	struct agent_process *process = data;
	g_autofree char *binary = agent_binary();
	g_autoptr(GSubprocessLauncher) launcher = g_subprocess_launcher_new(G_SUBPROCESS_FLAGS_NONE);
	g_autoptr(GSubprocess) agent = NULL;
	const char *argv[8];
	int pair[2], n = 0;

	if (process->refuse) {
		ivlab_fail(error, "guest %s is not running", sg->guest->name);
		return NULL;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) < 0) {
		ivlab_fail_errno(error, "socketpair");
		return NULL;
	}
	argv[n++] = binary;
	argv[n++] = "--stdio";
	argv[n++] = "--cmdline";
	argv[n++] = process->cmdline_path;
	if (process->region_spec) {
		argv[n++] = "--region";
		argv[n++] = process->region_spec;
	}
	argv[n] = NULL;
	g_subprocess_launcher_take_stdin_fd(launcher, dup(pair[1]));
	g_subprocess_launcher_take_stdout_fd(launcher, pair[1]);
	agent = g_subprocess_launcher_spawnv(launcher, argv, error);
	if (!agent) {
		close(pair[0]);
		return NULL;
	}
	process->pid = atoi(g_subprocess_get_identifier(agent));
	process->opened++;
	return agent_link_new_fd(pair[0], sg->guest->name);
}

struct lab_session *agent_process_session(const char *lab_path, struct agent_process *process)
{
	g_autoptr(GError) error = NULL;
	struct lab_session *session = labsession_open(lab_path, &error);

	g_assert_no_error(error);
	labsession_set_opener(session, agent_process_open, process);
	return session;
}
