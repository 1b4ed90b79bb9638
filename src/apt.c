/* apt.c: Debian packages through apt: resolving a kernel metapackage,
 * candidate versions with their sha256, and apt-get download into a cache
 * (dpkg, apt-cache and apt-get run through ivlab_run()). */
#include "config.h"

#include <string.h>
#include <sys/stat.h>
#include <glib/gstdio.h>

#include "apt.h"
#include "fetch.h"
#include "ivlab.h"
#include "run.h"

/* The fields of an `apt-cache show` stanza we read. */
#define FIELD_PACKAGE "Package: "
#define FIELD_VERSION "Version: "
#define FIELD_ARCH "Architecture: "
#define FIELD_SHA256 "SHA256: "
/* The line of `apt-cache depends` that names the kernel. */
#define DEPENDS_KERNEL "Depends: linux-image-"
/* apt-get download names files with the version's epoch colon escaped. */
#define FILENAME_COLON "%3a"

void apt_deb_clear(struct apt_deb *deb)
{
	g_free(deb->spec);
	g_free(deb->filename);
	g_free(deb->path);
	g_free(deb->sha256);
}

char *apt_qualified(const char *package, const char *debian_arch)
{
	return g_strdup_printf("%s:%s", package, debian_arch);
}

static char *dpkg_arch(void)
{
	const char *const argv[] = { "dpkg", "--print-architecture", NULL };
	g_auto(IvlabRun) run = { .argv = argv };

	if (!ivlab_run(&run, NULL))
		return NULL;
	return g_strdup(g_strstrip(run.out));
}

gboolean apt_check_arch(const char *debian_arch, GError **error)
{
	g_autofree char *native = dpkg_arch();
	const char *const argv[] = { "dpkg", "--print-foreign-architectures", NULL };
	g_auto(IvlabRun) run = { .argv = argv };

	if (!native)
		return ivlab_fail(error, "image: dpkg is not available: Debian kernels need a Debian host "
				  "(or use --kernel or --kernel-url)");
	if (strcmp(native, debian_arch) == 0)
		return TRUE;
	if (ivlab_run(&run, NULL)) {
		g_auto(GStrv) list = g_strsplit_set(run.out, " \n", -1);

		if (g_strv_contains((const char *const *)list, debian_arch))
			return TRUE;
	}
	return ivlab_fail(error,
			  "image: %s packages are not available to apt: run 'dpkg --add-architecture %s "
			  "&& apt-get update' (setup-host.sh does it)",
			  debian_arch, debian_arch);
}

char *apt_resolve_kernel(const char *metapackage, const char *debian_arch, GError **error)
{
	g_autofree char *meta = apt_qualified(metapackage, debian_arch);
	const char *const argv[] = { "apt-cache", "depends", meta, NULL };
	g_auto(IvlabRun) run = { .argv = argv };
	g_autoptr(GError) local = NULL;

	if (!ivlab_run(&run, &local)) {
		ivlab_fail(error, "image: apt-cache does not know %s (run 'apt-get update'): %s", meta,
			   local->message);
		return NULL;
	}
	g_auto(GStrv) lines = g_strsplit(run.out, "\n", -1);
	for (char **line = lines; *line; line++) {
		const char *text = g_strstrip(*line);

		if (!g_str_has_prefix(text, DEPENDS_KERNEL))
			continue;
		g_autofree char *package = g_strdup(text + strlen("Depends: "));
		char *colon = strchr(package, ':');

		if (colon)
			*colon = '\0';
		return g_steal_pointer(&package);
	}
	ivlab_fail(error, "image: %s depends on no linux-image package", meta);
	return NULL;
}

/* The value of a "Field: value" line, or NULL. */
static char *field(const char *line, const char *name)
{
	return g_str_has_prefix(line, name) ? g_strdup(line + strlen(name)) : NULL;
}

/* Fills deb from the stanza if it is the package want ("name" or
 * "name:arch"; an arch "all" package satisfies any arch). */
static gboolean stanza_matches(const char *stanza, const char *want, struct apt_deb *deb)
{
	g_auto(GStrv) wanted = g_strsplit(want, ":", 2);
	g_auto(GStrv) lines = g_strsplit(stanza, "\n", -1);
	g_autofree char *package = NULL, *version = NULL, *arch = NULL, *sha256 = NULL;

	for (char **line = lines; *line; line++) {
		if (!package)
			package = field(*line, FIELD_PACKAGE);
		if (!version)
			version = field(*line, FIELD_VERSION);
		if (!arch)
			arch = field(*line, FIELD_ARCH);
		if (!sha256)
			sha256 = field(*line, FIELD_SHA256);
	}
	if (!package || !version || !arch || strcmp(package, wanted[0]) != 0 ||
	    (wanted[1] && strcmp(arch, wanted[1]) != 0 && strcmp(arch, "all") != 0))
		return FALSE;
	g_auto(GStrv) parts = g_strsplit(version, ":", -1);
	g_autofree char *escaped = g_strjoinv(FILENAME_COLON, parts);

	if (strcmp(arch, "all") == 0)
		deb->spec = g_strdup_printf("%s=%s", package, version);
	else
		deb->spec = g_strdup_printf("%s:%s=%s", package, arch, version);
	deb->filename = g_strdup_printf("%s_%s_%s.deb", package, escaped, arch);
	deb->sha256 = g_steal_pointer(&sha256);
	return TRUE;
}

