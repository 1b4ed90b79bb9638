/* unit-lab.c: unit tests of the lab model, sizes, names and the accelerator
 * choice. Touches nothing real. */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <glib/gstdio.h>

#include "domxml.h"
#include "host.h"
#include "ivlab.h"
#include "lab.h"

/* The harness sets top_srcdir; run by hand, run from the source tree. */
static char *lab_file(const char *name)
{
	return g_build_filename(g_getenv("top_srcdir") ? g_getenv("top_srcdir") : ".",
				"domains", name, NULL);
}

static char *data_file(const char *name)
{
	g_autofree char *top = g_canonicalize_filename(g_getenv("top_srcdir") ? g_getenv("top_srcdir") : ".",
						       NULL);

	return g_build_filename(top, "tests", "data", name, NULL);
}

/* tests/data/payload.lab.xml: every element that brings code into guests. */
static void test_payload_lab(void)
{
	g_autofree char *path = data_file("payload.lab.xml");
	g_autofree char *fixtures = data_file("fixtures");
	g_autofree char *module_dir = g_build_filename(fixtures, "module", NULL);
	g_autofree char *share_dir = g_build_filename(fixtures, "share", NULL);
	g_autofree char *overlay_dir = g_build_filename(fixtures, "overlay", NULL);
	g_autofree char *overlay_etc = g_build_filename(overlay_dir, "etc", NULL);
	g_autofree char *hello = g_build_filename(fixtures, "files", "hello.sh", NULL);
	g_autofree char *prog_x86 = g_build_filename(fixtures, "files", "prog-x86_64", NULL);
	g_autofree char *prog_arm = g_build_filename(fixtures, "files", "prog-aarch64", NULL);
	g_autofree char *kernel = g_build_filename(fixtures, "kernel", "bzImage", NULL);
	g_autofree char *build = g_build_filename(fixtures, "kernel", "build", NULL);
	g_autoptr(GError) error = NULL;
	g_autoptr(Lab) lab = lab_load(path, &error);
	struct lab_guest *producer, *consumer;
	struct lab_region *ring;
	struct lab_module *module;
	struct lab_file *file;
	struct lab_share *share;
	struct lab_run *run;
	struct lab_test *test;
	struct lab_step *step;

	g_assert_no_error(error);
	producer = lab_find_guest(lab, "producer");
	consumer = lab_find_guest(lab, "consumer");
	ring = lab_find_region(lab, "ring");
	g_assert_nonnull(producer);
	g_assert_nonnull(consumer);

	/* Modules: the lab's first (with its params and bound region), then the guest's. */
	g_assert_cmpuint(producer->modules->len, ==, 1);
	g_assert_cmpuint(consumer->modules->len, ==, 2);
	for (guint i = 0; i < 2; i++) {
		struct lab_guest *guest = i ? consumer : producer;

		module = g_ptr_array_index(guest->modules, 0);
		g_assert_cmpstr(module->src, ==, module_dir);
		g_assert_cmpstr(module->params, ==, "debug=1");
		g_assert_cmpuint(module->bind->len, ==, 1);
		g_assert_true(g_ptr_array_index(module->bind, 0) == ring);
		g_assert_cmpint(module->line, ==, 5);
	}
	module = g_ptr_array_index(consumer->modules, 1);
	g_assert_cmpstr(module->src, ==, module_dir);
	g_assert_null(module->params);
	g_assert_cmpuint(module->bind->len, ==, 0);
	/* The two guests' copies are their own. */
	g_assert_true(g_ptr_array_index(producer->modules, 0) != g_ptr_array_index(consumer->modules, 0));

	/* Files: only those of the guest's arch, dest normalised, modes. */
	g_assert_cmpuint(producer->files->len, ==, 2);
	file = g_ptr_array_index(producer->files, 0);
	g_assert_cmpstr(file->src, ==, hello);
	g_assert_cmpstr(file->dest, ==, "/usr/bin/hello");
	g_assert_cmpuint(file->mode, ==, 0755);
	g_assert_null(file->arch);
	file = g_ptr_array_index(producer->files, 1);
	g_assert_cmpstr(file->src, ==, prog_x86);
	g_assert_cmpstr(file->dest, ==, "/usr/bin/prog");
	g_assert_cmpuint(file->mode, ==, 0755);
	g_assert_cmpstr(file->arch, ==, "x86_64");
	g_assert_cmpuint(consumer->files->len, ==, 2);
	file = g_ptr_array_index(consumer->files, 1);
	g_assert_cmpstr(file->src, ==, prog_arm);
	g_assert_cmpstr(file->arch, ==, "aarch64");

	/* Overlays, lab's first. */
	g_assert_cmpuint(producer->overlays->len, ==, 1);
	g_assert_cmpstr(g_ptr_array_index(producer->overlays, 0), ==, overlay_dir);
	g_assert_cmpuint(consumer->overlays->len, ==, 2);
	g_assert_cmpstr(g_ptr_array_index(consumer->overlays, 0), ==, overlay_dir);
	g_assert_cmpstr(g_ptr_array_index(consumer->overlays, 1), ==, overlay_etc);

	/* Shares: tags numbered per guest in order; "fixtures/" resolves without its slash. */
	g_assert_cmpuint(producer->shares->len, ==, 2);
	share = g_ptr_array_index(producer->shares, 0);
	g_assert_cmpstr(share->src, ==, share_dir);
	g_assert_cmpstr(share->dest, ==, "/mnt/share");
	g_assert_cmpstr(share->tag, ==, "ivlab0");
	g_assert_true(share->readonly);
	share = g_ptr_array_index(producer->shares, 1);
	g_assert_cmpstr(share->src, ==, fixtures);
	g_assert_cmpstr(share->dest, ==, "/mnt/data");
	g_assert_cmpstr(share->tag, ==, "ivlab1");
	g_assert_false(share->readonly);
	g_assert_cmpuint(consumer->shares->len, ==, 1);
	share = g_ptr_array_index(consumer->shares, 0);
	g_assert_cmpstr(share->tag, ==, "ivlab0");

	/* Boot commands, lab's first. */
	g_assert_cmpuint(producer->runs->len, ==, 2);
	run = g_ptr_array_index(producer->runs, 0);
	g_assert_cmpstr(run->command, ==, "sysctl -w kernel.printk=4");
	run = g_ptr_array_index(producer->runs, 1);
	g_assert_cmpstr(run->command, ==, "echo producer up");
	g_assert_cmpuint(consumer->runs->len, ==, 1);

	/* Emulator and kernel: per guest. */
	g_assert_cmpstr(producer->emulator, ==, "/usr/bin/qemu-system-x86_64");
	g_assert_cmpstr(producer->kernel, ==, kernel);
	g_assert_cmpstr(producer->kernel_build_dir, ==, build);
	g_assert_null(consumer->emulator);
	g_assert_null(consumer->kernel);
	g_assert_null(consumer->kernel_build_dir);

	/* Tests and their steps. */
	g_assert_cmpuint(lab->tests->len, ==, 2);
	test = g_ptr_array_index(lab->tests, 0);
	g_assert_cmpstr(test->name, ==, "ring-roundtrip");
	g_assert_cmpuint(test->timeout_ms, ==, 120000);
	g_assert_cmpuint(test->steps->len, ==, 3);
	step = g_ptr_array_index(test->steps, 0);
	g_assert_cmpstr(step->guest, ==, "consumer");
	g_assert_cmpstr(step->command, ==, "consume --count 10");
	g_assert_true(step->background);
	g_assert_cmpint(step->expect, ==, 0);
	step = g_ptr_array_index(test->steps, 2);
	g_assert_cmpstr(step->guest, ==, "producer");
	g_assert_false(step->background);
	g_assert_cmpint(step->expect, ==, 3);
	test = g_ptr_array_index(lab->tests, 1);
	g_assert_cmpstr(test->name, ==, "quick");
	g_assert_cmpuint(test->timeout_ms, ==, 500);
	step = g_ptr_array_index(test->steps, 0);
	g_assert_cmpstr(step->command, ==, "true");
}

