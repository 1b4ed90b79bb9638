/* labbench.c: `ivlab bench` measurements through the guests' agents
 * (bench_copy, pingpong) and the host as an ivshmem peer. */
#include "config.h"

#include <ivlab-agent.h>

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agentlink.h"
#include "ivlab.h"
#include "labbench.h"
#include "labsession.h"
#include "peer.h"

#define PINGPONG_VECTOR 0
#define ROUND_TIMEOUT_MS 10000
#define PEER_TIMEOUT_MS 20000

struct bench {
	struct lab_session *session;
	const struct lab *lab;
	const struct labbench_options *opts;
	struct session_guest *guests;
	guint n_guests;
	GPtrArray *items;
};

static void item_free(gpointer data)
{
	struct labbench_item *item = data;

	g_free(item->name);
	g_free(item->region);
	g_free(item->guest);
	g_free(item->initiator);
	g_free(item->responder);
	g_free(item->error);
	g_free(item);
}

static gboolean want(struct bench *bench, const char *name)
{
	return ivlab_filter_match(bench->opts->filter, name);
}

static guint64 now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (guint64)ts.tv_sec * G_GUINT64_CONSTANT(1000000000) + (guint64)ts.tv_nsec;
}

static int compare_u64(const void *a, const void *b)
{
	guint64 x = *(const guint64 *)a, y = *(const guint64 *)b;

	return x < y ? -1 : x > y;
}

/* Reach every guest's agent and learn its IVPosition on each region. */
static gboolean connect_guests(struct bench *bench, GError **error)
{
	for (guint i = 0; i < bench->n_guests; i++) {
		struct session_guest *sg = &bench->guests[i];
		g_autoptr(GString) problems = g_string_new(NULL);
		g_autoptr(GError) err = NULL;

		if (!labsession_reach(bench->session, sg, TRUE, bench->opts->timeout_ms, &err))
			return ivlab_fail(error, "lab '%s' is not fully up: %s; run 'ivlab up'",
					  bench->lab->name, err->message);
		if (!labsession_learn_regions(bench->session, sg, bench->opts->timeout_ms, NULL, problems))
			return ivlab_fail(error, "guest %s: %s", sg->guest->name, problems->str);
	}
	return TRUE;
}

static struct labbench_item *item_new(struct bench *bench, enum labbench_kind kind, char *name,
				      const struct lab_region *region)
{
	struct labbench_item *item = g_new0(struct labbench_item, 1);

	item->kind = kind;
	item->name = name;
	item->region = g_strdup(region->name);
	item->iterations = bench->opts->iterations;
	g_ptr_array_add(bench->items, item);
	return item;
}

/* The measurement "pingpong/REGION/INITIATOR->RESPONDER", or NULL when the
 * filter leaves it out. */
static struct labbench_item *pingpong_item(struct bench *bench, const struct lab_region *region,
					   const char *initiator, const char *responder)
{
	char *name = g_strdup_printf("pingpong/%s/%s->%s", region->name, initiator, responder);
	struct labbench_item *item;

	if (!want(bench, name)) {
		g_free(name);
		return NULL;
	}
	item = item_new(bench, LABBENCH_PINGPONG, name, region);
	item->initiator = g_strdup(initiator);
	item->responder = g_strdup(responder);
	return item;
}

static gboolean reply_mbps(AgentReply *reply, const char *key, double *value, GError **error)
{
	const char *text = agent_reply_get(reply, key);
	char *end = NULL;

	*value = text ? g_ascii_strtod(text, &end) : 0;
	if (!text || end == text || *end)
		return ivlab_fail(error, "bench_copy: no number in %s=%s", key, text ? text : "(missing)");
	return TRUE;
}

static void bench_copy(struct bench *bench, struct session_guest *bg, const struct lab_region *region)
{
	char *name = g_strdup_printf("copy/%s/%s", region->name, bg->guest->name);
	struct labbench_item *item;
	g_autoptr(GError) err = NULL;
	AgentReply *reply;

	if (!want(bench, name)) {
		g_free(name);
		return;
	}
	item = item_new(bench, LABBENCH_COPY, name, region);
	item->guest = g_strdup(bg->guest->name);
	item->size = MIN(bench->opts->size ? bench->opts->size : LABBENCH_DEFAULT_SIZE, region->size);
	ivlab_info("%s: %u copies of %" G_GUINT64_FORMAT " bytes", name, item->iterations, item->size);
	reply = agent_request(bg->agent, bench->opts->timeout_ms, &err,
			      IVLAB_AGENT_BENCH_COPY " region=%s size=%" G_GUINT64_FORMAT " iterations=%u",
			      region->name, item->size, item->iterations);
	if (reply && reply_mbps(reply, "to_region_mbps", &item->to_region_mbps, &err) &&
	    reply_mbps(reply, "from_region_mbps", &item->from_region_mbps, &err))
		reply_mbps(reply, "ram_mbps", &item->ram_mbps, &err);
	if (reply)
		g_hash_table_unref(reply);
	if (err)
		item->error = g_strdup(err->message);
}

