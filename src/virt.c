/* virt.c: the libvirt side of ivlab: connection, the lab's domains, their
 * life cycle, and channel/console streams pumped to sockets by libvirt's
 * event loop running in a thread of its own. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <gio/gio.h>
#include <libvirt/virterror.h>
#include <libxml/parser.h>
#include <libxml/tree.h>

#include "domxml.h"
#include "ivlab.h"
#include "virt.h"

G_DEFINE_AUTOPTR_CLEANUP_FUNC(xmlDoc, xmlFreeDoc)

gboolean virt_error(GError **error, const char *fmt, ...)
{
	va_list ap;
	g_autofree char *what = NULL;
	const char *why = virGetLastErrorMessage();

	va_start(ap, fmt);
	what = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED, "%s: %s", what,
		    why && *why ? why : "unknown libvirt error");
	return FALSE;
}

gboolean virt_dom_error(GError **error, virDomainPtr dom, const char *fmt, ...)
{
	va_list ap;
	g_autofree char *what = NULL;
	/* Before virDomainGetName(), which resets libvirt's last error. */
	g_autofree char *why = g_strdup(virGetLastErrorMessage());

	va_start(ap, fmt);
	what = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED, "%s: %s: %s", virDomainGetName(dom), what,
		    why && *why ? why : "unknown libvirt error");
	return FALSE;
}

/* libvirt prints its errors on stderr by default; ours go through GError. */
static void quiet_errors(void *data, virErrorPtr err)
{
	if (ivlab_verbosity() >= 3 && err && err->message)
		fprintf(stderr, "ivlab: libvirt: %s\n", err->message);
}

static gpointer event_loop(gpointer data)
{
	for (;;)
		virEventRunDefaultImpl();
	return NULL;
}

static gpointer start_event_loop(gpointer data)
{
	virSetErrorFunc(NULL, quiet_errors);
	if (virEventRegisterDefaultImpl() < 0)
		return GINT_TO_POINTER(FALSE);
	g_thread_unref(g_thread_new("libvirt-events", event_loop, NULL));
	return GINT_TO_POINTER(TRUE);
}

/* The UNIX socket a local qemu:///system or ///session URI talks to. */
static char *local_socket_of(const char *uri)
{
	const char *param = strstr(uri, "socket=");

	if (param) {
		param += strlen("socket=");
		return g_uri_unescape_segment(param, param + strcspn(param, "&"), NULL);
	}
	if (g_str_has_prefix(uri, "qemu:///system"))
		return g_strdup("/run/libvirt/libvirt-sock");
	if (g_str_has_prefix(uri, "qemu:///session"))
		return g_build_filename(g_get_user_runtime_dir(), "libvirt", "libvirt-sock", NULL);
	return NULL;
}

virConnectPtr virt_connect(const char *uri, GError **error)
{
	static GOnce once = G_ONCE_INIT;
	virConnectPtr conn;

	if (!GPOINTER_TO_INT(g_once(&once, start_event_loop, NULL)))
		return virt_error(error, "libvirt: cannot register the event loop"), NULL;
	conn = virConnectOpen(uri);
	if (!conn) {
		g_autofree char *sock = local_socket_of(uri);
		const char *why = virGetLastErrorMessage();

		if (sock && !g_file_test(sock, G_FILE_TEST_EXISTS))
			g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED,
				    "libvirt: cannot connect to %s: %s is missing: libvirtd is not "
				    "running (start it as root with 'virtlogd -d; libvirtd -d')",
				    uri, sock);
		else if (strstr(why, "No such file") || strstr(why, "Connection refused"))
			g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED,
				    "libvirt: cannot connect to %s: %s (is libvirtd running? "
				    "start it with 'virtlogd -d; libvirtd -d')", uri, why);
		else
			virt_error(error, "libvirt: cannot connect to %s", uri);
		return NULL;
	}
	return conn;
}

static gboolean host_is_this_machine(const char *host)
{
	g_autoptr(GInetAddress) address = g_inet_address_new_from_string(host);
	g_autofree char *short_name = g_strdup(g_get_host_name());

	if (address)
		return g_inet_address_get_is_loopback(address);
	if (g_ascii_strcasecmp(host, "localhost") == 0 || g_str_has_suffix(host, ".localhost") ||
	    g_ascii_strcasecmp(host, "localhost.localdomain") == 0)
		return TRUE;
	if (g_ascii_strcasecmp(host, g_get_host_name()) == 0)
		return TRUE;
	short_name[strcspn(short_name, ".")] = '\0';
	return g_ascii_strcasecmp(host, short_name) == 0;
}

