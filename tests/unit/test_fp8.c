/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * test_fp8 - the FP8 cast (epc_fp8_quantize / _dequantize) against an
 * independent reference: every e4m3 value decoded from its fields in
 * double precision and the nearest one searched for (ties to the even
 * code), scales from the recipe's formula; every element and scale
 * compared, on random rows of many magnitudes and on hand-made blocks
 * (exact ties, saturation, subnormals, zeros, NaN and Inf), from fp32,
 * bf16 and fp16; the round trip within the format's bound; bad inputs.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "epcomm.h"

#define BLK 128

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static double urand(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}

/* e4m3 code c (0..0x7e) as a double, from its fields. */
static double e4m3_value(int c)
{
    int e = (c >> 3) & 15, m = c & 7;
    return e == 0 ? m / 8.0 * ldexp(1.0, -6) : (1.0 + m / 8.0) * ldexp(1.0, e - 7);
}

/* The nearest e4m3 code to v (ties to the even code), NaN 0x7f. */
static uint8_t ref_e4m3(float v)
{
    int best = 0, sign = signbit(v) ? 0x80 : 0;
    double a = fabs((double)v), bd = INFINITY;
    if (isnan(v))
        return (uint8_t)(sign | 0x7f);
    for (int c = 0; c <= 0x7e; c++) {
        double d = fabs(e4m3_value(c) - a);
        if (d < bd || (d == bd && (c & 1) == 0))
            best = c, bd = d;
    }
    return (uint8_t)(sign | best);
}

/* The recipe: scale = amax / 448 and q = x x (448 / amax), amax the
 * largest finite |x| (at least 1e-4); UE8M0: the power of two at or above
 * the scale, q = x / scale (exact). *inv gets the factor. */
static float ref_scale(const float *v, int ue8m0, float *inv)
{
    float amax = 1e-4f, s;
    for (int i = 0; i < BLK; i++)
        if (isfinite(v[i]) && fabsf(v[i]) > amax)
            amax = fabsf(v[i]);
    s = amax / 448.0f;
    *inv = 448.0f / amax;
    if (ue8m0) {
        int e;
        float f = frexpf(s, &e);
        s = f == 0.5f ? s : ldexpf(1.0f, e);
        *inv = 1.0f / s;
    }
    return s;
}

static uint16_t to_bf16(float f) /* round to nearest even, NaN kept */
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if (isnan(f))
        return (uint16_t)((u >> 16) | 0x40);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
}

