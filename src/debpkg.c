/* debpkg.c: Debian package contents through libarchive: the outer ar
 * archive is read entry by entry and its data.tar.* is fed, unpacked on
 * the fly, to a second libarchive reader. The image pipeline reads
 * packages (and compressed modules) only through here. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "debpkg.h"
#include "ivlab.h"

typedef struct archive ArchiveReader;
G_DEFINE_AUTOPTR_CLEANUP_FUNC(ArchiveReader, archive_read_free)

/* How much libarchive reads or hands over at a time. */
#define DEBPKG_BLOCK_SIZE (64 * 1024)
/* An ar archive's global header, which every .deb starts with. */
#define DEBPKG_AR_MAGIC "!<arch>\n"
#define DEBPKG_AR_MAGIC_LEN (sizeof(DEBPKG_AR_MAGIC) - 1)

struct outer_feed {
	struct archive *outer;
	char buf[DEBPKG_BLOCK_SIZE];
};

static la_ssize_t feed_read(struct archive *inner, void *data, const void **buffer)
{
	struct outer_feed *feed = data;
	la_ssize_t got = archive_read_data(feed->outer, feed->buf, sizeof(feed->buf));

	if (got < 0)
		archive_set_error(inner, archive_errno(feed->outer), "%s",
				  archive_error_string(feed->outer));
	*buffer = feed->buf;
	return got;
}

static gboolean archive_failed(GError **error, const char *deb_path, struct archive *a)
{
	g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED, "%s: %s", deb_path,
		    archive_error_string(a) ? archive_error_string(a) : "unreadable archive");
	return FALSE;
}

gboolean debpkg_foreach(const char *deb_path, debpkg_visit_fn visit, gpointer user_data,
			GError **error)
{
	g_autoptr(ArchiveReader) outer = archive_read_new();
	g_autofree struct outer_feed *feed = g_new0(struct outer_feed, 1);
	struct archive_entry *entry;
	gboolean found = FALSE;
	int status;

	archive_read_support_format_ar(outer);
	if (archive_read_open_filename(outer, deb_path, DEBPKG_BLOCK_SIZE) != ARCHIVE_OK)
		return archive_failed(error, deb_path, outer);
	while ((status = archive_read_next_header(outer, &entry)) == ARCHIVE_OK) {
		if (g_str_has_prefix(archive_entry_pathname(entry), "data.tar")) {
			found = TRUE;
			break;
		}
	}
	if (status != ARCHIVE_OK && status != ARCHIVE_EOF)
		return archive_failed(error, deb_path, outer);
	if (!found) {
		g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED,
			    "%s: not a Debian package (no data.tar member)", deb_path);
		return FALSE;
	}

	g_autoptr(ArchiveReader) data = archive_read_new();
	feed->outer = outer;
	archive_read_support_filter_all(data);
	archive_read_support_format_tar(data);
	if (archive_read_open(data, feed, NULL, feed_read, NULL) != ARCHIVE_OK)
		return archive_failed(error, deb_path, data);
	while ((status = archive_read_next_header(data, &entry)) == ARCHIVE_OK) {
		const char *path = archive_entry_pathname(entry);

		while (g_str_has_prefix(path, "./"))
			path += 2;
		if (!*path || strcmp(path, ".") == 0)
			continue;
		if (!visit(data, entry, path, user_data, error))
			return FALSE;
	}
	if (status != ARCHIVE_EOF)
		return archive_failed(error, deb_path, data);
	return TRUE;
}

GBytes *debpkg_read_member(struct archive *data, const char *deb_path, const char *path,
			   gsize max_bytes, GError **error)
{
	g_autoptr(GByteArray) bytes = g_byte_array_new();
	guint8 buf[DEBPKG_BLOCK_SIZE];
	la_ssize_t got;

	while ((got = archive_read_data(data, buf, sizeof(buf))) > 0) {
		if (bytes->len + (gsize)got > max_bytes) {
			g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED,
				    "%s: %s is larger than %" G_GSIZE_FORMAT " bytes", deb_path, path,
				    max_bytes);
			return NULL;
		}
		g_byte_array_append(bytes, buf, got);
	}
	if (got < 0) {
		archive_failed(error, deb_path, data);
		return NULL;
	}
	return g_byte_array_free_to_bytes(g_steal_pointer(&bytes));
}

/* Writing to the disk failed: name the file written and say why (ENOSPC
 * as "No space left on device"), not only libarchive's "Write failed". */
static gboolean write_failed(GError **error, const char *deb_path, const char *target,
			     struct archive *disk)
{
	int errnum = archive_errno(disk);
	const char *why = archive_error_string(disk);

	g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED, "cannot write %s (unpacking %s): %s%s%s",
		    target, deb_path, errnum > 0 ? g_strerror(errnum) : why ? why : "write failed",
		    errnum > 0 && why ? ": " : "", errnum > 0 && why ? why : "");
	return FALSE;
}

struct extract {
	const char *deb_path;
	const char *dest_dir;
	debpkg_want_fn want;
	gpointer user_data;
	struct archive *disk;
};

