/* labexec.c: `ivlab exec` and `ivlab cp` as a library: a command on several
 * guests at once (one thread per guest polling its agent), and files copied
 * in pipelined, checked chunks through a temporary name. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ivlab.h"
#include "labexec.h"

/* How long one `poll` waits in the agent: also how soon Ctrl-C is seen. */
#define POLL_WAIT_MS 200
/* How long an agent may take beyond what a request itself waits. */
#define ANSWER_TIMEOUT_MS 30000
/* sha256 of a large file under TCG takes a while. */
#define SHA256_TIMEOUT_MS 600000
/* Requests in flight while copying (pipelined: answered in order). */
#define PUT_WINDOW 64
#define GET_WINDOW 4

char *labexec_shell_join(int argc, char **argv)
{
	GString *line = g_string_new(NULL);

	for (int i = 0; i < argc; i++) {
		g_autofree char *quoted = g_shell_quote(argv[i]);

		if (i)
			g_string_append_c(line, ' ');
		/* a single plain word stays as it is: `ivlab exec g 'echo $HOME'` */
		g_string_append(line, argc == 1 ? argv[i] : quoted);
	}
	return g_string_free(line, FALSE);
}

/* Percent-decoded bytes (NULs kept). */
static GByteArray *percent_decode_bytes(const char *text)
{
	GByteArray *bytes = g_byte_array_sized_new(text ? strlen(text) : 0);

	for (const char *c = text; c && *c; c++) {
		guint8 byte = (guint8)*c;

		if (*c == '%' && g_ascii_isxdigit(c[1]) && g_ascii_isxdigit(c[2])) {
			byte = (guint8)(g_ascii_xdigit_value(c[1]) * 16 + g_ascii_xdigit_value(c[2]));
			c += 2;
		}
		g_byte_array_append(bytes, &byte, 1);
	}
	return bytes;
}

/* An image built before these verbs existed answers `err usage unknown verb`. */
static void hint_old_agent(GError *error)
{
	if (error && strstr(error->message, "unknown verb")) {
		g_autofree char *message = g_strdup_printf("%s (the guest's agent is older than "
							   "ivlab: rebuild its image with "
							   "'ivlab image build', then 'ivlab down' "
							   "and 'ivlab up')", error->message);

		g_free(error->message);
		error->message = g_steal_pointer(&message);
	}
}

/* --- exec ---------------------------------------------------------------------- */

struct exec_shared {
	const char *encoded_command;
	guint timeout_ms;
	labexec_output_fn output;
	gpointer data;
	const volatile gint *cancel;
	GMutex lock; /* one output call at a time */
};

struct exec_job {
	struct exec_shared *shared;
	struct session_guest *sg;
	struct labexec_result *result;
	GString *partial[2]; /* a line not ended yet, per stream */
};

static void emit(struct exec_job *job, enum labexec_stream stream, const char *text, gsize length)
{
	g_mutex_lock(&job->shared->lock);
	job->shared->output(job->sg, stream, text, length, job->shared->data);
	g_mutex_unlock(&job->shared->lock);
}

/* Whole lines out, the rest kept (unless it grew past 64 KiB). */
static void deliver(struct exec_job *job, enum labexec_stream stream, const char *encoded,
		    gboolean flush)
{
	g_autoptr(GByteArray) bytes = percent_decode_bytes(encoded);
	GString *partial = job->partial[stream];
	char *newline;

	g_string_append_len(partial, (const char *)bytes->data, bytes->len);
	while ((newline = memchr(partial->str, '\n', partial->len))) {
		gsize length = newline - partial->str + 1;

		emit(job, stream, partial->str, length);
		g_string_erase(partial, 0, length);
	}
	if (partial->len && (flush || partial->len > 65536)) {
		emit(job, stream, partial->str, partial->len);
		g_string_truncate(partial, 0);
	}
}

static void unreachable(struct exec_job *job, GError *error)
{
	job->result->end = LABEXEC_UNREACHABLE;
	job->result->error = g_strdup(error ? error->message : job->sg->gone);
}

