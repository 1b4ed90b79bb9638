/* virt.h: ivlab's use of libvirt: the connection, the lab's domains (found by
 * name and ivlab metadata), their life cycle, and their channel and console
 * streams bridged to plain file descriptors. */
#ifndef IVLAB_VIRT_H
#define IVLAB_VIRT_H

#include <glib.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "lab.h"

G_DEFINE_AUTOPTR_CLEANUP_FUNC(virConnect, virConnectClose)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(virDomain, virDomainFree)

/* Set error to "fmt: libvirt's last error text". Returns FALSE. */
gboolean virt_error(GError **error, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

/* Set error to "DOMAIN: fmt: libvirt's last error text". Returns FALSE. */
gboolean virt_dom_error(GError **error, virDomainPtr dom, const char *fmt, ...) G_GNUC_PRINTF(3, 4);

/* Open uri read-write. Registers libvirt's event loop (run in a thread of its
 * own) first, so streams work. A missing local socket says how to start
 * libvirtd. */
virConnectPtr virt_connect(const char *uri, GError **error);

/* Whether uri reaches the libvirt daemon of this machine: no host, a UNIX
 * socket transport, a loopback address or this machine's name. The servers
 * and images `up` makes are local; a lab cannot run on a remote daemon yet. */
gboolean virt_uri_is_local(const char *uri);

/* What a domain's ivlab metadata says, or NULL when it has none. */
struct virt_meta {
	char *lab;   /* lab name */
	char *guest; /* guest name */
	char *arch;
	char *xml;   /* the whole <ivlab:lab> element, for comparisons */
};
void virt_meta_free(struct virt_meta *meta);
typedef struct virt_meta virt_meta;
G_DEFINE_AUTOPTR_CLEANUP_FUNC(virt_meta, virt_meta_free)
struct virt_meta *virt_domain_meta(virDomainPtr dom);

/* virDomainFree as a GDestroyNotify. */
void virt_domain_unref(gpointer dom);

/* The domains of lab lab_name: named "LAB-*" AND carrying ivlab metadata of
 * that lab (nothing else is ever touched). virDomainPtr, sorted by name. */
GPtrArray *virt_lab_domains(virConnectPtr conn, const char *lab_name, GError **error);
/* The lab's domain of that guest, or NULL (no error) when it has none. */
virDomainPtr virt_lab_domain(virConnectPtr conn, const struct lab *lab,
			     const struct lab_guest *guest, GError **error);

virDomainPtr virt_define(virConnectPtr conn, const char *xml, GError **error);
gboolean virt_start(virDomainPtr dom, GError **error);
/* Hard power off; a domain that is not running is fine. */
gboolean virt_destroy(virDomainPtr dom, GError **error);
/* Undefine (with its managed save and NVRAM, if any); destroys first. */
gboolean virt_undefine(virDomainPtr dom, GError **error);
/* VIR_DOMAIN_* state; -1 when libvirt cannot say. */
int virt_state(virDomainPtr dom);
gboolean virt_is_running(virDomainPtr dom);
const char *virt_state_name(int state);
/* The domain type of its live (or defined) XML: "kvm" or "qemu". */
char *virt_domain_type(virDomainPtr dom);
/* Tail of the domain's QEMU log (/var/log/libvirt/qemu/NAME.log), or NULL. */
char *virt_log_tail(virDomainPtr dom, gsize max_bytes);

/* A stream bridged to a socket: reads and writes on fd reach the domain's
 * channel or console; EOF on fd when the stream ends. */
struct virt_link;
/* The virtio-serial channel named name (e.g. IVLAB_AGENT_PORT). */
struct virt_link *virt_open_channel(virDomainPtr dom, const char *name, gboolean force,
				    GError **error);
/* The serial console; force takes it over from another client. */
struct virt_link *virt_open_console(virDomainPtr dom, gboolean force, GError **error);
int virt_link_fd(const struct virt_link *link);
void virt_link_close(struct virt_link *link);
typedef struct virt_link VirtLink;
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VirtLink, virt_link_close)

#endif
