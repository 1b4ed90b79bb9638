/* server.c: the ivshmem server protocol engine (QEMU docs/specs/ivshmem-spec)
 * plus the control socket that reports what it serves (read by serverctl.c). One thread, epoll,
 * non-blocking sockets, a bounded output queue per client. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <linux/sockios.h>
#include <glib/gstdio.h>

#include "ivlab.h"
#include "server.h"

#define SERVER_CONTROL_CLIENTS_MAX 32
#define SERVER_SIZE_MIN 4096ULL
#define SERVER_SIZE_MAX (1ULL << 40)
/* A client's queue beyond this many messages is a client that does not read. */
#define SERVER_QUEUE_SLACK 4096

/* An fd several queued messages may carry: closed with the last reference,
 * so a peer leaving does not invalidate notifications still queued. */
struct fdref {
	int fd;
	int refs;
};

struct out_msg {
	gint64 value;
	struct fdref *fd; /* NULL: no fd */
};

enum watch_kind {
	WATCH_LISTEN,
	WATCH_CONTROL,
	WATCH_TIMER,
	WATCH_CLIENT,
	WATCH_CONTROL_CLIENT,
};

struct watch {
	enum watch_kind kind;
};

struct client {
	struct watch watch;
	struct server *server;
	int sock;
	int id;
	guint nvectors;
	struct fdref *vectors[SERVER_VECTORS_MAX];
	GQueue out;           /* struct out_msg * */
	gint64 stalled_since; /* monotonic us, 0 while the queue drains */
	gboolean want_out;    /* EPOLLOUT registered */
	gboolean doomed;
	char *doom_reason;
};

struct control_client {
	struct watch watch;
	struct server *server;
	int sock;
	GString *text;
	gsize sent;
	gint64 since;
};

struct server {
	char *socket_path;
	char *control_path;
	guint64 size;
	guint vectors;
	guint max_peers;
	int stall_ms;
	enum server_shm_kind shm_kind;
	char *shm_desc;   /* "memfd", "posix:/NAME", "file:PATH" */
	char *shm_name;   /* POSIX name to unlink at stop */
	char *shm_file;   /* file to unlink at stop */
	struct fdref *shm;
	int epoll_fd;
	int listen_fd;
	int control_fd;
	int timer_fd;
	int reserve_fd; /* closed to accept-and-refuse when out of fds */
	struct stat socket_stat, control_stat, shm_stat; /* to unlink only our own files */
	struct watch listen_watch, control_watch, timer_watch;
	GHashTable *clients;   /* id -> struct client * (ids assigned) */
	GPtrArray *doomed;     /* struct client * waiting to be dropped */
	GHashTable *controls;  /* struct control_client * set */
	guint next_id;
	server_log_func log;
	gpointer log_data;
};

static void slog(struct server *server, int priority, const char *fmt, ...) G_GNUC_PRINTF(3, 4);

static void slog(struct server *server, int priority, const char *fmt, ...)
{
	va_list ap;

	if (!server->log)
		return;
	va_start(ap, fmt);
	g_autofree char *text = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	server->log(priority, text, server->log_data);
}

/* ---- options ---- */

void server_options_init(struct server_options *opts)
{
	memset(opts, 0, sizeof(*opts));
	opts->size = SERVER_DEFAULT_SIZE;
	opts->vectors = SERVER_DEFAULT_VECTORS;
	opts->shm_kind = SERVER_SHM_MEMFD;
	opts->socket_mode = -1;
}

