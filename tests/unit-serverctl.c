/* unit-serverctl.c: serverctl against the real engine run in-process, against
 * fake control sockets (bad reports, a server that ignores SIGTERM), and
 * against real `ivlab server` daemons it spawns and stops. */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <glib/gstdio.h>

#include "ivlab.h"
#include "server.h"
#include "serverctl.h"

/* The built ivlab (make check sets IVLAB); NULL after skipping the test,
 * which fails instead under CI=true. */
static const char *ivlab_binary(void)
{
	const char *ivlab = g_getenv("IVLAB");

	if (ivlab && g_file_test(ivlab, G_FILE_TEST_IS_EXECUTABLE))
		return ivlab;
	if (g_strcmp0(g_getenv("CI"), "true") == 0)
		g_error("IVLAB (the built ivlab binary) is not set");
	g_test_skip("IVLAB (the built ivlab binary) not set");
	return NULL;
}

static char *tmp_dir(void)
{
	char *dir = g_dir_make_tmp("ivlab-unit-serverctl.XXXXXX", NULL);

	g_assert_nonnull(dir);
	return dir;
}

static int listen_unix(const char *path)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	g_strlcpy(addr.sun_path, path, sizeof(addr.sun_path));
	g_assert_cmpint(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), ==, 0);
	g_assert_cmpint(listen(fd, 4), ==, 0);
	return fd;
}

/* ---- the real engine, in this process ---- */

struct engine {
	struct server *server;
	GThread *thread;
	gint stop;
};

static gpointer engine_loop(gpointer data)
{
	struct engine *engine = data;

	while (!g_atomic_int_get(&engine->stop))
		g_assert_true(server_handle_events(engine->server, 20, NULL));
	return NULL;
}

static void engine_start(struct engine *engine, const struct server_options *opts)
{
	g_autoptr(GError) error = NULL;

	engine->server = server_start(opts, &error);
	g_assert_no_error(error);
	engine->thread = g_thread_new("engine", engine_loop, engine);
}

static void engine_stop(struct engine *engine)
{
	g_atomic_int_set(&engine->stop, 1);
	g_thread_join(engine->thread);
	server_stop(engine->server);
}

/* A peer that connects and reads nothing: its setup stays unread. */
static int silent_peer(const char *path)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	g_strlcpy(addr.sun_path, path, sizeof(addr.sun_path));
	g_assert_cmpint(connect(fd, (struct sockaddr *)&addr, sizeof(addr)), ==, 0);
	return fd;
}

static gboolean query_peers(const char *path, guint peers, guint backlogged)
{
	struct serverctl_info info;
	gboolean match;

	g_assert_true(serverctl_query(path, &info, NULL));
	match = info.peer_ids->len == peers && info.backlogged == backlogged;
	serverctl_info_clear(&info);
	return match;
}

static void wait_for_peers(const char *path, guint peers, guint backlogged)
{
	for (int i = 0; i < 500 && !query_peers(path, peers, backlogged); i++)
		g_usleep(10000);
	g_assert_true(query_peers(path, peers, backlogged));
}

