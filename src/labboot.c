/* labboot.c: a guest's own modules, files, overlays, shares and boot
 * commands as one small cpio archive (with /etc/ivlab/boot.conf telling
 * /init what to load, bind, mount and run), appended to the image's
 * initramfs: the kernel unpacks concatenated archives, so the base image
 * is reused and only the small archive is rebuilt when something changed. */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <glib/gstdio.h>

#include "arch.h"
#include "domxml.h"
#include "image.h"
#include "initramfs.h"
#include "ivlab.h"
#include "kbuild.h"
#include "kmod.h"
#include "labboot.h"
#include "labkernel.h"

/* The kernel finds an uncompressed archive only at a 4-byte boundary and
 * skips the zeros before it; a compressed one after zeros as well. */
#define ARCHIVE_ALIGN 4

/* host_dir's tree under dest in the archive, modes kept, owned by root. */
static gboolean add_tree(Initramfs *initramfs, const char *host_dir, const char *dest,
			 GError **error)
{
	g_autoptr(GPtrArray) names = ivlab_dir_names(host_dir);

	for (guint i = 0; i < names->len; i++) {
		const char *name = names->pdata[i];
		g_autofree char *from = g_build_filename(host_dir, name, NULL);
		g_autofree char *to = g_build_filename(dest, name, NULL);
		struct stat st;

		if (lstat(from, &st) != 0)
			return ivlab_fail_errno(error, "overlay %s", from);
		if (S_ISDIR(st.st_mode)) {
			initramfs_add_dir(initramfs, to, st.st_mode & 07777);
			if (!add_tree(initramfs, from, to, error))
				return FALSE;
			continue;
		}
		if (initramfs_has(initramfs, to))
			return ivlab_fail(error, "overlay %s: %s is delivered twice", from, to);
		if (S_ISREG(st.st_mode)) {
			if (!initramfs_add_file(initramfs, to, from, st.st_mode & 07777, error))
				return FALSE;
		} else if (S_ISLNK(st.st_mode)) {
			g_autofree char *target = g_file_read_link(from, error);

			if (!target)
				return FALSE;
			initramfs_add_symlink(initramfs, to, target);
		} else {
			ivlab_info("overlay %s: not a file, directory or symlink: skipped", from);
		}
	}
	return TRUE;
}

/* "ivtest" from ".../ivtest.ko". */
static char *module_name(const char *ko)
{
	g_autofree char *base = g_path_get_basename(ko);

	base[strlen(base) - strlen(".ko")] = '\0';
	return g_steal_pointer(&base);
}

gboolean labboot_write_overlay(const struct lab_guest *guest, GPtrArray *kos,
			       const char *out_path, GError **error)
{
	g_autoptr(Initramfs) initramfs = initramfs_new();
	g_autoptr(GString) conf = g_string_new("# what /init applies at boot (written by ivlab up)\n");
	g_autoptr(GBytes) conf_bytes = NULL;

	for (guint i = 0; guest->overlays && i < guest->overlays->len; i++)
		if (!add_tree(initramfs, g_ptr_array_index(guest->overlays, i), "/", error))
			return FALSE;
	for (guint i = 0; guest->files && i < guest->files->len; i++) {
		const struct lab_file *file = g_ptr_array_index(guest->files, i);

		if (file->arch && strcmp(file->arch, guest->arch) != 0)
			continue;
		if (initramfs_has(initramfs, file->dest))
			return ivlab_fail(error, "guest %s: %s is delivered twice (file %s)", guest->name,
					  file->dest, file->src);
		if (!initramfs_add_file(initramfs, file->dest, file->src, file->mode ? file->mode : 0644,
					error))
			return FALSE;
	}
	for (guint i = 0; guest->modules && i < guest->modules->len; i++) {
		const struct lab_module *module = g_ptr_array_index(guest->modules, i);
		const char *ko = kos->pdata[i];
		g_autofree char *name = module_name(ko);
		g_autofree char *file = g_strdup_printf("%s.ko", name);
		g_autofree char *path = g_build_filename(LABBOOT_MODULE_DIR, file, NULL);

		if (initramfs_has(initramfs, path))
			return ivlab_fail(error, "guest %s: two modules are named %s", guest->name, name);
		if (!initramfs_add_file(initramfs, path, ko, 0644, error))
			return FALSE;
		/* Regions first: /init overrides their devices' driver before
		 * ivlab.ko loads. */
		for (guint r = 0; module->bind && r < module->bind->len; r++) {
			int index = lab_guest_region_index(guest, module->bind->pdata[r]);

			if (index < 0)
				return ivlab_fail(error, "guest %s: module %s binds region %s, which the "
						  "guest does not attach", guest->name, module->src,
						  ((struct lab_region *)module->bind->pdata[r])->name);
			g_string_append_printf(conf, "bind %02x %s\n", DOMXML_SHMEM_SLOT + index, name);
		}
		g_string_append_printf(conf, "module %s %s\n", name, module->params ? module->params : "");
	}
	for (guint i = 0; guest->shares && i < guest->shares->len; i++) {
		const struct lab_share *share = g_ptr_array_index(guest->shares, i);
		g_autofree char *tag = domxml_share_tag(share, i);

		g_string_append_printf(conf, "share %s %s %s\n", tag, share->dest,
				       share->readonly ? "ro" : "rw");
	}
	for (guint i = 0; guest->runs && i < guest->runs->len; i++) {
		const struct lab_run *run = g_ptr_array_index(guest->runs, i);
		g_autofree char *file = g_strdup_printf("%u", i + 1);
		g_autofree char *path = g_build_filename(LABBOOT_RUN_DIR, file, NULL);
		g_autoptr(GBytes) command = g_bytes_new(run->command, strlen(run->command));

		initramfs_add_bytes(initramfs, path, command, 0644);
		g_string_append_printf(conf, "run %u\n", i + 1);
	}
	if (initramfs_has(initramfs, LABBOOT_CONF))
		return ivlab_fail(error, "guest %s: %s is ivlab's own; deliver another file", guest->name,
				  LABBOOT_CONF);
	conf_bytes = g_bytes_new(conf->str, conf->len);
	initramfs_add_bytes(initramfs, LABBOOT_CONF, conf_bytes, 0644);
	return initramfs_write(initramfs, out_path, INITRAMFS_GZIP, error);
}

