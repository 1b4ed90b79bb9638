/* unit-kimage.c: unit tests of src/kimage.c: bzImages made here (a boot
 * header and a tiny ELF64 kernel compressed with gzip, xz or zstd, with and
 * without the PVH note), broken in each way kimage must name, and Debian's
 * own kernel when an image has been built.
 * `unit-kimage --write-seeds DIR` writes the good images as fuzz seeds. */
#include "config.h"

#include <elf.h>
#include <string.h>
#include <sys/stat.h>
#include <glib/gstdio.h>
#include <lzma.h>
#include <zlib.h>
#include <zstd.h>

#include "ivlab.h"
#include "kimage.h"

#define PVH_ENTRY 0x1000400ull
#define BODY_BYTES 8192
#define PAYLOAD_OFFSET 0x40
#define SETUP_SECTS 2

enum format { GZIP, XZ, ZSTD };

static char *scratch;

static void put_le32(guint8 *p, guint32 value)
{
	for (int i = 0; i < 4; i++)
		p[i] = value >> (8 * i);
}

static void append_note(GByteArray *out, const char *name, guint32 type, guint64 desc)
{
	guint8 header[12];
	guint8 name_pad[8] = { 0 };
	gsize name_size = strlen(name) + 1;

	put_le32(header, name_size);
	put_le32(header + 4, sizeof(desc));
	put_le32(header + 8, type);
	g_byte_array_append(out, header, sizeof(header));
	memcpy(name_pad, name, name_size);
	g_byte_array_append(out, name_pad, (name_size + 3) & ~3u);
	desc = GUINT64_TO_LE(desc);
	g_byte_array_append(out, (guint8 *)&desc, sizeof(desc));
}

/* An x86-64 executable: its header, one PT_NOTE segment (a GNU note, then
 * the Xen PVH note or a Xen note of another type) and a body. */
static GByteArray *make_elf(gboolean pvh)
{
	GByteArray *elf = g_byte_array_new();
	g_autoptr(GByteArray) notes = g_byte_array_new();
	Elf64_Ehdr ehdr = { 0 };
	Elf64_Phdr phdr = { 0 };

	append_note(notes, "GNU", NT_GNU_BUILD_ID, 0x1122334455667788ull);
	append_note(notes, "Xen", pvh ? KIMAGE_PVH_NOTE_TYPE : 17, PVH_ENTRY);
	memcpy(ehdr.e_ident, ELFMAG, SELFMAG);
	ehdr.e_ident[EI_CLASS] = ELFCLASS64;
	ehdr.e_ident[EI_DATA] = ELFDATA2LSB;
	ehdr.e_ident[EI_VERSION] = EV_CURRENT;
	ehdr.e_type = ET_EXEC;
	ehdr.e_machine = EM_X86_64;
	ehdr.e_version = EV_CURRENT;
	ehdr.e_phoff = sizeof(ehdr);
	ehdr.e_ehsize = sizeof(ehdr);
	ehdr.e_phentsize = sizeof(phdr);
	ehdr.e_phnum = 1;
	phdr.p_type = PT_NOTE;
	phdr.p_offset = sizeof(ehdr) + sizeof(phdr);
	phdr.p_filesz = notes->len;
	phdr.p_align = 4;
	g_byte_array_append(elf, (guint8 *)&ehdr, sizeof(ehdr));
	g_byte_array_append(elf, (guint8 *)&phdr, sizeof(phdr));
	g_byte_array_append(elf, notes->data, notes->len);
	for (guint i = 0; i < BODY_BYTES; i++) {
		guint8 byte = i / 97;

		g_byte_array_append(elf, &byte, 1);
	}
	return elf;
}

/* DATA compressed as the kernel's build does: the stream, then its
 * uncompressed size in 4 bytes. */
