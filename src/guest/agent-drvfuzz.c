/* agent-drvfuzz.c: the drvfuzz verb, random ioctls on a region's device
 * from several processes at once: random and near-valid commands, random
 * sizes, and arguments that are NULL, unmapped, kernel addresses, cut off
 * by an unmapped page or random bytes; optionally racing an unbind and
 * rebind of the device. The driver must answer each with a result or an
 * errno; whether the kernel stayed healthy (no oops, BUG or WARNING) the
 * host reads from dmesg afterwards. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "agent.h"

#define FUZZ_CALLS_MAX		1000000
#define FUZZ_WORKERS_MAX	16
#define FUZZ_WAIT_MAX_MS	20	/* a random IVLAB_IOC_WAIT blocks at most this long */
#define FUZZ_ERRNO_MAX		140
#define MIN(a, b)		((a) < (b) ? (a) : (b))

/* A kernel address userspace can never pass legitimately. */
#if defined(__aarch64__)
#define KERNEL_ADDRESS		0xffff800008000000UL
#else
#define KERNEL_ADDRESS		0xffffffff81000000UL
#endif

struct fuzz_stats {
	uint64_t calls;
	uint64_t ok;
	uint64_t rebinds;
	uint64_t errnos[FUZZ_ERRNO_MAX];
};

static uint64_t next_random(uint64_t *state)
{
	/* xorshift64* */
	*state ^= *state >> 12;
	*state ^= *state << 25;
	*state ^= *state >> 27;
	return *state * 0x2545f4914f6cdd1dULL;
}

static const unsigned long valid_cmds[] = {
	IVLAB_IOC_INFO, IVLAB_IOC_RING, IVLAB_IOC_WAIT, IVLAB_IOC_IRQ_COUNTS,
};

/* A command for the driver: a valid one, one of its magic with a random
 * number, direction and size, or another magic's (never the VFS's own
 * ioctls that act on the filesystem, like FIFREEZE: type 'X' and 'f'). */
static unsigned long pick_cmd(uint64_t *rng)
{
	uint64_t r = next_random(rng);
	unsigned int type;

	switch (r % 4) {
	case 0:
	case 1:
		return valid_cmds[(r >> 8) % ARRAY_SIZE(valid_cmds)];
	case 2:
		return _IOC((r >> 8) & 3, IVLAB_IOC_MAGIC, (r >> 16) & 0x1f, (r >> 24) & 0x3fff);
	default:
		do {
			type = (unsigned int)((r >> 8) & 0xff);
			r = next_random(rng);
		} while (type == 'X' || type == 'f' || type == 'T' || type == 0x12 || type == 0x54);
		return _IOC(r & 3, type, (r >> 8) & 0xff, (r >> 16) & 0x3fff);
	}
}

/* The argument: a pointer of one of the kinds above, into buf (random
 * bytes, WAIT's timeout kept short) or around it; edge is the last bytes
 * of a page followed by an unmapped one. */
static void *pick_arg(uint64_t *rng, unsigned long cmd, uint8_t *buf, size_t buf_len,
		      uint8_t *edge)
{
	uint64_t r = next_random(rng);

	switch (r % 8) {
	case 0:
		return NULL;
	case 1:
		return (void *)(uintptr_t)0x1000;
	case 2:
		return (void *)KERNEL_ADDRESS;
	case 3:
		return edge - (r >> 8) % 16;
	case 4:
		return (void *)(uintptr_t)(r | 1);
	default:
		for (size_t i = 0; i < buf_len; i += 8) {
			uint64_t v = next_random(rng);

			memcpy(buf + i, &v, MIN(8, buf_len - i));
		}
		if (cmd == IVLAB_IOC_WAIT) {
			struct ivlab_wait *wait = (struct ivlab_wait *)buf;

			wait->timeout_ms %= FUZZ_WAIT_MAX_MS + 1;
			if (r & 0x100)
				wait->flags = 0;
			if (r & 0x200)
				wait->vector %= IVLAB_MAX_VECTORS;
		} else if (cmd == IVLAB_IOC_RING && (r & 0x100)) {
			((struct ivlab_ring *)buf)->flags = 0;
		}
		return buf + ((r >> 12) & 1);	/* misaligned now and then */
	}
}

