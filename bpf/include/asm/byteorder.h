/* asm/byteorder.h for the BPF target: follows -target bpfel / bpfeb. See README.md. */
#ifndef __SLUICE_ASM_BYTEORDER_H
#define __SLUICE_ASM_BYTEORDER_H

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#include <linux/byteorder/little_endian.h>
#else
#include <linux/byteorder/big_endian.h>
#endif

#endif
