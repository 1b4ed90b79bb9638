/* cmd-peer.c: `ivlab peer`, the host peer by hand: join a server, show the
 * peers, ring them, wait for our vectors, dump or fill the shared memory. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "ivlab.h"
#include "peer.h"
#include "server.h"

/* "4096", "4K", "0x1000" */
static gboolean parse_offset(const char *text, guint64 *value)
{
	if (g_str_has_prefix(text, "0x") || g_str_has_prefix(text, "0X"))
		return text[2] && g_ascii_string_to_unsigned(text + 2, 16, 0, G_MAXUINT64, value, NULL);
	return ivlab_parse_size(text, value);
}

static gboolean parse_number(const struct ivlab_cmd *cmd, const char *what, const char *text,
			     guint64 max, guint64 *value, GError **error)
{
	gboolean hex = g_str_has_prefix(text, "0x") || g_str_has_prefix(text, "0X");

	if (!g_ascii_string_to_unsigned(text + (hex ? 2 : 0), hex ? 16 : 10, 0, max, value, NULL))
		return cmd_usage_error(error, cmd, "%s: '%s' is not a number in 0..%" G_GUINT64_FORMAT,
				       what, text, max);
	return TRUE;
}

/* Syntax first (a usage error before connecting), the bounds once the
 * size of the shared memory is known. */
static gboolean parse_range(const struct ivlab_cmd *cmd, const char *offset_text,
			    const char *length_text, guint64 *offset, guint64 *length, GError **error)
{
	if (!parse_offset(offset_text, offset))
		return cmd_usage_error(error, cmd, "'%s' is not an offset", offset_text);
	if (!parse_offset(length_text, length))
		return cmd_usage_error(error, cmd, "'%s' is not a length", length_text);
	return TRUE;
}

static gboolean check_range(struct peer *peer, guint64 offset, guint64 length, GError **error)
{
	if (offset > peer_size(peer) || length > peer_size(peer) - offset) {
		g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED,
			    "range %#" G_GINT64_MODIFIER "x+%#" G_GINT64_MODIFIER "x is outside the "
			    "shared memory (%" G_GUINT64_FORMAT " bytes)", offset, length,
			    peer_size(peer));
		return FALSE;
	}
	return TRUE;
}

static void print_peers(struct peer *peer)
{
	g_autoptr(GArray) ids = peer_list(peer);

	g_autofree char *size = ivlab_format_size(peer_size(peer));

	printf("self %d: %u vectors, %s shared\n", peer_id(peer), peer_vectors(peer), size);
	for (guint i = 0; i < ids->len; i++) {
		guint id = g_array_index(ids, guint, i);

		printf("peer %u: %u vectors\n", id, peer_remote_vectors(peer, (int)id));
	}
}

static void hexdump(const guint8 *bytes, guint64 offset, guint64 length)
{
	for (guint64 line = 0; line < length; line += 16) {
		guint64 n = MIN(16, length - line);

		printf("%08" G_GINT64_MODIFIER "x ", offset + line);
		for (guint64 i = 0; i < 16; i++) {
			if (i == 8)
				putchar(' ');
			if (i < n)
				printf(" %02x", bytes[line + i]);
			else
				printf("   ");
		}
		printf("  |");
		for (guint64 i = 0; i < n; i++)
			putchar(g_ascii_isprint(bytes[line + i]) ? bytes[line + i] : '.');
		printf("|\n");
	}
}

