/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * hier.c - hierarchical dispatch and combine (DeepSeek-V3's scheme).
 *
 * Dispatch: a token for this node is written straight into each local
 * destination's shared region at its final position; a token for another
 * node crosses the network once, to the rank with this rank's local index
 * there (the forwarder), which writes it into each of its node's
 * destinations.  Combine reverses it: every rank sums its experts' weighted
 * outputs per (source, token) in fp32, writes that partial into the region
 * of the source (same node) or of the source's forwarder; the forwarder sums
 * its node's partials and sends one fp32 row per (token, node) back; the
 * source sums over nodes.
 *
 * Each rank's shared region: [rows][row metadata][combine area], where the
 * combine area holds, for every source s with this rank's local index (one
 * per node, ascending), the partials of each local rank d (local order):
 * tpr[s][d] fp32 rows each.
 */
#include <stdlib.h>
#include <string.h>

#include "coll.h"

#define ALIGN64(x) (((x) + 63) & ~(size_t)63)

typedef struct hgeo {
    epc_ctx_t *ctx;
    epc_handle_t *h;
    int n0, L, lr, H;
    size_t rb, unit, hdr;
    const int *nodes;  /* node_ranks */
    const int *start;  /* node_start */
} hgeo_t;

static hgeo_t geo(epc_ctx_t *ctx, epc_handle_t *h)
{
    hgeo_t g = {ctx, h, ctx->node, h->L, ctx->lrank, ctx->hidden, coll_row_bytes(ctx), 0, 0,
                ctx->topo->node_ranks, ctx->topo->node_start};
    g.hdr = sizeof(coll_rec_t) + h->k * sizeof(coll_slot_t);
    g.unit = coll_unit(g.rb, h->k);
    return g;
}

/* Rank with local index l on node n. */
static int at(const hgeo_t *g, int n, int l)
{
    return g->nodes[g->start[n] + l];
}

/* Bytes before the combine area of rank x's region. */
static size_t rows_area(const hgeo_t *g, int x)
{
    int n = g->h->num_rows[x];
    return ALIGN64((size_t)n * g->rb + coll_meta_bytes(n));
}

/* Rows (fp32) of x's combine area before the block of (source s, dest d):
 * sources with x's local index by node, then d's in local order. */
static size_t cbase(const hgeo_t *g, int x, int s, int d)
{
    const epc_topo_t *t = g->ctx->topo;
    int nx = t->node_of[x], ns = t->node_of[s];
    size_t off = 0;
    for (int n = 0; n < ns; n++)
        for (int l = 0; l < g->L; l++)
            off += coll_tpr(g->h, at(g, n, t->local_rank[x]))[at(g, nx, l)];
    for (int l = 0; l < t->local_rank[d]; l++)
        off += coll_tpr(g->h, s)[at(g, nx, l)];
    return off;
}

/* fp32 rows of x's whole combine area. */
static size_t combine_rows(const hgeo_t *g, int x)
{
    const epc_topo_t *t = g->ctx->topo;
    size_t n = 0;
    for (int m = 0; m < t->nnodes; m++)
        for (int l = 0; l < g->L; l++)
            n += coll_tpr(g->h, at(g, m, t->local_rank[x]))[at(g, t->node_of[x], l)];
    return n;
}

/* The shared region of local rank l: its rows and metadata arrays. */
static char *region(const hgeo_t *g, int l, coll_meta_t *m)
{
    size_t cap;
    int x = at(g, g->n0, l);
    char *base = epc_ctx_shm_region(g->ctx, l, &cap);
    if (m != NULL)
        coll_meta_place(base, (size_t)g->h->num_rows[x] * g->rb, g->h->num_rows[x], m);
    return base;
}

/* Bytes rank x's region must hold: rows, metadata and combine area. */
static size_t region_need(const hgeo_t *g, int x)
{
    return rows_area(g, x) + combine_rows(g, x) * (size_t)g->H * sizeof(float);
}

/* Every region of this node holds what the layout puts there, so the
 * writes below (checked against each region's row count) stay inside the
 * mappings: a layout bug is an error, never a write past a mapping. */
