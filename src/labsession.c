/* labsession.c: the lab, its libvirt connection and run state opened once;
 * each guest's domain, agent and IVPositions found once for test, bench,
 * status and the commands. */
#include "config.h"

#include <ivlab-agent.h>

#include <string.h>
#include <unistd.h>

#include "ivlab.h"
#include "kbuild.h"
#include "labsession.h"

static void session_guest_clear(struct session_guest *sg)
{
	agent_link_free(sg->agent);
	if (sg->lock_fd >= 0)
		close(sg->lock_fd); /* releases the lock */
	if (sg->hello)
		g_hash_table_unref(sg->hello);
	if (sg->dom)
		virDomainFree(sg->dom);
	g_free(sg->domain_name);
	g_free(sg->gone);
	g_free(sg->ids);
	g_free(sg->region_ok);
}

void labsession_free(struct lab_session *session)
{
	if (!session)
		return;
	for (guint i = 0; i < session->n_guests; i++)
		session_guest_clear(&session->guests[i]);
	g_free(session->guests);
	if (session->domains)
		g_ptr_array_unref(session->domains);
	labrun_free(session->run);
	if (session->lock_fd >= 0)
		close(session->lock_fd);
	if (session->conn)
		virConnectClose(session->conn);
	lab_free(session->lab);
	g_free(session->path);
	g_free(session);
}

/* A guest's agent channel has one client at a time, and libvirt hands it
 * to whoever forces it: two ivlab commands on one guest would take it from
 * each other mid-request. A lock held while the channel is open orders them:
 * a command that needs the agent (force) waits; one that only looks
 * (status) is told who holds it. */
static gboolean lock_agent(struct lab_session *session, struct session_guest *sg, gboolean wait,
			   GError **error)
{
	g_autofree char *dir = ivlab_lab_dir(session->lab->name);
	g_autofree char *name = g_strdup_printf("%s.agent.lock", sg->guest->name);
	g_autofree char *path = g_build_filename(dir, name, NULL);
	g_autofree char *what = g_strdup_printf("guest %s: its agent", sg->guest->name);

	if (sg->lock_fd >= 0)
		return TRUE;
	if (!ivlab_make_dir(dir, error))
		return FALSE;
	sg->lock_fd = ivlab_lock(path, wait, what, error);
	return sg->lock_fd >= 0;
}

/* The default opener: the domain's agent channel through libvirt. */
static struct agent_link *open_channel(struct lab_session *session, struct session_guest *sg,
				       gboolean force, gpointer data, GError **error)
{
	if (!sg->dom) {
		g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED,
			    "guest %s is not defined (is the lab up?)", sg->guest->name);
		return NULL;
	}
	if (!virt_is_running(sg->dom)) {
		g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED, "guest %s is not running (%s)",
			    sg->guest->name, virt_state_name(virt_state(sg->dom)));
		return NULL;
	}
	if (!lock_agent(session, sg, force, error))
		return NULL;
	return agent_link_open(sg->dom, sg->guest->name, force, error);
}

struct lab_session *labsession_new(struct lab *lab)
{
	struct lab_session *session = g_new0(struct lab_session, 1);

	session->lab = lab;
	session->path = g_strdup(lab->path);
	session->opener = open_channel;
	session->lock_fd = -1;
	session->n_guests = lab->guests->len;
	session->guests = g_new0(struct session_guest, session->n_guests);
	for (guint i = 0; i < session->n_guests; i++) {
		struct session_guest *sg = &session->guests[i];

		sg->guest = g_ptr_array_index(lab->guests, i);
		sg->domain_name = lab_guest_domain_name(lab, sg->guest);
		sg->ids = g_new(gint64, sg->guest->regions->len);
		sg->region_ok = g_new0(gboolean, sg->guest->regions->len);
		sg->lock_fd = -1;
		for (guint r = 0; r < sg->guest->regions->len; r++)
			sg->ids[r] = -1;
	}
	return session;
}

/* Each guest's domain among the lab's. */
static gboolean find_domains(struct lab_session *session, GError **error)
{
	session->domains = virt_lab_domains(session->conn, session->lab->name, error);
	if (!session->domains)
		return FALSE;
	for (guint i = 0; i < session->n_guests; i++) {
		struct session_guest *sg = &session->guests[i];

		for (guint d = 0; d < session->domains->len && !sg->dom; d++) {
			virDomainPtr dom = g_ptr_array_index(session->domains, d);

			if (strcmp(virDomainGetName(dom), sg->domain_name) == 0 &&
			    virDomainRef(dom) == 0)
				sg->dom = dom;
		}
	}
	return TRUE;
}

