/* SPDX-License-Identifier: BSD-3-Clause */
/* tr.c - transport selection, lifetime and the checks common to all. */
#include "build_config.h"

#include <stdlib.h>
#include <string.h>

#include "mpi_util.h"
#include "tr.h"

size_t epc_tr_grow_size(size_t cap, size_t need)
{
    size_t grown = cap + cap / 2;
    need += need / 8; /* routing moves a little call to call: grow past it */
    need = need > grown ? need : grown;
    return (need + 4095) & ~(size_t)4095; /* whole pages */
}

epc_deadline_t epc_tr_deadline(const epc_tr_t *tr)
{
    epc_deadline_t dl = epc_deadline_in_ms(tr->timeout_ms);
    dl.interrupted = tr->interrupted;
    dl.arg = tr->interrupt_arg;
    return dl;
}

epc_status_t epc_tr_create(epc_transport_t kind, const char *provider, MPI_Comm comm,
                           long timeout_ms, epc_obj_t *owner, epc_tr_t **tr_p)
{
    epc_tr_t *tr = calloc(1, sizeof *tr);
    epc_status_t st;
    if (tr == NULL)
        return epc_error_obj(owner, EPC_ERR_NO_MEMORY, "transport object");
    tr->owner = owner;
    tr->comm = comm;
    tr->timeout_ms = timeout_ms;
    MPI_Comm_rank(comm, &tr->rank);
    MPI_Comm_size(comm, &tr->size);
#ifdef EPC_HAVE_OFI
    tr->ops = kind == EPC_TRANSPORT_OFI ? &epc_tr_ofi_ops : &epc_tr_mpi_ops;
#else
    tr->ops = &epc_tr_mpi_ops;
    (void)kind;
#endif
    st = tr->ops->init(tr, provider);
    /* init may fail on some ranks only (a provider missing on one node):
     * agree before the collective connect. */
    st = epc_mpi_agree(comm, st, owner, epc_tr_deadline(tr));
    if (st == EPC_OK)
        st = epc_mpi_agree(comm, tr->ops->connect(tr), owner, epc_tr_deadline(tr));
    if (st != EPC_OK) {
        epc_tr_destroy(tr);
        return st;
    }
    *tr_p = tr;
    return EPC_OK;
}

void epc_tr_destroy(epc_tr_t *tr)
{
    if (tr == NULL)
        return;
    if (tr->ops != NULL)
        tr->ops->fini(tr);
    free(tr->peer_recv);
    free(tr);
}

epc_status_t epc_tr_reserve(epc_tr_t *tr, size_t send, size_t recv)
{
    epc_status_t st;
    if (send <= tr->send_cap && recv <= tr->recv_cap)
        return EPC_OK;
    if (tr->exposed && recv > tr->recv_cap) /* peers write at its old address */
        return epc_error_obj(tr->owner, EPC_ERR_INTERNAL,
                             "%s transport: the receive region is exposed to peers' writes at "
                             "%zu bytes and cannot grow to %zu",
                             tr->ops->name, tr->recv_cap, recv);
    st = tr->ops->reserve(
        tr, send <= tr->send_cap ? tr->send_cap : epc_tr_grow_size(tr->send_cap, send),
        recv <= tr->recv_cap ? tr->recv_cap : epc_tr_grow_size(tr->recv_cap, recv));
    if (st == EPC_OK)
        tr->grows++;
    return st;
}

/* Each message must name a peer and fit its region. */
static epc_status_t check_msgs(epc_tr_t *tr, const epc_tr_msg_t *m, int n, size_t cap,
                               const char *which, const char *phase)
{
    if (n > 0 && m == NULL)
        return epc_error_obj(tr->owner, EPC_ERR_INTERNAL, "%s: %s list is NULL", phase, which);
    for (int i = 0; i < n; i++)
        if (m[i].peer < 0 || m[i].peer >= tr->size || m[i].offset > cap ||
            m[i].len > cap - m[i].offset)
            return epc_error_obj(tr->owner, EPC_ERR_INTERNAL,
                                 "%s: %s %d (peer %d, offset %zu, %zu bytes) outside the %zu-byte "
                                 "region or the %d ranks",
                                 phase, which, i, m[i].peer, m[i].offset, m[i].len, cap, tr->size);
    return EPC_OK;
}

