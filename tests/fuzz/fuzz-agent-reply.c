/* fuzz-agent-reply.c: libFuzzer target: the host reading a hostile agent
 * (src/agentlink.c). The input is everything the "agent" says, written
 * into a socket pair whose other end is an agent link: hello (with its
 * ready lines and late answers), requests one at a time and pipelined,
 * each answer looked up as numbers; then the input's first line alone
 * through agent_parse_line() and the percent codec, which must round-trip. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/socket.h>

#include "agentlink.h"
#include "fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_catch_sigpipe();
	return 0;
}

static void look_up(AgentReply *reply)
{
	static const char *const keys[] = { "proto", "size", "id", "count", "status", "output",
					    "log", "cmd", "crc", "" };
	guint64 u;
	gint64 i;

	for (gsize k = 0; k < G_N_ELEMENTS(keys); k++) {
		g_autoptr(GError) error = NULL;

		if (!agent_reply_u64(reply, keys[k], &u, &error))
			g_assert(error);
		g_clear_error(&error);
		if (!agent_reply_i64(reply, keys[k], &i, &error))
			g_assert(error);
	}
}

static void talk(const uint8_t *data, size_t size)
{
	g_autoptr(AgentLink) link = NULL;
	int fds[2];
	size_t sent = 0;

	g_assert(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
	/* Whatever fits in the socket's buffer; the rest is cut (EOF). */
	fcntl(fds[1], F_SETFL, O_NONBLOCK);
	while (sent < size) {
		ssize_t n = write(fds[1], data + sent, size - sent);

		if (n <= 0)
			break;
		sent += n;
	}
	shutdown(fds[1], SHUT_WR);
	link = agent_link_new_fd(fds[0], "fuzz");
	for (int round = 0; round < 4 && !agent_link_broken(link); round++) {
		g_autoptr(GError) error = NULL;
		AgentReply *reply;

		reply = round == 0 ? agent_hello(link, 1000, &error)
			: agent_request(link, 1000, &error, "read region=r0 offset=%d length=8", round);
		g_assert(reply || error);
		if (reply) {
			look_up(reply);
			g_hash_table_unref(reply);
		}
	}
	/* Three in flight, then their answers in order. */
	for (int n = 0; n < 3; n++)
		if (!agent_send(link, NULL, "hello"))
			break;
	for (int n = 0; n < 3 && !agent_link_broken(link); n++) {
		g_autoptr(GError) error = NULL;
		AgentReply *reply = agent_receive(link, 1000, &error);

		if (reply) {
			look_up(reply);
			g_hash_table_unref(reply);
		}
	}
	close(fds[1]);
}

static void parse_alone(const uint8_t *data, size_t size)
{
	g_autofree char *text = fuzz_string(data, size);
	g_autofree char *code = NULL, *message = NULL;
	g_autofree char *encoded = NULL, *decoded = NULL;
	AgentReply *reply = NULL;

	text[strcspn(text, "\n")] = '\0';
	if (agent_parse_line(text, &reply, &code, &message)) {
		g_assert(reply && !code && !message);
		look_up(reply);
		g_hash_table_unref(reply);
	} else {
		g_assert(!reply && code && message);
	}
	encoded = agent_percent_encode(text);
	g_assert_null(strpbrk(encoded, " \n\r\t"));
	decoded = agent_percent_decode(encoded);
	g_assert_cmpstr(decoded, ==, text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	talk(data, size);
	parse_alone(data, size);
	return 0;
}
