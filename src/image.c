/* image.c: the guest image pipeline: Debian packages (or a URL, or a local
 * kernel) -> the ivlab module built with Kbuild, the virtio modules with
 * their dependencies, busybox, the agent and /init -> vmlinuz + initrd.img
 * and a manifest of every input, so an unchanged image is never rebuilt. */
#include "config.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <archive.h>
#include <archive_entry.h>
#include <glib/gstdio.h>

#include "debpkg.h"
#include "fetch.h"
#include "host.h"
#include "image.h"
#include "initramfs.h"
#include "ivlab.h"
#include "run.h"

/* Bump when the pipeline changes what it puts in an image. */
#define IMAGE_FORMAT "1"
#define MANIFEST_IMAGE "image"
#define MANIFEST_INPUTS "inputs"
#define MANIFEST_OUTPUTS "outputs"
#define MANIFEST_DEBS "debs"
#define MAX_KERNEL_BYTES (256u << 20)
#define MAX_MODULE_BYTES (64u << 20)

static const char *const arches[] = { "x86_64", "aarch64", NULL };

const char *const *image_arches(void)
{
	return arches;
}

gboolean image_arch_is_known(const char *arch)
{
	return arch && g_strv_contains(arches, arch);
}

char *image_kernel_path(const char *arch)
{
	g_autofree char *dir = ivlab_image_dir(arch);

	return g_build_filename(dir, "vmlinuz", NULL);
}

char *image_initrd_path(const char *arch)
{
	g_autofree char *dir = ivlab_image_dir(arch);

	return g_build_filename(dir, "initrd.img", NULL);
}

static char *manifest_path(const char *arch)
{
	g_autofree char *dir = ivlab_image_dir(arch);

	return g_build_filename(dir, "manifest", NULL);
}


static gboolean fail_errno(GError **error, const char *path)
{
	return ivlab_fail(error, "%s: %s", path, g_strerror(errno));
}

/* --- helpers: commands, files, directories ------------------------------ */

static void arg(GPtrArray *argv, const char *text)
{
	g_ptr_array_add(argv, (gpointer)text);
}

