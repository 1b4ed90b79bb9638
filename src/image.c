/* image.c: the guest image pipeline's recipe, manifest and orchestration:
 * Debian packages (apt.c, debpkg.c) or a URL or a local kernel -> the
 * ivlab module built with Kbuild (kbuild.c), the virtio modules with their
 * dependencies (kmod.c), busybox, the agent and /init (initramfs.c) ->
 * vmlinuz + initrd.img and a manifest of every input, so an unchanged
 * image is never rebuilt. */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <glib/gstdio.h>

#include "apt.h"
#include "arch.h"
#include "debpkg.h"
#include "fetch.h"
#include "host.h"
#include "image.h"
#include "initramfs.h"
#include "ivlab.h"
#include "kbuild.h"
#include "kimage.h"
#include "kmod.h"

/* Bump when the pipeline changes what it puts in an image. */
#define IMAGE_FORMAT "2"
#define MANIFEST_FILE "manifest"
#define MANIFEST_IMAGE "image"
#define MANIFEST_INPUTS "inputs"
#define MANIFEST_OUTPUTS "outputs"
#define MANIFEST_STAMPS "stamps"
#define MANIFEST_DEBS "debs"
#define MANIFEST_APT "apt"
/* A Debian kernel metapackage is named after the flavour it installs. */
#define KERNEL_METAPACKAGE_PREFIX "linux-image-"
/* Where busybox-static keeps its one binary, and a bound on its size. */
#define BUSYBOX_MEMBER "bin/busybox"
#define MAX_BUSYBOX_BYTES (64u << 20)

const char *const *image_arches(void)
{
	return arch_names();
}

gboolean image_arch_is_known(const char *arch)
{
	return arch_lookup(arch) != NULL;
}

static gboolean unknown_arch(GError **error, const char *arch)
{
	g_autofree char *known = g_strjoinv(" or ", (char **)arch_names());

	return ivlab_fail(error, "image: unknown architecture '%s' (%s)", arch, known);
}

static char *image_file(const char *arch, const char *name)
{
	g_autofree char *dir = ivlab_image_dir(arch);

	return g_build_filename(dir, name, NULL);
}

char *image_kernel_path(const char *arch)
{
	return image_file(arch, arch_lookup(arch)->kernel_file);
}

char *image_initrd_path(const char *arch)
{
	return image_file(arch, arch_lookup(arch)->initrd_file);
}

static char *cache_dir(const char *what)
{
	return g_build_filename(ivlab_state_dir(), "cache", what, NULL);
}

/* QEMU runs as libvirt-qemu: it must be able to reach and read the image. */
static void make_reachable(const char *dir)
{
	struct stat st;

	if (stat(dir, &st) == 0 && (st.st_mode & 0005) != 0005)
		g_chmod(dir, (st.st_mode & 07777) | 0755);
}

static char *bytes_sha256(GBytes *bytes)
{
	return g_compute_checksum_for_bytes(G_CHECKSUM_SHA256, bytes);
}

/* --- where the pieces are ------------------------------------------------ */

static gboolean running_from_tree(void)
{
	return ivlab_source_dir() && strcmp(ivlab_datadir(), ivlab_source_dir()) == 0;
}

char *image_guest_dir(GError **error)
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
static char *find_agent(const struct arch *arch, GError **error)
{
	const char *name = arch->agent_file;
	const char *env = g_getenv("IVLAB_AGENT_DIR");
	const char *build_dir = ivlab_build_dir();
	g_autofree char *built = build_dir ? g_build_filename(build_dir, "src", "guest", name, NULL) : NULL;
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
		if (order[i] && g_file_test(order[i], G_FILE_TEST_IS_REGULAR))
			return g_strdup(order[i]);
	g_autofree char *with = arch_cross_prefix(arch, host_arch()) ?
					g_strdup_printf(" with %s installed", arch->cross_gcc_package) :
					g_strdup("");
	ivlab_fail(error, "image: the %s agent is not built (looked for %s%s%s): run make%s",
		   arch->name, order[0], order[1] ? " and " : "", order[1] ? order[1] : "", with);
	return NULL;
}

/* --- the recipe ---------------------------------------------------------- */

/* images/ARCH.conf: what a user may change about arch's image; the fixed
 * facts of the architecture are in the table (arch.c). */
