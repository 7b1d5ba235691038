/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * tr_ofi_xchg.c - one exchange over the ofi transport: post every receive
 * piece, then every send piece, then read the completion queue (which also
 * drives manual progress) until all are done or the deadline passes.
 *
 * A write exchange posts no receives: each send is one fi_writedata into
 * the peer's exposed region with (exchange number, rank) as remote CQ
 * data, and each expected peer's entry is an operation the queue's remote
 * completion marks done.  A peer may be an exchange ahead (it finished the
 * one this rank still waits in and wrote its next); its completion is kept
 * until this rank starts that exchange.  The completion at the target
 * follows the data's placement (libfabric's rule for remote CQ data), so a
 * receiver that saw it reads the whole write.
 */
#include "build_config.h"

#ifdef EPC_HAVE_OFI

#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>
#include <rdma/fi_tagged.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "ofi.h"

typedef struct xchg xchg_t;

typedef struct op {
    struct fi_context2 ctx; /* first: completions hand it back */
    xchg_t *owner;          /* several exchanges may be in flight */
    int msg;                /* index in the request's message list */
    int peer, is_recv, done;
} op_t;

struct xchg {
    epc_tr_t *tr;
    ofi_t *o;
    op_t *ops;
    int nops, posted, completed, nr;
    epc_tr_msg_t *msgs; /* recvs then sends */
    const char *phase;
    int write;      /* a write exchange */
    unsigned epoch; /* its number (tr->epoch when it started) */
    xchg_t *next;   /* in o->writes while in flight */
};

static size_t pieces(const ofi_t *o, size_t len)
{
    return len / o->max_msg + (len % o->max_msg != 0); /* max_msg may be SIZE_MAX */
}

static uint64_t tag_of(unsigned epoch, unsigned seq, int src)
{
    return ((uint64_t)(epoch & 0xffff) << 48) | ((uint64_t)(seq & 0xffff) << 32) | (uint32_t)src;
}

/* Marks the expected write of (exchange, peer) done in the exchange in
 * flight that waits for it; 1 if one did. */
static int claim(xchg_t *x, unsigned epoch12, int src)
{
    if ((x->epoch & 0xfff) != epoch12)
        return 0;
    for (int i = 0; i < x->nr; i++) {
        op_t *op = &x->ops[i];
        if (op->peer == src && !op->done) {
            op->done = 1;
            x->completed++;
            return 1;
        }
    }
    return 0;
}

/* A peer's write (its remote CQ data) landed: done for the exchange that
 * waits for it, else kept for the exchange this rank has not started yet
 * (bounded: a peer is at most an exchange or two ahead). */
static epc_status_t landed(epc_tr_t *tr, uint32_t data)
{
    ofi_t *o = tr->impl;
    unsigned epoch12 = data >> 20;
    int src = (int)(data & (OFI_WRITE_RANKS - 1));
    for (xchg_t *x = o->writes; x != NULL; x = x->next)
        if (claim(x, epoch12, src))
            return EPC_OK;
    if (o->nearly == o->early_cap) {
        int cap = o->early_cap ? 2 * o->early_cap : 64;
        uint32_t *p = cap <= 8 * tr->size + 64 ? realloc(o->early, (size_t)cap * sizeof *p) : NULL;
        if (p == NULL)
            return epc_error_obj(tr->owner, EPC_ERR_INTERNAL,
                                 "ofi transport (%s): %d writes from peers that no exchange of "
                                 "this rank expects (the last from rank %d)",
                                 tr->provider, o->nearly + 1, src);
        o->early = p;
        o->early_cap = cap;
    }
    o->early[o->nearly++] = data;
    return EPC_OK;
}