static gpointer exec_guest(gpointer data)
{
	struct exec_job *job = data;
	struct exec_shared *shared = job->shared;
	struct session_guest *sg = job->sg;
	g_autoptr(GError) error = NULL;
	g_autofree char *timeout_arg = NULL;
	g_autofree char *pid = NULL;
	gboolean killed = FALSE;
	AgentReply *reply;

	timeout_arg = shared->timeout_ms ? g_strdup_printf(" timeout_ms=%u", shared->timeout_ms)
					 : g_strdup("");
	reply = labsession_ask(sg, ANSWER_TIMEOUT_MS, &error, "spawn cmd=%s%s",
			       shared->encoded_command, timeout_arg);
	if (!reply) {
		hint_old_agent(error);
		unreachable(job, error);
		return NULL;
	}
	pid = g_strdup(agent_reply_get(reply, "pid"));
	g_hash_table_unref(reply);
	if (!pid) {
		job->result->end = LABEXEC_UNREACHABLE;
		job->result->error = g_strdup_printf("guest %s: agent: spawn: no pid in the answer",
						     sg->guest->name);
		return NULL;
	}
	for (;;) {
		const char *exited, *value;

		if (!killed && shared->cancel && g_atomic_int_get(shared->cancel)) {
			reply = labsession_ask(sg, ANSWER_TIMEOUT_MS, &error, "kill pid=%s", pid);
			if (!reply && sg->gone) {
				unreachable(job, error);
				return NULL;
			}
			g_clear_error(&error);
			g_clear_pointer(&reply, g_hash_table_unref);
			killed = TRUE;
		}
		reply = labsession_ask(sg, POLL_WAIT_MS + ANSWER_TIMEOUT_MS, &error,
				       "poll pid=%s wait_ms=%d", pid, POLL_WAIT_MS);
		if (!reply) {
			unreachable(job, error);
			return NULL;
		}
		exited = agent_reply_get(reply, "exited");
		deliver(job, LABEXEC_STDOUT, agent_reply_get(reply, "out"), exited != NULL);
		deliver(job, LABEXEC_STDERR, agent_reply_get(reply, "err"), exited != NULL);
		if (exited) {
			if ((value = agent_reply_get(reply, "status"))) {
				job->result->end = LABEXEC_EXITED;
			} else {
				value = agent_reply_get(reply, "signal");
				job->result->end = LABEXEC_SIGNALED;
			}
			job->result->status = value ? atoi(value) : -1;
			if (agent_reply_get(reply, "timeout"))
				job->result->end = LABEXEC_TIMED_OUT;
			else if (killed)
				job->result->end = LABEXEC_CANCELLED;
			g_hash_table_unref(reply);
			return NULL;
		}
		g_hash_table_unref(reply);
	}
}

struct labexec_result *labexec_run(struct lab_session *session, struct session_guest **guests,
				   guint n_guests, const char *command, guint timeout_ms,
				   labexec_output_fn output, gpointer data,
				   const volatile gint *cancel, GError **error)
{
	g_autofree char *encoded = agent_percent_encode(command);
	struct labexec_result *results;
	struct exec_shared shared = {
		.encoded_command = encoded,
		.timeout_ms = timeout_ms,
		.output = output,
		.data = data,
		.cancel = cancel,
	};
	g_autofree struct exec_job *jobs = g_new0(struct exec_job, n_guests);
	g_autofree GThread **threads = g_new0(GThread *, n_guests);

	if (strlen(encoded) + 64 > IVLAB_AGENT_LINE_MAX) {
		ivlab_fail(error, "the command is too long: %zu bytes encoded, the agent takes %d",
			   strlen(encoded), IVLAB_AGENT_LINE_MAX - 64);
		return NULL;
	}
	results = g_new0(struct labexec_result, n_guests);
	g_mutex_init(&shared.lock);
	/* reached one by one (libvirt look-ups), then run all at once */
	for (guint i = 0; i < n_guests; i++) {
		g_autoptr(GError) reach_error = NULL;

		jobs[i] = (struct exec_job){ &shared, guests[i], &results[i],
					     { g_string_new(NULL), g_string_new(NULL) } };
		if (cancel && g_atomic_int_get(cancel)) {
			results[i].end = LABEXEC_CANCELLED;
			results[i].status = -1;
		} else if (!labsession_reach(session, guests[i], TRUE, LABEXEC_REACH_TIMEOUT_MS,
					     &reach_error)) {
			unreachable(&jobs[i], reach_error);
		} else {
			threads[i] = g_thread_new("labexec", exec_guest, &jobs[i]);
		}
	}
	for (guint i = 0; i < n_guests; i++) {
		if (threads[i])
			g_thread_join(threads[i]);
		g_string_free(jobs[i].partial[0], TRUE);
		g_string_free(jobs[i].partial[1], TRUE);
	}
	g_mutex_clear(&shared.lock);
	return results;
}

