/* cmd-bench.c: `ivlab bench`: shared-memory copy bandwidth and doorbell
 * ping-pong latency on the running lab, as a table or JSON. */
#include "config.h"

#include <math.h>
#include <stdio.h>

#include "ivlab.h"
#include "labbench.h"

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

static gboolean cmd_bench_exec(const struct ivlab_cmd *self, struct ivlab_ctx *ctx, int argc,
			       char **argv, GError **error)
{
	const struct lab *lab = ctx->session->lab;
	g_autoptr(GPtrArray) items = NULL;
	struct labbench_options opts = { 0 };
	guint failed = 0;

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

const struct ivlab_cmd cmd_bench_entry = {
	.name = "bench",
	.usage = "[--json] [--iterations N] [--size BYTES] [--filter GLOB] [--timeout SECONDS]",
	.summary = "doorbell latency and shared-memory bandwidth on the running lab",
	.description =
		"Per guest and region: memcpy bandwidth into the region, out of it and RAM to\n"
		"RAM (the agent's bench_copy; it overwrites the start of the region). Per\n"
		"doorbell region: ping-pong round trips, median and 99th percentile, for every\n"
		"ordered pair of guests and from the host peer to each guest. Measurements are\n"
		"named copy/REGION/GUEST and pingpong/REGION/INITIATOR->RESPONDER.",
	.options = entries,
	.needs = CMD_NEEDS_RUNNING_LAB,
	.check = cmd_bench_check,
	.exec = cmd_bench_exec,
};