static gboolean reply_ns(AgentReply *reply, struct labbench_item *item, GError **error)
{
	return agent_reply_u64(reply, "median_ns", &item->median_ns, error) &&
	       agent_reply_u64(reply, "p99_ns", &item->p99_ns, error);
}

/* The responder's side: forget earlier interrupts (irqcount), then its
 * pingpong request, in flight while the initiator runs. */
static gboolean start_responder(struct bench *bench, struct session_guest *responder,
				const struct lab_region *region, gint64 initiator_id, GError **error)
{
	AgentReply *reply = agent_request(responder->agent, bench->opts->timeout_ms, error,
					  IVLAB_AGENT_IRQCOUNT " region=%s", region->name);

	if (!reply)
		return FALSE;
	g_hash_table_unref(reply);
	return agent_send(responder->agent, error,
			  IVLAB_AGENT_PINGPONG " region=%s peer=%" G_GINT64_FORMAT " vector=%u iterations=%u role=responder timeout_ms=%d",
			  region->name, initiator_id, PINGPONG_VECTOR, bench->opts->iterations, ROUND_TIMEOUT_MS);
}

/* Collect the responder's answer; keeps the first error. */
static void finish_responder(struct bench *bench, struct session_guest *responder, GError **error)
{
	g_autoptr(GError) err = NULL;
	AgentReply *reply = agent_receive(responder->agent,
					  bench->opts->timeout_ms + ROUND_TIMEOUT_MS, &err);

	if (reply)
		g_hash_table_unref(reply);
	else if (error && !*error)
		g_propagate_prefixed_error(error, g_steal_pointer(&err), "responder: ");
}

static void guest_pingpong(struct bench *bench, const struct lab_region *region,
			   struct session_guest *initiator, struct session_guest *responder)
{
	gint64 initiator_id = initiator->ids[lab_guest_region_index(initiator->guest, region)];
	gint64 responder_id = responder->ids[lab_guest_region_index(responder->guest, region)];
	struct labbench_item *item = pingpong_item(bench, region, initiator->guest->name,
						   responder->guest->name);
	g_autoptr(GError) err = NULL;

	if (!item)
		return;
	ivlab_info("%s: %u rounds", item->name, item->iterations);
	if (initiator_id < 0 || responder_id < 0) {
		item->error = g_strdup("a guest has no IVPosition on the region");
		return;
	}
	if (start_responder(bench, responder, region, initiator_id, &err)) {
		AgentReply *reply = agent_request(initiator->agent, bench->opts->timeout_ms, &err,
						  IVLAB_AGENT_PINGPONG " region=%s peer=%" G_GINT64_FORMAT " vector=%u iterations=%u role=initiator timeout_ms=%d",
						  region->name, responder_id, PINGPONG_VECTOR,
						  item->iterations, ROUND_TIMEOUT_MS);

		if (reply) {
			reply_ns(reply, item, &err);
			g_hash_table_unref(reply);
		}
		finish_responder(bench, responder, &err);
	}
	if (err)
		item->error = g_strdup(err->message);
}

/* The guest rings the host until the ring arrives: then its QEMU knows the
 * host peer (it learns of new peers from the server asynchronously). */
static gboolean host_known(struct bench *bench, struct peer *peer, struct session_guest *bg,
			   const struct lab_region *region, GError **error)
{
	gint64 deadline = g_get_monotonic_time() + (gint64)PEER_TIMEOUT_MS * 1000;

	do {
		AgentReply *reply = agent_request(bg->agent, bench->opts->timeout_ms, error,
						  IVLAB_AGENT_RING " region=%s peer=%d vector=%u", region->name,
						  peer_id(peer), PINGPONG_VECTOR);
		guint64 count = 0;

		if (!reply)
			return FALSE;
		g_hash_table_unref(reply);
		if (!peer_wait(peer, PINGPONG_VECTOR, 100, &count, error))
			return FALSE;
		if (count) {
			/* A ring that raced ahead lands now, not in the first round. */
			return peer_wait(peer, PINGPONG_VECTOR, 50, &count, error);
		}
	} while (g_get_monotonic_time() < deadline);
	return ivlab_fail(error, "guest %s never rang the host peer %d", bg->guest->name, peer_id(peer));
}

