/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * tr_ofi.c - the ofi transport: a libfabric RDM endpoint moving tagged
 * messages from the registered send region into receives pre-posted in the
 * registered receive region.  Endpoint names are exchanged over MPI.
 *
 * Tags keep messages apart without relying on provider ordering:
 * epoch (16 bits) | sequence of the piece between this pair (16 bits) |
 * source rank (32 bits).  Messages longer than the provider's max_msg_size
 * travel as several pieces.  The mr_mode the provider returns is honoured:
 * regions are registered (and bound to the endpoint) only when it asks.
 * Progress is driven by reading the completion queue while waiting, which
 * providers with manual progress (tcp;ofi_rxm) need.
 *
 * Where the provider offers RMA writes with remote CQ data, the receive
 * region is registered for peers' writes, and epc_tr_expose publishes its
 * address and key to every rank (tr_ofi_xchg.c moves the write exchanges).
 */
#include "build_config.h"

#ifdef EPC_HAVE_OFI

#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_tagged.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mpi_util.h"
#include "ofi.h"
#include "tr.h"

#define NAME_MAX_LEN 256

/* Opens fabric, domain, completion queue, address vector and endpoint. */
static epc_status_t open_endpoint(epc_tr_t *tr, ofi_t *o)
{
    struct fi_cq_attr cq_attr = {.format = FI_CQ_FORMAT_TAGGED, .wait_obj = FI_WAIT_NONE};
    struct fi_av_attr av_attr = {.type = FI_AV_TABLE};
    int rc;
    if ((rc = fi_fabric(o->info->fabric_attr, &o->fabric, NULL)) != 0)
        return OFI_ERR(tr, "fi_fabric", rc);
    if ((rc = fi_domain(o->fabric, o->info, &o->domain, NULL)) != 0)
        return OFI_ERR(tr, "fi_domain", rc);
    if ((rc = fi_cq_open(o->domain, &cq_attr, &o->cq, NULL)) != 0)
        return OFI_ERR(tr, "fi_cq_open", rc);
    if ((rc = fi_av_open(o->domain, &av_attr, &o->av, NULL)) != 0)
        return OFI_ERR(tr, "fi_av_open", rc);
    if ((rc = fi_endpoint(o->domain, o->info, &o->ep, NULL)) != 0)
        return OFI_ERR(tr, "fi_endpoint", rc);
    if ((rc = fi_ep_bind(o->ep, &o->av->fid, 0)) != 0)
        return OFI_ERR(tr, "fi_ep_bind(av)", rc);
    if ((rc = fi_ep_bind(o->ep, &o->cq->fid, FI_TRANSMIT | FI_RECV)) != 0)
        return OFI_ERR(tr, "fi_ep_bind(cq)", rc);
    if ((rc = fi_enable(o->ep)) != 0)
        return OFI_ERR(tr, "fi_enable", rc);
    return EPC_OK;
}

static epc_status_t ofi_init(epc_tr_t *tr, const char *provider)
{
    ofi_t *o = calloc(1, sizeof *o);
    epc_status_t st;
    if (o == NULL)
        return epc_error_obj(tr->owner, EPC_ERR_NO_MEMORY, "ofi transport state");
    tr->impl = o;
    o->addr = calloc((size_t)tr->size, sizeof *o->addr);
    if (o->addr == NULL)
        return epc_error_obj(tr->owner, EPC_ERR_NO_MEMORY, "ofi addresses of %d ranks", tr->size);
    if ((st = epc_ofi_getinfo(provider, &o->info, tr->owner)) != EPC_OK)
        return st;
    snprintf(tr->provider, sizeof tr->provider, "%s", o->info->fabric_attr->prov_name);
    o->mr_local = (o->info->domain_attr->mr_mode & FI_MR_LOCAL) != 0;
    o->mr_endpoint = (o->info->domain_attr->mr_mode & FI_MR_ENDPOINT) != 0;
    o->rma = epc_ofi_has_writes(o->info);
    o->max_msg = o->info->ep_attr->max_msg_size ? o->info->ep_attr->max_msg_size : SIZE_MAX;
    tr->piece_max = o->max_msg;
    o->next_key = 1;
    return open_endpoint(tr, o);
}

/* Exchanges endpoint names over MPI and fills the address table. */
static epc_status_t ofi_connect(epc_tr_t *tr)
{
    ofi_t *o = tr->impl;
    char name[NAME_MAX_LEN] = {0}, *all = malloc((size_t)tr->size * NAME_MAX_LEN);
    size_t len = sizeof name;
    int rc;
    MPI_Request req;
    epc_status_t st = EPC_OK, xst;
    if (all == NULL)
        return epc_error_obj(tr->owner, EPC_ERR_NO_MEMORY, "ofi names of %d ranks", tr->size);
    if ((rc = fi_getname(&o->ep->fid, name, &len)) != 0)
        st = OFI_ERR(tr, "fi_getname", rc);
    /* Every rank takes part, also after a local failure: the others would
     * wait for it (the agreement afterwards reports the failure). */
    rc = MPI_Iallgather(name, NAME_MAX_LEN, MPI_BYTE, all, NAME_MAX_LEN, MPI_BYTE, tr->comm, &req);
    xst = epc_mpi_finish(rc, &req, epc_tr_deadline(tr), tr->owner,
                         "ofi transport: MPI_Iallgather(endpoint names)");
    if (st == EPC_OK)
        st = xst;
    /* One at a time: names travel in fixed slots, while fi_av_insert reads
     * an array packed at the provider's own address size. */
    for (int r = 0; st == EPC_OK && r < tr->size; r++) {
        rc = fi_av_insert(o->av, all + (size_t)r * NAME_MAX_LEN, 1, &o->addr[r], 0, NULL);
        if (rc != 1)
            st = OFI_ERR(tr, "fi_av_insert", rc < 0 ? rc : -FI_EOTHER);
    }
    free(all);
    return st;
}

