/* SPDX-License-Identifier: BSD-3-Clause */
/* ofi.h - libfabric pieces shared by the ofi transport, info and selection. */
#ifndef EPC_COMM_OFI_H
#define EPC_COMM_OFI_H

#include "build_config.h"

#ifdef EPC_HAVE_OFI
#include <rdma/fabric.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>

#include "tr.h"

typedef struct ofi {
    struct fi_info *info;
    struct fid_fabric *fabric;
    struct fid_domain *domain;
    struct fid_cq *cq;
    struct fid_av *av;
    struct fid_ep *ep;
    struct fid_mr *send_mr, *recv_mr;
    fi_addr_t *addr; /* [size] */
    size_t max_msg;
    int mr_local, mr_endpoint;
    uint64_t next_key;
    int rma;                /* the endpoint offers writes with remote CQ data */
    uint64_t *rbase, *rkey; /* [size] after the exposure: each rank's receive region */
    struct xchg *writes;    /* write exchanges in flight, waiting for peers' writes */
    uint32_t *early;        /* peers' writes that came before their exchange started */
    int nearly, early_cap;
} ofi_t;

/* The remote CQ data of a write: the exchange's number (low 12 bits) and
 * the writer's rank (20 bits), so writes of the next exchange, which a
 * fast peer may start while this rank still waits in the previous one,
 * are kept apart. */
#define OFI_WRITE_RANKS (1 << 20)
static inline uint32_t ofi_write_data(unsigned epoch, int src)
{
    return (uint32_t)(epoch & 0xfff) << 20 | (uint32_t)src;
}

#define OFI_ERR(tr, call, rc)                                                          \
    epc_error_obj((tr)->owner, EPC_ERR_TRANSPORT, "ofi transport (%s): %s failed: %s", \
                  (tr)->provider[0] ? (tr)->provider : "?", call, fi_strerror((int)-(rc)))

/* The RDM tagged-message info for `provider` ("tcp", "shm", "verbs", ...;
 * NULL or "" picks epc_ofi_auto_provider's choice).  EPC_ERR_TRANSPORT
 * naming the provider when none matches. */
epc_status_t epc_ofi_getinfo(const char *provider, struct fi_info **info, epc_obj_t *owner);

/* 1 when info's endpoint offers writes with remote CQ data of 4 bytes. */
int epc_ofi_has_writes(const struct fi_info *info);

/* The exchange of the ofi transport, in steps (tr_ofi_xchg.c). */
epc_status_t epc_ofi_start(epc_tr_t *tr, const epc_tr_msg_t *sends, int ns,
                           const epc_tr_msg_t *recvs, int nr, const char *phase, void **req);
epc_status_t epc_ofi_test(epc_tr_t *tr, void *req, int *done);
int epc_ofi_arrived(epc_tr_t *tr, void *req, int i);
epc_status_t epc_ofi_wait(epc_tr_t *tr, void *req, epc_deadline_t dl);
epc_status_t epc_ofi_write_start(epc_tr_t *tr, const epc_tr_msg_t *sends, int ns,
                                 const epc_tr_msg_t *recvs, int nr, const char *phase, void **req);
#endif

/* The provider automatic selection would use: the first hardware provider
 * (verbs, efa, cxi, psm3, psm2, opx, usnic) that resolves, else "tcp".
 * *hardware = 1 when it is a hardware one.  "" when built without ofi. */
void epc_ofi_auto_provider(char *name, size_t len, int *hardware);

#endif
