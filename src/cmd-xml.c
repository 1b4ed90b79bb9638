/* cmd-xml.c: `ivlab xml [GUEST...]`: print the domain XML the guests get. */
#include "config.h"

#include <stdio.h>

#include "ivlab.h"
#include "lab.h"
#include "labup.h"

extern const struct ivlab_cmd cmd_xml_entry;

static gboolean cmd_xml_exec(struct ivlab_ctx *ctx, int argc, char **argv, GError **error)
{
	g_autofree char *path = NULL;
	g_autoptr(Lab) lab = NULL;
	g_autoptr(GPtrArray) guests = g_ptr_array_new();

	if (!cmd_parse(&cmd_xml_entry, NULL, &argc, &argv, error))
		return FALSE;
	path = lab_resolve_path(ctx->lab_path);
	lab = lab_load(path, error);
	if (!lab)
		return FALSE;
	for (int i = 1; i < argc; i++) {
		struct lab_guest *guest = lab_find_guest(lab, argv[i]);

		if (!guest) {
			g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED,
				    "%s: the lab '%s' has no guest '%s'", path, lab->name, argv[i]);
			return FALSE;
		}
		g_ptr_array_add(guests, guest);
	}
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
	.exec = cmd_xml_exec,
};
