/* unit-run.c: the child-process runner (ivlab_run) and, through its
 * dry-run hook, the image steps that run commands: apt (dpkg, apt-cache,
 * apt-get download) and Kbuild (make, native and cross). No Debian mirror,
 * no kernel headers: the hook answers as the commands would. */
#include "config.h"

#include <string.h>
#include <glib/gstdio.h>

#include "apt.h"
#include "arch.h"
#include "host.h"
#include "ivlab.h"
#include "kbuild.h"
#include "run.h"

/* What the fake commands answer and what they were asked. */
struct fake {
	GPtrArray *calls; /* argv joined by spaces */
	GPtrArray *cwds;
	int status;
	const char *out;
	const char *err;
	/* "dpkg --print-foreign-architectures" answers this instead of out. */
	const char *foreign;
	/* apt-get download / make: files to create in the command's cwd. */
	const char *const *creates;
};

static gboolean fake_hook(struct ivlab_run *run, gpointer user_data, GError **error)
{
	struct fake *fake = user_data;
	g_autofree char *line = g_strjoinv(" ", (char **)run->argv);

	g_ptr_array_add(fake->calls, g_steal_pointer(&line));
	g_ptr_array_add(fake->cwds, g_strdup(run->cwd ? run->cwd : ""));
	if (fake->foreign && strcmp(run->argv[1], "--print-foreign-architectures") == 0) {
		run->out = g_strdup(fake->foreign);
		return TRUE;
	}
	for (const char *const *name = fake->creates; name && *name && run->cwd; name++) {
		g_autofree char *path = g_build_filename(run->cwd, *name, NULL);

		g_assert_true(g_file_set_contents(path, *name, -1, NULL));
	}
	run->out = g_strdup(fake->out ? fake->out : "");
	run->err = g_strdup(fake->err ? fake->err : "");
	run->status = fake->status;
	return TRUE;
}

static void fake_begin(struct fake *fake)
{
	fake->calls = g_ptr_array_new_with_free_func(g_free);
	fake->cwds = g_ptr_array_new_with_free_func(g_free);
	ivlab_run_set_dry_run(fake_hook, fake);
}

/* Real runs again; what was asked stays readable until the fake goes. */
static void fake_end(struct fake *fake)
{
	ivlab_run_set_dry_run(NULL, NULL);
}

static void fake_clear(struct fake *fake)
{
	g_clear_pointer(&fake->calls, g_ptr_array_unref);
	g_clear_pointer(&fake->cwds, g_ptr_array_unref);
}

typedef struct fake Fake;
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(Fake, fake_clear)

static char *scratch_dir(void)
{
	g_autoptr(GError) error = NULL;
	char *dir = g_dir_make_tmp("unit-run-XXXXXX", &error);

	g_assert_no_error(error);
	return dir;
}

static void rm_rf(const char *path)
{
	g_assert_true(ivlab_remove_tree(path, NULL));
}

/* --- the runner itself, with real processes ------------------------------ */

static void test_run_output(void)
{
	const char *const argv[] = { "sh", "-c", "echo out; echo err >&2; pwd; echo \"$IVLAB_T\"", NULL };
	const char *const env[] = { "IVLAB_T=set here", NULL };
	g_auto(IvlabRun) run = { .argv = argv, .cwd = "/", .env = env };
	g_autoptr(GError) error = NULL;

	g_assert_true(ivlab_run(&run, &error));
	g_assert_no_error(error);
	g_assert_cmpstr(run.out, ==, "out\n/\nset here\n");
	g_assert_cmpstr(run.err, ==, "err\n");
	g_assert_cmpint(run.status, ==, 0);
}

