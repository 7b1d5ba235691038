/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * hier_combine.c - hierarchical combine as a schedule of steps: every rank
 * sums its experts' weighted outputs per (source, token) in fp32 straight
 * into the combine area of the source (same node) or of the source's
 * forwarder; the forwarder sums its node's partials and sends one fp32 row
 * per (token, node) back; the source sums over nodes.
 *
 * Steps, for each other node in turn (n0 + 1, n0 + 2, ... mod N), then
 * this node's own sources: sum the partials of that node's sources -> node
 * fence -> the forwarders post those node sums (chunk by chunk) while the
 * next node's partials are summed.  Then: wait for every exchange -> sum
 * each token over nodes into y.  Every rank fences N times whatever fails
 * locally, so a local failure strands no node peer at a fence.
 *
 * Pull mode, when every rank wrote its expert outputs over its received
 * rows (args.expert_out == the rows, which live in the node's shared
 * regions): no partials are written for this node's own sources; each
 * source builds its tokens' per-rank partials itself, reading the expert
 * outputs where they are, with the same kernels in the same order (so the
 * same bits), and a last node fence keeps every rank's outputs in place
 * until no peer reads them any more.  What this saves: each partial's
 * write and read back, 2 x 4 x hidden bytes per (token, rank) pair.
 */
#include <stdlib.h>
#include <string.h>

#include "hier.h"

#define PHASE "hier combine"

typedef struct hier_combine {
    hier_geom_t g;
    int messages;                       /* one each way per other node, ascending */
    epc_tr_msg_t *sends, *recvs;        /* [messages], whole */
    size_t send_bytes, recv_bytes, row; /* row: bytes of an fp32 row */
    size_t wrow;                        /* a node sum on the wire: fp32 or bf16 */
    int bf16;                           /* EPC_WIRE_BF16 */
    float **slot;                       /* this rank's partial sum slots */
    size_t *kept_base;                  /* [messages]: first kept header of sends[m] */
    void **req;                         /* [(N - 1) x chunks] posted exchanges */
    int chunks, posted, waited, stage;
    uint64_t fence;
    epc_status_t local;           /* this rank's own failure (it still fences) */
    int pull;                     /* pull mode (r->all_in_place) */
    float *acc, *node_sum, *part; /* [H] each */
    size_t *offsets;              /* [ranks per node]: hier_combine_offsets' */
} hier_combine_t;

/* This rank's combine area: where the partials for the tokens it
 * forwards (and its own) are summed. */
static const float *combine_area(const epc_request_t *r)
{
    const hier_geom_t *g = &((const hier_combine_t *)r->algo)->g;
    return (const float *)(const void *)(hier_region(r->lane, g, g->my_local, NULL) +
                                         hier_rows_area(g, g->rank));
}

/*
 * The sums here start from zero, but the first term of a sum of this
 * library's own partials is taken as it is, not added to a zeroed row:
 * 0 + s is s bit for bit, since such an s (itself started as 0 + w*x) is
 * never -0 and a NaN stays the same quiet NaN.  One pass less per term
 * taken so.  Not for the BF16 wire, whose terms are rounded when added.
 */

/* The sum over this node's ranks (local order) of one token's partials,
 * given its dests on this node (sorted), their didx, and where the
 * source's block at each local rank starts (off, by local index).  BF16
 * wire: each partial is added as it would have left its rank, rounded. */
static void node_sum(const epc_request_t *r, const float *area, const size_t *off, const int *dest,
                     const int *didx, int n, float *sum)
{
    const hier_combine_t *x = r->algo;
    const hier_geom_t *g = &x->g;
    for (int q = 0; q < n; q++) {
        const float *slot = area + (off[g->local_rank[dest[q]]] + didx[q]) * g->hidden;
        if (q == 0 && !x->bf16) { /* taken as it is (above) */
            memcpy(sum, slot, x->row);
            continue;
        }
        if (q == 0)
            memset(sum, 0, x->row);
        (x->bf16 ? coll_add_row_bf16 : coll_add_row)(sum, slot, g->hidden);
    }
}

/* Where each of this rank's combine slots goes: straight into the region
 * of the source (this node) or of the source's forwarder (this node, the
 * source's local index), so partials are summed in place, never copied. */
