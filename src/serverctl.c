/* serverctl.c: the other side of a running `ivlab server`: read its control
 * socket's report, start a daemon and wait until it listens, stop one. */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "ivlab.h"
#include "run.h"
#include "serverctl.h"

/* How long a server may take to send its report. */
#define SERVERCTL_QUERY_TIMEOUT_S 5

void serverctl_info_clear(struct serverctl_info *info)
{
	g_free(info->shm);
	g_free(info->socket_path);
	if (info->peer_ids)
		g_array_unref(info->peer_ids);
	memset(info, 0, sizeof(*info));
}

/* ---- query ---- */

static gboolean parse_uint(const char *text, guint64 max, guint64 *value)
{
	return g_ascii_string_to_unsigned(text, 10, 0, max, value, NULL);
}

static gboolean parse_ids(const char *text, GArray *ids)
{
	g_auto(GStrv) words = g_strsplit(text, " ", -1);

	for (guint i = 0; words[i]; i++) {
		guint64 value;
		guint id;

		if (!*words[i])
			continue;
		if (!parse_uint(words[i], SERVER_PEER_ID_MAX, &value))
			return FALSE;
		id = (guint)value;
		g_array_append_val(ids, id);
	}
	return TRUE;
}

/* One "key value" line into info; FALSE if a known key has a bad value. */
static gboolean parse_line(const char *key, const char *arg, struct serverctl_info *info)
{
	guint64 value;

	if (strcmp(key, SERVER_CONTROL_PID) == 0) {
		if (!parse_uint(arg, G_MAXINT32, &value))
			return FALSE;
		info->pid = (pid_t)value;
	} else if (strcmp(key, SERVER_CONTROL_SOCKET) == 0) {
		g_free(info->socket_path);
		info->socket_path = g_strdup(arg);
	} else if (strcmp(key, SERVER_CONTROL_SIZE) == 0) {
		return parse_uint(arg, G_MAXUINT64, &info->size);
	} else if (strcmp(key, SERVER_CONTROL_VECTORS) == 0) {
		if (!parse_uint(arg, SERVER_VECTORS_MAX, &value))
			return FALSE;
		info->vectors = (guint)value;
	} else if (strcmp(key, SERVER_CONTROL_SHM) == 0) {
		g_free(info->shm);
		info->shm = g_strdup(arg);
	} else if (strcmp(key, SERVER_CONTROL_MAX_PEERS) == 0) {
		if (!parse_uint(arg, SERVER_PEERS_LIMIT, &value))
			return FALSE;
		info->max_peers = (guint)value;
	} else if (strcmp(key, SERVER_CONTROL_BACKLOG) == 0) {
		g_autoptr(GArray) ids = g_array_new(FALSE, FALSE, sizeof(guint));

		if (!parse_ids(arg, ids))
			return FALSE;
		info->backlogged = ids->len;
	} else if (strcmp(key, SERVER_CONTROL_PEERS) == 0) {
		g_array_set_size(info->peer_ids, 0);
		return parse_ids(arg, info->peer_ids);
	}
	/* Other keys (peer-count, or a newer server's) are not needed. */
	return TRUE;
}

static gboolean parse_report(const char *path, const char *text, struct serverctl_info *info,
			     GError **error)
{
	g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
	gboolean ended = FALSE;

	if (!g_str_has_prefix(text, SERVER_CONTROL_HEADER "\n"))
		return ivlab_fail(error, "%s: not an ivlab server control socket", path);
	info->peer_ids = g_array_new(FALSE, FALSE, sizeof(guint));
	for (guint i = 1; lines[i] && !ended; i++) {
		const char *line = lines[i];
		const char *space = strchr(line, ' ');
		g_autofree char *key = space ? g_strndup(line, space - line) : g_strdup(line);

		ended = strcmp(key, SERVER_CONTROL_END) == 0;
		if (!ended && !parse_line(key, space ? space + 1 : "", info))
			return ivlab_fail(error, "%s: bad line in the server's report: %s", path, line);
	}
	if (!ended || !info->vectors || !info->size)
		return ivlab_fail(error, "%s: truncated report from the server", path);
	return TRUE;
}