static gboolean extract_one(struct archive *data, struct archive_entry *entry, const char *path,
			    gpointer user_data, GError **error)
{
	struct extract *ex = user_data;
	g_autofree char *target = NULL;
	const char *hardlink = archive_entry_hardlink(entry);
	const void *block;
	size_t size;
	la_int64_t offset;
	int status;

	if (ex->want && !ex->want(path, ex->user_data))
		return TRUE;
	if (!ivlab_check_interrupt(error))
		return FALSE;
	target = g_build_filename(ex->dest_dir, path, NULL);
	archive_entry_set_pathname(entry, target);
	if (hardlink) {
		while (g_str_has_prefix(hardlink, "./"))
			hardlink += 2;
		g_autofree char *link_target = g_build_filename(ex->dest_dir, hardlink, NULL);
		archive_entry_set_hardlink(entry, link_target);
	}
	if (archive_write_header(ex->disk, entry) != ARCHIVE_OK)
		return write_failed(error, ex->deb_path, target, ex->disk);
	while ((status = archive_read_data_block(data, &block, &size, &offset)) == ARCHIVE_OK) {
		if (archive_write_data_block(ex->disk, block, size, offset) != ARCHIVE_OK)
			return write_failed(error, ex->deb_path, target, ex->disk);
	}
	if (status != ARCHIVE_EOF)
		return archive_failed(error, ex->deb_path, data);
	if (archive_write_finish_entry(ex->disk) != ARCHIVE_OK)
		return write_failed(error, ex->deb_path, target, ex->disk);
	return TRUE;
}

gboolean debpkg_extract(const char *deb_path, const char *dest_dir, debpkg_want_fn want,
			gpointer user_data, GError **error)
{
	struct extract ex = { deb_path, dest_dir, want, user_data, archive_write_disk_new() };
	gboolean ok;

	archive_write_disk_set_options(ex.disk, ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_PERM |
							ARCHIVE_EXTRACT_SECURE_NODOTDOT |
							ARCHIVE_EXTRACT_SECURE_SYMLINKS);
	ok = debpkg_foreach(deb_path, extract_one, &ex, error);
	if (archive_write_close(ex.disk) != ARCHIVE_OK && ok)
		ok = write_failed(error, deb_path, dest_dir, ex.disk);
	archive_write_free(ex.disk);
	return ok;
}

gboolean debpkg_is_deb(const char *path)
{
	char magic[DEBPKG_AR_MAGIC_LEN];
	FILE *file = fopen(path, "rb");
	gboolean is_deb;

	if (!file)
		return FALSE;
	is_deb = fread(magic, 1, sizeof(magic), file) == sizeof(magic) &&
		 memcmp(magic, DEBPKG_AR_MAGIC, DEBPKG_AR_MAGIC_LEN) == 0;
	fclose(file);
	return is_deb;
}

struct read_files {
	const char *deb_path;
	debpkg_select_fn select;
	debpkg_file_fn got;
	gpointer user_data;
};

static gboolean read_one(struct archive *data, struct archive_entry *entry, const char *path,
			 gpointer user_data, GError **error)
{
	struct read_files *read = user_data;
	g_autoptr(GBytes) contents = NULL;
	gsize max_bytes;

	if (archive_entry_filetype(entry) != AE_IFREG)
		return TRUE;
	max_bytes = read->select(path, read->user_data);
	if (!max_bytes)
		return TRUE;
	contents = debpkg_read_member(data, read->deb_path, path, max_bytes, error);
	return contents && read->got(path, contents, read->user_data, error);
}

gboolean debpkg_read_files(const char *deb_path, debpkg_select_fn select, debpkg_file_fn got,
			   gpointer user_data, GError **error)
{
	struct read_files read = { deb_path, select, got, user_data };

	return debpkg_foreach(deb_path, read_one, &read, error);
}

struct one_file {
	const char *path;
	gsize max_bytes;
	GBytes *contents;
};

static gsize select_one(const char *path, gpointer user_data)
{
	struct one_file *one = user_data;

	return !one->contents && strcmp(path, one->path) == 0 ? one->max_bytes : 0;
}

static gboolean got_one(const char *path, GBytes *contents, gpointer user_data, GError **error)
{
	struct one_file *one = user_data;

	one->contents = g_bytes_ref(contents);
	return TRUE;
}

GBytes *debpkg_read_file(const char *deb_path, const char *path, gsize max_bytes, GError **error)
{
	struct one_file one = { path, max_bytes, NULL };

	if (!debpkg_read_files(deb_path, select_one, got_one, &one, error)) {
		g_clear_pointer(&one.contents, g_bytes_unref);
		return NULL;
	}
	if (!one.contents)
		g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED, "%s: no %s in the package", deb_path,
			    path);
	return one.contents;
}

GBytes *debpkg_decompress(GBytes *bytes, const char *name, GError **error)
{
	g_autoptr(ArchiveReader) raw = archive_read_new();
	g_autoptr(GByteArray) out = g_byte_array_new();
	g_autofree guint8 *buf = g_malloc(DEBPKG_BLOCK_SIZE);
	struct archive_entry *entry;
	la_ssize_t got = -1;
	gsize size;
	const void *data = g_bytes_get_data(bytes, &size);

	archive_read_support_filter_all(raw);
	archive_read_support_format_raw(raw);
	if (archive_read_open_memory(raw, data, size) == ARCHIVE_OK &&
	    archive_read_next_header(raw, &entry) == ARCHIVE_OK) {
		while ((got = archive_read_data(raw, buf, DEBPKG_BLOCK_SIZE)) > 0)
			g_byte_array_append(out, buf, got);
	}
	if (got < 0) {
		g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED, "%s: cannot decompress: %s", name,
			    archive_error_string(raw) ? archive_error_string(raw) : "unknown format");
		return NULL;
	}
	return g_byte_array_free_to_bytes(g_steal_pointer(&out));
}
