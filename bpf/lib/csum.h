/*
 * csum.h: Internet checksum arithmetic (RFC 1071, incremental per RFC 1624)
 * on raw 16-bit words as they sit in memory: the one's complement sum does
 * not depend on byte order as long as every operand is loaded the same way,
 * so nothing here swaps bytes.
 *
 * A "diff" is a 32-bit accumulator of ~old + new over changed words; apply it
 * to a checksum field with csum_apply. Diffs of up to a few hundred words
 * cannot overflow 32 bits.
 */
#ifndef __SLUICE_CSUM_H
#define __SLUICE_CSUM_H

#include "common.h"

/* Folds a 32-bit one's complement sum to 16 bits (not complemented). */
static __always_inline __u16 csum_fold32(__u32 s)
{
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)s;
}

/* Adds the change of one 16-bit word from old to new to diff. */
static __always_inline __u32 csum_diff16(__u32 diff, __u16 old, __u16 new)
{
	return diff + (__u16)~old + new;
}

/* Adds the change of n 16-bit words (n constant) from old to new to diff. */
static __always_inline __u32 csum_diff_words(__u32 diff, const void *old, const void *new, int n)
{
	const __u16 *o = old, *w = new;

#pragma unroll
	for (int i = 0; i < n; i++)
		diff = csum_diff16(diff, o[i], w[i]);
	return diff;
}

/*
 * Returns checksum field value csum updated by diff: RFC 1624 eqn. 3,
 * HC' = ~(~HC + ~m + m').
 */
static __always_inline __u16 csum_update(__u16 csum, __u32 diff)
{
	return ~csum_fold32((__u16)~csum + diff);
}

/* Sums n bytes (n constant, even) at p into s. */
static __always_inline __u32 csum_add_words(__u32 s, const void *p, int n)
{
	const __u16 *w = p;

#pragma unroll
	for (int i = 0; i < n / 2; i++)
		s += w[i];
	return s;
}

/* Host-order 16-bit value v as a raw memory word (for lengths, protocol). */
static __always_inline __u16 csum_be16(__u16 v)
{
	return bpf_htons(v);
}

#endif /* __SLUICE_CSUM_H */
