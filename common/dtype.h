/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * dtype.h - element conversions for token rows: fp16 to and from fp32,
 * rounding to nearest even, NaN kept NaN.  Portable C (no F16C needed);
 * combine accumulates in fp32 and converts once at the end.  (bf16 rows
 * are converted inside the vectorised row kernels, collectives/kernels.c.)
 */
#ifndef EPC_COMMON_DTYPE_H
#define EPC_COMMON_DTYPE_H

#include <stdint.h>
#include <string.h>

static inline float epc_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ffu, u;
    float f;
    if (exp == 0x1f) {
        u = sign | 0x7f800000u | (man << 13); /* inf or NaN */
    } else if (exp != 0) {
        u = sign | ((exp + 112) << 23) | (man << 13);
    } else if (man == 0) {
        u = sign;
    } else { /* subnormal: normalise */
        int e = -1;
        do {
            e++;
            man <<= 1;
        } while ((man & 0x400u) == 0);
        u = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ffu) << 13);
    }
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline uint16_t epc_f32_to_f16(float f)
{
    uint32_t u, sign, man;
    int32_t exp;
    memcpy(&u, &f, sizeof u);
    sign = (u >> 16) & 0x8000u;
    exp = (int32_t)((u >> 23) & 0xff) - 127 + 15;
    man = u & 0x7fffffu;
    if (((u >> 23) & 0xff) == 0xff) /* inf or NaN */
        return (uint16_t)(sign | 0x7c00u | (man ? 0x200u : 0));
    if (exp >= 31)
        return (uint16_t)(sign | 0x7c00u); /* overflow: inf */
    if (exp <= 0) {                        /* subnormal or zero */
        uint32_t shift, half, rest;
        if (exp < -10)
            return (uint16_t)sign;
        man |= 0x800000u;
        shift = (uint32_t)(14 - exp);
        half = 1u << (shift - 1);
        rest = man & ((1u << shift) - 1);
        man >>= shift;
        if (rest > half || (rest == half && (man & 1u)))
            man++;
        return (uint16_t)(sign | man);
    }
    {
        uint32_t h = sign | ((uint32_t)exp << 10) | (man >> 13), rest = man & 0x1fffu;
        if (rest > 0x1000u || (rest == 0x1000u && (h & 1u)))
            h++; /* may carry into the exponent: still correct (to inf at most) */
        return (uint16_t)h;
    }
}

#endif
