/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * request.h - a dispatch or combine in flight, and the progress engine
 * that advances it.
 *
 * A request is a schedule: a chain of steps, each a function that does
 * what it can without waiting (count, pack a chunk, post it, forward what
 * arrived, sum a node's outputs) and names the next step, or reports that it waits
 * (a message, a collective, the node fence).  The engine runs the steps of
 * every request in flight on the context whenever the caller tests or waits
 * on any of them, so no request stalls while the caller waits for another.
 * A waiting step is bounded: the context's timeout counts from the moment
 * it began to wait.
 */
#ifndef EPC_COLL_REQUEST_H
#define EPC_COLL_REQUEST_H

#include "coll.h"
#include "mpi_util.h"

/* One step: EPC_OK when it made progress (r->step is then the next step,
 * NULL once the request is complete), EPC_IN_PROGRESS when it waits, or an
 * error (raised into the context). */
typedef epc_status_t (*coll_step_t)(epc_request_t *r);

struct epc_request {
    epc_obj_t hdr; /* magic EPC_MAGIC_REQUEST while held by the caller */
    epc_ctx_t *ctx;
    epc_lane_t *lane; /* the buffers it moves data through */
    int is_dispatch;
    const char *fn;      /* the public name its errors carry */
    coll_step_t step;    /* the next step; NULL once finished */
    epc_status_t status; /* EPC_IN_PROGRESS until finished */
    int reported;        /* the caller was told it finished (test/wait):
                          * until then it counts as in flight, on every
                          * rank alike whatever progress each made */
    int waiting;         /* the current step waits since dl was set */
    epc_deadline_t dl;
    epc_coll_bytes_t bytes; /* moved by this call (the stats' last_*) */
    /* dispatch: what it was given, and where its results go */
    epc_dispatch_args_t args;
    epc_dispatch_out_t *out;
    epc_handle_t **handle_p;
    epc_handle_t *h;
    int cached;      /* *handle_p was given (no count exchange) */
    const char *src; /* the rows sent, h->row_bytes each: args.x or its FP8 payload */
    /* combine */
    epc_combine_args_t cargs;
    coll_step_t after;            /* run once the algorithm's steps end (the scalar channel) */
    struct coll_scalars *scalars; /* the scalar channel's exchange (scalars.c) */
    /* the count exchange, or the agreement of a cached dispatch / combine */
    int *rec_mine, *rec_all;
    epc_lane_coll_t xcoll; /* ... posted through its kind's lane */
    epc_status_t local;    /* this rank's own verdict before the exchange */
    epc_agree_t agree;
    /* the algorithm's schedule state, freed by algo_free (also after a
     * failure: it then abandons whatever is still posted) */
    void *algo;
    void (*algo_free)(epc_request_t *r);
    /* the low-latency mode's end of a request (ll.c), told its status
     * before algo_free; NULL: the dispatch's or combine's results */
    void (*finish)(epc_request_t *r, epc_status_t st);
    char error[EPC_ERR_TEXT_MAX]; /* the failure's text, told on every test */
};

/* The deadline of the current wait, started at its first call. */
epc_deadline_t coll_req_deadline(epc_request_t *r);

/* In a step that waits: EPC_IN_PROGRESS while the wait's deadline holds
 * (the deadline starts at the first call of a wait), else the deadline's
 * status unraised: EPC_ERR_TIMEOUT, or a peer's abort (raised by the
 * interrupt) - the caller names what it waited for. */
epc_status_t coll_req_waiting(epc_request_t *r);

/* Tests a collective r posted through its kind's lane (coll_req_lane)
 * once: EPC_OK when complete, EPC_IN_PROGRESS, EPC_ERR_TRANSPORT raised,
 * or as coll_req_waiting when the wait ends. */
epc_status_t coll_req_test_coll(epc_request_t *r, epc_lane_coll_t *c, const char *what);

/* A step's wait for the node fence `fence` of r's lane: EPC_OK once every
 * rank of the node arrived, EPC_IN_PROGRESS, or the error naming the rank
 * that did not arrive (phase). */
epc_status_t coll_req_fence(epc_request_t *r, uint64_t fence, const char *phase);

/* Combine, once the arguments are agreed, how rank s passed its outputs:
 * COLL_OUT_ROWS over its received rows (native payload), COLL_OUT_STAGED
 * in its staging area already (epc_combine_buffer of a hier handle), so
 * its node peers read them there; COLL_OUT_STAGE elsewhere (hier copies
 * them to its staging area first). */
int coll_req_in_place(const epc_request_t *r, int s);

/* A step's wait for a posted exchange *req of r's lane: EPC_OK once it
 * completed, EPC_IN_PROGRESS, or its error (the transport names the peer
 * it waited for); *req is NULL (freed) unless EPC_IN_PROGRESS. */
epc_status_t coll_req_net(epc_request_t *r, void **req);

/* What r needs only while it runs, kept by kind (dispatch or combine),
 * not by lane: at most one dispatch and one combine are in flight, and
 * blocking calls, which alternate lanes, then reuse the same memory and
 * communicator every time (measured: alternating them made blocking flat
 * dispatch 1.5-2x slower).  What must outlive the request (received rows,
 * expert outputs, the shared regions, the transport) stays with the lane.
 *  coll_req_scratch: a private buffer of at least need bytes
 *    (EPC_SCRATCH_SEND, _RECV, _PARTIAL, _PAYLOAD);
 *  coll_req_lane: the lane whose door (epc_lane_allgather_post, ...)
 *    and communicator carry its collectives (the count exchange, the
 *    verdicts, the agreement of a cached dispatch, flat's exchange); the
 *    concurrent request, of the other kind, uses the other one, so their
 *    collectives never need the same order on every rank. */
epc_status_t coll_req_scratch(epc_request_t *r, int which, size_t need, char **p);
epc_lane_t *coll_req_lane(const epc_request_t *r);

/* The combine's scalar channel (scalars.c), once every rank asked for it:
 * posts the exchange of each received row's scalar back to its source and
 * makes the request finish it (r->after) when the algorithm ends; and
 * frees its state (NULL accepted). */
epc_status_t coll_scalars_post(epc_request_t *r);
void coll_scalars_free(epc_request_t *r);

/* The schedules' first steps (the plan's, the algorithms'). */
epc_status_t coll_plan_step_post(epc_request_t *r);
epc_status_t coll_hier_dispatch_begin(epc_request_t *r);
epc_status_t coll_hier_combine_begin(epc_request_t *r);
epc_status_t coll_flat_dispatch_begin(epc_request_t *r);
epc_status_t coll_flat_combine_begin(epc_request_t *r);

/* Where a hier handle's expert outputs are staged for combine on this
 * rank (num_rows rows in the context's dtype, in its node's shared
 * memory, read there by its node peers), or NULL when the handle's
 * regions do not hold them. */
char *coll_hier_staging(epc_ctx_t *ctx, const epc_handle_t *h);

/* What combine reads of rank s's expert outputs (coll_req_in_place). */
enum { COLL_OUT_STAGE = 0, COLL_OUT_ROWS = 1, COLL_OUT_STAGED = 2 };

/* A new request on lane ln, counted in the context's requests in flight
 * (EPC_ERR_CAPACITY raised when all are held, EPC_ERR_NO_MEMORY). */
epc_status_t coll_req_new(epc_ctx_t *ctx, epc_lane_t *ln, int is_dispatch, const char *fn,
                          epc_request_t **rp);

/* Runs the steps of every request in flight on ctx as far as they go
 * without waiting. */
void coll_progress(epc_ctx_t *ctx);

/* The progress thread's pass over the context arg (lock held): how many
 * requests still run. */
int coll_poll(void *arg);

/* Context destruction: requests still held are freed, those in flight
 * abandoned first (which fails the context and tells the peers, as a
 * timeout would: their partners are gone). */
void coll_req_free_all(epc_ctx_t *ctx);

#endif
