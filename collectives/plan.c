/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * plan.c - the first step of every dispatch: validate the arguments, count
 * locally, exchange the counts (and the verdicts) with every rank, derive
 * every receiver's layout.  Validation travels with the counts, so when one
 * rank's input is bad every rank knows it before any row moves.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fault.h"
#include "request.h"
#include "router.h"

enum { HDR_STATUS, HDR_T, HDR_K, HDR_ALIGN, HDR_ALGO, HDR_FP8, HDR_INTS };
#define REASON_INTS (EPC_REASON_LEN / 4)

#define BADARG(...) epc_error_obj(&ctx->hdr, EPC_ERR_INVALID_ARG, "epc_dispatch: " __VA_ARGS__)

/* Local checks of the arguments (loaded by the start: of a known size);
 * raises the first problem. */
static epc_status_t validate(epc_ctx_t *ctx, const epc_dispatch_args_t *a, epc_algo_t algo)
{
    coll_tokens_t t = {a->num_tokens, a->topk,     a->x,          a->topk_idx,
                       a->payload,    a->x_scales, "epc_dispatch"};
    epc_status_t st =
        coll_check_tokens(ctx, &t, ctx->max_tokens, "the context's max_tokens_per_rank");
    if (st != EPC_OK)
        return st;
    if (a->expert_alignment < 0 || a->expert_alignment > 65536)
        return BADARG("args->expert_alignment = %d, must be in [0, 65536]", a->expert_alignment);
    if (algo == EPC_ALGO_HIER && ctx->comm.topo->uniform_rpn == 0)
        return epc_error_obj(&ctx->hdr, EPC_ERR_UNSUPPORTED,
                             "epc_dispatch: algo hier needs nodes of equal size (these differ); "
                             "use EPC_ALGO=flat");
    return EPC_OK;
}

static uint64_t hash_idx(const int32_t *idx, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint32_t)idx[i]) * 1099511628211ull;
    return h ^ n;
}

/* Copies the token choices and counts this rank's part: tokens per expert,
 * node and rank, and each slot's eidx/didx.  rec gets C | tpn | tpr. */
static epc_status_t count_local(epc_ctx_t *ctx, const epc_dispatch_args_t *a, epc_handle_t *h,
                                int *rec)
{
    size_t n = (size_t)h->T * h->k;
    int *cE = rec, *cN = rec + h->E, *cR = rec + h->E + h->N;
    int *seen = malloc((size_t)(h->R + h->N + 1) * sizeof *seen), *seen_node;
    h->idx = malloc((n + 1) * sizeof *h->idx);
    h->w = malloc((n + 1) * sizeof *h->w);
    h->eidx = malloc((n + 1) * sizeof *h->eidx);
    h->didx = malloc((n + 1) * sizeof *h->didx);
    if (!seen || !h->idx || !h->w || !h->eidx || !h->didx) {
        free(seen);
        return epc_error_obj(&ctx->hdr, EPC_ERR_NO_MEMORY, "epc_dispatch: %zu token slots", n);
    }
    if (n) /* a rank with no tokens may pass topk_idx NULL */
        memcpy(h->idx, a->topk_idx, n * sizeof *h->idx);
    for (size_t i = 0; i < n; i++)
        h->w[i] = a->topk_weights ? a->topk_weights[i] : 1.0f;
    h->idx_hash = hash_idx(h->idx, n);
    memset(seen, 0xff, (size_t)(h->R + h->N + 1) * sizeof *seen);
    seen_node = seen + h->R;
    for (int t = 0; t < h->T; t++) {
        for (int j = 0; j < h->k; j++) {
            size_t i = (size_t)t * h->k + j;
            int e = h->idx[i], r, nd;
            h->eidx[i] = h->didx[i] = -1;
            if (e < 0)
                continue;
            r = e / h->epr;
            nd = ctx->comm.topo->node_of[r];
            h->eidx[i] = cE[e]++;
            if (seen[r] != t) { /* first slot of this token on rank r */
                seen[r] = t;
                cR[r]++;
            }
            h->didx[i] = cR[r] - 1;
            if (seen_node[nd] != t) {
                seen_node[nd] = t;
                cN[nd]++;
            }
        }
    }
    free(seen);
    return EPC_OK;
}

