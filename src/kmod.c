/* kmod.c: kernel modules for the image: the catalogue of what a kernel
 * package or directory offers, .modinfo read from the ELF object itself,
 * and the load order from each module's "depends" (what depmod writes to
 * modules.dep). Packages are read through debpkg.c. */
#include "config.h"

#include <elf.h>
#include <string.h>
#include <sys/stat.h>

#include "debpkg.h"
#include "ivlab.h"
#include "kmod.h"

/* Upper bounds on what a package member may be, against a corrupt package. */
#define MAX_KERNEL_BYTES (256u << 20)
#define MAX_MODULE_BYTES (64u << 20)
#define MAX_BUILTIN_BYTES (16u << 20)
/* How deep a kernel build tree is searched for modules. */
#define MAX_MODULE_DIR_DEPTH 12
/* The ELF section of a module that holds its "key=value" strings. */
#define MODINFO_SECTION ".modinfo"
/* Where a linux-image package keeps its parts. */
#define DEB_KERNEL_PREFIX "boot/vmlinuz-"
#define DEB_MODULES_PREFIX "lib/modules/"
#define DEB_BUILTIN_SUFFIX "/modules.builtin"

/* --- .modinfo ------------------------------------------------------------ */

/* The ELF header of a 64-bit little-endian object whose section headers lie
 * inside it (copied out: the bytes need not be aligned), or FALSE. */
static gboolean elf_header(const guint8 *data, gsize size, Elf64_Ehdr *ehdr)
{
	if (size < sizeof(*ehdr) || memcmp(data, ELFMAG, SELFMAG) != 0 ||
	    data[EI_CLASS] != ELFCLASS64 || data[EI_DATA] != ELFDATA2LSB)
		return FALSE;
	memcpy(ehdr, data, sizeof(*ehdr));
	return ehdr->e_shoff != 0 && ehdr->e_shentsize == sizeof(Elf64_Shdr) &&
	       ehdr->e_shoff <= size && (size - ehdr->e_shoff) / sizeof(Elf64_Shdr) >= ehdr->e_shnum &&
	       ehdr->e_shstrndx < ehdr->e_shnum;
}

/* Section index's header, copied out of a checked object. */
static void elf_section(const guint8 *data, const Elf64_Ehdr *ehdr, guint index,
			Elf64_Shdr *section)
{
	memcpy(section, data + ehdr->e_shoff + (gsize)index * sizeof(*section), sizeof(*section));
}

static gboolean section_inside(const Elf64_Shdr *section, gsize size)
{
	return section->sh_offset <= size && section->sh_size <= size - section->sh_offset;
}

/* The value of key in a block of NUL-separated "key=value" strings. */
static char *modinfo_lookup(const char *text, const char *end, const char *key)
{
	gsize key_len = strlen(key);

	while (text < end) {
		gsize len = strnlen(text, end - text);

		if (len > key_len && strncmp(text, key, key_len) == 0 && text[key_len] == '=')
			return g_strndup(text + key_len + 1, len - key_len - 1);
		text += len + 1;
	}
	return NULL;
}

char *kmod_modinfo(GBytes *module, const char *key)
{
	gsize size;
	const guint8 *data = g_bytes_get_data(module, &size);
	Elf64_Ehdr ehdr;
	Elf64_Shdr strtab, section;

	if (!data || !elf_header(data, size, &ehdr))
		return NULL;
	elf_section(data, &ehdr, ehdr.e_shstrndx, &strtab);
	if (!section_inside(&strtab, size))
		return NULL;
	for (guint i = 0; i < ehdr.e_shnum; i++) {
		const char *text;

		elf_section(data, &ehdr, i, &section);
		/* The whole name, its NUL included, inside the string table. */
		if (section.sh_name >= strtab.sh_size ||
		    strtab.sh_size - section.sh_name < sizeof(MODINFO_SECTION) ||
		    memcmp(data + strtab.sh_offset + section.sh_name, MODINFO_SECTION,
			   sizeof(MODINFO_SECTION)) != 0)
			continue;
		if (!section_inside(&section, size))
			return NULL;
		text = (const char *)data + section.sh_offset;
		return modinfo_lookup(text, text + section.sh_size, key);
	}
	return NULL;
}

gboolean kmod_check_release(GBytes *module, const char *release, GError **error)
{
	g_autofree char *vermagic = kmod_modinfo(module, "vermagic");

	/* vermagic is "RELEASE SMP preempt mod_unload ...". */
	if (vermagic && g_str_has_prefix(vermagic, release) && vermagic[strlen(release)] == ' ')
		return TRUE;
	return ivlab_fail(error, "image: the module was built for '%s' but the kernel is %s "
			  "(wrong build directory?)",
			  vermagic ? vermagic : "?", release);
}

