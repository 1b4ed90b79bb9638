/* cmd-bench.c: `ivlab bench`: shared-memory copy bandwidth and doorbell
 * ping-pong latency on the running lab, as a table or JSON. */
#include "config.h"

#include <stdio.h>

#include "ivlab.h"
#include "lab.h"
#include "labbench.h"
#include "virt.h"

extern const struct ivlab_cmd cmd_bench_entry;

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

static void json_number_key(GString *json, const char *key, double value, const char *format)
{
	char number[G_ASCII_DTOSTR_BUF_SIZE];

	g_string_append_printf(json, ",\"%s\":%s", key, g_ascii_formatd(number, sizeof(number), format, value));
}

static void json_item(GString *json, const struct labbench_item *item)
{
	g_string_append(json, "{\"name\":");
	ivlab_json_string(json, item->name);
	g_string_append(json, ",\"region\":");
	ivlab_json_string(json, item->region);
	if (item->kind == LABBENCH_COPY) {
		g_string_append(json, ",\"guest\":");
		ivlab_json_string(json, item->guest);
		g_string_append_printf(json, ",\"size\":%" G_GUINT64_FORMAT, item->size);
	} else {
		g_string_append(json, ",\"initiator\":");
		ivlab_json_string(json, item->initiator);
		g_string_append(json, ",\"responder\":");
		ivlab_json_string(json, item->responder);
	}
	g_string_append_printf(json, ",\"iterations\":%u", item->iterations);
	if (item->error) {
		g_string_append(json, ",\"error\":");
		ivlab_json_string(json, item->error);
	} else if (item->kind == LABBENCH_COPY) {
		json_number_key(json, "to_region_mbps", item->to_region_mbps, "%.1f");
		json_number_key(json, "from_region_mbps", item->from_region_mbps, "%.1f");
		json_number_key(json, "ram_mbps", item->ram_mbps, "%.1f");
	} else {
		g_string_append_printf(json, ",\"median_ns\":%" G_GUINT64_FORMAT ",\"p99_ns\":%" G_GUINT64_FORMAT,
				       item->median_ns, item->p99_ns);
	}
	g_string_append_c(json, '}');
}

static void print_json(const struct lab *lab, GPtrArray *items)
{
	g_autoptr(GString) json = g_string_new("{\"lab\":");
	static const char *const lists[] = { "copy", "pingpong" };

	ivlab_json_string(json, lab->name);
	g_string_append_printf(json, ",\"iterations\":%d", iterations);
	for (guint kind = 0; kind < G_N_ELEMENTS(lists); kind++) {
		gboolean first = TRUE;

		g_string_append_printf(json, ",\"%s\":[", lists[kind]);
		for (guint i = 0; i < items->len; i++) {
			const struct labbench_item *item = g_ptr_array_index(items, i);

			if ((guint)item->kind != kind)
				continue;
			if (!first)
				g_string_append_c(json, ',');
			first = FALSE;
			json_item(json, item);
		}
		g_string_append_c(json, ']');
	}
	g_string_append(json, "}\n");
	fputs(json->str, stdout);
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

static gboolean cmd_bench_exec(struct ivlab_ctx *ctx, int argc, char **argv, GError **error)
{
	g_autofree char *path = NULL;
	g_autoptr(Lab) lab = NULL;
	g_autoptr(virConnect) conn = NULL;
	g_autoptr(GPtrArray) items = NULL;
	struct labbench_options opts = { 0 };
	guint failed = 0;

	if (!cmd_parse(&cmd_bench_entry, entries, &argc, &argv, error))
		return FALSE;
	if (argc > 1)
		return cmd_usage_error(error, &cmd_bench_entry, "unexpected argument '%s'", argv[1]);
	if (iterations < 1 || iterations > 1000000)
		return cmd_usage_error(error, &cmd_bench_entry, "--iterations must be 1..1000000");
	if (timeout_seconds <= 0)
		return cmd_usage_error(error, &cmd_bench_entry, "--timeout must be positive");
	if (size_text && (!ivlab_parse_size(size_text, &opts.size) || opts.size == 0))
		return cmd_usage_error(error, &cmd_bench_entry, "--size: '%s' is not a size in bytes",
				       size_text);
	path = lab_resolve_path(ctx->lab_path);
	lab = lab_load(path, error);
	if (!lab)
		return FALSE;
	conn = virt_connect(ctx->uri, error);
	if (!conn)
		return FALSE;
	opts.filter = filter;
	opts.iterations = (guint)iterations;
	opts.timeout_ms = timeout_seconds * 1000;
	items = labbench_run(conn, lab, &opts, error);
	if (!items)
		return FALSE;
	if (!items->len)
		return ivlab_fail(error, "no measurement matches the filter '%s'", filter ? filter : "*");
	if (as_json)
		print_json(lab, items);
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
	.exec = cmd_bench_exec,
};
