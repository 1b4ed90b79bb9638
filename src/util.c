/* util.c: error domain, messages, sizes, names, the directories ivlab uses,
 * file helpers and the one child-process runner (run.h). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <glib/gstdio.h>

#include "ivlab.h"
#include "run.h"

G_DEFINE_QUARK(ivlab-error-quark, ivlab_error)

static int verbosity = 1;

gboolean ivlab_write_all(int fd, const char *data, gsize length)
{
	while (length) {
		/* send() for sockets, so a closed peer is an error and not SIGPIPE. */
		ssize_t done = send(fd, data, length, MSG_NOSIGNAL);

		if (done < 0 && errno == ENOTSOCK)
			done = write(fd, data, length);
		if (done < 0 && errno == EINTR)
			continue;
		if (done <= 0)
			return FALSE;
		data += done;
		length -= done;
	}
	return TRUE;
}

gboolean ivlab_fail(GError **error, const char *fmt, ...)
{
	va_list ap;
	g_autofree char *text = NULL;

	va_start(ap, fmt);
	text = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	g_set_error_literal(error, IVLAB_ERROR, IVLAB_ERROR_FAILED, text);
	return FALSE;
}

static gint compare_guint(gconstpointer a, gconstpointer b)
{
	guint x = *(const guint *)a, y = *(const guint *)b;

	return x < y ? -1 : x > y;
}

GArray *ivlab_sorted_ids(GHashTable *table)
{
	GArray *ids = g_array_new(FALSE, FALSE, sizeof(guint));
	GHashTableIter iter;
	gpointer key;

	g_hash_table_iter_init(&iter, table);
	while (g_hash_table_iter_next(&iter, &key, NULL)) {
		guint id = GPOINTER_TO_UINT(key);

		g_array_append_val(ids, id);
	}
	g_array_sort(ids, compare_guint);
	return ids;
}

void ivlab_set_verbosity(int verbose, gboolean quiet)
{
	verbosity = quiet ? 0 : 1 + verbose;
}

int ivlab_verbosity(void)
{
	return verbosity;
}

static void vmessage(int level, const char *fmt, va_list ap)
{
	if (verbosity < level)
		return;
	g_autofree char *text = g_strdup_vprintf(fmt, ap);
	fprintf(stderr, "ivlab: %s\n", text);
}

void ivlab_info(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vmessage(1, fmt, ap);
	va_end(ap);
}

void ivlab_debug(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vmessage(2, fmt, ap);
	va_end(ap);
}

/* Read once: [uninstalled] srcdir= and builddir= of the file make writes
 * beside the ivlab it builds. No path of the build is compiled in. */
static struct {
	gboolean read;
	char *srcdir;
	char *builddir;
} uninstalled;

static void read_uninstalled(void)
{
	g_autofree char *exe = NULL, *dir = NULL, *conf = NULL;
	g_autoptr(GKeyFile) file = g_key_file_new();

	if (uninstalled.read)
		return;
	uninstalled.read = TRUE;
	exe = g_file_read_link("/proc/self/exe", NULL);
	if (!exe)
		return;
	dir = g_path_get_dirname(exe);
	conf = g_build_filename(dir, IVLAB_UNINSTALLED_CONF, NULL);
	if (!g_key_file_load_from_file(file, conf, G_KEY_FILE_NONE, NULL))
		return;
	uninstalled.srcdir = g_key_file_get_string(file, "uninstalled", "srcdir", NULL);
	uninstalled.builddir = g_key_file_get_string(file, "uninstalled", "builddir", NULL);
	if (!uninstalled.srcdir || !uninstalled.builddir) {
		g_clear_pointer(&uninstalled.srcdir, g_free);
		g_clear_pointer(&uninstalled.builddir, g_free);
	}
}

const char *ivlab_source_dir(void)
{
	read_uninstalled();
	return uninstalled.srcdir;
}

const char *ivlab_build_dir(void)
{
	read_uninstalled();
	return uninstalled.builddir;
}

const char *ivlab_datadir(void)
{
	static char *dir;

	if (dir)
		return dir;
	const char *env = g_getenv("IVLAB_DATADIR");
	if (env && *env) {
		dir = g_strdup(env);
		return dir;
	}
	/* One run from the build tree uses the source tree's labs; an
	 * installed one its installed labs. */
	dir = g_strdup(ivlab_source_dir() ? ivlab_source_dir() : IVLAB_PKGDATADIR);
	return dir;
}

