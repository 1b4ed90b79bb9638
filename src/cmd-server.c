/* cmd-server.c: `ivlab server`, the ivshmem server daemon around the engine
 * in server.c (options, daemonizing, pidfile, logging, signals), and its
 * status query. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <glib/gstdio.h>

#include "ivlab.h"
#include "server.h"
#include "serverctl.h"

enum log_target {
	LOG_TO_STDERR,
	LOG_TO_FILE,
	LOG_TO_SYSLOG,
};

struct log_sink {
	enum log_target target;
	char *path;
	FILE *file;
};

static void log_message(int priority, const char *message, gpointer data)
{
	struct log_sink *sink = data;

	if (priority >= LOG_INFO && ivlab_verbosity() < 1)
		return;
	switch (sink->target) {
	case LOG_TO_STDERR:
		fprintf(stderr, "ivlab server: %s\n", message);
		break;
	case LOG_TO_FILE: {
		g_autoptr(GDateTime) now = g_date_time_new_now_utc();
		g_autofree char *stamp = g_date_time_format(now, "%Y-%m-%dT%H:%M:%S");

		if (!sink->file)
			return;
		fprintf(sink->file, "%s.%03dZ ivlab-server[%ld]: %s\n", stamp,
			g_date_time_get_microsecond(now) / 1000, (long)getpid(), message);
		fflush(sink->file);
		break;
	}
	case LOG_TO_SYSLOG:
		syslog(priority, "%s", message);
		break;
	}
}

/* Appending to whatever --log-file names would let a symlink or a FIFO
 * planted there take our lines: a regular file, not through a symlink. */
static gboolean log_open(struct log_sink *sink, GError **error)
{
	struct stat st;
	FILE *file;
	int fd;

	if (sink->target != LOG_TO_FILE)
		return TRUE;
	fd = open(sink->path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC,
		  0640);
	if (fd < 0) {
		int saved = errno;

		if (saved == ELOOP)
			return ivlab_fail(error, "--log-file: %s: is a symbolic link (refused)",
					  sink->path);
		return ivlab_fail(error, "--log-file: %s: %s", sink->path, g_strerror(saved));
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return ivlab_fail(error, "--log-file: %s: not a regular file", sink->path);
	}
	fcntl(fd, F_SETFL, O_APPEND);
	file = fdopen(fd, "a");
	if (!file) {
		close(fd);
		return ivlab_fail_errno(error, "--log-file: %s", sink->path);
	}
	if (sink->file)
		fclose(sink->file);
	sink->file = file;
	return TRUE;
}

/* A server holds two fds per vector per peer: ask for all the kernel allows. */
static void raise_fd_limit(void)
{
	struct rlimit limit;

	if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
		limit.rlim_cur = limit.rlim_max;
		setrlimit(RLIMIT_NOFILE, &limit);
	}
}

/* The pid of the server holding pidfile's lock, for the message. */
static long pidfile_holder(int fd)
{
	char text[32] = "";
	ssize_t n = pread(fd, text, sizeof(text) - 1, 0);
	guint64 pid = 0;

	if (n > 0) {
		text[n] = '\0';
		g_strstrip(text);
		g_ascii_string_to_unsigned(text, 10, 1, G_MAXINT, &pid, NULL);
	}
	return (long)pid;
}

/* The pidfile stays open and locked (flock) while the server lives: a
 * second server given it is refused, and only its holder removes it. */
static int write_pidfile(const char *path, GError **error)
{
	g_autofree char *text = g_strdup_printf("%ld\n", (long)getpid());
	struct stat st;
	int fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);

	if (fd < 0) {
		ivlab_fail_errno(error, "--pidfile: %s", path);
		return -1;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		ivlab_fail(error, "--pidfile: %s: not a regular file", path);
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		long holder = pidfile_holder(fd);

		close(fd);
		if (holder)
			ivlab_fail(error, "--pidfile: %s is held by a running server (pid %ld)",
				   path, holder);
		else
			ivlab_fail(error, "--pidfile: %s is held by a running server", path);
		return -1;
	}
	if (ftruncate(fd, 0) < 0 || pwrite(fd, text, strlen(text), 0) != (ssize_t)strlen(text)) {
		ivlab_fail_errno(error, "--pidfile: %s", path);
		close(fd);
		return -1;
	}
	return fd;
}

