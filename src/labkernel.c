/* labkernel.c: a guest that boots a kernel under test (<kernel src=
 * build-dir=>). Before `up` creates anything, the image must be a kernel
 * for the guest's arch and the build directory a built kernel tree whose
 * .config has what ivlab's guest needs; the guest's archive (labboot.c)
 * then carries ivlab.ko built against that tree and the modules ivlab needs
 * from it, with a load list that replaces the stock image's (Debian's
 * modules do not load into another release). */
#include "config.h"

#include <string.h>
#include <glib/gstdio.h>

#include "arch.h"
#include "domxml.h"
#include "image.h"
#include "ivlab.h"
#include "kbuild.h"
#include "kimage.h"
#include "kmod.h"
#include "labkernel.h"

/* What the guest's /init, agent and ivlab.ko need of a kernel, taken from
 * what the stock image loads (images/ARCH.conf's modules) and what /init
 * does. An option with a module may be =m when the build directory has the
 * module: it is delivered and loaded, its dependencies first. */
struct need {
	const char *option; /* without CONFIG_ */
	const char *module; /* its module, or NULL: it must be built in */
	gboolean shares;    /* only for a guest with <share>s */
	const char *why;
};

static const struct need needs[] = {
	{ "MODULES", NULL, FALSE, "ivlab.ko and the lab's modules" },
	{ "BLK_DEV_INITRD", NULL, FALSE, "the initramfs the guest boots" },
	{ "RD_GZIP", NULL, FALSE, "the gzip-compressed initramfs" },
	{ "BINFMT_SCRIPT", NULL, FALSE, "/init, a shell script" },
	{ "BINFMT_ELF", NULL, FALSE, "busybox and the agent" },
	{ "PROC_FS", NULL, FALSE, "/init, which mounts /proc" },
	{ "SYSFS", NULL, FALSE, "/init, which mounts /sys" },
	{ "DEVTMPFS", NULL, FALSE, "/init, which mounts /dev" },
	{ "TMPFS", NULL, FALSE, "/init, which mounts /run and /tmp" },
	{ "PCI", NULL, FALSE, "the ivshmem devices" },
	{ "PCI_MSI", NULL, FALSE, "the doorbells' MSI-X interrupts" },
	{ "VIRTIO_PCI", "virtio_pci", FALSE, "the agent's virtio-serial port" },
	{ "VIRTIO_CONSOLE", "virtio_console", FALSE, "the agent's virtio-serial port" },
	{ "NET_9P_VIRTIO", "9pnet_virtio", TRUE, "the guest's <share>s" },
	{ "9P_FS", "9p", TRUE, "the guest's <share>s" },
};

/* The files a built kernel tree has that ivlab reads. */
static const char *const build_files[] = { ".config", "Module.symvers",
					   "include/config/kernel.release" };

#define GZIP_MAGIC "\x1f\x8b"
#define EFI_ZBOOT_MAGIC "zimg" /* at offset 4, after "MZ" */
/* x86 boot protocol (Documentation/x86/boot.rst): version, kernel_version, xloadflags. */
#define X86_SETUP_OFFSET 0x200
#define X86_VERSION_OFFSET 0x206
#define X86_KERNEL_VERSION_OFFSET 0x20e
#define X86_XLOADFLAGS_OFFSET 0x236
#define X86_XLF_KERNEL_64 0x1
#define X86_PROTOCOL_XLOADFLAGS 0x20c

static gboolean kernel_error(GError **error, const struct lab *lab,
			     const struct lab_guest *guest, const char *fmt, ...) G_GNUC_PRINTF(4, 5);

static gboolean kernel_error(GError **error, const struct lab *lab,
			     const struct lab_guest *guest, const char *fmt, ...)
{
	va_list ap;
	g_autofree char *text = NULL;

	va_start(ap, fmt);
	text = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED, "%s:%d: kernel %s", lab->path,
		    guest->kernel_line, text);
	return FALSE;
}

static guint16 le16_at(const guint8 *data, gsize offset)
{
	return data[offset] | data[offset + 1] << 8;
}

/* The release at the start of text ("6.1.0 (builder@host) #1 ..."). */
static char *first_word(const char *text, gsize max)
{
	gsize len = 0;

	while (len < max && text[len] && text[len] != ' ')
		len++;
	return g_strndup(text, len);
}

/* The release an x86 bzImage says it is (its header's kernel_version
 * string), or NULL when it does not say. */
static char *x86_image_release(const guint8 *data, gsize size)
{
	guint16 pointer = le16_at(data, X86_KERNEL_VERSION_OFFSET);
	gsize at = (gsize)pointer + X86_SETUP_OFFSET;

	if (!pointer || at >= size)
		return NULL;
	return first_word((const char *)data + at, size - at);
}