/* Print connects and disconnects until the timeout (-1: until killed). */
static gboolean monitor(struct peer *peer, int timeout_ms, GError **error)
{
	g_autoptr(GArray) before = peer_list(peer);
	gint64 deadline = timeout_ms < 0 ? -1 : g_get_monotonic_time() + timeout_ms * (gint64)1000;

	print_peers(peer);
	fflush(stdout);
	for (;;) {
		int left = -1;

		if (deadline >= 0) {
			gint64 us = deadline - g_get_monotonic_time();

			if (us <= 0)
				return TRUE;
			left = (int)((us + 999) / 1000);
		}
		if (!peer_poll_notifications(peer, left, error))
			return FALSE;
		g_autoptr(GArray) now = peer_list(peer);
		for (guint i = 0; i < now->len; i++) {
			guint id = g_array_index(now, guint, i);
			gboolean known = FALSE;

			for (guint j = 0; j < before->len && !known; j++)
				known = g_array_index(before, guint, j) == id;
			if (!known)
				printf("connected %u\n", id);
		}
		for (guint j = 0; j < before->len; j++) {
			guint id = g_array_index(before, guint, j);
			gboolean still = FALSE;

			for (guint i = 0; i < now->len && !still; i++)
				still = g_array_index(now, guint, i) == id;
			if (!still)
				printf("disconnected %u\n", id);
		}
		fflush(stdout);
		g_array_unref(before);
		before = g_steal_pointer(&now);
	}
}

static char *socket_path;
/* G_MININT: not given (an explicit negative value is a usage error). */
static int timeout_ms = G_MININT, wait_peers = G_MININT;

static const GOptionEntry entries[] = {
	{ "socket", 's', 0, G_OPTION_ARG_FILENAME, &socket_path,
	  "the ivshmem server's socket (required)", "PATH" },
	{ "timeout", 't', 0, G_OPTION_ARG_INT, &timeout_ms,
	  "give up waiting after MS milliseconds (default: wait forever)", "MS" },
	{ "peers", 'P', 0, G_OPTION_ARG_INT, &wait_peers,
	  "before the command, wait until N other peers are fully connected", "N" },
	{ NULL }
};

/* The action's operands, checked before connecting. */
static struct {
	guint64 target, vector, byte, offset, length;
} request;

static gboolean act_list(struct peer *peer, GError **error)
{
	if (!peer_poll_notifications(peer, 0, error))
		return FALSE;
	print_peers(peer);
	return TRUE;
}

static gboolean act_ring(struct peer *peer, GError **error)
{
	return peer_poll_notifications(peer, 0, error) &&
	       peer_ring(peer, (int)request.target, (guint)request.vector, error);
}

static gboolean act_wait(struct peer *peer, GError **error)
{
	guint64 count;

	if (!peer_wait(peer, (guint)request.vector, timeout_ms, &count, error))
		return FALSE;
	if (count == 0)
		return ivlab_fail(error, "wait: no ring on vector %u within %d ms", (guint)request.vector,
				  timeout_ms);
	printf("vector %u: %" G_GUINT64_FORMAT " ring%s\n", (guint)request.vector, count,
	       count == 1 ? "" : "s");
	return TRUE;
}

static gboolean act_dump(struct peer *peer, GError **error)
{
	if (!check_range(peer, request.offset, request.length, error))
		return FALSE;
	hexdump((const guint8 *)peer_memory(peer) + request.offset, request.offset, request.length);
	return TRUE;
}

static gboolean act_fill(struct peer *peer, GError **error)
{
	if (!check_range(peer, request.offset, request.length, error))
		return FALSE;
	memset((guint8 *)peer_memory(peer) + request.offset, (int)request.byte, request.length);
	return TRUE;
}

static gboolean act_monitor(struct peer *peer, GError **error)
{
	return monitor(peer, timeout_ms, error);
}

static const struct peer_action {
	const char *name;
	int args;
	gboolean (*run)(struct peer *peer, GError **error);
} actions[] = {
	{ "list", 0, act_list }, { "ring", 2, act_ring }, { "wait", 1, act_wait },
	{ "dump", 2, act_dump }, { "fill", 3, act_fill }, { "monitor", 0, act_monitor },
};

static const struct peer_action *find_action(const char *name)
{
	for (gsize i = 0; i < G_N_ELEMENTS(actions); i++)
		if (strcmp(actions[i].name, name) == 0)
			return &actions[i];
	return NULL;
}

