/* cmd-bench.c: `ivlab bench`: shared-memory copy bandwidth and doorbell
 * ping-pong latency on the running lab, as a table or JSON. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <glib/gstdio.h>

#include "arch.h"
#include "bootbench.h"
#include "image.h"
#include "ivlab.h"
#include "labbench.h"
#include "labsession.h"

static gboolean as_json;
static int iterations = 1000;
static char *size_text;
static char *filter;
static int timeout_seconds = 300;

static const GOptionEntry entries[] = {
	{ "json", 0, 0, G_OPTION_ARG_NONE, &as_json, "print JSON", NULL },
	{ "iterations", 'n', 0, G_OPTION_ARG_INT, &iterations,
	  "copies and ping-pong rounds per measurement (default 1000)", "N" },
	{ "size", 's', 0, G_OPTION_ARG_STRING, &size_text,
	  "bytes per copy (default 1MiB, at most the region)", "BYTES" },
	{ "filter", 'F', 0, G_OPTION_ARG_STRING, &filter,
	  "run only the measurements whose name matches GLOB (e.g. 'pingpong/*')", "GLOB" },
	{ "timeout", 't', 0, G_OPTION_ARG_INT, &timeout_seconds,
	  "seconds one agent request may take (default 300)", "SECONDS" },
	{ NULL }
};

static void add_string(JsonBuilder *builder, const char *name, const char *value)
{
	json_builder_set_member_name(builder, name);
	json_builder_add_string_value(builder, value);
}

static void add_int(JsonBuilder *builder, const char *name, gint64 value)
{
	json_builder_set_member_name(builder, name);
	json_builder_add_int_value(builder, value);
}

/* MB/s to one decimal, as the table shows them. */
static void add_mbps(JsonBuilder *builder, const char *name, double value)
{
	json_builder_set_member_name(builder, name);
	json_builder_add_double_value(builder, round(value * 10) / 10);
}

static void add_item(JsonBuilder *builder, const struct labbench_item *item)
{
	json_builder_begin_object(builder);
	add_string(builder, "name", item->name);
	add_string(builder, "region", item->region);
	if (item->kind == LABBENCH_COPY) {
		add_string(builder, "guest", item->guest);
		add_int(builder, "size", (gint64)item->size);
	} else {
		add_string(builder, "initiator", item->initiator);
		add_string(builder, "responder", item->responder);
	}
	add_int(builder, "iterations", item->iterations);
	if (item->error) {
		add_string(builder, "error", item->error);
	} else if (item->kind == LABBENCH_COPY) {
		add_mbps(builder, "to_region_mbps", item->to_region_mbps);
		add_mbps(builder, "from_region_mbps", item->from_region_mbps);
		add_mbps(builder, "ram_mbps", item->ram_mbps);
	} else {
		add_int(builder, "median_ns", (gint64)item->median_ns);
		add_int(builder, "p99_ns", (gint64)item->p99_ns);
	}
	json_builder_end_object(builder);
}

static void print_json(const struct lab_session *session, GPtrArray *items)
{
	static const char *const lists[] = { "copy", "pingpong" };
	g_autoptr(JsonBuilder) builder = json_builder_new();
	g_autoptr(JsonNode) root = NULL;
	g_autofree char *file = g_canonicalize_filename(session->path, NULL);

	ivlab_json_begin(builder);
	add_string(builder, "lab", session->lab->name);
	add_string(builder, "file", file);
	add_int(builder, "iterations", iterations);
	for (guint kind = 0; kind < G_N_ELEMENTS(lists); kind++) {
		json_builder_set_member_name(builder, lists[kind]);
		json_builder_begin_array(builder);
		for (guint i = 0; i < items->len; i++) {
			const struct labbench_item *item = g_ptr_array_index(items, i);

			if ((guint)item->kind == kind)
				add_item(builder, item);
		}
		json_builder_end_array(builder);
	}
	json_builder_end_object(builder);
	root = json_builder_get_root(builder);
	ivlab_print_json(root);
}

