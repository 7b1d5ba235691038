/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * flat.c - the baseline users write by hand today: one deduplicated record
 * per (token, destination rank) in a send buffer, MPI_Alltoallv, then an
 * unpack into the expert-major layout; combine sends each expert output row
 * back the same way and the source sums them.  Same API and same results
 * as hier, for comparison.
 */
#include <stdlib.h>
#include <string.h>

#include "fault.h"
#include "request.h"

/* What a flat request keeps between its steps. */
typedef struct flat {
    int *counts; /* [4R]: scnt | sdsp | rcnt | rdsp */
    int *scnt, *sdsp, *rcnt, *rdsp;
    char *sbuf, *rbuf;
    int *eoff;            /* combine: [E], in counts (row_counts) */
    size_t unit;          /* bytes of one record (combine: of an output row) */
    epc_lane_coll_t xchg; /* the posted exchange */
    float *tmp;           /* combine: [2H] */
    int *js;              /* combine: [6 (k + 1)], coll_sum_groups' for two tokens */
} flat_t;

static void flat_free(epc_request_t *r)
{
    flat_t *x = r->algo;
    void *bufs[EPC_MPI_ABANDON_BUFS] = {x->counts};
    int n = 1;
    if (epc_lane_coll_pending(&x->xchg)) { /* failed: MPI may still use the exchange's buffers */
        static const int kept[] = {EPC_SCRATCH_SEND, EPC_SCRATCH_RECV, EPC_SCRATCH_PARTIAL};
        for (size_t i = 0; i < sizeof kept / sizeof *kept; i++)
            bufs[n++] = epc_ctx_scratch_detach(r->ctx, coll_req_lane(r)->index, kept[i]);
    }
    epc_lane_coll_free(&x->xchg, bufs, n);
    free(x->tmp);
    free(x->js);
    free(x);
    r->algo = NULL;
    r->algo_free = NULL;
}

static flat_t *flat_new(epc_request_t *r)
{
    flat_t *x = calloc(1, sizeof *x);
    if (x != NULL) {
        r->algo = x;
        r->algo_free = flat_free;
        epc_lane_coll_init(&x->xchg);
    }
    return x;
}

/* Posts the exchange of `unit`-byte records through the request's lane
 * (which accounts every peer's share). */
static epc_status_t post_alltoallv(epc_request_t *r, flat_t *x, const void *sbuf, const int *scnt,
                                   const int *sdsp, void *rbuf, const int *rcnt, const int *rdsp)
{
    return epc_lane_alltoallv_post(coll_req_lane(r), sbuf, scnt, sdsp, rbuf, rcnt, rdsp, x->unit,
                                   &x->xchg, "MPI_Ialltoallv");
}

/* EPC_OK once the posted MPI_Ialltoallv completed, EPC_IN_PROGRESS, or
 * its error naming phase. */
static epc_status_t test_alltoallv(epc_request_t *r, flat_t *x, const char *phase)
{
    epc_status_t st = coll_req_test_coll(r, &x->xchg, "MPI_Ialltoallv");
    if (st == EPC_ERR_TIMEOUT)
        return epc_error_obj(&r->ctx->hdr, EPC_ERR_TIMEOUT, "%s: MPI_Ialltoallv timed out", phase);
    if (st != EPC_OK && st != EPC_IN_PROGRESS && st != EPC_ERR_TRANSPORT) /* a peer aborted */
        return epc_error_context(&r->ctx->hdr, st, "%s: MPI_Ialltoallv", phase);
    return st;
}

/* Counts and displacements (in units) of what this rank sends/receives. */
static epc_status_t counts(epc_ctx_t *ctx, const epc_handle_t *h, flat_t *x)
{
    int R = h->R, me = ctx->comm.rank;
    x->counts = malloc((size_t)4 * R * sizeof *x->counts);
    if (x->counts == NULL)
        return epc_error_obj(&ctx->hdr, EPC_ERR_NO_MEMORY, "flat: counts of %d ranks", R);
    x->scnt = x->counts;
    x->sdsp = x->counts + R;
    x->rcnt = x->counts + 2 * R;
    x->rdsp = x->counts + 3 * R;
    for (int r = 0; r < R; r++) {
        x->scnt[r] = coll_tpr(h, me)[r];
        x->rcnt[r] = coll_tpr(h, r)[me];
        x->sdsp[r] = r ? x->sdsp[r - 1] + x->scnt[r - 1] : 0;
        x->rdsp[r] = r ? x->rdsp[r - 1] + x->rcnt[r - 1] : 0;
    }
    return EPC_OK;
}