gboolean server_options_check(const struct server_options *opts, GError **error)
{
	const gsize path_max = sizeof(((struct sockaddr_un *)NULL)->sun_path) - 1 -
			       strlen(SERVER_CONTROL_SUFFIX);

	if (!opts->socket_path || !*opts->socket_path)
		return ivlab_fail(error, SERVER_SETTING_SOCKET ": no path given");
	if (strlen(opts->socket_path) > path_max)
		return ivlab_fail(error, SERVER_SETTING_SOCKET
				  ": path too long for a UNIX socket (%zu bytes at most): %s",
				  path_max, opts->socket_path);
	if (opts->size < SERVER_SIZE_MIN || opts->size > SERVER_SIZE_MAX ||
	    (opts->size & (opts->size - 1)) != 0) {
		g_autofree char *text = ivlab_format_size(opts->size);

		return ivlab_fail(error, SERVER_SETTING_SIZE
				  ": %s is not a power of two between 4KiB and 1TiB", text);
	}
	if (opts->vectors < 1 || opts->vectors > SERVER_VECTORS_MAX)
		return ivlab_fail(error, SERVER_SETTING_VECTORS ": %u is out of range (1..%d)",
				  opts->vectors, SERVER_VECTORS_MAX);
	if (opts->max_peers > SERVER_PEERS_LIMIT)
		return ivlab_fail(error, SERVER_SETTING_MAX_PEERS ": %u is out of range (1..%d)",
				  opts->max_peers, SERVER_PEERS_LIMIT);
	if (opts->socket_mode != -1 && (opts->socket_mode < 0 || opts->socket_mode > 0777))
		return ivlab_fail(error, SERVER_SETTING_SOCKET_MODE ": %o is not a permission mode",
				  opts->socket_mode);
	if (opts->stall_ms < 0)
		return ivlab_fail(error, SERVER_SETTING_STALL ": must not be negative");
	switch (opts->shm_kind) {
	case SERVER_SHM_MEMFD:
		break;
	case SERVER_SHM_POSIX: {
		const char *name = opts->shm_name ? opts->shm_name : "";

		if (*name == '/')
			name++;
		if (!*name || strchr(name, '/') || strlen(name) > 200)
			return ivlab_fail(error, SERVER_SETTING_SHM_NAME
					  ": '%s' is not a POSIX shm name (one component)",
					  opts->shm_name ? opts->shm_name : "");
		break;
	}
	case SERVER_SHM_FILE:
		if (!opts->shm_dir || !g_file_test(opts->shm_dir, G_FILE_TEST_IS_DIR))
			return ivlab_fail(error, SERVER_SETTING_SHM_DIR ": not a directory: %s",
					  opts->shm_dir ? opts->shm_dir : "");
		break;
	default:
		return ivlab_fail(error, "unknown shared memory kind %d", opts->shm_kind);
	}
	if (opts->socket_group && !getgrnam(opts->socket_group))
		return ivlab_fail(error, SERVER_SETTING_SOCKET_GROUP ": no such group: %s",
				  opts->socket_group);
	return TRUE;
}

/* ---- fd references and output queues ---- */

static struct fdref *fdref_new(int fd)
{
	struct fdref *ref = g_new0(struct fdref, 1);

	ref->fd = fd;
	ref->refs = 1;
	return ref;
}

static struct fdref *fdref_ref(struct fdref *ref)
{
	ref->refs++;
	return ref;
}

static void fdref_unref(struct fdref *ref)
{
	if (!ref || --ref->refs > 0)
		return;
	close(ref->fd);
	g_free(ref);
}

static void out_msg_free(gpointer data)
{
	struct out_msg *msg = data;

	fdref_unref(msg->fd);
	g_free(msg);
}

static void client_doom(struct client *client, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

static void client_doom(struct client *client, const char *fmt, ...)
{
	va_list ap;

	if (client->doomed)
		return;
	client->doomed = TRUE;
	va_start(ap, fmt);
	client->doom_reason = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	g_ptr_array_add(client->server->doomed, client);
}

static void client_update_events(struct client *client, gboolean want_out)
{
	struct epoll_event event = { .events = EPOLLIN | EPOLLRDHUP | (want_out ? EPOLLOUT : 0),
				     .data.ptr = &client->watch };

	if (client->want_out == want_out)
		return;
	client->want_out = want_out;
	if (epoll_ctl(client->server->epoll_fd, EPOLL_CTL_MOD, client->sock, &event) < 0)
		client_doom(client, "epoll: %s", g_strerror(errno));
}

static gboolean send_one(int sock, const struct out_msg *msg)
{
	guint8 bytes[8];
	struct iovec iov = { .iov_base = bytes, .iov_len = sizeof(bytes) };
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} control;
	struct msghdr hdr = { .msg_iov = &iov, .msg_iovlen = 1 };
	guint64 value = GUINT64_TO_LE((guint64)msg->value);
	ssize_t n;

	memcpy(bytes, &value, sizeof(bytes));
	if (msg->fd) {
		struct cmsghdr *cmsg;

		memset(&control, 0, sizeof(control));
		hdr.msg_control = control.buf;
		hdr.msg_controllen = sizeof(control.buf);
		cmsg = CMSG_FIRSTHDR(&hdr);
		cmsg->cmsg_level = SOL_SOCKET;
		cmsg->cmsg_type = SCM_RIGHTS;
		cmsg->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cmsg), &msg->fd->fd, sizeof(int));
	}
	do
		n = sendmsg(sock, &hdr, MSG_DONTWAIT | MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	/* A stream socket takes 8 bytes whole or not at all (SCM_RIGHTS messages
	 * are never split), so a short write cannot happen; treat it as an error. */
	if (n == (ssize_t)sizeof(bytes))
		return TRUE;
	if (n >= 0)
		errno = EIO;
	return FALSE;
}

