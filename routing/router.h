/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * router.h - internal layout of the router and the routing kernels.
 *
 * Experts are placed in contiguous blocks: rank r owns experts
 * [r*E/R, (r+1)*E/R), node n owns [n*E/nodes, (n+1)*E/nodes), group g owns
 * [g*E/G, (g+1)*E/G).
 */
#ifndef EPC_ROUTING_ROUTER_H
#define EPC_ROUTING_ROUTER_H

#include <stddef.h>
#include <stdint.h>

#include "epcomm.h"
#include "error.h"

/* Most items one selection keeps (k, M, topk_group, group_score_topk). */
#define EPC_ROUTE_MAX_SELECT 256

struct epc_router {
    epc_obj_t hdr; /* magic EPC_MAGIC_ROUTER */
    int E, k, R, rpn, nodes, M, G, topk_group;
    int epr, epn, epg;     /* experts per rank / node / group */
    int node_gk, group_gk; /* scores summed to rank a node / a group */
    epc_score_fn_t fn;
    float *bias; /* [E] or NULL */
    int normalize;
    float scale;
    /* scratch, so epc_route writes its outputs only once all tokens passed */
    float *scores, *choice; /* [E] */
    uint8_t *node_ok, *group_ok;
    float *block_score, *top1, *top2; /* [max(nodes, groups)] */
    float *cand_v;                    /* [E]: selection candidates */
    int32_t *cand_i;
    int32_t *idx_buf;
    float *w_buf;
    size_t buf_tokens;
};

/*
 * scores[e] = fn(x[e]) for one token, and choice[e] = scores[e] + bias[e]
 * when bias is not NULL.  Returns the index of the first NaN or infinite
 * logit, or -1 when all are finite (then the outputs are complete).
 * Lives in its own file, built for speed (vectorised exp); the finite test
 * reads the bits so that it holds under any floating-point flags.
 */
int epc_route_scores(epc_score_fn_t fn, const float *x, int E, const float *bias, float *scores,
                     float *choice);

/* On x86-64 with GCC/clang, the kernels are also built for AVX2 and the
 * loader picks the variant the CPU supports (no FMA: every variant rounds
 * alike, so results do not depend on the machine).  EPC_NO_SIMD_CLONES turns
 * this off (the clang fuzz build, whose clang 14 does not link clones
 * across files). */
#if defined(EPC_HAVE_TARGET_CLONES) && !defined(EPC_NO_SIMD_CLONES)
#define EPC_SIMD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define EPC_SIMD_CLONES
#endif

/* For each block b of `size` values c[b*size ..]: t1[b], t2[b] its two
 * largest (t2 = -FLT_MAX if size is 1) and sum[b] the sum of its gk (1 or 2)
 * largest in descending order (a node's or group's rank score). */
void epc_route_block_top2(const float *c, int nblocks, int size, int gk, float *sum, float *t1,
                          float *t2);

/*
 * The common node (or group) limit in one pass (nblocks <= 64, gk <= 2):
 * block sums as epc_route_block_top2, ok[b] = 1 for the `keep` best sums
 * (ties to the lower index), and, when the kept blocks hold at least k
 * values among their two best, *floor = the k-th largest of those (no
 * chosen expert can be below it) and 1 is returned; else 0.
 */
int epc_route_select_blocks(const float *c, int nblocks, int size, int gk, int keep, int k,
                            float *sum, float *t1, float *t2, uint8_t *ok, float *floor);

/* The k best of n values (n >= k; ties to the earlier position, which is
 * the lower index when idx ascends), best first, by branch-free ranking. */
void epc_route_rank_select(const float *v, const int32_t *idx, int n, int k, float *out_v,
                           int32_t *out_i);

/* The values >= floor of the ok blocks, with their indices, in ascending
 * index order; returns how many. */
int epc_route_gather(const float *c, int nblocks, int size, const uint8_t *ok, float floor,
                     float *cv, int32_t *ci);

/* Internal layout from plain numbers, for the collectives: validates every
 * entry before writing anything. */
epc_status_t epc_route_layout(int E, int k, int R, int rpn, const int32_t *topk_idx, int T,
                              const epc_layout_t *out);

/* Checks topk_idx [T x k]: entries in [-1, E), no expert twice per token. */
epc_status_t epc_route_check_idx(int E, int k, const int32_t *topk_idx, int T, const char *fn);

#endif