/* Each module of guest built for its image's kernel: their .ko paths. */
static GPtrArray *build_modules(const struct lab_guest *guest, GError **error)
{
	g_autoptr(GPtrArray) kos = g_ptr_array_new_with_free_func(g_free);
	g_autofree char *kdir = NULL, *release = NULL;
	g_autofree char *cache = g_build_filename(ivlab_state_dir(), "cache", "modules", NULL);
	const struct arch *arch = arch_lookup(guest->arch);

	if (!guest->modules || !guest->modules->len)
		return g_steal_pointer(&kos);
	/* A guest's own kernel: its modules build against its build-dir. */
	kdir = guest->kernel ? labkernel_build_dir(guest, &release, error) :
			       image_kbuild_dir(guest->arch, &release, error);
	if (!kdir)
		return NULL;
	for (guint i = 0; i < guest->modules->len; i++) {
		const struct lab_module *module = g_ptr_array_index(guest->modules, i);
		g_autofree char *ko = kbuild_user_module(arch, kdir, release, module->src, cache, error);
		g_autoptr(GMappedFile) mapped = NULL;
		g_autoptr(GBytes) bytes = NULL;

		if (!ko)
			return NULL;
		mapped = g_mapped_file_new(ko, FALSE, error);
		if (!mapped)
			return NULL;
		bytes = g_mapped_file_get_bytes(mapped);
		if (!kmod_check_release(bytes, release, error)) {
			g_prefix_error(error, "module %s (%s): ", module->src, guest->arch);
			return NULL;
		}
		g_ptr_array_add(kos, g_steal_pointer(&ko));
	}
	return g_steal_pointer(&kos);
}

/* The archives in parts (the image's initramfs, then the guest's), each
 * after zeros up to ARCHIVE_ALIGN: written to out_path only when those
 * bytes differ from what is there. */
static gboolean write_combined(const char *const *parts, const char *out_path, GError **error)
{
	g_autofree char *old = NULL;
	gsize old_len = 0;
	g_autoptr(GByteArray) combined = g_byte_array_new();
	static const guint8 zeros[ARCHIVE_ALIGN];

	for (const char *const *part = parts; *part; part++) {
		g_autofree char *bytes = NULL;
		gsize len;

		if (!g_file_get_contents(*part, &bytes, &len, error))
			return FALSE;
		if (combined->len % ARCHIVE_ALIGN)
			g_byte_array_append(combined, zeros, ARCHIVE_ALIGN - combined->len % ARCHIVE_ALIGN);
		g_byte_array_append(combined, (guint8 *)bytes, len);
	}
	if (g_file_get_contents(out_path, &old, &old_len, NULL) && old_len == combined->len &&
	    memcmp(old, combined->data, old_len) == 0) {
		ivlab_debug("%s: unchanged", out_path);
		return TRUE;
	}
	return g_file_set_contents(out_path, (char *)combined->data, combined->len, error);
}

/* A guest with its own <kernel>: the archive of that kernel's modules and
 * load list (labkernel.c), which goes between the image's initramfs and
 * the guest's own archive, in dir; *out_path stays NULL for a guest that
 * boots the image's kernel. */
