/* bootprofile.h: where a guest's boot time goes, from the host's clock and
 * the uptimes its agent reports in the hello (src/guest/init, PROTOCOL.md). */
#ifndef IVLAB_BOOTPROFILE_H
#define IVLAB_BOOTPROFILE_H

#include <glib.h>
#include <json-glib/json-glib.h>

#include "agentlink.h"

/* The stages in boot order; each ends at a time counted from the start request. */
enum bootprofile_stage {
	BOOTPROFILE_QEMU,     /* QEMU (and libvirt) started the machine, paused */
	BOOTPROFILE_FIRMWARE, /* firmware and decompression: the kernel's first line */
	BOOTPROFILE_KERNEL,   /* the kernel's own init: it runs /init */
	BOOTPROFILE_INIT,     /* /init started */
	BOOTPROFILE_MODULES,  /* the virtio modules, ivlab.ko and the lab's are loaded */
	BOOTPROFILE_AGENT,    /* the agent answered its first hello */
	BOOTPROFILE_STAGES
};

struct bootprofile {
	/* When each stage ended, in seconds from the start request; a stage
	 * the guest did not report is negative. */
	double end[BOOTPROFILE_STAGES];
};

/* The stage's name in tables and JSON: "qemu", "firmware", ... */
const char *bootprofile_stage_name(enum bootprofile_stage stage);
/* A profile from the host's monotonic clock (µs): the start request, when
 * the machine was running, when the hello's answer came; and the hello's
 * uptime= and profile=. FALSE with an error when the hello lacks them (an
 * agent from before they were added) or they make no sense. */
gboolean bootprofile_from_hello(struct bootprofile *profile, gint64 start_us, gint64 running_us,
				gint64 hello_us, AgentReply *hello, GError **error);
/* "qemu 0.41 s, firmware 0.62 s, ... : ready at 3.38 s": each stage's length. */
char *bootprofile_format(const struct bootprofile *profile);
/* How long the stage took (its end minus the previous one's), or -1. */
double bootprofile_stage_seconds(const struct bootprofile *profile, enum bootprofile_stage stage);
/* {"qemu": s, "firmware": s, ..., "ready": s}: stage lengths and the total. */
void bootprofile_add_json(JsonBuilder *builder, const struct bootprofile *profile);

#endif