static GByteArray *compress_kernel(enum format format, const guint8 *data, gsize size)
{
	GByteArray *out = g_byte_array_new();
	gsize bound = size + size / 2 + 1024, used = 0;
	guint8 trailer[4];

	g_byte_array_set_size(out, bound);
	if (format == GZIP) {
		z_stream stream = { 0 };

		g_assert_cmpint(deflateInit2(&stream, 9, Z_DEFLATED, 16 + MAX_WBITS, 8,
					     Z_DEFAULT_STRATEGY), ==, Z_OK);
		stream.next_in = (Bytef *)(guintptr)data;
		stream.avail_in = size;
		stream.next_out = out->data;
		stream.avail_out = bound;
		g_assert_cmpint(deflate(&stream, Z_FINISH), ==, Z_STREAM_END);
		used = stream.total_out;
		deflateEnd(&stream);
	} else if (format == XZ) {
		g_assert_cmpint(lzma_easy_buffer_encode(6, LZMA_CHECK_CRC32, NULL, data, size,
							out->data, &used, bound), ==, LZMA_OK);
	} else {
		/* With its checksum, as the zstd program writes by default. */
		ZSTD_CCtx *context = ZSTD_createCCtx();

		ZSTD_CCtx_setParameter(context, ZSTD_c_compressionLevel, 19);
		ZSTD_CCtx_setParameter(context, ZSTD_c_checksumFlag, 1);
		used = ZSTD_compress2(context, out->data, bound, data, size);
		g_assert_false(ZSTD_isError(used));
		ZSTD_freeCCtx(context);
	}
	g_byte_array_set_size(out, used);
	put_le32(trailer, size);
	g_byte_array_append(out, trailer, sizeof(trailer));
	return out;
}

/* A bzImage around PAYLOAD: SETUP_SECTS sectors of setup after the boot
 * sector, the payload PAYLOAD_OFFSET bytes into the protected-mode part. */
static GByteArray *make_bzimage(const guint8 *payload, gsize size, guint16 version)
{
	GByteArray *image = g_byte_array_new();
	gsize start = (SETUP_SECTS + 1) * 512 + PAYLOAD_OFFSET;

	g_byte_array_set_size(image, start);
	memset(image->data, 0, start);
	image->data[0x1f1] = SETUP_SECTS;
	memcpy(image->data + 0x202, "HdrS", 4);
	image->data[0x206] = version & 0xff;
	image->data[0x207] = version >> 8;
	put_le32(image->data + 0x248, PAYLOAD_OFFSET);
	put_le32(image->data + 0x24c, size);
	g_byte_array_append(image, payload, size);
	return image;
}

static GByteArray *make_kernel(enum format format, gboolean pvh)
{
	g_autoptr(GByteArray) elf = make_elf(pvh);
	g_autoptr(GByteArray) payload = compress_kernel(format, elf->data, elf->len);

	return make_bzimage(payload->data, payload->len, 0x020f);
}

static char *write_file(const char *name, const guint8 *data, gsize size)
{
	g_autoptr(GError) error = NULL;
	char *path = g_build_filename(scratch, name, NULL);

	g_file_set_contents(path, (const char *)data, size, &error);
	g_assert_no_error(error);
	return path;
}

/* Extraction of IMAGE fails with exactly "IMAGE: DETAIL" and leaves nothing. */
static void assert_extract_fails(const guint8 *data, gsize size, guint64 max, const char *detail)
{
	g_autofree char *image = write_file("bad-bzImage", data, size);
	g_autofree char *out = g_build_filename(scratch, "bad-vmlinux", NULL);
	g_autofree char *expected = g_strdup_printf("%s: %s", image, detail);
	g_autoptr(GError) error = NULL;
	g_autoptr(GDir) dir = NULL;
	const char *name;

	g_assert_false(kimage_extract_vmlinux_max(image, out, max, &error));
	g_assert_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED);
	g_assert_cmpstr(error->message, ==, expected);
	dir = g_dir_open(scratch, 0, NULL);
	while ((name = g_dir_read_name(dir)))
		g_assert_false(g_str_has_prefix(name, "bad-vmlinux"));
}

