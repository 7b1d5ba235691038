/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * ofi_select.c - which libfabric provider, and which transport, to use.
 * A hardware provider is worth the ofi transport; with none (tcp, sockets,
 * shm only), MPI's own transports are as good and better tested.
 */
#include "build_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "error.h"
#include "ofi.h"

#ifdef EPC_HAVE_OFI
static const char *const hardware[] = {"verbs", "efa", "cxi", "psm3", "psm2", "opx", "usnic"};
#define NHARDWARE (sizeof hardware / sizeof hardware[0])

/* Hints for an RDM endpoint with tagged messages (and, with writes = 1,
 * RMA writes carrying 4 bytes of remote CQ data), asking with the modern
 * mr_mode bits (never the legacy FI_MR_BASIC) and honouring the reply. */
static struct fi_info *make_hints(const char *provider, int writes)
{
    struct fi_info *h = fi_allocinfo();
    if (h == NULL)
        return NULL;
    h->ep_attr->type = FI_EP_RDM;
    h->caps = FI_TAGGED | (writes ? FI_RMA | FI_WRITE | FI_REMOTE_WRITE : 0);
    h->domain_attr->cq_data_size = writes ? 4 : 0;
    h->mode = FI_CONTEXT | FI_CONTEXT2;
    h->domain_attr->mr_mode =
        FI_MR_LOCAL | FI_MR_VIRT_ADDR | FI_MR_ALLOCATED | FI_MR_PROV_KEY | FI_MR_ENDPOINT;
    h->domain_attr->threading = FI_THREAD_DOMAIN;
    if (provider != NULL && *provider != '\0')
        h->fabric_attr->prov_name = strdup(provider);
    return h;
}

/* 1 when prov_name's first component ("verbs" of "verbs;ofi_rxm") is a
 * hardware provider. */
static int is_hardware(const char *prov_name)
{
    size_t len = strcspn(prov_name, ";");
    for (size_t i = 0; i < NHARDWARE; i++)
        if (strlen(hardware[i]) == len && strncmp(prov_name, hardware[i], len) == 0)
            return 1;
    return 0;
}

void epc_ofi_auto_provider(char *name, size_t len, int *hw)
{
    struct fi_info *hints = make_hints(NULL, 0), *list = NULL;
    snprintf(name, len, "tcp");
    *hw = 0;
    if (hints != NULL && fi_getinfo(FI_VERSION(1, 10), NULL, NULL, 0, hints, &list) == 0) {
        for (struct fi_info *fi = list; fi != NULL; fi = fi->next)
            if (is_hardware(fi->fabric_attr->prov_name)) {
                snprintf(name, len, "%.*s", (int)strcspn(fi->fabric_attr->prov_name, ";"),
                         fi->fabric_attr->prov_name);
                *hw = 1;
                break;
            }
        fi_freeinfo(list);
    }
    fi_freeinfo(hints);
}

epc_status_t epc_ofi_getinfo(const char *provider, struct fi_info **info, epc_obj_t *owner)
{
    char autoname[64];
    int hw, rc = -FI_ENODATA;
    struct fi_info *hints;
    if (provider == NULL || *provider == '\0') {
        epc_ofi_auto_provider(autoname, sizeof autoname, &hw);
        provider = autoname;
    }
    /* with writes first (the low-latency mode's messages can use them),
     * else tagged messages alone */
    for (int writes = 1; writes >= 0 && rc != 0; writes--) {
        if ((hints = make_hints(provider, writes)) == NULL)
            return epc_error_obj(owner, EPC_ERR_NO_MEMORY, "fi_allocinfo");
        rc = fi_getinfo(FI_VERSION(1, 10), NULL, NULL, 0, hints, info);
        fi_freeinfo(hints);
    }
    if (rc != 0)
        return epc_error_obj(owner, EPC_ERR_TRANSPORT,
                             "ofi transport: provider \"%s\" offers no RDM endpoint with tagged "
                             "messages here (fi_getinfo: %s); see fi_info -l, EPC_OFI_PROVIDER",
                             provider, fi_strerror(-rc));
    return EPC_OK;
}

int epc_ofi_has_writes(const struct fi_info *info)
{
    uint64_t need = FI_RMA | FI_WRITE | FI_REMOTE_WRITE;
    return (info->caps & need) == need && info->domain_attr->cq_data_size >= 4;
}
#else
void epc_ofi_auto_provider(char *name, size_t len, int *hw)
{
    if (len > 0)
        name[0] = '\0';
    *hw = 0;
}
#endif

epc_status_t epc_transport_choice(epc_transport_t requested, char *why, size_t len,
                                  epc_transport_t *chosen)
{
    const epc_config_t *cfg;
    epc_status_t st;
    if (why == NULL || len == 0 || chosen == NULL)
        return epc_error(EPC_ERR_INVALID_ARG, "epc_transport_choice: %s",
                         why == NULL ? "why is NULL"
                         : len == 0  ? "len is 0 (no room for why's line)"
                                     : "chosen is NULL");
    if ((unsigned)requested > EPC_TRANSPORT_AUTO)
        return epc_error(EPC_ERR_INVALID_ARG, "epc_transport_choice: requested = %d",
                         (int)requested);
    if ((st = epc_config_get(&cfg)) != EPC_OK)
        return st;
    if (requested == EPC_TRANSPORT_DEFAULT) /* EPC_TRANSPORT: auto|mpi|ofi */
        requested = (epc_transport_t[]){EPC_TRANSPORT_AUTO, EPC_TRANSPORT_MPI,
                                        EPC_TRANSPORT_OFI}[epc_cfg_enum(cfg, EPC_CFG_TRANSPORT)];
    if (requested == EPC_TRANSPORT_MPI) {
        *chosen = EPC_TRANSPORT_MPI;
        snprintf(why, len, "mpi: requested");
        return EPC_OK;
    }
#ifndef EPC_HAVE_OFI
    if (requested == EPC_TRANSPORT_OFI)
        return epc_error(EPC_ERR_UNSUPPORTED,
                         "transport ofi requested, but epcomm was built --without-ofi");
    *chosen = EPC_TRANSPORT_MPI;
    snprintf(why, len, "mpi: auto (built without libfabric)");
    return EPC_OK;
#else
    char prov[64];
    int hw;
    if (requested == EPC_TRANSPORT_OFI) {
        *chosen = EPC_TRANSPORT_OFI;
        snprintf(why, len, "ofi: requested");
        return EPC_OK;
    }
    epc_ofi_auto_provider(prov, sizeof prov, &hw);
    *chosen = hw ? EPC_TRANSPORT_OFI : EPC_TRANSPORT_MPI;
    snprintf(why, len,
             hw ? "ofi: auto, hardware provider %s found"
                : "mpi: auto, no hardware libfabric provider (verbs, efa, cxi, psm3, "
                  "...) found%s",
             hw ? prov : "");
    return EPC_OK;
#endif
}
