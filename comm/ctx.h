/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * ctx.h - the context (internal layout) and the data-movement primitives the
 * collectives build on: direct writes into node peers' shared regions, and
 * exchanges over the inter-node transport.  Both account their bytes by
 * link class for epc_ctx_stats.
 */
#ifndef EPC_COMM_CTX_H
#define EPC_COMM_CTX_H

#include <mpi.h>
#include <stdint.h>

#include "abort.h"
#include "epcomm.h"
#include "error.h"
#include "shm.h"
#include "topo.h"
#include "tr.h"

/* Private buffers of the collectives. */
enum {
    EPC_SCRATCH_OUT,     /* flat: received rows and their metadata */
    EPC_SCRATCH_PARTIAL, /* combine: fp32 partial sums */
    EPC_SCRATCH_EXPERT,  /* epc_combine_buffer */
    EPC_SCRATCH_SEND,    /* flat: send records */
    EPC_SCRATCH_RECV,    /* flat: received records; hier: kept dispatch records */
    EPC_SCRATCH_COUNT
};

struct epc_ctx {
    epc_obj_t hdr;       /* magic EPC_MAGIC_CTX; its last_error */
    MPI_Comm comm;       /* dup of the user's, MPI_ERRORS_RETURN: data */
    MPI_Comm ctrl;       /* another dup: node exchanges and abort messages */
    epc_topo_t *topo;
    int rank, nranks, node, lrank, lsize;
    int num_experts, hidden, max_tokens, max_topk, timeout_ms;
    size_t chunk_bytes; /* EPC_CHUNK_KB: pipeline chunk per message */
    epc_algo_t algo;    /* EPC_ALGO: dispatch's algorithm when args leave it 0 */
    epc_dtype_t dtype;
    size_t elem_size;            /* bytes per element of a row */
    epc_transport_t transport;   /* EPC_TRANSPORT_MPI or _OFI */
    char provider_req[64];       /* asked for ("" = automatic) */
    char transport_reason[192];
    epc_shm_t *shm;
    epc_tr_t *tr;
    epc_abort_t abort;   /* peers' aborts, and telling them of this rank's */
    int failed;          /* a wait timed out or a transport failed: only destroy remains */
    int aborted;         /* epc_ctx_abort was called on this rank */
    uint64_t sent[4], recv[4]; /* by epc_link_class_t */
    /* private growable buffers of the collectives (epc_ctx_scratch) */
    struct {
        char *p;
        size_t cap;
    } scratch[EPC_SCRATCH_COUNT];
    uint64_t generation;       /* dispatches so far: stale handles are refused */
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

/* Adds a completed transport exchange's messages, whole (also when they
 * travelled in chunks). */
void epc_ctx_account_exchange(epc_ctx_t *ctx, const epc_tr_msg_t *sends, int nsends,
                              const epc_tr_msg_t *recvs, int nrecvs);

/* Shared memory: reserve (collective over the node), the region of local
 * rank `lrank`, and the fence (collective over the node). */
epc_status_t epc_ctx_shm_reserve(epc_ctx_t *ctx, size_t need, const char *phase);
char *epc_ctx_shm_region(const epc_ctx_t *ctx, int lrank, size_t *cap);
epc_status_t epc_ctx_shm_fence(epc_ctx_t *ctx, const char *phase);

/* Copies len bytes into local rank lrank's region at offset (bounds
 * checked) and accounts them. */
epc_status_t epc_ctx_shm_put(epc_ctx_t *ctx, int lrank, size_t offset, const void *src,
                             size_t len);

/* A private buffer of at least `need` bytes (grown x1.5, kept); its old
 * contents are not kept.  EPC_ERR_NO_MEMORY raised on failure. */
epc_status_t epc_ctx_scratch(epc_ctx_t *ctx, int which, size_t need, char **p);

/* Inter-node transport: grow regions (local) and exchange (accounted). */
epc_status_t epc_ctx_net_reserve(epc_ctx_t *ctx, size_t send, size_t recv);
epc_status_t epc_ctx_net_exchange(epc_ctx_t *ctx, const epc_tr_msg_t *sends, int nsends,
                                  const epc_tr_msg_t *recvs, int nrecvs, const char *phase);

#endif
