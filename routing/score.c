/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * score.c - the gate's score functions over one token's logits, written as
 * straight loops the compiler vectorises.  Built with -O3 and
 * -ffinite-math-only (see Makefile.am): inputs are finite by the time a
 * score is used, and the finiteness test works on the bits, which those
 * flags do not touch.  Results do not depend on the vector width: every
 * reduction has a fixed order written out in C.
 */
#include "build_config.h"

#include <float.h>
#include <math.h>
#include <string.h>

#include "router.h"

/* exp(x) for finite x, relative error below 1e-7 (Cephes-style: x = n ln2
 * + r, |r| <= ln2/2, degree-6 polynomial, scale by 2^n via the exponent). */
static inline __attribute__((always_inline)) float fast_expf(float x)
{
    float n, r, p, scale;
    int32_t bits;
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f; /* round */
    r = x - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    bits = ((int32_t)n + 127) << 23;
    memcpy(&scale, &bits, sizeof scale);
    return (p * r * r + r + 1.0f) * scale;
}

/* Index of the first non-finite value (exponent bits all ones), -1 if none.
 * The slow path, after a vectorised test found one. */
static int first_nonfinite(const float *x, int E)
{
    for (int e = 0; e < E; e++) {
        uint32_t b;
        memcpy(&b, &x[e], sizeof b);
        if ((b & 0x7f800000u) == 0x7f800000u)
            return e;
    }
    return -1;
}

static inline __attribute__((always_inline)) void softmax(const float *x, int E, float *s)
{
    float m = x[0], acc[8] = {0}, sum = 0.0f, inv;
    int e = 0;
    for (int i = 1; i < E; i++)
        m = x[i] > m ? x[i] : m;
    for (int i = 0; i < E; i++)
        s[i] = fast_expf(x[i] - m);
    /* Eight fixed lanes, then lanes in order: the same sum at any width. */
    for (; e + 8 <= E; e += 8)
        for (int j = 0; j < 8; j++)
            acc[j] += s[e + j];
    for (int j = 0; j < 8; j++)
        sum += acc[j];
    for (; e < E; e++)
        sum += s[e];
    inv = 1.0f / sum;
    for (int i = 0; i < E; i++)
        s[i] *= inv;
}

/* 1 when any of x[0..E) is NaN or infinite (exponent bits all ones). */
static inline __attribute__((always_inline)) int any_nonfinite(const float *x, int E)
{
    uint32_t any = 0;
    for (int e = 0; e < E; e++) {
        uint32_t b;
        memcpy(&b, &x[e], sizeof b);
        any |= (b & 0x7f800000u) == 0x7f800000u;
    }
    return any != 0;
}

EPC_SIMD_CLONES
int epc_route_scores(epc_score_fn_t fn, const float *x, int E, const float *bias, float *s,
                     float *c)
{
    uint32_t bad = 0;
    switch (fn) {
    case EPC_SCORE_SOFTMAX:
        bad = any_nonfinite(x, E);
        if (!bad)
            softmax(x, E, s);
        break;
    case EPC_SCORE_SIGMOID:
        /* One pass: the bits test rides along (the scores of a token with a
         * non-finite input are then discarded). */
        for (int i = 0; i < E; i++) {
            uint32_t b, nonfinite;
            memcpy(&b, &x[i], sizeof b);
            nonfinite = (b & 0x7f800000u) == 0x7f800000u;
            bad |= nonfinite;
            /* A non-finite input becomes 0 here: converting NaN to int in
             * fast_expf would be undefined behaviour. */
            s[i] = 1.0f / (1.0f + fast_expf(nonfinite ? 0.0f : -x[i]));
        }
        break;
    case EPC_SCORE_IDENTITY:
        bad = any_nonfinite(x, E);
        memcpy(s, x, (size_t)E * sizeof *s);
        break;
    }
    if (bias != NULL) /* the choice scores, while s is still in L1 */
        for (int i = 0; i < E; i++)
            c[i] = s[i] + bias[i];
    return bad ? first_nonfinite(x, E) : -1;
}

/* Top-1 and top-2 of v folded into (m1, m2), branch-free. */
#define TOP2_FOLD(m1, m2, v)                 \
    do {                                     \
        float lo_ = (m1) < (v) ? (m1) : (v); \
        (m2) = (m2) > lo_ ? (m2) : lo_;      \
        (m1) = (m1) > (v) ? (m1) : (v);      \
    } while (0)

/* The two largest of c[0..n) (n >= 1; *b = -FLT_MAX when n == 1), folded
 * in eight lanes and merged, so the loop vectorises.  The sentinel is
 * -FLT_MAX, not -inf: this file is built assuming finite values, and a real
 * -FLT_MAX in c ties with it harmlessly. */