static void server_arm_timer(struct server *server);

/* Send what the socket takes; the rest waits for EPOLLOUT. */
static void client_flush(struct client *client)
{
	gboolean progress = FALSE;

	if (client->doomed)
		return;
	while (!g_queue_is_empty(&client->out)) {
		struct out_msg *msg = g_queue_peek_head(&client->out);

		if (!send_one(client->sock, msg)) {
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				/* The clock runs from the last message the client took. */
				if (!client->stalled_since || progress) {
					client->stalled_since = g_get_monotonic_time();
					server_arm_timer(client->server);
				}
				client_update_events(client, TRUE);
				return;
			}
			client_doom(client, "send: %s", g_strerror(errno));
			return;
		}
		out_msg_free(g_queue_pop_head(&client->out));
		progress = TRUE;
	}
	client->stalled_since = 0;
	client_update_events(client, FALSE);
}

static void client_queue(struct client *client, gint64 value, struct fdref *fd)
{
	struct server *server = client->server;
	struct out_msg *msg;

	if (client->doomed)
		return;
	if (g_queue_get_length(&client->out) >=
	    (g_hash_table_size(server->clients) + 2) * (guint64)server->vectors + SERVER_QUEUE_SLACK) {
		client_doom(client, "not reading (output queue full)");
		return;
	}
	msg = g_new0(struct out_msg, 1);
	msg->value = value;
	msg->fd = fd ? fdref_ref(fd) : NULL;
	g_queue_push_tail(&client->out, msg);
}

static void client_free(struct client *client)
{
	g_queue_clear_full(&client->out, out_msg_free);
	for (guint i = 0; i < client->nvectors; i++)
		fdref_unref(client->vectors[i]);
	if (client->sock >= 0)
		close(client->sock);
	g_free(client->doom_reason);
	g_free(client);
}

static gint compare_clients(gconstpointer a, gconstpointer b)
{
	const struct client *ca = *(struct client *const *)a, *cb = *(struct client *const *)b;

	return ca->id - cb->id;
}

/* The clients in id order, so every peer hears of the others in one order. */
static GPtrArray *sorted_clients(struct server *server)
{
	GPtrArray *list = g_ptr_array_new();
	GHashTableIter iter;
	gpointer value;

	g_hash_table_iter_init(&iter, server->clients);
	while (g_hash_table_iter_next(&iter, NULL, &value))
		g_ptr_array_add(list, value);

	g_ptr_array_sort(list, compare_clients);
	return list;
}

/* Drop the doomed clients and tell the others; telling may doom more. */
static void server_reap(struct server *server)
{
	while (server->doomed->len > 0) {
		struct client *client = g_ptr_array_steal_index(server->doomed, 0);
		int id = client->id;

		epoll_ctl(server->epoll_fd, EPOLL_CTL_DEL, client->sock, NULL);
		g_hash_table_remove(server->clients, GINT_TO_POINTER(id));
		slog(server, strcmp(client->doom_reason, "disconnected") == 0 ? LOG_INFO : LOG_WARNING,
		     "peer %d %s%s (%u connected)", id,
		     strcmp(client->doom_reason, "disconnected") == 0 ? "" : "dropped: ",
		     client->doom_reason, g_hash_table_size(server->clients));
		client_free(client);

		g_autoptr(GPtrArray) others = sorted_clients(server);
		for (guint i = 0; i < others->len; i++) {
			struct client *other = others->pdata[i];

			client_queue(other, id, NULL);
			client_flush(other);
		}
	}
}

