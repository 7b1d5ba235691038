/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * ll_combine.c - the low-latency combine: the start puts this rank's
 * expert outputs where same-node sources read them (its region's `out`,
 * unless the experts wrote there already) and publishes its flag, and
 * sends each source on another node one message of its rows; the step
 * (the hook) waits for every same-node flag and every message, then sums
 * each token's rows by expert id ascending.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fault.h"
#include "ll.h"

/* Rows this rank holds for source s (by the dispatch's counts). */
static int rows_for(const coll_ll_t *ll, const ll_set_t *set, int s)
{
    int n = 0;
    for (int e = 0; e < ll->epr; e++)
        n += set->src_count[(size_t)e * ll->R + s];
    return n;
}

/* Rows this rank sent to rank d's experts. */
static int rows_sent(const coll_ll_t *ll, const ll_set_t *set, int d)
{
    int n = 0;
    for (int e = 0; e < ll->epr; e++)
        n += set->sent[(size_t)d * ll->epr + e];
    return n;
}

/* Copies source s's rows of every local expert from `from` to `to`
 * (both in the dispatch's positions), packed when `pack`: expert
 * ascending, then slot, as the source reads them. */
static void copy_rows(const coll_ll_t *ll, const ll_set_t *set, int s, const char *from, char *to,
                      int pack)
{
    size_t n = 0;
    for (int e = 0; e < ll->epr; e++) {
        size_t c = (size_t)set->src_count[(size_t)e * ll->R + s];
        size_t at = ((size_t)e * ll->slots + (size_t)s * ll->max) * ll->nrow;
        memcpy(to + (pack ? n * ll->nrow : at), from + at, c * ll->nrow);
        n += c;
    }
}

/* The messages to the sources on other nodes, with the receives of this
 * rank's rows from every rank there (a failing rank sends its verdict
 * and no rows). */
static epc_status_t post_messages(epc_request_t *r, const char *eo)
{
    epc_ctx_t *ctx = r->ctx;
    ll_req_t *q = r->algo;
    coll_ll_t *ll = q->ll;
    int ns = 0, nr = 0;
    epc_tr_msg_t *msgs = malloc((size_t)2 * ll->R * sizeof *msgs);
    epc_status_t st;
    if (msgs == NULL)
        return epc_error_obj(&ctx->hdr, EPC_ERR_NO_MEMORY, "epc_ll_combine: message lists");
    for (int s = 0; s < ll->R; s++) {
        size_t off = ll_comb_slot(ll, q->seq, s);
        int n = r->local == EPC_OK ? rows_for(ll, q->set, s) : 0;
        ll_hdr_t *h;
        if (ll_same_node(ctx, s))
            continue;
        h = (ll_hdr_t *)(void *)epc_lane_net_send_at(&ll->lane, off, ll->ccap);
        h->call = q->seq;
        h->status = r->local;
        h->ntok = n;
        h->k = h->fp8 = 0;
        coll_ll_reason(h->reason, r);
        if (n > 0)
            copy_rows(ll, q->set, s, eo, (char *)h + ll->hdr, 1);
        msgs[ns++] = (epc_tr_msg_t){.peer = s,
                                    .offset = off,
                                    .len = ll->hdr + n * ll->nrow,
                                    .remote = ll_comb_slot(ll, q->seq, ctx->comm.rank)};
        epc_comm_account(&ctx->comm, s, msgs[ns - 1].len, 1);
    }
    for (int d = 0; d < ll->R; d++)
        if (!ll_same_node(ctx, d))
            msgs[ns + nr++] =
                (epc_tr_msg_t){.peer = d, .offset = ll_comb_slot(ll, q->seq, d), .len = ll->ccap};
    st = coll_ll_post(r, msgs, ns, nr, "epc_ll_combine");
    free(msgs);
    return st;
}

static epc_status_t step_reduce(epc_request_t *r);

epc_status_t coll_ll_combine_send(epc_request_t *r, epc_status_t local)
{
    epc_ctx_t *ctx = r->ctx;
    ll_req_t *q = r->algo;
    coll_ll_t *ll = q->ll;
    int b = (int)(q->call % LL_SETS);
    char *out = ll_base(ll, ctx->comm.lrank, b) + ll->off_out;
    const char *eo = q->cargs.expert_out;
    ll_ctl_t *ready = ll_ready(ll, ctx->comm.lrank, q->seq);
    epc_status_t st;
    coll_ll_keep_local(r, local);
    r->step = step_reduce;
    epc_fault_here("llcombine"); /* test hook: before anything is sent */
    if ((st = post_messages(r, eo)) != EPC_OK)
        return st;
    if (local == EPC_OK && eo != out) /* same-node sources read them in place */
        for (int l = 0; l < ctx->comm.lsize; l++)
            copy_rows(ll, q->set,
                      ctx->comm.topo->node_ranks[ctx->comm.topo->node_start[ctx->comm.node] + l],
                      eo, out, 0);
    ready->status = local;
    coll_ll_reason(ready->reason, r);
    coll_stream_fence();
    atomic_store_explicit(&ready->flag, ll_flag(q->seq, local), memory_order_release);
    return EPC_OK;
}

/* Rank d's verdict (its ready line, or its message's header, whose row
 * count must be what this rank sent it). */
