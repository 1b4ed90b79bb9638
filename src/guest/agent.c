/* agent.c: the ivlab guest agent. Serves the protocol of PROTOCOL.md on the
 * virtio-serial port org.ivlab.agent.0, over the /dev/ivlabN devices. */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/klog.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>

#include <uapi/ivlab.h>

#ifndef IVLAB_AGENT_VERSION
#define IVLAB_AGENT_VERSION "0.1.0"
#endif

#define PROTO_VERSION		1
#define AGENT_PORT_NAME		"org.ivlab.agent.0"
#define MAX_REQUEST		4096
#define MAX_ARGS		16
#define MAX_REGIONS		32
#define MAX_READ		4096
#define DMESG_TAIL		(16 * 1024)
#define EXEC_OUTPUT_MAX		(64 * 1024)
#define PORT_WAIT_MS		30000

#define ARRAY_SIZE(a)		(sizeof(a) / sizeof((a)[0]))

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the pattern code stores little-endian words directly"
#endif

struct region {
	char name[64];
	int slot;			/* PCI slot from ivlab.regions, -1 when unknown */
	char dev[128];			/* /dev/ivlabK, or the file behind --region */
	int fd;				/* -1 while no device matched */
	uint8_t *map;
	uint64_t size;
	struct ivlab_info info;
	bool is_file;
	uint64_t seen[IVLAB_MAX_VECTORS]; /* last count reported per vector */
};

struct arg {
	const char *key;
	const char *value;
	bool used;
};

struct request {
	const char *verb;
	struct arg args[MAX_ARGS];
	int nargs;
};

/* A growing response line. */
struct reply {
	char *buf;
	size_t len;
	size_t cap;
	bool failed;
};

struct agent {
	struct region regions[MAX_REGIONS];
	int nregions;
	char guest[64];
	char lab[64];
	const char *dev_dir;
	const char *cmdline_path;
};

static struct agent agent = {
	.dev_dir = "/dev",
	.cmdline_path = "/proc/cmdline",
};

/* A SIGBUS from a revoked mapping turns into an error answer. */
static sigjmp_buf fault_jmp;
static volatile sig_atomic_t fault_armed;

static void fault_handler(int sig)
{
	if (fault_armed) {
		fault_armed = 0;
		siglongjmp(fault_jmp, sig);
	}
	signal(sig, SIG_DFL);
	raise(sig);
}

/* --- the response line --------------------------------------------------- */

static void reply_reserve(struct reply *reply, size_t more)
{
	size_t cap = reply->cap ? reply->cap : 256;
	char *buf;

	if (reply->len + more + 1 <= reply->cap)
		return;
	while (cap < reply->len + more + 1)
		cap *= 2;
	buf = realloc(reply->buf, cap);
	if (!buf) {
		reply->failed = true;
		return;
	}
	reply->buf = buf;
	reply->cap = cap;
}

