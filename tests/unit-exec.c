/* unit-exec.c: labexec (ivlab exec and cp) with the real agent started on
 * the host with --stdio over socket pairs in place of the libvirt channel:
 * two guests at once, output as it comes, statuses, a timeout, Ctrl-C, a
 * guest that cannot be reached, and files copied both ways. */
#include "config.h"

#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <glib/gstdio.h>

#include "agent-process.h"
#include "ivlab.h"
#include "labexec.h"
#include "labsession.h"

struct fixture {
	char *dir;
	char *lab_path;
	char *cmdline_path;
	struct agent_process agent;
	GString *output;
	GMutex lock;
	gint64 first_output_us;
};

static void fixture_set_up(struct fixture *fx, gconstpointer data)
{
	g_autoptr(GError) error = NULL;
	const char *lab =
		"<lab name='ex'>\n"
		"  <region name='mem' size='1MiB' mode='plain'/>\n"
		"  <guest name='one' arch='x86_64'><attach region='mem'/></guest>\n"
		"  <guest name='two' arch='x86_64'><attach region='mem'/></guest>\n"
		"</lab>\n";

	fx->dir = g_dir_make_tmp("unit-exec-XXXXXX", &error);
	g_assert_no_error(error);
	fx->lab_path = g_build_filename(fx->dir, "lab.xml", NULL);
	fx->cmdline_path = g_build_filename(fx->dir, "cmdline", NULL);
	g_assert_true(g_file_set_contents(fx->lab_path, lab, -1, NULL));
	g_assert_true(g_file_set_contents(fx->cmdline_path, "ivlab.lab=ex\n", -1, NULL));
	fx->output = g_string_new(NULL);
	g_mutex_init(&fx->lock);
	fx->agent = (struct agent_process){ .cmdline_path = fx->cmdline_path };
	fx->first_output_us = 0;
}

static void fixture_tear_down(struct fixture *fx, gconstpointer data)
{
	g_autofree char *command = g_strdup_printf("rm -rf '%s'", fx->dir);

	g_assert_true(g_spawn_command_line_sync(command, NULL, NULL, NULL, NULL));
	g_free(fx->lab_path);
	g_free(fx->cmdline_path);
	g_free(fx->dir);
	g_string_free(fx->output, TRUE);
	g_mutex_clear(&fx->lock);
}

/* "GUEST out|err TEXT" per piece of output, in arrival order. */
static void collect(struct session_guest *sg, enum labexec_stream stream, const char *text,
		    gsize length, gpointer data)
{
	struct fixture *fx = data;

	g_mutex_lock(&fx->lock);
	if (!fx->first_output_us)
		fx->first_output_us = g_get_monotonic_time();
	g_string_append_printf(fx->output, "%s %s %.*s", sg->guest->name,
			       stream == LABEXEC_STDOUT ? "out" : "err", (int)length, text);
	g_mutex_unlock(&fx->lock);
}

static struct labexec_result *run(struct fixture *fx, struct lab_session *session,
				  const char *command, guint timeout_ms, const volatile gint *cancel)
{
	struct session_guest *guests[] = { &session->guests[0], &session->guests[1] };
	g_autoptr(GError) error = NULL;
	struct labexec_result *results = labexec_run(session, guests, 2, command, timeout_ms,
						     collect, fx, cancel, &error);

	g_assert_no_error(error);
	g_assert_nonnull(results);
	return results;
}

static void test_two_guests(struct fixture *fx, gconstpointer data)
{
	g_autoptr(LabSession) session = agent_process_session(fx->lab_path, &fx->agent);
	gint64 start = g_get_monotonic_time();
	struct labexec_result *results =
		run(fx, session, "echo first; sleep 1; echo second >&2; exit 3", 0, NULL);
	gint64 end = g_get_monotonic_time();

	for (int i = 0; i < 2; i++) {
		g_assert_cmpint(results[i].end, ==, LABEXEC_EXITED);
		g_assert_cmpint(labexec_exit_status(&results[i]), ==, 3);
	}
	g_assert_true(strstr(fx->output->str, "one out first\n"));
	g_assert_true(strstr(fx->output->str, "two out first\n"));
	g_assert_true(strstr(fx->output->str, "one err second\n"));
	g_assert_true(strstr(fx->output->str, "two err second\n"));
	/* both at once, and the first line before the end */
	g_assert_cmpint(end - start, <, 1900000);
	g_assert_cmpint(end - fx->first_output_us, >, 700000);
	labexec_results_free(results, 2);
}

