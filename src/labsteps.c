/* labsteps.c: a lab's own tests (<test> in the lab file): steps run in the
 * guests through their agents (spawn, poll, kill), background steps first,
 * the others in order, every one ending with its expected status before the
 * test's deadline; each test one result in the report, with the steps'
 * output. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <ivlab-agent.h>

#include "ivlab.h"
#include "labsteps.h"

/* How long one request may take to be answered, beyond its own wait. */
#define ANSWER_TIMEOUT_MS 15000
/* How long one poll waits in the agent when several steps run at once, so
 * that each is seen soon after it ends. */
#define SHARED_POLL_MS 100
/* How much of a failed step's output the reason quotes. */
#define REASON_TAIL 400

struct step_run {
	const struct lab_step *step;
	guint number;            /* 1-based, in file order */
	struct session_guest *sg;
	char *pid;               /* the agent's id, NULL until spawned */
	gboolean ended;
	gboolean killed;         /* by us, at the deadline or after a failure */
	int status;              /* exit status, or -1 */
	int signal;              /* the signal that ended it, or 0 */
	GString *output;         /* stdout and stderr, interleaved as polled */
};

struct test_run {
	struct lab_session *session;
	const struct lab_test *test;
	struct step_run *steps;
	guint n_steps;
	gint64 deadline;         /* monotonic, us */
	GString *log;            /* every step's output, for JUnit */
	char *failure;           /* the first reason the test failed, or NULL */
};

