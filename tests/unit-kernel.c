/* unit-kernel.c: what `up` checks of a guest's <kernel> before it creates
 * anything (labkernel_check), on a made-up image and build directory: a
 * kernel for another arch or of another release, a tree that is not built,
 * options ivlab needs missing, an =m option without its module. */
#include "config.h"

#include <string.h>
#include <glib/gstdio.h>

#include "ivlab.h"
#include "lab.h"
#include "labkernel.h"

#define RELEASE "6.1.99-unit"

/* Everything labkernel.c asks of an x86_64 kernel without shares. */
static const char good_config[] =
	"CONFIG_X86_64=y\nCONFIG_SERIAL_8250=y\nCONFIG_SERIAL_8250_CONSOLE=y\n"
	"CONFIG_MODULES=y\nCONFIG_BLK_DEV_INITRD=y\nCONFIG_RD_GZIP=y\nCONFIG_BINFMT_SCRIPT=y\n"
	"CONFIG_BINFMT_ELF=y\nCONFIG_PROC_FS=y\nCONFIG_SYSFS=y\nCONFIG_DEVTMPFS=y\n"
	"CONFIG_TMPFS=y\nCONFIG_PCI=y\nCONFIG_PCI_MSI=y\nCONFIG_VIRTIO_PCI=y\n"
	"CONFIG_VIRTIO_CONSOLE=y\n";

struct fixture {
	char *dir;
	struct lab *lab;
	struct lab_guest *guest;
};

static char *write_file(const char *dir, const char *name, const char *text, gssize len)
{
	char *path = g_build_filename(dir, name, NULL);
	g_autofree char *parent = g_path_get_dirname(path);

	g_assert_cmpint(g_mkdir_with_parents(parent, 0755), ==, 0);
	g_assert_true(g_file_set_contents(path, text, len, NULL));
	return path;
}

/* A bzImage's first 4 KiB: the boot header, 64-bit, saying its release. */
static void write_bzimage(const char *path, const char *magic, gboolean is_64, const char *release)
{
	g_autofree char *image = g_malloc0(4096);
	g_autofree char *banner = g_strdup_printf("%s (unit@test) #1", release);

	memcpy(image + 0x202, magic, 4);
	image[0x206] = 0x0f; /* protocol 2.15 */
	image[0x207] = 0x02;
	image[0x20e] = 0x00; /* kernel_version: 0x300 + 0x200 */
	image[0x20f] = 0x03;
	image[0x236] = is_64 ? 1 : 0;
	memcpy(image + 0x500, banner, strlen(banner));
	g_assert_true(g_file_set_contents(path, image, 4096, NULL));
}

static void fixture_set_up(struct fixture *fx, gconstpointer data)
{
	g_autofree char *lab_path = g_build_filename(g_getenv("top_srcdir") ? g_getenv("top_srcdir") : ".",
						     "domains", "pair.xml", NULL);
	g_autoptr(GError) error = NULL;

	fx->dir = g_dir_make_tmp("unit-kernel-XXXXXX", &error);
	g_assert_no_error(error);
	fx->lab = lab_load(lab_path, &error);
	g_assert_no_error(error);
	fx->guest = lab_find_guest(fx->lab, "left");
	g_assert_cmpstr(fx->guest->arch, ==, "x86_64");
	fx->guest->kernel = g_build_filename(fx->dir, "bzImage", NULL);
	fx->guest->kernel_build_dir = g_build_filename(fx->dir, "build", NULL);
	fx->guest->kernel_line = 7;
	write_bzimage(fx->guest->kernel, "HdrS", TRUE, RELEASE);
	g_free(write_file(fx->guest->kernel_build_dir, ".config", good_config, -1));
	g_free(write_file(fx->guest->kernel_build_dir, "Module.symvers", "", 0));
	g_free(write_file(fx->guest->kernel_build_dir, "include/config/kernel.release", RELEASE "\n", -1));
}

static void fixture_tear_down(struct fixture *fx, gconstpointer data)
{
	ivlab_remove_tree(fx->dir, NULL);
	g_free(fx->dir);
	lab_free(fx->lab);
}

/* labkernel_check fails with a message that starts "FILE:7: kernel " and
 * holds each of the NULL-terminated parts. */
static void expect_refused(struct fixture *fx, ...)
{
	g_autoptr(GError) error = NULL;
	g_autofree char *prefix = g_strdup_printf("%s:7: kernel ", fx->lab->path);
	va_list ap;
	const char *part;

	g_assert_false(labkernel_check(fx->lab, &error));
	g_assert_nonnull(error);
	g_test_message("%s", error->message);
	g_assert_true(g_str_has_prefix(error->message, prefix));
	va_start(ap, fx);
	while ((part = va_arg(ap, const char *)))
		if (!strstr(error->message, part))
			g_error("'%s' lacks '%s'", error->message, part);
	va_end(ap);
}

static void test_good(struct fixture *fx, gconstpointer data)
{
	g_autoptr(GError) error = NULL;

	g_assert_true(labkernel_check(fx->lab, &error));
	g_assert_no_error(error);
}

static void test_not_a_kernel(struct fixture *fx, gconstpointer data)
{
	write_bzimage(fx->guest->kernel, "ARM\x64", TRUE, RELEASE);
	expect_refused(fx, "not an x86_64 kernel (no bzImage header; the build leaves one in "
		       "arch/x86/boot/bzImage)", NULL);
}

