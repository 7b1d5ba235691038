/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * hw.h - what hwloc says about one node: cores, NUMA, the network devices and
 * GPUs, and which of them are nearest to a set of CPUs.  No MPI here, so the
 * logic is unit-tested on XML and synthetic topologies.
 *
 * Devices: a NIC is a network or OpenFabrics OS device, a GPU a GPU (not DRM
 * display) or co-processor (CUDA, OpenCL, ...) OS device.  OS devices of one
 * PCI function are one device (cuda0 and nvml0 are the same GPU; mlx5_0 and
 * ib0 the same NIC), named by the most useful of its names (CUDA, then NVML;
 * OpenFabrics, then network).
 *
 * Nearest: the devices whose closest normal (non-I/O) ancestor shares the
 * deepest common ancestor with the object covering the CPU set.
 */
#ifndef EPC_TOPOLOGY_HW_H
#define EPC_TOPOLOGY_HW_H

#include <hwloc.h>

#include "epcomm.h"

#define EPC_HW_NAME_MAX 32
#define EPC_HW_LIST_MAX 256

typedef struct epc_hw epc_hw_t;

/* Locality of one rank's CPUs on its node. */
typedef struct epc_hw_locality {
    char cpuset[EPC_HW_LIST_MAX]; /* hwloc list syntax, "0-3,8" */
    int package;                  /* logical index, -1 if it spans several */
    int numa;                     /* logical index, -1 if it spans several */
    int cores;                    /* cores its CPUs touch */
    char nics[EPC_HW_LIST_MAX];   /* nearest NICs, comma-separated */
    char gpus[EPC_HW_LIST_MAX];   /* nearest GPUs, comma-separated */
} epc_hw_locality_t;

/* The whole node. */
typedef struct epc_hw_summary {
    int packages, numa_nodes, cores, pus;
    char nics[EPC_HW_LIST_MAX]; /* every NIC, comma-separated */
    char gpus[EPC_HW_LIST_MAX]; /* every GPU */
} epc_hw_summary_t;

/*
 * Loads the topology, with I/O devices.  Source, first that applies: xml
 * (a file), synthetic (an hwloc synthetic description), else hwloc's own
 * default, which honours HWLOC_XMLFILE and HWLOC_SYNTHETIC, else this
 * system.  EPC_ERR_TOPOLOGY with hwloc's reason when it cannot load.
 */
epc_status_t epc_hw_load(const char *xml, const char *synthetic, epc_hw_t **hw_p);
void epc_hw_free(epc_hw_t *hw);

/* 1 when the topology is the machine we run on (binding is meaningful). */
int epc_hw_is_thissystem(const epc_hw_t *hw);

/* Where the topology came from: "this system", "xml /path", ... */
const char *epc_hw_source(const epc_hw_t *hw);

/*
 * The CPUs of local rank `local_rank` of `local_size`.  On this system: the
 * process binding (*bound = 1 when it is a strict subset of the machine).
 * On any other topology binding is meaningless and never attempted: the
 * rank gets the local_rank-th of local_size equal consecutive blocks of PUs,
 * as `mpirun --map-by core` would give, and *bound = 1.
 */
epc_status_t epc_hw_rank_cpuset(const epc_hw_t *hw, int local_rank, int local_size,
                                hwloc_bitmap_t out, int *bound);

/* Locality of the CPUs in `cpuset` (must not be empty). */
epc_status_t epc_hw_locality(const epc_hw_t *hw, hwloc_const_bitmap_t cpuset,
                             epc_hw_locality_t *loc);

void epc_hw_summary(const epc_hw_t *hw, epc_hw_summary_t *sum);

/*
 * Picks one GPU and one NIC for each of n ranks sharing this node, given their
 * nearest lists (loc[i].gpus/nics).  Ranks with the same nearest GPU list take
 * its entries in turn (the k-th such rank gets entry k mod length), as
 * frameworks map local ranks to devices.  A rank with a GPU takes the NIC
 * fewest PCI hops from that GPU (ties: first in the node's order); a rank
 * without one takes its nearest NICs in turn like GPUs.  "" when none.
 */
epc_status_t epc_hw_assign(const epc_hw_t *hw, const epc_hw_locality_t *loc, int n,
                           char (*gpu)[EPC_HW_NAME_MAX], char (*nic)[EPC_HW_NAME_MAX]);

#endif
