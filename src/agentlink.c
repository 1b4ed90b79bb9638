/* agentlink.c: request/response over an agent's channel, with deadlines,
 * key=value parsing, percent-coding and the shared test pattern. */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agentlink.h"
#include "ivlab.h"

struct agent_link {
	char *name;
	int fd;
	VirtLink *vlink; /* when opened through libvirt: it owns fd */
	GString *input;  /* bytes read past the last line */
	GQueue verbs;    /* verbs of requests sent and not yet answered */
	gboolean eof;
	gboolean broken; /* EOF, a timeout or a failed send: out of step for good */
};

gboolean agent_link_broken(const struct agent_link *link)
{
	return link->broken;
}

struct agent_link *agent_link_new_fd(int fd, const char *name)
{
	struct agent_link *link = g_new0(struct agent_link, 1);

	link->name = g_strdup(name);
	link->fd = fd;
	link->input = g_string_new(NULL);
	return link;
}

struct agent_link *agent_link_open(virDomainPtr dom, const char *name, gboolean force,
				   GError **error)
{
	VirtLink *vlink = virt_open_channel(dom, IVLAB_AGENT_PORT, force, error);
	struct agent_link *link;

	if (!vlink)
		return NULL;
	link = agent_link_new_fd(virt_link_fd(vlink), name);
	link->vlink = vlink;
	return link;
}

void agent_link_free(struct agent_link *link)
{
	if (!link)
		return;
	if (link->vlink)
		virt_link_close(link->vlink);
	else if (link->fd >= 0)
		close(link->fd);
	g_string_free(link->input, TRUE);
	g_queue_clear_full(&link->verbs, g_free);
	g_free(link->name);
	g_free(link);
}

const char *agent_link_name(const struct agent_link *link)
{
	return link->name;
}

static gboolean send_line(struct agent_link *link, const char *verb, const char *line,
			  GError **error)
{
	g_autofree char *framed = g_strconcat(line, "\n", NULL);
	const char *data = framed;
	gsize left = strlen(framed);

	while (left) {
		/* No SIGPIPE when the guest side went away: an error instead. */
		ssize_t done = send(link->fd, data, left, MSG_NOSIGNAL);

		if (done < 0 && errno == ENOTSOCK)
			done = write(link->fd, data, left);

		if (done < 0 && errno == EINTR)
			continue;
		if (done < 0) {
			link->broken = TRUE;
			g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED,
				    "%s: agent: %s: cannot send: %s", link->name, verb,
				    g_strerror(errno));
			return FALSE;
		}
		data += done;
		left -= done;
	}
	return TRUE;
}

/* The next line (without "\n") before deadline (monotonic µs), or NULL. */
static char *read_line(struct agent_link *link, const char *verb, gint64 deadline,
		       GError **error)
{
	for (;;) {
		char *newline = memchr(link->input->str, '\n', link->input->len);

		if (newline) {
			gsize length = newline - link->input->str;
			char *line = g_strndup(link->input->str, length);

			g_string_erase(link->input, 0, length + 1);
			if (length && line[length - 1] == '\r')
				line[length - 1] = '\0';
			return line;
		}
		if (link->input->len > IVLAB_AGENT_RESPONSE_MAX) {
			/* The rest of that line would be taken for the next answer. */
			link->broken = TRUE;
			g_string_truncate(link->input, 0);
			g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED,
				    "%s: agent: %s: response longer than %d bytes", link->name,
				    verb, IVLAB_AGENT_RESPONSE_MAX);
			return NULL;
		}
		if (link->eof) {
			link->broken = TRUE;
			g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED,
				    "%s: agent: %s: the channel closed (the guest stopped or its "
				    "agent died)", link->name, verb);
			return NULL;
		}
		gint64 left = deadline - g_get_monotonic_time();
		struct pollfd pfd = { .fd = link->fd, .events = POLLIN };

		if (left <= 0) {
			link->broken = TRUE;
			g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED,
				    "%s: agent: %s: no answer in time", link->name, verb);
			return NULL;
		}
		int ready = poll(&pfd, 1, (int)MIN(left / 1000 + 1, G_MAXINT));
		if (ready < 0 && errno != EINTR) {
			link->broken = TRUE;
			g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED, "%s: agent: %s: poll: %s",
				    link->name, verb, g_strerror(errno));
			return NULL;
		}
		if (ready <= 0)
			continue;
		char buffer[65536];
		ssize_t got = read(link->fd, buffer, sizeof(buffer));

		if (got < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (got <= 0)
			link->eof = TRUE;
		else
			g_string_append_len(link->input, buffer, got);
	}
}

