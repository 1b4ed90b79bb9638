/* unit-session.c: the lab session layer with the real agent, started on
 * the host with --stdio over a socket pair and file-backed regions, in
 * place of the libvirt channel: hello, region discovery, IVPositions, a
 * guest whose agent dies, and the guest-name check commands rely on. */
#include "config.h"

#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <glib/gstdio.h>

#include "ivlab.h"
#include "agent-process.h"
#include "labsession.h"

#define TIMEOUT_MS 10000

struct fixture {
	char *dir;
	char *lab_path;
	char *cmdline_path;
	char *region_path;
	struct agent_process agent;
};

static void fixture_set_up(struct fixture *fx, gconstpointer data)
{
	g_autoptr(GError) error = NULL;
	const char *lab =
		"<lab name='sess'>\n"
		"  <region name='mem' size='1MiB' mode='plain'/>\n"
		"  <guest name='solo' arch='x86_64'><attach region='mem'/></guest>\n"
		"</lab>\n";
	g_autofree char *zeros = g_malloc0(1 << 20);

	fx->dir = g_dir_make_tmp("unit-session-XXXXXX", &error);
	g_assert_no_error(error);
	fx->lab_path = g_build_filename(fx->dir, "lab.xml", NULL);
	fx->cmdline_path = g_build_filename(fx->dir, "cmdline", NULL);
	fx->region_path = g_build_filename(fx->dir, "mem", NULL);
	g_assert_true(g_file_set_contents(fx->lab_path, lab, -1, NULL));
	g_assert_true(g_file_set_contents(fx->cmdline_path, "ivlab.lab=sess ivlab.guest=solo\n", -1, NULL));
	g_assert_true(g_file_set_contents(fx->region_path, zeros, 1 << 20, NULL));
	fx->agent = (struct agent_process){ .cmdline_path = fx->cmdline_path };
}

static void fixture_tear_down(struct fixture *fx, gconstpointer data)
{
	g_unlink(fx->lab_path);
	g_unlink(fx->cmdline_path);
	g_unlink(fx->region_path);
	g_rmdir(fx->dir);
	g_free(fx->lab_path);
	g_free(fx->cmdline_path);
	g_free(fx->region_path);
	g_free(fx->dir);
}

static void test_reach_and_regions(struct fixture *fx, gconstpointer data)
{
	g_autofree char *spec = g_strdup_printf("mem=%s", fx->region_path);
	g_autoptr(LabSession) session = NULL;
	g_autoptr(GError) error = NULL;
	g_autoptr(GString) seen = g_string_new(NULL);
	g_autoptr(GString) problems = g_string_new(NULL);
	struct session_guest *sg;

	fx->agent.region_spec = spec;
	session = agent_process_session(fx->lab_path, &fx->agent);
	sg = labsession_guest(session, "solo");
	g_assert_nonnull(sg);
	g_assert_cmpstr(sg->domain_name, ==, "sess-solo");
	g_assert_true(labsession_reach_all(session, TRUE, TIMEOUT_MS, &error));
	g_assert_no_error(error);
	g_assert_cmpstr(agent_reply_get(sg->hello, "guest"), ==, "solo");
	g_assert_cmpstr(agent_reply_get(sg->hello, "lab"), ==, "sess");
	/* Reached once: a second reach reuses the link. */
	g_assert_true(labsession_reach(session, sg, TRUE, TIMEOUT_MS, &error));
	g_assert_cmpuint(fx->agent.opened, ==, 1);

	g_assert_true(labsession_learn_regions(session, sg, TIMEOUT_MS, seen, problems));
	g_assert_cmpstr(problems->str, ==, "");
	g_assert_true(sg->region_ok[0]);
	g_assert_nonnull(strstr(seen->str, "mem 1MiB plain"));
	kill(fx->agent.pid, SIGKILL);
}

static void test_region_missing(struct fixture *fx, gconstpointer data)
{
	g_autoptr(LabSession) session = agent_process_session(fx->lab_path, &fx->agent);
	g_autoptr(GError) error = NULL;
	g_autoptr(GString) problems = g_string_new(NULL);
	struct session_guest *sg = &session->guests[0];

	/* No region given to the agent: the lab's region is not seen. */
	g_assert_true(labsession_reach(session, sg, TRUE, TIMEOUT_MS, &error));
	g_assert_false(labsession_learn_regions(session, sg, TIMEOUT_MS, NULL, problems));
	g_assert_false(sg->region_ok[0]);
	g_assert_cmpint(sg->ids[0], ==, -1);
	/* The agent has no region: the first request is out of range. */
	g_assert_nonnull(strstr(problems->str, "region index=0"));
	kill(fx->agent.pid, SIGKILL);
}