static void test_32_bit(struct fixture *fx, gconstpointer data)
{
	write_bzimage(fx->guest->kernel, "HdrS", FALSE, RELEASE);
	expect_refused(fx, "a 32-bit kernel, not an x86_64 one", NULL);
}

static void test_other_release(struct fixture *fx, gconstpointer data)
{
	write_bzimage(fx->guest->kernel, "HdrS", TRUE, "6.1.98-other");
	expect_refused(fx, "is 6.1.98-other, but build-dir ", "builds modules for " RELEASE, NULL);
}

static void test_not_built(struct fixture *fx, gconstpointer data)
{
	g_autofree char *symvers = g_build_filename(fx->guest->kernel_build_dir, "Module.symvers", NULL);

	g_assert_cmpint(g_unlink(symvers), ==, 0);
	expect_refused(fx, "no Module.symvers (not a built kernel tree", NULL);
}

static void test_options_missing(struct fixture *fx, gconstpointer data)
{
	g_autofree char *config = NULL;
	g_autofree char *path = g_build_filename(fx->guest->kernel_build_dir, ".config", NULL);
	g_auto(GStrv) parts = g_strsplit(good_config, "CONFIG_PCI_MSI=y\n", 2);
	g_autofree char *without = g_strjoinv("CONFIG_PCI_MSI=m\n", parts);
	g_auto(GStrv) parts2 = g_strsplit(without, "CONFIG_SERIAL_8250_CONSOLE=y\n", 2);

	config = g_strjoinv("# CONFIG_SERIAL_8250_CONSOLE is not set\n", parts2);
	g_assert_true(g_file_set_contents(path, config, -1, NULL));
	expect_refused(fx, "CONFIG_SERIAL_8250_CONSOLE is not set (ivlab needs it built in for an "
		       "x86_64 guest)",
		       "; CONFIG_PCI_MSI=m (ivlab needs it built in for the doorbells' MSI-X interrupts)",
		       NULL);
}

static void test_module_missing(struct fixture *fx, gconstpointer data)
{
	g_autofree char *path = g_build_filename(fx->guest->kernel_build_dir, ".config", NULL);
	g_auto(GStrv) parts = g_strsplit(good_config, "CONFIG_VIRTIO_CONSOLE=y\n", 2);
	g_autofree char *config = g_strjoinv("CONFIG_VIRTIO_CONSOLE=m\n", parts);

	g_assert_true(g_file_set_contents(path, config, -1, NULL));
	expect_refused(fx, "CONFIG_VIRTIO_CONSOLE=m, but it has no virtio_console.ko (run make "
		       "modules there)", NULL);
}

/* An aarch64 guest: the arm64 Image header (its magic at 56) with the
 * release in the banner, Image.gz, and the formats refused. */
static void test_arm64(struct fixture *fx, gconstpointer data)
{
	g_autofree char *image = g_malloc0(8192);
	g_autofree char *path = g_build_filename(fx->guest->kernel_build_dir, ".config", NULL);
	g_autofree char *config = NULL;
	g_autoptr(GError) error = NULL;
	static const char banner[] = "Linux version " RELEASE " (unit@test) #1 SMP";

	g_free(fx->guest->arch);
	fx->guest->arch = g_strdup("aarch64");
	config = g_strconcat("CONFIG_ARM64=y\nCONFIG_SERIAL_AMBA_PL011=y\n"
			     "CONFIG_SERIAL_AMBA_PL011_CONSOLE=y\nCONFIG_PCI_HOST_GENERIC=y\n",
			     good_config, NULL);
	g_assert_true(g_file_set_contents(path, config, -1, NULL));

	/* The x86_64 bzImage of the fixture. */
	expect_refused(fx, "not an aarch64 kernel (no arm64 Image header; the build leaves one in "
		       "arch/arm64/boot/Image)", NULL);

	memcpy(image + 56, "ARM\x64", 4);
	memcpy(image + 4096, banner, strlen(banner));
	g_assert_true(g_file_set_contents(fx->guest->kernel, image, 8192, NULL));
	g_assert_true(labkernel_check(fx->lab, &error));
	g_assert_no_error(error);

	memcpy(image, "\x1f\x8b", 2);
	g_assert_true(g_file_set_contents(fx->guest->kernel, image, 8192, NULL));
	g_assert_true(labkernel_check(fx->lab, &error));
	g_assert_no_error(error);

	memcpy(image, "MZ\0\0zimg", 8);
	g_assert_true(g_file_set_contents(fx->guest->kernel, image, 8192, NULL));
	expect_refused(fx, "an EFI zboot image, which QEMU's direct kernel boot does not take: give "
		       "arch/arm64/boot/Image", NULL);
}

int main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
#define ADD(name, fn) g_test_add(name, struct fixture, NULL, fixture_set_up, fn, fixture_tear_down)
	ADD("/kernel/good", test_good);
	ADD("/kernel/not-a-kernel", test_not_a_kernel);
	ADD("/kernel/32-bit", test_32_bit);
	ADD("/kernel/other-release", test_other_release);
	ADD("/kernel/not-built", test_not_built);
	ADD("/kernel/options-missing", test_options_missing);
	ADD("/kernel/module-missing", test_module_missing);
	ADD("/kernel/arm64", test_arm64);
#undef ADD
	return g_test_run();
}