/* At exit: the pidfile goes if it is still the one we locked. */
static void remove_pidfile(const char *path, int fd)
{
	struct stat ours, now;

	if (fd < 0)
		return;
	if (fstat(fd, &ours) == 0 && lstat(path, &now) == 0 && ours.st_ino == now.st_ino &&
	    ours.st_dev == now.st_dev)
		unlink(path);
	close(fd);
}

/* In a daemon's grandchild: tell the waiting parent how start-up went. */
static void report_ready(int ready_fd, const char *error_text)
{
	const char *text = error_text ? error_text : "ok";
	gsize len = strlen(text), done = 0;

	while (done < len) {
		ssize_t n = write(ready_fd, text + done, len - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		done += n;
	}
	close(ready_fd);
}

/* The parent side of --daemon: wait for the grandchild's verdict. */
static gboolean wait_ready(int ready_fd, pid_t child, GError **error)
{
	g_autoptr(GString) text = g_string_new(NULL);
	char buf[512];
	ssize_t n;
	int status;

	while ((n = read(ready_fd, buf, sizeof(buf))) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			break;
		g_string_append_len(text, buf, n);
	}
	close(ready_fd);
	while (waitpid(child, &status, 0) < 0 && errno == EINTR)
		;
	if (strcmp(text->str, "ok") == 0)
		return TRUE;
	g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED, "%s",
		    text->len ? text->str : "server: the daemon died while starting");
	return FALSE;
}

static void detach_stdio(void)
{
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);

	if (null < 0)
		return;
	dup2(null, STDIN_FILENO);
	dup2(null, STDOUT_FILENO);
	dup2(null, STDERR_FILENO);
	if (null > STDERR_FILENO)
		close(null);
}

/* The engine names its settings in words (server.h); here they are options. */
static const struct {
	const char *setting;
	const char *option;
} setting_options[] = {
	{ SERVER_SETTING_SOCKET, "--socket" },
	{ SERVER_SETTING_SIZE, "--size" },
	{ SERVER_SETTING_VECTORS, "--vectors" },
	{ SERVER_SETTING_SHM_NAME, "--shm-name" },
	{ SERVER_SETTING_SHM_DIR, "--shm-dir" },
	{ SERVER_SETTING_MAX_PEERS, "--max-peers" },
	{ SERVER_SETTING_SOCKET_MODE, "--socket-mode" },
	{ SERVER_SETTING_SOCKET_GROUP, "--socket-group" },
	{ SERVER_SETTING_STALL, "--stall-timeout" },
};

/* "size: 3MiB is not ..." -> "--size: 3MiB is not ...". */
static void name_option(GError *error)
{
	for (gsize i = 0; i < G_N_ELEMENTS(setting_options); i++) {
		gsize len = strlen(setting_options[i].setting);

		if (strncmp(error->message, setting_options[i].setting, len) == 0 &&
		    error->message[len] == ':') {
			char *text = g_strconcat(setting_options[i].option, error->message + len, NULL);

			g_free(error->message);
			error->message = text;
			return;
		}
	}
}

static void log_close(struct log_sink *sink)
{
	if (sink->file)
		fclose(sink->file);
	g_free(sink->path);
	memset(sink, 0, sizeof(*sink));
}

/* --daemon: fork twice, so the daemon is no session leader and can never
 * get a terminal. In the calling process, returns once the daemon listens
 * (TRUE, *ready_fd -1) or failed (FALSE, its message). In the daemon,
 * returns TRUE with *ready_fd the pipe for report_ready(). */
static gboolean daemonize(int *ready_fd, GError **error)
{
	int pipe_fds[2];
	pid_t child;

	*ready_fd = -1;
	if (pipe2(pipe_fds, O_CLOEXEC) < 0)
		return ivlab_fail(error, "pipe: %s", g_strerror(errno));
	fflush(NULL);
	child = fork();
	if (child < 0)
		return ivlab_fail(error, "fork: %s", g_strerror(errno));
	if (child > 0) {
		close(pipe_fds[1]);
		return wait_ready(pipe_fds[0], child, error);
	}
	close(pipe_fds[0]);
	setsid();
	child = fork();
	/* The middle process ends here: _exit() keeps it from running any
	 * more of the command (stdio flushes, the caller's clean-up). */
	if (child < 0) {
		report_ready(pipe_fds[1], "fork: cannot start the daemon");
		_exit(1);
	}
	if (child > 0)
		_exit(0);
	*ready_fd = pipe_fds[1];
	return TRUE;
}

