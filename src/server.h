/* server.h: the ivshmem server protocol engine (QEMU's ivshmem-spec), and how
 * the rest of ivlab starts, queries and stops a running `ivlab server`. */
#ifndef IVLAB_SERVER_H
#define IVLAB_SERVER_H

#include <sys/types.h>
#include <glib.h>

#define SERVER_VECTORS_MAX 64
#define SERVER_PEER_ID_MAX 65535
#define SERVER_PEERS_LIMIT (SERVER_PEER_ID_MAX + 1)
#define SERVER_DEFAULT_VECTORS 1
#define SERVER_DEFAULT_SIZE (4ULL << 20)
/* A client whose setup or notifications stay unread this long is dropped. */
#define SERVER_DEFAULT_STALL_MS 5000

enum server_shm_kind {
	SERVER_SHM_MEMFD, /* anonymous memfd (the default) */
	SERVER_SHM_POSIX, /* shm_open(shm_name): /dev/shm/NAME */
	SERVER_SHM_FILE,  /* a file created in shm_dir (tmpfs, hugetlbfs, ...) */
};

/* What a server serves. Strings are borrowed: the caller keeps them alive
 * while the server (or server_spawn_daemon) uses them. */
struct server_options {
	const char *socket_path;  /* required */
	guint64 size;             /* power of two, bytes */
	guint vectors;            /* 1..SERVER_VECTORS_MAX */
	enum server_shm_kind shm_kind;
	const char *shm_name;     /* SERVER_SHM_POSIX: "name" or "/name" */
	const char *shm_dir;      /* SERVER_SHM_FILE: directory for the file */
	guint max_peers;          /* 1..SERVER_PEERS_LIMIT; 0 means the limit */
	int socket_mode;          /* chmod of both sockets; -1 leaves the umask's */
	const char *socket_group; /* chgrp of both sockets, NULL: unchanged */
	int stall_ms;             /* 0: SERVER_DEFAULT_STALL_MS */
	/* The daemon wrapper only (ignored by the engine): */
	gboolean daemonize;
	const char *pidfile;
	const char *log_file;     /* NULL: stderr in the foreground, syslog daemonized */
};

/* Defaults: memfd, SERVER_DEFAULT_SIZE, 1 vector, no peer limit, mode -1. */
void server_options_init(struct server_options *opts);
/* Checks ranges and combinations; message names the option. */
gboolean server_options_check(const struct server_options *opts, GError **error);

/* The engine. One thread; everything is non-blocking. */
struct server;

typedef void (*server_log_func)(int priority /* LOG_* from syslog.h */,
				const char *message, gpointer data);

/* Create the shared memory, bind and listen on socket_path and on its
 * control socket (server_control_path()). An existing socket file that no
 * server answers on is replaced; a live one is an error. */
struct server *server_start(const struct server_options *opts, GError **error);
/* Connect/disconnect and trouble messages go here (default: dropped). */
void server_set_log_func(struct server *server, server_log_func func, gpointer data);
/* One fd (epoll) that becomes readable when the engine has work to do. */
int server_fd(const struct server *server);
/* Wait up to timeout_ms (-1: forever, 0: don't) for events and handle them.
 * FALSE only on an error of the engine itself (clients' errors drop them). */
gboolean server_handle_events(struct server *server, int timeout_ms, GError **error);
/* Close every client, remove both sockets (and a POSIX shm name / shm file). */
void server_stop(struct server *server);

/* Introspection of the engine in the same process. */
guint server_peer_count(const struct server *server);
/* Connected peer ids, sorted, as guint. */
GArray *server_peer_ids(const struct server *server);
/* Number of fds the engine has open (for tests of leaks). */
guint server_open_fds(const struct server *server);

/* What a running server reports over its control socket. */
struct server_info {
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
void server_info_clear(struct server_info *info);

/* "PATH.ctl": the control socket beside the ivshmem socket. Connecting to it
 * yields a short text report (see man/server.section.txt) and EOF. */
char *server_control_path(const char *socket_path);
gboolean server_query(const char *socket_path, struct server_info *info, GError **error);

/* The command line that starts `ivlab server --daemon` for opts
 * (opts->daemonize is implied; pidfile and log_file are passed if set). */
char **server_daemon_argv(const char *ivlab_binary, const struct server_options *opts);
/* Run that command: returns once the socket is listening (TRUE), or with
 * the daemon's own error message (FALSE). */
gboolean server_spawn_daemon(const char *ivlab_binary, const struct server_options *opts,
			     GError **error);
/* SIGTERM the server answering on socket_path and wait up to timeout_ms for
 * its socket to disappear. A socket nobody serves is removed, and TRUE. */
gboolean server_stop_daemon(const char *socket_path, int timeout_ms, GError **error);

#endif
