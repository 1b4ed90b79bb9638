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
/* The same with "what: strerror(errno)". */
gboolean ivlab_fail_errno(GError **error, const char *what);
/* The keys of a table keyed by GUINT_TO_POINTER(id), sorted, as guints. */
GArray *ivlab_sorted_ids(GHashTable *table);

/* Write all of data to fd (a socket, pipe or terminal); FALSE on error or EOF. */
gboolean ivlab_write_all(int fd, const char *data, gsize length);

/* Messages for people, on stderr; main() alone prints errors. */
void ivlab_set_verbosity(int verbose, gboolean quiet);
int ivlab_verbosity(void);
void ivlab_info(const char *fmt, ...) G_GNUC_PRINTF(1, 2);
void ivlab_debug(const char *fmt, ...) G_GNUC_PRINTF(1, 2);

/* Directories: $IVLAB_DATADIR / installed data / the source tree for the
 * shipped labs and schema; $IVLAB_STATE_DIR or /var/lib/ivlab (root) or
 * $XDG_STATE_HOME/ivlab for images and running labs. */
const char *ivlab_datadir(void);
const char *ivlab_state_dir(void);
char *ivlab_lab_dir(const char *lab_name);
char *ivlab_image_dir(const char *arch);

/* Files and directories (the image pipeline and its caches). */
gboolean ivlab_make_dir(const char *dir, GError **error); /* mkdir -p, mode 0755 */
gboolean ivlab_remove_tree(const char *path, GError **error); /* rm -r; absent is fine */
gboolean ivlab_copy_tree(const char *from, const char *to, GError **error); /* cp -r */
/* The names in a directory, sorted (empty when it cannot be read). */
GPtrArray *ivlab_dir_names(const char *dir);
/* Adds a file's or a tree's names and contents, in sorted order, to sum. */
void ivlab_hash_tree(GChecksum *sum, const char *path, const char *name);
/* An exclusive flock on path, waiting (and saying so with ivlab_info(),
 * naming waiting_for) while another holder has it; close() releases it.
 * -1 with error set on failure. */
int ivlab_lock_file(const char *path, const char *waiting_for, GError **error);
typedef int IvlabLock;
void ivlab_unlock(IvlabLock fd);
G_DEFINE_AUTO_CLEANUP_FREE_FUNC(IvlabLock, ivlab_unlock, -1)

/* "16MiB", "4M", "1G", "65536" -> bytes; FALSE on junk or overflow. */
gboolean ivlab_parse_size(const char *text, guint64 *bytes);
char *ivlab_format_size(guint64 bytes);

/* Append text as a JSON string (quoted, escaped) to out. */
void ivlab_json_string(GString *out, const char *text);

/* Names that become libvirt domain names, file names and shm names. */
gboolean ivlab_name_is_safe(const char *name);
#define IVLAB_NAME_MAX 32

#endif
