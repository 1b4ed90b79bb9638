/* labtest.c: the cross-VM validation suite: every check drives the guests'
 * agents and the host (an ivshmem peer on doorbell regions, /dev/shm for
 * plain ones) and reports pass or fail with a reason. */
#include "config.h"

#include <ivlab-agent.h>

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agentlink.h"
#include "ivlab.h"
#include "labsession.h"
#include "labsteps.h"
#include "labtest.h"
#include "labup.h"
#include "peer.h"
#include "serverctl.h"

#define ATOMIC_COUNT 500000
#define BOOT_TIMEOUT_MS 300000
#define PEER_EVENT_TIMEOUT_MS 20000
#define DOORBELL_TIMEOUT_MS 10000

/* The host's access to one region. */
struct hregion {
	const struct lab_region *region;
	struct peer *peer; /* doorbell regions */
	guint8 *mem;
	guint64 size;
	gboolean mapped; /* mem is our own mmap of /dev/shm */
	char *why;       /* the host cannot reach it */
};

struct suite {
	struct lab_session *session;
	const struct lab *lab;
	const struct labtest_options *opts;
	struct report *report;
	struct session_guest *guests; /* session->guests */
	guint n_guests;
	struct hregion *hregions; /* lab->regions order */
	guint64 nonce;
	const char *suffix; /* appended to check names ("" or "/after-restart") */
};

static gboolean want(struct suite *suite, const char *name)
{
	return ivlab_filter_match(suite->opts->filter, name);
}

static void result(struct suite *suite, const char *name, gint64 started, enum report_status status,
		   const char *fmt, ...) G_GNUC_PRINTF(5, 6);

static void result(struct suite *suite, const char *name, gint64 started, enum report_status status,
		   const char *fmt, ...)
{
	va_list ap;
	g_autofree char *reason = NULL;
	g_autofree char *full = g_strconcat(name, suite->suffix, NULL);

	va_start(ap, fmt);
	reason = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	report_add(suite->report, full, status, (g_get_monotonic_time() - started) / 1e6, "%s", reason);
}

/* The guests attached to region that still take part. */
static GPtrArray *guests_of(struct suite *suite, const struct lab_region *region)
{
	GPtrArray *list = g_ptr_array_new();

	for (guint i = 0; i < suite->n_guests; i++) {
		struct session_guest *tg = &suite->guests[i];
		int index = lab_guest_region_index(tg->guest, region);

		if (index >= 0 && tg->region_ok[index] && !tg->gone)
			g_ptr_array_add(list, tg);
	}
	return list;
}

static gboolean usable(struct session_guest *tg, GError **error)
{
	if (!tg->gone)
		return TRUE;
	g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED, "%s", tg->gone);
	return FALSE;
}

/* Send the same kind of request to several guests, then collect: they run
 * at the same time. line_of(tg, data) makes each guest's request line. */
typedef char *(*line_func)(struct session_guest *tg, guint index, gpointer data);

static gboolean ask_all(struct suite *suite, GPtrArray *guests, line_func line_of, gpointer data,
			GPtrArray *replies, GError **error)
{
	GError *first = NULL;
	g_autofree gboolean *sent = g_new0(gboolean, guests->len);

	for (guint i = 0; i < guests->len; i++) {
		struct session_guest *tg = g_ptr_array_index(guests, i);
		g_autofree char *line = line_of(tg, i, data);
		GError *err = NULL;

		if (!usable(tg, &err) || !(sent[i] = agent_send(tg->agent, &err, "%s", line))) {
			if (!first)
				first = err;
			else
				g_error_free(err);
		}
	}
	for (guint i = 0; i < guests->len; i++) {
		struct session_guest *tg = g_ptr_array_index(guests, i);
		GError *err = NULL;
		AgentReply *reply = sent[i] ? agent_receive(tg->agent, suite->opts->timeout_ms, &err) : NULL;

		if (sent[i] && !reply) {
			if (agent_link_broken(tg->agent)) {
				labsession_mark_gone(tg, err);
				if (!strstr(tg->gone, err->message))
					g_prefix_error(&err, "%s: ", tg->gone);
			}
			if (!first)
				first = err;
			else
				g_error_free(err);
		}
		g_ptr_array_add(replies, reply);
	}
	if (first) {
		g_propagate_error(error, first);
		return FALSE;
	}
	return TRUE;
}

static void reply_unref(gpointer reply)
{
	if (reply)
		g_hash_table_unref(reply);
}

static guint64 seed_for(struct suite *suite, const char *what, const char *region)
{
	g_autofree char *key = g_strdup_printf("%s/%s", what, region);

	return suite->nonce ^ ((guint64)g_str_hash(key) << 17) ^ g_str_hash(region);
}