/* Signals as events, the engine started, the pidfile written. Messages
 * name options, as the engine's settings are options here. */
static struct server *serve_start(const struct server_options *opts, int *signal_fd,
				  int *pidfile_fd, GError **error)
{
	g_autoptr(GError) local = NULL;
	struct server *server;
	sigset_t signals;

	raise_fd_limit();
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&signals);
	sigaddset(&signals, SIGTERM);
	sigaddset(&signals, SIGINT);
	sigaddset(&signals, SIGHUP);
	sigprocmask(SIG_BLOCK, &signals, NULL);
	*signal_fd = signalfd(-1, &signals, SFD_CLOEXEC | SFD_NONBLOCK);

	server = server_start(opts, &local);
	if (server && *signal_fd < 0)
		g_set_error(&local, IVLAB_ERROR, IVLAB_ERROR_FAILED, "signalfd: %s", g_strerror(errno));
	if (server && !local && opts->pidfile)
		*pidfile_fd = write_pidfile(opts->pidfile, &local);
	if (!local)
		return server;
	server_stop(server);
	if (*signal_fd >= 0)
		close(*signal_fd);
	*signal_fd = -1;
	name_option(local);
	g_propagate_error(error, g_steal_pointer(&local));
	return NULL;
}

static void log_serving(const struct server_options *opts, struct log_sink *sink)
{
	static const char *const kinds[] = {
		[SERVER_SHM_MEMFD] = "memfd",
		[SERVER_SHM_POSIX] = "POSIX shm",
		[SERVER_SHM_FILE] = "file",
	};
	g_autofree char *size = ivlab_format_size(opts->size);
	g_autofree char *text = g_strdup_printf("serving %s: %s of %s, %u vectors, pid %ld",
						 opts->socket_path, size, kinds[opts->shm_kind],
						 opts->vectors, (long)getpid());

	log_message(LOG_INFO, text, sink);
}

