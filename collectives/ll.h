/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * ll.h - the low-latency mode (epc_ll_*): buffers fixed at
 * epc_ll_enable, no count round, one message or one block of rows and a
 * flag per peer per call.
 *
 * Each rank's node region (its own lane's shared memory) holds two sets,
 * one per call parity, each laid out as:
 *   ctl    one line per local source rank: flag, status, payload kind,
 *          rows per local expert, the reason of a failure;
 *   ready  this rank's combine flag (its expert outputs are in `out`),
 *          numbered by combine (ll->combines), not by dispatch, on the line
 *          of that number's parity (ll_ready);
 *   tok    [epr x slots] source token of each received row;
 *   rows   [epr x slots] received rows, `stride` bytes apart;
 *   out    [epr x slots x hidden] expert outputs (epc_ll_combine_buffer).
 * slots = R x max: source s's rows of an expert are slots s x max + i,
 * i = the row's index among s's rows to that expert, which s knows
 * alone.  A flag is 2 x call + failed (calls count from 1, so 0 is
 * "never"), stored with release after everything it covers: a reader that
 * loads it with acquire and sees its call sees the rows and counts too.
 *
 * Inter-node, each pair exchanges one message per call through the
 * lane's transport: a write straight into the receiver's slot for this
 * source where the transport offers writes, else a two-sided message into
 * a receive posted at the largest size.  A dispatch message holds a
 * header, then one record per token (its index, its experts on the
 * receiver, its row); a combine message a header, then the outputs in
 * the order the source can compute (expert ascending, then slot), of a
 * length both sides know.
 */
#ifndef EPC_COLL_LL_H
#define EPC_COLL_LL_H

#include <stdatomic.h>

#include "coll.h"
#include "request.h"

#define LL_SETS 2
#define LL_MAX_TOKENS 65536

/* What one buffer set holds of the call that last used it. */
typedef struct ll_set {
    uint64_t call;    /* the dispatch using it (from 1); 0: none yet */
    int complete;     /* its dispatch completed here: its out is valid */
    int combined;     /* its combine ran (or there is none to do): not again */
    int combining;    /* a combine of it is in flight */
    int T, k, fp8;    /* this rank's tokens, topk, payload kind */
    int32_t *idx;     /* [max x k_max] this rank's topk_idx */
    int32_t *slot;    /* [max x k_max]: the row's index in its block */
    int *sent;        /* [E]: rows this rank sent per expert */
    int *count;       /* [epr]: rows received per local expert */
    int *src_count;   /* [epr x R] */
    epc_ll_out_t out; /* what the dispatch delivered */
} ll_set_t;

typedef struct coll_ll {
    epc_lane_t lane; /* its own regions, transport and communicator */
    int max, E, R, epr, k_max, hidden, slots;
    size_t nrow;   /* a row in the context's dtype (combine's; dispatch's largest) */
    size_t stride; /* between received rows: nrow rounded to 64 */
    size_t ctl_line, ready_line, hdr;
    size_t dcap, ccap; /* a dispatch / combine message's slot */
    size_t off_ctl, off_ready, off_tok, off_rows, off_out, set_bytes;
    size_t net_comb;   /* where the combine slots start in the transport regions */
    int writes;        /* inter-node messages are writes into the receiver's
                        * exposed region (ofi: fi_writedata), not tagged
                        * messages into receives posted ahead */
    uint64_t calls;    /* dispatches started */
    uint64_t combines; /* combines started: every rank's n-th is the same
                        * collective, whatever its arguments, so its flags
                        * and messages carry this number, not the dispatch's */
    ll_set_t set[LL_SETS];
    char *payload;  /* [max x FP8 row]: this rank's rows cast */
    float *acc;     /* [hidden] */
    int *cursor;    /* [2 x R] scratch */
    int *pre;       /* [E] scratch */
    int *net_index; /* [R]: a source's place in a call's receive list (the
                     * ranks of other nodes, ascending); -1 on this node */
} coll_ll_t;

/* A source's line in a receiver's ctl area. */
typedef struct ll_ctl {
    _Atomic uint64_t flag;
    int32_t status, fp8;
    char reason[EPC_REASON_LEN];
    int32_t count[]; /* [epr] */
} ll_ctl_t;

/* A message's header (both kinds); followed by the records or rows. */
typedef struct ll_hdr {
    uint64_t call;
    int32_t status, ntok, k, fp8;
    char reason[EPC_REASON_LEN];
} ll_hdr_t;

