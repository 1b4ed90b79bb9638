/* labup.c: images, definitions, the parallel start of the lab's guests and
 * the wait for their agents, with the console captured for failures. */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "arch.h"
#include "bootprofile.h"
#include "domxml.h"
#include "host.h"
#include "image.h"
#include "ivlab.h"
#include "labboot.h"
#include "labkernel.h"
#include "labup.h"
#include "preflight.h"
#include "server.h"
#include "serverctl.h"

#define CONSOLE_KEEP (64 * 1024)
#define CONSOLE_TAIL_LINES 25
/* What an x86 kernel prints on an NMI nothing claims (arch/x86/kernel/nmi.c). */
#define NMI_MARK "NMI received for unknown reason"
/* How long a guest's console may stay silent before its log is taken as whole. */
#define LOG_DUMP_QUIET_US (2 * G_TIME_SPAN_SECOND)
#define LOG_DUMP_MAX_US (20 * G_TIME_SPAN_SECOND)

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
	GCond grew;        /* output grew */
	GString *output;
	gboolean dump_on_hang; /* ask a hung guest for its log with an NMI */
	struct agent_link *agent;
	GError *error;
	double seconds;
	struct bootprofile profile;
	gboolean profiled;
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
		g_cond_broadcast(&boot->grew);
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
	g_cond_clear(&boot->grew);
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
	/* After the NMI boot_dump_log() sent, the kernel replayed its whole log,
	 * the panic's own lines last: the useful tail is what came before. */
	char *nmi = g_strrstr(text, NMI_MARK);

	if (nmi) {
		while (nmi > text && nmi[-1] != '\n')
			nmi--;
		*nmi = '\0';
	}
	lines = g_strsplit(text, "\n", -1);
	count = g_strv_length(lines);
	first = count > CONSOLE_TAIL_LINES ? count - CONSOLE_TAIL_LINES : 0;
	ivlab_info("%s: the last lines of its console:", boot->name);
	for (guint i = first; i < count; i++)
		if (*g_strstrip(lines[i]))
			ivlab_info("%s console: %s", boot->name, lines[i]);
}

/* A guest that did not come up printed little on a quiet console: an NMI
 * makes its kernel panic and replay its whole log (unknown_nmi_panic,
 * panic_print=0x20 in arch.c's quiet_cmdline), read until it goes silent. */
