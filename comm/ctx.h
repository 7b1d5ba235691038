/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * ctx.h - the context (internal layout): its communicators, topology,
 * lanes (lane.h: the buffers data moves through), who progresses them,
 * the abort state, the requests in flight and the byte counters of epc_ctx_stats.
 */
#ifndef EPC_COMM_CTX_H
#define EPC_COMM_CTX_H

#include <mpi.h>
#include <stdint.h>

#include "abort.h"
#include "lane.h"
#include "progress.h"
#include "epcomm.h"
#include "error.h"
#include "shm.h"
#include "topo.h"
#include "tr.h"

/* Requests a context holds at once (started and not yet freed). */
#define EPC_MAX_REQUESTS EPC_MAX_REQUESTS_PER_CTX

struct epc_request;

struct epc_ctx {
    epc_obj_t hdr; /* magic EPC_MAGIC_CTX; its last_error */
    MPI_Comm comm; /* dup of the user's, MPI_ERRORS_RETURN: data */
    MPI_Comm ctrl; /* another dup: node exchanges and abort messages */
    epc_topo_t *topo;
    int rank, nranks, node, lrank, lsize;
    int num_experts, hidden, max_tokens, max_topk, timeout_ms;
    size_t chunk_bytes; /* EPC_CHUNK_KB: pipeline chunk per message */
    epc_algo_t algo;    /* EPC_ALGO: dispatch's algorithm when args leave it 0 */
    epc_dtype_t dtype;
    size_t elem_size;          /* bytes per element of a row */
    epc_transport_t transport; /* EPC_TRANSPORT_MPI or _OFI */
    char provider_req[64];     /* asked for ("" = automatic) */
    char transport_reason[192];
    epc_lane_t lane[EPC_LANES];    /* dispatches alternate between them */
    epc_progress_state_t progress; /* the caller's, or a thread's (progress.h) */
    epc_abort_t abort;             /* peers' aborts, and telling them of this rank's */
    int failed;  /* a wait timed out or a transport failed: only destroy remains */
    int aborted; /* epc_ctx_abort was called on this rank */
    uint64_t sent[EPC_LINK_CLASS_COUNT], recv[EPC_LINK_CLASS_COUNT]; /* by epc_link_class_t */
    unsigned char *link_class; /* [nranks]: epc_link_class_t of each peer, for the counters */
    uint64_t dispatches;       /* dispatches started: the next one's lane */
    struct epc_request *requests[EPC_MAX_REQUESTS]; /* held by the caller, NULL: free */
    void (*free_requests)(struct epc_ctx *ctx);     /* set by the collectives above */
    epc_coll_stats_t cstats;
};

/* A live context, else EPC_ERR_INVALID_ARG raised naming fn. */
epc_status_t epc_ctx_check(const epc_ctx_t *ctx, const char *fn);

/* What every collective call on the context checks first: a live context
 * (EPC_ERR_INVALID_ARG), not aborted by this rank (EPC_ERR_INVALID_ARG),
 * no peer's abort seen (EPC_ERR_PEER_FAILED naming it), no earlier
 * timeout or transport failure (EPC_ERR_TRANSPORT).  Raised naming fn. */
epc_status_t epc_ctx_enter(epc_ctx_t *ctx, const char *fn);

/* What every collective call does with its final status: after a timeout
 * or a transport failure the context is failed, and its peers are told
 * (so they stop waiting for this rank now, not at their deadline).
 * Returns st. */
epc_status_t epc_ctx_leave(epc_ctx_t *ctx, epc_status_t st);

/* Deadline of a wait starting now; a peer's abort interrupts it. */
epc_deadline_t epc_ctx_deadline(const epc_ctx_t *ctx);

/* Adds bytes moved between this rank and `peer` (a rank of ctx->comm). */
void epc_ctx_account(epc_ctx_t *ctx, int peer, uint64_t bytes, int sent);

#endif
