/* agent-crc32.c: zlib's CRC-32, for the `checksum` verb and the self test.
 * (The seeded pattern lives in include/ivlab-agent.h, shared with the host.) */
#include "agent.h"

/* zlib's CRC-32 (reflected 0xedb88320). */
uint32_t crc32_update(uint32_t crc, const uint8_t *data, uint64_t len)
{
	static uint32_t table[256];

	if (!table[1]) {
		for (uint32_t n = 0; n < 256; n++) {
			uint32_t c = n;

			for (int k = 0; k < 8; k++)
				c = c & 1 ? 0xedb88320U ^ (c >> 1) : c >> 1;
			table[n] = c;
		}
	}
	crc = ~crc;
	for (uint64_t i = 0; i < len; i++)
		crc = table[(crc ^ data[i]) & 0xff] ^ (crc >> 8);
	return ~crc;
}
