/* labup.c: images, definitions, the parallel start of the lab's guests and
 * the wait for their agents, with the console captured for failures. */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

#include "domxml.h"
#include "host.h"
#include "image.h"
#include "ivlab.h"
#include "labup.h"

#define CONSOLE_KEEP (64 * 1024)
#define CONSOLE_TAIL_LINES 25

char *labup_domain_xml(const struct lab *lab, const struct lab_guest *guest, GError **error)
{
	g_autofree char *why = NULL;
	gboolean kvm = host_pick_kvm(lab->accel, guest->arch, &why);

	ivlab_debug("%s: accelerator %s", guest->name, why);
	return domxml_build(lab, guest, kvm, error);
}

gboolean labup_ensure_images(const struct lab *lab, GError **error)
{
	g_autoptr(GHashTable) done = g_hash_table_new(g_str_hash, g_str_equal);

	for (guint i = 0; i < lab->guests->len; i++) {
		const struct lab_guest *guest = g_ptr_array_index(lab->guests, i);

		if (g_hash_table_contains(done, guest->arch))
			continue;
		g_hash_table_add(done, guest->arch);
		if (!image_ensure(guest->arch, NULL, error)) {
			g_prefix_error(error, "images for %s guest %s: ", guest->arch, guest->name);
			return FALSE;
		}
	}
	return TRUE;
}

gboolean labup_check_shm_free(const struct lab *lab, struct labrun *run, GError **error)
{
	g_auto(GStrv) ours = labrun_list(run, "shm");

	for (guint i = 0; i < lab->regions->len; i++) {
		const struct lab_region *region = g_ptr_array_index(lab->regions, i);
		g_autofree char *name = lab_region_shm_name(lab, region);
		g_autofree char *shm_path = g_build_filename("/dev/shm", name, NULL);

		if (g_file_test(shm_path, G_FILE_TEST_EXISTS) &&
		    !g_strv_contains((const char *const *)ours, name)) {
			g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED,
				    "region %s: the shared memory object %s already exists and "
				    "belongs to no running ivlab lab '%s' (left by another tool or "
				    "a crash?); remove it or run 'ivlab down' for that lab",
				    region->name, shm_path, lab->name);
			return FALSE;
		}
	}
	return TRUE;
}

/* One guest coming up. The console reader keeps the last CONSOLE_KEEP
 * bytes of what the guest printed. */
struct boot {
	virDomainPtr dom;
	char *name;
	gboolean start;
	int timeout_ms;
	VirtLink *console;
	GThread *reader;
	gint stop_reader;
	GMutex lock;
	GString *output;
	struct agent_link *agent;
	GError *error;
	double seconds;
	GAsyncQueue *done; /* this boot, pushed when finished */
	char *log_path;    /* where the captured console goes, or NULL */
};

static gpointer console_reader(gpointer data)
{
	struct boot *boot = data;
	int fd = virt_link_fd(boot->console);

	while (!g_atomic_int_get(&boot->stop_reader)) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		char buffer[4096];

		if (poll(&pfd, 1, 100) <= 0)
			continue;
		ssize_t got = read(fd, buffer, sizeof(buffer));

		if (got < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (got <= 0)
			break;
		g_mutex_lock(&boot->lock);
		g_string_append_len(boot->output, buffer, got);
		if (boot->output->len > 2 * CONSOLE_KEEP)
			g_string_erase(boot->output, 0, boot->output->len - CONSOLE_KEEP);
		g_mutex_unlock(&boot->lock);
	}
	return NULL;
}

static void boot_stop_console(struct boot *boot)
{
	g_atomic_int_set(&boot->stop_reader, 1);
	if (boot->reader)
		g_thread_join(boot->reader);
	boot->reader = NULL;
	if (boot->console)
		virt_link_close(boot->console);
	boot->console = NULL;
}

static void boot_free(struct boot *boot)
{
	boot_stop_console(boot);
	if (boot->log_path && boot->output->len &&
	    !g_file_set_contents(boot->log_path, boot->output->str, boot->output->len, NULL))
		ivlab_debug("%s: cannot write %s", boot->name, boot->log_path);
	g_free(boot->log_path);
	agent_link_free(boot->agent);
	g_clear_error(&boot->error);
	g_string_free(boot->output, TRUE);
	g_mutex_clear(&boot->lock);
	g_free(boot->name);
	g_free(boot);
}

