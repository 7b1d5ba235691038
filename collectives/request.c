/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * request.c - the progress engine: requests in flight, their steps run
 * by epc_test and epc_wait (and the context's progress thread: every
 * public call here holds the context's lock), and how a request ends
 * (its results, or the failure rules of the blocking calls).
 */
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "params.h"
#include "request.h"

epc_deadline_t coll_req_deadline(epc_request_t *r)
{
    if (!r->waiting) {
        r->waiting = 1;
        r->dl = epc_ctx_deadline(r->ctx);
    }
    return r->dl;
}

epc_status_t coll_req_waiting(epc_request_t *r)
{
    epc_status_t st = epc_deadline_check(coll_req_deadline(r));
    return st == EPC_OK ? EPC_IN_PROGRESS : st;
}

epc_status_t coll_req_test_coll(epc_request_t *r, epc_lane_coll_t *c, const char *what)
{
    int done = 0;
    epc_status_t st = epc_lane_coll_test(coll_req_lane(r), c, &done, what);
    if (st != EPC_OK)
        return st;
    return done ? EPC_OK : coll_req_waiting(r);
}

epc_status_t coll_req_fence(epc_request_t *r, uint64_t fence, const char *phase)
{
    int missing;
    epc_status_t st;
    if (epc_lane_fence_test(r->lane, fence, &missing))
        return EPC_OK;
    st = coll_req_waiting(r);
    return st == EPC_IN_PROGRESS ? st : epc_lane_fence_fail(r->lane, st, missing, phase);
}

epc_status_t coll_req_net(epc_request_t *r, void **req)
{
    void *posted = *req;
    int done = 0, waited_out = 0;
    epc_status_t st = epc_lane_net_test(r->lane, posted, &done);
    if (st == EPC_OK && !done) {
        if ((st = coll_req_waiting(r)) == EPC_IN_PROGRESS)
            return st;
        waited_out = 1;
    }
    *req = NULL;
    if (st == EPC_OK) /* complete: this frees it */
        return epc_lane_net_finish(r->lane, posted, coll_req_deadline(r));
    if (waited_out) /* finishing it names whom it waited for */
        return epc_lane_net_finish(r->lane, posted, r->dl);
    epc_lane_net_cancel(r->lane, posted);
    return st;
}

epc_lane_t *coll_req_lane(const epc_request_t *r)
{
    _Static_assert(EPC_LANES >= 2, "a dispatch's and a combine's");
    return &r->ctx->comm.lane[r->is_dispatch ? 0 : 1];
}

epc_status_t coll_req_scratch(epc_request_t *r, int which, size_t need, char **p)
{
    return epc_ctx_scratch(r->ctx, coll_req_lane(r)->index, which, need, p);
}

static void add_bytes(epc_coll_bytes_t *total, const epc_coll_bytes_t *b)
{
    total->payload_inter += b->payload_inter;
    total->payload_intra += b->payload_intra;
    total->meta_inter += b->meta_inter;
    total->meta_intra += b->meta_intra;
}

static void fill_out(const epc_ctx_t *ctx, const epc_handle_t *h, epc_dispatch_out_t *out)
{
    epc_dispatch_out_t all = EPC_DISPATCH_OUT_INIT;
    all.rows = h->rows;
    all.num_rows = h->num_rows[ctx->comm.rank];
    all.num_local_experts = h->epr;
    all.expert_begin = h->begin + (size_t)ctx->comm.rank * (h->epr + 1);
    all.expert_count = h->expert_count;
    all.src_rank = h->meta.src_rank;
    all.src_token = h->meta.src_token;
    all.local_expert = h->meta.local_expert;
    all.weight = h->meta.weight;
    all.row_stride = h->row_bytes;
    all.scales =
        h->fp8 && h->rows != NULL ? (const float *)(const void *)(h->rows + ctx->hidden) : NULL;
    epc_out_store(out, &all); /* the fields of the caller's layout (checked at the start) */
}

/* A successful request's results: the dispatch's out and handle, the
 * statistics. */
static void deliver(epc_request_t *r)
{
    epc_ctx_t *ctx = r->ctx;
    if (r->is_dispatch) {
        r->h->lane = r->lane->index;
        r->h->lane_seq = r->ctx->lane_dispatches[r->lane->index];
        fill_out(ctx, r->h, r->out);
        *r->handle_p = r->h;
        r->h = NULL; /* the caller's now */
        ctx->cstats.last_dispatch = r->bytes;
        ctx->cstats.dispatches++;
    } else {
        ctx->cstats.last_combine = r->bytes;
        ctx->cstats.combines++;
    }
    add_bytes(&ctx->cstats.total, &r->bytes);
}

/* Ends r with st.  A failure follows the blocking calls' rules (a timeout
 * or transport failure fails the context and tells the peers) and is
 * kept to be told on every test; a new handle is freed, a cached one can
 * no longer be combined. */
static void complete(epc_request_t *r, epc_status_t st)
{
    if (r->finish != NULL) {
        if (st != EPC_OK) {
            st = epc_ctx_leave(r->ctx, st);
            snprintf(r->error, sizeof r->error, "%s", epc_last_error(NULL));
        }
        r->finish(r, st);
        if (r->algo_free != NULL)
            r->algo_free(r);
        r->step = NULL;
        r->status = st;
        return;
    }
    if (r->algo_free != NULL)
        r->algo_free(r);
    coll_scalars_free(r);
    epc_lane_coll_free(&r->xcoll, (void *[]){r->rec_mine, r->rec_all}, 2);
    r->rec_mine = r->rec_all = NULL;
    if (st == EPC_OK) {
        deliver(r);
    } else {
        st = epc_ctx_leave(r->ctx, st);
        snprintf(r->error, sizeof r->error, "%s", epc_last_error(NULL));
        if (r->is_dispatch && !r->cached) /* a cached one stays the caller's */
            epc_handle_destroy(r->h);
        r->h = NULL;
    }
    r->step = NULL;
    r->status = st;
}

/* Runs r's steps until one waits or r ends. */
static void advance(epc_request_t *r)
{
    epc_status_t st = epc_ctx_enter(r->ctx, r->fn); /* an abort or an earlier failure */
    if (st != EPC_OK) {
        /* A step that was waiting sees the same abort through its deadline
         * and says whom it waited for (the rank at the node fence, say),
         * which "a peer aborted" alone would lose. */
        epc_status_t own = st == EPC_ERR_PEER_FAILED && r->waiting ? r->step(r) : EPC_OK;
        complete(r, own != EPC_OK && own != EPC_IN_PROGRESS ? own : st);
        return;
    }
    while (r->status == EPC_IN_PROGRESS) {
        st = r->step(r);
        if (st == EPC_IN_PROGRESS)
            return;
        r->waiting = 0;
        if (st == EPC_OK && r->step == NULL && r->after != NULL) { /* one more stage */
            r->step = r->after;
            r->after = NULL;
        }
        if (st != EPC_OK || r->step == NULL)
            complete(r, st);
    }
}

void coll_progress(epc_ctx_t *ctx)
{
    for (int i = 0; i < EPC_MAX_REQUESTS; i++)
        if (ctx->requests[i] != NULL && ctx->requests[i]->status == EPC_IN_PROGRESS)
            advance(ctx->requests[i]);
}

int coll_poll(void *arg)
{
    epc_ctx_t *ctx = arg;
    int running = 0;
    coll_progress(ctx);
    for (int i = 0; i < EPC_MAX_REQUESTS; i++)
        running += ctx->requests[i] != NULL && ctx->requests[i]->status == EPC_IN_PROGRESS;
    return running;
}

/* Why a new request cannot be taken now, or NULL.  The limits depend only
 * on the calls every rank makes (requests held, in flight, the lane), so
 * every rank refuses the same call. */
static const char *refusal(const epc_ctx_t *ctx, const epc_lane_t *ln, int is_dispatch)
{
    int held = 0, dispatching = 0, combining = 0;
    for (int i = 0; i < EPC_MAX_REQUESTS; i++) {
        const epc_request_t *q = ctx->requests[i];
        if (q == NULL)
            continue;
        held++;
        /* the low-latency mode's requests use their own lane and sets,
         * checked by its starts (ll.c) */
        if (q->reported || q->lane->index >= EPC_LANES || ln->index >= EPC_LANES)
            continue;
        dispatching |= q->is_dispatch;
        combining |= !q->is_dispatch;
        if (q->lane == ln)
            return is_dispatch ? "the lane this dispatch needs is still used by a combine in "
                                 "flight (of the dispatch two before it): wait for it first"
                               : "a request on this handle's buffers is still in flight: wait "
                                 "for it first";
    }
    _Static_assert(EPC_MAX_REQUESTS == 2, "the text below says 2");
    if (held == EPC_MAX_REQUESTS)
        return "the context already holds its 2 requests (the most it allows): wait for and "
               "free one (epc_request_free) first";
    if (is_dispatch && dispatching)
        return "a dispatch is already in flight (at most one at a time): wait for it first";
    if (!is_dispatch && combining)
        return "a combine is already in flight (at most one at a time): wait for it first";
    return NULL;
}

epc_status_t coll_req_new(epc_ctx_t *ctx, epc_lane_t *ln, int is_dispatch, const char *fn,
                          epc_request_t **rp)
{
    const char *why = refusal(ctx, ln, is_dispatch);
    epc_request_t *r;
    int slot = 0;
    if (why != NULL)
        return epc_error_obj(&ctx->hdr, EPC_ERR_CAPACITY, "%s: %s", fn, why);
    if ((r = calloc(1, sizeof *r)) == NULL)
        return epc_error_obj(&ctx->hdr, EPC_ERR_NO_MEMORY, "%s: request", fn);
    while (ctx->requests[slot] != NULL)
        slot++;
    ctx->requests[slot] = r;
    r->hdr.magic = EPC_MAGIC_REQUEST;
    r->ctx = ctx;
    r->lane = ln;
    r->is_dispatch = is_dispatch;
    r->fn = fn;
    r->status = EPC_IN_PROGRESS;
    epc_lane_coll_init(&r->xcoll);
    r->agree.req = MPI_REQUEST_NULL;
    *rp = r;
    return EPC_OK;
}

static epc_status_t check_request(const epc_request_t *r, const char *fn)
{
    if (r == NULL || r->hdr.magic != EPC_MAGIC_REQUEST)
        return epc_error(EPC_ERR_INVALID_ARG, "%s: req is %s", fn,
                         r == NULL ? "NULL" : "not a live request (freed?)");
    return EPC_OK;
}

/* A finished request's status; its failure's text is made the last
 * error again (another call may have replaced it since). */
static epc_status_t report(epc_request_t *r)
{
    if (r->status == EPC_OK)
        return EPC_OK;
    return epc_error_restore(&r->ctx->hdr, r->status, r->error);
}

epc_status_t epc_test(epc_request_t *req, int *done)
{
    epc_status_t st = check_request(req, "epc_test");
    epc_ctx_t *ctx;
    if (st == EPC_OK && done == NULL)
        st = epc_error_obj(&req->ctx->hdr, EPC_ERR_INVALID_ARG, "epc_test: done is NULL");
    if (st != EPC_OK)
        return st;
    ctx = req->ctx;
    /* With the thread, the caller's compute is not interrupted by copies,
     * nor held while the thread runs a step: a busy lock means the
     * request is being advanced, so it is reported not done yet. */
    if (!epc_ctx_trylock(ctx)) {
        *done = 0;
        return EPC_OK;
    }
    if (req->status == EPC_IN_PROGRESS && ctx->comm.progress.mode != EPC_PROGRESS_THREAD)
        coll_progress(ctx);
    *done = req->status != EPC_IN_PROGRESS;
    req->reported |= *done;
    st = *done ? report(req) : EPC_OK;
    epc_ctx_unlock(ctx);
    return st;
}

epc_status_t epc_wait(epc_request_t *req)
{
    epc_status_t st = check_request(req, "epc_wait");
    if (st != EPC_OK)
        return st;
    /* Ends: every step that waits does so against a deadline.  The caller
     * progresses too (it has nothing else to do); the lock is let go
     * between passes so the thread and epc_ctx_abort get their turn. */
    for (;;) {
        epc_ctx_lock(req->ctx);
        coll_progress(req->ctx);
        if (req->status != EPC_IN_PROGRESS) {
            req->reported = 1;
            st = report(req);
            epc_ctx_unlock(req->ctx);
            return st;
        }
        epc_ctx_unlock(req->ctx);
        sched_yield();
    }
}

/* Takes r out of its context and frees it: once its agreement, which
 * lives in r, completed (epc_mpi_abandon; pending only on a failed
 * context). */
static void release(epc_request_t *r)
{
    for (int i = 0; i < EPC_MAX_REQUESTS; i++)
        if (r->ctx->requests[i] == r)
            r->ctx->requests[i] = NULL;
    r->hdr.magic = EPC_MAGIC_DEAD;
    epc_mpi_abandon(&r->agree.req, (void *[]){r}, 1);
}

epc_status_t epc_request_free(epc_request_t *req)
{
    epc_ctx_t *ctx;
    epc_status_t st;
    if (req == NULL)
        return EPC_OK;
    if ((st = check_request(req, "epc_request_free")) != EPC_OK)
        return st;
    ctx = req->ctx;
    epc_ctx_lock(ctx);
    /* In flight on a working context peers still count on it; once the
     * context failed or was aborted it is abandoned. */
    if (!req->reported && !ctx->comm.failed && !ctx->comm.aborted) {
        st = epc_error_obj(&ctx->hdr, EPC_ERR_INVALID_ARG,
                           "epc_request_free: req is still in flight (wait for it, or test "
                           "until done, first)");
    } else {
        if (req->status == EPC_IN_PROGRESS)
            complete(req, epc_error_quiet(&ctx->hdr, EPC_ERR_TRANSPORT, "%s: abandoned", req->fn));
        release(req);
    }
    epc_ctx_unlock(ctx);
    return st;
}

void coll_req_free_all(epc_ctx_t *ctx)
{
    for (int i = 0; i < EPC_MAX_REQUESTS; i++) {
        epc_request_t *r = ctx->requests[i];
        if (r == NULL)
            continue;
        if (r->status == EPC_IN_PROGRESS)
            complete(r, epc_error_quiet(&ctx->hdr, EPC_ERR_TRANSPORT, "%s: abandoned", r->fn));
        release(r);
    }
}