static void fuzz_calls(const char *dev, uint64_t calls, uint64_t seed, struct fuzz_stats *stats)
{
	long page = sysconf(_SC_PAGESIZE);
	/* larger than any argument a command of ours or the VFS's writes */
	uint8_t buf[4096] __attribute__((aligned(16)));
	uint8_t *pages = mmap(NULL, (size_t)page * 2, PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint64_t rng = seed | 1;
	int fd = open(dev, O_RDWR | O_CLOEXEC);

	if (pages == MAP_FAILED)
		return;
	munmap(pages + page, (size_t)page);
	for (uint64_t i = 0; i < calls; i++) {
		unsigned long cmd = pick_cmd(&rng);
		void *arg = pick_arg(&rng, cmd, buf, sizeof(buf), pages + page);

		/* after an unbind the device node may come back: reopen */
		if (fd < 0 || (next_random(&rng) % 64) == 0) {
			if (fd >= 0)
				close(fd);
			fd = open(dev, O_RDWR | O_CLOEXEC);
		}
		stats->calls++;
		if (fd < 0) {
			stats->errnos[MIN(errno, FUZZ_ERRNO_MAX - 1)]++;
			continue;
		}
		if (ioctl(fd, cmd, arg) == 0)
			stats->ok++;
		else
			stats->errnos[MIN(errno, FUZZ_ERRNO_MAX - 1)]++;
	}
	if (fd >= 0)
		close(fd);
	munmap(pages, (size_t)page);
}

static bool write_sysfs(const char *path, const char *value)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	bool ok;

	if (fd < 0)
		return false;
	ok = write(fd, value, strlen(value)) == (ssize_t)strlen(value);
	close(fd);
	return ok;
}

/* The PCI address (0000:00:10.0) of /dev/ivlabK. */
static bool device_address(const char *dev, char *out, size_t size)
{
	char link[PATH_MAX], target[PATH_MAX];
	const char *base = strrchr(dev, '/');
	const char *slash;
	ssize_t len;

	snprintf(link, sizeof(link), "/sys/class/misc/%s/device", base ? base + 1 : dev);
	len = readlink(link, target, sizeof(target) - 1);
	if (len <= 0)
		return false;
	target[len] = '\0';
	slash = strrchr(target, '/');
	slash = slash ? slash + 1 : target;
	if (strlen(slash) >= size)
		return false;
	memcpy(out, slash, strlen(slash) + 1);
	return true;
}

static volatile sig_atomic_t stop_racing;

static void on_term(int sig)
{
	(void)sig;
	stop_racing = 1;
}

/* Unbinds and binds the device again until the workers are done (SIGTERM). */
static void race_unbind(const char *address, uint64_t seed, struct fuzz_stats *stats)
{
	uint64_t rng = seed | 1;

	while (!stop_racing) {
		if (!write_sysfs("/sys/bus/pci/drivers/ivlab/unbind", address))
			return;
		usleep((useconds_t)(next_random(&rng) % 3000));
		if (!write_sysfs("/sys/bus/pci/drivers/ivlab/bind", address))
			return;
		stats->rebinds++;
		usleep((useconds_t)(next_random(&rng) % 5000));
	}
}

/* A child that fuzzes (or races, racer) and sends its stats back through
 * out_fd. */
static pid_t spawn_worker(int out_fd, const char *dev, const char *address, uint64_t calls,
			  uint64_t seed, bool racer)
{
	pid_t pid = fork();
	struct fuzz_stats stats = { 0 };
	ssize_t unused;

	if (pid != 0)
		return pid;
	/* Not the agent's fault handler: it would answer the host from here. */
	signal(SIGSEGV, SIG_DFL);
	signal(SIGBUS, SIG_DFL);
	signal(SIGTERM, racer ? on_term : SIG_DFL);
	if (racer) {
		race_unbind(address, seed, &stats);
	} else {
		fuzz_calls(dev, calls, seed, &stats);
	}
	unused = write(out_fd, &stats, sizeof(stats));
	(void)unused;
	_exit(0);
}

