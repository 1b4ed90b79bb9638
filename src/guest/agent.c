/* agent.c: the ivlab guest agent. Finds the virtio-serial port
 * IVLAB_AGENT_PORT (org.ivlab.agent.0) and serves PROTOCOL.md on it over
 * the /dev/ivlabN devices; --stdio serves stdin/stdout for tests on the host. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>

#include "agent.h"

/* --- the port ------------------------------------------------------------- */

static bool write_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = write(fd, buf, len);

		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0)
			return false;
		buf += n;
		len -= (size_t)n;
	}
	return true;
}

static bool send_line(int fd, struct reply *reply)
{
	reply_reserve(reply, 1);
	if (reply->failed)
		return write_all(fd, "err io out of memory\n", 21);
	reply->buf[reply->len] = '\n';
	return write_all(fd, reply->buf, reply->len + 1);
}

/* Reads requests until the input ends (stdio) or forever (a port). */
static int serve(int in, int out, bool is_port)
{
	static char buf[IVLAB_AGENT_LINE_MAX + 1];
	struct reply reply = { 0 };
	size_t len = 0;
	bool discarding = false;

	reply_add(&reply, IVLAB_AGENT_READY " proto=%d", IVLAB_AGENT_PROTO);
	if (!send_line(out, &reply))
		return 1;

	for (;;) {
		struct pollfd fds[1 + 2 * IVLAB_AGENT_PROCS_MAX];
		int nfds = 1 + procs_pollfds(fds + 1, (int)ARRAY_SIZE(fds) - 1);
		ssize_t n;
		char *start, *nl;

		/* spawned processes' output is collected while no request runs */
		fds[0] = (struct pollfd){ .fd = in, .events = POLLIN };
		poll(fds, (nfds_t)nfds, procs_wait_ms());
		procs_service();
		if (!fds[0].revents)
			continue;
		n = read(in, buf + len, sizeof(buf) - 1 - len);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0) {
			/* the host left: nobody will poll what it spawned */
			procs_kill_all();
			if (!is_port)
				return 0;
			/* the host end is closed: wait for it to come back */
			poll(NULL, 0, 50);
			continue;
		}
		len += (size_t)n;
		start = buf;
		while ((nl = memchr(start, '\n', len - (size_t)(start - buf)))) {
			*nl = '\0';
			if (discarding) {
				discarding = false;
			} else {
				handle_line(start, &reply);
				if (!send_line(out, &reply) && !is_port)
					return 1;
			}
			start = nl + 1;
		}
		len -= (size_t)(start - buf);
		memmove(buf, start, len);
		if (len == IVLAB_AGENT_LINE_MAX) {
			/* too long: answer once, drop the rest of the line */
			if (!discarding) {
				fail(&reply, "proto", "request longer than %d bytes", IVLAB_AGENT_LINE_MAX);
				if (!send_line(out, &reply) && !is_port)
					return 1;
			}
			discarding = true;
			len = 0;
		}
	}
}

/* /sys/class/virtio-ports/vportNpM/name == IVLAB_AGENT_PORT -> /dev/vportNpM */
static bool find_port(char *path, size_t size)
{
	DIR *dir = opendir("/sys/class/virtio-ports");
	struct dirent *entry;
	bool found = false;

	if (!dir)
		return false;
	while (!found && (entry = readdir(dir))) {
		char name_path[512], name[128] = "";
		FILE *file;

		if (entry->d_name[0] == '.')
			continue;
		snprintf(name_path, sizeof(name_path), "/sys/class/virtio-ports/%s/name",
			 entry->d_name);
		file = fopen(name_path, "re");
		if (!file)
			continue;
		if (fgets(name, sizeof(name), file))
			name[strcspn(name, "\n")] = '\0';
		fclose(file);
		if (!strcmp(name, IVLAB_AGENT_PORT)) {
			snprintf(path, size, "/dev/%s", entry->d_name);
			found = access(path, R_OK | W_OK) == 0;
		}
	}
	closedir(dir);
	return found;
}

/* --- self test ------------------------------------------------------------ */

static int selftest_count, selftest_failed;

static void selftest_check(bool ok, const char *what)
{
	selftest_count++;
	if (!ok)
		selftest_failed++;
	printf("%s %d - %s\n", ok ? "ok" : "not ok", selftest_count, what);
}

/* fill and check agree with pattern_byte at every start alignment */
static bool selftest_pattern(void)
{
	uint8_t buf[64], ref[64];

	for (uint64_t off = 0; off < 9; off++) {
		for (uint64_t i = 0; i < 40; i++)
			ref[i] = ivlab_pattern_byte(42, off + i);
		ivlab_pattern_fill(buf, off, 40, 42);
		if (memcmp(buf, ref, 40) || ivlab_pattern_check(buf, off, 40, 42) != 40)
			return false;
		buf[17] ^= 1;
		if (ivlab_pattern_check(buf, off, 40, 42) != 17)
			return false;
	}
	return true;
}

static bool selftest_sha256(const char *text, size_t len, const char *expected)
{
	char hex[65];
	uint64_t size;
	int fds[2];
	bool ok;

	if (pipe(fds) < 0 || write(fds[1], text, len) != (ssize_t)len)
		return false;
	close(fds[1]);
	ok = sha256_fd(fds[0], hex, &size) && size == len && !strcmp(hex, expected);
	close(fds[0]);
	return ok;
}

