/* cmd-help.c: `ivlab help [COMMAND]`. */
#include "config.h"

#include <stdio.h>

#include "ivlab.h"

static gboolean cmd_help_check(const struct ivlab_cmd *self, int argc, char **argv, GError **error)
{
	if (argc > 2)
		return cmd_usage_error(error, self, "too many arguments");
	return TRUE;
}

static gboolean cmd_help_exec(const struct ivlab_cmd *self, struct ivlab_ctx *ctx, int argc,
			      char **argv, GError **error)
{
	const struct ivlab_cmd *cmd;

	if (argc == 1) {
		main_print_usage(stdout);
		return TRUE;
	}
	cmd = cmd_lookup(argv[1], error);
	if (!cmd)
		return FALSE;
	/* Every command prints its own --help through GOption and exits 0. */
	char *help_argv[] = { (char *)cmd->name, (char *)"--help", NULL };
	return cmd_run(cmd, ctx, 2, help_argv, error);
}

const struct ivlab_cmd cmd_help_entry = {
	.name = "help",
	.usage = "[COMMAND]",
	.summary = "show the commands, or one command's options",
	.max_args = -1,
	.check = cmd_help_check,
	.exec = cmd_help_exec,
};
