/* ivlab.h: what every part of the ivlab CLI shares: the command table entry,
 * the run context, the error domain and the paths ivlab uses. */
#ifndef IVLAB_H
#define IVLAB_H

#include <stdio.h>
#include <glib.h>

#define IVLAB_ERROR (ivlab_error_quark())
GQuark ivlab_error_quark(void);

enum ivlab_error_code {
	IVLAB_ERROR_FAILED, /* exit status 1 */
	IVLAB_ERROR_USAGE,  /* exit status 2 */
};

/* What main() parsed from the global options. */
struct ivlab_ctx {
	char *uri;      /* libvirt connection URI */
	char *lab_path; /* lab file, NULL until resolved */
	int verbose;    /* -v count */
	gboolean quiet; /* -q */
};

struct ivlab_cmd {
	const char *name;
	const char *usage;   /* parameter string, e.g. "[GUEST...]" */
	const char *summary; /* one line for `ivlab help` */
	const char *description; /* printed after the options in --help, or NULL */
	/* argv[0] is the command name; returns FALSE and sets error on failure. */
	gboolean (*exec)(struct ivlab_ctx *ctx, int argc, char **argv, GError **error);
};

const struct ivlab_cmd *cmd_lookup(const char *name, GError **error);
void cmd_print_list(FILE *out);
/* The top-level usage text (main.c). */
void main_print_usage(FILE *out);

/* Parse a command's options in place (argv[0] is the command); on a usage
 * error sets IVLAB_ERROR_USAGE with a hint to --help. */
gboolean cmd_parse(const struct ivlab_cmd *cmd, const GOptionEntry *entries,
		   int *argc, char ***argv, GError **error);
gboolean cmd_usage_error(GError **error, const struct ivlab_cmd *cmd,
			 const char *fmt, ...) G_GNUC_PRINTF(3, 4);

/* Set IVLAB_ERROR_FAILED with a formatted message; returns FALSE. */
gboolean ivlab_fail(GError **error, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
/* The keys of a table keyed by GUINT_TO_POINTER(id), sorted, as guints. */
GArray *ivlab_sorted_ids(GHashTable *table);

/* Write all of data to fd (a socket, pipe or terminal); FALSE on error or EOF. */
gboolean ivlab_write_all(int fd, const char *data, gsize length);

/* Messages for people, on stderr; main() alone prints errors. */
void ivlab_set_verbosity(int verbose, gboolean quiet);
int ivlab_verbosity(void);
void ivlab_info(const char *fmt, ...) G_GNUC_PRINTF(1, 2);
void ivlab_debug(const char *fmt, ...) G_GNUC_PRINTF(1, 2);

/* Directories: $IVLAB_DATADIR / the source tree (when run uninstalled) /
 * installed data for the shipped labs and schema; $IVLAB_STATE_DIR or
 * /var/lib/ivlab (root) or $XDG_STATE_HOME/ivlab for images and running labs. */
const char *ivlab_datadir(void);
/* The source and build trees when this ivlab runs from its build tree, as
 * IVLAB_UNINSTALLED_CONF beside the executable names them; NULL once
 * installed (make writes that file and never installs it). */
#define IVLAB_UNINSTALLED_CONF "ivlab-uninstalled.conf"
const char *ivlab_source_dir(void);
const char *ivlab_build_dir(void);
const char *ivlab_state_dir(void);
char *ivlab_lab_dir(const char *lab_name);
char *ivlab_image_dir(const char *arch);

/* "16MiB", "4M", "1G", "65536" -> bytes; FALSE on junk or overflow. */
gboolean ivlab_parse_size(const char *text, guint64 *bytes);
char *ivlab_format_size(guint64 bytes);

/* Append text as a JSON string (quoted, escaped) to out. */
void ivlab_json_string(GString *out, const char *text);

/* Names that become libvirt domain names, file names and shm names. */
gboolean ivlab_name_is_safe(const char *name);
#define IVLAB_NAME_MAX 32

#endif
