// SPDX-License-Identifier: GPL-2.0
/*
 * ivlab_drv.c: test driver for QEMU's ivshmem device (ivshmem-plain and
 * ivshmem-doorbell, PCI 1af4:1110 revision 1), one /dev/ivlabN per device.
 *
 * The shared memory (BAR2) is mapped into user space as normal write-back
 * memory, never as Device memory: arm64 faults on unaligned accesses to
 * Device mappings, and the host side of the region is cached memory anyway.
 */

#include <linux/atomic.h>
#include <linux/fs.h>
#include <linux/idr.h>
#include <linux/interrupt.h>
#include <linux/io.h>
#include <linux/kref.h>
#include <linux/list.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/pci.h>
#include <linux/rwsem.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/wait.h>

#include <uapi/ivlab.h>

#define DRV_NAME			"ivlab"

#define IVLAB_PCI_DEVICE_ID		0x1110
#define IVLAB_PCI_REVISION		1

/* BAR0 registers: 32-bit accesses only. */
#define IVLAB_REG_INTR_MASK		0x00
#define IVLAB_REG_INTR_STATUS		0x04
#define IVLAB_REG_IVPOSITION		0x08
#define IVLAB_REG_DOORBELL		0x0c

#define IVLAB_DOORBELL_PEER_SHIFT	16
#define IVLAB_DOORBELL_MAX_PEER		0xffff

#define IVLAB_BAR_REGS			0
#define IVLAB_BAR_MSIX			1
#define IVLAB_BAR_SHM			2

struct ivlab_vector {
	atomic64_t		count;
	wait_queue_head_t	wait;
};

struct ivlab_dev {
	struct pci_dev		*pdev;
	void __iomem		*regs;
	void			*shm;
	phys_addr_t		shm_start;
	resource_size_t		shm_size;
	bool			doorbell;
	unsigned int		nr_vectors;
	struct ivlab_vector	*vectors;
	int			id;
	char			name[16];
	struct miscdevice	misc;
	struct kref		ref;
	/* gone is set under the write lock; BAR0 users hold it for read */
	struct rw_semaphore	revoke_lock;
	bool			gone;
	/* open files, so that remove can zap their mappings */
	struct mutex		files_lock;
	struct list_head	files;
};

struct ivlab_file {
	struct ivlab_dev	*ivdev;
	struct file		*file;
	struct list_head	node;
};

static DEFINE_IDA(ivlab_ida);

static inline u32 ivlab_readl(struct ivlab_dev *ivdev, u32 offset)
{
	return readl(ivdev->regs + offset);
}

static inline void ivlab_writel(struct ivlab_dev *ivdev, u32 offset, u32 value)
{
	writel(value, ivdev->regs + offset);
}

static struct ivlab_dev *to_ivlab_dev(struct miscdevice *misc)
{
	return container_of(misc, struct ivlab_dev, misc);
}

static void ivlab_dev_release(struct kref *ref)
{
	struct ivlab_dev *ivdev = container_of(ref, struct ivlab_dev, ref);

	kfree(ivdev->vectors);
	kfree(ivdev);
}

static void ivlab_dev_put(struct ivlab_dev *ivdev)
{
	kref_put(&ivdev->ref, ivlab_dev_release);
}

static s32 ivlab_ivposition(struct ivlab_dev *ivdev)
{
	if (!ivdev->doorbell)
		return -1;
	return (s32)ivlab_readl(ivdev, IVLAB_REG_IVPOSITION);
}

static irqreturn_t ivlab_irq_handler(int irq, void *dev_id)
{
	struct ivlab_vector *vector = dev_id;

	atomic64_inc(&vector->count);
	wake_up_interruptible_all(&vector->wait);
	return IRQ_HANDLED;
}

static vm_fault_t ivlab_vm_fault(struct vm_fault *vmf)
{
	struct vm_area_struct *vma = vmf->vma;
	struct ivlab_file *ivfile = vma->vm_file->private_data;
	struct ivlab_dev *ivdev = ivfile->ivdev;
	vm_fault_t ret = VM_FAULT_SIGBUS;

	down_read(&ivdev->revoke_lock);
	if (!ivdev->gone && vmf->pgoff < (ivdev->shm_size >> PAGE_SHIFT))
		ret = vmf_insert_pfn(vma, vmf->address,
				     PHYS_PFN(ivdev->shm_start) + vmf->pgoff);
	up_read(&ivdev->revoke_lock);
	return ret;
}

static const struct vm_operations_struct ivlab_vm_ops = {
	.fault = ivlab_vm_fault,
};