static void test_query_engine(void)
{
	g_autofree char *dir = tmp_dir();
	g_autofree char *path = g_build_filename(dir, "s.sock", NULL);
	struct server_options opts;
	struct engine engine = { 0 };
	struct serverctl_info info;
	g_autoptr(GError) error = NULL;
	int first, second;

	server_options_init(&opts);
	opts.socket_path = path;
	opts.size = 64 << 10;
	opts.vectors = 5;
	opts.max_peers = 7;
	g_assert_false(serverctl_running(path));
	engine_start(&engine, &opts);
	g_assert_true(serverctl_running(path));

	g_assert_true(serverctl_query(path, &info, &error));
	g_assert_no_error(error);
	g_assert_cmpint(info.pid, ==, getpid());
	g_assert_cmpstr(info.socket_path, ==, path);
	g_assert_cmpuint(info.size, ==, 64 << 10);
	g_assert_cmpuint(info.vectors, ==, 5);
	g_assert_cmpstr(info.shm, ==, "memfd");
	g_assert_cmpuint(info.max_peers, ==, 7);
	g_assert_cmpuint(info.peer_ids->len, ==, 0);
	g_assert_cmpuint(info.backlogged, ==, 0);
	serverctl_info_clear(&info);
	g_assert_null(info.peer_ids);

	/* Peers that read nothing are connected and behind on their messages. */
	first = silent_peer(path);
	second = silent_peer(path);
	wait_for_peers(path, 2, 2);
	g_assert_true(serverctl_query(path, &info, NULL));
	g_assert_cmpuint(g_array_index(info.peer_ids, guint, 0), ==, 0);
	g_assert_cmpuint(g_array_index(info.peer_ids, guint, 1), ==, 1);
	serverctl_info_clear(&info);
	close(first);
	wait_for_peers(path, 1, 1);
	close(second);
	wait_for_peers(path, 0, 0);

	engine_stop(&engine);
	g_assert_false(serverctl_running(path));
	g_assert_false(serverctl_query(path, &info, &error));
	g_assert_nonnull(strstr(error->message, "no ivlab server is running there"));
	g_rmdir(dir);
}

/* ---- fake control sockets ---- */

struct fake {
	int listen_fd;
	const char *report;
	gsize length;
};

/* Answer one connection with the report, then close. */
static gpointer fake_answer(gpointer data)
{
	struct fake *fake = data;
	int sock = accept(fake->listen_fd, NULL, NULL);
	gsize done = 0;

	while (sock >= 0 && done < fake->length) {
		ssize_t n = send(sock, fake->report + done, fake->length - done, MSG_NOSIGNAL);

		if (n <= 0)
			break;
		done += n;
	}
	if (sock >= 0)
		close(sock);
	return NULL;
}

/* serverctl_query's verdict on a report: NULL if it took it, else its message. */
static char *query_fake(const char *report, gsize length, struct serverctl_info *info)
{
	g_autofree char *dir = tmp_dir();
	g_autofree char *path = g_build_filename(dir, "f.sock", NULL);
	g_autofree char *control = server_control_path(path);
	struct fake fake = { .report = report, .length = length };
	struct serverctl_info local;
	g_autoptr(GError) error = NULL;
	GThread *thread;
	gboolean ok;

	fake.listen_fd = listen_unix(control);
	thread = g_thread_new("fake", fake_answer, &fake);
	ok = serverctl_query(path, info ? info : &local, &error);
	g_thread_join(thread);
	close(fake.listen_fd);
	g_unlink(control);
	g_rmdir(dir);
	if (ok && !info)
		serverctl_info_clear(&local);
	g_assert_true(ok == (error == NULL));
	return ok ? NULL : g_strdup(error->message);
}

#define REPORT_HEAD SERVER_CONTROL_HEADER "\npid 42\nsocket /x.sock\nsize 4096\nvectors 2\n"

