/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * comm.h - the communication object: what moves bytes between the ranks
 * of a context, knowing nothing of tokens or experts.  Its communicators,
 * the topology and this rank's place in it, the lanes (lane.h: shared
 * regions, transport), who progresses them (progress.h), the abort state,
 * the deadline of every wait and the byte counters by link class.  The
 * job context (collectives/context.h: token shape, algorithm, requests,
 * private buffers, statistics) owns one and lives above it; failures here
 * are raised into the owner's last error.
 */
#ifndef EPC_COMM_COMM_H
#define EPC_COMM_COMM_H

#include <mpi.h>
#include <stdint.h>

#include "abort.h"
#include "epcomm.h"
#include "error.h"
#include "lane.h"
#include "progress.h"
#include "shm.h"
#include "topo.h"
#include "tr.h"

/* What the caller asked of the communication (0: EPC_* variable, else
 * the built-in default). */
typedef struct epc_comm_params {
    epc_transport_t transport;
    const char *ofi_provider;
    int ranks_per_node;
    int timeout_ms;
    epc_progress_t progress;
} epc_comm_params_t;

typedef struct epc_comm {
    epc_obj_t *owner; /* whose last error the failures here raise */
    MPI_Comm mpi;     /* dup of the user's, MPI_ERRORS_RETURN: data */
    MPI_Comm ctrl;    /* another dup: node exchanges and abort messages */
    epc_topo_t *topo;
    int rank, nranks, node, lrank, lsize;
    int ranks_per_node; /* asked (0: one node per host) */
    int timeout_ms;
    size_t chunk_bytes;        /* EPC_CHUNK_KB: pipeline chunk per message */
    epc_transport_t transport; /* EPC_TRANSPORT_MPI or _OFI */
    char provider_req[64];     /* asked for ("" = automatic) */
    char transport_reason[192];
    epc_lane_t lane[EPC_LANES];    /* dispatches alternate between them */
    epc_progress_state_t progress; /* the caller's, or a thread's */
    epc_abort_t abort;             /* peers' aborts, and telling them of this rank's */
    int failed;  /* a wait timed out or a transport failed: only destroy remains */
    int aborted; /* epc_ctx_abort was called on this rank */
    uint64_t sent[EPC_LINK_CLASS_COUNT], recv[EPC_LINK_CLASS_COUNT]; /* by epc_link_class_t */
    unsigned char *link_class; /* [nranks]: epc_link_class_t of each peer, for the counters */
} epc_comm_t;

/* Creation in phases, so the owner can agree on its own checks between
 * them (every phase's failure is raised into owner):
 *   open     dups comm twice (bounded), this rank and the size;
 *   resolve  params > EPC_* > defaults (local: EPC_ERR_INVALID_ARG, or
 *            EPC_ERR_UNSUPPORTED for a transport or progress thread this
 *            build or MPI cannot give);
 *   shared   the values every rank must hold alike, with their names
 *            (returns how many, at most EPC_COMM_SHARED);
 *   build    topology, lanes, abort area, link classes, the progress
 *            thread polling poll(arg) (collective; agreed at the end).
 * close frees whatever was made (local; accepts an object only opened). */
#define EPC_COMM_SHARED 5
epc_status_t epc_comm_open(epc_comm_t *cm, MPI_Comm comm, epc_obj_t *owner);
epc_status_t epc_comm_resolve(epc_comm_t *cm, const epc_comm_params_t *p);
int epc_comm_shared(const epc_comm_t *cm, const char **names, double *values);
epc_status_t epc_comm_build(epc_comm_t *cm, epc_progress_poll_t poll, void *arg);
void epc_comm_close(epc_comm_t *cm);

/* Destruction's wait: no rank frees its regions while a peer may still
 * write into them (a barrier, bounded), unless the object failed or was
 * aborted (the peers stopped writing, or are gone). */
epc_status_t epc_comm_quiesce(epc_comm_t *cm, const char *fn);

/* What every call that communicates checks first: not aborted by this
 * rank (EPC_ERR_INVALID_ARG), no peer's abort seen (EPC_ERR_PEER_FAILED
 * naming it), no earlier timeout or transport failure
 * (EPC_ERR_TRANSPORT).  Raised naming fn. */
epc_status_t epc_comm_enter(epc_comm_t *cm, const char *fn);

/* What every such call does with its final status: after a timeout or a
 * transport failure the object is failed, and its peers are told (so they
 * stop waiting for this rank now, not at their deadline).  Returns st. */
epc_status_t epc_comm_leave(epc_comm_t *cm, epc_status_t st);

/* Deadline of a wait starting now; a peer's abort interrupts it. */
epc_deadline_t epc_comm_deadline(const epc_comm_t *cm);

/* Adds bytes moved between this rank and `peer` (a rank of cm->mpi). */
void epc_comm_account(epc_comm_t *cm, int peer, uint64_t bytes, int sent);

/* epc_ctx_abort's work: marks this rank aborted and tells the peers. */
void epc_comm_abort(epc_comm_t *cm, const char *reason);

/* The traffic and memory fields of epc_ctx_stats (caller holds the lock). */
void epc_comm_stats(const epc_comm_t *cm, epc_ctx_stats_t *s);

/* epc_ctx_pair_exchange: arguments agreed, then the exchange (collective). */
epc_status_t epc_comm_pair_exchange(epc_comm_t *cm, epc_path_t path, size_t bytes);

#endif