/* Setup: each guest's domain, agent and hello. */
static void check_agents(struct suite *suite)
{
	for (guint i = 0; i < suite->n_guests; i++) {
		struct session_guest *tg = &suite->guests[i];
		g_autofree char *name = g_strdup_printf("agent/%s", tg->guest->name);
		gint64 started = g_get_monotonic_time();
		g_autoptr(GError) err = NULL;
		AgentReply *hello;

		if (!labsession_reach(suite->session, tg, TRUE, suite->opts->timeout_ms, &err)) {
			result(suite, name, started, REPORT_FAIL, "%s", tg->gone);
			continue;
		}
		hello = tg->hello;
		const char *arch = agent_reply_get(hello, "arch") ?: "";
		const char *guest = agent_reply_get(hello, "guest") ?: "";
		const char *lab = agent_reply_get(hello, "lab") ?: "";
		guint64 regions = 0;

		agent_reply_u64(hello, "regions", &regions, NULL);
		if (strcmp(guest, tg->guest->name) != 0 || strcmp(lab, suite->lab->name) != 0)
			result(suite, name, started, REPORT_FAIL,
			       "the agent says it is guest '%s' of lab '%s'", guest, lab);
		else if (strcmp(arch, tg->guest->arch) != 0)
			result(suite, name, started, REPORT_FAIL, "the agent runs on %s, the lab says %s",
			       arch, tg->guest->arch);
		else if (regions != tg->guest->regions->len)
			result(suite, name, started, REPORT_FAIL,
			       "the agent sees %" G_GUINT64_FORMAT " regions, the guest attaches %u",
			       regions, tg->guest->regions->len);
		else
			result(suite, name, started, REPORT_PASS, "agent %s on %s, kernel %s",
			       agent_reply_get(hello, "agent") ?: "?", arch,
			       agent_reply_get(hello, "kernel") ?: "?");
	}
}

/* Every attached region is there, with its size, mode, vectors and an id. */
static void check_regions(struct suite *suite, struct session_guest *tg, gboolean report)
{
	g_autofree char *name = g_strdup_printf("regions/%s", tg->guest->name);
	gint64 started = g_get_monotonic_time();
	g_autoptr(GString) seen = g_string_new(NULL);
	g_autoptr(GString) problems = g_string_new(NULL);

	labsession_learn_regions(suite->session, tg, suite->opts->timeout_ms, seen, problems);
	report = report && want(suite, name);
	if (!report)
		return;
	if (tg->gone && !problems->len)
		result(suite, name, started, REPORT_FAIL, "%s", tg->gone);
	else if (problems->len)
		result(suite, name, started, REPORT_FAIL, "%s", problems->str);
	else
		result(suite, name, started, REPORT_PASS, "%s", seen->str);
}

/* The host side of every region: a peer on doorbell regions, /dev/shm for
 * plain ones. */
static void host_attach(struct suite *suite)
{
	for (guint r = 0; r < suite->lab->regions->len; r++) {
		struct hregion *hr = &suite->hregions[r];
		g_autofree char *name = g_strdup_printf("host/%s", hr->region->name);
		gint64 started = g_get_monotonic_time();

		if (hr->region->mode == LAB_REGION_DOORBELL) {
			g_autofree char *socket_path = lab_region_socket_path(suite->lab, hr->region);
			g_autoptr(GError) err = NULL;

			hr->peer = peer_connect(socket_path, &err);
			if (!hr->peer) {
				hr->why = g_strdup_printf("host peer: %s", err->message);
			} else {
				hr->mem = peer_memory(hr->peer);
				hr->size = peer_size(hr->peer);
			}
		} else {
			g_autofree char *shm = lab_region_shm_name(suite->lab, hr->region);
			g_autofree char *path = g_build_filename("/dev/shm", shm, NULL);
			int fd = open(path, O_RDWR | O_CLOEXEC);
			struct stat st;

			if (fd < 0) {
				hr->why = g_strdup_printf("%s: %s", path, g_strerror(errno));
			} else if (fstat(fd, &st) < 0 || st.st_size <= 0) {
				hr->why = g_strdup_printf("%s: empty or unreadable", path);
				close(fd);
			} else {
				void *mem = mmap(NULL, st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);

				close(fd);
				if (mem == MAP_FAILED) {
					hr->why = g_strdup_printf("%s: mmap: %s", path, g_strerror(errno));
				} else {
					hr->mem = mem;
					hr->size = st.st_size;
					hr->mapped = TRUE;
				}
			}
		}
		if (!want(suite, name))
			continue;
		if (hr->why)
			result(suite, name, started, REPORT_FAIL, "%s", hr->why);
		else if (hr->size != hr->region->size)
			result(suite, name, started, REPORT_FAIL,
			       "the host maps %" G_GUINT64_FORMAT " bytes, the region has %" G_GUINT64_FORMAT,
			       hr->size, hr->region->size);
		else if (hr->peer) {
			g_autoptr(GArray) known = peer_list(hr->peer);

			result(suite, name, started, REPORT_PASS, "host peer id %d, %u vectors, %u peers known",
			       peer_id(hr->peer), peer_vectors(hr->peer), known->len);
		}
		else
			result(suite, name, started, REPORT_PASS, "mapped /dev/shm/ivlab-%s-%s",
			       suite->lab->name, hr->region->name);
	}
}

static gboolean host_ok(struct hregion *hr)
{
	return hr->mem && !hr->why && hr->size == hr->region->size;
}

/* IVPositions are distinct and are exactly what the server assigned. */
/* Running guests whose own driver owns region: their QEMU is a peer of the
 * server all the same, with an id ivlab cannot learn. */
static guint bound_guests(struct suite *suite, const struct lab_region *region)
{
	guint count = 0;

	for (guint i = 0; i < suite->n_guests; i++) {
		struct session_guest *tg = &suite->guests[i];

		if (!tg->gone && lab_guest_region_index(tg->guest, region) >= 0 &&
		    lab_guest_region_binder(tg->guest, region))
			count++;
	}
	return count;
}