static void test_query_reports(void)
{
	static const struct {
		const char *report;
		const char *message; /* NULL: accepted */
	} cases[] = {
		{ REPORT_HEAD "shm memfd\nmax-peers 9\npeers 3 7\nbacklog 7\nend\n", NULL },
		/* Keys a later server may add are ignored; so is what follows end. */
		{ REPORT_HEAD "colour blue\npeers\nend\ngarbage\n", NULL },
		{ "ivlab-server 2\npid 1\nend\n", "not an ivlab server control socket" },
		{ "SSH-2.0-OpenSSH\r\n", "not an ivlab server control socket" },
		{ "", "not an ivlab server control socket" },
		{ REPORT_HEAD "peers 0 1\n", "truncated report from the server" },
		{ SERVER_CONTROL_HEADER "\npid 42\nvectors 2\nend\n", "truncated report" },
		{ REPORT_HEAD "peers 0 65536\nend\n", "bad line in the server's report: peers 0 65536" },
		{ REPORT_HEAD "vectors 65\nend\n", "bad line in the server's report: vectors 65" },
		{ REPORT_HEAD "pid -1\nend\n", "bad line in the server's report: pid -1" },
		{ REPORT_HEAD "backlog x\nend\n", "bad line in the server's report: backlog x" },
	};

	for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
		g_autofree char *message = query_fake(cases[i].report, strlen(cases[i].report), NULL);

		if (!cases[i].message && message)
			g_error("case %zu: refused: %s", i, message);
		if (cases[i].message && (!message || !strstr(message, cases[i].message)))
			g_error("case %zu: got '%s', want '...%s...'", i, message ? message : "(accepted)",
				cases[i].message);
	}

	struct serverctl_info info;
	const char *good = cases[0].report;

	g_assert_null(query_fake(good, strlen(good), &info));
	g_assert_cmpint(info.pid, ==, 42);
	g_assert_cmpstr(info.socket_path, ==, "/x.sock");
	g_assert_cmpuint(info.size, ==, 4096);
	g_assert_cmpuint(info.vectors, ==, 2);
	g_assert_cmpstr(info.shm, ==, "memfd");
	g_assert_cmpuint(info.max_peers, ==, 9);
	g_assert_cmpuint(info.peer_ids->len, ==, 2);
	g_assert_cmpuint(g_array_index(info.peer_ids, guint, 0), ==, 3);
	g_assert_cmpuint(g_array_index(info.peer_ids, guint, 1), ==, 7);
	g_assert_cmpuint(info.backlogged, ==, 1);
	serverctl_info_clear(&info);

	/* A report longer than any server of ours writes is not read to its end. */
	gsize huge_length = SERVER_CONTROL_REPORT_MAX + 4096;
	g_autofree char *huge = g_malloc(huge_length);
	memset(huge, 'x', huge_length);
	memcpy(huge, REPORT_HEAD, strlen(REPORT_HEAD));
	g_autofree char *message = query_fake(huge, huge_length, NULL);
	g_assert_nonnull(message);
	g_assert_nonnull(strstr(message, "the server's report is longer than 1048576 bytes"));
}

/* ---- stop ---- */

static void test_stop_stale(void)
{
	g_autofree char *dir = tmp_dir();
	g_autofree char *path = g_build_filename(dir, "s.sock", NULL);
	g_autofree char *control = server_control_path(path);
	g_autoptr(GError) error = NULL;

	/* Nothing there: nothing to do. */
	g_assert_true(serverctl_stop(path, 100, &error));
	g_assert_no_error(error);
	/* Sockets a crashed server left: removed. */
	close(listen_unix(path));
	close(listen_unix(control));
	g_assert_true(serverctl_stop(path, 100, &error));
	g_assert_no_error(error);
	g_assert_false(g_file_test(path, G_FILE_TEST_EXISTS));
	g_assert_false(g_file_test(control, G_FILE_TEST_EXISTS));
	/* Something that is not a socket: left alone, and an error. */
	g_assert_true(g_file_set_contents(path, "x", 1, NULL));
	g_assert_false(serverctl_stop(path, 100, &error));
	g_assert_nonnull(strstr(error->message, "no ivlab server is running there"));
	g_assert_true(g_file_test(path, G_FILE_TEST_EXISTS));
	g_unlink(path);
	g_rmdir(dir);
}

/* A child that listens on path, answers its control socket with report
 * (or, if NULL, with its own pid) and ignores SIGTERM if asked. */