static int ivlab_open(struct inode *inode, struct file *file)
{
	/* misc_open() holds misc_mtx: remove cannot have dropped its ref yet */
	struct ivlab_dev *ivdev = to_ivlab_dev(file->private_data);
	struct ivlab_file *ivfile;

	ivfile = kzalloc(sizeof(*ivfile), GFP_KERNEL);
	if (!ivfile)
		return -ENOMEM;

	ivfile->ivdev = ivdev;
	ivfile->file = file;
	kref_get(&ivdev->ref);

	mutex_lock(&ivdev->files_lock);
	list_add(&ivfile->node, &ivdev->files);
	mutex_unlock(&ivdev->files_lock);

	file->private_data = ivfile;
	return 0;
}

static int ivlab_release(struct inode *inode, struct file *file)
{
	struct ivlab_file *ivfile = file->private_data;
	struct ivlab_dev *ivdev = ivfile->ivdev;

	mutex_lock(&ivdev->files_lock);
	list_del(&ivfile->node);
	mutex_unlock(&ivdev->files_lock);

	kfree(ivfile);
	ivlab_dev_put(ivdev);
	return 0;
}

static void ivlab_vm_flags_set(struct vm_area_struct *vma, vm_flags_t flags)
{
#ifdef IVLAB_HAVE_VM_FLAGS_SET
	vm_flags_set(vma, flags);
#else
	vma->vm_flags |= flags;
#endif
}

static int ivlab_mmap(struct file *file, struct vm_area_struct *vma)
{
	struct ivlab_file *ivfile = file->private_data;
	struct ivlab_dev *ivdev = ivfile->ivdev;
	unsigned long pages = ivdev->shm_size >> PAGE_SHIFT;
	unsigned long len = vma_pages(vma);

	/* a private mapping of shared memory would be copy-on-write nonsense */
	if (!(vma->vm_flags & VM_SHARED))
		return -EINVAL;
	if (vma->vm_pgoff >= pages || len > pages - vma->vm_pgoff)
		return -EINVAL;
	if (READ_ONCE(ivdev->gone))
		return -ENODEV;

	/*
	 * Pages are inserted at fault time under revoke_lock, so a mapping set
	 * up while the device goes away can never keep a stale page. The
	 * default vm_page_prot is write-back (Normal memory on arm64); on x86
	 * the PTEs take the memory type memremap() reserved for BAR2, which
	 * the firmware's MTRRs may lower to UC- in the PCI hole. x86 allows
	 * unaligned access to any type, and UC- keeps locked operations
	 * atomic and stores ordered, which write-combining would not.
	 */
	ivlab_vm_flags_set(vma, VM_IO | VM_PFNMAP | VM_DONTEXPAND | VM_DONTDUMP);
	vma->vm_ops = &ivlab_vm_ops;
	return 0;
}

static int ivlab_ioctl_info(struct ivlab_dev *ivdev, void __user *uarg)
{
	struct pci_dev *pdev = ivdev->pdev;
	struct ivlab_info info = {};

	down_read(&ivdev->revoke_lock);
	if (ivdev->gone) {
		up_read(&ivdev->revoke_lock);
		return -ENODEV;
	}
	info.ivposition = ivlab_ivposition(ivdev);
	up_read(&ivdev->revoke_lock);

	info.version = IVLAB_UAPI_VERSION;
	info.caps = IVLAB_CAP_MMAP_NORMAL;
	if (ivdev->doorbell)
		info.caps |= IVLAB_CAP_DOORBELL | IVLAB_CAP_MSIX;
	info.size = ivdev->shm_size;
	info.vectors = ivdev->nr_vectors;
	info.revision = pdev->revision;
	info.pci_domain = pci_domain_nr(pdev->bus);
	info.pci_bus = pdev->bus->number;
	info.pci_devfn = pdev->devfn;

	if (copy_to_user(uarg, &info, sizeof(info)))
		return -EFAULT;
	return 0;
}

static int ivlab_ioctl_ring(struct ivlab_dev *ivdev, void __user *uarg)
{
	struct ivlab_ring ring;
	int ret = 0;

	if (copy_from_user(&ring, uarg, sizeof(ring)))
		return -EFAULT;
	if (ring.flags || ring.reserved)
		return -EINVAL;
	if (!ivdev->doorbell)
		return -EOPNOTSUPP;
	if (ring.peer > IVLAB_DOORBELL_MAX_PEER || ring.vector >= ivdev->nr_vectors)
		return -EINVAL;

	down_read(&ivdev->revoke_lock);
	if (ivdev->gone)
		ret = -ENODEV;
	else
		ivlab_writel(ivdev, IVLAB_REG_DOORBELL,
			     ring.peer << IVLAB_DOORBELL_PEER_SHIFT | ring.vector);
	up_read(&ivdev->revoke_lock);
	return ret;
}