static void check_ids(struct suite *suite, struct hregion *hr)
{
	g_autofree char *name = g_strdup_printf("ids/%s", hr->region->name);
	gint64 started = g_get_monotonic_time();
	g_autofree char *socket_path = lab_region_socket_path(suite->lab, hr->region);
	g_autoptr(GPtrArray) guests = guests_of(suite, hr->region);
	g_autoptr(GString) ours = g_string_new(NULL);
	g_autoptr(GString) theirs = g_string_new(NULL);
	g_autoptr(GHashTable) seen = g_hash_table_new(g_direct_hash, g_direct_equal);
	g_autoptr(GError) err = NULL;
	struct serverctl_info info = { 0 };
	guint expected = guests->len + (hr->peer ? 1 : 0) + bound_guests(suite, hr->region);

	if (!want(suite, name))
		return;
	if (!serverctl_query(socket_path, &info, &err)) {
		result(suite, name, started, REPORT_FAIL, "server: %s", err->message);
		return;
	}
	for (guint p = 0; p < info.peer_ids->len; p++)
		g_string_append_printf(theirs, "%s%u", p ? "," : "", g_array_index(info.peer_ids, guint, p));
	for (guint i = 0; i < guests->len; i++) {
		struct session_guest *tg = g_ptr_array_index(guests, i);
		gint64 id = tg->ids[lab_guest_region_index(tg->guest, hr->region)];
		gboolean known = FALSE;

		g_string_append_printf(ours, "%s%s=%" G_GINT64_FORMAT, ours->len ? " " : "",
				       tg->guest->name, id);
		for (guint p = 0; p < info.peer_ids->len; p++)
			known = known || g_array_index(info.peer_ids, guint, p) == (guint)id;
		if (g_hash_table_contains(seen, GINT_TO_POINTER((int)id))) {
			result(suite, name, started, REPORT_FAIL, "id %" G_GINT64_FORMAT " is used twice (%s)",
			       id, ours->str);
			serverctl_info_clear(&info);
			return;
		}
		g_hash_table_add(seen, GINT_TO_POINTER((int)id));
		if (!known) {
			result(suite, name, started, REPORT_FAIL,
			       "guest %s has id %" G_GINT64_FORMAT ", which the server does not know (server: %s)",
			       tg->guest->name, id, theirs->str);
			serverctl_info_clear(&info);
			return;
		}
	}
	if (hr->peer)
		g_string_append_printf(ours, " host=%d", peer_id(hr->peer));
	if (info.peer_ids->len != expected)
		result(suite, name, started, REPORT_FAIL,
		       "the server has %u peers (%s), expected %u (%s)", info.peer_ids->len, theirs->str,
		       expected, ours->str);
	else
		result(suite, name, started, REPORT_PASS, "%s; server: %s", ours->str, theirs->str);
	serverctl_info_clear(&info);
}

struct range {
	const struct lab_region *region;
	guint64 offset, length, seed;
	const char *verb;
};

static char *range_line(struct session_guest *tg, guint index, gpointer data)
{
	struct range *range = data;

	return g_strdup_printf("%s region=%s offset=%" G_GUINT64_FORMAT " length=%" G_GUINT64_FORMAT
			       " seed=%" G_GUINT64_FORMAT, range->verb, range->region->name, range->offset,
			       range->length, range->seed);
}

/* Each verifier's verdict on [offset, offset+length) of seed: a failure
 * description appended to problems. */
static void verify_by_all(struct suite *suite, struct hregion *hr, GPtrArray *verifiers,
			  gboolean by_host, struct range *range, GString *problems, GString *who)
{
	g_autoptr(GPtrArray) replies = g_ptr_array_new_with_free_func(reply_unref);
	g_autoptr(GError) err = NULL;

	range->verb = "verify";
	ask_all(suite, verifiers, range_line, range, replies, &err);
	for (guint i = 0; i < verifiers->len; i++) {
		struct session_guest *tg = g_ptr_array_index(verifiers, i);
		AgentReply *reply = g_ptr_array_index(replies, i);
		const char *match = agent_reply_get(reply, "match");

		if (!reply)
			g_string_append_printf(problems, "%s%s could not verify: %s", problems->len ? "; " : "",
					       tg->guest->name, tg->gone ? tg->gone : err ? err->message : "?");
		else if (!match || strcmp(match, "1") != 0)
			g_string_append_printf(problems, "%s%s sees a mismatch at offset %s (expected %s, got %s)",
					       problems->len ? "; " : "", tg->guest->name,
					       agent_reply_get(reply, "bad_offset") ?: "?",
					       agent_reply_get(reply, "expected") ?: "?",
					       agent_reply_get(reply, "actual") ?: "?");
		else
			g_string_append_printf(who, "%s%s", who->len ? ", " : "", tg->guest->name);
	}
	if (by_host && host_ok(hr)) {
		gint64 bad = agent_pattern_check(hr->mem + range->offset, range->offset, range->length,
						 range->seed);

		if (bad >= 0)
			g_string_append_printf(problems, "%sthe host sees a mismatch at offset %" G_GINT64_FORMAT
					       " (0x%02x)", problems->len ? "; " : "", bad, hr->mem[bad]);
		else
			g_string_append_printf(who, "%shost", who->len ? ", " : "");
	}
}