static int compare_names(gconstpointer a, gconstpointer b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static gboolean make_dir(const char *dir, GError **error)
{
	if (g_mkdir_with_parents(dir, 0755) != 0)
		return fail_errno(error, dir);
	return TRUE;
}

/* QEMU runs as libvirt-qemu: it must be able to reach and read the image. */
static void make_reachable(const char *dir)
{
	struct stat st;

	if (stat(dir, &st) == 0 && (st.st_mode & 0005) != 0005)
		g_chmod(dir, (st.st_mode & 07777) | 0755);
}

static gboolean remove_tree(const char *path, GError **error)
{
	struct stat st;

	if (lstat(path, &st) != 0)
		return errno == ENOENT ? TRUE : fail_errno(error, path);
	if (S_ISDIR(st.st_mode)) {
		g_autoptr(GDir) dir = g_dir_open(path, 0, NULL);
		const char *name;

		while (dir && (name = g_dir_read_name(dir))) {
			g_autofree char *child = g_build_filename(path, name, NULL);

			if (!remove_tree(child, error))
				return FALSE;
		}
		if (g_rmdir(path) != 0)
			return fail_errno(error, path);
	} else if (g_unlink(path) != 0) {
		return fail_errno(error, path);
	}
	return TRUE;
}

static gboolean copy_tree(const char *from, const char *to, GError **error)
{
	struct stat st;

	if (stat(from, &st) != 0)
		return fail_errno(error, from);
	if (S_ISDIR(st.st_mode)) {
		g_autoptr(GDir) dir = g_dir_open(from, 0, error);
		const char *name;

		if (!dir || !make_dir(to, error))
			return FALSE;
		while ((name = g_dir_read_name(dir))) {
			g_autofree char *a = g_build_filename(from, name, NULL);
			g_autofree char *b = g_build_filename(to, name, NULL);

			if (!copy_tree(a, b, error))
				return FALSE;
		}
		return TRUE;
	}
	g_autofree char *contents = NULL;
	gsize length;

	if (!g_file_get_contents(from, &contents, &length, error))
		return FALSE;
	return g_file_set_contents_full(to, contents, length, G_FILE_SET_CONTENTS_NONE, 0644, error);
}

/* sha256 over a file or a directory tree (names and contents, sorted). */
static void hash_tree(GChecksum *sum, const char *path, const char *name)
{
	struct stat st;

	g_checksum_update(sum, (const guchar *)name, strlen(name) + 1);
	if (stat(path, &st) != 0)
		return;
	if (S_ISDIR(st.st_mode)) {
		g_autoptr(GDir) dir = g_dir_open(path, 0, NULL);
		g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
		const char *child;

		while (dir && (child = g_dir_read_name(dir)))
			g_ptr_array_add(names, g_strdup(child));
		g_ptr_array_sort(names, compare_names);
		for (guint i = 0; i < names->len; i++) {
			g_autofree char *sub = g_build_filename(path, names->pdata[i], NULL);
			g_autofree char *subname = g_build_filename(name, names->pdata[i], NULL);

			hash_tree(sum, sub, subname);
		}
		return;
	}
	g_autofree char *contents = NULL;
	gsize length = 0;

	if (g_file_get_contents(path, &contents, &length, NULL))
		g_checksum_update(sum, (const guchar *)contents, length);
}

static char *bytes_sha256(GBytes *bytes)
{
	return g_compute_checksum_for_bytes(G_CHECKSUM_SHA256, bytes);
}

/* --- where the pieces are ------------------------------------------------ */

static gboolean running_from_tree(void)
{
	return strcmp(ivlab_datadir(), IVLAB_SRCDIR) == 0;
}

/* The guest sources: module (Kbuild, ivlab_drv.c, include/) and /init. */
static char *find_guest_dir(GError **error)
{
	const char *env = g_getenv("IVLAB_GUEST_DIR");
	const char *const subdirs[] = { "src/guest", "guest" };

	if (env && *env)
		return g_strdup(env);
	for (gsize i = 0; i < G_N_ELEMENTS(subdirs); i++) {
		g_autofree char *dir = g_build_filename(ivlab_datadir(), subdirs[i], NULL);
		g_autofree char *kbuild = g_build_filename(dir, "Kbuild", NULL);

		if (g_file_test(kbuild, G_FILE_TEST_EXISTS))
			return g_steal_pointer(&dir);
	}
	ivlab_fail(error, "image: the guest sources (Kbuild, ivlab_drv.c, init) are not in %s/src/guest",
	     ivlab_datadir());
	return NULL;
}

/* The static agent for arch: built in the build tree, or installed. */
static char *find_agent(const char *arch, GError **error)
{
	g_autofree char *name = g_strdup_printf("ivlab-agent-%s", arch);
	const char *env = g_getenv("IVLAB_AGENT_DIR");
	g_autofree char *built = g_build_filename(IVLAB_BUILDDIR, "src", "guest", name, NULL);
	g_autofree char *installed = g_build_filename(IVLAB_LIBEXECDIR, name, NULL);
	const char *order[2];

	if (env && *env) {
		g_autofree char *path = g_build_filename(env, name, NULL);

		if (g_file_test(path, G_FILE_TEST_IS_REGULAR))
			return g_steal_pointer(&path);
		ivlab_fail(error, "image: no agent %s in $IVLAB_AGENT_DIR (%s)", name, env);
		return NULL;
	}
	order[0] = running_from_tree() ? built : installed;
	order[1] = running_from_tree() ? installed : built;
	for (gsize i = 0; i < G_N_ELEMENTS(order); i++)
		if (g_file_test(order[i], G_FILE_TEST_IS_REGULAR))
			return g_strdup(order[i]);
	ivlab_fail(error, "image: the %s agent is not built (looked for %s and %s): run make%s", arch,
	     order[0], order[1],
	     strcmp(arch, "aarch64") == 0 ? " with gcc-aarch64-linux-gnu installed" : "");
	return NULL;
}

/* --- the recipe ---------------------------------------------------------- */

struct recipe {
	char *path;
	char *sha256;
	char *debian_arch;
	char *metapackage;
	char *flavour;
	char *busybox_package;
	char *cross_compile;
	char *kbuild_arch;
	char *console;
	GStrv modules;
	enum initramfs_compression compression;
};

static void recipe_clear(struct recipe *recipe)
{
	g_free(recipe->path);
	g_free(recipe->sha256);
	g_free(recipe->debian_arch);
	g_free(recipe->metapackage);
	g_free(recipe->flavour);
	g_free(recipe->busybox_package);
	g_free(recipe->cross_compile);
	g_free(recipe->kbuild_arch);
	g_free(recipe->console);
	g_strfreev(recipe->modules);
}

static char *recipe_string(GKeyFile *file, const char *path, const char *key, GError **error)
{
	g_autoptr(GError) local = NULL;
	char *value = g_key_file_get_string(file, MANIFEST_IMAGE, key, &local);

	if (!value || !*value) {
		g_free(value);
		ivlab_fail(error, "%s: [image] needs a value for '%s'", path, key);
		return NULL;
	}
	return value;
}

static gboolean recipe_load(const char *arch, struct recipe *recipe, GError **error)
{
	g_autoptr(GKeyFile) file = g_key_file_new();
	g_autoptr(GError) local = NULL;
	g_autofree char *name = g_strdup_printf("%s.conf", arch);
	g_autofree char *compression = NULL;

	recipe->path = g_build_filename(ivlab_datadir(), "images", name, NULL);
	if (!g_key_file_load_from_file(file, recipe->path, G_KEY_FILE_NONE, &local))
		return ivlab_fail(error, "%s: %s", recipe->path, local->message);
	recipe->sha256 = fetch_file_sha256(recipe->path, error);
	if (!recipe->sha256 ||
	    !(recipe->debian_arch = recipe_string(file, recipe->path, "debian-arch", error)) ||
	    !(recipe->metapackage = recipe_string(file, recipe->path, "kernel-metapackage", error)) ||
	    !(recipe->flavour = recipe_string(file, recipe->path, "kernel-flavour", error)) ||
	    !(recipe->busybox_package = recipe_string(file, recipe->path, "busybox-package", error)) ||
	    !(recipe->cross_compile = recipe_string(file, recipe->path, "cross-compile", error)) ||
	    !(recipe->kbuild_arch = recipe_string(file, recipe->path, "kbuild-arch", error)) ||
	    !(recipe->console = recipe_string(file, recipe->path, "console", error)) ||
	    !(compression = recipe_string(file, recipe->path, "compression", error)))
		return FALSE;
	recipe->modules = g_key_file_get_string_list(file, MANIFEST_IMAGE, "modules", NULL, NULL);
	if (!recipe->modules || !recipe->modules[0])
		return ivlab_fail(error, "%s: [image] needs a list of 'modules'", recipe->path);
	if (!initramfs_parse_compression(compression, &recipe->compression))
		return ivlab_fail(error, "%s: compression '%s' is not gzip, zstd or none", recipe->path,
			    compression);
	return TRUE;
}

/* --- apt: resolving and downloading Debian packages ---------------------- */

struct deb {
	char *spec;     /* what apt-get download gets: name:arch=version */
	char *filename; /* name_version_arch.deb, as apt-get download names it */
	char *path;     /* in the cache */
	char *sha256;   /* what apt's index says it must be, if known */
	gboolean verified; /* the cached file was checked against sha256 */
};

static void deb_clear(struct deb *deb)
{
	g_free(deb->spec);
	g_free(deb->filename);
	g_free(deb->path);
	g_free(deb->sha256);
}

static char *dpkg_arch(void)
{
	const char *const argv[] = { "dpkg", "--print-architecture", NULL };
	g_auto(IvlabRun) run = { .argv = argv };

	if (!ivlab_run(&run, NULL))
		return NULL;
	return g_strdup(g_strstrip(run.out));
}

static gboolean apt_check_arch(const char *debian_arch, GError **error)
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

static char *qualified(const char *package, const char *debian_arch)
{
	return g_strdup_printf("%s:%s", package, debian_arch);
}

/* The linux-image-<ABI> package the metapackage depends on today. */
static char *apt_resolve_kernel(const struct recipe *recipe, GError **error)
{
	g_autofree char *meta = qualified(recipe->metapackage, recipe->debian_arch);
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

		if (!g_str_has_prefix(text, "Depends: linux-image-"))
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

/* Fills each deb's spec and file name from apt's candidate versions;
 * names are "package" or "package:arch". */
static gboolean apt_candidates(struct deb *debs, const char *const *names, GError **error)
{
	g_autoptr(GPtrArray) argv = g_ptr_array_new();
	g_auto(IvlabRun) run = { 0 };

	arg(argv, "apt-cache");
	arg(argv, "show");
	arg(argv, "--no-all-versions");
	for (gsize i = 0; names[i]; i++)
		g_ptr_array_add(argv, (char *)names[i]);
	g_ptr_array_add(argv, NULL);
	run.argv = (const char *const *)argv->pdata;
	if (!ivlab_run(&run, error))
		return FALSE;

	g_auto(GStrv) stanzas = g_strsplit(run.out, "\n\n", -1);
	for (gsize i = 0; names[i]; i++) {
		g_auto(GStrv) want = g_strsplit(names[i], ":", 2);

		for (char **stanza = stanzas; *stanza && !debs[i].spec; stanza++) {
			g_autofree char *package = NULL, *version = NULL, *arch = NULL, *sha256 = NULL;
			g_auto(GStrv) lines = g_strsplit(*stanza, "\n", -1);

			for (char **line = lines; *line; line++) {
				if (g_str_has_prefix(*line, "Package: "))
					package = g_strdup(*line + 9);
				else if (g_str_has_prefix(*line, "Version: "))
					version = g_strdup(*line + 9);
				else if (g_str_has_prefix(*line, "Architecture: "))
					arch = g_strdup(*line + 14);
				else if (g_str_has_prefix(*line, "SHA256: "))
					sha256 = g_strdup(*line + 8);
			}
			if (!package || !version || !arch || strcmp(package, want[0]) != 0 ||
			    (want[1] && strcmp(arch, want[1]) != 0 && strcmp(arch, "all") != 0))
				continue;
			g_auto(GStrv) parts = g_strsplit(version, ":", -1);
			g_autofree char *escaped = g_strjoinv("%3a", parts);

			debs[i].spec = g_strdup_printf("%s:%s=%s", package, arch, version);
			debs[i].filename = g_strdup_printf("%s_%s_%s.deb", package, escaped, arch);
			debs[i].sha256 = g_steal_pointer(&sha256);
			if (strcmp(arch, "all") == 0) {
				g_free(debs[i].spec);
				debs[i].spec = g_strdup_printf("%s=%s", package, version);
			}
		}
		if (!debs[i].spec)
			return ivlab_fail(error, "image: apt has no candidate for %s (run 'apt-get update')",
				    names[i]);
	}
	return TRUE;
}

static char *cache_dir(const char *what)
{
	return g_build_filename(ivlab_state_dir(), "cache", what, NULL);
}

/* A held flock; closing the descriptor releases it. */
typedef int HeldLock;
static void release_lock(HeldLock fd)
{
	if (fd >= 0)
		close(fd);
}
G_DEFINE_AUTO_CLEANUP_FREE_FUNC(HeldLock, release_lock, -1)

static int lock_file(const char *path, const char *waiting_for, GError **error)
{
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);

	if (fd < 0) {
		fail_errno(error, path);
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		ivlab_info("waiting for %s (%s)", waiting_for, path);
		if (flock(fd, LOCK_EX) != 0) {
			fail_errno(error, path);
			close(fd);
			return -1;
		}
	}
	return fd;
}

/* Downloads the debs the cache lacks with apt-get download (which checks
 * them against the archive's signed index). */
static gboolean apt_download(struct deb *debs, gsize count, GError **error)
{
	g_autofree char *dir = cache_dir("debs");
	g_autofree char *lock_path = NULL, *tmp = NULL;
	g_autoptr(GPtrArray) argv = g_ptr_array_new();
	gboolean ok = TRUE;
	g_auto(HeldLock) lock_fd = -1;

	if (!make_dir(dir, error))
		return FALSE;
	for (gsize i = 0; i < count; i++)
		debs[i].path = g_build_filename(dir, debs[i].filename, NULL);
	lock_path = g_build_filename(dir, ".lock", NULL);
	lock_fd = lock_file(lock_path, "another download", error);
	if (lock_fd < 0)
		return FALSE;

	arg(argv, "apt-get");
	arg(argv, "-q");
	arg(argv, "-o");
	arg(argv, "APT::Sandbox::User=root");
	arg(argv, "download");
	for (gsize i = 0; i < count; i++) {
		if (g_file_test(debs[i].path, G_FILE_TEST_IS_REGULAR)) {
			g_autofree char *have = debs[i].sha256 ? fetch_file_sha256(debs[i].path, NULL) : NULL;

			if (!debs[i].sha256)
				continue;
			if (have && strcmp(have, debs[i].sha256) == 0) {
				debs[i].verified = TRUE;
				continue;
			}
			/* apt-get download checked it; the disk since damaged it. */
			ivlab_info("%s: damaged in the cache, downloading it again", debs[i].path);
			g_unlink(debs[i].path);
		}
		ivlab_info("downloading %s", debs[i].spec);
		g_ptr_array_add(argv, debs[i].spec);
	}
	if (argv->len > 5) {
		g_ptr_array_add(argv, NULL);
		tmp = g_build_filename(dir, ".download-XXXXXX", NULL);
		if (!g_mkdtemp(tmp)) {
			ok = fail_errno(error, tmp);
		} else {
			g_auto(IvlabRun) run = { .argv = (const char *const *)argv->pdata, .cwd = tmp };

			ok = ivlab_run(&run, error);
			for (gsize i = 0; ok && i < count; i++) {
				g_autofree char *got = g_build_filename(tmp, debs[i].filename, NULL);

				if (g_file_test(got, G_FILE_TEST_IS_REGULAR) && g_rename(got, debs[i].path) != 0)
					ok = fail_errno(error, debs[i].path);
				else if (!g_file_test(debs[i].path, G_FILE_TEST_IS_REGULAR))
					ok = ivlab_fail(error, "image: apt-get download gave no %s", debs[i].filename);
			}
			remove_tree(tmp, NULL);
		}
	}
	return ok;
}

/* --- kernel modules: modinfo, catalogs, dependency order ----------------- */

char *image_modinfo(GBytes *module, const char *key)
{
	gsize size;
	const guint8 *data = g_bytes_get_data(module, &size);
	const Elf64_Ehdr *ehdr = (const Elf64_Ehdr *)data;
	gsize key_len = strlen(key);

	if (size < sizeof(*ehdr) || memcmp(data, ELFMAG, SELFMAG) != 0 ||
	    data[EI_CLASS] != ELFCLASS64 || data[EI_DATA] != ELFDATA2LSB)
		return NULL;
	if (ehdr->e_shoff == 0 || ehdr->e_shentsize != sizeof(Elf64_Shdr) ||
	    ehdr->e_shoff > size || (size - ehdr->e_shoff) / sizeof(Elf64_Shdr) < ehdr->e_shnum ||
	    ehdr->e_shstrndx >= ehdr->e_shnum)
		return NULL;
	const Elf64_Shdr *sections = (const Elf64_Shdr *)(data + ehdr->e_shoff);
	const Elf64_Shdr *strtab = &sections[ehdr->e_shstrndx];

	if (strtab->sh_offset > size || strtab->sh_size > size - strtab->sh_offset)
		return NULL;
	for (guint i = 0; i < ehdr->e_shnum; i++) {
		const Elf64_Shdr *section = &sections[i];

		if (section->sh_name >= strtab->sh_size ||
		    strncmp((const char *)data + strtab->sh_offset + section->sh_name, ".modinfo",
			    strtab->sh_size - section->sh_name) != 0)
			continue;
		if (section->sh_offset > size || section->sh_size > size - section->sh_offset)
			return NULL;
		const char *text = (const char *)data + section->sh_offset;
		const char *end = text + section->sh_size;

		while (text < end) {
			gsize len = strnlen(text, end - text);

			if (len > key_len && strncmp(text, key, key_len) == 0 && text[key_len] == '=')
				return g_strndup(text + key_len + 1, len - key_len - 1);
			text += len + 1;
		}
		return NULL;
	}
	return NULL;
}

GStrv image_busybox_applets(GBytes *busybox, GError **error)
{
	gsize size;
	const char *data = g_bytes_get_data(busybox, &size);
	const char *end = data + size;
	/* applet_names[] is one string of sorted, NUL-separated names that
	 * starts with the test applets "[" and "[[". */
	static const char start[] = "\0[\0[[\0";
	const char *hit = memmem(data, size, start, sizeof(start) - 1);
	g_autoptr(GStrvBuilder) names = g_strv_builder_new();
	guint count = 0;

	if (!hit) {
		ivlab_fail(error, "busybox: no applet table found in the binary");
		return NULL;
	}
	for (const char *name = hit + 1; name < end && *name; count++) {
		gsize len = strnlen(name, end - name);

		g_strv_builder_add(names, name);
		name += len + 1;
	}
	if (count < 10) {
		ivlab_fail(error, "busybox: the applet table has only %u names", count);
		return NULL;
	}
	return g_strv_builder_end(names);
}

/* Kernels may ship modules compressed; the initramfs gets plain .ko. */
static GBytes *module_decompress(GBytes *bytes, const char *path, GError **error)
{
	if (g_str_has_suffix(path, ".ko"))
		return g_bytes_ref(bytes);
	struct archive *raw = archive_read_new();
	struct archive_entry *entry;
	g_autoptr(GByteArray) out = g_byte_array_new();
	guint8 buf[64 * 1024];
	la_ssize_t got = -1;
	gsize size;
	const void *data = g_bytes_get_data(bytes, &size);

	archive_read_support_filter_all(raw);
	archive_read_support_format_raw(raw);
	if (archive_read_open_memory(raw, data, size) == ARCHIVE_OK &&
	    archive_read_next_header(raw, &entry) == ARCHIVE_OK) {
		while ((got = archive_read_data(raw, buf, sizeof(buf))) > 0)
			g_byte_array_append(out, buf, got);
	}
	if (got < 0) {
		ivlab_fail(error, "%s: cannot decompress: %s", path,
		     archive_error_string(raw) ? archive_error_string(raw) : "unknown format");
		archive_read_free(raw);
		return NULL;
	}
	archive_read_free(raw);
	return g_byte_array_free_to_bytes(g_steal_pointer(&out));
}

static gboolean is_module_path(const char *path)
{
	return g_str_has_suffix(path, ".ko") || g_str_has_suffix(path, ".ko.xz") ||
	       g_str_has_suffix(path, ".ko.zst") || g_str_has_suffix(path, ".ko.gz");
}

/* "drivers/virtio/virtio-foo.ko.xz" -> "virtio_foo" */
static char *module_name_of_path(const char *path)
{
	g_autofree char *base = g_path_get_basename(path);
	char *dot = strstr(base, ".ko");

	if (dot)
		*dot = '\0';
	g_strdelimit(base, "-", '_');
	return g_steal_pointer(&base);
}

struct kmod {
	char *name;
	char *location; /* member path in a deb, or a file */
	GStrv depends;  /* NULL until the module was read */
	GBytes *bytes;  /* plain .ko, NULL until read */
};

static void kmod_free(gpointer data)
{
	struct kmod *kmod = data;

	g_free(kmod->name);
	g_free(kmod->location);
	g_strfreev(kmod->depends);
	if (kmod->bytes)
		g_bytes_unref(kmod->bytes);
	g_free(kmod);
}

static gboolean kmod_set_bytes(struct kmod *kmod, GBytes *raw, GError **error)
{
	g_autoptr(GBytes) plain = module_decompress(raw, kmod->location, error);
	g_autofree char *depends = NULL;

	if (!plain)
		return FALSE;
	depends = image_modinfo(plain, "depends");
	g_strfreev(kmod->depends);
	kmod->depends = g_strsplit(depends ? depends : "", ",", -1);
	for (char **dep = kmod->depends; *dep; dep++)
		g_strdelimit(*dep, "-", '_');
	if (kmod->bytes)
		g_bytes_unref(kmod->bytes);
	kmod->bytes = g_steal_pointer(&plain);
	return TRUE;
}

/* What one kernel offers: its release, its image and its modules. */
struct kernel {
	char *release;
	GBytes *vmlinuz;
	GHashTable *modules; /* name -> struct kmod */
	GHashTable *builtin; /* names built into the kernel */
	char *modules_from;  /* for messages */
};

static void kernel_clear(struct kernel *kernel)
{
	g_free(kernel->release);
	if (kernel->vmlinuz)
		g_bytes_unref(kernel->vmlinuz);
	if (kernel->modules)
		g_hash_table_destroy(kernel->modules);
	if (kernel->builtin)
		g_hash_table_destroy(kernel->builtin);
	g_free(kernel->modules_from);
}

static void kernel_init_tables(struct kernel *kernel)
{
	kernel->modules = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, kmod_free);
	kernel->builtin = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
}