static epc_status_t check_regions(const hgeo_t *g, const char *phase)
{
    for (int l = 0; l < g->L; l++) {
        size_t cap, need = region_need(g, at(g, g->n0, l));
        epc_ctx_shm_region(g->ctx, l, &cap);
        if (need > cap)
            return epc_error_obj(&g->ctx->hdr, EPC_ERR_INTERNAL,
                                 "%s: local rank %d's shared region holds %zu bytes, its layout "
                                 "needs %zu",
                                 phase, l, cap, need);
    }
    return EPC_OK;
}

/* Writes one record's row to every destination it names on this node.
 * Fields from other ranks are checked before use. */
static epc_status_t place_record(const hgeo_t *g, int s, int token, const coll_slot_t *sl,
                                 const void *row, epc_coll_bytes_t *acct)
{
    const epc_handle_t *h = g->h;
    for (int q = 0; q < h->k; q++) {
        int e = sl[q].expert, ok = coll_wire_slot(&h->dims, coll_C(h, s), &sl[q], g->n0, -1), d, l,
            le;
        long pos;
        coll_meta_t m;
        char *base;
        if (ok == 0)
            continue;
        if (ok < 0)
            return epc_error_obj(&g->ctx->hdr, EPC_ERR_INTERNAL,
                                 "hier dispatch: corrupt record of rank %d (expert %d)", s, e);
        d = e / h->epr;
        l = g->ctx->topo->local_rank[d];
        le = e - d * h->epr;
        pos = coll_wire_row(&h->dims, h->begin, h->prefix, s, e, sl[q].eidx);
        if (pos < 0 || pos >= h->num_rows[d]) /* check_regions covers [0, num_rows) */
            return epc_error_obj(&g->ctx->hdr, EPC_ERR_INTERNAL,
                                 "hier dispatch: row %ld of rank %d's token %d outside rank %d's "
                                 "%d rows",
                                 pos, s, token, d, h->num_rows[d]);
        base = region(g, l, &m);
        coll_place(base, &m, g->rb, (int)pos, row, s, token, le, sl[q].weight,
                   coll_pbase(h, d, s) + sl[q].didx);
        coll_account(g->ctx, acct, d, g->rb, 5 * sizeof(int32_t), 1);
    }
    return EPC_OK;
}

/* Token t's slots restricted to node n (others -1); 1 if any. */
static int slots_for_node(const hgeo_t *g, int t, int n, coll_slot_t *sl)
{
    const epc_handle_t *h = g->h;
    int any = 0;
    for (int q = 0; q < h->k; q++) {
        size_t i = (size_t)t * h->k + q;
        int e = h->idx[i], on = e >= 0 && g->ctx->topo->node_of[e / h->epr] == n;
        sl[q] = (coll_slot_t){on ? e : -1, h->eidx[i], h->didx[i], h->w[i]};
        any |= on;
    }
    return any;
}

/* Message lists of one exchange, one message each way per other node, with
 * the rank of this local index there.  Dispatch sends this rank's records
 * for that node and receives that rank's records for this node; combine
 * sends back that rank's node sums and receives this rank's. */
static int lists(const hgeo_t *g, size_t unit, int combine, epc_tr_msg_t *snd, epc_tr_msg_t *rcv,
                 size_t *send_bytes, size_t *recv_bytes)
{
    const epc_handle_t *h = g->h;
    int n_msgs = 0, me = g->ctx->rank;
    *send_bytes = *recv_bytes = 0;
    for (int n = 0; n < g->ctx->topo->nnodes; n++) {
        int peer = at(g, n, g->lr);
        size_t mine, theirs;
        if (n == g->n0)
            continue;
        mine = (size_t)coll_tpn(h, me)[n] * unit;
        theirs = (size_t)coll_tpn(h, peer)[g->n0] * unit;
        snd[n_msgs] = (epc_tr_msg_t){peer, *send_bytes, combine ? theirs : mine};
        rcv[n_msgs] = (epc_tr_msg_t){peer, *recv_bytes, combine ? mine : theirs};
        *send_bytes += snd[n_msgs].len;
        *recv_bytes += rcv[n_msgs].len;
        n_msgs++;
    }
    return n_msgs;
}