static void slot_targets(epc_request_t *r)
{
    hier_combine_t *x = r->algo;
    const hier_geom_t *g = &x->g;
    int p = 0;
    for (int s = 0; s < g->h->R; s++) {
        int cnt = coll_tpr(g->h, s)[g->rank], l = g->local_rank[s], fw;
        char *base;
        if (cnt == 0)
            continue;
        fw = g->node_of[s] == g->my_node ? s : hier_rank_at(g, g->my_node, l);
        hier_combine_offsets(g, fw, s, x->offsets);
        base = hier_region(r->lane, g, l, NULL) + hier_rows_area(g, fw) +
               x->offsets[g->my_local] * x->row;
        for (int i = 0; i < cnt; i++)
            x->slot[p++] = (float *)(void *)(base + (size_t)i * x->row);
        if (!x->pull || g->node_of[s] != g->my_node) /* pulled rows count where read */
            coll_account(r->ctx, &r->bytes, fw, cnt * x->row, 0, 1);
    }
}

/* Pull mode: token t's slots on rank d in ascending expert order (the
 * order of d's rows, in which coll_partials sums them): their indices
 * into the handle's [T x k] arrays in js; returns the count. */
static int slots_on(const epc_handle_t *h, int t, int d, int *js)
{
    int n = 0;
    for (int j = 0; j < h->k; j++) {
        int e = h->idx[(size_t)t * h->k + j], q = n++;
        if (e < 0 || e / h->epr != d) {
            n--;
            continue;
        }
        for (; q > 0 && h->idx[js[q - 1]] > e; q--)
            js[q] = js[q - 1];
        js[q] = t * h->k + j;
    }
    return n;
}

/* Pull mode: where token t's expert output of [T x k] index j lies. */
static const char *pulled_row(const epc_request_t *r, int j)
{
    const hier_geom_t *g = &((const hier_combine_t *)r->algo)->g;
    const epc_handle_t *h = r->h;
    int e = h->idx[j];
    long pos = coll_wire_row(&h->dims, h->begin, h->prefix, g->rank, e, h->eidx[j]);
    return hier_region(r->lane, g, g->local_rank[e / h->epr], NULL) + (size_t)pos * g->row_bytes;
}

/* Pull mode: the first row pulled_node_sum reads for token t (its lowest
 * expert on this node: dests ascend, and experts within each), or NULL. */
static const char *first_pulled_row(const epc_request_t *r, int t)
{
    const hier_geom_t *g = &((const hier_combine_t *)r->algo)->g;
    const epc_handle_t *h = r->h;
    int best = -1;
    for (int j = t * h->k; t < h->T && j < (t + 1) * h->k; j++) {
        int e = h->idx[j];
        if (e >= 0 && g->node_of[e / h->epr] == g->my_node && (best < 0 || e < h->idx[best]))
            best = j;
    }
    return best < 0 ? NULL : pulled_row(r, best);
}

/* Pull mode: token t's (this rank's) sum over this node's ranks dest[0..n)
 * (local order): each rank's partial built here from its expert outputs,
 * read where they are, as coll_partials would have built it there, then
 * added as node_sum adds the slots.  Each row is read with the next one
 * (the next token's first after the last) prefetched. */
static void pulled_node_sum(epc_request_t *r, int t, const int *dest, int n, float *sum)
{
    hier_combine_t *x = r->algo;
    const hier_geom_t *g = &x->g;
    const epc_handle_t *h = r->h;
    int js[256], end[256], m = 0;
    for (int q = 0; q < n; q++) {
        int cnt = slots_on(h, t, dest[q], js + m);
        coll_account(r->ctx, &r->bytes, dest[q], (uint64_t)cnt * g->row_bytes, 0, 1);
        end[q] = m += cnt;
    }
    for (int q = 0, i = 0; q < n; q++) {
        int direct = q == 0 && !x->bf16 && end[0] > 0; /* the first partial is the sum so far */
        if (q == 0 && !direct)
            memset(sum, 0, x->row);
        for (int first = i; i < end[q]; i++)
            coll_accumulate(r->ctx, direct ? sum : x->part, pulled_row(r, js[i]),
                            r->cargs.unweighted ? 1.0f : h->w[js[i]], i == first,
                            i + 1 < m ? pulled_row(r, js[i + 1]) : first_pulled_row(r, t + 1));
        if (!direct)
            (x->bf16 ? coll_add_row_bf16 : coll_add_row)(sum, x->part, g->hidden);
    }
}

/* Forwarder: the node sums of records [lo, hi) of combine message m (back
 * to the source that sent them), summed in place in the send region. */
