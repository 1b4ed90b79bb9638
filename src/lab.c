/* lab.c: read a lab file, validate it against lab.rng, check what a schema
 * cannot (unique names, references, ranges) and build the lab model. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <libxml/parser.h>
#include <libxml/SAX2.h>
#include <libxml/parserInternals.h>
#include <libxml/relaxng.h>
#include <libxml/tree.h>

#include "ivlab.h"
#include "arch.h"
#include "lab.h"

G_DEFINE_AUTOPTR_CLEANUP_FUNC(xmlDoc, xmlFreeDoc)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(xmlRelaxNG, xmlRelaxNGFree)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(xmlRelaxNGParserCtxt, xmlRelaxNGFreeParserCtxt)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(xmlRelaxNGValidCtxt, xmlRelaxNGFreeValidCtxt)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(xmlParserCtxt, xmlFreeParserCtxt)

/* Values echoed in messages are cut to this many characters, libxml2's own
 * messages (which echo names and values) to LAB_MESSAGE_MAX: a hostile
 * file must not make a message of megabytes. */
#define LAB_VALUE_SHOWN_MAX 64
#define LAB_MESSAGE_MAX 240

/* text (taken), cut to max characters and "..." if longer. */
static char *lab_shorten(char *text, gsize max)
{
	char *end;

	if (!text || g_utf8_strlen(text, max + 1) <= (glong)max)
		return text;
	end = g_utf8_offset_to_pointer(text, max);
	*end = '\0';
	end = g_strconcat(text, "...", NULL);
	g_free(text);
	return end;
}

/* A copy of value fit for a message. */
static char *shown(const char *value)
{
	g_autofree char *valid = value ? g_utf8_make_valid(value, -1) : NULL;

	return lab_shorten(g_steal_pointer(&valid), LAB_VALUE_SHOWN_MAX);
}

/* The first error libxml2 reports, with its line. */
struct xml_errors {
	char *message;
	int line;
};

static void collect_error(void *data, xmlErrorPtr xml_error)
{
	struct xml_errors *errors = data;

	if (errors->message || !xml_error || !xml_error->message)
		return;
	errors->message = lab_shorten(g_strchomp(g_strdup(xml_error->message)), LAB_MESSAGE_MAX);
	errors->line = xml_error->line;
}

static gboolean lab_error(GError **error, const char *path, int line, const char *fmt, ...)
	G_GNUC_PRINTF(4, 5);

static gboolean lab_error(GError **error, const char *path, int line, const char *fmt, ...)
{
	va_list ap;
	g_autofree char *text = NULL;

	va_start(ap, fmt);
	text = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED, "%s:%d: %s", path, line, text);
	return FALSE;
}

static void region_free(struct lab_region *region)
{

	g_free(region->name);
	g_free(region);
}

static void module_free(struct lab_module *module)
{
	g_free(module->src);
	g_free(module->params);
	g_ptr_array_unref(module->bind);
	g_free(module);
}

static void file_free(struct lab_file *file)
{
	g_free(file->src);
	g_free(file->dest);
	g_free(file->arch);
	g_free(file);
}

static void share_free(struct lab_share *share)
{
	g_free(share->src);
	g_free(share->dest);
	g_free(share->tag);
	g_free(share);
}

static void run_free(struct lab_run *run)
{
	g_free(run->command);
	g_free(run);
}

static void step_free(struct lab_step *step)
{
	g_free(step->guest);
	g_free(step->command);
	g_free(step);
}

static void test_free(struct lab_test *test)
{
	g_free(test->name);
	g_ptr_array_unref(test->steps);
	g_free(test);
}

static void guest_free(struct lab_guest *guest)
{

	g_free(guest->name);
	g_free(guest->arch);
	g_free(guest->machine);
	g_ptr_array_unref(guest->regions);
	g_ptr_array_unref(guest->modules);
	g_ptr_array_unref(guest->files);
	g_ptr_array_unref(guest->overlays);
	g_ptr_array_unref(guest->shares);
	g_ptr_array_unref(guest->runs);
	g_free(guest->emulator);
	g_free(guest->kernel);
	g_free(guest->kernel_build_dir);
	g_free(guest);
}

void lab_free(struct lab *lab)
{
	if (!lab)
		return;
	g_free(lab->path);
	g_free(lab->name);
	g_ptr_array_unref(lab->guests);
	g_ptr_array_unref(lab->regions);
	if (lab->tests)
		g_ptr_array_unref(lab->tests);
	g_free(lab);
}

static char *prop(xmlNode *node, const char *name)
{
	xmlChar *value = xmlGetProp(node, (const xmlChar *)name);
	char *copy = value ? g_strdup((const char *)value) : NULL;

	xmlFree(value);
	return copy;
}

static gboolean is_element(xmlNode *node, const char *name)
{
	return node->type == XML_ELEMENT_NODE && strcmp((const char *)node->name, name) == 0;
}

static gboolean validate(xmlDoc *doc, const char *path, GError **error)
{
	g_autofree char *schema_path = g_build_filename(ivlab_datadir(), "domains", "lab.rng", NULL);
	struct xml_errors errors = { 0 };
	g_autoptr(xmlRelaxNGParserCtxt) parser = xmlRelaxNGNewParserCtxt(schema_path);
	g_autoptr(xmlRelaxNG) schema = NULL;
	g_autoptr(xmlRelaxNGValidCtxt) validator = NULL;

	xmlRelaxNGSetParserStructuredErrors(parser, collect_error, &errors);
	schema = xmlRelaxNGParse(parser);
	if (!schema) {
		g_set_error(error, IVLAB_ERROR, IVLAB_ERROR_FAILED,
			    "%s: cannot load the lab schema: %s", schema_path,
			    errors.message ? errors.message : "unknown error");
		g_free(errors.message);
		return FALSE;
	}
	validator = xmlRelaxNGNewValidCtxt(schema);
	xmlRelaxNGSetValidStructuredErrors(validator, collect_error, &errors);
	if (xmlRelaxNGValidateDoc(validator, doc) != 0) {
		lab_error(error, path, errors.line, "not a valid lab: %s",
			  errors.message ? errors.message : "schema validation failed");
		g_free(errors.message);
		return FALSE;
	}
	return TRUE;
}

