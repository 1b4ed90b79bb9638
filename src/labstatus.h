/* labstatus.h: what `ivlab status` reports, collected from libvirt, the
 * guests' agents, the servers and /dev/shm, apart from how it is printed. */
#ifndef IVLAB_LABSTATUS_H
#define IVLAB_LABSTATUS_H

#include <glib.h>
#include <json-glib/json-glib.h>

#include "labsession.h"

struct guest_status {
	const struct session_guest *sg; /* domain name, IVPositions */
	gboolean defined;
	int state;          /* VIR_DOMAIN_*, -1 unknown */
	char *accel;        /* "kvm", "tcg", NULL when not defined */
	gboolean agent_ready;
	char *agent_error;  /* why the agent did not answer, or NULL */
	gboolean agent_busy; /* another ivlab command holds its channel (exec, test...) */
};

struct server_status {
	const struct lab_region *region;
	char *socket_path;
	gboolean running;
	int pid;
	GArray *peer_ids; /* guint, NULL when not running */
};

struct region_status {
	const struct lab_region *region;
	char *shm_path;
	gboolean present;
};

struct lab_status {
	const struct lab_session *session;
	gboolean up; /* some guest is defined */
	GArray *guests;  /* struct guest_status, lab order */
	GArray *servers; /* struct server_status, doorbell regions */
	GArray *regions; /* struct region_status, lab order */
};
typedef struct lab_status LabStatus;

/* Look at every guest (its agent for LABSESSION_PROBE_TIMEOUT_MS at most,
 * without taking the channel from another client), server and region. */
struct lab_status *labstatus_collect(struct lab_session *session);
void labstatus_free(struct lab_status *status);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(LabStatus, labstatus_free)

/* The state's name for people and JSON: "running", "shut off", "undefined". */
const char *labstatus_state_name(const struct guest_status *guest);
/* The JSON document `status --json` prints (see ivlab(1)). */
JsonNode *labstatus_to_json(const struct lab_status *status);

#endif