/* A pattern written by one party (a guest or the host) over the whole
 * region, verified by every other one. */
static void check_pattern(struct suite *suite, struct hregion *hr, struct session_guest *writer)
{
	const char *writer_name = writer ? writer->guest->name : "host";
	g_autofree char *name = g_strdup_printf("pattern/%s/%s", hr->region->name, writer_name);
	gint64 started = g_get_monotonic_time();
	g_autoptr(GPtrArray) guests = guests_of(suite, hr->region);
	g_autoptr(GPtrArray) verifiers = g_ptr_array_new();
	g_autoptr(GString) problems = g_string_new(NULL);
	g_autoptr(GString) who = g_string_new(NULL);
	struct range range = { hr->region, 0, hr->region->size, seed_for(suite, writer_name, hr->region->name) };
	g_autoptr(GError) err = NULL;

	if (!want(suite, name))
		return;
	if (writer) {
		AgentReply *reply = labsession_ask(writer, suite->opts->timeout_ms, &err, IVLAB_AGENT_FILL " region=%s offset=0 length=%" G_GUINT64_FORMAT
					" seed=%" G_GUINT64_FORMAT, hr->region->name, range.length, range.seed);

		if (!reply) {
			result(suite, name, started, REPORT_FAIL, "%s cannot write: %s", writer_name, err->message);
			return;
		}
		g_hash_table_unref(reply);
	} else {
		if (!host_ok(hr)) {
			result(suite, name, started, REPORT_FAIL, "the host cannot reach the region: %s",
			       hr->why ? hr->why : "size mismatch");
			return;
		}
		agent_pattern_fill(hr->mem, 0, range.length, range.seed);
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
	}
	for (guint i = 0; i < guests->len; i++)
		if (g_ptr_array_index(guests, i) != writer)
			g_ptr_array_add(verifiers, g_ptr_array_index(guests, i));
	verify_by_all(suite, hr, verifiers, writer != NULL, &range, problems, who);
	if (problems->len)
		result(suite, name, started, REPORT_FAIL, "%s", problems->str);
	else if (!who->len)
		result(suite, name, started, REPORT_SKIP, "nobody else attaches %s", hr->region->name);
	else {
		g_autofree char *size = ivlab_format_size(range.length);

		result(suite, name, started, REPORT_PASS, "%s by %s verified by %s", size, writer_name, who->str);
	}
}

struct slices {
	const struct lab_region *region;
	guint64 slice;
	guint64 base_seed;
};

static char *slice_fill_line(struct session_guest *tg, guint index, gpointer data)
{
	struct slices *slices = data;

	return g_strdup_printf(IVLAB_AGENT_FILL " region=%s offset=%" G_GUINT64_FORMAT " length=%" G_GUINT64_FORMAT
			       " seed=%" G_GUINT64_FORMAT, slices->region->name, index * slices->slice,
			       slices->slice, slices->base_seed + index);
}

/* Every guest writes its own slice at the same time; then every party
 * checks every slice. */
static void check_slices(struct suite *suite, struct hregion *hr)
{
	g_autofree char *name = g_strdup_printf("slices/%s", hr->region->name);
	gint64 started = g_get_monotonic_time();
	g_autoptr(GPtrArray) guests = guests_of(suite, hr->region);
	g_autoptr(GPtrArray) replies = g_ptr_array_new_with_free_func(reply_unref);
	g_autoptr(GString) problems = g_string_new(NULL);
	g_autoptr(GError) err = NULL;
	struct slices slices;

	if (!want(suite, name))
		return;
	if (guests->len < 2) {
		result(suite, name, started, REPORT_SKIP, "fewer than two guests attach %s", hr->region->name);
		return;
	}
	slices.region = hr->region;
	slices.slice = (hr->region->size / guests->len) & ~(guint64)4095;
	slices.base_seed = seed_for(suite, "slices", hr->region->name);
	if (!ask_all(suite, guests, slice_fill_line, &slices, replies, &err)) {
		result(suite, name, started, REPORT_FAIL, "concurrent fill: %s", err->message);
		return;
	}
	for (guint s = 0; s < guests->len; s++) {
		struct range range = { hr->region, s * slices.slice, slices.slice, slices.base_seed + s };
		g_autoptr(GString) who = g_string_new(NULL);

		verify_by_all(suite, hr, guests, TRUE, &range, problems, who);
	}
	if (problems->len)
		result(suite, name, started, REPORT_FAIL, "%s", problems->str);
	else {
		g_autofree char *size = ivlab_format_size(slices.slice);

		result(suite, name, started, REPORT_PASS, "%u slices of %s written at once, each verified by "
		       "every guest%s", guests->len, size, host_ok(hr) ? " and the host" : "");
	}
}

struct atomic_job {
	const struct lab_region *region;
	guint64 offset;
};

static char *atomic_line(struct session_guest *tg, guint index, gpointer data)
{
	struct atomic_job *job = data;

	return g_strdup_printf(IVLAB_AGENT_ATOMIC_ADD " region=%s offset=%" G_GUINT64_FORMAT " count=%d",
			       job->region->name, job->offset, ATOMIC_COUNT);
}

/* The host counts along for as long as the guests do. */
struct host_counter {
	guint64 *counter;
	gint stop;
	guint64 done;
};