/* Everything the server at control_path sends until EOF, in text. */
static gboolean read_report(int fd, const char *control_path, GString *text, GError **error)
{
	gint64 deadline = g_get_monotonic_time() + SERVERCTL_QUERY_TIMEOUT_S * G_USEC_PER_SEC;

	for (;;) {
		char buf[4096];
		struct timeval tv;
		gint64 left = deadline - g_get_monotonic_time();
		ssize_t n;

		if (left <= 0)
			return ivlab_fail(error, "%s: the server did not answer within %d s",
					  control_path, SERVERCTL_QUERY_TIMEOUT_S);
		tv.tv_sec = left / G_USEC_PER_SEC;
		tv.tv_usec = left % G_USEC_PER_SEC;
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		n = recv(fd, buf, sizeof(buf), 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
			return ivlab_fail(error, "%s: recv: %s", control_path, g_strerror(errno));
		if (n == 0)
			return TRUE;
		if (n > 0)
			g_string_append_len(text, buf, n);
		if (text->len > SERVER_CONTROL_REPORT_MAX)
			return ivlab_fail(error, "%s: the server's report is longer than %d bytes",
					  control_path, SERVER_CONTROL_REPORT_MAX);
	}
}

/* The report, and who sent it (cred may be NULL). */
static gboolean query(const char *socket_path, struct serverctl_info *info, struct ucred *cred,
		      GError **error)
{
	g_autofree char *path = server_control_path(socket_path);
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	g_autoptr(GString) text = g_string_new(NULL);
	gboolean ok;
	int fd;

	memset(info, 0, sizeof(*info));
	if (strlen(path) >= sizeof(addr.sun_path))
		return ivlab_fail(error, "%s: path too long for a UNIX socket", path);
	g_strlcpy(addr.sun_path, path, sizeof(addr.sun_path));
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return ivlab_fail(error, "socket: %s", g_strerror(errno));
	if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		int saved = errno;

		close(fd);
		if (saved == ENOENT || saved == ECONNREFUSED)
			return ivlab_fail(error, "%s: no ivlab server is running there (%s)",
					  socket_path, g_strerror(saved));
		return ivlab_fail(error, "%s: connect: %s", path, g_strerror(saved));
	}
	ok = read_report(fd, path, text, error);
	if (ok && cred) {
		socklen_t length = sizeof(*cred);

		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, cred, &length) < 0)
			ok = ivlab_fail_errno(error, "%s: SO_PEERCRED", path);
	}
	close(fd);
	if (!ok)
		return FALSE;
	if (!parse_report(path, text->str, info, error)) {
		serverctl_info_clear(info);
		return FALSE;
	}
	return TRUE;
}

gboolean serverctl_query(const char *socket_path, struct serverctl_info *info, GError **error)
{
	return query(socket_path, info, NULL, error);
}

gboolean serverctl_running(const char *socket_path)
{
	struct serverctl_info info;
	gboolean running = serverctl_query(socket_path, &info, NULL);

	if (running)
		serverctl_info_clear(&info);
	return running;
}

/* ---- spawn ---- */

/* `ivlab server --daemon` with opts as options. */
static char **daemon_argv(const char *ivlab_binary, const struct server_options *opts)
{
	GPtrArray *argv = g_ptr_array_new();

	g_ptr_array_add(argv, g_strdup(ivlab_binary));
	g_ptr_array_add(argv, g_strdup("server"));
	g_ptr_array_add(argv, g_strdup("--daemon"));
	g_ptr_array_add(argv, g_strdup_printf("--socket=%s", opts->socket_path));
	g_ptr_array_add(argv, g_strdup_printf("--size=%" G_GUINT64_FORMAT, opts->size));
	g_ptr_array_add(argv, g_strdup_printf("--vectors=%u", opts->vectors));
	if (opts->shm_kind == SERVER_SHM_POSIX)
		g_ptr_array_add(argv, g_strdup_printf("--shm-name=%s", opts->shm_name));
	else if (opts->shm_kind == SERVER_SHM_FILE)
		g_ptr_array_add(argv, g_strdup_printf("--shm-dir=%s", opts->shm_dir));
	if (opts->max_peers)
		g_ptr_array_add(argv, g_strdup_printf("--max-peers=%u", opts->max_peers));
	if (opts->socket_mode >= 0)
		g_ptr_array_add(argv, g_strdup_printf("--socket-mode=%04o", opts->socket_mode));
	if (opts->socket_group)
		g_ptr_array_add(argv, g_strdup_printf("--socket-group=%s", opts->socket_group));
	if (opts->stall_ms)
		g_ptr_array_add(argv, g_strdup_printf("--stall-timeout=%d", opts->stall_ms));
	if (opts->pidfile)
		g_ptr_array_add(argv, g_strdup_printf("--pidfile=%s", opts->pidfile));
	if (opts->log_file)
		g_ptr_array_add(argv, g_strdup_printf("--log-file=%s", opts->log_file));
	g_ptr_array_add(argv, NULL);
	return (char **)g_ptr_array_free(argv, FALSE);
}

