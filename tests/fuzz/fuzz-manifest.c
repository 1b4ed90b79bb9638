/* fuzz-manifest.c: libFuzzer target: a hostile or damaged image manifest
 * ($IVLAB_STATE_DIR/images/ARCH/manifest, src/image.c) read as `ivlab image
 * list` and the module builds read it: image_info_load() (with the kernel
 * and initrd present, so their checksums are compared) and
 * image_kbuild_dir(). */
#include "config.h"

#include <stdio.h>

#include "image.h"
#include "ivlab.h"
#include "fuzz.h"

static char *manifest_path;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *state = fuzz_make_scratch("fuzz-manifest");
	g_autofree char *dir = NULL;
	g_autofree char *kernel = NULL, *initrd = NULL;

	g_setenv("IVLAB_STATE_DIR", state, TRUE);
	fuzz_use_tree();
	dir = ivlab_image_dir("x86_64");
	g_assert(g_mkdir_with_parents(dir, 0755) == 0);
	kernel = image_kernel_path("x86_64");
	initrd = image_initrd_path("x86_64");
	g_assert(g_file_set_contents(kernel, "kernel\n", -1, NULL));
	g_assert(g_file_set_contents(initrd, "initrd\n", -1, NULL));
	manifest_path = g_build_filename(dir, "manifest", NULL);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	FILE *file = fopen(manifest_path, "w");
	g_autoptr(GError) error = NULL;
	g_autoptr(ImageInfo) info = NULL;
	g_autofree char *kbuild = NULL, *release = NULL;

	/* Not g_file_set_contents(): its fsync would be most of the time. */
	g_assert(file && fwrite(data, 1, size, file) == size && fclose(file) == 0);
	info = image_info_load("x86_64", &error);
	g_assert_no_error(error);
	if (info) {
		g_assert_cmpstr(info->arch, ==, "x86_64");
		g_assert_cmpuint(info->kernel_size, ==, 7);
	}
	kbuild = image_kbuild_dir("x86_64", &release, &error);
	g_assert(kbuild || error);
	return 0;
}