static gpointer host_increments(gpointer data)
{
	struct host_counter *host = data;

	while (!g_atomic_int_get(&host->stop))
		for (int i = 0; i < 1000; i++, host->done++)
			__atomic_fetch_add(host->counter, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

/* All guests (and the host) increment one counter at once: the sum is exact. */
static void check_atomic(struct suite *suite, struct hregion *hr)
{
	g_autofree char *name = g_strdup_printf("atomic/%s", hr->region->name);
	gint64 started = g_get_monotonic_time();
	g_autoptr(GPtrArray) guests = guests_of(suite, hr->region);
	g_autoptr(GPtrArray) replies = g_ptr_array_new_with_free_func(reply_unref);
	g_autoptr(GError) err = NULL;
	struct atomic_job job = { hr->region, (hr->region->size - 64) & ~(guint64)7 };
	guint64 expected, final = 0, highest = 0;
	GThread *host = NULL;
	struct host_counter counter = { 0 };
	g_autoptr(GString) arches = g_string_new(NULL);

	if (!want(suite, name))
		return;
	if (guests->len < 2) {
		result(suite, name, started, REPORT_SKIP, "fewer than two guests attach %s", hr->region->name);
		return;
	}
	/* Start from zero, written by a guest so the check holds without the host. */
	struct session_guest *first = g_ptr_array_index(guests, 0);
	AgentReply *zero = labsession_ask(first, suite->opts->timeout_ms, &err, IVLAB_AGENT_WRITE " region=%s offset=%" G_GUINT64_FORMAT
			       " hex=0000000000000000", hr->region->name, job.offset);
	if (!zero) {
		result(suite, name, started, REPORT_FAIL, "cannot zero the counter: %s", err->message);
		return;
	}
	g_hash_table_unref(zero);
	expected = (guint64)ATOMIC_COUNT * guests->len;
	for (guint i = 0; i < guests->len; i++) {
		struct session_guest *tg = g_ptr_array_index(guests, i);

		if (!strstr(arches->str, tg->guest->arch))
			g_string_append_printf(arches, "%s%s", arches->len ? "+" : "", tg->guest->arch);
	}
	if (host_ok(hr))
		g_string_append(arches, "+host");
	/* The requests go out first; the host joins while the guests count. */
	for (guint i = 0; i < guests->len; i++) {
		struct session_guest *tg = g_ptr_array_index(guests, i);
		g_autofree char *line = atomic_line(tg, i, &job);

		if (!usable(tg, &err) || !agent_send(tg->agent, &err, "%s", line)) {
			result(suite, name, started, REPORT_FAIL, "%s", err->message);
			return;
		}
	}
	if (host_ok(hr)) {
		counter.counter = (guint64 *)(hr->mem + job.offset);
		host = g_thread_new("atomic", host_increments, &counter);
	}
	for (guint i = 0; i < guests->len; i++) {
		struct session_guest *tg = g_ptr_array_index(guests, i);
		GError *one = NULL;
		AgentReply *reply = agent_receive(tg->agent, suite->opts->timeout_ms, &one);
		guint64 value = 0;

		if (!reply) {
			if (agent_link_broken(tg->agent))
				labsession_mark_gone(tg, one);
			if (!err)
				err = one;
			else
				g_error_free(one);
		} else if (agent_reply_u64(reply, "value", &value, NULL)) {
			highest = MAX(highest, value);
		}
		g_ptr_array_add(replies, reply);
	}
	if (host) {
		g_atomic_int_set(&counter.stop, 1);
		g_thread_join(host);
		expected += counter.done;
	}
	if (err) {
		result(suite, name, started, REPORT_FAIL, "%s", err->message);
		return;
	}
	if (host_ok(hr)) {
		final = __atomic_load_n((guint64 *)(hr->mem + job.offset), __ATOMIC_SEQ_CST);
	} else {
		AgentReply *reply = labsession_ask(first, suite->opts->timeout_ms, &err, IVLAB_AGENT_READ " region=%s offset=%" G_GUINT64_FORMAT
					" length=8", hr->region->name, job.offset);
		const char *hex = agent_reply_get(reply, "hex");

		for (int b = 7; hex && strlen(hex) == 16 && b >= 0; b--)
			final = final << 8 | (guint64)(g_ascii_xdigit_value(hex[2 * b]) * 16 +
						       g_ascii_xdigit_value(hex[2 * b + 1]));
		if (reply)
			g_hash_table_unref(reply);
	}
	if (final != expected)
		result(suite, name, started, REPORT_FAIL,
		       "the counter is %" G_GUINT64_FORMAT " after %u x %d increments by guests and %"
		       G_GUINT64_FORMAT " by the host: expected %" G_GUINT64_FORMAT " (%" G_GINT64_FORMAT
		       " lost)", final, guests->len, ATOMIC_COUNT, counter.done, expected,
		       (gint64)(expected - final));
	else if (highest > expected)
		result(suite, name, started, REPORT_FAIL, "a guest saw %" G_GUINT64_FORMAT " > %" G_GUINT64_FORMAT,
		       highest, expected);
	else
		result(suite, name, started, REPORT_PASS, "%" G_GUINT64_FORMAT " = %u x %d by the guests + %"
		       G_GUINT64_FORMAT " by the host, all at once (%s)", final, guests->len, ATOMIC_COUNT,
		       counter.done, arches->str);
}

/* Unaligned and odd-sized copies, which fault on arm64 device mappings. */
static void check_unaligned(struct suite *suite, struct hregion *hr, struct session_guest *tg)
{
	g_autofree char *name = g_strdup_printf("unaligned/%s/%s", hr->region->name, tg->guest->name);
	gint64 started = g_get_monotonic_time();
	static const guint64 cases[][2] = { { 4097, 1021 }, { 8191, 3 }, { 12289, 4099 }, { 1, 7 } };
	guint copies = 0;

	if (!want(suite, name))
		return;
	for (gsize c = 0; c < G_N_ELEMENTS(cases); c++) {
		g_autoptr(GError) err = NULL;
		AgentReply *reply = labsession_ask(tg, suite->opts->timeout_ms, &err, IVLAB_AGENT_COPYTEST " region=%s offset=%" G_GUINT64_FORMAT
					" length=%" G_GUINT64_FORMAT " seed=%" G_GUINT64_FORMAT,
					hr->region->name, cases[c][0], cases[c][1],
					seed_for(suite, "copytest", tg->guest->name) + c);
		guint64 done = 0;

		if (!reply) {
			result(suite, name, started, REPORT_FAIL, "offset %" G_GUINT64_FORMAT " length %"
			       G_GUINT64_FORMAT ": %s", cases[c][0], cases[c][1], err->message);
			return;
		}
		agent_reply_u64(reply, "copies", &done, NULL);
		copies += done;
		g_hash_table_unref(reply);
	}
	result(suite, name, started, REPORT_PASS, "%u unaligned copies on %s read back intact",
	       copies, tg->guest->arch);
}

/* The interrupt counts of a guest's vectors. */
static gboolean irq_counts(struct suite *suite, struct session_guest *tg, const struct lab_region *region,
			   guint64 *counts, guint vectors, GError **error)
{
	AgentReply *reply = labsession_ask(tg, suite->opts->timeout_ms, error, IVLAB_AGENT_IRQCOUNT " region=%s", region->name);
	g_auto(GStrv) fields = NULL;

	if (!reply)
		return FALSE;
	fields = g_strsplit(agent_reply_get(reply, "counts") ?: "", ",", -1);
	g_hash_table_unref(reply);
	if (g_strv_length(fields) < vectors) {
		g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED, "%s: irqcount gives %u counts, expected %u",
			    tg->guest->name, g_strv_length(fields), vectors);
		return FALSE;
	}
	for (guint v = 0; v < vectors; v++)
		counts[v] = g_ascii_strtoull(fields[v], NULL, 10);
	return TRUE;
}

/* Ring every vector of dst from src (NULL: the host peer) and see each
 * counted exactly once, on that vector only. */
static gboolean ring_once(struct suite *suite, struct hregion *hr, struct session_guest *src,
			  struct session_guest *dst, guint vector, GError **error)
{
	const struct lab_region *region = hr->region;
	guint vectors = region->vectors;
	g_autofree guint64 *before = g_new0(guint64, vectors);
	g_autofree guint64 *after = g_new0(guint64, vectors);
	gint64 dst_id = dst ? dst->ids[lab_guest_region_index(dst->guest, region)] : peer_id(hr->peer);

	if (dst && !irq_counts(suite, dst, region, before, vectors, error))
		return FALSE;
	if (!dst) {
		/* Forget earlier rings: the eventfd counts since the last read. */
		for (guint v = 0; v < peer_vectors(hr->peer); v++) {
			guint64 stale = 0;

			if (!peer_wait(hr->peer, v, 0, &stale, error))
				return FALSE;
		}
	}
	if (src) {
		AgentReply *reply = labsession_ask(src, suite->opts->timeout_ms, error, IVLAB_AGENT_RING " region=%s peer=%" G_GINT64_FORMAT " vector=%u",
					region->name, dst_id, vector);

		if (!reply)
			return FALSE;
		g_hash_table_unref(reply);
	} else if (!peer_ring(hr->peer, (int)dst_id, vector, error)) {
		return FALSE;
	}
	if (dst) {
		AgentReply *reply = labsession_ask(dst, suite->opts->timeout_ms, error, IVLAB_AGENT_WAIT " region=%s vector=%u timeout_ms=%d since=%"
					G_GUINT64_FORMAT, region->name, vector, DOORBELL_TIMEOUT_MS, before[vector]);

		if (!reply)
			return FALSE;
		g_hash_table_unref(reply);
		if (!irq_counts(suite, dst, region, after, vectors, error))
			return FALSE;
		for (guint v = 0; v < vectors; v++) {
			guint64 wanted = before[v] + (v == vector ? 1 : 0);

			if (after[v] != wanted) {
				g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED,
					    "ring on vector %u: vector %u counted %" G_GUINT64_FORMAT
					    " times, expected %s", vector, v, after[v] - before[v],
					    v == vector ? "once" : "never");
				return FALSE;
			}
		}
		return TRUE;
	}
	guint64 count = 0;

	if (!peer_wait(hr->peer, vector, DOORBELL_TIMEOUT_MS, &count, error))
		return FALSE;
	if (count != 1) {
		g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED, "ring on vector %u: the host counted %"
			    G_GUINT64_FORMAT " rings, expected one", vector, count);
		return FALSE;
	}
	for (guint v = 0; v < peer_vectors(hr->peer); v++) {
		guint64 stray = 0;

		if (v == vector)
			continue;
		if (!peer_wait(hr->peer, v, 0, &stray, error))
			return FALSE;
		if (stray) {
			g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED,
				    "ring on vector %u also rang the host's vector %u", vector, v);
			return FALSE;
		}
	}
	return TRUE;
}