static void test_agent_dies(struct fixture *fx, gconstpointer data)
{
	g_autoptr(LabSession) session = agent_process_session(fx->lab_path, &fx->agent);
	g_autoptr(GError) error = NULL;
	struct session_guest *sg = &session->guests[0];
	AgentReply *reply;

	g_assert_true(labsession_reach(session, sg, TRUE, TIMEOUT_MS, &error));
	kill(fx->agent.pid, SIGKILL);
	reply = labsession_ask(sg, TIMEOUT_MS, &error, "hello");
	g_assert_null(reply);
	g_assert_nonnull(error);
	/* No libvirt domain behind it: "stopped answering", and it stays gone. */
	g_assert_nonnull(sg->gone);
	g_assert_nonnull(strstr(sg->gone, "guest solo stopped answering"));
	g_clear_error(&error);
	g_assert_false(labsession_reach(session, sg, TRUE, TIMEOUT_MS, &error));
	g_assert_cmpstr(error->message, ==, sg->gone);
	g_assert_cmpuint(fx->agent.opened, ==, 1);
}

static void test_bound_region(struct fixture *fx, gconstpointer data)
{
	g_autofree char *module = g_build_filename(g_getenv("top_srcdir") ?: ".", "tests", "data",
						   "modules", "ivtest", NULL);
	g_autofree char *lab = g_strdup_printf(
		"<lab name='sess'>\n"
		"  <region name='mem' size='1MiB' mode='plain'/>\n"
		"  <guest name='solo' arch='x86_64'><attach region='mem'/>\n"
		"    <module src='%s' bind='mem'/></guest>\n"
		"</lab>\n", module);
	g_autoptr(LabSession) session = NULL;
	g_autoptr(GError) error = NULL;
	g_autoptr(GString) seen = g_string_new(NULL);
	g_autoptr(GString) problems = g_string_new(NULL);
	struct session_guest *sg;

	g_assert_true(g_file_set_contents(fx->lab_path, lab, -1, NULL));
	session = agent_process_session(fx->lab_path, &fx->agent);
	sg = &session->guests[0];
	g_assert_true(labsession_reach(session, sg, TRUE, TIMEOUT_MS, &error));
	/* The agent has no device for it: not asked, not a problem. */
	g_assert_true(labsession_learn_regions(session, sg, TIMEOUT_MS, seen, problems));
	g_assert_cmpstr(seen->str, ==, "mem bound to ivtest (not checked)");
	g_assert_false(sg->region_ok[0]);
	kill(fx->agent.pid, SIGKILL);
}

static void test_default_opener_without_domain(struct fixture *fx, gconstpointer data)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(LabSession) session = labsession_open(fx->lab_path, &error);
	char *names[] = { (char *)"solo", (char *)"nosuch" };

	g_assert_no_error(error);
	/* Without a connection no guest has a domain: the default opener says so. */
	g_assert_false(labsession_reach(session, &session->guests[0], FALSE, TIMEOUT_MS, &error));
	g_assert_cmpstr(error->message, ==, "guest solo is not defined (is the lab up?)");
	g_clear_error(&error);
	g_assert_true(labsession_check_guests(session, 1, names, &error));
	g_assert_false(labsession_check_guests(session, 2, names, &error));
	g_assert_nonnull(strstr(error->message, "the lab 'sess' has no guest 'nosuch'"));
}

int main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	signal(SIGPIPE, SIG_IGN);
	g_test_add("/session/reach-and-regions", struct fixture, NULL, fixture_set_up,
		   test_reach_and_regions, fixture_tear_down);
	g_test_add("/session/region-missing", struct fixture, NULL, fixture_set_up,
		   test_region_missing, fixture_tear_down);
	g_test_add("/session/agent-dies", struct fixture, NULL, fixture_set_up, test_agent_dies,
		   fixture_tear_down);
	g_test_add("/session/bound-region", struct fixture, NULL, fixture_set_up, test_bound_region,
		   fixture_tear_down);
	g_test_add("/session/default-opener", struct fixture, NULL, fixture_set_up,
		   test_default_opener_without_domain, fixture_tear_down);
	return g_test_run();
}
