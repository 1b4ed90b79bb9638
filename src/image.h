/* image.h: guest images (a kernel and an initramfs per architecture, in
 * $state/images/ARCH/), built from Debian packages, a URL or a local kernel,
 * and rebuilt only when one of their recorded inputs changed. */
#ifndef IVLAB_IMAGE_H
#define IVLAB_IMAGE_H

#include <glib.h>

enum image_source_kind {
	IMAGE_SOURCE_DEBIAN, /* linux-image-<current ABI> via apt-get download */
	IMAGE_SOURCE_URL,    /* a linux-image .deb or a bare kernel fetched with libcurl */
	IMAGE_SOURCE_LOCAL,  /* a kernel file and its build directory */
};

struct image_source {
	enum image_source_kind kind;
	const char *kernel_url;       /* URL */
	const char *kernel_sha256;    /* URL: required, 64 hex digits */
	const char *kernel_path;      /* LOCAL: bzImage / Image */
	/* LOCAL: required; URL: required for a bare kernel, optional for a
	 * .deb (else Debian's headers of the same release are used). The
	 * module is built against it; the virtio modules come from it when
	 * it has them, else from /lib/modules/RELEASE. */
	const char *kernel_build_dir;
	gboolean force; /* rebuild even when up to date */
};

/* The architectures images exist for, NULL-terminated: x86_64, aarch64. */
const char *const *image_arches(void);
gboolean image_arch_is_known(const char *arch);

/* Makes sure arch's image exists and is up to date, building it if not;
 * concurrent callers for one arch wait for each other (flock). With source
 * NULL an existing image built from a URL or local kernel is kept as long
 * as it is intact; otherwise the Debian image is built or refreshed when
 * the archive's current kernel, the module, agent, /init or recipe
 * changed. Says what it does with ivlab_info(). */
gboolean image_ensure(const char *arch, const struct image_source *source, GError **error);

/* Where the image's files are (whether or not they exist yet). */
char *image_kernel_path(const char *arch);
char *image_initrd_path(const char *arch);

/* The guest sources: module (Kbuild, ivlab_drv.c, include/) and /init. */
char *image_guest_dir(GError **error);

/* The kernel headers or build directory arch's image was built against,
 * and that kernel's release: what modules for its guests build against. */
char *image_kbuild_dir(const char *arch, char **release, GError **error);

/* What the manifest of a built image says. */
typedef struct image_info {
	char *arch;
	char *kernel_release; /* "6.1.0-57-amd64" */
	char *source;         /* "debian linux-image-6.1.0-57-amd64=6.1.192-3", "url URL", "local PATH" */
	char *console;        /* "ttyS0", "ttyAMA0" */
	char *built;          /* ISO 8601 UTC */
	char *kernel_path;
	char *initrd_path;
	guint64 kernel_size;
	guint64 initrd_size;
	gboolean intact; /* both files there, with the sha256 the manifest records */
} ImageInfo;

/* NULL without error when arch has no image yet. */
ImageInfo *image_info_load(const char *arch, GError **error);
void image_info_free(ImageInfo *info);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(ImageInfo, image_info_free)

#endif