static void check_doorbell(struct suite *suite, struct hregion *hr, struct session_guest *src, struct session_guest *dst)
{
	g_autofree char *name = g_strdup_printf("doorbell/%s/%s->%s", hr->region->name,
						src ? src->guest->name : "host", dst ? dst->guest->name : "host");
	gint64 started = g_get_monotonic_time();

	if (!want(suite, name))
		return;
	if ((!src || !dst) && !hr->peer) {
		result(suite, name, started, REPORT_FAIL, "no host peer: %s", hr->why ? hr->why : "?");
		return;
	}
	for (guint v = 0; v < hr->region->vectors; v++) {
		g_autoptr(GError) err = NULL;

		if (!ring_once(suite, hr, src, dst, v, &err)) {
			result(suite, name, started, REPORT_FAIL, "%s", err->message);
			return;
		}
	}
	result(suite, name, started, REPORT_PASS, "%u vectors, each counted once on its own vector",
	       hr->region->vectors);
}

static void check_doorbells(struct suite *suite, struct hregion *hr, struct session_guest *only)
{
	g_autoptr(GPtrArray) guests = guests_of(suite, hr->region);

	/* NULL stands for the host peer. */
	g_ptr_array_add(guests, NULL);
	for (guint s = 0; s < guests->len; s++)
		for (guint d = 0; d < guests->len; d++) {
			struct session_guest *src = g_ptr_array_index(guests, s);
			struct session_guest *dst = g_ptr_array_index(guests, d);

			if (s == d || (only && src != only && dst != only))
				continue;
			check_doorbell(suite, hr, src, dst);
		}
}

