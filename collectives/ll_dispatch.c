/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * ll_dispatch.c - the low-latency dispatch: the start numbers this
 * rank's rows, posts one message to each rank on another node, stores
 * rows straight into the same-node receivers' regions and publishes a
 * flag to each; the step (the hook) waits for every source's flag and
 * message, checks them, and places the messages' rows.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fault.h"
#include "ll.h"

/* This rank's checks of its arguments (none needs a peer). */
static epc_status_t validate(epc_ctx_t *ctx, const coll_ll_t *ll, const epc_ll_dispatch_args_t *a)
{
    coll_tokens_t t = {a->num_tokens, a->topk,          a->x, a->topk_idx, a->payload,
                       a->x_scales,   "epc_ll_dispatch"};
    return coll_check_tokens(ctx, &t, ll->max, "the low-latency max_tokens");
}

/* The rows this rank sends (x, or its FP8 payload cast once per token
 * into the mode's buffer); *rb their bytes. */
static const char *source_rows(const epc_ctx_t *ctx, coll_ll_t *ll, const epc_ll_dispatch_args_t *a,
                               size_t *rb)
{
    size_t H = (size_t)ll->hidden, sb;
    if (a->payload == EPC_PAYLOAD_NATIVE) {
        *rb = ll->nrow;
        return a->x;
    }
    *rb = coll_fp8_row_bytes(ll->hidden);
    sb = *rb - H;
    if (a->payload == EPC_PAYLOAD_FP8_GIVEN) {
        for (size_t t = 0; t < (size_t)a->num_tokens; t++) {
            memcpy(ll->payload + t * *rb, (const char *)a->x + t * H, H);
            memcpy(ll->payload + t * *rb + H, a->x_scales + t * (sb / sizeof(float)), sb);
        }
    } else if (a->num_tokens > 0) {
        coll_fp8_quantize(a->x, ctx->dtype, a->num_tokens, ll->hidden,
                          a->payload == EPC_PAYLOAD_FP8_UE8M0, (uint8_t *)ll->payload, *rb,
                          (float *)(void *)(ll->payload + H), *rb);
    }
    return ll->payload;
}

/* Keeps this rank's choices and numbers its rows: slot = the row's index
 * among this rank's rows to its expert (tokens ascending). */
static void number_rows(coll_ll_t *ll, ll_set_t *s, const epc_ll_dispatch_args_t *a)
{
    size_t n = (size_t)a->num_tokens * a->topk;
    s->T = a->num_tokens;
    s->k = a->topk;
    memset(s->sent, 0, (size_t)ll->E * sizeof *s->sent);
    if (n > 0)
        memcpy(s->idx, a->topk_idx, n * sizeof *s->idx);
    for (size_t i = 0; i < n; i++)
        s->slot[i] = s->idx[i] < 0 ? -1 : s->sent[s->idx[i]]++;
}

/* Writes the records of this rank's tokens into the message to each rank
 * of another node (one per token with experts there: its index, those
 * experts, its row once); ntok[d] = records to d. */
static void fill_records(epc_request_t *r, const char *src, size_t rb, size_t unit, int *ntok)
{
    ll_req_t *q = r->algo;
    coll_ll_t *ll = q->ll;
    const ll_set_t *s = q->set;
    int b = (int)(q->call % LL_SETS), *last = ll->cursor;
    size_t row_pad = (rb + 15) & ~(size_t)15;
    for (int d = 0; d < ll->R; d++)
        last[d] = -1, ntok[d] = 0;
    for (int t = 0; t < s->T; t++) {
        for (int j = 0; j < s->k; j++) {
            int g = s->idx[(size_t)t * s->k + j], d = g / ll->epr, first = 0;
            int32_t *rec;
            if (g < 0 || ll_same_node(r->ctx, d))
                continue;
            if (last[d] != t) { /* the token's first expert there: a new record */
                last[d] = t;
                ntok[d]++;
                first = 1;
            }
            rec = (int32_t *)(void *)epc_lane_net_send_at(
                &ll->lane,
                ((size_t)b * ll->R + d) * ll->dcap + ll->hdr + (size_t)(ntok[d] - 1) * unit, unit);
            if (first) {
                rec[0] = t;
                rec[1] = 0;
                memcpy((char *)rec + unit - row_pad, src + (size_t)t * rb, rb);
            }
            rec[2 + rec[1]++] = g % ll->epr;
        }
    }
}

/* Fills the message to each rank of another node and posts them with the
 * receives, at most one message each way per pair. */
