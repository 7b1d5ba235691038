/* SPDX-License-Identifier: BSD-3-Clause */
/* common.c - row placement, padding and combine's summation order. */
#include <stdlib.h>
#include <string.h>

#include "coll.h"
#include "dtype.h"
#include "router.h"

size_t coll_meta_bytes(int n)
{
    return 64 + (size_t)n * (3 * sizeof(int32_t) + sizeof(float)); /* 64: alignment slack */
}

void coll_meta_place(char *base, size_t rows_bytes, int n, coll_meta_t *m)
{
    /* Rows of an odd bf16 hidden size end at any byte: align the arrays. */
    char *p = base + ((rows_bytes + 63) & ~(size_t)63);
    m->src_rank = (int32_t *)(void *)p;
    m->src_token = m->src_rank + n;
    m->local_expert = m->src_token + n;
    m->weight = (float *)(void *)(m->local_expert + n);
}

void coll_place(char *rows, const coll_meta_t *m, size_t row_bytes, int pos, const void *src,
                int src_rank, int token, int local_expert, float weight)
{
    coll_stream_copy(rows + (size_t)pos * row_bytes, src, row_bytes);
    m->src_rank[pos] = src_rank;
    m->src_token[pos] = token;
    m->local_expert[pos] = local_expert;
    m->weight[pos] = weight;
}

void coll_fill_padding(epc_handle_t *h, int rank, size_t row_bytes)
{
    const int *begin = h->begin + (size_t)rank * (h->epr + 1);
    for (int e = 0; e < h->epr; e++) {
        int cnt = h->prefix[(size_t)(h->R - 1) * h->E + rank * h->epr + e] +
                  coll_C(h, h->R - 1)[rank * h->epr + e];
        for (int pos = begin[e] + cnt; pos < begin[e + 1]; pos++) {
            memset(h->rows + (size_t)pos * row_bytes, 0, row_bytes);
            h->meta.src_rank[pos] = -1;
            h->meta.src_token[pos] = -1;
            h->meta.local_expert[pos] = e;
            h->meta.weight[pos] = 0.0f;
        }
    }
}

/* acc[0..n) = (first ? 0 : acc) + w * row, for a row in ctx's dtype.  The
 * first contribution is stored as 0 + w*x, exactly what adding to a
 * zeroed slot gives, without zeroing the slots first. */
static void accumulate_block(const epc_ctx_t *ctx, float *acc, const void *row, float w, int first,
                             int n)
{
    if (ctx->dtype == EPC_DTYPE_FP32) {
        (first ? coll_scale_f32 : coll_axpy_f32)(acc, row, w, n);
    } else if (ctx->dtype == EPC_DTYPE_FP16) {
        const uint16_t *r = row;
        for (int i = 0; i < n; i++)
            acc[i] = (first ? 0.0f : acc[i]) + w * epc_f16_to_f32(r[i]);
    } else {
        (first ? coll_scale_bf16 : coll_axpy_bf16)(acc, row, w, n);
    }
}

/* Elements summed between two bursts of prefetches of the next row. */
#define PREFETCH_BLOCK 512

/* Block by block, each block of `next` prefetched before the same block of
 * `row` is summed: the rows a combine sums lie scattered (expert-major
 * layout), and the hardware prefetcher starts over on each page of each
 * row.  Measured on this project's 2-core VM (16384 rows of 7168 bf16 in
 * random order, summed 8 per token): 7.1 GB/s read without, 16.1 GB/s
 * with, the same as reading them in memory order.  Elementwise, so the
 * same bits as one pass. */
static void accumulate(const epc_ctx_t *ctx, float *acc, const void *row, float w, int first,
                       const void *next)
{
    size_t esize = coll_row_bytes(ctx) / (size_t)ctx->hidden;
    for (int b = 0; b < ctx->hidden; b += PREFETCH_BLOCK) {
        int len = ctx->hidden - b < PREFETCH_BLOCK ? ctx->hidden - b : PREFETCH_BLOCK;
        for (size_t o = (size_t)b * esize; next != NULL && o < (size_t)(b + len) * esize; o += 64)
            __builtin_prefetch((const char *)next + o);
        accumulate_block(ctx, acc + b, (const char *)row + (size_t)b * esize, w, first, len);
    }
}

/* bf16 rows in one pass where the kernels have it (coll_sum_rows_bf16).
 * Measured on this project's VM (a loop outside the library summing 16384
 * rows of 7168 bf16 in random order, 8 per token, two processes at once,
 * three runs): 8.2-8.5 ms against 9.8-10.1 ms row by row. */
void coll_sum_rows(const epc_ctx_t *ctx, float *sum, const void *const *rows, const float *w, int n,
                   const void *const *next, int nnext)
{
    if (ctx->dtype == EPC_DTYPE_BF16 &&
        coll_sum_rows_bf16(sum, 0, rows, w, n, ctx->hidden, next, nnext))
        return;
    for (int i = 0; i < n; i++)
        accumulate(ctx, sum, rows[i], w[i], i == 0,
                   i + 1 < n   ? rows[i + 1]
                   : nnext > 0 ? next[0]
                               : NULL);
}

/* The rounding in registers saves writing the fp32 sum and a second pass
 * over it.  Measured on this project's VM (a loop outside the library
 * summing 16384 rows of 7168 bf16 in random order, 8 per token, into bf16
 * rows; one process, best of 7): 8.4-8.5 ms against 10.1-10.7 ms summed
 * and then rounded. */
