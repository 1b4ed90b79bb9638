/* fetch.h: downloads with libcurl into a cache, checked against a sha256
 * the caller must give: resumable, with a progress bar on a terminal. */
#ifndef IVLAB_FETCH_H
#define IVLAB_FETCH_H

#include <glib.h>

/* TRUE if text is 64 hex digits (either case). */
gboolean fetch_sha256_is_valid(const char *text);

/* Lowercase hex sha256 of a file's contents, or NULL with error set. */
char *fetch_file_sha256(const char *path, GError **error);

/* Makes sure cache_dir holds the file with this sha256, downloading url
 * only if it is not there yet, and returns its path in the cache
 * (cache_dir/SHA256/BASENAME). An interrupted download resumes where it
 * stopped (cache_dir/SHA256.part) on the next attempt or retry. A download
 * whose sha256 differs is deleted and refused. */
char *fetch_cached(const char *url, const char *sha256, const char *cache_dir, GError **error);

#endif