/* Counts from peers are checked before they size anything (wire.c). */
static epc_status_t check_counts(epc_ctx_t *ctx, const epc_handle_t *h, const int *rec, int s,
                                 int rec_ints)
{
    const int *hdr = rec + (size_t)s * rec_ints;
    char why[EPC_REASON_LEN];
    if (coll_wire_counts(&h->dims, s, hdr[HDR_T], hdr + HDR_INTS, why, sizeof why) != 0)
        return epc_error_obj(&ctx->hdr, EPC_ERR_INTERNAL, "epc_dispatch: %s", why);
    return EPC_OK;
}

/* The verdict of the exchange: a rank whose own input failed keeps its
 * status and text; every other rank gets the lowest failing rank's text.
 * h is NULL when this rank's own validation failed (nothing is read from
 * it then); per = E + N + R, the counts in each record. */
static epc_status_t verdict(epc_ctx_t *ctx, const epc_handle_t *h, const int *rec, int rec_ints,
                            int per, epc_status_t mine)
{
    const int *me = rec + (size_t)ctx->comm.rank * rec_ints;
    if (mine != EPC_OK) {
        epc_error_sync(&ctx->hdr);
        return mine;
    }
    for (int s = 0; s < ctx->comm.nranks; s++) {
        const int *hdr = rec + (size_t)s * rec_ints;
        char reason[EPC_REASON_LEN];
        if (hdr[HDR_STATUS] >= 0)
            continue;
        memcpy(reason, hdr + HDR_INTS + per, sizeof reason);
        reason[sizeof reason - 1] = '\0';
        return epc_error_obj(&ctx->hdr, EPC_ERR_PEER_FAILED, "epc_dispatch: rank %d: %s", s,
                             reason);
    }
    for (int s = 0; s < ctx->comm.nranks; s++) {
        const int *hdr = rec + (size_t)s * rec_ints;
        if (hdr[HDR_K] != me[HDR_K] || hdr[HDR_ALIGN] != me[HDR_ALIGN] ||
            hdr[HDR_ALGO] != me[HDR_ALGO] || hdr[HDR_FP8] != me[HDR_FP8])
            return epc_error_obj(&ctx->hdr, EPC_ERR_MISMATCH,
                                 "epc_dispatch: rank %d passed topk/expert_alignment/algo/fp8 "
                                 "payload %d/%d/%d/%d, this rank %d/%d/%d/%d",
                                 s, hdr[HDR_K], hdr[HDR_ALIGN], hdr[HDR_ALGO], hdr[HDR_FP8],
                                 me[HDR_K], me[HDR_ALIGN], me[HDR_ALGO], me[HDR_FP8]);
    }
    for (int s = 0; s < ctx->comm.nranks; s++) {
        epc_status_t st = check_counts(ctx, h, rec, s, rec_ints);
        if (st != EPC_OK)
            return st;
    }
    return EPC_OK;
}

/* Every receiver's expert groups (padded) and the per-source prefixes:
 * the handle's tables, built once. */
static epc_status_t layout(epc_ctx_t *ctx, epc_handle_t *h)
{
    char why[EPC_REASON_LEN];
    h->num_rows = calloc((size_t)h->R, sizeof *h->num_rows);
    h->begin = calloc((size_t)h->R * (h->epr + 1), sizeof *h->begin);
    h->prefix = calloc((size_t)h->R * h->E, sizeof *h->prefix);
    h->expert_count = calloc((size_t)h->epr, sizeof *h->expert_count);
    if (!h->num_rows || !h->begin || !h->prefix || !h->expert_count)
        return epc_error_obj(&ctx->hdr, EPC_ERR_NO_MEMORY, "epc_dispatch: layout of %d ranks",
                             h->R);
    if (coll_wire_layout(&h->dims, h->all, ctx->comm.rank, h->prefix, h->begin, h->num_rows,
                         h->expert_count, why, sizeof why) != 0)
        return epc_error_obj(&ctx->hdr, EPC_ERR_CAPACITY, "epc_dispatch: %s", why);
    return EPC_OK;
}

/* The rows this rank sends: x itself, or its FP8 payload in the lane's
 * scratch, cast once per token here (or x and x_scales packed). */