static gboolean parse_size_attr(xmlNode *node, const char *path, const char *attr,
				guint64 *bytes, GError **error)
{
	g_autofree char *text = prop(node, attr);

	if (!ivlab_parse_size(text, bytes)) {
		g_autofree char *seen = shown(text);

		return lab_error(error, path, xmlGetLineNo(node),
				 "%s '%s' is not a size (a number with an optional unit: K, M, G, KiB, MiB, GiB)",
				 attr, seen);
	}
	return TRUE;
}

static gboolean parse_uint_attr(xmlNode *node, const char *path, const char *attr,
				guint min, guint max, guint *value, GError **error)
{
	g_autofree char *text = prop(node, attr);
	guint64 number;

	if (!g_ascii_string_to_unsigned(text, 10, min, max, &number, NULL)) {
		g_autofree char *seen = shown(text);

		return lab_error(error, path, xmlGetLineNo(node),
				 "%s '%s' is out of range (%u..%u)", attr, seen, min, max);
	}
	*value = number;
	return TRUE;
}

/* A required attribute that becomes a name on the host. */
static char *parse_name_attr(xmlNode *node, const char *path, const char *attr, GError **error)
{
	g_autofree char *name = prop(node, attr);

	if (!name) {
		lab_error(error, path, xmlGetLineNo(node), "<%s> needs a %s attribute",
			  (const char *)node->name, attr);
		return NULL;
	}
	if (!ivlab_name_is_safe(name)) {
		g_autofree char *seen = shown(name);

		lab_error(error, path, xmlGetLineNo(node),
			  "%s '%s' is not allowed: use 1 to %d letters, digits, '-' or '_', "
			  "starting with a letter or digit", attr, seen, IVLAB_NAME_MAX);
		return NULL;
	}
	return g_steal_pointer(&name);
}

/* An attribute that must be one of a few words; NULL choices[0] means optional. */
static gboolean parse_choice_attr(xmlNode *node, const char *path, const char *attr,
				  const char *const *choices, gboolean required, char **value,
				  GError **error)
{
	g_autofree char *text = prop(node, attr);
	g_autofree char *allowed = g_strjoinv(", ", (char **)choices);

	if (!text) {
		if (!required)
			return TRUE;
		return lab_error(error, path, xmlGetLineNo(node), "<%s> needs a %s attribute (%s)",
				 (const char *)node->name, attr, allowed);
	}
	if (!g_strv_contains(choices, text)) {
		g_autofree char *seen = shown(text);

		return lab_error(error, path, xmlGetLineNo(node), "%s '%s' is not one of: %s",
				 attr, seen, allowed);
	}
	*value = g_steal_pointer(&text);
	return TRUE;
}

static void region_free(struct lab_region *region);
typedef struct lab_region LabRegion;
G_DEFINE_AUTOPTR_CLEANUP_FUNC(LabRegion, region_free)
static void guest_free(struct lab_guest *guest);
typedef struct lab_guest LabGuest;
G_DEFINE_AUTOPTR_CLEANUP_FUNC(LabGuest, guest_free)

static struct lab_region *parse_region(struct lab *lab, xmlNode *node, GError **error)
{
	static const char *const modes[] = { "plain", "doorbell", NULL };
	g_autofree char *mode = NULL, *vectors = prop(node, "vectors");
	g_autofree char *pretty_min = ivlab_format_size(LAB_REGION_MIN_SIZE);
	g_autofree char *pretty_max = ivlab_format_size(LAB_REGION_MAX_SIZE);
	g_autoptr(LabRegion) region = g_new0(struct lab_region, 1);
	const char *path = lab->path;
	struct lab_region *first;

	region->line = xmlGetLineNo(node);
	region->name = parse_name_attr(node, path, "name", error);
	if (!region->name)
		return NULL;
	first = lab_find_region(lab, region->name);
	if (first) {
		lab_error(error, path, region->line, "region '%s' is defined twice (first on line %d)",
			  region->name, first->line);
		return NULL;
	}
	if (!xmlHasProp(node, (const xmlChar *)"size")) {
		lab_error(error, path, region->line, "region '%s' needs a size", region->name);
		return NULL;
	}
	if (!parse_size_attr(node, path, "size", &region->size, error))
		return NULL;
	if (region->size < LAB_REGION_MIN_SIZE || region->size > LAB_REGION_MAX_SIZE ||
	    (region->size & (region->size - 1))) {
		g_autofree char *pretty = ivlab_format_size(region->size);

		lab_error(error, path, region->line,
			  "region '%s': size %s must be a power of two from %s to %s",
			  region->name, pretty, pretty_min, pretty_max);
		return NULL;
	}
	if (!parse_choice_attr(node, path, "mode", modes, TRUE, &mode, error))
		return NULL;
	region->mode = strcmp(mode, "doorbell") == 0 ? LAB_REGION_DOORBELL : LAB_REGION_PLAIN;
	if (region->mode == LAB_REGION_PLAIN && vectors) {
		lab_error(error, path, region->line,
			  "region '%s': a plain region has no vectors (use mode=\"doorbell\")",
			  region->name);
		return NULL;
	}
	if (region->mode == LAB_REGION_DOORBELL && !vectors) {
		lab_error(error, path, region->line,
			  "region '%s': a doorbell region needs vectors (1..%d)", region->name,
			  LAB_VECTORS_MAX);
		return NULL;
	}
	if (vectors &&
	    !parse_uint_attr(node, path, "vectors", 1, LAB_VECTORS_MAX, &region->vectors, error))
		return NULL;
	return g_steal_pointer(&region);
}

