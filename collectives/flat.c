/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * flat.c - the baseline users write by hand today: one deduplicated record
 * per (token, destination rank) in a send buffer, MPI_Alltoallv, then an
 * unpack into the expert-major layout; combine sends fp32 partial sums back
 * the same way.  Same API and same results as hier, for comparison.
 */
#include <stdlib.h>
#include <string.h>

#include "coll.h"
#include "mpi_util.h"

/* Runs MPI_Ialltoallv in units of `unit` bytes, bounded by the deadline. */
static epc_status_t alltoallv(epc_ctx_t *ctx, const void *sbuf, const int *scnt, const int *sdsp,
                              void *rbuf, const int *rcnt, const int *rdsp, size_t unit,
                              const char *phase)
{
    MPI_Datatype t;
    MPI_Request req;
    int rc, pending;
    epc_status_t st;
    MPI_Type_contiguous((int)unit, MPI_BYTE, &t);
    MPI_Type_commit(&t);
    rc = MPI_Ialltoallv(sbuf, scnt, sdsp, t, rbuf, rcnt, rdsp, t, ctx->comm, &req);
    st = rc != MPI_SUCCESS ? epc_mpi_error(&ctx->hdr, rc, "MPI_Ialltoallv")
                           : epc_mpi_wait_all(&req, 1, epc_ctx_deadline(ctx), &pending, phase);
    if (st == EPC_ERR_TIMEOUT)
        st = epc_error_obj(&ctx->hdr, EPC_ERR_TIMEOUT, "%s: MPI_Ialltoallv timed out", phase);
    else if (st != EPC_OK && st != EPC_ERR_TRANSPORT) /* a peer aborted */
        st = epc_error_context(&ctx->hdr, st, "%s: MPI_Ialltoallv", phase);
    MPI_Type_free(&t);
    return st;
}

/* Counts and displacements (in units) of what this rank sends/receives. */
static epc_status_t counts(epc_ctx_t *ctx, const epc_handle_t *h, int **buf, int **scnt,
                           int **sdsp, int **rcnt, int **rdsp)
{
    int R = h->R, me = ctx->rank;
    *buf = malloc((size_t)4 * R * sizeof **buf);
    if (*buf == NULL)
        return epc_error_obj(&ctx->hdr, EPC_ERR_NO_MEMORY, "flat: counts of %d ranks", R);
    *scnt = *buf, *sdsp = *buf + R, *rcnt = *buf + 2 * R, *rdsp = *buf + 3 * R;
    for (int r = 0; r < R; r++) {
        (*scnt)[r] = coll_tpr(h, me)[r];
        (*rcnt)[r] = coll_tpr(h, r)[me];
        (*sdsp)[r] = r ? (*sdsp)[r - 1] + (*scnt)[r - 1] : 0;
        (*rdsp)[r] = r ? (*rdsp)[r - 1] + (*rcnt)[r - 1] : 0;
    }
    return EPC_OK;
}

/* One record per (token, destination rank), at the rank's didx. */
static void pack(epc_ctx_t *ctx, const epc_dispatch_args_t *a, epc_handle_t *h, char *sbuf,
                 const int *sdsp, size_t unit)
{
    size_t rb = coll_row_bytes(ctx), hdr = sizeof(coll_rec_t);
    for (int t = 0; t < h->T; t++)
        for (int j = 0; j < h->k; j++) {
            size_t i = (size_t)t * h->k + j;
            int r = h->idx[i] < 0 ? -1 : h->idx[i] / h->epr, dup = 0;
            char *u;
            coll_slot_t *sl;
            for (int q = 0; q < j && r >= 0; q++) /* one record per rank */
                dup |= h->idx[(size_t)t * h->k + q] >= 0 && h->idx[(size_t)t * h->k + q] / h->epr == r;
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
            memcpy(u + hdr + (size_t)h->k * sizeof *sl, (const char *)a->x + (size_t)t * rb, rb);
            coll_account(ctx, &ctx->cstats.last_dispatch, r, rb, hdr + h->k * sizeof *sl, 1);
        }
}

/* Places every received record's row at its expert-major positions,
 * checking each field from the peer before using it. */
static epc_status_t unpack(epc_ctx_t *ctx, epc_handle_t *h, const char *rbuf, const int *rcnt,
                           const int *rdsp, size_t unit)
{
    size_t rb = coll_row_bytes(ctx), hdr = sizeof(coll_rec_t);
    int me = ctx->rank, pb = 0;
    for (int s = 0; s < h->R; pb += rcnt[s], s++)
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
                           sl[q].weight, pb + i);
            }
        }
    return EPC_OK;
}