static epc_status_t source_rows(epc_request_t *r)
{
    const epc_dispatch_args_t *a = &r->args;
    const epc_handle_t *h = r->h;
    size_t rb = h->row_bytes, H = (size_t)r->ctx->hidden, sb = rb - H;
    char *buf;
    epc_status_t st;
    r->src = a->x;
    if (!h->fp8 || h->T == 0)
        return EPC_OK;
    if ((st = coll_req_scratch(r, EPC_SCRATCH_PAYLOAD, (size_t)h->T * rb, &buf)) != EPC_OK)
        return st;
    if (a->payload == EPC_PAYLOAD_FP8_GIVEN) {
        for (size_t t = 0; t < (size_t)h->T; t++) {
            memcpy(buf + t * rb, (const char *)a->x + t * H, H);
            memcpy(buf + t * rb + H, a->x_scales + t * (sb / sizeof(float)), sb);
        }
    } else {
        coll_fp8_quantize(a->x, r->ctx->dtype, h->T, (int)H, a->payload == EPC_PAYLOAD_FP8_UE8M0,
                          (uint8_t *)buf, rb, (float *)(void *)(buf + H), rb);
    }
    r->src = buf;
    return EPC_OK;
}

/* The step after the counts: the algorithm's schedule. */
static epc_status_t to_algorithm(epc_request_t *r)
{
    epc_status_t st = source_rows(r);
    if (st != EPC_OK)
        return st;
    if (r->cached) /* its rows are being rewritten: no combine until it completes */
        r->h->lane = -1;
    r->step = r->h->algo == EPC_ALGO_HIER ? coll_hier_dispatch_begin : coll_flat_dispatch_begin;
    return EPC_OK;
}

/* Fills this rank's count record: verdict, shape, counts, and the reason
 * of a failure (the handle h is NULL then). */
static void fill_record(epc_request_t *r, epc_status_t st, int per)
{
    int *mine = r->rec_mine;
    const epc_dispatch_args_t *a = &r->args;
    mine[HDR_STATUS] = st;
    mine[HDR_T] = st == EPC_OK ? a->num_tokens : 0;
    mine[HDR_K] = st == EPC_OK ? a->topk : 0;
    mine[HDR_ALIGN] = st == EPC_OK ? r->h->align : 0;
    mine[HDR_ALGO] = r->h != NULL ? (int)r->h->algo : 0;
    mine[HDR_FP8] = r->h != NULL ? r->h->fp8 : 0;
    if (st != EPC_OK)
        snprintf((char *)(mine + HDR_INTS + per), EPC_REASON_LEN, "%s", epc_last_error(NULL));
    if (st == EPC_OK && epc_fault_here("counts")) /* test hook */
        mine[HDR_INTS] = -7;                      /* peers must reject this */
}

/* Waits for every rank's count record, then judges them and derives the
 * layouts. */
static epc_status_t step_counts(epc_request_t *r)
{
    epc_ctx_t *ctx = r->ctx;
    epc_handle_t *h = r->h;
    int per = ctx->num_experts + ctx->comm.topo->nnodes + ctx->comm.nranks;
    int rec_ints = HDR_INTS + per + REASON_INTS;
    epc_status_t st = coll_req_test_coll(r, &r->xcoll, "dispatch counts");
    if (st == EPC_IN_PROGRESS || st == EPC_ERR_TRANSPORT)
        return st;
    if (st == EPC_ERR_TIMEOUT)
        return epc_error_obj(&ctx->hdr, EPC_ERR_TIMEOUT,
                             "epc_dispatch: timed out exchanging counts (a rank did not call "
                             "epc_dispatch)");
    if (st != EPC_OK) /* a peer aborted */
        return epc_error_context(&ctx->hdr, st, "epc_dispatch: exchanging counts");
    if ((st = verdict(ctx, h, r->rec_all, rec_ints, per, r->local)) != EPC_OK)
        return st;
    h->all = malloc((size_t)per * ctx->comm.nranks * sizeof *h->all);
    h->Ts = malloc((size_t)ctx->comm.nranks * sizeof *h->Ts);
    if (h->all == NULL || h->Ts == NULL)
        return epc_error_obj(&ctx->hdr, EPC_ERR_NO_MEMORY, "epc_dispatch: counts of all ranks");
    for (int s = 0; s < ctx->comm.nranks; s++) {
        memcpy(h->all + (size_t)s * per, r->rec_all + (size_t)s * rec_ints + HDR_INTS,
               per * sizeof(int));
        h->Ts[s] = r->rec_all[(size_t)s * rec_ints + HDR_T];
    }
    if ((st = layout(ctx, h)) != EPC_OK)
        return st;
    return to_algorithm(r);
}

