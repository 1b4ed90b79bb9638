/* preflight.c: check the host and libvirt before `up` creates anything, and
 * name every problem with its fix. */
#include "config.h"

#include <grp.h>
#include <pwd.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <glib/gstdio.h>
#include <libxml/parser.h>
#include <libxml/xpath.h>

#include "arch.h"
#include "host.h"
#include "ivlab.h"
#include "preflight.h"
#include "run.h"

G_DEFINE_AUTOPTR_CLEANUP_FUNC(xmlDoc, xmlFreeDoc)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(xmlXPathContext, xmlXPathFreeContext)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(xmlXPathObject, xmlXPathFreeObject)

static gboolean uri_is_system(virConnectPtr conn)
{
	g_autofree char *uri = virConnectGetURI(conn);

	return uri && g_str_has_suffix(uri, ":///system");
}

static gboolean uri_is_local(virConnectPtr conn)
{
	g_autofree char *uri = virConnectGetURI(conn);

	return uri && strstr(uri, ":///") != NULL;
}

gboolean preflight_qemu_user(virConnectPtr conn, uid_t *uid, gid_t *gid, char **group_name)
{
	struct passwd *pw;
	struct group *gr;

	if (!uri_is_system(conn) || geteuid() != 0)
		return FALSE;
	pw = getpwnam("libvirt-qemu");
	if (!pw)
		return FALSE;
	*uid = pw->pw_uid;
	*gid = pw->pw_gid;
	gr = getgrgid(pw->pw_gid);
	*group_name = g_strdup(gr ? gr->gr_name : "kvm");
	return TRUE;
}

char *preflight_kvm_advice(void)
{
	struct stat st;

	if (stat("/dev/kvm", &st) < 0)
		return NULL;
	if ((st.st_mode & 0006) == 0006)
		return NULL;
	if ((st.st_mode & 0060) == 0060 && st.st_gid != 0)
		return NULL;
	return g_strdup_printf("/dev/kvm is mode %04o owner %u:%u, so the QEMU user cannot open "
			       "it: libvirt then finds KVM 'not available now' and re-probes QEMU "
			       "on every capability lookup, about 48 s per x86_64 guest start "
			       "instead of 0.4 s; fix: chgrp kvm /dev/kvm && chmod 0660 /dev/kvm "
			       "(what Debian's udev rule does)",
			       (unsigned)(st.st_mode & 07777), (unsigned)st.st_uid,
			       (unsigned)st.st_gid);
}

static char *xpath_string(xmlDoc *doc, const char *expression)
{
	g_autoptr(xmlXPathContext) context = xmlXPathNewContext(doc);
	g_autoptr(xmlXPathObject) result = NULL;

	result = xmlXPathEvalExpression((const xmlChar *)expression, context);
	if (!result || result->type != XPATH_STRING) {
		if (result && result->type == XPATH_NODESET && result->nodesetval &&
		    result->nodesetval->nodeNr > 0) {
			xmlChar *text = xmlNodeGetContent(result->nodesetval->nodeTab[0]);
			char *copy = g_strdup((const char *)text);

			xmlFree(text);
			return copy;
		}
		return NULL;
	}
	return g_strdup((const char *)result->stringval);
}

/* The devices check_devices() looks for, as `-device help` quotes them. */
enum { DEVICE_PLAIN, DEVICE_DOORBELL, DEVICE_9P };
static const char *const checked_devices[] = {
	[DEVICE_PLAIN] = "\"ivshmem-plain\"",
	[DEVICE_DOORBELL] = "\"ivshmem-doorbell\"",
	[DEVICE_9P] = "\"virtio-9p-pci\"",
};

/* Where the device list of this emulator binary is kept: named by its
 * path, size, time and inode, so that another build is asked again. */
