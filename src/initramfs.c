/* initramfs.c: the guest's initramfs as a list of entries, written with
 * libarchive in the newc cpio format the kernel unpacks, and the layout of
 * the guest image's one (busybox, /init, the agent, the modules). */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <archive.h>
#include <archive_entry.h>
#include <glib/gstdio.h>

#include "initramfs.h"
#include "ivlab.h"
#include "kmod.h"

struct initramfs_entry {
	char *path; /* without the leading '/', as cpio stores it */
	guint type; /* AE_IFREG, AE_IFDIR, AE_IFLNK, AE_IFCHR */
	guint mode;
	GBytes *contents;
	char *target;
	dev_t rdev;
};

struct initramfs {
	GPtrArray *entries;
	GHashTable *paths; /* path -> entry */
};

static void entry_free(gpointer data)
{
	struct initramfs_entry *entry = data;

	g_free(entry->path);
	if (entry->contents)
		g_bytes_unref(entry->contents);
	g_free(entry->target);
	g_free(entry);
}

Initramfs *initramfs_new(void)
{
	Initramfs *initramfs = g_new0(Initramfs, 1);

	initramfs->entries = g_ptr_array_new_with_free_func(entry_free);
	initramfs->paths = g_hash_table_new(g_str_hash, g_str_equal);
	return initramfs;
}

void initramfs_free(Initramfs *initramfs)
{
	if (!initramfs)
		return;
	g_hash_table_destroy(initramfs->paths);
	g_ptr_array_unref(initramfs->entries);
	g_free(initramfs);
}

static char *normalize(const char *path)
{
	while (*path == '/')
		path++;
	g_autofree char *copy = g_strdup(path);
	gsize len = strlen(copy);

	while (len > 0 && copy[len - 1] == '/')
		copy[--len] = '\0';
	g_assert(*copy && !strstr(copy, "..") && !strstr(copy, "//"));
	return g_steal_pointer(&copy);
}

gboolean initramfs_has(Initramfs *initramfs, const char *path)
{
	g_autofree char *key = normalize(path);

	return g_hash_table_contains(initramfs->paths, key);
}

static struct initramfs_entry *add_entry(Initramfs *initramfs, const char *path, guint type,
					 guint mode)
{
	g_autofree char *key = normalize(path);
	struct initramfs_entry *entry = g_hash_table_lookup(initramfs->paths, key);
	char *slash = strrchr(key, '/');

	if (entry) {
		/* Directories may be asked for many times; anything else once. */
		g_assert(type == AE_IFDIR && entry->type == AE_IFDIR);
		return entry;
	}
	if (slash) {
		g_autofree char *parent = g_strndup(key, slash - key);

		if (!g_hash_table_contains(initramfs->paths, parent))
			add_entry(initramfs, parent, AE_IFDIR, 0755);
	}
	entry = g_new0(struct initramfs_entry, 1);
	entry->path = g_steal_pointer(&key);
	entry->type = type;
	entry->mode = mode & 07777;
	g_ptr_array_add(initramfs->entries, entry);
	g_hash_table_insert(initramfs->paths, entry->path, entry);
	return entry;
}

void initramfs_add_dir(Initramfs *initramfs, const char *path, guint mode)
{
	add_entry(initramfs, path, AE_IFDIR, mode);
}

void initramfs_add_bytes(Initramfs *initramfs, const char *path, GBytes *contents, guint mode)
{
	add_entry(initramfs, path, AE_IFREG, mode)->contents = g_bytes_ref(contents);
}

gboolean initramfs_add_file(Initramfs *initramfs, const char *path, const char *source_path,
			    guint mode, GError **error)
{
	g_autoptr(GMappedFile) mapped = g_mapped_file_new(source_path, FALSE, error);
	g_autoptr(GBytes) contents = NULL;

	if (!mapped) {
		g_prefix_error(error, "initramfs: ");
		return FALSE;
	}
	contents = g_mapped_file_get_bytes(mapped);
	initramfs_add_bytes(initramfs, path, contents, mode);
	return TRUE;
}

void initramfs_add_symlink(Initramfs *initramfs, const char *path, const char *target)
{
	add_entry(initramfs, path, AE_IFLNK, 0777)->target = g_strdup(target);
}

void initramfs_add_chardev(Initramfs *initramfs, const char *path, guint major, guint minor,
			   guint mode)
{
	add_entry(initramfs, path, AE_IFCHR, mode)->rdev = makedev(major, minor);
}

gboolean initramfs_parse_compression(const char *name, enum initramfs_compression *compression)
{
	if (g_strcmp0(name, "gzip") == 0)
		*compression = INITRAMFS_GZIP;
	else if (g_strcmp0(name, "zstd") == 0)
		*compression = INITRAMFS_ZSTD;
	else if (g_strcmp0(name, "none") == 0)
		*compression = INITRAMFS_NONE;
	else
		return FALSE;
	return TRUE;
}

