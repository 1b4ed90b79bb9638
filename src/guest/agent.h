/* agent.h: what the parts of the ivlab guest agent share (see PROTOCOL.md;
 * the protocol's constants and pattern are in ivlab-agent.h): request
 * parsing and replies, the regions and the verbs. */
#ifndef IVLAB_AGENT_H
#define IVLAB_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <ivlab-agent.h>
#include <uapi/ivlab.h>

#ifndef IVLAB_AGENT_VERSION
#define IVLAB_AGENT_VERSION "0.1.0"
#endif

#define MAX_ARGS		16
#define MAX_REGIONS		32
#define PORT_WAIT_MS		30000

#define ARRAY_SIZE(a)		(sizeof(a) / sizeof((a)[0]))

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

extern struct agent agent;

static inline double now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* agent-proto.c: the response line, request parsing, argument checks */
void reply_reserve(struct reply *reply, size_t more);
void reply_add(struct reply *reply, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void reply_clear(struct reply *reply);
void reply_add_encoded(struct reply *reply, const uint8_t *data, size_t len);
/* Writes `err CODE MESSAGE` and returns false, so handlers can `return fail(...)`. */
bool fail(struct reply *reply, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
bool valid_name(const char *s);
bool parse_request(char *line, struct request *req, struct reply *reply);
const char *arg_get(struct request *req, const char *key);
bool arg_u64(struct request *req, const char *key, uint64_t max, uint64_t *out,
	     struct reply *reply);
bool arg_u64_opt(struct request *req, const char *key, uint64_t max, uint64_t *out,
		 bool *given, struct reply *reply);
bool args_all_used(struct request *req, struct reply *reply);
int hex_digit(char c);
bool percent_decode(const char *in, char *out, size_t cap);

/* agent-crc32.c: zlib's CRC-32 */
uint32_t crc32_update(uint32_t crc, const uint8_t *data, uint64_t len);

/* agent-region.c: regions, their devices, and the doorbell */
void regions_scan(void);
void regions_rescan_if_missing(void);
void region_close(struct region *region);
void parse_cmdline(const char *path);
bool add_file_region(const char *spec);
struct region *arg_region(struct request *req, struct reply *reply);
bool arg_range(struct request *req, struct region *region, uint64_t *offset,
	       uint64_t *length, uint64_t max_length, struct reply *reply);
bool region_needs_doorbell(struct request *req, struct region *region, struct reply *reply);
bool region_ring(struct region *region, uint32_t peer, uint32_t vector, struct reply *reply);
int region_wait(struct region *region, uint32_t vector, uint64_t seen, uint32_t timeout_ms,
		struct reply *reply);

/* agent-drvfuzz.c: random ioctls on a region's device */
bool cmd_drvfuzz(struct request *req, struct reply *reply);

/* agent-proc.c: processes run for the host (spawn, poll, kill) */
struct pollfd;
void procs_service(void);
int procs_pollfds(struct pollfd *fds, int max);
int procs_wait_ms(void);
void procs_kill_all(void);
bool cmd_spawn(struct request *req, struct reply *reply);
bool cmd_poll(struct request *req, struct reply *reply);
bool cmd_kill(struct request *req, struct reply *reply);

/* agent-file.c: files (put, get, sha256, rename, unlink) */
long base64_decode(const char *in, uint8_t *out);
bool sha256_fd(int fd, char hex[65], uint64_t *size);
void reply_add_base64(struct reply *reply, const uint8_t *data, size_t len);
/* Closes the file `put` keeps open between chunks. */
void files_close(void);
bool cmd_put(struct request *req, struct reply *reply);
bool cmd_get(struct request *req, struct reply *reply);
bool cmd_sha256(struct request *req, struct reply *reply);
bool cmd_rename(struct request *req, struct reply *reply);
bool cmd_unlink(struct request *req, struct reply *reply);

/* agent-verbs.c and agent-drvtest.c: the verbs */
void agent_catch_faults(void);
void handle_line(char *line, struct reply *reply);
bool cmd_drvtest(struct request *req, struct reply *reply);

#endif /* IVLAB_AGENT_H */