static void parse_builtin(struct kernel *kernel, const char *text)
{
	g_auto(GStrv) lines = g_strsplit(text, "\n", -1);

	for (char **line = lines; *line; line++)
		if (**line)
			g_hash_table_add(kernel->builtin, module_name_of_path(*line));
}

static void add_kmod(struct kernel *kernel, const char *path, const char *location)
{
	struct kmod *kmod = g_new0(struct kmod, 1);

	kmod->name = module_name_of_path(path);
	kmod->location = g_strdup(location);
	g_hash_table_replace(kernel->modules, kmod->name, kmod);
}

struct deb_scan {
	struct kernel *kernel;
	const char *deb_path;
	GHashTable *keep;      /* names whose bytes to keep */
	gboolean want_vmlinuz; /* pass 1 also takes the kernel image */
};

static gboolean scan_kernel_member(struct archive *data, struct archive_entry *entry,
				   const char *path, gpointer user_data, GError **error)
{
	struct deb_scan *scan = user_data;
	struct kernel *kernel = scan->kernel;

	if (archive_entry_filetype(entry) != AE_IFREG)
		return TRUE;
	if (scan->want_vmlinuz && g_str_has_prefix(path, "boot/vmlinuz-")) {
		kernel->vmlinuz = debpkg_read_member(data, scan->deb_path, path, MAX_KERNEL_BYTES, error);
		kernel->release = g_strdup(path + strlen("boot/vmlinuz-"));
		return kernel->vmlinuz != NULL;
	}
	if (scan->want_vmlinuz && g_str_has_prefix(path, "lib/modules/") &&
	    g_str_has_suffix(path, "/modules.builtin")) {
		g_autoptr(GBytes) text = debpkg_read_member(data, scan->deb_path, path, 16 << 20, error);
		g_autofree char *str = NULL;

		if (!text)
			return FALSE;
		str = g_strndup(g_bytes_get_data(text, NULL), g_bytes_get_size(text));
		parse_builtin(kernel, str);
		return TRUE;
	}
	if (!g_str_has_prefix(path, "lib/modules/") || !is_module_path(path))
		return TRUE;
	g_autofree char *name = module_name_of_path(path);
	struct kmod *kmod = g_hash_table_lookup(kernel->modules, name);

	if (!kmod) {
		add_kmod(kernel, path, path);
		kmod = g_hash_table_lookup(kernel->modules, name);
	}
	if (kmod->bytes)
		return TRUE;
	/* Every module is read for its dependencies; only wanted ones kept. */
	g_autoptr(GBytes) raw = debpkg_read_member(data, scan->deb_path, path, MAX_MODULE_BYTES, error);
	if (!raw || !kmod_set_bytes(kmod, raw, error))
		return FALSE;
	if (!g_hash_table_contains(scan->keep, name)) {
		g_bytes_unref(kmod->bytes);
		kmod->bytes = NULL;
	}
	return TRUE;
}

