/* asm/bitsperlong.h for the BPF target (64-bit longs): see README.md. */
#ifndef __SLUICE_ASM_BITSPERLONG_H
#define __SLUICE_ASM_BITSPERLONG_H

#define __BITS_PER_LONG 64

#include <asm-generic/bitsperlong.h>

#endif
