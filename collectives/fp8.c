/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * fp8.c - the FP8 payload's cast (docs/FP8.md): e4m3 elements with one
 * fp32 scale per 128-element block of a row, as DeepSeek-V3 dispatches.
 * Built vectorised with the row kernels (Makefile.am).  Every element's
 * result is a function of its value and its block's scale alone, so the
 * cast is the same at any vector width and on every rank.
 */
#include "build_config.h"

#include <string.h>

#include "coll.h"
#include "dtype.h"

#define E4M3_MAX 448.0f
#define AMAX_MIN 1e-4f /* a block of zeros still gets a finite, nonzero scale */

static inline uint32_t bits_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float float_of(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

#if defined(EPC_HAVE_TARGET_CLONES) && !defined(EPC_NO_SIMD_CLONES)
#define CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CLONES
#endif

/* v in e4m3, rounded to nearest even: NaN -> 0x7f (signed), anything at
 * or past 448 (Inf too) -> 448, below 2^-6 the subnormals' 2^-9 steps.
 * Every path is computed and one selected, without branches, so that the
 * loops calling it vectorise. */
static inline uint8_t to_e4m3(float v)
{
    int32_t u = (int32_t)bits_of(v), a = u & 0x7fffffff;
    /* normal: keep 3 mantissa bits (ties to even), rebias 127 -> 7 */
    int32_t norm = ((a + 0x7ffff + ((a >> 20) & 1)) >> 20) - ((127 - 7) << 3);
    /* subnormal: a x 2^9 in [0, 8) rounded by the 2^23 trick (8 is the
     * smallest normal's code: still right); a is zeroed above the range so
     * that the conversion stays in range */
    float f = float_of((uint32_t)(a < 0x3c800000 ? a : 0)) * 512.0f;
    int32_t sub = (int32_t)((f + 8388608.0f) - 8388608.0f);
    int32_t code = a < 0x3c800000 ? sub : norm;
    code = a >= 0x43e00000 ? 0x7e : code; /* 448 */
    code = a > 0x7f800000 ? 0x7f : code;  /* NaN */
    return (uint8_t)(((u >> 24) & 0x80) | code);
}

/* |f| as integer bits (non-negative floats order as integers), 0 for NaN
 * and Inf: the largest of a block is its finite amax. */
static inline int32_t finite_abs_bits(uint32_t f)
{
    int32_t a = (int32_t)(f & 0x7fffffffu);
    return a < 0x7f800000 ? a : 0;
}

static inline float from_e4m3(uint8_t c)
{
    uint32_t e = (c >> 3) & 15u, m = c & 7u, sign = (uint32_t)(c & 0x80u) << 24;
    if (e == 15 && m == 7)
        return float_of(sign | 0x7fc00000u);
    if (e == 0)
        return float_of(sign | bits_of((float)m * 0x1p-9f));
    return float_of(sign | ((e + 120u) << 23) | (m << 20));
}

/* The block's scale, max |finite element| (at least AMAX_MIN) / 448, and
 * the factor that quantises, 448 / that maximum (DeepEP's formula); for
 * ue8m0 the power of two at or above the scale and its exact inverse. */
static float block_scale(int32_t amax_bits, int ue8m0, float *inv)
{
    float amax = float_of((uint32_t)amax_bits), s;
    amax = amax > AMAX_MIN ? amax : AMAX_MIN;
    s = amax / E4M3_MAX;
    *inv = E4M3_MAX / amax;
    if (ue8m0) {
        if ((bits_of(s) & 0x7fffffu) != 0)
            s = float_of((bits_of(s) & 0x7f800000u) + 0x00800000u);
        *inv = 1.0f / s;
    }
    return s;
}

/* One row of bf16 (the common case, read in place), or of fp32 values. */
CLONES
static void quantize_row_bf16(const uint16_t *x, int hidden, int ue8m0, uint8_t *q, float *sc)
{
    for (int b = 0; b < hidden / EPC_FP8_BLOCK; b++) {
        const uint16_t *xb = x + (size_t)b * EPC_FP8_BLOCK;
        int32_t amax = 0;
        float inv;
        for (int i = 0; i < EPC_FP8_BLOCK; i++) {
            int32_t a = finite_abs_bits((uint32_t)xb[i] << 16);
            amax = a > amax ? a : amax;
        }
        sc[b] = block_scale(amax, ue8m0, &inv);
        for (int i = 0; i < EPC_FP8_BLOCK; i++)
            q[b * EPC_FP8_BLOCK + i] = to_e4m3(float_of((uint32_t)xb[i] << 16) * inv);
    }
}

CLONES
static void quantize_row_f32(const float *x, int hidden, int ue8m0, uint8_t *q, float *sc)
{
    for (int b = 0; b < hidden / EPC_FP8_BLOCK; b++) {
        const float *xb = x + (size_t)b * EPC_FP8_BLOCK;
        int32_t amax = 0;
        float inv;
        for (int i = 0; i < EPC_FP8_BLOCK; i++) {
            int32_t a = finite_abs_bits(bits_of(xb[i]));
            amax = a > amax ? a : amax;
        }
        sc[b] = block_scale(amax, ue8m0, &inv);
        for (int i = 0; i < EPC_FP8_BLOCK; i++)
            q[b * EPC_FP8_BLOCK + i] = to_e4m3(xb[i] * inv);
    }
}

void coll_fp8_quantize(const void *x, epc_dtype_t dtype, int rows, int hidden, int ue8m0,
                       uint8_t *q, size_t q_stride, float *scales, size_t s_stride)
{
    for (int r = 0; r < rows; r++) {
        uint8_t *qr = q + (size_t)r * q_stride;
        float *sr = (float *)(void *)((char *)scales + (size_t)r * s_stride);
        if (dtype == EPC_DTYPE_FP32) {
            quantize_row_f32((const float *)x + (size_t)r * hidden, hidden, ue8m0, qr, sr);
        } else if (dtype == EPC_DTYPE_FP16) { /* block by block through fp32, exactly */
            const uint16_t *xr = (const uint16_t *)x + (size_t)r * hidden;
            float v[EPC_FP8_BLOCK];
            for (int b = 0; b < hidden / EPC_FP8_BLOCK; b++) {
                for (int i = 0; i < EPC_FP8_BLOCK; i++)
                    v[i] = epc_f16_to_f32(xr[(size_t)b * EPC_FP8_BLOCK + i]);
                quantize_row_f32(v, EPC_FP8_BLOCK, ue8m0, qr + (size_t)b * EPC_FP8_BLOCK, sr + b);
            }
        } else {
            quantize_row_bf16((const uint16_t *)x + (size_t)r * hidden, hidden, ue8m0, qr, sr);
        }
    }
}

void coll_fp8_dequantize(const uint8_t *q, size_t q_stride, const float *scales, size_t s_stride,
                         int rows, int hidden, epc_dtype_t dtype, void *y)
{
    float v[EPC_FP8_BLOCK];
    for (int r = 0; r < rows; r++) {
        const uint8_t *qr = q + (size_t)r * q_stride;
        const float *sr = (const float *)(const void *)((const char *)scales + r * s_stride);
        for (int b = 0; b < hidden / EPC_FP8_BLOCK; b++) {
            size_t at = (size_t)r * hidden + (size_t)b * EPC_FP8_BLOCK;
            for (int i = 0; i < EPC_FP8_BLOCK; i++)
                v[i] = from_e4m3(qr[b * EPC_FP8_BLOCK + i]) * sr[b];
            if (dtype == EPC_DTYPE_FP32)
                memcpy((float *)y + at, v, sizeof v);
            else if (dtype == EPC_DTYPE_FP16)
                for (int i = 0; i < EPC_FP8_BLOCK; i++)
                    ((uint16_t *)y)[at + i] = epc_f32_to_f16(v[i]);
            else
                coll_to_bf16((uint16_t *)y + at, v, EPC_FP8_BLOCK);
        }
    }
}
