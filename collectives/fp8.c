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
#if defined(__x86_64__) && defined(EPC_HAVE_TARGET_CLONES) && !defined(EPC_NO_SIMD_CLONES)
#include <immintrin.h>
#define QUANTIZE_512 1 /* a hand-written AVX-512 path for bf16 rows */
#endif

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

#if defined(QUANTIZE_512)
/* to_e4m3 on 16 lanes, the same selects: each lane's code equals the
 * scalar one (the tests compare every element with a reference). */
__attribute__((target("avx512f"))) static __m128i e4m3_16(__m512 v)
{
    const __m512i one = _mm512_set1_epi32(1);
    __m512i u = _mm512_castps_si512(v), a = _mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff));
    __m512i odd = _mm512_and_si512(_mm512_srli_epi32(a, 20), one);
    __m512i norm = _mm512_sub_epi32(
        _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(a, _mm512_set1_epi32(0x7ffff)), odd),
                          20),
        _mm512_set1_epi32((127 - 7) << 3));
    __mmask16 small = _mm512_cmplt_epi32_mask(a, _mm512_set1_epi32(0x3c800000));
    /* x 2^9 rounded to nearest even, as the scalar's 2^23 trick does */
    __m512 f = _mm512_mul_ps(_mm512_castsi512_ps(_mm512_maskz_mov_epi32(small, a)),
                             _mm512_set1_ps(512.0f));
    __m512i sub = _mm512_cvt_roundps_epi32(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512i code = _mm512_mask_mov_epi32(norm, small, sub);
    code = _mm512_mask_mov_epi32(code, _mm512_cmpge_epi32_mask(a, _mm512_set1_epi32(0x43e00000)),
                                 _mm512_set1_epi32(0x7e));
    code = _mm512_mask_mov_epi32(code, _mm512_cmpgt_epi32_mask(a, _mm512_set1_epi32(0x7f800000)),
                                 _mm512_set1_epi32(0x7f));
    code =
        _mm512_or_si512(code, _mm512_and_si512(_mm512_srli_epi32(u, 24), _mm512_set1_epi32(0x80)));
    return _mm512_cvtepi32_epi8(code);
}

/* 16 bf16 values at x as fp32 bits. */
__attribute__((target("avx512f"))) static __m512i bf16_bits_16(const uint16_t *x)
{
    return _mm512_slli_epi32(
        _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(const void *)x)), 16);
}

/* quantize_row_bf16 with 16 lanes a step (GCC's own vectorisation of it
 * runs about half as fast: 256-bit, and packs for the byte results). */
__attribute__((target("avx512f"))) static void
quantize_row_bf16_512(const uint16_t *x, int hidden, int ue8m0, uint8_t *q, float *sc)
{
    for (int b = 0; b < hidden / EPC_FP8_BLOCK; b++) {
        const uint16_t *xb = x + (size_t)b * EPC_FP8_BLOCK;
        __m512i amax = _mm512_setzero_si512();
        __m512 inv;
        float inv1;
        for (int i = 0; i < EPC_FP8_BLOCK; i += 16) { /* finite_abs_bits, max */
            __m512i a = _mm512_and_si512(bf16_bits_16(xb + i), _mm512_set1_epi32(0x7fffffff));
            __mmask16 finite = _mm512_cmplt_epi32_mask(a, _mm512_set1_epi32(0x7f800000));
            amax = _mm512_mask_max_epi32(amax, finite, amax, a);
        }
        sc[b] = block_scale(_mm512_reduce_max_epi32(amax), ue8m0, &inv1);
        inv = _mm512_set1_ps(inv1);
        for (int i = 0; i < EPC_FP8_BLOCK; i += 16) {
            __m512 v = _mm512_mul_ps(_mm512_castsi512_ps(bf16_bits_16(xb + i)), inv);
            _mm_storeu_si128((__m128i *)(void *)(q + (size_t)b * EPC_FP8_BLOCK + i), e4m3_16(v));
        }
    }
}
#endif

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
#if defined(QUANTIZE_512)
    int fast = coll_has_avx512();
#endif
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
            const uint16_t *xr = (const uint16_t *)x + (size_t)r * hidden;
#if defined(QUANTIZE_512)
            if (fast) {
                quantize_row_bf16_512(xr, hidden, ue8m0, qr, sr);
                continue;
            }
#endif
            quantize_row_bf16(xr, hidden, ue8m0, qr, sr);
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
