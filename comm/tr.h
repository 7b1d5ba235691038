/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * tr.h - inter-node transports behind one small ops table (mpi, ofi).
 *
 * A transport owns a send region and a receive region (registered with the
 * network where it must be), grown on demand and never shrunk.  One
 * exchange moves a set of messages: each rank lists what it sends (peer,
 * offset in its send region, length) and what it expects (peer, offset in
 * its receive region, length); messages of length 0 are skipped on both
 * sides.  A receive may be longer than its message when both are at most
 * piece_max bytes (the low-latency mode's, whose length the sender
 * alone knows).  Messages between one pair within one exchange must be listed in
 * the same order by both.  Every wait has a deadline; after a timeout or
 * failure the transport is broken and refuses further exchanges.
 *
 * A transport may also offer one-sided exchanges (ofi: fi_writedata): once
 * every rank exposed its receive region (epc_tr_expose, collective; the
 * region never grows again), a write exchange puts each send straight into
 * the peer's receive region at the send's `remote` offset, and each listed
 * receive completes when that peer's write of this exchange has landed
 * (one write per pair and exchange; the receiver learns the length from
 * the data).  The ranks must run their exchanges in the same order, as
 * for two-sided ones: the exchange's number travels with each write.  A
 * write lands when its sender sends it, not when the receiver is ready:
 * the caller must see that no peer writes a place again before this rank
 * has read it (the low-latency mode: a non-empty message each way between
 * every pair in every exchange, and slots alternating by parity, so a peer
 * is at most one exchange ahead).
 */
#ifndef EPC_COMM_TR_H
#define EPC_COMM_TR_H

#include <mpi.h>
#include <stddef.h>

#include "epcomm.h"
#include "error.h"
#include "timer.h"

typedef struct epc_tr epc_tr_t;

typedef struct epc_tr_msg {
    int peer;      /* rank in the transport's communicator */
    size_t offset; /* in the local send (or receive) region */
    size_t len;    /* bytes */
    size_t remote; /* a write's offset in the peer's receive region */
} epc_tr_msg_t;

typedef struct epc_tr_ops {
    const char *name;
    /* Sets up the local endpoint (no communication). */
    epc_status_t (*init)(epc_tr_t *tr, const char *provider);
    /* Learns the peers' addresses (collective over tr->comm; called on every
     * rank once all inits succeeded). */
    epc_status_t (*connect)(epc_tr_t *tr);
    void (*fini)(epc_tr_t *tr);
    /* Makes the regions at least send/recv bytes (local). */
    epc_status_t (*reserve)(epc_tr_t *tr, size_t send, size_t recv);
    /* Posts an exchange (copies the lists it needs); *req to test/wait. */
    epc_status_t (*start)(epc_tr_t *tr, const epc_tr_msg_t *sends, int nsends,
                          const epc_tr_msg_t *recvs, int nrecvs, const char *phase, void **req);
    /* Drives progress; *done = 1 when everything of req completed. */
    epc_status_t (*test)(epc_tr_t *tr, void *req, int *done);
    /* Completes req by the deadline (naming phase and peer on timeout) and
     * frees it, also on failure. */
    epc_status_t (*wait)(epc_tr_t *tr, void *req, epc_deadline_t dl);
    /* 1 when receive i of req (its index in the receive list) completed:
     * its bytes are in the receive region.  Drives no progress beyond
     * what the transport's own test does. */
    int (*arrived)(epc_tr_t *tr, void *req, int i);
    /* Optional (NULL: two-sided only).  expose: collective over tr->comm;
     * *all = 1 when every rank registered its receive region for writes
     * (want = 0 on any rank: none does); write_start: as start, a write
     * exchange (test and wait complete it). */
    epc_status_t (*expose)(epc_tr_t *tr, int want, int *all);
    epc_status_t (*write_start)(epc_tr_t *tr, const epc_tr_msg_t *sends, int nsends,
                                const epc_tr_msg_t *recvs, int nrecvs, const char *phase,
                                void **req);
} epc_tr_ops_t;