static void boot_dump_log(struct boot *boot)
{
	gint64 until = g_get_monotonic_time() + LOG_DUMP_MAX_US;

	if (!boot->dump_on_hang || !boot->console || !virt_is_running(boot->dom))
		return;
	if (virDomainInjectNMI(boot->dom, 0) < 0) {
		ivlab_debug("%s: cannot send an NMI for the kernel's log", boot->name);
		return;
	}
	ivlab_debug("%s: sent an NMI: its kernel panics and replays its log", boot->name);
	g_mutex_lock(&boot->lock);
	for (;;) {
		gsize before = boot->output->len;
		gint64 deadline = MIN(g_get_monotonic_time() + LOG_DUMP_QUIET_US, until);

		while (boot->output->len == before && g_cond_wait_until(&boot->grew, &boot->lock, deadline))
			;
		if (boot->output->len == before || g_get_monotonic_time() >= until)
			break;
	}
	g_mutex_unlock(&boot->lock);
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
	/* The machine runs from here: firmware's time starts. */
	gint64 resumed = g_get_monotonic_time();
	boot->agent = agent_link_open(boot->dom, boot->name, TRUE, error);
	if (!boot->agent)
		return FALSE;
	ivlab_debug("%s: running, channel open after %.1f s", boot->name,
		    (g_get_monotonic_time() - started) / 1e6);
	int left = boot->timeout_ms - (int)((g_get_monotonic_time() - started) / 1000);
	AgentReply *hello = agent_hello(boot->agent, MAX(left, 1), error);

	if (!hello) {
		boot_dump_log(boot);
		return FALSE;
	}
	gint64 answered = g_get_monotonic_time();
	g_autoptr(GError) no_profile = NULL;

	/* A guest already running has no boot to profile. */
	if (boot->start)
		boot->profiled = bootprofile_from_hello(&boot->profile, started, resumed, answered,
							hello, &no_profile);
	if (no_profile)
		ivlab_debug("%s: %s", boot->name, no_profile->message);
	ivlab_debug("%s: agent %s on %s, kernel %s", boot->name,
		    agent_reply_get(hello, "agent") ?: "?", agent_reply_get(hello, "arch") ?: "?",
		    agent_reply_get(hello, "kernel") ?: "?");
	/* What /init applied (labboot.c): a module that did not load, a share
	 * that did not mount, a boot command that failed. */
	const char *applied = agent_reply_get(hello, "boot");

	if (applied && strcmp(applied, "ok") != 0) {
		g_autofree char *why = agent_percent_decode(applied);

		ivlab_fail(error, "at boot: %s",
			   g_str_has_prefix(why, "failed:") ? why + strlen("failed:") : why);
		g_hash_table_unref(hello);
		return FALSE;
	}
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
	g_cond_init(&boot->grew);
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

static void progress(struct ivlab_progress *line, guint ready, guint total, gint64 started,
		     const char *last)
{
	ivlab_progress_show(line, TRUE, "waiting for agents: %u/%u ready, %.0f s%s%s%s", ready, total,
			    (g_get_monotonic_time() - started) / 1e6, last ? " (last: " : "",
			    last ? last : "", last ? ")" : "");
}

gboolean labup_define_and_start(virConnectPtr conn, const struct lab *lab, struct labrun *run,
				GHashTable *wanted_xml, int timeout_seconds, GError **error)
{
	g_autoptr(GPtrArray) doms = g_ptr_array_new_with_free_func(virt_domain_unref);

	for (guint i = 0; i < lab->guests->len; i++) {
		const struct lab_guest *guest = g_ptr_array_index(lab->guests, i);
		g_autofree char *name = lab_guest_domain_name(lab, guest);
		virDomainPtr dom;

		if (!ivlab_check_interrupt(error))
			return FALSE;
		dom = virt_lab_domain(conn, lab, guest, error);
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
	return labup_start_guests(lab, run, lab->guests, doms, timeout_seconds, NULL, error);
}

gboolean labup_start_guests(const struct lab *lab, struct labrun *run, GPtrArray *guests,
			    GPtrArray *doms, int timeout_seconds, GHashTable *failed_names,
			    GError **error)
{
	g_autoptr(GAsyncQueue) done = g_async_queue_new();
	g_autoptr(GPtrArray) threads = g_ptr_array_new();
	g_autoptr(GPtrArray) failed = g_ptr_array_new_with_free_func(g_free);
	GError *first = NULL;
	struct ivlab_progress line;
	gint64 started = g_get_monotonic_time();
	guint ready = 0;
	gboolean interrupted = FALSE;

	ivlab_progress_init(&line);
	/* Every guest starts at once: each boot runs in its own thread. */
	for (guint i = 0; i < doms->len; i++) {
		virDomainPtr dom = g_ptr_array_index(doms, i);
		const struct lab_guest *guest = g_ptr_array_index(guests, i);
		struct boot *boot = boot_new(dom, guest->name, !virt_is_running(dom),
					     timeout_seconds * 1000, done);
		g_autofree char *log_name = g_strdup_printf("%s.console.log", guest->name);

		boot->log_path = g_build_filename(run->dir, log_name, NULL);
		boot->dump_on_hang = arch_lookup(guest->arch)->quiet_cmdline != NULL;

		ivlab_debug("%s: %s", virDomainGetName(dom), boot->start ? "starting" : "already running");
		g_ptr_array_add(threads, g_thread_new("boot", boot_thread, boot));
	}
	progress(&line, 0, doms->len, started, NULL);
	for (guint finished = 0; finished < doms->len;) {
		struct boot *boot = g_async_queue_timeout_pop(done, 500000);

		if (ivlab_interrupted() && !interrupted) {
			/* The boots end at once when their guests stop. */
			interrupted = TRUE;
			for (guint i = 0; i < doms->len; i++)
				virDomainDestroy(g_ptr_array_index(doms, i));
		}
		if (!boot) {
			progress(&line, ready, doms->len, started, NULL);
			continue;
		}
		finished++;
		if (boot->error) {
			ivlab_progress_end(&line);
			boot_stop_console(boot);
			if (!interrupted)
				print_console_tail(boot);
			g_ptr_array_add(failed, g_strdup(boot->name));
			if (failed_names)
				g_hash_table_add(failed_names, g_strdup(boot->name));
			if (!first)
				first = g_error_copy(boot->error);
		} else {
			ready++;
			if (boot->profiled && ivlab_verbosity() >= 2) {
				g_autofree char *stages = bootprofile_format(&boot->profile);

				ivlab_progress_end(&line);
				ivlab_debug("%s: boot profile: %s", boot->name, stages);
			}
			if (line.active)
				progress(&line, ready, doms->len, started, boot->name);
			else
				ivlab_info("%s: agent ready after %.1f s", boot->name, boot->seconds);
		}
		boot_free(boot);
	}
	ivlab_progress_end(&line);
	for (guint i = 0; i < threads->len; i++)
		g_thread_join(g_ptr_array_index(threads, i));
	if (interrupted) {
		g_clear_error(&first);
		return ivlab_check_interrupt(error);
	}
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

void labup_record_inputs(struct labrun *run, const struct lab_guest *guest, GPtrArray *inputs)
{
	g_auto(GStrv) lines = labboot_inputs_record(inputs);

	labrun_set_guest_inputs(run, guest->name, lines);
}

char *labup_guest_changes(struct labrun *run, const struct lab_guest *guest)
{
	g_auto(GStrv) recorded = labrun_guest_inputs(run, guest->name);
	g_autoptr(GPtrArray) inputs = NULL;

	if (!recorded) {
		ivlab_debug("guest %s: what it booted with is not recorded", guest->name);
		return NULL;
	}
	inputs = labboot_inputs(guest);
	return labboot_inputs_changes(inputs, recorded);
}

/* Lines of "a" and "b" that differ, "- old" / "+ new", at most max lines. */
static char *line_diff(const char *a, const char *b, guint max)
{
	g_auto(GStrv) old_lines = g_strsplit(a, "\n", -1);
	g_auto(GStrv) new_lines = g_strsplit(b, "\n", -1);
	g_autoptr(GString) out = g_string_new(NULL);
	guint shown = 0;

	for (char **line = old_lines; *line && shown < max; line++)
		if (**line && !g_strv_contains((const char *const *)new_lines, *line)) {
			g_autofree char *trimmed = g_strstrip(g_strdup(*line));

			g_string_append_printf(out, "%s- %s", out->len ? ", " : "", trimmed);
			shown++;
		}
	for (char **line = new_lines; *line && shown < max; line++)
		if (**line && !g_strv_contains((const char *const *)old_lines, *line)) {
			g_autofree char *trimmed = g_strstrip(g_strdup(*line));

			g_string_append_printf(out, "%s+ %s", out->len ? ", " : "", trimmed);
			shown++;
		}
	return g_string_free(g_steal_pointer(&out), FALSE);
}

char *labup_differences(const struct lab *lab, struct labrun *run, GPtrArray *domains,
			GHashTable *wanted_xml)
{
	g_autoptr(GPtrArray) diffs = g_ptr_array_new_with_free_func(g_free);

	for (guint i = 0; i < lab->guests->len; i++) {
		const struct lab_guest *guest = g_ptr_array_index(lab->guests, i);
		g_autofree char *name = lab_guest_domain_name(lab, guest);
		g_autofree char *stored = labrun_domain_xml(run, name);
		const char *wanted = g_hash_table_lookup(wanted_xml, name);
		gboolean defined = FALSE;

		for (guint d = 0; d < domains->len; d++)
			if (strcmp(virDomainGetName(g_ptr_array_index(domains, d)), name) == 0)
				defined = TRUE;
		if (!defined)
			g_ptr_array_add(diffs, g_strdup_printf("guest %s is new", guest->name));
		else if (stored && strcmp(stored, wanted) != 0) {
			g_autofree char *delta = line_diff(stored, wanted, 6);

			g_ptr_array_add(diffs, g_strdup_printf("guest %s changed (%s)", guest->name, delta));
		}
	}
	for (guint d = 0; d < domains->len; d++) {
		virDomainPtr dom = g_ptr_array_index(domains, d);
		g_autoptr(virt_meta) meta = virt_domain_meta(dom);

		if (meta && !lab_find_guest((struct lab *)lab, meta->guest))
			g_ptr_array_add(diffs, g_strdup_printf("guest %s (%s) is no longer in the lab file",
							       meta->guest, virDomainGetName(dom)));
	}
	if (!diffs->len)
		return NULL;
	g_ptr_array_add(diffs, NULL);
	return g_strjoinv("; ", (char **)diffs->pdata);
}

/* The server creates its shm object exclusively. One left by this lab's
 * server that died (labup_check_shm_free() saw it recorded as ours) goes,
 * if it is ours indeed; another user's stays and stops us. */
static gboolean reclaim_shm(const struct lab_region *region, const char *shm_name, GError **error)
{
	g_autofree char *shm_path = g_build_filename("/dev/shm", shm_name, NULL);
	struct stat st;

	if (lstat(shm_path, &st) < 0)
		return TRUE;
	if (!S_ISREG(st.st_mode) || st.st_uid != geteuid())
		return ivlab_fail(error, "region %s: the shared memory object %s is not ours "
				  "(owner uid %ld): remove it", region->name, shm_path, (long)st.st_uid);
	ivlab_debug("region %s: removing %s left by a server that died", region->name, shm_path);
	if (unlink(shm_path) < 0 && errno != ENOENT)
		return ivlab_fail_errno(error, "region %s: cannot remove %s", region->name, shm_path);
	return TRUE;
}

static gboolean start_servers(const struct lab *lab, struct labrun *run,
			      virConnectPtr conn, GError **error)
{
	uid_t uid;
	gid_t gid;
	g_autofree char *group = NULL;
	gboolean other_user = preflight_qemu_user(conn, &uid, &gid, &group);

	for (guint i = 0; i < lab->regions->len; i++) {
		const struct lab_region *region = g_ptr_array_index(lab->regions, i);
		g_autofree char *socket_path = NULL, *shm_name = NULL, *pidfile = NULL, *log = NULL;
		struct server_options opts;

		if (region->mode != LAB_REGION_DOORBELL)
			continue;
		if (!ivlab_check_interrupt(error))
			return FALSE;
		socket_path = lab_region_socket_path(lab, region);
		if (serverctl_running(socket_path)) {
			ivlab_debug("server %s: already running", socket_path);
			continue;
		}
		shm_name = lab_region_shm_name(lab, region);
		pidfile = labrun_pidfile(lab, region);
		log = labrun_server_log(lab, region);
		if (!reclaim_shm(region, shm_name, error))
			return FALSE;
		/* Recorded before it exists: a crash in between leaves a trace. */
		labrun_add(run, "servers", socket_path);
		labrun_add(run, "shm", shm_name);
		if (!labrun_save(run, error))
			return FALSE;
		server_options_init(&opts);
		opts.socket_path = socket_path;
		opts.size = region->size;
		opts.vectors = region->vectors;
		opts.shm_kind = SERVER_SHM_POSIX;
		opts.shm_name = shm_name;
		opts.pidfile = pidfile;
		opts.log_file = log;
		opts.daemonize = TRUE;
		if (other_user) {
			opts.socket_mode = 0660;
			opts.socket_group = group;
		}
		if (!serverctl_spawn(&opts, error)) {
			g_prefix_error(error, "region %s: server: ", region->name);
			return FALSE;
		}
		ivlab_info("server for region %s: listening on %s", region->name, socket_path);
	}
	return TRUE;
}


/* The lab's domains, comma-separated. */
static char *domain_names(GPtrArray *domains)
{
	GString *names = g_string_new(NULL);

	for (guint d = 0; d < domains->len; d++)
		g_string_append_printf(names, "%s%s", d ? ", " : "",
				       virDomainGetName(g_ptr_array_index(domains, d)));
	return g_string_free(names, FALSE);
}

/* The running guests attached to a doorbell region whose server does not
 * answer: into plan->restart. QEMU does not reconnect an ivshmem-doorbell
 * device to a new server, so they start again with it. */
static guint dead_servers(struct lab_session *session, struct labup_plan *plan)
{
	const struct lab *lab = session->lab;
	guint dead = 0;

	for (guint r = 0; r < lab->regions->len; r++) {
		const struct lab_region *region = g_ptr_array_index(lab->regions, r);
		g_autofree char *socket_path = NULL;

		if (region->mode != LAB_REGION_DOORBELL)
			continue;
		socket_path = lab_region_socket_path(lab, region);
		if (serverctl_running(socket_path))
			continue;
		dead++;
		for (guint i = 0; i < session->n_guests; i++) {
			struct session_guest *sg = &session->guests[i];

			if (sg->dom && virt_is_running(sg->dom) &&
			    lab_guest_region_index(sg->guest, region) >= 0 &&
			    !g_ptr_array_find(plan->restart, sg->dom, NULL))
				g_ptr_array_add(plan->restart, sg->dom);
		}
	}
	return dead;
}

/* What exists of a lab that was up: error when it cannot be finished. */
static gboolean plan_existing(struct lab_session *session, struct labup_plan *plan,
			      GError **error)
{
	const struct lab *lab = session->lab;
	struct labrun *run = session->run;
	GPtrArray *domains = session->domains;
	g_autofree char *up_path = labrun_lab_path(run);
	g_autofree char *up_digest = labrun_lab_digest(run);
	g_autofree char *diff = labup_differences(lab, run, domains, plan->wanted_xml);
	g_autofree char *canon_up = up_path ? g_canonicalize_filename(up_path, NULL) : NULL;
	g_autofree char *canon_now = g_canonicalize_filename(session->path, NULL);
	gboolean same_file = canon_up && strcmp(canon_up, canon_now) == 0;
	gboolean all_running = domains->len == lab->guests->len;

	if (up_digest && strcmp(up_digest, plan->digest) != 0 && !same_file && diff)
		return ivlab_fail(error, "%s: the lab name '%s' is taken by a running lab from %s: its "
				  "region names (ivlab-%s-*), sockets in %s and domains (%s-*) would "
				  "collide, and the two differ (%s); rename this lab or run "
				  "'ivlab -f %s down' first",
				  session->path, lab->name, up_path, lab->name, run->dir, lab->name, diff,
				  up_path);
	if (diff)
		return ivlab_fail(error, "%s: the lab '%s' is up, and the lab file differs from what "
				  "runs: %s; run 'ivlab down' first, then 'ivlab up' to apply it",
				  session->path, lab->name, diff);
	for (guint d = 0; d < domains->len; d++)
		all_running = all_running && virt_is_running(g_ptr_array_index(domains, d));
	if (dead_servers(session, plan) && all_running) {
		g_autofree char *names = domain_names(plan->restart);

		plan->kind = LABUP_FINISH;
		plan->summary = g_strdup_printf("lab '%s': a region's server is gone: starting it again%s%s%s",
						lab->name, plan->restart->len ? ", and the guests attached to it (" : "",
						names, plan->restart->len ? ")" : "");
		return TRUE;
	}
	if (all_running) {
		plan->kind = LABUP_ALREADY_UP;
		for (guint i = 0; i < lab->guests->len; i++) {
			const struct lab_guest *guest = g_ptr_array_index(lab->guests, i);
			g_autofree char *changes = labup_guest_changes(run, guest);

			if (changes)
				g_ptr_array_add(plan->changes,
						g_strdup_printf("guest %s: %s; run 'ivlab restart %s' to apply",
								guest->name, changes, guest->name));
		}
		plan->summary = g_strdup_printf("lab '%s' is already up (%u guests running, from %s); %s",
						lab->name, domains->len, up_path ? up_path : session->path,
						plan->changes->len ? "what its guests boot with changed "
						"since they started:" : "nothing to do");
	} else {
		plan->kind = LABUP_FINISH;
		plan->summary = g_strdup_printf("lab '%s' is partly up: finishing it", lab->name);
	}
	return TRUE;
}

gboolean labup_plan(struct lab_session *session, struct labup_plan *plan, GError **error)
{
	const struct lab *lab = session->lab;

	memset(plan, 0, sizeof(*plan));
	plan->changes = g_ptr_array_new_with_free_func(g_free);
	plan->wanted_xml = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
	plan->restart = g_ptr_array_new();
	plan->digest = labrun_digest_file(session->path, error);
	if (!plan->digest)
		return FALSE;
	for (guint i = 0; i < lab->guests->len; i++) {
		const struct lab_guest *guest = g_ptr_array_index(lab->guests, i);
		char *xml = labup_domain_xml(lab, guest, error);

		if (!xml)
			return FALSE;
		g_hash_table_insert(plan->wanted_xml, lab_guest_domain_name(lab, guest), xml);
	}
	plan->kind = LABUP_FRESH;
	/* Something of this lab already exists: the same lab (no-op or finish
	 * it), a changed lab file, or another lab file of the same name. */
	if (!labrun_exists(session->run) && session->domains->len) {
		g_autofree char *names = domain_names(session->domains);

		return ivlab_fail(error, "lab '%s': its domains exist (%s) but %s has no record of them "
				  "(brought up with another IVLAB_STATE_DIR?); run 'ivlab down %s' "
				  "there, or here to remove them", lab->name, names, session->run->dir,
				  lab->name);
	}
	if (labrun_exists(session->run) || session->domains->len)
		return plan_existing(session, plan, error);
	return TRUE;
}

void labup_plan_clear(struct labup_plan *plan)
{
	g_clear_pointer(&plan->wanted_xml, g_hash_table_unref);
	g_clear_pointer(&plan->restart, g_ptr_array_unref);
	g_clear_pointer(&plan->digest, g_free);
	g_clear_pointer(&plan->summary, g_free);
	g_clear_pointer(&plan->changes, g_ptr_array_unref);
}

/* guest's domain exists and runs (it keeps what it booted with). */
static gboolean guest_running(struct lab_session *session, const struct lab_guest *guest)
{
	g_autofree char *name = lab_guest_domain_name(session->lab, guest);

	for (guint d = 0; session->domains && d < session->domains->len; d++) {
		virDomainPtr dom = g_ptr_array_index(session->domains, d);

		if (strcmp(virDomainGetName(dom), name) == 0)
			return virt_is_running(dom);
	}
	return FALSE;
}

/* Servers, definitions, starts and hellos; on failure the caller undoes. */
/* `up -v`: how long each of its phases took, so its own overhead shows
 * beside the guests' boot profiles. */
static void up_phase(const char *what, gint64 *since)
{
	gint64 now = g_get_monotonic_time();

	ivlab_debug("up: %s in %.2f s", what, (now - *since) / 1e6);
	*since = now;
}

static gboolean create(struct lab_session *session, struct labup_plan *plan, int timeout_seconds,
		       GError **error)
{
	for (guint i = 0; i < plan->restart->len; i++) {
		virDomainPtr dom = g_ptr_array_index(plan->restart, i);

		if (virDomainDestroy(dom) < 0 && virt_is_running(dom))
			return virt_dom_error(error, dom, "cannot stop it to start it again");
		ivlab_info("%s: stopped, to start again with its region's new server",
			   virDomainGetName(dom));
	}
	gint64 since = g_get_monotonic_time();

	if (!start_servers(session->lab, session->run, session->conn, error))
		return FALSE;
	up_phase("servers started", &since);
	if (!labup_define_and_start(session->conn, session->lab, session->run, plan->wanted_xml,
				    timeout_seconds, error))
		return FALSE;
	up_phase("guests defined, started and ready", &since);
	return TRUE;
}

gboolean labup_apply(struct lab_session *session, struct labup_plan *plan, int timeout_seconds,
		     gboolean keep_failed, GError **error)
{
	const struct lab *lab = session->lab;
	g_autoptr(GError) up_error = NULL;
	g_autoptr(GError) down_error = NULL;

	if (plan->kind == LABUP_ALREADY_UP)
		return TRUE;
	gint64 since = g_get_monotonic_time();

	if (!labkernel_check(lab, error) || !preflight_check(session->conn, lab, error) ||
	    !ivlab_check_interrupt(error))
		return FALSE;
	up_phase("preflight", &since);
	if (!labup_ensure_images(lab, error) || !ivlab_check_interrupt(error) ||
	    !labup_check_shm_free(lab, session->run, error))
		return FALSE;
	up_phase("images checked", &since);
	/* Taken before the build: an edit during it shows as a change later.
	 * Guests that stay as they run keep what they booted with. */
	for (guint i = 0; i < lab->guests->len; i++) {
		const struct lab_guest *guest = g_ptr_array_index(lab->guests, i);
		struct session_guest *sg = &session->guests[i];
		g_autoptr(GPtrArray) inputs = NULL;

		if (guest_running(session, guest) && !g_ptr_array_find(plan->restart, sg->dom, NULL))
			continue;
		inputs = labboot_inputs(guest);
		labup_record_inputs(session->run, guest, inputs);
	}
	if (!labboot_prepare(lab, error) || !ivlab_check_interrupt(error)) {
		/* A fresh lab leaves nothing behind: not even its overlays. */
		if (plan->kind == LABUP_FRESH) {
			g_autofree char *dir = ivlab_lab_dir(lab->name);

			ivlab_remove_tree(dir, NULL);
		}
		return FALSE;
	}
	up_phase("guests' boot archives", &since);
	labrun_set_lab(session->run, session->path, plan->digest);
	if (!labrun_save(session->run, error))
		return FALSE;
	if (create(session, plan, timeout_seconds, &up_error))
		return TRUE;
	if (keep_failed) {
		ivlab_info("lab '%s' left as it is for inspection; 'ivlab down' removes it", lab->name);
	} else {
		ivlab_info("undoing the failed 'up' of lab '%s'", lab->name);
		if (!labrun_teardown(session->conn, lab->name, lab, FALSE, &down_error))
			ivlab_info("warning: undo incomplete: %s; run 'ivlab down'", down_error->message);
	}
	g_propagate_error(error, g_steal_pointer(&up_error));
	return FALSE;
}