static void check_extract(enum format format, gboolean pvh)
{
	g_autoptr(GByteArray) elf = make_elf(pvh);
	g_autoptr(GByteArray) kernel = make_kernel(format, pvh);
	g_autofree char *image = write_file("bzImage", kernel->data, kernel->len);
	g_autofree char *out = g_build_filename(scratch, "vmlinux", NULL);
	g_autofree char *contents = NULL;
	g_autoptr(GError) error = NULL;
	guint64 entry = 0;
	gsize length;
	struct stat st;

	g_assert_true(kimage_is_bzimage(image));
	g_assert_true(kimage_extract_vmlinux(image, out, &error));
	g_assert_no_error(error);
	g_assert_true(g_file_get_contents(out, &contents, &length, NULL));
	g_assert_cmpmem(contents, length, elf->data, elf->len);
	g_assert_cmpint(g_stat(out, &st), ==, 0);
	g_assert_cmpint(st.st_mode & 07777, ==, 0644);
	g_assert_false(kimage_is_bzimage(out));
	g_assert_cmpint(kimage_has_pvh_note(out, &entry, &error), ==,
			pvh ? KIMAGE_PVH_PRESENT : KIMAGE_PVH_ABSENT);
	g_assert_no_error(error);
	g_assert_cmpuint(entry, ==, pvh ? PVH_ENTRY : 0);
}

static void test_gzip(void)
{
	check_extract(GZIP, TRUE);
}

static void test_xz(void)
{
	check_extract(XZ, TRUE);
}

static void test_zstd(void)
{
	check_extract(ZSTD, TRUE);
}

static void test_no_pvh_note(void)
{
	check_extract(XZ, FALSE);
}

static void test_not_bzimage(void)
{
	g_autoptr(GByteArray) kernel = make_kernel(XZ, TRUE);
	g_autofree char *missing = g_build_filename(scratch, "missing", NULL);
	g_autofree char *expected = g_strdup_printf("%s: cannot open: No such file or directory", missing);
	g_autoptr(GError) error = NULL;

	assert_extract_fails(kernel->data, 0x100, KIMAGE_MAX_VMLINUX_BYTES,
			     "not a Linux bzImage (no HdrS boot header)");
	kernel->data[0x203] = 'x';
	assert_extract_fails(kernel->data, kernel->len, KIMAGE_MAX_VMLINUX_BYTES,
			     "not a Linux bzImage (no HdrS boot header)");
	g_assert_false(kimage_is_bzimage(missing));
	g_assert_false(kimage_extract_vmlinux(missing, missing, &error));
	g_assert_cmpstr(error->message, ==, expected);
}

static void test_old_protocol(void)
{
	g_autoptr(GByteArray) kernel = make_kernel(GZIP, TRUE);

	kernel->data[0x206] = 0x06;
	assert_extract_fails(kernel->data, kernel->len, KIMAGE_MAX_VMLINUX_BYTES,
			     "boot protocol 2.06 has no payload fields (needs 2.08)");
	/* 2.08's fields cut off. */
	kernel->data[0x206] = 0x08;
	assert_extract_fails(kernel->data, 0x24e, KIMAGE_MAX_VMLINUX_BYTES,
			     "boot header truncated at 590 bytes");
}

static void test_payload_outside(void)
{
	g_autoptr(GByteArray) kernel = make_kernel(ZSTD, TRUE);
	gsize start = (SETUP_SECTS + 1) * 512 + PAYLOAD_OFFSET;
	guint length = kernel->len - start;
	g_autofree char *cut = g_strdup_printf("payload (%u bytes at %zu) runs past the end of the file (%u bytes)",
					       length, start, kernel->len - 1);
	g_autofree char *far = g_strdup_printf("payload (%u bytes at %" G_GUINT64_FORMAT
					       ") runs past the end of the file (%u bytes)",
					       length, (guint64)(SETUP_SECTS + 1) * 512 + 0xfffffff0u, kernel->len);

	assert_extract_fails(kernel->data, kernel->len - 1, KIMAGE_MAX_VMLINUX_BYTES, cut);
	put_le32(kernel->data + 0x248, 0xfffffff0);
	assert_extract_fails(kernel->data, kernel->len, KIMAGE_MAX_VMLINUX_BYTES, far);
}