static gboolean parse_attachments(struct lab *lab, struct lab_guest *guest, xmlNode *node,
				  GError **error)
{
	for (xmlNode *child = node->children; child; child = child->next) {
		g_autofree char *name = NULL;
		struct lab_region *region;
		int line = xmlGetLineNo(child);

		if (!is_element(child, "attach"))
			continue;
		name = prop(child, "region");
		if (!name)
			return lab_error(error, lab->path, line, "<attach> needs a region attribute");
		region = lab_find_region(lab, name);
		if (!region) {
			g_autofree char *seen = shown(name);

			return lab_error(error, lab->path, line,
					 "guest '%s' attaches region '%s', which the lab does not define",
					 guest->name, seen);
		}
		for (guint i = 0; i < guest->regions->len; i++)
			if (g_ptr_array_index(guest->regions, i) == region)
				return lab_error(error, lab->path, line,
						 "guest '%s' attaches region '%s' twice", guest->name, name);
		if (guest->regions->len == LAB_GUEST_REGIONS_MAX)
			return lab_error(error, lab->path, line, "guest '%s' attaches more than %d regions",
					 guest->name, LAB_GUEST_REGIONS_MAX);
		g_ptr_array_add(guest->regions, region);
	}
	return TRUE;
}

/* What users bring into guests (modules, files, overlays, shares, boot
 * commands), and lab-defined tests. */

static void module_free(struct lab_module *module);
typedef struct lab_module LabModule;
G_DEFINE_AUTOPTR_CLEANUP_FUNC(LabModule, module_free)
static void file_free(struct lab_file *file);
typedef struct lab_file LabFile;
G_DEFINE_AUTOPTR_CLEANUP_FUNC(LabFile, file_free)
static void share_free(struct lab_share *share);
typedef struct lab_share LabShare;
G_DEFINE_AUTOPTR_CLEANUP_FUNC(LabShare, share_free)
static void step_free(struct lab_step *step);
typedef struct lab_step LabStep;
G_DEFINE_AUTOPTR_CLEANUP_FUNC(LabStep, step_free)
static void test_free(struct lab_test *test);
typedef struct lab_test LabTest;
G_DEFINE_AUTOPTR_CLEANUP_FUNC(LabTest, test_free)

/* Items given at lab level, copied into every guest before its own. */
struct lab_common {
	GPtrArray *modules, *files, *overlays, *shares, *runs;
};

static void common_init(struct lab_common *common)
{
	common->modules = g_ptr_array_new_with_free_func((GDestroyNotify)module_free);
	common->files = g_ptr_array_new_with_free_func((GDestroyNotify)file_free);
	common->overlays = g_ptr_array_new_with_free_func(g_free);
	common->shares = g_ptr_array_new_with_free_func((GDestroyNotify)share_free);
	common->runs = g_ptr_array_new_with_free_func((GDestroyNotify)run_free);
}

static void common_clear(struct lab_common *common)
{
	g_clear_pointer(&common->modules, g_ptr_array_unref);
	g_clear_pointer(&common->files, g_ptr_array_unref);
	g_clear_pointer(&common->overlays, g_ptr_array_unref);
	g_clear_pointer(&common->shares, g_ptr_array_unref);
	g_clear_pointer(&common->runs, g_ptr_array_unref);
}

static char *required_attr(xmlNode *node, const char *path, const char *attr, GError **error)
{
	char *value = prop(node, attr);

	if (!value || !*value) {
		lab_error(error, path, xmlGetLineNo(node), "<%s> needs a %s attribute",
			  (const char *)node->name, attr);
		g_free(value);
		return NULL;
	}
	return value;
}

/* A host path: absolute, relative ones taken from the lab file's directory. */
static char *resolve_host_path(const struct lab *lab, const char *value)
{
	g_autofree char *dir = g_path_get_dirname(lab->path);
	g_autofree char *abs_dir = g_canonicalize_filename(dir, NULL);

	return g_canonicalize_filename(value, abs_dir);
}

enum host_kind { HOST_DIR, HOST_FILE };

/* A required attribute naming an existing host directory or regular file.
 * Messages quote the value as written (relative to the lab file). */
static char *host_path_attr(const struct lab *lab, xmlNode *node, const char *attr,
			    enum host_kind kind, GError **error)
{
	g_autofree char *value = required_attr(node, lab->path, attr, error);
	g_autofree char *resolved = NULL;
	int line = xmlGetLineNo(node);
	const char *element = (const char *)node->name;

	if (!value)
		return NULL;
	resolved = resolve_host_path(lab, value);
	if (!g_file_test(resolved, G_FILE_TEST_EXISTS)) {
		lab_error(error, lab->path, line, "%s %s '%s' does not exist%s", element, attr, value,
			  g_path_is_absolute(value) ? "" : " (relative to the lab file's directory)");
		return NULL;
	}
	if (kind == HOST_DIR && !g_file_test(resolved, G_FILE_TEST_IS_DIR)) {
		lab_error(error, lab->path, line, "%s %s '%s' is not a directory", element, attr,
			  value);
		return NULL;
	}
	if (kind == HOST_FILE && !g_file_test(resolved, G_FILE_TEST_IS_REGULAR)) {
		lab_error(error, lab->path, line, "%s %s '%s' is not a regular file", element, attr,
			  value);
		return NULL;
	}
	return g_steal_pointer(&resolved);
}

/* A path in the guest: absolute, no "..", not "/"; returned normalised
 * (no "." components, no repeated or trailing slashes). */
static char *guest_path_attr(xmlNode *node, const char *path, const char *attr, GError **error)
{
	g_autofree char *value = required_attr(node, path, attr, error);
	g_auto(GStrv) parts = NULL;
	g_autoptr(GString) normal = g_string_new(NULL);
	int line = xmlGetLineNo(node);
	const char *element = (const char *)node->name;

	if (!value)
		return NULL;
	if (value[0] != '/') {
		lab_error(error, path, line, "%s %s '%s' is not an absolute path", element, attr, value);
		return NULL;
	}
	parts = g_strsplit(value, "/", -1);
	for (char **part = parts; *part; part++) {
		if (strcmp(*part, "..") == 0) {
			lab_error(error, path, line, "%s %s '%s' may not contain '..'", element, attr,
				  value);
			return NULL;
		}
		if (**part && strcmp(*part, ".") != 0)
			g_string_append_printf(normal, "/%s", *part);
	}
	if (normal->len == 0) {
		lab_error(error, path, line, "%s %s '%s' is the guest's root directory", element, attr,
			  value);
		return NULL;
	}
	return g_string_free(g_steal_pointer(&normal), FALSE);
}

