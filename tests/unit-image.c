/* unit-image.c: unit tests of the image pipeline's parts: the initramfs
 * writer, .deb reading, busybox applet and modinfo parsing, module load
 * order, sha256 checks.
 * Touches nothing real beyond temporary files. */
#include "config.h"

#include <elf.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <archive.h>
#include <archive_entry.h>
#include <glib/gstdio.h>

#include "debpkg.h"
#include "fetch.h"
#include "image.h"
#include "initramfs.h"
#include "kmod.h"
#include "ivlab.h"

static char *scratch_dir(void)
{
	g_autoptr(GError) error = NULL;
	char *dir = g_dir_make_tmp("unit-image-XXXXXX", &error);

	g_assert_no_error(error);
	return dir;
}

static void rm_rf(const char *path)
{
	g_autofree char *quoted = g_shell_quote(path);
	g_autofree char *command = g_strdup_printf("rm -rf %s", quoted);

	g_assert_true(g_spawn_command_line_sync(command, NULL, NULL, NULL, NULL));
}

static void test_sha256_valid(void)
{
	g_assert_true(fetch_sha256_is_valid(
		"9f0d10cdb1f6d200abd697613d1d38a692f32ff0caaa29a5ffd422cdbcd0d06c"));
	g_assert_true(fetch_sha256_is_valid(
		"9F0D10CDB1F6D200ABD697613D1D38A692F32FF0CAAA29A5FFD422CDBCD0D06C"));
	g_assert_false(fetch_sha256_is_valid(NULL));
	g_assert_false(fetch_sha256_is_valid(""));
	g_assert_false(fetch_sha256_is_valid("abc"));
	g_assert_false(fetch_sha256_is_valid(
		"9f0d10cdb1f6d200abd697613d1d38a692f32ff0caaa29a5ffd422cdbcd0d06"));
	g_assert_false(fetch_sha256_is_valid(
		"9f0d10cdb1f6d200abd697613d1d38a692f32ff0caaa29a5ffd422cdbcd0d06cc"));
	g_assert_false(fetch_sha256_is_valid(
		"zf0d10cdb1f6d200abd697613d1d38a692f32ff0caaa29a5ffd422cdbcd0d06c"));
}

static void test_file_sha256(void)
{
	g_autofree char *dir = scratch_dir();
	g_autofree char *path = g_build_filename(dir, "abc", NULL);
	g_autoptr(GError) error = NULL;
	g_autofree char *sum = NULL, *missing = NULL;

	g_assert_true(g_file_set_contents(path, "abc", 3, NULL));
	sum = fetch_file_sha256(path, &error);
	g_assert_no_error(error);
	g_assert_cmpstr(sum, ==, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	g_unlink(path);
	missing = fetch_file_sha256(path, &error);
	g_assert_null(missing);
	g_assert_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED);
	g_assert_nonnull(strstr(error->message, path));
	rm_rf(dir);
}

struct seen_entry {
	guint type;
	guint mode;
	char *contents;
	char *symlink;
	dev_t rdev;
	gint64 uid;
};

static void seen_free(gpointer data)
{
	struct seen_entry *seen = data;

	g_free(seen->contents);
	g_free(seen->symlink);
	g_free(seen);
}

/* Reads an archive back with libarchive: path -> what it holds. */
static GHashTable *read_archive(const char *path, int *format)
{
	GHashTable *entries = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, seen_free);
	struct archive *archive = archive_read_new();
	struct archive_entry *entry;

	archive_read_support_filter_all(archive);
	archive_read_support_format_all(archive);
	g_assert_cmpint(archive_read_open_filename(archive, path, 4096), ==, ARCHIVE_OK);
	while (archive_read_next_header(archive, &entry) == ARCHIVE_OK) {
		struct seen_entry *seen = g_new0(struct seen_entry, 1);
		gint64 size = archive_entry_size(entry);

		seen->type = archive_entry_filetype(entry);
		seen->mode = archive_entry_perm(entry);
		seen->uid = archive_entry_uid(entry);
		seen->rdev = archive_entry_rdev(entry);
		if (archive_entry_symlink(entry))
			seen->symlink = g_strdup(archive_entry_symlink(entry));
		seen->contents = g_malloc0(size + 1);
		if (size && seen->type == AE_IFREG)
			g_assert_cmpint(archive_read_data(archive, seen->contents, size), ==, size);
		*format = archive_format(archive);
		g_hash_table_insert(entries, g_strdup(archive_entry_pathname(entry)), seen);
	}
	archive_read_free(archive);
	return entries;
}