static gboolean kernel_from_deb(struct kernel *kernel, const char *deb_path, GHashTable *keep,
				GError **error)
{
	struct deb_scan scan = { kernel, deb_path, keep, TRUE };

	kernel_init_tables(kernel);
	kernel->modules_from = g_path_get_basename(deb_path);
	if (!debpkg_foreach(deb_path, scan_kernel_member, &scan, error))
		return FALSE;
	if (!kernel->vmlinuz)
		return ivlab_fail(error, "%s: no boot/vmlinuz-* in the package: not a linux-image package",
			    deb_path);
	return TRUE;
}

/* Reads the modules the first pass did not keep (dependencies that the
 * recipe did not name). */
static gboolean kernel_deb_fetch(struct kernel *kernel, const char *deb_path, GHashTable *keep,
				 GError **error)
{
	struct deb_scan scan = { kernel, deb_path, keep, FALSE };

	return debpkg_foreach(deb_path, scan_kernel_member, &scan, error);
}

static void scan_module_dir(struct kernel *kernel, const char *dir, int depth)
{
	g_autoptr(GDir) handle = g_dir_open(dir, 0, NULL);
	const char *name;

	while (handle && (name = g_dir_read_name(handle))) {
		g_autofree char *path = g_build_filename(dir, name, NULL);
		struct stat st;

		if (lstat(path, &st) != 0)
			continue;
		if (S_ISDIR(st.st_mode) && depth < 12 && strcmp(name, ".git") != 0)
			scan_module_dir(kernel, path, depth + 1);
		else if (S_ISREG(st.st_mode) && is_module_path(name))
			add_kmod(kernel, name, path);
	}
}

/* Modules of a kernel build tree, or of an installed /lib/modules/RELEASE. */
static gboolean kernel_modules_from_dir(struct kernel *kernel, const char *dir, GError **error)
{
	g_autofree char *builtin = g_build_filename(dir, "modules.builtin", NULL);
	g_autofree char *text = NULL;

	kernel_init_tables(kernel);
	kernel->modules_from = g_strdup(dir);
	scan_module_dir(kernel, dir, 0);
	if (g_file_get_contents(builtin, &text, NULL, NULL))
		parse_builtin(kernel, text);
	if (g_hash_table_size(kernel->modules) == 0 && g_hash_table_size(kernel->builtin) == 0)
		return ivlab_fail(error, "image: %s has neither modules nor modules.builtin", dir);
	return TRUE;
}

static gboolean kmod_load_file(struct kmod *kmod, GError **error)
{
	g_autoptr(GMappedFile) mapped = g_mapped_file_new(kmod->location, FALSE, error);
	g_autoptr(GBytes) raw = NULL;

	if (!mapped)
		return FALSE;
	raw = g_mapped_file_get_bytes(mapped);
	return kmod_set_bytes(kmod, raw, error);
}

/* Post-order walk: every module after the ones it depends on. */
static gboolean order_modules(struct kernel *kernel, const char *name, gboolean from_deb,
			      GHashTable *seen, GPtrArray *order, GError **error)
{
	struct kmod *kmod;

	if (g_hash_table_contains(seen, name))
		return TRUE;
	g_hash_table_add(seen, g_strdup(name));
	kmod = g_hash_table_lookup(kernel->modules, name);
	if (!kmod)
		return ivlab_fail(error, "image: %s needs the module %s, which %s does not have", kernel->release,
			    name, kernel->modules_from);
	if (!kmod->depends && !from_deb && !kmod_load_file(kmod, error))
		return FALSE;
	for (char **dep = kmod->depends; dep && *dep; dep++)
		if (**dep && !order_modules(kernel, *dep, from_deb, seen, order, error))
			return FALSE;
	g_ptr_array_add(order, kmod);
	return TRUE;
}

/* The recipe's modules that are not built in, with their dependencies, in
 * load order; all of them read. */
static GPtrArray *select_modules(struct kernel *kernel, const struct recipe *recipe,
				 const char *deb_path, gboolean strict, GError **error)
{
	g_autoptr(GPtrArray) order = g_ptr_array_new();
	g_autoptr(GHashTable) seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	g_autoptr(GHashTable) missing = g_hash_table_new(g_str_hash, g_str_equal);

	for (char **name = recipe->modules; *name; name++) {
		g_autofree char *key = g_strdelimit(g_strdup(*name), "-", '_');

		if (g_hash_table_contains(kernel->builtin, key)) {
			ivlab_debug("%s: %s is built in", kernel->release, key);
			continue;
		}
		if (!strict && !g_hash_table_contains(kernel->modules, key)) {
			ivlab_info("%s: module %s is neither in %s nor built in: left out", kernel->release,
				   key, kernel->modules_from);
			continue;
		}
		if (!order_modules(kernel, key, deb_path != NULL, seen, order, error))
			return NULL;
	}
	for (guint i = 0; i < order->len; i++) {
		struct kmod *kmod = order->pdata[i];

		if (!kmod->bytes)
			g_hash_table_add(missing, kmod->name);
	}
	if (g_hash_table_size(missing) && deb_path &&
	    !kernel_deb_fetch(kernel, deb_path, missing, error))
		return NULL;
	for (guint i = 0; i < order->len; i++) {
		struct kmod *kmod = order->pdata[i];

		if (!kmod->bytes && !kmod_load_file(kmod, error))
			return NULL;
	}
	return g_steal_pointer(&order);
}

/* --- building the ivlab module ------------------------------------------- */

/* Debian's headers packages, unpacked once per release under the cache:
 * their Makefile names /usr/src absolutely and their scripts link to the
 * host's linux-kbuild-X, both rewritten to work from the cache. */
static char *prepare_debian_kbuild(const char *release, const struct deb *headers,
				   const struct deb *common, GError **error)
{
	g_autofree char *base = cache_dir("kbuild");
	g_autofree char *root = g_build_filename(base, release, NULL);
	g_autofree char *marker = g_build_filename(root, ".ivlab-complete", NULL);
	g_autofree char *want = g_strdup_printf("%s\n%s\n", headers->filename, common->filename);
	g_autofree char *have = NULL;
	g_autofree char *name = g_strdup_printf("linux-headers-%s", release);
	g_autofree char *dir = g_build_filename(root, "usr", "src", name, NULL);
	g_autofree char *makefile = g_build_filename(dir, "Makefile", NULL);
	g_autofree char *scripts = g_build_filename(dir, "scripts", NULL);
	g_autofree char *contents = NULL, *link = NULL, *fixed = NULL, *usr_src = NULL;

	if (g_file_get_contents(marker, &have, NULL, NULL) && strcmp(have, want) == 0)
		return g_steal_pointer(&dir);
	ivlab_info("unpacking %s and %s", headers->filename, common->filename);
	if (!remove_tree(root, error) || !make_dir(root, error) ||
	    !debpkg_extract(headers->path, root, NULL, NULL, error) ||
	    !debpkg_extract(common->path, root, NULL, NULL, error))
		return NULL;
	if (!g_file_get_contents(makefile, &contents, NULL, error))
		return NULL;
	usr_src = g_strconcat(root, "/usr/src/", NULL);
	{
		g_auto(GStrv) parts = g_strsplit(contents, "/usr/src/", -1);

		fixed = g_strjoinv(usr_src, parts);
	}
	if (!g_file_set_contents(makefile, fixed, -1, error))
		return NULL;

	/* scripts -> ../../lib/linux-kbuild-6.1/scripts: the host's kbuild. */
	link = g_file_read_link(scripts, NULL);
	if (link) {
		g_auto(GStrv) parts = g_strsplit(link, "/", -1);

		for (char **part = parts; *part; part++) {
			if (!g_str_has_prefix(*part, "linux-kbuild-"))
				continue;
			g_autofree char *host = g_build_filename("/usr/lib", *part, NULL);
			g_autofree char *lib = g_build_filename(root, "usr", "lib", NULL);
			g_autofree char *ours = g_build_filename(lib, *part, NULL);

			if (!g_file_test(host, G_FILE_TEST_IS_DIR)) {
				ivlab_fail(error, "image: the kernel headers need the host's %s: apt-get install %s",
				     *part, *part);
				return NULL;
			}
			if (!make_dir(lib, error))
				return NULL;
			if (symlink(host, ours) != 0 && errno != EEXIST) {
				fail_errno(error, ours);
				return NULL;
			}
		}
	}
	if (!g_file_set_contents(marker, want, -1, error))
		return NULL;
	return g_steal_pointer(&dir);
}