/* Records of a message in chunk c of C: [lo, hi). */
static void chunk_range(size_t records, int c, int C, size_t *lo, size_t *hi)
{
    *lo = records * (size_t)c / (size_t)C;
    *hi = records * (size_t)(c + 1) / (size_t)C;
}

/* Chunks per exchange of `unit`-byte records, the same on every rank (from
 * the shared counts and the agreed EPC_CHUNK_KB): about that many bytes
 * per message per chunk, at most 8. */
static int chunk_count(const hgeo_t *g, size_t unit)
{
    size_t most = 0;
    for (int s = 0; s < g->h->R; s++)
        for (int n = 0; n < g->h->N; n++)
            most = (size_t)coll_tpn(g->h, s)[n] > most ? (size_t)coll_tpn(g->h, s)[n] : most;
    most = (most * unit + g->ctx->chunk_bytes - 1) / g->ctx->chunk_bytes;
    return most < 1 ? 1 : most > 8 ? 8 : (int)most;
}

/* Packs records [lo, hi) of this rank's message to node n; list holds its
 * tokens for that node in order. */
static void pack_range(const hgeo_t *g, const epc_dispatch_args_t *a, int n, const int *list,
                       size_t lo, size_t hi, char *out)
{
    coll_slot_t sl[256];
    for (size_t q = lo; q < hi; q++) {
        char *u = out + q * g->unit;
        int t = list[q];
        slots_for_node(g, t, n, sl);
        ((coll_rec_t *)(void *)u)->token = t;
        memcpy(u + sizeof(coll_rec_t), sl, g->h->k * sizeof *sl);
        memcpy(u + g->hdr, (const char *)a->x + (size_t)t * g->rb, g->rb);
        coll_account(g->ctx, &g->ctx->cstats.last_dispatch, at(g, n, g->lr), g->rb, g->hdr, 0);
    }
}

/* Forwards records [lo, hi) of received message m into this node, keeping
 * their headers (at their index) for combine. */
static epc_status_t forward_range(const hgeo_t *g, const epc_tr_msg_t *r, size_t kept_base,
                                  size_t lo, size_t hi)
{
    epc_handle_t *h = g->h;
    epc_status_t st = EPC_OK;
    for (size_t i = lo; st == EPC_OK && i < hi; i++) {
        const char *u = g->ctx->tr->recv_buf + r->offset + i * g->unit;
        int t = ((const coll_rec_t *)(const void *)u)->token;
        if (t < 0 || t >= h->Ts[r->peer])
            return epc_error_obj(&g->ctx->hdr, EPC_ERR_INTERNAL,
                                 "hier dispatch: rank %d sent token %d of %d", r->peer, t,
                                 h->Ts[r->peer]);
        memcpy(h->kept + (kept_base + i) * g->hdr, u, g->hdr);
        st = place_record(g, r->peer, t, (const coll_slot_t *)(const void *)(u + sizeof(coll_rec_t)),
                          u + g->hdr, &g->ctx->cstats.last_dispatch);
    }
    return st;
}

/* This rank's tokens for each node, in order: lists[n][q] = token. */
static int **token_lists(const hgeo_t *g)
{
    int N = g->h->N, **lists = calloc((size_t)N, sizeof *lists);
    coll_slot_t sl[256];
    for (int n = 0; lists && n < N; n++) {
        int q = 0;
        lists[n] = malloc(((size_t)coll_tpn(g->h, g->ctx->rank)[n] + 1) * sizeof **lists);
        if (lists[n] == NULL)
            return lists; /* caller checks every entry */
        for (int t = 0; t < g->h->T; t++)
            if (slots_for_node(g, t, n, sl))
                lists[n][q++] = t;
    }
    return lists;
}

/* Waits for one posted exchange (and frees it), folding its status into st.
 * After a failure it is only cancelled and freed (an expired deadline), not
 * waited for another full timeout. */
static epc_status_t wait_posted(epc_ctx_t *ctx, void *req, epc_status_t st)
{
    epc_deadline_t dl = st == EPC_OK ? epc_ctx_deadline(ctx) : (epc_deadline_t){0};
    epc_status_t w = epc_tr_wait(ctx->tr, req, dl);
    return st == EPC_OK ? w : st;
}

