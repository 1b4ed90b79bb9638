/* unit-lab-run.c: the lab runtime's pieces without anything real: agent
 * protocol framing over a socket pair, the pattern, reports, and the lab's
 * domains on libvirt's test:///default driver (only its own are touched). */
#include "config.h"

#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <glib/gstdio.h>
#include <libxml/parser.h>
#include <libxml/relaxng.h>

#include "agentlink.h"
#include "ivlab.h"
#include "labrun.h"
#include "report.h"
#include "virt.h"

static void test_parse_line(void)
{
	AgentReply *reply = NULL;
	g_autofree char *code = NULL, *message = NULL;

	g_assert_true(agent_parse_line("ok proto=1 agent=0.1 log=a%20b%25c", &reply, &code, &message));
	g_assert_cmpstr(agent_reply_get(reply, "proto"), ==, "1");
	g_assert_cmpstr(agent_reply_get(reply, "log"), ==, "a b%c");
	g_assert_null(agent_reply_get(reply, "missing"));
	g_hash_table_unref(reply);

	g_assert_false(agent_parse_line("err range offset past the end", &reply, &code, &message));
	g_assert_null(reply);
	g_assert_cmpstr(code, ==, "range");
	g_assert_cmpstr(message, ==, "offset past the end");
	g_clear_pointer(&code, g_free);
	g_clear_pointer(&message, g_free);

	g_assert_false(agent_parse_line("hello there", &reply, &code, &message));
	g_assert_cmpstr(code, ==, "proto");
	g_clear_pointer(&code, g_free);
	g_clear_pointer(&message, g_free);
	g_assert_false(agent_parse_line("ok novalue", &reply, &code, &message));
	g_assert_cmpstr(code, ==, "proto");
}

static void test_percent(void)
{
	g_autofree char *encoded = agent_percent_encode("a b%c\nd");
	g_autofree char *decoded = agent_percent_decode(encoded);

	g_assert_cmpstr(encoded, ==, "a%20b%25c%0Ad");
	g_assert_cmpstr(decoded, ==, "a b%c\nd");
}

static void test_pattern(void)
{
	guint8 buffer[64];

	/* splitmix64's well-known first output for state 0. */
	g_assert_cmphex(ivlab_splitmix64(0), ==, 0xe220a8397b1dcdafULL);
	agent_pattern_fill(buffer, 0, sizeof(buffer), 0);
	g_assert_cmphex(buffer[0], ==, 0xaf);
	g_assert_cmphex(buffer[7], ==, 0xe2);
	g_assert_cmpint(agent_pattern_check(buffer, 0, sizeof(buffer), 0), ==, -1);
	/* Any sub-range, at any offset, is the same pattern. */
	g_assert_cmpint(agent_pattern_check(buffer + 13, 13, 20, 0), ==, -1);
	buffer[21] ^= 1;
	g_assert_cmpint(agent_pattern_check(buffer, 0, sizeof(buffer), 0), ==, 21);
	g_assert_cmpint(agent_pattern_check(buffer, 0, sizeof(buffer), 1), ==, 0);
	/* Whole words and the bytes around them agree with the byte rule at
	 * every start alignment, and a bad byte inside a word is found. */
	for (guint64 start = 0; start < 9; start++) {
		agent_pattern_fill(buffer, start, 40, 42);
		for (guint64 i = 0; i < 40; i++)
			g_assert_cmphex(buffer[i], ==, ivlab_pattern_byte(42, start + i));
		buffer[30] ^= 0x80;
		g_assert_cmpint(agent_pattern_check(buffer, start, 40, 42), ==, start + 30);
	}
}

/* A scripted agent on the other end of a socket pair: reads lines, answers
 * from the script ("" = stay silent, NULL = close). */
struct script {
	int fd;
	const char *const *answers;
	gboolean linger; /* after the script, keep the channel open until the host leaves */
};

static gpointer scripted_agent(gpointer data)
{
	struct script *script = data;
	g_autoptr(GString) line = g_string_new(NULL);
	char c;

	if (write(script->fd, "ready proto=1\n", 14) != 14)
		return NULL;
	for (const char *const *answer = script->answers; *answer;) {
		if (read(script->fd, &c, 1) != 1)
			break;
		if (c != '\n') {
			g_string_append_c(line, c);
			continue;
		}
		if (**answer && write(script->fd, *answer, strlen(*answer)) < 0)
			break;
		answer++;
		g_string_truncate(line, 0);
	}
	while (script->linger && read(script->fd, &c, 1) == 1)
		;
	close(script->fd);
	return NULL;
}

