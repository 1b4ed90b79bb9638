/* kimage.c: the x86 kernel image: the ELF vmlinux decompressed out of a
 * bzImage (its payload found through the boot header, Linux's
 * Documentation/arch/x86/boot.rst), and the Xen PVH entry note by which
 * QEMU boots that ELF directly, without firmware or decompression. */
#include "config.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <glib/gstdio.h>
#include <lzma.h>
#include <zlib.h>
#include <zstd.h>

#include "ivlab.h"
#include "kimage.h"

/* The boot header's fields: offsets into the image. */
#define BOOT_SETUP_SECTS 0x1f1
#define BOOT_MAGIC 0x202
#define BOOT_VERSION 0x206
#define BOOT_PAYLOAD_OFFSET 0x248
#define BOOT_PAYLOAD_LENGTH 0x24c
#define BOOT_HEADER_END 0x250
#define BOOT_SECTOR_BYTES 512
/* setup_sects of 0 means 4, for old kernels. */
#define BOOT_DEFAULT_SETUP_SECTS 4
/* The first protocol with payload_offset and payload_length. */
#define BOOT_PAYLOAD_PROTOCOL 0x0208
#define BOOT_MAGIC_TEXT "HdrS"

#define CHUNK_BYTES (1u << 20)
/* liblzma's memory bound: the kernel's xz dictionary is 32 MiB at most. */
#define XZ_MEMORY_LIMIT (256ull << 20)
#define SUPPORTED_FORMATS "gzip, xz and zstd"

/* Where the vmlinux being written goes, and what it has taken so far. */
struct sink {
	const char *image;	/* the bzImage, named in messages */
	const char *tmp_path;
	int fd;
	guint64 written;
	guint64 max_bytes;
	guint8 head[sizeof(Elf64_Ehdr)];
};

typedef gboolean (*decode_fn)(struct sink *sink, const guint8 *in, gsize length, GError **error);

static guint32 read_le32(const guint8 *p)
{
	return (guint32)p[0] | (guint32)p[1] << 8 | (guint32)p[2] << 16 | (guint32)p[3] << 24;
}

static guint64 read_le64(const guint8 *p)
{
	return (guint64)read_le32(p) | (guint64)read_le32(p + 4) << 32;
}

static gboolean elf_is_x86_64_exec(const guint8 *data, gsize size)
{
	Elf64_Ehdr ehdr;

	if (size < sizeof(ehdr))
		return FALSE;
	memcpy(&ehdr, data, sizeof(ehdr));
	return memcmp(ehdr.e_ident, ELFMAG, SELFMAG) == 0 && ehdr.e_ident[EI_CLASS] == ELFCLASS64 &&
	       ehdr.e_ident[EI_DATA] == ELFDATA2LSB && GUINT16_FROM_LE(ehdr.e_type) == ET_EXEC &&
	       GUINT16_FROM_LE(ehdr.e_machine) == EM_X86_64;
}

static gboolean sink_write(struct sink *sink, const guint8 *data, gsize length, GError **error)
{
	if (length > sink->max_bytes - sink->written) {
		g_autofree char *max = ivlab_format_size(sink->max_bytes);

		return ivlab_fail(error, "%s: payload decompresses to more than %s", sink->image, max);
	}
	/* The ELF header is checked as soon as it is there: a payload that is
	 * something else is not written out in full. */
	if (sink->written < sizeof(sink->head)) {
		gsize part = MIN(length, sizeof(sink->head) - sink->written);

		memcpy(sink->head + sink->written, data, part);
		if (sink->written + part == sizeof(sink->head) &&
		    !elf_is_x86_64_exec(sink->head, sizeof(sink->head)))
			return ivlab_fail(error, "%s: payload is not an ELF64 x86-64 executable",
					  sink->image);
	}
	if (!ivlab_write_all(sink->fd, (const char *)data, length))
		return ivlab_fail_errno(error, "%s: cannot write", sink->tmp_path);
	sink->written += length;
	return TRUE;
}

