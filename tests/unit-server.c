/* unit-server.c: the server engine run in-process (in a thread) with the host
 * peer module as its client: options, sockets, wiring, memory, ids,
 * disconnects and the control socket (unit-serverctl.c: its daemon). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <glib/gstdio.h>

#include "ivlab.h"
#include "peer.h"
#include "server.h"
#include "serverctl.h"

struct engine {
	struct server *server;
	GThread *thread;
	gint stop;
	char *dir;
	char *socket_path;
};

static gpointer engine_loop(gpointer data)
{
	struct engine *engine = data;

	while (!g_atomic_int_get(&engine->stop))
		g_assert_true(server_handle_events(engine->server, 20, NULL));
	return NULL;
}

static struct engine *engine_start_with(struct server_options *opts)
{
	struct engine *engine = g_new0(struct engine, 1);
	g_autoptr(GError) error = NULL;

	engine->dir = g_dir_make_tmp("ivlab-unit-server.XXXXXX", NULL);
	engine->socket_path = g_build_filename(engine->dir, "s.sock", NULL);
	opts->socket_path = engine->socket_path;
	engine->server = server_start(opts, &error);
	g_assert_no_error(error);
	engine->thread = g_thread_new("engine", engine_loop, engine);
	return engine;
}

static struct engine *engine_start(guint vectors)
{
	struct server_options opts;

	server_options_init(&opts);
	opts.vectors = vectors;
	opts.size = 1 << 20;
	return engine_start_with(&opts);
}

static void engine_stop(struct engine *engine)
{
	g_atomic_int_set(&engine->stop, 1);
	g_thread_join(engine->thread);
	server_stop(engine->server);
	g_assert_false(g_file_test(engine->socket_path, G_FILE_TEST_EXISTS));
	g_rmdir(engine->dir);
	g_free(engine->socket_path);
	g_free(engine->dir);
	g_free(engine);
}

static void test_options(void)
{
	static const struct {
		guint64 size;
		guint vectors;
		guint max_peers;
		enum server_shm_kind kind;
		const char *name_or_dir;
		const char *socket;
		const char *message;
	} cases[] = {
		{ 1 << 20, 1, 0, SERVER_SHM_MEMFD, NULL, NULL, "socket: no path given" },
		{ 3 << 20, 1, 0, SERVER_SHM_MEMFD, NULL, "/tmp/x", "size: 3MiB is not a power of two" },
		{ 1024, 1, 0, SERVER_SHM_MEMFD, NULL, "/tmp/x", "size: 1KiB is not a power of two" },
		{ 1 << 20, 0, 0, SERVER_SHM_MEMFD, NULL, "/tmp/x", "vectors: 0 is out of range (1..64)" },
		{ 1 << 20, 65, 0, SERVER_SHM_MEMFD, NULL, "/tmp/x", "vectors: 65 is out of range" },
		{ 1 << 20, 1, 65537, SERVER_SHM_MEMFD, NULL, "/tmp/x", "max peers: 65537 is out of range" },
		{ 1 << 20, 1, 0, SERVER_SHM_POSIX, "a/b", "/tmp/x", "shm name: 'a/b' is not a POSIX" },
		{ 1 << 20, 1, 0, SERVER_SHM_POSIX, "/", "/tmp/x", "shm name: '/' is not a POSIX" },
		{ 1 << 20, 1, 0, SERVER_SHM_FILE, "/nonexistent", "/tmp/x", "shm dir: not a directory" },
		{ 1 << 20, 1, 0, SERVER_SHM_MEMFD, NULL,
		  "/tmp/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
		  "socket: path too long" },
	};

	for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
		struct server_options opts;
		g_autoptr(GError) error = NULL;

		server_options_init(&opts);
		opts.size = cases[i].size;
		opts.vectors = cases[i].vectors;
		opts.max_peers = cases[i].max_peers;
		opts.shm_kind = cases[i].kind;
		opts.shm_name = opts.shm_dir = cases[i].name_or_dir;
		opts.socket_path = cases[i].socket;
		g_assert_false(server_options_check(&opts, &error));
		g_assert_nonnull(error);
		if (!g_str_has_prefix(error->message, cases[i].message))
			g_error("case %zu: got '%s', want '%s...'", i, error->message, cases[i].message);
		g_assert_null(server_start(&opts, NULL));
	}
	struct server_options good;
	server_options_init(&good);
	good.socket_path = "/tmp/x";
	good.size = 2ULL << 30;
	good.vectors = 64;
	g_assert_true(server_options_check(&good, NULL));
}

static void test_sockets(void)
{
	g_autofree char *dir = g_dir_make_tmp("ivlab-unit-server.XXXXXX", NULL);
	g_autofree char *path = g_build_filename(dir, "s.sock", NULL);
	g_autofree char *ctl = server_control_path(path);
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	struct server_options opts;
	struct server *server, *second;
	g_autoptr(GError) error = NULL;
	int fd;

	server_options_init(&opts);
	opts.socket_path = path;
	opts.socket_mode = 0660;

	/* A regular file is not ours to replace. */
	g_assert_true(g_file_set_contents(path, "x", 1, NULL));
	g_assert_null(server_start(&opts, &error));
	g_assert_nonnull(strstr(error->message, "exists and is not a socket"));
	g_clear_error(&error);
	g_unlink(path);

	/* A socket file nobody listens on (a crashed server's) is. */
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	g_strlcpy(addr.sun_path, path, sizeof(addr.sun_path));
	g_assert_cmpint(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), ==, 0);
	close(fd);
	server = server_start(&opts, &error);
	g_assert_no_error(error);
	struct stat st;
	g_assert_cmpint(stat(path, &st), ==, 0);
	g_assert_cmpint(st.st_mode & 0777, ==, 0660);
	g_assert_cmpint(stat(ctl, &st), ==, 0);
	g_assert_cmpint(st.st_mode & 0777, ==, 0660);

	/* A live one is not. */
	second = server_start(&opts, &error);
	g_assert_null(second);
	g_assert_nonnull(strstr(error->message, "a server is already listening there"));
	g_clear_error(&error);
	g_assert_true(g_file_test(path, G_FILE_TEST_EXISTS));
	server_stop(server);
	g_assert_false(g_file_test(path, G_FILE_TEST_EXISTS));
	g_assert_false(g_file_test(ctl, G_FILE_TEST_EXISTS));
	g_rmdir(dir);
}