/* One record per (token, destination rank), at the rank's didx. */
static void pack(epc_ctx_t *ctx, const char *src, epc_handle_t *h, char *sbuf, const int *sdsp,
                 size_t unit, epc_coll_bytes_t *acct)
{
    size_t rb = h->row_bytes, hdr = sizeof(coll_rec_t);
    for (int t = 0; t < h->T; t++)
        for (int j = 0; j < h->k; j++) {
            size_t i = (size_t)t * h->k + j;
            int r = h->idx[i] < 0 ? -1 : h->idx[i] / h->epr, dup = 0;
            char *u;
            coll_slot_t *sl;
            for (int q = 0; q < j && r >= 0; q++) /* one record per rank */
                dup |=
                    h->idx[(size_t)t * h->k + q] >= 0 && h->idx[(size_t)t * h->k + q] / h->epr == r;
            if (r < 0 || dup)
                continue;
            u = sbuf + ((size_t)sdsp[r] + h->didx[i]) * unit;
            ((coll_rec_t *)(void *)u)->token = t;
            sl = (coll_slot_t *)(void *)(u + hdr);
            for (int q = 0; q < h->k; q++) {
                size_t iq = (size_t)t * h->k + q;
                int mine = h->idx[iq] >= 0 && h->idx[iq] / h->epr == r;
                sl[q] = (coll_slot_t){mine ? h->idx[iq] : -1, h->eidx[iq], h->didx[iq], h->w[iq]};
            }
            memcpy(u + hdr + (size_t)h->k * sizeof *sl, src + (size_t)t * rb, rb);
            coll_account(ctx, acct, r, rb, hdr + h->k * sizeof *sl, 0);
        }
}

/* Places every received record's row at its expert-major positions,
 * checking each field from the peer before using it. */
static epc_status_t unpack(epc_ctx_t *ctx, epc_handle_t *h, const char *rbuf, const int *rcnt,
                           const int *rdsp, size_t unit)
{
    size_t rb = h->row_bytes, hdr = sizeof(coll_rec_t);
    int me = ctx->comm.rank;
    for (int s = 0; s < h->R; s++)
        for (int i = 0; i < rcnt[s]; i++) {
            const char *u = rbuf + ((size_t)rdsp[s] + i) * unit;
            const coll_slot_t *sl = (const coll_slot_t *)(const void *)(u + hdr);
            int t = ((const coll_rec_t *)(const void *)u)->token;
            for (int q = 0; q < h->k; q++) {
                int e = sl[q].expert, ok = coll_wire_slot(&h->dims, coll_C(h, s), &sl[q], -1, me);
                if (ok == 0)
                    continue;
                if (ok < 0 || sl[q].didx != i || t < 0 || t >= h->Ts[s])
                    return epc_error_obj(&ctx->hdr, EPC_ERR_INTERNAL,
                                         "flat dispatch: corrupt record %d from rank %d", i, s);
                coll_place(h->rows, &h->meta, rb,
                           (int)coll_wire_row(&h->dims, h->begin, h->prefix, s, e, sl[q].eidx),
                           u + hdr + (size_t)h->k * sizeof *sl, s, t, e - me * h->epr,
                           sl[q].weight);
            }
        }
    return EPC_OK;
}

/* After the exchange: every record's row at its place, then padding. */
static epc_status_t step_unpack(epc_request_t *r)
{
    flat_t *x = r->algo;
    epc_handle_t *h = r->h;
    size_t rb = h->row_bytes;
    char *out;
    int n = h->num_rows[r->ctx->comm.rank];
    epc_status_t st = test_alltoallv(r, x, "flat dispatch");
    if (st == EPC_OK)
        st = epc_ctx_scratch(r->ctx, r->lane->index, EPC_SCRATCH_OUT,
                             (size_t)n * rb + coll_meta_bytes(n) + 1, &out);
    if (st != EPC_OK)
        return st;
    h->rows = out;
    coll_meta_place(out, (size_t)n * rb, n, &h->meta);
    if ((st = unpack(r->ctx, h, x->rbuf, x->rcnt, x->rdsp, x->unit)) == EPC_OK)
        coll_fill_padding(h, r->ctx->comm.rank, rb);
    coll_stream_fence(); /* the streamed rows, before any thread reads them */
    r->step = NULL;
    return st;
}

