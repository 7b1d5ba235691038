/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * test_kernels - the streamed copy dispatch and combine place rows with
 * (collectives/kernels.c): every destination and source alignment within a
 * line, lengths around the 16- and 64-byte steps, and a row of real size,
 * compared with memcpy, the bytes on either side left as they were.
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stream_copy_alignments),
        cmocka_unit_test(test_stream_copy_rows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
