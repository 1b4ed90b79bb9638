/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * ivring.h: the user interface of the ivring example driver (ivring.c),
 * shared by the driver and the ring programs (../producer.c, ../consumer.c).
 *
 * /dev/ivringN is one ivshmem-doorbell device:
 *   mmap(MAP_SHARED)  the shared memory (BAR2), offset 0 to info.size
 *   read(8 bytes)     blocks until vector 0 fired since this file's last
 *                     read, then returns the __u64 count of its interrupts
 *                     so far (O_NONBLOCK: EAGAIN instead of blocking)
 *   poll              readable when read would not block
 *   IVRING_IOC_INFO   own IVPosition, vectors, size
 *   IVRING_IOC_RING   rings a peer: (peer << 16) | vector
 */
#ifndef _UAPI_LINUX_IVRING_H
#define _UAPI_LINUX_IVRING_H

#include <linux/ioctl.h>
#include <linux/types.h>

struct ivring_info {
	__u64 size;		/* bytes of shared memory: the mmap limit */
	__u32 position;		/* own IVPosition: the id peers ring */
	__u32 vectors;		/* MSI-X vectors of each peer */
};

#define IVRING_PEER_SHIFT	16

#define IVRING_IOC_INFO		_IOR('v', 0x60, struct ivring_info)
#define IVRING_IOC_RING		_IOW('v', 0x61, __u32)

#endif /* _UAPI_LINUX_IVRING_H */
