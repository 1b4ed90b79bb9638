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

/* make's arguments for a module in module_dir, cross when arch is not
 * the host's; FALSE when the cross compiler is missing. */
static GStrv make_args(const struct arch *arch, const char *kdir, const char *module_dir,
		       GError **error)
{
	const char *cross = arch_cross_prefix(arch, host_arch());
	g_autofree char *gcc = g_strdup_printf("%sgcc", cross ? cross : "");
	g_autofree char *gcc_path = cross ? g_find_program_in_path(gcc) : NULL;
	g_autofree char *jobs = g_strdup_printf("-j%u", g_get_num_processors());
	g_autofree char *m_arg = g_strdup_printf("M=%s", module_dir);
	g_autofree char *arch_arg = g_strdup_printf("ARCH=%s", arch->kbuild_arch);
	g_autofree char *cross_arg = g_strdup_printf("CROSS_COMPILE=%s", cross ? cross : "");
	g_autoptr(GStrvBuilder) argv = g_strv_builder_new();

	if (cross && !gcc_path) {
		ivlab_fail(error, "%s not found: %s modules cross-build with it (apt-get install %s)",
			   gcc, arch->name, arch->cross_gcc_package);
		return NULL;
	}
	g_strv_builder_add_many(argv, "make", jobs, "-C", kdir, m_arg, NULL);
	if (cross)
		g_strv_builder_add_many(argv, arch_arg, cross_arg, NULL);
	g_strv_builder_add(argv, "modules");
	return g_strv_builder_end(argv);
}