/* Reads completions (of any exchange in flight); EPC_OK or a raised error. */
static epc_status_t progress(epc_tr_t *tr)
{
    ofi_t *o = tr->impl;
    struct fi_cq_tagged_entry ent[16];
    ssize_t n = fi_cq_read(o->cq, ent, 16);
    if (n > 0) {
        epc_status_t st = EPC_OK;
        for (ssize_t i = 0; i < n; i++) {
            op_t *op = ent[i].op_context;
            if (ent[i].flags & FI_REMOTE_CQ_DATA) { /* a peer's write landed here */
                epc_status_t lst = landed(tr, (uint32_t)ent[i].data);
                st = st != EPC_OK ? st : lst;
                continue;
            }
            op->done = 1;
            op->owner->completed++;
        }
        return st;
    }
    if (n == -FI_EAGAIN)
        return EPC_OK;
    if (n == -FI_EAVAIL) {
        struct fi_cq_err_entry err = {0};
        char buf[256] = "";
        op_t *op;
        if (fi_cq_readerr(o->cq, &err, 0) < 0)
            return OFI_ERR(tr, "fi_cq_readerr", -FI_EOTHER);
        op = err.op_context;
        if (op != NULL && err.err == FI_ECANCELED) { /* our own cancel after a failure */
            op->done = 1;
            op->owner->completed++;
            return EPC_OK;
        }
        fi_cq_strerror(o->cq, err.prov_errno, err.err_data, buf, sizeof buf);
        return epc_error_obj(tr->owner, EPC_ERR_TRANSPORT,
                             "%s: ofi transport (%s): %s to/from rank %d failed: %s (%s)",
                             op ? op->owner->phase : "?", tr->provider,
                             op && op->is_recv ? "receive" : "send", op ? op->peer : -1,
                             fi_strerror(err.err), buf);
    }
    return OFI_ERR(tr, "fi_cq_read", n);
}

/* Hands one piece to the provider: a tagged receive or send (arg: the
 * tag), or a write (arg: the offset in the peer's region). */
static ssize_t issue(xchg_t *x, op_t *op, char *buf, size_t len, void *desc, uint64_t arg)
{
    ofi_t *o = x->o;
    if (op->is_recv)
        return fi_trecv(o->ep, buf, len, desc, FI_ADDR_UNSPEC, arg, 0, &op->ctx);
    if (x->write)
        return fi_writedata(o->ep, buf, len, desc, ofi_write_data(x->epoch, x->tr->rank),
                            o->addr[op->peer], o->rbase[op->peer] + arg, o->rkey[op->peer],
                            &op->ctx);
    return fi_tsend(o->ep, buf, len, desc, o->addr[op->peer], arg, &op->ctx);
}

/* Posts one piece, driving progress while the provider says EAGAIN. */
static epc_status_t post(xchg_t *x, op_t *op, char *buf, size_t len, void *desc, int peer,
                         uint64_t arg)
{
    epc_deadline_t dl = epc_tr_deadline(x->tr);
    for (;;) {
        ssize_t rc = issue(x, op, buf, len, desc, arg);
        epc_status_t st;
        if (rc == 0) {
            x->posted++;
            return EPC_OK;
        }
        if (rc != -FI_EAGAIN)
            return OFI_ERR(x->tr,
                           op->is_recv ? "fi_trecv"
                           : x->write  ? "fi_writedata"
                                       : "fi_tsend",
                           rc);
        if ((st = progress(x->tr)) != EPC_OK)
            return st;
        if ((st = epc_deadline_check(dl)) == EPC_ERR_TIMEOUT)
            return epc_error_obj(x->tr->owner, EPC_ERR_TIMEOUT,
                                 "%s: ofi transport (%s) could not post to rank %d before the "
                                 "deadline",
                                 x->phase, x->tr->provider, peer);
        if (st != EPC_OK) /* a peer aborted: keep whom this rank was posting to */
            return epc_error_context(x->tr->owner, st, "%s: ofi transport (%s) posting to rank %d",
                                     x->phase, x->tr->provider, peer);
        sched_yield();
    }
}

/* Posts every piece of one side's messages; seq counts pieces per peer. */
static epc_status_t post_side(xchg_t *x, int first, int n, int is_recv, unsigned *seq)
{
    epc_tr_t *tr = x->tr;
    char *region = is_recv ? tr->recv_buf : tr->send_buf;
    void *desc = x->o->mr_local ? fi_mr_desc(is_recv ? x->o->recv_mr : x->o->send_mr) : NULL;
    memset(seq, 0, (size_t)tr->size * sizeof *seq);
    for (int i = first; i < first + n; i++) {
        const epc_tr_msg_t *m = &x->msgs[i];
        for (size_t p = 0, np = pieces(x->o, m->len); p < np; p++) {
            size_t off = p * x->o->max_msg, len = m->len - off;
            op_t *op = &x->ops[x->posted];
            epc_status_t st;
            len = len < x->o->max_msg ? len : x->o->max_msg;
            *op = (op_t){.owner = x, .msg = i, .peer = m->peer, .is_recv = is_recv};
            st = post(x, op, region + m->offset + off, len, desc, m->peer,
                      tag_of(tr->epoch, seq[m->peer]++, is_recv ? m->peer : tr->rank));
            if (st != EPC_OK)
                return st;
        }
    }
    return EPC_OK;
}

/* 1 while an operation handed to the provider has not completed (a write
 * exchange's expected writes are not the provider's operations). */
