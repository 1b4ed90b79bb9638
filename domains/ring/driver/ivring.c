// SPDX-License-Identifier: GPL-2.0
/*
 * ivring.c: a small example driver for QEMU's ivshmem-doorbell device (PCI
 * 1af4:1110, QEMU's docs/specs/ivshmem-spec.rst), the one domains/ring.xml
 * brings into its guests. Each device it drives is a /dev/ivringN character
 * device (the interface is in ivring.h): the shared memory (BAR2) to mmap,
 * interrupts of MSI-X vector 0 to wait for with read() or poll(), the
 * device's own IVPosition (BAR0 offset 8) and the Doorbell register (BAR0
 * offset 12) to ring a peer with.
 *
 * In an ivlab lab, ivlab.ko loads first and takes every ivshmem device but
 * those a lab's <module bind="REGION"> hands to this driver (their
 * driver_override names "ivring"), so the two share one guest.
 */
#include <linux/fs.h>
#include <linux/idr.h>
#include <linux/interrupt.h>
#include <linux/io.h>
#include <linux/kref.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/pci.h>
#include <linux/poll.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/wait.h>

#include "ivring.h"

#define DRV_NAME		"ivring"

#define IVRING_BAR_REGS		0
#define IVRING_BAR_SHM		2
#define IVRING_REG_IVPOSITION	0x08
#define IVRING_REG_DOORBELL	0x0c

struct ivring {
	struct pci_dev		*pdev;
	void __iomem		*regs;		/* BAR0 */
	phys_addr_t		shm_start;	/* BAR2 */
	resource_size_t		shm_size;
	unsigned int		vectors;
	atomic64_t		irqs;		/* interrupts on vector 0 */
	wait_queue_head_t	wait;
	struct mutex		lock;		/* gone against BAR0 users */
	bool			gone;		/* removed: regs unmapped */
	struct kref		ref;		/* the device and each open file */
	struct miscdevice	misc;
	int			id;
	char			name[16];
};

/* Each open file counts the interrupts it has seen. */
struct ivring_file {
	struct ivring		*ring;
	u64			seen;
};

static DEFINE_IDA(ivring_ida);

static void ivring_free(struct kref *ref)
{
	kfree(container_of(ref, struct ivring, ref));
}

static irqreturn_t ivring_irq(int irq, void *data)
{
	struct ivring *ring = data;

	atomic64_inc(&ring->irqs);
	wake_up_interruptible_all(&ring->wait);
	return IRQ_HANDLED;
}

static int ivring_open(struct inode *inode, struct file *file)
{
	/* misc_open() holds the misc lock: remove cannot drop its ref now */
	struct ivring *ring = container_of(file->private_data, struct ivring, misc);
	struct ivring_file *f = kzalloc(sizeof(*f), GFP_KERNEL);

	if (!f)
		return -ENOMEM;
	kref_get(&ring->ref);
	f->ring = ring;
	f->seen = atomic64_read(&ring->irqs);
	file->private_data = f;
	return 0;
}

static int ivring_release(struct inode *inode, struct file *file)
{
	struct ivring_file *f = file->private_data;

	kref_put(&f->ring->ref, ivring_free);
	kfree(f);
	return 0;
}

static bool ivring_pending(struct ivring_file *f)
{
	return atomic64_read(&f->ring->irqs) != f->seen;
}

static ssize_t ivring_read(struct file *file, char __user *buf, size_t len, loff_t *ppos)
{
	struct ivring_file *f = file->private_data;
	struct ivring *ring = f->ring;
	u64 count;
	int ret;

	if (len < sizeof(count))
		return -EINVAL;
	if (!ivring_pending(f) && (file->f_flags & O_NONBLOCK))
		return READ_ONCE(ring->gone) ? -ENODEV : -EAGAIN;
	ret = wait_event_interruptible(ring->wait, ivring_pending(f) || READ_ONCE(ring->gone));
	if (ret)
		return ret;
	if (!ivring_pending(f))
		return -ENODEV;

	count = atomic64_read(&ring->irqs);
	f->seen = count;
	if (copy_to_user(buf, &count, sizeof(count)))
		return -EFAULT;
	return sizeof(count);
}

static __poll_t ivring_poll(struct file *file, poll_table *wait)
{
	struct ivring_file *f = file->private_data;

	poll_wait(file, &f->ring->wait, wait);
	if (ivring_pending(f))
		return EPOLLIN | EPOLLRDNORM;
	return READ_ONCE(f->ring->gone) ? EPOLLERR | EPOLLHUP : 0;
}

/*
 * Shared memory is normal cacheable memory in every guest, so the mapping
 * keeps the default (write-back) attributes: atomics and unaligned accesses
 * work on arm64 as they do on x86.
 */
static int ivring_mmap(struct file *file, struct vm_area_struct *vma)
{
	struct ivring *ring = ((struct ivring_file *)file->private_data)->ring;

	if (!(vma->vm_flags & VM_SHARED))
		return -EINVAL;
	if (READ_ONCE(ring->gone))
		return -ENODEV;
	return vm_iomap_memory(vma, ring->shm_start, ring->shm_size);
}