static pid_t fake_server(const char *path, const char *report, gboolean listen_on_path,
			 gboolean stubborn)
{
	g_autofree char *control = server_control_path(path);
	int ready[2];
	char byte;
	pid_t child;

	g_assert_cmpint(pipe(ready), ==, 0);
	child = fork();
	g_assert_cmpint(child, >=, 0);
	if (child == 0) {
		g_autofree char *own = g_strdup_printf(SERVER_CONTROL_HEADER "\npid %ld\nsize 4096\n"
						       "vectors 1\nend\n", (long)getpid());
		struct fake fake = { .report = report ? report : own };
		int sock_fd = listen_on_path ? listen_unix(path) : -1;

		(void)sock_fd;
		if (stubborn)
			signal(SIGTERM, SIG_IGN);
		fake.length = strlen(fake.report);
		fake.listen_fd = listen_unix(control);
		close(ready[1]);
		for (;;)
			fake_answer(&fake);
	}
	/* Ready once its sockets listen and it ignores SIGTERM. */
	close(ready[1]);
	g_assert_cmpint(read(ready[0], &byte, 1), ==, 0);
	close(ready[0]);
	return child;
}

static void reap_killed(pid_t child)
{
	int status;

	kill(child, SIGKILL);
	g_assert_cmpint(waitpid(child, &status, 0), ==, child);
	g_assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
}

/* A server (it answers, it listens) that ignores SIGTERM. */
static void test_stop_stubborn(void)
{
	g_autofree char *dir = tmp_dir();
	g_autofree char *path = g_build_filename(dir, "s.sock", NULL);
	g_autofree char *control = server_control_path(path);
	g_autoptr(GError) error = NULL;
	pid_t child = fake_server(path, NULL, TRUE, TRUE);

	g_assert_false(serverctl_stop(path, 200, &error));
	g_assert_nonnull(error);
	g_autofree char *want = g_strdup_printf("server pid %ld did not stop within 200 ms",
						(long)child);
	if (!strstr(error->message, want))
		g_error("got '%s', want '...%s'", error->message, want);
	/* It was signalled, and it is still there. */
	g_assert_cmpint(kill(child, 0), ==, 0);
	reap_killed(child);

	/* A report with no usable pid is not signalled at all. */
	g_clear_error(&error);
	g_unlink(control);
	g_unlink(path);
	child = fake_server(path, SERVER_CONTROL_HEADER "\npid 1\nsize 4096\nvectors 1\nend\n",
			    TRUE, FALSE);
	g_assert_false(serverctl_stop(path, 200, &error));
	g_assert_nonnull(strstr(error->message, "cannot signal server pid 1"));
	reap_killed(child);

	g_unlink(control);
	g_unlink(path);
	g_rmdir(dir);
}

/* A fake PATH.ctl naming another process: nothing is signalled. */
static void test_stop_fake_control(void)
{
	g_autofree char *dir = tmp_dir();
	g_autofree char *path = g_build_filename(dir, "s.sock", NULL);
	g_autofree char *control = server_control_path(path);
	g_autoptr(GError) error = NULL;
	const char *argv[] = { "sleep", "30", NULL };
	g_autofree char *report = NULL, *want = NULL;
	GPid victim;
	pid_t child;

	g_assert_true(g_spawn_async(NULL, (char **)argv, NULL,
				    G_SPAWN_SEARCH_PATH | G_SPAWN_DO_NOT_REAP_CHILD, NULL, NULL,
				    &victim, &error));
	report = g_strdup_printf(SERVER_CONTROL_HEADER "\npid %d\nsize 4096\nvectors 1\nend\n",
				 victim);
	child = fake_server(path, report, TRUE, FALSE);
	g_assert_false(serverctl_stop(path, 200, &error));
	want = g_strdup_printf("is answered by pid %ld, not by the server pid %d", (long)child,
			       victim);
	if (!strstr(error->message, want))
		g_error("got '%s', want '...%s'", error->message, want);
	g_assert_cmpint(kill(victim, 0), ==, 0);
	g_assert_cmpint(waitpid(victim, NULL, WNOHANG), ==, 0);
	reap_killed(child);

	/* It names itself, but another process listens on PATH. */
	g_clear_error(&error);
	g_unlink(control);
	g_unlink(path);
	pid_t listener = fake_server(path, report, TRUE, FALSE);
	g_unlink(control);
	child = fake_server(path, NULL, FALSE, FALSE);
	g_assert_false(serverctl_stop(path, 200, &error));
	g_assert_nonnull(strstr(error->message, "does not listen on"));
	g_assert_cmpint(kill(child, 0), ==, 0);
	g_assert_cmpint(waitpid(child, NULL, WNOHANG), ==, 0);
	reap_killed(child);
	reap_killed(listener);

	kill(victim, SIGKILL);
	waitpid(victim, NULL, 0);
	g_unlink(control);
	g_unlink(path);
	g_rmdir(dir);
}

