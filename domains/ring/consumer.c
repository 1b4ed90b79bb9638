// SPDX-License-Identifier: GPL-2.0
/*
 * consumer.c: ring-consumer, the reading side of the example ring (ring.h).
 * It sets the ring up, publishes its IVPosition, welcomes the producer,
 * then checks each message as it arrives (sequence number, length,
 * checksum, contents), moving tail on and ringing the producer back. Exit 0
 * only when exactly COUNT messages arrived intact before the producer
 * closed the ring; 1 with a message otherwise (timeout included). Either
 * way the producer learns the verdict.
 */
#include <stdio.h>
#include <string.h>

#include "ring.h"

#define USAGE	"usage: ring-consumer [-c CONF] [-d DEVICE] [-n COUNT] [-t SECONDS]"

static struct ring ring;
static struct ring_header *hdr;
static uint32_t producer;
static int welcomed;

/* Tell a welcomed producer how many messages were intact and that we failed,
 * leave the ring unset, exit 1 with the reason. */
static void fail(const char *why, uint32_t seq)
{
	fprintf(stderr, "ring-consumer: message %u: %s\n", seq, why);
	store_release(&hdr->tail, seq);
	store_release(&hdr->result, RING_FAILED);
	store_release(&hdr->magic, 0);
	if (welcomed)
		ring_bell(&ring, producer);
	ring_die("failed after %u intact messages", seq);
}

static void set_up(void)
{
	store_release(&hdr->magic, 0);
	hdr->hello = 0;
	hdr->welcome = 0;
	hdr->head = 0;
	hdr->tail = 0;
	hdr->closed = 0;
	hdr->result = RING_PENDING;
	hdr->consumer = ring.position;
	store_release(&hdr->magic, RING_MAGIC);
}

static void handshake(unsigned int timeout)
{
	uint32_t hello;

	while (!(hello = load_acquire(&hdr->hello))) {
		if (ring_wait(&ring, 0) < 0) {
			store_release(&hdr->magic, 0);
			ring_die("timed out after %u s: no producer said hello", timeout);
		}
	}
	producer = hdr->producer;
	store_release(&hdr->welcome, hello);
	welcomed = 1;
	ring_bell(&ring, producer);
}

static void check(const struct ring_msg *msg, uint32_t seq)
{
	struct ring_msg want;
	char why[128];

	ring_fill(&want, seq);
	if (msg->seq != seq) {
		snprintf(why, sizeof(why), "sequence number %u out of order", msg->seq);
		fail(why, seq);
	}
	if (msg->len != want.len) {
		snprintf(why, sizeof(why), "length %u, expected %u", msg->len, want.len);
		fail(why, seq);
	}
	if (ring_sum(msg) != msg->sum) {
		snprintf(why, sizeof(why), "checksum %#x does not match its contents (%#x)",
			 msg->sum, ring_sum(msg));
		fail(why, seq);
	}
	if (msg->sum != want.sum || memcmp(msg->data, want.data, want.len))
		fail("contents differ from what the producer should have sent", seq);
}

int main(int argc, char **argv)
{
	struct ring_conf conf;
	uint32_t tail = 0, head, closed;
	int64_t start;

	ring_prog = "ring-consumer";
	ring_parse(&conf, argc, argv, USAGE, NULL, 0);
	ring_open(&ring, &conf);
	hdr = ring.hdr;
	start = ring_now_ms();

	set_up();
	printf("ring-consumer: ring set up at IVPosition %u, waiting for %u messages\n",
	       ring.position, conf.count);
	fflush(stdout);
	handshake(conf.timeout);

	for (;;) {
		/* closed first: once it is set, head is final */
		closed = load_acquire(&hdr->closed);
		head = load_acquire(&hdr->head);
		if (head - tail > RING_SLOTS)
			fail("the producer overran the ring", tail);
		if (head != tail) {
			for (; tail != head; tail++) {
				struct ring_msg msg;

				if (tail >= conf.count)
					fail("more messages than expected", tail);
				memcpy(&msg, &hdr->slot[tail % RING_SLOTS], sizeof(msg));
				check(&msg, tail);
			}
			/* our reads of the slots before the producer may reuse them */
			store_release(&hdr->tail, tail);
			ring_bell(&ring, producer);
		}
		if (closed)
			break;
		if (ring_wait(&ring, 0) < 0) {
			char why[96];

			snprintf(why, sizeof(why), "timed out after %u s waiting for it (%u of %u arrived)",
				 conf.timeout, tail, conf.count);
			fail(why, tail);
		}
	}
	if (tail != conf.count) {
		char why[96];

		snprintf(why, sizeof(why), "the producer closed the ring after %u messages, expected %u",
			 tail, conf.count);
		fail(why, tail);
	}
	store_release(&hdr->result, RING_PASSED);
	store_release(&hdr->magic, 0);
	ring_bell(&ring, producer);
	printf("ring-consumer: %u messages from IVPosition %u arrived intact (%.2f s)\n",
	       tail, producer, (double)(ring_now_ms() - start) / 1000);
	return 0;
}
