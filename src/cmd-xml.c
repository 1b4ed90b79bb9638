/* cmd-xml.c: `ivlab xml [GUEST...]`: print the domain XML the guests get,
 * the same on every host: the accelerator is an input, never probed. */
#include "config.h"

#include <stdio.h>

#include "domxml.h"
#include "host.h"
#include "ivlab.h"
#include "labsession.h"

static char *accel_option;
static enum lab_accel option = LAB_ACCEL_AUTO;

static const GOptionEntry entries[] = {
	{ "accel", 0, 0, G_OPTION_ARG_STRING, &accel_option,
	  "show the guests under kvm or tcg (default: the lab's accel; auto shows tcg)", "kvm|tcg" },
	{ NULL }
};

/* KVM or not, with why, from --accel, else $IVLAB_ACCEL, else the lab. */
static gboolean xml_kvm(const struct lab *lab, char **why)
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

static gboolean cmd_xml_check(const struct ivlab_cmd *self, int argc, char **argv, GError **error)
{
	if (accel_option && (!lab_accel_parse(accel_option, &option) || option == LAB_ACCEL_AUTO))
		return cmd_usage_error(error, self, "--accel: '%s' is not kvm or tcg", accel_option);
	return TRUE;
}

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
		g_autofree char *why = NULL;
		gboolean kvm = xml_kvm(lab, &why);
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
	.options = entries,
	.max_args = -1,
	.needs = CMD_NEEDS_LAB | CMD_GUEST_ARGS,
	.check = cmd_xml_check,
	.exec = cmd_xml_exec,
};