/* Pipeline: chunk c of every message is packed and posted, all chunks in
 * flight; this node's own tokens are written meanwhile (driving progress);
 * then each chunk is forwarded as soon as it has arrived. */
static epc_status_t pipeline(const hgeo_t *g, const epc_dispatch_args_t *a, const epc_tr_msg_t *snd,
                             const epc_tr_msg_t *rcv, int nm, int **tok)
{
    epc_ctx_t *ctx = g->ctx;
    int C = chunk_count(g, g->unit), started = 0;
    epc_tr_msg_t *cs = malloc((size_t)2 * (nm + 1) * sizeof *cs), *cr = cs ? cs + nm + 1 : NULL;
    void **req = calloc((size_t)C, sizeof *req);
    size_t *kept_base = calloc((size_t)nm + 1, sizeof *kept_base);
    coll_slot_t sl[256];
    epc_status_t st = cs && req && kept_base ? EPC_OK
                                             : epc_error_obj(&ctx->hdr, EPC_ERR_NO_MEMORY, "pipeline");
    for (int m = 0; st == EPC_OK && m < nm; m++)
        kept_base[m + 1] = kept_base[m] + rcv[m].len / g->unit;
    for (int c = 0; st == EPC_OK && c < C; c++) {
        for (int m = 0, n = 0; m < nm; m++, n++) {
            size_t lo, hi, rlo, rhi;
            n += n == g->n0; /* messages skip this node */
            chunk_range(snd[m].len / g->unit, c, C, &lo, &hi);
            chunk_range(rcv[m].len / g->unit, c, C, &rlo, &rhi);
            pack_range(g, a, n, tok[n], lo, hi, ctx->tr->send_buf + snd[m].offset);
            cs[m] = (epc_tr_msg_t){snd[m].peer, snd[m].offset + lo * g->unit, (hi - lo) * g->unit};
            cr[m] = (epc_tr_msg_t){rcv[m].peer, rcv[m].offset + rlo * g->unit, (rhi - rlo) * g->unit};
        }
        st = epc_tr_start(ctx->tr, cs, nm, cr, nm, "hier dispatch", &req[c]);
        started += st == EPC_OK;
    }
    for (int t = 0; st == EPC_OK && t < g->h->T; t++) {
        int done;
        if (slots_for_node(g, t, g->n0, sl))
            st = place_record(g, ctx->rank, t, sl, (const char *)a->x + (size_t)t * g->rb,
                              &ctx->cstats.last_dispatch);
        if (st == EPC_OK && t % 16 == 0 && started > 0) /* MPI moves data only when called */
            st = epc_tr_test(ctx->tr, req[0], &done);
    }
    for (int c = 0; c < started; c++) {
        st = wait_posted(ctx, req[c], st);
        for (int m = 0; st == EPC_OK && m < nm; m++) {
            size_t lo, hi;
            chunk_range(rcv[m].len / g->unit, c, C, &lo, &hi);
            st = forward_range(g, &rcv[m], kept_base[m], lo, hi);
        }
    }
    if (st == EPC_OK) /* per-link counters, as for unchunked exchanges */
        epc_ctx_account_exchange(ctx, snd, nm, rcv, nm);
    free(cs), free(req), free(kept_base);
    return st;
}

