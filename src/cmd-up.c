/* cmd-up.c: `ivlab up`: preflight, images, one server per doorbell region,
 * define and start every guest, and wait for each agent's hello. */
#include "config.h"

#include <string.h>

#include "ivlab.h"
#include "lab.h"
#include "labrun.h"
#include "labup.h"
#include "preflight.h"
#include "server.h"
#include "serverctl.h"
#include "virt.h"

extern const struct ivlab_cmd cmd_up_entry;

#define TIMEOUT_MAX 86400 /* a day */

static int timeout_seconds = 300;
static gboolean keep_failed;

static const GOptionEntry entries[] = {
	{ "timeout", 't', 0, G_OPTION_ARG_INT, &timeout_seconds,
	  "seconds to wait for every agent (default 300)", "SECONDS" },
	{ "keep-failed", 0, 0, G_OPTION_ARG_NONE, &keep_failed,
	  "leave a lab that failed to come up for inspection ('ivlab down' removes it)", NULL },
	{ NULL }
};

/* Lines of "a" and "b" that differ, "- old" / "+ new", at most max lines. */
static char *line_diff(const char *a, const char *b, guint max)
{
	g_auto(GStrv) old_lines = g_strsplit(a, "\n", -1);
	g_auto(GStrv) new_lines = g_strsplit(b, "\n", -1);
	g_autoptr(GString) out = g_string_new(NULL);
	guint shown = 0;

	for (char **line = old_lines; *line && shown < max; line++)
		if (**line && !g_strv_contains((const char *const *)new_lines, *line)) {
			g_autofree char *trimmed = g_strstrip(g_strdup(*line));

			g_string_append_printf(out, "%s- %s", out->len ? ", " : "", trimmed);
			shown++;
		}
	for (char **line = new_lines; *line && shown < max; line++)
		if (**line && !g_strv_contains((const char *const *)old_lines, *line)) {
			g_autofree char *trimmed = g_strstrip(g_strdup(*line));

			g_string_append_printf(out, "%s+ %s", out->len ? ", " : "", trimmed);
			shown++;
		}
	return g_string_free(g_steal_pointer(&out), FALSE);
}

/* What differs between the running lab and the lab file, or NULL. */
static char *lab_differences(const struct lab *lab, struct labrun *run, GPtrArray *domains,
			     GHashTable *wanted_xml)
{
	g_autoptr(GPtrArray) diffs = g_ptr_array_new_with_free_func(g_free);

	for (guint i = 0; i < lab->guests->len; i++) {
		const struct lab_guest *guest = g_ptr_array_index(lab->guests, i);
		g_autofree char *name = lab_guest_domain_name(lab, guest);
		g_autofree char *stored = labrun_domain_xml(run, name);
		const char *wanted = g_hash_table_lookup(wanted_xml, name);
		gboolean defined = FALSE;

		for (guint d = 0; d < domains->len; d++)
			if (strcmp(virDomainGetName(g_ptr_array_index(domains, d)), name) == 0)
				defined = TRUE;
		if (!defined)
			g_ptr_array_add(diffs, g_strdup_printf("guest %s is new", guest->name));
		else if (stored && strcmp(stored, wanted) != 0) {
			g_autofree char *delta = line_diff(stored, wanted, 6);

			g_ptr_array_add(diffs, g_strdup_printf("guest %s changed (%s)", guest->name, delta));
		}
	}
	for (guint d = 0; d < domains->len; d++) {
		virDomainPtr dom = g_ptr_array_index(domains, d);
		g_autoptr(virt_meta) meta = virt_domain_meta(dom);

		if (meta && !lab_find_guest((struct lab *)lab, meta->guest))
			g_ptr_array_add(diffs, g_strdup_printf("guest %s (%s) is no longer in the lab file",
							       meta->guest, virDomainGetName(dom)));
	}
	if (!diffs->len)
		return NULL;
	g_ptr_array_add(diffs, NULL);
	return g_strjoinv("; ", (char **)diffs->pdata);
}

