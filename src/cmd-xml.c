/* cmd-xml.c: `ivlab xml [GUEST...]`: print the domain XML the guests get. */
#include "config.h"

#include <stdio.h>

#include "ivlab.h"
#include "lab.h"
#include "labsession.h"
#include "labup.h"

static gboolean cmd_xml_exec(const struct ivlab_cmd *self, struct ivlab_ctx *ctx, int argc,
			     char **argv, GError **error)
{
	struct lab *lab = ctx->session->lab;
	g_autoptr(GPtrArray) guests = g_ptr_array_new();

	for (int i = 1; i < argc; i++)
		g_ptr_array_add(guests, lab_find_guest(lab, argv[i]));
	if (argc == 1)
		g_ptr_array_extend(guests, lab->guests, NULL, NULL);

	for (guint i = 0; i < guests->len; i++) {
		struct lab_guest *guest = g_ptr_array_index(guests, i);
		g_autofree char *xml = labup_domain_xml(lab, guest, error);

		if (!xml)
			return FALSE;
		fputs(xml, stdout);
	}
	return TRUE;
}

const struct ivlab_cmd cmd_xml_entry = {
	.name = "xml",
	.usage = "[GUEST...]",
	.summary = "print the libvirt domain XML of the lab's guests",
	.description = "With no GUEST, prints every guest's domain, one after the other.",
	.max_args = -1,
	.needs = CMD_NEEDS_LAB | CMD_GUEST_ARGS,
	.exec = cmd_xml_exec,
};