GBytes *kbuild_module(const struct arch *arch, const char *kdir, const char *guest_dir,
		      const char *work_dir, GError **error)
{
	g_autofree char *module_dir = g_build_filename(work_dir, "module", NULL);
	g_autofree char *ko = g_build_filename(module_dir, "ivlab.ko", NULL);
	g_auto(GStrv) args = NULL;
	g_auto(IvlabRun) run = { 0 };
	g_autoptr(GMappedFile) mapped = NULL;

	if (!copy_sources(guest_dir, module_dir, error))
		return NULL;
	args = make_args(arch, kdir, module_dir, error);
	if (!args) {
		g_prefix_error(error, "image: ");
		return NULL;
	}
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

/* The compiler's first error line in a build log, or its last line. */
static char *first_error_line(const char *log)
{
	g_auto(GStrv) lines = g_strsplit(log, "\n", -1);
	const char *last = NULL;

	for (char **line = lines; *line; line++) {
		if (strstr(*line, "error:") || strstr(*line, "Error "))
			return g_strdup(g_strstrip(*line));
		if (**line)
			last = *line;
	}
	return g_strdup(last ? last : "no output");
}

/* The .ko files make left in dir (not below: Kbuild's own temporaries). */
static GPtrArray *find_kos(const char *dir, GError **error)
{
	g_autoptr(GDir) handle = g_dir_open(dir, 0, error);
	g_autoptr(GPtrArray) kos = g_ptr_array_new_with_free_func(g_free);
	const char *name;

	if (!handle)
		return NULL;
	while ((name = g_dir_read_name(handle)))
		if (g_str_has_suffix(name, ".ko"))
			g_ptr_array_add(kos, g_strdup(name));
	g_ptr_array_sort(kos, (GCompareFunc)g_strcmp0);
	return g_steal_pointer(&kos);
}

char *kbuild_module_name(const char *src_dir)
{
	static const char *const files[] = { "Kbuild", "Makefile", NULL };
	g_autoptr(GRegex) obj_m = g_regex_new("^\\s*obj-m\\s*[:+]?=\\s*([A-Za-z0-9_-]+)\\.o\\b",
					      G_REGEX_MULTILINE, 0, NULL);

	for (const char *const *file = files; *file; file++) {
		g_autofree char *path = g_build_filename(src_dir, *file, NULL);
		g_autofree char *text = NULL;
		g_autoptr(GMatchInfo) match = NULL;

		if (g_file_get_contents(path, &text, NULL, NULL) &&
		    g_regex_match(obj_m, text, 0, &match))
			return g_match_info_fetch(match, 1);
	}
	return g_path_get_basename(src_dir);
}

char *kbuild_user_module(const struct arch *arch, const char *kdir, const char *release,
			 const char *src_dir, const char *cache_dir, GError **error)
{
	g_autoptr(GChecksum) sum = g_checksum_new(G_CHECKSUM_SHA256);
	g_autofree char *key = NULL, *dir = NULL, *build_dir = NULL, *log_path = NULL;
	g_autofree char *done_path = NULL, *done = NULL, *ko = NULL;
	g_autoptr(GPtrArray) kos = NULL;
	g_auto(GStrv) args = NULL;
	g_auto(IvlabRun) run = { 0 };

	if (!g_file_test(src_dir, G_FILE_TEST_IS_DIR)) {
		ivlab_fail(error, "module %s: no such directory", src_dir);
		return NULL;
	}
	g_autofree char *identity = kbuild_dir_identity(kdir);

	/* Build outputs left in the tree by a build on the host do not count. */
	ivlab_hash_source(sum, src_dir);
	/* A rebuilt kernel tree (a kernel under test) rebuilds its modules. */
	g_checksum_update(sum, (const guchar *)identity, strlen(identity) + 1);
	key = g_strdup_printf("%s-%s-%.16s", arch->name, release, g_checksum_get_string(sum));
	dir = g_build_filename(cache_dir, key, NULL);
	build_dir = g_build_filename(dir, "build", NULL);
	log_path = g_build_filename(dir, "build.log", NULL);
	done_path = g_build_filename(dir, "module", NULL);
	/* "module" names the .ko once a build succeeded. */
	if (g_file_get_contents(done_path, &done, NULL, NULL)) {
		ko = g_build_filename(build_dir, g_strstrip(done), NULL);
		if (g_file_test(ko, G_FILE_TEST_IS_REGULAR)) {
			ivlab_debug("module %s (%s): cached in %s", src_dir, arch->name, dir);
			return g_steal_pointer(&ko);
		}
		g_clear_pointer(&ko, g_free);
	}
	/* A copy: the user's tree is never written into. */
	if (!ivlab_remove_tree(dir, error) || !ivlab_make_dir(dir, error) ||
	    !ivlab_copy_tree(src_dir, build_dir, error))
		return NULL;
	args = make_args(arch, kdir, build_dir, error);
	if (!args) {
		g_prefix_error(error, "module %s (%s): ", src_dir, arch->name);
		return NULL;
	}
	run.argv = (const char *const *)args;
	run.cwd = build_dir;
	run.may_fail = TRUE;
	ivlab_info("%s: building the module %s against %s", arch->name, src_dir, kdir);
	if (!ivlab_run(&run, error))
		return NULL;
	g_autofree char *log = g_strconcat(run.out, run.err, NULL);

	if (!g_file_set_contents(log_path, log, -1, error))
		return NULL;
	if (run.status != 0) {
		g_autofree char *line = first_error_line(run.err[0] ? run.err : run.out);

		ivlab_fail(error, "module %s (%s) did not compile: %s (log: %s)", src_dir, arch->name,
			   line, log_path);
		return NULL;
	}
	kos = find_kos(build_dir, error);
	if (!kos)
		return NULL;
	if (kos->len != 1) {
		ivlab_fail(error, "module %s (%s): the build made %u .ko files in its top directory; "
			   "ivlab loads one (log: %s)", src_dir, arch->name, kos->len, log_path);
		return NULL;
	}
	if (!g_file_set_contents(done_path, kos->pdata[0], -1, error))
		return NULL;
	return g_build_filename(build_dir, kos->pdata[0], NULL);
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