/* Parse the operands of the action argv[1] (default list) into request. */
static gboolean parse_operands(const struct ivlab_cmd *cmd, int argc, char **argv, GError **error)
{
	const char *action = argc > 1 ? argv[1] : "list";
	const struct peer_action *found = find_action(action);

	if (!found)
		return cmd_usage_error(error, cmd, "unknown action '%s'", action);
	if (argc > 1 && argc - 2 != found->args)
		return cmd_usage_error(error, cmd, "'%s' takes %d argument%s", action, found->args,
				       found->args == 1 ? "" : "s");
	if (found->run == act_ring)
		return parse_number(cmd, "PEER", argv[2], 65535, &request.target, error) &&
		       parse_number(cmd, "VECTOR", argv[3], 63, &request.vector, error);
	if (found->run == act_wait)
		return parse_number(cmd, "VECTOR", argv[2], 63, &request.vector, error);
	if (found->run == act_fill && !parse_number(cmd, "BYTE", argv[4], 255, &request.byte, error))
		return FALSE;
	if (found->run == act_dump || found->run == act_fill)
		return parse_range(cmd, argv[2], argv[3], &request.offset, &request.length, error);
	return TRUE;
}

static gboolean cmd_peer_check(const struct ivlab_cmd *cmd, int argc, char **argv, GError **error)
{
	if (!socket_path)
		return cmd_usage_error(error, cmd, "--socket PATH is required");
	if (timeout_ms != G_MININT && timeout_ms < 0)
		return cmd_usage_error(error, cmd, "--timeout: %d is not a number of milliseconds",
				       timeout_ms);
	if (wait_peers != G_MININT && wait_peers < 0)
		return cmd_usage_error(error, cmd, "--peers: %d is not a number of peers", wait_peers);
	/* Peer ids are 0..SERVER_PEER_ID_MAX, one of them ours. */
	if (wait_peers > SERVER_PEER_ID_MAX)
		return cmd_usage_error(error, cmd, "--peers: %d is more than a server can have besides us "
				       "(%d)", wait_peers, SERVER_PEER_ID_MAX);
	return parse_operands(cmd, argc, argv, error);
}

static gboolean cmd_peer_exec(const struct ivlab_cmd *cmd, struct ivlab_ctx *ctx, int argc,
			      char **argv, GError **error)
{
	const struct peer_action *action = find_action(argc > 1 ? argv[1] : "list");
	g_autoptr(Peer) peer = NULL;

	if (timeout_ms == G_MININT)
		timeout_ms = -1;
	peer = peer_connect_timeout(socket_path, timeout_ms < 0 ? 10000 : timeout_ms, error);
	if (!peer)
		return FALSE;
	ivlab_debug("peer %d: %" G_GUINT64_FORMAT " bytes, %u vectors", peer_id(peer),
		    peer_size(peer), peer_vectors(peer));
	if (wait_peers > 0 && !peer_wait_peers(peer, (guint)wait_peers, timeout_ms, error))
		return FALSE;
	return action->run(peer, error);
}

const struct ivlab_cmd cmd_peer_entry = {
	.name = "peer",
	.usage = "--socket PATH [list|ring PEER VECTOR|wait VECTOR|dump OFFSET LEN|fill OFFSET LEN BYTE|monitor]",
	.summary = "join an ivshmem server as a host peer: ring, wait, dump, fill",
	.description =
		"Actions (default: list):\n"
		"  list                   our id and vectors, and every other peer's\n"
		"  ring PEER VECTOR       ring a peer's vector (our own id rings ourselves)\n"
		"  wait VECTOR            wait for a ring on our vector; exit 1 on --timeout\n"
		"  dump OFFSET LEN        hex dump of the shared memory\n"
		"  fill OFFSET LEN BYTE   fill shared memory with BYTE\n"
		"  monitor                print connects and disconnects (until --timeout)\n"
		"Offsets and lengths take units (4K, 1M) or hex (0x1000). The host peer\n"
		"takes a peer id like any guest while it is connected.",
	.options = entries,
	.max_args = -1,
	.check = cmd_peer_check,
	.exec = cmd_peer_exec,
};
