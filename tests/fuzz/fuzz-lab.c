/* fuzz-lab.c: libFuzzer target: a lab file's bytes through lab_load_data():
 * the XML parser with its DTD refusals, every value check, the references
 * between regions, guests and tests, and the Relax NG schema. A lab it
 * takes must then name its objects. */
#include "config.h"

#include "lab.h"
#include "fuzz.h"

static char *lab_path;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_use_tree();
	/* Relative paths in a lab (modules, files, shares) resolve against
	 * the directory of the test data. */
	lab_path = g_build_filename(FUZZ_SRCDIR, "tests", "data", "fuzz.lab.xml", NULL);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(Lab) lab = lab_load_data(lab_path, (const char *)data, size, &error);

	if (!lab) {
		g_assert(error && error->message && *error->message);
		/* Values echoed in messages are capped (issue 11, defect 1). */
		g_assert_cmpuint(strlen(error->message), <, 64 * 1024);
		return 0;
	}
	g_assert_null(error);
	g_assert_cmpuint(lab->regions->len, >, 0);
	g_assert_cmpuint(lab->guests->len, >, 0);
	for (guint i = 0; i < lab->guests->len; i++) {
		struct lab_guest *guest = g_ptr_array_index(lab->guests, i);
		g_autofree char *domain = lab_guest_domain_name(lab, guest);

		g_assert(g_str_has_prefix(domain, lab->name));
		g_assert(lab_find_guest(lab, guest->name) == guest);
		for (guint r = 0; r < guest->regions->len; r++)
			g_assert_cmpint(lab_guest_region_index(guest,
					g_ptr_array_index(guest->regions, r)), ==, (int)r);
	}
	for (guint i = 0; i < lab->regions->len; i++) {
		struct lab_region *region = g_ptr_array_index(lab->regions, i);
		g_autofree char *shm = lab_region_shm_name(lab, region);
		g_autofree char *socket = lab_region_socket_path(lab, region);

		g_assert(g_str_has_suffix(shm, region->name));
		g_assert(g_str_has_suffix(socket, ".sock"));
		g_assert(lab_find_region(lab, region->name) == region);
		g_assert_cmpuint(region->size, >=, LAB_REGION_MIN_SIZE);
		g_assert_cmpuint(region->size, <=, LAB_REGION_MAX_SIZE);
	}
	return 0;
}