static void reply_add(struct reply *reply, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void reply_add(struct reply *reply, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	reply_reserve(reply, (size_t)n);
	if (reply->failed)
		return;
	va_start(ap, fmt);
	vsnprintf(reply->buf + reply->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	reply->len += (size_t)n;
}

static void reply_clear(struct reply *reply)
{
	reply->len = 0;
	reply->failed = false;
	if (reply->buf)
		reply->buf[0] = '\0';
}

/* Percent-encode bytes that could break a value: space, %, controls, non-ASCII. */
static void reply_add_encoded(struct reply *reply, const uint8_t *data, size_t len)
{
	static const char hex[] = "0123456789ABCDEF";

	reply_reserve(reply, len * 3);
	if (reply->failed)
		return;
	for (size_t i = 0; i < len; i++) {
		uint8_t c = data[i];

		if (c > 0x20 && c < 0x7f && c != '%') {
			reply->buf[reply->len++] = (char)c;
		} else {
			reply->buf[reply->len++] = '%';
			reply->buf[reply->len++] = hex[c >> 4];
			reply->buf[reply->len++] = hex[c & 15];
		}
	}
	reply->buf[reply->len] = '\0';
}

/* Returns false after writing err CODE MESSAGE, so handlers can `return fail(...)`. */
static bool fail(struct reply *reply, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static bool fail(struct reply *reply, const char *code, const char *fmt, ...)
{
	char message[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(message, sizeof(message), fmt, ap);
	va_end(ap);
	reply_clear(reply);
	reply_add(reply, "err %s ", code);
	/* the message is free text, but keep it one printable line */
	for (char *p = message; *p; p++)
		if (!isprint((unsigned char)*p))
			*p = '?';
	reply_add(reply, "%s", message);
	return false;
}

/* --- the pattern and the checksum --------------------------------------- */

static uint64_t splitmix64(uint64_t z)
{
	z += 0x9e3779b97f4a7c15ULL;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static uint8_t pattern_byte(uint64_t seed, uint64_t offset)
{
	return (uint8_t)(splitmix64(seed ^ (offset / 8)) >> (8 * (offset % 8)));
}

/* Writes the pattern of absolute offsets [offset, offset+len) to dst. */
static void pattern_fill(uint8_t *dst, uint64_t offset, uint64_t len, uint64_t seed)
{
	uint64_t x = offset, end = offset + len;

	while (x < end && (x % 8 || end - x < 8)) {
		*dst++ = pattern_byte(seed, x);
		x++;
	}
	for (; end - x >= 8; x += 8, dst += 8) {
		uint64_t word = splitmix64(seed ^ (x / 8));

		memcpy(dst, &word, 8);
	}
	for (; x < end; x++)
		*dst++ = pattern_byte(seed, x);
}

/* Index of the first byte differing from the pattern, or len. */
static uint64_t pattern_check(const uint8_t *src, uint64_t offset, uint64_t len, uint64_t seed)
{
	uint64_t i = 0;

	while (i < len && ((offset + i) % 8 || len - i < 8)) {
		if (src[i] != pattern_byte(seed, offset + i))
			return i;
		i++;
	}
	for (; len - i >= 8; i += 8) {
		uint64_t word = splitmix64(seed ^ ((offset + i) / 8)), actual;

		memcpy(&actual, src + i, 8);
		if (actual != word)
			break;
	}
	for (; i < len; i++)
		if (src[i] != pattern_byte(seed, offset + i))
			return i;
	return len;
}

/* zlib's CRC-32 (reflected 0xedb88320). */
static uint32_t crc32_update(uint32_t crc, const uint8_t *data, uint64_t len)
{
	static uint32_t table[256];

	if (!table[1]) {
		for (uint32_t n = 0; n < 256; n++) {
			uint32_t c = n;

			for (int k = 0; k < 8; k++)
				c = c & 1 ? 0xedb88320U ^ (c >> 1) : c >> 1;
			table[n] = c;
		}
	}
	crc = ~crc;
	for (uint64_t i = 0; i < len; i++)
		crc = table[(crc ^ data[i]) & 0xff] ^ (crc >> 8);
	return ~crc;
}

/* --- requests ------------------------------------------------------------- */

static bool valid_name(const char *s)
{
	if (!*s || strlen(s) >= 64)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '-' && *s != '_' && *s != '.')
			return false;
	return true;
}

/* Splits a request line in place. Only printable ASCII, single spaces. */
static bool parse_request(char *line, struct request *req, struct reply *reply)
{
	char *p = line;

	memset(req, 0, sizeof(*req));
	if (!*line)
		return fail(reply, "proto", "empty request");
	for (const char *c = line; *c; c++)
		if (*c < 0x20 || *c > 0x7e)
			return fail(reply, "proto", "request has a non-printable byte 0x%02x",
				    (unsigned char)*c);
	if (*line == ' ')
		return fail(reply, "proto", "request starts with a space");

	req->verb = p;
	while (*p && *p != ' ')
		p++;
	while (*p) {
		char *key, *eq;

		*p++ = '\0';
		if (!*p || *p == ' ')
			return fail(reply, "proto", "arguments are separated by single spaces");
		key = p;
		while (*p && *p != ' ')
			p++;
		if (req->nargs == MAX_ARGS)
			return fail(reply, "usage", "more than %d arguments", MAX_ARGS);
		eq = strchr(key, '=');
		if (!eq || eq == key || (*p && eq > p))
			return fail(reply, "usage", "argument is not key=value");
		*eq = '\0';
		for (int i = 0; i < req->nargs; i++)
			if (!strcmp(req->args[i].key, key))
				return fail(reply, "usage", "argument %s given twice", key);
		req->args[req->nargs].key = key;
		req->args[req->nargs].value = eq + 1;
		req->nargs++;
	}
	return true;
}

static const char *arg_get(struct request *req, const char *key)
{
	for (int i = 0; i < req->nargs; i++) {
		if (!strcmp(req->args[i].key, key)) {
			req->args[i].used = true;
			return req->args[i].value;
		}
	}
	return NULL;
}

/* Strict decimal: digits only, no sign, no overflow. */
static bool parse_u64(const char *s, uint64_t *out)
{
	uint64_t v = 0;

	if (!*s)
		return false;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return false;
		if (v > (UINT64_MAX - (uint64_t)(*s - '0')) / 10)
			return false;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	*out = v;
	return true;
}

static bool arg_u64(struct request *req, const char *key, uint64_t max, uint64_t *out,
		    struct reply *reply)
{
	const char *value = arg_get(req, key);

	if (!value)
		return fail(reply, "usage", "%s: missing argument %s=", req->verb, key);
	if (!parse_u64(value, out))
		return fail(reply, "usage", "%s: %s=%.40s is not a decimal number", req->verb,
			    key, value);
	if (*out > max)
		return fail(reply, "range", "%s: %s=%" PRIu64 " is above %" PRIu64, req->verb,
			    key, *out, max);
	return true;
}

static bool arg_u64_opt(struct request *req, const char *key, uint64_t max, uint64_t *out,
			bool *given, struct reply *reply)
{
	*given = false;
	for (int i = 0; i < req->nargs; i++)
		if (!strcmp(req->args[i].key, key))
			*given = true;
	return !*given || arg_u64(req, key, max, out, reply);
}

/* After a handler has fetched its arguments: anything left is a mistake. */
static bool args_all_used(struct request *req, struct reply *reply)
{
	for (int i = 0; i < req->nargs; i++)
		if (!req->args[i].used)
			return fail(reply, "usage", "%s: unknown argument %.40s=", req->verb,
				    req->args[i].key);
	return true;
}

/* --- regions -------------------------------------------------------------- */

static bool region_open_device(struct region *region, const char *path)
{
	struct ivlab_info info;
	void *map;
	int fd = open(path, O_RDWR | O_CLOEXEC);

	if (fd < 0)
		return false;
	memset(&info, 0, sizeof(info));
	if (ioctl(fd, IVLAB_IOC_INFO, &info) < 0 || info.version != IVLAB_UAPI_VERSION) {
		close(fd);
		return false;
	}
	map = mmap(NULL, info.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED) {
		close(fd);
		return false;
	}
	region->fd = fd;
	region->map = map;
	region->size = info.size;
	region->info = info;
	snprintf(region->dev, sizeof(region->dev), "%s", path);
	/* interrupts before the agent started count as already reported */
	if (info.vectors) {
		struct ivlab_irq_counts counts;

		memset(&counts, 0, sizeof(counts));
		if (ioctl(fd, IVLAB_IOC_IRQ_COUNTS, &counts) == 0)
			memcpy(region->seen, counts.counts, sizeof(region->seen));
	}
	return true;
}

static void region_close(struct region *region)
{
	if (region->map)
		munmap(region->map, region->size);
	if (region->fd >= 0)
		close(region->fd);
	region->map = NULL;
	region->fd = -1;
}

/* Matches /dev/ivlabN devices to the regions that do not have one yet. */
static void regions_scan(void)
{
	bool from_cmdline = agent.nregions > 0;

	for (int n = 0; n < 64; n++) {
		char path[128];
		struct region probe = { .fd = -1, .slot = -1 };
		int slot;
		bool taken = false;

		snprintf(path, sizeof(path), "%s/ivlab%d", agent.dev_dir, n);
		for (int i = 0; i < agent.nregions; i++)
			if (agent.regions[i].fd >= 0 && !strcmp(agent.regions[i].dev, path))
				taken = true;
		if (taken || !region_open_device(&probe, path))
			continue;

		slot = (int)(probe.info.pci_devfn >> 3);
		if (from_cmdline) {
			struct region *match = NULL;

			for (int i = 0; i < agent.nregions; i++)
				if (agent.regions[i].fd < 0 && agent.regions[i].slot == slot)
					match = &agent.regions[i];
			if (!match) {
				region_close(&probe);
				continue;
			}
			snprintf(probe.name, sizeof(probe.name), "%s", match->name);
			probe.slot = slot;
			*match = probe;
		} else if (agent.nregions < MAX_REGIONS) {
			/* no ivlab.regions: name each device after itself */
			snprintf(probe.name, sizeof(probe.name), "ivlab%d", n);
			probe.slot = slot;
			agent.regions[agent.nregions++] = probe;
		} else {
			region_close(&probe);
		}
	}
}

static void regions_rescan_if_missing(void)
{
	for (int i = 0; i < agent.nregions; i++) {
		if (agent.regions[i].fd < 0 && !agent.regions[i].is_file) {
			regions_scan();
			return;
		}
	}
	if (!agent.nregions)
		regions_scan();
}

/* ivlab.regions=NAME@SLOT,... ivlab.guest=NAME ivlab.lab=NAME */
static void parse_cmdline(const char *path)
{
	char buf[4096];
	char *save = NULL;
	FILE *file = fopen(path, "re");
	size_t n;

	if (!file)
		return;
	n = fread(buf, 1, sizeof(buf) - 1, file);
	fclose(file);
	buf[n] = '\0';

	for (char *tok = strtok_r(buf, " \t\n", &save); tok; tok = strtok_r(NULL, " \t\n", &save)) {
		if (!strncmp(tok, "ivlab.guest=", 12) && valid_name(tok + 12)) {
			snprintf(agent.guest, sizeof(agent.guest), "%s", tok + 12);
		} else if (!strncmp(tok, "ivlab.lab=", 10) && valid_name(tok + 10)) {
			snprintf(agent.lab, sizeof(agent.lab), "%s", tok + 10);
		} else if (!strncmp(tok, "ivlab.regions=", 14)) {
			char *save2 = NULL;

			for (char *item = strtok_r(tok + 14, ",", &save2); item;
			     item = strtok_r(NULL, ",", &save2)) {
				char *at = strrchr(item, '@'), *end;
				struct region *region;
				long slot;

				if (!at || agent.nregions == MAX_REGIONS)
					continue;
				*at = '\0';
				slot = strtol(at + 1, &end, 16);
				if (!valid_name(item) || *end || end == at + 1 || slot < 0 || slot > 31)
					continue;
				region = &agent.regions[agent.nregions++];
				memset(region, 0, sizeof(*region));
				snprintf(region->name, sizeof(region->name), "%s", item);
				region->slot = (int)slot;
				region->fd = -1;
			}
		}
	}
}

/* --region NAME=PATH: a file standing in for a plain region (host tests). */
static bool add_file_region(const char *spec)
{
	const char *eq = strchr(spec, '=');
	struct region *region;
	struct stat st;
	void *map;
	int fd;

	if (!eq || eq == spec || agent.nregions == MAX_REGIONS || (size_t)(eq - spec) >= 64)
		return false;
	fd = open(eq + 1, O_RDWR | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0 || st.st_size <= 0) {
		if (fd >= 0)
			close(fd);
		return false;
	}
	map = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED) {
		close(fd);
		return false;
	}
	region = &agent.regions[agent.nregions++];
	memset(region, 0, sizeof(*region));
	memcpy(region->name, spec, (size_t)(eq - spec));
	snprintf(region->dev, sizeof(region->dev), "%.127s", eq + 1);
	region->fd = fd;
	region->map = map;
	region->size = (uint64_t)st.st_size;
	region->slot = -1;
	region->is_file = true;
	region->info.size = region->size;
	region->info.ivposition = -1;
	return valid_name(region->name);
}

static struct region *arg_region(struct request *req, struct reply *reply)
{
	const char *name = arg_get(req, "region");

	if (!name) {
		fail(reply, "usage", "%s: missing argument region=", req->verb);
		return NULL;
	}
	regions_rescan_if_missing();
	for (int i = 0; i < agent.nregions; i++) {
		struct region *region = &agent.regions[i];

		if (strcmp(region->name, name))
			continue;
		/* a device unbound since it was opened: drop it, look again */
		if (region->fd >= 0 && !region->is_file && ioctl(region->fd, IVLAB_IOC_INFO, &region->info) < 0 &&
		    errno == ENODEV) {
			region_close(region);
			regions_scan();
		}
		if (region->fd < 0) {
			fail(reply, "nodev", "region %s: no ivshmem device in slot %02x", name,
			     region->slot);
			return NULL;
		}
		return region;
	}
	fail(reply, "nodev", "no region named %.64s", name);
	return NULL;
}

/* offset= and length= (or a caller-given length) inside the region. */
static bool arg_range(struct request *req, struct region *region, uint64_t *offset,
		      uint64_t *length, uint64_t max_length, struct reply *reply)
{
	if (!arg_u64(req, "offset", UINT64_MAX, offset, reply))
		return false;
	if (length && !arg_u64(req, "length", max_length, length, reply))
		return false;
	if (*offset > region->size || (length && *length > region->size - *offset))
		return fail(reply, "range", "%s: [%" PRIu64 ", +%" PRIu64 ") is outside region %s of %" PRIu64 " bytes",
			    req->verb, *offset, length ? *length : 0, region->name, region->size);
	return true;
}

static bool region_needs_doorbell(struct request *req, struct region *region, struct reply *reply)
{
	if (!(region->info.caps & IVLAB_CAP_DOORBELL) || !region->info.vectors)
		return fail(reply, "usage", "%s: region %s is plain: it has no doorbell",
			    req->verb, region->name);
	return true;
}

static double now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static bool do_ring(struct region *region, uint32_t peer, uint32_t vector, struct reply *reply)
{
	struct ivlab_ring ring = { .peer = peer, .vector = vector };

	if (ioctl(region->fd, IVLAB_IOC_RING, &ring) < 0)
		return fail(reply, errno == EINVAL ? "range" : "io", "ring: %s", strerror(errno));
	return true;
}

/* Waits for the count of vector to pass region->seen[vector]; 1 done, 0 timeout, -1 error. */
static int do_wait(struct region *region, uint32_t vector, uint64_t seen, uint32_t timeout_ms,
		   struct reply *reply)
{
	struct ivlab_wait wait = { .vector = vector, .timeout_ms = timeout_ms, .seen = seen };
	uint64_t deadline = now_ns() + (uint64_t)timeout_ms * 1000000ULL;

	for (;;) {
		if (ioctl(region->fd, IVLAB_IOC_WAIT, &wait) == 0) {
			region->seen[vector] = wait.count;
			return 1;
		}
		if (errno == ETIMEDOUT)
			return 0;
		if (errno != EINTR) {
			fail(reply, errno == EINVAL ? "range" : "io", "wait: %s", strerror(errno));
			return -1;
		}
		if (now_ns() >= deadline)
			return 0;
		wait.timeout_ms = (uint32_t)((deadline - now_ns()) / 1000000ULL);
	}
}

/* --- verbs ---------------------------------------------------------------- */

static bool cmd_hello(struct request *req, struct reply *reply)
{
	struct utsname uts;

	if (!args_all_used(req, reply))
		return false;
	regions_rescan_if_missing();
	uname(&uts);
	reply_add(reply, "ok proto=%d agent=%s arch=%s kernel=%s guest=%s lab=%s regions=%d",
		  PROTO_VERSION, IVLAB_AGENT_VERSION, uts.machine, uts.release,
		  agent.guest[0] ? agent.guest : "none", agent.lab[0] ? agent.lab : "none",
		  agent.nregions);
	return true;
}

static bool cmd_region(struct request *req, struct reply *reply)
{
	struct region *region;
	uint64_t index;

	regions_rescan_if_missing();
	if (!arg_u64(req, "index", MAX_REGIONS, &index, reply) || !args_all_used(req, reply))
		return false;
	if (index >= (uint64_t)agent.nregions)
		return fail(reply, "range", "region: index=%" PRIu64 " but there are %d regions",
			    index, agent.nregions);
	region = &agent.regions[index];
	if (region->fd < 0)
		return fail(reply, "nodev", "region %s: no ivshmem device in slot %02x",
			    region->name, region->slot);
	reply_add(reply, "ok index=%" PRIu64 " name=%s dev=%s", index, region->name, region->dev);
	if (region->is_file)
		reply_add(reply, " pci=none");
	else
		reply_add(reply, " pci=%04x:%02x:%02x.%x", region->info.pci_domain,
			  region->info.pci_bus, region->info.pci_devfn >> 3,
			  region->info.pci_devfn & 7);
	reply_add(reply, " size=%" PRIu64 " mode=%s ivposition=%d vectors=%u", region->size,
		  region->info.caps & IVLAB_CAP_DOORBELL ? "doorbell" : "plain",
		  region->info.caps & IVLAB_CAP_DOORBELL ? region->info.ivposition : -1,
		  region->info.vectors);
	return true;
}

static bool cmd_fill(struct request *req, struct reply *reply)
{
	struct region *region = arg_region(req, reply);
	uint64_t offset, length, seed;

	if (!region || !arg_range(req, region, &offset, &length, UINT64_MAX, reply) ||
	    !arg_u64(req, "seed", UINT64_MAX, &seed, reply) || !args_all_used(req, reply))
		return false;
	pattern_fill(region->map + offset, offset, length, seed);
	reply_add(reply, "ok");
	return true;
}

static bool cmd_verify(struct request *req, struct reply *reply)
{
	struct region *region = arg_region(req, reply);
	uint64_t offset, length, seed, bad;

	if (!region || !arg_range(req, region, &offset, &length, UINT64_MAX, reply) ||
	    !arg_u64(req, "seed", UINT64_MAX, &seed, reply) || !args_all_used(req, reply))
		return false;
	bad = pattern_check(region->map + offset, offset, length, seed);
	if (bad == length)
		reply_add(reply, "ok match=1");
	else
		reply_add(reply, "ok match=0 bad_offset=%" PRIu64 " expected=%u actual=%u",
			  offset + bad, pattern_byte(seed, offset + bad), region->map[offset + bad]);
	return true;
}

static bool cmd_checksum(struct request *req, struct reply *reply)
{
	struct region *region = arg_region(req, reply);
	uint64_t offset, length;

	if (!region || !arg_range(req, region, &offset, &length, UINT64_MAX, reply) ||
	    !args_all_used(req, reply))
		return false;
	reply_add(reply, "ok crc32=%08x", crc32_update(0, region->map + offset, length));
	return true;
}

static bool cmd_read(struct request *req, struct reply *reply)
{
	struct region *region = arg_region(req, reply);
	uint64_t offset, length;

	if (!region || !arg_range(req, region, &offset, &length, MAX_READ, reply) ||
	    !args_all_used(req, reply))
		return false;
	reply_add(reply, "ok hex=");
	for (uint64_t i = 0; i < length; i++)
		reply_add(reply, "%02x", region->map[offset + i]);
	return true;
}

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static bool cmd_write(struct request *req, struct reply *reply)
{
	struct region *region = arg_region(req, reply);
	const char *hex;
	uint64_t offset, length;

	if (!region || !arg_range(req, region, &offset, NULL, 0, reply))
		return false;
	hex = arg_get(req, "hex");
	if (!hex)
		return fail(reply, "usage", "write: missing argument hex=");
	if (!args_all_used(req, reply))
		return false;
	length = strlen(hex);
	if (!length || length % 2)
		return fail(reply, "usage", "write: hex= needs an even, non-zero number of digits");
	for (const char *p = hex; *p; p++)
		if (hex_digit(*p) < 0)
			return fail(reply, "usage", "write: hex= has a non-hex digit '%c'", *p);
	length /= 2;
	if (length > region->size - offset)
		return fail(reply, "range", "write: %" PRIu64 " bytes at %" PRIu64 " overflow region %s of %" PRIu64 " bytes",
			    length, offset, region->name, region->size);
	for (uint64_t i = 0; i < length; i++)
		region->map[offset + i] = (uint8_t)(hex_digit(hex[2 * i]) << 4 | hex_digit(hex[2 * i + 1]));
	reply_add(reply, "ok");
	return true;
}

/* Single unaligned loads and stores of 2, 4 and 8 bytes. */
struct __attribute__((packed, may_alias)) unaligned16 { uint16_t v; };
struct __attribute__((packed, may_alias)) unaligned32 { uint32_t v; };
struct __attribute__((packed, may_alias)) unaligned64 { uint64_t v; };

static void copy_words(volatile uint8_t *dst, const volatile uint8_t *src, uint64_t len,
		       unsigned int width)
{
	uint64_t i = 0;

	for (; len - i >= width; i += width) {
		switch (width) {
		case 2:
			((volatile struct unaligned16 *)(dst + i))->v =
				((const volatile struct unaligned16 *)(src + i))->v;
			break;
		case 4:
			((volatile struct unaligned32 *)(dst + i))->v =
				((const volatile struct unaligned32 *)(src + i))->v;
			break;
		default:
			((volatile struct unaligned64 *)(dst + i))->v =
				((const volatile struct unaligned64 *)(src + i))->v;
			break;
		}
	}
	for (; i < len; i++)
		dst[i] = src[i];
}

static void copy_bytes(volatile uint8_t *dst, const volatile uint8_t *src, uint64_t len)
{
	for (uint64_t i = 0; i < len; i++)
		dst[i] = src[i];
}

static bool cmd_copytest(struct request *req, struct reply *reply)
{
	static const char *const methods[] = { "bytes", "memcpy", "u16", "u32", "u64" };
	struct region *region = arg_region(req, reply);
	uint64_t offset, length, seed;
	uint8_t *src_mem, *back_mem, *src, *back, *dst;

	if (!region || !arg_range(req, region, &offset, &length, UINT64_MAX, reply) ||
	    !arg_u64(req, "seed", UINT64_MAX, &seed, reply) || !args_all_used(req, reply))
		return false;

	/* user buffers deliberately one byte off any alignment */
	src_mem = malloc(length + 16);
	back_mem = malloc(length + 16);
	if (!src_mem || !back_mem) {
		free(src_mem);
		free(back_mem);
		return fail(reply, "io", "copytest: cannot allocate %" PRIu64 " bytes", length);
	}
	src = src_mem + 1;
	back = back_mem + 3;
	dst = region->map + offset;
	pattern_fill(src, offset, length, seed);

	for (unsigned int m = 0; m < ARRAY_SIZE(methods); m++) {
		uint64_t bad;

		/* the complement differs in every byte, so a lost store shows */
		for (uint64_t i = 0; i < length; i++)
			dst[i] = (uint8_t)~src[i];
		switch (m) {
		case 0:
			copy_bytes(dst, src, length);
			copy_bytes(back, dst, length);
			break;
		case 1:
			memcpy(dst, src, length);
			memcpy(back, dst, length);
			break;
		default:
			copy_words(dst, src, length, 1U << (m - 1));
			copy_words(back, dst, length, 1U << (m - 1));
			break;
		}
		bad = pattern_check(back, offset, length, seed);
		if (bad == length)
			bad = pattern_check(dst, offset, length, seed);
		if (bad != length) {
			fail(reply, "io", "copytest %s: offset %" PRIu64 " expected %u actual %u",
			     methods[m], offset + bad, pattern_byte(seed, offset + bad), back[bad]);
			free(src_mem);
			free(back_mem);
			return false;
		}
	}
	free(src_mem);
	free(back_mem);
	reply_add(reply, "ok copies=%zu", ARRAY_SIZE(methods));
	return true;
}

static bool cmd_atomic_add(struct request *req, struct reply *reply)
{
	struct region *region = arg_region(req, reply);
	uint64_t offset, count, value;
	uint64_t *counter;

	if (!region || !arg_range(req, region, &offset, NULL, 0, reply) ||
	    !arg_u64(req, "count", 1000000000ULL, &count, reply) || !args_all_used(req, reply))
		return false;
	if (offset % 8 || region->size - offset < 8)
		return fail(reply, "range", "atomic_add: offset=%" PRIu64 " must be 8-aligned with 8 bytes left",
			    offset);
	counter = (uint64_t *)(void *)(region->map + offset);
	value = __atomic_load_n(counter, __ATOMIC_SEQ_CST);
	for (uint64_t i = 0; i < count; i++)
		value = __atomic_fetch_add(counter, 1, __ATOMIC_SEQ_CST) + 1;
	reply_add(reply, "ok value=%" PRIu64, value);
	return true;
}

static bool cmd_ring(struct request *req, struct reply *reply)
{
	struct region *region = arg_region(req, reply);
	uint64_t peer, vector;

	if (!region || !arg_u64(req, "peer", 0xffff, &peer, reply) ||
	    !arg_u64(req, "vector", IVLAB_MAX_VECTORS - 1, &vector, reply) ||
	    !args_all_used(req, reply) || !region_needs_doorbell(req, region, reply))
		return false;
	if (!do_ring(region, (uint32_t)peer, (uint32_t)vector, reply))
		return false;
	reply_add(reply, "ok");
	return true;
}

static bool cmd_wait(struct request *req, struct reply *reply)
{
	struct region *region = arg_region(req, reply);
	uint64_t vector, timeout_ms, since;
	bool since_given;
	int ret;

	if (!region || !arg_u64(req, "vector", IVLAB_MAX_VECTORS - 1, &vector, reply) ||
	    !arg_u64(req, "timeout_ms", IVLAB_MAX_TIMEOUT_MS, &timeout_ms, reply) ||
	    !arg_u64_opt(req, "since", UINT64_MAX, &since, &since_given, reply) ||
	    !args_all_used(req, reply) || !region_needs_doorbell(req, region, reply))
		return false;
	if (vector >= region->info.vectors)
		return fail(reply, "range", "wait: vector=%" PRIu64 " but region %s has %u vectors",
			    vector, region->name, region->info.vectors);
	ret = do_wait(region, (uint32_t)vector, since_given ? since : region->seen[vector],
		      (uint32_t)timeout_ms, reply);
	if (ret < 0)
		return false;
	if (ret == 0)
		return fail(reply, "timeout", "wait: no interrupt on vector %" PRIu64 " of region %s within %" PRIu64 " ms",
			    vector, region->name, timeout_ms);
	reply_add(reply, "ok count=%" PRIu64, region->seen[vector]);
	return true;
}

static bool cmd_irqcount(struct request *req, struct reply *reply)
{
	struct region *region = arg_region(req, reply);
	struct ivlab_irq_counts counts;

	if (!region || !args_all_used(req, reply) || !region_needs_doorbell(req, region, reply))
		return false;
	memset(&counts, 0, sizeof(counts));
	if (ioctl(region->fd, IVLAB_IOC_IRQ_COUNTS, &counts) < 0)
		return fail(reply, "io", "irqcount: %s", strerror(errno));
	reply_add(reply, "ok counts=");
	for (uint32_t i = 0; i < counts.vectors && i < IVLAB_MAX_VECTORS; i++) {
		reply_add(reply, "%s%" PRIu64, i ? "," : "", (uint64_t)counts.counts[i]);
		region->seen[i] = counts.counts[i];
	}
	return true;
}

static bool cmd_bench_copy(struct request *req, struct reply *reply)
{
	struct region *region = arg_region(req, reply);
	uint64_t size, iterations;
	double t0, to_region, from_region, ram;
	uint8_t *a, *b;

	if (!region || !arg_u64(req, "size", UINT64_MAX, &size, reply) ||
	    !arg_u64(req, "iterations", 1000000, &iterations, reply) || !args_all_used(req, reply))
		return false;
	if (!size || size > region->size || !iterations)
		return fail(reply, "range", "bench_copy: size must be 1..%" PRIu64 " and iterations at least 1",
			    region->size);
	a = malloc(size);
	b = malloc(size);
	if (!a || !b) {
		free(a);
		free(b);
		return fail(reply, "io", "bench_copy: cannot allocate %" PRIu64 " bytes", size);
	}
	memset(a, 0x5a, size);
	memset(b, 0xa5, size);

	t0 = now_seconds();
	for (uint64_t i = 0; i < iterations; i++)
		memcpy(region->map, a, size);
	to_region = now_seconds() - t0;
	t0 = now_seconds();
	for (uint64_t i = 0; i < iterations; i++)
		memcpy(b, region->map, size);
	from_region = now_seconds() - t0;
	t0 = now_seconds();
	for (uint64_t i = 0; i < iterations; i++)
		memcpy(a, b, size);
	ram = now_seconds() - t0;
	free(a);
	free(b);

#define MBPS(seconds) ((double)size * (double)iterations / ((seconds) > 1e-9 ? (seconds) : 1e-9) / 1e6)
	reply_add(reply, "ok to_region_mbps=%.1f from_region_mbps=%.1f ram_mbps=%.1f",
		  MBPS(to_region), MBPS(from_region), MBPS(ram));
#undef MBPS
	return true;
}

static int compare_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static bool cmd_pingpong(struct request *req, struct reply *reply)
{
	struct region *region = arg_region(req, reply);
	uint64_t peer, vector, iterations, timeout_ms;
	const char *role;
	bool initiator;
	uint64_t *samples;

	if (!region || !arg_u64(req, "peer", 0xffff, &peer, reply) ||
	    !arg_u64(req, "vector", IVLAB_MAX_VECTORS - 1, &vector, reply) ||
	    !arg_u64(req, "iterations", 1000000, &iterations, reply) ||
	    !arg_u64(req, "timeout_ms", IVLAB_MAX_TIMEOUT_MS, &timeout_ms, reply))
		return false;
	role = arg_get(req, "role");
	if (!role || (strcmp(role, "initiator") && strcmp(role, "responder")))
		return fail(reply, "usage", "pingpong: role= must be initiator or responder");
	if (!args_all_used(req, reply) || !region_needs_doorbell(req, region, reply))
		return false;
	if (vector >= region->info.vectors)
		return fail(reply, "range", "pingpong: vector=%" PRIu64 " but region %s has %u vectors",
			    vector, region->name, region->info.vectors);
	if (!iterations)
		return fail(reply, "range", "pingpong: iterations must be at least 1");
	initiator = !strcmp(role, "initiator");

	samples = calloc(iterations, sizeof(*samples));
	if (!samples)
		return fail(reply, "io", "pingpong: cannot allocate %" PRIu64 " samples", iterations);

	/*
	 * The responder answers interrupts since the last reported count (see
	 * PROTOCOL.md); the initiator only counts answers to its own rings.
	 */
	if (initiator) {
		struct ivlab_irq_counts counts;

		memset(&counts, 0, sizeof(counts));
		if (ioctl(region->fd, IVLAB_IOC_IRQ_COUNTS, &counts) < 0) {
			fail(reply, "io", "pingpong: irqcount: %s", strerror(errno));
			goto out;
		}
		region->seen[vector] = counts.counts[vector];
	}
	for (uint64_t i = 0; i < iterations; i++) {
		uint64_t t0 = now_ns();
		int ret;

		if (initiator && !do_ring(region, (uint32_t)peer, (uint32_t)vector, reply))
			goto out;
		ret = do_wait(region, (uint32_t)vector, region->seen[vector], (uint32_t)timeout_ms,
			      reply);
		if (ret < 0)
			goto out;
		if (ret == 0) {
			fail(reply, "timeout", "pingpong: no ring from peer %" PRIu64 " in round %" PRIu64 " within %" PRIu64 " ms",
			     peer, i, timeout_ms);
			goto out;
		}
		if (!initiator && !do_ring(region, (uint32_t)peer, (uint32_t)vector, reply))
			goto out;
		samples[i] = now_ns() - t0;
	}
	if (initiator) {
		qsort(samples, iterations, sizeof(*samples), compare_u64);
		reply_add(reply, "ok median_ns=%" PRIu64 " p99_ns=%" PRIu64 " iterations=%" PRIu64,
			  samples[iterations / 2], samples[(iterations * 99) / 100 < iterations ?
							   (iterations * 99) / 100 : iterations - 1],
			  iterations);
	} else {
		reply_add(reply, "ok iterations=%" PRIu64, iterations);
	}
	free(samples);
	return true;
out:
	free(samples);
	return false;
}

/* --- drvtest: the driver's ioctl and mmap contract, one named case each --- */

struct drvtest {
	struct reply *report;
	int cases;
	int failed;
};

static void drv_case(struct drvtest *t, const char *name, bool pass, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void drv_case(struct drvtest *t, const char *name, bool pass, const char *fmt, ...)
{
	char why[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	t->cases++;
	if (!pass)
		t->failed++;
	reply_add(t->report, "%s %s%s%s\n", pass ? "PASS" : "FAIL", name, pass ? "" : ": ",
		  pass ? "" : why);
}

/* errno of an ioctl expected to fail, or 0 if it succeeded */
static int ioctl_errno(int fd, unsigned long request, void *arg)
{
	return ioctl(fd, request, arg) < 0 ? errno : 0;
}

static void drv_case_errno(struct drvtest *t, const char *name, int got, int want)
{
	drv_case(t, name, got == want, "got %s, want %s", got ? strerror(got) : "success",
		 want ? strerror(want) : "success");
}

static void drvtest_info(struct drvtest *t, struct region *region, struct ivlab_info *info)
{
	int err = ioctl_errno(region->fd, IVLAB_IOC_INFO, info);
	bool doorbell = info->caps & IVLAB_CAP_DOORBELL;

	drv_case_errno(t, "info", err, 0);
	drv_case(t, "info_version", info->version == IVLAB_UAPI_VERSION, "version %u", info->version);
	drv_case(t, "info_revision", info->revision == 1, "revision %u", info->revision);
	drv_case(t, "info_size", info->size == region->size && info->size >= 4096,
		 "size %llu, mapped %" PRIu64, (unsigned long long)info->size, region->size);
	drv_case(t, "info_normal_memory", info->caps & IVLAB_CAP_MMAP_NORMAL, "caps %#x", info->caps);
	drv_case(t, "info_mode", doorbell ? info->vectors > 0 && info->ivposition >= 0 :
		 info->vectors == 0 && info->ivposition == -1,
		 "caps %#x, vectors %u, ivposition %d", info->caps, info->vectors, info->ivposition);
	drv_case(t, "info_slot", region->slot < 0 || (int)(info->pci_devfn >> 3) == region->slot,
		 "devfn %#x, slot %02x", info->pci_devfn, region->slot);
	drv_case_errno(t, "info_efault", ioctl_errno(region->fd, IVLAB_IOC_INFO, NULL), EFAULT);
	drv_case_errno(t, "unknown_ioctl_enotty",
		       ioctl_errno(region->fd, _IO(IVLAB_IOC_MAGIC, 0x7f), NULL), ENOTTY);
}

static void drvtest_ring_wait(struct drvtest *t, struct region *region, struct ivlab_info *info)
{
	struct ivlab_ring ring = { 0 };
	struct ivlab_wait wait = { 0 };
	struct ivlab_irq_counts counts;
	bool doorbell = info->caps & IVLAB_CAP_DOORBELL;
	uint64_t t0, elapsed_ms;
	int err;

	ring.flags = 1;
	drv_case_errno(t, "ring_flags_einval", ioctl_errno(region->fd, IVLAB_IOC_RING, &ring), EINVAL);
	ring.flags = 0;
	wait.flags = 1;
	drv_case_errno(t, "wait_flags_einval", ioctl_errno(region->fd, IVLAB_IOC_WAIT, &wait), EINVAL);
	wait.flags = 0;
	wait.vector = info->vectors;
	drv_case_errno(t, "wait_vector_einval", ioctl_errno(region->fd, IVLAB_IOC_WAIT, &wait), EINVAL);

	memset(&counts, 0xff, sizeof(counts));
	err = ioctl_errno(region->fd, IVLAB_IOC_IRQ_COUNTS, &counts);
	drv_case(t, "irq_counts", !err && counts.vectors == info->vectors, "%s, %u vectors",
		 err ? strerror(err) : "ok", counts.vectors);

	if (!doorbell) {
		drv_case_errno(t, "ring_plain_eopnotsupp",
			       ioctl_errno(region->fd, IVLAB_IOC_RING, &ring), EOPNOTSUPP);
		return;
	}

	ring.peer = 0x10000;
	drv_case_errno(t, "ring_peer_einval", ioctl_errno(region->fd, IVLAB_IOC_RING, &ring), EINVAL);
	ring.peer = 0;
	ring.vector = info->vectors;
	drv_case_errno(t, "ring_vector_einval", ioctl_errno(region->fd, IVLAB_IOC_RING, &ring), EINVAL);

	wait.vector = 0;
	wait.timeout_ms = IVLAB_MAX_TIMEOUT_MS + 1;
	drv_case_errno(t, "wait_timeout_einval", ioctl_errno(region->fd, IVLAB_IOC_WAIT, &wait), EINVAL);

	/* nothing pending past the current count: a poll and a short wait time out */
	wait.seen = counts.counts[0];
	wait.timeout_ms = 0;
	drv_case_errno(t, "wait_poll_etimedout", ioctl_errno(region->fd, IVLAB_IOC_WAIT, &wait),
		       ETIMEDOUT);
	wait.timeout_ms = 200;
	t0 = now_ns();
	err = ioctl_errno(region->fd, IVLAB_IOC_WAIT, &wait);
	elapsed_ms = (now_ns() - t0) / 1000000;
	drv_case(t, "wait_timeout_etimedout", err == ETIMEDOUT && elapsed_ms >= 190 && elapsed_ms < 10000,
		 "%s after %" PRIu64 " ms", err ? strerror(err) : "success", elapsed_ms);

	/* every vector, rung by ourselves: each wait sees exactly its own count move */
	for (uint32_t vector = 0; vector < info->vectors; vector++) {
		struct ivlab_irq_counts after;
		char name[32];
		bool others_still = true;

		ring.peer = (uint32_t)info->ivposition;
		ring.vector = vector;
		wait.vector = vector;
		wait.seen = counts.counts[vector];
		wait.timeout_ms = 10000;
		err = ioctl_errno(region->fd, IVLAB_IOC_RING, &ring);
		if (!err)
			err = ioctl_errno(region->fd, IVLAB_IOC_WAIT, &wait);
		memset(&after, 0, sizeof(after));
		ioctl(region->fd, IVLAB_IOC_IRQ_COUNTS, &after);
		for (uint32_t other = 0; other < info->vectors; other++)
			if (other != vector && after.counts[other] != counts.counts[other])
				others_still = false;
		snprintf(name, sizeof(name), "self_ring_vector_%u", vector);
		drv_case(t, name, !err && wait.count == counts.counts[vector] + 1 && others_still,
			 "%s, count %llu -> %llu, other vectors %s", err ? strerror(err) : "ok",
			 (unsigned long long)counts.counts[vector], (unsigned long long)wait.count,
			 others_still ? "still" : "moved");
		memcpy(counts.counts, after.counts, sizeof(counts.counts));
		region->seen[vector] = after.counts[vector];
	}
}

static void drvtest_mmap(struct drvtest *t, struct region *region)
{
	long page = sysconf(_SC_PAGESIZE);
	void *map;
	int err;

	map = mmap(NULL, (size_t)page, PROT_READ | PROT_WRITE, MAP_PRIVATE, region->fd, 0);
	err = map == MAP_FAILED ? errno : 0;
	if (map != MAP_FAILED)
		munmap(map, (size_t)page);
	drv_case_errno(t, "mmap_private_einval", err, EINVAL);

	map = mmap(NULL, region->size + (size_t)page, PROT_READ, MAP_SHARED, region->fd, 0);
	err = map == MAP_FAILED ? errno : 0;
	if (map != MAP_FAILED)
		munmap(map, region->size + (size_t)page);
	drv_case_errno(t, "mmap_too_long_einval", err, EINVAL);

	map = mmap(NULL, (size_t)page, PROT_READ, MAP_SHARED, region->fd, (off_t)region->size);
	err = map == MAP_FAILED ? errno : 0;
	if (map != MAP_FAILED)
		munmap(map, (size_t)page);
	drv_case_errno(t, "mmap_past_end_einval", err, EINVAL);

	/* the last page through a second mapping at an offset: same memory */
	map = mmap(NULL, (size_t)page, PROT_READ | PROT_WRITE, MAP_SHARED, region->fd,
		   (off_t)(region->size - (uint64_t)page));
	err = map == MAP_FAILED ? errno : 0;
	if (!err) {
		volatile uint8_t *last = (uint8_t *)map + page - 1;
		uint8_t old = region->map[region->size - 1];

		*last = (uint8_t)(old ^ 0xa5);
		err = region->map[region->size - 1] == (uint8_t)(old ^ 0xa5) ? 0 : EIO;
		*last = old;
		munmap(map, (size_t)page);
	}
	drv_case_errno(t, "mmap_offset_aliases", err, 0);
}

static bool cmd_drvtest(struct request *req, struct reply *reply)
{
	struct region *region = arg_region(req, reply);
	struct reply report = { 0 };
	struct drvtest t = { .report = &report };
	struct ivlab_info info;

	if (!region || !args_all_used(req, reply))
		return false;
	if (region->is_file)
		return fail(reply, "usage", "drvtest: region %s is a file, not an ivlab device",
			    region->name);
	memset(&info, 0, sizeof(info));
	drvtest_info(&t, region, &info);
	drvtest_ring_wait(&t, region, &info);
	drvtest_mmap(&t, region);
	reply_add(reply, "ok cases=%d failed=%d report=", t.cases, t.failed);
	reply_add_encoded(reply, (uint8_t *)report.buf, report.len);
	free(report.buf);
	return true;
}

static bool line_has_problem(const char *line, size_t len)
{
	static const char *const words[] = { "WARNING:", "BUG:", "Oops" };

	for (size_t w = 0; w < ARRAY_SIZE(words); w++)
		if (memmem(line, len, words[w], strlen(words[w])))
			return true;
	return false;
}

static bool cmd_dmesg(struct request *req, struct reply *reply)
{
	int size, len, problems = 0;
	char *log;
	size_t tail;

	if (!args_all_used(req, reply))
		return false;
	size = klogctl(10 /* SYSLOG_ACTION_SIZE_BUFFER */, NULL, 0);
	if (size <= 0)
		size = 1 << 20;
	log = malloc((size_t)size);
	if (!log)
		return fail(reply, "io", "dmesg: cannot allocate %d bytes", size);
	len = klogctl(3 /* SYSLOG_ACTION_READ_ALL */, log, size);
	if (len < 0) {
		int saved = errno;

		free(log);
		return fail(reply, "io", "dmesg: %s", strerror(saved));
	}
	for (int start = 0; start < len;) {
		const char *nl = memchr(log + start, '\n', (size_t)(len - start));
		int end = nl ? (int)(nl - log) : len;

		if (line_has_problem(log + start, (size_t)(end - start)))
			problems++;
		start = end + 1;
	}
	tail = (size_t)len > DMESG_TAIL ? DMESG_TAIL : (size_t)len;
	reply_add(reply, "ok problems=%d log=", problems);
	reply_add_encoded(reply, (uint8_t *)log + len - tail, tail);
	free(log);
	return true;
}

static bool percent_decode(const char *in, char *out, size_t cap)
{
	size_t n = 0;

	for (; *in; in++) {
		int c = (unsigned char)*in;

		if (c == '%') {
			int hi = hex_digit(in[1]), lo = hi < 0 ? -1 : hex_digit(in[2]);

			if (hi < 0 || lo < 0)
				return false;
			c = hi << 4 | lo;
			in += 2;
		}
		if (n + 1 >= cap || c == 0)
			return false;
		out[n++] = (char)c;
	}
	out[n] = '\0';
	return true;
}

/* Appends what the pipe has now; false at end of file. */
static bool exec_drain(int fd, char *output, size_t *used)
{
	for (;;) {
		char chunk[4096];
		ssize_t n = read(fd, chunk, sizeof(chunk));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EAGAIN;
		if (n == 0)
			return false;
		if (*used < EXEC_OUTPUT_MAX) {
			size_t room = EXEC_OUTPUT_MAX - *used;
			size_t take = (size_t)n < room ? (size_t)n : room;

			memcpy(output + *used, chunk, take);
			*used += take;
		}
	}
}

static bool cmd_exec(struct request *req, struct reply *reply)
{
	const char *encoded = arg_get(req, "cmd");
	char command[MAX_REQUEST];
	uint64_t timeout_ms = 60000, deadline;
	bool timeout_given, exited = false;
	char *output;
	size_t used = 0;
	int pipefd[2], status = 0;
	pid_t pid;

	if (!encoded)
		return fail(reply, "usage", "exec: missing argument cmd=");
	if (!arg_u64_opt(req, "timeout_ms", IVLAB_MAX_TIMEOUT_MS, &timeout_ms, &timeout_given, reply) ||
	    !args_all_used(req, reply))
		return false;
	if (!percent_decode(encoded, command, sizeof(command)) || !command[0])
		return fail(reply, "usage", "exec: cmd= is not valid percent-encoded text");
	output = malloc(EXEC_OUTPUT_MAX);
	if (!output)
		return fail(reply, "io", "exec: out of memory");
	if (pipe2(pipefd, O_CLOEXEC | O_NONBLOCK) < 0) {
		free(output);
		return fail(reply, "io", "exec: pipe: %s", strerror(errno));
	}
	pid = fork();
	if (pid < 0) {
		close(pipefd[0]);
		close(pipefd[1]);
		free(output);
		return fail(reply, "io", "exec: fork: %s", strerror(errno));
	}
	if (pid == 0) {
		int null = open("/dev/null", O_RDONLY);

		setpgid(0, 0);
		dup2(null, 0);
		dup2(pipefd[1], 1);
		dup2(pipefd[1], 2);
		fcntl(1, F_SETFL, 0);
		signal(SIGPIPE, SIG_DFL);
		execl("/bin/sh", "sh", "-c", command, (char *)NULL);
		_exit(127);
	}
	close(pipefd[1]);

	/* until the shell exits (background children may keep the pipe open) */
	deadline = now_ns() + timeout_ms * 1000000ULL;
	while (!exited) {
		struct pollfd pfd = { .fd = pipefd[0], .events = POLLIN };

		poll(&pfd, 1, 50);
		if (!exec_drain(pipefd[0], output, &used)) {
			while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
				;
			exited = true;
		} else if (waitpid(pid, &status, WNOHANG) == pid) {
			exec_drain(pipefd[0], output, &used);
			exited = true;
		} else if (now_ns() > deadline) {
			kill(-pid, SIGKILL);
			while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
				;
			close(pipefd[0]);
			free(output);
			return fail(reply, "timeout", "exec: still running after %" PRIu64 " ms, killed",
				    timeout_ms);
		}
	}
	close(pipefd[0]);
	reply_add(reply, "ok status=%d output=",
		  WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
	reply_add_encoded(reply, (uint8_t *)output, used);
	free(output);
	return true;
}

static const struct verb {
	const char *name;
	bool (*handler)(struct request *req, struct reply *reply);
} verbs[] = {
	{ "atomic_add", cmd_atomic_add },
	{ "bench_copy", cmd_bench_copy },
	{ "checksum", cmd_checksum },
	{ "copytest", cmd_copytest },
	{ "dmesg", cmd_dmesg },
	{ "drvtest", cmd_drvtest },
	{ "exec", cmd_exec },
	{ "fill", cmd_fill },
	{ "hello", cmd_hello },
	{ "irqcount", cmd_irqcount },
	{ "pingpong", cmd_pingpong },
	{ "read", cmd_read },
	{ "region", cmd_region },
	{ "ring", cmd_ring },
	{ "verify", cmd_verify },
	{ "wait", cmd_wait },
	{ "write", cmd_write },
};

/* Answers one request line (without its newline) into reply. */
static void handle_line(char *line, struct reply *reply)
{
	struct request req;
	int sig;

	reply_clear(reply);
	if (!parse_request(line, &req, reply))
		return;
	for (size_t i = 0; i < ARRAY_SIZE(verbs); i++) {
		if (strcmp(verbs[i].name, req.verb))
			continue;
		sig = sigsetjmp(fault_jmp, 1);
		if (sig) {
			fail(reply, "io", "%s: %s while accessing the region (device removed?)",
			     req.verb, strsignal(sig));
			return;
		}
		fault_armed = 1;
		verbs[i].handler(&req, reply);
		fault_armed = 0;
		if (reply->failed)
			fail(reply, "io", "%s: response too large", req.verb);
		return;
	}
	fail(reply, "usage", "unknown verb %.64s", req.verb);
}

/* --- the port ------------------------------------------------------------- */

static bool write_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = write(fd, buf, len);

		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0)
			return false;
		buf += n;
		len -= (size_t)n;
	}
	return true;
}

static bool send_line(int fd, struct reply *reply)
{
	reply_reserve(reply, 1);
	if (reply->failed)
		return write_all(fd, "err io out of memory\n", 21);
	reply->buf[reply->len] = '\n';
	return write_all(fd, reply->buf, reply->len + 1);
}

/* Reads requests until the input ends (stdio) or forever (a port). */
static int serve(int in, int out, bool is_port)
{
	static char buf[MAX_REQUEST + 1];
	struct reply reply = { 0 };
	size_t len = 0;
	bool discarding = false;

	reply_add(&reply, "ready proto=%d", PROTO_VERSION);
	if (!send_line(out, &reply))
		return 1;

	for (;;) {
		ssize_t n = read(in, buf + len, sizeof(buf) - 1 - len);
		char *start, *nl;

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (!is_port)
				return 0;
			/* the host end is closed: wait for it to come back */
			poll(NULL, 0, 50);
			continue;
		}
		len += (size_t)n;
		start = buf;
		while ((nl = memchr(start, '\n', len - (size_t)(start - buf)))) {
			*nl = '\0';
			if (discarding) {
				discarding = false;
			} else {
				handle_line(start, &reply);
				if (!send_line(out, &reply) && !is_port)
					return 1;
			}
			start = nl + 1;
		}
		len -= (size_t)(start - buf);
		memmove(buf, start, len);
		if (len == MAX_REQUEST) {
			/* too long: answer once, drop the rest of the line */
			if (!discarding) {
				fail(&reply, "proto", "request longer than %d bytes", MAX_REQUEST);
				if (!send_line(out, &reply) && !is_port)
					return 1;
			}
			discarding = true;
			len = 0;
		}
	}
}

/* /sys/class/virtio-ports/vportNpM/name == org.ivlab.agent.0 -> /dev/vportNpM */
static bool find_port(char *path, size_t size)
{
	DIR *dir = opendir("/sys/class/virtio-ports");
	struct dirent *entry;
	bool found = false;

	if (!dir)
		return false;
	while (!found && (entry = readdir(dir))) {
		char name_path[512], name[128] = "";
		FILE *file;

		if (entry->d_name[0] == '.')
			continue;
		snprintf(name_path, sizeof(name_path), "/sys/class/virtio-ports/%s/name",
			 entry->d_name);
		file = fopen(name_path, "re");
		if (!file)
			continue;
		if (fgets(name, sizeof(name), file))
			name[strcspn(name, "\n")] = '\0';
		fclose(file);
		if (!strcmp(name, AGENT_PORT_NAME)) {
			snprintf(path, size, "/dev/%s", entry->d_name);
			found = access(path, R_OK | W_OK) == 0;
		}
	}
	closedir(dir);
	return found;
}

/* --- self test ------------------------------------------------------------ */

static int selftest_count, selftest_failed;

static void selftest_check(bool ok, const char *what)
{
	selftest_count++;
	if (!ok)
		selftest_failed++;
	printf("%s %d - %s\n", ok ? "ok" : "not ok", selftest_count, what);
}

/* fill and check agree with pattern_byte at every start alignment */
static bool selftest_pattern(void)
{
	uint8_t buf[64], ref[64];

	for (uint64_t off = 0; off < 9; off++) {
		for (uint64_t i = 0; i < 40; i++)
			ref[i] = pattern_byte(42, off + i);
		pattern_fill(buf, off, 40, 42);
		if (memcmp(buf, ref, 40) || pattern_check(buf, off, 40, 42) != 40)
			return false;
		buf[17] ^= 1;
		if (pattern_check(buf, off, 40, 42) != 17)
			return false;
	}
	return true;
}

static int selftest(void)
{
	struct reply reply = { 0 };
	char line[64];

	/* splitmix64(0) from the reference implementation */
	selftest_check(splitmix64(0) == 0xe220a8397b1dcdafULL, "splitmix64(0)");
	selftest_check(crc32_update(0, (const uint8_t *)"123456789", 9) == 0xcbf43926U,
		       "crc32 check value");
	selftest_check(selftest_pattern(), "pattern fill/check at every alignment");
	reply_add_encoded(&reply, (const uint8_t *)"a b%\n", 5);
	selftest_check(!strcmp(reply.buf, "a%20b%25%0A"), "percent encoding");
	selftest_check(percent_decode("a%20b%25", line, sizeof(line)) && !strcmp(line, "a b%"),
		       "percent decoding");
	selftest_check(!percent_decode("a%2", line, sizeof(line)), "bad percent escape refused");
	free(reply.buf);
	printf("1..%d\n", selftest_count);
	return selftest_failed ? 1 : 0;
}

static void usage(FILE *out)
{
	fprintf(out,
		"usage: ivlab-agent [--stdio] [--port PATH] [--cmdline FILE] [--dev-dir DIR]\n"
		"                   [--region NAME=FILE]... | --selftest | --version\n"
		"Serves the ivlab agent protocol on the virtio-serial port %s,\n"
		"or on stdin/stdout with --stdio.\n", AGENT_PORT_NAME);
}

int main(int argc, char **argv)
{
	const char *port = NULL;
	bool use_stdio = false;
	struct sigaction sa;
	char path[300];
	int fd, waited = 0;

	for (int i = 1; i < argc; i++) {
		const char *opt = argv[i];
		const char *value = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(opt, "--stdio")) {
			use_stdio = true;
		} else if (!strcmp(opt, "--selftest")) {
			return selftest();
		} else if (!strcmp(opt, "--version")) {
			printf("ivlab-agent %s (protocol %d)\n", IVLAB_AGENT_VERSION, PROTO_VERSION);
			return 0;
		} else if (!strcmp(opt, "--help")) {
			usage(stdout);
			return 0;
		} else if (value && !strcmp(opt, "--port")) {
			port = value;
			i++;
		} else if (value && !strcmp(opt, "--cmdline")) {
			agent.cmdline_path = value;
			i++;
		} else if (value && !strcmp(opt, "--dev-dir")) {
			agent.dev_dir = value;
			i++;
		} else if (value && !strcmp(opt, "--region")) {
			if (!add_file_region(value)) {
				fprintf(stderr, "ivlab-agent: --region %s: need NAME=FILE of a non-empty file\n",
					value);
				return 2;
			}
			i++;
		} else {
			fprintf(stderr, "ivlab-agent: bad option %s\n", opt);
			usage(stderr);
			return 2;
		}
	}

	signal(SIGPIPE, SIG_IGN);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = fault_handler;
	sa.sa_flags = SA_NODEFER;
	sigaction(SIGBUS, &sa, NULL);
	sigaction(SIGSEGV, &sa, NULL);

	parse_cmdline(agent.cmdline_path);
	regions_scan();

	if (use_stdio)
		return serve(0, 1, false);

	if (!port) {
		while (!find_port(path, sizeof(path))) {
			if (waited >= PORT_WAIT_MS) {
				fprintf(stderr, "ivlab-agent: no virtio port named %s\n", AGENT_PORT_NAME);
				return 1;
			}
			poll(NULL, 0, 50);
			waited += 50;
		}
		port = path;
	}
	fd = open(port, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "ivlab-agent: %s: %s\n", port, strerror(errno));
		return 1;
	}
	return serve(fd, fd, true);
}
