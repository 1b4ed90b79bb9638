/* lab.h: the lab model, read from a RelaxNG-validated lab file. */
#ifndef IVLAB_LAB_H
#define IVLAB_LAB_H

#include <glib.h>

enum lab_region_mode {
	LAB_REGION_PLAIN,
	LAB_REGION_DOORBELL,
};

enum lab_accel {
	LAB_ACCEL_AUTO,
	LAB_ACCEL_KVM,
	LAB_ACCEL_TCG,
};

#define LAB_REGION_MIN_SIZE (1ULL << 20)
#define LAB_REGION_MAX_SIZE (64ULL << 30)
#define LAB_VECTORS_MAX 64
#define LAB_GUEST_REGIONS_MAX 16

struct lab_region {
	char *name;
	guint64 size;
	enum lab_region_mode mode;
	guint vectors; /* 0 for plain regions */
	int line;
};

/* What users bring into a guest (ivlab-lab(5)): given in a <guest>, or at
 * lab level for every guest (then copied into each guest's lists, lab-level
 * items first). Paths are absolute: relative ones are resolved against the
 * lab file's directory. */
struct lab_module {
	char *src;       /* an out-of-tree module's source directory (its Kbuild/Makefile) */
	char *params;    /* "key=value ..." given to insmod, or NULL */
	GPtrArray *bind; /* struct lab_region * (owned by the lab) whose devices it takes */
	int line;
};

struct lab_file {
	char *src;  /* a host file */
	char *dest; /* absolute path in the guest */
	guint mode; /* permissions, e.g. 0644 (default) or 0755 */
	char *arch; /* only for guests of this arch, or NULL for all */
	int line;
};

struct lab_share {
	char *src;  /* a host directory */
	char *dest; /* mount point in the guest, /mnt/NAME */
	char *tag;  /* the 9p mount tag ("ivlab" + index) */
	gboolean readonly;
	int line;
};

struct lab_run {
	char *command; /* /bin/sh -c COMMAND at boot, after modules and shares */
	int line;
};

struct lab_guest {
	char *name;
	char *arch;    /* "x86_64" or "aarch64" */
	char *machine; /* "pc", "q35", "virt" */
	guint64 memory;
	guint vcpus;
	GPtrArray *regions; /* struct lab_region *, owned by the lab, in attach order */
	GPtrArray *modules;  /* struct lab_module *, owned by the guest, load order */
	GPtrArray *files;    /* struct lab_file * (only this guest's arch) */
	GPtrArray *overlays; /* char *: host directories copied over the guest's / */
	GPtrArray *shares;   /* struct lab_share * */
	GPtrArray *runs;     /* struct lab_run *, in order */
	char *emulator;      /* a QEMU binary of the user's own, or NULL: libvirt's default */
	char *kernel;        /* a kernel under test (bzImage / Image), or NULL: the stock image */
	char *kernel_build_dir; /* its build directory (modules are built against it) */
	int kernel_line;        /* the <kernel> element's, for labkernel.c's messages */
	int line;
};

/* One step of a lab-defined test: COMMAND run in GUEST through its agent. */
struct lab_step {
	char *guest;        /* guest name */
	char *command;
	gboolean background; /* started before the others, and must end by the test's end */
	int expect;          /* the exit status it must end with (default 0) */
	int line;
};

struct lab_test {
	char *name;
	guint timeout_ms;   /* the whole test's (default 30 s) */
	GPtrArray *steps;   /* struct lab_step *, in file order */
	int line;
};

struct lab {
	char *path;
	char *name;
	enum lab_accel accel;
	GPtrArray *regions; /* struct lab_region * */
	GPtrArray *guests;  /* struct lab_guest * */
	GPtrArray *tests;   /* struct lab_test * */
};

/* Read, validate against domains/lab.rng and check a lab file; errors read
 * "FILE:LINE: what is wrong". */
struct lab *lab_load(const char *path, GError **error);
/* The same for a lab file's bytes already in memory; path names it in
 * messages and resolves its relative paths. */
struct lab *lab_load_data(const char *path, const char *text, gsize length, GError **error);
void lab_free(struct lab *lab);
typedef struct lab Lab; /* for g_autoptr(Lab) */
G_DEFINE_AUTOPTR_CLEANUP_FUNC(Lab, lab_free)

/* The lab file ivlab uses: -f, else ./ivlab.xml, else the default lab. */
char *lab_resolve_path(const char *option);

struct lab_guest *lab_find_guest(struct lab *lab, const char *name);
struct lab_region *lab_find_region(struct lab *lab, const char *name);
/* Where region sits among guest's attached regions, or -1. */
int lab_guest_region_index(const struct lab_guest *guest, const struct lab_region *region);
/* The user's module guest binds region to (<module bind=...>), or NULL when
 * ivlab.ko drives it. */
const struct lab_module *lab_guest_region_binder(const struct lab_guest *guest,
						 const struct lab_region *region);

/* Region names as the lab owns them in the host namespace: "<lab>-<region>". */
char *lab_region_shm_name(const struct lab *lab, const struct lab_region *region);
char *lab_guest_domain_name(const struct lab *lab, const struct lab_guest *guest);
/* Socket of a doorbell region's server, in the lab's state directory. */
char *lab_region_socket_path(const struct lab *lab, const struct lab_region *region);

const char *lab_region_mode_name(enum lab_region_mode mode);
const char *lab_accel_name(enum lab_accel accel);
/* "auto", "kvm" or "tcg" into *accel; FALSE (and *accel untouched) for anything else. */
gboolean lab_accel_parse(const char *name, enum lab_accel *accel);

#endif