/* --- the catalogue -------------------------------------------------------- */

char *kmod_normalize_name(const char *name)
{
	return g_strdelimit(g_strdup(name), "-", '_');
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
	return kmod_normalize_name(base);
}

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

/* Kernels may ship modules compressed; the initramfs gets plain .ko. */
static gboolean kmod_set_bytes(struct kmod *kmod, GBytes *raw, GError **error)
{
	g_autoptr(GBytes) plain = g_str_has_suffix(kmod->location, ".ko") ?
					  g_bytes_ref(raw) :
					  debpkg_decompress(raw, kmod->location, error);
	g_autofree char *depends = NULL;

	if (!plain)
		return FALSE;
	depends = kmod_modinfo(plain, "depends");
	g_strfreev(kmod->depends);
	kmod->depends = g_strsplit(depends ? depends : "", ",", -1);
	for (char **dep = kmod->depends; *dep; dep++)
		g_strdelimit(*dep, "-", '_');
	if (kmod->bytes)
		g_bytes_unref(kmod->bytes);
	kmod->bytes = g_steal_pointer(&plain);
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

void kmod_kernel_clear(struct kmod_kernel *kernel)
{
	g_free(kernel->release);
	if (kernel->vmlinuz)
		g_bytes_unref(kernel->vmlinuz);
	if (kernel->modules)
		g_hash_table_destroy(kernel->modules);
	if (kernel->builtin)
		g_hash_table_destroy(kernel->builtin);
	g_free(kernel->modules_from);
	g_free(kernel->deb_path);
	memset(kernel, 0, sizeof(*kernel));
}

static void kernel_init_tables(struct kmod_kernel *kernel)
{
	kernel->modules = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, kmod_free);
	kernel->builtin = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
}

static void parse_builtin(struct kmod_kernel *kernel, const char *text)
{
	g_auto(GStrv) lines = g_strsplit(text, "\n", -1);

	for (char **line = lines; *line; line++)
		if (**line)
			g_hash_table_add(kernel->builtin, module_name_of_path(*line));
}

static struct kmod *add_kmod(struct kmod_kernel *kernel, const char *path, const char *location)
{
	struct kmod *kmod = g_new0(struct kmod, 1);

	kmod->name = module_name_of_path(path);
	kmod->location = g_strdup(location);
	g_hash_table_replace(kernel->modules, kmod->name, kmod);
	return kmod;
}

/* One pass over a linux-image package. */
struct deb_scan {
	struct kmod_kernel *kernel;
	GHashTable *keep;      /* names whose bytes to keep */
	gboolean want_vmlinuz; /* pass 1 also takes the kernel image and modules.builtin */
};

static gboolean is_builtin_list(const char *path)
{
	return g_str_has_prefix(path, DEB_MODULES_PREFIX) && g_str_has_suffix(path, DEB_BUILTIN_SUFFIX);
}

static gsize scan_select(const char *path, gpointer user_data)
{
	struct deb_scan *scan = user_data;
	g_autofree char *name = NULL;
	struct kmod *kmod;

	if (scan->want_vmlinuz && g_str_has_prefix(path, DEB_KERNEL_PREFIX))
		return MAX_KERNEL_BYTES;
	if (scan->want_vmlinuz && is_builtin_list(path))
		return MAX_BUILTIN_BYTES;
	if (!g_str_has_prefix(path, DEB_MODULES_PREFIX) || !is_module_path(path))
		return 0;
	/* Every module is read for its dependencies, once. */
	name = module_name_of_path(path);
	kmod = g_hash_table_lookup(scan->kernel->modules, name);
	return kmod && kmod->bytes ? 0 : MAX_MODULE_BYTES;
}

static gboolean scan_got(const char *path, GBytes *contents, gpointer user_data, GError **error)
{
	struct deb_scan *scan = user_data;
	struct kmod_kernel *kernel = scan->kernel;
	g_autofree char *name = NULL;
	struct kmod *kmod;

	if (g_str_has_prefix(path, DEB_KERNEL_PREFIX)) {
		kernel->vmlinuz = g_bytes_ref(contents);
		kernel->release = g_strdup(path + strlen(DEB_KERNEL_PREFIX));
		return TRUE;
	}
	if (is_builtin_list(path)) {
		g_autofree char *text = g_strndup(g_bytes_get_data(contents, NULL),
						  g_bytes_get_size(contents));

		parse_builtin(kernel, text);
		return TRUE;
	}
	name = module_name_of_path(path);
	kmod = g_hash_table_lookup(kernel->modules, name);
	if (!kmod)
		kmod = add_kmod(kernel, path, path);
	if (!kmod_set_bytes(kmod, contents, error))
		return FALSE;
	/* Only the wanted ones are kept. */
	if (!g_hash_table_contains(scan->keep, name))
		g_clear_pointer(&kmod->bytes, g_bytes_unref);
	return TRUE;
}