static gboolean write_failed(GError **error, const char *path, struct archive *archive)
{
	g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED, "%s: %s", path,
		    archive_error_string(archive) ? archive_error_string(archive) : "write failed");
	return FALSE;
}

static gboolean write_entries(Initramfs *initramfs, struct archive *archive, const char *path,
			      GError **error)
{
	for (guint i = 0; i < initramfs->entries->len; i++) {
		struct initramfs_entry *item = g_ptr_array_index(initramfs->entries, i);
		struct archive_entry *entry = archive_entry_new();
		gsize size = 0;
		const void *data = item->contents ? g_bytes_get_data(item->contents, &size) : NULL;
		gboolean ok = TRUE;

		archive_entry_set_pathname(entry, item->path);
		archive_entry_set_filetype(entry, item->type);
		archive_entry_set_perm(entry, item->mode);
		archive_entry_set_uid(entry, 0);
		archive_entry_set_gid(entry, 0);
		/* Fixed times and inode numbers: the same inputs give the same bytes. */
		archive_entry_set_mtime(entry, 0, 0);
		archive_entry_set_ino(entry, i + 1);
		archive_entry_set_nlink(entry, item->type == AE_IFDIR ? 2 : 1);
		if (item->type == AE_IFLNK)
			archive_entry_set_symlink(entry, item->target);
		if (item->type == AE_IFCHR)
			archive_entry_set_rdev(entry, item->rdev);
		archive_entry_set_size(entry, size);
		if (archive_write_header(archive, entry) != ARCHIVE_OK)
			ok = write_failed(error, path, archive);
		else if (size && archive_write_data(archive, data, size) != (la_ssize_t)size)
			ok = write_failed(error, path, archive);
		archive_entry_free(entry);
		if (!ok)
			return FALSE;
	}
	return TRUE;
}

gboolean initramfs_write(Initramfs *initramfs, const char *out_path,
			 enum initramfs_compression compression, GError **error)
{
	g_autofree char *tmp_path = g_strdup_printf("%s.tmp", out_path);
	struct archive *archive = archive_write_new();
	gboolean ok;

	archive_write_set_format_cpio_newc(archive);
	if (compression == INITRAMFS_GZIP) {
		archive_write_add_filter_gzip(archive);
		archive_write_set_filter_option(archive, "gzip", "timestamp", NULL);
	} else if (compression == INITRAMFS_ZSTD) {
		archive_write_add_filter_zstd(archive);
	}
	/* The kernel reads the archive in 512-byte blocks at most; no padding. */
	archive_write_set_bytes_in_last_block(archive, 1);
	if (archive_write_open_filename(archive, tmp_path) != ARCHIVE_OK) {
		ok = write_failed(error, tmp_path, archive);
		archive_write_free(archive);
		return ok;
	}
	ok = write_entries(initramfs, archive, tmp_path, error);
	if (archive_write_close(archive) != ARCHIVE_OK && ok)
		ok = write_failed(error, tmp_path, archive);
	archive_write_free(archive);
	if (ok && g_chmod(tmp_path, 0644) != 0) {
		g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED, "%s: %s", tmp_path, g_strerror(errno));
		ok = FALSE;
	}
	if (ok && g_rename(tmp_path, out_path) != 0) {
		g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED, "%s: %s", out_path, g_strerror(errno));
		ok = FALSE;
	}
	if (!ok)
		g_unlink(tmp_path);
	return ok;
}

/* --- the guest image's initramfs ---------------------------------------- */

/* busybox's applet_names[] is one string of sorted, NUL-separated names
 * that starts with the test applets "[" and "[["; found by this pattern
 * (the NUL before it ends the string before the table). */
#define BUSYBOX_APPLETS_START "\0[\0[[\0"
#define BUSYBOX_APPLETS_START_LEN (sizeof(BUSYBOX_APPLETS_START) - 1)
/* Fewer names than this is a false match, not busybox's table. */
#define BUSYBOX_APPLETS_MIN 10

/* The character devices /init needs before devtmpfs is mounted (the
 * kernel opens /dev/console for it): Linux's fixed numbers. */
#define DEV_CONSOLE_MAJOR 5 /* TTYAUX_MAJOR */
#define DEV_CONSOLE_MINOR 1
#define DEV_NULL_MAJOR 1 /* MEM_MAJOR */
#define DEV_NULL_MINOR 3