static void add_stats(struct fuzz_stats *sum, const struct fuzz_stats *part)
{
	sum->calls += part->calls;
	sum->ok += part->ok;
	sum->rebinds += part->rebinds;
	for (int e = 0; e < FUZZ_ERRNO_MAX; e++)
		sum->errnos[e] += part->errnos[e];
}

bool cmd_drvfuzz(struct request *req, struct reply *reply)
{
	struct region *region = arg_region(req, reply);
	uint64_t calls, seed = 1, workers = 4, unbind = 0;
	struct fuzz_stats sum = { 0 };
	pid_t pids[FUZZ_WORKERS_MAX + 1];
	int crashed = 0, status;
	bool given;
	char address[64] = "";
	char dev[sizeof(region->dev)];
	int pipefd[2], n = 0;
	double started = now_seconds();

	if (!region || !arg_u64(req, "calls", FUZZ_CALLS_MAX, &calls, reply) ||
	    !arg_u64_opt(req, "seed", UINT64_MAX, &seed, &given, reply) ||
	    !arg_u64_opt(req, "workers", FUZZ_WORKERS_MAX, &workers, &given, reply) ||
	    !arg_u64_opt(req, "unbind", 1, &unbind, &given, reply) || !args_all_used(req, reply))
		return false;
	if (region->is_file)
		return fail(reply, "usage", "drvfuzz: region %s is a file, not an ivlab device",
			    region->name);
	if (!workers)
		return fail(reply, "usage", "drvfuzz: workers must be at least 1");
	snprintf(dev, sizeof(dev), "%s", region->dev);
	if (unbind && !device_address(dev, address, sizeof(address)))
		return fail(reply, "io", "drvfuzz: no PCI device behind %s", dev);
	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return fail(reply, "io", "drvfuzz: pipe: %s", strerror(errno));
	for (uint64_t w = 0; w < workers; w++) {
		pid_t pid = spawn_worker(pipefd[1], dev, NULL, calls / workers + (w < calls % workers),
					 seed + w * 0x9e3779b97f4a7c15ULL, false);

		if (pid > 0)
			pids[n++] = pid;
	}
	if (unbind) {
		pid_t pid = spawn_worker(pipefd[1], dev, address, 0, seed ^ 0xabcdef, true);

		for (int i = 0; i < n; i++)
			if (waitpid(pids[i], &status, 0) == pids[i] && WIFSIGNALED(status))
				crashed++;
		if (pid > 0) {
			kill(pid, SIGTERM);
			waitpid(pid, NULL, 0);
			n++;
		}
		/* whatever the race left: bound again, the agent's mapping anew */
		write_sysfs("/sys/bus/pci/drivers/ivlab/bind", address);
		region_close(region);
		regions_rescan_if_missing();
	} else {
		for (int i = 0; i < n; i++)
			if (waitpid(pids[i], &status, 0) == pids[i] && WIFSIGNALED(status))
				crashed++;
	}
	close(pipefd[1]);
	for (int i = 0; i < n; i++) {
		struct fuzz_stats part;

		if (read(pipefd[0], &part, sizeof(part)) == (ssize_t)sizeof(part))
			add_stats(&sum, &part);
	}
	close(pipefd[0]);
	if (crashed)
		return fail(reply, "io", "drvfuzz: %d of %d workers died of a signal", crashed, n);
	reply_add(reply, "ok calls=%" PRIu64 " succeeded=%" PRIu64 " rebinds=%" PRIu64
		  " seconds=%.1f errnos=", sum.calls, sum.ok, sum.rebinds, now_seconds() - started);
	for (int e = 1, first = 1; e < FUZZ_ERRNO_MAX; e++) {
		if (!sum.errnos[e])
			continue;
		reply_add(reply, "%s%d:%" PRIu64, first ? "" : ",", e, sum.errnos[e]);
		first = 0;
	}
	return true;
}