static void check_initramfs(enum initramfs_compression compression, const char *decompress)
{
	g_autofree char *dir = scratch_dir();
	g_autofree char *out = g_build_filename(dir, "initrd.img", NULL);
	g_autofree char *source = g_build_filename(dir, "init", NULL);
	g_autoptr(Initramfs) initramfs = initramfs_new();
	g_autoptr(GBytes) busybox = g_bytes_new_static("\177ELF-busybox", 12);
	g_autoptr(GError) error = NULL;
	g_autoptr(GHashTable) entries = NULL;
	struct seen_entry *seen;
	struct stat st;
	int format = 0;

	g_assert_true(g_file_set_contents(source, "#!/bin/busybox sh\n", -1, NULL));
	initramfs_add_dir(initramfs, "/dev", 0755);
	initramfs_add_chardev(initramfs, "/dev/console", 5, 1, 0600);
	initramfs_add_bytes(initramfs, "/bin/busybox", busybox, 0755);
	initramfs_add_symlink(initramfs, "/bin/sh", "busybox");
	g_assert_true(initramfs_add_file(initramfs, "/init", source, 0755, &error));
	g_assert_no_error(error);
	initramfs_add_bytes(initramfs, "/lib/modules/load.list", busybox, 0644);
	g_assert_true(initramfs_has(initramfs, "/lib/modules"));
	g_assert_true(initramfs_has(initramfs, "lib"));
	g_assert_false(initramfs_has(initramfs, "/sbin"));
	g_assert_false(initramfs_add_file(initramfs, "/missing", "/nonexistent/file", 0644, &error));
	g_assert_nonnull(error);
	g_clear_error(&error);

	g_assert_true(initramfs_write(initramfs, out, compression, &error));
	g_assert_no_error(error);
	g_assert_cmpint(stat(out, &st), ==, 0);
	g_assert_cmpint(st.st_mode & 0777, ==, 0644);
	entries = read_archive(out, &format);
	g_assert_cmpint(format, ==, ARCHIVE_FORMAT_CPIO_SVR4_NOCRC);
	g_assert_cmpuint(g_hash_table_size(entries), ==, 9);

	seen = g_hash_table_lookup(entries, "init");
	g_assert_nonnull(seen);
	g_assert_cmpuint(seen->type, ==, AE_IFREG);
	g_assert_cmpuint(seen->mode, ==, 0755);
	g_assert_cmpint(seen->uid, ==, 0);
	g_assert_cmpstr(seen->contents, ==, "#!/bin/busybox sh\n");
	seen = g_hash_table_lookup(entries, "bin/sh");
	g_assert_nonnull(seen);
	g_assert_cmpuint(seen->type, ==, AE_IFLNK);
	g_assert_cmpstr(seen->symlink, ==, "busybox");
	seen = g_hash_table_lookup(entries, "dev/console");
	g_assert_nonnull(seen);
	g_assert_cmpuint(seen->type, ==, AE_IFCHR);
	g_assert_cmpuint(major(seen->rdev), ==, 5);
	g_assert_cmpuint(minor(seen->rdev), ==, 1);
	seen = g_hash_table_lookup(entries, "lib");
	g_assert_nonnull(seen);
	g_assert_cmpuint(seen->type, ==, AE_IFDIR);
	g_assert_nonnull(g_hash_table_lookup(entries, "lib/modules/load.list"));

	/* The archive is what the cpio tool understands as newc, too. */
	g_autofree char *cpio = g_find_program_in_path("cpio");
	if (cpio) {
		g_autofree char *quoted = g_shell_quote(out);
		g_autofree char *command = g_strdup_printf("sh -c '%s < %s | cpio -t --quiet'", decompress,
							   quoted);
		g_autofree char *listing = NULL;
		int status;

		g_assert_true(g_spawn_command_line_sync(command, &listing, NULL, &status, NULL));
		g_assert_cmpint(status, ==, 0);
		g_assert_nonnull(strstr(listing, "init\n"));
		g_assert_nonnull(strstr(listing, "bin/busybox\n"));
		g_assert_nonnull(strstr(listing, "dev/console\n"));
	}
	rm_rf(dir);
}

