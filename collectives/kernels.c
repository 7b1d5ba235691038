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
#if defined(__x86_64__) && defined(EPC_HAVE_TARGET_CLONES) && !defined(EPC_NO_SIMD_CLONES)
#include <immintrin.h>
#define STREAM_512 1 /* 64-byte streams where the CPU has AVX-512 */
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

/* acc += src rounded to bf16 (as coll_to_bf16 rounds): a node sum as the
 * BF16 combine wire carries it. */
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

#if defined(STREAM_512)
/* 64-byte streams: a whole line per store.  Measured on this project's
 * 2-core VM (2 processes each writing 16384 rows of 14336 B to scattered
 * places at once, three passes each): 13.3-14.6 ms against 16.7-18.2 ms
 * with 16-byte streams and 16.4-18.6 ms with memcpy. */
__attribute__((target("avx512f"))) static size_t stream_64(char *d, const char *s, size_t bytes)
{
    size_t i = 0;
    for (; i + 64 <= bytes; i += 64)
        _mm512_stream_si512((void *)(d + i), _mm512_loadu_si512((const void *)(s + i)));
    return i;
}

int coll_has_avx512(void)
{
    static int known = -1; /* -1: not asked yet (a race only asks twice) */
    int v = __atomic_load_n(&known, __ATOMIC_RELAXED);
    if (v < 0) {
        __builtin_cpu_init();
        v = __builtin_cpu_supports("avx512f") != 0;
        __atomic_store_n(&known, v, __ATOMIC_RELAXED);
    }
    return v;
}
#else
int coll_has_avx512(void)
{
    return 0;
}
#endif

#if defined(STREAM_512)
/* Elements of each row summed between two bursts of prefetches of the
 * next rows (256 bytes of each bf16 row: 4 lines). */
#define SUM_BLOCK 128

/* Prefetches elements [b, e) of every row in next. */
static void prefetch_rows(const void *const *next, int nnext, int b, int e)
{
    for (int j = 0; j < nnext; j++)
        for (size_t o = (size_t)b * 2; o < (size_t)e * 2; o += 64)
            _mm_prefetch((const char *)next[j] + o, _MM_HINT_T0);
}

/* The sum's 16 lanes from element i: 0 + w[0] x rows[0], each next
 * row's term added in turn. */
__attribute__((target("avx512f"))) static inline __m512 sum_16(const void *const *rows,
                                                               const float *w, int n, int i)
{
    __m512 a = _mm512_setzero_ps();
    for (int j = 0; j < n; j++) {
        __m512i u = _mm512_cvtepu16_epi32(
            _mm256_loadu_si256((const __m256i *)(const void *)((const uint16_t *)rows[j] + i)));
        a = _mm512_add_ps(
            a, _mm512_mul_ps(_mm512_set1_ps(w[j]), _mm512_castsi512_ps(_mm512_slli_epi32(u, 16))));
    }
    return a;
}

/* Element i of the sum, as sum_16 computes each lane. */
static float sum_1(const void *const *rows, const float *w, int n, int i)
{
    float a = 0.0f;
    for (int j = 0; j < n; j++) {
        uint32_t u = (uint32_t)((const uint16_t *)rows[j])[i] << 16;
        float f;
        memcpy(&f, &u, sizeof f);
        a = a + w[j] * f;
    }
    return a;
}

/* 16 floats' bf16 bits, as bf16_bits rounds each. */
__attribute__((target("avx512f"))) static inline __m256i bf16_16(__m512 f)
{
    const __m512i u = _mm512_castps_si512(f), hi = _mm512_srli_epi32(u, 16);
    __m512i up = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)),
                                                    _mm512_and_si512(hi, _mm512_set1_epi32(1))),
                                   16),
            quiet = _mm512_or_si512(hi, _mm512_set1_epi32(0x40));
    __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)),
                                            _mm512_set1_epi32(0x7f800000));
    return _mm512_cvtepi32_epi16(_mm512_mask_blend_epi32(nan, up, quiet));
}

/* out[b..e) = the sum, as coll_sum_rows_bf16 defines it, 16 lanes a step
 * and the tail one element at a time: the same operations in the same
 * order for every element; with round, each rounded to bf16 in registers
 * and stored as such (bf16 out). */
__attribute__((target("avx512f"))) static void
sum_block_512(void *out, int round, const void *const *rows, const float *w, int n, int b, int e)
{
    int i = b;
    for (; i + 16 <= e; i += 16) {
        __m512 a = sum_16(rows, w, n, i);
        if (round)
            _mm256_storeu_si256((__m256i *)(void *)((uint16_t *)out + i), bf16_16(a));
        else
            _mm512_storeu_ps((float *)out + i, a);
    }
    for (; i < e; i++) {
        float a = sum_1(rows, w, n, i);
        if (round)
            ((uint16_t *)out)[i] = bf16_bits(a);
        else
            ((float *)out)[i] = a;
    }
}
#endif

int coll_sum_rows_bf16(void *out, int round, const void *const *rows, const float *w, int n,
                       int len, const void *const *next, int nnext)
{
#if defined(STREAM_512)
    if (n < 1 || !coll_has_avx512())
        return 0;
    for (int b = 0; b < len; b += SUM_BLOCK) {
        int e = len - b < SUM_BLOCK ? len : b + SUM_BLOCK;
        prefetch_rows(next, nnext, b, e);
        sum_block_512(out, round, rows, w, n, b, e);
    }
    return 1;
#else
    (void)out, (void)round, (void)rows, (void)w, (void)n, (void)len, (void)next, (void)nnext;
    return 0;
#endif
}

/* dst = src (bytes), with non-temporal stores where the target has them:
 * a combine slot or a dispatched row is written once and read by another
 * rank, so it should not displace this rank's working set, nor be read
 * into the cache first (write-allocate) only to be overwritten. */
void coll_stream_copy(void *dst, const void *src, size_t bytes)
{
#if defined(__SSE2__)
    char *d = dst;
    const char *s = src;
    size_t head = (64 - ((uintptr_t)d & 63)) & 63, i;
    if (head > bytes)
        head = bytes;
    memcpy(d, s, head); /* up to a line boundary */
    i = head;
#if defined(STREAM_512)
    if (coll_has_avx512())
        i += stream_64(d + i, s + i, bytes - i);
#endif
    for (; i + 16 <= bytes; i += 16)
        _mm_stream_si128((__m128i *)(void *)(d + i),
                         _mm_loadu_si128((const __m128i *)(const void *)(s + i)));
    memcpy(d + i, s + i, bytes - i);
#else
    memcpy(dst, src, bytes);
#endif
}

void coll_stream_row(float *dst, const float *src, int n)
{
    coll_stream_copy(dst, src, (size_t)n * sizeof *dst);
}

/* Orders the streamed stores before any later store (the fence's flag). */
void coll_stream_fence(void)
{
#if defined(__SSE2__)
    _mm_sfence();
#endif
}