static float from_bf16(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Quantises rows x rows of `hidden` fp32 values (vals, already exact in
 * dtype) given in dtype, and compares every code and scale. */
static void check_rows(const float *vals, int rows, int hidden, epc_dtype_t dtype, int ue8m0)
{
    size_t n = (size_t)rows * hidden, nb = (size_t)hidden / BLK;
    void *x = malloc(n * 4);
    uint8_t *q = malloc(n);
    float *s = malloc((size_t)rows * nb * 4);
    for (size_t i = 0; i < n; i++) {
        if (dtype == EPC_DTYPE_FP32)
            ((float *)x)[i] = vals[i];
        else
            ((uint16_t *)x)[i] = to_bf16(vals[i]); /* callers pass bf16-exact values */
    }
    memset(q, 0xcc, n);
    assert_int_equal(
        epc_fp8_quantize(x, dtype, rows, hidden, ue8m0, q, (size_t)hidden, s, nb * sizeof(float)),
        EPC_OK);
    for (int r = 0; r < rows; r++)
        for (size_t b = 0; b < nb; b++) {
            const float *v = vals + (size_t)r * hidden + b * BLK;
            float inv, want_s = ref_scale(v, ue8m0, &inv);
            if (memcmp(&want_s, &s[(size_t)r * nb + b], 4) != 0)
                fail_msg("row %d block %zu: scale %a, reference %a", r, b,
                         (double)s[(size_t)r * nb + b], (double)want_s);
            for (int i = 0; i < BLK; i++) {
                uint8_t want = ref_e4m3(v[i] * inv), got = q[(size_t)r * hidden + b * BLK + i];
                if (got != want)
                    fail_msg("row %d element %zu: %a x %a -> 0x%02x, reference 0x%02x", r,
                             b * BLK + i, (double)v[i], (double)inv, got, want);
            }
        }
    free(x), free(q), free(s);
}

/* Random rows: each block a different magnitude (2^-30 .. 2^30), signs mixed. */
static float *random_rows(int rows, int hidden, int bf16_exact)
{
    float *v = malloc((size_t)rows * hidden * 4);
    for (int r = 0; r < rows; r++)
        for (int b = 0; b < hidden / BLK; b++) {
            double mag = ldexp(1.0, (int)(urand() * 60) - 30);
            for (int i = 0; i < BLK; i++) {
                float f = (float)((urand() * 2 - 1) * mag * (urand() < 0.1 ? 1e-3 : 1));
                v[(size_t)r * hidden + b * BLK + i] = bf16_exact ? from_bf16(to_bf16(f)) : f;
            }
        }
    return v;
}

static void test_random_rows_match_reference(void **state)
{
    (void)state;
    for (int ue = 0; ue <= 1; ue++) {
        float *v = random_rows(16, 512, 0), *w = random_rows(16, 512, 1);
        check_rows(v, 16, 512, EPC_DTYPE_FP32, ue);
        check_rows(w, 16, 512, EPC_DTYPE_BF16, ue);
        free(v), free(w);
    }
}

/* One block with amax 448 (scale exactly 1): exact ties, saturation,
 * subnormals; then zeros, NaN and Inf. */
static void test_special_blocks(void **state)
{
    float v[4 * BLK] = {0};
    const float ties[] = {448.0f,         1.0625f,        1.1875f,        -1.0625f,
                          2.5f * 0x1p-9f, 7.5f * 0x1p-9f, 0.5f * 0x1p-9f, 1.5f * 0x1p-9f,
                          240.0f,         232.0f,         0x1p-12f,       -0.0f,
                          447.0f,         416.0f + 16.0f, 0x1.fffffep-7f};
    (void)state;
    memcpy(v, ties, sizeof ties);
    /* block 1: a NaN, +Inf and -Inf beside finite values (amax over the finite) */
    v[BLK] = NAN, v[BLK + 1] = INFINITY, v[BLK + 2] = -INFINITY, v[BLK + 3] = 3.0f;
    v[BLK + 4] = -1e30f;
    /* block 2: all zeros; block 3: values far below 1e-4 (amax clamped) */
    for (int i = 0; i < BLK; i++)
        v[3 * BLK + i] = (float)(i - 64) * 1e-9f;
    check_rows(v, 1, 4 * BLK, EPC_DTYPE_FP32, 0);
    check_rows(v, 1, 4 * BLK, EPC_DTYPE_FP32, 1);
    {
        uint8_t q[4 * BLK];
        float s[4];
        assert_int_equal(epc_fp8_quantize(v, EPC_DTYPE_FP32, 1, 4 * BLK, 0, q, sizeof q, s, 16),
                         EPC_OK);
        assert_true(s[0] == 1.0f);
        assert_int_equal(q[0], 0x7e);          /* 448 */
        assert_int_equal(q[1], 0x38);          /* 1.0625 -> 1.0, the even neighbour */
        assert_int_equal(q[2], 0x3a);          /* 1.1875 -> 1.25 */
        assert_int_equal(q[5], 0x08);          /* 7.5 x 2^-9 -> the smallest normal */
        assert_int_equal(q[BLK] & 0x7f, 0x7f); /* NaN */
        assert_int_equal(q[BLK + 1], 0x7e);    /* +Inf saturates */
        assert_int_equal(q[BLK + 2], 0xfe);
        assert_true(s[1] == 1e30f / 448.0f); /* the largest finite |x|, not Inf */
        assert_true(s[2] == 1e-4f / 448.0f); /* zeros: the clamped amax */
    }
}

static void test_fp16_input(void **state)
{
    /* fp16 values chosen exact: small integers and halves */
    float v[2 * BLK];
    uint16_t h[2 * BLK];
    uint8_t q[2 * BLK];
    float s[2], vf[2 * BLK];
    (void)state;
    for (int i = 0; i < 2 * BLK; i++) {
        vf[i] = (float)(i - 100) * 0.5f;
        v[i] = vf[i];
        /* fp16 of small multiples of 0.5: exact; built from the fields */
        {
            float a = fabsf(v[i]);
            int e;
            float f = frexpf(a, &e);
            uint16_t man = a == 0 ? 0 : (uint16_t)((f * 2 - 1) * 1024);
            h[i] = (uint16_t)((v[i] < 0 ? 0x8000 : 0) | (a == 0 ? 0 : ((e - 1 + 15) << 10) | man));
        }
    }
    assert_int_equal(epc_fp8_quantize(h, EPC_DTYPE_FP16, 1, 2 * BLK, 0, q, sizeof q, s, 8), EPC_OK);
    for (int b = 0; b < 2; b++) {
        float inv;
        assert_true(s[b] == ref_scale(vf + b * BLK, 0, &inv));
        for (int i = 0; i < BLK; i++)
            assert_int_equal(q[b * BLK + i], ref_e4m3(vf[b * BLK + i] * inv));
    }
}

/* |x - q x s| <= |x| / 16 (half of e4m3's 2^-3 relative step) or s x 2^-10
 * (half a subnormal step), whichever is larger; bf16 output is the fp32
 * result rounded to nearest even. */
static void test_round_trip_bound(void **state)
{
    int rows = 8, hidden = 1024;
    size_t n = (size_t)rows * hidden, nb = (size_t)hidden / BLK;
    float *v = random_rows(rows, hidden, 0), *y = malloc(n * 4), *s = malloc(rows * nb * 4);
    uint16_t *yb = malloc(n * 2);
    uint8_t *q = malloc(n);
    (void)state;
    assert_int_equal(epc_fp8_quantize(v, EPC_DTYPE_FP32, rows, hidden, 0, q, hidden, s, nb * 4),
                     EPC_OK);
    assert_int_equal(epc_fp8_dequantize(q, hidden, s, nb * 4, rows, hidden, EPC_DTYPE_FP32, y),
                     EPC_OK);
    assert_int_equal(epc_fp8_dequantize(q, hidden, s, nb * 4, rows, hidden, EPC_DTYPE_BF16, yb),
                     EPC_OK);
    for (size_t i = 0; i < n; i++) {
        float sc = s[i / BLK];
        double bound = fmax(fabs(v[i]) / 16.0, sc * ldexp(1.0, -10)) * (1 + 1e-6);
        if (fabs((double)v[i] - y[i]) > bound)
            fail_msg("element %zu: %a came back as %a (bound %a)", i, (double)v[i], (double)y[i],
                     bound);
        assert_true(y[i] == (float)(e4m3_value(q[i] & 0x7f) * (q[i] & 0x80 ? -1 : 1)) * sc);
        assert_int_equal(yb[i], to_bf16(y[i]));
    }
    free(v), free(y), free(s), free(yb), free(q);
}

static void expect_error(epc_status_t st, const char *word)
{
    assert_int_equal(st, EPC_ERR_INVALID_ARG);
    if (strstr(epc_last_error(NULL), word) == NULL)
        fail_msg("error text '%s' does not name '%s'", epc_last_error(NULL), word);
}

static void test_bad_inputs(void **state)
{
    float x[BLK] = {0}, s[1] = {7}, y[BLK];
    uint8_t q[BLK];
    (void)state;
    memset(q, 0x11, sizeof q);
    expect_error(epc_fp8_quantize(x, EPC_DTYPE_FP32, -1, BLK, 0, q, BLK, s, 4), "rows");
    expect_error(epc_fp8_quantize(x, EPC_DTYPE_FP32, 1, 100, 0, q, BLK, s, 4), "hidden");
    expect_error(epc_fp8_quantize(x, EPC_DTYPE_FP32, 1, 0, 0, q, BLK, s, 4), "hidden");
    expect_error(epc_fp8_quantize(x, (epc_dtype_t)9, 1, BLK, 0, q, BLK, s, 4), "dtype");
    expect_error(epc_fp8_quantize(NULL, EPC_DTYPE_FP32, 1, BLK, 0, q, BLK, s, 4), "x");
    expect_error(epc_fp8_quantize(x, EPC_DTYPE_FP32, 1, BLK, 0, NULL, BLK, s, 4), "q");
    expect_error(epc_fp8_quantize(x, EPC_DTYPE_FP32, 1, BLK, 0, q, BLK, NULL, 4), "scales");
    expect_error(epc_fp8_quantize(x, EPC_DTYPE_FP32, 1, BLK, 0, q, BLK - 1, s, 4), "q_stride");
    expect_error(epc_fp8_quantize(x, EPC_DTYPE_FP32, 1, BLK, 0, q, BLK, s, 3), "s_stride");
    expect_error(epc_fp8_dequantize(q, BLK, s, 4, 1, BLK, EPC_DTYPE_FP32, NULL), "y");
    expect_error(epc_fp8_dequantize(q, BLK, s, 4, 1, 64, EPC_DTYPE_FP32, y), "hidden");
    /* nothing was written by the failures */
    assert_true(s[0] == 7);
    for (int i = 0; i < BLK; i++)
        assert_int_equal(q[i], 0x11);
    /* zero rows with NULL pointers is fine */
    assert_int_equal(epc_fp8_quantize(NULL, EPC_DTYPE_BF16, 0, BLK, 0, NULL, BLK, NULL, 4), EPC_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_rows_match_reference),
        cmocka_unit_test(test_special_blocks),
        cmocka_unit_test(test_fp16_input),
        cmocka_unit_test(test_round_trip_bound),
        cmocka_unit_test(test_bad_inputs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
