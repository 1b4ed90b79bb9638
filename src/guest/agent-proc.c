/* agent-proc.c: processes the host runs several at a time (spawn, poll,
 * kill): each child's stdout and stderr drain into bounded buffers through
 * non-blocking pipes, from the agent's main loop and while `poll` waits. A
 * full buffer is not read until the host polls it empty: the child then
 * blocks on its pipe, so nothing is lost and nothing grows without bound. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>

#include "agent.h"

struct stream {
	int fd;			/* -1 once it reached EOF */
	uint8_t *buf;
	size_t start, len;	/* unread bytes are buf[start, start + len) */
};

struct proc {
	bool used;
	unsigned int id;
	pid_t pid;		/* also the process group */
	struct stream out, err;
	bool reaped;
	int status;
	bool timed_out;
	uint64_t deadline_ns;	/* 0: none */
};

static struct proc procs[IVLAB_AGENT_PROCS_MAX];
static unsigned int next_id = 1;

static void stream_close(struct stream *stream)
{
	if (stream->fd >= 0)
		close(stream->fd);
	stream->fd = -1;
}

static bool stream_full(const struct stream *stream)
{
	return stream->len == IVLAB_AGENT_STREAM_MAX;
}

/* Reads what the pipe holds, up to IVLAB_AGENT_STREAM_MAX buffered. */
static void stream_drain(struct stream *stream)
{
	while (stream->fd >= 0 && !stream_full(stream)) {
		size_t room, tail;
		ssize_t n;

		if (stream->start && stream->start + stream->len == IVLAB_AGENT_STREAM_MAX) {
			memmove(stream->buf, stream->buf + stream->start, stream->len);
			stream->start = 0;
		}
		tail = stream->start + stream->len;
		room = IVLAB_AGENT_STREAM_MAX - tail;
		n = read(stream->fd, stream->buf + tail, room);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			stream_close(stream);
			return;
		}
		stream->len += (size_t)n;
	}
}

static void proc_free(struct proc *proc)
{
	stream_close(&proc->out);
	stream_close(&proc->err);
	free(proc->out.buf);
	free(proc->err.buf);
	memset(proc, 0, sizeof(*proc));
}

/* Reap, enforce deadlines, then drain (after reaping, so all a child
 * wrote before it exited is in its buffers). */
void procs_service(void)
{
	uint64_t now = now_ns();

	for (int i = 0; i < IVLAB_AGENT_PROCS_MAX; i++) {
		struct proc *proc = &procs[i];

		if (!proc->used)
			continue;
		if (!proc->reaped && proc->deadline_ns && now >= proc->deadline_ns) {
			kill(-proc->pid, SIGKILL);
			proc->timed_out = true;
			proc->deadline_ns = 0;
		}
		if (!proc->reaped && waitpid(proc->pid, &proc->status, WNOHANG) == proc->pid)
			proc->reaped = true;
		stream_drain(&proc->out);
		stream_drain(&proc->err);
	}
}

int procs_pollfds(struct pollfd *fds, int max)
{
	int n = 0;

	for (int i = 0; i < IVLAB_AGENT_PROCS_MAX && n + 2 <= max; i++) {
		if (!procs[i].used)
			continue;
		if (procs[i].out.fd >= 0 && !stream_full(&procs[i].out))
			fds[n++] = (struct pollfd){ .fd = procs[i].out.fd, .events = POLLIN };
		if (procs[i].err.fd >= 0 && !stream_full(&procs[i].err))
			fds[n++] = (struct pollfd){ .fd = procs[i].err.fd, .events = POLLIN };
	}
	return n;
}

/* How long the main loop may sleep: children are reaped by polling
 * waitpid, so not long while one runs; -1 when none does. */
int procs_wait_ms(void)
{
	for (int i = 0; i < IVLAB_AGENT_PROCS_MAX; i++)
		if (procs[i].used && !procs[i].reaped)
			return 50;
	return -1;
}

/* The host went away: nobody will read these processes' output. */
void procs_kill_all(void)
{
	for (int i = 0; i < IVLAB_AGENT_PROCS_MAX; i++) {
		struct proc *proc = &procs[i];

		if (!proc->used)
			continue;
		kill(-proc->pid, SIGKILL);
		while (!proc->reaped && waitpid(proc->pid, &proc->status, 0) < 0 && errno == EINTR)
			;
		proc_free(proc);
	}
}

static bool stream_init(struct stream *stream, int fd)
{
	stream->fd = fd;
	stream->buf = malloc(IVLAB_AGENT_STREAM_MAX);
	return stream->buf != NULL;
}