epc_status_t coll_hier_dispatch(epc_ctx_t *ctx, const epc_dispatch_args_t *a, epc_handle_t *h)
{
    hgeo_t g = geo(ctx, h);
    int N = ctx->topo->nnodes, nm, **tok = NULL;
    epc_tr_msg_t *msg = malloc((size_t)2 * N * sizeof *msg);
    size_t sb, rb, need = region_need(&g, ctx->rank), recs = 0;
    epc_status_t st = msg ? epc_ctx_shm_reserve(ctx, need, "hier dispatch")
                          : epc_error_obj(&ctx->hdr, EPC_ERR_NO_MEMORY, "hier dispatch");
    if (st != EPC_OK) {
        free(msg);
        return st;
    }
    nm = lists(&g, g.unit, 0, msg, msg + N, &sb, &rb);
    st = check_regions(&g, "hier dispatch");
    if (st == EPC_OK)
        st = epc_ctx_net_reserve(ctx, sb, rb);
    h->rows = region(&g, g.lr, &h->meta);
    for (int m = 0; m < nm; m++)
        recs += msg[N + m].len / g.unit;
    free(h->kept);
    h->kept = malloc(recs * g.hdr + 1);
    tok = token_lists(&g);
    for (int n = 0; tok && n < N; n++)
        if (tok[n] == NULL)
            st = st == EPC_OK ? epc_error_obj(&ctx->hdr, EPC_ERR_NO_MEMORY, "token lists") : st;
    if (st == EPC_OK && (h->kept == NULL || tok == NULL))
        st = epc_error_obj(&ctx->hdr, EPC_ERR_NO_MEMORY, "hier dispatch: %zu records", recs);
    if (st == EPC_OK)
        st = pipeline(&g, a, msg, msg + N, nm, tok);
    if (st == EPC_OK)
        coll_fill_padding(h, ctx->rank, g.rb);
    if (st == EPC_OK)
        st = epc_ctx_shm_fence(ctx, "hier dispatch");
    for (int n = 0; tok && n < N; n++)
        free(tok[n]);
    free(tok);
    free(msg);
    return st;
}

/* This rank's combine area, and the sum over this node's ranks (local
 * order) of source s's partials for one token, given its dests on this
 * node (sorted) and their didx. */
static void node_sum(const hgeo_t *g, int s, const int *dest, const int *didx, int n, float *ns)
{
    const float *ca = (const float *)(const void *)(region(g, g->lr, NULL) +
                                                     rows_area(g, g->ctx->rank));
    memset(ns, 0, (size_t)g->H * sizeof *ns);
    for (int q = 0; q < n; q++)
        coll_add_row(ns, ca + (cbase(g, g->ctx->rank, s, dest[q]) + didx[q]) * g->H, g->H);
}

/* Where each of this rank's combine slots goes: straight into the region
 * of the source (this node) or of the source's forwarder (this node, the
 * source's local index), so partials are summed in place, never copied. */
static void slot_targets(const hgeo_t *g, float **slot)
{
    epc_ctx_t *ctx = g->ctx;
    size_t row = (size_t)g->H * sizeof(float);
    int p = 0;
    for (int s = 0; s < g->h->R; s++) {
        int cnt = coll_tpr(g->h, s)[ctx->rank], l = ctx->topo->local_rank[s], x;
        char *base;
        if (cnt == 0)
            continue;
        x = ctx->topo->node_of[s] == g->n0 ? s : at(g, g->n0, l);
        base = region(g, l, NULL) + rows_area(g, x) + cbase(g, x, s, ctx->rank) * row;
        for (int i = 0; i < cnt; i++)
            slot[p++] = (float *)(void *)(base + (size_t)i * row);
        coll_account(ctx, &ctx->cstats.last_combine, x, cnt * row, 0, 1);
    }
}

/* Forwarder: the node sums of records [lo, hi) of combine message m (back
 * to the source that sent them), whose kept headers start at record kb,
 * summed in place in the send buffer. */
static void forwarder_sums(const hgeo_t *g, const epc_tr_msg_t *m, size_t kb, size_t lo,
                           size_t hi)
{
    int dest[256], didx[256];
    for (size_t i = lo; i < hi; i++) {
        const char *rec = g->h->kept + (kb + i) * g->hdr;
        const coll_slot_t *sl = (const coll_slot_t *)(const void *)(rec + sizeof(coll_rec_t));
        int n = 0;
        for (int q = 0; q < g->h->k; q++) { /* distinct local dests, local order */
            int d = sl[q].expert < 0 ? -1 : sl[q].expert / g->h->epr, dup = 0, z;
            for (int j = 0; j < n && d >= 0; j++)
                dup |= dest[j] == d;
            if (d < 0 || dup)
                continue;
            for (z = n++; z > 0 && g->ctx->topo->local_rank[dest[z - 1]] > g->ctx->topo->local_rank[d]; z--)
                dest[z] = dest[z - 1], didx[z] = didx[z - 1];
            dest[z] = d, didx[z] = sl[q].didx;
        }
        node_sum(g, m->peer, dest, didx, n,
                 (float *)(void *)(g->ctx->tr->send_buf + m->offset + i * g->H * sizeof(float)));
        coll_account(g->ctx, &g->ctx->cstats.last_combine, m->peer,
                     (uint64_t)g->H * sizeof(float), 0, 0);
    }
}