/* A lab without any of it: empty lists, no tests, default timeout unused. */
static void test_plain_lab_has_no_payload(void)
{
	g_autofree char *path = lab_file("pair.xml");
	g_autoptr(Lab) lab = lab_load(path, NULL);

	g_assert_nonnull(lab);
	g_assert_cmpuint(lab->tests->len, ==, 0);
	for (guint i = 0; i < lab->guests->len; i++) {
		struct lab_guest *guest = g_ptr_array_index(lab->guests, i);

		g_assert_cmpuint(guest->modules->len + guest->files->len + guest->overlays->len +
				 guest->shares->len + guest->runs->len, ==, 0);
		g_assert_null(guest->emulator);
		g_assert_null(guest->kernel);
	}
}

/* Relative paths follow the lab file, not the working directory, also when
 * the lab file is named relative to it. */
static void test_relative_to_lab_file(void)
{
	g_autofree char *data = data_file("");
	g_autofree char *tests = g_path_get_dirname(data);
	g_autofree char *share_dir = data_file("fixtures/share");
	g_autofree char *cwd = g_get_current_dir();
	g_autoptr(Lab) lab = NULL;
	struct lab_share *share;

	g_assert_cmpint(g_chdir(tests), ==, 0);
	lab = lab_load("data/payload.lab.xml", NULL);
	g_assert_cmpint(g_chdir(cwd), ==, 0);
	g_assert_nonnull(lab);
	share = g_ptr_array_index(lab_find_guest(lab, "consumer")->shares, 0);
	g_assert_cmpstr(share->src, ==, share_dir);
}