bool cmd_spawn(struct request *req, struct reply *reply)
{
	const char *encoded = arg_get(req, "cmd");
	char command[IVLAB_AGENT_LINE_MAX];
	uint64_t timeout_ms = 0;
	bool timeout_given;
	struct proc *proc = NULL;
	int out[2], err[2];
	pid_t pid;

	if (!encoded)
		return fail(reply, "usage", "spawn: missing argument cmd=");
	if (!arg_u64_opt(req, "timeout_ms", IVLAB_AGENT_SPAWN_TIMEOUT_MAX_MS, &timeout_ms,
			 &timeout_given, reply) ||
	    !args_all_used(req, reply))
		return false;
	if (!percent_decode(encoded, command, sizeof(command)) || !command[0])
		return fail(reply, "usage", "spawn: cmd= is not valid percent-encoded text");
	for (int i = 0; i < IVLAB_AGENT_PROCS_MAX && !proc; i++)
		if (!procs[i].used)
			proc = &procs[i];
	if (!proc)
		return fail(reply, "busy", "spawn: %d processes already (poll them to their end)",
			    IVLAB_AGENT_PROCS_MAX);
	if (pipe2(out, O_CLOEXEC | O_NONBLOCK) < 0)
		return fail(reply, "io", "spawn: pipe: %s", strerror(errno));
	if (pipe2(err, O_CLOEXEC | O_NONBLOCK) < 0) {
		close(out[0]);
		close(out[1]);
		return fail(reply, "io", "spawn: pipe: %s", strerror(errno));
	}
	pid = fork();
	if (pid == 0) {
		int null = open("/dev/null", O_RDONLY);

		setpgid(0, 0);
		dup2(null, 0);
		dup2(out[1], 1);
		dup2(err[1], 2);
		fcntl(1, F_SETFL, 0);
		fcntl(2, F_SETFL, 0);
		signal(SIGPIPE, SIG_DFL);
		execl("/bin/sh", "sh", "-c", command, (char *)NULL);
		_exit(127);
	}
	close(out[1]);
	close(err[1]);
	if (pid < 0) {
		close(out[0]);
		close(err[0]);
		return fail(reply, "io", "spawn: fork: %s", strerror(errno));
	}
	/* also here, so a kill right after the answer reaches the group */
	setpgid(pid, pid);
	proc->used = true;
	proc->id = next_id++;
	proc->pid = pid;
	if (!stream_init(&proc->out, out[0]) || !stream_init(&proc->err, err[0])) {
		kill(-pid, SIGKILL);
		waitpid(pid, NULL, 0);
		proc_free(proc);
		return fail(reply, "io", "spawn: out of memory");
	}
	if (timeout_ms)
		proc->deadline_ns = now_ns() + timeout_ms * 1000000ULL;
	reply_add(reply, "ok pid=%u", proc->id);
	return true;
}

static struct proc *arg_proc(struct request *req, struct reply *reply)
{
	uint64_t id;

	if (!arg_u64(req, "pid", UINT32_MAX, &id, reply))
		return NULL;
	for (int i = 0; i < IVLAB_AGENT_PROCS_MAX; i++)
		if (procs[i].used && procs[i].id == id)
			return &procs[i];
	fail(reply, "range", "%s: no process %" PRIu64 " (never spawned, or its end was polled)",
	     req->verb, id);
	return NULL;
}

/* Up to IVLAB_AGENT_POLL_CHUNK bytes of stream as key=PERCENT-ENCODED. */
static void reply_stream(struct reply *reply, const char *key, struct stream *stream)
{
	size_t take = stream->len < IVLAB_AGENT_POLL_CHUNK ? stream->len : IVLAB_AGENT_POLL_CHUNK;

	reply_add(reply, " %s=", key);
	reply_add_encoded(reply, stream->buf + stream->start, take);
	stream->start += take;
	stream->len -= take;
	if (!stream->len)
		stream->start = 0;
}

bool cmd_poll(struct request *req, struct reply *reply)
{
	struct proc *proc = arg_proc(req, reply);
	uint64_t wait_ms = 0, deadline;
	bool given;

	if (!proc)
		return false;
	if (!arg_u64_opt(req, "wait_ms", IVLAB_AGENT_POLL_WAIT_MAX_MS, &wait_ms, &given, reply) ||
	    !args_all_used(req, reply))
		return false;
	deadline = now_ns() + wait_ms * 1000000ULL;
	for (;;) {
		struct pollfd fds[2 * IVLAB_AGENT_PROCS_MAX];
		uint64_t now;
		int left_ms;

		procs_service();
		if (proc->out.len || proc->err.len || proc->reaped)
			break;
		now = now_ns();
		if (now >= deadline)
			break;
		left_ms = (int)((deadline - now + 999999) / 1000000);
		poll(fds, (nfds_t)procs_pollfds(fds, (int)ARRAY_SIZE(fds)), left_ms < 50 ? left_ms : 50);
	}
	reply_add(reply, "ok");
	reply_stream(reply, "out", &proc->out);
	reply_stream(reply, "err", &proc->err);
	if (!proc->reaped || proc->out.len || proc->err.len)
		return true;
	/* all it wrote was returned: its end, once */
	if (WIFEXITED(proc->status))
		reply_add(reply, " exited=1 status=%d", WEXITSTATUS(proc->status));
	else
		reply_add(reply, " exited=1 signal=%d", WTERMSIG(proc->status));
	if (proc->timed_out)
		reply_add(reply, " timeout=1");
	proc_free(proc);
	return true;
}

bool cmd_kill(struct request *req, struct reply *reply)
{
	struct proc *proc = arg_proc(req, reply);
	uint64_t sig = SIGKILL;
	bool given;

	if (!proc)
		return false;
	if (!arg_u64_opt(req, "signal", 64, &sig, &given, reply) || !args_all_used(req, reply))
		return false;
	if (!sig)
		return fail(reply, "range", "kill: signal=0 is no signal");
	if (kill(-proc->pid, (int)sig) < 0 && errno != ESRCH)
		return fail(reply, "io", "kill: %s", strerror(errno));
	reply_add(reply, "ok");
	return true;
}
