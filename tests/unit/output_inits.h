/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * output_inits.h - how many of the 11 output structs' INIT macros set their
 * size: one expression, compiled as C11 by test_header_c and as C++11 by
 * test_header_cxx (where the macros take another path).
 */
#ifndef EPC_TEST_OUTPUT_INITS_H
#define EPC_TEST_OUTPUT_INITS_H

#define EPC_TEST_OUTPUT_INITS 11
#define EPC_TEST_SIZED_OUTPUT_INITS                               \
    ((EPC_CTX_STATS_INIT.size == sizeof(epc_ctx_stats_t)) +       \
     (EPC_COLL_STATS_INIT.size == sizeof(epc_coll_stats_t)) +     \
     (EPC_DISPATCH_OUT_INIT.size == sizeof(epc_dispatch_out_t)) + \
     (EPC_CONFIG_VAR_INIT.size == sizeof(epc_config_var_t)) +     \
     (EPC_RANK_INFO_INIT.size == sizeof(epc_rank_info_t)) +       \
     (EPC_NODE_INFO_INIT.size == sizeof(epc_node_info_t)) +       \
     (EPC_TOPO_BW_INIT.size == sizeof(epc_topo_bw_t)) +           \
     (EPC_LAYOUT_INIT.size == sizeof(epc_layout_t)) +             \
     (EPC_ROUTE_STATS_INIT.size == sizeof(epc_route_stats_t)) +   \
     (EPC_COST_INIT.size == sizeof(epc_cost_t)) +                 \
     (EPC_PLACEMENT_INFO_INIT.size == sizeof(epc_placement_info_t)))

#endif