static void test_wiring(void)
{
	const guint vectors = 3, count = 4;
	struct engine *engine = engine_start(vectors);
	struct peer *peers[4];
	g_autoptr(GError) error = NULL;
	guint64 rings;

	for (guint i = 0; i < count; i++) {
		peers[i] = peer_connect(engine->socket_path, &error);
		g_assert_no_error(error);
		g_assert_cmpint(peer_id(peers[i]), ==, i);
		g_assert_cmpuint(peer_vectors(peers[i]), ==, vectors);
	}
	for (guint i = 0; i < count; i++) {
		g_assert_true(peer_wait_peers(peers[i], count - 1, 5000, &error));
		g_assert_no_error(error);
	}
	for (guint from = 0; from < count; from++) {
		for (guint to = 0; to < count; to++) {
			for (guint v = 0; v < vectors; v++) {
				g_assert_true(peer_ring(peers[from], peer_id(peers[to]), v, &error));
				g_assert_no_error(error);
				g_assert_true(peer_wait(peers[to], v, 2000, &rings, &error));
				g_assert_cmpuint(rings, ==, 1);
				/* Nobody else was woken. */
				for (guint other = 0; other < count; other++)
					for (guint w = 0; w < vectors; w++) {
						g_assert_true(peer_wait(peers[other], w, 0, &rings, NULL));
						g_assert_cmpuint(rings, ==, 0);
					}
			}
		}
	}
	/* Rings coalesce, and a wait times out with 0. */
	peer_ring(peers[0], 1, 2, NULL);
	peer_ring(peers[0], 1, 2, NULL);
	peer_ring(peers[2], 1, 2, NULL);
	g_assert_true(peer_wait(peers[1], 2, 1000, &rings, NULL));
	g_assert_cmpuint(rings, ==, 3);
	g_assert_true(peer_wait(peers[1], 2, 50, &rings, NULL));
	g_assert_cmpuint(rings, ==, 0);

	g_assert_false(peer_ring(peers[0], 42, 0, &error));
	g_assert_cmpstr(error->message, ==, "ring: no peer 42 is connected");
	g_clear_error(&error);
	g_assert_false(peer_ring(peers[0], 1, vectors, &error));
	g_assert_cmpstr(error->message, ==, "ring: peer 1 has no vector 3 (it has 3)");
	g_clear_error(&error);
	g_assert_false(peer_wait(peers[0], 7, 0, &rings, &error));
	g_clear_error(&error);

	g_autoptr(GArray) list = peer_list(peers[3]);
	g_assert_cmpuint(list->len, ==, 3);
	for (guint i = 0; i < 3; i++) {
		g_assert_cmpuint(g_array_index(list, guint, i), ==, i);
		g_assert_cmpuint(peer_remote_vectors(peers[3], i), ==, vectors);
	}
	g_assert_cmpuint(peer_remote_vectors(peers[3], 3), ==, 0);

	/* Disconnects reach everyone. */
	peer_free(peers[1]);
	for (guint i = 0; i < count; i++) {
		if (i == 1)
			continue;
		g_assert_true(peer_wait_gone(peers[i], 1, 5000, &error));
		g_assert_no_error(error);
		g_assert_cmpuint(peer_remote_vectors(peers[i], 1), ==, 0);
	}
	for (guint i = 0; i < count; i++)
		if (i != 1)
			peer_free(peers[i]);
	engine_stop(engine);
}

