/*
 * asm/swab.h for the BPF target: no architecture overrides, so linux/swab.h
 * falls back to its generic C byte swaps (which clang turns into BPF_END).
 * See README.md.
 */
#ifndef __SLUICE_ASM_SWAB_H
#define __SLUICE_ASM_SWAB_H

#include <linux/types.h>

#endif
