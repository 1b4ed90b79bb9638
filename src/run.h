/* run.h: the one way ivlab runs a child process (apt, dpkg, make, QEMU's
 * help): argv in, stdout, stderr and exit status out, with a dry-run hook
 * so tests can see what would run and answer for it. */
#ifndef IVLAB_RUN_H
#define IVLAB_RUN_H

#include <glib.h>

/* One child process: set what to run, call ivlab_run(), read what it did. */
struct ivlab_run {
	const char *const *argv; /* NULL-terminated; argv[0] is searched in PATH */
	const char *cwd;         /* NULL: ours */
	const char *const *env;  /* "NAME=VALUE" set on top of our environment, or NULL */
	gboolean may_fail;       /* a non-zero exit is no error: look at status */

	char *out;  /* stdout, never NULL after a run */
	char *err;  /* stderr, never NULL after a run */
	int status; /* exit code; 128 + the signal's number when killed by one */
};

void ivlab_run_clear(struct ivlab_run *run);
typedef struct ivlab_run IvlabRun;
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(IvlabRun, ivlab_run_clear)

/* Runs run->argv with stdin from /dev/null and both outputs captured.
 * FALSE when it cannot start, or when it exits non-zero and may_fail is
 * not set: the error is one line, "ARGV0 failed: " and the most telling
 * line of its stderr (the first naming an error); the whole stderr goes to
 * ivlab_debug() (-v). */
gboolean ivlab_run(struct ivlab_run *run, GError **error);

/* Tests: while a hook is set, ivlab_run() runs nothing and calls it
 * instead. The hook sees argv, cwd and env, fills out/err (g_malloc'd, may
 * stay NULL) and status as the command would have, and returns TRUE; or
 * FALSE with error set as if the command could not start. NULL restores
 * real runs. Modelled on libvirt's virCommandSetDryRun. */
typedef gboolean (*ivlab_run_hook)(struct ivlab_run *run, gpointer user_data, GError **error);
void ivlab_run_set_dry_run(ivlab_run_hook hook, gpointer user_data);

#endif
