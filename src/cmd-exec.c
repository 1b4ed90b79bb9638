/* cmd-exec.c: `ivlab exec GUEST... | --all [--timeout S] [--] COMMAND [ARG...]`:
 * a command in guests through their agents, output streamed as it comes
 * (prefixed "GUEST: " with several guests), the command's exit status. */
#include "config.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "ivlab.h"
#include "labexec.h"
#include "labsession.h"

static gboolean all_guests;
static double timeout_seconds;

static const GOptionEntry entries[] = {
	{ "all", 'a', 0, G_OPTION_ARG_NONE, &all_guests, "run in every guest of the lab", NULL },
	{ "timeout", 't', 0, G_OPTION_ARG_DOUBLE, &timeout_seconds,
	  "kill the command after S seconds (exit 124)", "S" },
	{ NULL }
};

/* Ctrl-C: the guests' commands are killed, then exec returns 130. */
static volatile gint interrupted;

static void on_interrupt(int signum)
{
	(void)signum;
	g_atomic_int_set(&interrupted, 1);
}

/* The operands (after the options): guests, then the command. */
struct exec_operands {
	char **guests;
	int n_guests;
	char **command;
	int n_command;
};

static void split_operands(int argc, char **argv, struct exec_operands *ops)
{
	int first = 1, separator = -1;

	if (first < argc && strcmp(argv[first], "--") == 0 && all_guests)
		first++;
	for (int i = first; i < argc && separator < 0; i++)
		if (strcmp(argv[i], "--") == 0)
			separator = i;
	if (all_guests && separator < 0) {
		*ops = (struct exec_operands){ NULL, 0, argv + first, argc - first };
	} else if (separator >= 0) {
		*ops = (struct exec_operands){ argv + first, separator - first, argv + separator + 1,
					       argc - separator - 1 };
	} else {
		*ops = (struct exec_operands){ argv + first, MIN(1, argc - first), argv + first + 1,
					       MAX(0, argc - first - 1) };
	}
}

static gboolean cmd_exec_check(const struct ivlab_cmd *self, int argc, char **argv,
			       GError **error)
{
	struct exec_operands ops;

	split_operands(argc, argv, &ops);
	if (timeout_seconds < 0 || timeout_seconds * 1000 > IVLAB_AGENT_SPAWN_TIMEOUT_MAX_MS)
		return cmd_usage_error(error, self, "--timeout %g: need 0 (none) to %u seconds",
				       timeout_seconds, IVLAB_AGENT_SPAWN_TIMEOUT_MAX_MS / 1000);
	if (all_guests && ops.n_guests)
		return cmd_usage_error(error, self, "name guests or give --all, not both");
	if (!all_guests && !ops.n_guests)
		return cmd_usage_error(error, self, "name a guest (or give --all)");
	for (int i = 0; i < ops.n_guests; i++)
		if (ops.guests[i][0] == '-')
			return cmd_usage_error(error, self, "'%s': options go before the guests",
					       ops.guests[i]);
	if (!ops.n_command)
		return cmd_usage_error(error, self, "no command to run");
	return TRUE;
}

static void print_output(struct session_guest *sg, enum labexec_stream stream, const char *text,
			 gsize length, gpointer data)
{
	gboolean prefixed = GPOINTER_TO_INT(data);
	int fd = stream == LABEXEC_STDERR ? STDERR_FILENO : STDOUT_FILENO;
	g_autoptr(GString) line = NULL;

	if (!prefixed) {
		ivlab_write_all(fd, text, length);
		return;
	}
	/* one write per line, so guests' lines do not interleave */
	line = g_string_new(sg->guest->name);
	g_string_append(line, ": ");
	g_string_append_len(line, text, length);
	if (!length || text[length - 1] != '\n')
		g_string_append_c(line, '\n');
	ivlab_write_all(fd, line->str, line->len);
}

static gboolean cmd_exec_exec(const struct ivlab_cmd *self, struct ivlab_ctx *ctx, int argc,
			      char **argv, GError **error)
{
	struct lab_session *session = ctx->session;
	struct exec_operands ops;
	g_autofree struct session_guest **guests = NULL;
	g_autofree char *command = NULL;
	struct labexec_result *results;
	struct sigaction action = { .sa_handler = on_interrupt, .sa_flags = SA_RESETHAND };
	struct sigaction saved_int, saved_term;
	guint n = 0;
	int status = 0;

	split_operands(argc, argv, &ops);
	if (!all_guests && !labsession_check_guests(session, ops.n_guests, ops.guests, error))
		return FALSE;
	guests = g_new0(struct session_guest *, session->n_guests + ops.n_guests);
	if (all_guests)
		for (; n < session->n_guests; n++)
			guests[n] = &session->guests[n];
	else
		for (int i = 0; i < ops.n_guests; i++) {
			struct session_guest *sg = labsession_guest(session, ops.guests[i]);
			gboolean seen = FALSE;

			/* one agent link per guest: a guest named twice runs once */
			for (guint j = 0; j < n; j++)
				seen = seen || guests[j] == sg;
			if (!seen)
				guests[n++] = sg;
		}
	command = labexec_shell_join(ops.n_command, ops.command);

	/* the second Ctrl-C (SA_RESETHAND) ends ivlab at once */
	sigemptyset(&action.sa_mask);
	sigaction(SIGINT, &action, &saved_int);
	sigaction(SIGTERM, &action, &saved_term);
	results = labexec_run(session, guests, n, command, (guint)(timeout_seconds * 1000),
			      print_output, GINT_TO_POINTER(n > 1), &interrupted, error);
	sigaction(SIGINT, &saved_int, NULL);
	sigaction(SIGTERM, &saved_term, NULL);
	if (!results)
		return FALSE;

	for (guint i = 0; i < n; i++)
		status = MAX(status, labexec_exit_status(&results[i]));
	if (n > 1) {
		for (guint i = 0; i < n; i++) {
			g_autofree char *what = labexec_describe(&results[i]);

			fprintf(stderr, "%-16s %s\n", guests[i]->guest->name, what);
		}
	} else if (results[0].end == LABEXEC_UNREACHABLE) {
		ivlab_fail(error, "%s", results[0].error);
		labexec_results_free(results, n);
		ctx->exit_status = LABEXEC_EXIT_UNREACHABLE;
		return FALSE;
	}
	if (g_atomic_int_get(&interrupted))
		status = LABEXEC_EXIT_CANCELLED;
	labexec_results_free(results, n);
	ctx->exit_status = status;
	return TRUE;
}

const struct ivlab_cmd cmd_exec_entry = {
	.name = "exec",
	.usage = "[--timeout S] GUEST... -- COMMAND [ARG...] | [--timeout S] GUEST COMMAND [ARG...] | "
		 "--all [--timeout S] [--] COMMAND [ARG...]",
	.summary = "run a command in guests, with its output as it comes",
	.description =
		"Options come before the guests. One argument is shell text (ivlab exec g\n"
		"'ls | wc -l'); several are quoted one by one. Exit status: the command's\n"
		"(with several guests the largest, and a table of each guest's on stderr),\n"
		"124 on --timeout, 128+N when killed by signal N, 130 after Ctrl-C (the\n"
		"commands are killed), 255 when a guest is down or its agent does not answer.",
	.options = entries,
	.max_args = -1,
	.needs = CMD_NEEDS_RUNNING_LAB | CMD_POSIX_OPTIONS,
	.check = cmd_exec_check,
	.exec = cmd_exec_exec,
};
