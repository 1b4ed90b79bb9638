/* fuzz-initramfs.c: libFuzzer target: a hostile busybox binary (its applet
 * table, read from the file: src/initramfs.c) becoming an initramfs: the
 * applets found, their links added, the archive written (newc cpio, no
 * compression) and read back with libarchive: every member a relative path
 * without "..", at most once, its links pointing at busybox. */
#include "config.h"

#include <archive.h>
#include <archive_entry.h>

#include "initramfs.h"
#include "fuzz.h"

static char *out_path;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	out_path = g_build_filename(fuzz_make_scratch("fuzz-initramfs"), "initrd.img", NULL);
	return 0;
}

static void read_back(void)
{
	struct archive *archive = archive_read_new();
	g_autoptr(GHashTable) seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	struct archive_entry *entry;
	int status;

	archive_read_support_format_cpio(archive);
	g_assert(archive_read_open_filename(archive, out_path, 65536) == ARCHIVE_OK);
	while ((status = archive_read_next_header(archive, &entry)) == ARCHIVE_OK) {
		const char *path = archive_entry_pathname(entry);
		g_auto(GStrv) parts = g_strsplit(path, "/", -1);

		g_assert(*path && *path != '/');
		for (char **part = parts; *part; part++)
			g_assert(**part && strcmp(*part, "..") != 0 && strcmp(*part, ".") != 0);
		g_assert(g_hash_table_add(seen, g_strdup(path)));
		if (archive_entry_filetype(entry) == AE_IFLNK)
			g_assert_cmpstr(archive_entry_symlink(entry), ==, "busybox");
	}
	g_assert_cmpint(status, ==, ARCHIVE_EOF);
	g_assert(g_hash_table_contains(seen, "bin/busybox"));
	archive_read_free(archive);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	g_autoptr(GBytes) busybox = g_bytes_new(data, size);
	g_autoptr(Initramfs) initramfs = initramfs_new();
	g_autoptr(GError) error = NULL;
	g_auto(GStrv) applets = initramfs_busybox_applets(busybox, &error);

	if (!applets) {
		g_assert(error);
		return 0;
	}
	g_clear_error(&error);
	g_assert(initramfs_add_busybox(initramfs, busybox, &error));
	g_assert(initramfs_write(initramfs, out_path, INITRAMFS_NONE, &error));
	g_assert_no_error(error);
	read_back();
	return 0;
}
