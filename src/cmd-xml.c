/* cmd-xml.c: `ivlab xml [--accel kvm|tcg] [GUEST...]`: print the domain XML
 * the guests get. The output depends on the lab and the options, never on
 * the host: an accel="auto" lab shows TCG, as `up` decides auto only when it
 * runs. */
#include "config.h"

#include <stdio.h>

#include "domxml.h"
#include "host.h"
#include "ivlab.h"
#include "lab.h"

extern const struct ivlab_cmd cmd_xml_entry;

static char *accel_option;

static const GOptionEntry entries[] = {
	{ "accel", 0, 0, G_OPTION_ARG_STRING, &accel_option,
	  "show the guests under kvm or tcg (default: the lab's accel; auto shows tcg)", "kvm|tcg" },
	{ NULL }
};

/* KVM or not, with why, from --accel, else $IVLAB_ACCEL, else the lab. */
static gboolean xml_kvm(enum lab_accel option, const struct lab *lab, char **why)
{
	enum lab_accel accel = host_accel_override(lab->accel);

	if (option != LAB_ACCEL_AUTO) {
		*why = g_strdup_printf("%s: --accel %s", lab_accel_name(option), lab_accel_name(option));
		return option == LAB_ACCEL_KVM;
	}
	if (accel == LAB_ACCEL_AUTO) {
		*why = g_strdup("tcg: accel is auto, which 'ivlab up' decides on the host it runs on "
				"(--accel kvm shows KVM)");
		return FALSE;
	}
	*why = g_strdup_printf("%s: %s asks for %s", lab_accel_name(accel),
			       accel == lab->accel ? "the lab" : "$IVLAB_ACCEL", lab_accel_name(accel));
	return accel == LAB_ACCEL_KVM;
}

static gboolean cmd_xml_exec(struct ivlab_ctx *ctx, int argc, char **argv, GError **error)
{
	g_autofree char *path = NULL;
	g_autoptr(Lab) lab = NULL;
	g_autoptr(GPtrArray) guests = g_ptr_array_new();
	enum lab_accel option = LAB_ACCEL_AUTO;

	if (!cmd_parse(&cmd_xml_entry, entries, &argc, &argv, error))
		return FALSE;
	if (accel_option && (!lab_accel_parse(accel_option, &option) || option == LAB_ACCEL_AUTO))
		return cmd_usage_error(error, &cmd_xml_entry, "--accel: '%s' is not kvm or tcg",
				       accel_option);
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
		g_autofree char *why = NULL;
		gboolean kvm = xml_kvm(option, lab, &why);
		g_autofree char *xml = NULL;

		ivlab_debug("%s: accelerator %s", guest->name, why);
		xml = domxml_build(lab, guest, kvm, error);
		if (!xml)
			return FALSE;
		fputs(xml, stdout);
	}
	return TRUE;
}

const struct ivlab_cmd cmd_xml_entry = {
	.name = "xml",
	.usage = "[--accel kvm|tcg] [GUEST...]",
	.summary = "print the libvirt domain XML of the lab's guests",
	.description =
		"With no GUEST, prints every guest's domain, one after the other.\n"
		"The domain type follows --accel, else $IVLAB_ACCEL, else the lab's accel: kvm\n"
		"gives type kvm, tcg type qemu. A lab with accel=\"auto\" shows type qemu: 'ivlab up'\n"
		"decides auto when it runs, from the host (see -v there).",
	.exec = cmd_xml_exec,
};