static int ivlab_ioctl_wait(struct ivlab_dev *ivdev, void __user *uarg)
{
	struct ivlab_vector *vector;
	struct ivlab_wait wait;
	long left;

	if (copy_from_user(&wait, uarg, sizeof(wait)))
		return -EFAULT;
	if (wait.flags || wait.reserved)
		return -EINVAL;
	if (wait.vector >= ivdev->nr_vectors || wait.timeout_ms > IVLAB_MAX_TIMEOUT_MS)
		return -EINVAL;
	if (READ_ONCE(ivdev->gone))
		return -ENODEV;

	vector = &ivdev->vectors[wait.vector];
	left = wait_event_interruptible_timeout(vector->wait,
						atomic64_read(&vector->count) > wait.seen ||
						READ_ONCE(ivdev->gone),
						msecs_to_jiffies(wait.timeout_ms));
	if (left < 0)
		return -EINTR;
	if (READ_ONCE(ivdev->gone))
		return -ENODEV;

	wait.count = atomic64_read(&vector->count);
	if (wait.count <= wait.seen)
		return -ETIMEDOUT;

	if (copy_to_user(uarg, &wait, sizeof(wait)))
		return -EFAULT;
	return 0;
}

static int ivlab_ioctl_irq_counts(struct ivlab_dev *ivdev, void __user *uarg)
{
	struct ivlab_irq_counts counts = {};
	unsigned int i;

	if (READ_ONCE(ivdev->gone))
		return -ENODEV;

	counts.vectors = ivdev->nr_vectors;
	for (i = 0; i < ivdev->nr_vectors; i++)
		counts.counts[i] = atomic64_read(&ivdev->vectors[i].count);

	if (copy_to_user(uarg, &counts, sizeof(counts)))
		return -EFAULT;
	return 0;
}

static long ivlab_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct ivlab_file *ivfile = file->private_data;
	struct ivlab_dev *ivdev = ivfile->ivdev;
	void __user *uarg = (void __user *)arg;

	switch (cmd) {
	case IVLAB_IOC_INFO:
		return ivlab_ioctl_info(ivdev, uarg);
	case IVLAB_IOC_RING:
		return ivlab_ioctl_ring(ivdev, uarg);
	case IVLAB_IOC_WAIT:
		return ivlab_ioctl_wait(ivdev, uarg);
	case IVLAB_IOC_IRQ_COUNTS:
		return ivlab_ioctl_irq_counts(ivdev, uarg);
	default:
		return -ENOTTY;
	}
}

static const struct file_operations ivlab_fops = {
	.owner		= THIS_MODULE,
	.open		= ivlab_open,
	.release	= ivlab_release,
	.mmap		= ivlab_mmap,
	.unlocked_ioctl	= ivlab_ioctl,
	.compat_ioctl	= compat_ptr_ioctl,
	.llseek		= noop_llseek,
};

static struct ivlab_dev *dev_to_ivlab(struct device *dev)
{
	return to_ivlab_dev(dev_get_drvdata(dev));
}

static ssize_t size_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%llu\n", (unsigned long long)dev_to_ivlab(dev)->shm_size);
}
static DEVICE_ATTR_RO(size);

static ssize_t ivposition_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%d\n", ivlab_ivposition(dev_to_ivlab(dev)));
}
static DEVICE_ATTR_RO(ivposition);

static ssize_t mode_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%s\n", dev_to_ivlab(dev)->doorbell ? "doorbell" : "plain");
}
static DEVICE_ATTR_RO(mode);

static ssize_t vectors_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%u\n", dev_to_ivlab(dev)->nr_vectors);
}
static DEVICE_ATTR_RO(vectors);

static ssize_t irq_counts_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	struct ivlab_dev *ivdev = dev_to_ivlab(dev);
	unsigned int i;
	int len = 0;

	for (i = 0; i < ivdev->nr_vectors; i++)
		len += sysfs_emit_at(buf, len, "%s%lld", i ? " " : "",
				     (long long)atomic64_read(&ivdev->vectors[i].count));
	len += sysfs_emit_at(buf, len, "\n");
	return len;
}
static DEVICE_ATTR_RO(irq_counts);