static void test_run_failure_one_line(void)
{
	const char *const argv[] = { "sh", "-c",
				     "echo progress; echo 'warning: meh' >&2; "
				     "echo 'x.c:3:1: error: bad thing' >&2; echo 'more' >&2; exit 3", NULL };
	g_auto(IvlabRun) run = { .argv = argv };
	g_auto(IvlabRun) allowed = { .argv = argv, .may_fail = TRUE };
	g_autoptr(GError) error = NULL;

	g_assert_false(ivlab_run(&run, &error));
	g_assert_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED);
	g_assert_cmpstr(error->message, ==, "sh failed: x.c:3:1: error: bad thing");
	g_assert_cmpint(run.status, ==, 3);
	g_clear_error(&error);
	g_assert_true(ivlab_run(&allowed, &error));
	g_assert_no_error(error);
	g_assert_cmpint(allowed.status, ==, 3);
}

static void test_run_failure_kinds(void)
{
	const char *const quiet[] = { "sh", "-c", "exit 4", NULL };
	const char *const plain[] = { "sh", "-c", "echo 'first' >&2; echo second >&2; exit 1", NULL };
	const char *const killed[] = { "sh", "-c", "kill -9 $$", NULL };
	const char *const missing[] = { "ivlab-no-such-command", NULL };
	g_auto(IvlabRun) run = { .argv = quiet };
	g_autoptr(GError) error = NULL;

	g_assert_false(ivlab_run(&run, &error));
	g_assert_cmpstr(error->message, ==, "sh failed with exit status 4");
	g_clear_error(&error);
	run.argv = plain;
	g_assert_false(ivlab_run(&run, &error));
	g_assert_cmpstr(error->message, ==, "sh failed: first");
	g_clear_error(&error);
	run.argv = killed;
	g_assert_false(ivlab_run(&run, &error));
	g_assert_cmpstr(error->message, ==, "sh failed: killed by signal 9");
	g_assert_cmpint(run.status, ==, 128 + 9);
	g_clear_error(&error);
	run.argv = missing;
	g_assert_false(ivlab_run(&run, &error));
	g_assert_true(g_str_has_prefix(error->message, "ivlab-no-such-command: "));
	g_assert_null(strchr(error->message, '\n'));
}

static void test_run_dry(void)
{
	const char *const argv[] = { "rm", "-rf", "/definitely/not", NULL };
	g_auto(IvlabRun) run = { .argv = argv, .cwd = "/tmp" };
	g_auto(Fake) fake = { .status = 0, .out = "pretend\n" };

	fake_begin(&fake);
	g_assert_true(ivlab_run(&run, NULL));
	fake_end(&fake);
	g_assert_cmpuint(fake.calls->len, ==, 1);
	g_assert_cmpstr(run.out, ==, "pretend\n");
	g_assert_cmpstr(run.err, ==, "");
}

/* --- apt ----------------------------------------------------------------- */

static void test_apt_check_arch(void)
{
	g_auto(Fake) fake = { .out = "amd64\n", .foreign = "" };
	g_autoptr(GError) error = NULL;

	fake_begin(&fake);
	g_assert_true(apt_check_arch("amd64", &error));
	g_assert_no_error(error);
	g_assert_false(apt_check_arch("arm64", &error));
	g_assert_cmpstr(error->message, ==,
			"image: arm64 packages are not available to apt: run 'dpkg --add-architecture "
			"arm64 && apt-get update' (setup-host.sh does it)");
	g_clear_error(&error);
	fake.foreign = "i386\narm64\n";
	g_assert_true(apt_check_arch("arm64", &error));
	g_assert_no_error(error);
	g_assert_cmpstr(fake.calls->pdata[0], ==, "dpkg --print-architecture");
	g_assert_cmpstr(fake.calls->pdata[2], ==, "dpkg --print-foreign-architectures");
	fake_end(&fake);
}

