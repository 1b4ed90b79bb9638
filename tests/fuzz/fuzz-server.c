/* fuzz-server.c: libFuzzer target: the ivshmem server engine (src/server.c)
 * driven by hostile clients. One server runs in the process (memfd, 2
 * vectors, at most 6 peers); the input is a script, one operation per byte
 * with its operands after it: connect a peer, close one (gently or with a
 * reset), send it bytes (with or without fds), half-close it, read what the
 * server sent it, query the control socket. The engine handles its events
 * after each step and must never fail; its control report must agree with
 * it; once every client is gone it holds no peer and the process holds the
 * fds it held before the input. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "server.h"
#include "fuzz.h"

#define CLIENTS_MAX 12

static struct server *server;
static char *socket_path;
static char *control_path;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_catch_sigpipe();
	g_autoptr(GError) error = NULL;
	const char *dir = fuzz_make_scratch("fuzz-server");
	struct server_options opts;

	socket_path = g_build_filename(dir, "s.sock", NULL);
	control_path = server_control_path(socket_path);
	server_options_init(&opts);
	opts.socket_path = socket_path;
	opts.size = 1 << 16;
	opts.vectors = 2;
	opts.max_peers = 6;
	server = server_start(&opts, &error);
	g_assert_no_error(error);
	return 0;
}

static guint count_fds(void)
{
	DIR *dir = opendir("/proc/self/fd");
	struct dirent *entry;
	guint count = 0;

	g_assert(dir);
	while ((entry = readdir(dir)))
		count += entry->d_name[0] != '.';
	closedir(dir);
	return count;
}

static void pump(void)
{
	g_autoptr(GError) error = NULL;

	for (int i = 0; i < 4; i++)
		g_assert(server_handle_events(server, 0, &error));
	g_assert_no_error(error);
}

static int connect_to(const char *path)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

	g_assert(sock >= 0);
	g_strlcpy(addr.sun_path, path, sizeof(addr.sun_path));
	if (connect(sock, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		close(sock);
		return -1;
	}
	return sock;
}

/* Read what is pending, closing the fds that came with it. */
static void drain(int sock)
{
	for (;;) {
		char buf[256];
		union {
			char buf[CMSG_SPACE(sizeof(int) * 8)];
			struct cmsghdr align;
		} control;
		struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) };
		struct msghdr hdr = { .msg_iov = &iov, .msg_iovlen = 1,
				      .msg_control = control.buf,
				      .msg_controllen = sizeof(control.buf) };
		ssize_t n = recvmsg(sock, &hdr, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

		for (struct cmsghdr *c = n >= 0 ? CMSG_FIRSTHDR(&hdr) : NULL; c;
		     c = CMSG_NXTHDR(&hdr, c)) {
			if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
				continue;
			for (gsize i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++)
				close(((int *)CMSG_DATA(c))[i]);
		}
		if (n <= 0)
			return;
	}
}

/* The control report: a header, key value lines, "end"; its peer count
 * is the engine's. */
static void query_control(void)
{
	int sock = connect_to(control_path);
	g_autoptr(GString) text = g_string_new(NULL);
	g_auto(GStrv) lines = NULL;
	guint peers = G_MAXUINT;

	g_assert(sock >= 0);
	pump();
	for (int tries = 0; tries < 100; tries++) {
		char buf[4096];
		ssize_t n = read(sock, buf, sizeof(buf));

		if (n == 0)
			break;
		if (n > 0)
			g_string_append_len(text, buf, n);
		else
			pump();
	}
	close(sock);
	lines = g_strsplit(text->str, "\n", -1);
	g_assert_cmpstr(lines[0], ==, SERVER_CONTROL_HEADER);
	for (char **line = lines; *line; line++)
		if (g_str_has_prefix(*line, SERVER_CONTROL_PEER_COUNT " "))
			peers = (guint)g_ascii_strtoull(*line + strlen(SERVER_CONTROL_PEER_COUNT " "),
							NULL, 10);
	g_assert_cmpuint(peers, ==, server_peer_count(server));
	g_assert(g_str_has_suffix(text->str, SERVER_CONTROL_END "\n"));
}

static void send_with_fd(int sock, const guint8 *bytes, gsize len)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} control;
	struct iovec iov = { .iov_base = (void *)bytes, .iov_len = len };
	struct msghdr hdr = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
			      .msg_controllen = sizeof(control.buf) };
	struct cmsghdr *cmsg = CMSG_FIRSTHDR(&hdr);
	int fd = eventfd(0, EFD_CLOEXEC);

	cmsg->cmsg_level = SOL_SOCKET;
	cmsg->cmsg_type = SCM_RIGHTS;
	cmsg->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
	sendmsg(sock, &hdr, MSG_DONTWAIT | MSG_NOSIGNAL);
	close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int clients[CLIENTS_MAX];
	guint nclients = 0;
	guint before = count_fds();
	gsize at = 0;

	while (at < size) {
		guint8 op = data[at++];
		guint8 arg = at < size ? data[at] : 0;
		int *client = nclients ? &clients[arg % nclients] : NULL;

		switch (op % 8) {
		case 0:
			if (nclients < CLIENTS_MAX) {
				int sock = connect_to(socket_path);

				if (sock >= 0)
					clients[nclients++] = sock;
			}
			break;
		case 1: /* close, reading nothing */
		case 7: /* reset: close with data unread, SO_LINGER 0 */
			if (!client)
				break;
			at++;
			if (op % 8 == 7) {
				struct linger linger = { .l_onoff = 1, .l_linger = 0 };

				setsockopt(*client, SOL_SOCKET, SO_LINGER, &linger, sizeof(linger));
			}
			close(*client);
			*client = clients[--nclients];
			break;
		case 2:
		case 6: { /* bytes, then bytes with an fd */
			gsize len;

			if (!client)
				break;
			at++;
			len = at < size ? MIN((gsize)data[at] % 32, size - at - 1) : 0;
			at++;
			if (op % 8 == 2)
				send(*client, data + MIN(at, size), MIN(len, size - MIN(at, size)),
				     MSG_DONTWAIT | MSG_NOSIGNAL);
			else
				send_with_fd(*client, data + MIN(at, size), MIN(len, size - MIN(at, size)));
			at += len;
			break;
		}
		case 3:
			if (!client)
				break;
			at++;
			shutdown(*client, arg & 1 ? SHUT_WR : SHUT_RD);
			break;
		case 4:
			if (!client)
				break;
			at++;
			drain(*client);
			break;
		case 5:
			query_control();
			break;
		}
		pump();
		g_assert_cmpuint(server_peer_count(server), <=, 6);
	}
	while (nclients)
		close(clients[--nclients]);
	for (int i = 0; i < 100 && server_peer_count(server); i++)
		g_assert(server_handle_events(server, 10, NULL));
	g_assert_cmpuint(server_peer_count(server), ==, 0);
	g_assert_cmpuint(count_fds(), ==, before);
	return 0;
}