/* Combine's staged exchange: what the stages share. */
typedef struct cstage {
    const hgeo_t *g;
    const epc_tr_msg_t *snd, *rcv; /* one per other node, ascending (lists()) */
    size_t *kb;                    /* [nm]: index of snd[m]'s first kept header */
    void **req;                    /* [(N - 1) x C] posted exchanges */
    int C, started;
} cstage_t;

/* Drives the transport while partials are summed (MPI moves data only when
 * called). */
static epc_status_t cstage_poll(void *arg)
{
    cstage_t *x = arg;
    int done;
    return x->started > 0 ? epc_tr_test(x->g->ctx->tr, x->req[x->started - 1], &done) : EPC_OK;
}

/* Stage s: the node sums for node n0 + s (mod N), summed and posted chunk
 * by chunk, each with the receipt of the chunk node n0 - s sends this rank
 * (its tokens' node sums).  Every rank posts the same sequence of
 * exchanges, and both ends cut a message alike (shared counts). */
static epc_status_t post_stage(cstage_t *x, int s)
{
    const hgeo_t *g = x->g;
    int N = g->ctx->topo->nnodes, to = (g->n0 + s) % N, from = (g->n0 - s + N) % N;
    const epc_tr_msg_t *ms = &x->snd[to < g->n0 ? to : to - 1];
    const epc_tr_msg_t *mr = &x->rcv[from < g->n0 ? from : from - 1];
    size_t unit = (size_t)g->H * sizeof(float), kb = x->kb[ms - x->snd];
    epc_status_t st = EPC_OK;
    for (int c = 0; st == EPC_OK && c < x->C; c++) {
        size_t lo, hi, rlo, rhi;
        epc_tr_msg_t cs, cr;
        chunk_range(ms->len / unit, c, x->C, &lo, &hi);
        chunk_range(mr->len / unit, c, x->C, &rlo, &rhi);
        forwarder_sums(g, ms, kb, lo, hi);
        cs = (epc_tr_msg_t){ms->peer, ms->offset + lo * unit, (hi - lo) * unit};
        cr = (epc_tr_msg_t){mr->peer, mr->offset + rlo * unit, (rhi - rlo) * unit};
        st = cstage_poll(x);
        if (st == EPC_OK)
            st = epc_tr_start(g->ctx->tr, &cs, 1, &cr, 1, "hier combine", &x->req[x->started]);
        x->started += st == EPC_OK;
    }
    return st;
}

/*
 * Partial sums and the network overlapped: for each other node in turn
 * (n0 + 1, n0 + 2, ... mod N) the node's ranks sum the partials of that
 * node's sources, fence, and the forwarders post those node sums while the
 * next node's partials are summed; this node's own sources come last.
 * Every rank fences N times whatever happens (st is this rank's status so
 * far), so a local failure strands no local peer; only a failed fence ends
 * the fencing.  Returns when every posted exchange has completed.
 */
