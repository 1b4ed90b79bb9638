/* fetch.c: libcurl downloads into a cache keyed by sha256, resumed after an
 * interruption and verified with GChecksum before anything may use them. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <curl/curl.h>
#include <glib/gstdio.h>

#include "fetch.h"
#include "ivlab.h"

/* Transient failures worth another try, resuming from what arrived. */
#define FETCH_ATTEMPTS 4

gboolean fetch_sha256_is_valid(const char *text)
{
	if (!text || strlen(text) != 64)
		return FALSE;
	for (const char *c = text; *c; c++)
		if (!g_ascii_isxdigit(*c))
			return FALSE;
	return TRUE;
}

char *fetch_file_sha256(const char *path, GError **error)
{
	g_autoptr(GChecksum) sum = g_checksum_new(G_CHECKSUM_SHA256);
	g_autofree guchar *buf = g_malloc(1 << 20);
	FILE *file = fopen(path, "rb");
	size_t got;

	if (!file) {
		g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED, "%s: %s", path, g_strerror(errno));
		return NULL;
	}
	while ((got = fread(buf, 1, 1 << 20, file)) > 0)
		g_checksum_update(sum, buf, got);
	if (ferror(file)) {
		int saved = errno;

		fclose(file);
		g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED, "%s: %s", path, g_strerror(saved));
		return NULL;
	}
	fclose(file);
	return g_strdup(g_checksum_get_string(sum));
}

/* The last path component of the URL, safe as a file name. */
static char *url_basename(const char *url)
{
	g_autofree char *path = g_strdup(url);
	char *cut = strpbrk(path, "?#");
	const char *slash;

	if (cut)
		*cut = '\0';
	slash = strrchr(path, '/');
	const char *name = slash ? slash + 1 : path;
	if (!*name || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		return g_strdup("download");
	g_autofree char *safe = g_strdup(name);
	for (char *c = safe; *c; c++)
		if (!g_ascii_isalnum(*c) && !strchr("._-+~%", *c))
			*c = '_';
	return g_steal_pointer(&safe);
}

struct progress {
	const char *name;
	struct ivlab_progress line;
	curl_off_t offset; /* bytes already there when this attempt started */
};

static int progress_cb(void *data, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
		       curl_off_t ulnow)
{
	struct progress *progress = data;
	curl_off_t have = progress->offset + dlnow;
	curl_off_t total = dltotal ? progress->offset + dltotal : 0;

	if (ivlab_interrupted())
		return 1; /* ends the transfer: CURLE_ABORTED_BY_CALLBACK */
	if (!progress->line.active)
		return 0;
	if (total) {
		g_autofree char *bar = ivlab_progress_bar(have, total);

		ivlab_progress_show(&progress->line, have == total, "%-24.24s %s %6.1f/%.1f MiB",
				    progress->name, bar, have / 1048576.0, total / 1048576.0);
	} else {
		ivlab_progress_show(&progress->line, FALSE, "%-24.24s %6.1f MiB", progress->name,
				    have / 1048576.0);
	}
	return 0;
}

static size_t write_cb(char *data, size_t size, size_t count, void *user)
{
	return fwrite(data, size, count, user);
}

static void curl_init_once(void)
{
	static gsize done;

	if (g_once_init_enter(&done)) {
		curl_global_init(CURL_GLOBAL_DEFAULT);
		g_once_init_leave(&done, 1);
	}
}

enum attempt_result { ATTEMPT_DONE, ATTEMPT_RETRY, ATTEMPT_RESTART, ATTEMPT_FAILED };

/* One transfer appending to part_path from its current size. */
static enum attempt_result fetch_attempt(const char *url, const char *part_path, const char *name,
					 GError **error)
{
	struct progress progress = { .name = name };

	ivlab_progress_init(&progress.line);
	char curl_error[CURL_ERROR_SIZE] = "";
	struct stat st;
	long status = 0;
	CURLcode code;
	FILE *out = fopen(part_path, "ab");

	if (!out) {
		g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED, "%s: %s", part_path, g_strerror(errno));
		return ATTEMPT_FAILED;
	}
	progress.offset = fstat(fileno(out), &st) == 0 ? st.st_size : 0;

	CURL *curl = curl_easy_init();
	g_assert(curl);
	curl_easy_setopt(curl, CURLOPT_URL, url);
	curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https,ftp,file");
	curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS_STR, "http,https,ftp");
	curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(curl, CURLOPT_FAILONERROR, 1L);
	curl_easy_setopt(curl, CURLOPT_USERAGENT, PACKAGE_NAME "/" PACKAGE_VERSION);
	curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 30L);
	/* A stalled server ends the attempt instead of hanging the build. */
	curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, 60L);
	curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, curl_error);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, out);
	if (progress.offset > 0)
		curl_easy_setopt(curl, CURLOPT_RESUME_FROM_LARGE, (curl_off_t)progress.offset);
	/* The callback shows progress on a terminal and ends the transfer on
	 * an interrupt (ivlab_interrupt_catch()). */
	curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, progress_cb);
	curl_easy_setopt(curl, CURLOPT_XFERINFODATA, &progress);
	ivlab_debug("fetching %s from byte %" G_GINT64_FORMAT, url, (gint64)progress.offset);
	code = curl_easy_perform(curl);
	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(curl);
	ivlab_progress_end(&progress.line);
	if (fclose(out) != 0 && code == CURLE_OK) {
		g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED, "%s: %s", part_path, g_strerror(errno));
		return ATTEMPT_FAILED;
	}

	switch (code) {
	case CURLE_OK:
		return ATTEMPT_DONE;
	case CURLE_ABORTED_BY_CALLBACK:
		ivlab_check_interrupt(error);
		g_prefix_error(error, "%s: ", url);
		return ATTEMPT_FAILED;
	case CURLE_HTTP_RETURNED_ERROR:
		/* Asking for bytes past the end: what we have may be all of it. */
		if (status == 416 && progress.offset > 0)
			return ATTEMPT_DONE;
		g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED, "%s: the server answered HTTP %ld",
			    url, status);
		return ATTEMPT_FAILED;
	case CURLE_RANGE_ERROR:
		/* The server cannot resume: start again from the first byte. */
		return ATTEMPT_RESTART;
	case CURLE_PARTIAL_FILE:
	case CURLE_RECV_ERROR:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_GOT_NOTHING:
		g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED, "%s: %s", url,
			    *curl_error ? curl_error : curl_easy_strerror(code));
		return ATTEMPT_RETRY;
	default:
		g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED, "%s: %s", url,
			    *curl_error ? curl_error : curl_easy_strerror(code));
		return ATTEMPT_FAILED;
	}
}