static void test_memory_and_query(void)
{
	struct engine *engine = engine_start(2);
	g_autoptr(GError) error = NULL;
	g_autoptr(Peer) a = peer_connect(engine->socket_path, &error);
	g_autoptr(Peer) b = peer_connect(engine->socket_path, &error);
	struct serverctl_info info;

	g_assert_no_error(error);
	g_assert_cmpuint(peer_size(a), ==, 1 << 20);
	memcpy((char *)peer_memory(a) + 4096, "shared!", 8);
	g_assert_cmpstr((char *)peer_memory(b) + 4096, ==, "shared!");

	g_assert_true(serverctl_query(engine->socket_path, &info, &error));
	g_assert_no_error(error);
	g_assert_cmpint(info.pid, ==, getpid());
	g_assert_cmpuint(info.size, ==, 1 << 20);
	g_assert_cmpuint(info.vectors, ==, 2);
	g_assert_cmpstr(info.shm, ==, "memfd");
	g_assert_cmpstr(info.socket_path, ==, engine->socket_path);
	g_assert_cmpuint(info.max_peers, ==, SERVER_PEERS_LIMIT);
	g_assert_cmpuint(info.peer_ids->len, ==, 2);
	g_assert_cmpuint(g_array_index(info.peer_ids, guint, 0), ==, 0);
	g_assert_cmpuint(g_array_index(info.peer_ids, guint, 1), ==, 1);
	serverctl_info_clear(&info);

	g_clear_pointer(&a, peer_free);
	g_clear_pointer(&b, peer_free);
	engine_stop(engine);
	g_assert_false(serverctl_query("/nonexistent/s.sock", &info, &error));
	g_assert_nonnull(strstr(error->message, "no ivlab server is running there"));
}