/* The last lines the guest printed, one "NAME console: ..." line each. */
static void print_console_tail(struct boot *boot)
{
	g_autofree char *text = NULL;
	g_auto(GStrv) lines = NULL;
	guint count, first;

	g_mutex_lock(&boot->lock);
	text = g_strdup(boot->output->str);
	g_mutex_unlock(&boot->lock);
	if (!*text) {
		g_autofree char *log = virt_log_tail(boot->dom, 2048);

		ivlab_info("%s: the guest printed nothing on its console", boot->name);
		if (log) {
			g_auto(GStrv) log_lines = g_strsplit(log, "\n", -1);
			guint n = g_strv_length(log_lines);

			for (guint i = n > 8 ? n - 8 : 0; i < n; i++)
				if (*log_lines[i])
					ivlab_info("%s qemu log: %s", boot->name, log_lines[i]);
		}
		return;
	}
	g_strdelimit(text, "\r", ' ');
	lines = g_strsplit(text, "\n", -1);
	count = g_strv_length(lines);
	first = count > CONSOLE_TAIL_LINES ? count - CONSOLE_TAIL_LINES : 0;
	ivlab_info("%s: the last lines of its console:", boot->name);
	for (guint i = first; i < count; i++)
		if (*g_strstrip(lines[i]))
			ivlab_info("%s console: %s", boot->name, lines[i]);
}

static gboolean boot_run(struct boot *boot, GError **error)
{
	gint64 started = g_get_monotonic_time();

	if (boot->start) {
		/* Paused first: the console is attached before the first byte. */
		if (virDomainCreateWithFlags(boot->dom, VIR_DOMAIN_START_PAUSED) < 0)
			return virt_dom_error(error, boot->dom, "cannot start");
	}
	ivlab_debug("%s: started (paused) in %.1f s", boot->name,
		    (g_get_monotonic_time() - started) / 1e6);
	boot->console = virt_open_console(boot->dom, TRUE, NULL);
	if (boot->console)
		boot->reader = g_thread_new("console", console_reader, boot);
	if (boot->start && virDomainResume(boot->dom) < 0)
		return virt_dom_error(error, boot->dom, "cannot resume");
	boot->agent = agent_link_open(boot->dom, boot->name, TRUE, error);
	if (!boot->agent)
		return FALSE;
	ivlab_debug("%s: running, channel open after %.1f s", boot->name,
		    (g_get_monotonic_time() - started) / 1e6);
	int left = boot->timeout_ms - (int)((g_get_monotonic_time() - started) / 1000);
	AgentReply *hello = agent_hello(boot->agent, MAX(left, 1), error);

	if (!hello)
		return FALSE;
	ivlab_debug("%s: agent %s on %s, kernel %s", boot->name,
		    agent_reply_get(hello, "agent") ?: "?", agent_reply_get(hello, "arch") ?: "?",
		    agent_reply_get(hello, "kernel") ?: "?");
	g_hash_table_unref(hello);
	boot->seconds = (g_get_monotonic_time() - started) / 1e6;
	return TRUE;
}

static gpointer boot_thread(gpointer data)
{
	struct boot *boot = data;

	boot_run(boot, &boot->error);
	g_async_queue_push(boot->done, boot);
	return NULL;
}

static struct boot *boot_new(virDomainPtr dom, const char *name, gboolean start, int timeout_ms,
			     GAsyncQueue *done)
{
	struct boot *boot = g_new0(struct boot, 1);

	boot->dom = dom;
	boot->name = g_strdup(name);
	boot->start = start;
	boot->timeout_ms = timeout_ms;
	boot->output = g_string_new(NULL);
	boot->done = done;
	g_mutex_init(&boot->lock);
	return boot;
}

struct agent_link *labup_boot_guest(virDomainPtr dom, const char *name, gboolean start,
				    int timeout_ms, GError **error)
{
	struct boot *boot = boot_new(dom, name, start, timeout_ms, NULL);
	struct agent_link *agent = NULL;

	if (boot_run(boot, error)) {
		agent = g_steal_pointer(&boot->agent);
	} else {
		boot_stop_console(boot);
		print_console_tail(boot);
	}
	boot_free(boot);
	return agent;
}

