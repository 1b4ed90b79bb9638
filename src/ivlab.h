/* ivlab.h: what every part of the ivlab CLI shares: the command table entry,
 * the run context, the error domain and the paths ivlab uses. */
#ifndef IVLAB_H
#define IVLAB_H

#include <stdio.h>
#include <glib.h>
#include <json-glib/json-glib.h>

#define IVLAB_ERROR (ivlab_error_quark())
GQuark ivlab_error_quark(void);

enum ivlab_error_code {
	IVLAB_ERROR_FAILED, /* exit status 1 */
	IVLAB_ERROR_USAGE,  /* exit status 2 */
	IVLAB_ERROR_BUSY,   /* exit status 1: held by another ivlab command (ivlab_lock) */
};

struct lab_session;

/* What main() parsed from the global options, and what the dispatcher
 * prepared for the command (cmd_run). */
struct ivlab_ctx {
	char *uri;      /* libvirt connection URI */
	char *lab_path; /* -f, or NULL */
	int verbose;    /* -v count */
	gboolean quiet; /* -q */
	struct lab_session *session; /* what the command's needs asked for, else NULL */
	/* The exit status a command chose (ivlab exec: the remote command's);
	 * 0: 0 on success, 1 or 2 on an error. */
	int exit_status;
};

/* What a command needs before it runs, prepared by cmd_run() (as tmux
 * resolves a command's target): each implies the ones before it. */
enum ivlab_cmd_needs {
	CMD_NEEDS_LAB = 1 << 0,         /* the lab file, loaded: ctx->session */
	CMD_NEEDS_CONNECTION = 1 << 1,  /* libvirt and the lab's domains */
	CMD_NEEDS_RUN = 1 << 2,         /* the lab's recorded run state */
	CMD_NEEDS_RUNNING_LAB = 1 << 3, /* some domain of the lab is defined */
	CMD_GUEST_ARGS = 1 << 4,        /* the operands name guests of the lab (checked
					 * before connecting) */
	CMD_OWN_OPTIONS = 1 << 5,       /* exec parses its options (subcommands) */
	CMD_POSIX_OPTIONS = 1 << 6,     /* options end at the first operand (ivlab exec
					 * g ls -l: -l is the command's) */
	CMD_LOCKS_LAB = 1 << 7,         /* one at a time per lab (up, restart): the lab's
					 * lock is taken before its state is read */
	CMD_LOCAL_URI = 1 << 8,         /* refuses a libvirt URI of another host: what it
					 * starts (servers, images) is on this machine */
};

struct ivlab_cmd {
	const char *name;
	const char *usage;   /* parameter string, e.g. "[GUEST...]" */
	const char *summary; /* one line for `ivlab help` */
	const char *description; /* printed after the options in --help, or NULL */
	const GOptionEntry *options; /* parsed by cmd_run(), NULL: none */
	int max_args;        /* operands after the options; -1: any number */
	guint needs;         /* enum ivlab_cmd_needs */
	/* Checks option values and operands before anything is opened; NULL: none. */
	gboolean (*check)(const struct ivlab_cmd *self, int argc, char **argv, GError **error);
	/* argv[0] is the command name; returns FALSE and sets error on failure. */
	gboolean (*exec)(const struct ivlab_cmd *self, struct ivlab_ctx *ctx, int argc, char **argv,
			 GError **error);
};

const struct ivlab_cmd *cmd_lookup(const char *name, GError **error);
/* Parse cmd's options, check them, prepare what it needs, run it. */
gboolean cmd_run(const struct ivlab_cmd *cmd, struct ivlab_ctx *ctx, int argc, char **argv,
		 GError **error);
/* What needs (enum ivlab_cmd_needs) asks for, in ctx->session (cmd_run()
 * calls it with cmd->needs; a command with subcommands, with its own). */
