/* labrestart.h: `restart`: rebuild what a running lab's guests boot with
 * and boot again only the guests it affects; servers and other guests stay. */
#ifndef IVLAB_LABRESTART_H
#define IVLAB_LABRESTART_H

#include <glib.h>

#include "labsession.h"

struct labrestart_plan {
	GPtrArray *guests;  /* const struct lab_guest * to restart, lab order */
	GPtrArray *reasons; /* char *, one per guest: what changed, "not running", ... */
};

/* Which guests to restart (session: running lab, its run state): those
 * named (all guests of the lab, checked by the caller), or with no name
 * those whose inputs changed since they booted or that do not run. Refuses
 * a lab file whose domains changed (those need down and up). */
gboolean labrestart_plan(struct lab_session *session, int n_names, char **names,
			 struct labrestart_plan *plan, GError **error);
void labrestart_plan_clear(struct labrestart_plan *plan);
/* Rebuild each planned guest's modules (cached by content) and initramfs,
 * then destroy and start those guests and wait for their agents as `up`
 * does. A build failure stops everything before any guest goes down; a
 * guest that does not come back is named with its console tail, the
 * others keep running. Records what each restarted guest booted with. */
gboolean labrestart_apply(struct lab_session *session, struct labrestart_plan *plan,
			  int timeout_seconds, GError **error);

#endif