/* A new plan: validate (unless r->local already failed), count locally,
 * post the exchange of every rank's record.  A rank whose own input
 * failed still posts its record (carrying the failure), so no peer waits
 * for it. */
static epc_status_t plan_post(epc_request_t *r)
{
    epc_ctx_t *ctx = r->ctx;
    epc_status_t st = r->local;
    int per = ctx->num_experts + ctx->comm.topo->nnodes + ctx->comm.nranks;
    int rec_ints = HDR_INTS + per + REASON_INTS;
    r->rec_mine = calloc((size_t)rec_ints, sizeof *r->rec_mine);
    r->rec_all = calloc((size_t)rec_ints * ctx->comm.nranks, sizeof *r->rec_all);
    if (!r->rec_mine || !r->rec_all) /* cannot even take part: peers time out on this rank */
        return epc_error_obj(&ctx->hdr, EPC_ERR_NO_MEMORY, "epc_dispatch: count records");
    if (st == EPC_OK)
        st = validate(ctx, &r->args, r->h->algo);
    if (st == EPC_OK)
        st = count_local(ctx, &r->args, r->h, r->rec_mine + HDR_INTS);
    fill_record(r, st, per);
    r->local = st;
    r->step = step_counts;
    return epc_lane_allgather_post(coll_req_lane(r), r->rec_mine, rec_ints, r->rec_all, &r->xcoll,
                                   "MPI_Iallgather(dispatch counts)");
}

/* Cached mode: the same topk_idx as the handle; only validity is agreed. */
static epc_status_t step_replan_agree(epc_request_t *r)
{
    epc_handle_t *h = r->h;
    epc_status_t st = epc_lane_agree_test(coll_req_lane(r), &r->agree, coll_req_deadline(r));
    if (st != EPC_OK)
        return st;
    for (size_t i = 0; i < (size_t)h->T * h->k; i++) /* weights may change */
        h->w[i] = r->args.topk_weights ? r->args.topk_weights[i] : 1.0f;
    return to_algorithm(r);
}

static epc_status_t replan_post(epc_request_t *r)
{
    epc_ctx_t *ctx = r->ctx;
    const epc_dispatch_args_t *a = &r->args;
    epc_handle_t *h = r->h;
    epc_status_t st = r->local;
    if (st == EPC_OK)
        st = validate(ctx, a, h->algo);
    if (st == EPC_OK && (a->num_tokens != h->T || a->topk != h->k ||
                         hash_idx(a->topk_idx, (size_t)h->T * h->k) != h->idx_hash ||
                         (h->T > 0 && /* topk_idx may be NULL when T is 0 */
                          memcmp(a->topk_idx, h->idx, (size_t)h->T * h->k * sizeof *h->idx) != 0)))
        st = BADARG("the handle was made for other topk_idx (or T, k): pass *handle = NULL");
    if (st == EPC_OK && (a->expert_alignment > 1 ? a->expert_alignment : 1) != h->align)
        st = BADARG("args->expert_alignment differs from the handle's (%d)", h->align);
    if (st == EPC_OK && (a->payload != EPC_PAYLOAD_NATIVE) != h->fp8)
        st = BADARG("args->payload is %sFP8, the handle's was %sFP8", h->fp8 ? "not " : "",
                    h->fp8 ? "" : "not ");
    if ((st = epc_lane_agree_post(coll_req_lane(r), st, &r->agree)) != EPC_OK)
        return st;
    r->step = step_replan_agree;
    return EPC_OK;
}

epc_status_t coll_plan_step_post(epc_request_t *r)
{
    return r->cached ? replan_post(r) : plan_post(r);
}
