/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * context.h - the job context (internal layout of the public epc_ctx_t):
 * the token shape and algorithm every call uses, the requests it holds,
 * the collectives' private buffers and statistics, above the communication
 * object it owns (comm/comm.h: communicators, regions, transport,
 * deadlines, byte counters).
 */
#ifndef EPC_COLLECTIVES_CONTEXT_H
#define EPC_COLLECTIVES_CONTEXT_H

#include <stdint.h>

#include "comm.h"
#include "epcomm.h"
#include "error.h"

/* Requests a context holds at once (started and not yet freed). */
#define EPC_MAX_REQUESTS EPC_MAX_REQUESTS_PER_CTX

/* Private buffers of the collectives, one set per lane. */
enum {
    EPC_SCRATCH_OUT,     /* flat: received rows and their metadata */
    EPC_SCRATCH_PARTIAL, /* combine: flat's outputs going back */
    EPC_SCRATCH_EXPERT,  /* epc_combine_buffer */
    EPC_SCRATCH_SEND,    /* flat: send records */
    EPC_SCRATCH_RECV,    /* flat: received records */
    EPC_SCRATCH_PAYLOAD, /* dispatch: this rank's rows as the FP8 payload */
    EPC_SCRATCH_COUNT
};

typedef struct epc_scratch {
    char *p;
    size_t cap;
} epc_scratch_t;

struct epc_request;

struct epc_ctx {
    epc_obj_t hdr;   /* magic EPC_MAGIC_CTX; its last_error */
    epc_comm_t comm; /* raises into hdr */
    int num_experts, hidden, max_tokens, max_topk;
    epc_algo_t algo; /* EPC_ALGO: dispatch's algorithm when args leave it 0 */
    epc_dtype_t dtype;
    size_t elem_size;                    /* bytes per element of a row */
    uint64_t dispatches;                 /* dispatches started: the next one's lane */
    uint64_t lane_dispatches[EPC_LANES]; /* per lane: its older handles are stale */
    epc_scratch_t scratch[EPC_LANES][EPC_SCRATCH_COUNT];
    struct epc_request *requests[EPC_MAX_REQUESTS]; /* held by the caller, NULL: free */
    epc_coll_stats_t cstats;
    struct coll_ll *ll;   /* the low-latency mode, once enabled (ll.h) */
    int32_t *slot_expert; /* [num_experts]: the logical expert of each slot under the
                           * placement last agreed (epc_placement_agree); NULL: none */
};

/* A live context, else EPC_ERR_INVALID_ARG raised naming fn. */
epc_status_t epc_ctx_check(const epc_ctx_t *ctx, const char *fn);

/* What every collective call on the context checks first: a live context,
 * then epc_comm_enter (aborted, a peer's abort, an earlier failure). */
epc_status_t epc_ctx_enter(epc_ctx_t *ctx, const char *fn);

/* A private buffer of lane `lane` of at least `need` bytes (grown x1.5,
 * kept); its old contents are not kept.  EPC_ERR_NO_MEMORY raised. */
epc_status_t epc_ctx_scratch(epc_ctx_t *ctx, int lane, int which, size_t need, char **p);

/* Takes that buffer from the context (NULL if none): the caller frees it;
 * the next epc_ctx_scratch allocates a new one. */
void *epc_ctx_scratch_detach(epc_ctx_t *ctx, int lane, int which);

/* The communication object's per-call services, for the context. */
static inline epc_status_t epc_ctx_leave(epc_ctx_t *ctx, epc_status_t st)
{
    return epc_comm_leave(&ctx->comm, st);
}
static inline epc_deadline_t epc_ctx_deadline(const epc_ctx_t *ctx)
{
    return epc_comm_deadline(&ctx->comm);
}
static inline void epc_ctx_lock(epc_ctx_t *ctx)
{
    epc_progress_lock(&ctx->comm.progress);
}
static inline void epc_ctx_unlock(epc_ctx_t *ctx)
{
    epc_progress_unlock(&ctx->comm.progress);
}
static inline int epc_ctx_trylock(epc_ctx_t *ctx)
{
    return epc_progress_trylock(&ctx->comm.progress);
}
static inline void epc_ctx_kick(epc_ctx_t *ctx)
{
    epc_progress_kick(&ctx->comm.progress);
}

#endif