/* Builds ivlab.ko from a copy of the guest sources in work_dir/module. */
static GBytes *build_module(const char *arch, const struct recipe *recipe, const char *kbuild_dir,
			    const char *guest_dir, const char *work_dir, GError **error)
{
	g_autofree char *module_dir = g_build_filename(work_dir, "module", NULL);
	g_autofree char *m_arg = g_strdup_printf("M=%s", module_dir);
	g_autofree char *arch_arg = g_strdup_printf("ARCH=%s", recipe->kbuild_arch);
	g_autofree char *cross_arg = g_strdup_printf("CROSS_COMPILE=%s", recipe->cross_compile);
	g_autofree char *gcc = g_strdup_printf("%sgcc", recipe->cross_compile);
	g_autofree char *jobs = g_strdup_printf("-j%u", g_get_num_processors());
	g_autofree char *ko = g_build_filename(module_dir, "ivlab.ko", NULL);
	const char *const sources[] = { "Kbuild", "ivlab_drv.c", "include" };
	g_autoptr(GPtrArray) argv = g_ptr_array_new();
	g_autoptr(GMappedFile) mapped = NULL;
	g_auto(IvlabRun) run = { 0 };
	gboolean cross = strcmp(host_arch(), arch) != 0;

	if (!make_dir(module_dir, error))
		return NULL;
	for (gsize i = 0; i < G_N_ELEMENTS(sources); i++) {
		g_autofree char *from = g_build_filename(guest_dir, sources[i], NULL);
		g_autofree char *to = g_build_filename(module_dir, sources[i], NULL);

		if (!g_file_test(from, G_FILE_TEST_EXISTS)) {
			ivlab_fail(error, "image: the module source %s is missing", from);
			return NULL;
		}
		if (!copy_tree(from, to, error))
			return NULL;
	}
	g_autofree char *gcc_path = cross ? g_find_program_in_path(gcc) : NULL;

	if (cross && !gcc_path) {
		ivlab_fail(error, "image: %s not found: the %s module cross-builds with it (apt-get install gcc-%s)",
		     gcc, arch, strcmp(arch, "aarch64") == 0 ? "aarch64-linux-gnu" : "x86-64-linux-gnu");
		return NULL;
	}
	arg(argv, "make");
	g_ptr_array_add(argv, jobs);
	arg(argv, "-C");
	g_ptr_array_add(argv, (char *)kbuild_dir);
	g_ptr_array_add(argv, m_arg);
	if (cross) {
		g_ptr_array_add(argv, arch_arg);
		g_ptr_array_add(argv, cross_arg);
	}
	arg(argv, "modules");
	g_ptr_array_add(argv, NULL);
	ivlab_info("%s: building the ivlab module against %s", arch, kbuild_dir);
	run.argv = (const char *const *)argv->pdata;
	run.cwd = module_dir;
	if (!ivlab_run(&run, error)) {
		g_prefix_error(error, "image: the %s module did not build: ", arch);
		return NULL;
	}
	mapped = g_mapped_file_new(ko, FALSE, error);
	if (!mapped)
		return NULL;
	return g_bytes_new(g_mapped_file_get_contents(mapped), g_mapped_file_get_length(mapped));
}

/* --- the manifest -------------------------------------------------------- */

static gboolean manifest_inputs_equal(GKeyFile *old, GKeyFile *now)
{
	g_auto(GStrv) old_keys = g_key_file_get_keys(old, MANIFEST_INPUTS, NULL, NULL);
	g_auto(GStrv) new_keys = g_key_file_get_keys(now, MANIFEST_INPUTS, NULL, NULL);

	if (!old_keys || !new_keys || g_strv_length(old_keys) != g_strv_length(new_keys))
		return FALSE;
	for (char **key = new_keys; *key; key++) {
		g_autofree char *a = g_key_file_get_value(old, MANIFEST_INPUTS, *key, NULL);
		g_autofree char *b = g_key_file_get_value(now, MANIFEST_INPUTS, *key, NULL);

		if (g_strcmp0(a, b) != 0) {
			ivlab_debug("input %s changed: %s -> %s", *key, a ? a : "(none)", b);
			return FALSE;
		}
	}
	return TRUE;
}

/* The files the manifest lists are there and unchanged. */
static gboolean manifest_outputs_intact(GKeyFile *manifest, const char *arch)
{
	g_autofree char *kernel = image_kernel_path(arch);
	g_autofree char *initrd = image_initrd_path(arch);
	const char *const files[][2] = { { "vmlinuz", kernel }, { "initrd.img", initrd } };

	for (gsize i = 0; i < G_N_ELEMENTS(files); i++) {
		g_autofree char *want = g_key_file_get_string(manifest, MANIFEST_OUTPUTS, files[i][0], NULL);
		g_autofree char *have = fetch_file_sha256(files[i][1], NULL);

		if (!want || !have || strcmp(want, have) != 0)
			return FALSE;
	}
	return TRUE;
}

static GKeyFile *manifest_load(const char *arch)
{
	g_autofree char *path = manifest_path(arch);
	g_autoptr(GKeyFile) manifest = g_key_file_new();

	if (!g_key_file_load_from_file(manifest, path, G_KEY_FILE_NONE, NULL))
		return NULL;
	return g_steal_pointer(&manifest);
}

void image_info_free(ImageInfo *info)
{
	if (!info)
		return;
	g_free(info->arch);
	g_free(info->kernel_release);
	g_free(info->source);
	g_free(info->console);
	g_free(info->built);
	g_free(info->kernel_path);
	g_free(info->initrd_path);
	g_free(info);
}

ImageInfo *image_info_load(const char *arch, GError **error)
{
	g_autoptr(GKeyFile) manifest = NULL;
	g_autoptr(ImageInfo) info = NULL;
	struct stat st;

	if (!image_arch_is_known(arch)) {
		ivlab_fail(error, "image: unknown architecture '%s' (x86_64 or aarch64)", arch);
		return NULL;
	}
	manifest = manifest_load(arch);
	if (!manifest)
		return NULL;
	info = g_new0(ImageInfo, 1);
	info->arch = g_strdup(arch);
	info->kernel_release = g_key_file_get_string(manifest, MANIFEST_IMAGE, "kernel-release", NULL);
	info->source = g_key_file_get_string(manifest, MANIFEST_IMAGE, "source", NULL);
	info->console = g_key_file_get_string(manifest, MANIFEST_IMAGE, "console", NULL);
	info->built = g_key_file_get_string(manifest, MANIFEST_IMAGE, "built", NULL);
	info->kernel_path = image_kernel_path(arch);
	info->initrd_path = image_initrd_path(arch);
	if (stat(info->kernel_path, &st) == 0)
		info->kernel_size = st.st_size;
	if (stat(info->initrd_path, &st) == 0)
		info->initrd_size = st.st_size;
	info->intact = manifest_outputs_intact(manifest, arch);
	return g_steal_pointer(&info);
}

/* --- one build ----------------------------------------------------------- */

struct build {
	const char *arch;
	const struct image_source *source;
	struct recipe recipe;
	char *image_dir;
	char *guest_dir;
	char *init_path;
	char *agent_path;
	GKeyFile *manifest; /* the one this build writes */
	char *source_text;  /* manifest [image] source */
	/* Debian */
	struct deb debs[4]; /* image, headers, common, busybox */
	/* URL / local */
	char *kernel_file;
	char *build_dir;
};

enum { DEB_IMAGE, DEB_HEADERS, DEB_COMMON, DEB_BUSYBOX };

static void build_clear(struct build *build)
{
	recipe_clear(&build->recipe);
	g_free(build->image_dir);
	g_free(build->guest_dir);
	g_free(build->init_path);
	g_free(build->agent_path);
	if (build->manifest)
		g_key_file_unref(build->manifest);
	g_free(build->source_text);
	for (gsize i = 0; i < G_N_ELEMENTS(build->debs); i++)
		deb_clear(&build->debs[i]);
	g_free(build->kernel_file);
	g_free(build->build_dir);
}

static void input(struct build *build, const char *key, const char *value)
{
	g_key_file_set_string(build->manifest, MANIFEST_INPUTS, key, value);
}

/* A kernel build directory's identity: what a rebuild of it changes. */
static char *build_dir_identity(const char *dir)
{
	g_autoptr(GChecksum) sum = g_checksum_new(G_CHECKSUM_SHA256);
	const char *const files[] = { ".config", "Module.symvers", "include/generated/utsrelease.h" };

	g_checksum_update(sum, (const guchar *)dir, strlen(dir) + 1);
	for (gsize i = 0; i < G_N_ELEMENTS(files); i++) {
		g_autofree char *path = g_build_filename(dir, files[i], NULL);

		hash_tree(sum, path, files[i]);
	}
	return g_strdup(g_checksum_get_string(sum));
}

/* What every image has as inputs, whatever its kernel. */
static gboolean common_inputs(struct build *build, GError **error)
{
	g_autoptr(GChecksum) module_sum = g_checksum_new(G_CHECKSUM_SHA256);
	g_autofree char *init_sha = NULL, *agent_sha = NULL;
	const char *const sources[] = { "Kbuild", "ivlab_drv.c", "include" };

	build->guest_dir = find_guest_dir(error);
	if (!build->guest_dir)
		return FALSE;
	build->init_path = g_build_filename(build->guest_dir, "init", NULL);
	init_sha = fetch_file_sha256(build->init_path, error);
	if (!init_sha)
		return FALSE;
	build->agent_path = find_agent(build->arch, error);
	if (!build->agent_path || !(agent_sha = fetch_file_sha256(build->agent_path, error)))
		return FALSE;
	for (gsize i = 0; i < G_N_ELEMENTS(sources); i++) {
		g_autofree char *path = g_build_filename(build->guest_dir, sources[i], NULL);

		hash_tree(module_sum, path, sources[i]);
	}
	input(build, "format", IMAGE_FORMAT);
	input(build, "arch", build->arch);
	input(build, "recipe", build->recipe.sha256);
	input(build, "init", init_sha);
	input(build, "agent", agent_sha);
	input(build, "module-source", g_checksum_get_string(module_sum));
	return TRUE;
}