static void test_initramfs_gzip(void)
{
	check_initramfs(INITRAMFS_GZIP, "gzip -dc");
}

static void test_initramfs_zstd(void)
{
	g_autofree char *zstd = g_find_program_in_path("zstd");

	if (!zstd) {
		g_test_skip("zstd not installed");
		return;
	}
	check_initramfs(INITRAMFS_ZSTD, "zstd -dc");
}

static void test_initramfs_none(void)
{
	check_initramfs(INITRAMFS_NONE, "cat");
}

static void test_initramfs_reproducible(void)
{
	g_autofree char *dir = scratch_dir();
	g_autofree char *a = g_build_filename(dir, "a.img", NULL);
	g_autofree char *b = g_build_filename(dir, "b.img", NULL);
	g_autoptr(GBytes) data = g_bytes_new_static("data", 4);
	g_autofree char *sum_a = NULL, *sum_b = NULL;
	const char *outs[] = { a, b };

	for (gsize i = 0; i < G_N_ELEMENTS(outs); i++) {
		g_autoptr(Initramfs) initramfs = initramfs_new();

		initramfs_add_bytes(initramfs, "/x/y", data, 0644);
		g_assert_true(initramfs_write(initramfs, outs[i], INITRAMFS_GZIP, NULL));
	}
	sum_a = fetch_file_sha256(a, NULL);
	sum_b = fetch_file_sha256(b, NULL);
	g_assert_cmpstr(sum_a, ==, sum_b);
	rm_rf(dir);
}

static void test_initramfs_unwritable(void)
{
	g_autoptr(Initramfs) initramfs = initramfs_new();
	g_autoptr(GError) error = NULL;

	initramfs_add_dir(initramfs, "/bin", 0755);
	g_assert_false(initramfs_write(initramfs, "/nonexistent/dir/initrd.img", INITRAMFS_GZIP, &error));
	g_assert_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED);
	g_assert_nonnull(strstr(error->message, "/nonexistent/dir/initrd.img"));
}

static void test_parse_compression(void)
{
	enum initramfs_compression compression;

	g_assert_true(initramfs_parse_compression("gzip", &compression));
	g_assert_cmpint(compression, ==, INITRAMFS_GZIP);
	g_assert_true(initramfs_parse_compression("zstd", &compression));
	g_assert_cmpint(compression, ==, INITRAMFS_ZSTD);
	g_assert_false(initramfs_parse_compression("lz4", &compression));
	g_assert_false(initramfs_parse_compression(NULL, &compression));
}

static void test_busybox_applets(void)
{
	static const char blob[] = "\177ELF junk [ not here \0\0[\0[[\0acpid\0ash\0cat\0ls\0mount\0"
				   "sh\0sleep\0test\0umount\0zcat\0\0more junk";
	g_autoptr(GBytes) bytes = g_bytes_new_static(blob, sizeof(blob));
	g_autoptr(GError) error = NULL;
	g_auto(GStrv) names = initramfs_busybox_applets(bytes, &error);

	g_assert_no_error(error);
	g_assert_nonnull(names);
	g_assert_cmpuint(g_strv_length(names), ==, 12);
	g_assert_cmpstr(names[0], ==, "[");
	g_assert_cmpstr(names[1], ==, "[[");
	g_assert_cmpstr(names[11], ==, "zcat");
}

static void test_busybox_no_table(void)
{
	static const char blob[] = "\177ELF nothing to see";
	g_autoptr(GBytes) bytes = g_bytes_new_static(blob, sizeof(blob));
	g_autoptr(GError) error = NULL;
	g_auto(GStrv) names = initramfs_busybox_applets(bytes, &error);

	g_assert_null(names);
	g_assert_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED);
	g_assert_nonnull(strstr(error->message, "applet table"));
}

/* Found by tests/fuzz (fuzz-initramfs): an empty file; a table whose last
 * name runs to the end of the file; names that are no file name ("..",
 * "a..b", "x/y", ".") aborted initramfs_add_busybox() in its path checks. */