static gboolean start_servers(const struct lab *lab, struct labrun *run,
			      virConnectPtr conn, GError **error)
{
	uid_t uid;
	gid_t gid;
	g_autofree char *group = NULL;
	gboolean other_user = preflight_qemu_user(conn, &uid, &gid, &group);

	for (guint i = 0; i < lab->regions->len; i++) {
		const struct lab_region *region = g_ptr_array_index(lab->regions, i);
		g_autofree char *socket_path = NULL, *shm_name = NULL, *pidfile = NULL, *log = NULL;
		struct server_options opts;

		if (region->mode != LAB_REGION_DOORBELL)
			continue;
		socket_path = lab_region_socket_path(lab, region);
		if (serverctl_running(socket_path)) {
			ivlab_debug("server %s: already running", socket_path);
			continue;
		}
		shm_name = lab_region_shm_name(lab, region);
		pidfile = labrun_pidfile(lab, region);
		log = labrun_server_log(lab, region);
		/* Recorded before it exists: a crash in between leaves a trace. */
		labrun_add(run, "servers", socket_path);
		labrun_add(run, "shm", shm_name);
		if (!labrun_save(run, error))
			return FALSE;
		server_options_init(&opts);
		opts.socket_path = socket_path;
		opts.size = region->size;
		opts.vectors = region->vectors;
		opts.shm_kind = SERVER_SHM_POSIX;
		opts.shm_name = shm_name;
		opts.pidfile = pidfile;
		opts.log_file = log;
		opts.daemonize = TRUE;
		if (other_user) {
			opts.socket_mode = 0660;
			opts.socket_group = group;
		}
		if (!serverctl_spawn(&opts, error)) {
			g_prefix_error(error, "region %s: server: ", region->name);
			return FALSE;
		}
		ivlab_info("server for region %s: listening on %s", region->name, socket_path);
	}
	return TRUE;
}

