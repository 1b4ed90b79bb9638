/* cmd-restart.c: `ivlab restart [GUEST...]`: apply what changed in a running
 * lab's modules, files, overlays or kernel by booting only the guests it
 * affects again (or the guests named), servers and other guests untouched. */
#include "config.h"

#include "ivlab.h"
#include "labrestart.h"

#define TIMEOUT_MAX 86400 /* a day */

static int timeout_seconds = 300;

static const GOptionEntry entries[] = {
	{ "timeout", 't', 0, G_OPTION_ARG_INT, &timeout_seconds,
	  "seconds to wait for the restarted guests' agents (default 300)", "SECONDS" },
	{ NULL }
};

static gboolean cmd_restart_check(const struct ivlab_cmd *self, int argc, char **argv,
				  GError **error)
{
	if (timeout_seconds <= 0 || timeout_seconds > TIMEOUT_MAX)
		return cmd_usage_error(error, self, "--timeout: %d is not in 1..%d seconds",
				       timeout_seconds, TIMEOUT_MAX);
	return TRUE;
}

static gboolean cmd_restart_exec(const struct ivlab_cmd *self, struct ivlab_ctx *ctx, int argc,
				 char **argv, GError **error)
{
	struct lab_session *session = ctx->session;
	struct labrestart_plan plan;
	gint64 started = g_get_monotonic_time();
	gboolean ok;

	/* Names first, a usage error: before libvirt is asked anything. */
	for (int i = 1; i < argc; i++)
		if (!labsession_guest(session, argv[i]))
			return cmd_usage_error(error, self, "the lab '%s' (%s) has no guest '%s'",
					       session->lab->name, session->path, argv[i]);
	/* One up, restart or down of the lab at a time (the lab's lock). */
	if (!labsession_attach(session, ctx->uri, LABSESSION_CONNECTION | LABSESSION_RUNNING |
			       LABSESSION_RUN | LABSESSION_LOCK, error))
		return FALSE;
	/* Ctrl-C, SIGTERM or SIGHUP stop the waits; exit 128+N. */
	ivlab_interrupt_catch();
	ok = labrestart_plan(session, argc - 1, argv + 1, &plan, error);
	if (ok && !plan.guests->len)
		ivlab_info("lab '%s': nothing changed since its guests started; nothing to restart",
			   session->lab->name);
	for (guint i = 0; ok && i < plan.guests->len; i++)
		ivlab_info("guest %s: %s: restarting",
			   ((const struct lab_guest *)plan.guests->pdata[i])->name,
			   (char *)plan.reasons->pdata[i]);
	ok = ok && labrestart_apply(session, &plan, timeout_seconds, error);
	if (ok && plan.guests->len)
		ivlab_info("lab '%s': %u of %u guests restarted in %.1f s", session->lab->name,
			   plan.guests->len, session->lab->guests->len,
			   (g_get_monotonic_time() - started) / 1e6);
	labrestart_plan_clear(&plan);
	return ok;
}

const struct ivlab_cmd cmd_restart_entry = {
	.name = "restart",
	.usage = "[--timeout SECONDS] [GUEST...]",
	.summary = "apply changed modules, files, overlays or kernels to a running lab",
	.description =
		"Without a guest, restarts the guests whose modules, files, overlays, kernel or\n"
		"boot settings changed since they started ('ivlab up' lists them), and those not\n"
		"running; with guests, exactly those. Rebuilds what changed (modules are cached\n"
		"by content), stops and starts only those guests, and waits for their agents;\n"
		"servers and the other guests keep running. A lab file whose domains changed\n"
		"needs 'ivlab down' and 'ivlab up'.",
	.options = entries,
	.max_args = -1,
	.needs = CMD_NEEDS_LAB, /* the rest once the guests are checked */
	.check = cmd_restart_check,
	.exec = cmd_restart_exec,
};
