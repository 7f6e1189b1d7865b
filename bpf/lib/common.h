/*
 * common.h: the includes and small helpers every Sluice BPF program starts
 * with. Include this first, then structs.h, maps.h and the logic headers.
 *
 * No vmlinux.h: XDP and TC programs only need the stable UAPI (the linux/ headers) and
 * libbpf's helper declarations. The asm/ headers those pull in come from the
 * shim in ../include/asm (see its README.md).
 */
#ifndef __SLUICE_COMMON_H
#define __SLUICE_COMMON_H

#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>

#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#ifndef offsetof
#define offsetof(type, member) __builtin_offsetof(type, member)
#endif

/* TCX verdicts (linux/bpf.h of Linux 6.6; the UAPI headers here are older). */
#ifndef TCX_NEXT
#define TCX_NEXT (-1)
#define TCX_PASS 0
#define TCX_DROP 2
#endif

#ifndef likely
#define likely(x) __builtin_expect(!!(x), 1)
#endif
#ifndef unlikely
#define unlikely(x) __builtin_expect(!!(x), 0)
#endif

/*
 * Compile-time check, usable at file scope: a struct shared with Go must keep
 * the size the Go side was generated for.
 */
#define SLUICE_ASSERT_SIZE(type, size) \
	_Static_assert(sizeof(type) == (size), "sizeof(" #type ") changed: regenerate and review the Go side")

#endif /* __SLUICE_COMMON_H */