epc_status_t coll_flat_dispatch(epc_ctx_t *ctx, const epc_dispatch_args_t *a, epc_handle_t *h)
{
    size_t rb = coll_row_bytes(ctx), unit = coll_unit(rb, h->k);
    int *buf = NULL, *scnt, *sdsp, *rcnt, *rdsp, n = h->num_rows[ctx->rank];
    char *sbuf, *rbuf, *out;
    epc_status_t st = counts(ctx, h, &buf, &scnt, &sdsp, &rcnt, &rdsp);
    if (st == EPC_OK)
        st = epc_ctx_scratch(ctx, EPC_SCRATCH_SEND, (sdsp[h->R - 1] + scnt[h->R - 1]) * unit + 1, &sbuf);
    if (st == EPC_OK)
        st = epc_ctx_scratch(ctx, EPC_SCRATCH_RECV, (rdsp[h->R - 1] + rcnt[h->R - 1]) * unit + 1, &rbuf);
    if (st == EPC_OK)
        st = epc_ctx_scratch(ctx, EPC_SCRATCH_OUT, (size_t)n * rb + coll_meta_bytes(n) + 1, &out);
    if (st == EPC_OK) {
        pack(ctx, a, h, sbuf, sdsp, unit);
        st = alltoallv(ctx, sbuf, scnt, sdsp, rbuf, rcnt, rdsp, unit, "flat dispatch");
    }
    if (st == EPC_OK) {
        h->rows = out;
        coll_meta_place(out, (size_t)n * rb, n, &h->meta);
        st = unpack(ctx, h, rbuf, rcnt, rdsp, unit);
    }
    if (st == EPC_OK)
        coll_fill_padding(h, ctx->rank, rb);
    free(buf);
    return st;
}

/* y[t] = sum over nodes (ascending) of the sum over their ranks (local
 * order) of the partials received for t, in fp32. */
static void finish(epc_ctx_t *ctx, epc_handle_t *h, const float *recv, const int *rdsp, void *y,
                   float *acc, float *ns)
{
    int H = ctx->hidden, dest[256], didx[256];
    size_t rb = coll_row_bytes(ctx);
    for (int t = 0; t < h->T; t++) {
        int n = coll_token_dests(ctx, h, t, dest, didx);
        memset(acc, 0, (size_t)H * sizeof *acc);
        for (int q = 0; q < n;) {
            int node = ctx->topo->node_of[dest[q]];
            memset(ns, 0, (size_t)H * sizeof *ns);
            for (; q < n && ctx->topo->node_of[dest[q]] == node; q++)
                coll_add_row(ns, recv + ((size_t)rdsp[dest[q]] + didx[q]) * H, H);
            coll_add_row(acc, ns, H);
        }
        coll_store_row(ctx, acc, (char *)y + (size_t)t * rb);
    }
}

epc_status_t coll_flat_combine(epc_ctx_t *ctx, epc_handle_t *h, const void *out, void *y,
                               int unweighted)
{
    size_t unit = (size_t)ctx->hidden * sizeof(float);
    int *buf = NULL, *scnt, *sdsp, *rcnt, *rdsp, P = coll_num_slots(h, ctx->rank);
    float *partial = NULL, *tmp = malloc(2 * unit + 1), **slot = malloc((P + 1) * sizeof *slot);
    char *rbuf, *pbuf;
    epc_status_t st = tmp && slot ? epc_ctx_scratch(ctx, EPC_SCRATCH_PARTIAL, P * unit + 1, &pbuf)
                                  : epc_error_obj(&ctx->hdr, EPC_ERR_NO_MEMORY, "flat combine");
    if (st == EPC_OK) {
        partial = (float *)(void *)pbuf;
        for (int p = 0; p < P; p++)
            slot[p] = partial + (size_t)p * ctx->hidden;
        st = coll_partials(ctx, h, out, unweighted, slot, -1, NULL);
    }
    /* Back the way the rows came: to each source its slots, in order. */
    if (st == EPC_OK)
        st = counts(ctx, h, &buf, &rcnt, &rdsp, &scnt, &sdsp);
    if (st == EPC_OK)
        st = epc_ctx_scratch(ctx, EPC_SCRATCH_RECV, (rdsp[h->R - 1] + rcnt[h->R - 1]) * unit + 1, &rbuf);
    if (st == EPC_OK) {
        for (int s = 0; s < h->R; s++)
            coll_account(ctx, &ctx->cstats.last_combine, s, (uint64_t)scnt[s] * unit, 0, 1);
        st = alltoallv(ctx, partial, scnt, sdsp, rbuf, rcnt, rdsp, unit, "flat combine");
    }
    if (st == EPC_OK)
        finish(ctx, h, (const float *)(const void *)rbuf, rdsp, y, tmp, tmp + ctx->hidden);
    free(buf);
    free(tmp);
    free(slot);
    return st;
}
