/* ivlab-agent.h: the agent protocol's facts (src/guest/PROTOCOL.md) in one
 * place: port name, version, verbs, limits and the seeded test pattern.
 * Included by the guest agent and by the host (agentlink.c); libc only. */
#ifndef IVLAB_AGENT_PROTOCOL_H
#define IVLAB_AGENT_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* The virtio-serial port (libvirt channel target) the agent serves. */
#define IVLAB_AGENT_PORT		"org.ivlab.agent.0"
/* Sent in `ready proto=N` and `ok proto=N ...`; both ends must agree. */
#define IVLAB_AGENT_PROTO		1

/* A request line, counting its '\n'. */
#define IVLAB_AGENT_LINE_MAX		4096
/* A response line. */
#define IVLAB_AGENT_RESPONSE_MAX	(1 << 20)
/* Bytes one `read` returns. */
#define IVLAB_AGENT_READ_MAX		4096
/* The kernel log tail `dmesg` returns. */
#define IVLAB_AGENT_DMESG_TAIL		(16 * 1024)
/* The output `exec` keeps. */
#define IVLAB_AGENT_EXEC_OUTPUT_MAX	(64 * 1024)

/* Processes started by `spawn` that have not been reported gone by `poll`. */
#define IVLAB_AGENT_PROCS_MAX		32
/* Output of a process's stdout or stderr the agent holds between polls; a
 * child that writes more waits (its pipe is not read) until the host polls. */
#define IVLAB_AGENT_STREAM_MAX		(1 << 20)
/* Bytes of each stream one `poll` returns (encoded, both fit a response). */
#define IVLAB_AGENT_POLL_CHUNK		(128 * 1024)
/* How long one `poll` may wait, and one spawned process may run (ms). */
#define IVLAB_AGENT_POLL_WAIT_MAX_MS	60000
#define IVLAB_AGENT_SPAWN_TIMEOUT_MAX_MS	(7 * 24 * 3600 * 1000U)
/* Bytes one `get` returns (base64, within a response). */
#define IVLAB_AGENT_GET_MAX		(512 * 1024)

/* The line the agent writes once when it opens the port (no answer to anything). */
#define IVLAB_AGENT_READY		"ready"

/* The verbs. */
#define IVLAB_AGENT_ATOMIC_ADD		"atomic_add"
#define IVLAB_AGENT_BENCH_COPY		"bench_copy"
#define IVLAB_AGENT_CHECKSUM		"checksum"
#define IVLAB_AGENT_COPYTEST		"copytest"
#define IVLAB_AGENT_DMESG		"dmesg"
#define IVLAB_AGENT_DRVFUZZ		"drvfuzz"
#define IVLAB_AGENT_DRVTEST		"drvtest"
#define IVLAB_AGENT_EXEC		"exec"
#define IVLAB_AGENT_FILL		"fill"
#define IVLAB_AGENT_GET			"get"
#define IVLAB_AGENT_HELLO		"hello"
#define IVLAB_AGENT_IRQCOUNT		"irqcount"
#define IVLAB_AGENT_KILL		"kill"
#define IVLAB_AGENT_PINGPONG		"pingpong"
#define IVLAB_AGENT_POLL		"poll"
#define IVLAB_AGENT_PUT			"put"
#define IVLAB_AGENT_READ		"read"
#define IVLAB_AGENT_REGION		"region"
#define IVLAB_AGENT_RENAME		"rename"
#define IVLAB_AGENT_RING		"ring"
#define IVLAB_AGENT_SHA256		"sha256"
#define IVLAB_AGENT_SPAWN		"spawn"
#define IVLAB_AGENT_UNLINK		"unlink"
#define IVLAB_AGENT_VERIFY		"verify"
#define IVLAB_AGENT_WAIT		"wait"
#define IVLAB_AGENT_WRITE		"write"

/* --- the seeded pattern ---------------------------------------------------
 * The byte at absolute region offset X for seed S is byte X % 8 (little
 * endian) of splitmix64(S ^ (X / 8)), so any party can write or verify any
 * sub-range on its own. */

static inline uint64_t ivlab_splitmix64(uint64_t z)
{
	z += 0x9e3779b97f4a7c15ULL;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static inline uint8_t ivlab_pattern_byte(uint64_t seed, uint64_t offset)
{
	return (uint8_t)(ivlab_splitmix64(seed ^ (offset / 8)) >> (8 * (offset % 8)));
}

/* The 8 pattern bytes of word index (offset / 8), as memory holds them. */
static inline uint64_t ivlab_pattern_word(uint64_t seed, uint64_t index)
{
	uint64_t word = ivlab_splitmix64(seed ^ index);

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
	word = __builtin_bswap64(word);
#endif
	return word;
}

/* Writes the pattern of absolute offsets [offset, offset + len) to dst:
 * bytes up to the first aligned word, whole words, then the tail. */
static inline void ivlab_pattern_fill(uint8_t *dst, uint64_t offset, uint64_t len,
				      uint64_t seed)
{
	uint64_t x = offset, end = offset + len;

	for (; x < end && (x % 8 || end - x < 8); x++)
		*dst++ = ivlab_pattern_byte(seed, x);
	for (; end - x >= 8; x += 8, dst += 8) {
		uint64_t word = ivlab_pattern_word(seed, x / 8);

		memcpy(dst, &word, 8);
	}
	for (; x < end; x++)
		*dst++ = ivlab_pattern_byte(seed, x);
}

/* The index in src of the first byte that differs from the pattern of
 * [offset, offset + len), or len when all match. */
static inline uint64_t ivlab_pattern_check(const uint8_t *src, uint64_t offset, uint64_t len,
					   uint64_t seed)
{
	uint64_t i = 0;

	for (; i < len && ((offset + i) % 8 || len - i < 8); i++)
		if (src[i] != ivlab_pattern_byte(seed, offset + i))
			return i;
	for (; len - i >= 8; i += 8) {
		uint64_t actual;

		memcpy(&actual, src + i, 8);
		if (actual != ivlab_pattern_word(seed, (offset + i) / 8))
			break;
	}
	for (; i < len; i++)
		if (src[i] != ivlab_pattern_byte(seed, offset + i))
			return i;
	return len;
}

#endif /* IVLAB_AGENT_PROTOCOL_H */