/* An element's text, stripped; NULL (with error) when empty. */
static char *command_text(xmlNode *node, const char *path, const char *what, GError **error)
{
	xmlChar *content = xmlNodeGetContent(node);
	g_autofree char *text = g_strdup(content ? (const char *)content : "");

	xmlFree(content);
	g_strstrip(text);
	if (!*text) {
		lab_error(error, path, xmlGetLineNo(node), "%s has no command", what);
		return NULL;
	}
	return g_steal_pointer(&text);
}

static gboolean parse_yesno_attr(xmlNode *node, const char *path, const char *attr,
				 gboolean *value, GError **error)
{
	static const char *const yesno[] = { "yes", "no", NULL };
	g_autofree char *text = NULL;

	if (!parse_choice_attr(node, path, attr, yesno, FALSE, &text, error))
		return FALSE;
	*value = text && strcmp(text, "yes") == 0;
	return TRUE;
}

static struct lab_module *parse_module(struct lab *lab, xmlNode *node, GError **error)
{
	g_autoptr(LabModule) module = g_new0(struct lab_module, 1);
	g_autofree char *bind = prop(node, "bind");
	g_autofree char *makefile = NULL, *kbuild = NULL;
	g_auto(GStrv) names = NULL;

	module->line = xmlGetLineNo(node);
	module->bind = g_ptr_array_new();
	module->src = host_path_attr(lab, node, "src", HOST_DIR, error);
	if (!module->src)
		return NULL;
	makefile = g_build_filename(module->src, "Makefile", NULL);
	kbuild = g_build_filename(module->src, "Kbuild", NULL);
	if (!g_file_test(makefile, G_FILE_TEST_IS_REGULAR) &&
	    !g_file_test(kbuild, G_FILE_TEST_IS_REGULAR)) {
		g_autofree char *src = prop(node, "src");

		lab_error(error, lab->path, module->line,
			  "module src '%s' has no Makefile or Kbuild (an out-of-tree module's source directory)",
			  src);
		return NULL;
	}
	module->params = prop(node, "params");
	names = g_strsplit_set(bind ? bind : "", " \t\n", -1);
	for (char **name = names; *name; name++) {
		struct lab_region *region;

		if (!**name)
			continue;
		region = lab_find_region(lab, *name);
		if (!region) {
			lab_error(error, lab->path, module->line,
				  "module binds region '%s', which the lab does not define", *name);
			return NULL;
		}
		g_ptr_array_add(module->bind, region);
	}
	if (bind && module->bind->len == 0) {
		lab_error(error, lab->path, module->line, "module bind is empty (name regions)");
		return NULL;
	}
	return g_steal_pointer(&module);
}

static struct lab_file *parse_file(struct lab *lab, xmlNode *node, GError **error)
{
	g_autoptr(LabFile) file = g_new0(struct lab_file, 1);
	g_autofree char *mode = prop(node, "mode");
	guint64 bits;

	file->line = xmlGetLineNo(node);
	file->src = host_path_attr(lab, node, "src", HOST_FILE, error);
	if (!file->src)
		return NULL;
	file->dest = guest_path_attr(node, lab->path, "dest", error);
	if (!file->dest)
		return NULL;
	file->mode = 0644;
	if (mode) {
		if (!g_ascii_string_to_unsigned(mode, 8, 0, 07777, &bits, NULL)) {
			lab_error(error, lab->path, file->line,
				  "file mode '%s' is not an octal mode (0 to 07777, e.g. 0755)", mode);
			return NULL;
		}
		file->mode = bits;
	}
	if (!parse_choice_attr(node, lab->path, "arch", arch_names(), FALSE, &file->arch, error))
		return NULL;
	return g_steal_pointer(&file);
}

static struct lab_share *parse_share(struct lab *lab, xmlNode *node, GError **error)
{
	g_autoptr(LabShare) share = g_new0(struct lab_share, 1);

	share->line = xmlGetLineNo(node);
	share->src = host_path_attr(lab, node, "src", HOST_DIR, error);
	if (!share->src)
		return NULL;
	share->dest = guest_path_attr(node, lab->path, "dest", error);
	if (!share->dest)
		return NULL;
	if (!parse_yesno_attr(node, lab->path, "readonly", &share->readonly, error))
		return NULL;
	return g_steal_pointer(&share);
}

/* One of module, file, overlay, share or run into lists; FALSE with error
 * set when bad; *taken FALSE when node is none of them. */
static gboolean parse_payload(struct lab *lab, xmlNode *node, struct lab_common *into,
			      gboolean *taken, GError **error)
{
	*taken = TRUE;
	if (is_element(node, "module")) {
		struct lab_module *module = parse_module(lab, node, error);

		if (!module)
			return FALSE;
		g_ptr_array_add(into->modules, module);
	} else if (is_element(node, "file")) {
		struct lab_file *file = parse_file(lab, node, error);

		if (!file)
			return FALSE;
		g_ptr_array_add(into->files, file);
	} else if (is_element(node, "overlay")) {
		char *dir = host_path_attr(lab, node, "dir", HOST_DIR, error);

		if (!dir)
			return FALSE;
		g_ptr_array_add(into->overlays, dir);
	} else if (is_element(node, "share")) {
		struct lab_share *share = parse_share(lab, node, error);

		if (!share)
			return FALSE;
		g_ptr_array_add(into->shares, share);
	} else if (is_element(node, "run")) {
		struct lab_run *run = g_new0(struct lab_run, 1);

		run->line = xmlGetLineNo(node);
		run->command = command_text(node, lab->path, "<run>", error);
		if (!run->command) {
			run_free(run);
			return FALSE;
		}
		g_ptr_array_add(into->runs, run);
	} else {
		*taken = FALSE;
	}
	return TRUE;
}