/* Raw clients, to go round the whole id space quickly. */
static int raw_client(const char *path, gint64 *id)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	gint64 values[2];
	gsize got = 0;

	g_strlcpy(addr.sun_path, path, sizeof(addr.sun_path));
	g_assert_cmpint(connect(fd, (struct sockaddr *)&addr, sizeof(addr)), ==, 0);
	while (got < sizeof(values)) {
		ssize_t n = recv(fd, (char *)values + got, sizeof(values) - got, 0);

		g_assert_cmpint(n, >, 0);
		got += n;
	}
	g_assert_cmpint(GINT64_FROM_LE(values[0]), ==, 0);
	*id = GINT64_FROM_LE(values[1]);
	return fd;
}

/* Read and forget what a raw client was sent, closing the fds: a live peer. */
static void drain(int fd)
{
	for (;;) {
		char buf[4096];
		union {
			char control[CMSG_SPACE(sizeof(int) * 64)];
			struct cmsghdr align;
		} u;
		struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) };
		struct msghdr hdr = { .msg_iov = &iov, .msg_iovlen = 1,
				      .msg_control = u.control, .msg_controllen = sizeof(u.control) };
		ssize_t n = recvmsg(fd, &hdr, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

		if (n <= 0)
			return;
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&hdr); c; c = CMSG_NXTHDR(&hdr, c)) {
			int *fds = (int *)CMSG_DATA(c);

			for (gsize i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++)
				close(fds[i]);
		}
	}
}

static void test_max_peers(void)
{
	struct server_options opts;
	struct engine *engine;
	g_autoptr(GError) error = NULL;

	server_options_init(&opts);
	opts.max_peers = 1;
	engine = engine_start_with(&opts);
	g_autoptr(Peer) first = peer_connect(engine->socket_path, &error);
	g_assert_no_error(error);
	g_assert_null(peer_connect(engine->socket_path, &error));
	g_assert_nonnull(strstr(error->message, "the server refused us"));
	g_clear_pointer(&first, peer_free);
	engine_stop(engine);
}

static void test_ids_wrap(void)
{
	struct engine *engine = engine_start(1);
	gint64 id;
	int keep0, keep5;
	gboolean seen_wrap = FALSE;

	keep0 = raw_client(engine->socket_path, &id);
	g_assert_cmpint(id, ==, 0);
	for (int i = 1; i < 5; i++) {
		close(raw_client(engine->socket_path, &id));
		g_assert_cmpint(id, ==, i);
	}
	keep5 = raw_client(engine->socket_path, &id);
	g_assert_cmpint(id, ==, 5);
	/* Round the 16-bit id space: ids in use (0, 5) are skipped. */
	for (gint64 expect = 6; expect <= SERVER_PEER_ID_MAX + 7; expect++) {
		gint64 want = expect % SERVER_PEERS_LIMIT;

		if (want == 0 || want == 5)
			continue;
		close(raw_client(engine->socket_path, &id));
		drain(keep0);
		drain(keep5);
		if (id != want)
			g_error("expected id %" G_GINT64_FORMAT ", got %" G_GINT64_FORMAT, want, id);
		seen_wrap |= id < 5;
	}
	g_assert_true(seen_wrap);
	close(keep0);
	close(keep5);
	engine_stop(engine);
}

