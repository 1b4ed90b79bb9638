/* labup.h: the steps of bringing a lab's guests up, shared by `up`, the
 * restart check of `test` and `restart`: images, define, start in parallel
 * with the console captured, and wait for each agent's hello. */
#ifndef IVLAB_LABUP_H
#define IVLAB_LABUP_H

#include <glib.h>

#include "agentlink.h"
#include "lab.h"
#include "labrun.h"
#include "labsession.h"
#include "virt.h"

/* The domain XML `up` defines for guest: domxml_build(), with the
 * accelerator host_pick_kvm() chooses, and under TCG room for a second
 * vCPU so that guests' atomic instructions are atomic across guests. */
char *labup_domain_xml(const struct lab *lab, const struct lab_guest *guest, GError **error);

/* Build or reuse $state/images/ARCH for every arch of the lab. */
gboolean labup_ensure_images(const struct lab *lab, GError **error);
/* No shm object of the lab's regions exists that the lab did not make. */
gboolean labup_check_shm_free(const struct lab *lab, struct labrun *run, GError **error);

/* Define the guests not yet defined (recording them in run), start every
 * guest not running, all at once, and wait until each agent says hello. A
 * guest that does not is named with the tail of its console. */
gboolean labup_define_and_start(virConnectPtr conn, const struct lab *lab, struct labrun *run,
				GHashTable *wanted_xml, int timeout_seconds, GError **error);

/* Start each of doms (guests' domains, in the same order) that is not
 * running, all at once, with the progress line and each failure's console
 * tail; wait until every agent says hello. The names of the guests that
 * failed go into failed_names (a set of strings freed with g_free, or NULL). */
gboolean labup_start_guests(const struct lab *lab, struct labrun *run, GPtrArray *guests,
			    GPtrArray *doms, int timeout_seconds, GHashTable *failed_names,
			    GError **error);

/* Start (when start) one domain, capture its console, wait for hello; the
 * agent link stays open for the caller. */
struct agent_link *labup_boot_guest(virDomainPtr dom, const char *name, gboolean start,
				    int timeout_ms, GError **error);

/* What `up` will do with the lab as it finds it. */
enum labup_plan_kind {
	LABUP_FRESH,      /* nothing of it exists */
	LABUP_FINISH,     /* partly up: create what is missing */
	LABUP_ALREADY_UP, /* nothing to do */
};

struct labup_plan {
	enum labup_plan_kind kind;
	char *summary;          /* what it means, for people (LABUP_FINISH, LABUP_ALREADY_UP) */
	char *digest;           /* the lab file's */
	GHashTable *wanted_xml; /* domain name -> the XML it gets */
	GPtrArray *restart;     /* virDomainPtr (the session's) of running guests whose
				 * region's server died: stopped, then started again with it */
	GPtrArray *changes;     /* LABUP_ALREADY_UP: "guest G: what changed; run ..." per guest */
};

/* What differs between the running lab and the lab file (domain XML, guests
 * added or gone), or NULL. */
char *labup_differences(const struct lab *lab, struct labrun *run, GPtrArray *domains,
			GHashTable *wanted_xml);

/* Record in run what guest boots with (labboot_inputs()). */
void labup_record_inputs(struct labrun *run, const struct lab_guest *guest, GPtrArray *inputs);
/* What changed in guest's inputs since it booted ("module DIR changed; ..."),
 * or NULL: nothing, or nothing recorded. Builds nothing. */
char *labup_guest_changes(struct labrun *run, const struct lab_guest *guest);

/* Compare the lab file with what runs (session with connection and run
 * state). Refuses a lab name taken by another lab file and a changed lab; a
 * server that died is started again, with the guests attached to its region
 * (their ivshmem device lost it for good). */
gboolean labup_plan(struct lab_session *session, struct labup_plan *plan, GError **error);
void labup_plan_clear(struct labup_plan *plan);
/* Carry the plan out: preflight, images, servers, define, start, wait for
 * the agents. A failure is undone unless keep_failed. */
gboolean labup_apply(struct lab_session *session, struct labup_plan *plan, int timeout_seconds,
		     gboolean keep_failed, GError **error);

#endif