gboolean serverctl_spawn_binary(const char *ivlab_binary, const struct server_options *opts,
				GError **error)
{
	g_auto(GStrv) argv = daemon_argv(ivlab_binary, opts);
	g_auto(IvlabRun) run = { .argv = (const char *const *)argv, .may_fail = TRUE };
	const char *message;

	/* `ivlab server --daemon` exits once its grandchild listens (which
	 * holds /dev/null, not our pipes), or with the grandchild's error on
	 * stderr. */
	if (!ivlab_run(&run, error))
		return FALSE;
	if (run.status == 0)
		return TRUE;
	g_strstrip(run.err);
	/* main() wrote "ivlab: what: detail"; keep what and detail. */
	message = g_str_has_prefix(run.err, "ivlab: ") ? run.err + strlen("ivlab: ") : run.err;
	return ivlab_fail(error, "%s", *message ? message : "ivlab server failed without a message");
}

gboolean serverctl_spawn(const struct server_options *opts, GError **error)
{
	g_autoptr(GError) link_error = NULL;
	g_autofree char *self = g_file_read_link("/proc/self/exe", &link_error);

	if (!self)
		return ivlab_fail(error, "cannot find the ivlab binary: %s", link_error->message);
	return serverctl_spawn_binary(self, opts, error);
}

/* ---- stop ---- */

/* A socket file nobody listens on (connect is refused). */
static gboolean socket_is_dead(const char *path)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	struct stat st;
	int fd, status;

	if (lstat(path, &st) < 0 || !S_ISSOCK(st.st_mode) || strlen(path) >= sizeof(addr.sun_path))
		return FALSE;
	g_strlcpy(addr.sun_path, path, sizeof(addr.sun_path));
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return FALSE;
	status = connect(fd, (struct sockaddr *)&addr, sizeof(addr));
	status = status < 0 && errno == ECONNREFUSED;
	close(fd);
	return status;
}

/* Alive and not a zombie nobody reaps. */
static gboolean process_alive(pid_t pid)
{
	g_autofree char *path = g_strdup_printf("/proc/%ld/stat", (long)pid);
	g_autofree char *text = NULL;
	const char *paren;

	if (kill(pid, 0) < 0 && errno == ESRCH)
		return FALSE;
	if (!g_file_get_contents(path, &text, NULL, NULL))
		return FALSE;
	paren = strrchr(text, ')');
	return !(paren && paren[1] == ' ' && (paren[2] == 'Z' || paren[2] == 'X'));
}

/* The inodes of the sockets listening on path (/proc/net/unix). */
static GHashTable *listening_inodes(const char *path)
{
	GHashTable *inodes = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	g_autofree char *text = NULL;
	g_auto(GStrv) lines = NULL;

	if (!g_file_get_contents("/proc/net/unix", &text, NULL, NULL))
		return inodes;
	lines = g_strsplit(text, "\n", -1);
	/* Num RefCount Protocol Flags Type St Inode Path */
	for (guint i = 1; lines[i]; i++) {
		g_auto(GStrv) fields = g_strsplit_set(lines[i], " ", -1);
		const char *words[8];
		guint count = 0;

		for (guint j = 0; fields[j] && count < G_N_ELEMENTS(words); j++)
			if (*fields[j])
				words[count++] = fields[j];
		/* Flags 00010000: __SO_ACCEPTCON, a listening socket. */
		if (count == 8 && strcmp(words[7], path) == 0 && strcmp(words[3], "00010000") == 0)
			g_hash_table_add(inodes, g_strdup_printf("socket:[%s]", words[6]));
	}
	return inodes;
}

/* Whether pid has one of inodes open. */
static gboolean process_holds(pid_t pid, GHashTable *inodes)
{
	g_autofree char *fd_dir = g_strdup_printf("/proc/%ld/fd", (long)pid);
	g_autoptr(GDir) dir = g_dir_open(fd_dir, 0, NULL);
	const char *name;

	while (dir && g_hash_table_size(inodes) && (name = g_dir_read_name(dir))) {
		g_autofree char *link_path = g_build_filename(fd_dir, name, NULL);
		g_autofree char *target = g_file_read_link(link_path, NULL);

		if (target && g_hash_table_contains(inodes, target))
			return TRUE;
	}
	return FALSE;
}

