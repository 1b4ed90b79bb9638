/* labsession.h: one lab as the commands work on it: the lab file, the
 * libvirt connection and the run state opened once, and each guest's
 * domain, agent and IVPositions found once, through one replaceable opener. */
#ifndef IVLAB_LABSESSION_H
#define IVLAB_LABSESSION_H

#include <glib.h>

#include "agentlink.h"
#include "lab.h"
#include "labrun.h"
#include "virt.h"

/* What a session opens (labsession_open), besides the lab file. */
enum labsession_needs {
	LABSESSION_CONNECTION = 1 << 0, /* the libvirt connection and the lab's domains */
	LABSESSION_RUN = 1 << 1,        /* the lab's recorded run state */
	LABSESSION_RUNNING = 1 << 2,    /* refuse a lab none of whose domains is defined */
	LABSESSION_LOCK = 1 << 3,       /* hold the lab's lock (labrun_lock()) */
};

/* How long a look that must not hold a command up (status) waits for an agent. */
#define LABSESSION_PROBE_TIMEOUT_MS 5000

/* One guest of the lab as the session sees it. */
struct session_guest {
	const struct lab_guest *guest;
	char *domain_name;
	virDomainPtr dom;         /* NULL: not defined (or an opener without libvirt) */
	struct agent_link *agent; /* NULL until labsession_reach() */
	AgentReply *hello;        /* the agent's answer to hello */
	char *gone;               /* why the guest cannot take part, or NULL */
	gint64 *ids;              /* IVPosition per attached region (guest->regions order), -1 unknown */
	gboolean *region_ok;      /* the agent sees that region as the lab defines it */
	int lock_fd;              /* the guest's agent lock while we hold its channel, or -1 */
};

struct lab_session;

/* Opens sg's agent link; force takes the channel over from another client.
 * The default goes through sg->dom's libvirt channel; tests plug in an agent
 * process over a socket pair. */
typedef struct agent_link *(*labsession_opener)(struct lab_session *session,
						struct session_guest *sg, gboolean force,
						gpointer data, GError **error);

struct lab_session {
	char *path;         /* the lab file, as resolved */
	struct lab *lab;
	virConnectPtr conn; /* NULL without LABSESSION_CONNECTION */
	struct labrun *run; /* NULL without LABSESSION_RUN */
	GPtrArray *domains; /* the lab's domains (virDomainPtr), NULL without a connection */
	struct session_guest *guests; /* lab->guests order */
	guint n_guests;
	labsession_opener opener;
	gpointer opener_data;
	int lock_fd;        /* the lab's lock with LABSESSION_LOCK, else -1 */
};
typedef struct lab_session LabSession;

/* Resolve the lab file (-f option or the defaults) and load it. */
struct lab_session *labsession_open(const char *lab_option, GError **error);
/* Then open what needs asks for (enum labsession_needs) through uri. */
gboolean labsession_attach(struct lab_session *session, const char *uri, guint needs,
			   GError **error);
/* Every name is a guest of the lab, else "FILE: the lab 'LAB' has no guest 'NAME'". */
gboolean labsession_check_guests(struct lab_session *session, int n_names, char **names,
				 GError **error);
/* A session over a lab already loaded (taken over), with no connection:
 * for tests, which then set an opener. */
struct lab_session *labsession_new(struct lab *lab);
void labsession_free(struct lab_session *session);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(LabSession, labsession_free)

void labsession_set_opener(struct lab_session *session, labsession_opener opener, gpointer data);
struct session_guest *labsession_guest(struct lab_session *session, const char *name);

/* Open sg's agent and say hello (sg->hello). A guest that is not defined,
 * not running or does not answer is marked gone and the error says why. */
gboolean labsession_reach(struct lab_session *session, struct session_guest *sg, gboolean force,
			  int timeout_ms, GError **error);
/* Every guest reached; stops at the first that cannot be. */
gboolean labsession_reach_all(struct lab_session *session, gboolean force, int timeout_ms,
			      GError **error);

/* Ask sg's agent for each attached region; sets sg->ids and sg->region_ok
 * for the regions the agent sees as the lab defines them. seen (may be
 * NULL) gets "NAME SIZE MODE [id N]" per good region, problems what is
 * wrong. FALSE when something is wrong (then problems says what). */
gboolean labsession_learn_regions(struct lab_session *session, struct session_guest *sg,
				  int timeout_ms, GString *seen, GString *problems);

/* One request whose failure to arrive (EOF, timeout) marks the guest gone. */
AgentReply *labsession_ask(struct session_guest *sg, int timeout_ms, GError **error,
			   const char *fmt, ...) G_GNUC_PRINTF(4, 5);
/* Mark sg gone: not running any more, or not answering (error's reason). */
void labsession_mark_gone(struct session_guest *sg, const GError *error);

#endif
