/* kbuild.c: the ivlab module built with the kernel's own Kbuild: against
 * Debian's headers packages (unpacked into the cache and pointed at the
 * host's linux-kbuild) or a kernel build directory, cross-compiled with
 * the architecture table's prefix when the guest is not the host's arch. */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "debpkg.h"
#include "host.h"
#include "ivlab.h"
#include "kbuild.h"
#include "run.h"

const char *const kbuild_module_sources[] = { "Kbuild", "ivlab_drv.c", "include", NULL };

/* Written into an unpacked headers tree once it is complete: the packages
 * it came from. */
#define KBUILD_COMPLETE_MARKER ".ivlab-complete"
/* Debian's headers name this directory absolutely in their Makefile. */
#define DEBIAN_HEADERS_ROOT "/usr/src/"
/* ... and link their scripts to the host's linux-kbuild-VERSION. */
#define DEBIAN_KBUILD_PREFIX "linux-kbuild-"
#define HOST_KBUILD_DIR "/usr/lib"

static gboolean copy_sources(const char *guest_dir, const char *module_dir, GError **error)
{
	if (!ivlab_make_dir(module_dir, error))
		return FALSE;
	for (const char *const *source = kbuild_module_sources; *source; source++) {
		g_autofree char *from = g_build_filename(guest_dir, *source, NULL);
		g_autofree char *to = g_build_filename(module_dir, *source, NULL);

		if (!g_file_test(from, G_FILE_TEST_EXISTS))
			return ivlab_fail(error, "image: the module source %s is missing", from);
		if (!ivlab_copy_tree(from, to, error))
			return FALSE;
	}
	return TRUE;
}

GBytes *kbuild_module(const struct arch *arch, const char *kdir, const char *guest_dir,
		      const char *work_dir, GError **error)
{
	g_autofree char *module_dir = g_build_filename(work_dir, "module", NULL);
	g_autofree char *ko = g_build_filename(module_dir, "ivlab.ko", NULL);
	const char *cross = arch_cross_prefix(arch, host_arch());
	g_autofree char *gcc = g_strdup_printf("%sgcc", cross ? cross : "");
	g_autofree char *gcc_path = cross ? g_find_program_in_path(gcc) : NULL;
	g_autofree char *jobs = g_strdup_printf("-j%u", g_get_num_processors());
	g_autofree char *m_arg = g_strdup_printf("M=%s", module_dir);
	g_autofree char *arch_arg = g_strdup_printf("ARCH=%s", arch->kbuild_arch);
	g_autofree char *cross_arg = g_strdup_printf("CROSS_COMPILE=%s", cross ? cross : "");
	g_autoptr(GStrvBuilder) argv = g_strv_builder_new();
	g_auto(GStrv) args = NULL;
	g_auto(IvlabRun) run = { 0 };
	g_autoptr(GMappedFile) mapped = NULL;

	if (!copy_sources(guest_dir, module_dir, error))
		return NULL;
	if (cross && !gcc_path) {
		ivlab_fail(error, "image: %s not found: the %s module cross-builds with it (apt-get install %s)",
			   gcc, arch->name, arch->cross_gcc_package);
		return NULL;
	}
	g_strv_builder_add_many(argv, "make", jobs, "-C", kdir, m_arg, NULL);
	if (cross)
		g_strv_builder_add_many(argv, arch_arg, cross_arg, NULL);
	g_strv_builder_add(argv, "modules");
	args = g_strv_builder_end(argv);
	run.argv = (const char *const *)args;
	run.cwd = module_dir;
	ivlab_info("%s: building the ivlab module against %s", arch->name, kdir);
	if (!ivlab_run(&run, error)) {
		g_prefix_error(error, "image: the %s module did not build: ", arch->name);
		return NULL;
	}
	mapped = g_mapped_file_new(ko, FALSE, error);
	if (!mapped)
		return NULL;
	return g_bytes_new(g_mapped_file_get_contents(mapped), g_mapped_file_get_length(mapped));
}

/* The Makefile names /usr/src absolutely: point it at the cache's copy. */
static gboolean relocate_makefile(const char *root, const char *dir, GError **error)
{
	g_autofree char *makefile = g_build_filename(dir, "Makefile", NULL);
	g_autofree char *usr_src = g_strconcat(root, DEBIAN_HEADERS_ROOT, NULL);
	g_autofree char *contents = NULL, *fixed = NULL;
	g_auto(GStrv) parts = NULL;

	if (!g_file_get_contents(makefile, &contents, NULL, error))
		return FALSE;
	parts = g_strsplit(contents, DEBIAN_HEADERS_ROOT, -1);
	fixed = g_strjoinv(usr_src, parts);
	return g_file_set_contents(makefile, fixed, -1, error);
}

