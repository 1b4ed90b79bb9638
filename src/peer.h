/* peer.h: the host as an ivshmem peer: connect to a server, map the shared
 * memory, ring other peers' vectors and wait for our own. */
#ifndef IVLAB_PEER_H
#define IVLAB_PEER_H

#include <glib.h>

struct peer;

/* Connect and read the whole setup (id, memory, every existing peer, our own
 * vectors) within timeout_ms (-1: forever). The number of vectors is taken
 * from the server's control socket when it has one, else from the setup
 * burst itself. */
struct peer *peer_connect_timeout(const char *socket_path, int timeout_ms, GError **error);
/* The same over a socket already connected to a server (taken: closed by
 * peer_free(), or here on failure), named name in messages; vectors is how
 * many the setup carries (0: unknown, as from a server without a control
 * socket). For tests and fuzzing with a socket pair. */
struct peer *peer_connect_fd(int sock, const char *name, guint vectors, int timeout_ms,
			     GError **error);
/* peer_connect_timeout() with a 10 s timeout. */
struct peer *peer_connect(const char *socket_path, GError **error);
void peer_free(struct peer *peer);
typedef struct peer Peer; /* for g_autoptr(Peer) */
G_DEFINE_AUTOPTR_CLEANUP_FUNC(Peer, peer_free)

int peer_id(const struct peer *peer);
guint64 peer_size(const struct peer *peer);
/* The shared memory, mapped read-write, peer_size() bytes. */
void *peer_memory(struct peer *peer);
/* Our own vectors (as many as the server gave us). */
guint peer_vectors(const struct peer *peer);

/* Ring vector of peer_id (our own id rings ourselves). Fails when that peer
 * or vector is unknown. */
gboolean peer_ring(struct peer *peer, int peer_id, guint vector, GError **error);
/* Wait up to timeout_ms (-1: forever) for our vector to be rung; *count is
 * how many rings arrived (coalesced), 0 on timeout (still TRUE). */
gboolean peer_wait(struct peer *peer, guint vector, int timeout_ms, guint64 *count,
		   GError **error);
/* Our vector's eventfd, for callers running their own poll loop. */
int peer_vector_fd(const struct peer *peer, guint vector);

/* Handle the connect/disconnect notifications that arrive within timeout_ms
 * (0: only those pending). FALSE when the server went away or misbehaved. */
gboolean peer_poll_notifications(struct peer *peer, int timeout_ms, GError **error);
/* The socket to the server, readable when notifications are pending. */
int peer_server_fd(const struct peer *peer);
/* Handle notifications until at least count other peers are known, each with
 * as many vectors as we have (fully meshed), or timeout_ms passes (FALSE). */
gboolean peer_wait_peers(struct peer *peer, guint count, int timeout_ms, GError **error);
/* Handle notifications until peer_id is gone (TRUE) or timeout_ms passes. */
gboolean peer_wait_gone(struct peer *peer, int peer_id, int timeout_ms, GError **error);

/* The other peers known so far: their ids (guint), sorted. */
GArray *peer_list(struct peer *peer);
/* How many vectors we hold for peer_id (0: unknown peer). */
guint peer_remote_vectors(const struct peer *peer, int peer_id);

#endif