static inline __attribute__((always_inline)) void top2(const float *c, int n, float *a_out,
                                                       float *b_out)
{
    float m1[8], m2[8], a = -FLT_MAX, b = -FLT_MAX;
    int i = 0;
    for (int j = 0; j < 8; j++)
        m1[j] = m2[j] = -FLT_MAX;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++)
            TOP2_FOLD(m1[j], m2[j], c[i + j]);
    /* Merge the lanes with reductions rather than a serial fold: the best is
     * the largest m1; the second is the largest of the other lanes' m1 and
     * the best lane's m2, or the best again if two lanes share it. */
    {
        float top = m1[0], second = -FLT_MAX;
        int ties = 0;
        for (int j = 1; j < 8; j++)
            top = m1[j] > top ? m1[j] : top;
        for (int j = 0; j < 8; j++) {
            float v = m1[j] < top ? m1[j] : m2[j];
            second = v > second ? v : second;
            ties += m1[j] == top;
        }
        if (ties > 1)
            second = top;
        TOP2_FOLD(a, b, top);
        TOP2_FOLD(a, b, second);
    }
    for (; i < n; i++)
        TOP2_FOLD(a, b, c[i]);
    *a_out = a;
    *b_out = b;
}

EPC_SIMD_CLONES
void epc_route_block_top2(const float *c, int nblocks, int size, int gk, float *sum, float *t1,
                          float *t2)
{
    for (int b = 0; b < nblocks; b++) {
        top2(c + (size_t)b * size, size, &t1[b], &t2[b]);
        sum[b] = gk == 1 || size == 1 ? t1[b] : t1[b] + t2[b];
    }
}

EPC_SIMD_CLONES
int epc_route_select_blocks(const float *c, int nblocks, int size, int gk, int keep, int k,
                            float *sum, float *t1, float *t2, uint8_t *ok, float *floor)
{
    float v[128];
    int nv = 0;
    for (int b = 0; b < nblocks; b++) {
        top2(c + (size_t)b * size, size, &t1[b], &t2[b]);
        sum[b] = gk == 1 || size == 1 ? t1[b] : t1[b] + t2[b];
    }
    /* Rank of each block: how many come before it (higher sum, or equal
     * sum and lower index).  Branch-free, for the few nodes of a job. */
    for (int b = 0; b < nblocks; b++) {
        int rank = 0;
        for (int j = 0; j < nblocks; j++)
            rank += (sum[j] > sum[b]) | ((sum[j] == sum[b]) & (j < b));
        ok[b] = rank < keep;
    }
    /* The k-th largest of the kept blocks' two best values bounds the
     * answer from below (only the values of kept blocks can be chosen). */
    for (int b = 0; b < nblocks && nv + 2 <= 128; b++)
        if (ok[b]) {
            v[nv++] = t1[b];
            v[nv++] = t2[b];
        }
    if (nv < k)
        return 0;
    for (int i = 0; i < nv; i++) {
        int rank = 0;
        for (int j = 0; j < nv; j++)
            rank += (v[j] > v[i]) | ((v[j] == v[i]) & (j < i));
        if (rank == k - 1) {
            *floor = v[i];
            return 1;
        }
    }
    return 0;
}

EPC_SIMD_CLONES
int epc_route_gather(const float *c, int nblocks, int size, const uint8_t *ok, float floor,
                     float *cv, int32_t *ci)
{
    int n = 0;
    for (int b = 0; b < nblocks; b++) {
        const float *v = c + (size_t)b * size;
        if (!ok[b])
            continue;
        for (int w = 0; w < size; w += 32) {
            int len = size - w < 32 ? size - w : 32;
            uint32_t m = 0;
            for (int j = 0; j < len; j++)
                m |= (uint32_t)(v[w + j] >= floor) << j;
            for (; m != 0; m &= m - 1) {
                int e = w + __builtin_ctz(m);
                cv[n] = v[e];
                ci[n++] = b * size + e;
            }
        }
    }
    return n;
}

EPC_SIMD_CLONES
void epc_route_rank_select(const float *v, const int32_t *idx, int n, int k, float *out_v,
                           int32_t *out_i)
{
    for (int i = 0; i < n; i++) {
        int rank = 0;
        for (int j = 0; j < n; j++)
            rank += (v[j] > v[i]) | ((v[j] == v[i]) & (j < i));
        if (rank < k) {
            out_v[rank] = v[i];
            out_i[rank] = idx[i];
        }
    }
}
