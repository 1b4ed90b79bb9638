/* cmd-test.c: `ivlab test`: run the validation suite on the running lab and
 * report as a table, TAP or JUnit XML. */
#include "config.h"

#include <stdio.h>
#include <unistd.h>

#include "ivlab.h"
#include "labtest.h"
#include "report.h"

#define TIMEOUT_MAX 86400 /* a day */

static gboolean tap;
static char *junit;
static char *filter;
static int timeout_seconds = 120;
static gboolean no_restart;

static const GOptionEntry entries[] = {
	{ "tap", 0, 0, G_OPTION_ARG_NONE, &tap, "print TAP on stdout", NULL },
	{ "junit", 0, 0, G_OPTION_ARG_FILENAME, &junit, "also write JUnit XML to FILE", "FILE" },
	{ "filter", 'F', 0, G_OPTION_ARG_STRING, &filter,
	  "run only the checks whose name matches GLOB (e.g. 'doorbell/*')", "GLOB" },
	{ "timeout", 't', 0, G_OPTION_ARG_INT, &timeout_seconds,
	  "seconds one agent request may take (default 120)", "SECONDS" },
	{ "no-restart", 0, 0, G_OPTION_ARG_NONE, &no_restart,
	  "skip the check that restarts a guest", NULL },
	{ NULL }
};

static gboolean cmd_test_check(const struct ivlab_cmd *self, int argc, char **argv, GError **error)
{
	/* Counted in milliseconds as an int further down. */
	if (timeout_seconds <= 0 || timeout_seconds > TIMEOUT_MAX)
		return cmd_usage_error(error, self, "--timeout: %d is not in 1..%d seconds",
				       timeout_seconds, TIMEOUT_MAX);
	return TRUE;
}

static gboolean cmd_test_exec(const struct ivlab_cmd *self, struct ivlab_ctx *ctx, int argc,
			      char **argv, GError **error)
{
	const struct lab *lab = ctx->session->lab;
	g_autoptr(Report) report = NULL;
	struct labtest_options opts = { 0 };
	guint failed;

	report = report_new(lab->name);
	opts.filter = filter;
	opts.timeout_ms = timeout_seconds * 1000;
	opts.restart = !no_restart;
	/* TAP and a terminal get each check as it ends; the plan or the
	 * summary follows. Anything else gets the aligned table at the end. */
	opts.stream = tap || isatty(STDOUT_FILENO);
	if (opts.stream)
		report_stream(report, stdout, tap);
	if (!labtest_run(ctx->session, &opts, report, error))
		return FALSE;
	if (tap)
		report_print_tap_plan(report, stdout);
	else if (opts.stream)
		report_print_summary(report, stdout);
	else
		report_print_table(report, stdout);
	if (junit && !report_write_junit(report, junit, error))
		return FALSE;
	failed = report_count(report, REPORT_FAIL);
	if (report_len(report) == 0) {
		g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED,
			    "no check matches the filter '%s'", filter ? filter : "*");
		return FALSE;
	}
	if (failed) {
		g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED,
			    "lab '%s': %u of %u checks failed", lab->name, failed, report_len(report));
		return FALSE;
	}
	return TRUE;
}

const struct ivlab_cmd cmd_test_entry = {
	.name = "test",
	.usage = "[--tap] [--junit FILE] [--filter GLOB] [--timeout SECONDS] [--no-restart]",
	.summary = "run the cross-VM validation suite on the running lab",
	.description =
		"Through the guests' agents and the host as an ivshmem peer: regions and sizes,\n"
		"IVPositions, seeded patterns in both directions, concurrent slices, atomic\n"
		"increments, unaligned copies, doorbells on every vector between every pair, and\n"
		"a guest restart. Exits 0 only when every check passed.",
	.options = entries,
	.needs = CMD_NEEDS_RUNNING_LAB,
	.check = cmd_test_check,
	.exec = cmd_test_exec,
};
