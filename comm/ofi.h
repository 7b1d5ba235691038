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
} ofi_t;

#define OFI_ERR(tr, call, rc)                                                          \
    epc_error_obj((tr)->owner, EPC_ERR_TRANSPORT, "ofi transport (%s): %s failed: %s", \
                  (tr)->provider[0] ? (tr)->provider : "?", call, fi_strerror((int)-(rc)))

/* The RDM tagged-message info for `provider` ("tcp", "shm", "verbs", ...;
 * NULL or "" picks epc_ofi_auto_provider's choice).  EPC_ERR_TRANSPORT
 * naming the provider when none matches. */
epc_status_t epc_ofi_getinfo(const char *provider, struct fi_info **info, epc_obj_t *owner);

/* The exchange of the ofi transport, in steps (tr_ofi_xchg.c). */
epc_status_t epc_ofi_start(epc_tr_t *tr, const epc_tr_msg_t *sends, int ns,
                           const epc_tr_msg_t *recvs, int nr, const char *phase, void **req);
epc_status_t epc_ofi_test(epc_tr_t *tr, void *req, int *done);
epc_status_t epc_ofi_wait(epc_tr_t *tr, void *req, epc_deadline_t dl);
#endif

/* The provider automatic selection would use: the first hardware provider
 * (verbs, efa, cxi, psm3, psm2, opx, usnic) that resolves, else "tcp".
 * *hardware = 1 when it is a hardware one.  "" when built without ofi. */
void epc_ofi_auto_provider(char *name, size_t len, int *hardware);

#endif
