/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * test_kernels - the streamed copy dispatch and combine place rows with
 * (collectives/kernels.c): every destination and source alignment within a
 * line, lengths around the 16- and 64-byte steps, and a row of real size,
 * compared with memcpy, the bytes on either side left as they were; and
 * the fp32 -> bf16 rounding combine stores rows with, against a reference
 * written from the definition (nearest, ties to even; a NaN stays a quiet
 * NaN), on every kind of value, at every length up to 40 and a real row;
 * and the one-pass sum of bf16 rows (coll_sum_rows_bf16) against the
 * row-by-row sum of its definition, bit for bit, for 1 to 33 rows of any
 * bf16 value, at lengths around its 16-lane and 128-element steps, fp32
 * and rounded to bf16 as it sums (against the reference rounding of the
 * reference sum), the element after the last left as it was.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "coll.h"

#define GUARD 128

/* A line-aligned buffer of at least n bytes (aligned_alloc wants a
 * multiple of the alignment). */
static void *alloc64(size_t n)
{
    return aligned_alloc(64, (n + 63) & ~(size_t)63);
}

/* Copies n bytes from src + so to a poisoned dst + dof with
 * coll_stream_copy and checks them and the guards on either side. */
static void check_copy(const unsigned char *src, size_t so, size_t dof, size_t n)
{
    unsigned char *dst = alloc64(n + 2 * GUARD + 64);
    assert_non_null(dst);
    memset(dst, 0xA5, n + 2 * GUARD + 64);
    coll_stream_copy(dst + GUARD + dof, src + so, n);
    coll_stream_fence();
    assert_memory_equal(dst + GUARD + dof, src + so, n);
    for (size_t i = 0; i < GUARD + dof; i++)
        assert_int_equal(dst[i], 0xA5);
    for (size_t i = GUARD + dof + n; i < n + 2 * GUARD + 64; i++)
        assert_int_equal(dst[i], 0xA5);
    free(dst);
}

static void test_stream_copy_alignments(void **state)
{
    static const size_t lens[] = {0, 1, 15, 16, 17, 63, 64, 65, 127, 128, 129, 200, 1000};
    unsigned char *src = malloc(4096);
    (void)state;
    assert_non_null(src);
    for (int i = 0; i < 4096; i++) /* the offset in the data: a shift shows */
        src[i] = (unsigned char)(i * 7 + (i >> 8));
    for (size_t so = 0; so < 64; so += 3)
        for (size_t dof = 0; dof < 64; dof++)
            for (size_t l = 0; l < sizeof lens / sizeof *lens; l++)
                check_copy(src, so, dof, lens[l]);
    free(src);
}

/* A row of hidden 7168 bf16 (and an odd hidden) at every 2-byte start. */
static void test_stream_copy_rows(void **state)
{
    size_t n = 14336 + 2;
    unsigned char *src = malloc(n + 64);
    float *f = malloc(7168 * sizeof *f), *g = alloc64(7168 * sizeof *g + 64);
    (void)state;
    assert_non_null(src);
    assert_non_null(f);
    assert_non_null(g);
    for (size_t i = 0; i < n + 64; i++)
        src[i] = (unsigned char)(i ^ (i >> 9));
    for (size_t dof = 0; dof < 64; dof += 2) {
        check_copy(src, dof, dof, 14336);
        check_copy(src, 2, dof, 7167 * 2);
    }
    for (int i = 0; i < 7168; i++)
        f[i] = (float)i * 0.5f - 100.0f;
    coll_stream_row(g + 1, f, 7167); /* an fp32 slot one element off a line */
    coll_stream_fence();
    assert_memory_equal(g + 1, f, 7167 * sizeof *f);
    free(src);
    free(f);
    free(g);
}

/* bf16 of f by the definition: the upper half, rounded up when the lower
 * half is above half an ulp or exactly half with an odd upper half; a NaN
 * keeps its sign and top payload bits, quietened. */
static uint16_t bf16_reference(uint32_t u)
{
    uint32_t upper = u >> 16, lower = u & 0xffffu;
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)(upper | 0x40u);
    if (lower > 0x8000u || (lower == 0x8000u && (upper & 1u)))
        upper++;
    return (uint16_t)upper;
}

static void test_to_bf16(void **state)
{
    static const uint32_t special[] = {
        0x00000000u, 0x80000000u, 0x00000001u, 0x807fffffu, 0x3f808000u, 0x3f818000u,
        0x3f807fffu, 0x3f808001u, 0x7f7fffffu, 0xff7fffffu, 0x7f7f8000u, 0x7f800000u,
        0xff800000u, 0x7f800001u, 0xff800001u, 0x7fc00000u, 0x7fffffffu, 0xffffffffu,
        0x7f80ffffu, 0x0000ffffu, 0x00008000u, 0x00018000u, 0x4b7fffffu, 0xc0490fdbu};
    enum { H = 7168 };
    uint32_t *bits = malloc(H * sizeof *bits);
    uint16_t *out = malloc((H + 2) * sizeof *out);
    uint64_t x = 0x2545f4914f6cdd1dull;
    (void)state;
    assert_true(bits != NULL && out != NULL);
    for (int i = 0; i < H; i++) { /* the specials, ties, then any bits */
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        bits[i] = i < 24       ? special[i]
                  : i % 3 == 0 ? ((uint32_t)x & 0xffff0000u) | 0x8000u
                               : (uint32_t)x;
    }
    for (int c = 0; c <= 41; c++) { /* lengths 0 .. 40, then a row */
        int n = c <= 40 ? c : H;
        for (int at = 0; at < 3 && at + n <= H; at++) { /* source starts off 64 bytes */
            float src[40];
            const float *from = (const float *)(const void *)(bits + at);
            if (n <= 40) { /* a copy whose tail sits at the end of the array */
                memcpy(src, bits + at, (size_t)n * sizeof *src);
                from = src;
            }
            memset(out, 0xA5, (H + 2) * sizeof *out);
            coll_to_bf16(out + 1, from, n);
            assert_int_equal(out[0], 0xA5A5);
            assert_int_equal(out[n + 1], 0xA5A5);
            for (int i = 0; i < n; i++)
                assert_int_equal(out[i + 1], bf16_reference(bits[at + i]));
        }
    }
    free(bits);
    free(out);
}

