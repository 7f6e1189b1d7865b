/*
 * hash.h: the flow hash that picks a Maglev slot. It must give the same value
 * on every node (no per-node seed): a router may send a flow's packets to any
 * node, and Maglev only keeps the flow on one backend if they all agree.
 * Bob Jenkins' lookup3 (the kernel's jhash) over the client address and the
 * ports; the frontend is implied (the hash indexes the frontend's own table).
 */
#ifndef __SLUICE_HASH_H
#define __SLUICE_HASH_H

#include "common.h"

#define SLUICE_HASH_SEED 0x5c1ce5edU

static __always_inline __u32 rol32(__u32 w, unsigned int s)
{
	return (w << s) | (w >> (32 - s));
}

#define __jhash_mix(a, b, c)                \
	{                                   \
		a -= c; a ^= rol32(c, 4);  c += b; \
		b -= a; b ^= rol32(a, 6);  a += c; \
		c -= b; c ^= rol32(b, 8);  b += a; \
		a -= c; a ^= rol32(c, 16); c += b; \
		b -= a; b ^= rol32(a, 19); a += c; \
		c -= b; c ^= rol32(b, 4);  b += a; \
	}

#define __jhash_final(a, b, c)              \
	{                                   \
		c ^= b; c -= rol32(b, 14);  \
		a ^= c; a -= rol32(c, 11);  \
		b ^= a; b -= rol32(a, 25);  \
		c ^= b; c -= rol32(b, 16);  \
		a ^= c; a -= rol32(c, 4);   \
		b ^= a; b -= rol32(a, 14);  \
		c ^= b; c -= rol32(b, 24);  \
	}

#define JHASH_INITVAL 0xdeadbeef

/*
 * Hash of a flow: client address (16 bytes, as four words in memory order),
 * client and frontend ports, protocol. Six words: two rounds of three.
 */
static __always_inline __u32 flow_hash(const __u8 *saddr, __be16 sport, __be16 dport, __u8 proto)
{
	const __u32 *k = (const __u32 *)saddr;
	__u32 a, b, c;

	a = b = c = JHASH_INITVAL + (6 << 2) + SLUICE_HASH_SEED;
	a += k[0];
	b += k[1];
	c += k[2];
	__jhash_mix(a, b, c);
	a += k[3];
	b += ((__u32)sport << 16) | dport;
	c += proto;
	__jhash_final(a, b, c);
	return c;
}

#endif /* __SLUICE_HASH_H */
