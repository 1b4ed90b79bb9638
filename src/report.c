/* report.c: collect check results and print them as a table, TAP or JUnit
 * XML (written with libxml2). */
#include "config.h"

#include <string.h>
#include <libxml/tree.h>

#include "ivlab.h"
#include "report.h"

G_DEFINE_AUTOPTR_CLEANUP_FUNC(xmlDoc, xmlFreeDoc)

struct report {
	char *suite;
	GPtrArray *cases; /* struct report_case * */
	gint64 started;
	FILE *stream;     /* where cases go as they come, or NULL */
	gboolean stream_tap;
};

void report_stream(struct report *report, FILE *out, gboolean tap)
{
	report->stream = out;
	report->stream_tap = tap;
	if (tap) {
		fputs("TAP version 13\n", out);
		fflush(out);
	}
}

/* A failed case's output, each line behind prefix. */
static void print_output(const struct report_case *item, const char *prefix, FILE *out)
{
	g_auto(GStrv) lines = NULL;

	if (item->status != REPORT_FAIL || !item->output)
		return;
	lines = g_strsplit(item->output, "\n", -1);
	for (char **line = lines; *line; line++)
		if (**line || line[1])
			fprintf(out, "%s%s\n", prefix, *line);
}

static void print_tap_line(const struct report_case *item, guint number, FILE *out)
{
	if (item->status == REPORT_SKIP)
		fprintf(out, "ok %u - %s # SKIP %s\n", number, item->name, item->reason);
	else
		fprintf(out, "%s %u - %s%s%s\n", item->status == REPORT_PASS ? "ok" : "not ok",
			number, item->name, *item->reason ? ": " : "", item->reason);
	print_output(item, "# ", out);
}

static void case_free(gpointer data)
{
	struct report_case *item = data;

	g_free(item->name);
	g_free(item->reason);
	g_free(item->output);
	g_free(item);
}

struct report *report_new(const char *suite)
{
	struct report *report = g_new0(struct report, 1);

	report->suite = g_strdup(suite);
	report->cases = g_ptr_array_new_with_free_func(case_free);
	report->started = g_get_monotonic_time();
	return report;
}

void report_free(struct report *report)
{
	if (!report)
		return;
	g_ptr_array_unref(report->cases);
	g_free(report->suite);
	g_free(report);
}

static void add_case(struct report *report, const char *name, enum report_status status,
		     double seconds, const char *output, char *reason)
{
	struct report_case *item = g_new0(struct report_case, 1);

	item->name = g_strdup(name);
	item->status = status;
	item->seconds = seconds;
	item->reason = reason;
	item->output = output && *output ? g_strdup(output) : NULL;
	/* One line each: TAP and the table need it. */
	g_strdelimit(item->reason, "\r\n", ' ');
	g_ptr_array_add(report->cases, item);
	if (report->stream && report->stream_tap)
		print_tap_line(item, report->cases->len, report->stream);
	else if (report->stream)
		report_print_case_line(item, report->stream);
	if (report->stream)
		fflush(report->stream);
}

void report_add(struct report *report, const char *name, enum report_status status,
		double seconds, const char *reason_fmt, ...)
{
	va_list ap;
	char *reason;

	va_start(ap, reason_fmt);
	reason = g_strdup_vprintf(reason_fmt, ap);
	va_end(ap);
	add_case(report, name, status, seconds, NULL, reason);
}

void report_add_output(struct report *report, const char *name, enum report_status status,
		       double seconds, const char *output, const char *reason_fmt, ...)
{
	va_list ap;
	char *reason;

	va_start(ap, reason_fmt);
	reason = g_strdup_vprintf(reason_fmt, ap);
	va_end(ap);
	add_case(report, name, status, seconds, output, reason);
}

guint report_count(const struct report *report, enum report_status status)
{
	guint count = 0;

	for (guint i = 0; i < report->cases->len; i++)
		if (((struct report_case *)g_ptr_array_index(report->cases, i))->status == status)
			count++;
	return count;
}

guint report_len(const struct report *report)
{
	return report->cases->len;
}

const struct report_case *report_get(const struct report *report, guint index)
{
	return g_ptr_array_index(report->cases, index);
}

static const char *status_word(enum report_status status)
{
	switch (status) {
	case REPORT_PASS: return "pass";
	case REPORT_FAIL: return "FAIL";
	default: return "skip";
	}
}

void report_print_case_line(const struct report_case *item, FILE *out)
{
	fprintf(out, "%-4s  %-44s %6.2fs  %s\n", status_word(item->status), item->name,
		item->seconds, item->reason);
	print_output(item, "      | ", out);
}