static gboolean is_ready_line(const char *line)
{
	return g_str_has_prefix(line, IVLAB_AGENT_READY " ") || strcmp(line, IVLAB_AGENT_READY) == 0;
}

char *agent_percent_decode(const char *text)
{
	GString *out = g_string_sized_new(strlen(text));

	for (const char *c = text; *c; c++) {
		if (*c == '%' && g_ascii_isxdigit(c[1]) && g_ascii_isxdigit(c[2])) {
			g_string_append_c(out, (char)(g_ascii_xdigit_value(c[1]) * 16 +
						      g_ascii_xdigit_value(c[2])));
			c += 2;
		} else {
			g_string_append_c(out, *c);
		}
	}
	return g_string_free(out, FALSE);
}

char *agent_percent_encode(const char *text)
{
	GString *out = g_string_sized_new(strlen(text));

	for (const guchar *c = (const guchar *)text; *c; c++) {
		if (*c <= ' ' || *c == '%' || *c >= 0x7f)
			g_string_append_printf(out, "%%%02X", *c);
		else
			g_string_append_c(out, (char)*c);
	}
	return g_string_free(out, FALSE);
}

/* Values the protocol percent-encodes. */
static gboolean key_is_encoded(const char *key)
{
	return strcmp(key, "log") == 0 || strcmp(key, "output") == 0 || strcmp(key, "cmd") == 0 ||
	       strcmp(key, "profile") == 0;
}

gboolean agent_parse_line(const char *line, AgentReply **reply, char **code, char **message)
{
	*reply = NULL;
	*code = NULL;
	*message = NULL;
	if (g_str_has_prefix(line, "err ")) {
		const char *rest = line + 4;
		const char *space = strchr(rest, ' ');

		*code = space ? g_strndup(rest, space - rest) : g_strdup(rest);
		*message = g_strdup(space ? space + 1 : "");
		return FALSE;
	}
	if (strcmp(line, "ok") != 0 && !g_str_has_prefix(line, "ok ")) {
		*code = g_strdup("proto");
		*message = g_strdup_printf("unexpected line '%.200s'", line);
		return FALSE;
	}
	g_auto(GStrv) words = g_strsplit(line, " ", -1);
	GHashTable *table = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);

	for (char **word = words + 1; *word; word++) {
		char *equal = strchr(*word, '=');

		if (!**word)
			continue;
		if (!equal) {
			g_hash_table_unref(table);
			*code = g_strdup("proto");
			*message = g_strdup_printf("malformed pair '%.100s'", *word);
			return FALSE;
		}
		char *key = g_strndup(*word, equal - *word);
		char *value = key_is_encoded(key) ? agent_percent_decode(equal + 1) : g_strdup(equal + 1);

		g_hash_table_replace(table, key, value);
	}
	*reply = table;
	return TRUE;
}

static AgentReply *receive(struct agent_link *link, const char *verb, gint64 deadline,
			   GError **error)
{
	for (;;) {
		g_autofree char *line = read_line(link, verb, deadline, error);
		g_autofree char *code = NULL, *message = NULL;
		AgentReply *reply = NULL;

		if (!line)
			return NULL;
		if (is_ready_line(line))
			continue;
		ivlab_debug("%s: agent: %s -> %.200s", link->name, verb, line);
		if (agent_parse_line(line, &reply, &code, &message))
			return reply;
		g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED, "%s: agent: %s: %s: %s",
			    link->name, verb, code, message);
		return NULL;
	}
}

static gboolean send_request(struct agent_link *link, const char *line, GError **error)
{
	g_autofree char *verb = g_strndup(line, strcspn(line, " "));

	if (strlen(line) >= IVLAB_AGENT_LINE_MAX) {
		g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED,
			    "%s: agent: %s: request longer than %d bytes", link->name, verb,
			    IVLAB_AGENT_LINE_MAX);
		return FALSE;
	}
	ivlab_debug("%s: agent <- %.200s", link->name, line);
	if (!send_line(link, verb, line, error))
		return FALSE;
	g_queue_push_tail(&link->verbs, g_steal_pointer(&verb));
	return TRUE;
}

