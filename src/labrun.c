/* labrun.c: the lab's runtime state file and the teardown `down` (and a
 * failed `up`) runs. */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>
#include <glib/gstdio.h>

#include "ivlab.h"
#include "labrun.h"
#include "serverctl.h"

#define GROUP_LAB "lab"
#define GROUP_CREATED "created"
#define GROUP_XML "domain-xml"
#define GROUP_INPUTS "boot-inputs"

void labrun_free(struct labrun *run)
{
	if (!run)
		return;
	g_free(run->lab_name);
	g_free(run->dir);
	g_free(run->state_path);
	g_key_file_free(run->keys);
	g_free(run);
}

struct labrun *labrun_load(const char *lab_name, GError **error)
{
	struct labrun *run = g_new0(struct labrun, 1);
	g_autoptr(GError) load_error = NULL;

	run->lab_name = g_strdup(lab_name);
	run->dir = ivlab_lab_dir(lab_name);
	run->state_path = g_build_filename(run->dir, "state", NULL);
	run->keys = g_key_file_new();
	if (!g_key_file_load_from_file(run->keys, run->state_path, G_KEY_FILE_NONE, &load_error) &&
	    !g_error_matches(load_error, G_FILE_ERROR, G_FILE_ERROR_NOENT)) {
		g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED, "%s: %s (remove it to start over)",
			    run->state_path, load_error->message);
		labrun_free(run);
		return NULL;
	}
	return run;
}

gboolean labrun_exists(const struct labrun *run)
{
	return g_key_file_has_group(run->keys, GROUP_LAB) ||
	       g_key_file_has_group(run->keys, GROUP_CREATED);
}

gboolean labrun_make_dir(struct labrun *run, GError **error)
{
	if (g_mkdir_with_parents(run->dir, 0755) < 0) {
		g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED, "%s: cannot create: %s",
			    run->dir, g_strerror(errno));
		return FALSE;
	}
	/* QEMU runs as another user and must reach the sockets inside. */
	g_chmod(run->dir, 0755);
	return TRUE;
}

gboolean labrun_save(struct labrun *run, GError **error)
{
	g_autoptr(GError) save_error = NULL;

	if (!labrun_make_dir(run, error))
		return FALSE;
	if (!g_key_file_save_to_file(run->keys, run->state_path, &save_error)) {
		g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED, "%s: %s", run->state_path,
			    save_error->message);
		return FALSE;
	}
	return TRUE;
}

void labrun_set_lab(struct labrun *run, const char *lab_path, const char *digest)
{
	g_key_file_set_string(run->keys, GROUP_LAB, "name", run->lab_name);
	g_key_file_set_string(run->keys, GROUP_LAB, "file", lab_path);
	g_key_file_set_string(run->keys, GROUP_LAB, "sha256", digest);
}

char *labrun_lab_path(const struct labrun *run)
{
	return g_key_file_get_string(run->keys, GROUP_LAB, "file", NULL);
}

char *labrun_lab_digest(const struct labrun *run)
{
	return g_key_file_get_string(run->keys, GROUP_LAB, "sha256", NULL);
}

void labrun_set_domain_xml(struct labrun *run, const char *domain, const char *xml)
{
	g_autofree char *escaped = g_strescape(xml, NULL);

	g_key_file_set_string(run->keys, GROUP_XML, domain, escaped);
}

char *labrun_domain_xml(const struct labrun *run, const char *domain)
{
	g_autofree char *escaped = g_key_file_get_string(run->keys, GROUP_XML, domain, NULL);

	return escaped ? g_strcompress(escaped) : NULL;
}

void labrun_set_guest_inputs(struct labrun *run, const char *guest, char **lines)
{
	g_key_file_set_string_list(run->keys, GROUP_INPUTS, guest, (const char *const *)lines,
				   g_strv_length(lines));
}

char **labrun_guest_inputs(const struct labrun *run, const char *guest)
{
	return g_key_file_get_string_list(run->keys, GROUP_INPUTS, guest, NULL, NULL);
}

void labrun_add(struct labrun *run, const char *kind, const char *item)
{
	g_auto(GStrv) items = labrun_list(run, kind);
	g_autoptr(GStrvBuilder) builder = g_strv_builder_new();
	g_auto(GStrv) updated = NULL;

	if (g_strv_contains((const char *const *)items, item))
		return;
	g_strv_builder_addv(builder, (const char **)items);
	g_strv_builder_add(builder, item);
	updated = g_strv_builder_end(builder);
	g_key_file_set_string_list(run->keys, GROUP_CREATED, kind, (const char *const *)updated,
				   g_strv_length(updated));
}

