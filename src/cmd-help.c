/* cmd-help.c: `ivlab help [COMMAND]`. */
#include "config.h"

#include <stdio.h>

#include "ivlab.h"

extern const struct ivlab_cmd cmd_help_entry;

static gboolean cmd_help_exec(struct ivlab_ctx *ctx, int argc, char **argv, GError **error)
{
	const struct ivlab_cmd *cmd;

	if (!cmd_parse(&cmd_help_entry, NULL, &argc, &argv, error))
		return FALSE;
	if (argc > 2)
		return cmd_usage_error(error, &cmd_help_entry, "too many arguments");
	if (argc == 1) {
		main_print_usage(stdout);
		return TRUE;
	}
	cmd = cmd_lookup(argv[1], error);
	if (!cmd)
		return FALSE;
	/* Every command prints its own --help through GOption and exits 0. */
	char *help_argv[] = { (char *)cmd->name, (char *)"--help", NULL };
	return cmd->exec(ctx, 2, help_argv, error);
}

const struct ivlab_cmd cmd_help_entry = {
	.name = "help",
	.usage = "[COMMAND]",
	.summary = "show the commands, or one command's options",
	.exec = cmd_help_exec,
};