static void test_apt_resolve_kernel(void)
{
	g_auto(Fake) fake = {
		.out = "linux-image-arm64:arm64\n  Depends: linux-image-6.1.0-57-arm64:arm64\n"
		       "  Recommends: apparmor\n",
	};
	g_autoptr(GError) error = NULL;
	g_autofree char *image = NULL;

	fake_begin(&fake);
	image = apt_resolve_kernel("linux-image-arm64", "arm64", &error);
	g_assert_no_error(error);
	g_assert_cmpstr(image, ==, "linux-image-6.1.0-57-arm64");
	g_assert_cmpstr(fake.calls->pdata[0], ==, "apt-cache depends linux-image-arm64:arm64");

	/* apt does not know it: one line, naming the package and apt's reason. */
	fake.status = 100;
	fake.out = "";
	fake.err = "E: No packages found\n";
	g_assert_null(apt_resolve_kernel("linux-image-nope", "amd64", &error));
	g_assert_cmpstr(error->message, ==,
			"image: apt-cache does not know linux-image-nope:amd64 (run 'apt-get update'): "
			"apt-cache failed: E: No packages found");
	fake_end(&fake);
}

static const char stanzas[] =
	"Package: linux-image-6.1.0-57-arm64\nVersion: 6.1.192-3\nArchitecture: arm64\n"
	"SHA256: 1111111111111111111111111111111111111111111111111111111111111111\n\n"
	"Package: linux-headers-6.1.0-57-common\nVersion: 6.1.192-3\nArchitecture: all\n"
	"SHA256: 2222222222222222222222222222222222222222222222222222222222222222\n\n"
	"Package: busybox-static\nVersion: 1:1.35.0-4+b1\nArchitecture: amd64\n\n"
	"Package: busybox-static\nVersion: 1:1.35.0-4+b1\nArchitecture: arm64\n"
	"SHA256: 3333333333333333333333333333333333333333333333333333333333333333\n";

static void test_apt_candidates(void)
{
	g_auto(Fake) fake = { .out = stanzas };
	struct apt_deb debs[3] = { { 0 } };
	const char *const names[] = { "linux-image-6.1.0-57-arm64:arm64",
				      "linux-headers-6.1.0-57-common", "busybox-static:arm64", NULL };
	g_autoptr(GError) error = NULL;

	fake_begin(&fake);
	g_assert_true(apt_candidates(debs, names, &error));
	g_assert_no_error(error);
	g_assert_cmpstr(fake.calls->pdata[0], ==,
			"apt-cache show --no-all-versions linux-image-6.1.0-57-arm64:arm64 "
			"linux-headers-6.1.0-57-common busybox-static:arm64");
	g_assert_cmpstr(debs[0].spec, ==, "linux-image-6.1.0-57-arm64:arm64=6.1.192-3");
	g_assert_cmpstr(debs[0].filename, ==, "linux-image-6.1.0-57-arm64_6.1.192-3_arm64.deb");
	g_assert_cmpstr(debs[1].spec, ==, "linux-headers-6.1.0-57-common=6.1.192-3");
	g_assert_cmpstr(debs[1].filename, ==, "linux-headers-6.1.0-57-common_6.1.192-3_all.deb");
	g_assert_true(g_str_has_prefix(debs[1].sha256, "2222"));
	/* The arm64 stanza, not the amd64 one; the epoch's colon escaped. */
	g_assert_cmpstr(debs[2].spec, ==, "busybox-static:arm64=1:1.35.0-4+b1");
	g_assert_cmpstr(debs[2].filename, ==, "busybox-static_1%3a1.35.0-4+b1_arm64.deb");
	g_assert_true(g_str_has_prefix(debs[2].sha256, "3333"));
	for (gsize i = 0; i < G_N_ELEMENTS(debs); i++)
		apt_deb_clear(&debs[i]);

	struct apt_deb missing = { 0 };
	const char *const unknown[] = { "busybox-static:riscv64", NULL };
	g_assert_false(apt_candidates(&missing, unknown, &error));
	g_assert_cmpstr(error->message, ==,
			"image: apt has no candidate for busybox-static:riscv64 (run 'apt-get update')");
	apt_deb_clear(&missing);
	fake_end(&fake);
}

