/* apt.h: asking apt about Debian packages (which kernel a metapackage
 * means today, each package's candidate version and sha256) and fetching
 * them with apt-get download into a cache; every call goes through
 * ivlab_run(), so tests answer for apt. */
#ifndef IVLAB_APT_H
#define IVLAB_APT_H

#include <glib.h>

/* One package to fetch: resolved by apt_candidates(), placed by apt_download(). */
struct apt_deb {
	char *spec;        /* what apt-get download gets: name:arch=version */
	char *filename;    /* name_version_arch.deb, as apt-get download names it */
	char *path;        /* in the cache */
	char *sha256;      /* what apt's index says it must be, if known */
	gboolean verified; /* the cached file was checked against sha256 */
};

void apt_deb_clear(struct apt_deb *deb);

/* "package:debian_arch" */
char *apt_qualified(const char *package, const char *debian_arch);

/* apt can fetch debian_arch's packages here (dpkg's native or a foreign
 * architecture); else an error saying how to add it. */
gboolean apt_check_arch(const char *debian_arch, GError **error);

/* The linux-image-<ABI> package the metapackage (for debian_arch) depends
 * on today, e.g. "linux-image-6.1.0-57-amd64". */
char *apt_resolve_kernel(const char *metapackage, const char *debian_arch, GError **error);

/* Fills each deb's spec, file name and sha256 from apt's candidate
 * versions; names are "package" or "package:arch", NULL-terminated, one
 * per deb. */
gboolean apt_candidates(struct apt_deb *debs, const char *const *names, GError **error);

/* Puts the count debs in cache_dir (setting their path): those the cache
 * lacks, or has damaged, are fetched with apt-get download (which checks
 * them against the archive's signed index). */
gboolean apt_download(struct apt_deb *debs, gsize count, const char *cache_dir, GError **error);

/* A digest of what apt's answers depend on: its package lists, its
 * configuration and dpkg's architectures. While it is unchanged, packages
 * resolved earlier still are the current ones. */
char *apt_state(void);

#endif
