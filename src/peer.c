/* peer.c: the host as an ivshmem peer (the client side of QEMU's
 * ivshmem-spec): shared memory, our own vectors, the other peers' doorbells. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "ivlab.h"
#include "peer.h"
#include "server.h"
#include "serverctl.h"

/* With a server that has no control socket, the setup burst is over when
 * no message followed our own last vector for this long. */
#define PEER_SETTLE_MS 200

struct remote {
	int id;
	GArray *fds; /* int, vector order */
};

struct peer {
	char *socket_path;
	int sock;
	int id;
	int shm_fd;
	guint64 size;
	void *memory;
	guint nvectors;
	guint expected_vectors; /* 0: unknown */
	int own[SERVER_VECTORS_MAX];
	GHashTable *remotes; /* id -> struct remote * */
	/* A message being assembled from a partial read. */
	guint8 partial[8];
	gsize partial_len;
	int partial_fd;
};



static void remote_free(gpointer data)
{
	struct remote *remote = data;

	for (guint i = 0; i < remote->fds->len; i++)
		close(g_array_index(remote->fds, int, i));
	g_array_unref(remote->fds);
	g_free(remote);
}

void peer_free(struct peer *peer)
{
	if (!peer)
		return;
	if (peer->memory)
		munmap(peer->memory, peer->size);
	if (peer->shm_fd >= 0)
		close(peer->shm_fd);
	for (guint i = 0; i < peer->nvectors; i++)
		close(peer->own[i]);
	if (peer->partial_fd >= 0)
		close(peer->partial_fd);
	if (peer->sock >= 0)
		close(peer->sock);
	g_hash_table_destroy(peer->remotes);
	g_free(peer->socket_path);
	g_free(peer);
}

/* One 8-byte message and its fd (-1 if none). 0: a message, 1: would
 * block, -1: error (set). */
static int read_message(struct peer *peer, gint64 *value, int *fd, GError **error)
{
	for (;;) {
		union {
			char buf[CMSG_SPACE(sizeof(int) * 4)];
			struct cmsghdr align;
		} control;
		struct iovec iov = { .iov_base = peer->partial + peer->partial_len,
				     .iov_len = sizeof(peer->partial) - peer->partial_len };
		struct msghdr hdr = { .msg_iov = &iov, .msg_iovlen = 1,
				      .msg_control = control.buf, .msg_controllen = sizeof(control.buf) };
		ssize_t n = recvmsg(peer->sock, &hdr, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 1;
		if (n < 0)
			return ivlab_fail(error, "%s: recv: %s", peer->socket_path, g_strerror(errno)), -1;
		for (struct cmsghdr *cmsg = CMSG_FIRSTHDR(&hdr); cmsg; cmsg = CMSG_NXTHDR(&hdr, cmsg)) {
			if (cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS)
				continue;
			gsize count = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			int fds[4];

			memcpy(fds, CMSG_DATA(cmsg), MIN(count, 4) * sizeof(int));
			for (gsize i = 0; i < MIN(count, 4); i++) {
				if (peer->partial_fd < 0)
					peer->partial_fd = fds[i];
				else
					close(fds[i]); /* the protocol has one fd per message */
			}
		}
		if (hdr.msg_flags & MSG_CTRUNC)
			return ivlab_fail(error, "%s: too many fds in one message", peer->socket_path), -1;
		if (n == 0)
			return ivlab_fail(error, "%s: the server closed the connection", peer->socket_path), -1;
		peer->partial_len += n;
		if (peer->partial_len < sizeof(peer->partial))
			continue;
		guint64 le;

		memcpy(&le, peer->partial, sizeof(le));
		*value = (gint64)GUINT64_FROM_LE(le);
		*fd = peer->partial_fd;
		peer->partial_fd = -1;
		peer->partial_len = 0;
		return 0;
	}
}

/* Steps 4-6 of the protocol: a vector of another peer, one of ours, or a
 * disconnect. */
static gboolean handle_message(struct peer *peer, gint64 value, int fd, GError **error)
{
	struct remote *remote;

	if (value < 0 || value > SERVER_PEER_ID_MAX) {
		if (fd >= 0)
			close(fd);
		return ivlab_fail(error, "%s: protocol error: peer id %" G_GINT64_FORMAT " out of range",
				 peer->socket_path, value);
	}
	/* A server may hand out blocking eventfds: wait and ring keep their
	 * deadlines only on non-blocking ones. */
	if (fd >= 0 && fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) {
		int saved = errno;

		close(fd);
		return ivlab_fail(error, "%s: protocol error: a vector fd of peer %" G_GINT64_FORMAT
				 ": %s", peer->socket_path, value, g_strerror(saved));
	}
	if (value == peer->id) {
		if (fd < 0)
			return ivlab_fail(error, "%s: protocol error: the server disconnected us",
					 peer->socket_path);
		if (peer->nvectors >= SERVER_VECTORS_MAX) {
			close(fd);
			return TRUE;
		}
		peer->own[peer->nvectors++] = fd;
		return TRUE;
	}
	remote = g_hash_table_lookup(peer->remotes, GINT_TO_POINTER((int)value));
	if (fd < 0) {
		g_hash_table_remove(peer->remotes, GINT_TO_POINTER((int)value));
		return TRUE;
	}
	if (!remote) {
		remote = g_new0(struct remote, 1);
		remote->id = (int)value;
		remote->fds = g_array_new(FALSE, FALSE, sizeof(int));
		g_hash_table_insert(peer->remotes, GINT_TO_POINTER(remote->id), remote);
	}
	if (remote->fds->len >= SERVER_VECTORS_MAX)
		close(fd);
	else
		g_array_append_val(remote->fds, fd);
	return TRUE;
}

/* Wait until the socket is readable or the deadline (-1: none) passes. */
static gboolean wait_readable(int fd, gint64 deadline)
{
	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int timeout = -1;

		if (deadline >= 0) {
			gint64 left = deadline - g_get_monotonic_time();

			if (left <= 0)
				return FALSE;
			timeout = (int)((left + 999) / 1000);
		}
		int n = poll(&pfd, 1, timeout);

		if (n < 0 && errno == EINTR)
			continue;
		return n > 0;
	}
}