gboolean virt_uri_is_local(const char *uri)
{
	g_autoptr(GUri) parsed = NULL;
	const char *host;

	if (!uri || !*uri)
		return TRUE; /* libvirt's own default: a local daemon */
	parsed = g_uri_parse(uri, G_URI_FLAGS_NON_DNS | G_URI_FLAGS_PARSE_RELAXED, NULL);
	if (!parsed)
		return FALSE;
	if (g_str_has_suffix(g_uri_get_scheme(parsed), "+unix"))
		return TRUE;
	host = g_uri_get_host(parsed);
	return !host || !*host || host_is_this_machine(host);
}

void virt_meta_free(struct virt_meta *meta)
{
	if (!meta)
		return;
	g_free(meta->lab);
	g_free(meta->guest);
	g_free(meta->arch);
	g_free(meta->xml);
	g_free(meta);
}

static char *prop(xmlNode *node, const char *name)
{
	xmlChar *value = xmlGetProp(node, (const xmlChar *)name);
	char *copy = g_strdup(value ? (const char *)value : "");

	xmlFree(value);
	return copy;
}

struct virt_meta *virt_domain_meta(virDomainPtr dom)
{
	g_autofree char *xml = virDomainGetMetadata(dom, VIR_DOMAIN_METADATA_ELEMENT,
						    DOMXML_METADATA_NS, 0);
	g_autoptr(xmlDoc) doc = NULL;
	struct virt_meta *meta;
	xmlNode *root;

	if (!xml) {
		virResetLastError();
		return NULL;
	}
	doc = xmlReadMemory(xml, strlen(xml), "metadata.xml", NULL, XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
	root = doc ? xmlDocGetRootElement(doc) : NULL;
	if (!root || strcmp((const char *)root->name, "lab") != 0)
		return NULL;
	meta = g_new0(struct virt_meta, 1);
	meta->lab = prop(root, "name");
	meta->guest = prop(root, "guest");
	meta->arch = prop(root, "arch");
	meta->xml = g_strdup(xml);
	return meta;
}

void virt_domain_unref(gpointer dom)
{
	virDomainFree(dom);
}

static gint compare_domains(gconstpointer a, gconstpointer b)
{
	virDomainPtr da = *(virDomainPtr *)a, db = *(virDomainPtr *)b;

	return strcmp(virDomainGetName(da), virDomainGetName(db));
}

GPtrArray *virt_lab_domains(virConnectPtr conn, const char *lab_name, GError **error)
{
	virDomainPtr *doms = NULL;
	int count = virConnectListAllDomains(conn, &doms, 0);
	g_autofree char *prefix = g_strdup_printf("%s-", lab_name);
	GPtrArray *found;

	if (count < 0)
		return virt_error(error, "libvirt: cannot list domains"), NULL;
	found = g_ptr_array_new_with_free_func(virt_domain_unref);
	for (int i = 0; i < count; i++) {
		g_autoptr(virt_meta) meta = NULL;

		if (g_str_has_prefix(virDomainGetName(doms[i]), prefix) &&
		    (meta = virt_domain_meta(doms[i])) && strcmp(meta->lab, lab_name) == 0)
			g_ptr_array_add(found, doms[i]);
		else
			virDomainFree(doms[i]);
	}
	free(doms);
	g_ptr_array_sort(found, compare_domains);
	return found;
}

virDomainPtr virt_lab_domain(virConnectPtr conn, const struct lab *lab,
			     const struct lab_guest *guest, GError **error)
{
	g_autofree char *name = lab_guest_domain_name(lab, guest);
	virDomainPtr dom = virDomainLookupByName(conn, name);
	g_autoptr(virt_meta) meta = NULL;

	if (!dom) {
		virErrorPtr err = virGetLastError();

		if (err && err->code == VIR_ERR_NO_DOMAIN) {
			virResetLastError();
			return NULL;
		}
		return virt_error(error, "%s: cannot look the domain up", name), NULL;
	}
	meta = virt_domain_meta(dom);
	if (!meta || strcmp(meta->lab, lab->name) != 0) {
		g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED,
			    "%s: a domain of that name exists but does not belong to the ivlab lab "
			    "'%s' (no matching ivlab metadata); rename or remove it", name, lab->name);
		virDomainFree(dom);
		return NULL;
	}
	return dom;
}

