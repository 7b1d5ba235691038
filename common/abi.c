/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * abi.c - the layout of every public struct as this library was compiled,
 * for bindings that mirror the structs (Python's ctypes) to check theirs
 * against when they load: a header change can then never misalign them
 * silently.  tests/abi_check.sh checks that the table lists every field of
 * every struct in include/epcomm.h.
 */
#include <stddef.h>

#include "epcomm.h"

/* A row for struct T itself (its size), and one per field of T. */
#define STRUCT                           \
    {                                    \
        EPC_ABI_STR(T), "", 0, sizeof(T) \
    }
#define F(f)                                                    \
    {                                                           \
        EPC_ABI_STR(T), #f, offsetof(T, f), sizeof(((T *)0)->f) \
    }
#define EPC_ABI_STR(x) EPC_ABI_STR_(x)
#define EPC_ABI_STR_(x) #x

/* clang-format off */
static const epc_abi_field_t table[] = {
#define T epc_ctx_params_t
    STRUCT, F(size), F(num_experts), F(hidden), F(dtype), F(max_tokens_per_rank), F(max_topk),
    F(transport), F(ofi_provider), F(ranks_per_node), F(timeout_ms), F(log_level), F(progress),
#undef T
#define T epc_ctx_stats_t
    STRUCT, F(size), F(bytes_sent), F(bytes_recv), F(shm_bytes), F(net_bytes), F(shm_grows),
    F(net_grows), F(transport), F(provider), F(transport_reason), F(ll_transfer),
#undef T
#define T epc_dispatch_args_t
    STRUCT, F(size), F(x), F(num_tokens), F(topk), F(topk_idx), F(topk_weights),
    F(expert_alignment), F(algo), F(payload), F(x_scales),
#undef T
#define T epc_dispatch_out_t
    STRUCT, F(size), F(rows), F(num_rows), F(num_local_experts), F(expert_begin), F(expert_count),
    F(src_rank), F(src_token), F(local_expert), F(weight), F(row_stride), F(scales),
#undef T
#define T epc_combine_args_t
    STRUCT, F(size), F(expert_out), F(y), F(unweighted), F(scalar_channel), F(row_scalars),
    F(topk_scalars), F(wire), F(order),
#undef T
#define T epc_coll_bytes_t
    STRUCT, F(payload_inter), F(payload_intra), F(meta_inter), F(meta_intra),
#undef T
#define T epc_coll_stats_t
    STRUCT, F(size), F(last_dispatch), F(last_combine), F(total), F(dispatches), F(combines),
#undef T
#define T epc_ll_dispatch_args_t
    STRUCT, F(size), F(x), F(num_tokens), F(topk), F(topk_idx), F(payload), F(x_scales),
#undef T
#define T epc_ll_out_t
    STRUCT, F(size), F(rows), F(scales), F(row_stride), F(num_local_experts), F(slots),
    F(max_tokens), F(count), F(src_count), F(src_token), F(call),
#undef T
#define T epc_ll_combine_args_t
    STRUCT, F(size), F(dispatched), F(expert_out), F(topk_weights), F(y),
#undef T
#define T epc_config_var_t
    STRUCT, F(size), F(name), F(type), F(allowed), F(default_value), F(value), F(help),
    F(from_env), F(valid),
#undef T
#define T epc_build_info_t
    STRUCT, F(version), F(configure_args), F(compiler), F(mpi_compiled), F(hwloc_compiled),
    F(hwloc_runtime), F(have_ofi), F(ofi_compiled), F(ofi_runtime),
#undef T
#define T epc_topo_params_t
    STRUCT, F(size), F(ranks_per_node), F(xml_path), F(hw_profile), F(intra_bw_gbs),
    F(inter_bw_gbs),
#undef T
#define T epc_rank_info_t
    STRUCT, F(size), F(rank), F(node), F(local_rank), F(host), F(cpuset), F(bound), F(package),
    F(numa), F(cores), F(nics), F(gpus), F(nic), F(gpu),
#undef T
#define T epc_node_info_t
    STRUCT, F(size), F(node), F(host), F(num_ranks), F(first_rank), F(packages), F(numa_nodes),
    F(cores), F(pus), F(nics), F(gpus),
#undef T
#define T epc_topo_bw_t
    STRUCT, F(size), F(intra_gbs), F(inter_gbs), F(profile), F(intra_source), F(inter_source),
#undef T
#define T epc_router_params_t
    STRUCT, F(size), F(num_experts), F(topk), F(num_ranks), F(ranks_per_node),
    F(max_nodes_per_token), F(num_groups), F(max_groups_per_token), F(group_score_topk),
    F(score_fn), F(expert_bias), F(expert_bias_len), F(normalize), F(route_scale),
#undef T
#define T epc_layout_t
    STRUCT, F(size), F(tokens_per_rank), F(tokens_per_node), F(tokens_per_expert),
    F(token_in_rank), F(token_in_node),
#undef T
#define T epc_route_stats_t
    STRUCT, F(size), F(num_tokens), F(mean_ranks_per_token), F(max_ranks_per_token),
    F(mean_nodes_per_token), F(max_nodes_per_token), F(expert_load_imbalance),
    F(rank_load_imbalance), F(node_load_imbalance), F(flat_inter_bytes), F(flat_intra_bytes),
    F(hier_inter_bytes), F(hier_intra_bytes),
#undef T
#define T epc_cost_params_t
    STRUCT, F(size), F(num_ranks), F(ranks_per_node), F(row_bytes), F(intra_bw_gbs),
    F(inter_bw_gbs), F(topo), F(tokens_per_rank), F(tokens_per_node), F(combine_row_bytes),
    F(rows_per_rank), F(ll_latency_us),
#undef T
#define T epc_cost_t
    STRUCT, F(size), F(flat_dispatch_us), F(flat_combine_us), F(hier_dispatch_us),
    F(hier_combine_us), F(flat_max_inter_bytes), F(flat_max_intra_bytes), F(hier_max_inter_bytes),
    F(hier_max_intra_bytes), F(ll_dispatch_us), F(ll_combine_us), F(ll_max_inter_bytes),
    F(ll_max_intra_bytes),
#undef T
#define T epc_placement_params_t
    STRUCT, F(size), F(num_experts), F(num_ranks), F(ranks_per_node), F(num_slots),
    F(slot_expert),
#undef T
#define T epc_placement_info_t
    STRUCT, F(size), F(num_experts), F(num_slots), F(num_ranks), F(ranks_per_node),
    F(slots_per_rank), F(max_replicas), F(node_local), F(choice),
#undef T
#define T epc_placement_plan_params_t
    STRUCT, F(size), F(num_experts), F(num_ranks), F(ranks_per_node), F(num_slots),
    F(expert_load), F(num_groups), F(algo), F(expert_reach),
#undef T
#define T epc_slot_move_t
    STRUCT, F(slot), F(peer), F(peer_slot),
#undef T
#define T epc_abi_field_t
    STRUCT, F(type), F(field), F(offset), F(size),
#undef T
};
/* clang-format on */

const epc_abi_field_t *epc_abi_table(int *count, int *abi_version)
{
    if (count != NULL)
        *count = (int)(sizeof table / sizeof table[0]);
    if (abi_version != NULL)
        *abi_version = EPC_ABI_VERSION;
    return table;
}
