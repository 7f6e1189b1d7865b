/* asm/posix_types.h for the BPF target: see README.md. */
#ifndef __SLUICE_ASM_POSIX_TYPES_H
#define __SLUICE_ASM_POSIX_TYPES_H

#include <asm-generic/posix_types.h>

#endif