gboolean agent_send(struct agent_link *link, GError **error, const char *fmt, ...)
{
	va_list ap;
	g_autofree char *line = NULL;

	va_start(ap, fmt);
	line = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	return send_request(link, line, error);
}

AgentReply *agent_receive(struct agent_link *link, int timeout_ms, GError **error)
{
	g_autofree char *verb = g_queue_pop_head(&link->verbs);

	if (!verb) {
		g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED,
			    "%s: agent: no request is waiting for an answer (a bug)", link->name);
		return NULL;
	}
	return receive(link, verb, g_get_monotonic_time() + (gint64)timeout_ms * 1000, error);
}

AgentReply *agent_request(struct agent_link *link, int timeout_ms, GError **error,
			  const char *fmt, ...)
{
	va_list ap;
	g_autofree char *line = NULL;

	va_start(ap, fmt);
	line = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	if (!send_request(link, line, error))
		return NULL;
	return agent_receive(link, timeout_ms, error);
}

AgentReply *agent_hello(struct agent_link *link, int timeout_ms, GError **error)
{
	gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;
	guint outstanding = 0;

	if (!send_line(link, IVLAB_AGENT_HELLO, IVLAB_AGENT_HELLO, error))
		return NULL;
	outstanding++;
	for (;;) {
		g_autofree char *line = read_line(link, IVLAB_AGENT_HELLO, deadline, error);
		g_autofree char *code = NULL, *message = NULL;
		AgentReply *reply = NULL;

		if (!line)
			return NULL;
		if (is_ready_line(line)) {
			/* The agent (re)opened its port: a hello sent before may be lost. */
			if (!send_line(link, IVLAB_AGENT_HELLO, IVLAB_AGENT_HELLO, error))
				return NULL;
			outstanding++;
			continue;
		}
		ivlab_debug("%s: agent: hello -> %.200s", link->name, line);
		if (!agent_parse_line(line, &reply, &code, &message)) {
			g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED, "%s: agent: hello: %s: %s",
				    link->name, code, message);
			return NULL;
		}
		outstanding--;
		/* Answers to the hellos still in flight come next: read them off
		 * so the next request gets its own answer. */
		while (outstanding) {
			g_autofree char *extra = read_line(link, IVLAB_AGENT_HELLO,
							   g_get_monotonic_time() + 2000000, NULL);

			if (!extra)
				break;
			if (!is_ready_line(extra))
				outstanding--;
		}
		const char *proto = agent_reply_get(reply, "proto");
		if (!proto || strcmp(proto, G_STRINGIFY(IVLAB_AGENT_PROTO)) != 0) {
			g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED,
				    "%s: agent: speaks protocol %s, ivlab speaks %d (rebuild the image: "
				    "'ivlab image build')", link->name, proto ? proto : "(none)",
				    IVLAB_AGENT_PROTO);
			g_hash_table_unref(reply);
			return NULL;
		}
		return reply;
	}
}

const char *agent_reply_get(AgentReply *reply, const char *key)
{
	return reply ? g_hash_table_lookup(reply, key) : NULL;
}

gboolean agent_reply_u64(AgentReply *reply, const char *key, guint64 *value, GError **error)
{
	const char *text = agent_reply_get(reply, key);
	g_autoptr(GError) parse_error = NULL;

	if (!text || !g_ascii_string_to_unsigned(text, 10, 0, G_MAXUINT64, value, &parse_error)) {
		g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED,
			    "agent: the reply has no number '%s'%s%s", key, text ? ": " : "",
			    text ? text : "");
		return FALSE;
	}
	return TRUE;
}

gboolean agent_reply_i64(AgentReply *reply, const char *key, gint64 *value, GError **error)
{
	const char *text = agent_reply_get(reply, key);

	if (!text || !g_ascii_string_to_signed(text, 10, G_MININT64, G_MAXINT64, value, NULL)) {
		g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED,
			    "agent: the reply has no number '%s'%s%s", key, text ? ": " : "",
			    text ? text : "");
		return FALSE;
	}
	return TRUE;
}

void agent_pattern_fill(guint8 *buffer, guint64 offset, gsize length, guint64 seed)
{
	ivlab_pattern_fill(buffer, offset, length, seed);
}

gint64 agent_pattern_check(const guint8 *buffer, guint64 offset, gsize length, guint64 seed)
{
	guint64 bad = ivlab_pattern_check(buffer, offset, length, seed);

	return bad == length ? -1 : (gint64)(offset + bad);
}
