/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * ll.c - the low-latency mode's setup and entry points: the buffers'
 * layout (ll.h), epc_ll_enable, the starts of dispatch and combine (their
 * checks and the buffer set each uses), what a finished request leaves
 * in its set, and epc_ll_combine_buffer.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "ll.h"
#include "params.h"

#define BADARG(fn, ...) epc_error_obj(&ctx->hdr, EPC_ERR_INVALID_ARG, fn ": " __VA_ARGS__)

static size_t round_up(size_t n, size_t to)
{
    return (n + to - 1) / to * to;
}

/* Every size and offset of the mode at max tokens (ll.h's layout). */
static void layout(coll_ll_t *ll, const epc_ctx_t *ctx, int max)
{
    size_t rows;
    ll->max = max;
    ll->E = ctx->num_experts;
    ll->R = ctx->comm.nranks;
    ll->epr = ll->E / ll->R;
    ll->k_max = ctx->max_topk;
    ll->hidden = ctx->hidden;
    ll->slots = ll->R * max;
    ll->nrow = coll_row_bytes(ctx);
    ll->stride = round_up(ll->nrow, 64);
    ll->ctl_line = round_up(sizeof(ll_ctl_t) + (size_t)ll->epr * sizeof(int32_t), 64);
    ll->ready_line = round_up(sizeof(ll_ctl_t), 64);
    ll->hdr = round_up(sizeof(ll_hdr_t), 64);
    rows = (size_t)ll->epr * ll->slots;
    ll->off_ctl = 0;
    ll->off_ready = (size_t)ctx->comm.lsize * ll->ctl_line;
    ll->off_tok = ll->off_ready + ll->ready_line;
    ll->off_rows = round_up(ll->off_tok + rows * sizeof(int32_t), 64);
    ll->off_out = ll->off_rows + rows * ll->stride;
    ll->set_bytes = round_up(ll->off_out + rows * ll->nrow, 4096);
    /* slots 64-byte aligned, so every header is, whatever the row size */
    ll->dcap = round_up(ll->hdr + (size_t)max * ll_unit(ll->k_max, ll->nrow), 64);
    ll->ccap = round_up(
        ll->hdr + (size_t)max * (size_t)(ll->k_max < ll->epr ? ll->k_max : ll->epr) * ll->nrow, 64);
    ll->net_comb = (size_t)LL_SETS * ll->R * ll->dcap;
}

static size_t net_bytes(const coll_ll_t *ll)
{
    return ll->net_comb + (size_t)LL_SETS * ll->R * ll->ccap;
}

static epc_status_t check_max(epc_ctx_t *ctx, const char *fn, int max_tokens)
{
    if (max_tokens < 1 || max_tokens > LL_MAX_TOKENS)
        return epc_error_obj(&ctx->hdr, EPC_ERR_INVALID_ARG,
                             "%s: max_tokens = %d, must be in [1, %d]", fn, max_tokens,
                             LL_MAX_TOKENS);
    return EPC_OK;
}

epc_status_t epc_ll_buffer_size(const epc_ctx_t *ctx, int max_tokens, size_t *bytes)
{
    coll_ll_t ll;
    epc_status_t st = epc_ctx_check(ctx, "epc_ll_buffer_size");
    if (st == EPC_OK && bytes == NULL)
        st = epc_error_obj((epc_obj_t *)&ctx->hdr, EPC_ERR_INVALID_ARG,
                           "epc_ll_buffer_size: bytes is NULL");
    if (st == EPC_OK)
        st = check_max((epc_ctx_t *)ctx, "epc_ll_buffer_size", max_tokens);
    if (st != EPC_OK)
        return st;
    layout(&ll, ctx, max_tokens);
    *bytes = LL_SETS * ll.set_bytes + 2 * net_bytes(&ll);
    return EPC_OK;
}

void coll_ll_free(coll_ll_t *ll)
{
    if (ll == NULL)
        return;
    if (ll->lane.cm != NULL)
        epc_lane_destroy(&ll->lane);
    for (int b = 0; b < LL_SETS; b++) {
        ll_set_t *s = &ll->set[b];
        free(s->idx);
        free(s->slot);
        free(s->sent);
        free(s->count);
        free(s->src_count);
    }
    free(ll->payload);
    free(ll->acc);
    free(ll->cursor);
    free(ll->pre);
    free(ll->net_index);
    free(ll);
}