/* ---- spawn: real daemons ---- */

static void test_spawn_and_stop(void)
{
	const char *ivlab = ivlab_binary();
	g_autofree char *dir = tmp_dir();
	g_autofree char *path = g_build_filename(dir, "d.sock", NULL);
	g_autofree char *pidfile = g_build_filename(dir, "d.pid", NULL);
	g_autofree char *log = g_build_filename(dir, "d.log", NULL);
	g_autofree char *shm_name = g_strdup_printf("ivlab-unit-serverctl-%ld", (long)getpid());
	g_autofree char *shm_desc = g_strdup_printf("posix:/%s", shm_name);
	g_autofree char *shm_dev = g_strdup_printf("/dev/shm/%s", shm_name);
	g_autofree char *pid_text = NULL;
	struct server_options opts;
	struct serverctl_info info;
	g_autoptr(GError) error = NULL;
	struct stat st;

	if (!ivlab)
		return;
	server_options_init(&opts);
	opts.socket_path = path;
	opts.vectors = 8;
	opts.size = 16 << 20;
	opts.shm_kind = SERVER_SHM_POSIX;
	opts.shm_name = shm_name;
	opts.max_peers = 3;
	opts.stall_ms = 1500;
	opts.pidfile = pidfile;
	opts.log_file = log;
	opts.socket_mode = 0640;
	g_assert_true(serverctl_spawn_binary(ivlab, &opts, &error));
	g_assert_no_error(error);
	/* Listening as soon as spawn returns: no waiting. */
	g_assert_true(serverctl_query(path, &info, &error));
	g_assert_no_error(error);
	/* Every option made it to the daemon. */
	g_assert_cmpuint(info.vectors, ==, 8);
	g_assert_cmpuint(info.size, ==, 16 << 20);
	g_assert_cmpstr(info.shm, ==, shm_desc);
	g_assert_cmpuint(info.max_peers, ==, 3);
	g_assert_cmpint(stat(path, &st), ==, 0);
	g_assert_cmpint(st.st_mode & 0777, ==, 0640);
	g_assert_true(g_file_get_contents(pidfile, &pid_text, NULL, NULL));
	g_assert_cmpint(atoi(pid_text), ==, info.pid);
	g_assert_cmpint(info.pid, !=, getpid());
	g_assert_true(g_file_test(log, G_FILE_TEST_EXISTS));
	pid_t pid = info.pid;
	serverctl_info_clear(&info);

	/* The daemon's own message comes back, without main()'s "ivlab: ",
	 * naming the option as `ivlab server` does. */
	g_assert_false(serverctl_spawn_binary(ivlab, &opts, &error));
	g_autofree char *in_use = g_strdup_printf("--shm-name: /dev/shm/%s already exists (",
						  shm_name);
	g_assert_true(g_str_has_prefix(error->message, in_use));
	g_clear_error(&error);
	g_assert_cmpint(kill(pid, 0), ==, 0);

	g_assert_true(serverctl_stop(path, 10000, &error));
	g_assert_no_error(error);
	g_assert_false(g_file_test(path, G_FILE_TEST_EXISTS));
	g_assert_false(g_file_test(pidfile, G_FILE_TEST_EXISTS));
	g_assert_false(g_file_test(shm_dev, G_FILE_TEST_EXISTS));
	g_assert_false(serverctl_running(path));
	/* Stopping what is not running is fine (down after a crash). */
	g_assert_true(serverctl_stop(path, 1000, &error));
	g_assert_no_error(error);
	g_unlink(log);
	g_rmdir(dir);
}

