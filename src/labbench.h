/* labbench.h: the measurements `ivlab bench` takes on a lab that is up:
 * copy bandwidth per guest and region, doorbell ping-pong round trips. */
#ifndef IVLAB_LABBENCH_H
#define IVLAB_LABBENCH_H

#include <glib.h>

#include "labsession.h"

#define LABBENCH_DEFAULT_SIZE (1ULL << 20)
#define LABBENCH_HOST "host"

struct labbench_options {
	const char *filter; /* glob on measurement names, NULL: all */
	guint iterations;   /* copies and ping-pong rounds per measurement */
	guint64 size;       /* bytes per copy; 0: LABBENCH_DEFAULT_SIZE, at most the region */
	int timeout_ms;     /* per agent request */
};

enum labbench_kind {
	LABBENCH_COPY,
	LABBENCH_PINGPONG,
};

/* One measurement: named "copy/REGION/GUEST" or
 * "pingpong/REGION/INITIATOR->RESPONDER" (LABBENCH_HOST for the host peer). */
struct labbench_item {
	enum labbench_kind kind;
	char *name;
	char *region;
	char *guest;     /* copy */
	char *initiator; /* pingpong */
	char *responder; /* pingpong */
	guint64 size;    /* copy: bytes per copy */
	guint iterations;
	double to_region_mbps, from_region_mbps, ram_mbps; /* copy, MB/s */
	guint64 median_ns, p99_ns;                          /* pingpong round trip */
	char *error;     /* why it could not be measured, or NULL */
};

/* Every measurement opts->filter selects, in order (struct labbench_item *,
 * freed with the array); a failed one carries its error. NULL with error
 * only when nothing can run: the lab is not up, a guest or its agent is
 * missing. Overwrites the regions' contents. */
GPtrArray *labbench_run(struct lab_session *session, const struct labbench_options *opts,
			GError **error);

#endif