/* ---- accepting peers ---- */

static int server_pick_id(struct server *server)
{
	for (guint i = 0; i < SERVER_PEERS_LIMIT; i++) {
		guint id = (server->next_id + i) % SERVER_PEERS_LIMIT;

		if (!g_hash_table_contains(server->clients, GINT_TO_POINTER(id))) {
			server->next_id = (id + 1) % SERVER_PEERS_LIMIT;
			return (int)id;
		}
	}
	return -1;
}

/* Accept and close at once: keeps the listening socket from spinning when
 * the process is out of fds. */
static void server_refuse_one(struct server *server, int listen_fd)
{
	if (server->reserve_fd >= 0) {
		close(server->reserve_fd);
		server->reserve_fd = -1;
	}
	int sock = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
	if (sock >= 0)
		close(sock);
	server->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

static void server_accept_peer(struct server *server)
{
	int sock = accept4(server->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	struct client *client;
	struct epoll_event event = { .events = EPOLLIN | EPOLLRDHUP };
	int id;

	if (sock < 0) {
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
			slog(server, LOG_WARNING, "refused a client: %s", g_strerror(errno));
			server_refuse_one(server, server->listen_fd);
		} else if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) {
			slog(server, LOG_WARNING, "accept: %s", g_strerror(errno));
		}
		return;
	}
	if (g_hash_table_size(server->clients) >= server->max_peers) {
		slog(server, LOG_WARNING, "refused a client: %u peers connected (the maximum)",
		     server->max_peers);
		close(sock);
		return;
	}
	client = g_new0(struct client, 1);
	client->watch.kind = WATCH_CLIENT;
	client->server = server;
	client->sock = sock;
	client->id = -1;
	g_queue_init(&client->out);
	for (guint i = 0; i < server->vectors; i++) {
		int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);

		if (fd < 0) {
			slog(server, LOG_WARNING, "refused a client: eventfd: %s", g_strerror(errno));
			client_free(client);
			return;
		}
		client->vectors[client->nvectors++] = fdref_new(fd);
	}
	event.data.ptr = &client->watch;
	if (epoll_ctl(server->epoll_fd, EPOLL_CTL_ADD, sock, &event) < 0) {
		slog(server, LOG_WARNING, "refused a client: epoll: %s", g_strerror(errno));
		client_free(client);
		return;
	}
	id = server_pick_id(server);
	g_assert(id >= 0); /* max_peers <= SERVER_PEERS_LIMIT */
	client->id = id;

	/* Steps 1-5 of the spec to the newcomer, step 6 to everyone else. */
	client_queue(client, 0, NULL);
	client_queue(client, id, NULL);
	client_queue(client, -1, server->shm);
	g_autoptr(GPtrArray) others = sorted_clients(server);
	for (guint i = 0; i < others->len; i++) {
		struct client *other = others->pdata[i];

		for (guint v = 0; v < other->nvectors; v++)
			client_queue(client, other->id, other->vectors[v]);
	}
	for (guint v = 0; v < client->nvectors; v++)
		client_queue(client, id, client->vectors[v]);
	g_hash_table_insert(server->clients, GINT_TO_POINTER(id), client);
	slog(server, LOG_INFO, "peer %d connected (%u connected)", id, g_hash_table_size(server->clients));
	client_flush(client);
	for (guint i = 0; i < others->len; i++) {
		struct client *other = others->pdata[i];

		for (guint v = 0; v < client->nvectors; v++)
			client_queue(other, id, client->vectors[v]);
		client_flush(other);
	}
}

/* Peers never speak: any byte is garbage, EOF a disconnect. */
static void client_readable(struct client *client)
{
	char buf[64];
	ssize_t n;

	do
		n = recv(client->sock, buf, sizeof(buf), MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n > 0)
		client_doom(client, "sent data (the protocol is one-way)");
	else if (n == 0 || (n < 0 && errno == ECONNRESET))
		/* A reset is a client leaving with notifications unread. */
		client_doom(client, "disconnected");
	else if (errno != EAGAIN && errno != EWOULDBLOCK)
		client_doom(client, "recv: %s", g_strerror(errno));
}