static int provider_pending(const xchg_t *x)
{
    for (int i = x->write ? x->nr : 0; i < x->posted; i++)
        if (!x->ops[i].done)
            return 1;
    return 0;
}

/* After a failure: cancel the receives still posted and drain briefly, so
 * no completion later points into freed memory of this request. */
static void abandon(xchg_t *x)
{
    epc_deadline_t drain = epc_deadline_in_ms(200);
    for (int i = 0; i < x->posted && !x->write; i++)
        if (!x->ops[i].done && x->ops[i].is_recv)
            fi_cancel(&x->o->ep->fid, &x->ops[i].ctx);
    while (provider_pending(x) && !epc_deadline_expired(drain))
        if (progress(x->tr) != EPC_OK)
            break;
}

static void xchg_free(xchg_t *x)
{
    for (xchg_t **p = &x->o->writes; *p != NULL; p = &(*p)->next)
        if (*p == x) {
            *p = x->next;
            break;
        }
    free(x->ops);
    free(x->msgs);
    free(x);
}

/* x->msgs = the receives, then the sends (the lists may be NULL when
 * empty). */
static void copy_lists(xchg_t *x, const epc_tr_msg_t *sends, int ns, const epc_tr_msg_t *recvs,
                       int nr)
{
    if (nr > 0)
        memcpy(x->msgs, recvs, (size_t)nr * sizeof *recvs);
    if (ns > 0)
        memcpy(x->msgs + nr, sends, (size_t)ns * sizeof *sends);
}

/* A start's end: *req = x, or, after a failure, what was posted drained
 * and x freed. */
static epc_status_t started(xchg_t *x, epc_status_t st, void **req)
{
    if (st == EPC_OK) {
        *req = x;
        return EPC_OK;
    }
    if (x != NULL) {
        if (x->ops != NULL)
            abandon(x);
        xchg_free(x);
    }
    return st;
}

epc_status_t epc_ofi_start(epc_tr_t *tr, const epc_tr_msg_t *sends, int ns,
                           const epc_tr_msg_t *recvs, int nr, const char *phase, void **req)
{
    xchg_t *x = calloc(1, sizeof *x);
    unsigned *seq = malloc((size_t)tr->size * sizeof *seq);
    epc_status_t st = EPC_OK;
    if (x != NULL)
        *x = (xchg_t){.tr = tr, .o = tr->impl, .nr = nr, .phase = phase};
    if (x == NULL || seq == NULL ||
        (x->msgs = malloc((size_t)(ns + nr + 1) * sizeof *x->msgs)) == NULL)
        st = epc_error_obj(tr->owner, EPC_ERR_NO_MEMORY, "%s: %d messages", phase, ns + nr);
    if (st == EPC_OK) {
        copy_lists(x, sends, ns, recvs, nr);
        for (int i = 0; i < ns + nr; i++)
            x->nops += (int)pieces(x->o, x->msgs[i].len);
        if ((x->ops = calloc((size_t)x->nops + 1, sizeof *x->ops)) == NULL)
            st = epc_error_obj(tr->owner, EPC_ERR_NO_MEMORY, "%s: %d operations", phase, x->nops);
    }
    if (st == EPC_OK)
        st = post_side(x, 0, nr, 1, seq);
    if (st == EPC_OK)
        st = post_side(x, nr, ns, 0, seq);
    free(seq);
    return started(x, st, req);
}

/* The expected writes of x (one per listed peer; none for length 0), and
 * those that came before it started. */
static void expect_writes(xchg_t *x)
{
    ofi_t *o = x->o;
    for (int i = 0; i < x->nr; i++) {
        op_t *op = &x->ops[x->posted++];
        *op = (op_t){.owner = x, .msg = i, .peer = x->msgs[i].peer, .is_recv = 1};
        op->done = x->msgs[i].len == 0;
        x->completed += op->done;
    }
    for (int i = 0; i < o->nearly; i++)
        if (claim(x, o->early[i] >> 20, (int)(o->early[i] & (OFI_WRITE_RANKS - 1))))
            o->early[i--] = o->early[--o->nearly];
    x->next = o->writes;
    o->writes = x;
}

/* Posts each send as one fi_writedata to the peer's region at its remote
 * offset (a message longer than max_msg is refused: the low-latency mode
 * checks its sizes against piece_max at enable). */