static void close_mr(struct fid_mr **mr)
{
    if (*mr != NULL)
        fi_close(&(*mr)->fid);
    *mr = NULL;
}

static void ofi_fini(epc_tr_t *tr)
{
    ofi_t *o = tr->impl;
    if (o != NULL) {
        /* The endpoint first: nothing may touch the regions afterwards. */
        if (o->ep)
            fi_close(&o->ep->fid);
        close_mr(&o->send_mr);
        close_mr(&o->recv_mr);
        if (o->av)
            fi_close(&o->av->fid);
        if (o->cq)
            fi_close(&o->cq->fid);
        if (o->domain)
            fi_close(&o->domain->fid);
        if (o->fabric)
            fi_close(&o->fabric->fid);
        if (o->info)
            fi_freeinfo(o->info);
        free(o->addr);
        free(o->rbase);
        free(o->rkey);
        free(o->early);
        free(o);
        tr->impl = NULL;
    }
    free(tr->send_buf);
    free(tr->recv_buf);
    tr->send_buf = tr->recv_buf = NULL;
}

/* Replaces a region by a larger one, registered when the provider asks
 * (and the receive region also when peers may write into it). */
static epc_status_t grow(epc_tr_t *tr, char **buf, size_t *cap, struct fid_mr **mr, size_t want)
{
    ofi_t *o = tr->impl;
    int is_recv = buf == &tr->recv_buf;
    uint64_t access =
        is_recv ? FI_RECV | (o->rma ? FI_REMOTE_WRITE : 0) : FI_SEND | (o->rma ? FI_WRITE : 0);
    char *p;
    int rc;
    if (want <= *cap)
        return EPC_OK;
    close_mr(mr);
    if ((p = realloc(*buf, want)) == NULL)
        return epc_error_obj(tr->owner, EPC_ERR_NO_MEMORY, "ofi transport: %zu-byte region", want);
    *buf = p;
    *cap = want;
    if (!o->mr_local && !(is_recv && o->rma))
        return EPC_OK;
    rc = fi_mr_reg(o->domain, p, want, access, 0, o->next_key++, 0, mr, NULL);
    if (rc != 0)
        return OFI_ERR(tr, "fi_mr_reg", rc);
    if (o->mr_endpoint &&
        ((rc = fi_mr_bind(*mr, &o->ep->fid, 0)) != 0 || (rc = fi_mr_enable(*mr)) != 0))
        return OFI_ERR(tr, "fi_mr_bind/fi_mr_enable", rc);
    return EPC_OK;
}

static epc_status_t ofi_reserve(epc_tr_t *tr, size_t send, size_t recv)
{
    ofi_t *o = tr->impl;
    epc_status_t st = grow(tr, &tr->send_buf, &tr->send_cap, &o->send_mr, send);
    return st != EPC_OK ? st : grow(tr, &tr->recv_buf, &tr->recv_cap, &o->recv_mr, recv);
}

/* Every rank's receive region (exposed?, address, key, size) to every
 * rank; writes are on when each rank can take them.  Every rank takes part
 * in the allgather, also one that cannot. */
static epc_status_t ofi_expose(epc_tr_t *tr, int want, int *all)
{
    ofi_t *o = tr->impl;
    size_t n = (size_t)tr->size;
    uint64_t mine[4] = {0}, *every = malloc(4 * n * sizeof *every);
    int rc;
    MPI_Request req;
    epc_status_t st;
    o->rbase = malloc(n * sizeof *o->rbase);
    o->rkey = malloc(n * sizeof *o->rkey);
    tr->peer_recv = malloc(n * sizeof *tr->peer_recv);
    if (every == NULL || o->rbase == NULL || o->rkey == NULL || tr->peer_recv == NULL) {
        free(every);
        return epc_error_obj(tr->owner, EPC_ERR_NO_MEMORY, "ofi transport: %zu peers' regions", n);
    }
    mine[0] = want && o->rma && o->recv_mr != NULL && tr->size <= OFI_WRITE_RANKS;
    if (mine[0]) {
        int virt = (o->info->domain_attr->mr_mode & FI_MR_VIRT_ADDR) != 0;
        mine[1] = virt ? (uint64_t)(uintptr_t)tr->recv_buf : 0;
        mine[2] = fi_mr_key(o->recv_mr);
        mine[3] = tr->recv_cap;
    }
    rc = MPI_Iallgather(mine, 4, MPI_UINT64_T, every, 4, MPI_UINT64_T, tr->comm, &req);
    st = epc_mpi_finish(rc, &req, epc_tr_deadline(tr), tr->owner,
                        "ofi transport: MPI_Iallgather(receive regions)");
    *all = st == EPC_OK;
    for (size_t r = 0; r < n && *all; r++) {
        *all = every[4 * r] != 0;
        o->rbase[r] = every[4 * r + 1];
        o->rkey[r] = every[4 * r + 2];
        tr->peer_recv[r] = (size_t)every[4 * r + 3];
    }
    free(every);
    return st;
}

const epc_tr_ops_t epc_tr_ofi_ops = {
    .name = "ofi",
    .init = ofi_init,
    .connect = ofi_connect,
    .fini = ofi_fini,
    .reserve = ofi_reserve,
    .start = epc_ofi_start,
    .test = epc_ofi_test,
    .arrived = epc_ofi_arrived,
    .wait = epc_ofi_wait,
    .expose = ofi_expose,
    .write_start = epc_ofi_write_start,
};

#endif /* EPC_HAVE_OFI */