static gboolean decode_gzip(struct sink *sink, const guint8 *in, gsize length, GError **error)
{
	g_autofree guint8 *out = g_malloc(CHUNK_BYTES);
	z_stream stream = { 0 };
	const char *reason;
	int ret;

	if (inflateInit2(&stream, 16 + MAX_WBITS) != Z_OK)
		return ivlab_fail(error, "%s: cannot start zlib's decoder", sink->image);
	stream.next_in = (Bytef *)(guintptr)in;
	stream.avail_in = length;	/* payload_length is 32-bit */
	do {
		stream.next_out = out;
		stream.avail_out = CHUNK_BYTES;
		ret = inflate(&stream, Z_NO_FLUSH);
		if (ret != Z_OK && ret != Z_STREAM_END)
			break;
		if (!sink_write(sink, out, CHUNK_BYTES - stream.avail_out, error)) {
			inflateEnd(&stream);
			return FALSE;
		}
	} while (ret != Z_STREAM_END);
	reason = ret == Z_BUF_ERROR ? "truncated stream" : stream.msg ? stream.msg : zError(ret);
	inflateEnd(&stream);
	if (ret == Z_STREAM_END)
		return TRUE;
	return ivlab_fail(error, "%s: corrupt gzip payload: %s", sink->image, reason);
}

static const char *xz_reason(lzma_ret ret)
{
	switch (ret) {
	case LZMA_FORMAT_ERROR:
		return "not in the xz format";
	case LZMA_OPTIONS_ERROR:
		return "unsupported options";
	case LZMA_DATA_ERROR:
		return "compressed data is corrupt";
	case LZMA_BUF_ERROR:
		return "truncated stream";
	case LZMA_MEMLIMIT_ERROR:
		return "needs more memory than 256 MiB";
	case LZMA_MEM_ERROR:
		return "out of memory";
	default:
		return "liblzma error";
	}
}

/* The kernel appends the uncompressed size after the xz stream: decoding
 * stops at the stream's end (no LZMA_CONCATENATED) and leaves it. */
static gboolean decode_xz(struct sink *sink, const guint8 *in, gsize length, GError **error)
{
	g_autofree guint8 *out = g_malloc(CHUNK_BYTES);
	lzma_stream stream = LZMA_STREAM_INIT;
	lzma_ret ret;

	ret = lzma_stream_decoder(&stream, XZ_MEMORY_LIMIT, 0);
	if (ret != LZMA_OK)
		return ivlab_fail(error, "%s: cannot start liblzma's decoder: %s", sink->image,
				  xz_reason(ret));
	stream.next_in = in;
	stream.avail_in = length;
	do {
		stream.next_out = out;
		stream.avail_out = CHUNK_BYTES;
		ret = lzma_code(&stream, LZMA_FINISH);
		if (ret != LZMA_OK && ret != LZMA_STREAM_END)
			break;
		if (!sink_write(sink, out, CHUNK_BYTES - stream.avail_out, error)) {
			lzma_end(&stream);
			return FALSE;
		}
	} while (ret != LZMA_STREAM_END);
	lzma_end(&stream);
	if (ret == LZMA_STREAM_END)
		return TRUE;
	return ivlab_fail(error, "%s: corrupt xz payload: %s", sink->image, xz_reason(ret));
}

/* One zstd frame; the kernel's 4-byte size after it is left alone. */
static gboolean decode_zstd(struct sink *sink, const guint8 *in, gsize length, GError **error)
{
	g_autofree guint8 *out = g_malloc(CHUNK_BYTES);
	ZSTD_DStream *stream = ZSTD_createDStream();
	ZSTD_inBuffer input = { in, length, 0 };
	const char *reason = NULL;
	size_t ret;

	if (!stream)
		return ivlab_fail(error, "%s: cannot start libzstd's decoder", sink->image);
	do {
		ZSTD_outBuffer output = { out, CHUNK_BYTES, 0 };

		ret = ZSTD_decompressStream(stream, &output, &input);
		if (ZSTD_isError(ret)) {
			reason = ZSTD_getErrorName(ret);
			break;
		}
		if (!sink_write(sink, out, output.pos, error)) {
			ZSTD_freeDStream(stream);
			return FALSE;
		}
		/* No input left and room for output: the frame will not end. */
		if (ret != 0 && input.pos == input.size && output.pos < output.size) {
			reason = "truncated stream";
			break;
		}
	} while (ret != 0);
	ZSTD_freeDStream(stream);
	if (!reason)
		return TRUE;
	return ivlab_fail(error, "%s: corrupt zstd payload: %s", sink->image, reason);
}

