/* labstatus.c: collect what `ivlab status` reports: guests (domain, agent,
 * IVPositions), servers (pid, peers) and regions (shm objects). */
#include "config.h"

#include <string.h>

#include "ivlab.h"
#include "labstatus.h"
#include "serverctl.h"

static void guest_status_clear(gpointer data)
{
	struct guest_status *guest = data;

	g_free(guest->accel);
	g_free(guest->agent_error);
}

static void server_status_clear(gpointer data)
{
	struct server_status *server = data;

	g_free(server->socket_path);
	if (server->peer_ids)
		g_array_unref(server->peer_ids);
}

static void region_status_clear(gpointer data)
{
	g_free(((struct region_status *)data)->shm_path);
}

void labstatus_free(struct lab_status *status)
{
	if (!status)
		return;
	g_array_unref(status->guests);
	g_array_unref(status->servers);
	g_array_unref(status->regions);
	g_free(status);
}

static void collect_guest(struct lab_session *session, struct session_guest *sg,
			  struct guest_status *guest)
{
	g_autoptr(GError) err = NULL;
	g_autoptr(GString) problems = g_string_new(NULL);
	g_autofree char *type = NULL;

	guest->sg = sg;
	guest->state = -1;
	if (!sg->dom)
		return;
	guest->defined = TRUE;
	guest->state = virt_state(sg->dom);
	type = virt_domain_type(sg->dom);
	guest->accel = g_strdup(strcmp(type, "kvm") == 0 ? "kvm" : "tcg");
	if (!virt_is_running(sg->dom))
		return;
	if (!labsession_reach(session, sg, FALSE, LABSESSION_PROBE_TIMEOUT_MS, &err)) {
		guest->agent_error = g_strdup(err->message);
		guest->agent_busy = g_error_matches(err, IVLAB_ERROR, IVLAB_ERROR_BUSY);
		return;
	}
	guest->agent_ready = TRUE;
	/* A region the agent does not see as the lab says keeps its id -1. */
	labsession_learn_regions(session, sg, LABSESSION_PROBE_TIMEOUT_MS, NULL, problems);
}

static void collect_server(const struct lab *lab, const struct lab_region *region,
			   struct server_status *server)
{
	struct serverctl_info info = { 0 };

	server->region = region;
	server->socket_path = lab_region_socket_path(lab, region);
	server->running = serverctl_query(server->socket_path, &info, NULL);
	if (server->running) {
		server->pid = (int)info.pid;
		server->peer_ids = info.peer_ids ? g_array_ref(info.peer_ids)
						 : g_array_new(FALSE, FALSE, sizeof(guint));
	}
	serverctl_info_clear(&info);
}

struct lab_status *labstatus_collect(struct lab_session *session)
{
	const struct lab *lab = session->lab;
	struct lab_status *status = g_new0(struct lab_status, 1);

	status->session = session;
	status->guests = g_array_sized_new(FALSE, TRUE, sizeof(struct guest_status), session->n_guests);
	g_array_set_clear_func(status->guests, guest_status_clear);
	status->servers = g_array_new(FALSE, TRUE, sizeof(struct server_status));
	g_array_set_clear_func(status->servers, server_status_clear);
	status->regions = g_array_new(FALSE, TRUE, sizeof(struct region_status));
	g_array_set_clear_func(status->regions, region_status_clear);

	g_array_set_size(status->guests, session->n_guests);
	for (guint i = 0; i < session->n_guests; i++) {
		struct guest_status *guest = &g_array_index(status->guests, struct guest_status, i);

		collect_guest(session, &session->guests[i], guest);
		status->up = status->up || guest->defined;
	}
	for (guint r = 0; r < lab->regions->len; r++) {
		const struct lab_region *region = g_ptr_array_index(lab->regions, r);
		g_autofree char *shm = lab_region_shm_name(lab, region);
		struct region_status region_status = {
			.region = region,
			.shm_path = g_build_filename("/dev/shm", shm, NULL),
		};

		region_status.present = g_file_test(region_status.shm_path, G_FILE_TEST_EXISTS);
		g_array_append_val(status->regions, region_status);
		if (region->mode == LAB_REGION_DOORBELL) {
			struct server_status server = { 0 };

			collect_server(lab, region, &server);
			g_array_append_val(status->servers, server);
		}
	}
	return status;
}

const char *labstatus_state_name(const struct guest_status *guest)
{
	return guest->defined ? virt_state_name(guest->state) : "undefined";
}