static void print_table(const struct lab *lab, GPtrArray *items)
{
	gboolean copy_header = FALSE, pingpong_header = FALSE;

	printf("lab %s: %d iterations per measurement\n", lab->name, iterations);
	for (guint i = 0; i < items->len; i++) {
		const struct labbench_item *item = g_ptr_array_index(items, i);
		g_autofree char *size = NULL;

		if (item->kind != LABBENCH_COPY)
			continue;
		if (!copy_header)
			printf("\ncopy bandwidth, MB/s\n%-10s %-10s %-8s %12s %12s %12s\n", "REGION", "GUEST",
			       "SIZE", "TO-REGION", "FROM-REGION", "RAM-TO-RAM");
		copy_header = TRUE;
		size = ivlab_format_size(item->size);
		if (item->error)
			printf("%-10s %-10s %-8s error: %s\n", item->region, item->guest, size, item->error);
		else
			printf("%-10s %-10s %-8s %12.1f %12.1f %12.1f\n", item->region, item->guest, size,
			       item->to_region_mbps, item->from_region_mbps, item->ram_mbps);
	}
	for (guint i = 0; i < items->len; i++) {
		const struct labbench_item *item = g_ptr_array_index(items, i);

		if (item->kind != LABBENCH_PINGPONG)
			continue;
		if (!pingpong_header)
			printf("\ndoorbell ping-pong round trip, microseconds\n%-10s %-10s %-10s %12s %12s\n",
			       "REGION", "INITIATOR", "RESPONDER", "MEDIAN", "P99");
		pingpong_header = TRUE;
		if (item->error)
			printf("%-10s %-10s %-10s error: %s\n", item->region, item->initiator, item->responder,
			       item->error);
		else
			printf("%-10s %-10s %-10s %12.1f %12.1f\n", item->region, item->initiator,
			       item->responder, item->median_ns / 1000.0, item->p99_ns / 1000.0);
	}
}

static gboolean cmd_bench_check(const struct ivlab_cmd *self, int argc, char **argv, GError **error)
{
	guint64 size;

	if (iterations < 1 || iterations > 1000000)
		return cmd_usage_error(error, self, "--iterations must be 1..1000000");
	if (timeout_seconds <= 0)
		return cmd_usage_error(error, self, "--timeout must be positive");
	if (size_text && (!ivlab_parse_size(size_text, &size) || size == 0))
		return cmd_usage_error(error, self, "--size: '%s' is not a size in bytes", size_text);
	return TRUE;
}

static gboolean bench_lab(const struct ivlab_cmd *self, struct ivlab_ctx *ctx, int argc,
			  char **argv, GError **error)
{
	const struct lab *lab;
	g_autoptr(GPtrArray) items = NULL;
	struct labbench_options opts = { 0 };
	guint failed = 0;

	if (!cmd_parse(self, entries, &argc, &argv, error))
		return FALSE;
	if (argc > 1)
		return cmd_usage_error(error, self, "unexpected argument '%s'", argv[1]);
	if (!cmd_bench_check(self, argc, argv, error) ||
	    !cmd_prepare(self, ctx, CMD_NEEDS_RUNNING_LAB, argc, argv, error))
		return FALSE;
	lab = ctx->session->lab;
	if (size_text)
		ivlab_parse_size(size_text, &opts.size);
	opts.filter = filter;
	opts.iterations = (guint)iterations;
	opts.timeout_ms = timeout_seconds * 1000;
	items = labbench_run(ctx->session, &opts, error);
	if (!items)
		return FALSE;
	if (!items->len)
		return ivlab_fail(error, "no measurement matches the filter '%s'", filter ? filter : "*");
	if (as_json)
		print_json(ctx->session, items);
	else
		print_table(lab, items);
	fflush(stdout);
	for (guint i = 0; i < items->len; i++)
		failed += ((struct labbench_item *)g_ptr_array_index(items, i))->error != NULL;
	if (failed)
		return ivlab_fail(error, "lab '%s': %u of %u measurements failed", lab->name, failed,
				  items->len);
	return TRUE;
}

/* --- bench boot ----------------------------------------------------------- */

static char *boot_arch;
static char *boot_machine;
static int boot_runs = 5;
static gboolean boot_lab;
static char *boot_kernel;
static char *boot_initrd;
static char *boot_append;
static int boot_timeout = 120;
static gboolean boot_json;