/* Payload formats by their magic; those ivlab does not decode are named. */
static const struct {
	const char *name;
	guint8 magic[8];
	gsize magic_length;
	decode_fn decode;
} formats[] = {
	{ "gzip", { 0x1f, 0x8b }, 2, decode_gzip },
	{ "xz", { 0xfd, '7', 'z', 'X', 'Z', 0x00 }, 6, decode_xz },
	{ "zstd", { 0x28, 0xb5, 0x2f, 0xfd }, 4, decode_zstd },
	{ "lzma", { 0x5d, 0x00, 0x00 }, 3, NULL },
	{ "bzip2", { 'B', 'Z', 'h' }, 3, NULL },
	{ "lzo", { 0x89, 'L', 'Z', 'O', 0x00, 0x0d, 0x0a, 0x1a }, 8, NULL },
	{ "lz4", { 0x02, 0x21, 0x4c, 0x18 }, 4, NULL },
};

/* The compressed kernel inside the bzImage's bytes. */
static gboolean find_payload(const char *path, const guint8 *data, gsize size,
			     const guint8 **payload, gsize *length, GError **error)
{
	guint version, setup_sects;
	guint64 start, payload_length;

	if (size < BOOT_VERSION + 2 || memcmp(data + BOOT_MAGIC, BOOT_MAGIC_TEXT, 4) != 0)
		return ivlab_fail(error, "%s: not a Linux bzImage (no HdrS boot header)", path);
	version = data[BOOT_VERSION] | data[BOOT_VERSION + 1] << 8;
	if (version < BOOT_PAYLOAD_PROTOCOL)
		return ivlab_fail(error, "%s: boot protocol %u.%02u has no payload fields (needs 2.08)",
				  path, version >> 8, version & 0xff);
	if (size < BOOT_HEADER_END)
		return ivlab_fail(error, "%s: boot header truncated at %zu bytes", path, size);
	setup_sects = data[BOOT_SETUP_SECTS] ? data[BOOT_SETUP_SECTS] : BOOT_DEFAULT_SETUP_SECTS;
	start = (guint64)(setup_sects + 1) * BOOT_SECTOR_BYTES + read_le32(data + BOOT_PAYLOAD_OFFSET);
	payload_length = read_le32(data + BOOT_PAYLOAD_LENGTH);
	if (start > size || payload_length > size - start)
		return ivlab_fail(error, "%s: payload (%" G_GUINT64_FORMAT " bytes at %" G_GUINT64_FORMAT
				  ") runs past the end of the file (%zu bytes)",
				  path, payload_length, start, size);
	*payload = data + start;
	*length = payload_length;
	return TRUE;
}

static GMappedFile *map_file(const char *path, GError **error)
{
	GMappedFile *file;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		ivlab_fail_errno(error, "%s: cannot open", path);
		return NULL;
	}
	file = g_mapped_file_new_from_fd(fd, FALSE, NULL);
	if (!file)
		ivlab_fail_errno(error, "%s: cannot read", path);
	close(fd);
	return file;
}

gboolean kimage_is_bzimage(const char *path)
{
	char magic[4];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	gboolean found;

	if (fd < 0)
		return FALSE;
	found = pread(fd, magic, sizeof(magic), BOOT_MAGIC) == sizeof(magic) &&
		memcmp(magic, BOOT_MAGIC_TEXT, sizeof(magic)) == 0;
	close(fd);
	return found;
}