/* What apt's answers depend on: its package lists, its configuration and
 * dpkg's architectures. While it is unchanged, the debs resolved last time
 * still are the current ones (apt-cache takes seconds per call here). */
static char *apt_state(void)
{
	g_autoptr(GChecksum) sum = g_checksum_new(G_CHECKSUM_SHA256);
	const char *const dirs[] = { "/var/lib/apt/lists", "/etc/apt", "/etc/apt/sources.list.d",
				     "/etc/apt/preferences.d", "/etc/apt/apt.conf.d" };
	const char *const files[] = { "/var/lib/dpkg/arch" };

	for (gsize i = 0; i < G_N_ELEMENTS(dirs); i++) {
		g_autoptr(GDir) dir = g_dir_open(dirs[i], 0, NULL);
		g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
		const char *name;

		while (dir && (name = g_dir_read_name(dir)))
			g_ptr_array_add(names, g_strdup(name));
		g_ptr_array_sort(names, compare_names);
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

#define MANIFEST_APT "apt"

/* The debs [first, first + count) the last build resolved, if apt cannot
 * have changed its mind since. */
static gboolean apt_reuse(struct build *build, GKeyFile *old, const char *state, gsize first,
			  gsize count)
{
	g_autofree char *old_state = old ? g_key_file_get_string(old, MANIFEST_APT, "state", NULL) : NULL;

	if (!old_state || strcmp(old_state, state) != 0)
		return FALSE;
	for (gsize i = first; i < first + count; i++) {
		g_autofree char *spec_key = g_strdup_printf("spec-%zu", i);
		g_autofree char *file_key = g_strdup_printf("file-%zu", i);
		g_autofree char *spec = g_key_file_get_string(old, MANIFEST_APT, spec_key, NULL);
		g_autofree char *file = g_key_file_get_string(old, MANIFEST_APT, file_key, NULL);

		if (!spec || !file)
			return FALSE;
	}
	for (gsize i = first; i < first + count; i++) {
		g_autofree char *spec_key = g_strdup_printf("spec-%zu", i);
		g_autofree char *file_key = g_strdup_printf("file-%zu", i);

		g_autofree char *sha_key = g_strdup_printf("sha256-%zu", i);

		build->debs[i].spec = g_key_file_get_string(old, MANIFEST_APT, spec_key, NULL);
		build->debs[i].filename = g_key_file_get_string(old, MANIFEST_APT, file_key, NULL);
		build->debs[i].sha256 = g_key_file_get_string(old, MANIFEST_APT, sha_key, NULL);
	}
	ivlab_debug("%s: apt's lists are unchanged since the last build", build->arch);
	return TRUE;
}

static void apt_remember(struct build *build, const char *state, gsize first, gsize count)
{
	g_key_file_set_string(build->manifest, MANIFEST_APT, "state", state);
	for (gsize i = first; i < first + count; i++) {
		g_autofree char *spec_key = g_strdup_printf("spec-%zu", i);
		g_autofree char *file_key = g_strdup_printf("file-%zu", i);

		g_key_file_set_string(build->manifest, MANIFEST_APT, spec_key, build->debs[i].spec);
		g_key_file_set_string(build->manifest, MANIFEST_APT, file_key, build->debs[i].filename);
		if (build->debs[i].sha256) {
			g_autofree char *sha_key = g_strdup_printf("sha256-%zu", i);

			g_key_file_set_string(build->manifest, MANIFEST_APT, sha_key, build->debs[i].sha256);
		}
	}
}

static gboolean apt_resolve_debs(struct build *build, GError **error)
{
	const struct recipe *recipe = &build->recipe;
	g_autofree char *image = NULL, *release = NULL, *headers = NULL, *common = NULL;
	g_autofree char *busybox = NULL, *flavour_suffix = NULL;

	if (!apt_check_arch(recipe->debian_arch, error))
		return FALSE;
	image = apt_resolve_kernel(recipe, error);
	if (!image)
		return FALSE;
	release = g_strdup(image + strlen("linux-image-"));
	flavour_suffix = g_strdup_printf("-%s", recipe->flavour);
	if (!g_str_has_suffix(release, flavour_suffix))
		return ivlab_fail(error, "image: %s is not of the flavour %s", image, recipe->flavour);
	g_autofree char *abi = g_strndup(release, strlen(release) - strlen(flavour_suffix));
	g_autofree char *image_q = qualified(image, recipe->debian_arch);
	g_autofree char *headers_name = g_strdup_printf("linux-headers-%s", release);

	headers = qualified(headers_name, recipe->debian_arch);
	common = g_strdup_printf("linux-headers-%s-common", abi);
	busybox = qualified(recipe->busybox_package, recipe->debian_arch);
	const char *const names[] = { image_q, headers, common, busybox, NULL };

	return apt_candidates(build->debs, names, error);
}

static gboolean debian_inputs(struct build *build, GKeyFile *old, GError **error)
{
	g_autofree char *state = apt_state();

	if (!apt_reuse(build, old, state, 0, G_N_ELEMENTS(build->debs)) &&
	    !apt_resolve_debs(build, error))
		return FALSE;
	apt_remember(build, state, 0, G_N_ELEMENTS(build->debs));
	input(build, "kernel-deb", build->debs[DEB_IMAGE].filename);
	input(build, "headers-deb", build->debs[DEB_HEADERS].filename);
	input(build, "common-deb", build->debs[DEB_COMMON].filename);
	input(build, "busybox-deb", build->debs[DEB_BUSYBOX].filename);
	build->source_text = g_strdup_printf("debian %s", build->debs[DEB_IMAGE].spec);
	return TRUE;
}

static gboolean custom_inputs(struct build *build, GKeyFile *old, GError **error)
{
	const struct image_source *source = build->source;
	g_autofree char *kernel_sha = NULL;

	if (source->kernel_build_dir) {
		if (!g_file_test(source->kernel_build_dir, G_FILE_TEST_IS_DIR))
			return ivlab_fail(error, "image: --kernel-build-dir %s is not a directory",
				    source->kernel_build_dir);
		build->build_dir = g_canonicalize_filename(source->kernel_build_dir, NULL);
		g_autofree char *identity = build_dir_identity(build->build_dir);
		input(build, "kernel-build-dir", identity);
	}
	if (source->kind == IMAGE_SOURCE_URL) {
		if (!source->kernel_url || !source->kernel_sha256)
			return ivlab_fail(error, "image: --kernel-url needs --kernel-sha256");
		if (!fetch_sha256_is_valid(source->kernel_sha256))
			return ivlab_fail(error, "image: --kernel-sha256 must be 64 hex digits, not '%s'",
				    source->kernel_sha256);
		kernel_sha = g_ascii_strdown(source->kernel_sha256, -1);
		build->source_text = g_strdup_printf("url %s", source->kernel_url);
	} else {
		if (!source->kernel_path || !source->kernel_build_dir)
			return ivlab_fail(error, "image: --kernel needs --kernel-build-dir (to build the module)");
		build->kernel_file = g_canonicalize_filename(source->kernel_path, NULL);
		kernel_sha = fetch_file_sha256(build->kernel_file, error);
		if (!kernel_sha)
			return FALSE;
		build->source_text = g_strdup_printf("local %s", build->kernel_file);
	}
	input(build, "kernel-sha256", kernel_sha);

	/* busybox comes from Debian whatever the kernel. */
	const struct recipe *recipe = &build->recipe;
	g_autofree char *busybox = qualified(recipe->busybox_package, recipe->debian_arch);
	const char *const names[] = { busybox, NULL };
	g_autofree char *state = apt_state();

	if (!apt_reuse(build, old, state, DEB_BUSYBOX, 1) &&
	    (!apt_check_arch(recipe->debian_arch, error) ||
	     !apt_candidates(&build->debs[DEB_BUSYBOX], names, error)))
		return FALSE;
	apt_remember(build, state, DEB_BUSYBOX, 1);
	input(build, "busybox-deb", build->debs[DEB_BUSYBOX].filename);
	return TRUE;
}

/* The release modules must match: UTS_RELEASE (Debian's headers carry
 * the upstream version in kernel.release, the ABI in utsrelease.h). */
static char *build_dir_release(const char *dir, GError **error)
{
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

/* The kernel, its modules and the directory to build the module in. */
static gboolean gather_kernel(struct build *build, struct kernel *kernel, GHashTable *keep,
			      char **kbuild_dir, char **modules_deb, GError **error)
{
	const struct image_source *source = build->source;
	g_autofree char *kernel_file = NULL;

	if (source->kind == IMAGE_SOURCE_DEBIAN) {
		if (!apt_download(build->debs, G_N_ELEMENTS(build->debs), error))
			return FALSE;
		ivlab_info("%s: reading %s", build->arch, build->debs[DEB_IMAGE].filename);
		if (!kernel_from_deb(kernel, build->debs[DEB_IMAGE].path, keep, error))
			return FALSE;
		*kbuild_dir = prepare_debian_kbuild(kernel->release, &build->debs[DEB_HEADERS],
						    &build->debs[DEB_COMMON], error);
		*modules_deb = g_strdup(build->debs[DEB_IMAGE].path);
		return *kbuild_dir != NULL;
	}

	if (source->kind == IMAGE_SOURCE_URL) {
		g_autofree char *downloads = cache_dir("downloads");

		kernel_file = fetch_cached(source->kernel_url, source->kernel_sha256, downloads, error);
		if (!kernel_file)
			return FALSE;
	} else {
		kernel_file = g_strdup(build->kernel_file);
	}

	if (debpkg_is_deb(kernel_file)) {
		if (!kernel_from_deb(kernel, kernel_file, keep, error))
			return FALSE;
		*modules_deb = g_strdup(kernel_file);
		if (build->build_dir) {
			*kbuild_dir = g_strdup(build->build_dir);
			return TRUE;
		}
		/* Debian's own kernel from elsewhere: its headers from apt. */
		const struct recipe *recipe = &build->recipe;
		g_autofree char *suffix = g_strdup_printf("-%s", recipe->flavour);
		if (!g_str_has_suffix(kernel->release, suffix))
			return ivlab_fail(error, "image: %s: give --kernel-build-dir to build the module for %s",
				    kernel_file, kernel->release);
		g_autofree char *abi = g_strndup(kernel->release, strlen(kernel->release) - strlen(suffix));
		g_autofree char *headers_name = g_strdup_printf("linux-headers-%s", kernel->release);
		g_autofree char *headers = qualified(headers_name, recipe->debian_arch);
		g_autofree char *common = g_strdup_printf("linux-headers-%s-common", abi);
		const char *const names[] = { headers, common, NULL };
		struct deb *debs = &build->debs[DEB_HEADERS];

		if (!apt_check_arch(recipe->debian_arch, error) || !apt_candidates(debs, names, error) ||
		    !apt_download(debs, 2, error))
			return FALSE;
		*kbuild_dir = prepare_debian_kbuild(kernel->release, &debs[0], &debs[1], error);
		return *kbuild_dir != NULL;
	}

	/* A bare bzImage/Image: modules from the build directory, or from the
	 * host's /lib/modules/RELEASE when the directory has none. */
	if (!build->build_dir)
		return ivlab_fail(error, "image: %s is a bare kernel image: give --kernel-build-dir to build "
				   "the module against",
			    kernel_file);
	g_autoptr(GMappedFile) mapped = g_mapped_file_new(kernel_file, FALSE, error);
	if (!mapped)
		return FALSE;
	kernel->release = build_dir_release(build->build_dir, error);
	if (!kernel->release)
		return FALSE;
	g_autofree char *installed = g_build_filename("/lib/modules", kernel->release, NULL);
	g_autoptr(GError) dir_error = NULL;
	g_autofree char *release = g_strdup(kernel->release);

	if (!kernel_modules_from_dir(kernel, build->build_dir, &dir_error)) {
		kernel_clear(kernel);
		memset(kernel, 0, sizeof(*kernel));
		kernel->release = g_steal_pointer(&release);
		if (!g_file_test(installed, G_FILE_TEST_IS_DIR))
			return ivlab_fail(error, "%s; nor is there %s", dir_error->message, installed);
		if (!kernel_modules_from_dir(kernel, installed, error))
			return FALSE;
	}
	kernel->vmlinuz = g_mapped_file_get_bytes(mapped);
	*kbuild_dir = g_strdup(build->build_dir);
	return TRUE;
}


struct busybox_scan {
	const char *deb_path;
	GBytes *busybox;
};

static gboolean scan_busybox(struct archive *data, struct archive_entry *entry, const char *path,
			     gpointer user_data, GError **error)
{
	struct busybox_scan *scan = user_data;

	if (strcmp(path, "bin/busybox") != 0 || archive_entry_filetype(entry) != AE_IFREG)
		return TRUE;
	scan->busybox = debpkg_read_member(data, scan->deb_path, path, 64 << 20, error);
	return scan->busybox != NULL;
}

static GBytes *busybox_from_deb(const char *deb_path, GError **error)
{
	struct busybox_scan scan = { deb_path, NULL };

	if (!debpkg_foreach(deb_path, scan_busybox, &scan, error)) {
		if (scan.busybox)
			g_bytes_unref(scan.busybox);
		return NULL;
	}
	if (!scan.busybox)
		ivlab_fail(error, "%s: no bin/busybox in the package", deb_path);
	return scan.busybox;
}

/* The layout src/guest/init expects: /bin/busybox and its applet links,
 * /init, /sbin/ivlab-agent, /lib/modules/ *.ko and load.list naming the
 * virtio modules in load order (the ivlab module is ivlab.ko beside them). */
static gboolean assemble_initramfs(struct build *build, const struct kernel *kernel,
				   GPtrArray *modules, GBytes *ivlab_ko, GBytes *busybox,
				   const char *out_path, GError **error)
{
	g_autoptr(Initramfs) initramfs = initramfs_new();
	g_autoptr(GString) load_list = g_string_new(NULL);
	g_autoptr(GBytes) list_bytes = NULL, info_bytes = NULL;
	g_auto(GStrv) applets = image_busybox_applets(busybox, error);
	const char *const dirs[] = { "/bin", "/sbin", "/dev", "/proc", "/sys", "/tmp", "/run",
				     "/etc", "/root", "/mnt", "/lib/modules" };

	if (!applets)
		return FALSE;
	for (gsize i = 0; i < G_N_ELEMENTS(dirs); i++)
		initramfs_add_dir(initramfs, dirs[i], strcmp(dirs[i], "/tmp") == 0 ? 01777 : 0755);
	/* The kernel opens /dev/console for /init before anything mounts devtmpfs. */
	initramfs_add_chardev(initramfs, "/dev/console", 5, 1, 0600);
	initramfs_add_chardev(initramfs, "/dev/null", 1, 3, 0666);
	initramfs_add_bytes(initramfs, "/bin/busybox", busybox, 0755);
	for (char **applet = applets; *applet; applet++) {
		g_autofree char *path = g_build_filename("/bin", *applet, NULL);

		if (strcmp(*applet, "busybox") != 0 && !strchr(*applet, '/') &&
		    !initramfs_has(initramfs, path))
			initramfs_add_symlink(initramfs, path, "busybox");
	}
	if (!initramfs_add_file(initramfs, "/init", build->init_path, 0755, error) ||
	    !initramfs_add_file(initramfs, "/sbin/ivlab-agent", build->agent_path, 0755, error))
		return FALSE;
	for (guint i = 0; i < modules->len; i++) {
		const struct kmod *kmod = modules->pdata[i];
		g_autofree char *file = g_strdup_printf("%s.ko", kmod->name);
		g_autofree char *path = g_build_filename("/lib/modules", file, NULL);

		initramfs_add_bytes(initramfs, path, kmod->bytes, 0644);
		g_string_append_printf(load_list, "%s\n", file);
	}
	initramfs_add_bytes(initramfs, "/lib/modules/ivlab.ko", ivlab_ko, 0644);
	list_bytes = g_bytes_new(load_list->str, load_list->len);
	initramfs_add_bytes(initramfs, "/lib/modules/load.list", list_bytes, 0644);
	g_autofree char *info = g_strdup_printf("arch=%s\nkernel=%s\nsource=%s\n", build->arch,
						kernel->release, build->source_text);
	info_bytes = g_bytes_new(info, strlen(info));
	initramfs_add_bytes(initramfs, "/etc/ivlab-image", info_bytes, 0644);
	return initramfs_write(initramfs, out_path, build->recipe.compression, error);
}

static gboolean write_bytes(const char *path, GBytes *bytes, GError **error)
{
	gsize size;
	const void *data = g_bytes_get_data(bytes, &size);

	return g_file_set_contents_full(path, data, size, G_FILE_SET_CONTENTS_CONSISTENT, 0644, error);
}

typedef struct kernel Kernel;
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(Kernel, kernel_clear)

/* Moves the work dir's outputs into the image dir; the old manifest goes
 * first so that an interrupted install is never taken for up to date. */
static gboolean install_outputs(struct build *build, const char *work_dir, GError **error)
{
	g_autofree char *manifest_file = manifest_path(build->arch);
	g_autofree char *text = g_key_file_to_data(build->manifest, NULL, NULL);
	const char *const names[] = { "vmlinuz", "initrd.img" };

	if (g_unlink(manifest_file) != 0 && errno != ENOENT)
		return fail_errno(error, manifest_file);
	for (gsize i = 0; i < G_N_ELEMENTS(names); i++) {
		g_autofree char *from = g_build_filename(work_dir, names[i], NULL);
		g_autofree char *to = g_build_filename(build->image_dir, names[i], NULL);

		if (g_chmod(from, 0644) != 0 || g_rename(from, to) != 0)
			return fail_errno(error, to);
	}
	return g_file_set_contents_full(manifest_file, text, -1, G_FILE_SET_CONTENTS_CONSISTENT, 0644,
					error);
}

static void record_outputs(struct build *build, const struct kernel *kernel, GPtrArray *modules,
			   const char *kernel_sha, const char *initrd_sha, const char *module_sha)
{
	GKeyFile *manifest = build->manifest;
	g_autoptr(GDateTime) now = g_date_time_new_now_utc();
	g_autofree char *built = g_date_time_format(now, "%Y-%m-%dT%H:%M:%SZ");
	g_autoptr(GString) names = g_string_new(NULL);
	static const char *const kinds[] = { "debian", "url", "local" };

	for (guint i = 0; i < modules->len; i++)
		g_string_append_printf(names, "%s%s", i ? ";" : "",
				       ((struct kmod *)modules->pdata[i])->name);
	g_key_file_set_string(manifest, MANIFEST_IMAGE, "arch", build->arch);
	g_key_file_set_string(manifest, MANIFEST_IMAGE, "kernel-release", kernel->release);
	g_key_file_set_string(manifest, MANIFEST_IMAGE, "source", build->source_text);
	g_key_file_set_string(manifest, MANIFEST_IMAGE, "source-kind", kinds[build->source->kind]);
	g_key_file_set_string(manifest, MANIFEST_IMAGE, "console", build->recipe.console);
	g_key_file_set_string(manifest, MANIFEST_IMAGE, "built", built);
	g_key_file_set_string(manifest, MANIFEST_IMAGE, "ivlab", PACKAGE_VERSION);
	g_key_file_set_string(manifest, MANIFEST_IMAGE, "modules", names->str);
	g_key_file_set_string(manifest, MANIFEST_OUTPUTS, "vmlinuz", kernel_sha);
	g_key_file_set_string(manifest, MANIFEST_OUTPUTS, "initrd.img", initrd_sha);
	g_key_file_set_string(manifest, MANIFEST_OUTPUTS, "ivlab.ko", module_sha);
}

/* Everything after the inputs are known: gather, build, assemble, install. */
static gboolean build_image(struct build *build, const char *work_dir, GError **error)
{
	g_auto(Kernel) kernel = { 0 };
	g_autofree char *kbuild_dir = NULL, *modules_deb = NULL;
	g_autoptr(GHashTable) keep = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	g_autoptr(GPtrArray) modules = NULL;
	g_autoptr(GBytes) ivlab_ko = NULL, busybox = NULL;
	g_autofree char *vermagic = NULL, *kernel_out = NULL, *initrd_out = NULL;
	g_autofree char *kernel_sha = NULL, *initrd_sha = NULL, *module_sha = NULL;

	for (char **name = build->recipe.modules; *name; name++)
		g_hash_table_add(keep, g_strdelimit(g_strdup(*name), "-", '_'));

	if (!gather_kernel(build, &kernel, keep, &kbuild_dir, &modules_deb, error))
		return FALSE;
	modules = select_modules(&kernel, &build->recipe, modules_deb,
				 build->source->kind == IMAGE_SOURCE_DEBIAN, error);
	if (!modules)
		return FALSE;
	ivlab_ko = build_module(build->arch, &build->recipe, kbuild_dir, build->guest_dir, work_dir,
				error);
	if (!ivlab_ko)
		return FALSE;
	/* A module built against other headers would not load: say so now. */
	vermagic = image_modinfo(ivlab_ko, "vermagic");
	if (!vermagic || !g_str_has_prefix(vermagic, kernel.release) ||
	    vermagic[strlen(kernel.release)] != ' ')
		return ivlab_fail(error, "image: the module was built for '%s' but the kernel is %s "
				   "(wrong build directory?)",
			    vermagic ? vermagic : "?", kernel.release);
	if (!build->debs[DEB_BUSYBOX].path && !apt_download(&build->debs[DEB_BUSYBOX], 1, error))
		return FALSE;
	busybox = busybox_from_deb(build->debs[DEB_BUSYBOX].path, error);
	if (!busybox)
		return FALSE;

	kernel_out = g_build_filename(work_dir, "vmlinuz", NULL);
	initrd_out = g_build_filename(work_dir, "initrd.img", NULL);
	if (!write_bytes(kernel_out, kernel.vmlinuz, error) ||
	    !assemble_initramfs(build, &kernel, modules, ivlab_ko, busybox, initrd_out, error))
		return FALSE;
	kernel_sha = bytes_sha256(kernel.vmlinuz);
	module_sha = bytes_sha256(ivlab_ko);
	initrd_sha = fetch_file_sha256(initrd_out, error);
	if (!initrd_sha)
		return FALSE;
	for (gsize i = 0; i < G_N_ELEMENTS(build->debs); i++) {
		g_autofree char *sha = NULL;

		if (!build->debs[i].path)
			continue;
		sha = build->debs[i].verified ? g_strdup(build->debs[i].sha256) :
						fetch_file_sha256(build->debs[i].path, error);
		if (!sha)
			return FALSE;
		g_key_file_set_string(build->manifest, MANIFEST_DEBS, build->debs[i].filename, sha);
	}
	record_outputs(build, &kernel, modules, kernel_sha, initrd_sha, module_sha);
	return install_outputs(build, work_dir, error);
}

typedef struct build Build;
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(Build, build_clear)

static char *describe(GKeyFile *manifest)
{
	g_autofree char *release = g_key_file_get_string(manifest, MANIFEST_IMAGE, "kernel-release", NULL);
	g_autofree char *built = g_key_file_get_string(manifest, MANIFEST_IMAGE, "built", NULL);

	return g_strdup_printf("kernel %s, built %s", release ? release : "?", built ? built : "?");
}

/* An up-to-date image learns the apt state its debs were checked against,
 * so that the next check need not ask apt again. */
static void remember_apt_state(GKeyFile *old, GKeyFile *now, const char *arch)
{
	g_autofree char *old_state = g_key_file_get_string(old, MANIFEST_APT, "state", NULL);
	g_autofree char *new_state = g_key_file_get_string(now, MANIFEST_APT, "state", NULL);
	g_auto(GStrv) keys = g_key_file_get_keys(now, MANIFEST_APT, NULL, NULL);
	g_autofree char *path = manifest_path(arch);
	g_autofree char *text = NULL;

	if (!new_state || g_strcmp0(old_state, new_state) == 0)
		return;
	for (char **key = keys; key && *key; key++) {
		g_autofree char *value = g_key_file_get_value(now, MANIFEST_APT, *key, NULL);

		g_key_file_set_value(old, MANIFEST_APT, *key, value);
	}
	text = g_key_file_to_data(old, NULL, NULL);
	g_file_set_contents_full(path, text, -1, G_FILE_SET_CONTENTS_CONSISTENT, 0644, NULL);
}

gboolean image_ensure(const char *arch, const struct image_source *source, GError **error)
{
	static const struct image_source debian = { .kind = IMAGE_SOURCE_DEBIAN };
	g_auto(Build) build = { 0 };
	g_auto(HeldLock) lock_fd = -1;
	g_autoptr(GKeyFile) old = NULL;
	g_autoptr(GError) inputs_error = NULL;
	g_autofree char *lock_path = NULL, *work_dir = NULL, *images = NULL, *waiting_for = NULL;
	g_autofree char *about = NULL;
	gboolean ok, old_intact;

	if (!image_arch_is_known(arch))
		return ivlab_fail(error, "image: unknown architecture '%s' (x86_64 or aarch64)", arch);
	build.arch = arch;
	build.image_dir = ivlab_image_dir(arch);
	images = g_path_get_dirname(build.image_dir);
	if (!make_dir(build.image_dir, error))
		return FALSE;
	if (geteuid() == 0) {
		/* QEMU then runs as libvirt-qemu, which must reach the files. */
		make_reachable(ivlab_state_dir());
		make_reachable(images);
		make_reachable(build.image_dir);
	}
	lock_path = g_build_filename(build.image_dir, ".lock", NULL);
	waiting_for = g_strdup_printf("another build of the %s image", arch);
	lock_fd = lock_file(lock_path, waiting_for, error);
	if (lock_fd < 0)
		return FALSE;

	old = manifest_load(arch);
	old_intact = old && manifest_outputs_intact(old, arch);
	about = old ? describe(old) : NULL;
	if (!source && old_intact) {
		g_autofree char *kind = g_key_file_get_string(old, MANIFEST_IMAGE, "source-kind", NULL);
		g_autofree char *what = g_key_file_get_string(old, MANIFEST_IMAGE, "source", NULL);

		if (g_strcmp0(kind, "debian") != 0) {
			ivlab_info("%s: keeping the image built from %s (%s)", arch, what, about);
			return TRUE;
		}
	}
	build.source = source ? source : &debian;
	build.manifest = g_key_file_new();
	if (!recipe_load(arch, &build.recipe, error) || !common_inputs(&build, error))
		return FALSE;
	ok = build.source->kind == IMAGE_SOURCE_DEBIAN ? debian_inputs(&build, old, &inputs_error) :
							  custom_inputs(&build, old, &inputs_error);
	if (!ok) {
		/* Offline, or apt's lists gone: an intact Debian image still serves. */
		if (!source && old_intact) {
			ivlab_info("%s: cannot check for a newer kernel (%s); using the image as it is (%s)",
				   arch, inputs_error->message, about);
			return TRUE;
		}
		g_propagate_error(error, g_steal_pointer(&inputs_error));
		return FALSE;
	}
	if (!build.source->force && old_intact && manifest_inputs_equal(old, build.manifest)) {
		remember_apt_state(old, build.manifest, arch);
		ivlab_info("%s: image up to date (%s)", arch, about);
		return TRUE;
	}

	ivlab_info("%s: building the image from %s", arch, build.source_text);
	work_dir = g_build_filename(build.image_dir, "work-XXXXXX", NULL);
	if (!g_mkdtemp(work_dir))
		return fail_errno(error, work_dir);
	gint64 start = g_get_monotonic_time();
	ok = build_image(&build, work_dir, error);
	remove_tree(work_dir, NULL);
	if (ok) {
		g_autofree char *done = describe(build.manifest);

		ivlab_info("%s: image built in %.1f s (%s): %s", arch,
			   (g_get_monotonic_time() - start) / 1e6, done, build.image_dir);
	}
	return ok;
}
