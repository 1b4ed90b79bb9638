/* kmod.h: a kernel's modules as the image needs them: what a package or a
 * directory offers, each module's .modinfo (read from the ELF file, so a
 * foreign-arch module needs no running), and a load order that puts every
 * module after the ones it depends on. */
#ifndef IVLAB_KMOD_H
#define IVLAB_KMOD_H

#include <glib.h>

/* One module of a kernel. */
struct kmod {
	char *name;     /* "virtio_pci": '-' spelled '_', as the kernel does */
	char *location; /* member path in a package, or a file */
	GStrv depends;  /* NULL until the module was read */
	GBytes *bytes;  /* plain .ko, NULL until read */
};

/* What one kernel offers: its release, its image and its modules. */
struct kmod_kernel {
	char *release;
	GBytes *vmlinuz;     /* from a package; NULL for a directory */
	GHashTable *modules; /* name -> struct kmod */
	GHashTable *builtin; /* names built into the kernel */
	char *modules_from;  /* for messages */
	char *deb_path;      /* the package the modules are in, or NULL for files */
};

void kmod_kernel_clear(struct kmod_kernel *kernel);
typedef struct kmod_kernel KmodKernel;
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(KmodKernel, kmod_kernel_clear)

/* A linux-image package: boot/vmlinuz-RELEASE, modules.builtin and every
 * module's dependencies; the bytes of the modules named in keep (a set of
 * names) are kept, the others' read again when kmod_load_order() needs them. */
gboolean kmod_kernel_from_deb(struct kmod_kernel *kernel, const char *deb_path, GHashTable *keep,
			      GError **error);

/* The modules of a kernel build tree or of an installed /lib/modules/RELEASE
 * (read when needed); release is set by the caller. */
gboolean kmod_kernel_from_dir(struct kmod_kernel *kernel, const char *dir, GError **error);

/* The named modules that are not built in, with their dependencies, in
 * load order, all read (struct kmod * owned by the kernel). With strict
 * unset, a named module the kernel lacks is left out with a message. */
GPtrArray *kmod_load_order(struct kmod_kernel *kernel, const char *const *names, gboolean strict,
			   GError **error);

/* "virtio-pci" -> "virtio_pci" (a new string). */
char *kmod_normalize_name(const char *name);

/* A module's .modinfo entry (e.g. "depends", "name", "vermagic"), NULL if
 * absent or not a 64-bit little-endian ELF object. */
char *kmod_modinfo(GBytes *module, const char *key);

/* The module loads into a kernel of this release (its vermagic says so);
 * else an error naming both. */
gboolean kmod_check_release(GBytes *module, const char *release, GError **error);

#endif