void report_print_table(const struct report *report, FILE *out)
{
	gsize width = 5;

	for (guint i = 0; i < report->cases->len; i++)
		width = MAX(width, strlen(((struct report_case *)g_ptr_array_index(report->cases, i))->name));
	fprintf(out, "%-6s%-*s  %7s  %s\n", "", (int)width, "CHECK", "TIME", "RESULT");
	for (guint i = 0; i < report->cases->len; i++) {
		const struct report_case *item = g_ptr_array_index(report->cases, i);

		fprintf(out, "%-4s  %-*s  %6.2fs  %s\n", status_word(item->status), (int)width,
			item->name, item->seconds, item->reason);
		print_output(item, "      | ", out);
	}
	report_print_summary(report, out);
}

void report_print_summary(const struct report *report, FILE *out)
{
	fprintf(out, "%u checks: %u passed, %u failed, %u skipped (%.1f s)\n",
		report->cases->len, report_count(report, REPORT_PASS),
		report_count(report, REPORT_FAIL), report_count(report, REPORT_SKIP),
		(g_get_monotonic_time() - report->started) / 1e6);
}

void report_print_tap_plan(const struct report *report, FILE *out)
{
	fprintf(out, "1..%u\n", report->cases->len);
}

gboolean report_write_junit(const struct report *report, const char *path, GError **error)
{
	g_autoptr(xmlDoc) doc = xmlNewDoc((const xmlChar *)"1.0");
	xmlNode *suites = xmlNewNode(NULL, (const xmlChar *)"testsuites");
	xmlNode *suite;
	double total = 0;
	char number[64];

	xmlDocSetRootElement(doc, suites);
	suite = xmlNewChild(suites, NULL, (const xmlChar *)"testsuite", NULL);
	xmlNewProp(suite, (const xmlChar *)"name", (const xmlChar *)report->suite);
	g_snprintf(number, sizeof(number), "%u", report->cases->len);
	xmlNewProp(suite, (const xmlChar *)"tests", (const xmlChar *)number);
	g_snprintf(number, sizeof(number), "%u", report_count(report, REPORT_FAIL));
	xmlNewProp(suite, (const xmlChar *)"failures", (const xmlChar *)number);
	xmlNewProp(suite, (const xmlChar *)"errors", (const xmlChar *)"0");
	g_snprintf(number, sizeof(number), "%u", report_count(report, REPORT_SKIP));
	xmlNewProp(suite, (const xmlChar *)"skipped", (const xmlChar *)number);
	for (guint i = 0; i < report->cases->len; i++) {
		const struct report_case *item = g_ptr_array_index(report->cases, i);
		xmlNode *testcase = xmlNewChild(suite, NULL, (const xmlChar *)"testcase", NULL);
		const char *slash = strchr(item->name, '/');
		g_autofree char *classname = slash ? g_strndup(item->name, slash - item->name)
						   : g_strdup(item->name);

		total += item->seconds;
		xmlNewProp(testcase, (const xmlChar *)"classname", (const xmlChar *)classname);
		xmlNewProp(testcase, (const xmlChar *)"name", (const xmlChar *)item->name);
		g_ascii_formatd(number, sizeof(number), "%.3f", item->seconds);
		xmlNewProp(testcase, (const xmlChar *)"time", (const xmlChar *)number);
		if (item->output)
			xmlNewTextChild(testcase, NULL, (const xmlChar *)"system-out",
					(const xmlChar *)item->output);
		if (item->status == REPORT_FAIL) {
			xmlNode *failure = xmlNewTextChild(testcase, NULL, (const xmlChar *)"failure",
							   (const xmlChar *)item->reason);

			xmlNewProp(failure, (const xmlChar *)"message", (const xmlChar *)item->reason);
		} else if (item->status == REPORT_SKIP) {
			xmlNode *skipped = xmlNewChild(testcase, NULL, (const xmlChar *)"skipped", NULL);

			xmlNewProp(skipped, (const xmlChar *)"message", (const xmlChar *)item->reason);
		} else if (*item->reason && !item->output) {
			xmlNewTextChild(testcase, NULL, (const xmlChar *)"system-out",
					(const xmlChar *)item->reason);
		}
	}
	g_ascii_formatd(number, sizeof(number), "%.3f", total);
	xmlNewProp(suite, (const xmlChar *)"time", (const xmlChar *)number);
	if (xmlSaveFormatFileEnc(path, doc, "UTF-8", 1) < 0) {
		g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED, "%s: cannot write the JUnit report",
			    path);
		return FALSE;
	}
	return TRUE;
}