static epc_status_t forwarder_sums(epc_request_t *r, int m, size_t lo, size_t hi)
{
    hier_combine_t *x = r->algo;
    const hier_geom_t *g = &x->g;
    const epc_tr_msg_t *msg = &x->sends[m];
    char *out = epc_lane_net_send_at(r->lane, msg->offset, msg->len);
    const float *area = combine_area(r);
    int dest[256], didx[256];
    if (out == NULL && msg->len > 0)
        return epc_error_obj(&r->ctx->hdr, EPC_ERR_INTERNAL,
                             PHASE ": message outside the send "
                                   "region");
    hier_combine_offsets(g, g->rank, msg->peer, x->offsets); /* once per range, not per row */
    for (size_t i = lo; i < hi; i++) {
        const char *rec = g->h->kept + (x->kept_base[m] + i) * g->record_header;
        int n = hier_local_dests(g, (const coll_slot_t *)(const void *)(rec + sizeof(coll_rec_t)),
                                 dest, didx);
        if (x->bf16) { /* summed aside, sent rounded */
            node_sum(r, area, x->offsets, dest, didx, n, x->node_sum);
            coll_to_bf16((uint16_t *)(void *)(out + i * x->wrow), x->node_sum, g->hidden);
        } else {
            node_sum(r, area, x->offsets, dest, didx, n, (float *)(void *)(out + i * x->row));
        }
    }
    coll_account(r->ctx, &r->bytes, msg->peer, (hi - lo) * x->wrow, 0, 0);
    return EPC_OK;
}

/* Drives the transport while partials are summed (MPI moves data only
 * when called). */
static epc_status_t poll_transport(void *arg)
{
    epc_request_t *r = arg;
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
        cs = (epc_tr_msg_t){x->sends[ms].peer, x->sends[ms].offset + lo * x->wrow,
                            (hi - lo) * x->wrow};
        cr = (epc_tr_msg_t){x->recvs[mr].peer, x->recvs[mr].offset + rlo * x->wrow,
                            (rhi - rlo) * x->wrow};
        if (st == EPC_OK)
            st = poll_transport(r);
        if (st == EPC_OK)
            st = epc_lane_net_post(r->lane, &cs, 1, &cr, 1, PHASE, &x->req[x->posted]);
        x->posted += st == EPC_OK;
    }
    return st;
}

/* Source: y[t] = sum over nodes ascending of the node sums, in fp32 (BF16
 * wire: each rounded, this node's too, as the others' arrive). */
static epc_status_t sum_over_nodes(epc_request_t *r)
{
    hier_combine_t *x = r->algo;
    const hier_geom_t *g = &x->g;
    epc_handle_t *h = r->h;
    const float *area = combine_area(r);
    int dest[256], didx[256], *taken = calloc((size_t)g->nnodes, sizeof *taken);
    if (taken == NULL)
        return epc_error_obj(&r->ctx->hdr, EPC_ERR_NO_MEMORY, PHASE);
    hier_combine_offsets(g, g->rank, g->rank, x->offsets); /* this rank's own tokens */
    for (int t = 0; t < h->T; t++) {
        int n = coll_token_dests(r->ctx, h, t, dest, didx);
        int direct = n > 0 && g->node_of[dest[0]] == g->my_node && !x->bf16; /* see node_sum */
        if (!direct)
            memset(x->acc, 0, x->row);
        for (int i = 0, j; i < n; i = j) {
            int node = g->node_of[dest[i]];
            float *sum = direct && i == 0 ? x->acc : x->node_sum;
            for (j = i; j < n && g->node_of[dest[j]] == node;)
                j++;
            if (node == g->my_node) {
                if (x->pull)
                    pulled_node_sum(r, t, dest + i, j - i, sum);
                else
                    node_sum(r, area, x->offsets, dest + i, didx + i, j - i, sum);
                if (sum != x->acc)
                    (x->bf16 ? coll_add_row_bf16 : coll_add_row)(x->acc, sum, g->hidden);
            } else { /* added straight from the receive region (whole rows) */
                const epc_tr_msg_t *m = &x->recvs[node < g->my_node ? node : node - 1];
                const char *in = epc_lane_net_recv_at(r->lane, m->offset, m->len);
                const void *row = in + taken[node]++ * x->wrow;
                if (x->bf16)
                    coll_axpy_bf16(x->acc, row, 1.0f, g->hidden);
                else
                    coll_add_row(x->acc, row, g->hidden);
            }
        }
        coll_store_row(r->ctx, x->acc, (char *)r->cargs.y + (size_t)t * coll_row_bytes(r->ctx));
    }
    free(taken);
    return EPC_OK;
}

/* Pull mode's end: once every rank of the node arrived, none reads this
 * rank's expert outputs any more (the caller may reuse them). */
static epc_status_t step_done_reading(epc_request_t *r)
{
    hier_combine_t *x = r->algo;
    epc_status_t st = coll_req_fence(r, x->fence, PHASE);
    if (st != EPC_OK)
        return st;
    r->step = NULL;
    return x->local;
}

