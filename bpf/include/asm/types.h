/* asm/types.h for the BPF target: see README.md. */
#ifndef __SLUICE_ASM_TYPES_H
#define __SLUICE_ASM_TYPES_H

#include <asm-generic/types.h>

#endif