epc_status_t coll_flat_dispatch_begin(epc_request_t *r)
{
    epc_ctx_t *ctx = r->ctx;
    epc_handle_t *h = r->h;
    flat_t *x = flat_new(r);
    epc_status_t st = x != NULL ? counts(ctx, h, x)
                                : epc_error_obj(&ctx->hdr, EPC_ERR_NO_MEMORY, "flat dispatch");
    epc_fault_here("dispatch"); /* test hook: after the counts, before rows */
    if (st != EPC_OK)
        return st;
    x->unit = coll_unit(h->row_bytes, h->k);
    st = coll_req_scratch(r, EPC_SCRATCH_SEND,
                          (x->sdsp[h->R - 1] + x->scnt[h->R - 1]) * x->unit + 1, &x->sbuf);
    if (st == EPC_OK)
        st = coll_req_scratch(r, EPC_SCRATCH_RECV,
                              (x->rdsp[h->R - 1] + x->rcnt[h->R - 1]) * x->unit + 1, &x->rbuf);
    if (st != EPC_OK)
        return st;
    pack(ctx, r->src, h, x->sbuf, x->sdsp, x->unit, &r->bytes);
    r->step = step_unpack;
    return post_alltoallv(r, x, x->sbuf, x->scnt, x->sdsp, x->rbuf, x->rcnt, x->rdsp);
}

/* Combine's counts in output rows: to each source the rows received from
 * it, from each rank the rows sent there, with displacements; and
 * x->eoff[e], where this rank's rows of expert slot e start in the
 * receive buffer (rank e's block, its experts ascending, eidx order). */
static epc_status_t row_counts(epc_ctx_t *ctx, const epc_handle_t *h, flat_t *x)
{
    int R = h->R, me = ctx->comm.rank;
    const int *mine = coll_C(h, me);
    x->counts = malloc(((size_t)4 * R + h->E) * sizeof *x->counts);
    if (x->counts == NULL)
        return epc_error_obj(&ctx->hdr, EPC_ERR_NO_MEMORY, "flat combine: counts of %d ranks", R);
    x->scnt = x->counts, x->sdsp = x->counts + R;
    x->rcnt = x->counts + 2 * R, x->rdsp = x->counts + 3 * R;
    x->eoff = x->counts + 4 * R;
    for (int r = 0; r < R; r++) {
        x->scnt[r] = x->rcnt[r] = 0;
        for (int e = 0; e < h->epr; e++) {
            x->scnt[r] += coll_C(h, r)[me * h->epr + e];
            x->rcnt[r] += mine[r * h->epr + e];
        }
        x->sdsp[r] = r ? x->sdsp[r - 1] + x->scnt[r - 1] : 0;
        x->rdsp[r] = r ? x->rdsp[r - 1] + x->rcnt[r - 1] : 0;
        for (int e = r * h->epr, at = x->rdsp[r]; e < (r + 1) * h->epr; at += mine[e++])
            x->eoff[e] = at;
    }
    return EPC_OK;
}

/* Each source's rows, as they lie (a block per local expert, ascending),
 * copied back to back into sbuf for the exchange. */
static void pack_outputs(epc_ctx_t *ctx, const epc_handle_t *h, const flat_t *x, const char *out,
                         char *sbuf)
{
    int me = ctx->comm.rank;
    for (int s = 0; s < h->R; s++) {
        char *to = sbuf + (size_t)x->sdsp[s] * x->unit;
        for (int e = me * h->epr; e < (me + 1) * h->epr; e++) {
            size_t n = (size_t)coll_C(h, s)[e] * x->unit;
            long at = coll_wire_row(&h->dims, h->begin, h->prefix, s, e, 0);
            memcpy(to, out + (size_t)at * x->unit, n);
            to += n;
        }
    }
}

/* Token t's terms into tt: its groups and every row they sum, where it
 * arrived. */
static void token_terms(epc_request_t *r, const flat_t *x, int t, coll_terms_t *tt)
{
    const epc_handle_t *h = r->h;
    tt->groups = coll_sum_groups(r->ctx, h, t, r->cargs.order == EPC_ORDER_NODES, tt->js, tt->gnode,
                                 tt->gend);
    tt->n = tt->groups > 0 ? tt->gend[tt->groups - 1] : 0;
    for (int i = 0; i < tt->n; i++) {
        int j = tt->js[i];
        tt->rows[i] = x->rbuf + (x->eoff[h->idx[j]] + h->eidx[j]) * x->unit;
        tt->w[i] = r->cargs.unweighted ? 1.0f : h->w[j];
    }
}