static void test_link(void)
{
	/* The agent announces itself first, so the host says hello twice: both
	 * hellos are answered, and the second answer must not be taken for the
	 * answer of the next request. */
	static const char *const answers[] = {
		"ok proto=1 agent=t arch=x86_64 kernel=k guest=g lab=l regions=1\n",
		"ok proto=1 agent=t arch=x86_64 kernel=k guest=g lab=l regions=1\n",
		"ok value=42\n",
		"err nodev no such region\n",
		NULL,
	};
	int pair[2];
	struct script script;
	g_autoptr(GError) error = NULL;
	AgentReply *reply;
	guint64 value = 0;

	g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), ==, 0);
	script.fd = pair[1];
	script.answers = answers;
	script.linger = FALSE;
	GThread *thread = g_thread_new("agent", scripted_agent, &script);
	g_autoptr(AgentLink) link = agent_link_new_fd(pair[0], "g");

	reply = agent_hello(link, 5000, &error);
	g_assert_no_error(error);
	g_assert_cmpstr(agent_reply_get(reply, "guest"), ==, "g");
	g_hash_table_unref(reply);

	/* Two requests in flight, answered in order. */
	g_assert_true(agent_send(link, &error, "atomic_add region=r offset=0 count=1"));
	g_assert_true(agent_send(link, &error, "fill region=nope offset=0 length=1 seed=0"));
	reply = agent_receive(link, 5000, &error);
	g_assert_no_error(error);
	g_assert_true(agent_reply_u64(reply, "value", &value, NULL));
	g_assert_cmpuint(value, ==, 42);
	g_hash_table_unref(reply);
	reply = agent_receive(link, 5000, &error);
	g_assert_null(reply);
	g_assert_cmpstr(error->message, ==, "g: agent: fill: nodev: no such region");
	g_assert_false(agent_link_broken(link));
	g_clear_error(&error);

	/* The agent went away: an error naming the guest and the verb. */
	reply = agent_request(link, 5000, &error, "irqcount region=r");
	g_assert_null(reply);
	/* Closed before the request went out, or before its answer came. */
	g_assert_true(g_str_has_prefix(error->message, "g: agent: irqcount: "));
	g_assert_true(agent_link_broken(link));
	g_thread_join(thread);
}

static void test_link_timeout(void)
{
	static const char *const answers[] = { "", NULL };
	int pair[2];
	struct script script;
	g_autoptr(GError) error = NULL;

	g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), ==, 0);
	script.fd = pair[1];
	script.answers = answers;
	script.linger = TRUE;
	GThread *thread = g_thread_new("agent", scripted_agent, &script);
	g_autoptr(AgentLink) link = agent_link_new_fd(pair[0], "slow");

	g_assert_null(agent_request(link, 200, &error, "dmesg"));
	g_assert_cmpstr(error->message, ==, "slow: agent: dmesg: no answer in time");
	g_assert_true(agent_link_broken(link));
	g_clear_pointer(&link, agent_link_free);
	g_thread_join(thread);
}

/* An agent that never ends its line: an error, and the link is out of step. */
static gpointer endless_agent(gpointer data)
{
	int fd = GPOINTER_TO_INT(data);
	char chunk[4096];

	memset(chunk, 'x', sizeof(chunk));
	for (gsize sent = 0; sent < 2 * IVLAB_AGENT_RESPONSE_MAX; sent += sizeof(chunk))
		if (send(fd, chunk, sizeof(chunk), MSG_NOSIGNAL) < 0)
			break;
	close(fd);
	return NULL;
}

static void test_link_endless_line(void)
{
	int pair[2];
	g_autoptr(GError) error = NULL;

	g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), ==, 0);
	GThread *thread = g_thread_new("agent", endless_agent, GINT_TO_POINTER(pair[1]));
	g_autoptr(AgentLink) link = agent_link_new_fd(pair[0], "long");

	g_assert_null(agent_request(link, 5000, &error, "dmesg"));
	g_assert_cmpstr(error->message, ==, "long: agent: dmesg: response longer than 1048576 bytes");
	g_assert_true(agent_link_broken(link));
	g_clear_pointer(&link, agent_link_free);
	g_thread_join(thread);
}