static void test_apt_download(void)
{
	g_autofree char *dir = scratch_dir();
	g_autofree char *cache = g_build_filename(dir, "debs", NULL);
	const char *const files[] = { "a_1_arm64.deb", "b_2_all.deb", NULL };
	g_auto(Fake) fake = { .creates = files };
	struct apt_deb debs[2] = {
		{ .spec = g_strdup("a:arm64=1"), .filename = g_strdup(files[0]) },
		{ .spec = g_strdup("b=2"), .filename = g_strdup(files[1]) },
	};
	g_autoptr(GError) error = NULL;
	g_autofree char *contents = NULL;

	fake_begin(&fake);
	g_assert_true(apt_download(debs, 2, cache, &error));
	g_assert_no_error(error);
	g_assert_cmpuint(fake.calls->len, ==, 1);
	g_assert_cmpstr(fake.calls->pdata[0], ==,
			"apt-get -q -o APT::Sandbox::User=root download a:arm64=1 b=2");
	/* Run in a scratch directory of the cache, then moved into place. */
	g_assert_true(g_str_has_prefix(fake.cwds->pdata[0], cache));
	g_assert_false(g_file_test(fake.cwds->pdata[0], G_FILE_TEST_EXISTS));
	g_assert_true(g_file_get_contents(debs[0].path, &contents, NULL, NULL));
	g_assert_cmpstr(contents, ==, files[0]);
	g_assert_true(g_str_has_prefix(debs[1].path, cache));

	/* All cached: nothing runs. */
	g_assert_true(apt_download(debs, 2, cache, &error));
	g_assert_no_error(error);
	g_assert_cmpuint(fake.calls->len, ==, 1);
	fake_end(&fake);
	for (gsize i = 0; i < G_N_ELEMENTS(debs); i++)
		apt_deb_clear(&debs[i]);
	rm_rf(dir);
}

static void test_apt_download_failure(void)
{
	g_autofree char *dir = scratch_dir();
	g_autofree char *cache = g_build_filename(dir, "debs", NULL);
	g_auto(Fake) fake = {
		.status = 100,
		.out = "Reading package lists...\n",
		.err = "W: some warning\nE: Can't find a source to download version '9' of 'a:arm64'\n",
	};
	struct apt_deb deb = { .spec = g_strdup("a:arm64=9"), .filename = g_strdup("a_9_arm64.deb") };
	g_autoptr(GError) error = NULL;

	fake_begin(&fake);
	g_assert_false(apt_download(&deb, 1, cache, &error));
	fake_end(&fake);
	g_assert_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED);
	g_assert_cmpstr(error->message, ==,
			"apt-get failed: E: Can't find a source to download version '9' of 'a:arm64'");
	g_assert_false(g_file_test(deb.path, G_FILE_TEST_EXISTS));
	apt_deb_clear(&deb);
	rm_rf(dir);
}

/* --- Kbuild ---------------------------------------------------------------- */

/* A guest source tree with what the module build copies. */
static char *fake_guest_dir(const char *dir)
{
	char *guest = g_build_filename(dir, "guest", NULL);
	g_autofree char *include = g_build_filename(guest, "include", "uapi", NULL);
	g_autofree char *header = g_build_filename(include, "ivlab.h", NULL);
	g_autofree char *kbuild = g_build_filename(guest, "Kbuild", NULL);
	g_autofree char *source = g_build_filename(guest, "ivlab_drv.c", NULL);

	g_assert_true(ivlab_make_dir(include, NULL));
	g_assert_true(g_file_set_contents(header, "/* uapi */\n", -1, NULL));
	g_assert_true(g_file_set_contents(kbuild, "obj-m += ivlab.o\n", -1, NULL));
	g_assert_true(g_file_set_contents(source, "/* driver */\n", -1, NULL));
	return guest;
}