/* The private arrays of the mode (local). */
static epc_status_t alloc_state(epc_ctx_t *ctx, coll_ll_t *ll)
{
    size_t slots = (size_t)ll->max * (ll->k_max > 0 ? ll->k_max : 1);
    int ok = 1;
    for (int b = 0; b < LL_SETS; b++) {
        ll_set_t *s = &ll->set[b];
        s->idx = malloc(slots * sizeof *s->idx);
        s->slot = malloc(slots * sizeof *s->slot);
        s->sent = calloc((size_t)ll->E + 1, sizeof *s->sent);
        s->count = calloc((size_t)ll->epr + 1, sizeof *s->count);
        s->src_count = calloc((size_t)ll->epr * ll->R + 1, sizeof *s->src_count);
        ok &= s->idx && s->slot && s->sent && s->count && s->src_count;
    }
    ll->payload = malloc((size_t)ll->max * coll_fp8_row_bytes(ll->hidden));
    ll->acc = malloc((size_t)ll->hidden * sizeof *ll->acc);
    ll->cursor = malloc((size_t)ll->R * 2 * sizeof *ll->cursor);
    ll->pre = malloc((size_t)ll->E * sizeof *ll->pre);
    ll->net_index = malloc((size_t)ll->R * sizeof *ll->net_index);
    ok &= ll->payload && ll->acc && ll->cursor && ll->pre && ll->net_index;
    for (int s = 0, n = 0; ok && s < ll->R; s++)
        ll->net_index[s] = ll_same_node(ctx, s) ? -1 : n++;
    return ok ? EPC_OK
              : epc_error_obj(&ctx->hdr, EPC_ERR_NO_MEMORY, "epc_ll_enable: state for %d tokens",
                              ll->max);
}

/* Every rank passed the same max_tokens: else EPC_ERR_MISMATCH on all. */
static epc_status_t agree_max(epc_ctx_t *ctx, int max_tokens)
{
    int v[2] = {max_tokens, -max_tokens}, all[2];
    MPI_Request req;
    int rc = MPI_Iallreduce(v, all, 2, MPI_INT, MPI_MAX, ctx->comm.mpi, &req);
    epc_status_t st = epc_mpi_finish(rc, &req, epc_ctx_deadline(ctx), &ctx->hdr,
                                     "epc_ll_enable: MPI_Iallreduce(max_tokens)");
    if (st == EPC_OK && all[0] != -all[1])
        st = epc_error_obj(&ctx->hdr, EPC_ERR_MISMATCH,
                           "epc_ll_enable: ranks passed different max_tokens (from %d to %d)",
                           -all[1], all[0]);
    return st;
}

/* Writes between nodes when the transport offers them and EPC_OFI_WRITE
 * leaves them on (every rank's choice joins the agreement). */
static epc_status_t expose(coll_ll_t *ll)
{
    const epc_config_t *cfg;
    epc_status_t st = epc_config_get(&cfg);
    int want = st == EPC_OK && epc_cfg_enum(cfg, EPC_CFG_OFI_WRITE) == 0;
    epc_status_t xst = epc_lane_net_expose(&ll->lane, want, &ll->writes);
    return st != EPC_OK ? st : xst;
}

/* The buffers (collective: the lane, the node's regions), then a check
 * that a dispatch message fits the transport's largest message, then the
 * receive region exposed to writes where they are used. */