gboolean apt_candidates(struct apt_deb *debs, const char *const *names, GError **error)
{
	g_autoptr(GStrvBuilder) argv = g_strv_builder_new();
	g_auto(GStrv) args = NULL;
	g_auto(IvlabRun) run = { 0 };

	g_strv_builder_add_many(argv, "apt-cache", "show", "--no-all-versions", NULL);
	g_strv_builder_addv(argv, (const char **)names);
	args = g_strv_builder_end(argv);
	run.argv = (const char *const *)args;
	if (!ivlab_run(&run, error))
		return FALSE;

	g_auto(GStrv) stanzas = g_strsplit(run.out, "\n\n", -1);
	for (gsize i = 0; names[i]; i++) {
		for (char **stanza = stanzas; *stanza && !debs[i].spec; stanza++)
			stanza_matches(*stanza, names[i], &debs[i]);
		if (!debs[i].spec)
			return ivlab_fail(error, "image: apt has no candidate for %s (run 'apt-get update')",
					  names[i]);
	}
	return TRUE;
}

/* The cached file is there and, when apt gave a sha256, has it; a damaged
 * one is removed. */
static gboolean cached(struct apt_deb *deb)
{
	g_autofree char *have = NULL;

	if (!g_file_test(deb->path, G_FILE_TEST_IS_REGULAR))
		return FALSE;
	if (!deb->sha256)
		return TRUE;
	have = fetch_file_sha256(deb->path, NULL);
	if (have && strcmp(have, deb->sha256) == 0) {
		deb->verified = TRUE;
		return TRUE;
	}
	/* apt-get download checked it; the disk since damaged it. */
	ivlab_info("%s: damaged in the cache, downloading it again", deb->path);
	g_unlink(deb->path);
	return FALSE;
}

/* Runs apt-get download of argv's specs in a fresh directory of the cache,
 * then moves what it got into place. */
static gboolean download_into(const char *cache_dir, const char *const *argv,
			      struct apt_deb *debs, gsize count, GError **error)
{
	g_autofree char *tmp = g_build_filename(cache_dir, ".download-XXXXXX", NULL);
	g_auto(IvlabRun) run = { .argv = argv };
	gboolean ok;

	if (!g_mkdtemp(tmp))
		return ivlab_fail_errno(error, "%s", tmp);
	run.cwd = tmp;
	ok = ivlab_run(&run, error);
	for (gsize i = 0; ok && i < count; i++) {
		g_autofree char *got = g_build_filename(tmp, debs[i].filename, NULL);

		if (g_file_test(got, G_FILE_TEST_IS_REGULAR) && g_rename(got, debs[i].path) != 0)
			ok = ivlab_fail_errno(error, "%s", debs[i].path);
		else if (!g_file_test(debs[i].path, G_FILE_TEST_IS_REGULAR))
			ok = ivlab_fail(error, "image: apt-get download gave no %s", debs[i].filename);
	}
	ivlab_remove_tree(tmp, NULL);
	return ok;
}

gboolean apt_download(struct apt_deb *debs, gsize count, const char *cache_dir, GError **error)
{
	g_autofree char *lock_path = g_build_filename(cache_dir, ".lock", NULL);
	g_autoptr(GStrvBuilder) argv = g_strv_builder_new();
	g_auto(GStrv) args = NULL;
	g_auto(IvlabLock) lock_fd = -1;
	gboolean any = FALSE;

	if (!ivlab_make_dir(cache_dir, error))
		return FALSE;
	for (gsize i = 0; i < count; i++) {
		/* A second download of the same debs (all cached) replaces it. */
		g_free(debs[i].path);
		debs[i].path = g_build_filename(cache_dir, debs[i].filename, NULL);
	}
	lock_fd = ivlab_lock(lock_path, TRUE, "the package cache", error);
	if (lock_fd < 0)
		return FALSE;

	/* apt's sandbox user could not write to the cache, which root owns. */
	g_strv_builder_add_many(argv, "apt-get", "-q", "-o", "APT::Sandbox::User=root", "download",
				NULL);
	for (gsize i = 0; i < count; i++) {
		if (cached(&debs[i]))
			continue;
		ivlab_info("downloading %s", debs[i].spec);
		g_strv_builder_add(argv, debs[i].spec);
		any = TRUE;
	}
	if (!any)
		return TRUE;
	args = g_strv_builder_end(argv);
	return download_into(cache_dir, (const char *const *)args, debs, count, error);
}

char *apt_state(void)
{
	g_autoptr(GChecksum) sum = g_checksum_new(G_CHECKSUM_SHA256);
	const char *const dirs[] = { "/var/lib/apt/lists", "/etc/apt", "/etc/apt/sources.list.d",
				     "/etc/apt/preferences.d", "/etc/apt/apt.conf.d" };
	const char *const files[] = { "/var/lib/dpkg/arch" };

	for (gsize i = 0; i < G_N_ELEMENTS(dirs); i++) {
		g_autoptr(GPtrArray) names = ivlab_dir_names(dirs[i]);

		for (guint j = 0; j < names->len; j++) {
			g_autofree char *path = g_build_filename(dirs[i], names->pdata[j], NULL);
			g_autofree char *line = NULL;
			struct stat st;

			if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
				continue;
			line = g_strdup_printf("%s %lld %lld.%09ld\n", path, (long long)st.st_size,
					       (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
			g_checksum_update(sum, (const guchar *)line, strlen(line));
		}
	}
	for (gsize i = 0; i < G_N_ELEMENTS(files); i++) {
		g_autofree char *contents = NULL;

		if (g_file_get_contents(files[i], &contents, NULL, NULL))
			g_checksum_update(sum, (const guchar *)contents, strlen(contents));
	}
	return g_strdup(g_checksum_get_string(sum));
}