static void test_unsupported(void)
{
	static const struct {
		const char *name;
		guint8 magic[8];
	} others[] = {
		{ "lz4", { 0x02, 0x21, 0x4c, 0x18 } },
		{ "lzma", { 0x5d, 0x00, 0x00, 0x80 } },
		{ "bzip2", { 'B', 'Z', 'h', '9' } },
		{ "lzo", { 0x89, 'L', 'Z', 'O', 0x00, 0x0d, 0x0a, 0x1a } },
	};
	static const guint8 unknown[] = { 0xde, 0xad, 0xbe, 0xef, 0x00, 0x00 };

	for (gsize i = 0; i < G_N_ELEMENTS(others); i++) {
		g_autoptr(GByteArray) kernel = make_bzimage(others[i].magic, sizeof(others[i].magic),
							    0x020f);
		g_autofree char *detail = g_strdup_printf("payload compressed with %s: ivlab can extract gzip, xz and zstd",
							  others[i].name);

		assert_extract_fails(kernel->data, kernel->len, KIMAGE_MAX_VMLINUX_BYTES, detail);
	}
	{
		g_autoptr(GByteArray) kernel = make_bzimage(unknown, sizeof(unknown), 0x020f);

		assert_extract_fails(kernel->data, kernel->len, KIMAGE_MAX_VMLINUX_BYTES,
				     "payload in an unknown format (starts de ad be ef): ivlab can extract gzip, xz and zstd");
	}
	{
		g_autoptr(GByteArray) kernel = make_bzimage(unknown, 2, 0x020f);

		assert_extract_fails(kernel->data, kernel->len, KIMAGE_MAX_VMLINUX_BYTES,
				     "payload of 2 bytes is too short to be compressed");
	}
}

static void test_cap(void)
{
	g_autoptr(GByteArray) elf = make_elf(TRUE);

	for (enum format format = GZIP; format <= ZSTD; format++) {
		g_autoptr(GByteArray) payload = compress_kernel(format, elf->data, elf->len);
		g_autoptr(GByteArray) kernel = make_bzimage(payload->data, payload->len, 0x020f);

		assert_extract_fails(kernel->data, kernel->len, 4096,
				     "payload decompresses to more than 4KiB");
	}
}

static void test_not_elf(void)
{
	static const char text[] = "a kernel this is not, though it is long enough for an ELF header\n";
	g_autoptr(GByteArray) short_elf = make_elf(TRUE);

	for (enum format format = GZIP; format <= ZSTD; format++) {
		g_autoptr(GByteArray) payload = compress_kernel(format, (const guint8 *)text, sizeof(text));
		g_autoptr(GByteArray) kernel = make_bzimage(payload->data, payload->len, 0x020f);
		g_autoptr(GByteArray) cut = compress_kernel(format, short_elf->data, 20);
		g_autoptr(GByteArray) cut_kernel = make_bzimage(cut->data, cut->len, 0x020f);

		assert_extract_fails(kernel->data, kernel->len, KIMAGE_MAX_VMLINUX_BYTES,
				     "payload is not an ELF64 x86-64 executable");
		assert_extract_fails(cut_kernel->data, cut_kernel->len, KIMAGE_MAX_VMLINUX_BYTES,
				     "payload is not an ELF64 x86-64 executable");
	}
}

