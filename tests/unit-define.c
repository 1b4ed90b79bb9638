/* unit-define.c: every example lab's domain XML is accepted by libvirt: it
 * is defined, with schema validation, on libvirt's test:///default driver. */
#include "config.h"

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "domxml.h"
#include "ivlab.h"
#include "lab.h"

static void ignore_libvirt_errors(void *data, virErrorPtr error)
{
}

static void test_define(gconstpointer data)
{
	const char *file = data;
	g_autofree char *path = g_build_filename(g_getenv("top_srcdir") ? g_getenv("top_srcdir") : ".",
						 "domains", file, NULL);
	g_autoptr(GError) error = NULL;
	g_autoptr(Lab) lab = lab_load(path, &error);
	virConnectPtr conn;

	g_assert_no_error(error);
	conn = virConnectOpen("test:///default");
	g_assert_nonnull(conn);
	for (guint i = 0; i < lab->guests->len; i++) {
		struct lab_guest *guest = g_ptr_array_index(lab->guests, i);
		g_autofree char *xml = domxml_build(lab, guest, FALSE, &error);
		g_autofree char *name = lab_guest_domain_name(lab, guest);
		virDomainPtr domain;
		char *title;

		g_assert_no_error(error);
		domain = virDomainDefineXMLFlags(conn, xml, VIR_DOMAIN_DEFINE_VALIDATE);
		if (!domain)
			g_error("%s: libvirt rejects the domain: %s", name, virGetLastErrorMessage());
		g_assert_cmpstr(virDomainGetName(domain), ==, name);
		title = virDomainGetMetadata(domain, VIR_DOMAIN_METADATA_TITLE, NULL, 0);
		g_assert_nonnull(title);
		g_assert_true(g_str_has_prefix(title, "ivlab "));
		free(title);
		g_assert_cmpint(virDomainUndefine(domain), ==, 0);
		virDomainFree(domain);
	}
	virConnectClose(conn);
}

int main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	virSetErrorFunc(NULL, ignore_libvirt_errors);
	g_test_add_data_func("/define/default", "default.xml", test_define);
	g_test_add_data_func("/define/pair", "pair.xml", test_define);
	g_test_add_data_func("/define/mixed", "mixed.xml", test_define);
	return g_test_run();
}
