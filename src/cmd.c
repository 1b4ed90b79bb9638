/* cmd.c: the command table, command lookup and per-command option parsing. */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "ivlab.h"
#include "labsession.h"
#include "virt.h"

extern const struct ivlab_cmd cmd_bench_entry;
extern const struct ivlab_cmd cmd_console_entry;
extern const struct ivlab_cmd cmd_cp_entry;
extern const struct ivlab_cmd cmd_down_entry;
extern const struct ivlab_cmd cmd_exec_entry;
extern const struct ivlab_cmd cmd_help_entry;
extern const struct ivlab_cmd cmd_image_entry;
extern const struct ivlab_cmd cmd_peer_entry;
extern const struct ivlab_cmd cmd_restart_entry;
extern const struct ivlab_cmd cmd_server_entry;
extern const struct ivlab_cmd cmd_status_entry;
extern const struct ivlab_cmd cmd_test_entry;
extern const struct ivlab_cmd cmd_up_entry;
extern const struct ivlab_cmd cmd_xml_entry;

/* Keep sorted by name: `ivlab help` lists them in this order. */
static const struct ivlab_cmd *const commands[] = {
	&cmd_bench_entry,
	&cmd_console_entry,
	&cmd_cp_entry,
	&cmd_down_entry,
	&cmd_exec_entry,
	&cmd_help_entry,
	&cmd_image_entry,
	&cmd_peer_entry,
	&cmd_restart_entry,
	&cmd_server_entry,
	&cmd_status_entry,
	&cmd_test_entry,
	&cmd_up_entry,
	&cmd_xml_entry,
};

/* Levenshtein distance, for "did you mean". */
static gsize edit_distance(const char *a, const char *b)
{
	gsize la = strlen(a), lb = strlen(b);
	g_autofree gsize *row = g_new(gsize, lb + 1);

	for (gsize j = 0; j <= lb; j++)
		row[j] = j;
	for (gsize i = 1; i <= la; i++) {
		gsize diag = row[0];

		row[0] = i;
		for (gsize j = 1; j <= lb; j++) {
			gsize up = row[j];
			gsize best = MIN(row[j] + 1, row[j - 1] + 1);

			row[j] = MIN(best, diag + (a[i - 1] != b[j - 1]));
			diag = up;
		}
	}
	return row[lb];
}

const struct ivlab_cmd *cmd_lookup(const char *name, GError **error)
{
	const struct ivlab_cmd *prefix_match = NULL;
	const struct ivlab_cmd *closest = NULL;
	gsize prefix_count = 0, closest_distance = G_MAXSIZE;

	for (gsize i = 0; i < G_N_ELEMENTS(commands); i++) {
		const struct ivlab_cmd *cmd = commands[i];
		gsize distance;

		if (strcmp(cmd->name, name) == 0)
			return cmd;
		if (g_str_has_prefix(cmd->name, name)) {
			prefix_match = cmd;
			prefix_count++;
		}
		distance = edit_distance(cmd->name, name);
		if (distance < closest_distance) {
			closest_distance = distance;
			closest = cmd;
		}
	}
	if (prefix_count == 1)
		return prefix_match;
	if (prefix_count > 1) {
		g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_USAGE,
			    "ambiguous command: '%s' (see 'ivlab help')", name);
		return NULL;
	}
	if (closest && closest_distance <= 2)
		g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_USAGE,
			    "unknown command: '%s'; did you mean '%s'?", name, closest->name);
	else
		g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_USAGE,
			    "unknown command: '%s' (see 'ivlab help')", name);
	return NULL;
}

void cmd_print_list(FILE *out)
{
	for (gsize i = 0; i < G_N_ELEMENTS(commands); i++)
		fprintf(out, "  %-10s %s\n", commands[i]->name, commands[i]->summary);
}

gboolean cmd_usage_error(GError **error, const struct ivlab_cmd *cmd, const char *fmt, ...)
{
	va_list ap;
	g_autofree char *text = NULL;

	va_start(ap, fmt);
	text = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_USAGE,
		    "%s: %s (usage: ivlab %s %s; see 'ivlab %s --help')",
		    cmd->name, text, cmd->name, cmd->usage, cmd->name);
	return FALSE;
}