/* bf16 bits as fp32. */
static float from_bf16(uint16_t b)
{
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* out = the definition's sum of n rows of len, one term at a time in row
 * order from 0 (volatile: each step rounded to fp32 as written). */
static void sum_reference(float *out, uint16_t *const *rows, const float *w, int n, int len)
{
    for (int i = 0; i < len; i++) {
        volatile float a = 0.0f;
        for (int j = 0; j < n; j++) {
            volatile float p = w[j] * from_bf16(rows[j][i]);
            a = a + p;
        }
        out[i] = a;
    }
}

/* Equal bit for bit, but any NaN for any NaN: which of two NaNs an
 * addition keeps is the instruction's operand order. */
static void assert_same_floats(const float *a, const float *b, int n, int rows, int len)
{
    for (int i = 0; i < n; i++) {
        uint32_t u, v;
        memcpy(&u, &a[i], 4);
        memcpy(&v, &b[i], 4);
        if (u != v && !(a[i] != a[i] && b[i] != b[i]))
            fail_msg("%d rows of %d: element %d is 0x%08x, the reference 0x%08x", rows, len, i,
                     (unsigned)u, (unsigned)v);
    }
}

/* The rounded sum (bf16 out) against ref rounded by the reference; a NaN
 * sum's payload is the addition's (assert_same_floats), so only NaN-ness
 * is checked there. */
static void assert_rounded(const uint16_t *out, const float *ref, int rows, int len)
{
    for (int i = 0; i < len; i++) {
        uint32_t v;
        memcpy(&v, &ref[i], 4);
        if (ref[i] != ref[i] ? (out[i] & 0x7fffu) <= 0x7f80u : out[i] != bf16_reference(v))
            fail_msg("%d rows of %d, rounded: element %d is 0x%04x, the reference 0x%04x", rows,
                     len, i, out[i], bf16_reference(v));
    }
}

static void test_sum_rows(void **state)
{
    static const int lens[] = {1, 15, 16, 17, 127, 128, 129, 300, 7168};
    static const int counts[] = {1, 2, 7, 8, 9, 33};
    static const uint16_t special[] = {0x0000, 0x8000, 0x7f80, 0xff80, 0x7fc1, 0xffc0,
                                       0x0001, 0x8001, 0x7f7f, 0xff7f, 0x3f80, 0xbf80};
    uint64_t x = 0x9e3779b97f4a7c15ull;
    uint16_t *rows[33];
    const void *crow[33];
    float w[33], *out = malloc((7168 + 1) * sizeof *out), *ref = malloc(7168 * sizeof *ref);
    uint16_t *y = malloc((7168 + 2) * sizeof *y);
    (void)state;
    assert_true(out != NULL && ref != NULL && y != NULL);
    for (int j = 0; j < 33; j++) {
        rows[j] = malloc(7168 * sizeof *rows[j]);
        assert_non_null(rows[j]);
        crow[j] = rows[j];
        for (int i = 0; i < 7168; i++) { /* mostly finite, some of every special */
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            rows[j][i] = x % 61 == 0
                             ? special[(x >> 8) % 12]
                             : (uint16_t)(((x >> 16) & 0x80ffu) | (((x >> 24) % 40 + 107) << 7));
        }
        w[j] = j % 5 == 4 ? -0.0f : (float)((int)(x >> 40) % 9 - 4) / 3.0f;
    }
    assert_int_equal(coll_sum_rows_bf16(out, 0, crow, w, 0, 16, crow, 1), 0); /* no rows */
    for (size_t c = 0; c < sizeof counts / sizeof *counts; c++)
        for (size_t l = 0; l < sizeof lens / sizeof *lens; l++) {
            int n = counts[c], len = lens[l];
            memset(out, 0xA5, (size_t)(len + 1) * sizeof *out);
            if (!coll_sum_rows_bf16(out, 0, crow, w, n, len, crow + 1, n < 32 ? 32 - n : 0))
                continue; /* no one-pass sum in this build or CPU: callers go row by row */
            sum_reference(ref, rows, w, n, len);
            assert_same_floats(out, ref, len, n, len);
            assert_int_equal(((const uint32_t *)(const void *)out)[len], 0xA5A5A5A5u);
            memset(y, 0xA5, (size_t)(len + 2) * sizeof *y); /* y + 1: off a 4-byte boundary */
            assert_int_equal(coll_sum_rows_bf16(y + 1, 1, crow, w, n, len, crow, n), 1);
            assert_rounded(y + 1, ref, n, len);
            assert_int_equal(y[0], 0xA5A5);
            assert_int_equal(y[len + 1], 0xA5A5);
        }
    for (int j = 0; j < 33; j++)
        free(rows[j]);
    free(out);
    free(ref);
    free(y);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stream_copy_alignments),
        cmocka_unit_test(test_stream_copy_rows),
        cmocka_unit_test(test_to_bf16),
        cmocka_unit_test(test_sum_rows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
