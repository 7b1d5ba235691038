/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * hier_combine.c - hierarchical combine as a schedule of steps.  Every
 * expert output a token needs is read once, where it lies in its node's
 * shared memory, by the one rank that sums the token's outputs on that
 * node: the source itself for its own node, the source's forwarder for the
 * others, which sends one row per (token, node) back.  The source adds the
 * node sums.  The order is coll_sum_groups' (coll.h), flat's too.
 *
 * Steps: each rank whose outputs are neither over its received rows nor in
 * its staging area already (epc_combine_buffer's) copies them there ->
 * node fence (every output on the node readable) -> the forwarders sum
 * and post the node sums for each other node in turn, chunk by chunk ->
 * wait for every exchange -> each source sums its tokens into y -> node
 * fence (no rank reads a peer's outputs any more: the caller may reuse
 * them).  Every rank fences twice whatever fails locally, so a local
 * failure strands no node peer.
 *
 * Outputs over the received rows (args.expert_out == out.rows, native
 * payload) or in epc_combine_buffer's buffer are read in place; others
 * cost one streamed copy each.
 */
#include <stdlib.h>
#include <string.h>

#include "hier.h"

#define PHASE "hier combine"

typedef struct hier_combine {
    hier_geom_t g;
    int messages;                  /* one each way per other node, ascending */
    epc_tr_msg_t *sends, *recvs;   /* [messages], whole */
    size_t send_bytes, recv_bytes; /* the exchange's regions */
    size_t row, wrow;              /* an fp32 row; a node sum on the wire: fp32 or bf16 */
    int bf16;                      /* EPC_WIRE_BF16 */
    int *in_place;                 /* [ranks per node]: COLL_OUT_* of each */
    size_t *kept_base;             /* [messages]: first kept header of sends[m] */
    void **req;                    /* [(N - 1) x chunks] posted exchanges */
    int chunks, posted, waited;
    uint64_t fence;
    epc_status_t local; /* this rank's own failure (it still fences) */
    float *acc, *sum;   /* [H] each */
    int *js;            /* the arrays of tt[0] and tt[1] */
    coll_terms_t tt[2]; /* the source's token and the next: n, its rows on this node */
} hier_combine_t;

/* Where the output of (source s, expert slot e, eidx) lies on this node:
 * over its received row, or in its rank's staging area. */
static const char *output_row(const epc_request_t *r, int s, int e, int eidx)
{
    const hier_combine_t *x = r->algo;
    const hier_geom_t *g = &x->g;
    const epc_handle_t *h = g->h;
    int d = e / h->epr, l = g->local_rank[d];
    long pos = coll_wire_row(&h->dims, h->begin, h->prefix, s, e, eidx);
    const char *base = hier_region(r->lane, g, l, NULL);
    if (x->in_place[l] == COLL_OUT_ROWS)
        return base + (size_t)pos * g->row_bytes;
    return base + hier_rows_area(g, d) + (size_t)pos * g->out_row_bytes;
}

/* The terms of a record forwarded from source s (its slots on this node)
 * in summation order: by sum key, ties in the token's order.  Each row
 * read counts as bytes from the rank that holds it. */
static int record_terms(epc_request_t *r, int s, const coll_slot_t *sl, const void **rows, float *w)
{
    const hier_geom_t *g = &((const hier_combine_t *)r->algo)->g;
    const epc_handle_t *h = g->h;
    int key[256], n = 0;
    for (int q = 0; q < h->k; q++) {
        int at, kq;
        if (sl[q].expert < 0)
            continue;
        kq = coll_sum_key(r->ctx, sl[q].expert);
        for (at = n++; at > 0 && key[at - 1] > kq; at--) {
            key[at] = key[at - 1], rows[at] = rows[at - 1], w[at] = w[at - 1];
        }
        key[at] = kq;
        rows[at] = output_row(r, s, sl[q].expert, sl[q].eidx);
        w[at] = r->cargs.unweighted ? 1.0f : sl[q].weight;
        coll_account(r->ctx, &r->bytes, sl[q].expert / h->epr, g->out_row_bytes, 0, 1);
    }
    return n;
}

/* The terms of record i of combine message m (record_terms). */
static int kept_terms(epc_request_t *r, int m, size_t i, const void **rows, float *w)
{
    const hier_combine_t *x = r->algo;
    const char *rec = x->g.h->kept + (x->kept_base[m] + i) * x->g.record_header;
    return record_terms(r, x->sends[m].peer,
                        (const coll_slot_t *)(const void *)(rec + sizeof(coll_rec_t)), rows, w);
}

/* Forwarder: the node sums of records [lo, hi) of combine message m (back
 * to the source that sent them), written into the send region.  Each
 * record's terms are found one record ahead, so that its rows are
 * prefetched while the record before is summed. */
static epc_status_t forwarder_sums(epc_request_t *r, int m, size_t lo, size_t hi)
{
    hier_combine_t *x = r->algo;
    const epc_tr_msg_t *msg = &x->sends[m];
    char *out = epc_lane_net_send_at(r->lane, msg->offset, msg->len);
    const void *rows[2][256];
    float w[2][256];
    int n;
    if (out == NULL && msg->len > 0)
        return epc_error_obj(&r->ctx->hdr, EPC_ERR_INTERNAL,
                             PHASE ": message outside the send "
                                   "region");
    n = lo < hi ? kept_terms(r, m, lo, rows[0], w[0]) : 0;
    for (size_t i = lo; i < hi; i++) {
        int c = (int)((i - lo) & 1),
            next = i + 1 < hi ? kept_terms(r, m, i + 1, rows[!c], w[!c]) : 0;
        if (x->bf16) /* sent rounded */
            coll_sum_rows_store(r->ctx, 1, out + i * x->wrow, x->sum, rows[c], w[c], n, rows[!c],
                                next);
        else
            coll_sum_rows(r->ctx, (float *)(void *)(out + i * x->row), rows[c], w[c], n, rows[!c],
                          next);
        n = next;
    }
    coll_account(r->ctx, &r->bytes, msg->peer, (hi - lo) * x->wrow, 0, 0);
    return EPC_OK;
}

/* Drives the transport while node sums are built (MPI moves data only
 * when called). */
static epc_status_t poll_transport(epc_request_t *r)
{
    hier_combine_t *x = r->algo;
    int done;
    return x->posted > 0 ? epc_lane_net_test(r->lane, x->req[x->posted - 1], &done) : EPC_OK;
}

/* Stage s: the node sums for node n0 + s (mod N), summed and posted chunk
 * by chunk, each with the receipt of the chunk node n0 - s sends this rank
 * (its tokens' node sums).  Every rank posts the same sequence of
 * exchanges, and both ends cut a message alike (shared counts). */
static epc_status_t post_stage(epc_request_t *r, int s)
{
    hier_combine_t *x = r->algo;
    int N = x->g.nnodes, n0 = x->g.my_node, to = (n0 + s) % N, from = (n0 - s + N) % N;
    int ms = to < n0 ? to : to - 1, mr = from < n0 ? from : from - 1;
    epc_status_t st = EPC_OK;
    for (int c = 0; st == EPC_OK && c < x->chunks; c++) {
        size_t lo, hi, rlo, rhi;
        epc_tr_msg_t cs, cr;
        hier_chunk_range(x->sends[ms].len / x->wrow, c, x->chunks, &lo, &hi);
        hier_chunk_range(x->recvs[mr].len / x->wrow, c, x->chunks, &rlo, &rhi);
        st = forwarder_sums(r, ms, lo, hi);
        cs = (epc_tr_msg_t){.peer = x->sends[ms].peer,
                            .offset = x->sends[ms].offset + lo * x->wrow,
                            .len = (hi - lo) * x->wrow};
        cr = (epc_tr_msg_t){.peer = x->recvs[mr].peer,
                            .offset = x->recvs[mr].offset + rlo * x->wrow,
                            .len = (rhi - rlo) * x->wrow};
        if (st == EPC_OK)
            st = poll_transport(r);
        if (st == EPC_OK)
            st = epc_lane_net_post(r->lane, &cs, 1, &cr, 1, PHASE, &x->req[x->posted]);
        x->posted += st == EPC_OK;
    }
    return st;
}

/* Source: token t's groups (coll_sum_groups, into tt's arrays) and its
 * outputs on this node in summation order, each read counted. */
static void token_terms(epc_request_t *r, int t, coll_terms_t *tt)
{
    const hier_geom_t *g = &((const hier_combine_t *)r->algo)->g;
    const epc_handle_t *h = g->h;
    tt->groups = coll_sum_groups(r->ctx, h, t, 1, tt->js, tt->gnode, tt->gend);
    tt->n = 0;
    for (int q = 0; q < tt->groups; q++) {
        if (tt->gnode[q] != g->my_node)
            continue;
        for (int i = q ? tt->gend[q - 1] : 0; i < tt->gend[q]; i++) {
            int j = tt->js[i], e = h->idx[j];
            tt->rows[tt->n] = output_row(r, g->rank, e, h->eidx[j]);
            tt->w[tt->n++] = r->cargs.unweighted ? 1.0f : h->w[j];
            coll_account(r->ctx, &r->bytes, e / h->epr, g->out_row_bytes, 0, 1);
        }
    }
}

/* Source, token tt: group q's sum (this node's built here from the
 * outputs where they lie, with the next token's, `next`, prefetched;
 * another's as it arrived) added to acc; the first taken as it is under
 * the fp32 wire (0 + s is s: such a sum, started as 0 + w*x, is never
 * -0), every one rounded under BF16's. */
static void add_group(epc_request_t *r, int q, const char **cursor, const coll_terms_t *tt,
                      const coll_terms_t *next)
{
    hier_combine_t *x = r->algo;
    const hier_geom_t *g = &x->g;
    if (tt->gnode[q] == g->my_node) {
        coll_sum_rows(r->ctx, q == 0 && !x->bf16 ? x->acc : x->sum, tt->rows, tt->w, tt->n,
                      next->rows, next->n);
        if (q > 0 || x->bf16)
            (x->bf16 ? coll_add_row_bf16 : coll_add_row)(x->acc, x->sum, g->hidden);
    } else { /* straight from the receive region, whole rows in token order */
        const char **in = &cursor[tt->gnode[q]];
        if (x->bf16)
            coll_axpy_bf16(x->acc, (const uint16_t *)(const void *)*in, 1.0f, g->hidden);
        else if (q == 0)
            memcpy(x->acc, *in, x->row);
        else
            coll_add_row(x->acc, (const float *)(const void *)*in, g->hidden);
        *in += x->wrow;
    }
}

/* Source: y[t] = the sum of its groups' sums in fp32 (coll_sum_groups),
 * each token's terms found one token ahead. */
static epc_status_t sum_over_nodes(epc_request_t *r)
{
    hier_combine_t *x = r->algo;
    const hier_geom_t *g = &x->g;
    epc_handle_t *h = r->h;
    const char **cursor = calloc((size_t)g->nnodes, sizeof *cursor);
    if (cursor == NULL)
        return epc_error_obj(&r->ctx->hdr, EPC_ERR_NO_MEMORY, PHASE);
    for (int n = 0, m = 0; n < g->nnodes; n++)
        if (n != g->my_node) {
            cursor[n] = epc_lane_net_recv_at(r->lane, x->recvs[m].offset, x->recvs[m].len);
            m++;
        }
    if (h->T > 0)
        token_terms(r, 0, &x->tt[0]);
    for (int t = 0; t < h->T; t++) {
        const coll_terms_t *tt = &x->tt[t & 1];
        coll_terms_t *next = &x->tt[!(t & 1)];
        char *y = (char *)r->cargs.y + (size_t)t * coll_row_bytes(r->ctx);
        next->n = 0;
        if (t + 1 < h->T)
            token_terms(r, t + 1, next);
        if (!x->bf16 && tt->groups == 1 && tt->gnode[0] == g->my_node) { /* y is this sum */
            coll_sum_rows_store(r->ctx, 0, y, x->acc, tt->rows, tt->w, tt->n, next->rows, next->n);
            continue;
        }
        if (x->bf16 || tt->groups == 0)
            memset(x->acc, 0, x->row);
        for (int q = 0; q < tt->groups; q++)
            add_group(r, q, cursor, tt, next);
        coll_store_row(r->ctx, x->acc, y);
    }
    free(cursor);
    return EPC_OK;
}

/* Last fence passed: no rank reads this rank's outputs any more. */
static epc_status_t step_done_reading(epc_request_t *r)
{
    hier_combine_t *x = r->algo;
    epc_status_t st = coll_req_fence(r, x->fence, PHASE);
    if (st != EPC_OK)
        return st;
    r->step = NULL;
    return x->local;
}

/* Waits for each posted exchange in turn, then sums into y and arrives at
 * the last fence. */
static epc_status_t step_wait(epc_request_t *r)
{
    hier_combine_t *x = r->algo;
    epc_status_t st;
    if (x->waited < x->posted) {
        st = coll_req_net(r, &x->req[x->waited]);
        x->waited += st == EPC_OK;
        return st;
    }
    epc_lane_net_account(r->lane, x->sends, x->messages, x->recvs, x->messages);
    if (x->local == EPC_OK)
        x->local = sum_over_nodes(r);
    r->step = step_done_reading;
    return epc_lane_fence_arrive(r->lane, PHASE, &x->fence);
}

/* Every output of the node readable: the forwarders' node sums, posted
 * for each other node in turn. */
static epc_status_t step_ready(epc_request_t *r)
{
    hier_combine_t *x = r->algo;
    epc_status_t st = coll_req_fence(r, x->fence, PHASE);
    if (st != EPC_OK) /* a failed fence breaks the counters: fencing again is pointless */
        return st;
    for (int s = 1; x->local == EPC_OK && s < x->g.nnodes; s++)
        x->local = post_stage(r, s);
    if (x->local != EPC_OK) { /* the node peers still read this rank's outputs */
        r->step = step_done_reading;
        return epc_lane_fence_arrive(r->lane, PHASE, &x->fence);
    }
    r->step = step_wait;
    return EPC_OK;
}

/* This rank's outputs, when neither over its received rows nor staged
 * already, copied (streamed) to its region's staging area, where its node
 * peers read them. */
static void stage_outputs(epc_request_t *r)
{
    hier_combine_t *x = r->algo;
    const hier_geom_t *g = &x->g;
    size_t bytes = (size_t)g->h->num_rows[g->rank] * g->out_row_bytes;
    if (x->in_place[g->my_local] != COLL_OUT_STAGE || bytes == 0)
        return;
    coll_stream_copy(hier_region(r->lane, g, g->my_local, NULL) + hier_rows_area(g, g->rank),
                     r->cargs.expert_out, bytes);
    coll_stream_fence(); /* before the fence that publishes them */
}

static void combine_free(epc_request_t *r)
{
    hier_combine_t *x = r->algo;
    for (int c = x->waited; x->req != NULL && c < x->posted; c++)
        if (x->req[c] != NULL)
            epc_lane_net_cancel(r->lane, x->req[c]);
    free(x->req);
    free(x->kept_base);
    free(x->sends);
    free(x->acc);
    free(x->js);
    free(x->in_place);
    free(x);
    r->algo = NULL;
    r->algo_free = NULL;
}

/* Everything the steps need; a failure is kept in x->local (the steps
 * still fence). */
static epc_status_t prepare(epc_request_t *r, hier_combine_t *x)
{
    int N = x->g.nnodes;
    epc_status_t st = hier_check_regions(r->ctx, r->lane, &x->g, PHASE);
    if (st != EPC_OK) /* the outputs are read from the regions the dispatch sized */
        return st;
    for (int l = 0; l < x->g.ranks_per_node; l++)
        x->in_place[l] = coll_req_in_place(r, hier_rank_at(&x->g, x->g.my_node, l));
    x->messages =
        hier_messages(&x->g, x->wrow, 1, x->sends, x->recvs, &x->send_bytes, &x->recv_bytes);
    for (int m = 1; m < x->messages; m++)
        x->kept_base[m] = x->kept_base[m - 1] + x->sends[m - 1].len / x->wrow;
    x->chunks = hier_chunk_count(&x->g, x->wrow);
    x->req = calloc((size_t)(N - 1) * x->chunks + 1, sizeof *x->req);
    if (x->req == NULL)
        return epc_error_obj(&r->ctx->hdr, EPC_ERR_NO_MEMORY, PHASE);
    return epc_lane_net_reserve(r->lane, x->send_bytes, x->recv_bytes);
}

char *coll_hier_staging(epc_ctx_t *ctx, const epc_handle_t *h)
{
    hier_geom_t g;
    size_t cap;
    char *base;
    if (h->lane < 0)
        return NULL;
    g = hier_geom_of(ctx, h);
    base = epc_lane_shm_region(&ctx->comm.lane[h->lane], g.my_local, &cap);
    return base != NULL && cap >= hier_region_need(&g, g.rank) ? base + hier_rows_area(&g, g.rank)
                                                               : NULL;
}

epc_status_t coll_hier_combine_begin(epc_request_t *r)
{
    int N = r->ctx->comm.topo->nnodes, k = r->h->k;
    hier_combine_t *x = calloc(1, sizeof *x);
    if (x == NULL)
        return epc_error_obj(&r->ctx->hdr, EPC_ERR_NO_MEMORY, PHASE);
    r->algo = x;
    r->algo_free = combine_free;
    x->g = hier_geom_of(r->ctx, r->h);
    x->row = (size_t)x->g.hidden * sizeof(float);
    x->bf16 = r->cargs.wire == EPC_WIRE_BF16;
    x->wrow = (size_t)x->g.hidden * (x->bf16 ? 2 : 4);
    x->sends = malloc((size_t)2 * N * sizeof *x->sends);
    x->kept_base = calloc((size_t)N, sizeof *x->kept_base);
    x->acc = malloc(2 * x->row);
    x->js = malloc((size_t)6 * (k + 1) * sizeof *x->js);
    x->in_place = malloc((size_t)x->g.ranks_per_node * sizeof *x->in_place);
    if (x->sends == NULL || x->kept_base == NULL || x->acc == NULL || x->js == NULL ||
        x->in_place == NULL)
        x->local = epc_error_obj(&r->ctx->hdr, EPC_ERR_NO_MEMORY, PHASE);
    else {
        x->recvs = x->sends + N;
        x->sum = x->acc + x->g.hidden;
        coll_terms_bind(x->tt, x->js, k);
        x->local = prepare(r, x);
    }
    if (x->local == EPC_OK)
        stage_outputs(r);
    r->step = step_ready;
    return epc_lane_fence_arrive(r->lane, PHASE, &x->fence);
}
