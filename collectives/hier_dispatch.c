/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * hier_dispatch.c - hierarchical dispatch (DeepSeek-V3's scheme) as a
 * schedule of steps.  A token for this node is written straight into each
 * local destination's shared region at its final position; a token for
 * another node crosses the network once, to its forwarder there, which
 * writes it into each of its node's destinations.
 *
 * Steps: reserve the regions (a node fence, a grow if any rank needs it)
 * -> pack and post every chunk of every message -> place this node's own
 * tokens -> forward each chunk as it arrives -> the node fence.
 */
#include <stdlib.h>
#include <string.h>

#include "fault.h"
#include "hier.h"

#define PHASE "hier dispatch"

typedef struct hier_dispatch {
    hier_geom_t g;
    int messages;                /* one each way per other node */
    epc_tr_msg_t *sends, *recvs; /* [messages], whole */
    size_t send_bytes, recv_bytes;
    size_t *kept_base; /* [messages + 1]: first kept header of each */
    int **tokens;      /* [N]: this rank's tokens for each node */
    int chunks, posted, forwarded;
    void **chunk_req;  /* [chunks] posted exchanges */
    size_t need;       /* bytes this rank's region must hold */
    uint64_t *placed;  /* [lsize]: bytes written into each local
                        * rank's region, not yet accounted */
    char **region;     /* [lsize]: each local rank's region ... */
    coll_meta_t *meta; /* [lsize]: ... and its metadata arrays,
                        * placed once the regions are final */
    uint64_t fence;
} hier_dispatch_t;

char *hier_region(const epc_lane_t *ln, const hier_geom_t *g, int l, coll_meta_t *m)
{
    size_t cap;
    int x = hier_rank_at(g, g->my_node, l);
    char *base = epc_lane_shm_region(ln, l, &cap);
    if (m != NULL)
        coll_meta_place(base, (size_t)g->h->num_rows[x] * g->row_bytes, g->h->num_rows[x], m);
    return base;
}

epc_status_t hier_check_regions(epc_ctx_t *ctx, const epc_lane_t *ln, const hier_geom_t *g,
                                const char *phase)
{
    for (int l = 0; l < g->ranks_per_node; l++) {
        size_t cap, need = hier_region_need(g, hier_rank_at(g, g->my_node, l));
        epc_lane_shm_region(ln, l, &cap);
        if (need > cap)
            return epc_error_obj(&ctx->hdr, EPC_ERR_INTERNAL,
                                 "%s: local rank %d's shared region holds %zu bytes, its layout "
                                 "needs %zu",
                                 phase, l, cap, need);
    }
    return EPC_OK;
}

/* Writes one record's row to every destination it names on this node.
 * Fields from other ranks are checked before use. */
static epc_status_t place_record(epc_request_t *r, int s, int token, const coll_slot_t *sl,
                                 const void *row)
{
    hier_dispatch_t *x = r->algo;
    const hier_geom_t *g = &x->g;
    const epc_handle_t *h = g->h;
    for (int q = 0; q < h->k; q++) {
        int e = sl[q].expert, d, l;
        int ok = coll_wire_slot(&h->dims, coll_C(h, s), &sl[q], g->my_node, -1);
        long pos;
        if (ok == 0)
            continue;
        if (ok < 0)
            return epc_error_obj(&r->ctx->hdr, EPC_ERR_INTERNAL,
                                 PHASE ": corrupt record of rank %d (expert %d)", s, e);
        d = e / h->epr;
        l = g->local_rank[d];
        pos = coll_wire_row(&h->dims, h->begin, h->prefix, s, e, sl[q].eidx);
        if (pos < 0 || pos >= h->num_rows[d]) /* hier_check_regions covers [0, num_rows) */
            return epc_error_obj(&r->ctx->hdr, EPC_ERR_INTERNAL,
                                 PHASE ": row %ld of rank %d's token %d outside rank %d's %d rows",
                                 pos, s, token, d, h->num_rows[d]);
        coll_place(x->region[l], &x->meta[l], g->row_bytes, (int)pos, row, s, token, e - d * h->epr,
                   sl[q].weight);
        coll_account(r->ctx, &r->bytes, d, g->row_bytes, 4 * sizeof(int32_t), 0);
        x->placed[l] += g->row_bytes + 4 * sizeof(int32_t);
    }
    return EPC_OK;
}

/* The per-link counters of what was placed since the last call: one
 * entry per local rank, not one per row. */
static void account_placed(epc_request_t *r)
{
    hier_dispatch_t *x = r->algo;
    for (int l = 0; l < x->g.ranks_per_node; l++)
        if (x->placed[l] > 0) {
            epc_comm_account(&r->ctx->comm, hier_rank_at(&x->g, x->g.my_node, l), x->placed[l], 1);
            x->placed[l] = 0;
        }
}

/* Packs records [lo, hi) of this rank's message to node n into out. */
static void pack_range(epc_request_t *r, int n, size_t lo, size_t hi, char *out)
{
    hier_dispatch_t *x = r->algo;
    const hier_geom_t *g = &x->g;
    coll_slot_t sl[256];
    for (size_t q = lo; q < hi; q++) {
        char *u = out + q * g->record_bytes;
        int t = x->tokens[n][q];
        hier_slots_for_node(g, t, n, sl);
        ((coll_rec_t *)(void *)u)->token = t;
        memcpy(u + sizeof(coll_rec_t), sl, g->h->k * sizeof *sl);
        memcpy(u + g->record_header, r->src + (size_t)t * g->row_bytes, g->row_bytes);
        coll_account(r->ctx, &r->bytes, hier_rank_at(g, n, g->my_local), g->row_bytes,
                     g->record_header, 0);
    }
}

/* Forwards records [lo, hi) of received message m into this node,
 * keeping their headers for combine. */
static epc_status_t forward_range(epc_request_t *r, int m, size_t lo, size_t hi)
{
    hier_dispatch_t *x = r->algo;
    const hier_geom_t *g = &x->g;
    const epc_tr_msg_t *msg = &x->recvs[m];
    epc_handle_t *h = r->h;
    const char *recs = epc_lane_net_recv_at(r->lane, msg->offset, msg->len);
    epc_status_t st = recs != NULL || msg->len == 0
                          ? EPC_OK
                          : epc_error_obj(&r->ctx->hdr, EPC_ERR_INTERNAL,
                                          PHASE ": message outside the receive region");
    for (size_t i = lo; st == EPC_OK && i < hi; i++) {
        const char *u = recs + i * g->record_bytes;
        int t = ((const coll_rec_t *)(const void *)u)->token;
        if (t < 0 || t >= h->Ts[msg->peer])
            return epc_error_obj(&r->ctx->hdr, EPC_ERR_INTERNAL,
                                 PHASE ": rank %d sent token %d of %d", msg->peer, t,
                                 h->Ts[msg->peer]);
        memcpy(h->kept + (x->kept_base[m] + i) * g->record_header, u, g->record_header);
        st = place_record(r, msg->peer, t,
                          (const coll_slot_t *)(const void *)(u + sizeof(coll_rec_t)),
                          u + g->record_header);
    }
    return st;
}

static void dispatch_free(epc_request_t *r)
{
    hier_dispatch_t *x = r->algo;
    for (int c = x->forwarded; x->chunk_req != NULL && c < x->posted; c++)
        if (x->chunk_req[c] != NULL)
            epc_lane_net_cancel(r->lane, x->chunk_req[c]);
    hier_free_lists(x->tokens, x->g.nnodes);
    free(x->chunk_req);
    free(x->kept_base);
    free(x->sends);
    free(x->placed);
    free(x->region);
    free(x->meta);
    free(x);
    r->algo = NULL;
    r->algo_free = NULL;
}

/* Last step: the node fence, after which every row of this node is in. */
static epc_status_t step_fence(epc_request_t *r)
{
    hier_dispatch_t *x = r->algo;
    epc_status_t st = coll_req_fence(r, x->fence, PHASE);
    if (st == EPC_OK)
        r->step = NULL;
    return st;
}

/* Forwards the next chunk once it arrived; after the last, fills this
 * rank's padding and arrives at the node fence. */
static epc_status_t step_forward(epc_request_t *r)
{
    hier_dispatch_t *x = r->algo;
    epc_status_t st;
    if (x->forwarded < x->posted) {
        int c = x->forwarded;
        if ((st = coll_req_net(r, &x->chunk_req[c])) != EPC_OK)
            return st;
        for (int m = 0; st == EPC_OK && m < x->messages; m++) {
            size_t lo, hi;
            hier_chunk_range(x->recvs[m].len / x->g.record_bytes, c, x->chunks, &lo, &hi);
            st = forward_range(r, m, lo, hi);
        }
        x->forwarded++;
        account_placed(r);
        return st;
    }
    /* per-link counters, as for unchunked exchanges */
    epc_lane_net_account(r->lane, x->sends, x->messages, x->recvs, x->messages);
    coll_fill_padding(r->h, r->ctx->comm.rank, x->g.row_bytes);
    coll_stream_fence(); /* the placed rows, before the fence publishes them */
    r->step = step_fence;
    return epc_lane_fence_arrive(r->lane, PHASE, &x->fence);
}

/* This node's own tokens, written straight into its regions while the
 * chunks travel (driving the transport now and then: MPI moves data only
 * when called). */
static epc_status_t step_local(epc_request_t *r)
{
    hier_dispatch_t *x = r->algo;
    const hier_geom_t *g = &x->g;
    const int *mine = x->tokens[g->my_node];
    coll_slot_t sl[256];
    epc_status_t st = EPC_OK;
    for (int i = 0; st == EPC_OK && i < coll_tpn(r->h, g->rank)[g->my_node]; i++) {
        int done, t = mine[i];
        hier_slots_for_node(g, t, g->my_node, sl);
        st = place_record(r, r->ctx->comm.rank, t, sl, r->src + (size_t)t * g->row_bytes);
        if (st == EPC_OK && i % 16 == 0 && x->posted > 0)
            st = epc_lane_net_test(r->lane, x->chunk_req[0], &done);
    }
    account_placed(r);
    r->step = step_forward;
    return st;
}

/* Packs and posts chunk c of every message (all chunks in flight). */
static epc_status_t post_chunk(epc_request_t *r, int c, epc_tr_msg_t *cs, epc_tr_msg_t *cr)
{
    hier_dispatch_t *x = r->algo;
    size_t unit = x->g.record_bytes;
    for (int m = 0, n = 0; m < x->messages; m++, n++) {
        size_t lo, hi, rlo, rhi;
        char *out = epc_lane_net_send_at(r->lane, x->sends[m].offset, x->sends[m].len);
        if (out == NULL && x->sends[m].len > 0)
            return epc_error_obj(&r->ctx->hdr, EPC_ERR_INTERNAL,
                                 PHASE ": message outside the send region");
        n += n == x->g.my_node; /* messages skip this node */
        hier_chunk_range(x->sends[m].len / unit, c, x->chunks, &lo, &hi);
        hier_chunk_range(x->recvs[m].len / unit, c, x->chunks, &rlo, &rhi);
        pack_range(r, n, lo, hi, out);
        cs[m] = (epc_tr_msg_t){.peer = x->sends[m].peer,
                               .offset = x->sends[m].offset + lo * unit,
                               .len = (hi - lo) * unit};
        cr[m] = (epc_tr_msg_t){.peer = x->recvs[m].peer,
                               .offset = x->recvs[m].offset + rlo * unit,
                               .len = (rhi - rlo) * unit};
    }
    return epc_lane_net_post(r->lane, cs, x->messages, cr, x->messages, PHASE, &x->chunk_req[c]);
}

static epc_status_t step_post(epc_request_t *r)
{
    hier_dispatch_t *x = r->algo;
    epc_status_t st = EPC_OK;
    x->chunks = hier_chunk_count(&x->g, x->g.record_bytes);
    x->chunk_req = calloc((size_t)x->chunks, sizeof *x->chunk_req);
    if (x->chunk_req == NULL)
        return epc_error_obj(&r->ctx->hdr, EPC_ERR_NO_MEMORY, PHASE ": requests");
    for (int c = 0; st == EPC_OK && c < x->chunks; c++) {
        st = post_chunk(r, c, x->sends + 2 * x->g.nnodes, x->sends + 3 * x->g.nnodes);
        x->posted += st == EPC_OK;
    }
    r->step = step_local;
    return st;
}

/* Once every rank of the node published its need: grow if any must, then
 * check the regions and prepare what the steps need. */
static epc_status_t step_reserve(epc_request_t *r)
{
    hier_dispatch_t *x = r->algo;
    epc_handle_t *h = r->h;
    size_t records = 0;
    epc_status_t st = coll_req_fence(r, x->fence, PHASE);
    if (st == EPC_OK)
        st = epc_lane_reserve_end(r->lane, x->need, PHASE);
    if (st == EPC_OK)
        st = hier_check_regions(r->ctx, r->lane, &x->g, PHASE);
    if (st == EPC_OK)
        st = epc_lane_net_reserve(r->lane, x->send_bytes, x->recv_bytes);
    if (st != EPC_OK)
        return st;
    for (int l = 0; l < x->g.ranks_per_node; l++) /* where every row goes, once */
        x->region[l] = hier_region(r->lane, &x->g, l, &x->meta[l]);
    h->rows = x->region[x->g.my_local];
    h->meta = x->meta[x->g.my_local];
    x->kept_base[0] = 0;
    for (int m = 0; m < x->messages; m++)
        x->kept_base[m + 1] = x->kept_base[m] + x->recvs[m].len / x->g.record_bytes;
    records = x->kept_base[x->messages];
    free(h->kept);
    h->kept = malloc(records * x->g.record_header + 1);
    x->tokens = hier_token_lists(&x->g);
    if (h->kept == NULL || x->tokens == NULL)
        return epc_error_obj(&r->ctx->hdr, EPC_ERR_NO_MEMORY, PHASE ": %zu records", records);
    r->step = step_post;
    return EPC_OK;
}

epc_status_t coll_hier_dispatch_begin(epc_request_t *r)
{
    int N = r->ctx->comm.topo->nnodes;
    hier_dispatch_t *x = calloc(1, sizeof *x);
    epc_fault_here("dispatch"); /* test hook: after the counts, before rows */
    if (x == NULL)
        return epc_error_obj(&r->ctx->hdr, EPC_ERR_NO_MEMORY, PHASE);
    r->algo = x;
    r->algo_free = dispatch_free;
    x->g = hier_geom_of(r->ctx, r->h);
    /* whole messages, then one chunk's, each way */
    x->sends = malloc((size_t)4 * N * sizeof *x->sends);
    x->kept_base = malloc(((size_t)N + 1) * sizeof *x->kept_base);
    x->placed = calloc((size_t)x->g.ranks_per_node, sizeof *x->placed);
    x->region = calloc((size_t)x->g.ranks_per_node, sizeof *x->region);
    x->meta = calloc((size_t)x->g.ranks_per_node, sizeof *x->meta);
    if (x->sends == NULL || x->kept_base == NULL || x->placed == NULL || x->region == NULL ||
        x->meta == NULL)
        return epc_error_obj(&r->ctx->hdr, EPC_ERR_NO_MEMORY, PHASE);
    x->recvs = x->sends + N;
    x->messages = hier_messages(&x->g, x->g.record_bytes, 0, x->sends, x->recvs, &x->send_bytes,
                                &x->recv_bytes);
    x->need = hier_region_need(&x->g, r->ctx->comm.rank);
    r->step = step_reserve;
    return epc_lane_reserve_begin(r->lane, x->need, PHASE, &x->fence);
}