/* The release an uncompressed arm64 Image carries in its banner. */
static char *banner_release(const guint8 *data, gsize size)
{
	static const char banner[] = "Linux version ";
	const guint8 *found = memmem(data, size, banner, strlen(banner));
	gsize at;

	if (!found)
		return NULL;
	at = found - data + strlen(banner);
	return first_word((const char *)data + at, size - at);
}

static gboolean check_image(const struct lab *lab, const struct lab_guest *guest,
			    const char *release, GError **error)
{
	const struct arch *arch = arch_lookup(guest->arch);
	g_autoptr(GError) map_error = NULL;
	g_autoptr(GMappedFile) mapped = g_mapped_file_new(guest->kernel, FALSE, &map_error);
	const guint8 *data;
	gsize size, magic_len = strlen(arch->kernel_magic);
	g_autofree char *image_release = NULL;

	if (!mapped)
		return kernel_error(error, lab, guest, "%s: %s", guest->kernel, map_error->message);
	data = (const guint8 *)g_mapped_file_get_contents(mapped);
	size = g_mapped_file_get_length(mapped);
	if (strcmp(arch->name, "aarch64") == 0 && size > 8 && memcmp(data, "MZ", 2) == 0 &&
	    memcmp(data + 4, EFI_ZBOOT_MAGIC, 4) == 0)
		return kernel_error(error, lab, guest, "%s: an EFI zboot image, which QEMU's direct "
				    "kernel boot does not take: give %s", guest->kernel,
				    arch->kernel_build_image);
	/* QEMU unpacks an arm64 Image.gz itself; its banner is compressed. */
	if (strcmp(arch->name, "aarch64") == 0 && size > 2 && memcmp(data, GZIP_MAGIC, 2) == 0)
		return TRUE;
	if (size < arch->kernel_magic_offset + magic_len ||
	    memcmp(data + arch->kernel_magic_offset, arch->kernel_magic, magic_len) != 0)
		return kernel_error(error, lab, guest, "%s: not an %s kernel (no %s header; the build "
				    "leaves one in %s)", guest->kernel, arch->name, arch->kernel_format,
				    arch->kernel_build_image);
	if (strcmp(arch->name, "x86_64") == 0) {
		if (size > X86_XLOADFLAGS_OFFSET &&
		    le16_at(data, X86_VERSION_OFFSET) >= X86_PROTOCOL_XLOADFLAGS &&
		    !(data[X86_XLOADFLAGS_OFFSET] & X86_XLF_KERNEL_64))
			return kernel_error(error, lab, guest, "%s: a 32-bit kernel, not an x86_64 one",
					    guest->kernel);
		image_release = x86_image_release(data, size);
	} else {
		image_release = banner_release(data, size);
	}
	if (image_release && strcmp(image_release, release) != 0)
		return kernel_error(error, lab, guest, "%s is %s, but build-dir %s builds modules for "
				    "%s: give the image that tree built", guest->kernel, image_release,
				    guest->kernel_build_dir, release);
	return TRUE;
}

/* A .config as option (without CONFIG_) -> value ("y", "m", "\"...\""). */
static GHashTable *read_config(const char *dir, GError **error)
{
	g_autofree char *path = g_build_filename(dir, ".config", NULL);
	g_autofree char *text = NULL;
	g_auto(GStrv) lines = NULL;
	g_autoptr(GHashTable) config = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);

	if (!g_file_get_contents(path, &text, NULL, error))
		return NULL;
	lines = g_strsplit(text, "\n", -1);
	for (char **line = lines; *line; line++) {
		char *equals = strchr(*line, '=');

		if (!g_str_has_prefix(*line, "CONFIG_") || !equals)
			continue;
		g_hash_table_insert(config, g_strndup(*line + strlen("CONFIG_"),
						      equals - *line - strlen("CONFIG_")),
				    g_strdup(equals + 1));
	}
	return g_steal_pointer(&config);
}

static gboolean needed(const struct need *need, const struct lab_guest *guest)
{
	return !need->shares || (guest->shares && guest->shares->len);
}