static gboolean cmd_up_exec(struct ivlab_ctx *ctx, int argc, char **argv, GError **error)
{
	g_autofree char *path = NULL, *digest = NULL;
	g_autoptr(Lab) lab = NULL;
	g_autoptr(virConnect) conn = NULL;
	g_autoptr(LabRun) run = NULL;
	g_autoptr(GPtrArray) domains = NULL;
	g_autoptr(GHashTable) wanted_xml = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
	gint64 started = g_get_monotonic_time();

	if (!cmd_parse(&cmd_up_entry, entries, &argc, &argv, error))
		return FALSE;
	if (argc > 1)
		return cmd_usage_error(error, &cmd_up_entry, "unexpected argument '%s'", argv[1]);
	/* Counted in milliseconds as an int further down. */
	if (timeout_seconds <= 0 || timeout_seconds > TIMEOUT_MAX)
		return cmd_usage_error(error, &cmd_up_entry, "--timeout: %d is not in 1..%d seconds",
				       timeout_seconds, TIMEOUT_MAX);
	path = lab_resolve_path(ctx->lab_path);
	lab = lab_load(path, error);
	if (!lab)
		return FALSE;
	digest = labrun_digest_file(path, error);
	if (!digest)
		return FALSE;
	conn = virt_connect(ctx->uri, error);
	if (!conn)
		return FALSE;
	run = labrun_load(lab->name, error);
	if (!run)
		return FALSE;
	domains = virt_lab_domains(conn, lab->name, error);
	if (!domains)
		return FALSE;

	for (guint i = 0; i < lab->guests->len; i++) {
		const struct lab_guest *guest = g_ptr_array_index(lab->guests, i);
		char *xml = labup_domain_xml(lab, guest, error);

		if (!xml)
			return FALSE;
		g_hash_table_insert(wanted_xml, lab_guest_domain_name(lab, guest), xml);
	}

	/* Something of this lab already exists: the same lab (no-op or finish
	 * it), a changed lab file, or another lab file of the same name. */
	if (!labrun_exists(run) && domains->len) {
		g_autoptr(GString) names = g_string_new(NULL);

		for (guint d = 0; d < domains->len; d++)
			g_string_append_printf(names, "%s%s", d ? ", " : "",
					       virDomainGetName(g_ptr_array_index(domains, d)));
		g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED,
			    "lab '%s': its domains exist (%s) but %s has no record of them (brought "
			    "up with another IVLAB_STATE_DIR?); run 'ivlab down %s' there, or here to "
			    "remove them", lab->name, names->str, run->dir, lab->name);
		return FALSE;
	}
	if (labrun_exists(run) || domains->len) {
		g_autofree char *up_path = labrun_lab_path(run);
		g_autofree char *up_digest = labrun_lab_digest(run);
		g_autofree char *diff = lab_differences(lab, run, domains, wanted_xml);
		g_autofree char *canon_up = up_path ? g_canonicalize_filename(up_path, NULL) : NULL;
		g_autofree char *canon_now = g_canonicalize_filename(path, NULL);
		gboolean same_file = canon_up && strcmp(canon_up, canon_now) == 0;

		if (up_digest && strcmp(up_digest, digest) != 0 && !same_file && diff) {
			g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED,
				    "%s: the lab name '%s' is taken by a running lab from %s: its "
				    "region names (ivlab-%s-*), sockets in %s and domains (%s-*) would "
				    "collide, and the two differ (%s); rename this lab or run "
				    "'ivlab -f %s down' first",
				    path, lab->name, up_path, lab->name, run->dir, lab->name, diff,
				    up_path);
			return FALSE;
		}
		if (diff) {
			g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED,
				    "%s: the lab '%s' is up, and the lab file differs from what "
				    "runs: %s; run 'ivlab down' first, then 'ivlab up' to apply it",
				    path, lab->name, diff);
			return FALSE;
		}
		gboolean all_running = domains->len == lab->guests->len;

		for (guint d = 0; d < domains->len; d++)
			all_running = all_running && virt_is_running(g_ptr_array_index(domains, d));
		for (guint r = 0; r < lab->regions->len; r++) {
			const struct lab_region *region = g_ptr_array_index(lab->regions, r);
			g_autofree char *socket_path = NULL;

			if (region->mode != LAB_REGION_DOORBELL)
				continue;
			socket_path = lab_region_socket_path(lab, region);
			if (!serverctl_running(socket_path)) {
				if (all_running) {
					g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED,
						    "lab '%s': its guests run but the server of region %s "
						    "(%s) does not answer; run 'ivlab down', then "
						    "'ivlab up'", lab->name, region->name, socket_path);
					return FALSE;
				}
				all_running = FALSE;
			}
		}
		if (all_running) {
			ivlab_info("lab '%s' is already up (%u guests running, from %s); nothing to do",
				   lab->name, domains->len, up_path ? up_path : path);
			return TRUE;
		}
		ivlab_info("lab '%s' is partly up: finishing it", lab->name);
	}

	if (!preflight_check(conn, lab, error))
		return FALSE;
	if (!labup_ensure_images(lab, error))
		return FALSE;
	if (!labup_check_shm_free(lab, run, error))
		return FALSE;

	labrun_set_lab(run, path, digest);
	if (!labrun_save(run, error))
		return FALSE;

	g_autoptr(GError) up_error = NULL;
	if (start_servers(lab, run, conn, &up_error) &&
	    labup_define_and_start(conn, lab, run, wanted_xml, timeout_seconds, &up_error)) {
		ivlab_info("lab '%s' is up: %u guests ready in %.1f s", lab->name, lab->guests->len,
			   (g_get_monotonic_time() - started) / 1e6);
		return TRUE;
	}
	if (keep_failed) {
		ivlab_info("lab '%s' left as it is for inspection; 'ivlab down' removes it", lab->name);
	} else {
		g_autoptr(GError) down_error = NULL;

		ivlab_info("undoing the failed 'up' of lab '%s'", lab->name);
		if (!labrun_teardown(conn, lab->name, lab, FALSE, &down_error))
			ivlab_info("warning: undo incomplete: %s; run 'ivlab down'", down_error->message);
	}
	g_propagate_error(error, g_steal_pointer(&up_error));
	return FALSE;
}

const struct ivlab_cmd cmd_up_entry = {
	.name = "up",
	.usage = "[--timeout SECONDS] [--keep-failed]",
	.summary = "build images, start servers, define and start the lab's guests",
	.description =
		"Checks the host first (libvirt, emulators, ivshmem devices, /dev/kvm), builds or\n"
		"reuses the guest images, starts one ivshmem server per doorbell region, defines\n"
		"every guest persistently and starts them together, then waits until each guest's\n"
		"agent answers. A lab that is already up is left alone; a failed 'up' is undone.",
	.exec = cmd_up_exec,
};
