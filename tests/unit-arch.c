/* unit-arch.c: the architecture table: lookups, the derived name and
 * machine lists, and when a module build is a cross build. */
#include "config.h"

#include <string.h>

#include "arch.h"
#include "ivlab.h"

static void test_lookup(void)
{
	const struct arch *x86 = arch_lookup("x86_64");
	const struct arch *arm = arch_lookup("aarch64");

	g_assert_nonnull(x86);
	g_assert_nonnull(arm);
	g_assert_null(arch_lookup("riscv64"));
	g_assert_null(arch_lookup("amd64"));
	g_assert_null(arch_lookup(NULL));
	g_assert_cmpstr(x86->debian_arch, ==, "amd64");
	g_assert_cmpstr(arm->debian_arch, ==, "arm64");
	g_assert_cmpstr(x86->kbuild_arch, ==, "x86");
	g_assert_cmpstr(arm->kbuild_arch, ==, "arm64");
	g_assert_cmpstr(x86->console, ==, "ttyS0");
	g_assert_cmpstr(arm->console, ==, "ttyAMA0");
	g_assert_cmpstr(arm->cpu_model, ==, "cortex-a57");
	g_assert_null(x86->cpu_model);
	g_assert_true(x86->acpi);
	g_assert_false(arm->acpi);
	g_assert_cmpstr(x86->qemu_binary, ==, "qemu-system-x86_64");
	g_assert_cmpstr(arm->qemu_binary, ==, "qemu-system-aarch64");
	/* The default machine is one the arch may have. */
	g_assert_true(arch_has_machine(x86, x86->default_machine));
	g_assert_true(arch_has_machine(arm, arm->default_machine));
	g_assert_false(arch_has_machine(arm, "q35"));
	g_assert_false(arch_has_machine(x86, "virt"));
	g_assert_false(arch_has_machine(x86, NULL));
}

static void test_lists(void)
{
	const char *const *names = arch_names();
	const char *const *machines = arch_all_machines();

	g_assert_cmpuint(g_strv_length((char **)names), ==, 2);
	g_assert_cmpstr(names[0], ==, "x86_64");
	g_assert_cmpstr(names[1], ==, "aarch64");
	for (gsize i = 0; names[i]; i++)
		g_assert_true(arch_lookup(names[i]) != NULL);
	/* Every machine once, in table order. */
	g_assert_cmpuint(g_strv_length((char **)machines), ==, 3);
	g_assert_cmpstr(machines[0], ==, "pc");
	g_assert_cmpstr(machines[1], ==, "q35");
	g_assert_cmpstr(machines[2], ==, "virt");
}

static void test_cross_prefix(void)
{
	const struct arch *x86 = arch_lookup("x86_64");
	const struct arch *arm = arch_lookup("aarch64");

	g_assert_null(arch_cross_prefix(x86, "x86_64"));
	g_assert_null(arch_cross_prefix(arm, "aarch64"));
	g_assert_cmpstr(arch_cross_prefix(arm, "x86_64"), ==, "aarch64-linux-gnu-");
	g_assert_cmpstr(arch_cross_prefix(x86, "aarch64"), ==, "x86_64-linux-gnu-");
}

int main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/arch/lookup", test_lookup);
	g_test_add_func("/arch/lists", test_lists);
	g_test_add_func("/arch/cross-prefix", test_cross_prefix);
	return g_test_run();
}
