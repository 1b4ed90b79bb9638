/* report.h: results of the validation suite: a table for people, TAP and
 * JUnit XML for CI. */
#ifndef IVLAB_REPORT_H
#define IVLAB_REPORT_H

#include <stdio.h>
#include <glib.h>

enum report_status {
	REPORT_PASS,
	REPORT_FAIL,
	REPORT_SKIP,
};

struct report_case {
	char *name;   /* e.g. "pattern/bell/x86a->arm" */
	enum report_status status;
	char *reason; /* why it failed or was skipped; what it saw when it passed */
	char *output; /* what it printed (lab tests' steps), or NULL */
	double seconds;
};

struct report;
typedef struct report Report;

struct report *report_new(const char *suite);
void report_free(struct report *report);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(Report, report_free)

void report_add(struct report *report, const char *name, enum report_status status,
		double seconds, const char *reason_fmt, ...) G_GNUC_PRINTF(5, 6);
/* The same with what the case printed: JUnit's system-out, and after the
 * line in the table and TAP when the case failed. */
void report_add_output(struct report *report, const char *name, enum report_status status,
		       double seconds, const char *output, const char *reason_fmt, ...)
	G_GNUC_PRINTF(6, 7);
guint report_count(const struct report *report, enum report_status status);
guint report_len(const struct report *report);
const struct report_case *report_get(const struct report *report, guint index);

/* Print every case as it is added: as a table line, or in TAP: the version
 * line now, a TAP line per case, and report_print_tap_plan() ends it. */
void report_stream(struct report *report, FILE *out, gboolean tap);
void report_print_case_line(const struct report_case *item, FILE *out);
void report_print_summary(const struct report *report, FILE *out);
void report_print_tap_plan(const struct report *report, FILE *out);
void report_print_table(const struct report *report, FILE *out);
gboolean report_write_junit(const struct report *report, const char *path, GError **error);

#endif