static void test_shm_kinds(void)
{
	g_autofree char *name = g_strdup_printf("ivlab-unit-%ld", (long)getpid());
	g_autofree char *dev_path = g_strdup_printf("/dev/shm/%s", name);
	g_autofree char *dir = g_dir_make_tmp("ivlab-unit-shm.XXXXXX", NULL);
	struct server_options opts;
	struct engine *engine;
	struct serverctl_info info;
	struct stat st;
	g_autoptr(GError) error = NULL;

	server_options_init(&opts);
	opts.shm_kind = SERVER_SHM_POSIX;
	opts.shm_name = name;
	opts.size = 2ULL << 30; /* more than 1 GiB must work */
	engine = engine_start_with(&opts);
	g_assert_cmpint(stat(dev_path, &st), ==, 0);
	g_assert_cmpint(st.st_size, ==, 2LL << 30);
	{
		g_autoptr(Peer) peer = peer_connect(engine->socket_path, &error);

		g_assert_no_error(error);
		g_assert_cmpuint(peer_size(peer), ==, 2ULL << 30);
		/* The last byte is reachable (tmpfs is sparse: nothing else touched). */
		((volatile char *)peer_memory(peer))[(2ULL << 30) - 1] = 'z';
	}
	g_assert_true(serverctl_query(engine->socket_path, &info, NULL));
	g_assert_true(g_str_has_prefix(info.shm, "posix:/ivlab-unit-"));
	serverctl_info_clear(&info);
	engine_stop(engine);
	g_assert_false(g_file_test(dev_path, G_FILE_TEST_EXISTS));

	server_options_init(&opts);
	opts.shm_kind = SERVER_SHM_FILE;
	opts.shm_dir = dir;
	engine = engine_start_with(&opts);
	g_assert_true(serverctl_query(engine->socket_path, &info, NULL));
	g_assert_true(g_str_has_prefix(info.shm, "file:"));
	g_assert_cmpint(stat(info.shm + 5, &st), ==, 0);
	g_assert_cmpint(st.st_size, ==, SERVER_DEFAULT_SIZE);
	engine_stop(engine);
	g_assert_false(g_file_test(info.shm + 5, G_FILE_TEST_EXISTS));
	serverctl_info_clear(&info);
	g_rmdir(dir);
}

/* A POSIX shm object that exists (another user's, mode 666) is never
 * adopted: refused, and left as it was; and the server removes only the
 * object it made, not one put in its place. */
static void test_shm_not_ours(void)
{
	g_autofree char *name = g_strdup_printf("ivlab-unit-other-%ld", (long)getpid());
	g_autofree char *dev_path = g_strdup_printf("/dev/shm/%s", name);
	g_autofree char *dir = g_dir_make_tmp("ivlab-unit-shm.XXXXXX", NULL);
	g_autofree char *socket_path = g_build_filename(dir, "s.sock", NULL);
	g_autofree char *text = NULL;
	g_autoptr(GError) error = NULL;
	struct server_options opts;
	struct server *server;
	struct engine *engine;

	g_assert_true(g_file_set_contents(dev_path, "not yours", -1, NULL));
	g_assert_cmpint(chmod(dev_path, 0666), ==, 0);
	server_options_init(&opts);
	opts.shm_kind = SERVER_SHM_POSIX;
	opts.shm_name = name;
	opts.socket_path = socket_path;
	server = server_start(&opts, &error);
	g_assert_null(server);
	g_assert_nonnull(strstr(error->message, "already exists"));
	g_assert_true(g_file_get_contents(dev_path, &text, NULL, NULL));
	g_assert_cmpstr(text, ==, "not yours");
	g_assert_false(g_file_test(socket_path, G_FILE_TEST_EXISTS));
	g_unlink(dev_path);

	/* Ours, then replaced by another object under the same name. */
	engine = engine_start_with(&opts);
	g_assert_cmpint(g_unlink(dev_path), ==, 0);
	g_assert_true(g_file_set_contents(dev_path, "someone else's", -1, NULL));
	engine_stop(engine);
	g_assert_true(g_file_test(dev_path, G_FILE_TEST_EXISTS));
	g_unlink(dev_path);
	g_rmdir(dir);
}

/* A fake server (no control socket) that sends a scripted stream. */
struct fake {
	int listen_fd;
	const gint64 *values;
	const gboolean *with_fd;
	gsize count;
	char *path;
	char *dir;
};