/* Decode into a temporary file beside OUT_PATH, renamed over it when whole. */
static gboolean write_vmlinux(struct sink *sink, decode_fn decode, const guint8 *payload,
			      gsize length, const char *out_path, GError **error)
{
	g_autofree char *tmp_path = g_strdup_printf("%s.XXXXXX", out_path);
	gboolean ok;

	sink->fd = g_mkstemp_full(tmp_path, O_WRONLY | O_CLOEXEC, 0644);
	if (sink->fd < 0)
		return ivlab_fail_errno(error, "%s: cannot create", tmp_path);
	sink->tmp_path = tmp_path;
	ok = decode(sink, payload, length, error);
	if (ok && sink->written < sizeof(sink->head))
		ok = ivlab_fail(error, "%s: payload is not an ELF64 x86-64 executable", sink->image);
	if (ok && (fchmod(sink->fd, 0644) != 0 || fsync(sink->fd) != 0))
		ok = ivlab_fail_errno(error, "%s: cannot write", tmp_path);
	if (close(sink->fd) != 0 && ok)
		ok = ivlab_fail_errno(error, "%s: cannot write", tmp_path);
	if (ok && rename(tmp_path, out_path) != 0)
		ok = ivlab_fail_errno(error, "%s: cannot rename to %s", tmp_path, out_path);
	if (!ok)
		g_unlink(tmp_path);
	return ok;
}

gboolean kimage_extract_vmlinux_max(const char *bzimage_path, const char *out_path,
				    guint64 max_bytes, GError **error)
{
	g_autoptr(GMappedFile) file = map_file(bzimage_path, error);
	struct sink sink = { .image = bzimage_path, .max_bytes = max_bytes };
	const guint8 *payload = NULL;
	gsize length = 0;

	if (!file)
		return FALSE;
	if (!find_payload(bzimage_path, (const guint8 *)g_mapped_file_get_contents(file),
			  g_mapped_file_get_length(file), &payload, &length, error))
		return FALSE;
	for (gsize i = 0; i < G_N_ELEMENTS(formats); i++) {
		if (length < formats[i].magic_length ||
		    memcmp(payload, formats[i].magic, formats[i].magic_length) != 0)
			continue;
		if (!formats[i].decode)
			return ivlab_fail(error, "%s: payload compressed with %s: ivlab can extract "
					  SUPPORTED_FORMATS, bzimage_path, formats[i].name);
		return write_vmlinux(&sink, formats[i].decode, payload, length, out_path, error);
	}
	if (length < 4)
		return ivlab_fail(error, "%s: payload of %zu bytes is too short to be compressed",
				  bzimage_path, length);
	return ivlab_fail(error, "%s: payload in an unknown format (starts %02x %02x %02x %02x): "
			  "ivlab can extract " SUPPORTED_FORMATS, bzimage_path,
			  payload[0], payload[1], payload[2], payload[3]);
}

gboolean kimage_extract_vmlinux(const char *bzimage_path, const char *out_path, GError **error)
{
	return kimage_extract_vmlinux_max(bzimage_path, out_path, KIMAGE_MAX_VMLINUX_BYTES, error);
}

/* Walk one PT_NOTE segment: 1 with the PVH note, 0 without, -1 if a note
 * runs past the segment. Each note: namesz, descsz, type, then the name
 * and the descriptor, each padded to the segment's alignment. */
static int find_pvh_note(const guint8 *notes, gsize size, gsize align, guint64 *entry)
{
	gsize pos = 0;

	while (pos < size) {
		guint32 name_size, desc_size, type;
		gsize name_at = pos + 12, desc_at;

		if (size - pos < 12)
			return -1;
		name_size = read_le32(notes + pos);
		desc_size = read_le32(notes + pos + 4);
		type = read_le32(notes + pos + 8);
		if (name_size > size - name_at)
			return -1;
		desc_at = name_at + (((gsize)name_size + align - 1) & ~(align - 1));
		if (desc_at > size || desc_size > size - desc_at)
			return -1;
		if (type == KIMAGE_PVH_NOTE_TYPE && name_size == sizeof(KIMAGE_PVH_NOTE_NAME) &&
		    memcmp(notes + name_at, KIMAGE_PVH_NOTE_NAME, name_size) == 0 &&
		    (desc_size == 4 || desc_size == 8)) {
			if (entry)
				*entry = desc_size == 4 ? read_le32(notes + desc_at) :
					 read_le64(notes + desc_at);
			return 1;
		}
		pos = desc_at + (((gsize)desc_size + align - 1) & ~(align - 1));
	}
	return 0;
}