static gint64 deadline_after(int timeout_ms)
{
	return timeout_ms < 0 ? -1 : g_get_monotonic_time() + timeout_ms * (gint64)1000;
}

/* Read one message, waiting until deadline. 0 message, 1 timeout, -1 error. */
static int next_message(struct peer *peer, gint64 deadline, gint64 *value, int *fd, GError **error)
{
	for (;;) {
		int status = read_message(peer, value, fd, error);

		if (status != 1)
			return status;
		if (!wait_readable(peer->sock, deadline))
			return 1;
	}
}

static gboolean read_setup(struct peer *peer, int timeout_ms, GError **error)
{
	gint64 deadline = deadline_after(timeout_ms);
	gint64 value;
	int fd, status;
	struct stat st;

	/* Steps 1-3: version, our id, the memory. */
	for (int step = 0; step < 3; step++) {
		g_autoptr(GError) local = NULL;

		status = next_message(peer, deadline, &value, &fd, &local);
		if (status < 0 && step == 0 && g_str_has_suffix(local->message, "closed the connection"))
			return ivlab_fail(error, "%s: the server refused us (closed before the setup: "
					 "at its --max-peers, or out of fds? see its log)",
					 peer->socket_path);
		if (status < 0) {
			g_propagate_error(error, g_steal_pointer(&local));
			return FALSE;
		}
		if (status > 0)
			return ivlab_fail(error, "%s: the server sent no setup within %d ms",
					 peer->socket_path, timeout_ms);
		if (step < 2 && fd >= 0) {
			close(fd);
			return ivlab_fail(error, "%s: protocol error: unexpected fd in message %d",
					 peer->socket_path, step + 1);
		}
		if (step == 0 && value != 0)
			return ivlab_fail(error, "%s: unsupported protocol version %" G_GINT64_FORMAT,
					 peer->socket_path, value);
		if (step == 1) {
			if (value < 0 || value > SERVER_PEER_ID_MAX)
				return ivlab_fail(error, "%s: protocol error: bad id %" G_GINT64_FORMAT,
						 peer->socket_path, value);
			peer->id = (int)value;
		}
		if (step == 2) {
			if (value != -1 || fd < 0) {
				if (fd >= 0)
					close(fd);
				return ivlab_fail(error, "%s: protocol error: expected the shared "
						 "memory, got %" G_GINT64_FORMAT, peer->socket_path, value);
			}
			peer->shm_fd = fd;
		}
	}
	if (fstat(peer->shm_fd, &st) < 0 || st.st_size <= 0)
		return ivlab_fail(error, "%s: the shared memory fd has no size", peer->socket_path);
	peer->size = (guint64)st.st_size;
	peer->memory = mmap(NULL, peer->size, PROT_READ | PROT_WRITE, MAP_SHARED, peer->shm_fd, 0);
	if (peer->memory == MAP_FAILED) {
		peer->memory = NULL;
		return ivlab_fail(error, "%s: mmap of %" G_GUINT64_FORMAT " bytes: %s",
				 peer->socket_path, peer->size, g_strerror(errno));
	}

	/* Steps 4-5: the others' vectors, then ours. */
	for (;;) {
		gint64 wait_until = deadline;

		if (peer->expected_vectors && peer->nvectors >= peer->expected_vectors)
			return TRUE;
		if (!peer->expected_vectors && peer->nvectors > 0) {
			gint64 settle = g_get_monotonic_time() + PEER_SETTLE_MS * 1000;

			wait_until = deadline < 0 ? settle : MIN(deadline, settle);
		}
		status = next_message(peer, wait_until, &value, &fd, error);
		if (status < 0)
			return FALSE;
		if (status > 0) {
			if (!peer->expected_vectors && peer->nvectors > 0)
				return TRUE;
			return ivlab_fail(error, "%s: setup incomplete after %d ms (%u of %u vectors)",
					 peer->socket_path, timeout_ms, peer->nvectors,
					 peer->expected_vectors);
		}
		if (!handle_message(peer, value, fd, error))
			return FALSE;
	}
}

