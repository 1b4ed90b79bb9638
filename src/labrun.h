/* labrun.h: a lab's runtime state in ivlab_lab_dir(lab): what `up` created
 * (domains, servers, shm objects), so `down` removes all of it, even after a
 * failed `up`, and a later `up` can tell what changed. */
#ifndef IVLAB_LABRUN_H
#define IVLAB_LABRUN_H

#include <glib.h>

#include "lab.h"
#include "virt.h"

struct labrun {
	char *lab_name;
	char *dir;        /* ivlab_lab_dir(lab_name) */
	char *state_path; /* DIR/state */
	GKeyFile *keys;
};
typedef struct labrun LabRun;
void labrun_free(struct labrun *run);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(LabRun, labrun_free)

/* The lab's recorded state, or an empty one when it has none. */
struct labrun *labrun_load(const char *lab_name, GError **error);
gboolean labrun_exists(const struct labrun *run);
/* Create the lab directory (mode 0755, so the QEMU user reaches sockets). */
gboolean labrun_make_dir(struct labrun *run, GError **error);
gboolean labrun_save(struct labrun *run, GError **error);

/* The lab file and each guest's domain XML as `up` used them. */
void labrun_set_lab(struct labrun *run, const char *lab_path, const char *digest);
char *labrun_lab_path(const struct labrun *run);
char *labrun_lab_digest(const struct labrun *run);
void labrun_set_domain_xml(struct labrun *run, const char *domain, const char *xml);
char *labrun_domain_xml(const struct labrun *run, const char *domain);

/* What a guest booted with (labboot_inputs_record() lines), set when `up`
 * or `restart` boots it; NULL when nothing is recorded. */
void labrun_set_guest_inputs(struct labrun *run, const char *guest, char **lines);
char **labrun_guest_inputs(const struct labrun *run, const char *guest);

/* Things created, recorded before they are made so a crash leaves a trace. */
void labrun_add(struct labrun *run, const char *kind /* "domains", "servers", "shm" */,
		const char *item);
char **labrun_list(const struct labrun *run, const char *kind);

/* Files of a doorbell region's server. */
/* Up, down and restart of one lab, one at a time across processes: waits
 * for the lab's lock (STATE/locks/LAB.lock, kept apart from the lab's
 * directory, which down removes); the fd holds it until closed, or -1. */
int labrun_lock(const char *lab_name, GError **error);
char *labrun_pidfile(const struct lab *lab, const struct lab_region *region);
char *labrun_server_log(const struct lab *lab, const struct lab_region *region);

/* SHA-256 of the lab file's bytes. */
char *labrun_digest_file(const char *path, GError **error);

/* Remove everything of lab_name: its domains (name prefix and metadata),
 * servers (by recorded sockets and pidfiles), sockets, shm objects, and the
 * state; lab may be NULL (then only what the state records). keep leaves
 * the domains defined and shut off. Carries on past errors, reports the
 * first. */
gboolean labrun_teardown(virConnectPtr conn, const char *lab_name, const struct lab *lab,
			 gboolean keep, GError **error);

#endif