/* doc against man/schema/junit.rng, the grammar ivlab(1) documents. */
static int junit_validate(xmlDoc *doc)
{
	g_autofree char *rng = g_build_filename(g_getenv("top_srcdir"), "man", "schema", "junit.rng", NULL);
	xmlRelaxNGParserCtxtPtr parser = xmlRelaxNGNewParserCtxt(rng);
	xmlRelaxNGPtr schema = xmlRelaxNGParse(parser);
	xmlRelaxNGValidCtxtPtr valid;
	int result;

	g_assert_nonnull(schema);
	valid = xmlRelaxNGNewValidCtxt(schema);
	result = xmlRelaxNGValidateDoc(valid, doc);
	xmlRelaxNGFreeValidCtxt(valid);
	xmlRelaxNGFree(schema);
	xmlRelaxNGFreeParserCtxt(parser);
	return result;
}

static void test_report(void)
{
	g_autoptr(Report) report = report_new("lab");
	g_autofree char *dir = g_dir_make_tmp("unit-lab-run-XXXXXX", NULL);
	g_autofree char *path = g_build_filename(dir, "junit.xml", NULL);
	g_autofree char *tap = NULL;
	g_autoptr(GError) error = NULL;
	xmlDoc *doc;
	char *buffer = NULL;
	size_t size = 0;
	FILE *out = open_memstream(&buffer, &size);

	/* What `ivlab test --tap` does: stream the cases, then the plan. */
	report_stream(report, out, TRUE);
	report_add(report, "pattern/bell/a", REPORT_PASS, 0.5, "4MiB by a verified by b");
	report_add(report, "doorbell/bell/a->b", REPORT_FAIL, 0.1, "vector 1 counted 2 times\nexpected once");
	report_add(report, "atomic/bell", REPORT_SKIP, 0, "one guest");
	report_add(report, "agent/a", REPORT_PASS, 0.2, "%s", "");
	g_assert_cmpuint(report_count(report, REPORT_FAIL), ==, 1);
	report_print_tap_plan(report, out);
	fclose(out);
	tap = buffer;
	g_assert_cmpstr(tap, ==, "TAP version 13\n"
			"ok 1 - pattern/bell/a: 4MiB by a verified by b\n"
			"not ok 2 - doorbell/bell/a->b: vector 1 counted 2 times expected once\n"
			"ok 3 - atomic/bell # SKIP one guest\n"
			"ok 4 - agent/a\n"
			"1..4\n");
	g_assert_true(report_write_junit(report, path, &error));
	doc = xmlReadFile(path, NULL, 0);
	g_assert_nonnull(doc);
	xmlNode *suite = xmlDocGetRootElement(doc)->children;
	while (suite && suite->type != XML_ELEMENT_NODE)
		suite = suite->next;
	xmlChar *failures = xmlGetProp(suite, (const xmlChar *)"failures");
	g_assert_cmpstr((const char *)failures, ==, "1");
	xmlFree(failures);
	g_assert_cmpint(junit_validate(doc), ==, 0);
	xmlSetProp(suite, (const xmlChar *)"tests", (const xmlChar *)"many");
	g_assert_cmpint(junit_validate(doc), !=, 0);
	xmlFreeDoc(doc);
	g_unlink(path);
	g_rmdir(dir);
}

static virDomainPtr define(virConnectPtr conn, const char *name, const char *lab_name)
{
	g_autofree char *metadata = lab_name ?
		g_strdup_printf("<metadata><ivlab:lab xmlns:ivlab='%s' name='%s' guest='%s' arch='x86_64'/>"
				"</metadata>", "http://ivlab.org/xmlns/ivlab/1", lab_name, name) :
		g_strdup("");
	g_autofree char *xml = g_strdup_printf("<domain type='test'><name>%s</name>%s"
					       "<memory>65536</memory><os><type>hvm</type></os></domain>",
					       name, metadata);
	g_autoptr(GError) error = NULL;
	virDomainPtr dom = virt_define(conn, xml, &error);

	g_assert_no_error(error);
	return dom;
}