void labexec_results_free(struct labexec_result *results, guint n_results)
{
	for (guint i = 0; results && i < n_results; i++)
		g_free(results[i].error);
	g_free(results);
}

int labexec_exit_status(const struct labexec_result *result)
{
	switch (result->end) {
	case LABEXEC_EXITED:
		return result->status;
	case LABEXEC_SIGNALED:
		return 128 + result->status;
	case LABEXEC_TIMED_OUT:
		return LABEXEC_EXIT_TIMEOUT;
	case LABEXEC_CANCELLED:
		return LABEXEC_EXIT_CANCELLED;
	case LABEXEC_UNREACHABLE:
		break;
	}
	return LABEXEC_EXIT_UNREACHABLE;
}

char *labexec_describe(const struct labexec_result *result)
{
	switch (result->end) {
	case LABEXEC_EXITED:
		return g_strdup_printf("exit %d", result->status);
	case LABEXEC_SIGNALED:
		return g_strdup_printf("killed by signal %d (%s)", result->status,
				       g_strsignal(result->status));
	case LABEXEC_TIMED_OUT:
		return g_strdup("timed out, killed");
	case LABEXEC_CANCELLED:
		return g_strdup("interrupted, killed");
	case LABEXEC_UNREACHABLE:
		break;
	}
	return g_strdup_printf("not run: %s", result->error ? result->error : "?");
}

/* --- cp -------------------------------------------------------------------------- */

void labexec_copy_clear(struct labexec_copy *copy)
{
	g_clear_pointer(&copy->remote_path, g_free);
	g_clear_pointer(&copy->local_path, g_free);
}

static gboolean cancelled(const volatile gint *cancel, GError **error)
{
	if (cancel && g_atomic_int_get(cancel))
		return ivlab_fail(error, "interrupted");
	return FALSE;
}

/* Read the answers still due, so the link stays in step for the clean-up. */
static void drain(struct session_guest *sg, guint *in_flight)
{
	for (; *in_flight && !agent_link_broken(sg->agent); (*in_flight)--) {
		AgentReply *reply = agent_receive(sg->agent, ANSWER_TIMEOUT_MS, NULL);

		if (reply)
			g_hash_table_unref(reply);
	}
}

static gboolean remote_sha256(struct session_guest *sg, const char *encoded_path,
			      char sha256[65], guint64 *size, guint *mode, GError **error)
{
	AgentReply *reply = labsession_ask(sg, SHA256_TIMEOUT_MS, error, "sha256 path=%s",
					   encoded_path);
	const char *hex = agent_reply_get(reply, "sha256");
	const char *mode_text = agent_reply_get(reply, "mode");

	if (!reply)
		return FALSE;
	if (!hex || strlen(hex) != 64 || !agent_reply_u64(reply, "size", size, error)) {
		g_hash_table_unref(reply);
		return error && *error ? FALSE : ivlab_fail(error, "agent: sha256: no sha256 in the answer");
	}
	memcpy(sha256, hex, 65);
	if (mode)
		*mode = mode_text ? (guint)g_ascii_strtoull(mode_text, NULL, 8) : 0644;
	g_hash_table_unref(reply);
	return TRUE;
}

