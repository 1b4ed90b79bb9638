/* agent-file.c: files for `ivlab cp`: chunks in and out (put, get, base64),
 * a file's SHA-256 (FIPS 180-4), rename and unlink. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "agent.h"

/* --- base64 (RFC 4648, with padding) --------------------------------------- */

static const char b64_chars[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* value + 1 of each base64 character, 0 for the others */
static uint8_t b64_values[256];

static int b64_value(char c)
{
	if (!b64_values['A'])
		for (int i = 0; i < 64; i++)
			b64_values[(uint8_t)b64_chars[i]] = (uint8_t)(i + 1);
	return b64_values[(uint8_t)c] - 1;
}

/* Decodes in into out (room for strlen(in) / 4 * 3); -1 when malformed. */
long base64_decode(const char *in, uint8_t *out)
{
	size_t len = strlen(in);
	long n = 0;

	if (len % 4)
		return -1;
	for (size_t i = 0; i < len; i += 4) {
		int v[4];
		int pad = 0;

		for (int k = 0; k < 4; k++) {
			if (in[i + k] == '=' && i + 4 == len && k >= 2) {
				v[k] = 0;
				pad++;
				continue;
			}
			v[k] = b64_value(in[i + k]);
			if (pad || v[k] < 0)
				return -1;
		}
		out[n++] = (uint8_t)(v[0] << 2 | v[1] >> 4);
		if (pad < 2)
			out[n++] = (uint8_t)(v[1] << 4 | v[2] >> 2);
		if (pad < 1)
			out[n++] = (uint8_t)(v[2] << 6 | v[3]);
	}
	return n;
}

void reply_add_base64(struct reply *reply, const uint8_t *data, size_t len)
{
	char *dst;

	reply_reserve(reply, (len + 2) / 3 * 4 + 1);
	if (reply->failed)
		return;
	dst = reply->buf + reply->len;
	for (size_t i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)data[i] << 16;

		if (i + 1 < len)
			v |= (uint32_t)data[i + 1] << 8;
		if (i + 2 < len)
			v |= data[i + 2];
		*dst++ = b64_chars[v >> 18 & 63];
		*dst++ = b64_chars[v >> 12 & 63];
		*dst++ = i + 1 < len ? b64_chars[v >> 6 & 63] : '=';
		*dst++ = i + 2 < len ? b64_chars[v & 63] : '=';
	}
	*dst = '\0';
	reply->len = (size_t)(dst - reply->buf);
}

/* --- SHA-256 ---------------------------------------------------------------- */

static const uint32_t sha256_k[64] = {
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
	0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
	0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
	0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
	0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
	0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
	0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
	0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
	0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
	0xc67178f2,
};

static inline uint32_t ror32(uint32_t x, int n)
{
	return x >> n | x << (32 - n);
}

static void sha256_block(uint32_t state[8], const uint8_t *block)
{
	uint32_t w[64], s[8];

	for (int i = 0; i < 16; i++)
		w[i] = (uint32_t)block[4 * i] << 24 | (uint32_t)block[4 * i + 1] << 16 |
		       (uint32_t)block[4 * i + 2] << 8 | block[4 * i + 3];
	for (int i = 16; i < 64; i++) {
		uint32_t s0 = ror32(w[i - 15], 7) ^ ror32(w[i - 15], 18) ^ w[i - 15] >> 3;
		uint32_t s1 = ror32(w[i - 2], 17) ^ ror32(w[i - 2], 19) ^ w[i - 2] >> 10;

		w[i] = w[i - 16] + s0 + w[i - 7] + s1;
	}
	memcpy(s, state, sizeof(s));
	for (int i = 0; i < 64; i++) {
		uint32_t t1 = s[7] + (ror32(s[4], 6) ^ ror32(s[4], 11) ^ ror32(s[4], 25)) +
			      ((s[4] & s[5]) ^ (~s[4] & s[6])) + sha256_k[i] + w[i];
		uint32_t t2 = (ror32(s[0], 2) ^ ror32(s[0], 13) ^ ror32(s[0], 22)) +
			      ((s[0] & s[1]) ^ (s[0] & s[2]) ^ (s[1] & s[2]));

		memmove(s + 1, s, 7 * sizeof(s[0]));
		s[4] += t1;
		s[0] = t1 + t2;
	}
	for (int i = 0; i < 8; i++)
		state[i] += s[i];
}

