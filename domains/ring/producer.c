// SPDX-License-Identifier: GPL-2.0
/*
 * producer.c: ring-producer, the writing side of the example ring (ring.h).
 * It waits for a consumer to set the ring up, says hello, writes COUNT
 * messages (ringing the consumer after each, waiting for it when the ring
 * is full), closes the ring and waits for the consumer's verdict. Exit 0
 * only when the consumer read every message intact; 1 with a message
 * otherwise (timeout included).
 */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ring.h"

#define USAGE	"usage: ring-producer [-c CONF] [-d DEVICE] [-n COUNT] [-t SECONDS] [-x SEQ]\n" \
		"  -x SEQ  damage message SEQ after its checksum (to see the consumer catch it)"

/* How long to wait for a welcome before saying hello again. */
#define HELLO_RETRY_MS	500

static struct ring ring;
static struct ring_header *hdr;

/* Nothing rings us before the consumer knows our id: poll for it. */
static void wait_for_consumer(void)
{
	const struct timespec tick = { .tv_nsec = 10 * 1000 * 1000 };

	while (load_acquire(&hdr->magic) != RING_MAGIC) {
		if (ring_now_ms() >= ring.deadline_ms)
			ring_die("timed out: no consumer set the ring up");
		nanosleep(&tick, NULL);
	}
}

/*
 * Hello until welcomed: the consumer may (re)set the ring up after we wrote
 * to a ring left over by an earlier run, so say it again until it answers.
 */
static uint32_t handshake(void)
{
	uint32_t nonce = ((uint32_t)getpid() << 16 ^ (uint32_t)ring_now_ms()) | 1;
	uint32_t consumer;

	for (;;) {
		wait_for_consumer();
		consumer = load_acquire(&hdr->consumer);
		hdr->producer = ring.position;
		store_release(&hdr->hello, nonce);
		ring_bell(&ring, consumer);
		if (ring_wait(&ring, HELLO_RETRY_MS) < 0)
			ring_die("timed out: the consumer (IVPosition %u) did not answer", consumer);
		if (load_acquire(&hdr->welcome) == nonce)
			return consumer;
	}
}

static void check_verdict(uint32_t count)
{
	uint32_t result = load_acquire(&hdr->result);

	if (result == RING_FAILED)
		ring_die("the consumer reported a failure after reading %u of %u messages (see its output)",
			 load_acquire(&hdr->tail), count);
	if (result != RING_PENDING && result != RING_PASSED)
		ring_die("the consumer's result is garbage: %u", result);
}

int main(int argc, char **argv)
{
	struct ring_conf conf;
	unsigned int damage = (unsigned int)-1;
	uint32_t consumer, seq;
	int64_t start;

	ring_prog = "ring-producer";
	ring_parse(&conf, argc, argv, USAGE, &damage, 'x');
	ring_open(&ring, &conf);
	hdr = ring.hdr;
	start = ring_now_ms();

	consumer = handshake();
	for (seq = 0; seq < conf.count; seq++) {
		struct ring_msg msg;

		/* A full ring: wait for the consumer to read one. */
		while (seq - load_acquire(&hdr->tail) >= RING_SLOTS) {
			check_verdict(conf.count);
			if (ring_wait(&ring, 0) < 0)
				ring_die("timed out after %u s: the consumer read %u of %u messages",
					 conf.timeout, load_acquire(&hdr->tail), conf.count);
		}
		ring_fill(&msg, seq);
		if (seq == damage)
			msg.data[msg.len - 1] ^= 0x40;
		memcpy(&hdr->slot[seq % RING_SLOTS], &msg, sizeof(msg));
		store_release(&hdr->head, seq + 1);
		ring_bell(&ring, consumer);
	}
	store_release(&hdr->closed, 1);
	ring_bell(&ring, consumer);

	while (load_acquire(&hdr->result) == RING_PENDING) {
		if (ring_wait(&ring, 0) < 0)
			ring_die("timed out after %u s: no verdict from the consumer (it read %u of %u)",
				 conf.timeout, load_acquire(&hdr->tail), conf.count);
	}
	check_verdict(conf.count);
	printf("ring-producer: %u messages sent to IVPosition %u and read intact (%.2f s)\n",
	       conf.count, consumer, (double)(ring_now_ms() - start) / 1000);
	return 0;
}