gboolean kmod_kernel_from_deb(struct kmod_kernel *kernel, const char *deb_path, GHashTable *keep,
			      GError **error)
{
	struct deb_scan scan = { kernel, keep, TRUE };

	kernel_init_tables(kernel);
	kernel->modules_from = g_path_get_basename(deb_path);
	kernel->deb_path = g_strdup(deb_path);
	if (!debpkg_read_files(deb_path, scan_select, scan_got, &scan, error))
		return FALSE;
	if (!kernel->vmlinuz)
		return ivlab_fail(error, "%s: no boot/vmlinuz-* in the package: not a linux-image package",
				  deb_path);
	return TRUE;
}

static void scan_module_dir(struct kmod_kernel *kernel, const char *dir, int depth)
{
	g_autoptr(GDir) handle = g_dir_open(dir, 0, NULL);
	const char *name;

	while (handle && (name = g_dir_read_name(handle))) {
		g_autofree char *path = g_build_filename(dir, name, NULL);
		struct stat st;

		if (lstat(path, &st) != 0)
			continue;
		if (S_ISDIR(st.st_mode) && depth < MAX_MODULE_DIR_DEPTH && strcmp(name, ".git") != 0)
			scan_module_dir(kernel, path, depth + 1);
		else if (S_ISREG(st.st_mode) && is_module_path(name))
			add_kmod(kernel, name, path);
	}
}

gboolean kmod_kernel_from_dir(struct kmod_kernel *kernel, const char *dir, GError **error)
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

/* --- load order ----------------------------------------------------------- */

/* Post-order walk: every module after the ones it depends on. */
static gboolean order_modules(struct kmod_kernel *kernel, const char *name, GHashTable *seen,
			      GPtrArray *order, GError **error)
{
	struct kmod *kmod;

	if (g_hash_table_contains(seen, name))
		return TRUE;
	g_hash_table_add(seen, g_strdup(name));
	kmod = g_hash_table_lookup(kernel->modules, name);
	if (!kmod)
		return ivlab_fail(error, "image: %s needs the module %s, which %s does not have",
				  kernel->release, name, kernel->modules_from);
	/* A package's modules were all read by its scan; files are read now. */
	if (!kmod->depends && !kernel->deb_path && !kmod_load_file(kmod, error))
		return FALSE;
	for (char **dep = kmod->depends; dep && *dep; dep++)
		if (**dep && !order_modules(kernel, *dep, seen, order, error))
			return FALSE;
	g_ptr_array_add(order, kmod);
	return TRUE;
}

/* Reads the bytes the first pass over the package did not keep. */
static gboolean read_missing(struct kmod_kernel *kernel, GPtrArray *order, GError **error)
{
	g_autoptr(GHashTable) missing = g_hash_table_new(g_str_hash, g_str_equal);

	for (guint i = 0; i < order->len; i++) {
		struct kmod *kmod = order->pdata[i];

		if (!kmod->bytes)
			g_hash_table_add(missing, kmod->name);
	}
	if (g_hash_table_size(missing) && kernel->deb_path) {
		struct deb_scan scan = { kernel, missing, FALSE };

		if (!debpkg_read_files(kernel->deb_path, scan_select, scan_got, &scan, error))
			return FALSE;
	}
	for (guint i = 0; i < order->len; i++) {
		struct kmod *kmod = order->pdata[i];

		if (!kmod->bytes && !kmod_load_file(kmod, error))
			return FALSE;
	}
	return TRUE;
}

GPtrArray *kmod_load_order(struct kmod_kernel *kernel, const char *const *names, gboolean strict,
			   GError **error)
{
	g_autoptr(GPtrArray) order = g_ptr_array_new();
	g_autoptr(GHashTable) seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);

	for (const char *const *name = names; *name; name++) {
		g_autofree char *key = kmod_normalize_name(*name);

		if (g_hash_table_contains(kernel->builtin, key)) {
			ivlab_debug("%s: %s is built in", kernel->release, key);
			continue;
		}
		if (!strict && !g_hash_table_contains(kernel->modules, key)) {
			ivlab_info("%s: module %s is neither in %s nor built in: left out", kernel->release,
				   key, kernel->modules_from);
			continue;
		}
		if (!order_modules(kernel, key, seen, order, error))
			return NULL;
	}
	if (!read_missing(kernel, order, error))
		return NULL;
	return g_steal_pointer(&order);
}