/* The guest-only elements: <emulator> and <kernel>, at most one each. */
static gboolean parse_guest_only(struct lab *lab, struct lab_guest *guest, xmlNode *node,
				 GError **error)
{
	int line = xmlGetLineNo(node);

	if (is_element(node, "emulator")) {
		g_autofree char *emulator = NULL;

		if (guest->emulator)
			return lab_error(error, lab->path, line, "guest '%s' has a second <emulator>",
					 guest->name);
		emulator = required_attr(node, lab->path, "path", error);
		if (!emulator)
			return FALSE;
		if (!g_path_is_absolute(emulator))
			return lab_error(error, lab->path, line,
					 "emulator path '%s' is not an absolute path", emulator);
		guest->emulator = g_canonicalize_filename(emulator, NULL);
	} else if (is_element(node, "kernel")) {
		if (guest->kernel)
			return lab_error(error, lab->path, line, "guest '%s' has a second <kernel>",
					 guest->name);
		guest->kernel = host_path_attr(lab, node, "src", HOST_FILE, error);
		if (!guest->kernel)
			return FALSE;
		guest->kernel_line = line;
		guest->kernel_build_dir = host_path_attr(lab, node, "build-dir", HOST_DIR, error);
		if (!guest->kernel_build_dir)
			return FALSE;
	}
	return TRUE;
}

static struct lab_module *module_copy(const struct lab_module *module)
{
	struct lab_module *copy = g_new0(struct lab_module, 1);

	copy->src = g_strdup(module->src);
	copy->params = g_strdup(module->params);
	copy->bind = g_ptr_array_copy(module->bind, NULL, NULL);
	copy->line = module->line;
	return copy;
}

static struct lab_file *file_copy(const struct lab_file *file)
{
	struct lab_file *copy = g_new0(struct lab_file, 1);

	copy->src = g_strdup(file->src);
	copy->dest = g_strdup(file->dest);
	copy->mode = file->mode;
	copy->arch = g_strdup(file->arch);
	copy->line = file->line;
	return copy;
}

static struct lab_share *share_copy(const struct lab_share *share)
{
	struct lab_share *copy = g_new0(struct lab_share, 1);

	copy->src = g_strdup(share->src);
	copy->dest = g_strdup(share->dest);
	copy->readonly = share->readonly;
	copy->line = share->line;
	return copy;
}

static struct lab_run *run_copy(const struct lab_run *run)
{
	struct lab_run *copy = g_new0(struct lab_run, 1);

	copy->command = g_strdup(run->command);
	copy->line = run->line;
	return copy;
}

/* Appends what `from` holds to the guest's lists: files of the guest's arch
 * only, the rest copied. */
static void guest_add_common(struct lab_guest *guest, const struct lab_common *from)
{
	for (guint i = 0; i < from->modules->len; i++)
		g_ptr_array_add(guest->modules, module_copy(g_ptr_array_index(from->modules, i)));
	for (guint i = 0; i < from->files->len; i++) {
		const struct lab_file *file = g_ptr_array_index(from->files, i);

		if (!file->arch || strcmp(file->arch, guest->arch) == 0)
			g_ptr_array_add(guest->files, file_copy(file));
	}
	for (guint i = 0; i < from->overlays->len; i++)
		g_ptr_array_add(guest->overlays, g_strdup(g_ptr_array_index(from->overlays, i)));
	for (guint i = 0; i < from->shares->len; i++)
		g_ptr_array_add(guest->shares, share_copy(g_ptr_array_index(from->shares, i)));
	for (guint i = 0; i < from->runs->len; i++)
		g_ptr_array_add(guest->runs, run_copy(g_ptr_array_index(from->runs, i)));
}

/* Once a guest has all its items: share tags, and every bound region is
 * one the guest attaches, bound by one module. */
static gboolean guest_finish(struct lab *lab, struct lab_guest *guest, GError **error)
{
	g_autoptr(GHashTable) bound = g_hash_table_new(g_direct_hash, g_direct_equal);

	for (guint i = 0; i < guest->shares->len; i++) {
		struct lab_share *share = g_ptr_array_index(guest->shares, i);

		share->tag = g_strdup_printf("ivlab%u", i);
	}
	for (guint i = 0; i < guest->modules->len; i++) {
		const struct lab_module *module = g_ptr_array_index(guest->modules, i);

		for (guint j = 0; j < module->bind->len; j++) {
			struct lab_region *region = g_ptr_array_index(module->bind, j);
			gpointer first = g_hash_table_lookup(bound, region);

			if (lab_guest_region_index(guest, region) < 0)
				return lab_error(error, lab->path, module->line,
						 "guest '%s': a module binds region '%s', which the guest does not attach",
						 guest->name, region->name);
			if (first)
				return lab_error(error, lab->path, module->line,
						 "guest '%s': region '%s' is bound twice (first on line %d)",
						 guest->name, region->name, GPOINTER_TO_INT(first));
			g_hash_table_insert(bound, region, GINT_TO_POINTER(module->line));
		}
	}
	return TRUE;
}

/* "30s", "2m", "500ms", "1h": a positive duration in milliseconds. */
static gboolean parse_duration(const char *text, guint *ms)
{
	static const struct {
		const char *unit;
		guint64 ms;
	} units[] = { { "ms", 1 }, { "s", 1000 }, { "m", 60000 }, { "h", 3600000 } };
	const char *end = text;
	guint64 number;

	while (g_ascii_isdigit(*end))
		end++;
	if (end == text || end - text > 9)
		return FALSE;
	number = g_ascii_strtoull(text, NULL, 10);
	for (gsize i = 0; i < G_N_ELEMENTS(units); i++) {
		if (strcmp(end, units[i].unit) == 0) {
			guint64 total = number * units[i].ms;

			if (total == 0 || total > G_MAXUINT)
				return FALSE;
			*ms = total;
			return TRUE;
		}
	}
	return FALSE;
}

static struct lab_test *find_test(struct lab *lab, const char *name)
{
	for (guint i = 0; i < lab->tests->len; i++) {
		struct lab_test *test = g_ptr_array_index(lab->tests, i);

		if (strcmp(test->name, name) == 0)
			return test;
	}
	return NULL;
}

