// SPDX-License-Identifier: GPL-2.0
/* broken: a module that does not compile, for ivlab's tests. */
#include <linux/module.h>

static int __init broken_init(void)
{
	return not_declared_anywhere;
}

module_init(broken_init);
MODULE_LICENSE("GPL");