static epc_status_t build(epc_ctx_t *ctx, coll_ll_t *ll)
{
    epc_status_t st = epc_lane_create(&ctx->comm, EPC_LANES, &ll->lane);
    size_t net = net_bytes(ll);
    if (st != EPC_OK)
        return st;
    st = epc_lane_shm_reserve(&ll->lane, LL_SETS * ll->set_bytes, "epc_ll_enable");
    if (st != EPC_OK)
        return st;
    if (ll->R > ctx->comm.lsize)
        st = epc_lane_net_reserve(&ll->lane, net, net);
    if (st == EPC_OK && ll->R > ctx->comm.lsize && /* only messages between nodes */
        (ll->dcap > ll->lane.tr->piece_max || ll->ccap > ll->lane.tr->piece_max))
        st = epc_error_obj(&ctx->hdr, EPC_ERR_CAPACITY,
                           "epc_ll_enable: a message of up to %zu bytes would exceed the %s "
                           "transport's largest message (%zu bytes): lower max_tokens",
                           ll->dcap > ll->ccap ? ll->dcap : ll->ccap, ll->lane.tr->ops->name,
                           ll->lane.tr->piece_max);
    st = epc_mpi_agree(ctx->comm.mpi, st, &ctx->hdr, epc_ctx_deadline(ctx));
    if (st == EPC_OK && ll->R > ctx->comm.lsize) /* collective; the same answer everywhere */
        st = epc_mpi_agree(ctx->comm.mpi, expose(ll), &ctx->hdr, epc_ctx_deadline(ctx));
    return st;
}

static epc_status_t enable(epc_ctx_t *ctx, int max_tokens)
{
    epc_status_t st = check_max(ctx, "epc_ll_enable", max_tokens);
    coll_ll_t *ll;
    if (st == EPC_OK && ctx->ll != NULL)
        st = BADARG("epc_ll_enable", "the low-latency mode is already enabled (max_tokens %d)",
                    ctx->ll->max);
    /* bad arguments still join the agreement, so peers do not wait */
    if ((st = epc_mpi_agree(ctx->comm.mpi, st, &ctx->hdr, epc_ctx_deadline(ctx))) != EPC_OK)
        return st;
    if ((st = agree_max(ctx, max_tokens)) != EPC_OK)
        return st;
    if ((ll = calloc(1, sizeof *ll)) == NULL)
        st = epc_error_obj(&ctx->hdr, EPC_ERR_NO_MEMORY, "epc_ll_enable: state");
    if (st == EPC_OK) {
        layout(ll, ctx, max_tokens);
        st = alloc_state(ctx, ll);
    }
    if ((st = epc_mpi_agree(ctx->comm.mpi, st, &ctx->hdr, epc_ctx_deadline(ctx))) == EPC_OK)
        st = build(ctx, ll);
    if (st != EPC_OK) {
        coll_ll_free(ll);
        return st;
    }
    ctx->ll = ll;
    return EPC_OK;
}

epc_status_t epc_ll_enable(epc_ctx_t *ctx, int max_tokens)
{
    epc_status_t st = epc_ctx_check(ctx, "epc_ll_enable");
    if (st != EPC_OK)
        return st;
    epc_ctx_lock(ctx);
    st = epc_ctx_enter(ctx, "epc_ll_enable");
    if (st == EPC_OK)
        st = epc_ctx_leave(ctx, enable(ctx, max_tokens));
    epc_ctx_unlock(ctx);
    return st;
}

/* What every start checks first; *llp the mode's state. */
static epc_status_t ll_enter(epc_ctx_t *ctx, const char *fn, epc_request_t **req, coll_ll_t **llp)
{
    epc_status_t st = epc_ctx_enter(ctx, fn);
    if (st != EPC_OK)
        return st;
    if (req == NULL)
        return epc_error_obj(&ctx->hdr, EPC_ERR_INVALID_ARG, "%s: req is NULL", fn);
    if ((*llp = ctx->ll) == NULL)
        return epc_error_obj(&ctx->hdr, EPC_ERR_INVALID_ARG,
                             "%s: the low-latency mode is not enabled (epc_ll_enable)", fn);
    return EPC_OK;
}

const char *coll_ll_transfer(const coll_ll_t *ll)
{
    if (ll == NULL || ll->lane.tr == NULL || ll->R <= ll->lane.cm->lsize)
        return "";
    return ll->writes ? "write" : "send";
}

epc_status_t coll_ll_post(epc_request_t *r, const epc_tr_msg_t *msgs, int ns, int nr,
                          const char *phase)
{
    ll_req_t *q = r->algo;
    epc_lane_t *ln = &q->ll->lane;
    if (ns + nr == 0)
        return EPC_OK;
    return q->ll->writes ? epc_lane_net_write_post(ln, msgs, ns, msgs + ns, nr, phase, &q->net)
                         : epc_lane_net_post(ln, msgs, ns, msgs + ns, nr, phase, &q->net);
}