struct lab_session *labsession_open(const char *lab_option, GError **error)
{
	g_autofree char *path = lab_resolve_path(lab_option);
	struct lab *lab = lab_load(path, error);
	struct lab_session *session;

	if (!lab)
		return NULL;
	session = labsession_new(lab);
	g_free(session->path);
	session->path = g_steal_pointer(&path);
	return session;
}

gboolean labsession_attach(struct lab_session *session, const char *uri, guint needs,
			   GError **error)
{
	if (needs & (LABSESSION_CONNECTION | LABSESSION_RUNNING)) {
		session->conn = virt_connect(uri, error);
		if (!session->conn)
			return FALSE;
	}
	/* Taken before the lab's domains and state are read, and only once
	 * libvirt answered: a refused command leaves no lock file behind. */
	if ((needs & LABSESSION_LOCK) &&
	    (session->lock_fd = labrun_lock(session->lab->name, error)) < 0)
		return FALSE;
	if (session->conn && !find_domains(session, error))
		return FALSE;
	if ((needs & LABSESSION_RUN) && !(session->run = labrun_load(session->lab->name, error)))
		return FALSE;
	if ((needs & LABSESSION_RUNNING) && !session->domains->len)
		return ivlab_fail(error, "lab '%s' is not up (no domain of it is defined); run 'ivlab up' first",
				  session->lab->name);
	return TRUE;
}

gboolean labsession_check_guests(struct lab_session *session, int n_names, char **names,
				 GError **error)
{
	for (int i = 0; i < n_names; i++)
		if (!labsession_guest(session, names[i]))
			return ivlab_fail(error, "%s: the lab '%s' has no guest '%s'", session->path,
					  session->lab->name, names[i]);
	return TRUE;
}

void labsession_set_opener(struct lab_session *session, labsession_opener opener, gpointer data)
{
	session->opener = opener;
	session->opener_data = data;
}

struct session_guest *labsession_guest(struct lab_session *session, const char *name)
{
	for (guint i = 0; i < session->n_guests; i++)
		if (strcmp(session->guests[i].guest->name, name) == 0)
			return &session->guests[i];
	return NULL;
}

void labsession_mark_gone(struct session_guest *sg, const GError *error)
{
	if (sg->gone)
		return;
	/* A channel that closed usually means QEMU exited: give libvirt a
	 * moment to notice before asking it. */
	for (int i = 0; sg->dom && i < 60 && virt_is_running(sg->dom) &&
	     virt_state(sg->dom) != VIR_DOMAIN_PAUSED; i++)
		g_usleep(50000);
	if (sg->dom && !virt_is_running(sg->dom))
		sg->gone = g_strdup_printf("guest %s is not running any more (%s)", sg->guest->name,
					   virt_state_name(virt_state(sg->dom)));
	else
		sg->gone = g_strdup_printf("guest %s stopped answering: %s", sg->guest->name,
					   error ? error->message : "?");
}

gboolean labsession_reach(struct lab_session *session, struct session_guest *sg, gboolean force,
			  int timeout_ms, GError **error)
{
	GError *err = NULL;

	if (sg->gone)
		return ivlab_fail(error, "%s", sg->gone);
	if (sg->agent && sg->hello)
		return TRUE;
	agent_link_free(g_steal_pointer(&sg->agent));
	sg->agent = session->opener(session, sg, force, session->opener_data, &err);
	if (!sg->agent) {
		/* Not defined or not running: the opener's message says so. */
		sg->gone = g_strdup(err->message);
		g_propagate_error(error, err);
		return FALSE;
	}
	sg->hello = agent_hello(sg->agent, timeout_ms, &err);
	if (!sg->hello) {
		labsession_mark_gone(sg, err);
		g_clear_error(&err);
		return ivlab_fail(error, "%s", sg->gone);
	}
	return TRUE;
}

gboolean labsession_reach_all(struct lab_session *session, gboolean force, int timeout_ms,
			      GError **error)
{
	for (guint i = 0; i < session->n_guests; i++)
		if (!labsession_reach(session, &session->guests[i], force, timeout_ms, error))
			return FALSE;
	return TRUE;
}

