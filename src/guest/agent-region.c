/* agent-region.c: the regions: /dev/ivlabN matched to ivlab.regions by PCI
 * slot, files standing in for them (--region), and their doorbells. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "agent.h"

struct agent agent = {
	.dev_dir = "/dev",
	.cmdline_path = "/proc/cmdline",
};

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

void region_close(struct region *region)
{
	if (region->map)
		munmap(region->map, region->size);
	if (region->fd >= 0)
		close(region->fd);
	region->map = NULL;
	region->fd = -1;
}

/* Matches /dev/ivlabN devices to the regions that do not have one yet. */
void regions_scan(void)
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

void regions_rescan_if_missing(void)
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
void parse_cmdline(const char *path)
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
bool add_file_region(const char *spec)
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

struct region *arg_region(struct request *req, struct reply *reply)
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
bool arg_range(struct request *req, struct region *region, uint64_t *offset,
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

bool region_needs_doorbell(struct request *req, struct region *region, struct reply *reply)
{
	if (!(region->info.caps & IVLAB_CAP_DOORBELL) || !region->info.vectors)
		return fail(reply, "usage", "%s: region %s is plain: it has no doorbell",
			    req->verb, region->name);
	return true;
}

bool region_ring(struct region *region, uint32_t peer, uint32_t vector, struct reply *reply)
{
	struct ivlab_ring ring = { .peer = peer, .vector = vector };

	if (ioctl(region->fd, IVLAB_IOC_RING, &ring) < 0)
		return fail(reply, errno == EINVAL ? "range" : "io", "ring: %s", strerror(errno));
	return true;
}

/* Waits for the count of vector to pass region->seen[vector]; 1 done, 0 timeout, -1 error. */
int region_wait(struct region *region, uint32_t vector, uint64_t seen, uint32_t timeout_ms,
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