static void fail(struct test_run *run, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

static void fail(struct test_run *run, const char *fmt, ...)
{
	va_list ap;

	if (run->failure)
		return;
	va_start(ap, fmt);
	run->failure = g_strdup_vprintf(fmt, ap);
	va_end(ap);
}

static const char *step_label(struct step_run *sr, char *buffer, gsize size)
{
	g_snprintf(buffer, size, "step %u (%s%s)", sr->number, sr->step->guest,
		   sr->step->background ? ", background" : "");
	return buffer;
}

static gboolean spawn_step(struct test_run *run, struct step_run *sr)
{
	g_autofree char *encoded = agent_percent_encode(sr->step->command);
	g_autoptr(GError) error = NULL;
	gint64 left_ms = (run->deadline - g_get_monotonic_time()) / 1000;
	AgentReply *reply;
	char label[128];

	step_label(sr, label, sizeof(label));
	if (!labsession_reach(run->session, sr->sg, TRUE, ANSWER_TIMEOUT_MS, &error)) {
		fail(run, "%s: %s", label, error->message);
		return FALSE;
	}
	/* The agent kills it itself should we never come back. */
	reply = labsession_ask(sr->sg, ANSWER_TIMEOUT_MS, &error, IVLAB_AGENT_SPAWN " cmd=%s timeout_ms=%"
			       G_GINT64_FORMAT, encoded, MAX(left_ms, 1) + ANSWER_TIMEOUT_MS);
	if (!reply) {
		fail(run, "%s: %s", label, error->message);
		return FALSE;
	}
	sr->pid = g_strdup(agent_reply_get(reply, "pid"));
	g_hash_table_unref(reply);
	if (!sr->pid) {
		fail(run, "%s: the agent gave no pid", label);
		return FALSE;
	}
	return TRUE;
}

static void append_output(struct test_run *run, struct step_run *sr, const char *encoded)
{
	g_autofree char *text = encoded ? agent_percent_decode(encoded) : NULL;

	if (!text || !*text)
		return;
	g_string_append(sr->output, text);
	g_string_append_printf(run->log, "[%s step %u] %s%s", sr->step->guest, sr->number, text,
			       g_str_has_suffix(text, "\n") ? "" : "\n");
}

/* One poll of a running step; sets sr->ended with its status. */
static gboolean poll_step(struct test_run *run, struct step_run *sr, int wait_ms)
{
	g_autoptr(GError) error = NULL;
	AgentReply *reply;
	const char *value;
	char label[128];

	reply = labsession_ask(sr->sg, wait_ms + ANSWER_TIMEOUT_MS, &error,
			       IVLAB_AGENT_POLL " pid=%s wait_ms=%d", sr->pid, wait_ms);
	if (!reply) {
		fail(run, "%s: %s", step_label(sr, label, sizeof(label)), error->message);
		sr->ended = TRUE;
		sr->status = -1;
		return FALSE;
	}
	append_output(run, sr, agent_reply_get(reply, "out"));
	append_output(run, sr, agent_reply_get(reply, "err"));
	if (agent_reply_get(reply, "exited")) {
		sr->ended = TRUE;
		sr->status = (value = agent_reply_get(reply, "status")) ? atoi(value) : -1;
		sr->signal = (value = agent_reply_get(reply, "signal")) ? atoi(value) : 0;
	}
	g_hash_table_unref(reply);
	return TRUE;
}

/* A step that ended: was it the status the lab file expects? */
static void judge(struct test_run *run, struct step_run *sr)
{
	char label[128];
	g_autofree char *tail = NULL;
	gsize len = sr->output->len;

	if (sr->killed || !sr->ended || sr->status == sr->step->expect)
		return;
	tail = g_strdup(sr->output->str + (len > REASON_TAIL ? len - REASON_TAIL : 0));
	g_strstrip(tail);
	step_label(sr, label, sizeof(label));
	if (sr->signal)
		fail(run, "%s was killed by signal %d, expected exit status %d%s%s", label,
		     sr->signal, sr->step->expect, *tail ? "; output: " : "", tail);
	else if (sr->status >= 0)
		fail(run, "%s exited with status %d, expected %d%s%s", label, sr->status,
		     sr->step->expect, *tail ? "; output: " : "", tail);
}

/* Poll every running step once; the one we wait for gets the longer wait. */
static void poll_round(struct test_run *run, struct step_run *waited)
{
	guint running = 0;

	for (guint i = 0; i < run->n_steps; i++)
		running += run->steps[i].pid && !run->steps[i].ended;
	for (guint i = 0; i < run->n_steps; i++) {
		struct step_run *sr = &run->steps[i];
		gint64 left_ms = (run->deadline - g_get_monotonic_time()) / 1000;
		int wait_ms = running > 1 ? SHARED_POLL_MS : (int)CLAMP(left_ms, 0, IVLAB_AGENT_POLL_WAIT_MAX_MS);

		if (!sr->pid || sr->ended)
			continue;
		if (sr != waited && running > 1)
			wait_ms = 0;
		if (poll_step(run, sr, wait_ms) && sr->ended)
			judge(run, sr);
	}
}

static gboolean past_deadline(struct test_run *run)
{
	return g_get_monotonic_time() >= run->deadline;
}

/* Kill what still runs (at the deadline or after a failure) and collect it. */
static void kill_running(struct test_run *run)
{
	for (guint i = 0; i < run->n_steps; i++) {
		struct step_run *sr = &run->steps[i];
		AgentReply *reply;

		if (!sr->pid || sr->ended || sr->sg->gone)
			continue;
		reply = labsession_ask(sr->sg, ANSWER_TIMEOUT_MS, NULL, IVLAB_AGENT_KILL " pid=%s",
				       sr->pid);
		if (reply)
			g_hash_table_unref(reply);
		sr->killed = TRUE;
		while (!sr->ended && poll_step(run, sr, 1000))
			;
	}
}

static void run_steps(struct test_run *run)
{
	char label[128];

	/* Background steps first: a consumer waiting on a doorbell. */
	for (guint i = 0; i < run->n_steps && !run->failure; i++)
		if (run->steps[i].step->background)
			spawn_step(run, &run->steps[i]);
	for (guint i = 0; i < run->n_steps && !run->failure; i++) {
		struct step_run *sr = &run->steps[i];

		if (sr->step->background || !spawn_step(run, sr))
			continue;
		while (!sr->ended && !run->failure && !past_deadline(run))
			poll_round(run, sr);
		if (!sr->ended && !run->failure)
			fail(run, "timed out after %.1f s: %s still ran: %s",
			     run->test->timeout_ms / 1000.0, step_label(sr, label, sizeof(label)),
			     sr->step->command);
	}
	/* The background steps must end too, by the deadline. */
	for (guint i = 0; i < run->n_steps && !run->failure; i++) {
		struct step_run *sr = &run->steps[i];

		while (sr->pid && !sr->ended && !run->failure && !past_deadline(run))
			poll_round(run, sr);
		if (sr->pid && !sr->ended && !run->failure)
			fail(run, "timed out after %.1f s: %s still ran: %s",
			     run->test->timeout_ms / 1000.0, step_label(sr, label, sizeof(label)),
			     sr->step->command);
	}
	kill_running(run);
}

static void test_run_clear(struct test_run *run)
{
	for (guint i = 0; i < run->n_steps; i++) {
		g_free(run->steps[i].pid);
		g_string_free(run->steps[i].output, TRUE);
	}
	g_free(run->steps);
	g_string_free(run->log, TRUE);
	g_free(run->failure);
}

void labsteps_run(struct lab_session *session, const struct lab_test *test, struct report *report)
{
	g_autofree char *name = g_strdup_printf("lab/%s", test->name);
	gint64 started = g_get_monotonic_time();
	struct test_run run = {
		.session = session,
		.test = test,
		.n_steps = test->steps->len,
		.deadline = started + test->timeout_ms * (gint64)1000,
		.log = g_string_new(NULL),
	};

	run.steps = g_new0(struct step_run, run.n_steps);
	for (guint i = 0; i < run.n_steps; i++) {
		struct step_run *sr = &run.steps[i];

		sr->step = g_ptr_array_index(test->steps, i);
		sr->number = i + 1;
		sr->sg = labsession_guest(session, sr->step->guest);
		sr->status = -1;
		sr->output = g_string_new(NULL);
		/* The lab file's checks name only guests of the lab. */
		g_assert(sr->sg);
	}
	run_steps(&run);
	if (run.failure)
		report_add_output(report, name, REPORT_FAIL, (g_get_monotonic_time() - started) / 1e6,
				  run.log->str, "%s", run.failure);
	else
		report_add_output(report, name, REPORT_PASS, (g_get_monotonic_time() - started) / 1e6,
				  run.log->str, "%u step%s ended as expected", run.n_steps,
				  run.n_steps == 1 ? "" : "s");
	test_run_clear(&run);
}
