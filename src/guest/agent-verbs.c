/* agent-verbs.c: one handler per verb of PROTOCOL.md, the verb table, and
 * the dispatch that turns a SIGBUS from a revoked mapping into an error. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/klog.h>
#include <sys/utsname.h>
#include <sys/wait.h>

#include "agent.h"

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

void agent_catch_faults(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = fault_handler;
	sa.sa_flags = SA_NODEFER;
	sigaction(SIGBUS, &sa, NULL);
	sigaction(SIGSEGV, &sa, NULL);
}

/* Written by /init once it applied the lab's modules, shares and boot commands. */
#define IVLAB_BOOT_STATUS "/run/ivlab/boot-status"

/* Written by /init just before it starts the agent: its stages' uptimes. */
#define IVLAB_BOOT_PROFILE "/run/ivlab/boot-profile"

/* The first line of path, without its newline, or "" when there is none. */
static void read_first_line(const char *path, char *line, size_t size)
{
	FILE *file = fopen(path, "re");

	line[0] = '\0';
	if (!file)
		return;
	if (!fgets(line, (int)size, file))
		line[0] = '\0';
	line[strcspn(line, "\n")] = '\0';
	fclose(file);
}

/* The kernel's timestamp of "Run /init as init process" in its log, or
 * NULL: when its own init was done (quiet or not, the log has it). */
static const char *kernel_init_done(char *stamp, size_t size)
{
	static char log[1 << 20];
	int len = klogctl(3 /* SYSLOG_ACTION_READ_ALL */, log, sizeof(log) - 1);
	char *found, *open;

	if (len <= 0)
		return NULL;
	log[len] = '\0';
	found = strstr(log, " as init process");
	if (!found)
		return NULL;
	*found = '\0';
	open = strrchr(log, '[');
	if (!open || (size_t)snprintf(stamp, size, "%.*s", (int)strcspn(open + 1, "]"),
				      open + 1) >= size)
		return NULL;
	return stamp + strspn(stamp, " ");
}

/* " profile=..." (percent-encoded): /init's stamps and the kernel's. */
static void add_profile(struct reply *reply)
{
	char line[512], stamp[32];
	const char *kernel = kernel_init_done(stamp, sizeof(stamp));
	size_t len;

	read_first_line(IVLAB_BOOT_PROFILE, line, sizeof(line));
	if (!line[0])
		return;
	len = strlen(line);
	if (kernel)
		snprintf(line + len, sizeof(line) - len, " kernel=%s", kernel);
	reply_add(reply, " profile=");
	reply_add_encoded(reply, (uint8_t *)line, strlen(line));
}

/* " boot=ok" or " boot=failed:WHY" from what /init applied, when it wrote it. */
static void add_boot_status(struct reply *reply)
{
	char line[512];

	read_first_line(IVLAB_BOOT_STATUS, line, sizeof(line));
	if (!line[0])
		return;
	reply_add(reply, " boot=");
	reply_add_encoded(reply, (uint8_t *)line, strlen(line));
}

/* Seconds since the kernel started, as /proc/uptime counts them. */
static void add_uptime(struct reply *reply)
{
	struct timespec now;

	if (clock_gettime(CLOCK_BOOTTIME, &now) == 0)
		reply_add(reply, " uptime=%lld.%03ld", (long long)now.tv_sec,
			  now.tv_nsec / 1000000);
}