static void test_ends(struct fixture *fx, gconstpointer data)
{
	g_autoptr(LabSession) session = agent_process_session(fx->lab_path, &fx->agent);
	struct labexec_result *results = run(fx, session, "printf 'no newline'; kill -TERM $$", 0, NULL);
	g_autofree char *text = labexec_describe(&results[0]);

	g_assert_cmpint(results[0].end, ==, LABEXEC_SIGNALED);
	g_assert_cmpint(labexec_exit_status(&results[0]), ==, 128 + 15);
	g_assert_true(g_str_has_prefix(text, "killed by signal 15"));
	g_assert_true(strstr(fx->output->str, "one out no newline"));
	labexec_results_free(results, 2);

	gint64 start = g_get_monotonic_time();
	results = run(fx, session, "sleep 30", 300, NULL);
	g_assert_cmpint(results[1].end, ==, LABEXEC_TIMED_OUT);
	g_assert_cmpint(labexec_exit_status(&results[1]), ==, LABEXEC_EXIT_TIMEOUT);
	g_assert_cmpint(g_get_monotonic_time() - start, <, 5000000);
	labexec_results_free(results, 2);
}

static volatile gint cancel_flag;

static gboolean set_cancel(gpointer data)
{
	g_atomic_int_set(&cancel_flag, 1);
	return G_SOURCE_REMOVE;
}

static gpointer cancel_later(gpointer data)
{
	g_usleep(400000);
	set_cancel(NULL);
	return NULL;
}

static void test_cancel(struct fixture *fx, gconstpointer data)
{
	g_autoptr(LabSession) session = agent_process_session(fx->lab_path, &fx->agent);
	GThread *thread;
	struct labexec_result *results;
	gint64 start = g_get_monotonic_time();

	g_atomic_int_set(&cancel_flag, 0);
	thread = g_thread_new("cancel", cancel_later, NULL);
	results = run(fx, session, "sleep 30", 0, &cancel_flag);
	g_thread_join(thread);
	for (int i = 0; i < 2; i++) {
		g_assert_cmpint(results[i].end, ==, LABEXEC_CANCELLED);
		g_assert_cmpint(labexec_exit_status(&results[i]), ==, LABEXEC_EXIT_CANCELLED);
	}
	g_assert_cmpint(g_get_monotonic_time() - start, <, 3000000);
	labexec_results_free(results, 2);
}

static void test_unreachable(struct fixture *fx, gconstpointer data)
{
	g_autoptr(LabSession) session = agent_process_session(fx->lab_path, &fx->agent);
	struct labexec_result *results;

	fx->agent.refuse = TRUE;
	results = run(fx, session, "true", 0, NULL);
	g_assert_cmpint(results[0].end, ==, LABEXEC_UNREACHABLE);
	g_assert_cmpint(labexec_exit_status(&results[0]), ==, LABEXEC_EXIT_UNREACHABLE);
	g_assert_nonnull(strstr(results[0].error, "not running"));
	labexec_results_free(results, 2);
}

static void test_shell_join(struct fixture *fx, gconstpointer data)
{
	g_auto(GStrv) one = g_strsplit("echo $HOME | wc -c", ",", -1);
	g_auto(GStrv) several = g_strsplit("printf,%s|,a b,$x,it's", ",", -1);
	g_autofree char *plain = labexec_shell_join(1, one);
	g_autofree char *quoted = labexec_shell_join(5, several);

	g_assert_cmpstr(plain, ==, "echo $HOME | wc -c");
	g_assert_cmpstr(quoted, ==, "'printf' '%s|' 'a b' '$x' 'it'\\''s'");
}

