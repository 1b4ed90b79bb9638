/* initramfs.c: the guest's initramfs as a list of entries, written with
 * libarchive in the newc cpio format the kernel unpacks. */
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
