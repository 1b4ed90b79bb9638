/* labtest.h: the cross-VM validation suite `ivlab test` runs on a lab that
 * is up, through the guests' agents and the host as an ivshmem peer. */
#ifndef IVLAB_LABTEST_H
#define IVLAB_LABTEST_H

#include <glib.h>

#include "labsession.h"
#include "report.h"

struct labtest_options {
	const char *filter;   /* glob on check names, NULL: all */
	int timeout_ms;       /* per agent request */
	gboolean restart;     /* run the guest restart check */
	gboolean stream;      /* print each result as it comes (terminal) */
};

/* Runs the checks into report; FALSE only when the suite could not run at
 * all (the lab is not up): failed checks are in the report. */
gboolean labtest_run(struct lab_session *session, const struct labtest_options *opts,
		     struct report *report, GError **error);

#endif