GStrv initramfs_busybox_applets(GBytes *busybox, GError **error)
{
	gsize size;
	const char *data = g_bytes_get_data(busybox, &size);
	const char *end = data ? data + size : NULL;
	const char *hit = data ? memmem(data, size, BUSYBOX_APPLETS_START,
					BUSYBOX_APPLETS_START_LEN) : NULL;
	g_autoptr(GStrvBuilder) names = g_strv_builder_new();
	guint count = 0;

	if (!hit) {
		ivlab_fail(error, "busybox: no applet table found in the binary");
		return NULL;
	}
	for (const char *name = hit + 1; name < end && *name; count++) {
		gsize len = strnlen(name, end - name);
		/* The last name may run to the end of the file, unterminated. */
		g_autofree char *copy = g_strndup(name, len);

		g_strv_builder_add(names, copy);
		name += len + 1;
	}
	if (count < BUSYBOX_APPLETS_MIN) {
		ivlab_fail(error, "busybox: the applet table has only %u names", count);
		return NULL;
	}
	return g_strv_builder_end(names);
}

/* An applet name read from a foreign binary as a link in /bin: one path
 * component of printable ASCII, no "." or "..". */
static gboolean applet_name_is_safe(const char *name)
{
	if (!*name || strcmp(name, ".") == 0 || strstr(name, ".."))
		return FALSE;
	for (const char *c = name; *c; c++)
		if (*c == '/' || !g_ascii_isgraph(*c))
			return FALSE;
	return TRUE;
}

gboolean initramfs_add_busybox(Initramfs *initramfs, GBytes *busybox, GError **error)
{
	g_auto(GStrv) applets = initramfs_busybox_applets(busybox, error);

	if (!applets)
		return FALSE;
	initramfs_add_bytes(initramfs, "/bin/busybox", busybox, 0755);
	for (char **applet = applets; *applet; applet++) {
		g_autofree char *path = g_build_filename("/bin", *applet, NULL);

		if (strcmp(*applet, "busybox") != 0 && applet_name_is_safe(*applet) &&
		    !initramfs_has(initramfs, path))
			initramfs_add_symlink(initramfs, path, "busybox");
	}
	return TRUE;
}

static void add_modules(Initramfs *initramfs, GPtrArray *modules, GHashTable *share_only,
			GBytes *ivlab_ko)
{
	g_autoptr(GString) load_list = g_string_new(NULL);
	g_autoptr(GString) share_list = g_string_new(NULL);
	g_autoptr(GBytes) list_bytes = NULL;

	for (guint i = 0; i < modules->len; i++) {
		const struct kmod *kmod = modules->pdata[i];
		g_autofree char *file = g_strdup_printf("%s.ko", kmod->name);
		g_autofree char *path = g_build_filename("/lib/modules", file, NULL);

		initramfs_add_bytes(initramfs, path, kmod->bytes, 0644);
		g_string_append_printf(share_only && g_hash_table_contains(share_only, kmod->name) ?
					       share_list : load_list,
				       "%s\n", file);
	}
	/* Their dependencies are above them or among them, in load order. */
	if (share_list->len)
		g_string_append_printf(load_list, "%s\n%s", INITRAMFS_SHARE_MARK, share_list->str);
	initramfs_add_bytes(initramfs, "/lib/modules/ivlab.ko", ivlab_ko, 0644);
	list_bytes = g_bytes_new(load_list->str, load_list->len);
	initramfs_add_bytes(initramfs, "/lib/modules/load.list", list_bytes, 0644);
}

gboolean initramfs_write_guest(const struct initramfs_guest *guest, const char *out_path,
			       enum initramfs_compression compression, GError **error)
{
	g_autoptr(Initramfs) initramfs = initramfs_new();
	g_autoptr(GBytes) info_bytes = NULL;
	const char *const dirs[] = { "/bin", "/sbin", "/dev", "/proc", "/sys", "/tmp", "/run",
				     "/etc", "/root", "/mnt", "/lib/modules" };

	for (gsize i = 0; i < G_N_ELEMENTS(dirs); i++)
		initramfs_add_dir(initramfs, dirs[i], strcmp(dirs[i], "/tmp") == 0 ? 01777 : 0755);
	initramfs_add_chardev(initramfs, "/dev/console", DEV_CONSOLE_MAJOR, DEV_CONSOLE_MINOR, 0600);
	initramfs_add_chardev(initramfs, "/dev/null", DEV_NULL_MAJOR, DEV_NULL_MINOR, 0666);
	if (!initramfs_add_busybox(initramfs, guest->busybox, error) ||
	    !initramfs_add_file(initramfs, "/init", guest->init_path, 0755, error) ||
	    !initramfs_add_file(initramfs, "/sbin/ivlab-agent", guest->agent_path, 0755, error))
		return FALSE;
	add_modules(initramfs, guest->modules, guest->share_only, guest->ivlab_ko);
	info_bytes = g_bytes_new(guest->image_info, strlen(guest->image_info));
	initramfs_add_bytes(initramfs, "/etc/ivlab-image", info_bytes, 0644);
	return initramfs_write(initramfs, out_path, compression, error);
}
