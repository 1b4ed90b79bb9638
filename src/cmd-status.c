/* cmd-status.c: `ivlab status`: the lab's guests, servers and regions, as a
 * text summary or as JSON for scripts. */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "agentlink.h"
#include "ivlab.h"
#include "lab.h"
#include "labrun.h"
#include "serverctl.h"
#include "virt.h"

extern const struct ivlab_cmd cmd_status_entry;

static gboolean as_json;

static const GOptionEntry entries[] = {
	{ "json", 0, 0, G_OPTION_ARG_NONE, &as_json, "print JSON", NULL },
	{ NULL }
};

static void json_key(GString *out, const char *key)
{
	ivlab_json_string(out, key);
	g_string_append_c(out, ':');
}

struct guest_status {
	const struct lab_guest *guest;
	char *domain;
	gboolean defined;
	int state;
	char *accel;
	char *agent_error;
	gboolean agent_ready;
	GArray *ids; /* gint64 per attached region, -1 when unknown */
};

static void guest_status_clear(struct guest_status *status)
{
	g_free(status->domain);
	g_free(status->accel);
	g_free(status->agent_error);
	if (status->ids)
		g_array_unref(status->ids);
}

static void probe_guest(virConnectPtr conn, const struct lab *lab, struct guest_status *status)
{
	g_autoptr(GError) err = NULL;
	g_autoptr(virDomain) dom = NULL;
	g_autoptr(AgentLink) agent = NULL;
	AgentReply *hello;

	status->domain = lab_guest_domain_name(lab, status->guest);
	status->ids = g_array_new(FALSE, FALSE, sizeof(gint64));
	for (guint i = 0; i < status->guest->regions->len; i++) {
		gint64 unknown = -1;

		g_array_append_val(status->ids, unknown);
	}
	status->state = -1;
	dom = virt_lab_domain(conn, lab, status->guest, &err);
	if (!dom) {
		if (err)
			status->agent_error = g_strdup(err->message);
		return;
	}
	status->defined = TRUE;
	status->state = virt_state(dom);
	g_autofree char *type = virt_domain_type(dom);
	status->accel = g_strdup(strcmp(type, "kvm") == 0 ? "kvm" : "tcg");
	if (!virt_is_running(dom))
		return;
	agent = agent_link_open(dom, status->guest->name, FALSE, &err);
	hello = agent ? agent_hello(agent, 5000, &err) : NULL;
	if (!hello) {
		status->agent_error = g_strdup(err ? err->message : "no answer");
		return;
	}
	g_hash_table_unref(hello);
	status->agent_ready = TRUE;
	for (guint i = 0; i < status->guest->regions->len; i++) {
		g_autoptr(GError) region_error = NULL;
		AgentReply *reply = agent_request(agent, 5000, &region_error, "region index=%u", i);
		const char *name = agent_reply_get(reply, "name");
		gint64 id = -1;

		if (!reply)
			continue;
		for (guint r = 0; name && r < status->guest->regions->len; r++) {
			const struct lab_region *region = g_ptr_array_index(status->guest->regions, r);

			if (strcmp(region->name, name) == 0 && agent_reply_i64(reply, "ivposition", &id, NULL))
				g_array_index(status->ids, gint64, r) = id;
		}
		g_hash_table_unref(reply);
	}
}

