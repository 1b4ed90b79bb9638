/* agent-process.h: for unit tests, the real guest agent run on the host
 * (--stdio, file-backed regions) as a lab session's agent opener. */
#ifndef IVLAB_TEST_AGENT_PROCESS_H
#define IVLAB_TEST_AGENT_PROCESS_H

#include "labsession.h"

struct agent_process {
	const char *cmdline_path; /* the kernel command line the agent reads */
	const char *region_spec;  /* --region NAME=FILE, or NULL */
	gboolean refuse;          /* fail to open, as for a guest that is down */
	GPid pid;                 /* the last agent started */
	guint opened;             /* how many were started */
};

/* A labsession_opener: data is a struct agent_process. */
struct agent_link *agent_process_open(struct lab_session *session, struct session_guest *sg,
				      gboolean force, gpointer data, GError **error);

/* The lab file at lab_path as a session whose guests' agents are process
 * (asserts the file loads). */
struct lab_session *agent_process_session(const char *lab_path, struct agent_process *process);

#endif
