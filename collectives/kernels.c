/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * kernels.c - the row loops of combine, built vectorised on their own (see
 * Makefile.am; no finite-math assumption here: outputs may hold NaN).
 * Each element's arithmetic is the same scalar expression at any vector
 * width and no FMA is contracted, so results do not depend on the build.
 */
#include "build_config.h"

#include <stdint.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "coll.h"

#if defined(EPC_HAVE_TARGET_CLONES) && !defined(EPC_NO_SIMD_CLONES)
#define CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CLONES
#endif

CLONES
void coll_axpy_bf16(float *acc, const uint16_t *row, float w, int n)
{
    for (int i = 0; i < n; i++) {
        uint32_t u = (uint32_t)row[i] << 16;
        float f;
        memcpy(&f, &u, sizeof f);
        acc[i] += w * f;
    }
}

CLONES
void coll_axpy_f32(float *acc, const float *row, float w, int n)
{
    for (int i = 0; i < n; i++)
        acc[i] += w * row[i];
}

/* 0 + w*x, not w*x: the first term of a sum, bit for bit (-0 becomes +0). */
CLONES
void coll_scale_bf16(float *acc, const uint16_t *row, float w, int n)
{
    for (int i = 0; i < n; i++) {
        uint32_t u = (uint32_t)row[i] << 16;
        float f;
        memcpy(&f, &u, sizeof f);
        acc[i] = 0.0f + w * f;
    }
}

CLONES
void coll_scale_f32(float *acc, const float *row, float w, int n)
{
    for (int i = 0; i < n; i++)
        acc[i] = 0.0f + w * row[i];
}

CLONES
void coll_add_row(float *acc, const float *src, int n)
{
    for (int i = 0; i < n; i++)
        acc[i] += src[i];
}

/* f's bf16 bits: round to nearest even; a NaN stays a (quiet) NaN. */
static inline uint16_t bf16_bits(float f)
{
    uint32_t u, nan;
    memcpy(&u, &f, sizeof u);
    nan = (u & 0x7fffffffu) > 0x7f800000u;
    return (uint16_t)(nan ? (u >> 16) | 0x40u : (u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

/* acc += src rounded to bf16 (as coll_to_bf16 rounds): a partial sum as
 * the BF16 combine wire carries it. */
CLONES
void coll_add_row_bf16(float *acc, const float *src, int n)
{
    for (int i = 0; i < n; i++) {
        uint32_t r = (uint32_t)bf16_bits(src[i]) << 16;
        float f;
        memcpy(&f, &r, sizeof f);
        acc[i] += f;
    }
}

CLONES
void coll_to_bf16(uint16_t *dst, const float *src, int n)
{
    for (int i = 0; i < n; i++)
        dst[i] = bf16_bits(src[i]);
}

/* dst = src, with non-temporal stores where the target has them: a
 * combine slot is written once and read by another rank, so it should not
 * displace this rank's working set, nor be read into the cache first
 * (write-allocate) only to be overwritten.  Not cloned: SSE2 is the
 * x86-64 baseline and 16-byte streams already reach the memory's rate. */
void coll_stream_row(float *dst, const float *src, int n)
{
#if defined(__SSE2__)
    int i = 0;
    for (; i < n && ((uintptr_t)(dst + i) & 15) != 0; i++) /* to a 16-byte boundary */
        dst[i] = src[i];
    for (; i + 4 <= n; i += 4)
        _mm_stream_ps(dst + i, _mm_loadu_ps(src + i));
    for (; i < n; i++)
        dst[i] = src[i];
#else
    memcpy(dst, src, (size_t)n * sizeof *dst);
#endif
}

/* Orders the streamed stores before any later store (the fence's flag). */
void coll_stream_fence(void)
{
#if defined(__SSE2__)
    _mm_sfence();
#endif
}