static epc_status_t post_messages(epc_request_t *r, const char *src, size_t rb)
{
    epc_ctx_t *ctx = r->ctx;
    ll_req_t *q = r->algo;
    coll_ll_t *ll = q->ll;
    ll_set_t *s = q->set;
    int b = (int)(q->call % LL_SETS), nr = 0, ns = 0, k = s->k > 0 ? s->k : 1;
    size_t unit = ll_unit(k, rb);
    int *ntok = ll->cursor + ll->R;
    epc_tr_msg_t *msgs = malloc((size_t)2 * ll->R * sizeof *msgs);
    epc_status_t st;
    if (msgs == NULL)
        return epc_error_obj(&ctx->hdr, EPC_ERR_NO_MEMORY, "epc_ll_dispatch: message lists");
    fill_records(r, src, rb, unit, ntok);
    for (int d = 0; d < ll->R; d++) {
        size_t off = ((size_t)b * ll->R + d) * ll->dcap;
        ll_hdr_t *h;
        if (ll_same_node(ctx, d))
            continue;
        h = (ll_hdr_t *)(void *)epc_lane_net_send_at(&ll->lane, off, ll->hdr);
        h->call = q->call;
        h->status = r->local;
        h->ntok = ntok[d];
        h->k = k;
        h->fp8 = s->fp8;
        coll_ll_reason(h->reason, r);
        msgs[ns++] = (epc_tr_msg_t){.peer = d,
                                    .offset = off,
                                    .len = ll->hdr + ntok[d] * unit,
                                    .remote = ((size_t)b * ll->R + ctx->comm.rank) * ll->dcap};
        epc_comm_account(&ctx->comm, d, msgs[ns - 1].len, 1);
    }
    for (int d = 0; d < ll->R; d++)
        if (!ll_same_node(ctx, d))
            msgs[ns + nr++] = (epc_tr_msg_t){
                .peer = d, .offset = ((size_t)b * ll->R + d) * ll->dcap, .len = ll->dcap};
    st = coll_ll_post(r, msgs, ns, nr, "epc_ll_dispatch");
    free(msgs);
    return st;
}

/* Stores this rank's rows to same-node receivers at their final places,
 * then publishes each receiver's counts and flag (release: after the
 * rows, so a receiver that sees the flag sees them). */
static void store_local(epc_request_t *r, const char *src, size_t rb)
{
    epc_ctx_t *ctx = r->ctx;
    ll_req_t *q = r->algo;
    coll_ll_t *ll = q->ll;
    ll_set_t *s = q->set;
    int b = (int)(q->call % LL_SETS), me = ctx->comm.rank, my_l = ctx->comm.lrank;
    const int *lrank_of = ctx->comm.topo->local_rank;
    for (int t = 0; t < s->T; t++) {
        for (int j = 0; j < s->k; j++) {
            size_t i = (size_t)t * s->k + j, pos;
            int g = s->idx[i], d = g / ll->epr;
            char *base;
            if (g < 0 || !ll_same_node(ctx, d))
                continue;
            base = ll_base(ll, lrank_of[d], b);
            pos = (size_t)(g % ll->epr) * ll->slots + (size_t)me * ll->max + s->slot[i];
            coll_stream_copy(base + ll->off_rows + pos * ll->stride, src + (size_t)t * rb, rb);
            ((int32_t *)(void *)(base + ll->off_tok))[pos] = t;
            epc_comm_account(&ctx->comm, d, rb, 1);
        }
    }
    coll_stream_fence(); /* orders any non-temporal stores of the copies too */
    for (int l = 0; l < ctx->comm.lsize; l++) {
        ll_ctl_t *c = ll_ctl(ll, l, b, my_l);
        int d = ctx->comm.topo->node_ranks[ctx->comm.topo->node_start[ctx->comm.node] + l];
        c->status = r->local;
        c->fp8 = s->fp8;
        coll_ll_reason(c->reason, r);
        for (int e = 0; e < ll->epr; e++)
            c->count[e] = r->local == EPC_OK ? s->sent[(size_t)d * ll->epr + e] : 0;
        atomic_store_explicit(&c->flag, ll_flag(q->call, r->local), memory_order_release);
    }
}

static epc_status_t step_recv(epc_request_t *r);