/* ---- the control socket ---- */

char *server_control_path(const char *socket_path)
{
	return g_strconcat(socket_path, SERVER_CONTROL_SUFFIX, NULL);
}

static GString *server_report(struct server *server)
{
	GString *text = g_string_new(SERVER_CONTROL_HEADER "\n");
	g_autoptr(GArray) ids = server_peer_ids(server);

	g_string_append_printf(text, SERVER_CONTROL_PID " %ld\n", (long)getpid());
	g_string_append_printf(text, SERVER_CONTROL_SOCKET " %s\n", server->socket_path);
	g_string_append_printf(text, SERVER_CONTROL_SIZE " %" G_GUINT64_FORMAT "\n", server->size);
	g_string_append_printf(text, SERVER_CONTROL_VECTORS " %u\n", server->vectors);
	g_string_append_printf(text, SERVER_CONTROL_SHM " %s\n", server->shm_desc);
	g_string_append_printf(text, SERVER_CONTROL_MAX_PEERS " %u\n", server->max_peers);
	g_string_append_printf(text, SERVER_CONTROL_PEER_COUNT " %u\n", ids->len);
	g_string_append(text, SERVER_CONTROL_PEERS);
	for (guint i = 0; i < ids->len; i++)
		g_string_append_printf(text, " %u", g_array_index(ids, guint, i));
	g_string_append(text, "\n" SERVER_CONTROL_BACKLOG);
	for (guint i = 0; i < ids->len; i++) {
		guint id = g_array_index(ids, guint, i);
		struct client *client = g_hash_table_lookup(server->clients, GUINT_TO_POINTER(id));
		int unread = 0;

		/* SIOCOUTQ: bytes sent but not yet read by the peer. */
		if (!g_queue_is_empty(&client->out) ||
		    (ioctl(client->sock, SIOCOUTQ, &unread) == 0 && unread > 0))
			g_string_append_printf(text, " %u", id);
	}
	g_string_append(text, "\n" SERVER_CONTROL_END "\n");
	return text;
}

static void control_free(struct control_client *control)
{
	close(control->sock);
	g_string_free(control->text, TRUE);
	g_free(control);
}

static void control_drop(struct control_client *control)
{
	epoll_ctl(control->server->epoll_fd, EPOLL_CTL_DEL, control->sock, NULL);
	g_hash_table_remove(control->server->controls, control);
	control_free(control);
}

static void control_flush(struct control_client *control)
{
	while (control->sent < control->text->len) {
		ssize_t n = send(control->sock, control->text->str + control->sent,
				 control->text->len - control->sent, MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n < 0)
			break;
		control->sent += n;
	}
	control_drop(control);
}

