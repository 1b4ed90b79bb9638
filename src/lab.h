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

struct lab_guest {
	char *name;
	char *arch;    /* "x86_64" or "aarch64" */
	char *machine; /* "pc", "q35", "virt" */
	guint64 memory;
	guint vcpus;
	GPtrArray *regions; /* struct lab_region *, owned by the lab, in attach order */
	int line;
};

struct lab {
	char *path;
	char *name;
	enum lab_accel accel;
	GPtrArray *regions; /* struct lab_region * */
	GPtrArray *guests;  /* struct lab_guest * */
};

/* Read, validate against domains/lab.rng and check a lab file; errors read
 * "FILE:LINE: what is wrong". */
struct lab *lab_load(const char *path, GError **error);
void lab_free(struct lab *lab);
typedef struct lab Lab; /* for g_autoptr(Lab) */
G_DEFINE_AUTOPTR_CLEANUP_FUNC(Lab, lab_free)

/* The lab file ivlab uses: -f, else ./ivlab.xml, else the default lab. */
char *lab_resolve_path(const char *option);

struct lab_guest *lab_find_guest(struct lab *lab, const char *name);
struct lab_region *lab_find_region(struct lab *lab, const char *name);
/* Where region sits among guest's attached regions, or -1. */
int lab_guest_region_index(const struct lab_guest *guest, const struct lab_region *region);

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