/* Every option ivlab needs that the build directory's .config lacks. */
static void check_options(const struct lab_guest *guest, GHashTable *config, GPtrArray *problems)
{
	const struct arch *arch = arch_lookup(guest->arch);
	g_autofree char *for_arch = g_strdup_printf("an %s guest", arch->name);

	for (const char *const *option = arch->kernel_options; *option; option++) {
		const char *value = g_hash_table_lookup(config, *option);

		if (!value || strcmp(value, "y") != 0)
			g_ptr_array_add(problems, g_strdup_printf("CONFIG_%s %s (ivlab needs it built "
								  "in for %s)", *option,
								  value ? "is =m" : "is not set",
								  for_arch));
	}
	for (gsize i = 0; i < G_N_ELEMENTS(needs); i++) {
		const char *value = g_hash_table_lookup(config, needs[i].option);

		if (!needed(&needs[i], guest) || g_strcmp0(value, "y") == 0 ||
		    (needs[i].module && g_strcmp0(value, "m") == 0))
			continue;
		if (!value)
			g_ptr_array_add(problems, g_strdup_printf("CONFIG_%s is not set (ivlab needs it "
								  "for %s)", needs[i].option,
								  needs[i].why));
		else
			g_ptr_array_add(problems, g_strdup_printf("CONFIG_%s=%s (ivlab needs it built "
								  "in for %s)", needs[i].option, value,
								  needs[i].why));
	}
}

/* The needed modules that are =m and their dependencies, in load order,
 * all read: each must have been built in the build directory. */
static GPtrArray *load_order(const struct lab_guest *guest, struct kmod_kernel *kernel,
			     GHashTable *config, const char *release, GError **error)
{
	const char *dir = guest->kernel_build_dir;
	g_autoptr(GPtrArray) names = g_ptr_array_new();

	for (gsize i = 0; i < G_N_ELEMENTS(needs); i++) {
		if (!needs[i].module || !needed(&needs[i], guest) ||
		    g_strcmp0(g_hash_table_lookup(config, needs[i].option), "m") != 0)
			continue;
		/* A tree without modules is refused below, module by module. */
		if (!names->len && !kernel->modules)
			kmod_kernel_from_dir(kernel, dir, NULL);
		if (!g_hash_table_contains(kernel->modules, needs[i].module)) {
			ivlab_fail(error, "CONFIG_%s=m, but it has no %s.ko (run make modules there)",
				   needs[i].option, needs[i].module);
			return NULL;
		}
		g_ptr_array_add(names, (char *)needs[i].module);
	}
	if (!names->len)
		return g_ptr_array_new();
	g_ptr_array_add(names, NULL);
	kernel->release = g_strdup(release);
	return kmod_load_order(kernel, (const char *const *)names->pdata, TRUE, error);
}

static gboolean check_guest(const struct lab *lab, const struct lab_guest *guest, GError **error)
{
	const char *dir = guest->kernel_build_dir;
	g_autoptr(GPtrArray) problems = g_ptr_array_new_with_free_func(g_free);
	g_autoptr(GHashTable) config = NULL;
	g_autoptr(GError) local = NULL;
	g_autoptr(GPtrArray) order = NULL;
	g_auto(KmodKernel) kernel = { 0 };
	g_autofree char *release = NULL;

	for (gsize i = 0; i < G_N_ELEMENTS(build_files); i++) {
		g_autofree char *path = g_build_filename(dir, build_files[i], NULL);

		if (!g_file_test(path, G_FILE_TEST_IS_REGULAR))
			return kernel_error(error, lab, guest, "build-dir %s: no %s (not a built kernel "
					    "tree: configure it and run make, modules included, "
					    "there)", dir, build_files[i]);
	}
	release = kbuild_dir_release(dir, &local);
	if (!release)
		return kernel_error(error, lab, guest, "build-dir %s: %s", dir, local->message);
	if (!check_image(lab, guest, release, error))
		return FALSE;
	config = read_config(dir, &local);
	if (!config)
		return kernel_error(error, lab, guest, "build-dir %s: %s", dir, local->message);
	check_options(guest, config, problems);
	if (problems->len) {
		g_ptr_array_add(problems, NULL);
		g_autofree char *joined = g_strjoinv("; ", (char **)problems->pdata);

		return kernel_error(error, lab, guest, "build-dir %s: %s", dir, joined);
	}
	order = load_order(guest, &kernel, config, release, &local);
	if (!order)
		return kernel_error(error, lab, guest, "build-dir %s: %s", dir, local->message);
	return TRUE;
}

gboolean labkernel_check(const struct lab *lab, GError **error)
{
	for (guint i = 0; i < lab->guests->len; i++) {
		const struct lab_guest *guest = g_ptr_array_index(lab->guests, i);

		if (guest->kernel && !check_guest(lab, guest, error))
			return FALSE;
	}
	return TRUE;
}

char *labkernel_build_dir(const struct lab_guest *guest, char **release, GError **error)
{
	*release = kbuild_dir_release(guest->kernel_build_dir, error);
	if (!*release)
		return NULL;
	return g_strdup(guest->kernel_build_dir);
}

/* ivlab.ko built against kdir, cached by the tree's identity and the
 * module's sources: its path. */
