/* unit-boot.c: what a guest brings, without a guest: the archive labboot
 * appends to the image's initramfs (its entries, modes and the boot.conf
 * /init reads) and the domain XML of such a guest (its own initramfs and
 * the 9p shares), accepted by libvirt's test driver. The model is built
 * here in C, as lab.c fills it. */
#include "config.h"

#include <string.h>
#include <unistd.h>
#include <archive.h>
#include <archive_entry.h>
#include <glib/gstdio.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "domxml.h"
#include "ivlab.h"
#include "lab.h"
#include "labboot.h"

struct entry {
	guint mode; /* type and permissions */
	char *contents;
	char *target;
};

static void entry_free(gpointer data)
{
	struct entry *entry = data;

	g_free(entry->contents);
	g_free(entry->target);
	g_free(entry);
}

/* path ("etc/x") -> struct entry, read back with libarchive. */
static GHashTable *read_archive(const char *path)
{
	GHashTable *entries = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, entry_free);
	struct archive *archive = archive_read_new();
	struct archive_entry *header;

	archive_read_support_filter_all(archive);
	archive_read_support_format_cpio(archive);
	g_assert_cmpint(archive_read_open_filename(archive, path, 4096), ==, ARCHIVE_OK);
	while (archive_read_next_header(archive, &header) == ARCHIVE_OK) {
		struct entry *entry = g_new0(struct entry, 1);
		la_int64_t size = archive_entry_size(header);

		entry->mode = archive_entry_mode(header);
		entry->contents = g_malloc0(size + 1);
		if (size && archive_entry_filetype(header) == AE_IFREG)
			g_assert_cmpint(archive_read_data(archive, entry->contents, size), ==, size);
		if (archive_entry_symlink(header))
			entry->target = g_strdup(archive_entry_symlink(header));
		g_assert_cmpuint(archive_entry_uid(header), ==, 0);
		g_hash_table_insert(entries, g_strdup(archive_entry_pathname(header)), entry);
	}
	archive_read_free(archive);
	return entries;
}

static char *write_file(const char *dir, const char *name, const char *text, guint mode)
{
	char *path = g_build_filename(dir, name, NULL);
	g_autofree char *parent = g_path_get_dirname(path);

	g_assert_cmpint(g_mkdir_with_parents(parent, 0755), ==, 0);
	g_assert_true(g_file_set_contents(path, text, -1, NULL));
	g_assert_cmpint(g_chmod(path, mode), ==, 0);
	return path;
}

struct fixture {
	char *dir;
	struct lab *lab;
	struct lab_guest *guest;
	GPtrArray *kos;
};

/* pair.xml's left guest, bringing one of everything. */
static void fixture_set_up(struct fixture *fx, gconstpointer data)
{
	g_autofree char *lab_path = g_build_filename(g_getenv("top_srcdir") ? g_getenv("top_srcdir") : ".",
						     "domains", "pair.xml", NULL);
	g_autoptr(GError) error = NULL;
	struct lab_module *module = g_new0(struct lab_module, 1);
	struct lab_file *file = g_new0(struct lab_file, 1);
	struct lab_file *other = g_new0(struct lab_file, 1);
	struct lab_share *share = g_new0(struct lab_share, 1);
	struct lab_run *run = g_new0(struct lab_run, 1);
	g_autofree char *overlay = NULL, *link = NULL;

	fx->dir = g_dir_make_tmp("unit-boot-XXXXXX", &error);
	g_assert_no_error(error);
	fx->lab = lab_load(lab_path, &error);
	g_assert_no_error(error);
	fx->guest = lab_find_guest(fx->lab, "left");
	fx->kos = g_ptr_array_new_with_free_func(g_free);

	module->src = g_build_filename(fx->dir, "mymod", NULL);
	module->params = g_strdup("greeting=bonjour count=3");
	module->bind = g_ptr_array_new();
	g_ptr_array_add(module->bind, lab_find_region(fx->lab, "bell"));
	g_ptr_array_add(fx->guest->modules, module);
	g_ptr_array_add(fx->kos, write_file(fx->dir, "build/mymod.ko", "not really ELF", 0644));

	file->src = write_file(fx->dir, "tool", "#!/bin/sh\necho tool\n", 0600);
	file->dest = g_strdup("/usr/bin/tool");
	file->mode = 0755;
	g_ptr_array_add(fx->guest->files, file);
	other->src = write_file(fx->dir, "tool-arm", "arm", 0644);
	other->dest = g_strdup("/usr/bin/tool-arm");
	other->mode = 0644;
	other->arch = g_strdup("aarch64");
	g_ptr_array_add(fx->guest->files, other);

	overlay = g_build_filename(fx->dir, "overlay", NULL);
	g_free(write_file(overlay, "etc/app/app.conf", "key=value\n", 0640));
	g_free(write_file(overlay, "opt/run.sh", "#!/bin/sh\n", 0750));
	link = g_build_filename(overlay, "opt", "latest", NULL);
	g_assert_cmpint(symlink("run.sh", link), ==, 0);
	g_ptr_array_add(fx->guest->overlays, g_steal_pointer(&overlay));

	share->src = g_strdup(fx->dir);
	share->dest = g_strdup("/mnt/src");
	share->tag = g_strdup("ivlab0");
	share->readonly = TRUE;
	g_ptr_array_add(fx->guest->shares, share);

	run->command = g_strdup("sysctl -w kernel.printk=4 && echo 'quoted; words'");
	g_ptr_array_add(fx->guest->runs, run);
}

