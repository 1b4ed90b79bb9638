/* domxml.c: build a guest's libvirt domain XML with libxml2's tree API. */
#include "config.h"

#include <string.h>
#include <libxml/tree.h>

#include <ivlab-agent.h>

#include "arch.h"
#include "domxml.h"
#include "ivlab.h"

G_DEFINE_AUTOPTR_CLEANUP_FUNC(xmlDoc, xmlFreeDoc)

/* The lab was checked: every guest's arch is in the table. */
static const struct arch *guest_arch(const struct lab_guest *guest)
{
	const struct arch *arch = arch_lookup(guest->arch);

	g_assert(arch);
	return arch;
}

/* Machines whose root bus is PCIe: ivshmem is a conventional PCI device, so
 * it goes behind a pcie-to-pci-bridge of our own at a known index. */
static gboolean has_pcie_root(const struct lab_guest *guest)
{
	return strcmp(guest->machine, "pc") != 0;
}

#define BRIDGE_ROOT_PORT_INDEX 1
#define BRIDGE_INDEX 2

static xmlNode *child(xmlNode *parent, const char *name, const char *text)
{
	return xmlNewTextChild(parent, NULL, (const xmlChar *)name, (const xmlChar *)text);
}

static void attr(xmlNode *node, const char *name, const char *value)
{
	xmlNewProp(node, (const xmlChar *)name, (const xmlChar *)value);
}

static void attr_printf(xmlNode *node, const char *name, const char *fmt, ...) G_GNUC_PRINTF(3, 4);

static void attr_printf(xmlNode *node, const char *name, const char *fmt, ...)
{
	va_list ap;
	g_autofree char *value = NULL;

	va_start(ap, fmt);
	value = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	attr(node, name, value);
}

static void pci_address(xmlNode *device, guint bus, guint slot)
{
	xmlNode *address = child(device, "address", NULL);

	attr(address, "type", "pci");
	attr(address, "domain", "0x0000");
	attr_printf(address, "bus", "0x%02x", bus);
	attr_printf(address, "slot", "0x%02x", slot);
	attr(address, "function", "0x0");
}

char *domxml_kernel_cmdline(const struct lab *lab, const struct lab_guest *guest)
{
	g_autoptr(GString) cmdline = g_string_new(NULL);

	/* cryptomgr.notests: the crypto self-tests are the longest initcall
	 * under TCG (crypto_algapi_init: 270 ms of the x86_64 kernel's 1.6 s,
	 * 213 ms on aarch64; initcall_debug) and test nothing a lab needs. */
	g_string_append_printf(cmdline, "console=%s panic=-1 cryptomgr.notests ",
			       guest_arch(guest)->console);
	if (guest_arch(guest)->quiet_cmdline)
		g_string_append_printf(cmdline, "%s ", guest_arch(guest)->quiet_cmdline);
	g_string_append_printf(cmdline, "ivlab.lab=%s ivlab.guest=%s ivlab.regions=", lab->name,
			       guest->name);
	for (guint i = 0; i < guest->regions->len; i++) {
		const struct lab_region *region = g_ptr_array_index(guest->regions, i);

		g_string_append_printf(cmdline, "%s%s@%02x", i ? "," : "", region->name,
				       DOMXML_SHMEM_SLOT + i);
	}
	return g_string_free(g_steal_pointer(&cmdline), FALSE);
}

static void add_metadata(xmlNode *domain, const struct lab *lab, const struct lab_guest *guest)
{
	xmlNode *metadata = child(domain, "metadata", NULL);
	xmlNode *root = xmlNewChild(metadata, NULL, (const xmlChar *)"lab", NULL);
	xmlNs *ns = xmlNewNs(root, (const xmlChar *)DOMXML_METADATA_NS,
			     (const xmlChar *)DOMXML_METADATA_PREFIX);

	xmlSetNs(root, ns);
	attr(root, "name", lab->name);
	attr(root, "guest", guest->name);
	attr(root, "arch", guest->arch);
	for (guint i = 0; i < guest->regions->len; i++) {
		const struct lab_region *region = g_ptr_array_index(guest->regions, i);
		xmlNode *node = xmlNewChild(root, ns, (const xmlChar *)"region", NULL);

		attr(node, "name", region->name);
		attr(node, "mode", lab_region_mode_name(region->mode));
		attr_printf(node, "size", "%" G_GUINT64_FORMAT, region->size);
		if (region->mode == LAB_REGION_DOORBELL)
			attr_printf(node, "vectors", "%u", region->vectors);
		attr_printf(node, "slot", "0x%02x", DOMXML_SHMEM_SLOT + i);
	}
}

static gboolean has_items(const GPtrArray *items)
{
	return items && items->len;
}