static ssize_t pci_address_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%s\n", pci_name(dev_to_ivlab(dev)->pdev));
}
static DEVICE_ATTR_RO(pci_address);

static struct attribute *ivlab_attrs[] = {
	&dev_attr_size.attr,
	&dev_attr_ivposition.attr,
	&dev_attr_mode.attr,
	&dev_attr_vectors.attr,
	&dev_attr_irq_counts.attr,
	&dev_attr_pci_address.attr,
	NULL,
};
ATTRIBUTE_GROUPS(ivlab);

static int ivlab_request_irqs(struct ivlab_dev *ivdev)
{
	struct pci_dev *pdev = ivdev->pdev;
	unsigned int i;
	int ret;

	ret = pci_alloc_irq_vectors(pdev, ivdev->nr_vectors, ivdev->nr_vectors, PCI_IRQ_MSIX);
	if (ret < 0) {
		dev_err(&pdev->dev, "cannot allocate %u MSI-X vectors: %d\n",
			ivdev->nr_vectors, ret);
		return ret;
	}

	for (i = 0; i < ivdev->nr_vectors; i++) {
		ret = pci_request_irq(pdev, i, ivlab_irq_handler, NULL,
				      &ivdev->vectors[i], "%s-%u", ivdev->name, i);
		if (ret) {
			dev_err(&pdev->dev, "cannot request IRQ of vector %u: %d\n", i, ret);
			goto err_free_irqs;
		}
	}
	return 0;

err_free_irqs:
	while (i--)
		pci_free_irq(pdev, i, &ivdev->vectors[i]);
	pci_free_irq_vectors(pdev);
	return ret;
}

static void ivlab_free_irqs(struct ivlab_dev *ivdev)
{
	unsigned int i;

	for (i = 0; i < ivdev->nr_vectors; i++)
		pci_free_irq(ivdev->pdev, i, &ivdev->vectors[i]);
	pci_free_irq_vectors(ivdev->pdev);
}

/* Fail every later access and zap the user mappings of BAR2. */
static void ivlab_revoke(struct ivlab_dev *ivdev)
{
	struct ivlab_file *ivfile;
	unsigned int i;

	down_write(&ivdev->revoke_lock);
	ivdev->gone = true;
	up_write(&ivdev->revoke_lock);

	mutex_lock(&ivdev->files_lock);
	list_for_each_entry(ivfile, &ivdev->files, node)
		unmap_mapping_range(ivfile->file->f_mapping, 0, 0, 1);
	mutex_unlock(&ivdev->files_lock);

	for (i = 0; i < ivdev->nr_vectors; i++)
		wake_up_interruptible_all(&ivdev->vectors[i].wait);
}

