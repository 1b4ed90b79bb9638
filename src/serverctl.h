/* serverctl.h: starting, querying and stopping an `ivlab server` daemon from
 * another process, through its control socket (server.h for the engine). */
#ifndef IVLAB_SERVERCTL_H
#define IVLAB_SERVERCTL_H

#include <sys/types.h>
#include <glib.h>

#include "server.h"

/* What a running server reports over its control socket. */
struct serverctl_info {
	pid_t pid;
	guint64 size;
	guint vectors;
	char *shm;          /* "memfd", "posix:/NAME" or "file:PATH" */
	char *socket_path;
	guint max_peers;
	GArray *peer_ids;   /* guint, sorted */
	/* Peers with messages they have not read yet (queued in the server or
	 * unread in their socket): 0 once every peer has caught up. */
	guint backlogged;
};
void serverctl_info_clear(struct serverctl_info *info);

/* Read the report of the server on socket_path (waits up to 5 s). */
gboolean serverctl_query(const char *socket_path, struct serverctl_info *info, GError **error);
/* Whether a server answers on socket_path. */
gboolean serverctl_running(const char *socket_path);

/* Start `ivlab server --daemon` for opts, with this process's own binary
 * (/proc/self/exe). opts->daemonize is implied; pidfile and log_file are
 * passed when set. Returns once the socket is listening (TRUE), or with the
 * message `ivlab server` failed with (FALSE). */
gboolean serverctl_spawn(const struct server_options *opts, GError **error);
/* The same with a given ivlab binary (for programs that are not ivlab). */
gboolean serverctl_spawn_binary(const char *ivlab_binary, const struct server_options *opts,
				GError **error);

/* SIGTERM the server answering on socket_path and wait up to timeout_ms for
 * its socket to disappear and its process to end. A socket nobody serves is
 * removed, and TRUE. */
gboolean serverctl_stop(const char *socket_path, int timeout_ms, GError **error);
/* The same for the server whose pid pidfile holds (its sockets may be gone):
 * only a process that is an ivlab server gets SIGTERM, then SIGKILL after
 * timeout_ms. The pidfile is removed. */
gboolean serverctl_stop_pidfile(const char *pidfile, int timeout_ms, GError **error);

#endif