static gboolean put_chunks(struct session_guest *sg, int fd, const char *encoded_tmp,
			   guint mode, const volatile gint *cancel, GChecksum *checksum,
			   guint64 *total, GError **error)
{
	/* "put path=P offset=N data=B mode=M" within the line limit */
	gsize header = strlen("put path= offset=18446744073709551615 data= mode=07777") +
		       strlen(encoded_tmp) + 1;
	gsize chunk = header < IVLAB_AGENT_LINE_MAX ? (IVLAB_AGENT_LINE_MAX - header) / 4 * 3 : 0;
	g_autofree guchar *buffer = NULL;
	guint in_flight = 0;
	guint64 offset = 0;
	gboolean more = TRUE, first = TRUE;

	if (chunk < 512)
		return ivlab_fail(error, "the path in the guest is too long");
	buffer = g_malloc(chunk);
	while (more || in_flight) {
		if (more && in_flight < PUT_WINDOW) {
			gssize got = read(fd, buffer, chunk);
			g_autofree char *data = NULL;

			if (got < 0 && errno == EINTR)
				continue;
			if (got < 0) {
				drain(sg, &in_flight);
				return ivlab_fail_errno(error, "cannot read the local file");
			}
			if (cancelled(cancel, error)) {
				drain(sg, &in_flight);
				return FALSE;
			}
			more = got > 0;
			if (!got && !first)
				continue;
			g_checksum_update(checksum, buffer, got);
			data = g_base64_encode(buffer, got);
			if (first)
				agent_send(sg->agent, error, "put path=%s offset=0 data=%s mode=%o",
					   encoded_tmp, data, mode);
			else
				agent_send(sg->agent, error, "put path=%s offset=%" G_GUINT64_FORMAT
					   " data=%s", encoded_tmp, offset, data);
			if (error && *error) {
				drain(sg, &in_flight);
				return FALSE;
			}
			first = FALSE;
			in_flight++;
			offset += got;
			continue;
		}
		AgentReply *reply = agent_receive(sg->agent, ANSWER_TIMEOUT_MS, error);

		in_flight--;
		if (!reply) {
			drain(sg, &in_flight);
			return FALSE;
		}
		g_hash_table_unref(reply);
	}
	*total = offset;
	return TRUE;
}

static char *remote_target(const char *remote, const char *local)
{
	g_autofree char *base = g_path_get_basename(local);

	if (g_str_has_suffix(remote, "/"))
		return g_strconcat(remote, base, NULL);
	return g_strdup(remote);
}

gboolean labexec_put(struct lab_session *session, struct session_guest *sg, const char *local,
		     const char *remote, const volatile gint *cancel, struct labexec_copy *copy,
		     GError **error)
{
	g_autoptr(GChecksum) checksum = g_checksum_new(G_CHECKSUM_SHA256);
	g_autofree char *target = remote_target(remote, local);
	g_autofree char *tmp = g_strdup_printf("%s.ivlab-part-%d", target, (int)getpid());
	g_autofree char *encoded_target = agent_percent_encode(target);
	g_autofree char *encoded_tmp = agent_percent_encode(tmp);
	char remote_hex[65];
	guint64 remote_size = 0;
	gint64 start = g_get_monotonic_time();
	struct stat st;
	gboolean ok;
	AgentReply *reply;
	int fd;

	fd = g_open(local, O_RDONLY | O_CLOEXEC, 0);
	if (fd < 0)
		return ivlab_fail_errno(error, "cannot read %s", local);
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return ivlab_fail(error, "cannot read %s: not a regular file", local);
	}
	if (!labsession_reach(session, sg, TRUE, LABEXEC_REACH_TIMEOUT_MS, error)) {
		close(fd);
		return FALSE;
	}
	ok = put_chunks(sg, fd, encoded_tmp, st.st_mode & 07777, cancel, checksum, &copy->bytes,
			error);
	close(fd);
	if (ok)
		ok = remote_sha256(sg, encoded_tmp, remote_hex, &remote_size, NULL, error);
	if (ok && (strcmp(remote_hex, g_checksum_get_string(checksum)) != 0 ||
		   remote_size != copy->bytes))
		ok = ivlab_fail(error, "%s:%s: the copy differs (sha256 %s, %" G_GUINT64_FORMAT
				" bytes; sent %s, %" G_GUINT64_FORMAT " bytes)", sg->guest->name, tmp,
				remote_hex, remote_size, g_checksum_get_string(checksum), copy->bytes);
	if (ok) {
		reply = labsession_ask(sg, ANSWER_TIMEOUT_MS, error, "rename from=%s to=%s",
				       encoded_tmp, encoded_target);
		ok = reply != NULL;
		g_clear_pointer(&reply, g_hash_table_unref);
	}
	if (!ok) {
		hint_old_agent(error ? *error : NULL);
		/* nothing half-written left behind (when the agent still answers) */
		if (!sg->gone) {
			reply = labsession_ask(sg, ANSWER_TIMEOUT_MS, NULL, "unlink path=%s",
					       encoded_tmp);
			g_clear_pointer(&reply, g_hash_table_unref);
		}
		g_prefix_error(error, "cp to %s:%s: ", sg->guest->name, target);
		return FALSE;
	}
	g_strlcpy(copy->sha256, g_checksum_get_string(checksum), sizeof(copy->sha256));
	copy->seconds = (g_get_monotonic_time() - start) / 1e6;
	copy->remote_path = g_steal_pointer(&target);
	copy->local_path = g_strdup(local);
	return TRUE;
}

