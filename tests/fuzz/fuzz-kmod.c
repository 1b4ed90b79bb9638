/* fuzz-kmod.c: libFuzzer target: a hostile kernel module (an ELF object
 * from a package) through src/kmod.c's .modinfo reader: kmod_modinfo() for
 * the keys ivlab asks, kmod_check_release(), and module names normalized. */
#include "config.h"

#include "kmod.h"
#include "fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const keys[] = { "vermagic", "depends", "name", "license", "" };
	g_autoptr(GBytes) module = g_bytes_new(data, size);
	g_autofree char *text = fuzz_string(data, size);
	g_autofree char *name = kmod_normalize_name(text);
	g_autoptr(GError) error = NULL;

	for (gsize i = 0; i < G_N_ELEMENTS(keys); i++)
		g_free(kmod_modinfo(module, keys[i]));
	if (!kmod_check_release(module, "6.1.0-57-amd64", &error))
		g_assert(error);
	g_assert_cmpuint(strlen(name), ==, strlen(text));
	return 0;
}