static int selftest(void)
{
	struct reply reply = { 0 };
	char line[64];

	/* splitmix64(0) from the reference implementation */
	selftest_check(ivlab_splitmix64(0) == 0xe220a8397b1dcdafULL, "splitmix64(0)");
	selftest_check(crc32_update(0, (const uint8_t *)"123456789", 9) == 0xcbf43926U,
		       "crc32 check value");
	selftest_check(selftest_pattern(), "pattern fill/check at every alignment");
	reply_add_encoded(&reply, (const uint8_t *)"a b%\n", 5);
	selftest_check(!strcmp(reply.buf, "a%20b%25%0A"), "percent encoding");
	selftest_check(percent_decode("a%20b%25", line, sizeof(line)) && !strcmp(line, "a b%"),
		       "percent decoding");
	selftest_check(!percent_decode("a%2", line, sizeof(line)), "bad percent escape refused");
	reply_clear(&reply);
	reply_add_base64(&reply, (const uint8_t *)"hello!?", 7);
	selftest_check(!strcmp(reply.buf, "aGVsbG8hPw=="), "base64 encoding");
	selftest_check(base64_decode("aGVsbG8hPw==", (uint8_t *)line) == 7 && !memcmp(line, "hello!?", 7),
		       "base64 decoding");
	selftest_check(base64_decode("aGV=bG8h", (uint8_t *)line) < 0, "bad base64 refused");
	selftest_check(selftest_sha256("abc", 3,
		"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") &&
		       selftest_sha256("", 0,
		"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855") &&
		       selftest_sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56,
		"248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
		       "sha256 test vectors (FIPS 180-4)");
	free(reply.buf);
	printf("1..%d\n", selftest_count);
	return selftest_failed ? 1 : 0;
}

static void usage(FILE *out)
{
	fprintf(out,
		"usage: ivlab-agent [--stdio] [--port PATH] [--cmdline FILE] [--dev-dir DIR]\n"
		"                   [--region NAME=FILE]... | --selftest | --version\n"
		"       ivlab-agent --load-modules MODULE.ko...\n"
		"Serves the ivlab agent protocol on the virtio-serial port %s,\n"
		"or on stdin/stdout with --stdio. --load-modules loads the modules\n"
		"in order, in one process (for /init), and exits with the number\n"
		"that failed.\n", IVLAB_AGENT_PORT);
}

/* finit_module(2)'s flag for a compressed module file (Linux 5.17). */
#ifndef MODULE_INIT_COMPRESSED_FILE
#define MODULE_INIT_COMPRESSED_FILE 4
#endif

static bool has_suffix(const char *name, const char *suffix)
{
	size_t len = strlen(name), slen = strlen(suffix);

	return len >= slen && !strcmp(name + len - slen, suffix);
}

/* /init's module loading without a process per module: under emulation
 * each insmod costs tens of milliseconds of fork and exec. */
static int load_modules(int count, char **paths)
{
	int failed = 0;

	for (int i = 0; i < count; i++) {
		int flags = has_suffix(paths[i], ".xz") || has_suffix(paths[i], ".zst") ?
				    MODULE_INIT_COMPRESSED_FILE : 0;
		int fd = open(paths[i], O_RDONLY | O_CLOEXEC);

		if (fd < 0 || (syscall(SYS_finit_module, fd, "", flags) < 0 && errno != EEXIST)) {
			fprintf(stderr, "ivlab-init: cannot load %s: %s\n", paths[i], strerror(errno));
			failed++;
		}
		if (fd >= 0)
			close(fd);
	}
	return failed > 100 ? 100 : failed;
}

int main(int argc, char **argv)
{
	const char *port = NULL;
	bool use_stdio = false;
	char path[300];
	int fd, waited = 0;

	for (int i = 1; i < argc; i++) {
		const char *opt = argv[i];
		const char *value = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(opt, "--load-modules")) {
			return load_modules(argc - i - 1, argv + i + 1);
		} else if (!strcmp(opt, "--stdio")) {
			use_stdio = true;
		} else if (!strcmp(opt, "--selftest")) {
			return selftest();
		} else if (!strcmp(opt, "--version")) {
			printf("ivlab-agent %s (protocol %d)\n", IVLAB_AGENT_VERSION, IVLAB_AGENT_PROTO);
			return 0;
		} else if (!strcmp(opt, "--help")) {
			usage(stdout);
			return 0;
		} else if (value && !strcmp(opt, "--port")) {
			port = value;
			i++;
		} else if (value && !strcmp(opt, "--cmdline")) {
			agent.cmdline_path = value;
			i++;
		} else if (value && !strcmp(opt, "--dev-dir")) {
			agent.dev_dir = value;
			i++;
		} else if (value && !strcmp(opt, "--region")) {
			if (!add_file_region(value)) {
				fprintf(stderr, "ivlab-agent: --region %s: need NAME=FILE of a non-empty file\n",
					value);
				return 2;
			}
			i++;
		} else {
			fprintf(stderr, "ivlab-agent: bad option %s\n", opt);
			usage(stderr);
			return 2;
		}
	}

	signal(SIGPIPE, SIG_IGN);
	agent_catch_faults();

	parse_cmdline(agent.cmdline_path);
	regions_scan();

	if (use_stdio)
		return serve(0, 1, false);

	if (!port) {
		while (!find_port(path, sizeof(path))) {
			if (waited >= PORT_WAIT_MS) {
				fprintf(stderr, "ivlab-agent: no virtio port named %s\n", IVLAB_AGENT_PORT);
				return 1;
			}
			poll(NULL, 0, 50);
			waited += 50;
		}
		port = path;
	}
	fd = open(port, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "ivlab-agent: %s: %s\n", port, strerror(errno));
		return 1;
	}
	return serve(fd, fd, true);
}
