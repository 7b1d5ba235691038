/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * comm.c - creating and closing the communication object: its parameters
 * (params > EPC_* > default), communicators, topology, lanes, abort area,
 * link classes and progress thread.  The owner (the job context) runs the
 * phases and agrees on failure between them, so every rank returns the
 * same status.
 */
#include "build_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm.h"
#include "config.h"
#include "log.h"
#include "mpi_util.h"

#define BAD(...) epc_error_obj(cm->owner, EPC_ERR_INVALID_ARG, "epc_ctx_create: " __VA_ARGS__)

epc_status_t epc_comm_open(epc_comm_t *cm, MPI_Comm comm, epc_obj_t *owner)
{
    epc_status_t st;
    memset(cm, 0, sizeof *cm);
    cm->owner = owner;
    cm->mpi = cm->ctrl = MPI_COMM_NULL;
    if ((st = epc_mpi_dup(comm, &cm->mpi)) != EPC_OK) {
        cm->mpi = MPI_COMM_NULL;
        return st;
    }
    if ((st = epc_mpi_dup(cm->mpi, &cm->ctrl)) != EPC_OK) {
        cm->ctrl = MPI_COMM_NULL;
        return st;
    }
    MPI_Comm_rank(cm->mpi, &cm->rank);
    MPI_Comm_size(cm->mpi, &cm->nranks);
    return EPC_OK;
}

epc_status_t epc_comm_resolve(epc_comm_t *cm, const epc_comm_params_t *p)
{
    const epc_config_t *cfg;
    epc_status_t st = epc_config_get(&cfg);
    const char *prov;
    if (st != EPC_OK)
        return epc_error_sync(cm->owner), st;
    if ((unsigned)p->transport > EPC_TRANSPORT_AUTO)
        return BAD("params->transport = %d is not a known value", (int)p->transport);
    if ((unsigned)p->progress > EPC_PROGRESS_THREAD)
        return BAD("params->progress = %d is not a known value", (int)p->progress);
    if (p->timeout_ms < 0 || p->ranks_per_node < 0)
        return BAD("params->timeout_ms/ranks_per_node must be >= 0 (got %d/%d)", p->timeout_ms,
                   p->ranks_per_node);
    cm->ranks_per_node =
        p->ranks_per_node ? p->ranks_per_node : (int)epc_cfg_int(cfg, EPC_CFG_RANKS_PER_NODE);
    cm->timeout_ms = p->timeout_ms ? p->timeout_ms : (int)epc_cfg_int(cfg, EPC_CFG_TIMEOUT_MS);
    cm->chunk_bytes = (size_t)epc_cfg_int(cfg, EPC_CFG_CHUNK_KB) << 10;
    st = epc_progress_init(&cm->progress,
                           p->progress ? p->progress
                                       : (epc_progress_t)(epc_cfg_enum(cfg, EPC_CFG_PROGRESS) + 1),
                           (long)epc_cfg_int(cfg, EPC_CFG_PROGRESS_SLEEP_US), cm->owner);
    if (st != EPC_OK)
        return st;
    prov = p->ofi_provider ? p->ofi_provider : epc_cfg_string(cfg, EPC_CFG_OFI_PROVIDER);
    snprintf(cm->provider_req, sizeof cm->provider_req, "%s", prov);
    st = epc_transport_choice(p->transport, cm->transport_reason, sizeof cm->transport_reason,
                              &cm->transport);
    return st == EPC_OK ? EPC_OK : (epc_error_sync(cm->owner), st);
}

/* FNV-1a, to compare strings across ranks as numbers. */
static double hash_str(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return (double)h;
}

int epc_comm_shared(const epc_comm_t *cm, const char **names, double *v)
{
    static const char *const mine[EPC_COMM_SHARED] = {"transport", "ofi_provider", "ranks_per_node",
                                                      "timeout_ms", "EPC_CHUNK_KB"};
    memcpy(names, mine, sizeof mine);
    v[0] = cm->transport;
    v[1] = hash_str(cm->provider_req);
    v[2] = cm->ranks_per_node;
    v[3] = cm->timeout_ms;
    v[4] = (double)cm->chunk_bytes / 1024;
    return EPC_COMM_SHARED;
}