static void ll_req_free(epc_request_t *r)
{
    ll_req_t *q = r->algo;
    if (q != NULL && q->net != NULL)
        epc_lane_net_cancel(&q->ll->lane, q->net);
    free(q);
    r->algo = NULL;
}

/* A new request of the mode on set `set` of the call `call`. */
static epc_status_t new_req(epc_ctx_t *ctx, coll_ll_t *ll, int is_dispatch, const char *fn,
                            ll_set_t *set, uint64_t call, epc_request_t **rp)
{
    ll_req_t *q = calloc(1, sizeof *q);
    epc_status_t st = q == NULL ? epc_error_obj(&ctx->hdr, EPC_ERR_NO_MEMORY, "%s: request", fn)
                                : coll_req_new(ctx, &ll->lane, is_dispatch, fn, rp);
    if (st != EPC_OK) {
        free(q);
        return st;
    }
    q->ll = ll;
    q->set = set;
    q->call = call;
    (*rp)->algo = q;
    (*rp)->algo_free = ll_req_free;
    return EPC_OK;
}

void coll_ll_keep_local(epc_request_t *r, epc_status_t local)
{
    r->local = local;
    if (local != EPC_OK)
        snprintf(r->error, sizeof r->error, "%s", epc_last_error(NULL));
}

/* After the send: a failure to send fails the request at once. */
static void after_send(epc_request_t *r, epc_status_t st)
{
    if (st != EPC_OK) { /* as the engine ends a request (request.c) */
        r->status = epc_ctx_leave(r->ctx, st);
        snprintf(r->error, sizeof r->error, "%s", epc_last_error(NULL));
        r->finish(r, r->status);
        r->algo_free(r);
        r->step = NULL;
    }
    epc_ctx_kick(r->ctx);
}

static void dispatch_finish(epc_request_t *r, epc_status_t st)
{
    ll_req_t *q = r->algo;
    ll_set_t *s = q->set;
    s->complete = st == EPC_OK;
    s->combined = st != EPC_OK; /* nothing to combine after a failure */
    if (st == EPC_OK)
        epc_out_store(q->out, &s->out);
}

static const epc_params_layouts_t ll_dispatch_layouts = {
    "EPC_LL_DISPATCH_ARGS_INIT", sizeof(epc_ll_dispatch_args_t), {0}};
static const epc_params_layouts_t ll_out_layouts = {"EPC_LL_OUT_INIT", sizeof(epc_ll_out_t), {0}};
static const epc_params_layouts_t ll_combine_layouts = {
    "EPC_LL_COMBINE_ARGS_INIT", sizeof(epc_ll_combine_args_t), {0}};

/* epc_ll_dispatch with the lock held. */
static epc_status_t dispatch_start(epc_ctx_t *ctx, const epc_ll_dispatch_args_t *args,
                                   epc_ll_out_t *out, epc_request_t **req)
{
    epc_ll_dispatch_args_t a = {0};
    coll_ll_t *ll;
    ll_set_t *set;
    epc_request_t *r;
    epc_status_t st = ll_enter(ctx, "epc_ll_dispatch", req, &ll), local;
    if (st != EPC_OK)
        return st;
    set = &ll->set[(ll->calls + 1) % LL_SETS];
    /* Its combine reads peers' outputs in this set, which they overwrite
     * once they have this dispatch's rows.  (One that never starts reads
     * nothing; one that completed was read by every peer before they
     * could send this dispatch: they send it after their own combine.) */
    if (set->combining)
        return epc_error_obj(&ctx->hdr, EPC_ERR_CAPACITY,
                             "epc_ll_dispatch: the combine of the dispatch two before this one "
                             "(call %llu) is in flight, and this one needs its buffers: wait "
                             "for it first",
                             (unsigned long long)set->call);
    if ((st = new_req(ctx, ll, 1, "epc_ll_dispatch", set, ll->calls + 1, &r)) != EPC_OK)
        return st;
    set->call = ++ll->calls;
    set->complete = set->combined = 0;
    r->finish = dispatch_finish;
    local = epc_params_load(&a, args, &ll_dispatch_layouts, &ctx->hdr, "epc_ll_dispatch", "args");
    if (local == EPC_OK)
        local = epc_out_check(out, &ll_out_layouts, &ctx->hdr, "epc_ll_dispatch", "out");
    ((ll_req_t *)r->algo)->out = out;
    if (local != EPC_OK)
        memset(&a, 0, sizeof a);
    after_send(r, coll_ll_dispatch_send(r, &a, local));
    *req = r;
    return EPC_OK;
}

