// SPDX-License-Identifier: GPL-2.0
/*
 * ring.c: what ring-producer and ring-consumer share: their configuration
 * (/etc/ring.conf, then options), the ivring device (mapped, its doorbell
 * rung and waited for) and the messages' contents and checksum.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "driver/ivring.h"
#include "ring.h"

#define RING_CONF	"/etc/ring.conf"

const char *ring_prog = "ring";

void ring_die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", ring_prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

int64_t ring_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static unsigned int parse_number(const char *what, const char *text)
{
	char *end;
	unsigned long value;

	errno = 0;
	value = strtoul(text, &end, 10);
	if (errno || end == text || *end || value > 1000000000ul)
		ring_die("%s: not a number from 0 to 1000000000: '%s'", what, text);
	return (unsigned int)value;
}

static void set(struct ring_conf *conf, const char *key, const char *value)
{
	if (!strcmp(key, "device")) {
		if (strlen(value) >= sizeof(conf->device))
			ring_die("device: too long: '%s'", value);
		strcpy(conf->device, value);
	} else if (!strcmp(key, "count")) {
		conf->count = parse_number(key, value);
	} else if (!strcmp(key, "timeout")) {
		conf->timeout = parse_number(key, value);
		if (!conf->timeout)
			ring_die("timeout: must be at least 1 second");
	} else {
		ring_die("unknown setting '%s'", key);
	}
}

/* KEY=VALUE lines; blank lines and # comments are skipped. */
static void read_conf(struct ring_conf *conf, const char *path, int must_exist)
{
	char line[256];
	unsigned int number = 0;
	FILE *f = fopen(path, "r");

	if (!f) {
		if (must_exist || errno != ENOENT)
			ring_die("%s: %s", path, strerror(errno));
		return;
	}
	while (fgets(line, sizeof(line), f)) {
		char *eq, *key = line;

		number++;
		line[strcspn(line, "\r\n")] = '\0';
		key += strspn(key, " \t");
		if (!*key || *key == '#')
			continue;
		eq = strchr(key, '=');
		if (!eq)
			ring_die("%s:%u: not KEY=VALUE: '%s'", path, number, key);
		*eq = '\0';
		set(conf, key, eq + 1);
	}
	fclose(f);
}

void ring_parse(struct ring_conf *conf, int argc, char **argv, const char *usage,
		unsigned int *extra, char extra_opt)
{
	const char *conf_path = RING_CONF;
	char opts[16] = "c:d:n:t:h";
	int explicit_conf = 0;
	int i, opt;

	strcpy(conf->device, "/dev/ivring0");
	conf->count = 1000;
	conf->timeout = 60;
	if (extra_opt) {
		size_t len = strlen(opts);

		opts[len] = extra_opt;
		opts[len + 1] = ':';
		opts[len + 2] = '\0';
	}
	/* The file first, whatever the order of the options. */
	for (i = 1; i + 1 < argc; i++) {
		if (!strcmp(argv[i], "-c")) {
			conf_path = argv[i + 1];
			explicit_conf = 1;
		}
	}
	read_conf(conf, conf_path, explicit_conf);

	while ((opt = getopt(argc, argv, opts)) != -1) {
		if (opt == 'c')
			continue;
		else if (opt == 'd')
			set(conf, "device", optarg);
		else if (opt == 'n')
			set(conf, "count", optarg);
		else if (opt == 't')
			set(conf, "timeout", optarg);
		else if (extra_opt && opt == extra_opt)
			*extra = parse_number("-x", optarg);
		else if (opt == 'h') {
			printf("%s\n", usage);
			exit(0);
		} else {
			fprintf(stderr, "%s\n", usage);
			exit(2);
		}
	}
	if (optind != argc) {
		fprintf(stderr, "%s\n", usage);
		exit(2);
	}
}

void ring_open(struct ring *ring, const struct ring_conf *conf)
{
	struct ivring_info info;
	void *shm;

	ring->deadline_ms = ring_now_ms() + (int64_t)conf->timeout * 1000;
	ring->fd = open(conf->device, O_RDWR | O_CLOEXEC);
	if (ring->fd < 0)
		ring_die("%s: %s (is the ivring module bound to the region?)", conf->device,
			 strerror(errno));
	if (ioctl(ring->fd, IVRING_IOC_INFO, &info) != 0)
		ring_die("%s: IVRING_IOC_INFO: %s", conf->device, strerror(errno));
	if (info.size < sizeof(struct ring_header))
		ring_die("%s: %llu bytes shared, the ring needs %zu", conf->device,
			 (unsigned long long)info.size, sizeof(struct ring_header));
	shm = mmap(NULL, sizeof(struct ring_header), PROT_READ | PROT_WRITE, MAP_SHARED,
		   ring->fd, 0);
	if (shm == MAP_FAILED)
		ring_die("%s: mmap: %s", conf->device, strerror(errno));
	ring->hdr = shm;
	ring->position = info.position;
}

/* Ring vector 0 of peer. The driver's writel() orders our earlier stores to
 * the shared memory before the doorbell write. */
void ring_bell(struct ring *ring, uint32_t peer)
{
	uint32_t bell = peer << IVRING_PEER_SHIFT;

	if (ioctl(ring->fd, IVRING_IOC_RING, &bell) != 0)
		ring_die("ringing peer %u: %s", peer, strerror(errno));
}

/*
 * Wait for our doorbell: at most slice_ms (0: no limit) and never past the
 * deadline. 1: it rang (since the last wait: none is lost between checking
 * the ring and waiting), 0: the slice ended, -1: the deadline passed.
 */
int ring_wait(struct ring *ring, int slice_ms)
{
	struct pollfd pfd = { .fd = ring->fd, .events = POLLIN };
	int64_t left = ring->deadline_ms - ring_now_ms();
	uint64_t count;
	int n;

	if (left <= 0)
		return -1;
	if (slice_ms > 0 && slice_ms < left)
		left = slice_ms;
	n = poll(&pfd, 1, (int)left);
	if (n < 0 && errno != EINTR)
		ring_die("poll: %s", strerror(errno));
	if (n <= 0)
		return ring_now_ms() >= ring->deadline_ms ? -1 : 0;
	if (read(ring->fd, &count, sizeof(count)) != sizeof(count))
		ring_die("waiting for the doorbell: %s", strerror(errno));
	return 1;
}

/* Message seq's contents: its number in text, then bytes that depend on it. */
void ring_fill(struct ring_msg *msg, uint32_t seq)
{
	int n = snprintf((char *)msg->data, RING_PAYLOAD, "message %u:", seq);

	msg->seq = seq;
	msg->len = RING_PAYLOAD - (seq % 8);
	for (uint32_t i = (uint32_t)n; i < RING_PAYLOAD; i++)
		msg->data[i] = (uint8_t)(seq * 31u + i);
	msg->sum = ring_sum(msg);
}

/* FNV-1a over seq, len and the used data. */
uint32_t ring_sum(const struct ring_msg *msg)
{
	uint32_t h = 2166136261u;
	uint32_t len = msg->len > RING_PAYLOAD ? RING_PAYLOAD : msg->len;
	const uint8_t *p = (const uint8_t *)msg;

	for (uint32_t i = 0; i < 8; i++)
		h = (h ^ p[i]) * 16777619u;
	for (uint32_t i = 0; i < len; i++)
		h = (h ^ msg->data[i]) * 16777619u;
	return h;
}