/* The SHA-256 of fd's contents as 64 hex digits; false on a read error. */
bool sha256_fd(int fd, char hex[65], uint64_t *size)
{
	static uint8_t buf[64 * 1024];
	uint32_t state[8] = { 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
			      0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19 };
	uint8_t tail[128];
	uint64_t total = 0;
	size_t have = 0, pad;

	for (;;) {
		ssize_t n = read(fd, buf + have, sizeof(buf) - have);
		size_t whole;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return false;
		total += (uint64_t)n;
		have += (size_t)n;
		whole = have / 64 * 64;
		for (size_t off = 0; off < whole; off += 64)
			sha256_block(state, buf + off);
		memmove(buf, buf + whole, have - whole);
		have -= whole;
		if (!n)
			break;
	}
	memcpy(tail, buf, have);
	tail[have] = 0x80;
	pad = have < 56 ? 64 : 128;
	memset(tail + have + 1, 0, pad - have - 1);
	for (int i = 0; i < 8; i++)
		tail[pad - 1 - i] = (uint8_t)((total * 8) >> (8 * i));
	for (size_t off = 0; off < pad; off += 64)
		sha256_block(state, tail + off);
	for (int i = 0; i < 8; i++)
		snprintf(hex + 8 * i, 9, "%08x", state[i]);
	*size = total;
	return true;
}

/* --- the verbs ---------------------------------------------------------------- */

static bool arg_path(struct request *req, const char *key, char *path, size_t size,
		     struct reply *reply)
{
	const char *encoded = arg_get(req, key);

	if (!encoded)
		return fail(reply, "usage", "%s: missing argument %s=", req->verb, key);
	if (!percent_decode(encoded, path, size) || !path[0])
		return fail(reply, "usage", "%s: %s= is not a valid percent-encoded path", req->verb,
			    key);
	return true;
}

/* The file the last `put` wrote, kept open for the next chunk (a copy is
 * thousands of puts in a row); any other verb closes it. */
static int put_fd = -1;
static char put_path[IVLAB_AGENT_LINE_MAX];

void files_close(void)
{
	if (put_fd >= 0)
		close(put_fd);
	put_fd = -1;
}

/* put path=P offset=N data=BASE64 [mode=OCTAL]: offset 0 creates or
 * truncates P (with mode, default 0644), later chunks write into it. */
bool cmd_put(struct request *req, struct reply *reply)
{
	char path[IVLAB_AGENT_LINE_MAX];
	uint8_t data[IVLAB_AGENT_LINE_MAX];
	const char *encoded, *mode_text;
	uint64_t offset;
	unsigned long mode = 0644;
	long len;
	int fd;

	if (!arg_path(req, "path", path, sizeof(path), reply) ||
	    !arg_u64(req, "offset", UINT64_MAX / 2, &offset, reply))
		return false;
	encoded = arg_get(req, "data");
	mode_text = arg_get(req, "mode");
	if (!encoded)
		return fail(reply, "usage", "put: missing argument data=");
	if (!args_all_used(req, reply))
		return false;
	if (mode_text) {
		char *end;

		mode = strtoul(mode_text, &end, 8);
		if (*end || !*mode_text || mode > 07777)
			return fail(reply, "usage", "put: mode=%.20s is not an octal mode", mode_text);
	}
	len = base64_decode(encoded, data);
	if (len < 0)
		return fail(reply, "usage", "put: data= is not base64");
	if (!offset || strcmp(path, put_path))
		files_close();
	if (put_fd < 0) {
		put_fd = open(path, O_WRONLY | O_CLOEXEC | (offset ? 0 : O_CREAT | O_TRUNC),
			      (mode_t)mode);
		if (put_fd < 0)
			return fail(reply, "io", "put: %s: %s", path, strerror(errno));
		snprintf(put_path, sizeof(put_path), "%s", path);
		if (!offset && mode_text)
			fchmod(put_fd, (mode_t)mode);
	}
	fd = put_fd;
	for (long done = 0; done < len;) {
		ssize_t n = pwrite(fd, data + done, (size_t)(len - done), (off_t)offset + done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			fail(reply, "io", "put: %s: %s", path, n < 0 ? strerror(errno) : "short write");
			files_close();
			return false;
		}
		done += n;
	}
	reply_add(reply, "ok");
	return true;
}