struct recipe {
	const struct arch *arch;
	char *path;
	char *sha256;
	char *metapackage;
	char *flavour; /* the metapackage's name without "linux-image-" */
	char *busybox_package;
	GStrv modules;
	GStrv share_modules; /* loaded only in guests with a <share> */
	enum initramfs_compression compression;
};

static void recipe_clear(struct recipe *recipe)
{
	g_free(recipe->path);
	g_free(recipe->sha256);
	g_free(recipe->metapackage);
	g_free(recipe->flavour);
	g_free(recipe->busybox_package);
	g_strfreev(recipe->modules);
	g_strfreev(recipe->share_modules);
}

static char *recipe_string(GKeyFile *file, const char *path, const char *key, GError **error)
{
	char *value = g_key_file_get_string(file, MANIFEST_IMAGE, key, NULL);

	if (!value || !*value) {
		g_free(value);
		ivlab_fail(error, "%s: [image] needs a value for '%s'", path, key);
		return NULL;
	}
	return value;
}

static gboolean recipe_load(const struct arch *arch, struct recipe *recipe, GError **error)
{
	g_autoptr(GKeyFile) file = g_key_file_new();
	g_autoptr(GError) local = NULL;
	g_autofree char *name = g_strdup_printf("%s.conf", arch->name);
	g_autofree char *compression = NULL;

	recipe->arch = arch;
	recipe->path = g_build_filename(ivlab_datadir(), "images", name, NULL);
	if (!g_key_file_load_from_file(file, recipe->path, G_KEY_FILE_NONE, &local))
		return ivlab_fail(error, "%s: %s", recipe->path, local->message);
	recipe->sha256 = fetch_file_sha256(recipe->path, error);
	if (!recipe->sha256 ||
	    !(recipe->metapackage = recipe_string(file, recipe->path, "kernel-metapackage", error)) ||
	    !(recipe->busybox_package = recipe_string(file, recipe->path, "busybox-package", error)) ||
	    !(compression = recipe_string(file, recipe->path, "compression", error)))
		return FALSE;
	if (!g_str_has_prefix(recipe->metapackage, KERNEL_METAPACKAGE_PREFIX) ||
	    !recipe->metapackage[strlen(KERNEL_METAPACKAGE_PREFIX)])
		return ivlab_fail(error, "%s: kernel-metapackage '%s' is not a linux-image-FLAVOUR package",
				  recipe->path, recipe->metapackage);
	recipe->flavour = g_strdup(recipe->metapackage + strlen(KERNEL_METAPACKAGE_PREFIX));
	recipe->modules = g_key_file_get_string_list(file, MANIFEST_IMAGE, "modules", NULL, NULL);
	if (!recipe->modules || !recipe->modules[0])
		return ivlab_fail(error, "%s: [image] needs a list of 'modules'", recipe->path);
	recipe->share_modules = g_key_file_get_string_list(file, MANIFEST_IMAGE, "share-modules", NULL,
							   NULL);
	if (!recipe->share_modules)
		recipe->share_modules = g_new0(char *, 1);
	if (!initramfs_parse_compression(compression, &recipe->compression))
		return ivlab_fail(error, "%s: compression '%s' is not gzip, zstd or none", recipe->path,
				  compression);
	return TRUE;
}

/* --- the manifest -------------------------------------------------------- */

static char *manifest_path(const char *arch)
{
	return image_file(arch, MANIFEST_FILE);
}

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

/* A file as stat sees it: size, modification time to the nanosecond and
 * inode; NULL when it is not there. */
static char *file_stamp(const char *path)
{
	struct stat st;

	if (stat(path, &st) != 0)
		return NULL;
	return g_strdup_printf("%" G_GINT64_FORMAT " %" G_GINT64_FORMAT ".%09ld %" G_GUINT64_FORMAT,
			       (gint64)st.st_size, (gint64)st.st_mtim.tv_sec, st.st_mtim.tv_nsec,
			       (guint64)st.st_ino);
}

/* The files the manifest lists are there and unchanged: as stat saw them
 * when they were installed, or else with their recorded sha256 (hashing
 * some 100 MB of kernels on every `up` is time the lab waits for). */