static epc_status_t arrive_done_reading(epc_request_t *r)
{
    hier_combine_t *x = r->algo;
    r->step = step_done_reading;
    return epc_lane_fence_arrive(r->lane, PHASE, &x->fence);
}

/* Waits for each posted exchange in turn, then sums into y. */
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
    r->step = NULL;
    if (!x->pull)
        return sum_over_nodes(r);
    x->local = sum_over_nodes(r);
    return arrive_done_reading(r);
}

static epc_status_t step_partials(epc_request_t *r);

/* After stage s's fence: the forwarders post that stage's node sums. */
static epc_status_t step_stage_fence(epc_request_t *r)
{
    hier_combine_t *x = r->algo;
    epc_status_t st = coll_req_fence(r, x->fence, PHASE);
    if (st != EPC_OK) /* a failed fence breaks the counters: fencing again is pointless */
        return st;
    if (x->local == EPC_OK && x->stage < x->g.nnodes)
        x->local = post_stage(r, x->stage);
    x->stage++;
    if (x->stage > x->g.nnodes && x->local != EPC_OK && x->pull)
        return arrive_done_reading(r); /* the peers read this rank's outputs */
    r->step = x->stage <= x->g.nnodes ? step_partials : step_wait;
    return x->stage <= x->g.nnodes ? EPC_OK : x->local;
}

/* Stage s: this rank's partials for the sources on node n0 + s (mod N). */
static epc_status_t step_partials(epc_request_t *r)
{
    hier_combine_t *x = r->algo;
    coll_poll_t poll = {poll_transport, r};
    int node = (x->g.my_node + x->stage) % x->g.nnodes;
    if (x->local == EPC_OK && !(x->pull && node == x->g.my_node)) /* pulled by the sources */
        x->local = coll_partials(r->ctx, r->h, r->cargs.expert_out, r->cargs.unweighted, x->slot,
                                 node, &poll);
    r->step = step_stage_fence;
    return epc_lane_fence_arrive(r->lane, PHASE, &x->fence);
}

static void combine_free(epc_request_t *r)
{
    hier_combine_t *x = r->algo;
    for (int c = x->waited; x->req != NULL && c < x->posted; c++)
        if (x->req[c] != NULL)
            epc_lane_net_cancel(r->lane, x->req[c]);
    free(x->req);
    free(x->slot);
    free(x->kept_base);
    free(x->sends);
    free(x->acc);
    free(x->offsets);
    free(x);
    r->algo = NULL;
    r->algo_free = NULL;
}

/* Everything the stages need; a failure is kept in x->local (the stages
 * still fence). */
static epc_status_t prepare(epc_request_t *r, hier_combine_t *x)
{
    int N = x->g.nnodes;
    epc_status_t st = hier_check_regions(r->ctx, r->lane, &x->g, PHASE);
    if (st != EPC_OK) /* the partials land in the regions the dispatch sized */
        return st;
    x->messages =
        hier_messages(&x->g, x->wrow, 1, x->sends, x->recvs, &x->send_bytes, &x->recv_bytes);
    slot_targets(r);
    for (int m = 1; m < x->messages; m++)
        x->kept_base[m] = x->kept_base[m - 1] + x->sends[m - 1].len / x->wrow;
    x->chunks = hier_chunk_count(&x->g, x->wrow);
    x->req = calloc((size_t)(N - 1) * x->chunks + 1, sizeof *x->req);
    if (x->req == NULL)
        return epc_error_obj(&r->ctx->hdr, EPC_ERR_NO_MEMORY, PHASE);
    return epc_lane_net_reserve(r->lane, x->send_bytes, x->recv_bytes);
}

epc_status_t coll_hier_combine_begin(epc_request_t *r)
{
    int N = r->ctx->comm.topo->nnodes, slots = coll_num_slots(r->h, r->ctx->comm.rank);
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
    x->slot = malloc(((size_t)slots + 1) * sizeof *x->slot);
    x->acc = malloc(3 * x->row);
    x->pull = r->all_in_place;
    x->offsets = malloc((size_t)x->g.ranks_per_node * sizeof *x->offsets);
    if (x->sends == NULL || x->kept_base == NULL || x->slot == NULL || x->acc == NULL ||
        x->offsets == NULL)
        x->local = epc_error_obj(&r->ctx->hdr, EPC_ERR_NO_MEMORY, PHASE);
    else {
        x->recvs = x->sends + N;
        x->node_sum = x->acc + x->g.hidden;
        x->part = x->node_sum + x->g.hidden;
        x->local = prepare(r, x);
    }
    x->stage = 1;
    r->step = step_partials;
    return EPC_OK;
}