static void test_busybox_hostile(void)
{
	static const char unterminated[] = "\0[\0[[\0acpid\0ash\0cat\0ls\0mount\0sh\0sleep\0tail";
	static const char odd[] = "\0[\0[[\0..\0a..b\0x/y\0.\0tab\there\0busybox\0ls\0cat\0sh\0\0";
	g_autoptr(GBytes) empty = g_bytes_new(NULL, 0);
	/* g_bytes_new() copies exactly: nothing follows the last byte. */
	g_autoptr(GBytes) cut = g_bytes_new(unterminated, sizeof(unterminated) - 1);
	g_autoptr(GBytes) strange = g_bytes_new(odd, sizeof(odd));
	g_autoptr(Initramfs) initramfs = initramfs_new();
	g_autoptr(GError) error = NULL;
	g_auto(GStrv) none = initramfs_busybox_applets(empty, &error);
	g_auto(GStrv) names = NULL;

	g_assert_null(none);
	g_assert_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED);
	g_clear_error(&error);
	names = initramfs_busybox_applets(cut, &error);
	g_assert_no_error(error);
	g_assert_cmpuint(g_strv_length(names), ==, 10);
	g_assert_cmpstr(names[9], ==, "tail");
	g_assert_true(initramfs_add_busybox(initramfs, strange, &error));
	g_assert_no_error(error);
	g_assert_true(initramfs_has(initramfs, "/bin/busybox"));
	g_assert_true(initramfs_has(initramfs, "/bin/ls"));
	g_assert_true(initramfs_has(initramfs, "/bin/["));
	g_assert_false(initramfs_has(initramfs, "/bin/x"));
	g_assert_false(initramfs_has(initramfs, "/bin/tab\there"));
}

/* A minimal relocatable ELF64 with a .modinfo section; its section headers
 * at an odd offset when misaligned (found by tests/fuzz, fuzz-kmod: they
 * were read in place, an unaligned access UBSan reports). */
static GBytes *fake_module_at(const char *modinfo, gsize modinfo_len, gboolean misaligned)
{
	static const char shstrtab[] = "\0.modinfo\0.shstrtab";
	g_autoptr(GByteArray) out = g_byte_array_new();
	Elf64_Ehdr ehdr = { 0 };
	Elf64_Shdr sections[3] = { { 0 } };
	gsize modinfo_off = sizeof(ehdr);
	gsize strtab_off = modinfo_off + modinfo_len;
	gsize shoff = ((strtab_off + sizeof(shstrtab) + 7) & ~(gsize)7) + (misaligned ? 1 : 0);

	memcpy(ehdr.e_ident, ELFMAG, SELFMAG);
	ehdr.e_ident[EI_CLASS] = ELFCLASS64;
	ehdr.e_ident[EI_DATA] = ELFDATA2LSB;
	ehdr.e_ident[EI_VERSION] = EV_CURRENT;
	ehdr.e_type = ET_REL;
	ehdr.e_shoff = shoff;
	ehdr.e_ehsize = sizeof(ehdr);
	ehdr.e_shentsize = sizeof(Elf64_Shdr);
	ehdr.e_shnum = 3;
	ehdr.e_shstrndx = 2;
	sections[1].sh_name = 1;
	sections[1].sh_type = SHT_PROGBITS;
	sections[1].sh_offset = modinfo_off;
	sections[1].sh_size = modinfo_len;
	sections[2].sh_name = 10;
	sections[2].sh_type = SHT_STRTAB;
	sections[2].sh_offset = strtab_off;
	sections[2].sh_size = sizeof(shstrtab);
	g_byte_array_append(out, (const guint8 *)&ehdr, sizeof(ehdr));
	g_byte_array_append(out, (const guint8 *)modinfo, modinfo_len);
	g_byte_array_append(out, (const guint8 *)shstrtab, sizeof(shstrtab));
	while (out->len < shoff)
		g_byte_array_append(out, (const guint8 *)"", 1);
	g_byte_array_append(out, (const guint8 *)sections, sizeof(sections));
	return g_byte_array_free_to_bytes(g_steal_pointer(&out));
}

static GBytes *fake_module(const char *modinfo, gsize modinfo_len)
{
	return fake_module_at(modinfo, modinfo_len, FALSE);
}