static gboolean write_kernel_archive(const struct lab_guest *guest, const char *dir,
				     char **out_path, GError **error)
{
	g_autoptr(Initramfs) initramfs = NULL;
	g_autofree char *name = NULL, *path = NULL;

	*out_path = NULL;
	if (!guest->kernel)
		return TRUE;
	initramfs = initramfs_new();
	name = g_strdup_printf("%s.kernel.img", guest->name);
	path = g_build_filename(dir, name, NULL);
	if (!labkernel_add_modules(guest, initramfs, error) ||
	    !initramfs_write(initramfs, path, INITRAMFS_GZIP, error))
		return FALSE;
	*out_path = g_steal_pointer(&path);
	return TRUE;
}

static gboolean prepare_guest(const struct lab *lab, const struct lab_guest *guest,
			      const char *out_path, GError **error)
{
	g_autoptr(GPtrArray) kos = build_modules(guest, error);
	g_autofree char *dir = ivlab_lab_dir(lab->name);
	g_autofree char *overlay_name = g_strdup_printf("%s.overlay.img", guest->name);
	g_autofree char *overlay = g_build_filename(dir, overlay_name, NULL);
	g_autofree char *base = image_initrd_path(guest->arch);
	g_autofree char *kernel = NULL;

	if (!kos || !ivlab_make_dir(dir, error) ||
	    !labkernel_make_boot_kernel(lab, guest, error) ||
	    !write_kernel_archive(guest, dir, &kernel, error) ||
	    !labboot_write_overlay(guest, kos, overlay, error) ||
	    !write_combined((const char *const[]){ base, kernel ? kernel : overlay,
						   kernel ? overlay : NULL, NULL },
			    out_path, error)) {
		g_prefix_error(error, "guest %s: ", guest->name);
		return FALSE;
	}
	return TRUE;
}

gboolean labboot_prepare(const struct lab *lab, GError **error)
{
	for (guint i = 0; i < lab->guests->len; i++) {
		const struct lab_guest *guest = g_ptr_array_index(lab->guests, i);
		g_autofree char *initrd = domxml_guest_initrd(lab, guest);

		if (initrd && !prepare_guest(lab, guest, initrd, error))
			return FALSE;
	}
	return TRUE;
}

/* --- what a guest boots with, for `up` to tell what changed ------------- */

static void hash_string(GChecksum *sum, const char *text)
{
	g_checksum_update(sum, (const guchar *)(text ? text : ""), strlen(text ? text : "") + 1);
}

/* A file's bytes (a file that cannot be read hashes as such). */
static void hash_file(GChecksum *sum, const char *path)
{
	g_autoptr(GMappedFile) mapped = g_mapped_file_new(path, FALSE, NULL);

	if (!mapped) {
		hash_string(sum, "\001unreadable");
		return;
	}
	g_checksum_update(sum, (const guchar *)g_mapped_file_get_contents(mapped),
			  g_mapped_file_get_length(mapped));
}

/* dir's tree under name: each entry's path, mode, a symlink's target, a
 * file's bytes (what add_tree() delivers). */
static void hash_tree(GChecksum *sum, const char *dir, const char *name)
{
	g_autoptr(GPtrArray) names = ivlab_dir_names(dir);

	for (guint i = 0; i < names->len; i++) {
		g_autofree char *path = g_build_filename(dir, names->pdata[i], NULL);
		g_autofree char *sub = g_build_filename(name, names->pdata[i], NULL);
		g_autofree char *header = NULL;
		struct stat st;

		if (lstat(path, &st) != 0)
			continue;
		header = g_strdup_printf("%s %o", sub, (guint)st.st_mode);
		hash_string(sum, header);
		if (S_ISDIR(st.st_mode)) {
			hash_tree(sum, path, sub);
		} else if (S_ISLNK(st.st_mode)) {
			g_autofree char *target = g_file_read_link(path, NULL);

			hash_string(sum, target);
		} else if (S_ISREG(st.st_mode)) {
			hash_file(sum, path);
		}
	}
}

static void add_input(GPtrArray *inputs, GChecksum *sum, char *what)
{
	struct labboot_input *input = g_new0(struct labboot_input, 1);

	input->what = what;
	input->digest = g_strdup(g_checksum_get_string(sum));
	g_ptr_array_add(inputs, input);
}

static void input_free(gpointer data)
{
	struct labboot_input *input = data;

	g_free(input->what);
	g_free(input->digest);
	g_free(input);
}