/* PATH with a stand-in for arch's cross gcc (only its presence is checked). */
static char *fake_cross_path(const char *dir, const struct arch *arch)
{
	g_autofree char *bin = g_build_filename(dir, "bin", NULL);
	g_autofree char *name = g_strdup_printf("%sgcc", arch->cross_prefix);
	g_autofree char *gcc = g_build_filename(bin, name, NULL);

	g_assert_true(ivlab_make_dir(bin, NULL));
	g_assert_true(g_file_set_contents(gcc, "#!/bin/sh\nexit 1\n", -1, NULL));
	g_assert_cmpint(g_chmod(gcc, 0755), ==, 0);
	return g_strdup_printf("%s:%s", bin, g_getenv("PATH"));
}

static void check_kbuild(const char *arch_name)
{
	const struct arch *arch = arch_lookup(arch_name);
	const char *cross = arch_cross_prefix(arch, host_arch());
	g_autofree char *dir = scratch_dir();
	g_autofree char *guest = fake_guest_dir(dir);
	g_autofree char *old_path = g_strdup(g_getenv("PATH"));
	g_autofree char *path = fake_cross_path(dir, arch);
	g_autofree char *module_dir = g_build_filename(dir, "module", NULL);
	g_autofree char *copied = g_build_filename(module_dir, "include", "uapi", "ivlab.h", NULL);
	g_autofree char *want = NULL;
	const char *const creates[] = { "ivlab.ko", NULL };
	g_auto(Fake) fake = { .creates = creates };
	g_autoptr(GError) error = NULL;
	g_autoptr(GBytes) ko = NULL;

	g_setenv("PATH", path, TRUE);
	fake_begin(&fake);
	ko = kbuild_module(arch, "/usr/src/linux-headers-6.1.0-57-x", guest, dir, &error);
	fake_end(&fake);
	g_setenv("PATH", old_path, TRUE);
	g_assert_no_error(error);
	g_assert_nonnull(ko);
	g_assert_cmpmem(g_bytes_get_data(ko, NULL), g_bytes_get_size(ko), "ivlab.ko", 8);
	g_assert_true(g_file_test(copied, G_FILE_TEST_IS_REGULAR));
	g_assert_cmpuint(fake.calls->len, ==, 1);
	g_assert_cmpstr(fake.cwds->pdata[0], ==, module_dir);
	if (cross)
		want = g_strdup_printf("make -j%u -C /usr/src/linux-headers-6.1.0-57-x M=%s ARCH=%s "
				       "CROSS_COMPILE=%s modules",
				       g_get_num_processors(), module_dir, arch->kbuild_arch, cross);
	else
		want = g_strdup_printf("make -j%u -C /usr/src/linux-headers-6.1.0-57-x M=%s modules",
				       g_get_num_processors(), module_dir);
	g_assert_cmpstr(fake.calls->pdata[0], ==, want);
	rm_rf(dir);
}

static void test_kbuild_x86_64(void)
{
	check_kbuild("x86_64");
}

static void test_kbuild_aarch64(void)
{
	check_kbuild("aarch64");
}

/* On any host one of the two is a cross build: its argv names ARCH and
 * CROSS_COMPILE from the table. */
static void test_kbuild_cross_prefix(void)
{
	const char *other = strcmp(host_arch(), "aarch64") == 0 ? "x86_64" : "aarch64";
	const struct arch *arch = arch_lookup(other);

	g_assert_nonnull(arch_cross_prefix(arch, host_arch()));
	g_assert_cmpstr(arch->kbuild_arch, ==, strcmp(other, "aarch64") == 0 ? "arm64" : "x86");
}