/* scripts -> ../../lib/linux-kbuild-6.1/scripts: the host's kbuild, linked
 * into the cache's usr/lib. */
static gboolean link_host_kbuild(const char *root, const char *dir, GError **error)
{
	g_autofree char *scripts = g_build_filename(dir, "scripts", NULL);
	g_autofree char *link = g_file_read_link(scripts, NULL);
	g_auto(GStrv) parts = NULL;

	if (!link)
		return TRUE;
	parts = g_strsplit(link, "/", -1);
	for (char **part = parts; *part; part++) {
		if (!g_str_has_prefix(*part, DEBIAN_KBUILD_PREFIX))
			continue;
		g_autofree char *host = g_build_filename(HOST_KBUILD_DIR, *part, NULL);
		g_autofree char *lib = g_build_filename(root, "usr", "lib", NULL);
		g_autofree char *ours = g_build_filename(lib, *part, NULL);

		if (!g_file_test(host, G_FILE_TEST_IS_DIR))
			return ivlab_fail(error, "image: the kernel headers need the host's %s: apt-get install %s",
					  *part, *part);
		if (!ivlab_make_dir(lib, error))
			return FALSE;
		if (symlink(host, ours) != 0 && errno != EEXIST)
			return ivlab_fail_errno(error, "%s", ours);
	}
	return TRUE;
}

char *kbuild_prepare_debian(const char *cache_dir, const char *release,
			    const struct apt_deb *headers, const struct apt_deb *common,
			    GError **error)
{
	g_autofree char *root = g_build_filename(cache_dir, release, NULL);
	g_autofree char *marker = g_build_filename(root, KBUILD_COMPLETE_MARKER, NULL);
	g_autofree char *want = g_strdup_printf("%s\n%s\n", headers->filename, common->filename);
	g_autofree char *have = NULL;
	g_autofree char *name = g_strdup_printf("linux-headers-%s", release);
	g_autofree char *dir = g_build_filename(root, "usr", "src", name, NULL);

	if (g_file_get_contents(marker, &have, NULL, NULL) && strcmp(have, want) == 0)
		return g_steal_pointer(&dir);
	ivlab_info("unpacking %s and %s", headers->filename, common->filename);
	if (!ivlab_remove_tree(root, error) || !ivlab_make_dir(root, error) ||
	    !debpkg_extract(headers->path, root, NULL, NULL, error) ||
	    !debpkg_extract(common->path, root, NULL, NULL, error) ||
	    !relocate_makefile(root, dir, error) || !link_host_kbuild(root, dir, error) ||
	    !g_file_set_contents(marker, want, -1, error))
		return NULL;
	return g_steal_pointer(&dir);
}

char *kbuild_dir_release(const char *dir, GError **error)
{
	/* Debian's headers carry the upstream version in kernel.release and
	 * the ABI in utsrelease.h: the latter is what modules must match. */
	g_autofree char *uts = g_build_filename(dir, "include", "generated", "utsrelease.h", NULL);
	g_autofree char *path = g_build_filename(dir, "include", "config", "kernel.release", NULL);
	g_autofree char *text = NULL;

	if (g_file_get_contents(uts, &text, NULL, NULL)) {
		char *start = strchr(text, '"');
		char *end = start ? strchr(start + 1, '"') : NULL;

		if (end)
			return g_strndup(start + 1, end - start - 1);
	}
	if (!g_file_get_contents(path, &text, NULL, NULL)) {
		ivlab_fail(error, "image: %s has no include/generated/utsrelease.h: not a prepared kernel "
			   "build directory",
			   dir);
		return NULL;
	}
	return g_strdup(g_strstrip(text));
}

char *kbuild_dir_identity(const char *dir)
{
	g_autoptr(GChecksum) sum = g_checksum_new(G_CHECKSUM_SHA256);
	const char *const files[] = { ".config", "Module.symvers", "include/generated/utsrelease.h" };

	g_checksum_update(sum, (const guchar *)dir, strlen(dir) + 1);
	for (gsize i = 0; i < G_N_ELEMENTS(files); i++) {
		g_autofree char *path = g_build_filename(dir, files[i], NULL);

		ivlab_hash_tree(sum, path, files[i]);
	}
	return g_strdup(g_checksum_get_string(sum));
}