static void test_parse_size(void)
{
	static const struct {
		const char *text;
		gboolean ok;
		guint64 bytes;
	} cases[] = {
		{ "0", TRUE, 0 },
		{ "4096", TRUE, 4096 },
		{ "1K", TRUE, 1024 },
		{ "4MiB", TRUE, 4ULL << 20 },
		{ "16M", TRUE, 16ULL << 20 },
		{ "2G", TRUE, 2ULL << 30 },
		{ "1GiB", TRUE, 1ULL << 30 },
		{ "", FALSE, 0 },
		{ "M", FALSE, 0 },
		{ "-1M", FALSE, 0 },
		{ "4 MiB", FALSE, 0 },
		{ "4Mb", FALSE, 0 },
		{ "99999999999999999999", FALSE, 0 },
		{ "17179869184G", FALSE, 0 },
	};

	for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
		guint64 bytes = 0;
		gboolean ok = ivlab_parse_size(cases[i].text, &bytes);

		g_assert_cmpint(ok, ==, cases[i].ok);
		if (ok)
			g_assert_cmpuint(bytes, ==, cases[i].bytes);
	}
	g_assert_false(ivlab_parse_size(NULL, &(guint64){ 0 }));
}

static void test_format_size(void)
{
	g_autofree char *a = ivlab_format_size(4ULL << 20);
	g_autofree char *b = ivlab_format_size(3072);
	g_autofree char *c = ivlab_format_size(1000);

	g_assert_cmpstr(a, ==, "4MiB");
	g_assert_cmpstr(b, ==, "3KiB");
	g_assert_cmpstr(c, ==, "1000B");
}

static void test_names(void)
{
	g_assert_true(ivlab_name_is_safe("x86a"));
	g_assert_true(ivlab_name_is_safe("a-b_c9"));
	g_assert_false(ivlab_name_is_safe(""));
	g_assert_false(ivlab_name_is_safe("-lead"));
	g_assert_false(ivlab_name_is_safe("a/b"));
	g_assert_false(ivlab_name_is_safe("a b"));
	g_assert_false(ivlab_name_is_safe("a.b"));
	g_assert_false(ivlab_name_is_safe("0123456789abcdef0123456789abcdefX"));
}

static void test_default_lab(void)
{
	g_autofree char *path = lab_file("default.xml");
	g_autoptr(GError) error = NULL;
	g_autoptr(Lab) lab = lab_load(path, &error);
	struct lab_region *bell, *plain;
	struct lab_guest *arm;
	guint arches[2] = { 0, 0 };

	g_assert_no_error(error);
	g_assert_nonnull(lab);
	g_assert_cmpstr(lab->name, ==, "default");
	g_assert_cmpint(lab->accel, ==, LAB_ACCEL_AUTO);
	g_assert_cmpuint(lab->regions->len, ==, 2);
	g_assert_cmpuint(lab->guests->len, ==, 3);
	bell = lab_find_region(lab, "bell");
	plain = lab_find_region(lab, "plain");
	g_assert_nonnull(bell);
	g_assert_nonnull(plain);
	g_assert_cmpint(bell->mode, ==, LAB_REGION_DOORBELL);
	g_assert_cmpuint(bell->size, ==, 4ULL << 20);
	g_assert_cmpuint(bell->vectors, ==, 4);
	g_assert_cmpint(plain->mode, ==, LAB_REGION_PLAIN);
	g_assert_cmpuint(plain->size, ==, 16ULL << 20);
	for (guint i = 0; i < lab->guests->len; i++) {
		struct lab_guest *guest = g_ptr_array_index(lab->guests, i);

		arches[strcmp(guest->arch, "aarch64") == 0]++;
		g_assert_cmpuint(guest->regions->len, ==, 2);
	}
	g_assert_cmpuint(arches[0], ==, 2);
	g_assert_cmpuint(arches[1], ==, 1);
	arm = lab_find_guest(lab, "arm");
	g_assert_nonnull(arm);
	g_assert_cmpstr(arm->machine, ==, "virt");
	g_assert_null(lab_find_guest(lab, "nosuch"));
}