epc_status_t epc_ll_dispatch(epc_ctx_t *ctx, const epc_ll_dispatch_args_t *args, epc_ll_out_t *out,
                             epc_request_t **req)
{
    epc_status_t st = epc_ctx_check(ctx, "epc_ll_dispatch");
    if (st != EPC_OK)
        return st;
    epc_ctx_lock(ctx);
    st = dispatch_start(ctx, args, out, req);
    epc_ctx_unlock(ctx);
    return st;
}

/* The set of the dispatch whose out `d` is, when it can be combined:
 * this context's latest complete dispatch of its set, not combined. */
static ll_set_t *set_of(coll_ll_t *ll, const epc_ll_out_t *d)
{
    ll_set_t *s;
    if (d == NULL || d->call == 0)
        return NULL;
    s = &ll->set[d->call % LL_SETS];
    return s->call == d->call && s->complete && !s->combined && !s->combining ? s : NULL;
}

/* The set of d's dispatch when its combine is in flight, else NULL: a
 * second combine of it is refused at the start, not posted as a bad one. */
static ll_set_t *combining_of(coll_ll_t *ll, const epc_ll_out_t *d)
{
    ll_set_t *s;
    if (d == NULL || d->call == 0)
        return NULL;
    s = &ll->set[d->call % LL_SETS];
    return s->call == d->call && s->combining ? s : NULL;
}

/* The set a combine whose `dispatched` is bad still answers on (its
 * verdict must reach the peers combining, which wait on their set's flag
 * line for this combine's number): the oldest one waiting for a combine,
 * else the latest call's.  It stays waiting afterwards: a later combine of
 * it looks for a later number. */
static ll_set_t *presumed_set(coll_ll_t *ll)
{
    ll_set_t *a = &ll->set[0], *b = &ll->set[1];
    int wa = a->complete && !a->combined && !a->combining;
    int wb = b->complete && !b->combined && !b->combining;
    if (wa && wb)
        return a->call < b->call ? a : b;
    if (wa || wb)
        return wa ? a : b;
    return &ll->set[ll->calls % LL_SETS];
}

static void combine_finish(epc_request_t *r, epc_status_t st)
{
    ll_req_t *q = r->algo;
    (void)st; /* either way its dispatch's combine is over */
    q->set->combining = 0;
    q->set->combined |= q->own_set;
}

/* Local checks of a combine once its set is known (a loaded). */
static epc_status_t check_combine(epc_ctx_t *ctx, const ll_set_t *s, const epc_ll_combine_args_t *a)
{
    int rows = 0;
    if (s == NULL)
        return BADARG("epc_ll_combine", "args->dispatched is %s",
                      a->dispatched == NULL ? "NULL"
                                            : "not a complete low-latency dispatch of "
                                              "this context waiting for its combine "
                                              "(stale, or combined already)");
    for (int e = 0; e < ctx->ll->epr; e++)
        rows += s->count[e];
    if (a->expert_out == NULL && rows > 0)
        return BADARG("epc_ll_combine", "args->expert_out is NULL with %d rows received", rows);
    if (a->y == NULL && s->T > 0)
        return BADARG("epc_ll_combine", "args->y is NULL with %d tokens", s->T);
    return EPC_OK;
}

