/* cmd-up.c: `ivlab up`: preflight, images, one server per doorbell region,
 * define and start every guest, and wait for each agent's hello. */
#include "config.h"

#include "ivlab.h"
#include "labup.h"

#define TIMEOUT_MAX 86400 /* a day */

static int timeout_seconds = 300;
static gboolean keep_failed;

static const GOptionEntry entries[] = {
	{ "timeout", 't', 0, G_OPTION_ARG_INT, &timeout_seconds,
	  "seconds to wait for every agent (default 300)", "SECONDS" },
	{ "keep-failed", 0, 0, G_OPTION_ARG_NONE, &keep_failed,
	  "leave a lab that failed to come up for inspection ('ivlab down' removes it)", NULL },
	{ NULL }
};

static gboolean cmd_up_check(const struct ivlab_cmd *self, int argc, char **argv, GError **error)
{
	/* Counted in milliseconds as an int further down. */
	if (timeout_seconds <= 0 || timeout_seconds > TIMEOUT_MAX)
		return cmd_usage_error(error, self, "--timeout: %d is not in 1..%d seconds",
				       timeout_seconds, TIMEOUT_MAX);
	return TRUE;
}

static gboolean cmd_up_exec(const struct ivlab_cmd *self, struct ivlab_ctx *ctx, int argc,
			    char **argv, GError **error)
{
	struct lab_session *session = ctx->session;
	struct labup_plan plan;
	gint64 started = g_get_monotonic_time();
	gboolean ok;

	/* Ctrl-C, SIGTERM or SIGHUP: what this up made is undone, exit 128+N. */
	ivlab_interrupt_catch();
	ok = labup_plan(session, &plan, error);
	if (ok && plan.summary)
		ivlab_info("%s", plan.summary);
	for (guint i = 0; ok && i < plan.changes->len; i++)
		ivlab_info("%s", (char *)plan.changes->pdata[i]);
	ok = ok && labup_apply(session, &plan, timeout_seconds, keep_failed, error);
	if (ok && plan.kind != LABUP_ALREADY_UP)
		ivlab_info("lab '%s' is up: %u guests ready in %.1f s", session->lab->name,
			   session->lab->guests->len, (g_get_monotonic_time() - started) / 1e6);
	labup_plan_clear(&plan);
	return ok;
}

const struct ivlab_cmd cmd_up_entry = {
	.name = "up",
	.usage = "[--timeout SECONDS] [--keep-failed]",
	.summary = "build images, start servers, define and start the lab's guests",
	.description =
		"Checks the host first (libvirt, emulators, ivshmem devices, /dev/kvm), builds or\n"
		"reuses the guest images, starts one ivshmem server per doorbell region, defines\n"
		"every guest persistently and starts them together, then waits until each guest's\n"
		"agent answers. A lab that is already up is left alone; a failed 'up' is undone.",
	.options = entries,
	.needs = CMD_NEEDS_CONNECTION | CMD_NEEDS_RUN | CMD_LOCKS_LAB | CMD_LOCAL_URI,
	.check = cmd_up_check,
	.exec = cmd_up_exec,
};
