/* cmd-console.c: `ivlab console GUEST`: the guest's serial console through
 * libvirt in a raw terminal; Ctrl-] leaves. */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

#include "ivlab.h"
#include "labsession.h"
#include "lab.h"
#include "virt.h"

#define ESCAPE_CHAR 0x1d /* Ctrl-] */

static gboolean force;

static const GOptionEntry entries[] = {
	{ "force", 0, 0, G_OPTION_ARG_NONE, &force,
	  "take the console over from another client", NULL },
	{ NULL }
};

/* Pump stdin to the console and the console to stdout until Ctrl-] on
 * stdin, EOF from either side. */
static gboolean pump(int console_fd, gboolean tty, const char **why)
{
	struct pollfd fds[2] = {
		{ .fd = STDIN_FILENO, .events = POLLIN },
		{ .fd = console_fd, .events = POLLIN },
	};
	char buffer[4096];

	for (;;) {
		if (poll(fds, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			*why = g_strerror(errno);
			return FALSE;
		}
		if (fds[1].revents) {
			ssize_t got = read(console_fd, buffer, sizeof(buffer));

			if (got <= 0) {
				*why = "the console closed (the guest stopped?)";
				return TRUE;
			}
			ivlab_write_all(STDOUT_FILENO, buffer, got);
		}
		if (fds[0].revents) {
			ssize_t got = read(STDIN_FILENO, buffer, sizeof(buffer));
			char *escape;

			if (got <= 0) {
				*why = "end of input";
				return TRUE;
			}
			escape = memchr(buffer, ESCAPE_CHAR, got);
			if (escape) {
				ivlab_write_all(console_fd, buffer, escape - buffer);
				*why = NULL;
				return TRUE;
			}
			if (!ivlab_write_all(console_fd, buffer, got)) {
				*why = "the console closed (the guest stopped?)";
				return TRUE;
			}
		}
	}
	(void)tty;
}

static gboolean cmd_console_check(const struct ivlab_cmd *self, int argc, char **argv,
				  GError **error)
{
	if (argc != 2)
		return cmd_usage_error(error, self, "name one guest");
	return TRUE;
}

static gboolean cmd_console_exec(const struct ivlab_cmd *self, struct ivlab_ctx *ctx, int argc,
				 char **argv, GError **error)
{
	struct lab_session *session = ctx->session;
	struct session_guest *sg = labsession_guest(session, argv[1]);
	g_autoptr(VirtLink) link = NULL;
	virDomainPtr dom;
	struct termios saved, raw;
	gboolean tty = isatty(STDIN_FILENO);
	const char *why = NULL;
	gboolean ok;

	dom = sg->dom;
	if (!dom) {
		g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED,
			    "guest %s is not defined (the lab '%s' is not up; 'ivlab up' starts it)",
			    sg->guest->name, session->lab->name);
		return FALSE;
	}
	if (!virt_is_running(dom)) {
		g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED,
			    "guest %s (%s) is not running (state: %s); 'ivlab up' starts it",
			    sg->guest->name, virDomainGetName(dom), virt_state_name(virt_state(dom)));
		return FALSE;
	}
	/* A console session that just closed (up's or the suite's, which
	 * watch the boot) is released by libvirtd a moment later. */
	for (int tries = 0;; tries++) {
		g_autoptr(GError) busy = NULL;

		link = virt_open_console(dom, force, &busy);
		if (link)
			break;
		if (!strstr(busy->message, "Active console session") || tries == 30) {
			if (strstr(busy->message, "Active console session"))
				g_prefix_error(&busy, "another console is attached (use --force to take "
					       "it over): ");
			g_propagate_error(error, g_steal_pointer(&busy));
			return FALSE;
		}
		g_usleep(100000);
	}
	fprintf(stderr, "Connected to %s (%s). Escape character is ^]\r\n", sg->guest->name,
		virDomainGetName(dom));
	if (tty && tcgetattr(STDIN_FILENO, &saved) == 0) {
		raw = saved;
		cfmakeraw(&raw);
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &raw);
	} else {
		tty = FALSE;
	}
	ok = pump(virt_link_fd(link), tty, &why);
	if (tty)
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved);
	fprintf(stderr, "\n");
	if (!ok) {
		g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED, "%s: console: %s", sg->guest->name, why);
		return FALSE;
	}
	if (why)
		ivlab_info("%s: %s", sg->guest->name, why);
	return TRUE;
}

const struct ivlab_cmd cmd_console_entry = {
	.name = "console",
	.usage = "[--force] GUEST",
	.summary = "attach to a guest's serial console (escape: Ctrl-])",
	.description =
		"The guest's console offers a shell with the ivlab module loaded: look at\n"
		"/dev/ivlab*, /sys/bus/pci/drivers/ivlab and dmesg. Ctrl-] detaches.",
	.options = entries,
	.max_args = -1,
	.needs = CMD_NEEDS_CONNECTION | CMD_GUEST_ARGS,
	.check = cmd_console_check,
	.exec = cmd_console_exec,
};