void coll_sum_rows_store(const epc_ctx_t *ctx, int bf16, void *y, float *scratch,
                         const void *const *rows, const float *w, int n, const void *const *next,
                         int nnext)
{
    if (ctx->dtype == EPC_DTYPE_BF16 &&
        coll_sum_rows_bf16(y, 1, rows, w, n, ctx->hidden, next, nnext))
        return;
    coll_sum_rows(ctx, scratch, rows, w, n, next, nnext);
    if (bf16)
        coll_to_bf16(y, scratch, ctx->hidden);
    else
        coll_store_row(ctx, scratch, y);
}

void coll_terms_bind(coll_terms_t *tt, int *js, int k)
{
    for (int i = 0; i < 2; i++) {
        tt[i].js = js + (size_t)3 * i * (k + 1);
        tt[i].gnode = tt[i].js + k + 1;
        tt[i].gend = tt[i].gnode + k + 1;
    }
}

void coll_store_row(const epc_ctx_t *ctx, const float *src, void *dst)
{
    int n = ctx->hidden;
    if (ctx->dtype == EPC_DTYPE_FP32) {
        memcpy(dst, src, (size_t)n * sizeof *src);
    } else if (ctx->dtype == EPC_DTYPE_FP16) {
        uint16_t *d = dst;
        for (int i = 0; i < n; i++)
            d[i] = epc_f32_to_f16(src[i]);
    } else {
        coll_to_bf16(dst, src, n);
    }
}

int coll_sum_key(const epc_ctx_t *ctx, int g)
{
    return ctx->slot_expert != NULL ? ctx->slot_expert[g] : g;
}

int coll_sum_groups(const epc_ctx_t *ctx, const epc_handle_t *h, int t, int by_node, int *js,
                    int *node, int *end)
{
    const int *node_of = ctx->comm.topo->node_of;
    int byk[256], gi[256], cnt[257] = {0}, n = 0, groups = 0;
    for (int j = 0; j < h->k; j++) { /* insertion by (key, j) */
        int g = h->idx[(size_t)t * h->k + j], at = n++, key;
        if (g < 0) {
            n--;
            continue;
        }
        key = coll_sum_key(ctx, g);
        for (; at > 0 && coll_sum_key(ctx, h->idx[(size_t)t * h->k + byk[at - 1]]) > key; at--)
            byk[at] = byk[at - 1];
        byk[at] = j;
    }
    /* groups in the order their node first appears (its lowest key), each
     * keeping the key order: a stable counting sort by group */
    for (int m = 0; m < n; m++) {
        int nd = by_node ? node_of[h->idx[(size_t)t * h->k + byk[m]] / h->epr] : -1, q = 0;
        while (q < groups && node[q] != nd)
            q++;
        if (q == groups)
            node[groups++] = nd;
        gi[m] = q;
        cnt[q + 1]++;
    }
    for (int q = 0; q < groups; q++)
        end[q] = cnt[q + 1] += cnt[q];
    for (int m = 0; m < n; m++)
        js[cnt[gi[m]]++] = t * h->k + byk[m];
    return groups;
}

void coll_account(epc_ctx_t *ctx, epc_coll_bytes_t *b, int peer, uint64_t payload, uint64_t meta,
                  int link)
{
    int inter = ctx->comm.topo->node_of[peer] != ctx->comm.node;
    (inter ? &b->payload_inter : &b->payload_intra)[0] += payload;
    (inter ? &b->meta_inter : &b->meta_intra)[0] += meta;
    if (link) /* transport exchanges count their own bytes */
        epc_comm_account(&ctx->comm, peer, payload + meta, 1);
}

epc_status_t coll_check_tokens(epc_ctx_t *ctx, const coll_tokens_t *t, int max,
                               const char *max_name)
{
    epc_status_t st;
#define BAD(...) epc_error_obj(&ctx->hdr, EPC_ERR_INVALID_ARG, __VA_ARGS__)
    if (t->T < 0)
        return BAD("%s: args->num_tokens = %d < 0", t->fn, t->T);
    if (t->T > max)
        return epc_error_obj(&ctx->hdr, EPC_ERR_CAPACITY,
                             "%s: args->num_tokens = %d exceeds %s = %d", t->fn, t->T, max_name,
                             max);
    if (t->k < 1 || t->k > ctx->max_topk || t->k > 256)
        return BAD("%s: args->topk = %d, must be in [1, min(max_topk = %d, 256)]", t->fn, t->k,
                   ctx->max_topk);
    if (t->T > 0 && (t->x == NULL || t->idx == NULL))
        return BAD("%s: args->%s is NULL with %d tokens", t->fn, t->x == NULL ? "x" : "topk_idx",
                   t->T);
    if (t->payload < EPC_PAYLOAD_NATIVE || t->payload > EPC_PAYLOAD_FP8_GIVEN)
        return BAD("%s: args->payload = %d is not an epc_payload_t", t->fn, (int)t->payload);
    if (t->payload != EPC_PAYLOAD_NATIVE && ctx->hidden % EPC_FP8_BLOCK != 0)
        return BAD("%s: args->payload FP8 needs the context's hidden (%d) to be a multiple of %d",
                   t->fn, ctx->hidden, EPC_FP8_BLOCK);
    if (t->payload == EPC_PAYLOAD_FP8_GIVEN && t->T > 0 && t->x_scales == NULL)
        return BAD("%s: args->x_scales is NULL with %d tokens and EPC_PAYLOAD_FP8_GIVEN", t->fn,
                   t->T);
#undef BAD
    st = epc_route_check_idx(ctx->num_experts, t->k, t->idx, t->T, t->fn);
    return st == EPC_OK ? EPC_OK : (epc_error_sync(&ctx->hdr), st);
}
