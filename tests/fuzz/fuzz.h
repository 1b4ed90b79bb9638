/* fuzz.h: what the libFuzzer targets in tests/fuzz share: the entry points
 * libFuzzer calls, the tree's data for the modules that look for it, and
 * the input as a C string. */
#ifndef IVLAB_FUZZ_H
#define IVLAB_FUZZ_H

#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <glib.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The source tree (lab.rng, the labs): FUZZ_SRCDIR, set by the build. */
static inline void fuzz_use_tree(void)
{
	g_setenv("IVLAB_DATADIR", FUZZ_SRCDIR, FALSE);
}

static inline void fuzz_sigpipe(int sig)
{
	abort();
}

/* ivlab does not ignore SIGPIPE (but in the server daemon): a write that
 * raises it would kill ivlab. libFuzzer keeps no input for a death by
 * SIGPIPE: make it an abort(), a crash it records. */
static inline void fuzz_catch_sigpipe(void)
{
	signal(SIGPIPE, fuzz_sigpipe);
}

/* The input up to its first NUL, as a string of its own (free it). */
static inline char *fuzz_string(const uint8_t *data, size_t size)
{
	return g_strndup((const char *)data, size);
}

#endif