AgentReply *labsession_ask(struct session_guest *sg, int timeout_ms, GError **error,
			   const char *fmt, ...)
{
	va_list ap;
	g_autofree char *line = NULL;
	AgentReply *reply;

	if (sg->gone) {
		ivlab_fail(error, "%s", sg->gone);
		return NULL;
	}
	va_start(ap, fmt);
	line = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	reply = agent_request(sg->agent, timeout_ms, error, "%s", line);
	if (!reply && agent_link_broken(sg->agent)) {
		labsession_mark_gone(sg, error ? *error : NULL);
		if (error && *error && !strstr(sg->gone, (*error)->message))
			g_prefix_error(error, "%s: ", sg->gone);
	}
	return reply;
}

static void add_problem(GString *problems, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

static void add_problem(GString *problems, const char *fmt, ...)
{
	va_list ap;

	if (problems->len)
		g_string_append(problems, "; ");
	va_start(ap, fmt);
	g_string_append_vprintf(problems, fmt, ap);
	va_end(ap);
}

/* Check one `region index=N` answer against the lab: seen or a problem. */
static void check_region_reply(struct lab_session *session, struct session_guest *sg,
			       AgentReply *reply, GString *seen, GString *problems)
{
	const char *region_name = agent_reply_get(reply, "name") ?: "";
	const char *mode = agent_reply_get(reply, "mode") ?: "";
	const struct lab_region *region = lab_find_region(session->lab, region_name);
	int index = region ? lab_guest_region_index(sg->guest, region) : -1;
	guint64 size = 0, vectors = 0;
	gint64 id = -1;
	g_autofree char *pretty = NULL;

	agent_reply_u64(reply, "size", &size, NULL);
	agent_reply_u64(reply, "vectors", &vectors, NULL);
	agent_reply_i64(reply, "ivposition", &id, NULL);
	if (index < 0) {
		add_problem(problems, "unexpected region '%s'", region_name);
	} else if (size != region->size) {
		add_problem(problems, "%s: size %" G_GUINT64_FORMAT ", expected %" G_GUINT64_FORMAT,
			    region_name, size, region->size);
	} else if (strcmp(mode, lab_region_mode_name(region->mode)) != 0) {
		add_problem(problems, "%s: mode %s, expected %s", region_name, mode,
			    lab_region_mode_name(region->mode));
	} else if (region->mode == LAB_REGION_DOORBELL && (vectors != region->vectors || id < 0)) {
		add_problem(problems, "%s: %" G_GUINT64_FORMAT " vectors and id %" G_GINT64_FORMAT
			    ", expected %u vectors and an id", region_name, vectors, id, region->vectors);
	} else {
		sg->region_ok[index] = TRUE;
		sg->ids[index] = id;
		pretty = ivlab_format_size(size);
		g_string_append_printf(seen, "%s%s %s %s", seen->len ? ", " : "", region_name, pretty, mode);
		if (region->mode == LAB_REGION_DOORBELL)
			g_string_append_printf(seen, " id %" G_GINT64_FORMAT, id);
	}
}

gboolean labsession_learn_regions(struct lab_session *session, struct session_guest *sg,
				  int timeout_ms, GString *seen, GString *problems)
{
	g_autoptr(GString) seen_here = g_string_new(NULL);
	guint n = sg->guest->regions->len;

	for (guint i = 0; i < n; i++) {
		sg->region_ok[i] = FALSE;
		sg->ids[i] = -1;
	}
	for (guint i = 0; i < n && !sg->gone; i++) {
		const struct lab_region *region = g_ptr_array_index(sg->guest->regions, i);
		const struct lab_module *binder = lab_guest_region_binder(sg->guest, region);
		g_autoptr(GError) err = NULL;
		AgentReply *reply;

		if (binder) {
			/* The user's driver owns it: ivlab's checks leave it alone. */
			g_autofree char *module = kbuild_module_name(binder->src);

			g_string_append_printf(seen_here, "%s%s bound to %s (not checked)",
					       seen_here->len ? ", " : "", region->name, module);
			continue;
		}
		reply = labsession_ask(sg, timeout_ms, &err, IVLAB_AGENT_REGION " index=%u", i);

		if (!reply) {
			add_problem(problems, "region index=%u: %s", i, err->message);
			continue;
		}
		check_region_reply(session, sg, reply, seen_here, problems);
		g_hash_table_unref(reply);
	}
	for (guint i = 0; i < n && !problems->len; i++)
		if (!sg->region_ok[i] &&
		    !lab_guest_region_binder(sg->guest, g_ptr_array_index(sg->guest->regions, i)))
			add_problem(problems, "region %s not seen",
				    ((struct lab_region *)g_ptr_array_index(sg->guest->regions, i))->name);
	if (seen)
		g_string_append(seen, seen_here->str);
	return problems->len == 0;
}