char *domxml_guest_initrd(const struct lab *lab, const struct lab_guest *guest)
{
	g_autofree char *dir = NULL, *file = NULL;

	if (!guest->kernel && !has_items(guest->modules) && !has_items(guest->files) &&
	    !has_items(guest->overlays) && !has_items(guest->shares) && !has_items(guest->runs))
		return NULL;
	dir = ivlab_lab_dir(lab->name);
	file = g_strdup_printf("%s.initrd.img", guest->name);
	return g_build_filename(dir, file, NULL);
}

char *domxml_share_tag(const struct lab_share *share, guint index)
{
	return share->tag ? g_strdup(share->tag) : g_strdup_printf("ivlab%u", index);
}

char *domxml_guest_kernel(const struct lab *lab, const struct lab_guest *guest)
{
	const struct arch *arch = guest_arch(guest);
	g_autofree char *dir = guest->kernel ? ivlab_lab_dir(lab->name) : ivlab_image_dir(arch->name);
	g_autofree char *name = NULL;

	if (!arch->pvh_kernel_file)
		return guest->kernel ? g_strdup(guest->kernel) :
				       g_build_filename(dir, arch->kernel_file, NULL);
	/* Where the image build (image.c) or `up` (labkernel.c) put the
	 * kernel's uncompressed ELF with its PVH entry, which QEMU enters
	 * without firmware or decompression; or, for a kernel without one, the
	 * bzImage itself under that name (QEMU knows it by its header). */
	name = guest->kernel ? g_strdup_printf("%s.%s", guest->name, arch->pvh_kernel_file) :
			       g_strdup(arch->pvh_kernel_file);
	return g_build_filename(dir, name, NULL);
}

static void add_os(xmlNode *domain, const struct lab *lab, const struct lab_guest *guest)
{
	g_autofree char *image_dir = ivlab_image_dir(guest->arch);
	g_autofree char *kernel = domxml_guest_kernel(lab, guest);
	g_autofree char *initrd = domxml_guest_initrd(lab, guest);
	g_autofree char *cmdline = domxml_kernel_cmdline(lab, guest);
	xmlNode *os = child(domain, "os", NULL);
	xmlNode *type = child(os, "type", "hvm");

	if (!initrd)
		initrd = g_build_filename(image_dir, guest_arch(guest)->initrd_file, NULL);

	attr(type, "arch", guest->arch);
	attr(type, "machine", guest->machine);
	child(os, "kernel", kernel);
	child(os, "initrd", initrd);
	child(os, "cmdline", cmdline);
}

static void add_shmem(xmlNode *devices, const struct lab *lab, const struct lab_region *region,
		      guint bus, guint slot)
{
	g_autofree char *name = lab_region_shm_name(lab, region);
	xmlNode *shmem = child(devices, "shmem", NULL);
	xmlNode *model;

	attr(shmem, "name", name);
	model = child(shmem, "model", NULL);
	if (region->mode == LAB_REGION_DOORBELL) {
		g_autofree char *socket = lab_region_socket_path(lab, region);
		xmlNode *server, *msi;

		attr(model, "type", "ivshmem-doorbell");
		server = child(shmem, "server", NULL);
		attr(server, "path", socket);
		msi = child(shmem, "msi", NULL);
		attr_printf(msi, "vectors", "%u", region->vectors);
		attr(msi, "ioeventfd", "on");
	} else {
		g_autofree char *kib = g_strdup_printf("%" G_GUINT64_FORMAT, region->size >> 10);
		xmlNode *size;

		attr(model, "type", "ivshmem-plain");
		size = child(shmem, "size", kib);
		attr(size, "unit", "KiB");
	}
	pci_address(shmem, bus, slot);
}

/* A host directory over virtio-9p (virtio-9p-pci on every machine we run),
 * mounted by the guest's /init by its tag. QEMU runs as libvirt-qemu under
 * qemu:///system: "squash" reads and writes as that user and ignores the
 * ownership changes it may not make, where "passthrough" would fail them and
 * "mapped" would hide the host's modes behind xattrs. */
/* A share: virtio-9p, mounted by /init from its tag. */
static void add_share(xmlNode *devices, const struct lab_share *share, guint index)
{
	xmlNode *fs = child(devices, "filesystem", NULL);
	g_autofree char *tag = domxml_share_tag(share, index);

	attr(fs, "type", "mount");
	attr(fs, "accessmode", "squash");
	attr(child(fs, "driver", NULL), "type", "path");
	attr(child(fs, "source", NULL), "dir", share->src);
	attr(child(fs, "target", NULL), "dir", tag);
	if (share->readonly)
		child(fs, "readonly", NULL);
}