static void server_accept_control(struct server *server)
{
	int sock = accept4(server->control_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	struct control_client *control;
	struct epoll_event event = { .events = EPOLLOUT };

	if (sock < 0) {
		if (errno == EMFILE || errno == ENFILE)
			server_refuse_one(server, server->control_fd);
		return;
	}
	if (g_hash_table_size(server->controls) >= SERVER_CONTROL_CLIENTS_MAX) {
		close(sock);
		return;
	}
	control = g_new0(struct control_client, 1);
	control->watch.kind = WATCH_CONTROL_CLIENT;
	control->server = server;
	control->sock = sock;
	control->text = server_report(server);
	control->since = g_get_monotonic_time();
	event.data.ptr = &control->watch;
	if (epoll_ctl(server->epoll_fd, EPOLL_CTL_ADD, sock, &event) < 0) {
		control_free(control);
		return;
	}
	g_hash_table_add(server->controls, control);
	server_arm_timer(server);
	control_flush(control);
}

/* ---- stall timer ---- */

static void server_arm_timer(struct server *server)
{
	gint64 earliest = 0;
	GHashTableIter iter;
	gpointer value;
	struct itimerspec spec = { 0 };

	g_hash_table_iter_init(&iter, server->clients);
	while (g_hash_table_iter_next(&iter, NULL, &value)) {
		struct client *client = value;

		if (client->stalled_since && (!earliest || client->stalled_since < earliest))
			earliest = client->stalled_since;
	}
	g_hash_table_iter_init(&iter, server->controls);
	while (g_hash_table_iter_next(&iter, &value, NULL)) {
		struct control_client *control = value;

		if (!earliest || control->since < earliest)
			earliest = control->since;
	}
	if (earliest) {
		gint64 due = earliest + server->stall_ms * (gint64)1000 - g_get_monotonic_time();

		if (due < 1000)
			due = 1000;
		spec.it_value.tv_sec = due / G_USEC_PER_SEC;
		spec.it_value.tv_nsec = (due % G_USEC_PER_SEC) * 1000;
	}
	timerfd_settime(server->timer_fd, 0, &spec, NULL);
}

static void server_check_stalls(struct server *server)
{
	guint64 expirations;
	gint64 now = g_get_monotonic_time(), limit = server->stall_ms * (gint64)1000;
	GHashTableIter iter;
	gpointer value;
	g_autoptr(GPtrArray) stale_controls = g_ptr_array_new();

	if (read(server->timer_fd, &expirations, sizeof(expirations)) < 0 && errno != EAGAIN)
		slog(server, LOG_WARNING, "timerfd: %s", g_strerror(errno));
	g_hash_table_iter_init(&iter, server->clients);
	while (g_hash_table_iter_next(&iter, NULL, &value)) {
		struct client *client = value;

		if (client->stalled_since && now - client->stalled_since >= limit)
			client_doom(client, "not reading for %d ms", server->stall_ms);
	}
	g_hash_table_iter_init(&iter, server->controls);
	while (g_hash_table_iter_next(&iter, &value, NULL)) {
		struct control_client *control = value;

		if (now - control->since >= limit)
			g_ptr_array_add(stale_controls, control);
	}
	for (guint i = 0; i < stale_controls->len; i++)
		control_drop(stale_controls->pdata[i]);
}

/* ---- start and stop ---- */

/* Bind a listening socket at path, replacing a stale socket file nobody
 * serves; a live server there is an error. */
static int listen_at(const char *path, int socket_mode, const char *group, struct stat *st,
		     GError **error)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	int fd;

	g_strlcpy(addr.sun_path, path, sizeof(addr.sun_path));
	if (lstat(path, st) == 0) {
		int probe;

		if (!S_ISSOCK(st->st_mode))
			return ivlab_fail(error, "%s: exists and is not a socket", path), -1;
		probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (probe >= 0 && connect(probe, (struct sockaddr *)&addr, sizeof(addr)) == 0) {
			close(probe);
			return ivlab_fail(error, "%s: a server is already listening there", path), -1;
		}
		if (probe >= 0)
			close(probe);
		if (unlink(path) < 0 && errno != ENOENT)
			return ivlab_fail_errno(error, "%s: cannot remove stale socket", path), -1;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return ivlab_fail_errno(error, "socket"), -1;
	if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		ivlab_fail_errno(error, "%s: bind", path);
		close(fd);
		return -1;
	}
	if ((socket_mode >= 0 && chmod(path, socket_mode) < 0)) {
		ivlab_fail_errno(error, "%s: chmod", path);
		close(fd);
		unlink(path);
		return -1;
	}
	if (group) {
		struct group *entry = getgrnam(group);

		if (!entry || chown(path, (uid_t)-1, entry->gr_gid) < 0) {
			if (entry)
				ivlab_fail_errno(error, "%s: chgrp %s", path, group);
			else
				ivlab_fail(error, SERVER_SETTING_SOCKET_GROUP ": no such group: %s", group);
			close(fd);
			unlink(path);
			return -1;
		}
	}
	if (listen(fd, SOMAXCONN) < 0 || lstat(path, st) < 0) {
		ivlab_fail_errno(error, "%s: listen", path);
		close(fd);
		unlink(path);
		return -1;
	}
	return fd;
}

static void unlink_if_ours(const char *path, const struct stat *ours)
{
	struct stat now;

	if (path && lstat(path, &now) == 0 && now.st_ino == ours->st_ino && now.st_dev == ours->st_dev)
		unlink(path);
}