static void send_value(int sock, gint64 value, gboolean with_fd)
{
	guint64 le = GUINT64_TO_LE((guint64)value);
	struct iovec iov = { .iov_base = &le, .iov_len = sizeof(le) };
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr hdr = { .msg_iov = &iov, .msg_iovlen = 1 };
	int fd = -1;

	if (with_fd) {
		struct cmsghdr *cmsg;

		fd = value == -1 ? memfd_create("fake", MFD_CLOEXEC) : eventfd(0, EFD_CLOEXEC);
		if (value == -1)
			g_assert_cmpint(ftruncate(fd, 65536), ==, 0);
		memset(&u, 0, sizeof(u));
		hdr.msg_control = u.buf;
		hdr.msg_controllen = sizeof(u.buf);
		cmsg = CMSG_FIRSTHDR(&hdr);
		cmsg->cmsg_level = SOL_SOCKET;
		cmsg->cmsg_type = SCM_RIGHTS;
		cmsg->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
	}
	g_assert_cmpint(sendmsg(sock, &hdr, MSG_NOSIGNAL), ==, 8);
	if (fd >= 0)
		close(fd);
}

static gpointer fake_serve(gpointer data)
{
	struct fake *fake = data;
	int sock = accept(fake->listen_fd, NULL, NULL);

	for (gsize i = 0; i < fake->count; i++)
		send_value(sock, fake->values[i], fake->with_fd[i]);
	/* Hold the connection until the client is done with it. */
	char byte;
	while (recv(sock, &byte, 1, 0) > 0)
		;
	close(sock);
	return NULL;
}

static char *fake_connect_error(const gint64 *values, const gboolean *with_fd, gsize count,
				struct peer **peer_out)
{
	struct fake fake = { .values = values, .with_fd = with_fd, .count = count };
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	g_autoptr(GError) error = NULL;
	struct peer *peer;
	GThread *thread;
	char *message;

	fake.dir = g_dir_make_tmp("ivlab-unit-fake.XXXXXX", NULL);
	fake.path = g_build_filename(fake.dir, "fake.sock", NULL);
	g_strlcpy(addr.sun_path, fake.path, sizeof(addr.sun_path));
	fake.listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	g_assert_cmpint(bind(fake.listen_fd, (struct sockaddr *)&addr, sizeof(addr)), ==, 0);
	g_assert_cmpint(listen(fake.listen_fd, 1), ==, 0);
	thread = g_thread_new("fake", fake_serve, &fake);
	peer = peer_connect_timeout(fake.path, 2000, &error);
	message = error ? g_strdup(error->message) : NULL;
	if (peer_out)
		*peer_out = peer;
	else
		peer_free(peer);
	/* Closing our end ends the fake's wait. */
	if (peer_out && peer)
		shutdown(peer_server_fd(peer), SHUT_WR);
	g_thread_join(thread);
	close(fake.listen_fd);
	g_unlink(fake.path);
	g_rmdir(fake.dir);
	g_free(fake.path);
	g_free(fake.dir);
	return message;
}

static void test_peer_bad_servers(void)
{
	static const gint64 v1[] = { 1 };
	static const gboolean n1[] = { FALSE };
	static const gint64 early[] = { 0, 3 };
	static const gboolean n2[] = { FALSE, FALSE };
	static const gint64 no_shm[] = { 0, 3, 3 };
	static const gboolean n3[] = { FALSE, FALSE, TRUE };
	static const gint64 bad_id[] = { 0, 70000 };
	/* A foreign server (no PATH.ctl): 2 vectors of peer 1, then our 2. */
	static const gint64 good[] = { 0, 3, -1, 1, 1, 3, 3 };
	static const gboolean goodfd[] = { FALSE, FALSE, TRUE, TRUE, TRUE, TRUE, TRUE };
	g_autofree char *e1 = fake_connect_error(v1, n1, 1, NULL);
	g_autofree char *e2 = fake_connect_error(early, n2, 2, NULL);
	g_autofree char *e3 = fake_connect_error(no_shm, n3, 3, NULL);
	g_autofree char *e4 = fake_connect_error(bad_id, n2, 2, NULL);
	struct peer *peer = NULL;
	g_autofree char *e5 = fake_connect_error(good, goodfd, 7, &peer);

	g_assert_nonnull(strstr(e1, "unsupported protocol version 1"));
	g_assert_nonnull(strstr(e2, "the server sent no setup within 2000 ms"));
	g_assert_nonnull(strstr(e3, "protocol error: expected the shared memory, got 3"));
	g_assert_nonnull(strstr(e4, "protocol error: bad id 70000"));
	g_assert_null(e5);
	g_assert_nonnull(peer);
	g_assert_cmpint(peer_id(peer), ==, 3);
	g_assert_cmpuint(peer_vectors(peer), ==, 2);
	g_assert_cmpuint(peer_size(peer), ==, 65536);
	g_assert_cmpuint(peer_remote_vectors(peer, 1), ==, 2);
	/* The fake's eventfds are blocking: a wait still ends at its timeout. */
	guint64 count = 1;
	g_autoptr(GError) wait_error = NULL;
	gint64 started = g_get_monotonic_time();

	g_assert_true(peer_wait(peer, 0, 100, &count, &wait_error));
	g_assert_no_error(wait_error);
	g_assert_cmpuint(count, ==, 0);
	g_assert_cmpint(g_get_monotonic_time() - started, <, 10 * G_USEC_PER_SEC);
	peer_free(peer);
}