static void fixture_tear_down(struct fixture *fx, gconstpointer data)
{
	ivlab_remove_tree(fx->dir, NULL);
	g_free(fx->dir);
	g_ptr_array_unref(fx->kos);
	lab_free(fx->lab);
}

static void test_overlay(struct fixture *fx, gconstpointer data)
{
	g_autofree char *out = g_build_filename(fx->dir, "overlay.img", NULL);
	g_autoptr(GError) error = NULL;
	g_autoptr(GHashTable) entries = NULL;
	struct entry *entry;

	g_assert_true(labboot_write_overlay(fx->guest, fx->kos, out, &error));
	g_assert_no_error(error);
	entries = read_archive(out);

	entry = g_hash_table_lookup(entries, "usr/bin/tool");
	g_assert_nonnull(entry);
	g_assert_cmpuint(entry->mode, ==, 0100755);
	g_assert_cmpstr(entry->contents, ==, "#!/bin/sh\necho tool\n");
	g_assert_false(g_hash_table_contains(entries, "usr/bin/tool-arm"));

	entry = g_hash_table_lookup(entries, "etc/app/app.conf");
	g_assert_nonnull(entry);
	g_assert_cmpuint(entry->mode, ==, 0100640);
	g_assert_cmpuint(((struct entry *)g_hash_table_lookup(entries, "opt/run.sh"))->mode, ==, 0100750);
	entry = g_hash_table_lookup(entries, "opt/latest");
	g_assert_nonnull(entry);
	g_assert_cmpstr(entry->target, ==, "run.sh");

	entry = g_hash_table_lookup(entries, "lib/modules/user/mymod.ko");
	g_assert_nonnull(entry);
	g_assert_cmpstr(entry->contents, ==, "not really ELF");

	entry = g_hash_table_lookup(entries, "etc/ivlab/run/1");
	g_assert_nonnull(entry);
	g_assert_cmpstr(entry->contents, ==, "sysctl -w kernel.printk=4 && echo 'quoted; words'");

	/* pair's left guest has bell in its first slot (DOMXML_SHMEM_SLOT). */
	entry = g_hash_table_lookup(entries, "etc/ivlab/boot.conf");
	g_assert_nonnull(entry);
	g_assert_nonnull(strstr(entry->contents, "\nbind 10 mymod\nmodule mymod greeting=bonjour count=3\n"
					   "share ivlab0 /mnt/src ro\nrun 1\n"));
}

static void test_overlay_twice(struct fixture *fx, gconstpointer data)
{
	g_autofree char *out = g_build_filename(fx->dir, "overlay.img", NULL);
	g_autoptr(GError) error = NULL;
	struct lab_file *file = g_ptr_array_index(fx->guest->files, 0);

	g_free(file->dest);
	file->dest = g_strdup("/etc/app/app.conf");
	g_assert_false(labboot_write_overlay(fx->guest, fx->kos, out, &error));
	g_assert_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED);
	g_assert_nonnull(strstr(error->message, "/etc/app/app.conf is delivered twice"));
	g_assert_false(g_file_test(out, G_FILE_TEST_EXISTS));
}

static void ignore_libvirt_errors(void *data, virErrorPtr error)
{
}

static void test_domain(struct fixture *fx, gconstpointer data)
{
	g_autoptr(GError) error = NULL;
	g_autofree char *xml = domxml_build(fx->lab, fx->guest, FALSE, &error);
	g_autofree char *initrd = domxml_guest_initrd(fx->lab, fx->guest);
	g_autofree char *want_initrd = g_strdup_printf("<initrd>%s</initrd>", initrd);
	struct lab_guest *right = lab_find_guest(fx->lab, "right");
	g_autofree char *plain = domxml_guest_initrd(fx->lab, right);
	virConnectPtr conn;
	virDomainPtr domain;

	g_assert_no_error(error);
	g_assert_true(g_str_has_suffix(initrd, "/labs/pair/left.initrd.img"));
	g_assert_null(plain); /* brings nothing: the image's initramfs as it is */
	g_assert_nonnull(strstr(xml, want_initrd));
	g_assert_nonnull(strstr(xml, "<filesystem type=\"mount\" accessmode=\"squash\">"));
	g_assert_nonnull(strstr(xml, "<target dir=\"ivlab0\"/>"));
	g_assert_nonnull(strstr(xml, "<readonly/>"));

	virSetErrorFunc(NULL, ignore_libvirt_errors);
	conn = virConnectOpen("test:///default");
	g_assert_nonnull(conn);
	domain = virDomainDefineXMLFlags(conn, xml, VIR_DOMAIN_DEFINE_VALIDATE);
	if (!domain)
		g_error("libvirt rejects the domain: %s", virGetLastErrorMessage());
	virDomainUndefine(domain);
	virDomainFree(domain);
	virConnectClose(conn);
}

