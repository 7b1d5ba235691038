/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * coll.h - dispatch/combine internals shared by both algorithms.
 *
 * Every dispatch starts with one metadata exchange (an allgather of each
 * rank's validation status, T, tokens per expert, per node and per rank).
 * From it every rank derives the same layout of every receiver, so rows are
 * written straight to their final expert-major position:
 *   row of (source s, token t, expert g) at
 *   begin_d[g local] + sum_{s' < s} C[s'][g] + eidx
 * where eidx is t's index among s's tokens that chose g.  Combine partial
 * sums are indexed by (source s, didx): didx is t's index among s's tokens
 * sent to that rank.
 */
#ifndef EPC_COLL_H
#define EPC_COLL_H

#include <stdint.h>

#include "context.h"
#include "lane.h"
#include "wire.h"

#define EPC_REASON_LEN 160

/* Receive-side metadata arrays of one rank's dispatch area. */
typedef struct coll_meta {
    int32_t *src_rank, *src_token, *local_expert;
    float *weight;
} coll_meta_t;

struct epc_handle {
    epc_obj_t hdr; /* magic EPC_MAGIC_HANDLE, as every public object */
    epc_ctx_t *ctx;
    int lane;          /* the lane its rows are in; -1: no complete dispatch */
    uint64_t lane_seq; /* that lane's dispatch count then (later: stale) */
    epc_algo_t algo;
    int T, k, align;
    int fp8;           /* rows travel and arrive as the FP8 payload */
    size_t row_bytes;  /* a dispatched row: the context's dtype, or FP8's */
    uint64_t idx_hash; /* of topk_idx, for cached reuse */
    int32_t *idx;      /* [T x k] copy */
    float *w;          /* [T x k] (1 when NULL was given) */
    int32_t *eidx;     /* [T x k] */
    int32_t *didx;     /* [T x k]: index among tokens to the slot's rank */
    /* all ranks' counts: [R x (E + N + R)] = C | tokens per node | per rank */
    int *all;
    int E, R, N, L, epr;
    coll_dims_t dims; /* the same, for the checks of peers' fields */
    int *Ts;          /* [R]: every rank's T */
    /* layout of every rank's receive side */
    int *num_rows; /* [R] */
    int *begin;    /* [R x (epr + 1)] */
    int *prefix;   /* [R x E]: sum_{s' < s} C[s'][g] */
    /* this rank's received rows (output views) */
    int *expert_count; /* [epr] */
    char *rows;
    coll_meta_t meta;
    char *kept; /* hier forwarder: headers of the records it forwarded */
};

/* Counts of source s: C (per expert), per node, per rank. */
static inline const int *coll_C(const epc_handle_t *h, int s)
{
    return h->all + (size_t)s * (h->E + h->N + h->R);
}
static inline const int *coll_tpn(const epc_handle_t *h, int s)
{
    return coll_C(h, s) + h->E;
}
static inline const int *coll_tpr(const epc_handle_t *h, int s)
{
    return coll_C(h, s) + h->E + h->N;
}

/* Bytes of a wire record (header, k slots, row), rounded up to 8 so the
 * next record's header stays aligned. */
static inline size_t coll_unit(size_t row_bytes, int k)
{
    return (sizeof(coll_rec_t) + (size_t)k * sizeof(coll_slot_t) + row_bytes + 7) & ~(size_t)7;
}

/* Bytes of a row in the context's dtype. */
static inline size_t coll_row_bytes(const epc_ctx_t *ctx)
{
    return (size_t)ctx->hidden * ctx->elem_size;
}

/* Bytes of the metadata arrays for n rows (alignment slack included), and
 * their places after rows_bytes of rows (at the next 64-byte boundary). */
size_t coll_meta_bytes(int n);
void coll_meta_place(char *base, size_t rows_bytes, int n, coll_meta_t *m);

/* A new handle for args (which may be NULL: T and k 0 then),
 * its shape from the context; EPC_ERR_NO_MEMORY raised. */
epc_status_t coll_handle_new(epc_ctx_t *ctx, const epc_dispatch_args_t *a, epc_algo_t algo,
                             epc_handle_t **hp);

/* 1 when h is a live handle this context made (of any dispatch). */
int coll_handle_owned(const epc_ctx_t *ctx, const epc_handle_t *h);

/* Writes a row and its metadata at receiver position pos; the row is
 * streamed (coll_stream_copy): coll_stream_fence before publishing it. */
void coll_place(char *rows, const coll_meta_t *m, size_t row_bytes, int pos, const void *src,
                int src_rank, int token, int local_expert, float weight);

/* Zero rows and src_rank -1 at every padding position of this rank. */
void coll_fill_padding(epc_handle_t *h, int rank, size_t row_bytes);

/* sum = (((0 + w[0] rows[0]) + w[1] rows[1]) + ...) over n >= 1 rows in
 * the context's dtype, every combine's sum (the same bits whichever way it
 * is read: coll_sum_rows_bf16 or row by row); next[0..nnext): the rows
 * the caller sums next, prefetched meanwhile. */
void coll_sum_rows(const epc_ctx_t *ctx, float *sum, const void *const *rows, const float *w, int n,
                   const void *const *next, int nnext);
/* y = that sum converted to the context's dtype (coll_store_row: a
 * token's output where its sum is the only one), or with bf16 to bf16
 * whatever the dtype (coll_to_bf16: a node sum on the BF16 wire); rounded
 * as it is summed where the kernels can (bf16 rows), else summed into
 * scratch ([hidden]) and converted.  Same bits either way. */
void coll_sum_rows_store(const epc_ctx_t *ctx, int bf16, void *y, float *scratch,
                         const void *const *rows, const float *w, int n, const void *const *next,
                         int nnext);

/* A token's terms as a combine sums them: coll_sum_groups' arrays ([k + 1]
 * each) and n rows in summation order with their weights. */
typedef struct coll_terms {
    int groups, *js, *gnode, *gend;
    int n;
    const void *rows[256];
    float w[256];
} coll_terms_t;

/* Points the arrays of tt[0] and tt[1] (a token and the next) into js,
 * 6 (k + 1) ints. */
void coll_terms_bind(coll_terms_t *tt, int *js, int k);

/* Combine's summation order (docs/COLLECTIVES.md), the same for hier and
 * flat: a token's experts are grouped by the node of their rank; each
 * group is summed by sum key (ties: the token's order), 0 + w x out first;
 * the groups' sums are added in the order of their lowest key.  The sum
 * key of expert slot g is its logical expert under the placement agreed
 * on the context, else g, so a placement that keeps each node block's
 * experts on one node, replicas included, gives the bits of none. */
int coll_sum_key(const epc_ctx_t *ctx, int g);

/* Token t's experts in that order: js the [T x k] indices, node[q] and
 * end[q] (exclusive, into js) each group's node and end; returns the
 * group count (0: no expert).  by_node 0 (EPC_ORDER_LOGICAL): one group
 * of every expert by sum key, node -1. */
int coll_sum_groups(const epc_ctx_t *ctx, const epc_handle_t *h, int t, int by_node, int *js,
                    int *node, int *end);

/* Row kernels (kernels.c, vectorised): acc += w * row; acc += src; and
 * fp32 -> bf16 rounding to nearest even. */
void coll_axpy_bf16(float *acc, const uint16_t *row, float w, int n);
void coll_scale_bf16(float *acc, const uint16_t *row, float w, int n);
void coll_scale_f32(float *acc, const float *row, float w, int n);
void coll_axpy_f32(float *acc, const float *row, float w, int n);
void coll_add_row(float *acc, const float *src, int n);
void coll_to_bf16(uint16_t *dst, const float *src, int n);
void coll_add_row_bf16(float *acc, const float *src, int n);
/* out[i] = (((0 + w[0] rows[0][i]) + w[1] rows[1][i]) + ...) over n >= 1
 * bf16 rows of len elements: the sum coll_sum_rows builds row by row,
 * bit for bit, in one pass over the rows at once, with the rows of the
 * next sum (next[0..nnext)) prefetched as it goes.  out is fp32, or with
 * round bf16: each element rounded as coll_to_bf16 rounds, in registers
 * (no fp32 row written and read again).  Returns 0, doing nothing, where
 * this build or CPU has no such pass (hand-written AVX-512): the caller
 * sums row by row then. */
int coll_sum_rows_bf16(void *out, int round, const void *const *rows, const float *w, int n,
                       int len, const void *const *next, int nnext);
/* dst = src bypassing the cache where possible (x86: non-temporal stores);
 * coll_stream_fence orders them before what follows (a fence's flag). */
void coll_stream_copy(void *dst, const void *src, size_t bytes);
void coll_stream_row(float *dst, const float *src, int n);
void coll_stream_fence(void);
/* Whether the kernels' hand-written AVX-512 paths may run here (1 when
 * this build has them and the CPU has AVX-512F). */
int coll_has_avx512(void);

/* The FP8 payload (fp8.c; the public epc_fp8_quantize/_dequantize without
 * their checks): e4m3 with an fp32 scale per EPC_FP8_BLOCK elements.  On
 * the wire and in the receive buffers a row is its hidden bytes, then its
 * hidden / EPC_FP8_BLOCK scales. */
#define EPC_FP8_BLOCK 128
static inline size_t coll_fp8_row_bytes(int hidden)
{
    return (size_t)hidden + (size_t)hidden / EPC_FP8_BLOCK * sizeof(float);
}
void coll_fp8_quantize(const void *x, epc_dtype_t dtype, int rows, int hidden, int ue8m0,
                       uint8_t *q, size_t q_stride, float *scales, size_t s_stride);
void coll_fp8_dequantize(const uint8_t *q, size_t q_stride, const float *scales, size_t s_stride,
                         int rows, int hidden, epc_dtype_t dtype, void *y);

/* Counts bytes this rank sent to peer in b (inter or intra by node) and,
 * when link is 1, in the context's per-link-class counters (the transport
 * exchange counts its own). */
void coll_account(epc_ctx_t *ctx, epc_coll_bytes_t *b, int peer, uint64_t payload, uint64_t meta,
                  int link);

/* The token arguments dispatch and the low-latency dispatch both take,
 * and their shared checks (raised naming fn and the argument): T in
 * [0, max] (above: EPC_ERR_CAPACITY naming max_name), topk in [1,
 * min(max_topk, 256)], x and topk_idx with tokens, the payload and its
 * needs, every expert id in [-1, E) and none repeated in a token. */
typedef struct coll_tokens {
    int T, k;
    const void *x;
    const int32_t *idx;
    epc_payload_t payload;
    const float *x_scales;
    const char *fn;
} coll_tokens_t;
epc_status_t coll_check_tokens(epc_ctx_t *ctx, const coll_tokens_t *t, int max,
                               const char *max_name);

/* Converts an fp32 row to the context's dtype. */
void coll_store_row(const epc_ctx_t *ctx, const float *src, void *dst);

/* The rounds of epc_placement_move_weights, the same on every rank (from
 * the two tables alone): round[q] for every slot q of `to` (-1: filled
 * from its rank's own copy), the slots taken in ascending order, each in
 * the earliest round at or after the last ones of its receiving and its
 * sending rank in which neither has `per` slots yet, so no rank sends or
 * receives more than `per` slots in a round and each rank's rounds ascend
 * with its slots.  last: 4 x R ints of scratch.  Returns the rounds. */
int coll_move_rounds(const epc_placement_t *from, const epc_placement_t *to, int per, int *round,
                     int *last);

#endif