static void test_modinfo_misaligned(void)
{
	static const char modinfo[] = "license=GPL\0name=virtio_console\0";
	g_autoptr(GBytes) module = fake_module_at(modinfo, sizeof(modinfo), TRUE);
	g_autofree char *name = kmod_modinfo(module, "name");

	g_assert_cmpstr(name, ==, "virtio_console");
}

static void test_modinfo(void)
{
	static const char modinfo[] = "license=GPL\0depends=virtio,virtio_ring\0name=virtio_console\0"
				      "vermagic=6.1.0-57-amd64 SMP preempt mod_unload modversions ";
	g_autoptr(GBytes) module = fake_module(modinfo, sizeof(modinfo));
	g_autofree char *depends = kmod_modinfo(module, "depends");
	g_autofree char *name = kmod_modinfo(module, "name");
	g_autofree char *vermagic = kmod_modinfo(module, "vermagic");
	g_autofree char *none = kmod_modinfo(module, "author");
	g_autofree char *prefix = kmod_modinfo(module, "dep");

	g_assert_cmpstr(depends, ==, "virtio,virtio_ring");
	g_assert_cmpstr(name, ==, "virtio_console");
	g_assert_true(g_str_has_prefix(vermagic, "6.1.0-57-amd64 "));
	g_assert_null(none);
	g_assert_null(prefix);
}

static void test_modinfo_garbage(void)
{
	static const char modinfo[] = "depends=\0name=x\0";
	g_autoptr(GBytes) module = fake_module(modinfo, sizeof(modinfo));
	g_autoptr(GBytes) junk = g_bytes_new_static("not an ELF file at all, really not", 34);
	gsize size;
	const guint8 *data = g_bytes_get_data(module, &size);
	g_autofree char *empty = kmod_modinfo(module, "depends");

	g_assert_cmpstr(empty, ==, "");
	g_assert_null(kmod_modinfo(junk, "name"));
	/* Every truncation is refused or answered, never read past the end. */
	for (gsize cut = 0; cut < size; cut += 7) {
		g_autoptr(GBytes) truncated = g_bytes_new(data, cut);
		g_autofree char *value = kmod_modinfo(truncated, "name");

		g_assert_true(value == NULL || strcmp(value, "x") == 0);
	}
}

/* A module file with its dependencies, as a kernel build tree has it. */
static void write_module(const char *dir, const char *file, const char *depends)
{
	g_autofree char *modinfo = g_strdup_printf("depends=%s", depends);
	g_autoptr(GBytes) module = fake_module(modinfo, strlen(modinfo) + 1);
	g_autofree char *path = g_build_filename(dir, file, NULL);

	g_assert_true(g_file_set_contents(path, g_bytes_get_data(module, NULL),
					  g_bytes_get_size(module), NULL));
}

static void test_kmod_load_order(void)
{
	g_autofree char *dir = scratch_dir();
	g_autofree char *sub = g_build_filename(dir, "drivers", "virtio", NULL);
	g_autofree char *builtin = g_build_filename(dir, "modules.builtin", NULL);
	const char *const wanted[] = { "virtio-console", "virtio_pci", "virtio", "absent", NULL };
	const char *const strict_names[] = { "absent", NULL };
	g_auto(KmodKernel) kernel = { 0 };
	g_autoptr(GError) error = NULL;
	g_autoptr(GPtrArray) order = NULL;
	g_autoptr(GString) names = g_string_new(NULL);

	g_assert_cmpint(g_mkdir_with_parents(sub, 0755), ==, 0);
	/* virtio is built in (so no module depends on it); the others are
	 * files, found at any depth. */
	g_assert_true(g_file_set_contents(builtin, "kernel/drivers/virtio/virtio.ko\n", -1, NULL));
	write_module(sub, "virtio_ring.ko", "");
	write_module(sub, "virtio_pci_modern_dev.ko", "virtio_ring");
	write_module(sub, "virtio_pci.ko", "virtio_ring,virtio_pci_modern_dev");
	write_module(dir, "virtio-console.ko", "virtio_ring");
	g_assert_true(kmod_kernel_from_dir(&kernel, dir, &error));
	g_assert_no_error(error);
	kernel.release = g_strdup("6.1.0-test");
	order = kmod_load_order(&kernel, wanted, FALSE, &error);
	g_assert_no_error(error);
	g_assert_nonnull(order);
	for (guint i = 0; i < order->len; i++) {
		const struct kmod *kmod = order->pdata[i];

		g_assert_nonnull(kmod->bytes);
		g_string_append_printf(names, "%s%s", i ? " " : "", kmod->name);
	}
	/* Each after what it depends on, once; the built-in and the absent left out. */
	g_assert_cmpstr(names->str, ==, "virtio_ring virtio_console virtio_pci_modern_dev virtio_pci");

	/* Strict (a Debian kernel): a named module it lacks is an error. */
	g_clear_pointer(&order, g_ptr_array_unref);
	order = kmod_load_order(&kernel, strict_names, TRUE, &error);
	g_assert_null(order);
	g_assert_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED);
	g_assert_nonnull(strstr(error->message, "needs the module absent"));
	rm_rf(dir);
}

