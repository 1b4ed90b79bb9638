/* agent-proto.c: the agent's request lines (parsing, arguments) and response
 * lines (growing buffer, errors, percent-encoding). */
#define _GNU_SOURCE
#include <ctype.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"

void reply_reserve(struct reply *reply, size_t more)
{
	size_t cap = reply->cap ? reply->cap : 256;
	char *buf;

	if (reply->len + more + 1 <= reply->cap)
		return;
	while (cap < reply->len + more + 1)
		cap *= 2;
	buf = realloc(reply->buf, cap);
	if (!buf) {
		reply->failed = true;
		return;
	}
	reply->buf = buf;
	reply->cap = cap;
}

void reply_add(struct reply *reply, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	reply_reserve(reply, (size_t)n);
	if (reply->failed)
		return;
	va_start(ap, fmt);
	vsnprintf(reply->buf + reply->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	reply->len += (size_t)n;
}

void reply_clear(struct reply *reply)
{
	reply->len = 0;
	reply->failed = false;
	if (reply->buf)
		reply->buf[0] = '\0';
}

/* Percent-encode bytes that could break a value: space, %, controls, non-ASCII. */
void reply_add_encoded(struct reply *reply, const uint8_t *data, size_t len)
{
	static const char hex[] = "0123456789ABCDEF";

	reply_reserve(reply, len * 3);
	if (reply->failed)
		return;
	for (size_t i = 0; i < len; i++) {
		uint8_t c = data[i];

		if (c > 0x20 && c < 0x7f && c != '%') {
			reply->buf[reply->len++] = (char)c;
		} else {
			reply->buf[reply->len++] = '%';
			reply->buf[reply->len++] = hex[c >> 4];
			reply->buf[reply->len++] = hex[c & 15];
		}
	}
	reply->buf[reply->len] = '\0';
}

bool fail(struct reply *reply, const char *code, const char *fmt, ...)
{
	char message[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(message, sizeof(message), fmt, ap);
	va_end(ap);
	reply_clear(reply);
	reply_add(reply, "err %s ", code);
	/* the message is free text, but keep it one printable line */
	for (char *p = message; *p; p++)
		if (!isprint((unsigned char)*p))
			*p = '?';
	reply_add(reply, "%s", message);
	return false;
}

bool valid_name(const char *s)
{
	if (!*s || strlen(s) >= 64)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '-' && *s != '_' && *s != '.')
			return false;
	return true;
}

/* Splits a request line in place. Only printable ASCII, single spaces. */
bool parse_request(char *line, struct request *req, struct reply *reply)
{
	char *p = line;

	memset(req, 0, sizeof(*req));
	if (!*line)
		return fail(reply, "proto", "empty request");
	for (const char *c = line; *c; c++)
		if (*c < 0x20 || *c > 0x7e)
			return fail(reply, "proto", "request has a non-printable byte 0x%02x",
				    (unsigned char)*c);
	if (*line == ' ')
		return fail(reply, "proto", "request starts with a space");

	req->verb = p;
	while (*p && *p != ' ')
		p++;
	while (*p) {
		char *key, *eq;

		*p++ = '\0';
		if (!*p || *p == ' ')
			return fail(reply, "proto", "arguments are separated by single spaces");
		key = p;
		while (*p && *p != ' ')
			p++;
		if (req->nargs == MAX_ARGS)
			return fail(reply, "usage", "more than %d arguments", MAX_ARGS);
		eq = strchr(key, '=');
		if (!eq || eq == key || (*p && eq > p))
			return fail(reply, "usage", "argument is not key=value");
		*eq = '\0';
		for (int i = 0; i < req->nargs; i++)
			if (!strcmp(req->args[i].key, key))
				return fail(reply, "usage", "argument %s given twice", key);
		req->args[req->nargs].key = key;
		req->args[req->nargs].value = eq + 1;
		req->nargs++;
	}
	return true;
}

const char *arg_get(struct request *req, const char *key)
{
	for (int i = 0; i < req->nargs; i++) {
		if (!strcmp(req->args[i].key, key)) {
			req->args[i].used = true;
			return req->args[i].value;
		}
	}
	return NULL;
}

/* Strict decimal: digits only, no sign, no overflow. */
static bool parse_u64(const char *s, uint64_t *out)
{
	uint64_t v = 0;

	if (!*s)
		return false;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return false;
		if (v > (UINT64_MAX - (uint64_t)(*s - '0')) / 10)
			return false;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	*out = v;
	return true;
}

bool arg_u64(struct request *req, const char *key, uint64_t max, uint64_t *out,
		    struct reply *reply)
{
	const char *value = arg_get(req, key);

	if (!value)
		return fail(reply, "usage", "%s: missing argument %s=", req->verb, key);
	if (!parse_u64(value, out))
		return fail(reply, "usage", "%s: %s=%.40s is not a decimal number", req->verb,
			    key, value);
	if (*out > max)
		return fail(reply, "range", "%s: %s=%" PRIu64 " is above %" PRIu64, req->verb,
			    key, *out, max);
	return true;
}

bool arg_u64_opt(struct request *req, const char *key, uint64_t max, uint64_t *out,
			bool *given, struct reply *reply)
{
	*given = false;
	for (int i = 0; i < req->nargs; i++)
		if (!strcmp(req->args[i].key, key))
			*given = true;
	return !*given || arg_u64(req, key, max, out, reply);
}

/* After a handler has fetched its arguments: anything left is a mistake. */
bool args_all_used(struct request *req, struct reply *reply)
{
	for (int i = 0; i < req->nargs; i++)
		if (!req->args[i].used)
			return fail(reply, "usage", "%s: unknown argument %.40s=", req->verb,
				    req->args[i].key);
	return true;
}

int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

bool percent_decode(const char *in, char *out, size_t cap)
{
	size_t n = 0;

	for (; *in; in++) {
		int c = (unsigned char)*in;

		if (c == '%') {
			int hi = hex_digit(in[1]), lo = hi < 0 ? -1 : hex_digit(in[2]);

			if (hi < 0 || lo < 0)
				return false;
			c = hi << 4 | lo;
			in += 2;
		}
		if (n + 1 >= cap || c == 0)
			return false;
		out[n++] = (char)c;
	}
	out[n] = '\0';
	return true;
}