static void send_fd(int sock, gint64 value, int fd)
{
	guint64 le = GUINT64_TO_LE((guint64)value);
	struct iovec iov = { .iov_base = &le, .iov_len = sizeof(le) };
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr hdr = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			      .msg_controllen = sizeof(u.buf) };
	struct cmsghdr *cmsg;

	memset(&u, 0, sizeof(u));
	cmsg = CMSG_FIRSTHDR(&hdr);
	cmsg->cmsg_level = SOL_SOCKET;
	cmsg->cmsg_type = SCM_RIGHTS;
	cmsg->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
	g_assert_cmpint(sendmsg(sock, &hdr, MSG_NOSIGNAL), ==, 8);
	close(fd);
}

/* Found by tests/fuzz (fuzz-peer): a server that passes a socket as a
 * peer's vector, its other end closed: ringing it raised SIGPIPE, which
 * killed `ivlab peer`. Now an error. The setup over a socket pair
 * (peer_connect_fd), 1 vector. */
static void test_peer_socket_vector(void)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(Peer) peer = NULL;
	int pair[2], vector[2], shm = memfd_create("fake", MFD_CLOEXEC);

	g_assert_cmpint(ftruncate(shm, 65536), ==, 0);
	g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), ==, 0);
	g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, vector), ==, 0);
	close(vector[1]);
	send_value(pair[1], 0, FALSE);
	send_value(pair[1], 4, FALSE);
	send_fd(pair[1], -1, shm);
	send_fd(pair[1], 2, vector[0]);
	send_fd(pair[1], 4, eventfd(0, EFD_CLOEXEC));
	peer = peer_connect_fd(pair[0], "fake", 1, 2000, &error);
	g_assert_no_error(error);
	g_assert_cmpuint(peer_remote_vectors(peer, 2), ==, 1);
	g_assert_false(peer_ring(peer, 2, 0, &error));
	g_assert_nonnull(strstr(error->message, "ring: peer 2 vector 0"));
	g_clear_error(&error);
	g_assert_true(peer_ring(peer, 4, 0, &error));
	g_assert_no_error(error);
	close(pair[1]);
}

int main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/server/options", test_options);
	g_test_add_func("/server/sockets", test_sockets);
	g_test_add_func("/server/wiring", test_wiring);
	g_test_add_func("/server/memory-and-query", test_memory_and_query);
	g_test_add_func("/server/max-peers", test_max_peers);
	g_test_add_func("/server/ids-wrap", test_ids_wrap);
	g_test_add_func("/server/shm-kinds", test_shm_kinds);
	g_test_add_func("/server/shm-not-ours", test_shm_not_ours);
	g_test_add_func("/peer/bad-servers", test_peer_bad_servers);
	g_test_add_func("/peer/socket-vector", test_peer_socket_vector);
	return g_test_run();
}