/* Each peer's link class, looked up once: the byte counters take one
 * per message. */
static epc_status_t link_classes(epc_comm_t *cm)
{
    if ((cm->link_class = malloc((size_t)cm->nranks)) == NULL)
        return epc_error_obj(cm->owner, EPC_ERR_NO_MEMORY, "epc_ctx_create: link classes");
    for (int p = 0; p < cm->nranks; p++) {
        epc_link_class_t cls = EPC_LINK_OTHER_NODE;
        epc_topo_link_class(cm->topo, cm->rank, p, &cls); /* both ranks valid */
        cm->link_class[p] = (unsigned char)cls;
    }
    return EPC_OK;
}

/* The topology and this rank's place in it. */
static epc_status_t build_node(epc_comm_t *cm)
{
    epc_topo_params_t tp = EPC_TOPO_PARAMS_INIT;
    epc_status_t st;
    tp.ranks_per_node = cm->ranks_per_node;
    if ((st = epc_topo_create(cm->mpi, &tp, &cm->topo)) != EPC_OK)
        return epc_error_sync(cm->owner), st;
    cm->node = cm->topo->node_of[cm->rank];
    cm->lrank = cm->topo->local_rank[cm->rank];
    cm->lsize = cm->topo->node_start[cm->node + 1] - cm->topo->node_start[cm->node];
    return EPC_OK;
}

epc_status_t epc_comm_build(epc_comm_t *cm, epc_progress_poll_t poll, void *arg)
{
    epc_status_t st = build_node(cm); /* the topology agreed on its own failure */
    if (st != EPC_OK)
        return st;
    /* The abort area lives in lane 0's control segment: lanes first. */
    for (int l = 0; l < EPC_LANES && st == EPC_OK; l++)
        st = epc_lane_create(cm, l, &cm->lane[l]);
    if (st == EPC_OK)
        st = epc_abort_init(&cm->abort, cm->ctrl, cm->topo, cm->lane[0].shm, cm->owner);
    if (st == EPC_OK)
        st = link_classes(cm);
    if (st == EPC_OK) /* last: the lanes it may progress exist */
        st = epc_progress_start(&cm->progress, poll, arg, cm->owner);
    /* After a timeout a rank is missing: agreeing would only wait for it
     * again (the others time out on it by themselves). */
    if (st == EPC_ERR_TIMEOUT)
        return st;
    if ((st = epc_mpi_agree(cm->mpi, st, cm->owner, epc_comm_deadline(cm))) != EPC_OK)
        return st;
    epc_log(EPC_LOG_INFO, "context: %d ranks, %d nodes, transport %s%s%s (%s)", cm->nranks,
            cm->topo->nnodes, cm->lane[0].tr->ops->name,
            cm->lane[0].tr->provider[0] ? " provider " : "", cm->lane[0].tr->provider,
            cm->transport_reason);
    return st;
}

void epc_comm_close(epc_comm_t *cm)
{
    epc_progress_stop(&cm->progress); /* first: no one else touches the lanes from here */
    epc_abort_fini(&cm->abort);
    for (int l = 0; l < EPC_LANES; l++)
        epc_lane_destroy(&cm->lane[l]);
    epc_topo_destroy(cm->topo);
    free(cm->link_class);
    /* Local in MPI: marks the communicators for freeing once their pending
     * operations (abandoned after a timeout) complete. */
    if (cm->ctrl != MPI_COMM_NULL)
        MPI_Comm_free(&cm->ctrl);
    if (cm->mpi != MPI_COMM_NULL)
        MPI_Comm_free(&cm->mpi);
    cm->topo = NULL;
    cm->link_class = NULL;
}

epc_status_t epc_comm_quiesce(epc_comm_t *cm, const char *fn)
{
    if (cm->failed || cm->aborted || epc_abort_poll(&cm->abort) != EPC_OK)
        return EPC_OK;
    return epc_mpi_barrier(cm->mpi, epc_comm_deadline(cm), fn, cm->owner);
}
