/* cmd-down.c: `ivlab down`: destroy and undefine the lab's guests, stop its
 * servers, remove its sockets, pidfiles and shm objects. */
#include "config.h"

#include <unistd.h>

#include "ivlab.h"
#include "lab.h"
#include "labrun.h"
#include "virt.h"

static gboolean keep;

static const GOptionEntry entries[] = {
	{ "keep", 'k', 0, G_OPTION_ARG_NONE, &keep,
	  "leave the domains defined and shut off for inspection", NULL },
	{ NULL }
};

static gboolean cmd_down_check(const struct ivlab_cmd *self, int argc, char **argv, GError **error)
{
	if (argc == 2 && !ivlab_name_is_safe(argv[1]))
		return cmd_usage_error(error, self, "'%s' is not a lab name", argv[1]);
	return TRUE;
}

static gboolean cmd_down_exec(const struct ivlab_cmd *self, struct ivlab_ctx *ctx, int argc,
			      char **argv, GError **error)
{
	g_autoptr(Lab) lab = NULL;
	g_autoptr(virConnect) conn = NULL;
	g_autofree char *lab_name = NULL;
	int lock_fd;
	gboolean ok;

	if (argc == 2) {
		/* By name: for a lab whose file is gone or changed. */
		lab_name = g_strdup(argv[1]);
	} else {
		g_autofree char *path = lab_resolve_path(ctx->lab_path);

		lab = lab_load(path, error);
		if (!lab)
			return FALSE;
		lab_name = g_strdup(lab->name);
	}
	conn = virt_connect(ctx->uri, error);
	if (!conn)
		return FALSE;
	lock_fd = labrun_lock(lab_name, error);
	if (lock_fd < 0)
		return FALSE;
	ok = labrun_teardown(conn, lab_name, lab, keep, error);
	close(lock_fd);
	if (!ok)
		return FALSE;
	ivlab_info("lab '%s' is down%s", lab_name, keep ? " (domains kept, shut off)" : "");
	return TRUE;
}

const struct ivlab_cmd cmd_down_entry = {
	.name = "down",
	.usage = "[--keep] [LAB-NAME]",
	.summary = "stop and remove everything the lab created",
	.description =
		"Destroys and undefines the lab's guests (domains named LAB-* that carry the lab's\n"
		"ivlab metadata, nothing else), stops its ivshmem servers and removes their sockets,\n"
		"pidfiles and the lab's shm objects. Safe to run again. With LAB-NAME, works\n"
		"without the lab file.",
	.options = entries,
	.max_args = 1,
	.check = cmd_down_check,
	.exec = cmd_down_exec,
};