epc_status_t coll_ll_dispatch_send(epc_request_t *r, const epc_ll_dispatch_args_t *a,
                                   epc_status_t local)
{
    epc_ctx_t *ctx = r->ctx;
    ll_req_t *q = r->algo;
    const char *src = NULL;
    size_t rb = q->ll->nrow;
    epc_status_t st;
    if (local == EPC_OK)
        local = validate(ctx, q->ll, a);
    coll_ll_keep_local(r, local);
    q->set->T = q->set->k = 0;
    q->set->fp8 = local == EPC_OK && a->payload != EPC_PAYLOAD_NATIVE;
    if (local == EPC_OK) {
        number_rows(q->ll, q->set, a);
        src = source_rows(ctx, q->ll, a, &rb);
    }
    r->step = step_recv;
    memset(q->set->src_count, 0, (size_t)q->ll->epr * q->ll->R * sizeof *q->set->src_count);
    epc_fault_here("lldispatch"); /* test hook: before anything is sent */
    /* the network's latency first, then the copies under it */
    if ((st = post_messages(r, src, rb)) != EPC_OK)
        return st;
    store_local(r, src, rb);
    return EPC_OK;
}

/* A peer's record or count that fails the checks. */
static epc_status_t bad_peer(epc_request_t *r, int s, const char *what, long v)
{
    return epc_error_obj(&r->ctx->hdr, EPC_ERR_INTERNAL,
                         "epc_ll_dispatch: rank %d sent a bad %s (%ld): rows not placed", s, what,
                         v);
}

/* Places the rows of source s's message (checked record by record: no
 * count may pass the receiver's block of max_tokens slots). */
static epc_status_t unpack(epc_request_t *r, int s, const ll_hdr_t *h)
{
    ll_req_t *q = r->algo;
    coll_ll_t *ll = q->ll;
    ll_set_t *set = q->set;
    char *base = ll_base(ll, r->ctx->comm.lrank, (int)(q->call % LL_SETS));
    int32_t *tok = (int32_t *)(void *)(base + ll->off_tok);
    size_t rb = set->fp8 ? coll_fp8_row_bytes(ll->hidden) : ll->nrow, unit;
    if (h->ntok < 0 || h->ntok > ll->max)
        return bad_peer(r, s, "token count", h->ntok);
    if (h->k < 1 || h->k > ll->k_max)
        return bad_peer(r, s, "topk", h->k);
    unit = ll_unit(h->k, rb);
    epc_comm_account(&r->ctx->comm, s, ll->hdr + h->ntok * unit, 0);
    for (int i = 0; i < h->ntok; i++) {
        const int32_t *rec = (const int32_t *)(const void *)((const char *)h + ll->hdr + i * unit);
        const char *row = (const char *)rec + unit - ((rb + 15) & ~(size_t)15);
        if (rec[0] < 0 || rec[0] >= ll->max || rec[1] < 1 || rec[1] > h->k)
            return bad_peer(r, s, rec[0] < 0 || rec[0] >= ll->max ? "token index" : "expert count",
                            rec[0] < 0 || rec[0] >= ll->max ? rec[0] : rec[1]);
        for (int m = 0; m < rec[1]; m++) {
            int e = rec[2 + m], *c;
            size_t pos;
            if (e < 0 || e >= ll->epr)
                return bad_peer(r, s, "local expert", e);
            c = &set->src_count[(size_t)e * ll->R + s];
            if (*c >= ll->max)
                return bad_peer(r, s, "row count", *c + 1);
            pos = (size_t)e * ll->slots + (size_t)s * ll->max + (*c)++;
            memcpy(base + ll->off_rows + pos * ll->stride, row, rb);
            tok[pos] = rec[0];
        }
    }
    return EPC_OK;
}

/* Source s's verdict (its flag's line, or its message's header), then
 * its counts or rows. */
static epc_status_t take_source(epc_request_t *r, int s)
{
    ll_req_t *q = r->algo;
    coll_ll_t *ll = q->ll;
    epc_ctx_t *ctx = r->ctx;
    int b = (int)(q->call % LL_SETS);
    epc_status_t st;
    int32_t status, fp8;
    const char *reason;
    const ll_ctl_t *c = NULL;
    const ll_hdr_t *h = NULL;
    if (ll_same_node(ctx, s)) {
        c = ll_ctl(ll, ctx->comm.lrank, b, ctx->comm.topo->local_rank[s]);
        status = c->status, fp8 = c->fp8, reason = c->reason;
    } else {
        h = (const ll_hdr_t *)(const void *)epc_lane_net_recv_at(
            &ll->lane, ((size_t)b * ll->R + s) * ll->dcap, ll->dcap);
        if (h->call != q->call)
            return bad_peer(r, s, "call number", (long)h->call);
        status = h->status, fp8 = h->fp8, reason = h->reason;
    }
    if ((st = coll_ll_verdict(r, s, status, reason)) != EPC_OK)
        return st;
    if (fp8 != q->set->fp8)
        return epc_error_obj(&ctx->hdr, EPC_ERR_MISMATCH,
                             "epc_ll_dispatch: ranks disagree on args->payload (rank %d: %s, "
                             "this rank: %s)",
                             s, fp8 ? "FP8" : "native", q->set->fp8 ? "FP8" : "native");
    if (h != NULL)
        return unpack(r, s, h);
    for (int e = 0; e < ll->epr; e++) {
        if (c->count[e] < 0 || c->count[e] > ll->max)
            return bad_peer(r, s, "row count", c->count[e]);
        q->set->src_count[(size_t)e * ll->R + s] = c->count[e];
    }
    return EPC_OK;
}

