// SPDX-License-Identifier: GPL-2.0
/*
 * ivtest: the out-of-tree module ivlab's tests bring into a guest. It takes
 * parameters (greeting, readable in /sys/module/ivtest/parameters/greeting;
 * fail=1 makes it refuse to load, saying why in the kernel log) and is a
 * PCI driver with no ID table: it owns only the devices a driver_override
 * hands it (a region bound to it in the lab file).
 */
#include <linux/module.h>
#include <linux/pci.h>

static char *greeting = "hello";
module_param(greeting, charp, 0444);
MODULE_PARM_DESC(greeting, "what the module says when it loads");
static bool fail;
module_param(fail, bool, 0444);
MODULE_PARM_DESC(fail, "refuse to load (for tests of a module that does not load)");

static int ivtest_probe(struct pci_dev *pdev, const struct pci_device_id *id)
{
	int ret = pcim_enable_device(pdev);

	if (ret)
		return ret;
	dev_info(&pdev->dev, "ivtest owns this device\n");
	return 0;
}

static struct pci_driver ivtest_driver = {
	.name = "ivtest",
	.probe = ivtest_probe,
};

static int __init ivtest_init(void)
{
	if (fail) {
		pr_err("ivtest: refusing to load: asked to with fail=1\n");
		return -EINVAL;
	}
	pr_info("ivtest: %s\n", greeting);
	return pci_register_driver(&ivtest_driver);
}

static void __exit ivtest_exit(void)
{
	pci_unregister_driver(&ivtest_driver);
}

module_init(ivtest_init);
module_exit(ivtest_exit);
MODULE_DESCRIPTION("ivlab's test module");
MODULE_LICENSE("GPL");
