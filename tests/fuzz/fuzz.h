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

/* A scratch directory (TMPDIR) removed when the fuzzer exits. */
static char *fuzz_scratch_dir;

static inline void fuzz_remove_scratch(void)
{
	g_autofree char *command = NULL;

	if (!fuzz_scratch_dir)
		return;
	/* Extracted trees may have taken their own write permission away. */
	command = g_strdup_printf("chmod -R u+rwx '%s' 2>/dev/null; rm -rf '%s'",
				  fuzz_scratch_dir, fuzz_scratch_dir);
	if (system(command) != 0)
		g_printerr("fuzz: cannot remove %s\n", fuzz_scratch_dir);
}

static inline const char *fuzz_make_scratch(const char *name)
{
	g_autoptr(GError) error = NULL;
	g_autofree char *pattern = g_strdup_printf("%s-XXXXXX", name);

	fuzz_scratch_dir = g_dir_make_tmp(pattern, &error);
	g_assert_no_error(error);
	atexit(fuzz_remove_scratch);
	return fuzz_scratch_dir;
}

/* The input up to its first NUL, as a string of its own (free it). */
static inline char *fuzz_string(const uint8_t *data, size_t size)
{
	return g_strndup((const char *)data, size);
}

#endif