/* Until SIGTERM or SIGINT (TRUE) or an error of the engine (FALSE). */
static gboolean serve_loop(struct server *server, int signal_fd, struct log_sink *sink,
			   GError **error)
{
	for (;;) {
		struct pollfd fds[2] = {
			{ .fd = server_fd(server), .events = POLLIN },
			{ .fd = signal_fd, .events = POLLIN },
		};
		struct signalfd_siginfo info;

		if (poll(fds, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			return ivlab_fail(error, "poll: %s", g_strerror(errno));
		}
		if (fds[1].revents && read(signal_fd, &info, sizeof(info)) == sizeof(info)) {
			if (info.ssi_signo == SIGHUP) {
				g_autoptr(GError) reopen = NULL;

				if (!log_open(sink, &reopen))
					log_message(LOG_WARNING, reopen->message, sink);
				continue;
			}
			g_autofree char *text = g_strdup_printf("SIG%s: shutting down (%u peers connected)",
								 sigabbrev_np(info.ssi_signo),
								 server_peer_count(server));
			log_message(LOG_INFO, text, sink);
			return TRUE;
		}
		if (fds[0].revents && !server_handle_events(server, 0, error))
			return FALSE;
	}
}

static gboolean serve(const struct server_options *opts, GError **error)
{
	struct log_sink sink = { .target = LOG_TO_STDERR };
	int ready_fd = -1, signal_fd = -1, pidfile_fd = -1;
	struct server *server;
	gboolean ok;

	if (opts->log_file) {
		sink.target = LOG_TO_FILE;
		sink.path = g_strdup(opts->log_file);
	} else if (opts->daemonize) {
		sink.target = LOG_TO_SYSLOG;
	}
	if (!log_open(&sink, error)) {
		log_close(&sink);
		return FALSE;
	}
	if (opts->daemonize) {
		ok = daemonize(&ready_fd, error);
		if (!ok || ready_fd < 0) {
			log_close(&sink);
			return ok;
		}
		if (sink.target == LOG_TO_SYSLOG)
			openlog("ivlab-server", LOG_PID, LOG_DAEMON);
	}
	server = serve_start(opts, &signal_fd, &pidfile_fd, error);
	if (!server) {
		if (ready_fd >= 0) {
			/* The parent prints the message; main()'s copy goes nowhere. */
			report_ready(ready_fd, (*error)->message);
			detach_stdio();
		}
		log_close(&sink);
		return FALSE;
	}
	server_set_log_func(server, log_message, &sink);
	log_serving(opts, &sink);
	if (ready_fd >= 0) {
		if (chdir("/") < 0)
			log_message(LOG_WARNING, "chdir /: failed", &sink);
		detach_stdio();
		report_ready(ready_fd, NULL);
	}
	ok = serve_loop(server, signal_fd, &sink, error);
	server_stop(server);
	remove_pidfile(opts->pidfile, pidfile_fd);
	close(signal_fd);
	/* A daemon's stderr is /dev/null: its last error goes to the log. */
	if (!ok && opts->daemonize)
		log_message(LOG_ERR, (*error)->message, &sink);
	log_close(&sink);
	return ok;
}

/* The JSON of `server --status --json` (see ivlab(1)). */
static JsonNode *status_json(const struct serverctl_info *info)
{
	g_autoptr(JsonBuilder) builder = json_builder_new();

	json_builder_begin_object(builder);
	json_builder_set_member_name(builder, "socket");
	json_builder_add_string_value(builder, info->socket_path);
	json_builder_set_member_name(builder, "pid");
	json_builder_add_int_value(builder, info->pid);
	json_builder_set_member_name(builder, "size");
	json_builder_add_int_value(builder, (gint64)info->size);
	json_builder_set_member_name(builder, "vectors");
	json_builder_add_int_value(builder, info->vectors);
	json_builder_set_member_name(builder, "shm");
	json_builder_add_string_value(builder, info->shm);
	json_builder_set_member_name(builder, "max_peers");
	json_builder_add_int_value(builder, info->max_peers);
	json_builder_set_member_name(builder, "backlogged");
	json_builder_add_int_value(builder, info->backlogged);
	json_builder_set_member_name(builder, "peers");
	json_builder_begin_array(builder);
	for (guint i = 0; i < info->peer_ids->len; i++)
		json_builder_add_int_value(builder, g_array_index(info->peer_ids, guint, i));
	json_builder_end_array(builder);
	json_builder_end_object(builder);
	return json_builder_get_root(builder);
}

static gboolean print_status(const char *socket_path, gboolean json, GError **error)
{
	struct serverctl_info info;
	g_autoptr(GString) out = g_string_new(NULL);

	if (!serverctl_query(socket_path, &info, error))
		return FALSE;
	if (json) {
		g_autoptr(JsonNode) root = status_json(&info);
		g_autofree char *text = json_to_string(root, FALSE);

		g_string_append_printf(out, "%s\n", text);
	} else {
		g_autofree char *size = ivlab_format_size(info.size);

		g_string_append_printf(out, "socket:    %s\n", info.socket_path);
		g_string_append_printf(out, "pid:       %ld\n", (long)info.pid);
		g_string_append_printf(out, "size:      %s (%" G_GUINT64_FORMAT " bytes)\n", size,
				       info.size);
		g_string_append_printf(out, "vectors:   %u\n", info.vectors);
		g_string_append_printf(out, "shm:       %s\n", info.shm);
		g_string_append_printf(out, "max peers: %u\n", info.max_peers);
		g_string_append_printf(out, "peers:     %u", info.peer_ids->len);
		for (guint i = 0; i < info.peer_ids->len; i++)
			g_string_append_printf(out, "%s%u", i ? " " : " (", g_array_index(info.peer_ids, guint, i));
		g_string_append(out, info.peer_ids->len ? ")\n" : "\n");
		if (info.backlogged)
			g_string_append_printf(out, "backlog:   %u peer%s not caught up with "
					       "their messages\n", info.backlogged,
					       info.backlogged == 1 ? "" : "s");
	}
	fputs(out->str, stdout);
	serverctl_info_clear(&info);
	return TRUE;
}

static gboolean parse_count(const struct ivlab_cmd *cmd, const char *option, const char *text,
			    guint64 min, guint64 max, guint *value, GError **error)
{
	guint64 number;

	if (!g_ascii_string_to_unsigned(text, 10, min, max, &number, NULL))
		return cmd_usage_error(error, cmd, "%s: '%s' is not a number in %" G_GUINT64_FORMAT
				       "..%" G_GUINT64_FORMAT, option, text, min, max);
	*value = (guint)number;
	return TRUE;
}

static char *absolute(const char *path)
{
	return path ? g_canonicalize_filename(path, NULL) : NULL;
}

/* The command line as given: option texts, and what was made of them. */
struct server_args {
	char *socket_path, *size_text, *vectors_text, *shm_name, *shm_dir, *max_peers_text;
	char *mode_text, *group, *pidfile, *log_file, *stall_text;
	gboolean daemonize, foreground, status, json, stop;
	/* Paths made absolute (the daemon runs in /). */
	char *abs_socket, *abs_pidfile, *abs_log, *abs_dir;
};

static void server_args_clear(struct server_args *args)
{
	char **strings[] = {
		&args->socket_path, &args->size_text, &args->vectors_text, &args->shm_name,
		&args->shm_dir, &args->max_peers_text, &args->mode_text, &args->group,
		&args->pidfile, &args->log_file, &args->stall_text, &args->abs_socket,
		&args->abs_pidfile, &args->abs_log, &args->abs_dir,
	};

	for (gsize i = 0; i < G_N_ELEMENTS(strings); i++)
		g_clear_pointer(strings[i], g_free);
}

typedef struct server_args ServerArgs;
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(ServerArgs, server_args_clear)

/* The engine's options from the command line; strings stay in args. */
static gboolean server_args_options(const struct ivlab_cmd *cmd, struct server_args *args,
				    struct server_options *opts, GError **error)
{
	g_autoptr(GError) bad = NULL;
	guint stall = 0;
	guint64 mode;

	server_options_init(opts);
	opts->socket_path = args->abs_socket = absolute(args->socket_path);
	opts->pidfile = args->abs_pidfile = absolute(args->pidfile);
	opts->log_file = args->abs_log = absolute(args->log_file);
	opts->daemonize = args->daemonize;
	opts->socket_group = args->group;
	if (args->size_text && !ivlab_parse_size(args->size_text, &opts->size))
		return cmd_usage_error(error, cmd, "--size: '%s' is not a size (e.g. 4MiB, 1G)",
				       args->size_text);
	if (args->vectors_text && !parse_count(cmd, "--vectors", args->vectors_text, 1,
					       SERVER_VECTORS_MAX, &opts->vectors, error))
		return FALSE;
	if (args->max_peers_text && !parse_count(cmd, "--max-peers", args->max_peers_text, 1,
						 SERVER_PEERS_LIMIT, &opts->max_peers, error))
		return FALSE;
	if (args->stall_text) {
		if (!parse_count(cmd, "--stall-timeout", args->stall_text, 1, 3600000, &stall, error))
			return FALSE;
		opts->stall_ms = (int)stall;
	}
	if (args->mode_text) {
		if (!g_ascii_string_to_unsigned(args->mode_text, 8, 0, 0777, &mode, NULL))
			return cmd_usage_error(error, cmd, "--socket-mode: '%s' is not an octal mode "
					       "(e.g. 0660)", args->mode_text);
		opts->socket_mode = (int)mode;
	}
	if (args->shm_name) {
		opts->shm_kind = SERVER_SHM_POSIX;
		opts->shm_name = args->shm_name;
	} else if (args->shm_dir) {
		opts->shm_kind = SERVER_SHM_FILE;
		opts->shm_dir = args->abs_dir = absolute(args->shm_dir);
	}
	if (!server_options_check(opts, &bad)) {
		name_option(bad);
		return cmd_usage_error(error, cmd, "%s", bad->message);
	}
	return TRUE;
}

/* The command line; the daemon and the status query run past main's cleanup. */
static struct server_args args;
static struct server_options opts;

static const GOptionEntry entries[] = {
	{ "socket", 's', 0, G_OPTION_ARG_FILENAME, &args.socket_path,
	  "the UNIX socket QEMU connects to (required)", "PATH" },
	{ "size", 'm', 0, G_OPTION_ARG_STRING, &args.size_text,
	  "shared memory size, a power of two: 4MiB (default), 2G, ...", "SIZE" },
	{ "vectors", 'n', 0, G_OPTION_ARG_STRING, &args.vectors_text,
	  "interrupt vectors per peer, 1..64 (default 1); the devices' vectors= must match", "N" },
	{ "shm-name", 0, 0, G_OPTION_ARG_STRING, &args.shm_name,
	  "use POSIX shared memory /dev/shm/NAME instead of a memfd (empty: the memfd)", "NAME" },
	{ "shm-dir", 0, 0, G_OPTION_ARG_FILENAME, &args.shm_dir,
	  "use a file created in DIR (tmpfs, hugetlbfs) instead of a memfd", "DIR" },
	{ "max-peers", 0, 0, G_OPTION_ARG_STRING, &args.max_peers_text,
	  "refuse clients beyond N (default 65536)", "N" },
	{ "socket-mode", 0, 0, G_OPTION_ARG_STRING, &args.mode_text,
	  "octal permissions of the sockets, e.g. 0660", "MODE" },
	{ "socket-group", 0, 0, G_OPTION_ARG_STRING, &args.group,
	  "group owning the sockets, e.g. kvm", "GROUP" },
	{ "stall-timeout", 0, 0, G_OPTION_ARG_STRING, &args.stall_text,
	  "drop a client not reading its messages for MS milliseconds (default 5000)", "MS" },
	{ "foreground", 'F', 0, G_OPTION_ARG_NONE, &args.foreground,
	  "stay in the foreground, log to stderr (the default)", NULL },
	{ "daemon", 'd', 0, G_OPTION_ARG_NONE, &args.daemonize,
	  "detach once the socket is listening; log to syslog", NULL },
	{ "pidfile", 'p', 0, G_OPTION_ARG_FILENAME, &args.pidfile,
	  "write the server's pid to FILE (removed at exit)", "FILE" },
	{ "log-file", 'l', 0, G_OPTION_ARG_FILENAME, &args.log_file,
	  "append log lines to FILE instead (reopened on SIGHUP)", "FILE" },
	{ "status", 0, 0, G_OPTION_ARG_NONE, &args.status,
	  "print what the server on --socket serves, then exit", NULL },
	{ "json", 0, 0, G_OPTION_ARG_NONE, &args.json, "--status as JSON", NULL },
	{ "stop", 0, 0, G_OPTION_ARG_NONE, &args.stop,
	  "stop the server on --socket (SIGTERM) and wait for it", NULL },
	{ NULL }
};
static gboolean cmd_server_check(const struct ivlab_cmd *cmd, int argc, char **argv, GError **error)
{
	if (!args.socket_path)
		return cmd_usage_error(error, cmd, "--socket PATH is required");
	if (!*args.socket_path)
		return cmd_usage_error(error, cmd, "--socket: the path is empty");
	if (args.status + args.stop > 1)
		return cmd_usage_error(error, cmd, "--status and --stop exclude each other");
	if (args.json && !args.status)
		return cmd_usage_error(error, cmd, "--json goes with --status");
	if (args.status || args.stop)
		return TRUE;
	if (args.daemonize && args.foreground)
		return cmd_usage_error(error, cmd, "--daemon and --foreground exclude each other");
	/* --shm-name= (empty) is the memfd default, so a unit can always pass
	 * its configuration's SHM=. */
	if (args.shm_name && !*args.shm_name)
		g_clear_pointer(&args.shm_name, g_free);
	if (args.shm_name && args.shm_dir)
		return cmd_usage_error(error, cmd, "--shm-name and --shm-dir exclude each other");
	return server_args_options(cmd, &args, &opts, error);
}

static gboolean cmd_server_exec(const struct ivlab_cmd *cmd, struct ivlab_ctx *ctx, int argc,
				char **argv, GError **error)
{
	g_auto(ServerArgs) owned = args;

	memset(&args, 0, sizeof(args));
	if (owned.status)
		return print_status(owned.socket_path, owned.json, error);
	if (owned.stop)
		return serverctl_stop(owned.socket_path, 10000, error);
	return serve(&opts, error);
}

const struct ivlab_cmd cmd_server_entry = {
	.name = "server",
	.usage = "--socket PATH [OPTIONS]",
	.summary = "run an ivshmem server (or query one with --status)",
	.description =
		"Serves QEMU ivshmem-doorbell devices (and `ivlab peer`) on a UNIX socket:\n"
		"one shared memory region and VECTORS eventfds per peer. Peer ids go from 0\n"
		"to 65535; each new peer gets the lowest free id above the last one given,\n"
		"wrapping, so an id just freed is not reused at once. PATH.ctl answers\n"
		"--status queries. SIGTERM or SIGINT stops the server and removes its\n"
		"sockets and pidfile.\n"
		"\n"
		"Examples:\n"
		"  ivlab server --socket /run/ivlab/r0.sock --size 16M --vectors 4\n"
		"  ivlab server -d -s /run/ivlab/r0.sock -p /run/ivlab/r0.pid --socket-mode 0660 --socket-group kvm\n"
		"  ivlab server --status --socket /run/ivlab/r0.sock --json",
	.options = entries,
	.check = cmd_server_check,
	.exec = cmd_server_exec,
};
