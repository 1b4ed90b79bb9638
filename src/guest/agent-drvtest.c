/* agent-drvtest.c: the drvtest verb, the driver's ioctl and mmap contract
 * checked one named case at a time (in the manner of tools/pci/pcitest.c). */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include "agent.h"

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

bool cmd_drvtest(struct request *req, struct reply *reply)
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
