/* cmd-image.c: `ivlab image build|list|fetch`: the guest images of every
 * architecture (the pipeline itself is image.c). */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "fetch.h"
#include "image.h"
#include "ivlab.h"

/* "all" or one architecture -> the list to work on. */
static gboolean pick_arches(const struct ivlab_cmd *self, const char *arch, const char *const **out,
			    GError **error)
{
	static const char *one[2];

	if (!arch || strcmp(arch, "all") == 0) {
		*out = image_arches();
		return TRUE;
	}
	if (!image_arch_is_known(arch)) {
		g_autofree char *known = g_strjoinv(", ", (char **)image_arches());

		return cmd_usage_error(error, self, "--arch must be %s or all, not '%s'",
				       known, arch);
	}
	one[0] = arch;
	*out = one;
	return TRUE;
}

static gboolean image_build(const struct ivlab_cmd *self, int argc, char **argv, GError **error)
{
	g_autofree char *arch = NULL, *url = NULL, *sha256 = NULL, *kernel = NULL, *build_dir = NULL;
	gboolean force = FALSE;
	const GOptionEntry entries[] = {
		{ "arch", 'a', 0, G_OPTION_ARG_STRING, &arch, "x86_64, aarch64 or all (default: all)",
		  "ARCH" },
		{ "kernel-url", 0, 0, G_OPTION_ARG_STRING, &url,
		  "a linux-image .deb or a bare kernel to fetch instead of Debian's current one", "URL" },
		{ "kernel-sha256", 0, 0, G_OPTION_ARG_STRING, &sha256, "the sha256 --kernel-url must have",
		  "HEX" },
		{ "kernel", 0, 0, G_OPTION_ARG_FILENAME, &kernel, "a local kernel image (bzImage, Image)",
		  "PATH" },
		{ "kernel-build-dir", 0, 0, G_OPTION_ARG_FILENAME, &build_dir,
		  "the kernel's build directory (for the module, and its modules)", "DIR" },
		{ "force", 0, 0, G_OPTION_ARG_NONE, &force, "rebuild even when up to date", NULL },
		{ NULL },
	};
	struct image_source source = { .kind = IMAGE_SOURCE_DEBIAN };
	const char *const *arches = NULL;

	if (!cmd_parse(self, entries, &argc, &argv, error))
		return FALSE;
	if (argc > 1)
		return cmd_usage_error(error, self, "build: unexpected argument '%s'", argv[1]);
	if (url && kernel)
		return cmd_usage_error(error, self, "--kernel-url and --kernel exclude each other");
	if (url && !sha256)
		return cmd_usage_error(error, self, "--kernel-url needs --kernel-sha256");
	if (sha256 && !url)
		return cmd_usage_error(error, self, "--kernel-sha256 goes with --kernel-url");
	if (sha256 && !fetch_sha256_is_valid(sha256))
		return cmd_usage_error(error, self,
				       "--kernel-sha256 must be 64 hex digits, not '%s'", sha256);
	if (kernel && !build_dir)
		return cmd_usage_error(error, self, "--kernel needs --kernel-build-dir");
	if (build_dir && !url && !kernel)
		return cmd_usage_error(error, self,
				       "--kernel-build-dir goes with --kernel or --kernel-url");
	if ((url || kernel) && (!arch || strcmp(arch, "all") == 0))
		return cmd_usage_error(error, self,
				       "a custom kernel is for one architecture: give --arch");
	if (!pick_arches(self, arch, &arches, error))
		return FALSE;
	if (url) {
		source.kind = IMAGE_SOURCE_URL;
		source.kernel_url = url;
		source.kernel_sha256 = sha256;
	} else if (kernel) {
		source.kind = IMAGE_SOURCE_LOCAL;
		source.kernel_path = kernel;
	}
	source.kernel_build_dir = build_dir;
	source.force = force;
	/* Ctrl-C stops between steps and leaves no half-built image. */
	ivlab_interrupt_catch();
	for (gsize i = 0; arches[i]; i++)
		if (!image_ensure(arches[i], &source, error))
			return FALSE;
	return TRUE;
}

static void add_member(JsonBuilder *builder, const char *name, const char *value)
{
	json_builder_set_member_name(builder, name);
	json_builder_add_string_value(builder, value ? value : "");
}

static void add_image_json(JsonBuilder *builder, const ImageInfo *info)
{
	json_builder_begin_object(builder);
	add_member(builder, "arch", info->arch);
	add_member(builder, "kernel", info->kernel_release);
	add_member(builder, "source", info->source);
	add_member(builder, "console", info->console);
	add_member(builder, "built", info->built);
	add_member(builder, "vmlinuz", info->kernel_path);
	json_builder_set_member_name(builder, "vmlinuz_size");
	json_builder_add_int_value(builder, (gint64)info->kernel_size);
	add_member(builder, "initrd", info->initrd_path);
	json_builder_set_member_name(builder, "initrd_size");
	json_builder_add_int_value(builder, (gint64)info->initrd_size);
	json_builder_set_member_name(builder, "intact");
	json_builder_add_boolean_value(builder, info->intact);
	json_builder_end_object(builder);
}