/* A control socket can be faked (any process can bind PATH.ctl and name
 * any pid): signal only the process that answered, if it is ours to stop
 * and it listens on the server's socket. */
static gboolean may_signal(const char *socket_path, pid_t pid, const struct ucred *cred,
			   GError **error)
{
	g_autofree char *absolute = g_canonicalize_filename(socket_path, NULL);
	g_autoptr(GHashTable) inodes = NULL;

	if (cred->pid != pid)
		return ivlab_fail(error, "%s: the control socket is answered by pid %ld, not by "
				  "the server pid %ld it names: not signalled", socket_path,
				  (long)cred->pid, (long)pid);
	if (cred->uid != geteuid() && geteuid() != 0)
		return ivlab_fail(error, "%s: the server pid %ld belongs to uid %ld, not to us: "
				  "not signalled", socket_path, (long)pid, (long)cred->uid);
	inodes = listening_inodes(absolute);
	if (!process_holds(pid, inodes))
		return ivlab_fail(error, "%s: pid %ld answers on the control socket but does not "
				  "listen on %s: not signalled", socket_path, (long)pid, absolute);
	return TRUE;
}

gboolean serverctl_stop(const char *socket_path, int timeout_ms, GError **error)
{
	struct serverctl_info info;
	struct ucred cred = { 0 };
	g_autoptr(GError) query_error = NULL;
	g_autofree char *control = server_control_path(socket_path);
	gint64 deadline = g_get_monotonic_time() + timeout_ms * (gint64)1000;
	pid_t pid;

	if (!query(socket_path, &info, &cred, &query_error)) {
		/* Nobody serves: clear what a crashed server left. A server
		 * that is alive but slow to answer keeps its sockets. */
		if (socket_is_dead(socket_path))
			unlink(socket_path);
		if (socket_is_dead(control))
			unlink(control);
		if (g_file_test(socket_path, G_FILE_TEST_EXISTS))
			return ivlab_fail(error, "%s", query_error->message);
		return TRUE;
	}
	pid = info.pid;
	serverctl_info_clear(&info);
	if (pid > 1 && !may_signal(socket_path, pid, &cred, error))
		return FALSE;
	if (pid <= 1 || kill(pid, SIGTERM) < 0)
		return ivlab_fail(error, "%s: cannot signal server pid %ld: %s", socket_path,
				  (long)pid, g_strerror(pid <= 1 ? EINVAL : errno));
	while (g_file_test(socket_path, G_FILE_TEST_EXISTS) || process_alive(pid)) {
		if (g_get_monotonic_time() >= deadline)
			return ivlab_fail(error, "%s: server pid %ld did not stop within %d ms",
					  socket_path, (long)pid, timeout_ms);
		g_usleep(10000);
	}
	return TRUE;
}

/* Is pid an `ivlab server`? Pids recycle: nothing else gets a signal. */
static gboolean is_ivlab_server(pid_t pid)
{
	g_autofree char *path = g_strdup_printf("/proc/%ld/cmdline", (long)pid);
	g_autofree char *cmdline = NULL;
	gsize length = 0;

	return g_file_get_contents(path, &cmdline, &length, NULL) &&
	       memmem(cmdline, length, "server", strlen("server")) &&
	       memmem(cmdline, length, "ivlab", strlen("ivlab"));
}

gboolean serverctl_stop_pidfile(const char *pidfile, int timeout_ms, GError **error)
{
	g_autofree char *text = NULL;
	gint64 deadline = g_get_monotonic_time() + timeout_ms * (gint64)1000;
	guint64 pid = 0;

	if (!g_file_get_contents(pidfile, &text, NULL, NULL))
		return TRUE;
	g_strstrip(text);
	if (g_ascii_string_to_unsigned(text, 10, 2, G_MAXINT, &pid, NULL) &&
	    is_ivlab_server((pid_t)pid)) {
		ivlab_debug("stopping server pid %" G_GUINT64_FORMAT " (%s)", pid, pidfile);
		kill((pid_t)pid, SIGTERM);
		while (process_alive((pid_t)pid) && g_get_monotonic_time() < deadline)
			g_usleep(10000);
		if (process_alive((pid_t)pid)) {
			kill((pid_t)pid, SIGKILL);
			unlink(pidfile);
			return ivlab_fail(error, "server pid %" G_GUINT64_FORMAT " ignored SIGTERM for "
					  "%d ms: killed", pid, timeout_ms);
		}
	}
	unlink(pidfile);
	return TRUE;
}