static gboolean server_create_shm(struct server *server, const struct server_options *opts,
				  GError **error)
{
	int fd = -1;

	switch (opts->shm_kind) {
	case SERVER_SHM_MEMFD:
		fd = memfd_create("ivlab-ivshmem", MFD_CLOEXEC | MFD_ALLOW_SEALING);
		if (fd < 0)
			return ivlab_fail_errno(error, "memfd_create");
		server->shm_desc = g_strdup("memfd");
		break;
	case SERVER_SHM_POSIX: {
		g_autofree char *name = g_strdup_printf("/%s", opts->shm_name + (opts->shm_name[0] == '/'));

		/* Always a new object: one that exists may be another user's
		 * (served to our guests, written, unlinked at exit) or another
		 * server's. */
		fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd < 0 && errno == EEXIST)
			return ivlab_fail(error, SERVER_SETTING_SHM_NAME ": /dev/shm%s already exists "
					  "(another server's, another user's or left by a crash): "
					  "choose another name, or remove it if nothing uses it", name);
		if (fd < 0)
			return ivlab_fail_errno(error, SERVER_SETTING_SHM_NAME ": shm_open %s", name);
		server->shm_name = g_strdup(name);
		server->shm_desc = g_strdup_printf("posix:%s", name);
		break;
	}
	case SERVER_SHM_FILE: {
		g_autofree char *tmpl = g_build_filename(opts->shm_dir, "ivlab-ivshmem.XXXXXX", NULL);

		fd = g_mkstemp_full(tmpl, O_RDWR | O_CLOEXEC, 0600);
		if (fd < 0)
			return ivlab_fail_errno(error, SERVER_SETTING_SHM_DIR ": cannot create a file in %s",
					       opts->shm_dir);
		server->shm_file = g_strdup(tmpl);
		server->shm_desc = g_strdup_printf("file:%s", tmpl);
		break;
	}
	}
	server->shm = fdref_new(fd);
	/* What to unlink at stop: this object, not one put in its place. */
	fstat(fd, &server->shm_stat);
	if (ftruncate(fd, (off_t)opts->size) < 0) {
		g_autofree char *text = ivlab_format_size(opts->size);
		return ivlab_fail_errno(error, "shared memory: cannot size %s to %s", server->shm_desc, text);
	}
	if (opts->shm_kind == SERVER_SHM_MEMFD)
		/* Nobody can shrink the memory under a peer's mapping (SIGBUS). */
		fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
	return TRUE;
}

static gboolean epoll_watch(struct server *server, int fd, struct watch *watch, GError **error)
{
	struct epoll_event event = { .events = EPOLLIN, .data.ptr = watch };

	if (epoll_ctl(server->epoll_fd, EPOLL_CTL_ADD, fd, &event) < 0)
		return ivlab_fail_errno(error, "epoll_ctl");
	return TRUE;
}

struct server *server_start(const struct server_options *opts, GError **error)
{
	struct server *server;

	if (!server_options_check(opts, error))
		return NULL;
	server = g_new0(struct server, 1);
	server->socket_path = g_strdup(opts->socket_path);
	server->control_path = server_control_path(opts->socket_path);
	server->size = opts->size;
	server->vectors = opts->vectors;
	server->max_peers = opts->max_peers ? opts->max_peers : SERVER_PEERS_LIMIT;
	server->stall_ms = opts->stall_ms ? opts->stall_ms : SERVER_DEFAULT_STALL_MS;
	server->shm_kind = opts->shm_kind;
	server->epoll_fd = server->listen_fd = server->control_fd = -1;
	server->timer_fd = server->reserve_fd = -1;
	server->listen_watch.kind = WATCH_LISTEN;
	server->control_watch.kind = WATCH_CONTROL;
	server->timer_watch.kind = WATCH_TIMER;
	server->clients = g_hash_table_new(NULL, NULL);
	server->controls = g_hash_table_new(NULL, NULL);
	server->doomed = g_ptr_array_new();

	server->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	server->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	server->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (server->epoll_fd < 0 || server->timer_fd < 0 || server->reserve_fd < 0) {
		ivlab_fail_errno(error, "server: setting up");
		server_stop(server);
		return NULL;
	}
	if (!server_create_shm(server, opts, error) ||
	    (server->listen_fd = listen_at(server->socket_path, opts->socket_mode, opts->socket_group,
					   &server->socket_stat, error)) < 0 ||
	    (server->control_fd = listen_at(server->control_path, opts->socket_mode, opts->socket_group,
					    &server->control_stat, error)) < 0 ||
	    !epoll_watch(server, server->listen_fd, &server->listen_watch, error) ||
	    !epoll_watch(server, server->control_fd, &server->control_watch, error) ||
	    !epoll_watch(server, server->timer_fd, &server->timer_watch, error)) {
		server_stop(server);
		return NULL;
	}
	return server;
}