static bool cmd_hello(struct request *req, struct reply *reply)
{
	struct utsname uts;

	if (!args_all_used(req, reply))
		return false;
	regions_rescan_if_missing();
	uname(&uts);
	reply_add(reply, "ok proto=%d agent=%s arch=%s kernel=%s guest=%s lab=%s regions=%d",
		  IVLAB_AGENT_PROTO, IVLAB_AGENT_VERSION, uts.machine, uts.release,
		  agent.guest[0] ? agent.guest : "none", agent.lab[0] ? agent.lab : "none",
		  agent.nregions);
	add_boot_status(reply);
	add_uptime(reply);
	add_profile(reply);
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
	ivlab_pattern_fill(region->map + offset, offset, length, seed);
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
	bad = ivlab_pattern_check(region->map + offset, offset, length, seed);
	if (bad == length)
		reply_add(reply, "ok match=1");
	else
		reply_add(reply, "ok match=0 bad_offset=%" PRIu64 " expected=%u actual=%u",
			  offset + bad, ivlab_pattern_byte(seed, offset + bad), region->map[offset + bad]);
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

	if (!region || !arg_range(req, region, &offset, &length, IVLAB_AGENT_READ_MAX, reply) ||
	    !args_all_used(req, reply))
		return false;
	reply_add(reply, "ok hex=");
	for (uint64_t i = 0; i < length; i++)
		reply_add(reply, "%02x", region->map[offset + i]);
	return true;
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
	ivlab_pattern_fill(src, offset, length, seed);

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
		bad = ivlab_pattern_check(back, offset, length, seed);
		if (bad == length)
			bad = ivlab_pattern_check(dst, offset, length, seed);
		if (bad != length) {
			fail(reply, "io", "copytest %s: offset %" PRIu64 " expected %u actual %u",
			     methods[m], offset + bad, ivlab_pattern_byte(seed, offset + bad), back[bad]);
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
	if (!region_ring(region, (uint32_t)peer, (uint32_t)vector, reply))
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
	ret = region_wait(region, (uint32_t)vector, since_given ? since : region->seen[vector],
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

		if (initiator && !region_ring(region, (uint32_t)peer, (uint32_t)vector, reply))
			goto out;
		ret = region_wait(region, (uint32_t)vector, region->seen[vector], (uint32_t)timeout_ms,
			      reply);
		if (ret < 0)
			goto out;
		if (ret == 0) {
			fail(reply, "timeout", "pingpong: no ring from peer %" PRIu64 " in round %" PRIu64 " within %" PRIu64 " ms",
			     peer, i, timeout_ms);
			goto out;
		}
		if (!initiator && !region_ring(region, (uint32_t)peer, (uint32_t)vector, reply))
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
	tail = (size_t)len > IVLAB_AGENT_DMESG_TAIL ? IVLAB_AGENT_DMESG_TAIL : (size_t)len;
	reply_add(reply, "ok problems=%d log=", problems);
	reply_add_encoded(reply, (uint8_t *)log + len - tail, tail);
	free(log);
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
		if (*used < IVLAB_AGENT_EXEC_OUTPUT_MAX) {
			size_t room = IVLAB_AGENT_EXEC_OUTPUT_MAX - *used;
			size_t take = (size_t)n < room ? (size_t)n : room;

			memcpy(output + *used, chunk, take);
			*used += take;
		}
	}
}

static bool cmd_exec(struct request *req, struct reply *reply)
{
	const char *encoded = arg_get(req, "cmd");
	char command[IVLAB_AGENT_LINE_MAX];
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
	output = malloc(IVLAB_AGENT_EXEC_OUTPUT_MAX);
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
	{ IVLAB_AGENT_ATOMIC_ADD, cmd_atomic_add },
	{ IVLAB_AGENT_BENCH_COPY, cmd_bench_copy },
	{ IVLAB_AGENT_CHECKSUM, cmd_checksum },
	{ IVLAB_AGENT_COPYTEST, cmd_copytest },
	{ IVLAB_AGENT_DMESG, cmd_dmesg },
	{ IVLAB_AGENT_DRVFUZZ, cmd_drvfuzz },
	{ IVLAB_AGENT_DRVTEST, cmd_drvtest },
	{ IVLAB_AGENT_EXEC, cmd_exec },
	{ IVLAB_AGENT_FILL, cmd_fill },
	{ IVLAB_AGENT_GET, cmd_get },
	{ IVLAB_AGENT_HELLO, cmd_hello },
	{ IVLAB_AGENT_IRQCOUNT, cmd_irqcount },
	{ IVLAB_AGENT_KILL, cmd_kill },
	{ IVLAB_AGENT_PINGPONG, cmd_pingpong },
	{ IVLAB_AGENT_POLL, cmd_poll },
	{ IVLAB_AGENT_PUT, cmd_put },
	{ IVLAB_AGENT_READ, cmd_read },
	{ IVLAB_AGENT_REGION, cmd_region },
	{ IVLAB_AGENT_RENAME, cmd_rename },
	{ IVLAB_AGENT_RING, cmd_ring },
	{ IVLAB_AGENT_SHA256, cmd_sha256 },
	{ IVLAB_AGENT_SPAWN, cmd_spawn },
	{ IVLAB_AGENT_UNLINK, cmd_unlink },
	{ IVLAB_AGENT_VERIFY, cmd_verify },
	{ IVLAB_AGENT_WAIT, cmd_wait },
	{ IVLAB_AGENT_WRITE, cmd_write },
};

/* Answers one request line (without its newline) into reply. */
void handle_line(char *line, struct reply *reply)
{
	struct request req;
	int sig;

	reply_clear(reply);
	if (!parse_request(line, &req, reply))
		return;
	if (strcmp(req.verb, IVLAB_AGENT_PUT))
		files_close();
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