static void test_kbuild_failure(void)
{
	g_autofree char *dir = scratch_dir();
	g_autofree char *guest = fake_guest_dir(dir);
	const struct arch *arch = arch_lookup(host_arch()) ? arch_lookup(host_arch()) :
							       arch_lookup("x86_64");
	g_autofree char *old_path = g_strdup(g_getenv("PATH"));
	g_autofree char *path = fake_cross_path(dir, arch);
	g_autofree char *want = NULL;
	g_auto(Fake) fake = {
		.status = 2,
		.out = "  CC [M]  /w/module/ivlab_drv.o\n",
		.err = "/w/module/ivlab_drv.c: In function 'ivlab_probe':\n"
		       "/w/module/ivlab_drv.c:10:5: error: 'foo' undeclared\n"
		       "make[2]: *** [scripts/Makefile.build:250: /w/module/ivlab_drv.o] Error 1\n",
	};
	g_autoptr(GError) error = NULL;
	g_autoptr(GBytes) ko = NULL;

	g_setenv("PATH", path, TRUE);
	fake_begin(&fake);
	ko = kbuild_module(arch, "/kdir", guest, dir, &error);
	fake_end(&fake);
	g_setenv("PATH", old_path, TRUE);
	g_assert_null(ko);
	g_assert_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED);
	want = g_strdup_printf("image: the %s module did not build: make failed: "
			       "/w/module/ivlab_drv.c:10:5: error: 'foo' undeclared",
			       arch->name);
	g_assert_cmpstr(error->message, ==, want);
	rm_rf(dir);
}

static void test_kbuild_no_cross_compiler(void)
{
	const char *other = strcmp(host_arch(), "aarch64") == 0 ? "x86_64" : "aarch64";
	const struct arch *arch = arch_lookup(other);
	g_autofree char *dir = scratch_dir();
	g_autofree char *guest = fake_guest_dir(dir);
	g_autofree char *old_path = g_strdup(g_getenv("PATH"));
	g_autofree char *want = g_strdup_printf("apt-get install %s)", arch->cross_gcc_package);
	g_auto(Fake) fake = { 0 };
	g_autoptr(GError) error = NULL;
	g_autoptr(GBytes) ko = NULL;

	g_setenv("PATH", dir, TRUE);
	fake_begin(&fake);
	ko = kbuild_module(arch, "/kdir", guest, dir, &error);
	fake_end(&fake);
	g_setenv("PATH", old_path, TRUE);
	g_assert_null(ko);
	g_assert_true(g_str_has_suffix(error->message, want));
	g_assert_cmpuint(fake.calls->len, ==, 0);
	rm_rf(dir);
}

static void test_kbuild_missing_source(void)
{
	g_autofree char *dir = scratch_dir();
	g_autofree char *guest = fake_guest_dir(dir);
	g_autofree char *source = g_build_filename(guest, "ivlab_drv.c", NULL);
	g_auto(Fake) fake = { 0 };
	g_autoptr(GError) error = NULL;
	g_autoptr(GBytes) ko = NULL;

	g_unlink(source);
	fake_begin(&fake);
	ko = kbuild_module(arch_lookup("x86_64"), "/kdir", guest, dir, &error);
	fake_end(&fake);
	g_assert_null(ko);
	g_assert_nonnull(strstr(error->message, "the module source"));
	g_assert_cmpuint(fake.calls->len, ==, 0);
	rm_rf(dir);
}

int main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	ivlab_set_verbosity(0, TRUE);
	g_test_add_func("/run/output", test_run_output);
	g_test_add_func("/run/failure-one-line", test_run_failure_one_line);
	g_test_add_func("/run/failure-kinds", test_run_failure_kinds);
	g_test_add_func("/run/dry-run", test_run_dry);
	g_test_add_func("/apt/check-arch", test_apt_check_arch);
	g_test_add_func("/apt/resolve-kernel", test_apt_resolve_kernel);
	g_test_add_func("/apt/candidates", test_apt_candidates);
	g_test_add_func("/apt/download", test_apt_download);
	g_test_add_func("/apt/download-failure", test_apt_download_failure);
	g_test_add_func("/kbuild/x86_64", test_kbuild_x86_64);
	g_test_add_func("/kbuild/aarch64", test_kbuild_aarch64);
	g_test_add_func("/kbuild/cross-prefix", test_kbuild_cross_prefix);
	g_test_add_func("/kbuild/failure", test_kbuild_failure);
	g_test_add_func("/kbuild/no-cross-compiler", test_kbuild_no_cross_compiler);
	g_test_add_func("/kbuild/missing-source", test_kbuild_missing_source);
	return g_test_run();
}