struct epc_tr {
    const epc_tr_ops_t *ops;
    epc_obj_t *owner; /* error texts also go to the owning context */
    MPI_Comm comm;    /* the context's duplicated communicator */
    int rank, size;
    char *send_buf, *recv_buf;
    size_t send_cap, recv_cap;
    unsigned epoch;                         /* exchanges so far: keeps their messages apart */
    int broken;                             /* after a timeout or failure */
    unsigned grows;                         /* times a region grew */
    long timeout_ms;                        /* bound of waits inside start and of creation */
    epc_status_t (*interrupted)(void *arg); /* ends waits inside start early */
    void *interrupt_arg;
    char provider[64]; /* libfabric provider in use, "" for mpi */
    size_t piece_max;  /* a message up to this long travels whole, so its
                        * receive may be posted longer than it (the bytes
                        * received are then a prefix) */
    int exposed;       /* write exchanges possible (epc_tr_expose) */
    size_t *peer_recv; /* [size] after the exposure: each rank's receive region */
    void *impl;        /* transport-private state */
};

extern const epc_tr_ops_t epc_tr_mpi_ops;
#ifdef EPC_HAVE_OFI
extern const epc_tr_ops_t epc_tr_ofi_ops;
#endif

/* Creates the transport `kind` over comm (collective, each step bounded by
 * timeout_ms; every rank returns the same status). */
epc_status_t epc_tr_create(epc_transport_t kind, const char *provider, MPI_Comm comm,
                           long timeout_ms, epc_obj_t *owner, epc_tr_t **tr_p);

/* The deadline of a wait inside the transport starting now (timeout_ms,
 * interrupted like the context's). */
epc_deadline_t epc_tr_deadline(const epc_tr_t *tr);
void epc_tr_destroy(epc_tr_t *tr);

/* Grows the regions to at least the given sizes (amortised: at least 1.5x
 * the old capacity), keeping their contents. */
epc_status_t epc_tr_reserve(epc_tr_t *tr, size_t send, size_t recv);

/* Checks the message lists against the regions, then runs the exchange. */
epc_status_t epc_tr_exchange(epc_tr_t *tr, const epc_tr_msg_t *sends, int nsends,
                             const epc_tr_msg_t *recvs, int nrecvs, epc_deadline_t dl,
                             const char *phase);

/* The same in steps, so several exchanges can be in flight and work can
 * overlap them: start (checks and posts), test (progress), wait (completes
 * and frees the request, also on failure).  A failure breaks the
 * transport. */
epc_status_t epc_tr_start(epc_tr_t *tr, const epc_tr_msg_t *sends, int nsends,
                          const epc_tr_msg_t *recvs, int nrecvs, const char *phase, void **req);
epc_status_t epc_tr_test(epc_tr_t *tr, void *req, int *done);
/* 1 when receive i of a started exchange completed (tr.h's ops). */
int epc_tr_arrived(epc_tr_t *tr, void *req, int i);
epc_status_t epc_tr_wait(epc_tr_t *tr, void *req, epc_deadline_t dl);

/* Collective over tr->comm (bounded by the transport's timeout; every rank
 * gets the same *exposed): makes write exchanges possible when the
 * transport offers them and every rank passes want = 1; afterwards the
 * receive region keeps its size (a larger reserve is EPC_ERR_INTERNAL).
 * *exposed = 0 (EPC_OK) where the transport has no writes. */
epc_status_t epc_tr_expose(epc_tr_t *tr, int want, int *exposed);

/* A write exchange (after epc_tr_expose gave *exposed = 1): checks each
 * send against this region and the peer's, then posts it; completed by
 * epc_tr_test/epc_tr_wait. */
epc_status_t epc_tr_write_start(epc_tr_t *tr, const epc_tr_msg_t *sends, int nsends,
                                const epc_tr_msg_t *recvs, int nrecvs, const char *phase,
                                void **req);

/* New capacity for a region that must hold `need` bytes: need and 1/8
 * more, at least 1.5x cap (few grows as traffic rises). */
size_t epc_tr_grow_size(size_t cap, size_t need);

#endif