static void test_kmod_check_release(void)
{
	static const char modinfo[] = "vermagic=6.1.0-57-amd64 SMP preempt mod_unload ";
	g_autoptr(GBytes) module = fake_module(modinfo, sizeof(modinfo));
	g_autoptr(GError) error = NULL;

	g_assert_true(kmod_check_release(module, "6.1.0-57-amd64", &error));
	g_assert_no_error(error);
	g_assert_false(kmod_check_release(module, "6.1.0-57", &error));
	g_assert_cmpstr(error->message, ==,
			"image: the module was built for '6.1.0-57-amd64 SMP preempt mod_unload ' but "
			"the kernel is 6.1.0-57 (wrong build directory?)");
}

/* --- .deb packages built here with libarchive ----------------------------- */

struct member {
	const char *path;
	guint type;
	guint mode;
	const char *contents; /* or symlink target */
};

static GBytes *make_tar(const struct member *members, gsize count)
{
	struct archive *tar = archive_write_new();
	gsize size = 1 << 20, used = 0;
	guint8 *buf = g_malloc(size);

	archive_write_set_format_pax_restricted(tar);
	archive_write_add_filter_xz(tar);
	g_assert_cmpint(archive_write_open_memory(tar, buf, size, &used), ==, ARCHIVE_OK);
	for (gsize i = 0; i < count; i++) {
		struct archive_entry *entry = archive_entry_new();
		gsize len = members[i].type == AE_IFREG ? strlen(members[i].contents) : 0;

		archive_entry_set_pathname(entry, members[i].path);
		archive_entry_set_filetype(entry, members[i].type);
		archive_entry_set_perm(entry, members[i].mode);
		archive_entry_set_size(entry, len);
		if (members[i].type == AE_IFLNK)
			archive_entry_set_symlink(entry, members[i].contents);
		g_assert_cmpint(archive_write_header(tar, entry), ==, ARCHIVE_OK);
		if (len)
			g_assert_cmpint(archive_write_data(tar, members[i].contents, len), ==, (la_ssize_t)len);
		archive_entry_free(entry);
	}
	g_assert_cmpint(archive_write_close(tar), ==, ARCHIVE_OK);
	archive_write_free(tar);
	return g_bytes_new_take(buf, used);
}

static void write_deb(const char *path, const struct member *members, gsize count)
{
	g_autoptr(GBytes) data = make_tar(members, count);
	static const struct member control[] = { { "./control", AE_IFREG, 0644, "Package: t\n" } };
	g_autoptr(GBytes) control_tar = make_tar(control, 1);
	struct archive *ar = archive_write_new();
	struct {
		const char *name;
		GBytes *bytes;
	} parts[] = {
		{ "debian-binary", g_bytes_new_static("2.0\n", 4) },
		{ "control.tar.xz", g_bytes_ref(control_tar) },
		{ "data.tar.xz", g_bytes_ref(data) },
	};

	archive_write_set_format_ar_svr4(ar);
	g_assert_cmpint(archive_write_open_filename(ar, path), ==, ARCHIVE_OK);
	for (gsize i = 0; i < G_N_ELEMENTS(parts); i++) {
		struct archive_entry *entry = archive_entry_new();
		gsize len;
		const void *bytes = g_bytes_get_data(parts[i].bytes, &len);

		archive_entry_set_pathname(entry, parts[i].name);
		archive_entry_set_filetype(entry, AE_IFREG);
		archive_entry_set_perm(entry, 0644);
		archive_entry_set_size(entry, len);
		g_assert_cmpint(archive_write_header(ar, entry), ==, ARCHIVE_OK);
		g_assert_cmpint(archive_write_data(ar, bytes, len), ==, (la_ssize_t)len);
		archive_entry_free(entry);
		g_bytes_unref(parts[i].bytes);
	}
	g_assert_cmpint(archive_write_close(ar), ==, ARCHIVE_OK);
	archive_write_free(ar);
}