const char *ivlab_state_dir(void)
{
	static char *dir;

	if (dir)
		return dir;
	const char *env = g_getenv("IVLAB_STATE_DIR");
	if (env && *env)
		dir = g_canonicalize_filename(env, NULL); /* every path ivlab prints is absolute */
	else if (geteuid() == 0)
		dir = g_strdup("/var/lib/ivlab");
	else
		dir = g_build_filename(g_get_user_state_dir(), "ivlab", NULL);
	return dir;
}

char *ivlab_lab_dir(const char *lab_name)
{
	return g_build_filename(ivlab_state_dir(), "labs", lab_name, NULL);
}

char *ivlab_image_dir(const char *arch)
{
	return g_build_filename(ivlab_state_dir(), "images", arch, NULL);
}

gboolean ivlab_parse_size(const char *text, guint64 *bytes)
{
	static const struct {
		const char *suffix;
		guint64 factor;
	} units[] = {
		{ "", 1 }, { "B", 1 },
		{ "K", 1ULL << 10 }, { "KiB", 1ULL << 10 }, { "k", 1ULL << 10 },
		{ "M", 1ULL << 20 }, { "MiB", 1ULL << 20 },
		{ "G", 1ULL << 30 }, { "GiB", 1ULL << 30 },
		{ "T", 1ULL << 40 }, { "TiB", 1ULL << 40 },
	};
	char *end;
	guint64 value;

	if (!text || !g_ascii_isdigit(*text))
		return FALSE;
	errno = 0;
	value = g_ascii_strtoull(text, &end, 10);
	if (errno)
		return FALSE;
	for (gsize i = 0; i < G_N_ELEMENTS(units); i++) {
		if (strcmp(end, units[i].suffix) != 0)
			continue;
		if (value > G_MAXUINT64 / units[i].factor)
			return FALSE;
		*bytes = value * units[i].factor;
		return TRUE;
	}
	return FALSE;
}

char *ivlab_format_size(guint64 bytes)
{
	static const char *const names[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	gsize unit = 0;

	while (unit + 1 < G_N_ELEMENTS(names) && bytes && bytes % 1024 == 0) {
		bytes /= 1024;
		unit++;
	}
	return g_strdup_printf("%" G_GUINT64_FORMAT "%s", bytes, names[unit]);
}

gboolean ivlab_name_is_safe(const char *name)
{
	gsize len = strlen(name);

	if (len == 0 || len > IVLAB_NAME_MAX || !g_ascii_isalnum(name[0]))
		return FALSE;
	for (const char *c = name; *c; c++)
		if (!g_ascii_isalnum(*c) && *c != '-' && *c != '_')
			return FALSE;
	return TRUE;
}

void ivlab_json_begin(JsonBuilder *builder)
{
	json_builder_begin_object(builder);
	json_builder_set_member_name(builder, "version");
	json_builder_add_int_value(builder, IVLAB_JSON_VERSION);
	json_builder_set_member_name(builder, "ivlab");
	json_builder_add_string_value(builder, PACKAGE_VERSION);
}

void ivlab_print_json(JsonNode *root)
{
	g_autoptr(JsonGenerator) generator = json_generator_new();
	g_autofree char *text = NULL;

	json_generator_set_root(generator, root);
	text = json_generator_to_data(generator, NULL);
	printf("%s\n", text);
}

gboolean ivlab_filter_match(const char *filter, const char *name)
{
	return !filter || g_pattern_match_simple(filter, name);
}

gboolean ivlab_fail_errno(GError **error, const char *fmt, ...)
{
	int saved = errno;
	va_list ap;
	g_autofree char *text = NULL;

	va_start(ap, fmt);
	text = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED, "%s: %s", text, g_strerror(saved));
	errno = saved;
	return FALSE;
}

#define PROGRESS_INTERVAL_US 200000
#define PROGRESS_BAR_WIDTH 30

void ivlab_progress_init(struct ivlab_progress *progress)
{
	memset(progress, 0, sizeof(*progress));
	progress->active = isatty(STDERR_FILENO) && ivlab_verbosity() >= 1;
}

