/* fuzz-peer.c: libFuzzer target: `ivlab peer` (src/peer.c) facing a hostile
 * ivshmem server. The input is the server's side of a socket pair: the
 * vector count the peer expects (first byte, 0: unknown), then messages of
 * 10 bytes each: an 8-byte little-endian value, what rides with it over
 * SCM_RIGHTS (nothing, an eventfd, a memfd with or without a size, a pipe,
 * a socket, six eventfds at once) and where the message is split in two
 * writes. The peer reads its setup, then the notifications; it rings and
 * waits on what it holds. Afterwards the process holds exactly the fds it
 * held before (none leaked, none closed twice). */
#include "config.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include "peer.h"
#include "fuzz.h"

#define MESSAGE_LEN 10
#define MESSAGES_MAX 64
#define FDS_MAX 6

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_catch_sigpipe();
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

static int memfd_sized(off_t size)
{
	int fd = memfd_create("fuzz-shm", MFD_CLOEXEC);

	g_assert(fd >= 0);
	g_assert(ftruncate(fd, size) == 0);
	return fd;
}

/* The fds of one message (closed here once sent: the peer has its copies). */
static int make_fds(guint8 kind, int *fds)
{
	int pair[2];

	switch (kind % 8) {
	case 1:
		fds[0] = eventfd(0, EFD_CLOEXEC);
		return 1;
	case 2:
		fds[0] = memfd_sized(4096);
		return 1;
	case 3:
		fds[0] = memfd_sized(0);
		return 1;
	case 4:
		g_assert(pipe2(pair, O_CLOEXEC) == 0);
		fds[0] = pair[0];
		close(pair[1]);
		return 1;
	case 5:
		for (int i = 0; i < FDS_MAX; i++)
			fds[i] = eventfd(0, EFD_CLOEXEC);
		return FDS_MAX;
	case 6:
		fds[0] = memfd_sized(1 << 20);
		return 1;
	case 7:
		g_assert(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) == 0);
		fds[0] = pair[0];
		close(pair[1]);
		return 1;
	default:
		return 0;
	}
}

static gboolean send_part(int sock, const guint8 *bytes, gsize len, const int *fds, int nfds)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * FDS_MAX)];
		struct cmsghdr align;
	} control;
	struct iovec iov = { .iov_base = (void *)bytes, .iov_len = len };
	struct msghdr hdr = { .msg_iov = &iov, .msg_iovlen = 1 };

	if (nfds) {
		struct cmsghdr *cmsg;

		memset(&control, 0, sizeof(control));
		hdr.msg_control = control.buf;
		hdr.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		cmsg = CMSG_FIRSTHDR(&hdr);
		cmsg->cmsg_level = SOL_SOCKET;
		cmsg->cmsg_type = SCM_RIGHTS;
		cmsg->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(cmsg), fds, sizeof(int) * nfds);
	}
	return sendmsg(sock, &hdr, MSG_DONTWAIT | MSG_NOSIGNAL) == (ssize_t)len;
}

/* Queue the whole conversation before the peer reads a byte of it. */
static void serve(int sock, const guint8 *data, gsize size)
{
	for (gsize m = 0; m < MESSAGES_MAX && size >= MESSAGE_LEN; m++) {
		int fds[FDS_MAX];
		int nfds = make_fds(data[8], fds);
		gsize split = data[9] % 9;
		gboolean fd_first = data[9] & 0x10;
		gboolean ok;

		if (split == 0 || split == 8)
			ok = send_part(sock, data, 8, fds, nfds);
		else
			ok = send_part(sock, data, split, fds, fd_first ? nfds : 0) &&
			     send_part(sock, data + split, 8 - split, fds, fd_first ? 0 : nfds);
		for (int i = 0; i < nfds; i++)
			close(fds[i]);
		if (!ok)
			return;
		data += MESSAGE_LEN;
		size -= MESSAGE_LEN;
	}
}

static void exercise(struct peer *peer)
{
	g_autoptr(GArray) ids = NULL;
	guint64 count;

	g_assert_cmpint(peer_id(peer), >=, 0);
	g_assert_cmpint(peer_id(peer), <=, 65535);
	g_assert(peer_memory(peer) && peer_size(peer) > 0);
	((volatile guint8 *)peer_memory(peer))[peer_size(peer) - 1] = 1;
	for (int round = 0; round < 4; round++)
		if (!peer_poll_notifications(peer, 0, NULL))
			break;
	ids = peer_list(peer);
	for (guint i = 0; i < ids->len; i++) {
		int id = (int)g_array_index(ids, guint, i);
		guint vectors = peer_remote_vectors(peer, id);

		g_assert_cmpuint(vectors, >, 0);
		g_assert_cmpint(id, !=, peer_id(peer));
		/* Whatever the server passed as a vector: rung, or an error. */
		for (guint v = 0; v <= vectors; v++)
			peer_ring(peer, id, v, NULL);
	}
	for (guint v = 0; v <= peer_vectors(peer); v++) {
		peer_ring(peer, peer_id(peer), v, NULL);
		peer_wait(peer, v, 0, &count, NULL);
	}
	peer_wait_peers(peer, ids->len + 1, 0, NULL);
	if (ids->len)
		peer_wait_gone(peer, (int)g_array_index(ids, guint, 0), 0, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	guint before = count_fds();
	int pair[2];

	if (size < 1)
		return 0;
	g_assert(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) == 0);
	serve(pair[1], data + 1, size - 1);
	{
		g_autoptr(GError) error = NULL;
		g_autoptr(Peer) peer = peer_connect_fd(pair[0], "fuzz", data[0] % 5, 0, &error);

		if (peer)
			exercise(peer);
		else
			g_assert(error);
		close(pair[1]);
		if (peer)
			peer_poll_notifications(peer, 0, NULL);
	}
	g_assert_cmpuint(count_fds(), ==, before);
	return 0;
}