static struct lab_step *parse_step(struct lab *lab, const struct lab_test *test, xmlNode *node,
				   GError **error)
{
	g_autoptr(LabStep) step = g_new0(struct lab_step, 1);
	guint expect = 0;

	step->line = xmlGetLineNo(node);
	step->guest = required_attr(node, lab->path, "guest", error);
	if (!step->guest)
		return NULL;
	if (!lab_find_guest(lab, step->guest)) {
		lab_error(error, lab->path, step->line,
			  "test '%s': a step runs on guest '%s', which the lab does not define",
			  test->name, step->guest);
		return NULL;
	}
	if (!parse_yesno_attr(node, lab->path, "background", &step->background, error))
		return NULL;
	if (xmlHasProp(node, (const xmlChar *)"expect") &&
	    !parse_uint_attr(node, lab->path, "expect", 0, 255, &expect, error))
		return NULL;
	step->expect = expect;
	step->command = command_text(node, lab->path, "<step>", error);
	if (!step->command)
		return NULL;
	return g_steal_pointer(&step);
}

static struct lab_test *parse_test(struct lab *lab, xmlNode *node, GError **error)
{
	g_autoptr(LabTest) test = g_new0(struct lab_test, 1);
	g_autofree char *timeout = prop(node, "timeout");
	struct lab_test *first;

	test->line = xmlGetLineNo(node);
	test->steps = g_ptr_array_new_with_free_func((GDestroyNotify)step_free);
	test->name = parse_name_attr(node, lab->path, "name", error);
	if (!test->name)
		return NULL;
	first = find_test(lab, test->name);
	if (first) {
		lab_error(error, lab->path, test->line, "test '%s' is defined twice (first on line %d)",
			  test->name, first->line);
		return NULL;
	}
	test->timeout_ms = 30000;
	if (timeout && !parse_duration(timeout, &test->timeout_ms)) {
		lab_error(error, lab->path, test->line,
			  "test '%s': timeout '%s' is not a positive duration (e.g. 500ms, 30s, 2m, 1h)",
			  test->name, timeout);
		return NULL;
	}
	for (xmlNode *child = node->children; child; child = child->next) {
		struct lab_step *step;

		if (!is_element(child, "step"))
			continue;
		step = parse_step(lab, test, child, error);
		if (!step)
			return NULL;
		g_ptr_array_add(test->steps, step);
	}
	if (test->steps->len == 0) {
		lab_error(error, lab->path, test->line, "test '%s' has no <step>", test->name);
		return NULL;
	}
	return g_steal_pointer(&test);
}

static struct lab_guest *parse_guest(struct lab *lab, const struct lab_common *common,
				     xmlNode *node, GError **error)
{
	struct lab_common own = { 0 };
	g_autoptr(LabGuest) guest = g_new0(struct lab_guest, 1);
	const char *path = lab->path;
	struct lab_guest *first;
	const struct arch *arch;

	guest->line = xmlGetLineNo(node);
	guest->regions = g_ptr_array_new();
	guest->modules = g_ptr_array_new_with_free_func((GDestroyNotify)module_free);
	guest->files = g_ptr_array_new_with_free_func((GDestroyNotify)file_free);
	guest->overlays = g_ptr_array_new_with_free_func(g_free);
	guest->shares = g_ptr_array_new_with_free_func((GDestroyNotify)share_free);
	guest->runs = g_ptr_array_new_with_free_func((GDestroyNotify)run_free);
	guest->name = parse_name_attr(node, path, "name", error);
	if (!guest->name)
		return NULL;
	first = lab_find_guest(lab, guest->name);
	if (first) {
		lab_error(error, path, guest->line, "guest '%s' is defined twice (first on line %d)",
			  guest->name, first->line);
		return NULL;
	}
	if (!parse_choice_attr(node, path, "arch", arch_names(), TRUE, &guest->arch, error) ||
	    !parse_choice_attr(node, path, "machine", arch_all_machines(), FALSE, &guest->machine,
			       error))
		return NULL;
	arch = arch_lookup(guest->arch);
	if (!guest->machine)
		guest->machine = g_strdup(arch->default_machine);
	if (!arch_has_machine(arch, guest->machine)) {
		g_autofree char *valid = g_strjoinv(" or ", (char **)arch->machines);

		lab_error(error, path, guest->line, "guest '%s': machine '%s' cannot run an %s guest (use %s)",
			  guest->name, guest->machine, guest->arch, valid);
		return NULL;
	}
	guest->memory = 256ULL << 20;
	if (xmlHasProp(node, (const xmlChar *)"memory") &&
	    !parse_size_attr(node, path, "memory", &guest->memory, error))
		return NULL;
	if (guest->memory < (64ULL << 20) || guest->memory > (64ULL << 30)) {
		lab_error(error, path, guest->line, "guest '%s': memory must be from 64MiB to 64GiB",
			  guest->name);
		return NULL;
	}
	guest->vcpus = 1;
	if (xmlHasProp(node, (const xmlChar *)"vcpus") &&
	    !parse_uint_attr(node, path, "vcpus", 1, 64, &guest->vcpus, error))
		return NULL;
	if (!parse_attachments(lab, guest, node, error))
		return NULL;
	common_init(&own);
	for (xmlNode *child = node->children; child; child = child->next) {
		gboolean taken;

		if (!parse_payload(lab, child, &own, &taken, error) ||
		    (!taken && !parse_guest_only(lab, guest, child, error))) {
			common_clear(&own);
			return NULL;
		}
	}
	guest_add_common(guest, common);
	guest_add_common(guest, &own);
	common_clear(&own);
	if (!guest_finish(lab, guest, error))
		return NULL;
	return g_steal_pointer(&guest);
}