enum kimage_pvh kimage_has_pvh_note(const char *elf_path, guint64 *entry, GError **error)
{
	g_autoptr(GMappedFile) file = map_file(elf_path, error);
	const guint8 *data;
	gsize size;
	Elf64_Ehdr ehdr;
	guint64 phoff;
	guint phnum;

	if (!file)
		return KIMAGE_PVH_ERROR;
	data = (const guint8 *)g_mapped_file_get_contents(file);
	size = g_mapped_file_get_length(file);
	if (!elf_is_x86_64_exec(data, size)) {
		ivlab_fail(error, "%s: not an ELF64 x86-64 executable", elf_path);
		return KIMAGE_PVH_ERROR;
	}
	memcpy(&ehdr, data, sizeof(ehdr));
	phoff = GUINT64_FROM_LE(ehdr.e_phoff);
	phnum = GUINT16_FROM_LE(ehdr.e_phnum);
	if (GUINT16_FROM_LE(ehdr.e_phentsize) != sizeof(Elf64_Phdr) || phoff > size ||
	    (size - phoff) / sizeof(Elf64_Phdr) < phnum) {
		ivlab_fail(error, "%s: program headers lie outside the file", elf_path);
		return KIMAGE_PVH_ERROR;
	}
	for (guint i = 0; i < phnum; i++) {
		Elf64_Phdr phdr;
		guint64 offset, filesz;
		int found;

		memcpy(&phdr, data + phoff + i * sizeof(phdr), sizeof(phdr));
		if (GUINT32_FROM_LE(phdr.p_type) != PT_NOTE)
			continue;
		offset = GUINT64_FROM_LE(phdr.p_offset);
		filesz = GUINT64_FROM_LE(phdr.p_filesz);
		if (offset > size || filesz > size - offset) {
			ivlab_fail(error, "%s: note segment %u lies outside the file", elf_path, i);
			return KIMAGE_PVH_ERROR;
		}
		found = find_pvh_note(data + offset, filesz,
				      GUINT64_FROM_LE(phdr.p_align) == 8 ? 8 : 4, entry);
		if (found < 0) {
			ivlab_fail(error, "%s: corrupt note in segment %u", elf_path, i);
			return KIMAGE_PVH_ERROR;
		}
		if (found)
			return KIMAGE_PVH_PRESENT;
	}
	return KIMAGE_PVH_ABSENT;
}

gboolean kimage_make_boot_kernel(const char *bzimage_path, const char *out_path, char **why,
				 GError **error)
{
	g_autoptr(GError) failed = NULL;
	g_autofree char *contents = NULL;
	gsize length = 0;

	*why = NULL;
	if (kimage_extract_vmlinux(bzimage_path, out_path, &failed)) {
		switch (kimage_has_pvh_note(out_path, NULL, &failed)) {
		case KIMAGE_PVH_PRESENT:
			return TRUE;
		case KIMAGE_PVH_ABSENT:
			*why = g_strdup_printf("%s has no PVH entry (a kernel built without CONFIG_PVH)",
					       bzimage_path);
			break;
		case KIMAGE_PVH_ERROR:
			*why = g_strdup(failed->message);
			break;
		}
	} else {
		*why = g_strdup(failed->message);
	}
	/* QEMU knows a bzImage by its header, whatever the file's name. */
	if (!g_file_get_contents(bzimage_path, &contents, &length, error))
		return FALSE;
	return g_file_set_contents_full(out_path, contents, length, G_FILE_SET_CONTENTS_CONSISTENT,
					0644, error);
}