/* epc_ll_combine with the lock held. */
static epc_status_t combine_start(epc_ctx_t *ctx, const epc_ll_combine_args_t *args,
                                  epc_request_t **req)
{
    epc_ll_combine_args_t a = {0};
    coll_ll_t *ll;
    ll_set_t *set = NULL;
    epc_request_t *r;
    int own;
    epc_status_t st = ll_enter(ctx, "epc_ll_combine", req, &ll), local;
    if (st != EPC_OK)
        return st;
    local = epc_params_load(&a, args, &ll_combine_layouts, &ctx->hdr, "epc_ll_combine", "args");
    if (local == EPC_OK && (set = combining_of(ll, a.dispatched)) == NULL) {
        set = set_of(ll, a.dispatched);
        local = check_combine(ctx, set, &a);
    }
    own = set != NULL; /* a combining set is refused below */
    if (set == NULL)
        set = presumed_set(ll);
    if (set->combining)
        return epc_error_obj(&ctx->hdr, EPC_ERR_CAPACITY,
                             "epc_ll_combine: a combine of call %llu is in flight: wait for it",
                             (unsigned long long)set->call);
    if ((st = new_req(ctx, ll, 0, "epc_ll_combine", set, set->call, &r)) != EPC_OK)
        return st;
    set->combining = 1;
    r->finish = combine_finish;
    ((ll_req_t *)r->algo)->cargs = a;
    ((ll_req_t *)r->algo)->own_set = own;
    ((ll_req_t *)r->algo)->seq = ++ll->combines;
    after_send(r, coll_ll_combine_send(r, local));
    *req = r;
    return EPC_OK;
}

epc_status_t epc_ll_combine(epc_ctx_t *ctx, const epc_ll_combine_args_t *args, epc_request_t **req)
{
    epc_status_t st = epc_ctx_check(ctx, "epc_ll_combine");
    if (st != EPC_OK)
        return st;
    epc_ctx_lock(ctx);
    st = combine_start(ctx, args, req);
    epc_ctx_unlock(ctx);
    return st;
}

epc_status_t epc_ll_combine_buffer(epc_ctx_t *ctx, const epc_ll_out_t *dispatched, void **buf)
{
    epc_status_t st = epc_ctx_check(ctx, "epc_ll_combine_buffer");
    ll_set_t *s;
    if (st != EPC_OK)
        return st;
    if (buf == NULL)
        return BADARG("epc_ll_combine_buffer", "buf is NULL");
    if (ctx->ll == NULL)
        return BADARG("epc_ll_combine_buffer",
                      "the low-latency mode is not enabled (epc_ll_enable)");
    epc_ctx_lock(ctx);
    s = set_of(ctx->ll, dispatched);
    if (s != NULL)
        *buf = ll_base(ctx->ll, ctx->comm.lrank, (int)(s->call % LL_SETS)) + ctx->ll->off_out;
    epc_ctx_unlock(ctx);
    if (s == NULL)
        return BADARG("epc_ll_combine_buffer", "dispatched is %s",
                      dispatched == NULL ? "NULL"
                                         : "not a complete low-latency "
                                           "dispatch waiting for its combine");
    return EPC_OK;
}

void coll_ll_reason(char *dst, const epc_request_t *r)
{
    size_t n = r->local != EPC_OK ? strnlen(r->error, EPC_REASON_LEN - 1) : 0;
    memcpy(dst, r->error, n);
    dst[n] = '\0';
}

epc_status_t coll_ll_flag_wait(epc_request_t *r, int lrank, const char *what)
{
    epc_ctx_t *ctx = r->ctx;
    const epc_topo_t *t = ctx->comm.topo;
    int rank = t->node_ranks[t->node_start[ctx->comm.node] + lrank];
    epc_status_t st = coll_req_waiting(r);
    if (st == EPC_IN_PROGRESS)
        return st;
    if (st == EPC_ERR_TIMEOUT)
        return epc_error_obj(&ctx->hdr, EPC_ERR_TIMEOUT,
                             "%s: timed out waiting for rank %d's %s (local rank %d) (%.1f s)",
                             r->fn, rank, what, lrank, ctx->comm.timeout_ms / 1000.0);
    return epc_error_context(&ctx->hdr, st, "%s: waiting for rank %d's %s", r->fn, rank, what);
}

epc_status_t coll_ll_verdict(epc_request_t *r, int rank, int32_t status, const char *reason)
{
    char text[EPC_REASON_LEN];
    if (r->local != EPC_OK)
        return epc_error_restore(&r->ctx->hdr, r->local, r->error);
    if (status == EPC_OK)
        return EPC_OK;
    memcpy(text, reason, sizeof text);
    text[sizeof text - 1] = '\0';
    return epc_error_obj(&r->ctx->hdr, EPC_ERR_PEER_FAILED, "%s: rank %d: %s", r->fn, rank, text);
}
