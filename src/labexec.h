/* labexec.h: commands and files in a lab's guests through their agents
 * (spawn/poll/kill, put/get/sha256 of src/guest/PROTOCOL.md): one command
 * on several guests at once with its output as it comes, and copies in
 * checked chunks that leave nothing half-written. */
#ifndef IVLAB_LABEXEC_H
#define IVLAB_LABEXEC_H

#include <glib.h>

#include "labsession.h"

/* Exit statuses `ivlab exec` gives (as ssh, timeout(1) and shells do). */
#define LABEXEC_EXIT_UNREACHABLE 255
#define LABEXEC_EXIT_TIMEOUT 124
#define LABEXEC_EXIT_CANCELLED 130

/* How long a guest's agent may take to answer hello. */
#define LABEXEC_REACH_TIMEOUT_MS 15000

enum labexec_stream {
	LABEXEC_STDOUT,
	LABEXEC_STDERR,
};

/* How a command ended on one guest. */
enum labexec_end {
	LABEXEC_EXITED,      /* status: its exit status */
	LABEXEC_SIGNALED,    /* status: the signal */
	LABEXEC_TIMED_OUT,   /* killed after the timeout */
	LABEXEC_CANCELLED,   /* killed because *cancel was set */
	LABEXEC_UNREACHABLE, /* never ran or lost: error says why */
};

struct labexec_result {
	enum labexec_end end;
	int status;
	char *error;
};

/* Output as it comes: one line with its '\n' (the last of a stream may
 * have none, a very long one comes in pieces). Calls are serialised. */
typedef void (*labexec_output_fn)(struct session_guest *sg, enum labexec_stream stream,
				  const char *text, gsize length, gpointer data);

/* The command line for /bin/sh: each argument quoted (g_shell_quote). */
char *labexec_shell_join(int argc, char **argv);

/* Run command under /bin/sh -c on each of guests at once, each killed
 * after timeout_ms (0: never) or as soon as *cancel becomes non-zero
 * (Ctrl-C). Returns one result per guest (labexec_results_free), or NULL
 * with error when the command cannot be sent at all (too long). */
struct labexec_result *labexec_run(struct lab_session *session, struct session_guest **guests,
				   guint n_guests, const char *command, guint timeout_ms,
				   labexec_output_fn output, gpointer data,
				   const volatile gint *cancel, GError **error);
void labexec_results_free(struct labexec_result *results, guint n_results);
/* The exit status `ivlab exec` gives for one result. */
int labexec_exit_status(const struct labexec_result *result);
/* "exit 0", "killed by signal 9", "timed out", ... for the status table. */
char *labexec_describe(const struct labexec_result *result);

struct labexec_copy {
	guint64 bytes;
	double seconds;
	char sha256[65];
	char *remote_path; /* the path written or read in the guest */
	char *local_path;
};
void labexec_copy_clear(struct labexec_copy *copy);

/* Copy local into the guest at remote (remote ending in '/': a directory,
 * the file keeps its name): chunks to a temporary name beside it, the
 * SHA-256 compared, then renamed. Stops (removing the temporary file) when
 * *cancel becomes non-zero. */
gboolean labexec_put(struct lab_session *session, struct session_guest *sg, const char *local,
		     const char *remote, const volatile gint *cancel, struct labexec_copy *copy,
		     GError **error);
/* Copy the guest's remote to local (an existing directory: the file keeps
 * its name), through a temporary file renamed once the SHA-256 matched. */
gboolean labexec_get(struct lab_session *session, struct session_guest *sg, const char *remote,
		     const char *local, const volatile gint *cancel, struct labexec_copy *copy,
		     GError **error);

#endif