/* The file's bytes, with messages that say what is wrong with it. */
static gboolean read_lab_file(const char *path, char **text, gsize *length, GError **error)
{
	g_autoptr(GString) data = NULL;
	struct stat st;
	char buf[65536];
	ssize_t n;
	int fd;

	/* O_NONBLOCK: a FIFO planted as the lab file must not hang us. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd < 0) {
		int saved = errno;

		if (saved == ENOENT)
			return ivlab_fail(error, "%s: no such lab file (see ivlab-lab(5) for the format)",
					  path);
		if (saved == ELOOP)
			return ivlab_fail(error, "%s: too many levels of symbolic links", path);
		return ivlab_fail(error, "%s: cannot read: %s", path, g_strerror(saved));
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return ivlab_fail(error, "%s: not a regular file (a lab file is XML, see ivlab-lab(5))",
				  path);
	}
	data = g_string_sized_new(st.st_size + 1);
	while ((n = read(fd, buf, sizeof(buf))) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int saved = errno;

			close(fd);
			return ivlab_fail(error, "%s: cannot read: %s", path, g_strerror(saved));
		}
		g_string_append_len(data, buf, n);
		if (data->len > G_MAXINT) {
			close(fd);
			return ivlab_fail(error, "%s: too big for a lab file", path);
		}
	}
	close(fd);
	*length = data->len;
	*text = g_string_free(g_steal_pointer(&data), FALSE);
	return TRUE;
}

/* A declaration refused while parsing (parser->_private), stopping it. */
struct refusal {
	const char *path;
	GError *message;
};

static void refuse(void *ctx, const char *what)
{
	xmlParserCtxt *parser = ctx;
	struct refusal *refusal = parser->_private;

	if (!refusal->message)
		refusal->message = g_error_new(IVLAB_ERROR, IVLAB_ERROR_FAILED,
					       "%s:%d: %s are not allowed in a lab file "
					       "(it needs no DTD, see ivlab-lab(5))", refusal->path,
					       parser->input ? parser->input->line : 0, what);
	xmlStopParser(parser);
}

/* Entities: a few hundred bytes can expand to gigabytes, or read a file. */
static void refuse_entity_decl(void *ctx, const xmlChar *name, int type,
			       const xmlChar *public_id, const xmlChar *system_id,
			       xmlChar *content)
{
	refuse(ctx, "entity declarations (<!ENTITY>)");
}

/* Attribute declarations: defaults would add values the file does not show. */
static void refuse_attribute_decl(void *ctx, const xmlChar *element, const xmlChar *name,
				  int type, int def, const xmlChar *default_value,
				  xmlEnumerationPtr tree)
{
	xmlFreeEnumeration(tree);
	refuse(ctx, "attribute declarations (<!ATTLIST>)");
}

/* libxml2 keeps an element's line in 16 bits; with XML_PARSE_BIG_LINES it
 * keeps longer ones only in text nodes, and xmlGetLineNo() of an element
 * past 65535 reads its first child's (where that text ends: often a line
 * late). So such an element gets an empty first child of its own holding
 * its line: a text node Relax NG skips as blank, named so that no text
 * merges into it, that adds nothing to the element's content. */
static void start_element(void *ctx, const xmlChar *localname, const xmlChar *prefix,
			  const xmlChar *uri, int nb_namespaces, const xmlChar **namespaces,
			  int nb_attributes, int nb_defaulted, const xmlChar **attributes)
{
	xmlParserCtxt *parser = ctx;
	xmlNode *marker;

	xmlSAX2StartElementNs(ctx, localname, prefix, uri, nb_namespaces, namespaces,
			      nb_attributes, nb_defaulted, attributes);
	if (!parser->node || !parser->input || parser->input->line < 65535)
		return;
	marker = xmlNewDocText(parser->myDoc, NULL);
	if (!marker)
		return;
	marker->name = xmlStringTextNoenc;
	marker->line = 65535;
	marker->psvi = (void *)(ptrdiff_t)parser->input->line;
	xmlAddChild(parser->node, marker);
}

/* Lab-level items into common, then every guest (with common first). */
static gboolean parse_lab_items(struct lab *lab, xmlNode *root, struct lab_common *common,
				GError **error)
{
	for (xmlNode *node = root->children; node; node = node->next) {
		gboolean taken;

		if (!parse_payload(lab, node, common, &taken, error))
			return FALSE;
		if (is_element(node, "emulator") || is_element(node, "kernel"))
			return lab_error(error, lab->path, xmlGetLineNo(node),
					 "<%s> belongs in a <guest>", (const char *)node->name);
	}
	for (xmlNode *node = root->children; node; node = node->next) {
		struct lab_guest *guest;

		if (!is_element(node, "guest"))
			continue;
		guest = parse_guest(lab, common, node, error);
		if (!guest)
			return FALSE;
		g_ptr_array_add(lab->guests, guest);
	}
	return TRUE;
}

struct lab *lab_load(const char *path, GError **error)
{
	g_autofree char *text = NULL;
	gsize length = 0;

	/* read_lab_file() refuses more than G_MAXINT bytes. */
	if (!read_lab_file(path, &text, &length, error))
		return NULL;
	return lab_load_data(path, text, length, error);
}

struct lab *lab_load_data(const char *path, const char *text, gsize length, GError **error)
{
	struct xml_errors errors = { 0 };
	struct refusal refusal = { 0 };
	g_autoptr(xmlParserCtxt) parser = NULL;
	g_autoptr(xmlDoc) doc = NULL;
	g_autoptr(Lab) lab = NULL;
	static const char *const accels[] = { "auto", "kvm", "tcg", NULL };
	g_autofree char *accel = NULL;
	struct lab_common common = { 0 };
	gboolean ok;
	xmlNode *root;

	if (length > G_MAXINT) {
		ivlab_fail(error, "%s: too big for a lab file", path);
		return NULL;
	}
	parser = xmlNewParserCtxt();
	if (!parser) {
		ivlab_fail(error, "%s: out of memory", path);
		return NULL;
	}
	refusal.path = path;
	parser->_private = &refusal;
	/* No DTD is loaded, no entity substituted, no network; the internal
	 * subset may declare nothing that changes what the file says. */
	parser->sax->entityDecl = refuse_entity_decl;
	parser->sax->attributeDecl = refuse_attribute_decl;
	parser->sax->startElementNs = start_element;
	xmlSetStructuredErrorFunc(&errors, collect_error);
	doc = xmlCtxtReadMemory(parser, text, (int)length, path, NULL,
				XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING |
				XML_PARSE_BIG_LINES);
	xmlSetStructuredErrorFunc(NULL, NULL);
	if (refusal.message) {
		g_propagate_error(error, g_steal_pointer(&refusal.message));
		g_free(errors.message);
		return NULL;
	}
	if (!doc) {
		lab_error(error, path, errors.line, "not well-formed XML: %s",
			  errors.message ? errors.message : "cannot parse");
		g_free(errors.message);
		return NULL;
	}
	g_free(errors.message);

	/* Values first, for messages that name what is wrong; then the schema,
	 * for structure (unknown elements and attributes, order). */
	root = xmlDocGetRootElement(doc);
	if (!is_element(root, "lab")) {
		validate(doc, path, error);
		return NULL;
	}
	lab = g_new0(struct lab, 1);
	lab->path = g_strdup(path);
	lab->regions = g_ptr_array_new_with_free_func((GDestroyNotify)region_free);
	lab->guests = g_ptr_array_new_with_free_func((GDestroyNotify)guest_free);
	lab->tests = g_ptr_array_new_with_free_func((GDestroyNotify)test_free);
	lab->name = parse_name_attr(root, path, "name", error);
	if (!lab->name)
		return NULL;
	if (!parse_choice_attr(root, path, "accel", accels, FALSE, &accel, error))
		return NULL;
	if (accel)
		lab_accel_parse(accel, &lab->accel);

	/* Regions, then lab-level items (for every guest), then guests, then
	 * tests: each refers to what comes before, wherever the file has it. */
	for (xmlNode *node = root->children; node; node = node->next) {
		if (is_element(node, "region")) {
			struct lab_region *region = parse_region(lab, node, error);

			if (!region)
				return NULL;
			g_ptr_array_add(lab->regions, region);
		}
	}
	common_init(&common);
	ok = parse_lab_items(lab, root, &common, error);
	common_clear(&common);
	if (!ok)
		return NULL;
	for (xmlNode *node = root->children; node; node = node->next) {
		if (is_element(node, "test")) {
			struct lab_test *test = parse_test(lab, node, error);

			if (!test)
				return NULL;
			g_ptr_array_add(lab->tests, test);
		}
	}
	if (lab->regions->len == 0 || lab->guests->len == 0) {
		lab_error(error, path, xmlGetLineNo(root), "lab '%s' defines no %s", lab->name,
			  lab->regions->len ? "guest" : "region");
		return NULL;
	}
	if (!validate(doc, path, error))
		return NULL;
	for (guint i = 0; i < lab->regions->len; i++) {
		struct lab_region *region = g_ptr_array_index(lab->regions, i);
		gboolean used = FALSE;

		for (guint j = 0; j < lab->guests->len && !used; j++) {
			struct lab_guest *guest = g_ptr_array_index(lab->guests, j);

			for (guint k = 0; k < guest->regions->len && !used; k++)
				used = g_ptr_array_index(guest->regions, k) == region;
		}
		if (!used) {
			lab_error(error, path, region->line, "region '%s' is attached by no guest",
				  region->name);
			return NULL;
		}
	}
	return g_steal_pointer(&lab);
}

char *lab_resolve_path(const char *option)
{
	if (option)
		return g_strdup(option);
	if (g_file_test("ivlab.xml", G_FILE_TEST_IS_REGULAR))
		return g_strdup("ivlab.xml");
	return g_build_filename(ivlab_datadir(), "domains", "default.xml", NULL);
}

struct lab_guest *lab_find_guest(struct lab *lab, const char *name)
{
	for (guint i = 0; i < lab->guests->len; i++) {
		struct lab_guest *guest = g_ptr_array_index(lab->guests, i);

		if (strcmp(guest->name, name) == 0)
			return guest;
	}
	return NULL;
}

const struct lab_module *lab_guest_region_binder(const struct lab_guest *guest,
						 const struct lab_region *region)
{
	for (guint m = 0; m < guest->modules->len; m++) {
		const struct lab_module *module = g_ptr_array_index(guest->modules, m);

		for (guint b = 0; module->bind && b < module->bind->len; b++)
			if (g_ptr_array_index(module->bind, b) == region)
				return module;
	}
	return NULL;
}

int lab_guest_region_index(const struct lab_guest *guest, const struct lab_region *region)
{
	for (guint i = 0; i < guest->regions->len; i++)
		if (g_ptr_array_index(guest->regions, i) == region)
			return (int)i;
	return -1;
}

struct lab_region *lab_find_region(struct lab *lab, const char *name)
{
	for (guint i = 0; i < lab->regions->len; i++) {
		struct lab_region *region = g_ptr_array_index(lab->regions, i);

		if (strcmp(region->name, name) == 0)
			return region;
	}
	return NULL;
}

char *lab_region_shm_name(const struct lab *lab, const struct lab_region *region)
{
	return g_strdup_printf("ivlab-%s-%s", lab->name, region->name);
}

char *lab_guest_domain_name(const struct lab *lab, const struct lab_guest *guest)
{
	return g_strdup_printf("%s-%s", lab->name, guest->name);
}

char *lab_region_socket_path(const struct lab *lab, const struct lab_region *region)
{
	g_autofree char *dir = ivlab_lab_dir(lab->name);
	g_autofree char *file = g_strdup_printf("%s.sock", region->name);

	return g_build_filename(dir, file, NULL);
}

const char *lab_region_mode_name(enum lab_region_mode mode)
{
	return mode == LAB_REGION_DOORBELL ? "doorbell" : "plain";
}

const char *lab_accel_name(enum lab_accel accel)
{
	switch (accel) {
	case LAB_ACCEL_KVM:
		return "kvm";
	case LAB_ACCEL_TCG:
		return "tcg";
	default:
		return "auto";
	}
}

gboolean lab_accel_parse(const char *name, enum lab_accel *accel)
{
	static const enum lab_accel all[] = { LAB_ACCEL_AUTO, LAB_ACCEL_KVM, LAB_ACCEL_TCG };

	for (gsize i = 0; i < G_N_ELEMENTS(all); i++) {
		if (strcmp(name, lab_accel_name(all[i])) == 0) {
			*accel = all[i];
			return TRUE;
		}
	}
	return FALSE;
}