static int ivlab_probe(struct pci_dev *pdev, const struct pci_device_id *ent)
{
	struct device *dev = &pdev->dev;
	struct ivlab_dev *ivdev;
	unsigned int i;
	int msix;
	int ret;

	if (pdev->revision != IVLAB_PCI_REVISION) {
		dev_err(dev, "unsupported ivshmem revision %u\n", pdev->revision);
		return -ENODEV;
	}

	ivdev = kzalloc(sizeof(*ivdev), GFP_KERNEL);
	if (!ivdev)
		return -ENOMEM;

	ivdev->pdev = pdev;
	kref_init(&ivdev->ref);
	init_rwsem(&ivdev->revoke_lock);
	mutex_init(&ivdev->files_lock);
	INIT_LIST_HEAD(&ivdev->files);

	ret = pci_enable_device(pdev);
	if (ret) {
		dev_err(dev, "cannot enable device: %d\n", ret);
		goto err_put;
	}

	ret = pci_request_regions(pdev, DRV_NAME);
	if (ret) {
		dev_err(dev, "cannot request regions: %d\n", ret);
		goto err_disable;
	}

	ivdev->regs = pci_iomap(pdev, IVLAB_BAR_REGS, 0);
	if (!ivdev->regs) {
		dev_err(dev, "cannot map BAR0\n");
		ret = -ENOMEM;
		goto err_release;
	}

	ivdev->shm_start = pci_resource_start(pdev, IVLAB_BAR_SHM);
	ivdev->shm_size = pci_resource_len(pdev, IVLAB_BAR_SHM);
	if (ivdev->shm_size < PAGE_SIZE) {
		dev_err(dev, "BAR2 too small: %pa\n", &ivdev->shm_size);
		ret = -ENODEV;
		goto err_iounmap;
	}

	/* Reserves write-back for BAR2, which user mappings then inherit. */
	ivdev->shm = memremap(ivdev->shm_start, ivdev->shm_size, MEMREMAP_WB);
	if (!ivdev->shm) {
		dev_err(dev, "cannot map BAR2 write-back\n");
		ret = -ENOMEM;
		goto err_iounmap;
	}

	/* Only ivshmem-doorbell has MSI-X (BAR1); ivshmem-plain has no IRQs. */
	msix = pci_msix_vec_count(pdev);
	ivdev->doorbell = msix > 0 && pci_resource_len(pdev, IVLAB_BAR_MSIX);
	if (ivdev->doorbell) {
		if (msix > IVLAB_MAX_VECTORS) {
			dev_err(dev, "%d vectors, at most %d supported\n", msix, IVLAB_MAX_VECTORS);
			ret = -EINVAL;
			goto err_memunmap;
		}
		ivdev->nr_vectors = msix;
		ivdev->vectors = kcalloc(msix, sizeof(*ivdev->vectors), GFP_KERNEL);
		if (!ivdev->vectors) {
			ret = -ENOMEM;
			goto err_memunmap;
		}
		for (i = 0; i < ivdev->nr_vectors; i++) {
			atomic64_set(&ivdev->vectors[i].count, 0);
			init_waitqueue_head(&ivdev->vectors[i].wait);
		}
	}

	ret = ida_alloc(&ivlab_ida, GFP_KERNEL);
	if (ret < 0)
		goto err_memunmap;
	ivdev->id = ret;
	snprintf(ivdev->name, sizeof(ivdev->name), DRV_NAME "%d", ivdev->id);

	pci_set_master(pdev);

	if (ivdev->doorbell) {
		ret = ivlab_request_irqs(ivdev);
		if (ret)
			goto err_clear_master;
	}

	ivdev->misc.minor = MISC_DYNAMIC_MINOR;
	ivdev->misc.name = ivdev->name;
	ivdev->misc.fops = &ivlab_fops;
	ivdev->misc.parent = dev;
	ivdev->misc.groups = ivlab_groups;
	ret = misc_register(&ivdev->misc);
	if (ret) {
		dev_err(dev, "cannot register %s: %d\n", ivdev->name, ret);
		goto err_free_irqs;
	}

	pci_set_drvdata(pdev, ivdev);
	dev_info(dev, "%s: %pa bytes, %s, ivposition %d, %u vectors\n",
		 ivdev->name, &ivdev->shm_size, ivdev->doorbell ? "doorbell" : "plain",
		 ivlab_ivposition(ivdev), ivdev->nr_vectors);
	return 0;

err_free_irqs:
	if (ivdev->doorbell)
		ivlab_free_irqs(ivdev);
err_clear_master:
	pci_clear_master(pdev);
	ida_free(&ivlab_ida, ivdev->id);
err_memunmap:
	memunmap(ivdev->shm);
err_iounmap:
	pci_iounmap(pdev, ivdev->regs);
err_release:
	pci_release_regions(pdev);
err_disable:
	pci_disable_device(pdev);
err_put:
	ivlab_dev_put(ivdev);
	return ret;
}

static void ivlab_remove(struct pci_dev *pdev)
{
	struct ivlab_dev *ivdev = pci_get_drvdata(pdev);

	misc_deregister(&ivdev->misc);
	ivlab_revoke(ivdev);
	if (ivdev->doorbell)
		ivlab_free_irqs(ivdev);
	pci_clear_master(pdev);
	ida_free(&ivlab_ida, ivdev->id);
	memunmap(ivdev->shm);
	pci_iounmap(pdev, ivdev->regs);
	pci_release_regions(pdev);
	pci_disable_device(pdev);
	/* open files keep the state (not the device) until they are closed */
	ivlab_dev_put(ivdev);
}

static const struct pci_device_id ivlab_pci_ids[] = {
	{ PCI_DEVICE(PCI_VENDOR_ID_REDHAT_QUMRANET, IVLAB_PCI_DEVICE_ID) },
	{ }
};
MODULE_DEVICE_TABLE(pci, ivlab_pci_ids);

static struct pci_driver ivlab_driver = {
	.name		= DRV_NAME,
	.id_table	= ivlab_pci_ids,
	.probe		= ivlab_probe,
	.remove		= ivlab_remove,
};
module_pci_driver(ivlab_driver);

MODULE_DESCRIPTION("ivlab test driver for the QEMU ivshmem device");
MODULE_AUTHOR("ivlab developers");
MODULE_LICENSE("GPL");