/* A peer with no connection yet, named name in messages. */
static struct peer *peer_new(const char *name)
{
	struct peer *peer = g_new0(struct peer, 1);

	peer->socket_path = g_strdup(name);
	peer->sock = peer->shm_fd = peer->partial_fd = -1;
	peer->id = -1;
	peer->remotes = g_hash_table_new_full(NULL, NULL, NULL, remote_free);
	return peer;
}

struct peer *peer_connect_timeout(const char *socket_path, int timeout_ms, GError **error)
{
	g_autoptr(Peer) peer = peer_new(socket_path);
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	struct serverctl_info info;

	if (strlen(socket_path) >= sizeof(addr.sun_path)) {
		ivlab_fail(error, "%s: path too long for a UNIX socket", socket_path);
		return NULL;
	}
	/* Our server says how many vectors the setup carries; others do not. */
	if (serverctl_query(socket_path, &info, NULL)) {
		peer->expected_vectors = info.vectors;
		serverctl_info_clear(&info);
	}
	g_strlcpy(addr.sun_path, socket_path, sizeof(addr.sun_path));
	peer->sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (peer->sock < 0) {
		ivlab_fail(error, "socket: %s", g_strerror(errno));
		return NULL;
	}
	if (connect(peer->sock, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		ivlab_fail(error, "%s: connect: %s", socket_path, g_strerror(errno));
		return NULL;
	}
	if (!read_setup(peer, timeout_ms, error))
		return NULL;
	return g_steal_pointer(&peer);
}

struct peer *peer_connect_fd(int sock, const char *name, guint vectors, int timeout_ms,
			     GError **error)
{
	g_autoptr(Peer) peer = peer_new(name);

	peer->sock = sock;
	peer->expected_vectors = vectors;
	if (!read_setup(peer, timeout_ms, error))
		return NULL;
	return g_steal_pointer(&peer);
}

struct peer *peer_connect(const char *socket_path, GError **error)
{
	return peer_connect_timeout(socket_path, 10000, error);
}

int peer_id(const struct peer *peer)
{
	return peer->id;
}

guint64 peer_size(const struct peer *peer)
{
	return peer->size;
}

void *peer_memory(struct peer *peer)
{
	return peer->memory;
}

guint peer_vectors(const struct peer *peer)
{
	return peer->nvectors;
}

int peer_vector_fd(const struct peer *peer, guint vector)
{
	return vector < peer->nvectors ? peer->own[vector] : -1;
}

int peer_server_fd(const struct peer *peer)
{
	return peer->sock;
}

gboolean peer_ring(struct peer *peer, int peer_id, guint vector, GError **error)
{
	const guint64 one = 1;
	int fd;

	if (peer_id == peer->id) {
		fd = peer_vector_fd(peer, vector);
		if (fd < 0)
			return ivlab_fail(error, "ring: we have no vector %u (we have %u)", vector,
					 peer->nvectors);
	} else {
		struct remote *remote = g_hash_table_lookup(peer->remotes, GINT_TO_POINTER(peer_id));

		if (!remote)
			return ivlab_fail(error, "ring: no peer %d is connected", peer_id);
		if (vector >= remote->fds->len)
			return ivlab_fail(error, "ring: peer %d has no vector %u (it has %u)", peer_id,
					 vector, remote->fds->len);
		fd = g_array_index(remote->fds, int, vector);
	}
	for (;;) {
		/* A vector is an eventfd; a server that passed a socket instead
		 * must not kill us with SIGPIPE when its other end is closed. */
		ssize_t n = send(fd, &one, sizeof(one), MSG_NOSIGNAL);

		if (n < 0 && errno == ENOTSOCK)
			n = write(fd, &one, sizeof(one));
		if (n == sizeof(one))
			return TRUE;
		if (errno == EINTR)
			continue;
		/* EAGAIN: the counter is saturated, the peer has a ring pending anyway. */
		if (errno == EAGAIN)
			return TRUE;
		return ivlab_fail(error, "ring: peer %d vector %u: %s", peer_id, vector, g_strerror(errno));
	}
}

gboolean peer_wait(struct peer *peer, guint vector, int timeout_ms, guint64 *count, GError **error)
{
	int fd = peer_vector_fd(peer, vector);
	gint64 deadline = deadline_after(timeout_ms);
	guint64 value;

	*count = 0;
	if (fd < 0)
		return ivlab_fail(error, "wait: we have no vector %u (we have %u)", vector, peer->nvectors);
	for (;;) {
		ssize_t n = read(fd, &value, sizeof(value));

		if (n == sizeof(value)) {
			*count = value;
			return TRUE;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EAGAIN)
			return ivlab_fail(error, "wait: vector %u: %s", vector, g_strerror(errno));
		if (n >= 0)
			return ivlab_fail(error, "wait: vector %u: read %zd bytes, not an eventfd", vector, n);
		if (!wait_readable(fd, deadline))
			return TRUE;
	}
}

gboolean peer_poll_notifications(struct peer *peer, int timeout_ms, GError **error)
{
	gint64 deadline = deadline_after(timeout_ms);
	gboolean waited = FALSE;

	for (;;) {
		gint64 value;
		int fd;
		int status = read_message(peer, &value, &fd, error);

		if (status < 0)
			return FALSE;
		if (status == 0) {
			if (!handle_message(peer, value, fd, error))
				return FALSE;
			continue;
		}
		/* Nothing pending: wait once for the first notification, then
		 * take only what is already there. */
		if (waited || timeout_ms == 0 || !wait_readable(peer->sock, deadline))
			return TRUE;
		waited = TRUE;
	}
}

static gboolean meshed(struct peer *peer, guint count)
{
	GHashTableIter iter;
	gpointer value;
	guint complete = 0;

	g_hash_table_iter_init(&iter, peer->remotes);
	while (g_hash_table_iter_next(&iter, NULL, &value))
		if (((struct remote *)value)->fds->len >= peer->nvectors)
			complete++;
	return complete >= count;
}

/* Handle notifications until done(peer, arg) or the deadline. */
static gboolean wait_for(struct peer *peer, gboolean (*done)(struct peer *, gintptr),
			 gintptr arg, int timeout_ms, GError **error)
{
	gint64 deadline = deadline_after(timeout_ms);

	for (;;) {
		gint64 value;
		int fd;
		int status;

		if (done(peer, arg))
			return TRUE;
		status = next_message(peer, deadline, &value, &fd, error);
		if (status < 0)
			return FALSE;
		if (status > 0)
			return FALSE;
		if (!handle_message(peer, value, fd, error))
			return FALSE;
	}
}

static gboolean meshed_with(struct peer *peer, gintptr count)
{
	return meshed(peer, (guint)count);
}

static gboolean is_gone(struct peer *peer, gintptr id)
{
	return !g_hash_table_contains(peer->remotes, GINT_TO_POINTER((int)id));
}

gboolean peer_wait_peers(struct peer *peer, guint count, int timeout_ms, GError **error)
{
	g_autoptr(GError) local = NULL;

	if (wait_for(peer, meshed_with, count, timeout_ms, &local))
		return TRUE;
	if (local) {
		g_propagate_error(error, g_steal_pointer(&local));
		return FALSE;
	}
	return ivlab_fail(error, "%s: %u peers with %u vectors each did not appear within %d ms "
			 "(%u known)", peer->socket_path, count, peer->nvectors, timeout_ms,
			 g_hash_table_size(peer->remotes));
}

gboolean peer_wait_gone(struct peer *peer, int peer_id, int timeout_ms, GError **error)
{
	g_autoptr(GError) local = NULL;

	if (wait_for(peer, is_gone, peer_id, timeout_ms, &local))
		return TRUE;
	if (local) {
		g_propagate_error(error, g_steal_pointer(&local));
		return FALSE;
	}
	return ivlab_fail(error, "%s: peer %d still connected after %d ms", peer->socket_path,
			 peer_id, timeout_ms);
}


GArray *peer_list(struct peer *peer)
{
	return ivlab_sorted_ids(peer->remotes);
}

guint peer_remote_vectors(const struct peer *peer, int peer_id)
{
	struct remote *remote = g_hash_table_lookup(peer->remotes, GINT_TO_POINTER(peer_id));

	return remote ? remote->fds->len : 0;
}