static void test_names_derived(void)
{
	g_autofree char *path = lab_file("default.xml");
	g_autoptr(Lab) lab = lab_load(path, NULL);
	struct lab_guest *guest = lab_find_guest(lab, "x86a");
	struct lab_region *bell = lab_find_region(lab, "bell");
	g_autofree char *domain = lab_guest_domain_name(lab, guest);
	g_autofree char *shm = lab_region_shm_name(lab, bell);
	g_autofree char *cmdline = domxml_kernel_cmdline(lab, guest);

	g_assert_cmpstr(domain, ==, "default-x86a");
	g_assert_cmpstr(shm, ==, "ivlab-default-bell");
	g_assert_nonnull(strstr(cmdline, "console=ttyS0"));
	g_assert_nonnull(strstr(cmdline, "ivlab.regions=bell@10,plain@11"));
}

static void test_all_examples_load(void)
{
	static const char *const examples[] = { "default.xml", "pair.xml", "mixed.xml" };

	for (gsize i = 0; i < G_N_ELEMENTS(examples); i++) {
		g_autofree char *path = lab_file(examples[i]);
		g_autoptr(GError) error = NULL;
		g_autoptr(Lab) lab = lab_load(path, &error);

		g_assert_no_error(error);
		g_assert_cmpuint(lab->guests->len, >=, 2);
	}
}

static void test_missing_file(void)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(Lab) lab = lab_load("/nonexistent/lab.xml", &error);

	g_assert_null(lab);
	g_assert_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED);
	g_assert_nonnull(strstr(error->message, "/nonexistent/lab.xml"));
}

/* Excerpts of /proc/cpuinfo as the kernel writes them. */
static const char cpuinfo_intel[] =
	"processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU\n"
	"flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr vmx smx est tm2 ssse3\n"
	"vmx flags\t: vnmi preemption_timer invvpid ept_x_only\n\n";
static const char cpuinfo_amd[] =
	"processor\t: 0\nvendor_id\t: AuthenticAMD\n"
	"flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep svm extapic cr8_legacy\n\n";
/* A guest under a paravirtual KVM: no vmx or svm flag, except in words
 * that are not flags. */
static const char cpuinfo_pvm[] =
	"processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: vmx svm capable\n"
	"flags\t\t: fpu vme de pse tsc msr pae hypervisor vmxe svm_lock\n"
	"vmx flags\t: vnmi\n\nprocessor\t: 1\nflags\t\t: fpu vmx\n\n";
static const char cpuinfo_arm[] =
	"processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm aes pmull sha1\n"
	"CPU implementer\t: 0x41\n\n";

static void test_accel_decide(void)
{
	static const struct {
		enum lab_accel accel;
		const char *guest_arch;
		struct host_facts facts;
		gboolean kvm;
		const char *why;
	} cases[] = {
		/* The lab's explicit choice wins over whatever the host offers. */
		{ LAB_ACCEL_TCG, "x86_64", { "x86_64", cpuinfo_intel, 0 }, FALSE,
		  "tcg: the lab asks for emulation" },
		{ LAB_ACCEL_KVM, "aarch64", { "x86_64", NULL, ENOENT }, TRUE,
		  "kvm: the lab asks for KVM" },
		/* auto: the host's own arch, /dev/kvm opens, the CPU has vmx or svm. */
		{ LAB_ACCEL_AUTO, "x86_64", { "x86_64", cpuinfo_intel, 0 }, TRUE,
		  "kvm: /dev/kvm is usable for x86_64 guests" },
		{ LAB_ACCEL_AUTO, "x86_64", { "x86_64", cpuinfo_amd, 0 }, TRUE,
		  "kvm: /dev/kvm is usable for x86_64 guests" },
		{ LAB_ACCEL_AUTO, "x86_64", { "x86_64", cpuinfo_pvm, 0 }, FALSE,
		  "tcg: /dev/kvm opens, but the CPU shows neither vmx nor svm "
		  "(a paravirtual KVM runs no ordinary guest)" },
		{ LAB_ACCEL_AUTO, "x86_64", { "x86_64", NULL, 0 }, FALSE,
		  "tcg: /dev/kvm opens, but the CPU shows neither vmx nor svm "
		  "(a paravirtual KVM runs no ordinary guest)" },
		{ LAB_ACCEL_AUTO, "x86_64", { "x86_64", cpuinfo_intel, ENOENT }, FALSE,
		  "tcg: /dev/kvm cannot be opened: No such file or directory" },
		{ LAB_ACCEL_AUTO, "x86_64", { "x86_64", cpuinfo_intel, EACCES }, FALSE,
		  "tcg: /dev/kvm cannot be opened: Permission denied" },
		{ LAB_ACCEL_AUTO, "aarch64", { "x86_64", cpuinfo_intel, 0 }, FALSE,
		  "tcg: the host is x86_64, so aarch64 guests need emulation" },
		{ LAB_ACCEL_AUTO, "x86_64", { "aarch64", cpuinfo_arm, 0 }, FALSE,
		  "tcg: the host is aarch64, so x86_64 guests need emulation" },
		/* The CPU flags are an x86 test: an arm host's /dev/kvm is enough. */
		{ LAB_ACCEL_AUTO, "aarch64", { "aarch64", cpuinfo_arm, 0 }, TRUE,
		  "kvm: /dev/kvm is usable for aarch64 guests" },
		{ LAB_ACCEL_AUTO, "aarch64", { "aarch64", cpuinfo_arm, ENOENT }, FALSE,
		  "tcg: /dev/kvm cannot be opened: No such file or directory" },
	};

	for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
		g_autofree char *why = NULL;
		gboolean kvm = host_accel_decide(cases[i].accel, cases[i].guest_arch, &cases[i].facts,
						 &why);

		g_test_message("case %zu: %s guest, %s host: %s", i, cases[i].guest_arch,
			       cases[i].facts.arch, why);
		g_assert_cmpint(kvm, ==, cases[i].kvm);
		g_assert_cmpstr(why, ==, cases[i].why);
	}
}