static const struct member tool_members[] = {
	{ "./", AE_IFDIR, 0755, NULL },
	{ "./usr/", AE_IFDIR, 0755, NULL },
	{ "./usr/bin/", AE_IFDIR, 0755, NULL },
	{ "./usr/bin/tool", AE_IFREG, 0755, "#!/bin/sh\necho tool\n" },
	{ "./usr/lib/", AE_IFDIR, 0755, NULL },
	{ "./usr/lib/tool-link", AE_IFLNK, 0777, "../bin/tool" },
	{ "./etc/", AE_IFDIR, 0755, NULL },
	{ "./etc/tool.conf", AE_IFREG, 0644, "setting=1\n" },
};

static gboolean count_member(struct archive *data, struct archive_entry *entry, const char *path,
			     gpointer user_data, GError **error)
{
	GPtrArray *paths = user_data;

	if (strcmp(path, "etc/tool.conf") == 0) {
		g_autoptr(GBytes) contents = debpkg_read_member(data, "t.deb", path, 100, error);

		g_assert_nonnull(contents);
		g_assert_cmpmem(g_bytes_get_data(contents, NULL), g_bytes_get_size(contents), "setting=1\n",
				10);
	}
	g_ptr_array_add(paths, g_strdup(path));
	return TRUE;
}

static gboolean only_etc(const char *path, gpointer user_data)
{
	return g_str_has_prefix(path, "etc");
}

static void test_deb_read(void)
{
	g_autofree char *dir = scratch_dir();
	g_autofree char *deb = g_build_filename(dir, "tool_1.0_amd64.deb", NULL);
	g_autofree char *root = g_build_filename(dir, "root", NULL);
	g_autofree char *partial = g_build_filename(dir, "partial", NULL);
	g_autoptr(GPtrArray) paths = g_ptr_array_new_with_free_func(g_free);
	g_autoptr(GError) error = NULL;
	g_autofree char *tool = g_build_filename(root, "usr", "bin", "tool", NULL);
	g_autofree char *link = g_build_filename(root, "usr", "lib", "tool-link", NULL);
	g_autofree char *target = NULL, *contents = NULL;
	struct stat st;

	write_deb(deb, tool_members, G_N_ELEMENTS(tool_members));
	g_assert_true(debpkg_is_deb(deb));
	g_assert_true(debpkg_foreach(deb, count_member, paths, &error));
	g_assert_no_error(error);
	/* "./" itself is not a member; the leading "./" is gone from the rest. */
	g_assert_cmpuint(paths->len, ==, G_N_ELEMENTS(tool_members) - 1);
	g_assert_cmpstr(paths->pdata[0], ==, "usr/");

	g_assert_true(debpkg_extract(deb, root, NULL, NULL, &error));
	g_assert_no_error(error);
	g_assert_cmpint(stat(tool, &st), ==, 0);
	g_assert_cmpint(st.st_mode & 0777, ==, 0755);
	target = g_file_read_link(link, NULL);
	g_assert_cmpstr(target, ==, "../bin/tool");
	g_assert_true(g_file_get_contents(link, &contents, NULL, NULL));
	g_assert_cmpstr(contents, ==, "#!/bin/sh\necho tool\n");

	g_assert_true(debpkg_extract(deb, partial, only_etc, NULL, &error));
	g_assert_no_error(error);
	g_autofree char *conf = g_build_filename(partial, "etc", "tool.conf", NULL);
	g_autofree char *no_tool = g_build_filename(partial, "usr", NULL);
	g_assert_true(g_file_test(conf, G_FILE_TEST_IS_REGULAR));
	g_assert_false(g_file_test(no_tool, G_FILE_TEST_EXISTS));
	rm_rf(dir);
}