static char *ivlab_module(const struct arch *arch, const char *kdir, const char *release,
			  GError **error)
{
	g_autofree char *guest_dir = image_guest_dir(error);
	g_autoptr(GChecksum) sum = g_checksum_new(G_CHECKSUM_SHA256);
	g_autofree char *identity = NULL, *key = NULL, *dir = NULL, *ko = NULL;
	g_autoptr(GBytes) built = NULL;

	if (!guest_dir)
		return NULL;
	identity = kbuild_dir_identity(kdir);
	g_checksum_update(sum, (const guchar *)identity, strlen(identity));
	for (const char *const *source = kbuild_module_sources; *source; source++) {
		g_autofree char *path = g_build_filename(guest_dir, *source, NULL);

		ivlab_hash_tree(sum, path, *source);
	}
	key = g_strdup_printf("%s-%s-ivlab-%.16s", arch->name, release, g_checksum_get_string(sum));
	dir = g_build_filename(ivlab_state_dir(), "cache", "modules", key, NULL);
	ko = g_build_filename(dir, "ivlab.ko", NULL);
	if (g_file_test(ko, G_FILE_TEST_IS_REGULAR))
		return g_steal_pointer(&ko);
	if (!ivlab_remove_tree(dir, error) || !ivlab_make_dir(dir, error))
		return NULL;
	built = kbuild_module(arch, kdir, guest_dir, dir, error);
	if (!built || !kmod_check_release(built, release, error) ||
	    !g_file_set_contents(ko, g_bytes_get_data(built, NULL), g_bytes_get_size(built), error))
		return NULL;
	return g_steal_pointer(&ko);
}

gboolean labkernel_add_modules(const struct lab_guest *guest, Initramfs *initramfs,
			       GError **error)
{
	const struct arch *arch = arch_lookup(guest->arch);
	const char *kdir = guest->kernel_build_dir;
	g_autofree char *release = NULL, *ivlab_ko = NULL;
	g_autoptr(GHashTable) config = NULL;
	g_autoptr(GPtrArray) order = NULL;
	g_auto(KmodKernel) kernel = { 0 };
	g_autoptr(GString) list = g_string_new("# the modules of the guest's own kernel (ivlab up)\n");
	g_autoptr(GBytes) list_bytes = NULL;

	release = kbuild_dir_release(kdir, error);
	if (!release || !(config = read_config(kdir, error)))
		return FALSE;
	ivlab_ko = ivlab_module(arch, kdir, release, error);
	if (!ivlab_ko || !initramfs_add_file(initramfs, "/lib/modules/ivlab.ko", ivlab_ko, 0644, error))
		return FALSE;
	order = load_order(guest, &kernel, config, release, error);
	if (!order)
		return FALSE;
	for (guint i = 0; i < order->len; i++) {
		const struct kmod *kmod = order->pdata[i];
		g_autofree char *file = g_path_get_basename(kmod->location);
		g_autofree char *path = g_build_filename("/lib/modules", file, NULL);

		if (!kmod_check_release(kmod->bytes, release, error))
			return FALSE;
		initramfs_add_bytes(initramfs, path, kmod->bytes, 0644);
		g_string_append_printf(list, "%s\n", file);
	}
	list_bytes = g_bytes_new(list->str, list->len);
	initramfs_add_bytes(initramfs, "/lib/modules/load.list", list_bytes, 0644);
	return TRUE;
}

gboolean labkernel_make_boot_kernel(const struct lab *lab, const struct lab_guest *guest,
				    GError **error)
{
	g_autofree char *out = NULL, *key_path = NULL, *key = NULL, *old_key = NULL, *why = NULL;
	GStatBuf st;

	if (!guest->kernel || !arch_lookup(guest->arch)->pvh_kernel_file)
		return TRUE;
	out = domxml_guest_kernel(lab, guest);
	key_path = g_strconcat(out, ".source", NULL);
	if (g_stat(guest->kernel, &st) != 0)
		return ivlab_fail_errno(error, "%s", guest->kernel);
	/* The <kernel> it came from, as it was: a rebuilt kernel is taken again. */
	key = g_strdup_printf("%s %" G_GINT64_FORMAT " %" G_GINT64_FORMAT "\n", guest->kernel,
			      (gint64)st.st_size, (gint64)st.st_mtime);
	if (g_file_get_contents(key_path, &old_key, NULL, NULL) && strcmp(old_key, key) == 0 &&
	    g_file_test(out, G_FILE_TEST_EXISTS))
		return TRUE;
	g_unlink(key_path);
	if (!kimage_make_boot_kernel(guest->kernel, out, &why, error))
		return FALSE;
	if (why)
		ivlab_debug("guest %s: boots its kernel as a bzImage: %s", guest->name, why);
	else
		ivlab_debug("guest %s: boots its kernel's vmlinux through its PVH entry", guest->name);
	return g_file_set_contents(key_path, key, -1, error);
}