static epc_status_t post_writes(xchg_t *x, int ns)
{
    void *desc = x->o->mr_local ? fi_mr_desc(x->o->send_mr) : NULL;
    for (int i = x->nr; i < x->nr + ns; i++) {
        const epc_tr_msg_t *m = &x->msgs[i];
        op_t *op = &x->ops[x->posted];
        epc_status_t st;
        if (m->len > x->o->max_msg)
            return epc_error_obj(x->tr->owner, EPC_ERR_INTERNAL,
                                 "%s: a %zu-byte write exceeds the provider's %zu", x->phase,
                                 m->len, x->o->max_msg);
        *op = (op_t){.owner = x, .msg = i, .peer = m->peer};
        op->done = m->len == 0;
        x->completed += op->done;
        if (!op->done && (st = post(x, op, x->tr->send_buf + m->offset, m->len, desc, m->peer,
                                    m->remote)) != EPC_OK)
            return st;
        x->posted += op->done;
    }
    return EPC_OK;
}

epc_status_t epc_ofi_write_start(epc_tr_t *tr, const epc_tr_msg_t *sends, int ns,
                                 const epc_tr_msg_t *recvs, int nr, const char *phase, void **req)
{
    xchg_t *x = calloc(1, sizeof *x);
    epc_status_t st = EPC_OK;
    if (x != NULL)
        *x = (xchg_t){.tr = tr,
                      .o = tr->impl,
                      .nr = nr,
                      .phase = phase,
                      .write = 1,
                      .epoch = tr->epoch,
                      .nops = ns + nr};
    if (x == NULL || (x->msgs = malloc((size_t)(ns + nr + 1) * sizeof *x->msgs)) == NULL ||
        (x->ops = calloc((size_t)(ns + nr) + 1, sizeof *x->ops)) == NULL)
        st = epc_error_obj(tr->owner, EPC_ERR_NO_MEMORY, "%s: %d writes", phase, ns + nr);
    if (st == EPC_OK) {
        copy_lists(x, sends, ns, recvs, nr);
        expect_writes(x);
        st = post_writes(x, ns);
    }
    return started(x, st, req);
}

epc_status_t epc_ofi_test(epc_tr_t *tr, void *req, int *done)
{
    xchg_t *x = req;
    epc_status_t st = progress(tr);
    *done = x->completed == x->nops;
    return st;
}

/* Every piece of receive i done (a write exchange's expected write is one
 * operation). */
int epc_ofi_arrived(epc_tr_t *tr, void *req, int i)
{
    const xchg_t *x = req;
    (void)tr;
    for (int o = 0; o < x->posted; o++)
        if (x->ops[o].is_recv && x->ops[o].msg == i && !x->ops[o].done)
            return 0;
    return 1;
}

/* Raises a wait's timeout, or its interruption by a peer's abort, naming
 * the first operation still incomplete (what this rank was waiting for). */
static epc_status_t name_waited(const xchg_t *x, epc_status_t st)
{
    const op_t *op = NULL;
    for (int i = 0; i < x->posted && op == NULL; i++)
        op = x->ops[i].done ? NULL : &x->ops[i];
    if (op == NULL) /* nothing pending: the posting itself was slow */
        return st == EPC_ERR_TIMEOUT
                   ? epc_error_obj(x->tr->owner, st, "%s: ofi transport (%s) timed out posting",
                                   x->phase, x->tr->provider)
                   : epc_error_context(x->tr->owner, st, "%s", x->phase);
    if (st == EPC_ERR_TIMEOUT)
        return epc_error_obj(x->tr->owner, st,
                             "%s: ofi transport (%s) timed out %s rank %d (%zu bytes)", x->phase,
                             x->tr->provider, op->is_recv ? "waiting for data from" : "sending to",
                             op->peer, x->msgs[op->msg].len);
    return epc_error_context(x->tr->owner, st, "%s: ofi transport (%s) %s rank %d", x->phase,
                             x->tr->provider, op->is_recv ? "waiting for data from" : "sending to",
                             op->peer);
}

epc_status_t epc_ofi_wait(epc_tr_t *tr, void *req, epc_deadline_t dl)
{
    xchg_t *x = req;
    epc_status_t st = EPC_OK;
    while (st == EPC_OK && x->completed < x->nops) {
        if ((st = progress(tr)) != EPC_OK)
            break;
        if (x->completed < x->nops && (st = epc_deadline_check(dl)) == EPC_OK)
            sched_yield();
    }
    if (st != EPC_OK && st != EPC_ERR_TRANSPORT)
        st = name_waited(x, st);
    if (st != EPC_OK)
        abandon(x);
    xchg_free(x);
    return st;
}

#endif /* EPC_HAVE_OFI */