static gboolean make_dir(const char *dir, GError **error)
{
	if (g_mkdir_with_parents(dir, 0755) != 0) {
		g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED, "%s: %s", dir, g_strerror(errno));
		return FALSE;
	}
	return TRUE;
}

/* The file is there and is the one asked for. */
static gboolean cached_ok(const char *path, const char *sha256)
{
	g_autofree char *have = NULL;

	if (!g_file_test(path, G_FILE_TEST_IS_REGULAR))
		return FALSE;
	have = fetch_file_sha256(path, NULL);
	if (have && g_ascii_strcasecmp(have, sha256) == 0)
		return TRUE;
	ivlab_info("%s: cached file is damaged, fetching it again", path);
	g_unlink(path);
	return FALSE;
}

char *fetch_cached(const char *url, const char *sha256, const char *cache_dir, GError **error)
{
	g_autofree char *want = NULL, *name = NULL, *dir = NULL, *final = NULL;
	g_autofree char *part = NULL, *lock_path = NULL, *got = NULL;
	enum attempt_result result = ATTEMPT_FAILED;
	int lock_fd;

	if (!fetch_sha256_is_valid(sha256)) {
		g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_USAGE,
			    "%s: the sha256 must be 64 hex digits, not '%s'", url, sha256 ? sha256 : "");
		return NULL;
	}
	curl_init_once();
	want = g_ascii_strdown(sha256, -1);
	name = url_basename(url);
	dir = g_build_filename(cache_dir, want, NULL);
	final = g_build_filename(dir, name, NULL);
	part = g_strdup_printf("%s/%s.part", cache_dir, want);
	lock_path = g_build_filename(cache_dir, ".lock", NULL);
	if (!make_dir(cache_dir, error))
		return NULL;

	/* Two builds wanting the same file: the second waits, then finds it.
	 * One lock for the cache, so that no per-download file stays behind. */
	lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (lock_fd < 0 || flock(lock_fd, LOCK_EX) != 0) {
		g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED, "%s: %s", lock_path, g_strerror(errno));
		if (lock_fd >= 0)
			close(lock_fd);
		return NULL;
	}

	if (cached_ok(final, want)) {
		ivlab_debug("%s: in the cache (%s)", url, final);
		close(lock_fd);
		return g_steal_pointer(&final);
	}

	ivlab_info("fetching %s", url);
	for (int attempt = 1; attempt <= FETCH_ATTEMPTS; attempt++) {
		g_autoptr(GError) attempt_error = NULL;

		result = fetch_attempt(url, part, name, &attempt_error);
		if (result == ATTEMPT_DONE || result == ATTEMPT_FAILED) {
			if (result == ATTEMPT_FAILED)
				g_propagate_error(error, g_steal_pointer(&attempt_error));
			break;
		}
		if (result == ATTEMPT_RESTART) {
			ivlab_info("%s: the server cannot resume; starting over", url);
			g_unlink(part);
		} else if (attempt < FETCH_ATTEMPTS) {
			ivlab_info("%s; resuming (attempt %d of %d)", attempt_error->message, attempt + 1,
				   FETCH_ATTEMPTS);
		} else {
			g_propagate_error(error, g_steal_pointer(&attempt_error));
			result = ATTEMPT_FAILED;
		}
	}
	if (result != ATTEMPT_DONE) {
		/* A partial file is kept for resuming; an empty one says nothing. */
		struct stat st;

		if (stat(part, &st) == 0 && st.st_size == 0)
			g_unlink(part);
		close(lock_fd);
		return NULL;
	}

	got = fetch_file_sha256(part, error);
	if (!got) {
		close(lock_fd);
		return NULL;
	}
	if (strcmp(got, want) != 0) {
		g_unlink(part);
		close(lock_fd);
		g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED,
			    "%s: sha256 mismatch: expected %s, got %s; the download was deleted", url, want,
			    got);
		return NULL;
	}
	if (!make_dir(dir, error)) {
		close(lock_fd);
		return NULL;
	}
	if (g_rename(part, final) != 0) {
		g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED, "%s: %s", final, g_strerror(errno));
		close(lock_fd);
		return NULL;
	}
	g_chmod(final, 0644);
	close(lock_fd);
	return g_steal_pointer(&final);
}
