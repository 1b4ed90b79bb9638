/* fuzz-size.c: libFuzzer target: sizes and names as users type them
 * (ivlab_parse_size, ivlab_format_size, ivlab_name_is_safe), checked
 * against a plain reading of their documented grammar: decimal digits and
 * one of B, K, k, KiB, M, MiB, G, GiB, T, TiB, without overflow; what is
 * formatted parses back to the same number. */
#include "config.h"

#include <errno.h>

#include "ivlab.h"
#include "fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	return 0;
}

/* The grammar of ivlab(1), independently of util.c. */
static gboolean reference_size(const char *text, guint64 *bytes)
{
	static const char *const suffixes[] = { "", "B", "K", "KiB", "k", "M", "MiB",
						"G", "GiB", "T", "TiB" };
	static const guint shifts[] = { 0, 0, 10, 10, 10, 20, 20, 30, 30, 40, 40 };
	const char *c = text;
	guint64 value = 0;

	if (!g_ascii_isdigit(*c))
		return FALSE;
	for (; g_ascii_isdigit(*c); c++) {
		guint digit = *c - '0';

		if (value > (G_MAXUINT64 - digit) / 10)
			return FALSE;
		value = value * 10 + digit;
	}
	for (gsize i = 0; i < G_N_ELEMENTS(suffixes); i++) {
		if (strcmp(c, suffixes[i]) != 0)
			continue;
		if (value > G_MAXUINT64 >> shifts[i])
			return FALSE;
		*bytes = value << shifts[i];
		return TRUE;
	}
	return FALSE;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	g_autofree char *text = fuzz_string(data, size);
	guint64 bytes = 0, expected = 0, again = 0;
	gboolean ok = ivlab_parse_size(text, &bytes);

	g_assert_cmpint(ok, ==, reference_size(text, &expected));
	if (ok) {
		g_autofree char *shown = ivlab_format_size(bytes);

		g_assert_cmpuint(bytes, ==, expected);
		g_assert(ivlab_parse_size(shown, &again));
		g_assert_cmpuint(again, ==, bytes);
	}
	/* Any 8 bytes as a number: formatted, then parsed back. */
	if (size >= 8) {
		guint64 value;
		g_autofree char *shown = NULL;

		memcpy(&value, data, sizeof(value));
		shown = ivlab_format_size(value);
		g_assert(ivlab_parse_size(shown, &again));
		g_assert_cmpuint(again, ==, value);
	}
	if (ivlab_name_is_safe(text)) {
		g_assert(g_ascii_isalnum(text[0]));
		g_assert_cmpuint(strspn(text, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
				       "0123456789-_"), ==, strlen(text));
		g_assert_null(strchr(text, '/'));
	}
	return 0;
}