static void test_corrupt(void)
{
	static const char *const names[] = { "gzip", "xz", "zstd" };
	/* The payload cut short (its 4-byte size and 30 more bytes gone)... */
	static const char *const truncated[] = { "truncated stream", "truncated stream",
						 "truncated stream" };
	g_autoptr(GByteArray) elf = make_elf(TRUE);

	for (enum format format = GZIP; format <= ZSTD; format++) {
		g_autoptr(GByteArray) payload = compress_kernel(format, elf->data, elf->len);
		g_autoptr(GByteArray) cut = make_bzimage(payload->data, payload->len - 34, 0x020f);
		g_autoptr(GByteArray) flipped = NULL;
		g_autofree char *detail = g_strdup_printf("corrupt %s payload: %s", names[format],
							  truncated[format]);
		g_autofree char *image = NULL, *out = g_build_filename(scratch, "flipped-vmlinux", NULL);
		g_autofree char *prefix = NULL;
		g_autoptr(GError) error = NULL;

		assert_extract_fails(cut->data, cut->len, KIMAGE_MAX_VMLINUX_BYTES, detail);
		/* ...and with bytes in its middle flipped. */
		for (guint i = payload->len / 2; i < payload->len / 2 + 8; i++)
			payload->data[i] ^= 0x5a;
		flipped = make_bzimage(payload->data, payload->len, 0x020f);
		image = write_file("flipped", flipped->data, flipped->len);
		prefix = g_strdup_printf("%s: corrupt %s payload: ", image, names[format]);
		g_assert_false(kimage_extract_vmlinux(image, out, &error));
		g_assert_true(g_str_has_prefix(error->message, prefix));
		g_assert_false(g_file_test(out, G_FILE_TEST_EXISTS));
		g_test_message("%s", error->message);
	}
}

/* Broken ELF files, as the note walker must meet them. */
static void test_hostile_elf(void)
{
	g_autoptr(GByteArray) elf = make_elf(TRUE);
	struct {
		gsize at;
		guint32 value;
		gsize length;
		const char *detail;
	} cases[] = {
		{ 0, 0, 40, "not an ELF64 x86-64 executable" },
		{ 18, EM_AARCH64, 0, "not an ELF64 x86-64 executable" },
		{ 0, 0, 100, "program headers lie outside the file" },
		{ 32, 0xffffff00, 0, "program headers lie outside the file" },
		{ 64 + 8, 0x7fffffff, 0, "note segment 0 lies outside the file" },
		{ 64 + 56, 0x10000, 0, "corrupt note in segment 0" },
		{ 64 + 56 + 20 + 4, 0x1000, 0, "corrupt note in segment 0" },
	};

	for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
		g_autoptr(GByteArray) copy = g_byte_array_new();
		g_autofree char *path = NULL, *expected = NULL;
		g_autoptr(GError) error = NULL;

		g_byte_array_append(copy, elf->data, cases[i].length ? cases[i].length : elf->len);
		if (!cases[i].length) {
			if (cases[i].at == 18)
				copy->data[18] = cases[i].value;
			else
				put_le32(copy->data + cases[i].at, cases[i].value);
		}
		path = write_file("hostile-elf", copy->data, copy->len);
		expected = g_strdup_printf("%s: %s", path, cases[i].detail);
		g_assert_cmpint(kimage_has_pvh_note(path, NULL, &error), ==, KIMAGE_PVH_ERROR);
		g_assert_cmpstr(error->message, ==, expected);
	}
}

/* Debian's amd64 kernel (xz) from a built x86_64 image: extracted, and
 * with the PVH note. Skipped without one, in CI too: the image is built by
 * test-image-build.sh, which may run after this test. */
