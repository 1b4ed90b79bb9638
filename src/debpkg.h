/* debpkg.h: reading Debian packages with libarchive: the ar container, then
 * its data.tar.* member, without dpkg. */
#ifndef IVLAB_DEBPKG_H
#define IVLAB_DEBPKG_H

#include <archive.h>
#include <archive_entry.h>
#include <glib.h>

/* Called for each member of the package's data archive; path is the
 * member's name without its leading "./". Read its bytes with
 * debpkg_read_member() from inside the callback if needed. */
typedef gboolean (*debpkg_visit_fn)(struct archive *data, struct archive_entry *entry,
				    const char *path, gpointer user_data, GError **error);

gboolean debpkg_foreach(const char *deb_path, debpkg_visit_fn visit, gpointer user_data,
			GError **error);

/* The current member's contents (at most max_bytes, else an error). */
GBytes *debpkg_read_member(struct archive *data, const char *deb_path, const char *path,
			   gsize max_bytes, GError **error);

/* Extracts under dest_dir the members want() accepts (every member when
 * want is NULL), with their modes and symlinks; refuses ".." and writing
 * through symlinks. */
typedef gboolean (*debpkg_want_fn)(const char *path, gpointer user_data);
gboolean debpkg_extract(const char *deb_path, const char *dest_dir, debpkg_want_fn want,
			gpointer user_data, GError **error);

/* For each regular file of the package that select() accepts (by
 * returning the most bytes it may have; 0 skips it), its contents handed
 * to got(): the way to read files out of a package without libarchive. */
typedef gsize (*debpkg_select_fn)(const char *path, gpointer user_data);
typedef gboolean (*debpkg_file_fn)(const char *path, GBytes *contents, gpointer user_data,
				   GError **error);
gboolean debpkg_read_files(const char *deb_path, debpkg_select_fn select, debpkg_file_fn got,
			   gpointer user_data, GError **error);

/* One regular file of the package (at most max_bytes); an error names the
 * package when it has no such file. */
GBytes *debpkg_read_file(const char *deb_path, const char *path, gsize max_bytes, GError **error);

/* Contents compressed with any filter libarchive reads (xz, zstd, gzip),
 * unpacked; name is for messages. Plain data is refused: check first. */
GBytes *debpkg_decompress(GBytes *bytes, const char *name, GError **error);

/* TRUE if the file starts like a Debian package (an ar archive). */
gboolean debpkg_is_deb(const char *path);

#endif
