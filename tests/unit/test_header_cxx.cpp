/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * test_header_cxx - built with -std=c++11 -Wall -Wextra -Wpedantic -Werror:
 * the public header must compile cleanly as C++, link with C linkage, and
 * its params and output macros must work there too.
 */
#include "epcomm.h"

#include <cstdio>
#include <cstring>

int main()
{
    epc_ctx_params_t p = EPC_CTX_PARAMS_INIT;
    int fails = 0;
    if (p.size != sizeof(epc_ctx_params_t)) {
        std::fprintf(stderr, "EPC_CTX_PARAMS_INIT: size %zu\n", p.size);
        fails++;
    }
    if (p.num_experts != 0 || p.hidden != 0 || p.dtype != EPC_DTYPE_DEFAULT ||
        p.ofi_provider != nullptr || p.timeout_ms != 0) {
        std::fprintf(stderr, "EPC_CTX_PARAMS_INIT: fields not zero\n");
        fails++;
    }
    epc_status_t st = EPC_ERR_TIMEOUT;
    if (std::strcmp(epc_status_string(st), "timed out") != 0) {
        std::fprintf(stderr, "epc_status_string broken from C++\n");
        fails++;
    }
    if (std::strcmp(epc_last_error(nullptr), "") != 0) {
        std::fprintf(stderr, "unexpected last error: %s\n", epc_last_error(nullptr));
        fails++;
    }
    /* Every output struct's macro sets its size (and compiles here). */
    int sized = (EPC_CTX_STATS_INIT.size == sizeof(epc_ctx_stats_t)) +
                (EPC_COLL_STATS_INIT.size == sizeof(epc_coll_stats_t)) +
                (EPC_DISPATCH_OUT_INIT.size == sizeof(epc_dispatch_out_t)) +
                (EPC_CONFIG_VAR_INIT.size == sizeof(epc_config_var_t)) +
                (EPC_RANK_INFO_INIT.size == sizeof(epc_rank_info_t)) +
                (EPC_NODE_INFO_INIT.size == sizeof(epc_node_info_t)) +
                (EPC_TOPO_BW_INIT.size == sizeof(epc_topo_bw_t)) +
                (EPC_LAYOUT_INIT.size == sizeof(epc_layout_t)) +
                (EPC_ROUTE_STATS_INIT.size == sizeof(epc_route_stats_t)) +
                (EPC_COST_INIT.size == sizeof(epc_cost_t));
    if (sized != 10) {
        std::fprintf(stderr, "%d of 10 output INIT macros set their size\n", sized);
        fails++;
    }
    std::printf("%d passed, %d failed\n", 5 - fails, fails);
    return fails != 0;
}
