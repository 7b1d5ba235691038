/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * tr_ofi_xchg.c - one exchange over the ofi transport: post every receive
 * piece, then every send piece, then read the completion queue (which also
 * drives manual progress) until all are done or the deadline passes.
 */
#include "build_config.h"

#ifdef EPC_HAVE_OFI

#include <rdma/fi_errno.h>
#include <rdma/fi_tagged.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "ofi.h"

typedef struct op {
    struct fi_context2 ctx; /* first: completions hand it back */
    int msg;                /* index in recvs (is_recv) or sends */
    int peer, is_recv, done;
} op_t;

typedef struct xchg {
    epc_tr_t *tr;
    ofi_t *o;
    op_t *ops;
    int nops, posted, completed;
    epc_deadline_t dl;
    const char *phase;
} xchg_t;

static size_t pieces(const ofi_t *o, size_t len)
{
    return len / o->max_msg + (len % o->max_msg != 0); /* max_msg may be SIZE_MAX */
}

static uint64_t tag_of(unsigned epoch, unsigned seq, int src)
{
    return ((uint64_t)(epoch & 0xffff) << 48) | ((uint64_t)(seq & 0xffff) << 32) | (uint32_t)src;
}

/* Reads completions; EPC_OK or a raised transport error. */
static epc_status_t progress(xchg_t *x)
{
    struct fi_cq_tagged_entry ent[16];
    ssize_t n = fi_cq_read(x->o->cq, ent, 16);
    if (n > 0) {
        for (ssize_t i = 0; i < n; i++) {
            ((op_t *)ent[i].op_context)->done = 1;
            x->completed++;
        }
        return EPC_OK;
    }
    if (n == -FI_EAGAIN)
        return EPC_OK;
    if (n == -FI_EAVAIL) {
        struct fi_cq_err_entry err = {0};
        char buf[256] = "";
        op_t *op;
        if (fi_cq_readerr(x->o->cq, &err, 0) < 0)
            return OFI_ERR(x->tr, "fi_cq_readerr", -FI_EOTHER);
        op = err.op_context;
        if (op != NULL && err.err == FI_ECANCELED) { /* our own cancel after a timeout */
            op->done = 1;
            x->completed++;
            return EPC_OK;
        }
        fi_cq_strerror(x->o->cq, err.prov_errno, err.err_data, buf, sizeof buf);
        return epc_error_obj(x->tr->owner, EPC_ERR_TRANSPORT,
                             "%s: ofi transport (%s): %s to/from rank %d failed: %s (%s)", x->phase,
                             x->tr->provider, op && op->is_recv ? "receive" : "send",
                             op ? op->peer : -1, fi_strerror(err.err), buf);
    }
    return OFI_ERR(x->tr, "fi_cq_read", n);
}

/* Posts one piece, driving progress while the provider says EAGAIN. */
static epc_status_t post(xchg_t *x, op_t *op, char *buf, size_t len, void *desc, int peer,
                         uint64_t tag)
{
    for (;;) {
        ssize_t rc = op->is_recv ? fi_trecv(x->o->ep, buf, len, desc, FI_ADDR_UNSPEC, tag, 0, &op->ctx)
                                 : fi_tsend(x->o->ep, buf, len, desc, x->o->addr[peer], tag, &op->ctx);
        epc_status_t st;
        if (rc == 0) {
            x->posted++;
            return EPC_OK;
        }
        if (rc != -FI_EAGAIN)
            return OFI_ERR(x->tr, op->is_recv ? "fi_trecv" : "fi_tsend", rc);
        if ((st = progress(x)) != EPC_OK)
            return st;
        if (epc_deadline_expired(x->dl))
            return EPC_ERR_TIMEOUT;
        sched_yield();
    }
}