static long ivring_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct ivring *ring = ((struct ivring_file *)file->private_data)->ring;
	struct ivring_info info = {};
	long ret = 0;
	u32 bell;

	switch (cmd) {
	case IVRING_IOC_INFO:
		info.size = ring->shm_size;
		info.vectors = ring->vectors;
		mutex_lock(&ring->lock);
		if (ring->gone)
			ret = -ENODEV;
		else
			info.position = readl(ring->regs + IVRING_REG_IVPOSITION);
		mutex_unlock(&ring->lock);
		if (!ret && copy_to_user((void __user *)arg, &info, sizeof(info)))
			ret = -EFAULT;
		return ret;
	case IVRING_IOC_RING:
		if (get_user(bell, (u32 __user *)arg))
			return -EFAULT;
		if ((bell & 0xffff) >= ring->vectors)
			return -EINVAL;
		mutex_lock(&ring->lock);
		if (ring->gone)
			ret = -ENODEV;
		else
			writel(bell, ring->regs + IVRING_REG_DOORBELL);
		mutex_unlock(&ring->lock);
		return ret;
	default:
		return -ENOTTY;
	}
}

static const struct file_operations ivring_fops = {
	.owner		= THIS_MODULE,
	.open		= ivring_open,
	.release	= ivring_release,
	.read		= ivring_read,
	.poll		= ivring_poll,
	.mmap		= ivring_mmap,
	.unlocked_ioctl	= ivring_ioctl,
	.compat_ioctl	= compat_ptr_ioctl,
	.llseek		= noop_llseek,
};

static int ivring_probe(struct pci_dev *pdev, const struct pci_device_id *id)
{
	struct device *dev = &pdev->dev;
	struct ivring *ring;
	int ret;

	ring = kzalloc(sizeof(*ring), GFP_KERNEL);
	if (!ring)
		return -ENOMEM;
	ring->pdev = pdev;
	atomic64_set(&ring->irqs, 0);
	init_waitqueue_head(&ring->wait);
	mutex_init(&ring->lock);
	kref_init(&ring->ref);

	ret = pci_enable_device(pdev);
	if (ret)
		goto err_free;
	ret = pci_request_regions(pdev, DRV_NAME);
	if (ret)
		goto err_disable;
	ring->regs = pci_iomap(pdev, IVRING_BAR_REGS, 0);
	if (!ring->regs) {
		ret = -ENOMEM;
		goto err_release;
	}
	ring->shm_start = pci_resource_start(pdev, IVRING_BAR_SHM);
	ring->shm_size = pci_resource_len(pdev, IVRING_BAR_SHM);

	/* Only ivshmem-doorbell has MSI-X; ivshmem-plain has no interrupts. */
	ret = pci_alloc_irq_vectors(pdev, 1, 1, PCI_IRQ_MSIX);
	if (ret < 0) {
		dev_err(dev, "no MSI-X vector (%d): not an ivshmem-doorbell device?\n", ret);
		goto err_iounmap;
	}
	ring->vectors = pci_msix_vec_count(pdev);
	/* MSI-X messages are writes by the device: it must be a bus master */
	pci_set_master(pdev);

	ret = ida_alloc(&ivring_ida, GFP_KERNEL);
	if (ret < 0)
		goto err_vectors;
	ring->id = ret;
	snprintf(ring->name, sizeof(ring->name), DRV_NAME "%d", ring->id);

	ret = request_irq(pci_irq_vector(pdev, 0), ivring_irq, 0, ring->name, ring);
	if (ret)
		goto err_ida;

	ring->misc.minor = MISC_DYNAMIC_MINOR;
	ring->misc.name = ring->name;
	ring->misc.fops = &ivring_fops;
	ring->misc.parent = dev;
	ret = misc_register(&ring->misc);
	if (ret)
		goto err_irq;

	pci_set_drvdata(pdev, ring);
	dev_info(dev, "/dev/%s: %llu bytes shared, IVPosition %u, %u vectors\n", ring->name,
		 (unsigned long long)ring->shm_size, readl(ring->regs + IVRING_REG_IVPOSITION),
		 ring->vectors);
	return 0;

err_irq:
	free_irq(pci_irq_vector(pdev, 0), ring);
err_ida:
	ida_free(&ivring_ida, ring->id);
err_vectors:
	pci_clear_master(pdev);
	pci_free_irq_vectors(pdev);
err_iounmap:
	pci_iounmap(pdev, ring->regs);
err_release:
	pci_release_regions(pdev);
err_disable:
	pci_disable_device(pdev);
err_free:
	kfree(ring);
	return ret;
}

static void ivring_remove(struct pci_dev *pdev)
{
	struct ivring *ring = pci_get_drvdata(pdev);

	misc_deregister(&ring->misc);
	mutex_lock(&ring->lock);
	ring->gone = true;
	mutex_unlock(&ring->lock);
	wake_up_interruptible_all(&ring->wait);

	free_irq(pci_irq_vector(pdev, 0), ring);
	ida_free(&ivring_ida, ring->id);
	pci_clear_master(pdev);
	pci_free_irq_vectors(pdev);
	pci_iounmap(pdev, ring->regs);
	pci_release_regions(pdev);
	pci_disable_device(pdev);
	/* open files keep the structure (not the device) until closed */
	kref_put(&ring->ref, ivring_free);
}

static const struct pci_device_id ivring_ids[] = {
	{ PCI_DEVICE(PCI_VENDOR_ID_REDHAT_QUMRANET, 0x1110) },
	{ }
};
MODULE_DEVICE_TABLE(pci, ivring_ids);

static struct pci_driver ivring_driver = {
	.name		= DRV_NAME,
	.id_table	= ivring_ids,
	.probe		= ivring_probe,
	.remove		= ivring_remove,
};
module_pci_driver(ivring_driver);

MODULE_DESCRIPTION("example ring driver for the QEMU ivshmem-doorbell device");
MODULE_LICENSE("GPL");
