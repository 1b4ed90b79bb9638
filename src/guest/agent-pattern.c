/* agent-pattern.c: PROTOCOL.md's seeded pattern (splitmix64 words) and
 * zlib's CRC-32. */
#include <string.h>

#include "agent.h"

uint64_t splitmix64(uint64_t z)
{
	z += 0x9e3779b97f4a7c15ULL;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

uint8_t pattern_byte(uint64_t seed, uint64_t offset)
{
	return (uint8_t)(splitmix64(seed ^ (offset / 8)) >> (8 * (offset % 8)));
}

/* Writes the pattern of absolute offsets [offset, offset+len) to dst. */
void pattern_fill(uint8_t *dst, uint64_t offset, uint64_t len, uint64_t seed)
{
	uint64_t x = offset, end = offset + len;

	while (x < end && (x % 8 || end - x < 8)) {
		*dst++ = pattern_byte(seed, x);
		x++;
	}
	for (; end - x >= 8; x += 8, dst += 8) {
		uint64_t word = splitmix64(seed ^ (x / 8));

		memcpy(dst, &word, 8);
	}
	for (; x < end; x++)
		*dst++ = pattern_byte(seed, x);
}

/* Index of the first byte differing from the pattern, or len. */
uint64_t pattern_check(const uint8_t *src, uint64_t offset, uint64_t len, uint64_t seed)
{
	uint64_t i = 0;

	while (i < len && ((offset + i) % 8 || len - i < 8)) {
		if (src[i] != pattern_byte(seed, offset + i))
			return i;
		i++;
	}
	for (; len - i >= 8; i += 8) {
		uint64_t word = splitmix64(seed ^ ((offset + i) / 8)), actual;

		memcpy(&actual, src + i, 8);
		if (actual != word)
			break;
	}
	for (; i < len; i++)
		if (src[i] != pattern_byte(seed, offset + i))
			return i;
	return len;
}

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
