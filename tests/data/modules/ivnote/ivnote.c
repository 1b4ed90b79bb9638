// SPDX-License-Identifier: GPL-2.0
/*
 * ivnote: a second out-of-tree module for ivlab's tests, beside ivtest: it
 * only keeps a note (readable in /sys/module/ivnote/parameters/note), so a
 * guest can load two modules and a test can change one and not the other.
 */
#include <linux/module.h>

static char *note = "unchanged";
module_param(note, charp, 0444);
MODULE_PARM_DESC(note, "a word the tests read back");

static int __init ivnote_init(void)
{
	pr_info("ivnote: %s\n", note);
	return 0;
}

static void __exit ivnote_exit(void)
{
}

module_init(ivnote_init);
module_exit(ivnote_exit);
MODULE_DESCRIPTION("ivlab's second test module");
MODULE_LICENSE("GPL");
