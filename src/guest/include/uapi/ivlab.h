/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * ivlab.h: the ioctl interface of the ivlab ivshmem test driver, shared by
 * the kernel module (ivlab_drv.c) and the guest agent (agent.c).
 */
#ifndef _UAPI_LINUX_IVLAB_H
#define _UAPI_LINUX_IVLAB_H

#include <linux/types.h>
#include <linux/ioctl.h>

/* Bumped when a structure or the meaning of a field changes. */
#define IVLAB_UAPI_VERSION	1

/* Most interrupt vectors a device can have; more are refused at probe. */
#define IVLAB_MAX_VECTORS	64

/* Longest wait the driver accepts, in milliseconds. */
#define IVLAB_MAX_TIMEOUT_MS	600000

/* ivlab_info.caps */
#define IVLAB_CAP_DOORBELL	(1U << 0)	/* BAR0 doorbell and IVPosition are live */
#define IVLAB_CAP_MSIX		(1U << 1)	/* interrupts arrive on MSI-X vectors */
#define IVLAB_CAP_MMAP_NORMAL	(1U << 2)	/* mmap gives normal memory, never Device */

/*
 * IVLAB_IOC_INFO: what the device is. ivposition is -1 on a plain device
 * (no doorbell); pci_* say where the device sits (slot = pci_devfn >> 3).
 */
struct ivlab_info {
	__u32 version;
	__u32 caps;
	__u64 size;
	__s32 ivposition;
	__u32 vectors;
	__u32 revision;
	__u32 pci_domain;
	__u32 pci_bus;
	__u32 pci_devfn;
	__u32 reserved[6];
};

/* IVLAB_IOC_RING: interrupt vector @vector of peer @peer. flags must be 0. */
struct ivlab_ring {
	__u32 peer;
	__u32 vector;
	__u32 flags;
	__u32 reserved;
};

/*
 * IVLAB_IOC_WAIT: sleep until the interrupt count of @vector exceeds @seen,
 * at most @timeout_ms milliseconds (0 polls). On success @count holds the
 * count; -ETIMEDOUT when it did not move, -EINTR on a signal.
 */
struct ivlab_wait {
	__u32 vector;
	__u32 timeout_ms;
	__u64 seen;
	__u64 count;
	__u32 flags;
	__u32 reserved;
};

/* IVLAB_IOC_IRQ_COUNTS: interrupts received so far, per vector. */
struct ivlab_irq_counts {
	__u32 vectors;
	__u32 reserved;
	__u64 counts[IVLAB_MAX_VECTORS];
};

#define IVLAB_IOC_MAGIC		0xb9
#define IVLAB_IOC_INFO		_IOR(IVLAB_IOC_MAGIC, 0, struct ivlab_info)
#define IVLAB_IOC_RING		_IOW(IVLAB_IOC_MAGIC, 1, struct ivlab_ring)
#define IVLAB_IOC_WAIT		_IOWR(IVLAB_IOC_MAGIC, 2, struct ivlab_wait)
#define IVLAB_IOC_IRQ_COUNTS	_IOR(IVLAB_IOC_MAGIC, 3, struct ivlab_irq_counts)

#endif /* _UAPI_LINUX_IVLAB_H */