/* What labboot_inputs() records against the guest as it is now. */
static char *changes_since(struct fixture *fx, char **recorded)
{
	g_autoptr(GPtrArray) inputs = labboot_inputs(fx->guest);

	return labboot_inputs_changes(inputs, recorded);
}

/* The digests `up` records and compares: a change to a module's source, a
 * file, an overlay entry's mode or the boot settings is named; a module's
 * build outputs and an other arch's file are not. */
static void test_inputs(struct fixture *fx, gconstpointer data)
{
	g_autoptr(GPtrArray) inputs = NULL;
	g_auto(GStrv) recorded = NULL;
	g_autofree char *module_dir = g_build_filename(fx->dir, "mymod", NULL);
	g_autofree char *source = write_file(module_dir, "mymod.c", "int x;\n", 0644);
	g_autofree char *kbuild = write_file(module_dir, "Kbuild", "obj-m := mymod.o\n", 0644);
	g_autofree char *tool = g_build_filename(fx->dir, "tool", NULL);
	g_autofree char *conf = g_build_filename(fx->dir, "overlay", "etc", "app", "app.conf", NULL);
	g_autofree char *changes = NULL;
	g_autofree char *expected = NULL;
	struct lab_module *module = g_ptr_array_index(fx->guest->modules, 0);

	inputs = labboot_inputs(fx->guest);
	/* module, file (this arch's only), overlay, boot settings */
	g_assert_cmpuint(inputs->len, ==, 4);
	recorded = labboot_inputs_record(inputs);
	g_assert_null(changes_since(fx, recorded));

	/* What a build in the user's tree leaves is not a change. */
	g_free(write_file(module_dir, "mymod.o", "object", 0644));
	g_free(write_file(module_dir, "mymod.ko", "module", 0644));
	g_free(write_file(module_dir, ".mymod.o.cmd", "cmd", 0644));
	g_free(write_file(module_dir, "mymod.mod.c", "generated", 0644));
	g_free(write_file(module_dir, "Module.symvers", "", 0644));
	g_free(write_file(module_dir, "modules.order", "mymod.ko", 0644));
	g_assert_null(changes_since(fx, recorded));
	/* Nor is a file for another arch. */
	g_free(write_file(fx->dir, "tool-arm", "arm, rebuilt", 0644));
	g_assert_null(changes_since(fx, recorded));

	g_free(write_file(module_dir, "mymod.c", "int y;\n", 0644));
	changes = changes_since(fx, recorded);
	expected = g_strdup_printf("module %s changed", module_dir);
	g_assert_cmpstr(changes, ==, expected);
	g_clear_pointer(&changes, g_free);
	g_clear_pointer(&expected, g_free);

	g_free(write_file(fx->dir, "tool", "#!/bin/sh\necho tool 2\n", 0600));
	g_assert_cmpint(g_chmod(conf, 0600), ==, 0);
	changes = changes_since(fx, recorded);
	expected = g_strdup_printf("module %s changed; file /usr/bin/tool (from %s) changed; "
				   "overlay %s/overlay changed", module_dir, tool, fx->dir);
	g_assert_cmpstr(changes, ==, expected);
	g_clear_pointer(&changes, g_free);

	/* The lab file's params are boot settings; a module gone is named. */
	g_strfreev(recorded);
	inputs = (g_ptr_array_unref(inputs), labboot_inputs(fx->guest));
	recorded = labboot_inputs_record(inputs);
	g_free(module->params);
	module->params = g_strdup("greeting=hej");
	changes = changes_since(fx, recorded);
	g_assert_true(g_str_has_prefix(changes, "boot settings"));
	g_assert_true(g_str_has_suffix(changes, " changed"));
	g_clear_pointer(&changes, g_free);
	g_ptr_array_steal_index(fx->guest->modules, 0);
	changes = changes_since(fx, recorded);
	g_clear_pointer(&expected, g_free);
	expected = g_strdup_printf("module %s is gone", module_dir);
	g_assert_nonnull(strstr(changes, expected));
	g_ptr_array_insert(fx->guest->modules, 0, module);
}

int main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add("/boot/overlay", struct fixture, NULL, fixture_set_up, test_overlay,
		   fixture_tear_down);
	g_test_add("/boot/overlay-twice", struct fixture, NULL, fixture_set_up, test_overlay_twice,
		   fixture_tear_down);
	g_test_add("/boot/domain", struct fixture, NULL, fixture_set_up, test_domain,
		   fixture_tear_down);
	g_test_add("/boot/inputs", struct fixture, NULL, fixture_set_up, test_inputs,
		   fixture_tear_down);
	return g_test_run();
}