/* Posts every piece of one side's messages; seq counts pieces per peer. */
static epc_status_t post_side(xchg_t *x, const epc_tr_msg_t *m, int n, int is_recv,
                              unsigned *seq)
{
    epc_tr_t *tr = x->tr;
    char *region = is_recv ? tr->recv_buf : tr->send_buf;
    void *desc = x->o->mr_local ? fi_mr_desc(is_recv ? x->o->recv_mr : x->o->send_mr) : NULL;
    memset(seq, 0, (size_t)tr->size * sizeof *seq);
    for (int i = 0; i < n; i++)
        for (size_t p = 0, np = pieces(x->o, m[i].len); p < np; p++) {
            size_t off = p * x->o->max_msg, len = m[i].len - off;
            op_t *op = &x->ops[x->posted];
            epc_status_t st;
            len = len < x->o->max_msg ? len : x->o->max_msg;
            op->msg = i, op->peer = m[i].peer, op->is_recv = is_recv, op->done = 0;
            st = post(x, op, region + m[i].offset + off, len, desc, m[i].peer,
                      tag_of(tr->epoch, seq[m[i].peer]++, is_recv ? m[i].peer : tr->rank));
            if (st != EPC_OK)
                return st;
        }
    return EPC_OK;
}

/* After a failure: cancel the receives still posted and drain briefly, so
 * no completion later points into freed memory of this call. */
static void abandon(xchg_t *x)
{
    epc_deadline_t drain = epc_deadline_in_ms(200);
    for (int i = 0; i < x->posted; i++)
        if (!x->ops[i].done && x->ops[i].is_recv)
            fi_cancel(&x->o->ep->fid, &x->ops[i].ctx);
    while (x->completed < x->posted && !epc_deadline_expired(drain))
        if (progress(x) != EPC_OK)
            break;
}

static epc_status_t timeout_error(xchg_t *x, const epc_tr_msg_t *sends, const epc_tr_msg_t *recvs)
{
    for (int i = 0; i < x->posted; i++)
        if (!x->ops[i].done) {
            const epc_tr_msg_t *m = x->ops[i].is_recv ? &recvs[x->ops[i].msg] : &sends[x->ops[i].msg];
            return epc_error_obj(x->tr->owner, EPC_ERR_TIMEOUT,
                                 "%s: ofi transport (%s) timed out %s rank %d (%zu bytes)",
                                 x->phase, x->tr->provider,
                                 x->ops[i].is_recv ? "waiting for data from" : "sending to",
                                 m->peer, m->len);
        }
    return epc_error_obj(x->tr->owner, EPC_ERR_TIMEOUT, "%s: ofi transport timed out posting",
                         x->phase);
}

epc_status_t epc_ofi_exchange(epc_tr_t *tr, const epc_tr_msg_t *sends, int ns,
                              const epc_tr_msg_t *recvs, int nr, epc_deadline_t dl,
                              const char *phase)
{
    xchg_t x = {.tr = tr, .o = tr->impl, .dl = dl, .phase = phase};
    unsigned *seq = malloc((size_t)tr->size * sizeof *seq);
    epc_status_t st = EPC_OK;
    for (int i = 0; i < nr; i++)
        x.nops += (int)pieces(x.o, recvs[i].len);
    for (int i = 0; i < ns; i++)
        x.nops += (int)pieces(x.o, sends[i].len);
    x.ops = calloc((size_t)x.nops + 1, sizeof *x.ops);
    if (seq == NULL || x.ops == NULL)
        st = epc_error_obj(tr->owner, EPC_ERR_NO_MEMORY, "%s: %d ofi operations", phase, x.nops);
    if (st == EPC_OK)
        st = post_side(&x, recvs, nr, 1, seq);
    if (st == EPC_OK)
        st = post_side(&x, sends, ns, 0, seq);
    while (st == EPC_OK && x.completed < x.nops) {
        if ((st = progress(&x)) != EPC_OK)
            break;
        if (x.completed < x.nops && epc_deadline_expired(dl))
            st = EPC_ERR_TIMEOUT;
        else if (x.completed < x.nops)
            sched_yield();
    }
    if (st == EPC_ERR_TIMEOUT)
        st = timeout_error(&x, sends, recvs);
    if (st != EPC_OK && x.ops != NULL)
        abandon(&x);
    free(x.ops);
    free(seq);
    return st;
}

#endif /* EPC_HAVE_OFI */
