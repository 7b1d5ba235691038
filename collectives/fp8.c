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

/* v in e4m3, rounded to nearest even: NaN -> 0x7f (signed), anything at
 * or past 448 (Inf too) -> 448, below 2^-6 the subnormals' 2^-9 steps. */
static inline uint8_t to_e4m3(float v)
{
    uint32_t u = bits_of(v), a = u & 0x7fffffffu;
    uint8_t sign = (uint8_t)((u >> 24) & 0x80u);
    if (a > 0x7f800000u)
        return sign | 0x7f;
    if (a >= 0x43e00000u) /* 448 */
        return sign | 0x7e;
    if (a < 0x3c800000u) { /* 2^-6: v x 2^9 in [0, 8), rounded by the 2^23 trick */
        float m = (float_of(a) * 512.0f + 8388608.0f) - 8388608.0f;
        return sign | (uint8_t)m; /* 8 is the smallest normal's code: still right */
    }
    a += 0x7ffffu + ((a >> 20) & 1u); /* keep 3 mantissa bits, ties to even */
    return sign | (uint8_t)((a >> 20) - ((127u - 7u) << 3));
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

/* n elements of x (dtype) as fp32. */
static void load_f32(float *dst, const void *x, epc_dtype_t dtype, int n)
{
    if (dtype == EPC_DTYPE_FP32) {
        memcpy(dst, x, (size_t)n * sizeof *dst);
    } else if (dtype == EPC_DTYPE_FP16) {
        for (int i = 0; i < n; i++)
            dst[i] = epc_f16_to_f32(((const uint16_t *)x)[i]);
    } else {
        for (int i = 0; i < n; i++)
            dst[i] = float_of((uint32_t)((const uint16_t *)x)[i] << 16);
    }
}

/* The block's scale: max |finite element| (at least AMAX_MIN) / 448, or
 * for ue8m0 the power of two at or above that. */
static float block_scale(const float *v, int n, int ue8m0)
{
    float amax = AMAX_MIN, s;
    for (int i = 0; i < n; i++) {
        float a = v[i] < 0 ? -v[i] : v[i];
        if (a <= 3.4028235e38f && a > amax) /* NaN and Inf fail the first test */
            amax = a;
    }
    s = amax / E4M3_MAX;
    if (ue8m0 && (bits_of(s) & 0x7fffffu) != 0)
        s = float_of((bits_of(s) & 0x7f800000u) + 0x00800000u);
    return s;
}

void coll_fp8_quantize(const void *x, epc_dtype_t dtype, int rows, int hidden, int ue8m0,
                       uint8_t *q, size_t q_stride, float *scales, size_t s_stride)
{
    size_t esize = dtype == EPC_DTYPE_FP32 ? 4 : 2;
    float v[EPC_FP8_BLOCK];
    for (int r = 0; r < rows; r++) {
        const char *xr = (const char *)x + (size_t)r * hidden * esize;
        uint8_t *qr = q + (size_t)r * q_stride;
        float *sr = (float *)(void *)((char *)scales + (size_t)r * s_stride);
        for (int b = 0; b < hidden / EPC_FP8_BLOCK; b++) {
            float s;
            load_f32(v, xr + (size_t)b * EPC_FP8_BLOCK * esize, dtype, EPC_FP8_BLOCK);
            s = block_scale(v, EPC_FP8_BLOCK, ue8m0);
            for (int i = 0; i < EPC_FP8_BLOCK; i++)
                qr[b * EPC_FP8_BLOCK + i] = to_e4m3(v[i] / s);
            sr[b] = s;
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