static char *devices_cache_path(const char *emulator)
{
	GStatBuf st;
	g_autofree char *identity = NULL;
	g_autofree char *digest = NULL;

	if (g_stat(emulator, &st) < 0)
		return NULL;
	identity = g_strdup_printf("%s\n%lld\n%lld.%09ld\n%llu", emulator, (long long)st.st_size,
				   (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec,
				   (unsigned long long)st.st_ino);
	digest = g_compute_checksum_for_string(G_CHECKSUM_SHA256, identity, -1);
	return g_build_filename(ivlab_state_dir(), "cache", "devices", digest, NULL);
}

/* The devices the emulator offers, from `EMULATOR -machine none -device help`.
 * Spawning each emulator cost 0.13 s of every `up`: a list with every
 * device ivlab checks is kept (one that lacks some is asked for again, so
 * that a fixed emulator is seen at once). */
static char *emulator_devices(const char *emulator)
{
	const char *const argv[] = { emulator, "-machine", "none", "-device", "help", NULL };
	g_auto(IvlabRun) run = { .argv = argv, .may_fail = TRUE };
	g_autofree char *cache = devices_cache_path(emulator);
	char *list = NULL;
	gboolean complete = TRUE;

	if (cache && g_file_get_contents(cache, &list, NULL, NULL))
		return list;
	if (!ivlab_run(&run, NULL))
		return NULL;
	list = g_strconcat(run.out, run.err, NULL);
	for (guint i = 0; i < G_N_ELEMENTS(checked_devices); i++)
		complete = complete && strstr(list, checked_devices[i]);
	if (cache && complete && run.status == 0) {
		g_autofree char *dir = g_path_get_dirname(cache);

		/* Only a shortcut: a list that cannot be kept is asked for again. */
		if (g_mkdir_with_parents(dir, 0755) == 0)
			g_file_set_contents(cache, list, -1, NULL);
	}
	return list;
}

/* The devices a guest needs that the emulator's `-device help` lacks, as
 * problems; TRUE when it lacks none. */
static gboolean check_devices(const struct lab_guest *guest, const char *emulator,
			      const char *list, GPtrArray *problems)
{
	guint before = problems->len;

	for (guint r = 0; r < guest->regions->len; r++) {
		const struct lab_region *region = g_ptr_array_index(guest->regions, r);
		const char *model = checked_devices[region->mode == LAB_REGION_DOORBELL ?
						    DEVICE_DOORBELL : DEVICE_PLAIN];
		gboolean listed = FALSE;

		for (guint p = before; p < problems->len && !listed; p++)
			listed = strstr(g_ptr_array_index(problems, p), model) != NULL;
		if (!strstr(list, model) && !listed)
			g_ptr_array_add(problems,
					g_strdup_printf("guest %s: emulator %s offers no %s device",
							guest->name, emulator, model));
	}
	if (guest->shares->len && !strstr(list, checked_devices[DEVICE_9P]))
		g_ptr_array_add(problems,
				g_strdup_printf("guest %s: emulator %s offers no %s device, which "
						"its <share> needs",
						guest->name, emulator, checked_devices[DEVICE_9P]));
	return problems->len == before;
}

/* libvirt's last error on one line (probe errors end in QEMU's output). */
static char *libvirt_error_line(void)
{
	char *text = g_strdup(virGetLastErrorMessage());

	g_strdelimit(text, "\r\n", ' ');
	return g_strstrip(text);
}

/* The first line of text, for a one-line message. */
static char *first_line(const char *text)
{
	g_autofree char *copy = g_strdup(text ? text : "");
	char *newline = strchr(g_strstrip(copy), '\n');

	if (newline)
		*newline = '\0';
	return g_strdup(*copy ? copy : "no output");
}

/* Does `EMULATOR -machine help` list machine (or an alias of it) first on a line? */
static gboolean offers_machine(const char *help, const char *machine)
{
	g_auto(GStrv) lines = g_strsplit(help, "\n", -1);

	for (char **line = lines; *line; line++) {
		gsize length = strcspn(*line, " \t");

		if (length == strlen(machine) && strncmp(*line, machine, length) == 0)
			return TRUE;
	}
	return FALSE;
}

/* A guest's own emulator on this host: it exists, is executable, runs as
 * QEMU and offers the guest's machine. NULL when fine, else the problem. */
static char *check_own_emulator(const struct lab_guest *guest)
{
	const char *emulator = guest->emulator;
	const char *const version[] = { emulator, "-version", NULL };
	const char *const machines[] = { emulator, "-machine", "help", NULL };
	g_auto(IvlabRun) run = { .argv = version, .may_fail = TRUE };
	g_auto(IvlabRun) machine_run = { .argv = machines, .may_fail = TRUE };
	g_autoptr(GError) error = NULL;

	if (!g_file_test(emulator, G_FILE_TEST_EXISTS))
		return g_strdup_printf("guest %s: emulator %s does not exist", guest->name, emulator);
	if (g_file_test(emulator, G_FILE_TEST_IS_DIR) || access(emulator, X_OK) != 0)
		return g_strdup_printf("guest %s: emulator %s is not an executable file", guest->name,
				       emulator);
	if (!ivlab_run(&run, &error))
		return g_strdup_printf("guest %s: emulator %s does not run: %s", guest->name, emulator,
				       error->message);
	if (run.status != 0) {
		g_autofree char *why = first_line(*run.err ? run.err : run.out);

		return g_strdup_printf("guest %s: emulator %s -version exits with status %d: %s",
				       guest->name, emulator, run.status, why);
	}
	if (!strstr(run.out, "QEMU emulator version")) {
		g_autofree char *said = first_line(run.out);

		return g_strdup_printf("guest %s: emulator %s is not QEMU (-version says: %s)",
				       guest->name, emulator, said);
	}
	if (!ivlab_run(&machine_run, &error) || machine_run.status != 0 ||
	    !offers_machine(machine_run.out, guest->machine))
		return g_strdup_printf("guest %s: emulator %s offers no machine '%s' (see %s -machine help)",
				       guest->name, emulator, guest->machine, emulator);
	return NULL;
}

/* Every directory from / down to path must be searchable by the QEMU user. */
static char *unreachable_dir(const char *path, uid_t uid, gid_t gid)
{
	g_autofree char *dir = g_strdup(path);

	while (dir && strcmp(dir, "/") != 0 && strcmp(dir, ".") != 0) {
		struct stat st;

		if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode)) {
			gboolean ok = st.st_uid == uid ? (st.st_mode & 0100) :
				      st.st_gid == gid ? (st.st_mode & 0010) : (st.st_mode & 0001);

			if (!ok)
				return g_steal_pointer(&dir);
		}
		char *parent = g_path_get_dirname(dir);

		g_free(dir);
		dir = parent;
	}
	return NULL;
}