/* What the dispatch delivered, kept in its set for the out and the
 * combine. */
static void fill_out(epc_request_t *r)
{
    ll_req_t *q = r->algo;
    coll_ll_t *ll = q->ll;
    ll_set_t *s = q->set;
    char *base = ll_base(ll, r->ctx->comm.lrank, (int)(q->call % LL_SETS));
    epc_ll_out_t o = EPC_LL_OUT_INIT;
    for (int e = 0; e < ll->epr; e++) {
        s->count[e] = 0;
        for (int src = 0; src < ll->R; src++)
            s->count[e] += s->src_count[(size_t)e * ll->R + src];
    }
    o.rows = base + ll->off_rows;
    o.scales = s->fp8 ? (const float *)(const void *)(base + ll->off_rows + ll->hidden) : NULL;
    o.row_stride = ll->stride;
    o.num_local_experts = ll->epr;
    o.slots = ll->slots;
    o.max_tokens = ll->max;
    o.count = s->count;
    o.src_count = s->src_count;
    o.src_token = (const int32_t *)(const void *)(base + ll->off_tok);
    o.call = q->call;
    s->out = o;
}

/* EPC_OK once source s's message is in the receive region (a same-node
 * source's flag was seen already), or the whole exchange completed;
 * else EPC_IN_PROGRESS, or the wait's error naming whom it waited for. */
static epc_status_t source_ready(epc_request_t *r, int s)
{
    ll_req_t *q = r->algo;
    coll_ll_t *ll = q->ll;
    epc_status_t st;
    if (ll->net_index[s] < 0 || q->net == NULL ||
        epc_lane_net_arrived(&ll->lane, q->net, ll->net_index[s]))
        return EPC_OK;
    st = coll_req_net(r, &q->net); /* drives progress */
    if (st == EPC_IN_PROGRESS && epc_lane_net_arrived(&ll->lane, q->net, ll->net_index[s]))
        return EPC_OK;
    return st;
}

/* The hook: every same-node source's flag, then each source's verdict
 * and rows in rank order as its message arrives (rows placed while later
 * messages are on the way; the lowest failing rank is the one named),
 * then the rest of the exchange (this rank's sends). */
static epc_status_t step_recv(epc_request_t *r)
{
    ll_req_t *q = r->algo;
    coll_ll_t *ll = q->ll;
    epc_status_t st;
    int b = (int)(q->call % LL_SETS);
    for (; q->flags_seen < r->ctx->comm.lsize; q->flags_seen++) {
        ll_ctl_t *c = ll_ctl(ll, r->ctx->comm.lrank, b, q->flags_seen);
        if (atomic_load_explicit(&c->flag, memory_order_acquire) / 2 != q->call)
            return coll_ll_flag_wait(r, q->flags_seen, "rows");
    }
    for (; r->local == EPC_OK && q->failed == EPC_OK && q->taken < ll->R; q->taken++) {
        if ((st = source_ready(r, q->taken)) != EPC_OK)
            return st;
        if ((q->failed = take_source(r, q->taken)) != EPC_OK) /* kept until the exchange ends */
            snprintf(q->failed_text, sizeof q->failed_text, "%s", epc_last_error(NULL));
    }
    /* the rest of the messages and this rank's sends: a request must not
     * end with the exchange in flight (cancelling it breaks the transport) */
    if (q->net != NULL && (st = coll_req_net(r, &q->net)) != EPC_OK)
        return st;
    if (r->local != EPC_OK)
        return coll_ll_verdict(r, r->ctx->comm.rank, r->local, r->error);
    if (q->failed != EPC_OK)
        return epc_error_restore(&r->ctx->hdr, q->failed, q->failed_text);
    fill_out(r);
    r->step = NULL;
    return EPC_OK;
}