static epc_status_t combine_stages(const hgeo_t *g, const void *out, int unweighted,
                                   float *const *slot, const epc_tr_msg_t *snd,
                                   const epc_tr_msg_t *rcv, int nm, epc_status_t st)
{
    epc_ctx_t *ctx = g->ctx;
    int N = ctx->topo->nnodes;
    cstage_t x = {g, snd, rcv, calloc((size_t)nm + 1, sizeof(size_t)), NULL,
                  chunk_count(g, (size_t)g->H * sizeof(float)), 0};
    coll_poll_t poll = {cstage_poll, &x};
    x.req = calloc((size_t)(N - 1) * x.C + 1, sizeof *x.req);
    if (st == EPC_OK && (x.kb == NULL || x.req == NULL))
        st = epc_error_obj(&ctx->hdr, EPC_ERR_NO_MEMORY, "hier combine");
    for (int m = 1; st == EPC_OK && m < nm; m++)
        x.kb[m] = x.kb[m - 1] + snd[m - 1].len / ((size_t)g->H * sizeof(float));
    for (int s = 1, fence_failed = 0; s <= N; s++) {
        epc_status_t fst;
        if (st == EPC_OK)
            st = coll_partials(ctx, g->h, out, unweighted, slot, (g->n0 + s) % N, &poll);
        /* After a fence failed the counters are broken: fencing again would
         * only replace the error that named the missing rank. */
        fst = fence_failed ? st : epc_ctx_shm_fence(ctx, "hier combine");
        fence_failed |= fst != EPC_OK;
        st = st == EPC_OK ? fst : st;
        if (st == EPC_OK && s < N)
            st = post_stage(&x, s);
    }
    for (int c = 0; c < x.started; c++)
        st = wait_posted(ctx, x.req[c], st);
    if (st == EPC_OK)
        epc_ctx_account_exchange(ctx, snd, nm, rcv, nm);
    free(x.kb), free(x.req);
    return st;
}

/* Source: y[t] = sum over nodes ascending of the node sums, in fp32. */
static void finish(const hgeo_t *g, const epc_tr_msg_t *rcv, void *y, float *acc, float *ns)
{
    epc_handle_t *h = g->h;
    int dest[256], didx[256], *q = calloc((size_t)g->ctx->topo->nnodes, sizeof *q);
    for (int t = 0; t < h->T && q != NULL; t++) {
        int n = coll_token_dests(g->ctx, h, t, dest, didx);
        memset(acc, 0, (size_t)g->H * sizeof *acc);
        for (int i = 0; i < n;) {
            int node = g->ctx->topo->node_of[dest[i]], j = i;
            while (j < n && g->ctx->topo->node_of[dest[j]] == node)
                j++;
            if (node == g->n0) {
                node_sum(g, g->ctx->rank, dest + i, didx + i, j - i, ns);
                coll_add_row(acc, ns, g->H);
            } else { /* added straight from the receive buffer (whole fp32 rows) */
                const epc_tr_msg_t *m = &rcv[node < g->n0 ? node : node - 1];
                coll_add_row(acc, (const float *)(const void *)(g->ctx->tr->recv_buf + m->offset +
                                                               (size_t)q[node]++ * g->H * sizeof(float)),
                             g->H);
            }
            i = j;
        }
        coll_store_row(g->ctx, acc, (char *)y + (size_t)t * g->rb);
    }
    free(q);
}

epc_status_t coll_hier_combine(epc_ctx_t *ctx, epc_handle_t *h, const void *out, void *y,
                               int unweighted)
{
    hgeo_t g = geo(ctx, h);
    int N = ctx->topo->nnodes, nm, P;
    epc_tr_msg_t *msg = malloc((size_t)2 * N * sizeof *msg);
    float *tmp = malloc((size_t)2 * g.H * sizeof(float)), **slot;
    size_t sb, rb;
    epc_status_t st;
    P = coll_num_slots(h, ctx->rank);
    slot = malloc(((size_t)P + 1) * sizeof *slot);
    st = msg && tmp && slot ? EPC_OK : epc_error_obj(&ctx->hdr, EPC_ERR_NO_MEMORY, "hier combine");
    if (st == EPC_OK) /* the partials land in the regions the dispatch sized */
        st = check_regions(&g, "hier combine");
    nm = msg ? lists(&g, (size_t)g.H * sizeof(float), 1, msg, msg + N, &sb, &rb) : 0;
    if (st == EPC_OK) {
        slot_targets(&g, slot);
        st = epc_ctx_net_reserve(ctx, sb, rb);
    }
    st = combine_stages(&g, out, unweighted, slot, msg, msg + N, nm, st);
    if (st == EPC_OK)
        finish(&g, msg + N, y, tmp, tmp + g.H);
    free(msg);
    free(tmp);
    free(slot);
    return st;
}