static void test_accel_parse(void)
{
	enum lab_accel accel = LAB_ACCEL_TCG;

	g_assert_true(lab_accel_parse("auto", &accel));
	g_assert_cmpint(accel, ==, LAB_ACCEL_AUTO);
	g_assert_true(lab_accel_parse("kvm", &accel));
	g_assert_cmpint(accel, ==, LAB_ACCEL_KVM);
	g_assert_true(lab_accel_parse("tcg", &accel));
	g_assert_cmpint(accel, ==, LAB_ACCEL_TCG);
	g_assert_false(lab_accel_parse("KVM", &accel));
	g_assert_false(lab_accel_parse("", &accel));
	g_assert_cmpint(accel, ==, LAB_ACCEL_TCG);
	for (enum lab_accel each = LAB_ACCEL_AUTO; each <= LAB_ACCEL_TCG; each++) {
		g_assert_true(lab_accel_parse(lab_accel_name(each), &accel));
		g_assert_cmpint(accel, ==, each);
	}
}

static void test_accel_override(void)
{
	g_unsetenv("IVLAB_ACCEL");
	g_assert_cmpint(host_accel_override(LAB_ACCEL_AUTO), ==, LAB_ACCEL_AUTO);
	g_assert_cmpint(host_accel_override(LAB_ACCEL_KVM), ==, LAB_ACCEL_KVM);
	g_setenv("IVLAB_ACCEL", "tcg", TRUE);
	g_assert_cmpint(host_accel_override(LAB_ACCEL_KVM), ==, LAB_ACCEL_TCG);
	g_assert_cmpint(host_accel_override(LAB_ACCEL_AUTO), ==, LAB_ACCEL_TCG);
	g_setenv("IVLAB_ACCEL", "kvm", TRUE);
	g_assert_cmpint(host_accel_override(LAB_ACCEL_TCG), ==, LAB_ACCEL_KVM);
	/* Empty or unknown: the lab's choice stands. */
	g_setenv("IVLAB_ACCEL", "", TRUE);
	g_assert_cmpint(host_accel_override(LAB_ACCEL_TCG), ==, LAB_ACCEL_TCG);
	g_setenv("IVLAB_ACCEL", "hvf", TRUE);
	g_assert_cmpint(host_accel_override(LAB_ACCEL_AUTO), ==, LAB_ACCEL_AUTO);
	g_unsetenv("IVLAB_ACCEL");
}

int main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/util/parse-size", test_parse_size);
	g_test_add_func("/util/format-size", test_format_size);
	g_test_add_func("/util/names", test_names);
	g_test_add_func("/lab/default", test_default_lab);
	g_test_add_func("/lab/derived-names", test_names_derived);
	g_test_add_func("/lab/examples", test_all_examples_load);
	g_test_add_func("/lab/missing-file", test_missing_file);
	g_test_add_func("/lab/payload", test_payload_lab);
	g_test_add_func("/lab/no-payload", test_plain_lab_has_no_payload);
	g_test_add_func("/lab/relative-paths", test_relative_to_lab_file);
	g_test_add_func("/host/accel-decide", test_accel_decide);
	g_test_add_func("/host/accel-override", test_accel_override);
	g_test_add_func("/lab/accel-parse", test_accel_parse);
	return g_test_run();
}
