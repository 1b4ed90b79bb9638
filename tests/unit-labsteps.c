/* unit-labsteps.c: lab-defined tests run by the real agent (on the host,
 * over a socket pair): order of background and foreground steps, expected
 * statuses, a failing step's output in the report, the deadline. */
#include "config.h"

#include <signal.h>
#include <string.h>
#include <glib/gstdio.h>

#include "agent-process.h"
#include "ivlab.h"
#include "labsteps.h"

struct fixture {
	char *dir;
	char *cmdline_path;
	char *lab_path;
	struct agent_process agent;
};

static void fixture_set_up(struct fixture *fx, gconstpointer data)
{
	g_autoptr(GError) error = NULL;

	fx->dir = g_dir_make_tmp("unit-labsteps-XXXXXX", &error);
	g_assert_no_error(error);
	fx->cmdline_path = g_build_filename(fx->dir, "cmdline", NULL);
	fx->lab_path = g_build_filename(fx->dir, "lab.xml", NULL);
	g_assert_true(g_file_set_contents(fx->cmdline_path, "ivlab.lab=steps ivlab.guest=solo\n", -1,
					  NULL));
	fx->agent = (struct agent_process){ .cmdline_path = fx->cmdline_path };
}

static void fixture_tear_down(struct fixture *fx, gconstpointer data)
{
	g_autofree char *marker = g_build_filename(fx->dir, "marker", NULL);

	g_unlink(marker);
	g_unlink(fx->cmdline_path);
	g_unlink(fx->lab_path);
	g_rmdir(fx->dir);
	g_free(fx->dir);
	g_free(fx->cmdline_path);
	g_free(fx->lab_path);
}

/* Run the lab's one test; the report's only case. */
static const struct report_case *run_test(struct fixture *fx, const char *test_xml,
					  struct report *report)
{
	g_autofree char *lab = g_strdup_printf(
		"<lab name='steps'>\n"
		"  <region name='mem' size='1MiB' mode='plain'/>\n"
		"  <guest name='solo' arch='x86_64'><attach region='mem'/></guest>\n"
		"  %s\n"
		"</lab>\n", test_xml);
	g_autoptr(LabSession) session = NULL;

	g_assert_true(g_file_set_contents(fx->lab_path, lab, -1, NULL));
	session = agent_process_session(fx->lab_path, &fx->agent);
	g_assert_cmpuint(session->lab->tests->len, ==, 1);
	labsteps_run(session, g_ptr_array_index(session->lab->tests, 0), report);
	g_assert_cmpuint(report_len(report), ==, 1);
	return report_get(report, 0);
}

static void test_pass(struct fixture *fx, gconstpointer data)
{
	g_autoptr(Report) report = report_new("steps");
	g_autofree char *xml = g_strdup_printf(
		"<test name='order' timeout='20s'>"
		/* waits for the marker the foreground step makes */
		"<step guest='solo' background='yes'>while [ ! -e %s/marker ]; do sleep 0.05; done; echo saw it</step>"
		"<step guest='solo'>echo making; touch %s/marker</step>"
		"<step guest='solo' expect='3'>exit 3</step>"
		"</test>", fx->dir, fx->dir);
	const struct report_case *item = run_test(fx, xml, report);

	g_assert_cmpstr(item->name, ==, "lab/order");
	g_assert_cmpint(item->status, ==, REPORT_PASS);
	g_assert_cmpstr(item->reason, ==, "3 steps ended as expected");
	g_assert_nonnull(strstr(item->output, "[solo step 1] saw it"));
	g_assert_nonnull(strstr(item->output, "[solo step 2] making"));
	kill(fx->agent.pid, SIGKILL);
}

static void test_failing_step(struct fixture *fx, gconstpointer data)
{
	g_autoptr(Report) report = report_new("steps");
	const struct report_case *item = run_test(fx,
		"<test name='bad'>"
		"<step guest='solo'>echo before; echo oops &gt;&amp;2; exit 2</step>"
		"<step guest='solo'>echo never</step>"
		"</test>", report);

	g_assert_cmpint(item->status, ==, REPORT_FAIL);
	g_assert_nonnull(strstr(item->reason, "step 1 (solo) exited with status 2, expected 0"));
	g_assert_nonnull(strstr(item->reason, "oops"));
	/* The test stops at the first failed step. */
	g_assert_null(strstr(item->output, "never"));
	kill(fx->agent.pid, SIGKILL);
}

static void test_timeout(struct fixture *fx, gconstpointer data)
{
	g_autoptr(Report) report = report_new("steps");
	const struct report_case *item = run_test(fx,
		"<test name='slow' timeout='1s'>"
		"<step guest='solo' background='yes'>sleep 60</step>"
		"<step guest='solo'>echo quick</step>"
		"</test>", report);

	g_assert_cmpint(item->status, ==, REPORT_FAIL);
	g_assert_nonnull(strstr(item->reason, "timed out after 1.0 s: step 1 (solo, background) still ran"));
	/* Killed at the deadline, not waited for: well under the sleep. */
	g_assert_cmpfloat(item->seconds, <, 30);
	kill(fx->agent.pid, SIGKILL);
}

int main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	signal(SIGPIPE, SIG_IGN);
	g_test_add("/labsteps/pass", struct fixture, NULL, fixture_set_up, test_pass,
		   fixture_tear_down);
	g_test_add("/labsteps/failing-step", struct fixture, NULL, fixture_set_up, test_failing_step,
		   fixture_tear_down);
	g_test_add("/labsteps/timeout", struct fixture, NULL, fixture_set_up, test_timeout,
		   fixture_tear_down);
	return g_test_run();
}