static gboolean get_chunks(struct session_guest *sg, int fd, const char *encoded_path,
			   guint64 size, const volatile gint *cancel, GChecksum *checksum,
			   GError **error)
{
	guint64 sent = 0, received = 0;
	guint in_flight = 0;

	while (received < size) {
		if (sent < size && in_flight < GET_WINDOW) {
			if (!agent_send(sg->agent, error, "get path=%s offset=%" G_GUINT64_FORMAT
					" length=%d", encoded_path, sent, IVLAB_AGENT_GET_MAX)) {
				drain(sg, &in_flight);
				return FALSE;
			}
			sent += IVLAB_AGENT_GET_MAX;
			in_flight++;
			continue;
		}
		AgentReply *reply = agent_receive(sg->agent, ANSWER_TIMEOUT_MS, error);
		gsize length = 0;
		g_autofree guchar *data = NULL;

		in_flight--;
		if (!reply) {
			drain(sg, &in_flight);
			return FALSE;
		}
		data = g_base64_decode(agent_reply_get(reply, "data") ?: "", &length);
		g_hash_table_unref(reply);
		if (!length) {
			drain(sg, &in_flight);
			return ivlab_fail(error, "the file shrank while it was copied");
		}
		length = MIN(length, size - received);
		if (!ivlab_write_all(fd, (const char *)data, length)) {
			drain(sg, &in_flight);
			return ivlab_fail_errno(error, "cannot write");
		}
		g_checksum_update(checksum, data, length);
		received += length;
		if (cancelled(cancel, error)) {
			drain(sg, &in_flight);
			return FALSE;
		}
	}
	drain(sg, &in_flight);
	return TRUE;
}

gboolean labexec_get(struct lab_session *session, struct session_guest *sg, const char *remote,
		     const char *local, const volatile gint *cancel, struct labexec_copy *copy,
		     GError **error)
{
	g_autoptr(GChecksum) checksum = g_checksum_new(G_CHECKSUM_SHA256);
	g_autofree char *encoded_remote = agent_percent_encode(remote);
	g_autofree char *target = NULL, *tmp = NULL;
	char remote_hex[65];
	guint64 size = 0;
	guint mode = 0644;
	gint64 start = g_get_monotonic_time();
	gboolean ok;
	int fd;

	if (g_file_test(local, G_FILE_TEST_IS_DIR)) {
		g_autofree char *base = g_path_get_basename(remote);

		target = g_build_filename(local, base, NULL);
	} else {
		target = g_strdup(local);
	}
	tmp = g_strdup_printf("%s.ivlab-part-XXXXXX", target);
	if (!labsession_reach(session, sg, TRUE, LABEXEC_REACH_TIMEOUT_MS, error) ||
	    !remote_sha256(sg, encoded_remote, remote_hex, &size, &mode, error)) {
		hint_old_agent(error ? *error : NULL);
		g_prefix_error(error, "cp from %s:%s: ", sg->guest->name, remote);
		return FALSE;
	}
	fd = g_mkstemp_full(tmp, O_WRONLY | O_CLOEXEC, 0600);
	if (fd < 0)
		return ivlab_fail_errno(error, "cannot write %s", target);
	ok = get_chunks(sg, fd, encoded_remote, size, cancel, checksum, error);
	if (ok && strcmp(remote_hex, g_checksum_get_string(checksum)) != 0)
		ok = ivlab_fail(error, "the copy differs (sha256 %s in the guest, %s here)", remote_hex,
				g_checksum_get_string(checksum));
	if (ok && fchmod(fd, mode & 0777) < 0)
		ok = ivlab_fail_errno(error, "cannot set the mode of %s", tmp);
	if (close(fd) < 0 && ok)
		ok = ivlab_fail_errno(error, "cannot write %s", tmp);
	if (ok && g_rename(tmp, target) < 0)
		ok = ivlab_fail_errno(error, "cannot rename %s to %s", tmp, target);
	if (!ok) {
		g_unlink(tmp);
		g_prefix_error(error, "cp from %s:%s to %s: ", sg->guest->name, remote, target);
		return FALSE;
	}
	copy->bytes = size;
	g_strlcpy(copy->sha256, remote_hex, sizeof(copy->sha256));
	copy->seconds = (g_get_monotonic_time() - start) / 1e6;
	copy->remote_path = g_strdup(remote);
	copy->local_path = g_steal_pointer(&target);
	return TRUE;
}
