/* agentlink.h: the host side of the agent protocol (src/guest/PROTOCOL.md):
 * one request line, one response line, each with a deadline. */
#ifndef IVLAB_AGENTLINK_H
#define IVLAB_AGENTLINK_H

#include <glib.h>

#include <ivlab-agent.h>

#include "virt.h"

struct agent_link;
typedef struct agent_link AgentLink;

/* Speak over fd (a UNIX socket chardev, a socket pair); name labels errors.
 * The link closes fd when it is freed. */
struct agent_link *agent_link_new_fd(int fd, const char *name);
/* Open the domain's IVLAB_AGENT_PORT channel through libvirt; force takes
 * it over from another client (which then sees EOF). */
struct agent_link *agent_link_open(virDomainPtr dom, const char *name, gboolean force,
				   GError **error);
void agent_link_free(struct agent_link *link);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(AgentLink, agent_link_free)
const char *agent_link_name(const struct agent_link *link);
/* TRUE once the link hit EOF, a timeout or a failed send. */
gboolean agent_link_broken(const struct agent_link *link);

/* A parsed "ok key=value..." response: keys to values (values decoded
 * where the protocol percent-encodes them: log, output). */
typedef GHashTable AgentReply;

/* Send `hello` and wait up to timeout_ms for its answer, skipping the
 * agent's `ready` line and answering a late `ready` with another hello. */
AgentReply *agent_hello(struct agent_link *link, int timeout_ms, GError **error);

/* Send one request (printf-style line without "\n") and wait up to timeout_ms
 * for its response. `err CODE MSG` becomes an error "NAME: VERB: CODE: MSG". */
AgentReply *agent_request(struct agent_link *link, int timeout_ms, GError **error,
			  const char *fmt, ...) G_GNUC_PRINTF(4, 5);

/* The same in two halves, to keep requests in flight on several agents at
 * once: agent_send() queues the request, agent_receive() waits for the
 * oldest one's response. */
gboolean agent_send(struct agent_link *link, GError **error, const char *fmt, ...)
	G_GNUC_PRINTF(3, 4);
AgentReply *agent_receive(struct agent_link *link, int timeout_ms, GError **error);

/* Look-ups in a reply; FALSE with error naming the key when missing or junk. */
const char *agent_reply_get(AgentReply *reply, const char *key);
gboolean agent_reply_u64(AgentReply *reply, const char *key, guint64 *value, GError **error);
gboolean agent_reply_i64(AgentReply *reply, const char *key, gint64 *value, GError **error);

/* Parse "ok a=1 b=2" (TRUE, *reply set) or "err CODE MSG" (FALSE, *code and
 * *message set); anything else is FALSE with *code "proto". */
gboolean agent_parse_line(const char *line, AgentReply **reply, char **code, char **message);
char *agent_percent_decode(const char *text);
char *agent_percent_encode(const char *text);

/* The pattern of PROTOCOL.md (ivlab_pattern_fill/check of ivlab-agent.h). */
void agent_pattern_fill(guint8 *buffer, guint64 offset, gsize length, guint64 seed);
/* -1 when all match, else the first bad absolute offset. */
gint64 agent_pattern_check(const guint8 *buffer, guint64 offset, gsize length, guint64 seed);

#endif
