/* fuzz-agent-request.c: libFuzzer target: the guest agent's side of the
 * protocol (src/guest/agent-*.c, built for the host). The input is what the
 * host sends: split into lines as the agent's loop does, each parsed by
 * parse_request() and, for the verbs that only touch the agent's regions
 * (two file regions here, as with --region), answered by handle_line().
 * Verbs that reach the filesystem, processes, the kernel log or take
 * seconds are parsed only. Every argument value also goes through the
 * agent's percent and base64 decoders. A reply is one printable line. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>

#include "agent.h"
#include "fuzz.h"

/* Answered in full: fast, and they touch nothing but the regions. */
static const char *const safe_verbs[] = {
	IVLAB_AGENT_HELLO, IVLAB_AGENT_REGION, IVLAB_AGENT_FILL, IVLAB_AGENT_VERIFY,
	IVLAB_AGENT_CHECKSUM, IVLAB_AGENT_READ, IVLAB_AGENT_WRITE, IVLAB_AGENT_COPYTEST,
	IVLAB_AGENT_IRQCOUNT, IVLAB_AGENT_RING, IVLAB_AGENT_ATOMIC_ADD, IVLAB_AGENT_BENCH_COPY,
};

static void add_region(const char *name, size_t size)
{
	char spec[128];
	int fd = memfd_create(name, MFD_CLOEXEC);

	if (fd < 0 || ftruncate(fd, (off_t)size) < 0)
		abort();
	snprintf(spec, sizeof(spec), "%s=/proc/self/fd/%d", name, fd);
	if (!add_file_region(spec))
		abort();
	/* add_file_region() opened its own fd */
	close(fd);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	/* No /proc/cmdline of a guest: an empty one. */
	agent.cmdline_path = "/dev/null";
	add_region("r0", 65536);
	add_region("r1", 4096);
	return 0;
}

/* Numbers that make a verb loop: only small ones are answered. */
static bool is_quick(struct request *req)
{
	static const char *const counts[] = { "count", "iterations", "size", "length" };

	for (int i = 0; i < req->nargs; i++)
		for (size_t k = 0; k < ARRAY_SIZE(counts); k++)
			if (!strcmp(req->args[i].key, counts[k]) && strlen(req->args[i].value) > 5)
				return false;
	return true;
}

static bool is_safe(const char *verb)
{
	for (size_t i = 0; i < ARRAY_SIZE(safe_verbs); i++)
		if (!strcmp(verb, safe_verbs[i]))
			return true;
	return false;
}

static void check_reply(const struct reply *reply)
{
	if (!reply->buf)
		abort();
	if (strlen(reply->buf) != reply->len)
		abort();
	if (strncmp(reply->buf, "ok", 2) && strncmp(reply->buf, "err ", 4))
		abort();
	for (size_t i = 0; i < reply->len; i++)
		if (reply->buf[i] < 0x20 || reply->buf[i] > 0x7e)
			abort();
}

static void decode_values(struct request *req)
{
	for (int i = 0; i < req->nargs; i++) {
		size_t len = strlen(req->args[i].value);
		char *text = malloc(len + 1);
		uint8_t *bytes = malloc(len / 4 * 3 + 1);
		long n;

		if (percent_decode(req->args[i].value, text, len + 1) && strlen(text) > len)
			abort();
		n = base64_decode(req->args[i].value, bytes);
		if (n > (long)(len / 4 * 3))
			abort();
		free(text);
		free(bytes);
	}
}

static void one_line(char *line, struct reply *reply)
{
	char *copy = strdup(line);
	struct request req;

	if (parse_request(copy, &req, reply)) {
		decode_values(&req);
		if (is_safe(req.verb) && is_quick(&req)) {
			handle_line(line, reply);
			check_reply(reply);
		}
	} else {
		check_reply(reply);
	}
	free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	struct reply reply = { 0 };
	char *start = text, *nl;

	memcpy(text, data, size);
	text[size] = '\0';
	/* The agent's loop: lines up to IVLAB_AGENT_LINE_MAX, NULs kept (a
	 * request with one is cut there, as C strings are). */
	while ((nl = strchr(start, '\n'))) {
		*nl = '\0';
		if (nl - start < IVLAB_AGENT_LINE_MAX)
			one_line(start, &reply);
		start = nl + 1;
	}
	if (*start && strlen(start) < IVLAB_AGENT_LINE_MAX)
		one_line(start, &reply);
	free(reply.buf);
	free(text);
	return 0;
}