static epc_status_t take_dest(epc_request_t *r, int d)
{
    ll_req_t *q = r->algo;
    coll_ll_t *ll = q->ll;
    epc_ctx_t *ctx = r->ctx;
    const ll_hdr_t *h;
    epc_status_t st;
    if (ll_same_node(ctx, d)) {
        const ll_ctl_t *c = ll_ready(ll, ctx->comm.topo->local_rank[d], q->seq);
        return coll_ll_verdict(r, d, c->status, c->reason);
    }
    h = (const ll_hdr_t *)(const void *)epc_lane_net_recv_at(&ll->lane, ll_comb_slot(ll, q->seq, d),
                                                             ll->ccap);
    if (h->call != q->seq)
        return epc_error_obj(&ctx->hdr, EPC_ERR_INTERNAL,
                             "epc_ll_combine: rank %d's message is of combine %llu, not %llu", d,
                             (unsigned long long)h->call, (unsigned long long)q->seq);
    if ((st = coll_ll_verdict(r, d, h->status, h->reason)) != EPC_OK)
        return st;
    epc_comm_account(&ctx->comm, d, ll->hdr + (size_t)h->ntok * ll->nrow, 0);
    if (h->ntok != rows_sent(ll, q->set, d))
        return epc_error_obj(&ctx->hdr, EPC_ERR_INTERNAL,
                             "epc_ll_combine: rank %d returned %d rows, this rank sent it %d", d,
                             h->ntok, rows_sent(ll, q->set, d));
    return EPC_OK;
}

/* Where the output of token t's j-th expert is: the expert rank's `out`
 * (same node) or its message; pre[g] = the rows this rank sent to g's
 * rank's experts below g. */
static const char *row_of(epc_request_t *r, int t, int j)
{
    ll_req_t *q = r->algo;
    coll_ll_t *ll = q->ll;
    const ll_set_t *s = q->set;
    epc_ctx_t *ctx = r->ctx;
    size_t i = (size_t)t * s->k + j;
    int g = s->idx[i], d = g / ll->epr, b = (int)(q->call % LL_SETS);
    if (ll_same_node(ctx, d))
        return ll_base(ll, ctx->comm.topo->local_rank[d], b) + ll->off_out +
               ((size_t)(g % ll->epr) * ll->slots + (size_t)ctx->comm.rank * ll->max + s->slot[i]) *
                   ll->nrow;
    return epc_lane_net_recv_at(&ll->lane,
                                ll_comb_slot(ll, q->seq, d) + ll->hdr +
                                    (size_t)(ll->pre[g] + s->slot[i]) * ll->nrow,
                                ll->nrow);
}

/* Token t's rows in summation order (by sum key, coll_sum_key: the
 * logical expert under an agreed placement, so the choice of replica
 * never changes the bits; equal keys keep the token's order) and their
 * weights; returns how many. */
static int token_rows(epc_request_t *r, int t, const void **rows, float *wt)
{
    const ll_req_t *q = r->algo;
    const ll_set_t *s = q->set;
    const float *w = q->cargs.topk_weights;
    int order[256], n = 0;
    for (int j = 0; j < s->k; j++) { /* insertion by sum key */
        int g = s->idx[(size_t)t * s->k + j], at = n++, key;
        if (g < 0) {
            n--;
            continue;
        }
        key = coll_sum_key(r->ctx, g);
        for (; at > 0 && coll_sum_key(r->ctx, s->idx[(size_t)t * s->k + order[at - 1]]) > key; at--)
            order[at] = order[at - 1];
        order[at] = j;
    }
    for (int m = 0; m < n; m++) {
        rows[m] = row_of(r, t, order[m]);
        wt[m] = w != NULL ? w[(size_t)t * s->k + order[m]] : 1.0f;
    }
    return n;
}

/* y[t] = sum of w x row over t's experts in token_rows' order, fp32 from
 * 0 (coll_sum_rows_store), each token's rows found one token ahead and
 * prefetched while the token before is summed. */
static void reduce(epc_request_t *r)
{
    ll_req_t *q = r->algo;
    coll_ll_t *ll = q->ll;
    const ll_set_t *s = q->set;
    char *y = q->cargs.y;
    const void *rows[2][256];
    float wt[2][256];
    int n[2] = {0, 0};
    for (int d = 0, c = 0; d < ll->R; d++, c = 0)
        for (int e = 0; e < ll->epr; e++) {
            ll->pre[(size_t)d * ll->epr + e] = c;
            c += s->sent[(size_t)d * ll->epr + e];
        }
    if (s->T > 0)
        n[0] = token_rows(r, 0, rows[0], wt[0]);
    for (int t = 0; t < s->T; t++) {
        int c = t & 1;
        n[!c] = t + 1 < s->T ? token_rows(r, t + 1, rows[!c], wt[!c]) : 0;
        if (n[c] == 0)
            memset(y + (size_t)t * ll->nrow, 0, ll->nrow);
        else
            coll_sum_rows_store(r->ctx, 0, y + (size_t)t * ll->nrow, ll->acc, rows[c], wt[c], n[c],
                                rows[!c], n[!c]);
    }
}

/* The hook: every same-node rank's flag, every message, each rank's
 * verdict in rank order, then the sums. */
static epc_status_t step_reduce(epc_request_t *r)
{
    ll_req_t *q = r->algo;
    coll_ll_t *ll = q->ll;
    epc_status_t st;
    for (; q->flags_seen < r->ctx->comm.lsize; q->flags_seen++) {
        ll_ctl_t *c = ll_ready(ll, q->flags_seen, q->seq);
        if (atomic_load_explicit(&c->flag, memory_order_acquire) / 2 != q->seq)
            return coll_ll_flag_wait(r, q->flags_seen, "expert outputs");
    }
    if (q->net != NULL && (st = coll_req_net(r, &q->net)) != EPC_OK)
        return st;
    if (r->local != EPC_OK)
        return coll_ll_verdict(r, r->ctx->comm.rank, r->local, r->error);
    for (int d = 0; d < ll->R; d++)
        if ((st = take_dest(r, d)) != EPC_OK)
            return st;
    reduce(r);
    r->step = NULL;
    return EPC_OK;
}
