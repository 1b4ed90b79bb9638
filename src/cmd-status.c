/* cmd-status.c: `ivlab status`: the lab's guests, servers and regions, as a
 * text summary or as JSON for scripts (collected by labstatus.c). */
#include "config.h"

#include <stdio.h>

#include "ivlab.h"
#include "labstatus.h"

static gboolean as_json;

static const GOptionEntry entries[] = {
	{ "json", 0, 0, G_OPTION_ARG_NONE, &as_json, "print JSON", NULL },
	{ NULL }
};

/* "bell=0,mail=3" over the guest's doorbell regions ("?" unknown), or "-". */
static char *guest_ids(const struct guest_status *guest)
{
	const struct lab_guest *lab_guest = guest->sg->guest;
	GString *ids = g_string_new(NULL);

	for (guint r = 0; r < lab_guest->regions->len; r++) {
		const struct lab_region *region = g_ptr_array_index(lab_guest->regions, r);
		gint64 id = guest->sg->ids[r];

		if (region->mode != LAB_REGION_DOORBELL)
			continue;
		g_string_append_printf(ids, "%s%s=", ids->len ? "," : "", region->name);
		if (id >= 0)
			g_string_append_printf(ids, "%" G_GINT64_FORMAT, id);
		else
			g_string_append_c(ids, '?');
	}
	if (!ids->len)
		g_string_append_c(ids, '-');
	return g_string_free(ids, FALSE);
}

static void print_guests(const struct lab_status *status)
{
	printf("\n%-12s %-20s %-10s %-8s %-5s %-6s %s\n", "GUEST", "DOMAIN", "STATE", "ARCH",
	       "ACCEL", "AGENT", "IDS");
	for (guint i = 0; i < status->guests->len; i++) {
		const struct guest_status *guest = &g_array_index(status->guests, struct guest_status, i);
		g_autofree char *ids = guest_ids(guest);

		printf("%-12s %-20s %-10s %-8s %-5s %-6s %s\n", guest->sg->guest->name,
		       guest->sg->domain_name, labstatus_state_name(guest), guest->sg->guest->arch,
		       guest->accel ? guest->accel : "-",
		       guest->agent_ready ? "ready" : guest->agent_busy ? "busy" : "-", ids);
	}
	for (guint i = 0; i < status->guests->len; i++) {
		const struct guest_status *guest = &g_array_index(status->guests, struct guest_status, i);

		if (guest->agent_error)
			printf("  %s: %s\n", guest->sg->guest->name, guest->agent_error);
	}
}

static void print_servers(const struct lab_status *status)
{
	printf("\n%-10s %-8s %-6s %s\n", "SERVER", "PID", "PEERS", "SOCKET");
	for (guint i = 0; i < status->servers->len; i++) {
		const struct server_status *server = &g_array_index(status->servers, struct server_status, i);
		g_autoptr(GString) peers = g_string_new(NULL);

		if (!server->running) {
			printf("%-10s %-8s %-6s %s\n", server->region->name, "-", "-", "(not running)");
			continue;
		}
		for (guint p = 0; p < server->peer_ids->len; p++)
			g_string_append_printf(peers, "%s%u", p ? "," : "",
					       g_array_index(server->peer_ids, guint, p));
		printf("%-10s %-8d %-6s %s\n", server->region->name, server->pid,
		       peers->len ? peers->str : "none", server->socket_path);
	}
}

static void print_regions(const struct lab_status *status)
{
	printf("\n%-10s %-9s %-8s %-7s %s\n", "REGION", "MODE", "SIZE", "VECTORS", "SHM");
	for (guint i = 0; i < status->regions->len; i++) {
		const struct region_status *region = &g_array_index(status->regions, struct region_status, i);
		g_autofree char *size = ivlab_format_size(region->region->size);

		printf("%-10s %-9s %-8s %-7u %s%s\n", region->region->name,
		       lab_region_mode_name(region->region->mode), size, region->region->vectors,
		       region->shm_path, region->present ? "" : " (absent)");
	}
}

static gboolean cmd_status_exec(const struct ivlab_cmd *self, struct ivlab_ctx *ctx, int argc,
				char **argv, GError **error)
{
	g_autoptr(LabStatus) status = labstatus_collect(ctx->session);

	if (as_json) {
		g_autoptr(JsonNode) root = labstatus_to_json(status);

		ivlab_print_json(root);
		return TRUE;
	}
	printf("lab %s (%s): %s\n", ctx->session->lab->name, ctx->session->path,
	       status->up ? "up" : "down");
	print_guests(status);
	print_servers(status);
	print_regions(status);
	return TRUE;
}

const struct ivlab_cmd cmd_status_entry = {
	.name = "status",
	.usage = "[--json]",
	.summary = "what is defined, running, connected",
	.description =
		"Guests (domain state, architecture, accelerator, agent, IVPosition per doorbell\n"
		"region), servers (pid, peers connected) and regions (shm objects).",
	.options = entries,
	.needs = CMD_NEEDS_CONNECTION | CMD_NEEDS_RUN,
	.exec = cmd_status_exec,
};