void server_set_log_func(struct server *server, server_log_func func, gpointer data)
{
	server->log = func;
	server->log_data = data;
}

int server_fd(const struct server *server)
{
	return server->epoll_fd;
}

gboolean server_handle_events(struct server *server, int timeout_ms, GError **error)
{
	struct epoll_event events[64];
	int n;

	n = epoll_wait(server->epoll_fd, events, G_N_ELEMENTS(events), timeout_ms);
	if (n < 0) {
		if (errno == EINTR)
			return TRUE;
		return ivlab_fail_errno(error, "epoll_wait");
	}
	for (int i = 0; i < n; i++) {
		struct watch *watch = events[i].data.ptr;

		switch (watch->kind) {
		case WATCH_LISTEN:
			server_accept_peer(server);
			break;
		case WATCH_CONTROL:
			server_accept_control(server);
			break;
		case WATCH_TIMER:
			server_check_stalls(server);
			break;
		case WATCH_CLIENT: {
			struct client *client = (struct client *)watch;

			if (client->doomed)
				break;
			if (events[i].events & EPOLLOUT)
				client_flush(client);
			if (events[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
				client_readable(client);
			break;
		}
		case WATCH_CONTROL_CLIENT: {
			struct control_client *control = (struct control_client *)watch;

			/* Events for one dropped earlier in this batch cannot come:
			 * control clients are only dropped from their own event. */
			control_flush(control);
			break;
		}
		}
	}
	/* Reaping frees clients, so it waits until no event of this batch can
	 * still point at one; doomed clients' events are skipped above. */
	if (server->doomed->len)
		server_reap(server);
	server_arm_timer(server);
	return TRUE;
}

void server_stop(struct server *server)
{
	GHashTableIter iter;
	gpointer value;

	if (!server)
		return;
	g_hash_table_iter_init(&iter, server->clients);
	while (g_hash_table_iter_next(&iter, NULL, &value))
		client_free(value);
	g_hash_table_destroy(server->clients);
	g_hash_table_iter_init(&iter, server->controls);
	while (g_hash_table_iter_next(&iter, &value, NULL))
		control_free(value);
	g_hash_table_destroy(server->controls);
	g_ptr_array_free(server->doomed, TRUE);
	if (server->listen_fd >= 0) {
		unlink_if_ours(server->socket_path, &server->socket_stat);
		close(server->listen_fd);
	}
	if (server->control_fd >= 0) {
		unlink_if_ours(server->control_path, &server->control_stat);
		close(server->control_fd);
	}
	if (server->shm_name) {
		g_autofree char *path = g_strconcat("/dev/shm", server->shm_name, NULL);

		unlink_if_ours(path, &server->shm_stat);
	}
	unlink_if_ours(server->shm_file, &server->shm_stat);
	fdref_unref(server->shm);
	if (server->epoll_fd >= 0)
		close(server->epoll_fd);
	if (server->timer_fd >= 0)
		close(server->timer_fd);
	if (server->reserve_fd >= 0)
		close(server->reserve_fd);
	g_free(server->socket_path);
	g_free(server->control_path);
	g_free(server->shm_desc);
	g_free(server->shm_name);
	g_free(server->shm_file);
	g_free(server);
}

guint server_peer_count(const struct server *server)
{
	return g_hash_table_size(server->clients);
}


GArray *server_peer_ids(const struct server *server)
{
	return ivlab_sorted_ids(server->clients);
}

guint server_open_fds(const struct server *server)
{
	guint count = 6; /* epoll, timer, reserve, shm, listen, control */
	GHashTableIter iter;
	gpointer value;

	g_hash_table_iter_init(&iter, server->clients);
	while (g_hash_table_iter_next(&iter, NULL, &value))
		count += 1 + ((struct client *)value)->nvectors;
	return count + g_hash_table_size(server->controls);
}
