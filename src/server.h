/* server.h: the ivshmem server protocol engine (QEMU's ivshmem-spec) and its
 * control socket's report format. Starting, querying and stopping a server
 * daemon is serverctl.h. */
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
 * while the server (or serverctl_spawn) uses them. */
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
	/* For the daemon (cmd-server.c, serverctl_spawn); the engine ignores them: */
	gboolean daemonize;
	const char *pidfile;
	const char *log_file;     /* NULL: stderr in the foreground, syslog daemonized */
};

/* How the engine's messages name the settings above ("SETTING: detail"). */
#define SERVER_SETTING_SOCKET "socket"
#define SERVER_SETTING_SIZE "size"
#define SERVER_SETTING_VECTORS "vectors"
#define SERVER_SETTING_SHM_NAME "shm name"
#define SERVER_SETTING_SHM_DIR "shm dir"
#define SERVER_SETTING_MAX_PEERS "max peers"
#define SERVER_SETTING_SOCKET_MODE "socket mode"
#define SERVER_SETTING_SOCKET_GROUP "socket group"
#define SERVER_SETTING_STALL "stall timeout"

/* Defaults: memfd, SERVER_DEFAULT_SIZE, 1 vector, no peer limit, mode -1. */
void server_options_init(struct server_options *opts);
/* Checks ranges and combinations. A message about one setting starts with
 * its SERVER_SETTING_* name ("size: ..."), which a front end may replace
 * with the name of its own option. */
gboolean server_options_check(const struct server_options *opts, GError **error);

/* The engine. One thread; everything is non-blocking. */
struct server;

typedef void (*server_log_func)(int priority /* LOG_* from syslog.h */,
				const char *message, gpointer data);

/* Create the shared memory, bind and listen on socket_path and on its
 * control socket (server_control_path()). An existing socket file that no
 * server answers on is replaced; a live one is an error. Messages name
 * settings as server_options_check() does. */
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

/* The control socket, PATH.ctl beside the ivshmem socket: every connection
 * gets a text report and EOF, a header line, "key value" lines, an end line
 * (man/ivlab.1, `server`). server.c writes it, serverctl.c reads it; both
 * spell it with these names. Readers ignore keys they do not know. */
#define SERVER_CONTROL_SUFFIX ".ctl"
#define SERVER_CONTROL_HEADER "ivlab-server 1"
#define SERVER_CONTROL_PID "pid"
#define SERVER_CONTROL_SOCKET "socket"
#define SERVER_CONTROL_SIZE "size"
#define SERVER_CONTROL_VECTORS "vectors"
#define SERVER_CONTROL_SHM "shm"             /* "memfd", "posix:/NAME", "file:PATH" */
#define SERVER_CONTROL_MAX_PEERS "max-peers"
#define SERVER_CONTROL_PEER_COUNT "peer-count"
#define SERVER_CONTROL_PEERS "peers"         /* connected ids, sorted, space-separated */
#define SERVER_CONTROL_BACKLOG "backlog"     /* ids with messages not yet read */
#define SERVER_CONTROL_END "end"
/* All 65536 ids, in peers and in backlog, take under 1 MiB. */
#define SERVER_CONTROL_REPORT_MAX (1 << 20)

/* "PATH.ctl" for socket_path. */
char *server_control_path(const char *socket_path);

#endif