static void test_deb_hostile(void)
{
	static const struct member evil[] = {
		{ "./usr/", AE_IFDIR, 0755, NULL },
		{ "./usr/../../escaped", AE_IFREG, 0644, "gotcha\n" },
	};
	g_autofree char *dir = scratch_dir();
	g_autofree char *deb = g_build_filename(dir, "evil.deb", NULL);
	g_autofree char *root = g_build_filename(dir, "root", NULL);
	g_autofree char *escaped = g_build_filename(dir, "escaped", NULL);
	g_autoptr(GError) error = NULL;

	write_deb(deb, evil, G_N_ELEMENTS(evil));
	g_assert_false(debpkg_extract(deb, root, NULL, NULL, &error));
	g_assert_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED);
	g_assert_nonnull(strstr(error->message, deb));
	g_assert_false(g_file_test(escaped, G_FILE_TEST_EXISTS));
	rm_rf(dir);
}

static void test_not_a_deb(void)
{
	g_autofree char *dir = scratch_dir();
	g_autofree char *path = g_build_filename(dir, "kernel.bin", NULL);
	g_autoptr(GPtrArray) paths = g_ptr_array_new_with_free_func(g_free);
	g_autoptr(GError) error = NULL;

	g_assert_true(g_file_set_contents(path, "MZ not a package", -1, NULL));
	g_assert_false(debpkg_is_deb(path));
	g_assert_false(debpkg_is_deb("/nonexistent"));
	g_assert_false(debpkg_foreach(path, count_member, paths, &error));
	g_assert_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED);
	g_assert_nonnull(strstr(error->message, path));
	rm_rf(dir);
}

static void test_arches_and_paths(void)
{
	g_autofree char *kernel = NULL, *initrd = NULL;
	g_autoptr(GError) error = NULL;

	g_assert_true(image_arch_is_known("x86_64"));
	g_assert_true(image_arch_is_known("aarch64"));
	g_assert_false(image_arch_is_known("riscv64"));
	g_assert_false(image_arch_is_known(NULL));
	g_assert_cmpuint(g_strv_length((GStrv)image_arches()), ==, 2);
	g_setenv("IVLAB_STATE_DIR", "/srv/ivlab-state", TRUE);
	kernel = image_kernel_path("aarch64");
	initrd = image_initrd_path("aarch64");
	g_assert_cmpstr(kernel, ==, "/srv/ivlab-state/images/aarch64/vmlinuz");
	g_assert_cmpstr(initrd, ==, "/srv/ivlab-state/images/aarch64/initrd.img");
	g_assert_false(image_ensure("riscv64", NULL, &error));
	g_assert_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED);
	g_assert_nonnull(strstr(error->message, "riscv64"));
}

int main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	ivlab_set_verbosity(0, TRUE);
	g_test_add_func("/fetch/sha256-valid", test_sha256_valid);
	g_test_add_func("/fetch/file-sha256", test_file_sha256);
	g_test_add_func("/initramfs/gzip", test_initramfs_gzip);
	g_test_add_func("/initramfs/zstd", test_initramfs_zstd);
	g_test_add_func("/initramfs/none", test_initramfs_none);
	g_test_add_func("/initramfs/reproducible", test_initramfs_reproducible);
	g_test_add_func("/initramfs/unwritable", test_initramfs_unwritable);
	g_test_add_func("/initramfs/parse-compression", test_parse_compression);
	g_test_add_func("/image/busybox-applets", test_busybox_applets);
	g_test_add_func("/image/busybox-no-table", test_busybox_no_table);
	g_test_add_func("/image/busybox-hostile", test_busybox_hostile);
	g_test_add_func("/image/modinfo", test_modinfo);
	g_test_add_func("/image/modinfo-garbage", test_modinfo_garbage);
	g_test_add_func("/image/modinfo-misaligned", test_modinfo_misaligned);
	g_test_add_func("/kmod/load-order", test_kmod_load_order);
	g_test_add_func("/kmod/check-release", test_kmod_check_release);
	g_test_add_func("/image/arches-and-paths", test_arches_and_paths);
	g_test_add_func("/debpkg/read", test_deb_read);
	g_test_add_func("/debpkg/hostile", test_deb_hostile);
	g_test_add_func("/debpkg/not-a-deb", test_not_a_deb);
	return g_test_run();
}