static void add_guest(JsonBuilder *builder, const struct guest_status *guest)
{
	const struct lab_guest *lab_guest = guest->sg->guest;

	json_builder_begin_object(builder);
	json_builder_set_member_name(builder, "name");
	json_builder_add_string_value(builder, lab_guest->name);
	json_builder_set_member_name(builder, "domain");
	json_builder_add_string_value(builder, guest->sg->domain_name);
	json_builder_set_member_name(builder, "state");
	json_builder_add_string_value(builder, labstatus_state_name(guest));
	json_builder_set_member_name(builder, "arch");
	json_builder_add_string_value(builder, lab_guest->arch);
	json_builder_set_member_name(builder, "accel");
	json_builder_add_string_value(builder, guest->accel ? guest->accel : "");
	json_builder_set_member_name(builder, "agent");
	json_builder_add_boolean_value(builder, guest->agent_ready);
	if (guest->agent_busy) {
		json_builder_set_member_name(builder, "agent_busy");
		json_builder_add_boolean_value(builder, TRUE);
	}
	if (guest->agent_error) {
		json_builder_set_member_name(builder, "agent_error");
		json_builder_add_string_value(builder, guest->agent_error);
	}
	json_builder_set_member_name(builder, "regions");
	json_builder_begin_object(builder);
	for (guint r = 0; r < lab_guest->regions->len; r++) {
		const struct lab_region *region = g_ptr_array_index(lab_guest->regions, r);

		json_builder_set_member_name(builder, region->name);
		json_builder_add_int_value(builder, guest->sg->ids[r]);
	}
	json_builder_end_object(builder);
	json_builder_end_object(builder);
}

static void add_server(JsonBuilder *builder, const struct server_status *server)
{
	json_builder_begin_object(builder);
	json_builder_set_member_name(builder, "region");
	json_builder_add_string_value(builder, server->region->name);
	json_builder_set_member_name(builder, "socket");
	json_builder_add_string_value(builder, server->socket_path);
	json_builder_set_member_name(builder, "running");
	json_builder_add_boolean_value(builder, server->running);
	json_builder_set_member_name(builder, "pid");
	json_builder_add_int_value(builder, server->pid);
	json_builder_set_member_name(builder, "peers");
	json_builder_begin_array(builder);
	for (guint p = 0; server->peer_ids && p < server->peer_ids->len; p++)
		json_builder_add_int_value(builder, g_array_index(server->peer_ids, guint, p));
	json_builder_end_array(builder);
	json_builder_end_object(builder);
}

static void add_region(JsonBuilder *builder, const struct region_status *status)
{
	const struct lab_region *region = status->region;

	json_builder_begin_object(builder);
	json_builder_set_member_name(builder, "name");
	json_builder_add_string_value(builder, region->name);
	json_builder_set_member_name(builder, "mode");
	json_builder_add_string_value(builder, lab_region_mode_name(region->mode));
	json_builder_set_member_name(builder, "size");
	json_builder_add_int_value(builder, (gint64)region->size);
	json_builder_set_member_name(builder, "vectors");
	json_builder_add_int_value(builder, region->vectors);
	json_builder_set_member_name(builder, "shm");
	json_builder_add_string_value(builder, status->shm_path);
	json_builder_set_member_name(builder, "shm_present");
	json_builder_add_boolean_value(builder, status->present);
	json_builder_end_object(builder);
}

JsonNode *labstatus_to_json(const struct lab_status *status)
{
	g_autoptr(JsonBuilder) builder = json_builder_new();
	g_autofree char *file = g_canonicalize_filename(status->session->path, NULL);

	ivlab_json_begin(builder);
	json_builder_set_member_name(builder, "lab");
	json_builder_add_string_value(builder, status->session->lab->name);
	json_builder_set_member_name(builder, "file");
	json_builder_add_string_value(builder, file);
	json_builder_set_member_name(builder, "up");
	json_builder_add_boolean_value(builder, status->up);
	json_builder_set_member_name(builder, "guests");
	json_builder_begin_array(builder);
	for (guint i = 0; i < status->guests->len; i++)
		add_guest(builder, &g_array_index(status->guests, struct guest_status, i));
	json_builder_end_array(builder);
	json_builder_set_member_name(builder, "servers");
	json_builder_begin_array(builder);
	for (guint i = 0; i < status->servers->len; i++)
		add_server(builder, &g_array_index(status->servers, struct server_status, i));
	json_builder_end_array(builder);
	json_builder_set_member_name(builder, "regions");
	json_builder_begin_array(builder);
	for (guint i = 0; i < status->regions->len; i++)
		add_region(builder, &g_array_index(status->regions, struct region_status, i));
	json_builder_end_array(builder);
	json_builder_end_object(builder);
	return json_builder_get_root(builder);
}