char **labrun_list(const struct labrun *run, const char *kind)
{
	char **items = g_key_file_get_string_list(run->keys, GROUP_CREATED, kind, NULL, NULL);

	return items ? items : g_new0(char *, 1);
}

int labrun_lock(const char *lab_name, GError **error)
{
	g_autofree char *dir = g_build_filename(ivlab_state_dir(), "locks", NULL);
	g_autofree char *file = g_strdup_printf("%s.lock", lab_name);
	g_autofree char *path = g_build_filename(dir, file, NULL);
	g_autofree char *what = g_strdup_printf("lab '%s'", lab_name);

	if (!ivlab_make_dir(dir, error))
		return -1;
	return ivlab_lock(path, TRUE, what, error);
}

char *labrun_pidfile(const struct lab *lab, const struct lab_region *region)
{
	g_autofree char *dir = ivlab_lab_dir(lab->name);
	g_autofree char *file = g_strdup_printf("%s.pid", region->name);

	return g_build_filename(dir, file, NULL);
}

char *labrun_server_log(const struct lab *lab, const struct lab_region *region)
{
	g_autofree char *dir = ivlab_lab_dir(lab->name);
	g_autofree char *file = g_strdup_printf("%s.log", region->name);

	return g_build_filename(dir, file, NULL);
}

char *labrun_digest_file(const char *path, GError **error)
{
	g_autofree char *text = NULL;
	gsize length = 0;
	g_autoptr(GError) read_error = NULL;

	if (!g_file_get_contents(path, &text, &length, &read_error)) {
		g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED, "%s", read_error->message);
		return NULL;
	}
	return g_compute_checksum_for_data(G_CHECKSUM_SHA256, (const guchar *)text, length);
}

static void keep_first(GError **error, GError *err)
{
	if (!err)
		return;
	ivlab_debug("teardown: %s", err->message);
	if (error && !*error)
		*error = err;
	else
		g_error_free(err);
}

/* Stop the server on socket_path, and the one pidfile names (a server whose
 * sockets are gone), then remove both sockets. */
static void stop_server(const char *socket_path, const char *pidfile, GError **error)
{
	GError *err = NULL;

	if (g_file_test(socket_path, G_FILE_TEST_EXISTS) &&
	    !serverctl_stop(socket_path, 5000, &err))
		keep_first(error, g_steal_pointer(&err));
	if (pidfile && !serverctl_stop_pidfile(pidfile, 5000, &err))
		keep_first(error, g_steal_pointer(&err));
	g_unlink(socket_path);
	g_autofree char *control = server_control_path(socket_path);
	g_unlink(control);
}

static void remove_shm(const char *name, GError **error)
{
	g_autofree char *path = g_build_filename("/dev/shm", name, NULL);

	if (g_unlink(path) < 0 && errno != ENOENT)
		keep_first(error, g_error_new(IVLAB_ERROR, IVLAB_ERROR_FAILED, "%s: cannot remove: %s",
					      path, g_strerror(errno)));
}

struct removal {
	virDomainPtr dom;
	gboolean keep;
	GError *error;
};

/* libvirt waits for each QEMU to exit (and be reaped): all of them at once. */
static gpointer remove_domain(gpointer data)
{
	struct removal *removal = data;

	if (removal->keep) {
		if (virt_destroy(removal->dom, &removal->error))
			ivlab_info("%s: stopped (kept defined)", virDomainGetName(removal->dom));
	} else if (virt_undefine(removal->dom, &removal->error)) {
		ivlab_info("%s: destroyed and undefined", virDomainGetName(removal->dom));
	}
	return NULL;
}