static const GOptionEntry boot_entries[] = {
	{ "arch", 'a', 0, G_OPTION_ARG_STRING, &boot_arch, "x86_64 or aarch64", "ARCH" },
	{ "machine", 'M', 0, G_OPTION_ARG_STRING, &boot_machine, "machine type", "M" },
	{ "runs", 'n', 0, G_OPTION_ARG_INT, &boot_runs, "boots per machine (default 5)", "N" },
	{ "lab", 0, 0, G_OPTION_ARG_NONE, &boot_lab, "boot the lab file's guests together", NULL },
	{ "kernel", 0, 0, G_OPTION_ARG_FILENAME, &boot_kernel, "boot this kernel", "FILE" },
	{ "initrd", 0, 0, G_OPTION_ARG_FILENAME, &boot_initrd, "with this initramfs", "FILE" },
	{ "append", 0, 0, G_OPTION_ARG_STRING, &boot_append, "more kernel command line", "ARGS" },
	{ "timeout", 't', 0, G_OPTION_ARG_INT, &boot_timeout, "seconds a boot may take", "S" },
	{ "json", 0, 0, G_OPTION_ARG_NONE, &boot_json, "print JSON", NULL },
	{ NULL }
};

/* The lab of one guest of arch on machine, for the per-image runs. */
static struct lab *arch_lab(const char *arch, const char *machine, GError **error)
{
	g_autofree char *text = g_strdup_printf(
		"<lab name=\"bench\"><region name=\"unused\" size=\"1MiB\" mode=\"plain\"/>"
		"<guest name=\"%s\" arch=\"%s\"%s%s%s><attach region=\"unused\"/></guest></lab>",
		strcmp(arch, "x86_64") == 0 ? "x86-64" : arch, arch, machine ? " machine=\"" : "",
		machine ? machine : "", machine ? "\"" : "");

	return lab_load_data("bench boot", text, strlen(text), error);
}

