/* labboot.h: what a lab's guests bring (their own modules, files,
 * overlays, 9p shares, boot commands), delivered as an initramfs archive
 * appended to the image's and applied by /init at boot. */
#ifndef IVLAB_LABBOOT_H
#define IVLAB_LABBOOT_H

#include <glib.h>

#include "lab.h"

/* Where /init reads what to apply, and where it says how that went. */
#define LABBOOT_CONF "/etc/ivlab/boot.conf"
#define LABBOOT_RUN_DIR "/etc/ivlab/run"
#define LABBOOT_MODULE_DIR "/lib/modules/user"

/* For each guest that brings something (domxml_guest_initrd() names its
 * initramfs): build its modules (cached), write its overlay archive and
 * the combined initramfs, which is rewritten only when it changed. The
 * images must exist. */
gboolean labboot_prepare(const struct lab *lab, GError **error);

/* The archive of what guest brings, written to out_path (gzip); for
 * modules, kos holds each module's built .ko path in the guest's order. */
gboolean labboot_write_overlay(const struct lab_guest *guest, GPtrArray *kos,
			       const char *out_path, GError **error);

/* One thing a guest boots with, by content: `up` records them when it
 * boots the guest and tells what changed since, `restart` applies it. */
struct labboot_input {
	char *what;   /* "module DIR", "file DEST (from SRC)", "overlay DIR", "kernel IMAGE", ... */
	char *digest; /* SHA-256 of its content (a module's source: build outputs left out) */
};

/* guest's inputs (struct labboot_input *), cheap: nothing is built. */
GPtrArray *labboot_inputs(const struct lab_guest *guest);
/* As the run state keeps them: "DIGEST WHAT" each. */
char **labboot_inputs_record(GPtrArray *inputs);
/* What differs from a record ("module DIR changed; file ... is new"), or
 * NULL when nothing does. */
char *labboot_inputs_changes(GPtrArray *inputs, char **recorded);

/* labboot_prepare() for one guest. */
gboolean labboot_prepare_guest(const struct lab *lab, const struct lab_guest *guest,
			       GError **error);

#endif