static void progress(gboolean tty, guint ready, guint total, gint64 started, const char *last)
{
	if (!tty || ivlab_verbosity() < 1)
		return;
	fprintf(stderr, "\r\033[Kivlab: waiting for agents: %u/%u ready, %.0f s%s%s", ready, total,
		(g_get_monotonic_time() - started) / 1e6, last ? " (last: " : "",
		last ? last : "");
	if (last)
		fputc(')', stderr);
	fflush(stderr);
}

gboolean labup_define_and_start(virConnectPtr conn, const struct lab *lab, struct labrun *run,
				GHashTable *wanted_xml, int timeout_seconds, GError **error)
{
	g_autoptr(GPtrArray) doms = g_ptr_array_new_with_free_func(virt_domain_unref);
	g_autoptr(GAsyncQueue) done = g_async_queue_new();
	g_autoptr(GPtrArray) threads = g_ptr_array_new();
	g_autoptr(GPtrArray) failed = g_ptr_array_new_with_free_func(g_free);
	GError *first = NULL;
	gboolean tty = isatty(STDERR_FILENO);
	gint64 started = g_get_monotonic_time();
	guint ready = 0;

	for (guint i = 0; i < lab->guests->len; i++) {
		const struct lab_guest *guest = g_ptr_array_index(lab->guests, i);
		g_autofree char *name = lab_guest_domain_name(lab, guest);
		virDomainPtr dom = virt_lab_domain(conn, lab, guest, error);

		if (!dom && error && *error)
			return FALSE;
		if (!dom) {
			const char *xml = g_hash_table_lookup(wanted_xml, name);

			labrun_add(run, "domains", name);
			labrun_set_domain_xml(run, name, xml);
			if (!labrun_save(run, error))
				return FALSE;
			dom = virt_define(conn, xml, error);
			if (!dom) {
				g_prefix_error(error, "%s: ", name);
				return FALSE;
			}
			ivlab_debug("%s: defined", name);
		}
		g_ptr_array_add(doms, dom);
	}

	/* Every guest starts at once: each boot runs in its own thread. */
	for (guint i = 0; i < doms->len; i++) {
		virDomainPtr dom = g_ptr_array_index(doms, i);
		const struct lab_guest *guest = g_ptr_array_index(lab->guests, i);
		struct boot *boot = boot_new(dom, guest->name, !virt_is_running(dom),
					     timeout_seconds * 1000, done);
		g_autofree char *log_name = g_strdup_printf("%s.console.log", guest->name);

		boot->log_path = g_build_filename(run->dir, log_name, NULL);

		ivlab_debug("%s: %s", virDomainGetName(dom), boot->start ? "starting" : "already running");
		g_ptr_array_add(threads, g_thread_new("boot", boot_thread, boot));
	}
	progress(tty, 0, doms->len, started, NULL);
	for (guint finished = 0; finished < doms->len;) {
		struct boot *boot = g_async_queue_timeout_pop(done, 500000);

		if (!boot) {
			progress(tty, ready, doms->len, started, NULL);
			continue;
		}
		finished++;
		if (boot->error) {
			if (tty && ivlab_verbosity() >= 1)
				fputs("\n", stderr);
			boot_stop_console(boot);
			print_console_tail(boot);
			g_ptr_array_add(failed, g_strdup(boot->name));
			if (!first)
				first = g_error_copy(boot->error);
		} else {
			ready++;
			if (tty)
				progress(tty, ready, doms->len, started, boot->name);
			else
				ivlab_info("%s: agent ready after %.1f s", boot->name, boot->seconds);
		}
		boot_free(boot);
	}
	if (tty && ivlab_verbosity() >= 1)
		fputs("\n", stderr);
	for (guint i = 0; i < threads->len; i++)
		g_thread_join(g_ptr_array_index(threads, i));
	if (first) {
		g_ptr_array_add(failed, NULL);
		g_autofree char *names = g_strjoinv(", ", (char **)failed->pdata);

		g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED,
			    "lab '%s': %u of %u guests failed to come up (timeout %d s) (%s): %s "
			    "(console tail above)",
			    lab->name, failed->len - 1, doms->len, timeout_seconds, names,
			    first->message);
		g_error_free(first);
		return FALSE;
	}
	return TRUE;
}