static epc_status_t broken(epc_tr_t *tr, const char *phase)
{
    return epc_error_obj(tr->owner, EPC_ERR_TRANSPORT,
                         "%s: the %s transport failed or timed out earlier; destroy the context",
                         phase, tr->ops->name);
}

epc_status_t epc_tr_start(epc_tr_t *tr, const epc_tr_msg_t *sends, int nsends,
                          const epc_tr_msg_t *recvs, int nrecvs, const char *phase, void **req)
{
    epc_status_t st;
    *req = NULL;
    if (tr->broken)
        return broken(tr, phase);
    if ((st = check_msgs(tr, sends, nsends, tr->send_cap, "send", phase)) != EPC_OK ||
        (st = check_msgs(tr, recvs, nrecvs, tr->recv_cap, "receive", phase)) != EPC_OK)
        return st;
    st = tr->ops->start(tr, sends, nsends, recvs, nrecvs, phase, req);
    tr->epoch++; /* the next exchange's messages never match this one's */
    if (st != EPC_OK)
        tr->broken = 1;
    return st;
}

epc_status_t epc_tr_expose(epc_tr_t *tr, int want, int *exposed)
{
    epc_status_t st = EPC_OK;
    int all = 0;
    if (tr->exposed) {
        *exposed = 1;
        return EPC_OK;
    }
    /* every rank runs the same transport: all take this branch or none */
    if (tr->ops->expose != NULL)
        st = tr->ops->expose(tr, want, &all);
    tr->exposed = st == EPC_OK && all;
    *exposed = tr->exposed;
    return st;
}

epc_status_t epc_tr_write_start(epc_tr_t *tr, const epc_tr_msg_t *sends, int nsends,
                                const epc_tr_msg_t *recvs, int nrecvs, const char *phase,
                                void **req)
{
    epc_status_t st;
    *req = NULL;
    if (!tr->exposed)
        return epc_error_obj(tr->owner, EPC_ERR_INTERNAL,
                             "%s: write exchange on the %s transport before epc_tr_expose", phase,
                             tr->ops->name);
    if (tr->broken)
        return broken(tr, phase);
    if ((st = check_msgs(tr, sends, nsends, tr->send_cap, "send", phase)) != EPC_OK ||
        (st = check_msgs(tr, recvs, nrecvs, tr->recv_cap, "receive", phase)) != EPC_OK)
        return st;
    for (int i = 0; i < nsends; i++) {
        size_t cap = tr->peer_recv[sends[i].peer];
        if (sends[i].remote > cap || sends[i].len > cap - sends[i].remote)
            return epc_error_obj(tr->owner, EPC_ERR_INTERNAL,
                                 "%s: write %d (%zu bytes at %zu) outside rank %d's %zu-byte "
                                 "receive region",
                                 phase, i, sends[i].len, sends[i].remote, sends[i].peer, cap);
    }
    st = tr->ops->write_start(tr, sends, nsends, recvs, nrecvs, phase, req);
    tr->epoch++;
    if (st != EPC_OK)
        tr->broken = 1;
    return st;
}

epc_status_t epc_tr_test(epc_tr_t *tr, void *req, int *done)
{
    epc_status_t st = tr->ops->test(tr, req, done);
    if (st != EPC_OK)
        tr->broken = 1;
    return st;
}

int epc_tr_arrived(epc_tr_t *tr, void *req, int i)
{
    return tr->ops->arrived(tr, req, i);
}

epc_status_t epc_tr_wait(epc_tr_t *tr, void *req, epc_deadline_t dl)
{
    epc_status_t st = tr->ops->wait(tr, req, dl);
    if (st != EPC_OK)
        tr->broken = 1;
    return st;
}

epc_status_t epc_tr_exchange(epc_tr_t *tr, const epc_tr_msg_t *sends, int nsends,
                             const epc_tr_msg_t *recvs, int nrecvs, epc_deadline_t dl,
                             const char *phase)
{
    void *req;
    epc_status_t st = epc_tr_start(tr, sends, nsends, recvs, nrecvs, phase, &req);
    return st == EPC_OK ? epc_tr_wait(tr, req, dl) : st;
}