/* y[t] from the rows its experts sent back, in combine's order
 * (coll_sum_groups): each group summed here as hier's summing rank does
 * (coll_sum_rows), the groups added as hier's source adds them (BF16
 * wire: each rounded, as hier's node sums travel): the same arithmetic,
 * the same bits.  Each token's terms are found one token ahead: while a
 * group is summed the next group's rows, or the next token's first
 * group's, are prefetched. */
static void finish(epc_request_t *r, flat_t *x)
{
    epc_ctx_t *ctx = r->ctx;
    const epc_handle_t *h = r->h;
    int H = ctx->hidden, bf16 = r->cargs.wire == EPC_WIRE_BF16;
    float *acc = x->tmp, *ns = x->tmp + H;
    coll_terms_t tt[2];
    coll_terms_bind(tt, x->js, h->k);
    if (h->T > 0)
        token_terms(r, x, 0, &tt[0]);
    for (int t = 0; t < h->T; t++) {
        const coll_terms_t *cur = &tt[t & 1];
        coll_terms_t *next = &tt[!(t & 1)];
        char *y = (char *)r->cargs.y + (size_t)t * coll_row_bytes(ctx);
        next->groups = 0;
        if (t + 1 < h->T)
            token_terms(r, x, t + 1, next);
        if (!bf16 && cur->groups == 1) { /* y is this sum */
            coll_sum_rows_store(ctx, 0, y, acc, cur->rows, cur->w, cur->gend[0], next->rows,
                                next->groups > 0 ? next->gend[0] : 0);
            continue;
        }
        if (bf16 || cur->groups == 0)
            memset(acc, 0, (size_t)H * sizeof *acc);
        for (int q = 0, lo = 0; q < cur->groups; lo = cur->gend[q++]) {
            float *sum = q == 0 && !bf16 ? acc : ns;
            int last = q + 1 == cur->groups;
            coll_sum_rows(ctx, sum, cur->rows + lo, cur->w + lo, cur->gend[q] - lo,
                          last ? next->rows : cur->rows + cur->gend[q],
                          !last              ? cur->gend[q + 1] - cur->gend[q]
                          : next->groups > 0 ? next->gend[0]
                                             : 0);
            if (sum != acc)
                (bf16 ? coll_add_row_bf16 : coll_add_row)(acc, ns, H);
        }
        coll_store_row(ctx, acc, y);
    }
}

static epc_status_t step_finish(epc_request_t *r)
{
    flat_t *x = r->algo;
    epc_status_t st = test_alltoallv(r, x, "flat combine");
    if (st != EPC_OK)
        return st;
    finish(r, x);
    r->step = NULL;
    return EPC_OK;
}

/* Flat combine: every expert output row goes back to its source as it is
 * (the exact reverse of the dispatch, in the context's dtype), and the
 * source sums them in combine's order.  The wire option only rounds the
 * node groups' sums here, as hier's travel. */
epc_status_t coll_flat_combine_begin(epc_request_t *r)
{
    epc_ctx_t *ctx = r->ctx;
    epc_handle_t *h = r->h;
    flat_t *x = flat_new(r);
    char *sbuf;
    epc_status_t st =
        x != NULL ? EPC_OK : epc_error_obj(&ctx->hdr, EPC_ERR_NO_MEMORY, "flat combine");
    if (st != EPC_OK)
        return st;
    x->unit = coll_row_bytes(ctx);
    x->tmp = malloc(2 * (size_t)ctx->hidden * sizeof(float) + 1);
    x->js = malloc((size_t)6 * (h->k + 1) * sizeof *x->js);
    if (x->tmp == NULL || x->js == NULL)
        return epc_error_obj(&ctx->hdr, EPC_ERR_NO_MEMORY, "flat combine");
    if ((st = row_counts(ctx, h, x)) != EPC_OK)
        return st;
    st = coll_req_scratch(r, EPC_SCRATCH_PARTIAL,
                          (size_t)(x->sdsp[h->R - 1] + x->scnt[h->R - 1]) * x->unit + 1, &sbuf);
    if (st == EPC_OK)
        st = coll_req_scratch(r, EPC_SCRATCH_RECV,
                              (size_t)(x->rdsp[h->R - 1] + x->rcnt[h->R - 1]) * x->unit + 1,
                              &x->rbuf);
    if (st != EPC_OK)
        return st;
    pack_outputs(ctx, h, x, r->cargs.expert_out, sbuf);
    for (int s = 0; s < h->R; s++)
        coll_account(ctx, &r->bytes, s, (uint64_t)x->scnt[s] * x->unit, 0, 0);
    r->step = step_finish;
    return post_alltoallv(r, x, sbuf, x->scnt, x->sdsp, x->rbuf, x->rcnt, x->rdsp);
}
