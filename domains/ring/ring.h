/* SPDX-License-Identifier: GPL-2.0 */
/*
 * ring.h: the doorbell-driven ring that ring-producer and ring-consumer
 * share through one ivshmem-doorbell region, driven by the ivring example
 * driver (driver/ivring.h), and their common helpers (ring.c).
 *
 * The consumer sets the ring up and publishes its IVPosition; the producer
 * says hello with its own and a nonce, and the consumer welcomes it. Then the
 * producer writes messages into slots and rings the consumer; the consumer
 * checks each one, moves tail on and rings the producer back, so the
 * producer never overwrites a slot not read yet. After the last message the
 * producer sets closed; the consumer answers with its verdict in result.
 *
 * Each index has one writer. A writer publishes with a release store after
 * the data it covers; a reader loads it with acquire before reading that
 * data: x86 orders this anyway, aarch64 is weakly ordered and needs both.
 */
#ifndef RING_H
#define RING_H

#include <stdint.h>

#define RING_MAGIC	0x52494e47u	/* "RING": the consumer set the ring up */
#define RING_SLOTS	64u
#define RING_PAYLOAD	52u

/* The consumer's verdict. */
#define RING_PENDING	0u
#define RING_PASSED	1u
#define RING_FAILED	2u

struct ring_msg {
	uint32_t seq;			/* 0, 1, 2, ... */
	uint32_t len;			/* bytes of data used */
	uint32_t sum;			/* ring_sum() of seq, len and data */
	uint8_t data[RING_PAYLOAD];
};

struct ring_header {
	uint32_t magic;			/* consumer: RING_MAGIC when set up */
	uint32_t consumer;		/* consumer: its IVPosition */
	uint32_t producer;		/* producer: its IVPosition */
	uint32_t hello;			/* producer: its nonce (never 0) */
	uint32_t welcome;		/* consumer: the nonce it accepted */
	uint32_t head;			/* producer: messages written */
	uint32_t tail;			/* consumer: messages read */
	uint32_t closed;		/* producer: 1 after the last message */
	uint32_t result;		/* consumer: RING_PASSED or RING_FAILED */
	uint32_t pad[7];
	struct ring_msg slot[RING_SLOTS];
};

#define load_acquire(p)		__atomic_load_n((p), __ATOMIC_ACQUIRE)
#define store_release(p, v)	__atomic_store_n((p), (v), __ATOMIC_RELEASE)

/* What both programs are told: /etc/ring.conf, then the command line. */
struct ring_conf {
	char device[64];		/* device=/dev/ivring0 */
	unsigned int count;		/* count=N messages */
	unsigned int timeout;		/* timeout=S seconds for the whole run */
};

struct ring {
	int fd;
	struct ring_header *hdr;
	uint32_t position;		/* own IVPosition */
	int64_t deadline_ms;		/* CLOCK_MONOTONIC */
};

extern const char *ring_prog;

void ring_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void ring_parse(struct ring_conf *conf, int argc, char **argv, const char *usage,
		unsigned int *extra, char extra_opt);
void ring_open(struct ring *ring, const struct ring_conf *conf);
void ring_bell(struct ring *ring, uint32_t peer);
int ring_wait(struct ring *ring, int slice_ms);
int64_t ring_now_ms(void);
void ring_fill(struct ring_msg *msg, uint32_t seq);
uint32_t ring_sum(const struct ring_msg *msg);

#endif /* RING_H */