gboolean cmd_parse(const struct ivlab_cmd *cmd, const GOptionEntry *entries,
		   int *argc, char ***argv, GError **error)
{
	g_autoptr(GOptionContext) context = g_option_context_new(cmd->usage);
	g_autoptr(GError) parse_error = NULL;
	g_autofree char *prgname = g_strdup_printf("ivlab %s", cmd->name);

	g_set_prgname(prgname);
	g_option_context_set_summary(context, cmd->summary);
	if (cmd->description)
		g_option_context_set_description(context, cmd->description);
	if (entries)
		g_option_context_add_main_entries(context, entries, NULL);
	if (cmd->needs & CMD_POSIX_OPTIONS)
		g_option_context_set_strict_posix(context, TRUE);
	if (!g_option_context_parse(context, argc, argv, &parse_error))
		return cmd_usage_error(error, cmd, "%s", parse_error->message);
	return TRUE;
}

static guint session_needs(guint needs)
{
	guint wanted = 0;

	if (needs & CMD_NEEDS_CONNECTION)
		wanted |= LABSESSION_CONNECTION;
	if (needs & CMD_NEEDS_RUN)
		wanted |= LABSESSION_RUN;
	if (needs & CMD_NEEDS_RUNNING_LAB)
		wanted |= LABSESSION_CONNECTION | LABSESSION_RUNNING;
	if (needs & CMD_LOCKS_LAB)
		wanted |= LABSESSION_LOCK;
	return wanted;
}

gboolean cmd_prepare(const struct ivlab_cmd *cmd, struct ivlab_ctx *ctx, guint needs, int argc,
		     char **argv, GError **error)
{
	gboolean ok;

	if (!(needs & (CMD_NEEDS_LAB | CMD_NEEDS_CONNECTION | CMD_NEEDS_RUN | CMD_NEEDS_RUNNING_LAB)))
		return TRUE;
	ctx->session = labsession_open(ctx->lab_path, error);
	if (!ctx->session)
		return FALSE;
	if ((needs & CMD_GUEST_ARGS) && !labsession_check_guests(ctx->session, argc - 1, argv + 1, error))
		ok = FALSE;
	else
		ok = labsession_attach(ctx->session, ctx->uri, session_needs(needs), error);
	if (!ok)
		g_clear_pointer(&ctx->session, labsession_free);
	return ok;
}

gboolean cmd_run(const struct ivlab_cmd *cmd, struct ivlab_ctx *ctx, int argc, char **argv,
		 GError **error)
{
	gboolean ok;

	if (!(cmd->needs & CMD_OWN_OPTIONS)) {
		if (!cmd_parse(cmd, cmd->options, &argc, &argv, error))
			return FALSE;
		if (cmd->max_args >= 0 && argc - 1 > cmd->max_args)
			return cmd_usage_error(error, cmd, "unexpected argument '%s'",
					       argv[1 + cmd->max_args]);
	}
	if (cmd->check && !cmd->check(cmd, argc, argv, error))
		return FALSE;
	if ((cmd->needs & CMD_LOCAL_URI) && !virt_uri_is_local(ctx->uri))
		return ivlab_fail(error, "%s: %s is another host's libvirt: the lab's ivshmem servers and "
				  "images are made on this machine, so '%s' works through a local URI only "
				  "(remote labs are not supported yet; status, console and down work through any URI)",
				  cmd->name, ctx->uri, cmd->name);
	if (!cmd_prepare(cmd, ctx, cmd->needs, argc, argv, error))
		return FALSE;
	ok = cmd->exec(cmd, ctx, argc, argv, error);
	/* Stopped by a signal it caught (ivlab_interrupt_catch()): 128+N, as the
	 * shell reports a command the signal killed. */
	if (!ok && ivlab_interrupted() && !ctx->exit_status)
		ctx->exit_status = 128 + ivlab_interrupted();
	g_clear_pointer(&ctx->session, labsession_free);
	return ok;
}