void ivlab_progress_show(struct ivlab_progress *progress, gboolean force, const char *fmt, ...)
{
	gint64 now = g_get_monotonic_time();
	g_autofree char *text = NULL;
	va_list ap;

	if (!progress->active || (!force && now - progress->last_us < PROGRESS_INTERVAL_US))
		return;
	progress->last_us = now;
	va_start(ap, fmt);
	text = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	/* \r and "erase to the end of the line": a shorter line leaves nothing behind. */
	fprintf(stderr, "\r\033[Kivlab: %s", text);
	fflush(stderr);
	progress->shown = TRUE;
}

void ivlab_progress_end(struct ivlab_progress *progress)
{
	if (progress->shown)
		fputc('\n', stderr);
	progress->shown = FALSE;
}

char *ivlab_progress_bar(guint64 have, guint64 total)
{
	int filled = total ? (int)(PROGRESS_BAR_WIDTH * MIN(have, total) / total) : 0;
	int percent = total ? (int)(100 * MIN(have, total) / total) : 0;

	return g_strdup_printf("[%.*s%*s] %3d%%", filled, "##############################",
			       PROGRESS_BAR_WIDTH - filled, "", percent);
}

/* --- files and directories ---------------------------------------------- */

gboolean ivlab_make_dir(const char *dir, GError **error)
{
	if (g_mkdir_with_parents(dir, 0755) != 0)
		return ivlab_fail_errno(error, "%s", dir);
	return TRUE;
}

gboolean ivlab_remove_tree(const char *path, GError **error)
{
	struct stat st;

	if (lstat(path, &st) != 0)
		return errno == ENOENT ? TRUE : ivlab_fail_errno(error, "%s", path);
	if (S_ISDIR(st.st_mode)) {
		g_autoptr(GDir) dir = g_dir_open(path, 0, NULL);
		const char *name;

		while (dir && (name = g_dir_read_name(dir))) {
			g_autofree char *child = g_build_filename(path, name, NULL);

			if (!ivlab_remove_tree(child, error))
				return FALSE;
		}
		if (g_rmdir(path) != 0)
			return ivlab_fail_errno(error, "%s", path);
	} else if (g_unlink(path) != 0) {
		return ivlab_fail_errno(error, "%s", path);
	}
	return TRUE;
}

gboolean ivlab_copy_tree(const char *from, const char *to, GError **error)
{
	struct stat st;

	if (stat(from, &st) != 0)
		return ivlab_fail_errno(error, "%s", from);
	if (S_ISDIR(st.st_mode)) {
		g_autoptr(GDir) dir = g_dir_open(from, 0, error);
		const char *name;

		if (!dir || !ivlab_make_dir(to, error))
			return FALSE;
		while ((name = g_dir_read_name(dir))) {
			g_autofree char *a = g_build_filename(from, name, NULL);
			g_autofree char *b = g_build_filename(to, name, NULL);

			if (!ivlab_copy_tree(a, b, error))
				return FALSE;
		}
		return TRUE;
	}
	g_autofree char *contents = NULL;
	gsize length;

	if (!g_file_get_contents(from, &contents, &length, error))
		return FALSE;
	return g_file_set_contents_full(to, contents, length, G_FILE_SET_CONTENTS_NONE, 0644, error);
}

