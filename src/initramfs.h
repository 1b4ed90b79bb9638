/* initramfs.h: an initramfs assembled in memory, then written by libarchive
 * as a newc cpio archive, compressed, owned by root, with fixed times; and
 * the guest image's initramfs laid out as src/guest/init expects. */
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

/* The names in a busybox binary's applet table ("[", "[[", "acpid", ...),
 * read from the file itself so a foreign-arch busybox needs no running. */
GStrv initramfs_busybox_applets(GBytes *busybox, GError **error);

/* /bin/busybox and a link to it for each of its applets (but "busybox"). */
gboolean initramfs_add_busybox(Initramfs *initramfs, GBytes *busybox, GError **error);

/* What goes into a guest image's initramfs. */
/* The line of load.list after which the modules only a <share> needs come. */
#define INITRAMFS_SHARE_MARK "# share"

struct initramfs_guest {
	GBytes *busybox;        /* static; its applets become links */
	const char *init_path;  /* src/guest/init */
	const char *agent_path; /* the static agent */
	GPtrArray *modules;     /* struct kmod * (kmod.h), in load order */
	GHashTable *share_only; /* names of those only a <share> needs, or NULL */
	GBytes *ivlab_ko;
	const char *image_info; /* /etc/ivlab-image: "key=value" lines */
};

/* The layout src/guest/init expects: /bin/busybox and its applet links,
 * /init, /sbin/ivlab-agent, /lib/modules/ *.ko and load.list naming the
 * modules in load order (the ivlab module is ivlab.ko beside them), those
 * only shares need after a line "# share",
 * /etc/ivlab-image; written to out_path. */
gboolean initramfs_write_guest(const struct initramfs_guest *guest, const char *out_path,
			       enum initramfs_compression compression, GError **error);

#endif