static gboolean cmd_status_exec(struct ivlab_ctx *ctx, int argc, char **argv, GError **error)
{
	g_autofree char *path = NULL;
	g_autoptr(Lab) lab = NULL;
	g_autoptr(virConnect) conn = NULL;
	g_autoptr(LabRun) run = NULL;
	g_autoptr(GString) json = g_string_new(NULL);
	g_autofree struct guest_status *guests = NULL;
	gboolean up = FALSE;

	if (!cmd_parse(&cmd_status_entry, entries, &argc, &argv, error))
		return FALSE;
	if (argc > 1)
		return cmd_usage_error(error, &cmd_status_entry, "unexpected argument '%s'", argv[1]);
	path = lab_resolve_path(ctx->lab_path);
	lab = lab_load(path, error);
	if (!lab)
		return FALSE;
	conn = virt_connect(ctx->uri, error);
	if (!conn)
		return FALSE;
	run = labrun_load(lab->name, error);
	if (!run)
		return FALSE;

	guests = g_new0(struct guest_status, lab->guests->len);
	for (guint i = 0; i < lab->guests->len; i++) {
		guests[i].guest = g_ptr_array_index(lab->guests, i);
		probe_guest(conn, lab, &guests[i]);
		up = up || guests[i].defined;
	}

	g_string_append_c(json, '{');
	json_key(json, "lab");
	ivlab_json_string(json, lab->name);
	g_string_append_c(json, ',');
	json_key(json, "file");
	ivlab_json_string(json, path);
	g_string_append_printf(json, ",\"up\":%s,\"guests\":[", up ? "true" : "false");
	if (!as_json) {
		printf("lab %s (%s): %s\n", lab->name, path, up ? "up" : "down");
		printf("\n%-12s %-20s %-10s %-8s %-5s %-6s %s\n", "GUEST", "DOMAIN", "STATE", "ARCH",
		       "ACCEL", "AGENT", "IDS");
	}
	for (guint i = 0; i < lab->guests->len; i++) {
		struct guest_status *status = &guests[i];
		const char *state = status->defined ? virt_state_name(status->state) : "undefined";
		g_autoptr(GString) ids = g_string_new(NULL);

		g_string_append_printf(json, "%s{", i ? "," : "");
		json_key(json, "name");
		ivlab_json_string(json, status->guest->name);
		g_string_append_c(json, ',');
		json_key(json, "domain");
		ivlab_json_string(json, status->domain);
		g_string_append_c(json, ',');
		json_key(json, "state");
		ivlab_json_string(json, state);
		g_string_append_c(json, ',');
		json_key(json, "arch");
		ivlab_json_string(json, status->guest->arch);
		g_string_append_c(json, ',');
		json_key(json, "accel");
		ivlab_json_string(json, status->accel ? status->accel : "");
		g_string_append_printf(json, ",\"agent\":%s", status->agent_ready ? "true" : "false");
		if (status->agent_error) {
			g_string_append_c(json, ',');
			json_key(json, "agent_error");
			ivlab_json_string(json, status->agent_error);
		}
		g_string_append(json, ",\"regions\":{");
		for (guint r = 0; r < status->guest->regions->len; r++) {
			const struct lab_region *region = g_ptr_array_index(status->guest->regions, r);
			gint64 id = g_array_index(status->ids, gint64, r);

			if (r)
				g_string_append_c(json, ',');
			json_key(json, region->name);
			g_string_append_printf(json, "%" G_GINT64_FORMAT, id);
			if (region->mode == LAB_REGION_DOORBELL && id >= 0)
				g_string_append_printf(ids, "%s%s=%" G_GINT64_FORMAT, ids->len ? "," : "",
						       region->name, id);
			else if (region->mode == LAB_REGION_DOORBELL)
				g_string_append_printf(ids, "%s%s=?", ids->len ? "," : "", region->name);
		}
		g_string_append(json, "}}");
		if (!as_json)
			printf("%-12s %-20s %-10s %-8s %-5s %-6s %s\n", status->guest->name, status->domain,
			       state, status->guest->arch, status->accel ? status->accel : "-",
			       status->agent_ready ? "ready" : "-", ids->len ? ids->str : "-");
	}
	g_string_append(json, "],\"servers\":[");
	if (!as_json)
		printf("\n%-10s %-8s %-6s %s\n", "SERVER", "PID", "PEERS", "SOCKET");
	guint servers = 0;
	for (guint r = 0; r < lab->regions->len; r++) {
		const struct lab_region *region = g_ptr_array_index(lab->regions, r);
		g_autofree char *socket_path = NULL;
		struct serverctl_info info = { 0 };
		gboolean alive;
		g_autoptr(GString) peers = g_string_new(NULL);

		if (region->mode != LAB_REGION_DOORBELL)
			continue;
		socket_path = lab_region_socket_path(lab, region);
		alive = serverctl_query(socket_path, &info, NULL);
		for (guint p = 0; alive && info.peer_ids && p < info.peer_ids->len; p++)
			g_string_append_printf(peers, "%s%u", p ? "," : "", g_array_index(info.peer_ids, guint, p));
		g_string_append_printf(json, "%s{", servers++ ? "," : "");
		json_key(json, "region");
		ivlab_json_string(json, region->name);
		g_string_append_c(json, ',');
		json_key(json, "socket");
		ivlab_json_string(json, socket_path);
		g_string_append_printf(json, ",\"running\":%s,\"pid\":%d,\"peers\":[%s]}",
				       alive ? "true" : "false", alive ? (int)info.pid : 0, peers->str);
		if (!as_json) {
			if (alive)
				printf("%-10s %-8d %-6s %s\n", region->name, (int)info.pid,
				       peers->len ? peers->str : "none", socket_path);
			else
				printf("%-10s %-8s %-6s %s\n", region->name, "-", "-", "(not running)");
		}
		serverctl_info_clear(&info);
	}
	g_string_append(json, "],\"regions\":[");
	if (!as_json)
		printf("\n%-10s %-9s %-8s %-7s %s\n", "REGION", "MODE", "SIZE", "VECTORS", "SHM");
	for (guint r = 0; r < lab->regions->len; r++) {
		const struct lab_region *region = g_ptr_array_index(lab->regions, r);
		g_autofree char *shm = lab_region_shm_name(lab, region);
		g_autofree char *shm_path = g_build_filename("/dev/shm", shm, NULL);
		gboolean present = g_file_test(shm_path, G_FILE_TEST_EXISTS);
		g_autofree char *size = ivlab_format_size(region->size);

		g_string_append_printf(json, "%s{", r ? "," : "");
		json_key(json, "name");
		ivlab_json_string(json, region->name);
		g_string_append_c(json, ',');
		json_key(json, "mode");
		ivlab_json_string(json, lab_region_mode_name(region->mode));
		g_string_append_printf(json, ",\"size\":%" G_GUINT64_FORMAT ",\"vectors\":%u,", region->size,
				       region->vectors);
		json_key(json, "shm");
		ivlab_json_string(json, shm_path);
		g_string_append_printf(json, ",\"shm_present\":%s}", present ? "true" : "false");
		if (!as_json)
			printf("%-10s %-9s %-8s %-7u %s%s\n", region->name, lab_region_mode_name(region->mode),
			       size, region->vectors, shm_path, present ? "" : " (absent)");
	}
	g_string_append(json, "]}");
	if (as_json)
		printf("%s\n", json->str);
	for (guint i = 0; i < lab->guests->len; i++)
		guest_status_clear(&guests[i]);
	return TRUE;
}

const struct ivlab_cmd cmd_status_entry = {
	.name = "status",
	.usage = "[--json]",
	.summary = "what is defined, running, connected",
	.description =
		"Guests (domain state, architecture, accelerator, agent, IVPosition per doorbell\n"
		"region), servers (pid, peers connected) and regions (shm objects).",
	.exec = cmd_status_exec,
};
