/* SPDX-License-Identifier: BSD-3-Clause */
/* profiles.c - nominal bandwidths of named hardware, for the cost model. */
#include <string.h>

#include "topo.h"

const epc_topo_profile_t epc_topo_profiles[EPC_TOPO_NPROFILES] = {
    {"h800", 160.0, 50.0},        /* DeepSeek-V3 report: NVLink 160, IB 50 */
    {"h100-ib", 450.0, 50.0},     /* NVLink4 900 GB/s bidir., 400 Gb/s IB */
    {"gb200-nvl72", 900.0, 50.0}, /* NVLink5 1.8 TB/s bidir., 400 Gb/s IB */
    {"cpu-eth", 20.0, 12.5},      /* memcpy bandwidth, 100 GbE */
};

int epc_topo_profile_index(const char *name)
{
    for (int i = 0; name != NULL && i < EPC_TOPO_NPROFILES; i++)
        if (strcmp(epc_topo_profiles[i].name, name) == 0)
            return i;
    return -1;
}

epc_status_t epc_hw_profile(const char *name, double *intra_gbs, double *inter_gbs)
{
    int i = epc_topo_profile_index(name);
    if (i < 0 || intra_gbs == NULL || inter_gbs == NULL)
        return epc_error(EPC_ERR_INVALID_ARG, "epc_hw_profile: %s%s%s",
                         i < 0 ? "unknown profile \"" : "output pointer is NULL",
                         i < 0 ? (name ? name : "(null)") : "",
                         i < 0 ? "\", expected " EPC_TOPO_PROFILE_NAMES : "");
    *intra_gbs = epc_topo_profiles[i].intra;
    *inter_gbs = epc_topo_profiles[i].inter;
    return EPC_OK;
}