static gboolean image_list(const struct ivlab_cmd *self, int argc, char **argv, GError **error)
{
	gboolean json = FALSE;
	const GOptionEntry entries[] = {
		{ "json", 0, 0, G_OPTION_ARG_NONE, &json, "print JSON (an object with the images)", NULL },
		{ NULL },
	};
	g_autoptr(GString) out = g_string_new(NULL);
	g_autoptr(JsonBuilder) builder = json_builder_new();
	const char *const *arches = image_arches();

	if (!cmd_parse(self, entries, &argc, &argv, error))
		return FALSE;
	if (argc > 1)
		return cmd_usage_error(error, self, "list: unexpected argument '%s'", argv[1]);
	ivlab_json_begin(builder);
	json_builder_set_member_name(builder, "images");
	json_builder_begin_array(builder);
	g_string_append_printf(out, "%-8s %-18s %9s %-20s %s\n", "ARCH", "KERNEL", "SIZE", "BUILT",
			       "PATH");
	for (gsize i = 0; arches[i]; i++) {
		g_autoptr(ImageInfo) info = image_info_load(arches[i], error);
		g_autofree char *dir = ivlab_image_dir(arches[i]);
		g_autofree char *size = NULL;

		if (!info && error && *error)
			return FALSE;
		if (!info)
			continue;
		add_image_json(builder, info);
		size = g_format_size_full(info->kernel_size + info->initrd_size, G_FORMAT_SIZE_IEC_UNITS);
		g_string_append_printf(out, "%-8s %-18s %9s %-20s %s%s\n", info->arch,
				       info->kernel_release ? info->kernel_release : "?", size,
				       info->built ? info->built : "?", dir,
				       info->intact ? "" : " (damaged: rebuild with --force)");
	}
	json_builder_end_array(builder);
	json_builder_end_object(builder);
	if (json) {
		g_autoptr(JsonNode) root = json_builder_get_root(builder);

		ivlab_print_json(root);
		return TRUE;
	}
	fputs(out->str, stdout);
	return TRUE;
}

static gboolean image_fetch(const struct ivlab_cmd *self, int argc, char **argv, GError **error)
{
	g_autofree char *sha256 = NULL, *path = NULL;
	g_autofree char *downloads = g_build_filename(ivlab_state_dir(), "cache", "downloads", NULL);
	const GOptionEntry entries[] = {
		{ "sha256", 0, 0, G_OPTION_ARG_STRING, &sha256, "the sha256 the file must have (required)",
		  "HEX" },
		{ NULL },
	};

	if (!cmd_parse(self, entries, &argc, &argv, error))
		return FALSE;
	if (argc != 2)
		return cmd_usage_error(error, self, "fetch needs one URL");
	if (!sha256)
		return cmd_usage_error(error, self, "fetch needs --sha256");
	if (!fetch_sha256_is_valid(sha256))
		return cmd_usage_error(error, self, "--sha256 must be 64 hex digits, not '%s'",
				       sha256);
	path = fetch_cached(argv[1], sha256, downloads, error);
	if (!path)
		return FALSE;
	printf("%s\n", path);
	return TRUE;
}

static gboolean cmd_image_exec(const struct ivlab_cmd *self, struct ivlab_ctx *ctx, int argc,
			       char **argv, GError **error)
{
	static const struct {
		const char *name;
		gboolean (*run)(const struct ivlab_cmd *self, int argc, char **argv, GError **error);
	} subcommands[] = {
		{ "build", image_build },
		{ "list", image_list },
		{ "fetch", image_fetch },
	};

	if (argc < 2 || argv[1][0] == '-') {
		/* `ivlab image --help` and friends. */
		if (!cmd_parse(self, NULL, &argc, &argv, error))
			return FALSE;
		return cmd_usage_error(error, self, "say build, list or fetch");
	}
	for (gsize i = 0; i < G_N_ELEMENTS(subcommands); i++) {
		if (strcmp(argv[1], subcommands[i].name) != 0)
			continue;
		/* The subcommand word becomes argv[0] for option parsing. */
		return subcommands[i].run(self, argc - 1, argv + 1, error);
	}
	return cmd_usage_error(error, self, "unknown subcommand '%s' (build, list or fetch)",
			       argv[1]);
}

const struct ivlab_cmd cmd_image_entry = {
	.name = "image",
	.usage = "build [--arch ARCH|all] [--kernel-url URL --kernel-sha256 HEX] "
		 "[--kernel PATH --kernel-build-dir DIR] [--force] | list [--json] | "
		 "fetch URL --sha256 HEX",
	.summary = "build, list and fetch the guest images (kernel + initramfs per architecture)",
	.description =
		"build: makes $state/images/ARCH/{vmlinuz,initrd.img} from Debian's current kernel\n"
		"  (or --kernel-url, or --kernel with --kernel-build-dir), the ivlab module built\n"
		"  against it, busybox, the agent and /init; an unchanged image is not rebuilt.\n"
		"list: what is built (arch, kernel, size, built time, path).\n"
		"fetch: downloads URL into the cache, checked against --sha256, and prints its path.",
	.needs = CMD_OWN_OPTIONS,
	.exec = cmd_image_exec,
};