gboolean preflight_check(virConnectPtr conn, const struct lab *lab, GError **error)
{
	g_autoptr(GPtrArray) problems = g_ptr_array_new_with_free_func(g_free);
	g_autoptr(GHashTable) checked = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	g_autoptr(GHashTable) devices = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
	g_autofree char *kvm_advice = preflight_kvm_advice();
	gboolean any_x86_kvm_probe = FALSE;
	uid_t uid;
	gid_t gid;
	g_autofree char *group = NULL;

	for (guint i = 0; i < lab->guests->len; i++) {
		const struct lab_guest *guest = g_ptr_array_index(lab->guests, i);
		g_autofree char *why = NULL;
		gboolean kvm = host_pick_kvm(lab->accel, guest->arch, &why);
		g_autofree char *key = g_strdup_printf("%s/%s/%s", guest->arch, guest->machine,
						       kvm ? "kvm" : "qemu");
		g_autofree char *caps = NULL;
		g_autoptr(xmlDoc) doc = NULL;
		g_autofree char *emulator = NULL;

		if (strcmp(guest->arch, "x86_64") == 0)
			any_x86_kvm_probe = TRUE;
		if (guest->emulator) {
			g_autofree char *with = g_strdup_printf("%s/%s", key, guest->emulator);

			g_free(key);
			key = g_steal_pointer(&with);
		}
		if (guest->shares->len) {
			g_autofree char *with = g_strconcat(key, "/9p", NULL);

			g_free(key);
			key = g_steal_pointer(&with);
		}
		if (g_hash_table_contains(checked, key))
			continue;
		g_hash_table_add(checked, g_strdup(key));
		/* The user's own QEMU: what libvirt would only say vaguely. */
		if (guest->emulator && uri_is_local(conn)) {
			char *problem = check_own_emulator(guest);
			g_autofree char *list = NULL;

			if (problem) {
				g_ptr_array_add(problems, problem);
				continue;
			}
			list = emulator_devices(guest->emulator);
			if (!list || !check_devices(guest, guest->emulator, list, problems))
				continue;
		}
		caps = virConnectGetDomainCapabilities(conn, guest->emulator, guest->arch,
						       guest->machine, kvm ? "kvm" : "qemu", 0);
		if (!caps && guest->emulator) {
			g_autofree char *reason = libvirt_error_line();

			g_ptr_array_add(problems,
					g_strdup_printf("guest %s: libvirt does not accept emulator %s for "
							"%s machine '%s' with %s (%s)",
							guest->name, guest->emulator, guest->arch,
							guest->machine, kvm ? "kvm" : "tcg", reason));
			virResetLastError();
			continue;
		}
		if (!caps) {
			g_autofree char *reason = libvirt_error_line();

			g_ptr_array_add(problems,
					g_strdup_printf("guest %s: libvirt has no %s emulator for machine "
							"'%s' with %s (%s; install the Debian package %s)",
							guest->name, guest->arch, guest->machine,
							kvm ? "kvm" : "tcg", reason,
							arch_lookup(guest->arch)->qemu_package));
			virResetLastError();
			continue;
		}
		doc = xmlReadMemory(caps, strlen(caps), "domcaps.xml", NULL, XML_PARSE_NONET);
		emulator = doc ? xpath_string(doc, "/domainCapabilities/path") : NULL;
		ivlab_debug("preflight: %s: emulator %s", key, emulator ? emulator : "(unknown)");
		/* libvirt's domain capabilities do not list shmem models: ask the
		 * emulator itself when it is on this host. */
		if (guest->emulator)
			continue; /* checked above */
		if (!emulator || !uri_is_local(conn) || !g_file_test(emulator, G_FILE_TEST_IS_EXECUTABLE)) {
			ivlab_debug("preflight: ivshmem support not checked (emulator not local)");
			continue;
		}
		if (!g_hash_table_contains(devices, emulator))
			g_hash_table_insert(devices, g_strdup(emulator), emulator_devices(emulator));
		const char *list = g_hash_table_lookup(devices, emulator);
		if (!list)
			continue;
		check_devices(guest, emulator, list, problems);
	}

	if (preflight_qemu_user(conn, &uid, &gid, &group)) {
		g_autofree char *lab_dir = ivlab_lab_dir(lab->name);
		const char *paths[] = { lab_dir, ivlab_state_dir() };

		for (gsize p = 0; p < G_N_ELEMENTS(paths); p++) {
			g_autofree char *blocked = unreachable_dir(paths[p], uid, gid);

			if (blocked) {
				g_ptr_array_add(problems,
						g_strdup_printf("%s is not searchable by the QEMU user "
								"libvirt-qemu, which must reach sockets "
								"and images below it (chmod o+x %s, or set "
								"IVLAB_STATE_DIR elsewhere)",
								blocked, blocked));
				break;
			}
		}
	}

	if (kvm_advice && any_x86_kvm_probe)
		ivlab_info("warning: %s", kvm_advice);

	if (problems->len) {
		g_ptr_array_add(problems, NULL);
		g_autofree char *joined = g_strjoinv("; ", (char **)problems->pdata);

		g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED, "preflight: %s", joined);
		return FALSE;
	}
	return TRUE;
}