static void add_devices(xmlNode *domain, const struct lab *lab, const struct lab_guest *guest)
{
	xmlNode *devices = child(domain, "devices", NULL);
	xmlNode *node, *target;
	guint shmem_bus = 0;

	if (guest->emulator)
		child(devices, "emulator", guest->emulator);

	if (has_pcie_root(guest)) {
		node = child(devices, "controller", NULL);
		attr(node, "type", "pci");
		attr_printf(node, "index", "%d", BRIDGE_ROOT_PORT_INDEX);
		attr(node, "model", "pcie-root-port");
		node = child(devices, "controller", NULL);
		attr(node, "type", "pci");
		attr_printf(node, "index", "%d", BRIDGE_INDEX);
		attr(node, "model", "pcie-to-pci-bridge");
		shmem_bus = BRIDGE_INDEX;
	}
	node = child(devices, "controller", NULL);
	attr(node, "type", "virtio-serial");
	attr(node, "index", "0");

	node = child(devices, "serial", NULL);
	attr(node, "type", "pty");
	target = child(node, "target", NULL);
	attr(target, "port", "0");
	node = child(devices, "console", NULL);
	attr(node, "type", "pty");
	target = child(node, "target", NULL);
	attr(target, "type", "serial");
	attr(target, "port", "0");

	node = child(devices, "channel", NULL);
	attr(node, "type", "unix");
	attr(child(node, "source", NULL), "mode", "bind");
	target = child(node, "target", NULL);
	attr(target, "type", "virtio");
	attr(target, "name", IVLAB_AGENT_PORT);

	for (guint i = 0; i < guest->shares->len; i++)
		add_share(devices, g_ptr_array_index(guest->shares, i), i);

	for (guint i = 0; i < guest->regions->len; i++)
		add_shmem(devices, lab, g_ptr_array_index(guest->regions, i), shmem_bus,
			  DOMXML_SHMEM_SLOT + i);

	attr(child(devices, "memballoon", NULL), "model", "none");
}

char *domxml_build(const struct lab *lab, const struct lab_guest *guest, gboolean kvm,
		   GError **error)
{
	g_autoptr(xmlDoc) doc = xmlNewDoc((const xmlChar *)"1.0");
	g_autofree char *name = lab_guest_domain_name(lab, guest);
	g_autofree char *title = NULL, *description = NULL, *memory = NULL, *vcpus = NULL;
	g_autoptr(GString) regions = g_string_new(NULL);
	xmlNode *domain, *node;
	xmlChar *text = NULL;
	int length = 0;

	for (guint i = 0; i < guest->regions->len; i++) {
		const struct lab_region *region = g_ptr_array_index(guest->regions, i);
		g_autofree char *size = ivlab_format_size(region->size);

		g_string_append_printf(regions, "%s%s (%s %s)", i ? ", " : "", region->name,
				       size, lab_region_mode_name(region->mode));
	}
	title = g_strdup_printf("ivlab %s: %s (%s)", lab->name, guest->name, guest->arch);
	description = g_strdup_printf("Guest '%s' of the ivlab lab '%s'. Shared memory: %s. "
				      "Managed by ivlab: 'ivlab status', 'ivlab down'.",
				      guest->name, lab->name,
				      regions->len ? regions->str : "none");

	domain = xmlNewNode(NULL, (const xmlChar *)"domain");
	xmlDocSetRootElement(doc, domain);
	attr(domain, "type", kvm ? "kvm" : "qemu");
	child(domain, "name", name);
	child(domain, "title", title);
	child(domain, "description", description);
	add_metadata(domain, lab, guest);
	memory = g_strdup_printf("%" G_GUINT64_FORMAT, guest->memory >> 10);
	attr(child(domain, "memory", memory), "unit", "KiB");
	/* TCG emits real atomics for a guest's locked instructions only when the
	 * machine may have more than one vCPU (CF_PARALLEL); with one, an atomic
	 * add is a plain read-modify-write that races with the other guests on
	 * shared memory. So a one-vCPU TCG guest runs one vCPU of a possible two. */
	if (!kvm && guest->vcpus == 1) {
		attr(child(domain, "vcpu", "2"), "current", "1");
	} else {
		vcpus = g_strdup_printf("%u", guest->vcpus);
		child(domain, "vcpu", vcpus);
	}
	add_os(domain, lab, guest);
	if (guest_arch(guest)->acpi) {
		/* Without ACPI an x86 guest cannot power itself off. */
		node = child(domain, "features", NULL);
		child(node, "acpi", NULL);
	}
	if (guest_arch(guest)->cpu_model) {
		/* The GIC, on aarch64, comes from the machine. */
		node = child(domain, "cpu", NULL);
		attr(node, "mode", "custom");
		attr(node, "match", "exact");
		attr(child(node, "model", guest_arch(guest)->cpu_model), "fallback", "forbid");
	}
	attr(child(domain, "clock", NULL), "offset", "utc");
	child(domain, "on_poweroff", "destroy");
	child(domain, "on_reboot", "restart");
	child(domain, "on_crash", "destroy");
	add_devices(domain, lab, guest);

	xmlDocDumpFormatMemoryEnc(doc, &text, &length, "UTF-8", 1);
	if (!text) {
		g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED,
			    "%s: cannot serialise the domain XML", name);
		return NULL;
	}
	/* Skip the XML declaration: virsh and libvirt print domains without it. */
	char *body = strstr((char *)text, "<domain");
	char *result = g_strdup(body ? body : (char *)text);

	xmlFree(text);
	return result;
}
