/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * scalars.c - the combine's scalar channel: each received row's scalar
 * goes back to the token slot it came from, [T x k] at the source.  One
 * exchange of floats between every pair of ranks (alltoallv through the
 * combine lane's door), independent of the algorithm: no arithmetic, so
 * hier and flat give identical results.
 *
 * Both sides know the order without sending it.  Receiver d holds source
 * s's rows of its local expert g at begin[g local] + prefix[s][g], C[s][g]
 * of them in token order; it sends them to s expert by expert.  Source s
 * finds slot (t, j) with expert g at first[g] + eidx[t][j] of what it
 * received, first[g] being where g's scalars start: d's segment plus
 * C[s][g'] for d's experts g' < g.
 */
#include <stdlib.h>
#include <string.h>

#include "request.h"

typedef struct coll_scalars {
    float *send, *recv;
    int *scnt, *sdsp, *rcnt, *rdsp; /* [R] each, in floats */
    int *first;                     /* [E]: where expert g's scalars start in recv */
    epc_lane_coll_t coll;
} coll_scalars_t;

void coll_scalars_free(epc_request_t *r)
{
    coll_scalars_t *x = r->scalars;
    if (x == NULL)
        return;
    epc_lane_coll_free(&x->coll, (void *[]){x->send, x->recv, x->scnt}, 3);
    free(x);
    r->scalars = NULL;
}

/* Counts and displacements: to source s the rows it sent here, from rank
 * d the rows this rank sent there (whose experts' starts fill first[]). */
static void counts(const epc_handle_t *h, int me, coll_scalars_t *x)
{
    const int *mine = coll_C(h, me);
    for (int p = 0; p < h->R; p++) {
        x->sdsp[p] = p == 0 ? 0 : x->sdsp[p - 1] + x->scnt[p - 1];
        x->rdsp[p] = p == 0 ? 0 : x->rdsp[p - 1] + x->rcnt[p - 1];
        x->scnt[p] = x->rcnt[p] = 0;
        for (int e = 0; e < h->epr; e++) {
            int g = p * h->epr + e;
            x->first[g] = x->rdsp[p] + x->rcnt[p];
            x->scnt[p] += coll_C(h, p)[me * h->epr + e];
            x->rcnt[p] += mine[g];
        }
    }
}

/* Each source's rows' scalars, expert by expert, into its segment. */
static void pack(const epc_handle_t *h, int me, const float *row_scalars, coll_scalars_t *x)
{
    const int *begin = h->begin + (size_t)me * (h->epr + 1);
    for (int s = 0; s < h->R; s++) {
        float *out = x->send + x->sdsp[s];
        for (int e = 0; e < h->epr; e++) {
            int g = me * h->epr + e, n = coll_C(h, s)[g];
            memcpy(out, row_scalars + begin[e] + h->prefix[(size_t)s * h->E + g],
                   (size_t)n * sizeof *out);
            out += n;
        }
    }
}

/* The last stage: the exchange done, each slot's scalar from its rank's
 * segment. */
static epc_status_t step_scalars_done(epc_request_t *r)
{
    const epc_handle_t *h = r->h;
    coll_scalars_t *x = r->scalars;
    epc_status_t st = coll_req_test_coll(r, &x->coll, "MPI_Ialltoallv(combine scalars)");
    if (st != EPC_OK)
        return st;
    for (size_t i = 0; i < (size_t)h->T * h->k; i++) {
        int g = h->idx[i];
        r->cargs.topk_scalars[i] = g < 0 ? 0.0f : x->recv[x->first[g] + h->eidx[i]];
    }
    r->step = NULL;
    return EPC_OK;
}

epc_status_t coll_scalars_post(epc_request_t *r)
{
    epc_ctx_t *ctx = r->ctx;
    const epc_handle_t *h = r->h;
    int me = ctx->comm.rank, R = h->R;
    size_t nsend = 0, nrecv = 0;
    coll_scalars_t *x = calloc(1, sizeof *x);
    if (x == NULL || (x->scnt = malloc((4 * (size_t)R + h->E) * sizeof(int))) == NULL) {
        free(x);
        return epc_error_obj(&ctx->hdr, EPC_ERR_NO_MEMORY, "epc_combine: scalar channel");
    }
    r->scalars = x;
    epc_lane_coll_init(&x->coll);
    x->sdsp = x->scnt + R, x->rcnt = x->scnt + 2 * R, x->rdsp = x->scnt + 3 * R;
    x->first = x->scnt + 4 * R;
    counts(h, me, x);
    nsend = (size_t)x->sdsp[R - 1] + x->scnt[R - 1];
    nrecv = (size_t)x->rdsp[R - 1] + x->rcnt[R - 1];
    x->send = malloc((nsend + 1) * sizeof *x->send);
    x->recv = malloc((nrecv + 1) * sizeof *x->recv);
    if (x->send == NULL || x->recv == NULL)
        return epc_error_obj(&ctx->hdr, EPC_ERR_NO_MEMORY, "epc_combine: scalar channel");
    if (nsend > 0) /* row_scalars may be NULL without rows */
        pack(h, me, r->cargs.row_scalars, x);
    for (int p = 0; p < R; p++)
        if (p != me)
            coll_account(ctx, &r->bytes, p, 0, (uint64_t)x->scnt[p] * sizeof(float), 0);
    r->after = step_scalars_done;
    return epc_lane_alltoallv_post(coll_req_lane(r), x->send, x->scnt, x->sdsp, x->recv, x->rcnt,
                                   x->rdsp, sizeof(float), &x->coll,
                                   "MPI_Ialltoallv(combine scalars)");
}