static void test_debian_kernel(void)
{
	g_autofree char *dir = ivlab_image_dir("x86_64");
	g_autofree char *image = g_build_filename(dir, "vmlinuz", NULL);
	g_autofree char *out = g_build_filename(scratch, "debian-vmlinux", NULL);
	g_autoptr(GError) error = NULL;
	guint64 entry = 0;
	gint64 start;
	struct stat st;

	if (!g_file_test(image, G_FILE_TEST_EXISTS)) {
		g_autofree char *reason = g_strdup_printf("no x86_64 image built (%s): ivlab image build x86_64",
							  image);

		g_test_skip(reason);
		return;
	}
	g_assert_true(kimage_is_bzimage(image));
	start = g_get_monotonic_time();
	g_assert_true(kimage_extract_vmlinux(image, out, &error));
	g_assert_no_error(error);
	g_assert_cmpint(g_stat(out, &st), ==, 0);
	g_test_message("%s: extracted %" G_GINT64_FORMAT " bytes in %.2f s", image,
		       (gint64)st.st_size, (g_get_monotonic_time() - start) / 1e6);
	g_assert_cmpint(kimage_has_pvh_note(out, &entry, &error), ==, KIMAGE_PVH_PRESENT);
	g_assert_no_error(error);
	g_assert_cmpuint(entry, !=, 0);
	g_assert_cmpuint(entry, <, G_MAXUINT32);
	g_test_message("PVH entry at 0x%" G_GINT64_MODIFIER "x", entry);
}

/* The generator's good images and its ELF, as the fuzz target's seeds. */
static int write_seeds(const char *dir)
{
	static const char *const names[] = { "gzip", "xz", "zstd" };
	g_autoptr(GByteArray) elf = make_elf(TRUE);
	g_autofree char *elf_path = g_build_filename(dir, "pvh.elf", NULL);

	if (g_mkdir_with_parents(dir, 0755) != 0 ||
	    !g_file_set_contents(elf_path, (const char *)elf->data, elf->len, NULL))
		return 1;
	for (enum format format = GZIP; format <= ZSTD; format++) {
		for (int pvh = 0; pvh <= 1; pvh++) {
			g_autoptr(GByteArray) kernel = make_kernel(format, pvh);
			g_autofree char *name = g_strdup_printf("%s%s.bzImage", names[format],
								pvh ? "-pvh" : "");
			g_autofree char *path = g_build_filename(dir, name, NULL);

			if (!g_file_set_contents(path, (const char *)kernel->data, kernel->len, NULL))
				return 1;
		}
	}
	return 0;
}

static void remove_scratch(void)
{
	g_autofree char *quoted = g_shell_quote(scratch);
	g_autofree char *command = g_strdup_printf("rm -rf %s", quoted);

	g_assert_true(g_spawn_command_line_sync(command, NULL, NULL, NULL, NULL));
}

int main(int argc, char **argv)
{
	g_autoptr(GError) error = NULL;
	int status;

	if (argc == 3 && strcmp(argv[1], "--write-seeds") == 0)
		return write_seeds(argv[2]);
	g_test_init(&argc, &argv, NULL);
	scratch = g_dir_make_tmp("unit-kimage-XXXXXX", &error);
	g_assert_no_error(error);
	g_test_add_func("/kimage/gzip", test_gzip);
	g_test_add_func("/kimage/xz", test_xz);
	g_test_add_func("/kimage/zstd", test_zstd);
	g_test_add_func("/kimage/no-pvh-note", test_no_pvh_note);
	g_test_add_func("/kimage/not-bzimage", test_not_bzimage);
	g_test_add_func("/kimage/old-protocol", test_old_protocol);
	g_test_add_func("/kimage/payload-outside", test_payload_outside);
	g_test_add_func("/kimage/unsupported", test_unsupported);
	g_test_add_func("/kimage/cap", test_cap);
	g_test_add_func("/kimage/not-elf", test_not_elf);
	g_test_add_func("/kimage/corrupt", test_corrupt);
	g_test_add_func("/kimage/hostile-elf", test_hostile_elf);
	g_test_add_func("/kimage/debian-kernel", test_debian_kernel);
	status = g_test_run();
	remove_scratch();
	g_free(scratch);
	return status;
}