gboolean cmd_prepare(const struct ivlab_cmd *cmd, struct ivlab_ctx *ctx, guint needs, int argc,
		     char **argv, GError **error);
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
/* The same, "MESSAGE: strerror(errno)"; errno is kept. */
gboolean ivlab_fail_errno(GError **error, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
/* The keys of a table keyed by GUINT_TO_POINTER(id), sorted, as guints. */
GArray *ivlab_sorted_ids(GHashTable *table);

/* Write all of data to fd (a socket, pipe or terminal); FALSE on error or EOF. */
gboolean ivlab_write_all(int fd, const char *data, gsize length);

/* A status line on stderr redrawn in place (downloads, waits), when stderr
 * is a terminal and -q was not given; at most 5 redraws a second unless
 * forced. ivlab_progress_end() ends the line if one was drawn. */
struct ivlab_progress {
	gboolean active;
	gboolean shown;
	gint64 last_us;
};
void ivlab_progress_init(struct ivlab_progress *progress);
void ivlab_progress_show(struct ivlab_progress *progress, gboolean force, const char *fmt, ...)
	G_GNUC_PRINTF(3, 4);
void ivlab_progress_end(struct ivlab_progress *progress);
/* "[#####     ]  50%" for have of total. */
char *ivlab_progress_bar(guint64 have, guint64 total);

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

/* An exclusive flock on path (created if need be), with this process's pid
 * and command line written in it for whoever waits: the fd (closing it
 * releases the lock), or -1. When another process holds it: without wait, an
 * error "WHAT is in use by another ivlab command (pid N: ivlab ...)"; with
 * wait, says so and waits (an interrupt ends the wait with an error). */
int ivlab_lock(const char *path, gboolean wait, const char *what, GError **error);

/* SIGINT, SIGTERM and SIGHUP set a flag instead of killing (a second one
 * kills): long operations check it and undo what they made. */
void ivlab_interrupt_catch(void);
int ivlab_interrupted(void); /* the signal caught, or 0 */
/* FALSE and "interrupted by SIGINT (Ctrl-C)" once a signal was caught. */
gboolean ivlab_check_interrupt(GError **error);
char *ivlab_image_dir(const char *arch);

/* Files and directories (the image pipeline and its caches). */
gboolean ivlab_make_dir(const char *dir, GError **error); /* mkdir -p, mode 0755 */
gboolean ivlab_remove_tree(const char *path, GError **error); /* rm -r; absent is fine */
gboolean ivlab_copy_tree(const char *from, const char *to, GError **error); /* cp -r */
/* The names in a directory, sorted (empty when it cannot be read). */
GPtrArray *ivlab_dir_names(const char *dir);
/* Adds a file's or a tree's names and contents, in sorted order, to sum. */
void ivlab_hash_tree(GChecksum *sum, const char *path, const char *name);
/* A build output in a source tree (*.o, *.ko, *.mod*, .*.cmd, Module.symvers,
 * modules.order, ...; and .git): not part of the source. */
gboolean ivlab_is_build_output(const char *name);
/* A source tree's regular files (symlinks followed), paths and contents,
 * build outputs left out: what a module's build depends on. */
void ivlab_hash_source(GChecksum *sum, const char *dir);
typedef int IvlabLock;
void ivlab_unlock(IvlabLock fd);
G_DEFINE_AUTO_CLEANUP_FREE_FUNC(IvlabLock, ivlab_unlock, -1)

/* "16MiB", "4M", "1G", "65536" -> bytes; FALSE on junk or overflow. */
gboolean ivlab_parse_size(const char *text, guint64 *bytes);
char *ivlab_format_size(guint64 bytes);

/* Print a JSON document on stdout, compact, on one line. */
void ivlab_print_json(JsonNode *root);

/* The format version of every JSON document ivlab prints (status --json,
 * image list --json, bench --json): raised when a field changes meaning or
 * goes away, not when one is added. Their schemas are in man/schema/. */
#define IVLAB_JSON_VERSION 1

/* Begin a JSON document: an object whose first members are "version"
 * (IVLAB_JSON_VERSION) and "ivlab" (the program's version). */
void ivlab_json_begin(JsonBuilder *builder);

/* Does name pass a --filter GLOB (NULL selects everything)? */
gboolean ivlab_filter_match(const char *filter, const char *name);

/* Names that become libvirt domain names, file names and shm names. */
gboolean ivlab_name_is_safe(const char *name);
#define IVLAB_NAME_MAX 32

#endif
