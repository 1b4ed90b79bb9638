/* labsteps.h: the lab's own tests (<test> in the lab file), run in the
 * guests through their agents and reported beside the built-in checks. */
#ifndef IVLAB_LABSTEPS_H
#define IVLAB_LABSTEPS_H

#include "labsession.h"
#include "report.h"

/* Run test's steps (background ones first, the others in order), kill what
 * still runs at its deadline, and add one result "lab/NAME" to report with
 * the steps' output. */
void labsteps_run(struct lab_session *session, const struct lab_test *test, struct report *report);

#endif