static int compare_doubles(gconstpointer a, gconstpointer b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* The median of stage over runs (-1 when no run has it). */
static double stage_median(struct bootprofile *profiles, guint runs, guint stride, guint index,
			   int stage)
{
	g_autofree double *values = g_new(double, runs);
	guint count = 0;

	for (guint run = 0; run < runs; run++) {
		const struct bootprofile *profile = &profiles[run * stride + index];
		double value = stage < BOOTPROFILE_STAGES ?
				       bootprofile_stage_seconds(profile, stage) :
				       profile->end[BOOTPROFILE_AGENT];

		if (value >= 0)
			values[count++] = value;
	}
	if (!count)
		return -1;
	qsort(values, count, sizeof(double), compare_doubles);
	return count % 2 ? values[count / 2] : (values[count / 2 - 1] + values[count / 2]) / 2;
}

static void add_seconds(JsonBuilder *builder, const char *name, double seconds)
{
	json_builder_set_member_name(builder, name);
	json_builder_add_double_value(builder, round(seconds * 1000) / 1000);
}

static void print_boot_json(GPtrArray *machines, struct bootprofile *profiles, guint runs)
{
	g_autoptr(JsonBuilder) builder = json_builder_new();
	g_autoptr(JsonNode) root = NULL;

	ivlab_json_begin(builder);
	add_int(builder, "runs", runs);
	json_builder_set_member_name(builder, "machines");
	json_builder_begin_array(builder);
	for (guint i = 0; i < machines->len; i++) {
		const struct bootbench_machine *machine = g_ptr_array_index(machines, i);

		json_builder_begin_object(builder);
		add_string(builder, "name", machine->name);
		add_string(builder, "arch", machine->arch);
		add_string(builder, "machine", machine->machine);
		add_string(builder, "kernel", machine->kernel);
		add_string(builder, "initrd", machine->initrd);
		add_string(builder, "cmdline", machine->cmdline);
		json_builder_set_member_name(builder, "median");
		json_builder_begin_object(builder);
		for (int stage = 0; stage <= BOOTPROFILE_STAGES; stage++) {
			double value = stage_median(profiles, runs, machines->len, i, stage);

			if (value >= 0)
				add_seconds(builder, stage < BOOTPROFILE_STAGES ?
							     bootprofile_stage_name(stage) : "ready",
					    value);
		}
		json_builder_end_object(builder);
		json_builder_set_member_name(builder, "boots");
		json_builder_begin_array(builder);
		for (guint run = 0; run < runs; run++)
			bootprofile_add_json(builder, &profiles[run * machines->len + i]);
		json_builder_end_array(builder);
		json_builder_end_object(builder);
	}
	json_builder_end_array(builder);
	json_builder_end_object(builder);
	root = json_builder_get_root(builder);
	ivlab_print_json(root);
}

static void print_boot_table(GPtrArray *machines, struct bootprofile *profiles, guint runs)
{
	printf("boot stages under plain QEMU, median of %u run%s, seconds\n", runs,
	       runs == 1 ? "" : "s");
	printf("%-10s %-8s %-6s", "MACHINE", "ARCH", "TYPE");
	for (int stage = 0; stage < BOOTPROFILE_STAGES; stage++) {
		g_autofree char *upper = g_ascii_strup(bootprofile_stage_name(stage), -1);

		printf(" %8s", upper);
	}
	printf(" %8s  KERNEL\n", "READY");
	for (guint i = 0; i < machines->len; i++) {
		const struct bootbench_machine *machine = g_ptr_array_index(machines, i);
		g_autofree char *kernel = g_path_get_basename(machine->kernel);

		printf("%-10s %-8s %-6s", machine->name, machine->arch, machine->machine);
		for (int stage = 0; stage <= BOOTPROFILE_STAGES; stage++) {
			double value = stage_median(profiles, runs, machines->len, i, stage);

			if (value >= 0)
				printf(" %8.2f", value);
			else
				printf(" %8s", "-");
		}
		printf("  %s\n", kernel);
	}
}

static gboolean bench_boot(const struct ivlab_cmd *self, struct ivlab_ctx *ctx, int argc,
			   char **argv, GError **error)
{
	g_autoptr(GPtrArray) machines = g_ptr_array_new_with_free_func(
		(GDestroyNotify)bootbench_machine_free);
	g_autoptr(GPtrArray) labs = g_ptr_array_new_with_free_func((GDestroyNotify)lab_free);
	g_autofree struct bootprofile *profiles = NULL;
	g_autofree char *workdir = NULL;
	struct ivlab_progress line;
	gboolean ok = TRUE;

	if (!cmd_parse(self, boot_entries, &argc, &argv, error))
		return FALSE;
	if (argc > 1)
		return cmd_usage_error(error, self, "boot: unexpected argument '%s'", argv[1]);
	if (boot_runs < 1 || boot_runs > 1000)
		return cmd_usage_error(error, self, "boot: --runs must be 1..1000");
	if (boot_timeout <= 0)
		return cmd_usage_error(error, self, "boot: --timeout must be positive");
	if (boot_arch && !arch_lookup(boot_arch))
		return cmd_usage_error(error, self, "boot: unknown architecture '%s'", boot_arch);
	if (boot_lab && (boot_arch || boot_machine))
		return cmd_usage_error(error, self, "boot: --lab takes the guests' own arch and machine");
	if (boot_kernel && !boot_lab && !boot_arch)
		return cmd_usage_error(error, self, "boot: --kernel needs --arch");
	if (boot_lab) {
		if (!cmd_prepare(self, ctx, CMD_NEEDS_LAB, argc, argv, error))
			return FALSE;
		for (guint i = 0; i < ctx->session->lab->guests->len; i++)
			g_ptr_array_add(machines, bootbench_machine_for_guest(
				ctx->session->lab, g_ptr_array_index(ctx->session->lab->guests, i),
				boot_append));
	} else {
		for (const char *const *arch = arch_names(); *arch; arch++) {
			g_autofree char *image = image_kernel_path(*arch);
			struct lab *lab;

			if (boot_arch ? strcmp(*arch, boot_arch) != 0 :
					!g_file_test(image, G_FILE_TEST_EXISTS))
				continue;
			lab = arch_lab(*arch, boot_machine, error);
			if (!lab) {
				g_prefix_error(error, "bench boot: ");
				return FALSE;
			}
			g_ptr_array_add(labs, lab);
			g_ptr_array_add(machines, bootbench_machine_for_guest(
				lab, g_ptr_array_index(lab->guests, 0), boot_append));
		}
		if (!machines->len)
			return ivlab_fail(error, "bench boot: no image is built (ivlab image build)");
	}
	for (guint i = 0; i < machines->len; i++) {
		struct bootbench_machine *machine = g_ptr_array_index(machines, i);

		if (boot_kernel)
			g_free(machine->kernel), machine->kernel = g_strdup(boot_kernel);
		if (boot_initrd)
			g_free(machine->initrd), machine->initrd = g_strdup(boot_initrd);
		if (!g_file_test(machine->kernel, G_FILE_TEST_EXISTS) ||
		    !g_file_test(machine->initrd, G_FILE_TEST_EXISTS))
			return ivlab_fail(error, "bench boot: %s: no %s (ivlab image build --arch %s)",
					  machine->name,
					  g_file_test(machine->kernel, G_FILE_TEST_EXISTS) ?
						  machine->initrd : machine->kernel,
					  machine->arch);
	}
	workdir = g_dir_make_tmp("ivlab-bench-boot-XXXXXX", error);
	if (!workdir)
		return FALSE;
	profiles = g_new0(struct bootprofile, (gsize)boot_runs * machines->len);
	ivlab_progress_init(&line);
	ivlab_interrupt_catch();
	if (boot_lab) {
		/* The lab's guests together, as `up` starts them. */
		for (int run = 0; ok && run < boot_runs; run++) {
			ivlab_progress_show(&line, TRUE, "bench boot: run %d/%d, %u guests together",
					    run + 1, boot_runs, machines->len);
			ok = bootbench_boot(machines, workdir, boot_timeout * 1000,
					    &profiles[run * machines->len], error) &&
			     ivlab_check_interrupt(error);
		}
	}
	/* Each image alone: nothing else competes for the host's CPUs. */
	for (guint i = 0; !boot_lab && ok && i < machines->len; i++) {
		g_autoptr(GPtrArray) alone = g_ptr_array_new();

		g_ptr_array_add(alone, g_ptr_array_index(machines, i));
		for (int run = 0; ok && run < boot_runs; run++) {
			ivlab_progress_show(&line, TRUE, "bench boot: %s, run %d/%d",
					    ((struct bootbench_machine *)alone->pdata[0])->name,
					    run + 1, boot_runs);
			ok = bootbench_boot(alone, workdir, boot_timeout * 1000,
					    &profiles[run * machines->len + i], error) &&
			     ivlab_check_interrupt(error);
		}
	}
	ivlab_progress_end(&line);
	if (ok) {
		if (boot_json)
			print_boot_json(machines, profiles, boot_runs);
		else
			print_boot_table(machines, profiles, boot_runs);
		ivlab_remove_tree(workdir, NULL);
	} else {
		g_prefix_error(error, "bench boot: ");
		ivlab_info("bench boot: consoles and QEMU's messages are in %s", workdir);
	}
	return ok;
}

static gboolean cmd_bench_exec(const struct ivlab_cmd *self, struct ivlab_ctx *ctx, int argc,
			       char **argv, GError **error)
{
	/* The subcommand word becomes argv[0] for option parsing. */
	if (argc >= 2 && strcmp(argv[1], "boot") == 0)
		return bench_boot(self, ctx, argc - 1, argv + 1, error);
	return bench_lab(self, ctx, argc, argv, error);
}

const struct ivlab_cmd cmd_bench_entry = {
	.name = "bench",
	.usage = "[--json] [--iterations N] [--size BYTES] [--filter GLOB] [--timeout SECONDS] | "
		 "boot [--arch ARCH] [--machine M] [--runs N] [--lab] [--kernel FILE] "
		 "[--initrd FILE] [--append ARGS] [--json]",
	.summary = "doorbell latency and shared-memory bandwidth on the running lab; boot times",
	.description =
		"Per guest and region: memcpy bandwidth into the region, out of it and RAM to\n"
		"RAM (the agent's bench_copy; it overwrites the start of the region). Per\n"
		"doorbell region: ping-pong round trips, median and 99th percentile, for every\n"
		"ordered pair of guests and from the host peer to each guest. Measurements are\n"
		"named copy/REGION/GUEST and pingpong/REGION/INITIATOR->RESPONDER.\n"
		"\n"
		"bench boot: boots each architecture's image alone under plain QEMU (no\n"
		"libvirt, no ivshmem devices), --runs times, and prints the median length of\n"
		"each boot stage: qemu (QEMU started, paused), firmware (firmware and\n"
		"decompression, to the kernel's first line), kernel (its init, to /init),\n"
		"init, modules (loaded), agent (its first hello answered), and the total.\n"
		"--lab boots the lab file's guests together instead. --arch picks an\n"
		"architecture (default: each with a built image), --machine its machine type,\n"
		"--kernel and --initrd other files to boot (e.g. the image's bzImage),\n"
		"--append adds to the kernel command line. `ivlab bench boot --help` lists\n"
		"its options.",
	.options = entries,
	.needs = CMD_OWN_OPTIONS,
	.exec = cmd_bench_exec,
};