virDomainPtr virt_define(virConnectPtr conn, const char *xml, GError **error)
{
	virDomainPtr dom = virDomainDefineXMLFlags(conn, xml, VIR_DOMAIN_DEFINE_VALIDATE);

	if (!dom)
		virt_error(error, "libvirt: cannot define the domain");
	return dom;
}

gboolean virt_start(virDomainPtr dom, GError **error)
{
	if (virDomainCreate(dom) < 0)
		return virt_dom_error(error, dom, "cannot start");
	return TRUE;
}

int virt_state(virDomainPtr dom)
{
	int state, reason;

	if (virDomainGetState(dom, &state, &reason, 0) < 0) {
		virResetLastError();
		return -1;
	}
	return state;
}

gboolean virt_is_running(virDomainPtr dom)
{
	int state = virt_state(dom);

	return state == VIR_DOMAIN_RUNNING || state == VIR_DOMAIN_PAUSED ||
	       state == VIR_DOMAIN_BLOCKED || state == VIR_DOMAIN_PMSUSPENDED;
}

gboolean virt_destroy(virDomainPtr dom, GError **error)
{
	if (!virt_is_running(dom) && virt_state(dom) != VIR_DOMAIN_SHUTDOWN)
		return TRUE;
	if (virDomainDestroy(dom) < 0) {
		virErrorPtr err = virGetLastError();

		if (err && err->code == VIR_ERR_OPERATION_INVALID) {
			virResetLastError();
			return TRUE; /* it stopped meanwhile */
		}
		return virt_dom_error(error, dom, "cannot destroy");
	}
	return TRUE;
}

gboolean virt_undefine(virDomainPtr dom, GError **error)
{
	if (!virt_destroy(dom, error))
		return FALSE;
	if (virDomainUndefineFlags(dom, VIR_DOMAIN_UNDEFINE_MANAGED_SAVE |
				   VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA |
				   VIR_DOMAIN_UNDEFINE_NVRAM) < 0 &&
	    /* Drivers without NVRAM (test:///) refuse the flag. */
	    virDomainUndefine(dom) < 0) {
		virErrorPtr err = virGetLastError();

		if (err && err->code == VIR_ERR_NO_DOMAIN) {
			virResetLastError();
			return TRUE;
		}
		return virt_dom_error(error, dom, "cannot undefine");
	}
	return TRUE;
}

const char *virt_state_name(int state)
{
	switch (state) {
	case VIR_DOMAIN_NOSTATE: return "no state";
	case VIR_DOMAIN_RUNNING: return "running";
	case VIR_DOMAIN_BLOCKED: return "blocked";
	case VIR_DOMAIN_PAUSED: return "paused";
	case VIR_DOMAIN_SHUTDOWN: return "shutting down";
	case VIR_DOMAIN_SHUTOFF: return "shut off";
	case VIR_DOMAIN_CRASHED: return "crashed";
	case VIR_DOMAIN_PMSUSPENDED: return "suspended";
	default: return "unknown";
	}
}

char *virt_domain_type(virDomainPtr dom)
{
	g_autofree char *xml = virDomainGetXMLDesc(dom, 0);
	g_autoptr(xmlDoc) doc = NULL;
	xmlNode *root;

	if (!xml) {
		virResetLastError();
		return g_strdup("unknown");
	}
	doc = xmlReadMemory(xml, strlen(xml), "domain.xml", NULL, XML_PARSE_NONET);
	root = doc ? xmlDocGetRootElement(doc) : NULL;
	return root ? prop(root, "type") : g_strdup("unknown");
}

char *virt_log_tail(virDomainPtr dom, gsize max_bytes)
{
	g_autofree char *file = g_strdup_printf("%s.log", virDomainGetName(dom));
	g_autofree char *system = g_build_filename("/var/log/libvirt/qemu", file, NULL);
	g_autofree char *session = g_build_filename(g_get_user_cache_dir(), "libvirt", "qemu",
						    "log", file, NULL);
	g_autofree char *text = NULL;
	gsize length = 0;

	if (!g_file_get_contents(system, &text, &length, NULL) &&
	    !g_file_get_contents(session, &text, &length, NULL))
		return NULL;
	if (length <= max_bytes)
		return g_steal_pointer(&text);
	return g_strdup(text + length - max_bytes);
}

/* A stream and the socket pair end the event loop pumps it to. Callbacks
 * run in the event thread under lock; closed tells them the owner left. */