GPtrArray *labboot_inputs(const struct lab_guest *guest)
{
	GPtrArray *inputs = g_ptr_array_new_with_free_func(input_free);
	g_autoptr(GChecksum) settings = g_checksum_new(G_CHECKSUM_SHA256);

	for (guint i = 0; guest->modules && i < guest->modules->len; i++) {
		const struct lab_module *module = g_ptr_array_index(guest->modules, i);
		g_autoptr(GChecksum) sum = g_checksum_new(G_CHECKSUM_SHA256);

		ivlab_hash_source(sum, module->src);
		add_input(inputs, sum, g_strdup_printf("module %s", module->src));
		hash_string(settings, module->src);
		hash_string(settings, module->params);
		for (guint r = 0; module->bind && r < module->bind->len; r++)
			hash_string(settings, ((struct lab_region *)module->bind->pdata[r])->name);
	}
	for (guint i = 0; guest->files && i < guest->files->len; i++) {
		const struct lab_file *file = g_ptr_array_index(guest->files, i);
		g_autoptr(GChecksum) sum = g_checksum_new(G_CHECKSUM_SHA256);
		g_autofree char *mode = g_strdup_printf("%o", file->mode);

		if (file->arch && strcmp(file->arch, guest->arch) != 0)
			continue;
		hash_string(sum, mode);
		hash_file(sum, file->src);
		add_input(inputs, sum, g_strdup_printf("file %s (from %s)", file->dest, file->src));
	}
	for (guint i = 0; guest->overlays && i < guest->overlays->len; i++) {
		const char *dir = g_ptr_array_index(guest->overlays, i);
		g_autoptr(GChecksum) sum = g_checksum_new(G_CHECKSUM_SHA256);

		hash_tree(sum, dir, "");
		add_input(inputs, sum, g_strdup_printf("overlay %s", dir));
	}
	if (guest->kernel) {
		g_autoptr(GChecksum) sum = g_checksum_new(G_CHECKSUM_SHA256);

		hash_file(sum, guest->kernel);
		if (guest->kernel_build_dir) {
			g_autofree char *config = g_build_filename(guest->kernel_build_dir, ".config", NULL);

			hash_file(sum, config);
		}
		add_input(inputs, sum, g_strdup_printf("kernel %s", guest->kernel));
	}
	/* What boot.conf says beside the files: params, binds, shares, <run>. */
	for (guint i = 0; guest->shares && i < guest->shares->len; i++) {
		const struct lab_share *share = g_ptr_array_index(guest->shares, i);

		hash_string(settings, share->dest);
		hash_string(settings, share->readonly ? "ro" : "rw");
	}
	for (guint i = 0; guest->runs && i < guest->runs->len; i++)
		hash_string(settings, ((struct lab_run *)guest->runs->pdata[i])->command);
	add_input(inputs, settings, g_strdup("boot settings (module params and binds, shares, <run>)"));
	return inputs;
}

char **labboot_inputs_record(GPtrArray *inputs)
{
	char **lines = g_new0(char *, inputs->len + 1);

	for (guint i = 0; i < inputs->len; i++) {
		const struct labboot_input *input = inputs->pdata[i];

		lines[i] = g_strdup_printf("%s %s", input->digest, input->what);
	}
	return lines;
}

/* The recorded digest of what, or NULL. */
static const char *recorded_digest(char **recorded, const char *what, gsize *digest_len)
{
	for (char **line = recorded; line && *line; line++) {
		const char *space = strchr(*line, ' ');

		if (space && strcmp(space + 1, what) == 0) {
			*digest_len = space - *line;
			return *line;
		}
	}
	return NULL;
}

char *labboot_inputs_changes(GPtrArray *inputs, char **recorded)
{
	g_autoptr(GPtrArray) changes = g_ptr_array_new_with_free_func(g_free);

	for (guint i = 0; i < inputs->len; i++) {
		const struct labboot_input *input = inputs->pdata[i];
		gsize len = 0;
		const char *digest = recorded_digest(recorded, input->what, &len);

		if (!digest)
			g_ptr_array_add(changes, g_strdup_printf("%s is new", input->what));
		else if (len != strlen(input->digest) || strncmp(digest, input->digest, len) != 0)
			g_ptr_array_add(changes, g_strdup_printf("%s changed", input->what));
	}
	for (char **line = recorded; line && *line; line++) {
		const char *what = strchr(*line, ' ');
		gboolean found = FALSE;

		for (guint i = 0; what && i < inputs->len; i++)
			found = found || strcmp(((struct labboot_input *)inputs->pdata[i])->what, what + 1) == 0;
		if (what && !found)
			g_ptr_array_add(changes, g_strdup_printf("%s is gone", what + 1));
	}
	if (!changes->len)
		return NULL;
	g_ptr_array_add(changes, NULL);
	return g_strjoinv("; ", (char **)changes->pdata);
}

gboolean labboot_prepare_guest(const struct lab *lab, const struct lab_guest *guest,
			       GError **error)
{
	g_autofree char *initrd = domxml_guest_initrd(lab, guest);

	return !initrd || prepare_guest(lab, guest, initrd, error);
}