static gboolean domain_exists(virConnectPtr conn, const char *name)
{
	virDomainPtr dom = virDomainLookupByName(conn, name);

	if (!dom) {
		virResetLastError();
		return FALSE;
	}
	virDomainFree(dom);
	return TRUE;
}

static void test_lab_domains(void)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(virConnect) conn = virt_connect("test:///default", &error);
	g_autoptr(GPtrArray) domains = NULL;
	g_autoptr(virDomain) ours = NULL, not_ivlab = NULL, other_lab = NULL;
	g_autoptr(virt_meta) meta = NULL;

	g_assert_no_error(error);
	ours = define(conn, "unit-a", "unit");
	not_ivlab = define(conn, "unit-b", NULL);
	other_lab = define(conn, "unit-x-c", "unit-x");
	g_assert_true(virt_start(ours, &error));
	g_assert_true(virt_is_running(ours));
	meta = virt_domain_meta(ours);
	g_assert_cmpstr(meta->lab, ==, "unit");
	g_assert_cmpstr(meta->guest, ==, "unit-a");

	domains = virt_lab_domains(conn, "unit", &error);
	g_assert_no_error(error);
	g_assert_cmpuint(domains->len, ==, 1);
	g_assert_cmpstr(virDomainGetName(g_ptr_array_index(domains, 0)), ==, "unit-a");

	/* The teardown touches the lab's own domain only, and twice is fine. */
	labrun_teardown(conn, "unit", NULL, FALSE, &error);
	g_assert_no_error(error);
	g_assert_false(domain_exists(conn, "unit-a"));
	g_assert_true(domain_exists(conn, "unit-b"));
	g_assert_true(domain_exists(conn, "unit-x-c"));
	g_assert_true(domain_exists(conn, "test"));
	g_assert_true(labrun_teardown(conn, "unit", NULL, FALSE, &error));
}

static void test_connect_errors(void)
{
	g_autoptr(GError) error = NULL;
	g_autoptr(virConnect) conn = virt_connect("qemu:///system?socket=/nonexistent/ivlab/sock", &error);

	g_assert_null(conn);
	g_assert_nonnull(strstr(error->message, "libvirtd is not running"));
	g_assert_nonnull(strstr(error->message, "libvirtd -d"));
}

static void test_uri_is_local(void)
{
	g_autofree char *here = g_strdup_printf("qemu+ssh://root@%s/system", g_get_host_name());
	const char *const local[] = {
		"qemu:///system", "qemu:///session", "test:///default", "qemu+unix:///system",
		"qemu+unix:///system?socket=/tmp/s", "qemu+ssh://localhost/system",
		"qemu+tcp://127.0.0.1/system", "qemu+ssh://[::1]/system", here,
	};
	const char *const remote[] = {
		"qemu+ssh://root@remote.example.org/system", "qemu+tcp://192.0.2.7/system",
		"qemu+tls://[2001:db8::1]/system", "qemu+ssh://other/session",
	};

	for (gsize i = 0; i < G_N_ELEMENTS(local); i++)
		g_assert_true(virt_uri_is_local(local[i]));
	for (gsize i = 0; i < G_N_ELEMENTS(remote); i++)
		g_assert_false(virt_uri_is_local(remote[i]));
}

int main(int argc, char **argv)
{
	g_autofree char *state = g_dir_make_tmp("unit-lab-run-state-XXXXXX", NULL);
	int status;

	g_setenv("IVLAB_STATE_DIR", state, TRUE);
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/agent/parse-line", test_parse_line);
	g_test_add_func("/agent/percent", test_percent);
	g_test_add_func("/agent/pattern", test_pattern);
	g_test_add_func("/agent/link", test_link);
	g_test_add_func("/agent/link-timeout", test_link_timeout);
	g_test_add_func("/agent/link-endless-line", test_link_endless_line);
	g_test_add_func("/report/tap-junit", test_report);
	g_test_add_func("/virt/lab-domains", test_lab_domains);
	g_test_add_func("/virt/connect-errors", test_connect_errors);
	g_test_add_func("/virt/uri-is-local", test_uri_is_local);
	status = g_test_run();
	g_rmdir(state);
	return status;
}
