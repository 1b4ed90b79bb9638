/* fuzz-deb.c: libFuzzer target: a hostile Debian package through
 * src/debpkg.c: the ar container and its data.tar.* (any compression), each
 * member read, one file looked up, the whole package extracted into a
 * scratch directory (nothing may appear or change beside it), and the input
 * alone through debpkg_decompress(). */
#include "config.h"

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <glib/gstdio.h>

#include "debpkg.h"
#include "ivlab.h"
#include "fuzz.h"

#define SENTINEL "left alone\n"

static char *scratch;  /* holds dest/ and the sentinel, nothing else */
static char *dest;
static char *sentinel;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	scratch = g_strdup(fuzz_make_scratch("fuzz-deb"));
	dest = g_build_filename(scratch, "dest", NULL);
	sentinel = g_build_filename(scratch, "sentinel", NULL);
	g_assert(g_file_set_contents(sentinel, SENTINEL, -1, NULL));
	return 0;
}

static gboolean visit(struct archive *data, struct archive_entry *entry, const char *path,
		      gpointer user_data, GError **error)
{
	g_autoptr(GBytes) bytes = NULL;

	g_assert(*path);
	if (archive_entry_filetype(entry) != AE_IFREG)
		return TRUE;
	bytes = debpkg_read_member(data, "fuzz.deb", path, 1 << 20, NULL);
	return TRUE;
}

static gsize select_all(const char *path, gpointer user_data)
{
	return 1 << 16;
}

static gboolean got(const char *path, GBytes *contents, gpointer user_data, GError **error)
{
	g_assert_cmpuint(g_bytes_get_size(contents), <=, 1 << 16);
	return TRUE;
}

static void check_scratch(void)
{
	g_autoptr(GDir) dir = g_dir_open(scratch, 0, NULL);
	g_autofree char *text = NULL;
	const char *name;

	g_assert(dir);
	while ((name = g_dir_read_name(dir)))
		g_assert(strcmp(name, "dest") == 0 || strcmp(name, "sentinel") == 0);
	g_assert(g_file_get_contents(sentinel, &text, NULL, NULL));
	g_assert_cmpstr(text, ==, SENTINEL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int fd = memfd_create("fuzz.deb", MFD_CLOEXEC);
	g_autofree char *path = g_strdup_printf("/proc/self/fd/%d", fd);
	g_autoptr(GBytes) bytes = g_bytes_new_static(data, size);
	g_autoptr(GBytes) plain = NULL;
	g_autoptr(GBytes) one = NULL;
	g_autoptr(GError) error = NULL;

	g_assert(fd >= 0);
	g_assert(ivlab_write_all(fd, (const char *)data, size));
	debpkg_is_deb(path);
	if (!debpkg_foreach(path, visit, NULL, &error))
		g_assert(error);
	g_clear_error(&error);
	if (!debpkg_read_files(path, select_all, got, NULL, &error))
		g_assert(error);
	g_clear_error(&error);
	one = debpkg_read_file(path, "boot/vmlinuz", 1 << 20, &error);
	g_assert(one || error);
	g_clear_error(&error);
	g_assert(g_mkdir(dest, 0700) == 0);
	if (!debpkg_extract(path, dest, NULL, NULL, &error))
		g_assert(error);
	g_clear_error(&error);
	check_scratch();
	/* Extracted modes may deny us: give the tree back before removing it. */
	if (!ivlab_remove_tree(dest, NULL)) {
		g_autofree char *command = g_strdup_printf("chmod -R u+rwx '%s'; rm -rf '%s'",
							   dest, dest);

		g_assert(system(command) == 0);
	}
	plain = debpkg_decompress(bytes, "fuzz", &error);
	g_assert(plain || error);
	close(fd);
	return 0;
}