static int compare_names(gconstpointer a, gconstpointer b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

GPtrArray *ivlab_dir_names(const char *path)
{
	g_autoptr(GDir) dir = g_dir_open(path, 0, NULL);
	GPtrArray *names = g_ptr_array_new_with_free_func(g_free);
	const char *name;

	while (dir && (name = g_dir_read_name(dir)))
		g_ptr_array_add(names, g_strdup(name));
	g_ptr_array_sort(names, compare_names);
	return names;
}

void ivlab_hash_tree(GChecksum *sum, const char *path, const char *name)
{
	struct stat st;

	g_checksum_update(sum, (const guchar *)name, strlen(name) + 1);
	if (stat(path, &st) != 0)
		return;
	if (S_ISDIR(st.st_mode)) {
		g_autoptr(GPtrArray) names = ivlab_dir_names(path);

		for (guint i = 0; i < names->len; i++) {
			g_autofree char *sub = g_build_filename(path, names->pdata[i], NULL);
			g_autofree char *subname = g_build_filename(name, names->pdata[i], NULL);

			ivlab_hash_tree(sum, sub, subname);
		}
		return;
	}
	g_autofree char *contents = NULL;
	gsize length = 0;

	if (g_file_get_contents(path, &contents, &length, NULL))
		g_checksum_update(sum, (const guchar *)contents, length);
}

gboolean ivlab_is_build_output(const char *name)
{
	static const char *const patterns[] = {
		"*.o", "*.ko", "*.mod", "*.mod.*", ".*.cmd", ".*.d", "Module.symvers",
		"modules.order", ".tmp_*", ".cache.mk", ".git", NULL,
	};

	for (guint i = 0; patterns[i]; i++)
		if (g_pattern_match_simple(patterns[i], name))
			return TRUE;
	return FALSE;
}

static void hash_source(GChecksum *sum, const char *dir, const char *name)
{
	g_autoptr(GPtrArray) names = ivlab_dir_names(dir);

	for (guint i = 0; i < names->len; i++) {
		g_autofree char *path = g_build_filename(dir, names->pdata[i], NULL);
		g_autofree char *sub = g_build_filename(name, names->pdata[i], NULL);
		g_autofree char *contents = NULL;
		gsize length = 0;
		struct stat st;

		if (ivlab_is_build_output(names->pdata[i]) || stat(path, &st) != 0)
			continue;
		g_checksum_update(sum, (const guchar *)sub, strlen(sub) + 1);
		if (S_ISDIR(st.st_mode))
			hash_source(sum, path, sub);
		else if (S_ISREG(st.st_mode) && g_file_get_contents(path, &contents, &length, NULL))
			g_checksum_update(sum, (const guchar *)contents, length);
	}
}

void ivlab_hash_source(GChecksum *sum, const char *dir)
{
	hash_source(sum, dir, "");
}

void ivlab_unlock(IvlabLock fd)
{
	if (fd >= 0)
		close(fd);
}

/* --- child processes (run.h) --------------------------------------------- */

static ivlab_run_hook dry_run_hook;
static gpointer dry_run_data;

void ivlab_run_set_dry_run(ivlab_run_hook hook, gpointer user_data)
{
	dry_run_hook = hook;
	dry_run_data = user_data;
}

void ivlab_run_clear(struct ivlab_run *run)
{
	g_clear_pointer(&run->out, g_free);
	g_clear_pointer(&run->err, g_free);
}

/* The line of a failed command's output that best says why: the first one
 * naming an error (compilers, make, apt's "E: "), else the first of stderr,
 * else the last of stdout. */
static char *telling_line(const char *err, const char *out)
{
	g_auto(GStrv) err_lines = g_strsplit(err, "\n", -1);
	g_auto(GStrv) out_lines = g_strsplit(out, "\n", -1);
	const char *first = NULL, *last_out = NULL;

	for (char **line = err_lines; *line; line++) {
		g_autofree char *lower = g_ascii_strdown(g_strstrip(*line), -1);

		if (!**line)
			continue;
		if (g_str_has_prefix(*line, "E: ") || strstr(lower, "error") || strstr(lower, "fatal"))
			return g_strdup(*line);
		if (!first)
			first = *line;
	}
	if (first)
		return g_strdup(first);
	for (char **line = out_lines; *line; line++)
		if (*g_strstrip(*line))
			last_out = *line;
	return last_out ? g_strdup(last_out) : NULL;
}

static void debug_lines(const char *what, const char *text)
{
	g_auto(GStrv) lines = g_strsplit(text, "\n", -1);

	for (char **line = lines; *line; line++)
		if (**line)
			ivlab_debug("%s: %s", what, *line);
}

static gboolean run_spawn(struct ivlab_run *run, GError **error)
{
	g_auto(GStrv) envp = NULL;
	g_autoptr(GError) spawn_error = NULL;
	int wait_status;

	if (run->env) {
		envp = g_get_environ();
		for (gsize i = 0; run->env[i]; i++) {
			g_auto(GStrv) pair = g_strsplit(run->env[i], "=", 2);

			envp = g_environ_setenv(envp, pair[0], pair[1] ? pair[1] : "", TRUE);
		}
	}
	if (!g_spawn_sync(run->cwd, (char **)run->argv, envp,
			  G_SPAWN_SEARCH_PATH | G_SPAWN_STDIN_FROM_DEV_NULL, NULL, NULL, &run->out,
			  &run->err, &wait_status, &spawn_error))
		return ivlab_fail(error, "%s: %s", run->argv[0], spawn_error->message);
	if (WIFEXITED(wait_status))
		run->status = WEXITSTATUS(wait_status);
	else if (WIFSIGNALED(wait_status))
		run->status = 128 + WTERMSIG(wait_status);
	else
		run->status = 128;
	return TRUE;
}

gboolean ivlab_run(struct ivlab_run *run, GError **error)
{
	g_autofree char *line = g_strjoinv(" ", (char **)run->argv);
	g_autofree char *why = NULL;
	gboolean started;

	ivlab_run_clear(run);
	run->status = 0;
	ivlab_debug("running: %s%s%s", line, run->cwd ? " in " : "", run->cwd ? run->cwd : "");
	if (dry_run_hook)
		started = dry_run_hook(run, dry_run_data, error);
	else
		started = run_spawn(run, error);
	if (!run->out)
		run->out = g_strdup("");
	if (!run->err)
		run->err = g_strdup("");
	if (!started)
		return FALSE;
	if (run->status == 0 || run->may_fail) {
		if (ivlab_verbosity() >= 3)
			debug_lines(run->argv[0], run->err);
		return TRUE;
	}
	debug_lines(run->argv[0], run->err);
	why = telling_line(run->err, run->out);
	if (why)
		return ivlab_fail(error, "%s failed: %s", run->argv[0], why);
	if (run->status > 128)
		return ivlab_fail(error, "%s failed: killed by signal %d", run->argv[0], run->status - 128);
	return ivlab_fail(error, "%s failed with exit status %d", run->argv[0], run->status);
}

/* This process's command line, spaces between the words, for messages. */
static const char *self_cmdline(void)
{
	static char line[160];
	gsize len = 0;
	g_autofree char *raw = NULL;

	if (!line[0] && g_file_get_contents("/proc/self/cmdline", &raw, &len, NULL)) {
		len = MIN(len, sizeof(line) - 1);
		for (gsize i = 0; i < len; i++)
			line[i] = raw[i] ? raw[i] : ' ';
		line[len] = '\0';
		g_strchomp(line);
	}
	return line[0] ? line : "ivlab";
}

int ivlab_lock(const char *path, gboolean wait, const char *what, GError **error)
{
	g_autofree char *holder = NULL;
	g_autofree char *me = NULL;
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);

	if (fd < 0) {
		ivlab_fail_errno(error, "%s: lock %s", what, path);
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		if (errno != EWOULDBLOCK) {
			ivlab_fail_errno(error, "%s: lock %s", what, path);
			close(fd);
			return -1;
		}
		if (g_file_get_contents(path, &holder, NULL, NULL))
			g_strstrip(holder);
		if (!holder || !*holder) {
			g_free(holder);
			holder = g_strdup("unknown");
		}
		if (!wait) {
			g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_BUSY,
				    "%s is in use by another ivlab command (%s)", what, holder);
			close(fd);
			return -1;
		}
		ivlab_info("%s: waiting for another ivlab command (%s) to finish", what, holder);
		while (flock(fd, LOCK_EX) < 0) {
			if (errno != EINTR || ivlab_interrupted()) {
				ivlab_fail_errno(error, "%s: waiting for lock %s", what, path);
				close(fd);
				return -1;
			}
		}
	}
	me = g_strdup_printf("pid %ld: %s\n", (long)getpid(), self_cmdline());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, me, strlen(me), 0) < 0)
		ivlab_debug("%s: cannot write %s: %s", what, path, g_strerror(errno));
	return fd;
}

static volatile sig_atomic_t interrupted;

static void on_interrupt(int signo)
{
	interrupted = signo;
}

void ivlab_interrupt_catch(void)
{
	/* No SA_RESTART: a blocking wait returns EINTR and sees the flag. A
	 * second signal kills at once (SA_RESETHAND). */
	struct sigaction action = { .sa_handler = on_interrupt, .sa_flags = SA_RESETHAND };

	sigemptyset(&action.sa_mask);
	sigaction(SIGINT, &action, NULL);
	sigaction(SIGTERM, &action, NULL);
	sigaction(SIGHUP, &action, NULL);
}

int ivlab_interrupted(void)
{
	return interrupted;
}

gboolean ivlab_check_interrupt(GError **error)
{
	int signo = interrupted;

	if (!signo)
		return TRUE;
	return ivlab_fail(error, "interrupted by %s", signo == SIGINT ? "SIGINT (Ctrl-C)" :
			  signo == SIGTERM ? "SIGTERM" : "SIGHUP");
}
