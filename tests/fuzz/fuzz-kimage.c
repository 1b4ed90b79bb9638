/* fuzz-kimage.c: libFuzzer target: a hostile kernel image through
 * src/kimage.c: the input as a bzImage (boot header, payload found and
 * decompressed, bounded), the vmlinux it gives checked for the PVH note,
 * and the input itself as an ELF whose notes are walked. */
#include "config.h"

#include <sys/stat.h>
#include <glib/gstdio.h>

#include "kimage.h"
#include "fuzz.h"

/* Small against decompression bombs: the fuzzer's disk and time. */
#define FUZZ_MAX_VMLINUX (4u << 20)

static char *in_path, *out_path;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *dir = fuzz_make_scratch("fuzz-kimage");

	in_path = g_build_filename(dir, "bzImage", NULL);
	out_path = g_build_filename(dir, "vmlinux", NULL);
	return 0;
}

static void check_pvh(const char *path)
{
	g_autoptr(GError) error = NULL;
	guint64 entry = 0;
	enum kimage_pvh found = kimage_has_pvh_note(path, &entry, &error);

	g_assert((found == KIMAGE_PVH_ERROR) == (error != NULL));
	if (error)
		g_assert(g_str_has_prefix(error->message, path));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	g_autoptr(GError) error = NULL;
	struct stat st;

	g_assert(g_file_set_contents(in_path, (const char *)data, size, NULL));
	g_unlink(out_path);
	g_assert_cmpint(kimage_is_bzimage(in_path), ==,
			size >= 0x206 && memcmp(data + 0x202, "HdrS", 4) == 0);
	if (kimage_extract_vmlinux_max(in_path, out_path, FUZZ_MAX_VMLINUX, &error)) {
		g_assert_cmpint(g_stat(out_path, &st), ==, 0);
		g_assert_cmpint(st.st_size, <=, FUZZ_MAX_VMLINUX);
		g_assert_cmpint(st.st_mode & 0777, ==, 0644);
		check_pvh(out_path);
	} else {
		g_assert(error && g_str_has_prefix(error->message, in_path));
		g_assert(!g_file_test(out_path, G_FILE_TEST_EXISTS));
	}
	check_pvh(in_path);
	return 0;
}