static char *file_sha256(const char *path)
{
	g_autofree char *contents = NULL;
	gsize length;

	g_assert_true(g_file_get_contents(path, &contents, &length, NULL));
	return g_compute_checksum_for_data(G_CHECKSUM_SHA256, (const guchar *)contents, length);
}

static gboolean has_part_files(const char *dir)
{
	g_autoptr(GDir) handle = g_dir_open(dir, 0, NULL);
	const char *name;

	while (handle && (name = g_dir_read_name(handle)))
		if (strstr(name, ".ivlab-part"))
			return TRUE;
	return FALSE;
}

static void test_copy(struct fixture *fx, gconstpointer data)
{
	g_autoptr(LabSession) session = agent_process_session(fx->lab_path, &fx->agent);
	struct session_guest *sg = &session->guests[0];
	g_autofree char *local = g_build_filename(fx->dir, "local", NULL);
	g_autofree char *remote_dir = g_build_filename(fx->dir, "guest dir", NULL);
	g_autofree char *remote_dir_slash = g_strconcat(remote_dir, "/", NULL);
	g_autofree char *remote = g_build_filename(remote_dir, "local", NULL);
	g_autofree char *back = g_build_filename(fx->dir, "back", NULL);
	g_autofree char *missing = g_build_filename(fx->dir, "missing", "x", NULL);
	g_autofree char *want = NULL, *got = NULL, *got_back = NULL;
	g_autofree guchar *bytes = g_malloc(3 << 20);
	struct labexec_copy copy = { 0 };
	g_autoptr(GError) error = NULL;

	for (gsize i = 0; i < (3 << 20); i++)
		bytes[i] = (guchar)g_random_int();
	g_assert_true(g_file_set_contents(local, (const char *)bytes, (3 << 20) - 7, NULL));
	g_assert_cmpint(g_mkdir(remote_dir, 0755), ==, 0);
	want = file_sha256(local);

	g_assert_true(labexec_put(session, sg, local, remote_dir_slash, NULL, &copy, &error));
	g_assert_no_error(error);
	g_assert_cmpstr(copy.remote_path, ==, remote);
	g_assert_cmpuint(copy.bytes, ==, (3 << 20) - 7);
	g_assert_cmpstr(copy.sha256, ==, want);
	got = file_sha256(remote);
	g_assert_cmpstr(got, ==, want);
	labexec_copy_clear(&copy);

	g_assert_true(labexec_get(session, sg, remote, back, NULL, &copy, &error));
	g_assert_no_error(error);
	got_back = file_sha256(back);
	g_assert_cmpstr(got_back, ==, want);
	labexec_copy_clear(&copy);

	/* a remote file that is not there; a directory that is not there */
	g_assert_false(labexec_get(session, sg, missing, back, NULL, &copy, &error));
	g_assert_nonnull(strstr(error->message, "No such file"));
	g_clear_error(&error);
	g_assert_false(labexec_put(session, sg, local, missing, NULL, &copy, &error));
	g_assert_nonnull(strstr(error->message, "No such file"));
	g_clear_error(&error);
	g_assert_false(labexec_put(session, sg, missing, remote, NULL, &copy, &error));
	g_assert_nonnull(strstr(error->message, "cannot read"));
	g_clear_error(&error);
	/* the agent still answers, and nothing half-written is left */
	g_assert_true(labexec_get(session, sg, remote, back, NULL, &copy, &error));
	labexec_copy_clear(&copy);
	g_assert_false(has_part_files(fx->dir));
	g_assert_false(has_part_files(remote_dir));
}

int main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	ivlab_set_verbosity(0, TRUE);
#define ADD(path, fn) \
	g_test_add(path, struct fixture, NULL, fixture_set_up, fn, fixture_tear_down)
	ADD("/exec/two-guests", test_two_guests);
	ADD("/exec/ends", test_ends);
	ADD("/exec/cancel", test_cancel);
	ADD("/exec/unreachable", test_unreachable);
	ADD("/exec/shell-join", test_shell_join);
	ADD("/cp/both-ways", test_copy);
	return g_test_run();
}