/* get path=P offset=N length=L -> ok size=FILE-SIZE data=BASE64 (short at the end) */
bool cmd_get(struct request *req, struct reply *reply)
{
	static uint8_t data[IVLAB_AGENT_GET_MAX];
	char path[IVLAB_AGENT_LINE_MAX];
	uint64_t offset, length;
	size_t done = 0;
	struct stat st;
	int fd;

	if (!arg_path(req, "path", path, sizeof(path), reply) ||
	    !arg_u64(req, "offset", UINT64_MAX / 2, &offset, reply) ||
	    !arg_u64(req, "length", IVLAB_AGENT_GET_MAX, &length, reply) ||
	    !args_all_used(req, reply))
		return false;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fail(reply, "io", "get: %s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return fail(reply, "io", "get: %s: not a regular file", path);
	}
	while (done < length) {
		ssize_t n = pread(fd, data + done, length - done, (off_t)(offset + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			close(fd);
			return fail(reply, "io", "get: %s: %s", path, strerror(errno));
		}
		if (!n)
			break;
		done += (size_t)n;
	}
	close(fd);
	reply_add(reply, "ok size=%" PRIu64 " data=", (uint64_t)st.st_size);
	reply_add_base64(reply, data, done);
	return true;
}

bool cmd_sha256(struct request *req, struct reply *reply)
{
	char path[IVLAB_AGENT_LINE_MAX], hex[65];
	uint64_t size;
	struct stat st;
	int fd;

	if (!arg_path(req, "path", path, sizeof(path), reply) || !args_all_used(req, reply))
		return false;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fail(reply, "io", "sha256: %s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return fail(reply, "io", "sha256: %s: not a regular file", path);
	}
	if (!sha256_fd(fd, hex, &size)) {
		fail(reply, "io", "sha256: %s: %s", path, strerror(errno));
		close(fd);
		return false;
	}
	close(fd);
	reply_add(reply, "ok sha256=%s size=%" PRIu64 " mode=%o", hex, size,
		  (unsigned int)(st.st_mode & 07777));
	return true;
}

bool cmd_rename(struct request *req, struct reply *reply)
{
	char from[IVLAB_AGENT_LINE_MAX], to[IVLAB_AGENT_LINE_MAX];

	if (!arg_path(req, "from", from, sizeof(from), reply) ||
	    !arg_path(req, "to", to, sizeof(to), reply) || !args_all_used(req, reply))
		return false;
	if (rename(from, to) < 0)
		return fail(reply, "io", "rename: %s to %s: %s", from, to, strerror(errno));
	reply_add(reply, "ok");
	return true;
}

bool cmd_unlink(struct request *req, struct reply *reply)
{
	char path[IVLAB_AGENT_LINE_MAX];

	if (!arg_path(req, "path", path, sizeof(path), reply) || !args_all_used(req, reply))
		return false;
	if (unlink(path) < 0)
		return fail(reply, "io", "unlink: %s: %s", path, strerror(errno));
	reply_add(reply, "ok");
	return true;
}