static gboolean manifest_outputs_intact(GKeyFile *manifest, const char *arch)
{
	const struct arch *entry = arch_lookup(arch);
	const char *const names[] = { entry->kernel_file, entry->initrd_file, entry->pvh_kernel_file };

	for (gsize i = 0; i < G_N_ELEMENTS(names) && names[i]; i++) {
		g_autofree char *path = image_file(arch, names[i]);
		g_autofree char *want = g_key_file_get_string(manifest, MANIFEST_OUTPUTS, names[i], NULL);
		g_autofree char *stamp = g_key_file_get_string(manifest, MANIFEST_STAMPS, names[i], NULL);
		g_autofree char *now = file_stamp(path);
		g_autofree char *have = NULL;

		if (!want || !now)
			return FALSE;
		if (stamp && strcmp(stamp, now) == 0)
			continue;
		have = fetch_file_sha256(path, NULL);
		if (!have || strcmp(want, have) != 0)
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

static char *manifest_describe(GKeyFile *manifest)
{
	g_autofree char *release = g_key_file_get_string(manifest, MANIFEST_IMAGE, "kernel-release", NULL);
	g_autofree char *built = g_key_file_get_string(manifest, MANIFEST_IMAGE, "built", NULL);

	g_autofree char *boot = g_key_file_get_string(manifest, MANIFEST_IMAGE, "boot", NULL);
	g_autofree char *why = g_key_file_get_string(manifest, MANIFEST_IMAGE, "boot-why", NULL);

	/* On x86, how the guests enter the kernel: a bzImage boot is slow under
	 * emulation, so it says why. */
	return g_strdup_printf("kernel %s, built %s%s%s%s", release ? release : "?",
			       built ? built : "?",
			       g_strcmp0(boot, "pvh") == 0 ? ", booted through PVH" : "",
			       g_strcmp0(boot, "bzimage") == 0 ? ", booted as a bzImage: " : "",
			       g_strcmp0(boot, "bzimage") == 0 && why ? why : "");
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

char *image_kbuild_dir(const char *arch, char **release, GError **error)
{
	g_autoptr(GKeyFile) manifest = manifest_load(arch);
	g_autofree char *dir = NULL;

	if (manifest)
		dir = g_key_file_get_string(manifest, MANIFEST_IMAGE, "kbuild-dir", NULL);
	if (!dir || !g_file_test(dir, G_FILE_TEST_IS_DIR)) {
		ivlab_fail(error, "the %s image records no kernel build directory to build modules "
			   "against (built by an older ivlab?): run 'ivlab image build --arch %s --force'",
			   arch, arch);
		return NULL;
	}
	*release = g_key_file_get_string(manifest, MANIFEST_IMAGE, "kernel-release", NULL);
	if (!*release) {
		ivlab_fail(error, "the %s image's manifest has no kernel-release", arch);
		return NULL;
	}
	return g_steal_pointer(&dir);
}

ImageInfo *image_info_load(const char *arch, GError **error)
{
	g_autoptr(GKeyFile) manifest = NULL;
	g_autoptr(ImageInfo) info = NULL;
	struct stat st;

	if (!image_arch_is_known(arch)) {
		unknown_arch(error, arch);
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
	const struct arch *arch;
	const struct image_source *source;
	struct recipe recipe;
	char *image_dir;
	char *guest_dir;
	char *init_path;
	char *agent_path;
	GKeyFile *manifest; /* the one this build writes */
	char *source_text;  /* manifest [image] source */
	/* Debian */
	struct apt_deb debs[4]; /* image, headers, common, busybox */
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
		apt_deb_clear(&build->debs[i]);
	g_free(build->kernel_file);
	g_free(build->build_dir);
}

typedef struct build Build;
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(Build, build_clear)

static void input(struct build *build, const char *key, const char *value)
{
	g_key_file_set_string(build->manifest, MANIFEST_INPUTS, key, value);
}

/* What every image has as inputs, whatever its kernel. */
static gboolean common_inputs(struct build *build, GError **error)
{
	g_autoptr(GChecksum) module_sum = g_checksum_new(G_CHECKSUM_SHA256);
	g_autofree char *init_sha = NULL, *agent_sha = NULL;

	build->guest_dir = image_guest_dir(error);
	if (!build->guest_dir)
		return FALSE;
	build->init_path = g_build_filename(build->guest_dir, "init", NULL);
	init_sha = fetch_file_sha256(build->init_path, error);
	if (!init_sha)
		return FALSE;
	build->agent_path = find_agent(build->arch, error);
	if (!build->agent_path || !(agent_sha = fetch_file_sha256(build->agent_path, error)))
		return FALSE;
	for (const char *const *source = kbuild_module_sources; *source; source++) {
		g_autofree char *path = g_build_filename(build->guest_dir, *source, NULL);

		ivlab_hash_tree(module_sum, path, *source);
	}
	input(build, "format", IMAGE_FORMAT);
	input(build, "arch", build->arch->name);
	input(build, "recipe", build->recipe.sha256);
	input(build, "init", init_sha);
	input(build, "agent", agent_sha);
	input(build, "module-source", g_checksum_get_string(module_sum));
	return TRUE;
}

/* The debs [first, first + count) the last build resolved, if apt cannot
 * have changed its mind since (apt-cache takes seconds per call here). */
static gboolean apt_reuse(struct build *build, GKeyFile *old, const char *state, gsize first,
			  gsize count)
{
	g_autofree char *old_state = old ? g_key_file_get_string(old, MANIFEST_APT, "state", NULL) : NULL;

	if (!old_state || strcmp(old_state, state) != 0)
		return FALSE;
	for (gsize i = first; i < first + count; i++) {
		g_autofree char *spec_key = g_strdup_printf("spec-%zu", i);
		g_autofree char *file_key = g_strdup_printf("file-%zu", i);

		if (!g_key_file_has_key(old, MANIFEST_APT, spec_key, NULL) ||
		    !g_key_file_has_key(old, MANIFEST_APT, file_key, NULL))
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
	ivlab_debug("%s: apt's lists are unchanged since the last build", build->arch->name);
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

/* The two headers packages a Debian kernel release builds modules with:
 * linux-headers-RELEASE (for the arch) and linux-headers-ABI-common. */
static gboolean headers_names(const struct recipe *recipe, const char *release, char **headers,
			      char **common)
{
	g_autofree char *suffix = g_strdup_printf("-%s", recipe->flavour);
	g_autofree char *name = g_strdup_printf("linux-headers-%s", release);
	g_autofree char *abi = NULL;

	if (!g_str_has_suffix(release, suffix))
		return FALSE;
	abi = g_strndup(release, strlen(release) - strlen(suffix));
	*headers = apt_qualified(name, recipe->arch->debian_arch);
	*common = g_strdup_printf("linux-headers-%s-common", abi);
	return TRUE;
}

static gboolean apt_resolve_debs(struct build *build, GError **error)
{
	const struct recipe *recipe = &build->recipe;
	const char *debian_arch = recipe->arch->debian_arch;
	g_autofree char *image = NULL, *image_q = NULL, *headers = NULL, *common = NULL;
	g_autofree char *busybox = NULL;

	if (!apt_check_arch(debian_arch, error))
		return FALSE;
	image = apt_resolve_kernel(recipe->metapackage, debian_arch, error);
	if (!image)
		return FALSE;
	if (!headers_names(recipe, image + strlen("linux-image-"), &headers, &common))
		return ivlab_fail(error, "image: %s is not of the flavour %s", image, recipe->flavour);
	image_q = apt_qualified(image, debian_arch);
	busybox = apt_qualified(recipe->busybox_package, debian_arch);
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

/* --kernel-url or --kernel: the kernel's sha256 and where it is. */
static gboolean custom_kernel_inputs(struct build *build, GError **error)
{
	const struct image_source *source = build->source;
	g_autofree char *kernel_sha = NULL;

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
	return TRUE;
}

static gboolean custom_inputs(struct build *build, GKeyFile *old, GError **error)
{
	const struct image_source *source = build->source;
	const struct recipe *recipe = &build->recipe;

	if (source->kernel_build_dir) {
		if (!g_file_test(source->kernel_build_dir, G_FILE_TEST_IS_DIR))
			return ivlab_fail(error, "image: --kernel-build-dir %s is not a directory",
					  source->kernel_build_dir);
		build->build_dir = g_canonicalize_filename(source->kernel_build_dir, NULL);
		g_autofree char *identity = kbuild_dir_identity(build->build_dir);
		input(build, "kernel-build-dir", identity);
	}
	if (!custom_kernel_inputs(build, error))
		return FALSE;

	/* busybox comes from Debian whatever the kernel. */
	g_autofree char *busybox = apt_qualified(recipe->busybox_package, recipe->arch->debian_arch);
	const char *const names[] = { busybox, NULL };
	g_autofree char *state = apt_state();

	if (!apt_reuse(build, old, state, DEB_BUSYBOX, 1) &&
	    (!apt_check_arch(recipe->arch->debian_arch, error) ||
	     !apt_candidates(&build->debs[DEB_BUSYBOX], names, error)))
		return FALSE;
	apt_remember(build, state, DEB_BUSYBOX, 1);
	input(build, "busybox-deb", build->debs[DEB_BUSYBOX].filename);
	return TRUE;
}

static gboolean download_debs(struct apt_deb *debs, gsize count, GError **error)
{
	g_autofree char *dir = cache_dir("debs");

	return apt_download(debs, count, dir, error);
}

/* Debian's headers of release, downloaded and unpacked, for a Debian
 * kernel that came from elsewhere (a URL). */
static char *debian_headers_for(struct build *build, const char *kernel_file, const char *release,
				GError **error)
{
	g_autofree char *headers = NULL, *common = NULL, *kbuild_cache = cache_dir("kbuild");
	struct apt_deb *debs = &build->debs[DEB_HEADERS];

	if (!headers_names(&build->recipe, release, &headers, &common)) {
		ivlab_fail(error, "image: %s: give --kernel-build-dir to build the module for %s",
			   kernel_file, release);
		return NULL;
	}
	const char *const names[] = { headers, common, NULL };

	if (!apt_check_arch(build->arch->debian_arch, error) || !apt_candidates(debs, names, error) ||
	    !download_debs(debs, 2, error))
		return NULL;
	return kbuild_prepare_debian(kbuild_cache, release, &debs[0], &debs[1], error);
}

/* A bare bzImage/Image: modules from the build directory, or from the
 * host's /lib/modules/RELEASE when the directory has none. */
static gboolean bare_kernel(struct build *build, struct kmod_kernel *kernel, const char *kernel_file,
			    GError **error)
{
	g_autoptr(GMappedFile) mapped = NULL;
	g_autoptr(GError) dir_error = NULL;
	g_autofree char *release = NULL, *installed = NULL;

	if (!build->build_dir)
		return ivlab_fail(error, "image: %s is a bare kernel image: give --kernel-build-dir to build "
				  "the module against",
				  kernel_file);
	mapped = g_mapped_file_new(kernel_file, FALSE, error);
	if (!mapped)
		return FALSE;
	release = kbuild_dir_release(build->build_dir, error);
	if (!release)
		return FALSE;
	installed = g_build_filename("/lib/modules", release, NULL);
	if (!kmod_kernel_from_dir(kernel, build->build_dir, &dir_error)) {
		kmod_kernel_clear(kernel);
		if (!g_file_test(installed, G_FILE_TEST_IS_DIR))
			return ivlab_fail(error, "%s; nor is there %s", dir_error->message, installed);
		if (!kmod_kernel_from_dir(kernel, installed, error))
			return FALSE;
	}
	kernel->release = g_steal_pointer(&release);
	kernel->vmlinuz = g_mapped_file_get_bytes(mapped);
	return TRUE;
}

/* The kernel, its modules and the directory to build the module in. */
static gboolean gather_kernel(struct build *build, struct kmod_kernel *kernel, GHashTable *keep,
			      char **kbuild_dir, GError **error)
{
	const struct image_source *source = build->source;
	g_autofree char *kernel_file = NULL, *kbuild_cache = cache_dir("kbuild");

	if (source->kind == IMAGE_SOURCE_DEBIAN) {
		if (!download_debs(build->debs, G_N_ELEMENTS(build->debs), error))
			return FALSE;
		ivlab_info("%s: reading %s", build->arch->name, build->debs[DEB_IMAGE].filename);
		if (!kmod_kernel_from_deb(kernel, build->debs[DEB_IMAGE].path, keep, error))
			return FALSE;
		*kbuild_dir = kbuild_prepare_debian(kbuild_cache, kernel->release,
						    &build->debs[DEB_HEADERS], &build->debs[DEB_COMMON],
						    error);
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

	if (!debpkg_is_deb(kernel_file)) {
		if (!bare_kernel(build, kernel, kernel_file, error))
			return FALSE;
		*kbuild_dir = g_strdup(build->build_dir);
		return TRUE;
	}
	if (!kmod_kernel_from_deb(kernel, kernel_file, keep, error))
		return FALSE;
	if (build->build_dir)
		*kbuild_dir = g_strdup(build->build_dir);
	else
		*kbuild_dir = debian_headers_for(build, kernel_file, kernel->release, error);
	return *kbuild_dir != NULL;
}

static gboolean write_bytes(const char *path, GBytes *bytes, GError **error)
{
	gsize size;
	const void *data = g_bytes_get_data(bytes, &size);

	return g_file_set_contents_full(path, data, size, G_FILE_SET_CONTENTS_CONSISTENT, 0644, error);
}

/* Moves the work dir's outputs into the image dir; the old manifest goes
 * first so that an interrupted install is never taken for up to date. */
static gboolean install_outputs(struct build *build, const char *work_dir, GError **error)
{
	g_autofree char *manifest_file = manifest_path(build->arch->name);
	g_autofree char *text = NULL;
	const char *const names[] = { build->arch->kernel_file, build->arch->initrd_file,
				      build->arch->pvh_kernel_file };
	char *stamp;

	if (g_unlink(manifest_file) != 0 && errno != ENOENT)
		return ivlab_fail_errno(error, "%s", manifest_file);
	for (gsize i = 0; i < G_N_ELEMENTS(names) && names[i]; i++) {
		g_autofree char *from = g_build_filename(work_dir, names[i], NULL);
		g_autofree char *to = g_build_filename(build->image_dir, names[i], NULL);

		if (g_chmod(from, 0644) != 0 || g_rename(from, to) != 0)
			return ivlab_fail_errno(error, "%s", to);
		stamp = file_stamp(to);
		if (stamp)
			g_key_file_set_string(build->manifest, MANIFEST_STAMPS, names[i], stamp);
		g_free(stamp);
	}
	text = g_key_file_to_data(build->manifest, NULL, NULL);
	return g_file_set_contents_full(manifest_file, text, -1, G_FILE_SET_CONTENTS_CONSISTENT, 0644,
					error);
}

/* The manifest's [debs]: each package the image was made from, with its sha256. */
static gboolean record_debs(struct build *build, GError **error)
{
	for (gsize i = 0; i < G_N_ELEMENTS(build->debs); i++) {
		const struct apt_deb *deb = &build->debs[i];
		g_autofree char *sha = NULL;

		if (!deb->path)
			continue;
		sha = deb->verified ? g_strdup(deb->sha256) : fetch_file_sha256(deb->path, error);
		if (!sha)
			return FALSE;
		g_key_file_set_string(build->manifest, MANIFEST_DEBS, deb->filename, sha);
	}
	return TRUE;
}

static void record_outputs(struct build *build, const struct kmod_kernel *kernel, GPtrArray *modules,
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
	g_key_file_set_string(manifest, MANIFEST_IMAGE, "arch", build->arch->name);
	g_key_file_set_string(manifest, MANIFEST_IMAGE, "kernel-release", kernel->release);
	g_key_file_set_string(manifest, MANIFEST_IMAGE, "source", build->source_text);
	g_key_file_set_string(manifest, MANIFEST_IMAGE, "source-kind", kinds[build->source->kind]);
	g_key_file_set_string(manifest, MANIFEST_IMAGE, "console", build->arch->console);
	g_key_file_set_string(manifest, MANIFEST_IMAGE, "built", built);
	g_key_file_set_string(manifest, MANIFEST_IMAGE, "ivlab", PACKAGE_VERSION);
	g_key_file_set_string(manifest, MANIFEST_IMAGE, "modules", names->str);
	g_key_file_set_string(manifest, MANIFEST_OUTPUTS, build->arch->kernel_file, kernel_sha);
	g_key_file_set_string(manifest, MANIFEST_OUTPUTS, build->arch->initrd_file, initrd_sha);
	g_key_file_set_string(manifest, MANIFEST_OUTPUTS, "ivlab.ko", module_sha);
}

/* busybox, the agent, /init, the modules and ivlab.ko -> work_dir's initrd. */
static gboolean write_initramfs(struct build *build, const struct kmod_kernel *kernel,
				GPtrArray *modules, GHashTable *share_only, GBytes *ivlab_ko,
				const char *out_path, GError **error)
{
	g_autoptr(GBytes) busybox = NULL;
	g_autofree char *info = g_strdup_printf("arch=%s\nkernel=%s\nsource=%s\n", build->arch->name,
						kernel->release, build->source_text);
	struct initramfs_guest guest = {
		.init_path = build->init_path,
		.agent_path = build->agent_path,
		.modules = modules,
		.share_only = share_only,
		.ivlab_ko = ivlab_ko,
		.image_info = info,
	};

	if (!build->debs[DEB_BUSYBOX].path && !download_debs(&build->debs[DEB_BUSYBOX], 1, error))
		return FALSE;
	busybox = debpkg_read_file(build->debs[DEB_BUSYBOX].path, BUSYBOX_MEMBER, MAX_BUSYBOX_BYTES,
				   error);
	if (!busybox)
		return FALSE;
	guest.busybox = busybox;
	return initramfs_write_guest(&guest, out_path, build->recipe.compression, error);
}

/* On x86: the file the guests boot (arch.h's pvh_kernel_file), the
 * vmlinux QEMU enters through PVH or the bzImage again, and in the
 * manifest which it is and why. */
static gboolean write_boot_kernel(struct build *build, const char *kernel_path,
				  const char *work_dir, GError **error)
{
	g_autofree char *out = NULL, *why = NULL, *sha = NULL;

	if (!build->arch->pvh_kernel_file)
		return TRUE;
	out = g_build_filename(work_dir, build->arch->pvh_kernel_file, NULL);
	if (!kimage_make_boot_kernel(kernel_path, out, &why, error))
		return FALSE;
	sha = fetch_file_sha256(out, error);
	if (!sha)
		return FALSE;
	g_key_file_set_string(build->manifest, MANIFEST_OUTPUTS, build->arch->pvh_kernel_file, sha);
	g_key_file_set_string(build->manifest, MANIFEST_IMAGE, "boot", why ? "bzimage" : "pvh");
	if (why) {
		g_key_file_set_string(build->manifest, MANIFEST_IMAGE, "boot-why", why);
		ivlab_info("%s: the guests boot the bzImage: %s", build->arch->name, why);
	} else {
		ivlab_debug("%s: the guests boot the kernel's vmlinux through its PVH entry",
			    build->arch->name);
	}
	return TRUE;
}

/* Everything after the inputs are known: gather, build, assemble, install. */
static gboolean build_image(struct build *build, const char *work_dir, GError **error)
{
	g_auto(KmodKernel) kernel = { 0 };
	g_autoptr(GHashTable) keep = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	g_autoptr(GPtrArray) modules = NULL;
	g_autoptr(GBytes) ivlab_ko = NULL;
	g_autofree char *kbuild_dir = NULL, *kernel_sha = NULL, *initrd_sha = NULL, *module_sha = NULL;
	g_autofree char *kernel_out = g_build_filename(work_dir, build->arch->kernel_file, NULL);
	g_autofree char *initrd_out = g_build_filename(work_dir, build->arch->initrd_file, NULL);

	g_autoptr(GStrvBuilder) names = g_strv_builder_new();
	g_auto(GStrv) all_names = NULL;
	g_autoptr(GHashTable) share_only = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	gboolean strict = build->source->kind == IMAGE_SOURCE_DEBIAN;

	g_strv_builder_addv(names, (const char **)build->recipe.modules);
	g_strv_builder_addv(names, (const char **)build->recipe.share_modules);
	all_names = g_strv_builder_end(names);
	for (char **name = all_names; *name; name++)
		g_hash_table_add(keep, kmod_normalize_name(*name));
	/* An interrupt (ivlab_interrupt_catch()) stops between the steps: the
	 * work directory goes and no image is installed. */
	if (!gather_kernel(build, &kernel, keep, &kbuild_dir, error) || !ivlab_check_interrupt(error))
		return FALSE;
	modules = kmod_load_order(&kernel, (const char *const *)all_names, strict, error);
	if (!modules)
		return FALSE;
	/* The modules only shares need (and not the agent's port), loaded by
	 * /init only for a lab's <share>: each costs boot time. */
	if (build->recipe.share_modules[0]) {
		g_autoptr(GPtrArray) base = kmod_load_order(
			&kernel, (const char *const *)build->recipe.modules, strict, error);
		g_autoptr(GHashTable) in_base = g_hash_table_new(g_str_hash, g_str_equal);

		if (!base)
			return FALSE;
		for (guint i = 0; i < base->len; i++)
			g_hash_table_add(in_base, ((struct kmod *)base->pdata[i])->name);
		for (guint i = 0; i < modules->len; i++) {
			const char *name = ((struct kmod *)modules->pdata[i])->name;

			if (!g_hash_table_contains(in_base, name))
				g_hash_table_add(share_only, g_strdup(name));
		}
	}
	ivlab_ko = kbuild_module(build->arch, kbuild_dir, build->guest_dir, work_dir, error);
	/* A module built against other headers would not load: say so now. */
	if (!ivlab_ko || !kmod_check_release(ivlab_ko, kernel.release, error) ||
	    !ivlab_check_interrupt(error))
		return FALSE;
	if (!write_bytes(kernel_out, kernel.vmlinuz, error) ||
	    !write_boot_kernel(build, kernel_out, work_dir, error) ||
	    !write_initramfs(build, &kernel, modules, share_only, ivlab_ko, initrd_out, error))
		return FALSE;
	kernel_sha = bytes_sha256(kernel.vmlinuz);
	module_sha = bytes_sha256(ivlab_ko);
	initrd_sha = fetch_file_sha256(initrd_out, error);
	if (!initrd_sha || !record_debs(build, error) || !ivlab_check_interrupt(error))
		return FALSE;
	record_outputs(build, &kernel, modules, kernel_sha, initrd_sha, module_sha);
	/* Where the lab's own modules are built for this image. */
	g_key_file_set_string(build->manifest, MANIFEST_IMAGE, "kbuild-dir", kbuild_dir);
	return install_outputs(build, work_dir, error);
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

/* The image directory, reachable by QEMU, locked against other builds. */
static int open_image_dir(struct build *build, GError **error)
{
	g_autofree char *images = NULL, *lock_path = NULL, *what = NULL;

	build->image_dir = ivlab_image_dir(build->arch->name);
	images = g_path_get_dirname(build->image_dir);
	if (!ivlab_make_dir(build->image_dir, error))
		return -1;
	if (geteuid() == 0) {
		/* QEMU then runs as libvirt-qemu, which must reach the files. */
		make_reachable(ivlab_state_dir());
		make_reachable(images);
		make_reachable(build->image_dir);
	}
	lock_path = g_build_filename(build->image_dir, ".lock", NULL);
	what = g_strdup_printf("the %s image", build->arch->name);
	return ivlab_lock(lock_path, TRUE, what, error);
}

/* Builds in a fresh work directory, removed afterwards. */
static gboolean build_in_work_dir(struct build *build, GError **error)
{
	g_autofree char *work_dir = g_build_filename(build->image_dir, "work-XXXXXX", NULL);
	gint64 start = g_get_monotonic_time();
	gboolean ok;

	ivlab_info("%s: building the image from %s", build->arch->name, build->source_text);
	if (!g_mkdtemp(work_dir))
		return ivlab_fail_errno(error, "%s", work_dir);
	ok = build_image(build, work_dir, error);
	ivlab_remove_tree(work_dir, NULL);
	if (ok) {
		g_autofree char *done = manifest_describe(build->manifest);

		ivlab_info("%s: image built in %.1f s (%s): %s", build->arch->name,
			   (g_get_monotonic_time() - start) / 1e6, done, build->image_dir);
	}
	return ok;
}

gboolean image_ensure(const char *arch, const struct image_source *source, GError **error)
{
	static const struct image_source debian = { .kind = IMAGE_SOURCE_DEBIAN };
	g_auto(Build) build = { 0 };
	g_auto(IvlabLock) lock_fd = -1;
	g_autoptr(GKeyFile) old = NULL;
	g_autoptr(GError) inputs_error = NULL;
	g_autofree char *about = NULL;
	gboolean ok, old_intact;

	build.arch = arch_lookup(arch);
	if (!build.arch)
		return unknown_arch(error, arch);
	lock_fd = open_image_dir(&build, error);
	if (lock_fd < 0)
		return FALSE;

	old = manifest_load(arch);
	old_intact = old && manifest_outputs_intact(old, arch);
	about = old ? manifest_describe(old) : NULL;
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
	if (!recipe_load(build.arch, &build.recipe, error) || !common_inputs(&build, error))
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
	return build_in_work_dir(&build, error);
}