/* Host rings, the guest's responder rings back: one round trip each. */
static gboolean host_rounds(struct peer *peer, gint64 guest_id, struct labbench_item *item,
			    GError **error)
{
	g_autofree guint64 *samples = g_new(guint64, item->iterations);

	for (guint i = 0; i < item->iterations; i++) {
		guint64 started = now_ns(), count = 0;

		if (!peer_ring(peer, (int)guest_id, PINGPONG_VECTOR, error) ||
		    !peer_wait(peer, PINGPONG_VECTOR, ROUND_TIMEOUT_MS, &count, error))
			return FALSE;
		if (!count)
			return ivlab_fail(error, "no ring back from peer %" G_GINT64_FORMAT " in round %u within %d ms",
					  guest_id, i, ROUND_TIMEOUT_MS);
		samples[i] = now_ns() - started;
	}
	qsort(samples, item->iterations, sizeof(*samples), compare_u64);
	item->median_ns = samples[item->iterations / 2];
	item->p99_ns = samples[MIN((gsize)item->iterations * 99 / 100, (gsize)item->iterations - 1)];
	return TRUE;
}

static void host_pingpong(struct bench *bench, const struct lab_region *region, struct peer **peer,
			  const char *peer_why, struct session_guest *responder)
{
	gint64 guest_id = responder->ids[lab_guest_region_index(responder->guest, region)];
	struct labbench_item *item = pingpong_item(bench, region, LABBENCH_HOST, responder->guest->name);
	g_autoptr(GError) err = NULL;

	if (!item)
		return;
	ivlab_info("%s: %u rounds", item->name, item->iterations);
	if (!*peer) {
		item->error = g_strdup(peer_why);
		return;
	}
	if (guest_id < 0) {
		item->error = g_strdup("the guest has no IVPosition on the region");
		return;
	}
	if (host_known(bench, *peer, responder, region, &err) &&
	    start_responder(bench, responder, region, peer_id(*peer), &err)) {
		host_rounds(*peer, guest_id, item, &err);
		finish_responder(bench, responder, &err);
	}
	if (err)
		item->error = g_strdup(err->message);
}

static void bench_doorbells(struct bench *bench, const struct lab_region *region)
{
	g_autoptr(GPtrArray) guests = g_ptr_array_new();
	g_autofree char *socket_path = lab_region_socket_path(bench->lab, region);
	g_autoptr(GError) err = NULL;
	g_autofree char *why = NULL;
	struct peer *peer = NULL;
	gboolean host_wanted;

	for (guint i = 0; i < bench->n_guests; i++)
		if (lab_guest_region_index(bench->guests[i].guest, region) >= 0)
			g_ptr_array_add(guests, &bench->guests[i]);
	for (guint a = 0; a < guests->len; a++)
		for (guint b = 0; b < guests->len; b++)
			if (a != b)
				guest_pingpong(bench, region, g_ptr_array_index(guests, a),
					       g_ptr_array_index(guests, b));

	/* The host peer only when a host measurement is selected. */
	host_wanted = !bench->opts->filter;
	for (guint b = 0; b < guests->len && !host_wanted; b++) {
		struct session_guest *bg = g_ptr_array_index(guests, b);
		g_autofree char *name = g_strdup_printf("pingpong/%s/%s->%s", region->name,
							LABBENCH_HOST, bg->guest->name);

		host_wanted = want(bench, name);
	}
	if (!host_wanted)
		return;
	peer = peer_connect(socket_path, &err);
	if (peer && !peer_wait_peers(peer, guests->len, PEER_TIMEOUT_MS, &err))
		g_clear_pointer(&peer, peer_free);
	if (!peer)
		why = g_strdup_printf("host peer: %s", err->message);
	for (guint b = 0; b < guests->len; b++)
		host_pingpong(bench, region, &peer, why, g_ptr_array_index(guests, b));
	peer_free(peer);
}

GPtrArray *labbench_run(struct lab_session *session, const struct labbench_options *opts,
			GError **error)
{
	const struct lab *lab = session->lab;
	struct bench bench = {
		.session = session, .lab = lab, .opts = opts,
		.guests = session->guests, .n_guests = session->n_guests,
	};
	g_autoptr(GPtrArray) items = NULL;

	if (!session->domains || !session->domains->len) {
		ivlab_fail(error, "lab '%s' is not up (no domain of it is defined); run 'ivlab up' first",
			   lab->name);
		return NULL;
	}
	if (!connect_guests(&bench, error))
		return NULL;
	items = g_ptr_array_new_with_free_func(item_free);
	bench.items = items;
	for (guint r = 0; r < lab->regions->len; r++) {
		const struct lab_region *region = g_ptr_array_index(lab->regions, r);

		for (guint i = 0; i < bench.n_guests; i++)
			if (lab_guest_region_index(bench.guests[i].guest, region) >= 0)
				bench_copy(&bench, &bench.guests[i], region);
		if (region->mode == LAB_REGION_DOORBELL)
			bench_doorbells(&bench, region);
	}
	return g_steal_pointer(&items);
}
