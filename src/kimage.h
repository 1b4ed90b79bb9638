/* kimage.h: the x86 kernel image: the uncompressed ELF vmlinux taken out of
 * a bzImage, and whether it carries the PVH entry note QEMU boots it by. */
#ifndef IVLAB_KIMAGE_H
#define IVLAB_KIMAGE_H

#include <glib.h>

/* No kernel decompresses to more than this: a bound against a hostile image. */
#define KIMAGE_MAX_VMLINUX_BYTES (512ull << 20)

/* The Xen ELF note whose presence tells QEMU (-kernel ELF) to take the
 * kernel's PVH entry: name "Xen", type XEN_ELFNOTE_PHYS32_ENTRY. */
#define KIMAGE_PVH_NOTE_NAME "Xen"
#define KIMAGE_PVH_NOTE_TYPE 18

enum kimage_pvh {
	KIMAGE_PVH_ERROR = -1,	/* error set: unreadable, or not an x86-64 ELF */
	KIMAGE_PVH_ABSENT = 0,	/* a valid x86-64 ELF without the note */
	KIMAGE_PVH_PRESENT = 1,
};

/* Whether PATH starts with the x86 boot header ("HdrS"); FALSE if unreadable. */
gboolean kimage_is_bzimage(const char *path);

/* Decompress the payload of the bzImage at BZIMAGE_PATH (gzip, xz or zstd,
 * read from the boot header) to OUT_PATH, atomically, mode 0644; it must be
 * an ELF64 x86-64 executable of at most KIMAGE_MAX_VMLINUX_BYTES. */
gboolean kimage_extract_vmlinux(const char *bzimage_path, const char *out_path, GError **error);
/* The same with another bound (the tests use a small one). */
gboolean kimage_extract_vmlinux_max(const char *bzimage_path, const char *out_path,
				    guint64 max_bytes, GError **error);

/* Whether the ELF64 x86-64 kernel at ELF_PATH has the PVH note in a PT_NOTE
 * segment (where QEMU looks); ENTRY (may be NULL) gets its entry address. */
enum kimage_pvh kimage_has_pvh_note(const char *elf_path, guint64 *entry, GError **error);

/* The kernel file an x86 guest boots, at OUT_PATH: the bzImage's vmlinux
 * when it has the PVH note (QEMU enters it with no firmware or
 * decompression); else a copy of the bzImage itself, and *WHY says why
 * (no note: a kernel built without CONFIG_PVH; a compression ivlab cannot
 * undo). FALSE with error only when OUT_PATH cannot be written. */
gboolean kimage_make_boot_kernel(const char *bzimage_path, const char *out_path, char **why,
				 GError **error);

#endif