static struct hregion *hregion_of(struct suite *suite, const struct lab_region *region)
{
	for (guint h = 0; h < suite->lab->regions->len; h++)
		if (suite->hregions[h].region == region)
			return &suite->hregions[h];
	g_assert_not_reached();
}

/* The guest to restart: the last one on a doorbell region that binds no
 * region to a driver of its own (ivlab could not check that one after). */
static struct session_guest *restart_candidate(struct suite *suite)
{
	for (guint i = suite->n_guests; i-- > 0;) {
		struct session_guest *tg = &suite->guests[i];
		gboolean doorbell = FALSE, binds = FALSE;

		for (guint r = 0; r < tg->guest->regions->len; r++) {
			const struct lab_region *region = g_ptr_array_index(tg->guest->regions, r);

			doorbell = doorbell || region->mode == LAB_REGION_DOORBELL;
			binds = binds || lab_guest_region_binder(tg->guest, region);
		}
		if (doorbell && !binds && !tg->gone)
			return tg;
	}
	return NULL;
}

/* Power the guest off and on: it gets new ids, the host peer sees it leave
 * and come back, and its agent answers again. */
static gboolean check_restart(struct suite *suite, struct session_guest *tg)
{
	g_autofree char *name = g_strdup_printf("restart/%s", tg->guest->name);
	gint64 started = g_get_monotonic_time();
	guint n = tg->guest->regions->len;
	g_autofree gint64 *old_ids = g_memdup2(tg->ids, n * sizeof(gint64));
	g_autoptr(GString) seen = g_string_new(NULL);
	g_autoptr(GError) err = NULL;

	if (!want(suite, name))
		return FALSE;
	agent_link_free(tg->agent);
	tg->agent = NULL;
	if (!virt_destroy(tg->dom, &err)) {
		result(suite, name, started, REPORT_FAIL, "%s", err->message);
		return FALSE;
	}
	for (guint r = 0; r < n; r++) {
		const struct lab_region *region = g_ptr_array_index(tg->guest->regions, r);
		struct hregion *hr = hregion_of(suite, region);

		if (!hr->peer || old_ids[r] < 0)
			continue;
		if (!peer_wait_gone(hr->peer, (int)old_ids[r], PEER_EVENT_TIMEOUT_MS, &err)) {
			result(suite, name, started, REPORT_FAIL, "region %s: the host peer did not see id %"
			       G_GINT64_FORMAT " leave: %s", region->name, old_ids[r],
			       err ? err->message : "timeout");
			return FALSE;
		}
	}
	tg->agent = labup_boot_guest(tg->dom, tg->guest->name, TRUE, BOOT_TIMEOUT_MS, &err);
	if (!tg->agent) {
		tg->gone = g_strdup_printf("guest %s did not come back: %s", tg->guest->name, err->message);
		result(suite, name, started, REPORT_FAIL, "%s", tg->gone);
		return FALSE;
	}
	check_regions(suite, tg, FALSE);
	for (guint r = 0; r < n; r++) {
		const struct lab_region *region = g_ptr_array_index(tg->guest->regions, r);
		struct hregion *hr = hregion_of(suite, region);

		if (region->mode != LAB_REGION_DOORBELL)
			continue;
		if (!tg->region_ok[r]) {
			result(suite, name, started, REPORT_FAIL, "after the restart, region %s is not right",
			       region->name);
			return FALSE;
		}
		if (tg->ids[r] == old_ids[r]) {
			result(suite, name, started, REPORT_FAIL, "region %s: the same id %" G_GINT64_FORMAT
			       " after the restart", region->name, old_ids[r]);
			return FALSE;
		}
		if (hr && hr->peer) {
			g_autoptr(GPtrArray) others = guests_of(suite, region);
			g_autoptr(GArray) known = NULL;
			gboolean found = FALSE;

			if (!peer_wait_peers(hr->peer, others->len, PEER_EVENT_TIMEOUT_MS, &err)) {
				result(suite, name, started, REPORT_FAIL, "region %s: the host peer did not see id %"
				       G_GINT64_FORMAT " connect: %s", region->name, tg->ids[r],
				       err ? err->message : "timeout");
				return FALSE;
			}
			known = peer_list(hr->peer);
			for (guint k = 0; k < known->len; k++)
				found = found || g_array_index(known, guint, k) == (guint)tg->ids[r];
			if (!found) {
				result(suite, name, started, REPORT_FAIL, "region %s: the host peer does not know the "
				       "new id %" G_GINT64_FORMAT, region->name, tg->ids[r]);
				return FALSE;
			}
		}
		g_string_append_printf(seen, "%s%s id %" G_GINT64_FORMAT " -> %" G_GINT64_FORMAT,
				       seen->len ? ", " : "", region->name, old_ids[r], tg->ids[r]);
	}
	result(suite, name, started, REPORT_PASS, "destroyed and started again: %s; the host peer saw "
	       "the disconnect and the connect", seen->str);
	return TRUE;
}

