/* cmd-cp.c: `ivlab cp FILE GUEST:PATH` and `ivlab cp GUEST:PATH FILE`: a file
 * into or out of a guest through its agent, SHA-256 checked at both ends. */
#include "config.h"

#include <signal.h>
#include <string.h>

#include "ivlab.h"
#include "labexec.h"
#include "labsession.h"

/* Ctrl-C stops the copy and removes the temporary file. */
static volatile gint interrupted;

static void on_interrupt(int signum)
{
	(void)signum;
	g_atomic_int_set(&interrupted, 1);
}

/* "GUEST:PATH" -> guest and path; FALSE for a local path (no ':' before
 * the first '/'; write ./a:b for a local file named a:b). */
static gboolean split_remote(const char *operand, char **guest, const char **path)
{
	const char *colon = strchr(operand, ':');
	const char *slash = strchr(operand, '/');

	if (!colon || colon == operand || (slash && slash < colon))
		return FALSE;
	*guest = g_strndup(operand, colon - operand);
	*path = colon + 1;
	return TRUE;
}

static gboolean cmd_cp_check(const struct ivlab_cmd *self, int argc, char **argv, GError **error)
{
	g_autofree char *from_guest = NULL, *to_guest = NULL;
	const char *from_path = NULL, *to_path = NULL;
	gboolean from_remote, to_remote;

	if (argc != 3)
		return cmd_usage_error(error, self, "name a source and a destination");
	from_remote = split_remote(argv[1], &from_guest, &from_path);
	to_remote = split_remote(argv[2], &to_guest, &to_path);
	if (from_remote == to_remote)
		return cmd_usage_error(error, self, "one of the two must be GUEST:PATH, the other a "
				       "local file");
	if (!*(from_remote ? from_path : to_path))
		return cmd_usage_error(error, self, "'%s': no path in the guest",
				       from_remote ? argv[1] : argv[2]);
	return TRUE;
}

static gboolean cmd_cp_exec(const struct ivlab_cmd *self, struct ivlab_ctx *ctx, int argc,
			    char **argv, GError **error)
{
	struct lab_session *session = ctx->session;
	g_autofree char *guest_name = NULL;
	const char *path = NULL;
	gboolean upload = !split_remote(argv[1], &guest_name, &path);
	struct labexec_copy copy = { 0 };
	struct sigaction action = { .sa_handler = on_interrupt, .sa_flags = SA_RESETHAND };
	struct sigaction saved_int, saved_term;
	struct session_guest *sg;
	gboolean ok;

	if (upload)
		split_remote(argv[2], &guest_name, &path);
	if (!labsession_check_guests(session, 1, &guest_name, error))
		return FALSE;
	sg = labsession_guest(session, guest_name);

	sigemptyset(&action.sa_mask);
	sigaction(SIGINT, &action, &saved_int);
	sigaction(SIGTERM, &action, &saved_term);
	if (upload)
		ok = labexec_put(session, sg, argv[1], path, &interrupted, &copy, error);
	else
		ok = labexec_get(session, sg, path, argv[2], &interrupted, &copy, error);
	sigaction(SIGINT, &saved_int, NULL);
	sigaction(SIGTERM, &saved_term, NULL);
	if (!ok) {
		if (g_atomic_int_get(&interrupted))
			ctx->exit_status = LABEXEC_EXIT_CANCELLED;
		return FALSE;
	}
	ivlab_info("%s %s %s:%s: %" G_GUINT64_FORMAT " bytes in %.1f s (%.1f MB/s), sha256 %s",
		   copy.local_path, upload ? "->" : "<-", sg->guest->name, copy.remote_path,
		   copy.bytes, copy.seconds, copy.seconds > 0 ? copy.bytes / copy.seconds / 1e6 : 0.0,
		   copy.sha256);
	labexec_copy_clear(&copy);
	return TRUE;
}

const struct ivlab_cmd cmd_cp_entry = {
	.name = "cp",
	.usage = "FILE GUEST:PATH | GUEST:PATH FILE",
	.summary = "copy a file into or out of a guest",
	.description =
		"PATH ending in '/' (or FILE naming a directory) keeps the file's name. The\n"
		"copy goes to a temporary name beside the destination and is renamed once\n"
		"its SHA-256 matches the source's; nothing half-written is left behind.",
	.options = NULL,
	.max_args = 2,
	.needs = CMD_NEEDS_RUNNING_LAB,
	.check = cmd_cp_check,
	.exec = cmd_cp_exec,
};
