/* labrestart.c: `restart`: the guests of a running lab whose modules,
 * files, overlays or kernel changed (or those named), rebuilt and booted
 * again while the servers and the other guests keep running. */
#include "config.h"

#include <string.h>

#include "ivlab.h"
#include "labboot.h"
#include "labrestart.h"
#include "labup.h"
#include "serverctl.h"

void labrestart_plan_clear(struct labrestart_plan *plan)
{
	g_clear_pointer(&plan->guests, g_ptr_array_unref);
	g_clear_pointer(&plan->reasons, g_ptr_array_unref);
}

/* The guest's domain from the session, or NULL. */
static virDomainPtr session_domain(struct lab_session *session, const struct lab_guest *guest)
{
	g_autofree char *name = lab_guest_domain_name(session->lab, guest);

	for (guint d = 0; d < session->domains->len; d++) {
		virDomainPtr dom = g_ptr_array_index(session->domains, d);

		if (strcmp(virDomainGetName(dom), name) == 0)
			return dom;
	}
	return NULL;
}

/* The lab file must still describe the domains that run: restart boots
 * the same definitions with new contents, it does not redefine them. */
static gboolean check_definitions(struct lab_session *session, GError **error)
{
	const struct lab *lab = session->lab;
	g_autoptr(GHashTable) wanted = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
	g_autofree char *diff = NULL;

	for (guint i = 0; i < lab->guests->len; i++) {
		const struct lab_guest *guest = g_ptr_array_index(lab->guests, i);
		char *xml = labup_domain_xml(lab, guest, error);

		if (!xml)
			return FALSE;
		g_hash_table_insert(wanted, lab_guest_domain_name(lab, guest), xml);
	}
	diff = labup_differences(lab, session->run, session->domains, wanted);
	if (diff)
		return ivlab_fail(error, "%s: the lab '%s' changed beyond what its guests boot with: %s; "
				  "restart cannot apply that: run 'ivlab down', then 'ivlab up'",
				  session->path, lab->name, diff);
	return TRUE;
}

gboolean labrestart_plan(struct lab_session *session, int n_names, char **names,
			 struct labrestart_plan *plan, GError **error)
{
	const struct lab *lab = session->lab;

	memset(plan, 0, sizeof(*plan));
	plan->guests = g_ptr_array_new();
	plan->reasons = g_ptr_array_new_with_free_func(g_free);
	if (!check_definitions(session, error))
		return FALSE;
	for (guint i = 0; i < lab->guests->len; i++) {
		const struct lab_guest *guest = g_ptr_array_index(lab->guests, i);
		virDomainPtr dom = session_domain(session, guest);
		g_autofree char *changes = labup_guest_changes(session->run, guest);
		gboolean named = n_names == 0;

		for (int n = 0; n < n_names; n++)
			named = named || strcmp(names[n], guest->name) == 0;
		if (!named)
			continue;
		if (!dom)
			return ivlab_fail(error, "guest %s is not defined (a failed 'up'?): run 'ivlab up'",
					  guest->name);
		if (n_names == 0 && !changes && virt_is_running(dom))
			continue;
		g_ptr_array_add(plan->guests, (gpointer)guest);
		if (changes)
			g_ptr_array_add(plan->reasons, g_steal_pointer(&changes));
		else if (!virt_is_running(dom))
			g_ptr_array_add(plan->reasons, g_strdup("not running"));
		else
			g_ptr_array_add(plan->reasons, g_strdup("nothing changed"));
	}
	return TRUE;
}

/* The servers of the doorbell regions guest attaches must be there: its
 * ivshmem-doorbell devices connect to them when QEMU starts. */
static gboolean check_servers(const struct lab *lab, const struct lab_guest *guest, GError **error)
{
	for (guint r = 0; r < guest->regions->len; r++) {
		const struct lab_region *region = g_ptr_array_index(guest->regions, r);
		g_autofree char *socket_path = NULL;

		if (region->mode != LAB_REGION_DOORBELL)
			continue;
		socket_path = lab_region_socket_path(lab, region);
		if (!serverctl_running(socket_path))
			return ivlab_fail(error, "guest %s: the server of region %s (%s) does not answer; "
					  "run 'ivlab down', then 'ivlab up'", guest->name, region->name,
					  socket_path);
	}
	return TRUE;
}

gboolean labrestart_apply(struct lab_session *session, struct labrestart_plan *plan,
			  int timeout_seconds, GError **error)
{
	const struct lab *lab = session->lab;
	g_autoptr(GPtrArray) inputs = g_ptr_array_new_with_free_func((GDestroyNotify)g_ptr_array_unref);
	g_autoptr(GPtrArray) doms = g_ptr_array_new();
	g_autoptr(GHashTable) failed = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	gboolean ok;

	if (!plan->guests->len)
		return TRUE;
	/* Everything that can fail before a guest goes down: the builds first
	 * (a module that does not compile leaves the guest running). */
	for (guint i = 0; i < plan->guests->len; i++) {
		const struct lab_guest *guest = plan->guests->pdata[i];

		if (!check_servers(lab, guest, error))
			return FALSE;
		/* Taken before the build: an edit during it shows as a change later. */
		g_ptr_array_add(inputs, labboot_inputs(guest));
		if (!labboot_prepare_guest(lab, guest, error))
			return FALSE;
	}
	for (guint i = 0; i < plan->guests->len; i++) {
		const struct lab_guest *guest = plan->guests->pdata[i];
		virDomainPtr dom = session_domain(session, guest);

		if (virt_is_running(dom)) {
			if (!virt_destroy(dom, error)) {
				g_prefix_error(error, "guest %s: ", guest->name);
				return FALSE;
			}
			ivlab_debug("%s: stopped", virDomainGetName(dom));
		}
		g_ptr_array_add(doms, dom);
	}
	ok = labup_start_guests(lab, session->run, plan->guests, doms, timeout_seconds, failed, error);
	for (guint i = 0; i < plan->guests->len; i++) {
		const struct lab_guest *guest = plan->guests->pdata[i];

		if (!g_hash_table_contains(failed, guest->name))
			labup_record_inputs(session->run, guest, inputs->pdata[i]);
	}
	if (!labrun_save(session->run, ok ? error : NULL))
		return FALSE;
	return ok;
}
