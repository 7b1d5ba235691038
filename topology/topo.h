/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * topo.h - the topology object (internal layout), shared by topology/ and
 * the layers above that read it (routing, comm).
 */
#ifndef EPC_TOPOLOGY_TOPO_H
#define EPC_TOPOLOGY_TOPO_H

#include <mpi.h>

#include "epcomm.h"
#include "error.h"
#include "hw.h"

/* What each rank tells all others about itself; exchanged as bytes. */
typedef struct epc_rank_rec {
    char host[MPI_MAX_PROCESSOR_NAME];
    int phys_leader; /* lowest rank sharing memory with this one */
    int phys_local;  /* index among the ranks sharing memory */
    int phys_size;   /* ranks sharing memory */
    int bound;
    epc_hw_locality_t loc;
    char gpu[EPC_HW_NAME_MAX];
    char nic[EPC_HW_NAME_MAX];
    epc_hw_summary_t sum;
} epc_rank_rec_t;

struct epc_topo {
    epc_obj_t hdr; /* magic EPC_MAGIC_TOPO */
    MPI_Comm comm; /* valid during creation only */
    int nranks, my_rank, nnodes;
    int uniform_rpn;      /* ranks per node if all equal, else 0 */
    int *node_of;         /* [nranks] */
    int *local_rank;      /* [nranks] */
    int *node_start;      /* [nnodes + 1]: node k's ranks are node_ranks[start[k]..start[k+1]) */
    int *node_ranks;      /* [nranks], by node then local rank */
    epc_rank_rec_t *recs; /* [nranks] */
    epc_hw_t *hw;         /* this rank's hardware (NULL after a failure) */
    char hw_source[512];
    char profile_src[64];
    epc_topo_bw_t bw;
};

/* Bandwidth profiles, in the order of EPC_HW_PROFILE's choices (a unit test
 * checks the two agree). */
typedef struct epc_topo_profile {
    const char *name;
    double intra, inter; /* GB/s per rank */
} epc_topo_profile_t;
#define EPC_TOPO_PROFILE_NAMES "h800|h100-ib|gb200-nvl72|cpu-eth"
#define EPC_TOPO_NPROFILES 4
extern const epc_topo_profile_t epc_topo_profiles[EPC_TOPO_NPROFILES];

/* Index of a profile name, -1 if unknown. */
int epc_topo_profile_index(const char *name);

/* Fills node_start/node_ranks/uniform_rpn from node_of/local_rank. */
epc_status_t epc_topo_index_nodes(epc_topo_t *t);

#endif