struct virt_link {
	GMutex lock;
	gint refs;
	gboolean closed;
	virStreamPtr stream;
	int fd;      /* the owner's end */
	int pump_fd; /* the event loop's end */
	int watch;   /* virEventAddHandle id on pump_fd, -1 when none */
	GByteArray *pending; /* read from pump_fd, not yet sent to the stream */
	gboolean stream_done;
};

/* The event loop drops its references asynchronously; virt_link_close()
 * waits for that on this condition. */
static GMutex links_lock;
static GCond links_cond;

static void link_unref(void *opaque)
{
	struct virt_link *link = opaque;
	gboolean last;

	g_mutex_lock(&links_lock);
	last = g_atomic_int_dec_and_test(&link->refs);
	g_cond_broadcast(&links_cond);
	g_mutex_unlock(&links_lock);
	if (!last)
		return;
	if (link->pump_fd >= 0)
		close(link->pump_fd);
	g_byte_array_unref(link->pending);
	g_mutex_clear(&link->lock);
	g_free(link);
}

/* Called with lock held: the stream is over; the owner sees EOF. */
static void link_stream_over(struct virt_link *link)
{
	if (link->stream_done)
		return;
	link->stream_done = TRUE;
	virStreamEventRemoveCallback(link->stream);
	if (link->watch >= 0) {
		virEventRemoveHandle(link->watch);
		link->watch = -1;
	}
	shutdown(link->pump_fd, SHUT_RDWR);
}

static void link_update_events(struct virt_link *link)
{
	int events = VIR_STREAM_EVENT_READABLE | VIR_STREAM_EVENT_ERROR | VIR_STREAM_EVENT_HANGUP;

	if (link->pending->len)
		events |= VIR_STREAM_EVENT_WRITABLE;
	virStreamEventUpdateCallback(link->stream, events);
	if (link->watch >= 0)
		virEventUpdateHandle(link->watch, link->pending->len ? 0 : VIR_EVENT_HANDLE_READABLE);
}

static void link_flush(struct virt_link *link)
{
	while (link->pending->len) {
		int sent = virStreamSend(link->stream, (const char *)link->pending->data,
					 link->pending->len);

		if (sent == -2)
			break;
		if (sent < 0) {
			virResetLastError();
			link_stream_over(link);
			return;
		}
		g_byte_array_remove_range(link->pending, 0, sent);
	}
	link_update_events(link);
}

/* Hand bytes to the owner. Its end is non-blocking; a response larger than
 * the socket buffer (a 700 KB `get`) waits until the owner reads, which it
 * does while it waits for that response (a minute at most). */
static gboolean pump_to_owner(struct virt_link *link, const char *data, gsize length)
{
	int waited_ms = 0;

	while (length) {
		ssize_t done = send(link->pump_fd, data, length, MSG_NOSIGNAL);

		if (done < 0 && errno == EINTR)
			continue;
		if (done < 0 && errno == EAGAIN && waited_ms < 60000) {
			struct pollfd pfd = { .fd = link->pump_fd, .events = POLLOUT };

			poll(&pfd, 1, 100);
			waited_ms += 100;
			continue;
		}
		if (done <= 0)
			return FALSE;
		data += done;
		length -= done;
		waited_ms = 0;
	}
	return TRUE;
}

static void link_stream_event(virStreamPtr stream, int events, void *opaque)
{
	struct virt_link *link = opaque;
	char buffer[65536];

	g_mutex_lock(&link->lock);
	if (link->closed || link->stream_done)
		goto out;
	if (events & VIR_STREAM_EVENT_WRITABLE)
		link_flush(link);
	if (link->stream_done)
		goto out;
	if (events & (VIR_STREAM_EVENT_READABLE | VIR_STREAM_EVENT_HANGUP | VIR_STREAM_EVENT_ERROR)) {
		for (;;) {
			int got = virStreamRecv(stream, buffer, sizeof(buffer));

			if (got == -2)
				break;
			if (got <= 0 || !pump_to_owner(link, buffer, got)) {
				virResetLastError();
				link_stream_over(link);
				break;
			}
		}
	}
out:
	g_mutex_unlock(&link->lock);
}

static void link_fd_event(int watch, int fd, int events, void *opaque)
{
	struct virt_link *link = opaque;
	char buffer[65536];

	g_mutex_lock(&link->lock);
	if (!link->closed && !link->stream_done) {
		ssize_t got = read(fd, buffer, sizeof(buffer));

		if (got > 0) {
			g_byte_array_append(link->pending, (const guint8 *)buffer, got);
			link_flush(link);
		} else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
			/* The owner shut its end: finish the stream quietly. */
			link_stream_over(link);
		}
	}
	g_mutex_unlock(&link->lock);
}