/* The state of one low-latency request (r->algo). */
typedef struct ll_req {
    coll_ll_t *ll;
    ll_set_t *set;
    uint64_t call;       /* the dispatch's call (its set: call % LL_SETS) */
    uint64_t seq;        /* a combine's number (ll->combines), in its flags */
    int own_set;         /* a combine's `dispatched` was valid: its set is done after it */
    void *net;           /* the posted exchange, NULL once complete */
    int flags_seen;      /* same-node sources (or dests) whose flag arrived */
    int taken;           /* dispatch: sources whose rows are placed, in rank order */
    epc_status_t failed; /* dispatch: source `taken`'s failure, told once the
                          * exchange completed (its text in failed_text) */
    char failed_text[EPC_ERR_TEXT_MAX];
    epc_ll_out_t *out; /* dispatch: the caller's */
    epc_ll_combine_args_t cargs;
} ll_req_t;

/* Whether rank d is on this rank's node. */
static inline int ll_same_node(const epc_ctx_t *ctx, int d)
{
    return ctx->comm.topo->node_of[d] == ctx->comm.node;
}

/* Set b's base in local rank l's region. */
static inline char *ll_base(const coll_ll_t *ll, int l, int b)
{
    size_t cap;
    return epc_lane_shm_region(&ll->lane, l, &cap) + (size_t)b * ll->set_bytes;
}
static inline ll_ctl_t *ll_ctl(const coll_ll_t *ll, int l, int b, int src_l)
{
    return (ll_ctl_t *)(void *)(ll_base(ll, l, b) + ll->off_ctl + (size_t)src_l * ll->ctl_line);
}
/* Local rank l's flag of combine number seq: two lines, by the number's
 * parity (not the set's: a combine with a bad `dispatched` answers on
 * another's set, and two in a row on one set must not share a line).  A
 * line is written again two combines later, which every peer starts only
 * after it read this one (each combine waits for every peer's flag). */
static inline ll_ctl_t *ll_ready(const coll_ll_t *ll, int l, uint64_t seq)
{
    return (ll_ctl_t *)(void *)(ll_base(ll, l, (int)(seq % LL_SETS)) + ll->off_ready);
}
/* Where combine number seq's message to or from `peer` lies in the
 * transport regions: by the combine's parity, not its set's, as the
 * ready lines are.  Two combines in a row may answer on one set (a bad
 * `dispatched`); a peer writing straight into this rank's region may
 * start the second before this rank read the first, and two combines in
 * a row never share a slot.  A slot is written again two combines later,
 * which a peer starts only after this rank read this one (docs/
 * LOW_LATENCY.md, "The sets"). */
static inline size_t ll_comb_slot(const coll_ll_t *ll, uint64_t seq, int peer)
{
    return ll->net_comb + ((size_t)(seq % LL_SETS) * ll->R + (size_t)peer) * ll->ccap;
}

/* A dispatch record's bytes for topk k and rows of row_bytes. */
static inline size_t ll_unit(int k, size_t row_bytes)
{
    return (((size_t)(2 + k) * 4 + 15) & ~(size_t)15) + ((row_bytes + 15) & ~(size_t)15);
}

/* The request's set flag: 2 x call + (status failed). */
static inline uint64_t ll_flag(uint64_t call, epc_status_t st)
{
    return 2 * call + (st != EPC_OK);
}

/* How the mode's messages cross between nodes (epc_ctx_stats_t's
 * ll_transfer): "write", "send", or "" (NULL ll, or one node). */
const char *coll_ll_transfer(const coll_ll_t *ll);

/* Frees the mode's state (local; NULL accepted): after the quiesce. */
void coll_ll_free(coll_ll_t *ll);

/* Steps and starts (ll_dispatch.c, ll_combine.c): the start sends (a bad
 * argument as this rank's verdict), the steps receive. */
epc_status_t coll_ll_dispatch_send(epc_request_t *r, const epc_ll_dispatch_args_t *a,
                                   epc_status_t local);
epc_status_t coll_ll_combine_send(epc_request_t *r, epc_status_t local);

/* Posts the call's inter-node messages (sends, then nr receives, in msgs)
 * as writes or two-sided messages (ll->writes), into q->net; nothing when
 * there are none (one node). */
epc_status_t coll_ll_post(epc_request_t *r, const epc_tr_msg_t *msgs, int ns, int nr,
                          const char *phase);

/* Keeps this rank's verdict (r->local) and its text (r->error) for the
 * step that reports it and the messages that carry it. */
void coll_ll_keep_local(epc_request_t *r, epc_status_t local);

/* dst[EPC_REASON_LEN] = the local verdict's text, cut ("" if none). */
void coll_ll_reason(char *dst, const epc_request_t *r);

/* A waiting step's deadline error naming the rank whose flag did not
 * come (what: "rows", "outputs"). */
epc_status_t coll_ll_flag_wait(epc_request_t *r, int lrank, const char *what);

/* The first failed verdict among this rank's own (r->local) and every
 * source's, as the step's error; EPC_OK if none. */
epc_status_t coll_ll_verdict(epc_request_t *r, int rank, int32_t status, const char *reason);

#endif