static void test_spawn_errors(void)
{
	const char *ivlab = ivlab_binary();
	g_autofree char *dir = tmp_dir();
	g_autofree char *path = g_build_filename(dir, "d.sock", NULL);
	g_autofree char *pidfile = g_build_filename(dir, "no/such/dir/d.pid", NULL);
	struct server_options opts;
	g_autoptr(GError) error = NULL;

	server_options_init(&opts);
	opts.socket_path = path;
	g_assert_false(serverctl_spawn_binary("/nonexistent/ivlab", &opts, &error));
	g_assert_true(g_str_has_prefix(error->message, "/nonexistent/ivlab: "));
	g_clear_error(&error);
	if (!ivlab) {
		g_rmdir(dir);
		return;
	}
	/* Refused before the fork (a usage error of `ivlab server`) ... */
	opts.shm_kind = SERVER_SHM_FILE;
	opts.shm_dir = "/nonexistent";
	g_assert_false(serverctl_spawn_binary(ivlab, &opts, &error));
	g_assert_true(g_str_has_prefix(error->message,
				       "server: --shm-dir: not a directory: /nonexistent (usage: "));
	g_clear_error(&error);
	/* ... and after it, from the daemon, with nothing left behind. */
	opts.shm_kind = SERVER_SHM_MEMFD;
	opts.pidfile = pidfile;
	g_assert_false(serverctl_spawn_binary(ivlab, &opts, &error));
	g_assert_true(g_str_has_prefix(error->message, "--pidfile: "));
	g_assert_null(strchr(error->message, '\n'));
	g_assert_false(g_file_test(path, G_FILE_TEST_EXISTS));
	g_rmdir(dir);
}

/* A pidfile naming a process that is no ivlab server: it is left alone,
 * and the stale pidfile goes. */
static void test_stop_pidfile_other(void)
{
	g_autofree char *dir = tmp_dir();
	g_autofree char *pidfile = g_build_filename(dir, "other.pid", NULL);
	g_autofree char *text = NULL;
	const char *argv[] = { "sleep", "30", NULL };
	g_autoptr(GError) error = NULL;
	GPid pid;

	g_assert_true(g_spawn_async(NULL, (char **)argv, NULL,
				    G_SPAWN_SEARCH_PATH | G_SPAWN_DO_NOT_REAP_CHILD, NULL, NULL, &pid,
				    &error));
	text = g_strdup_printf("%d\n", pid);
	g_assert_true(g_file_set_contents(pidfile, text, -1, NULL));
	g_assert_true(serverctl_stop_pidfile(pidfile, 1000, &error));
	g_assert_no_error(error);
	g_assert_cmpint(kill(pid, 0), ==, 0);
	g_assert_false(g_file_test(pidfile, G_FILE_TEST_EXISTS));
	/* No pidfile at all is fine (down after down). */
	g_assert_true(serverctl_stop_pidfile(pidfile, 1000, &error));
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	g_rmdir(dir);
}

int main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/serverctl/query-engine", test_query_engine);
	g_test_add_func("/serverctl/query-reports", test_query_reports);
	g_test_add_func("/serverctl/stop-stale", test_stop_stale);
	g_test_add_func("/serverctl/stop-stubborn", test_stop_stubborn);
	g_test_add_func("/serverctl/stop-fake-control", test_stop_fake_control);
	g_test_add_func("/serverctl/spawn-and-stop", test_spawn_and_stop);
	g_test_add_func("/serverctl/spawn-errors", test_spawn_errors);
	g_test_add_func("/serverctl/stop-pidfile-other", test_stop_pidfile_other);
	return g_test_run();
}