static struct virt_link *link_new(virDomainPtr dom, GError **error)
{
	struct virt_link *link = g_new0(struct virt_link, 1);
	int pair[2];

	g_mutex_init(&link->lock);
	link->refs = 1;
	link->watch = -1;
	link->fd = link->pump_fd = -1;
	link->pending = g_byte_array_new();
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) < 0) {
		g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED, "socketpair: %s",
			    g_strerror(errno));
		link_unref(link);
		return NULL;
	}
	link->fd = pair[0];
	link->pump_fd = pair[1];
	fcntl(link->pump_fd, F_SETFL, fcntl(link->pump_fd, F_GETFL) | O_NONBLOCK);
	link->stream = virStreamNew(virDomainGetConnect(dom), VIR_STREAM_NONBLOCK);
	if (!link->stream) {
		virt_dom_error(error, dom, "cannot create a stream");
		close(link->fd);
		link_unref(link);
		return NULL;
	}
	return link;
}

/* Once the stream is open: start pumping. The fd watch owns a reference,
 * dropped by the event loop once the watch is gone. The stream callback
 * owns none: libvirt 9 does not call its free function when the callback is
 * removed; it runs in the event thread, as the watch's free function does,
 * so it is over by the time the link is freed. */
static struct virt_link *link_start(struct virt_link *link, virDomainPtr dom, GError **error)
{
	if (virStreamEventAddCallback(link->stream, VIR_STREAM_EVENT_READABLE |
				      VIR_STREAM_EVENT_ERROR | VIR_STREAM_EVENT_HANGUP,
				      link_stream_event, link, NULL) < 0) {
		virt_dom_error(error, dom, "cannot watch the stream");
		virt_link_close(link);
		return NULL;
	}
	g_atomic_int_inc(&link->refs);
	link->watch = virEventAddHandle(link->pump_fd, VIR_EVENT_HANDLE_READABLE, link_fd_event,
					link, link_unref);
	if (link->watch < 0) {
		link_unref(link);
		virt_dom_error(error, dom, "cannot watch the stream's socket");
		virt_link_close(link);
		return NULL;
	}
	return link;
}

struct virt_link *virt_open_channel(virDomainPtr dom, const char *name, gboolean force,
				    GError **error)
{
	struct virt_link *link = link_new(dom, error);

	if (!link)
		return NULL;
	if (virDomainOpenChannel(dom, name, link->stream, force ? VIR_DOMAIN_CHANNEL_FORCE : 0) < 0) {
		virt_dom_error(error, dom, "cannot open the channel %s", name);
		virt_link_close(link);
		return NULL;
	}
	return link_start(link, dom, error);
}

struct virt_link *virt_open_console(virDomainPtr dom, gboolean force, GError **error)
{
	struct virt_link *link = link_new(dom, error);

	if (!link)
		return NULL;
	if (virDomainOpenConsole(dom, NULL, link->stream,
				 force ? VIR_DOMAIN_CONSOLE_FORCE : VIR_DOMAIN_CONSOLE_SAFE) < 0) {
		virt_dom_error(error, dom, "cannot open the console");
		virt_link_close(link);
		return NULL;
	}
	return link_start(link, dom, error);
}

int virt_link_fd(const struct virt_link *link)
{
	return link->fd;
}

void virt_link_close(struct virt_link *link)
{
	if (!link)
		return;
	g_mutex_lock(&link->lock);
	link->closed = TRUE;
	if (!link->stream_done) {
		link->stream_done = TRUE;
		virStreamEventRemoveCallback(link->stream);
		if (link->watch >= 0)
			virEventRemoveHandle(link->watch);
		link->watch = -1;
	}
	if (link->stream) {
		if (virStreamAbort(link->stream) < 0)
			virResetLastError();
		virStreamFree(link->stream);
		link->stream = NULL;
	}
	g_mutex_unlock(&link->lock);
	if (link->fd >= 0)
		close(link->fd);
	link->fd = -1;
	/* Let the event loop let go first (it does within an iteration). */
	gint64 deadline = g_get_monotonic_time() + G_TIME_SPAN_SECOND;

	g_mutex_lock(&links_lock);
	while (g_atomic_int_get(&link->refs) > 1 &&
	       g_cond_wait_until(&links_cond, &links_lock, deadline))
		;
	g_mutex_unlock(&links_lock);
	link_unref(link);
}
