/* main.c: global options, command dispatch, and the one place errors print. */
#include "config.h"

#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "ivlab.h"

void main_print_usage(FILE *out)
{
	fprintf(out,
		"Usage: ivlab [-c URI] [-f LAB] [-v|-q] COMMAND [OPTIONS] [ARGS]\n"
		"\n"
		"Build, run and test labs of virtual machines sharing memory through\n"
		"QEMU's ivshmem device.\n"
		"\n"
		"Commands:\n");
	cmd_print_list(out);
	fprintf(out,
		"\n"
		"Global options:\n"
		"  -c, --connect URI   libvirt URI (default: $LIBVIRT_DEFAULT_URI, else\n"
		"                      qemu:///system as root, qemu:///session otherwise)\n"
		"  -f, --lab FILE      lab file (default: ./ivlab.xml, else the default lab)\n"
		"  -v, --verbose       say more (repeat for more)\n"
		"  -q, --quiet         say only errors\n"
		"      --version       print the version and exit\n"
		"  -h, --help          this text\n"
		"\n"
		"'ivlab help COMMAND' or 'ivlab COMMAND --help' shows a command's options.\n");
}

static gboolean count_verbose(const char *name, const char *value, gpointer data, GError **error)
{
	((struct ivlab_ctx *)data)->verbose++;
	return TRUE;
}

static char *default_uri(void)
{
	const char *env = g_getenv("LIBVIRT_DEFAULT_URI");

	if (env && *env)
		return g_strdup(env);
	return g_strdup(geteuid() == 0 ? "qemu:///system" : "qemu:///session");
}

static int run(int argc, char **argv, GError **error)
{
	struct ivlab_ctx ctx = { 0 };
	gboolean show_version = FALSE, show_help = FALSE;
	g_autofree char *uri = NULL, *lab = NULL;
	const GOptionEntry entries[] = {
		{ "connect", 'c', 0, G_OPTION_ARG_STRING, &uri, "libvirt URI", "URI" },
		{ "lab", 'f', 0, G_OPTION_ARG_FILENAME, &lab, "lab file", "FILE" },
		{ "verbose", 'v', G_OPTION_FLAG_NO_ARG, G_OPTION_ARG_CALLBACK,
		  (gpointer)count_verbose, "say more", NULL },
		{ "quiet", 'q', 0, G_OPTION_ARG_NONE, &ctx.quiet, "say only errors", NULL },
		{ "version", 0, 0, G_OPTION_ARG_NONE, &show_version, "print the version", NULL },
		{ "help", 'h', 0, G_OPTION_ARG_NONE, &show_help, "show help", NULL },
		{ NULL }
	};
	g_autoptr(GOptionContext) context = g_option_context_new("COMMAND");
	g_autoptr(GOptionGroup) group = g_option_group_new("ivlab", "", "", &ctx, NULL);
	g_autoptr(GError) parse_error = NULL;
	const struct ivlab_cmd *cmd;

	g_option_group_add_entries(group, entries);
	g_option_context_set_main_group(context, g_steal_pointer(&group));
	/* Options after the command name belong to the command. */
	g_option_context_set_strict_posix(context, TRUE);
	g_option_context_set_help_enabled(context, FALSE);
	if (!g_option_context_parse(context, &argc, &argv, &parse_error)) {
		g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_USAGE,
			    "%s (see 'ivlab --help')", parse_error->message);
		return 2;
	}
	if (show_version) {
		printf("ivlab %s\n", PACKAGE_VERSION);
		return 0;
	}
	if (show_help) {
		main_print_usage(stdout);
		return 0;
	}
	if (argc < 2) {
		main_print_usage(stderr);
		g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_USAGE, "no command given");
		return 2;
	}
	cmd = cmd_lookup(argv[1], error);
	if (!cmd)
		return 2;
	ivlab_set_verbosity(ctx.verbose, ctx.quiet);
	ctx.uri = uri ? g_steal_pointer(&uri) : default_uri();
	ctx.lab_path = g_steal_pointer(&lab);
	gboolean ok = cmd_run(cmd, &ctx, argc - 1, argv + 1, error);
	g_free(ctx.uri);
	g_free(ctx.lab_path);
	/* A status the command chose (exec) was explained by its own output. */
	if (ok || ctx.exit_status)
		return ctx.exit_status;
	return g_error_matches(*error, IVLAB_ERROR, IVLAB_ERROR_USAGE) ? 2 : 1;
}

int main(int argc, char **argv)
{
	g_autoptr(GError) error = NULL;
	int status;

	setlocale(LC_ALL, "");
	g_set_prgname("ivlab");
	status = run(argc, argv, &error);
	if (status != 0 && error)
		fprintf(stderr, "ivlab: %s\n", error->message);

	return status;
}