gboolean labrun_teardown(virConnectPtr conn, const char *lab_name, const struct lab *lab,
			 gboolean keep, GError **error)
{
	g_autoptr(LabRun) run = NULL;
	g_autoptr(GPtrArray) domains = NULL;
	GError *first = NULL;
	GError *err = NULL;

	run = labrun_load(lab_name, &err);
	keep_first(&first, err);
	err = NULL;

	/* Guests first: QEMU holds the servers' sockets and the shm. */
	domains = virt_lab_domains(conn, lab_name, &err);
	keep_first(&first, err);
	guint count = domains ? domains->len : 0;
	g_autofree struct removal *removals = g_new0(struct removal, count);
	g_autofree GThread **threads = g_new0(GThread *, count);

	for (guint i = 0; i < count; i++) {
		removals[i].dom = g_ptr_array_index(domains, i);
		removals[i].keep = keep;
		threads[i] = g_thread_new("remove", remove_domain, &removals[i]);
	}
	for (guint i = 0; i < count; i++) {
		g_thread_join(threads[i]);
		keep_first(&first, removals[i].error);
	}

	/* Servers: those recorded, those of the lab file, and any socket or
	 * pidfile left in the lab's directory. */
	g_autoptr(GHashTable) sockets = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	g_autoptr(GHashTable) shms = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	g_autofree char *dir = ivlab_lab_dir(lab_name);

	if (run) {
		g_auto(GStrv) recorded = labrun_list(run, "servers");
		g_auto(GStrv) recorded_shm = labrun_list(run, "shm");

		for (char **item = recorded; *item; item++)
			g_hash_table_add(sockets, g_strdup(*item));
		for (char **item = recorded_shm; *item; item++)
			g_hash_table_add(shms, g_strdup(*item));
	}
	if (lab && strcmp(lab->name, lab_name) == 0) {
		for (guint i = 0; i < lab->regions->len; i++) {
			struct lab_region *region = g_ptr_array_index(lab->regions, i);

			if (region->mode == LAB_REGION_DOORBELL)
				g_hash_table_add(sockets, lab_region_socket_path(lab, region));
			g_hash_table_add(shms, lab_region_shm_name(lab, region));
		}
	}
	g_autoptr(GDir) listing = g_dir_open(dir, 0, NULL);
	const char *entry;

	while (listing && (entry = g_dir_read_name(listing)))
		if (g_str_has_suffix(entry, ".sock"))
			g_hash_table_add(sockets, g_build_filename(dir, entry, NULL));

	GHashTableIter iter;
	gpointer key;

	g_hash_table_iter_init(&iter, sockets);
	while (g_hash_table_iter_next(&iter, &key, NULL)) {
		const char *socket_path = key;
		g_autofree char *base = g_strndup(socket_path, strlen(socket_path) - strlen(".sock"));
		g_autofree char *pidfile = g_strconcat(base, ".pid", NULL);
		gboolean had = g_file_test(socket_path, G_FILE_TEST_EXISTS) ||
			       g_file_test(pidfile, G_FILE_TEST_EXISTS);

		err = NULL;
		stop_server(socket_path, pidfile, &err);
		keep_first(&first, err);
		if (had)
			ivlab_info("server %s: stopped", socket_path);
	}
	/* Leftover pidfiles (a server that never made its socket). */
	if (listing) {
		g_dir_rewind(listing);
		while ((entry = g_dir_read_name(listing))) {
			if (!g_str_has_suffix(entry, ".pid"))
				continue;
			g_autofree char *pidfile = g_build_filename(dir, entry, NULL);

			err = NULL;
			serverctl_stop_pidfile(pidfile, 5000, &err);
			keep_first(&first, err);
		}
	}

	g_hash_table_iter_init(&iter, shms);
	while (g_hash_table_iter_next(&iter, &key, NULL)) {
		err = NULL;
		remove_shm(key, &err);
		keep_first(&first, err);
	}

	/* The state goes last, and only when nothing failed: a second `down`
	 * then still knows what to retry. With --keep the domain XML stays. */
	if (!first && !keep && g_file_test(dir, G_FILE_TEST_IS_DIR)) {
		g_autoptr(GDir) rest = g_dir_open(dir, 0, NULL);

		while (rest && (entry = g_dir_read_name(rest))) {
			g_autofree char *path = g_build_filename(dir, entry, NULL);

			/* .img: the initramfs of guests that bring something (labboot.c);
			 * .vmlinux(.source): the kernel a <kernel> guest boots
			 * (labkernel.c); .lock: the agents' (labsession.c), whose
			 * guests are gone. */
			if (g_str_has_suffix(entry, ".log") || strcmp(entry, "state") == 0 ||
			    g_str_has_suffix(entry, ".ctl") || g_str_has_suffix(entry, ".img") ||
			    g_str_has_suffix(entry, ".vmlinux") ||
			    g_str_has_suffix(entry, ".vmlinux.source") ||
			    g_str_has_suffix(entry, ".agent.lock"))
				g_unlink(path);
		}
		if (g_rmdir(dir) < 0 && errno != ENOENT)
			ivlab_debug("%s: left in place: %s", dir, g_strerror(errno));
	}
	if (first) {
		g_propagate_error(error, first);
		return FALSE;
	}
	return TRUE;
}
