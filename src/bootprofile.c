/* bootprofile.c: a guest's boot stages from the host's clock and the uptimes
 * its agent reports; the kernel's start is placed on the host's clock as the
 * hello's arrival minus the uptime it carried. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "bootprofile.h"
#include "ivlab.h"

static const char *const stage_names[BOOTPROFILE_STAGES] = {
	[BOOTPROFILE_QEMU] = "qemu",	   [BOOTPROFILE_FIRMWARE] = "firmware",
	[BOOTPROFILE_KERNEL] = "kernel",   [BOOTPROFILE_INIT] = "init",
	[BOOTPROFILE_MODULES] = "modules", [BOOTPROFILE_AGENT] = "agent",
};

/* The /init stages of profile=, in the order they happen. */
static const struct {
	const char *key;
	enum bootprofile_stage stage;
} guest_stages[] = {
	{ "kernel", BOOTPROFILE_KERNEL },
	{ "init", BOOTPROFILE_INIT },
	{ "modules", BOOTPROFILE_MODULES },
};

const char *bootprofile_stage_name(enum bootprofile_stage stage)
{
	return stage_names[stage];
}

static gboolean parse_seconds(const char *text, double *seconds)
{
	char *end;

	if (!text || !*text)
		return FALSE;
	*seconds = g_ascii_strtod(text, &end);
	return *end == '\0' && *seconds >= 0 && *seconds < 1e6;
}

gboolean bootprofile_from_hello(struct bootprofile *profile, gint64 start_us, gint64 running_us,
				gint64 hello_us, AgentReply *hello, GError **error)
{
	const char *profile_text = agent_reply_get(hello, "profile");
	double uptime, kernel_start;
	g_auto(GStrv) words = NULL;

	for (guint i = 0; i < BOOTPROFILE_STAGES; i++)
		profile->end[i] = -1;
	if (!parse_seconds(agent_reply_get(hello, "uptime"), &uptime))
		return ivlab_fail(error, "boot profile: the agent's hello has no uptime");
	profile->end[BOOTPROFILE_QEMU] = (running_us - start_us) / 1e6;
	profile->end[BOOTPROFILE_AGENT] = (hello_us - start_us) / 1e6;
	kernel_start = profile->end[BOOTPROFILE_AGENT] - uptime;
	/* The guest's clock and the host's differ a little: the kernel cannot
	 * have started before the machine ran. */
	profile->end[BOOTPROFILE_FIRMWARE] = MAX(kernel_start, profile->end[BOOTPROFILE_QEMU]);
	if (!profile_text)
		return TRUE;
	words = g_strsplit(profile_text, " ", -1);
	for (char **word = words; *word; word++) {
		const char *equal = strchr(*word, '=');
		double at;

		if (!equal)
			continue;
		for (guint i = 0; i < G_N_ELEMENTS(guest_stages); i++)
			if (strlen(guest_stages[i].key) == (gsize)(equal - *word) &&
			    strncmp(*word, guest_stages[i].key, equal - *word) == 0 &&
			    parse_seconds(equal + 1, &at) && at <= uptime)
				profile->end[guest_stages[i].stage] = kernel_start + at;
	}
	return TRUE;
}

double bootprofile_stage_seconds(const struct bootprofile *profile, enum bootprofile_stage stage)
{
	double previous = 0;

	if (profile->end[stage] < 0)
		return -1;
	for (int i = (int)stage - 1; i >= 0; i--)
		if (profile->end[i] >= 0) {
			previous = profile->end[i];
			break;
		}
	return MAX(profile->end[stage] - previous, 0);
}

char *bootprofile_format(const struct bootprofile *profile)
{
	g_autoptr(GString) text = g_string_new(NULL);

	for (guint i = 0; i < BOOTPROFILE_STAGES; i++) {
		double seconds = bootprofile_stage_seconds(profile, i);

		if (seconds >= 0)
			g_string_append_printf(text, "%s%s %.2f s", text->len ? ", " : "",
					       stage_names[i], seconds);
	}
	g_string_append_printf(text, ": ready at %.2f s", profile->end[BOOTPROFILE_AGENT]);
	return g_string_free(g_steal_pointer(&text), FALSE);
}

void bootprofile_add_json(JsonBuilder *builder, const struct bootprofile *profile)
{
	json_builder_begin_object(builder);
	for (guint i = 0; i < BOOTPROFILE_STAGES; i++) {
		double seconds = bootprofile_stage_seconds(profile, i);

		if (seconds < 0)
			continue;
		json_builder_set_member_name(builder, stage_names[i]);
		json_builder_add_double_value(builder, seconds);
	}
	json_builder_set_member_name(builder, "ready");
	json_builder_add_double_value(builder, profile->end[BOOTPROFILE_AGENT]);
	json_builder_end_object(builder);
}