static void suite_clear(struct suite *suite)
{
	for (guint r = 0; suite->hregions && r < suite->lab->regions->len; r++) {
		struct hregion *hr = &suite->hregions[r];

		if (hr->mapped)
			munmap(hr->mem, hr->size);
		peer_free(hr->peer);
		g_free(hr->why);
	}
	g_free(suite->hregions);
}

/* The data checks of one pass (before and after the restart). */
static void run_region_checks(struct suite *suite, struct session_guest *only)
{
	for (guint r = 0; r < suite->lab->regions->len; r++) {
		struct hregion *hr = &suite->hregions[r];
		g_autoptr(GPtrArray) guests = guests_of(suite, hr->region);

		if (hr->region->mode == LAB_REGION_DOORBELL)
			check_ids(suite, hr);
		for (guint i = 0; i < guests->len; i++)
			if (!only || g_ptr_array_index(guests, i) == only)
				check_pattern(suite, hr, g_ptr_array_index(guests, i));
		if (!only)
			check_pattern(suite, hr, NULL);
	}
}

gboolean labtest_run(struct lab_session *session, const struct labtest_options *opts,
		     struct report *report, GError **error)
{
	const struct lab *lab = session->lab;
	struct suite suite = {
		.session = session, .lab = lab, .opts = opts, .report = report,
		.nonce = g_get_real_time() ^ ((guint64)getpid() << 32), .suffix = "",
		.guests = session->guests, .n_guests = session->n_guests,
	};

	if (!session->domains || !session->domains->len) {
		g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED,
			    "lab '%s' is not up (no domain of it is defined); run 'ivlab up' first", lab->name);
		return FALSE;
	}
	suite.hregions = g_new0(struct hregion, lab->regions->len);
	for (guint r = 0; r < lab->regions->len; r++)
		suite.hregions[r].region = g_ptr_array_index(lab->regions, r);

	check_agents(&suite);
	for (guint i = 0; i < suite.n_guests; i++)
		if (!suite.guests[i].gone)
			check_regions(&suite, &suite.guests[i], TRUE);
	host_attach(&suite);
	run_region_checks(&suite, NULL);
	for (guint r = 0; r < lab->regions->len; r++) {
		struct hregion *hr = &suite.hregions[r];
		g_autoptr(GPtrArray) guests = guests_of(&suite, hr->region);

		check_slices(&suite, hr);
		check_atomic(&suite, hr);
		for (guint i = 0; i < guests->len; i++)
			check_unaligned(&suite, hr, g_ptr_array_index(guests, i));
		if (hr->region->mode == LAB_REGION_DOORBELL)
			check_doorbells(&suite, hr, NULL);
	}

	struct session_guest *again = opts->restart ? restart_candidate(&suite) : NULL;
	if (again && check_restart(&suite, again)) {
		suite.suffix = "/after-restart";
		run_region_checks(&suite, again);
		for (guint r = 0; r < lab->regions->len; r++) {
			struct hregion *hr = &suite.hregions[r];

			if (hr->region->mode == LAB_REGION_DOORBELL && lab_guest_region_index(again->guest, hr->region) >= 0)
				check_doorbells(&suite, hr, again);
		}
	}
	/* Then the lab's own tests, reported beside the built-in checks. */
	for (guint t = 0; t < lab->tests->len; t++) {
		const struct lab_test *test = g_ptr_array_index(lab->tests, t);
		g_autofree char *name = g_strdup_printf("lab/%s", test->name);

		if (want(&suite, name))
			labsteps_run(session, test, report);
	}
	suite_clear(&suite);
	return TRUE;
}
