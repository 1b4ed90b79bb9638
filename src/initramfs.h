/* initramfs.h: an initramfs assembled in memory, then written by libarchive
 * as a newc cpio archive, compressed, owned by root, with fixed times. */
#ifndef IVLAB_INITRAMFS_H
#define IVLAB_INITRAMFS_H

#include <glib.h>

typedef struct initramfs Initramfs;

enum initramfs_compression {
	INITRAMFS_GZIP, /* every Debian kernel unpacks it */
	INITRAMFS_ZSTD,
	INITRAMFS_NONE,
};

Initramfs *initramfs_new(void);
void initramfs_free(Initramfs *initramfs);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(Initramfs, initramfs_free)

/* Paths are absolute inside the archive ("/bin/busybox"); parent
 * directories are added as needed, each path at most once. */
void initramfs_add_dir(Initramfs *initramfs, const char *path, guint mode);
void initramfs_add_bytes(Initramfs *initramfs, const char *path, GBytes *contents, guint mode);
gboolean initramfs_add_file(Initramfs *initramfs, const char *path, const char *source_path,
			    guint mode, GError **error);
void initramfs_add_symlink(Initramfs *initramfs, const char *path, const char *target);
void initramfs_add_chardev(Initramfs *initramfs, const char *path, guint major, guint minor,
			   guint mode);
gboolean initramfs_has(Initramfs *initramfs, const char *path);

/* Writes out_path atomically (a temporary file renamed over it), mode 0644. */
gboolean initramfs_write(Initramfs *initramfs, const char *out_path,
			 enum initramfs_compression compression, GError **error);

gboolean initramfs_parse_compression(const char *name, enum initramfs_compression *compression);

#endif
