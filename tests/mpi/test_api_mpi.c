/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * test_api_mpi - the header's promises, function by function: every public
 * function is called with each bad argument its comment lists, and must
 * return the status the header names with a text that names the argument;
 * nothing may be written to outputs then.  Collective calls get the same
 * bad argument on every rank (each rank then reports its own error).  Uses
 * the public header only.  4 ranks as 2 virtual nodes.
 *   test_api_mpi          every function
 *   test_api_mpi quiet    params.log_level = EPC_LOG_OFF: failures still
 *                         return their statuses and full texts, and the
 *                         script checks that nothing was printed
 *   test_api_mpi loud     the same failures at the default level (which
 *                         the script checks do print)
 */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "epcomm.h"
#include "mpi_test.h"

/* `call` returns `want`, and the last error (of ctx, or of the thread when
 * ctx is NULL) contains `word` (NULL: not checked). */
#define EXPECT(call, want, ctx, word) expect_((call), (want), (ctx), (word), #call, __LINE__)

static void expect_(epc_status_t got, epc_status_t want, const epc_ctx_t *ctx, const char *word,
                    const char *what, int line)
{
    const char *text = epc_last_error(ctx);
    MT_CHECK(got == want && (word == NULL || strstr(text, word) != NULL),
             "line %d: %s: got %s, want %s: %s", line, what, epc_status_name(got),
             epc_status_name(want), text);
}

static int R;

/* Functions that need no communicator. */
static void local_functions(void)
{
    char buf[4096], why[256];
    epc_transport_t chosen = EPC_TRANSPORT_DEFAULT;
    epc_config_var_t var = EPC_CONFIG_VAR_INIT;
    double a = -1, b = -1;
    int maj = -1, nl = -1;
    MT_CHECK(strcmp(epc_get_version(&maj, NULL, NULL), EPC_VERSION_STRING) == 0 &&
                 maj == EPC_VERSION_MAJOR,
             "version");
    MT_CHECK(!strcmp(epc_status_name((epc_status_t)-99), "EPC_UNKNOWN") &&
                 !strcmp(epc_status_string((epc_status_t)-99), "unknown status"),
             "unknown status names");
    MT_CHECK(!strcmp(epc_link_class_name((epc_link_class_t)7), "?") ||
                 epc_link_class_name((epc_link_class_t)7) != NULL,
             "link class name");
    MT_CHECK(epc_get_build_info() != NULL, "build info");
    EXPECT(epc_config_get_var(-1, &var), EPC_ERR_INVALID_ARG, NULL, "index");
    EXPECT(epc_config_get_var(epc_config_count(), &var), EPC_ERR_INVALID_ARG, NULL, "index");
    EXPECT(epc_config_get_var(0, NULL), EPC_ERR_INVALID_ARG, NULL, "var");
    EXPECT(epc_transport_choice(EPC_TRANSPORT_AUTO, NULL, 0, &chosen), EPC_ERR_INVALID_ARG, NULL,
           "why");
    EXPECT(epc_transport_choice(EPC_TRANSPORT_AUTO, why, 0, &chosen), EPC_ERR_INVALID_ARG, NULL,
           "len");
    EXPECT(epc_transport_choice(EPC_TRANSPORT_AUTO, why, sizeof why, NULL), EPC_ERR_INVALID_ARG,
           NULL, "chosen");
    EXPECT(epc_transport_choice((epc_transport_t)9, why, sizeof why, &chosen), EPC_ERR_INVALID_ARG,
           NULL, "requested");
    MT_CHECK(chosen == EPC_TRANSPORT_DEFAULT, "chosen written on failure");
    EXPECT(epc_ofi_providers(NULL, 10), EPC_ERR_INVALID_ARG, NULL, "buf");
    EXPECT(epc_ofi_providers(buf, 0), EPC_ERR_INVALID_ARG, NULL, "buflen");
    if (epc_get_build_info()->have_ofi && epc_ofi_providers(buf, sizeof buf) == EPC_OK)
        EXPECT(epc_ofi_providers(buf, 2), EPC_ERR_CAPACITY, NULL, "buflen");
    EXPECT(epc_hw_profile("h900", &a, &b), EPC_ERR_INVALID_ARG, NULL, "h900");
    EXPECT(epc_hw_profile("h800", NULL, &b), EPC_ERR_INVALID_ARG, NULL, NULL);
    MT_CHECK(a == -1 && b == -1, "profile outputs written on failure");
    EXPECT(epc_recommend_node_limit(0, 4, 1, 1, &nl), EPC_ERR_INVALID_ARG, NULL, "topk");
    EXPECT(epc_recommend_node_limit(8, 0, 1, 1, &nl), EPC_ERR_INVALID_ARG, NULL, "num_nodes");
    EXPECT(epc_recommend_node_limit(8, 4, 0, 1, &nl), EPC_ERR_INVALID_ARG, NULL, "intra_bw_gbs");
    EXPECT(epc_recommend_node_limit(8, 4, 1, -1, &nl), EPC_ERR_INVALID_ARG, NULL, "inter_bw_gbs");
    EXPECT(epc_recommend_node_limit(8, 4, 1, NAN, &nl), EPC_ERR_INVALID_ARG, NULL, "inter_bw_gbs");
    EXPECT(epc_recommend_node_limit(8, 4, 1, 1, NULL), EPC_ERR_INVALID_ARG, NULL, "node_limit");
    MT_CHECK(nl == -1, "recommend_node_limit's output written on failure");
}

/* The router, layout, statistics and cost model. */
/* epc_router_create with each bad params field: refused naming it, the
 * router not written. */
static void router_create_errors(const epc_router_params_t *good)
{
    epc_router_params_t p = *good, q;
    epc_router_t *r = NULL, *untouched = (epc_router_t *)&p;
    float bias[16] = {0};
    EXPECT(epc_router_create(NULL, &r), EPC_ERR_INVALID_ARG, NULL, "params");
    EXPECT(epc_router_create(&p, NULL), EPC_ERR_INVALID_ARG, NULL, "router_p");
    q = p, q.size = 3;
    EXPECT(epc_router_create(&q, &r), EPC_ERR_INVALID_ARG, NULL, "size");
    q = p, q.topk = 17;
    EXPECT(epc_router_create(&q, &r), EPC_ERR_INVALID_ARG, NULL, "topk");
    q = p, q.num_ranks = 3;
    EXPECT(epc_router_create(&q, &r), EPC_ERR_INVALID_ARG, NULL, "num_ranks");
    q = p, q.ranks_per_node = 3;
    EXPECT(epc_router_create(&q, &r), EPC_ERR_INVALID_ARG, NULL, "ranks_per_node");
    q = p, q.max_nodes_per_token = 3;
    EXPECT(epc_router_create(&q, &r), EPC_ERR_INVALID_ARG, NULL, "max_nodes_per_token");
    q = p, q.expert_bias = bias, q.expert_bias_len = 15;
    EXPECT(epc_router_create(&q, &r), EPC_ERR_INVALID_ARG, NULL, "expert_bias_len");
    bias[3] = NAN;
    q = p, q.expert_bias = bias, q.expert_bias_len = 16;
    EXPECT(epc_router_create(&q, &r), EPC_ERR_INVALID_ARG, NULL, "expert_bias[3]");
    MT_CHECK(r == NULL, "router written on failure");
    r = untouched;
    q = p, q.num_experts = 0;
    EXPECT(epc_router_create(&q, &r), EPC_ERR_INVALID_ARG, NULL, "num_experts");
    MT_CHECK(r == untouched, "router_p written on failure");
}

static void routing_functions(void)
{
    epc_router_params_t p = EPC_ROUTER_PARAMS_INIT, q;
    epc_router_t *r = NULL;
    epc_cost_params_t cp = EPC_COST_PARAMS_INIT;
    epc_route_stats_t rs = EPC_ROUTE_STATS_INIT;
    epc_cost_t cost = EPC_COST_INIT;
    epc_layout_t lay = EPC_LAYOUT_INIT;
    float logits[2 * 16], w[4] = {-7, -7, -7, -7};
    int32_t idx[4] = {-7, -7, -7, -7}, good[4] = {0, 1, 2, 3}, tpr[4];
    p.num_experts = 16, p.topk = 2, p.num_ranks = 4, p.ranks_per_node = 2;
    router_create_errors(&p);
    EXPECT(epc_router_create(&p, &r), EPC_OK, NULL, NULL);
    for (int i = 0; i < 32; i++)
        logits[i] = (float)i;
    EXPECT(epc_route(NULL, logits, 2, idx, w), EPC_ERR_INVALID_ARG, NULL, "router");
    EXPECT(epc_route(r, logits, -1, idx, w), EPC_ERR_INVALID_ARG, NULL, "num_tokens");
    EXPECT(epc_route(r, NULL, 2, idx, w), EPC_ERR_INVALID_ARG, NULL, "NULL");
    logits[20] = INFINITY;
    EXPECT(epc_route(r, logits, 2, idx, w), EPC_ERR_INVALID_ARG, NULL, "token 1");
    MT_CHECK(idx[0] == -7 && w[0] == -7, "route outputs written on failure");
    idx[0] = 16, idx[1] = 0;
    EXPECT(epc_layout(r, idx, 1, &lay), EPC_ERR_INVALID_ARG, NULL, "outside");
    idx[0] = 3, idx[1] = 3;
    EXPECT(epc_layout(r, idx, 1, &lay), EPC_ERR_INVALID_ARG, NULL, "twice");
    EXPECT(epc_layout(r, good, -1, &lay), EPC_ERR_INVALID_ARG, NULL, "num_tokens");
    EXPECT(epc_layout(r, good, 2, NULL), EPC_ERR_INVALID_ARG, NULL, "out");
    lay.tokens_per_rank = tpr;
    memset(tpr, 0x7f, sizeof tpr);
    EXPECT(epc_layout(r, idx, 1, &lay), EPC_ERR_INVALID_ARG, NULL, "twice");
    MT_CHECK(tpr[0] == 0x7f7f7f7f, "layout written on failure");
    EXPECT(epc_route_stats(r, good, 2, 4, 100, &rs), EPC_ERR_INVALID_ARG, NULL, "src_rank");
    EXPECT(epc_route_stats(r, good, 2, 0, -1, &rs), EPC_ERR_INVALID_ARG, NULL, "row_bytes");
    EXPECT(epc_route_stats(r, idx, 1, 0, 100, &rs), EPC_ERR_INVALID_ARG, NULL, "twice");
    EXPECT(epc_cost_model(NULL, &cost), EPC_ERR_INVALID_ARG, NULL, NULL);
    EXPECT(epc_cost_model(&cp, &cost), EPC_ERR_INVALID_ARG, NULL, "num_ranks"); /* no R, no topo */
    cp.topo = (const epc_topo_t *)(const void *)&q;                             /* not a topology */
    EXPECT(epc_cost_model(&cp, &cost), EPC_ERR_INVALID_ARG, NULL, "topo");
    epc_router_destroy(r);
    epc_router_destroy(NULL);
}

/* The topology's output structs: an unknown size (0, 1, a newer header's)
 * is refused naming the INIT macro, nothing written; a known one is filled. */
static void topo_output_sizes(const epc_topo_t *t)
{
    epc_rank_info_t ri = EPC_RANK_INFO_INIT;
    epc_node_info_t ni = EPC_NODE_INFO_INIT;
    epc_topo_bw_t bw = EPC_TOPO_BW_INIT;
    ri.size = 0, ni.size = 1, bw.size = sizeof bw + 4, ri.rank = ni.node = -5, bw.profile = NULL;
    EXPECT(epc_topo_rank_info(t, 0, &ri), EPC_ERR_INVALID_ARG, NULL, "EPC_RANK_INFO_INIT");
    EXPECT(epc_topo_node_info(t, 0, &ni), EPC_ERR_INVALID_ARG, NULL, "EPC_NODE_INFO_INIT");
    EXPECT(epc_topo_bandwidth(t, &bw), EPC_ERR_INVALID_ARG, NULL, "EPC_TOPO_BW_INIT");
    MT_CHECK(ri.rank == -5 && ni.node == -5 && bw.profile == NULL, "info written, unknown size");
    ri.size = sizeof ri, ni.size = sizeof ni, bw.size = sizeof bw;
    EXPECT(epc_topo_rank_info(t, mt_rank, &ri), EPC_OK, NULL, NULL);
    EXPECT(epc_topo_node_info(t, 0, &ni), EPC_OK, NULL, NULL);
    EXPECT(epc_topo_bandwidth(t, &bw), EPC_OK, NULL, NULL);
    MT_CHECK(ri.rank == mt_rank && ri.size == sizeof ri && ni.node == 0 && ni.num_ranks >= 1 &&
                 bw.profile != NULL && bw.inter_gbs > 0,
             "info with known sizes");
}

/* Topology creation (collective, the same bad argument on every rank) and
 * every accessor. */
static void topo_functions(void)
{
    epc_topo_params_t p = EPC_TOPO_PARAMS_INIT, q;
    epc_topo_t *t = NULL;
    const char *src = NULL;
    epc_rank_info_t ri = EPC_RANK_INFO_INIT;
    epc_node_info_t ni = EPC_NODE_INFO_INIT;
    epc_link_class_t cls = (epc_link_class_t)-5;
    int v = -5, ranks[4];
    EXPECT(epc_topo_create(MPI_COMM_NULL, &p, &t), EPC_ERR_INVALID_ARG, NULL, "comm");
    EXPECT(epc_topo_create(MPI_COMM_WORLD, &p, NULL), EPC_ERR_INVALID_ARG, NULL, "topo_p");
    q = p, q.size = 5;
    EXPECT(epc_topo_create(MPI_COMM_WORLD, &q, &t), EPC_ERR_INVALID_ARG, NULL, "size");
    q = p, q.hw_profile = "h900";
    EXPECT(epc_topo_create(MPI_COMM_WORLD, &q, &t), EPC_ERR_INVALID_ARG, NULL, "h900");
    q = p, q.ranks_per_node = 3;
    EXPECT(epc_topo_create(MPI_COMM_WORLD, &q, &t), EPC_ERR_INVALID_ARG, NULL, "divide");
    q = p, q.xml_path = "/nonexistent/epc-api.xml"; /* hwloc cannot load it */
    EXPECT(epc_topo_create(MPI_COMM_WORLD, &q, &t), EPC_ERR_TOPOLOGY, NULL, "epc-api.xml");
    q = p, q.xml_path = mt_rank == 2 ? "/nonexistent/epc-api.xml" : NULL; /* on one rank */
    EXPECT(epc_topo_create(MPI_COMM_WORLD, &q, &t),
           mt_rank == 2 ? EPC_ERR_TOPOLOGY : EPC_ERR_PEER_FAILED, NULL, "epc-api.xml");
    MT_CHECK(t == NULL, "topo written on failure");
    q = p, q.ranks_per_node = mt_rank == 0 ? 1 : 2; /* ranks disagree */
    EXPECT(epc_topo_create(MPI_COMM_WORLD, &q, &t), EPC_ERR_MISMATCH, NULL, "ranks_per_node");
    EXPECT(epc_topo_create(MPI_COMM_WORLD, &p, &t), EPC_OK, NULL, NULL);
    EXPECT(epc_topo_num_ranks(NULL, &v), EPC_ERR_INVALID_ARG, NULL, "topo");
    EXPECT(epc_topo_num_ranks((const epc_topo_t *)(const void *)&p, &v), EPC_ERR_INVALID_ARG, NULL,
           "topo");
    EXPECT(epc_topo_my_rank(t, NULL), EPC_ERR_INVALID_ARG, NULL, "NULL");
    EXPECT(epc_topo_num_nodes(NULL, &v), EPC_ERR_INVALID_ARG, NULL, "topo");
    EXPECT(epc_topo_ranks_per_node(t, NULL), EPC_ERR_INVALID_ARG, NULL, "NULL");
    EXPECT(epc_topo_node_of(t, R, &v), EPC_ERR_INVALID_ARG, NULL, "rank");
    EXPECT(epc_topo_node_of(t, -1, &v), EPC_ERR_INVALID_ARG, NULL, "rank");
    EXPECT(epc_topo_local_rank(t, R, &v), EPC_ERR_INVALID_ARG, NULL, "rank");
    EXPECT(epc_topo_local_size(t, 99, &v), EPC_ERR_INVALID_ARG, NULL, "node");
    MT_CHECK(v == -5, "accessor output written on failure");
    EXPECT(epc_topo_node_ranks(t, 0, ranks, 0, &v), EPC_ERR_INVALID_ARG, NULL, "capacity");
    EXPECT(epc_topo_node_ranks(t, 99, ranks, 4, &v), EPC_ERR_INVALID_ARG, NULL, "node");
    EXPECT(epc_topo_rank_info(t, R, &ri), EPC_ERR_INVALID_ARG, NULL, "rank");
    EXPECT(epc_topo_rank_info(t, 0, NULL), EPC_ERR_INVALID_ARG, NULL, "NULL");
    topo_output_sizes(t);
    EXPECT(epc_topo_node_info(t, -1, &ni), EPC_ERR_INVALID_ARG, NULL, "node");
    EXPECT(epc_topo_link_class(t, 0, R, &cls), EPC_ERR_INVALID_ARG, NULL, "rank_b");
    EXPECT(epc_topo_link_class(t, R, 0, &cls), EPC_ERR_INVALID_ARG, NULL, "rank");
    MT_CHECK(cls == (epc_link_class_t)-5, "link class written on failure");
    EXPECT(epc_topo_bandwidth(t, NULL), EPC_ERR_INVALID_ARG, NULL, "NULL");
    EXPECT(epc_topo_hw_source(NULL, &src), EPC_ERR_INVALID_ARG, NULL, "topo");
    MT_CHECK(src == NULL, "hw source written on failure");
    epc_topo_destroy(t);
    epc_topo_destroy(NULL);
}

/* Context creation: each bad params field, on every rank. */
static void ctx_create_errors(void)
{
    epc_ctx_params_t p = EPC_CTX_PARAMS_INIT, q;
    epc_ctx_t *ctx = NULL;
    p.num_experts = 4 * R, p.hidden = 64;
    EXPECT(epc_ctx_create(MPI_COMM_NULL, &p, &ctx), EPC_ERR_INVALID_ARG, NULL, "comm");
    EXPECT(epc_ctx_create(MPI_COMM_WORLD, NULL, &ctx), EPC_ERR_INVALID_ARG, NULL, "params");
    EXPECT(epc_ctx_create(MPI_COMM_WORLD, &p, NULL), EPC_ERR_INVALID_ARG, NULL, "ctx_p");
    q = p, q.size = sizeof q + 8;
    EXPECT(epc_ctx_create(MPI_COMM_WORLD, &q, &ctx), EPC_ERR_INVALID_ARG, NULL, "size");
    q = p, q.num_experts = 0;
    EXPECT(epc_ctx_create(MPI_COMM_WORLD, &q, &ctx), EPC_ERR_INVALID_ARG, NULL, "num_experts");
    q = p, q.hidden = -3;
    EXPECT(epc_ctx_create(MPI_COMM_WORLD, &q, &ctx), EPC_ERR_INVALID_ARG, NULL, "hidden");
    q = p, q.dtype = (epc_dtype_t)9;
    EXPECT(epc_ctx_create(MPI_COMM_WORLD, &q, &ctx), EPC_ERR_INVALID_ARG, NULL, "dtype");
    q = p, q.transport = (epc_transport_t)9;
    EXPECT(epc_ctx_create(MPI_COMM_WORLD, &q, &ctx), EPC_ERR_INVALID_ARG, NULL, "transport");
    q = p, q.timeout_ms = -1;
    EXPECT(epc_ctx_create(MPI_COMM_WORLD, &q, &ctx), EPC_ERR_INVALID_ARG, NULL, "timeout_ms");
    q = p, q.max_topk = 4 * R + 1;
    EXPECT(epc_ctx_create(MPI_COMM_WORLD, &q, &ctx), EPC_ERR_INVALID_ARG, NULL, "max_topk");
    q = p, q.log_level = (epc_log_level_t)42;
    EXPECT(epc_ctx_create(MPI_COMM_WORLD, &q, &ctx), EPC_ERR_INVALID_ARG, NULL, "log_level");
    q = p, q.num_experts = 4 * R + 1;
    EXPECT(epc_ctx_create(MPI_COMM_WORLD, &q, &ctx), EPC_ERR_INVALID_ARG, NULL, "divisible");
    q = p, q.hidden = mt_rank == 1 ? 32 : 64;
    EXPECT(epc_ctx_create(MPI_COMM_WORLD, &q, &ctx), EPC_ERR_MISMATCH, NULL, "hidden");
    q = p, q.max_topk = mt_rank == 2 ? 0 : 3; /* rank 2 alone passes a bad one */
    q.hidden = mt_rank == 2 ? 0 : 64;
    EXPECT(epc_ctx_create(MPI_COMM_WORLD, &q, &ctx),
           mt_rank == 2 ? EPC_ERR_INVALID_ARG : EPC_ERR_PEER_FAILED, NULL,
           mt_rank == 2 ? "hidden" : "rank 2: ");
    MT_CHECK(ctx == NULL, "ctx written on failure");
    /* The 0.1 layout (without log_level) is still accepted. */
    q = p, q.size = offsetof(epc_ctx_params_t, log_level);
    EXPECT(epc_ctx_create(MPI_COMM_WORLD, &q, &ctx), EPC_OK, NULL, NULL);
    EXPECT(epc_ctx_destroy(ctx), EPC_OK, NULL, NULL);
}

/* Creation from a Fortran handle: of the world, NULL for the world, of a
 * split communicator (the context then spans its 2 ranks), of nothing. */
static void ctx_create_fortran(void)
{
    epc_ctx_params_t p = EPC_CTX_PARAMS_INIT;
    epc_ctx_t *ctx = NULL;
    const epc_topo_t *topo = NULL;
    MPI_Comm half;
    MPI_Fint world = MPI_Comm_c2f(MPI_COMM_WORLD), fhalf, none = 12345;
    int n = 0;
    p.num_experts = 4 * R, p.hidden = 64;
    EXPECT(epc_ctx_create_f(&world, &p, &ctx), EPC_OK, NULL, NULL);
    EXPECT(epc_ctx_topo(ctx, &topo), EPC_OK, NULL, NULL);
    MT_CHECK(topo != NULL && epc_topo_num_ranks(topo, &n) == EPC_OK && n == R, "world: %d", n);
    EXPECT(epc_ctx_destroy(ctx), EPC_OK, NULL, NULL);
    ctx = NULL;
    EXPECT(epc_ctx_create_f(NULL, &p, &ctx), EPC_OK, NULL, NULL);
    MT_CHECK(epc_ctx_topo(ctx, &topo) == EPC_OK && epc_topo_num_ranks(topo, &n) == EPC_OK && n == R,
             "NULL: %d ranks", n);
    EXPECT(epc_ctx_destroy(ctx), EPC_OK, NULL, NULL);
    ctx = NULL;
    MPI_Comm_split(MPI_COMM_WORLD, mt_rank / 2, mt_rank, &half);
    fhalf = MPI_Comm_c2f(half);
    EXPECT(epc_ctx_create_f(&fhalf, &p, &ctx), EPC_OK, NULL, NULL);
    MT_CHECK(epc_ctx_topo(ctx, &topo) == EPC_OK && epc_topo_num_ranks(topo, &n) == EPC_OK && n == 2,
             "split: %d ranks", n);
    EXPECT(epc_ctx_destroy(ctx), EPC_OK, NULL, NULL);
    MPI_Comm_free(&half);
    ctx = NULL;
    EXPECT(epc_ctx_create_f(&none, &p, &ctx), EPC_ERR_INVALID_ARG, NULL, "no communicator");
    MT_CHECK(ctx == NULL, "ctx written on failure");
}

/* params->progress: a bad value; the thread without MPI_THREAD_MULTIPLE
 * (this program calls MPI_Init) refused on every rank, naming the level
 * it needs; the 0.2 layout (without progress) accepted. */
static void ctx_progress_errors(void)
{
    epc_ctx_params_t p = EPC_CTX_PARAMS_INIT, q;
    epc_ctx_t *ctx = NULL;
    int provided = MPI_THREAD_SINGLE;
    MPI_Query_thread(&provided);
    p.num_experts = 4 * R, p.hidden = 64;
    q = p, q.progress = (epc_progress_t)9;
    EXPECT(epc_ctx_create(MPI_COMM_WORLD, &q, &ctx), EPC_ERR_INVALID_ARG, NULL, "progress");
    q = p, q.progress = EPC_PROGRESS_THREAD;
    if (provided < MPI_THREAD_MULTIPLE) {
        EXPECT(epc_ctx_create(MPI_COMM_WORLD, &q, &ctx), EPC_ERR_UNSUPPORTED, NULL,
               "MPI_THREAD_MULTIPLE");
        MT_CHECK(ctx == NULL, "ctx written on failure");
    } else { /* an MPI that always gives the most: the thread runs */
        EXPECT(epc_ctx_create(MPI_COMM_WORLD, &q, &ctx), EPC_OK, NULL, NULL);
        EXPECT(epc_ctx_destroy(ctx), EPC_OK, NULL, NULL);
    }
    q = p, q.progress = EPC_PROGRESS_CALLER;
    EXPECT(epc_ctx_create(MPI_COMM_WORLD, &q, &ctx), EPC_OK, NULL, NULL);
    EXPECT(epc_ctx_destroy(ctx), EPC_OK, NULL, NULL);
    q = p, q.size = offsetof(epc_ctx_params_t, progress), q.progress = (epc_progress_t)9;
    EXPECT(epc_ctx_create(MPI_COMM_WORLD, &q, &ctx), EPC_OK, NULL, NULL); /* 9 not read */
    EXPECT(epc_ctx_destroy(ctx), EPC_OK, NULL, NULL);
}

/* Dispatch with bad args on every rank: each returns its status, and
 * neither out nor *handle is written. */
static void dispatch_errors(epc_ctx_t *ctx, const epc_dispatch_args_t *good)
{
    epc_dispatch_args_t a;
    epc_dispatch_out_t o = EPC_DISPATCH_OUT_INIT, poison = EPC_DISPATCH_OUT_INIT;
    epc_handle_t *h = NULL;
    int32_t idx[8];
    memcpy(idx, good->topk_idx, sizeof idx);
    o = poison = mt_poisoned_out();
    EXPECT(epc_dispatch(NULL, good, &o, &h), EPC_ERR_INVALID_ARG, NULL, "ctx");
    EXPECT(epc_dispatch(ctx, NULL, &o, &h), EPC_ERR_INVALID_ARG, ctx, "args");
    EXPECT(epc_dispatch(ctx, good, NULL, &h), EPC_ERR_INVALID_ARG, ctx, "out");
    EXPECT(epc_dispatch(ctx, good, &o, NULL), EPC_ERR_INVALID_ARG, ctx, "handle");
    a = *good, a.size = 7;
    EXPECT(epc_dispatch(ctx, &a, &o, &h), EPC_ERR_INVALID_ARG, ctx, "size");
    o.size = 0; /* not initialised with EPC_DISPATCH_OUT_INIT */
    EXPECT(epc_dispatch(ctx, good, &o, &h), EPC_ERR_INVALID_ARG, ctx, "out->size 0");
    o.size = sizeof o + 8; /* a newer header's */
    EXPECT(epc_dispatch(ctx, good, &o, &h), EPC_ERR_INVALID_ARG, ctx, "EPC_DISPATCH_OUT_INIT");
    o.size = sizeof o;
    a = *good, a.num_tokens = -1;
    EXPECT(epc_dispatch(ctx, &a, &o, &h), EPC_ERR_INVALID_ARG, ctx, "num_tokens");
    a = *good, a.topk = 0;
    EXPECT(epc_dispatch(ctx, &a, &o, &h), EPC_ERR_INVALID_ARG, ctx, "topk");
    a = *good, a.topk = 9;
    EXPECT(epc_dispatch(ctx, &a, &o, &h), EPC_ERR_INVALID_ARG, ctx, "topk");
    a = *good, a.x = NULL;
    EXPECT(epc_dispatch(ctx, &a, &o, &h), EPC_ERR_INVALID_ARG, ctx, "x");
    a = *good, a.topk_idx = NULL;
    EXPECT(epc_dispatch(ctx, &a, &o, &h), EPC_ERR_INVALID_ARG, ctx, "topk_idx");
    a = *good, a.expert_alignment = 65537;
    EXPECT(epc_dispatch(ctx, &a, &o, &h), EPC_ERR_INVALID_ARG, ctx, "expert_alignment");
    a = *good, a.algo = (epc_algo_t)5;
    EXPECT(epc_dispatch(ctx, &a, &o, &h), EPC_ERR_INVALID_ARG, ctx, "algo");
    a = *good, a.num_tokens = 65; /* max_tokens_per_rank is 64 */
    EXPECT(epc_dispatch(ctx, &a, &o, &h), EPC_ERR_CAPACITY, ctx, "max_tokens_per_rank");
    a = *good, a.topk_idx = idx, idx[2] = -2;
    EXPECT(epc_dispatch(ctx, &a, &o, &h), EPC_ERR_INVALID_ARG, ctx, "topk_idx[token 1]");
    idx[2] = idx[3];
    EXPECT(epc_dispatch(ctx, &a, &o, &h), EPC_ERR_INVALID_ARG, ctx, "twice");
    a = *good, a.topk = mt_rank == 3 ? 1 : 2; /* ranks disagree */
    EXPECT(epc_dispatch(ctx, &a, &o, &h), EPC_ERR_MISMATCH, ctx, "topk");
    MT_CHECK(h == NULL && memcmp(&o, &poison, sizeof o) == 0, "dispatch outputs written");
}

/* The context's accessors, abort, destroy and pair exchange. */
static void ctx_errors(epc_ctx_t *ctx)
{
    epc_ctx_params_t p = EPC_CTX_PARAMS_INIT; /* not a context */
    const epc_topo_t *topo = NULL;
    epc_ctx_stats_t cs = EPC_CTX_STATS_INIT;
    epc_coll_stats_t ks = EPC_COLL_STATS_INIT;
    EXPECT(epc_ctx_topo(NULL, &topo), EPC_ERR_INVALID_ARG, NULL, "ctx");
    EXPECT(epc_ctx_topo(ctx, NULL), EPC_ERR_INVALID_ARG, NULL, "topo");
    EXPECT(epc_ctx_stats(NULL, &cs), EPC_ERR_INVALID_ARG, NULL, "ctx");
    EXPECT(epc_ctx_stats(ctx, NULL), EPC_ERR_INVALID_ARG, NULL, "stats");
    EXPECT(epc_coll_stats(NULL, &ks), EPC_ERR_INVALID_ARG, NULL, "ctx");
    EXPECT(epc_coll_stats(ctx, NULL), EPC_ERR_INVALID_ARG, NULL, "stats");
    memset(&cs, 0x5a, sizeof cs), memset(&ks, 0x5a, sizeof ks);
    cs.size = 0, ks.size = sizeof ks - 1;
    EXPECT(epc_ctx_stats(ctx, &cs), EPC_ERR_INVALID_ARG, NULL, "EPC_CTX_STATS_INIT");
    EXPECT(epc_coll_stats(ctx, &ks), EPC_ERR_INVALID_ARG, NULL, "EPC_COLL_STATS_INIT");
    MT_CHECK(cs.shm_bytes == 0x5a5a5a5a5a5a5a5aull && ks.dispatches == 0x5a5a5a5a5a5a5a5aull,
             "stats written with an unknown size");
    cs.size = sizeof cs, ks.size = sizeof ks;
    EXPECT(epc_ctx_stats(ctx, &cs), EPC_OK, NULL, NULL);
    EXPECT(epc_coll_stats(ctx, &ks), EPC_OK, NULL, NULL);
    MT_CHECK(cs.size == sizeof cs && cs.transport != NULL && ks.size == sizeof ks &&
                 ks.dispatches < 1000,
             "stats after a known size");
    EXPECT(epc_ctx_abort(NULL, "x"), EPC_ERR_INVALID_ARG, NULL, "ctx");
    EXPECT(epc_ctx_destroy((epc_ctx_t *)(void *)&p), EPC_ERR_INVALID_ARG, NULL, "ctx");
    MT_CHECK(epc_ctx_destroy(NULL) == EPC_OK, "destroy(NULL)");
    EXPECT(epc_ctx_pair_exchange(NULL, EPC_PATH_NET, 8), EPC_ERR_INVALID_ARG, NULL, "ctx");
    EXPECT(epc_ctx_pair_exchange(ctx, (epc_path_t)7, 8), EPC_ERR_INVALID_ARG, ctx, "path");
    EXPECT(epc_ctx_pair_exchange(ctx, EPC_PATH_NET, ((size_t)1 << 31) + 1), EPC_ERR_INVALID_ARG,
           ctx, "bytes");
    EXPECT(epc_ctx_pair_exchange(ctx, EPC_PATH_SHM, 64), EPC_OK, ctx,
           NULL); /* pairs share a node */
    MT_CHECK(topo == NULL, "topo written on failure");
}

/* The combine's scalar channel on handle h (o: its dispatch's rows, every
 * rank receiving token t of rank r at rank r+1 as expert t, at r+2 as
 * expert t): bad arguments on every rank, ranks that disagree, 0.2's layout
 * (which has no channel), and each slot's scalar back where it belongs. */
static void scalar_channel(epc_ctx_t *ctx, epc_handle_t *h, const epc_dispatch_out_t *o,
                           const epc_combine_args_t *c)
{
    epc_combine_args_t cb;
    float rs[16], ts[8];
    int bad = 0;
    for (int i = 0; i < o->num_rows && i < 16; i++)
        rs[i] = (float)(100 * mt_rank + 10 * o->src_token[i] + o->local_expert[i]);
    memset(ts, 0x5a, sizeof ts);
    cb = *c, cb.scalar_channel = 2;
    EXPECT(epc_combine(ctx, h, &cb), EPC_ERR_INVALID_ARG, ctx, "scalar_channel = 2");
    cb = *c, cb.scalar_channel = 1, cb.row_scalars = NULL, cb.topk_scalars = ts;
    EXPECT(epc_combine(ctx, h, &cb), EPC_ERR_INVALID_ARG, ctx, "row_scalars");
    cb = *c, cb.scalar_channel = 1, cb.row_scalars = rs, cb.topk_scalars = NULL;
    EXPECT(epc_combine(ctx, h, &cb), EPC_ERR_INVALID_ARG, ctx, "topk_scalars");
    cb = *c, cb.scalar_channel = mt_rank == 1, cb.row_scalars = rs, cb.topk_scalars = ts;
    EXPECT(epc_combine(ctx, h, &cb), EPC_ERR_MISMATCH, ctx, "scalar_channel");
    MT_CHECK(((unsigned char *)ts)[0] == 0x5a, "topk_scalars written on failure");
    cb = *c, cb.size = offsetof(epc_combine_args_t, scalar_channel), cb.scalar_channel = 1;
    EXPECT(epc_combine(ctx, h, &cb), EPC_OK, ctx, NULL); /* 0.2's layout: no channel */
    MT_CHECK(((unsigned char *)ts)[0] == 0x5a, "topk_scalars written without the channel");
    cb = *c, cb.scalar_channel = 1, cb.row_scalars = rs, cb.topk_scalars = ts;
    EXPECT(epc_combine(ctx, h, &cb), EPC_OK, ctx, NULL);
    for (int t = 0; t < 4; t++)
        for (int j = 0; j < 2; j++)
            bad += ts[2 * t + j] != (float)(100 * ((mt_rank + 1 + j) % R) + 11 * t);
    MT_CHECK(bad == 0, "%d topk_scalars wrong (first %g)", bad, (double)ts[0]);
}

/* Dispatch, combine buffer and combine, on a live context; other is a
 * second context (its handles are foreign to ctx). */
static void handle_errors(epc_ctx_t *ctx, epc_ctx_t *other)
{
    epc_dispatch_args_t a = EPC_DISPATCH_ARGS_INIT;
    epc_combine_args_t c = EPC_COMBINE_ARGS_INIT, cb;
    epc_dispatch_out_t o = EPC_DISPATCH_OUT_INIT;
    epc_handle_t *h = NULL, *h_old = NULL, *h_other = NULL;
    int32_t idx[8];
    uint16_t x[4 * 64] = {0}, y[4 * 64];
    void *eo = NULL, *eo2 = NULL;
    for (int t = 0; t < 4; t++) { /* every token to two other ranks' experts */
        idx[2 * t] = (int32_t)(4 * ((mt_rank + 1) % R) + t);
        idx[2 * t + 1] = (int32_t)(4 * ((mt_rank + 2) % R) + t);
    }
    a.x = x, a.num_tokens = 4, a.topk = 2, a.topk_idx = idx;
    dispatch_errors(ctx, &a);
    EXPECT(epc_dispatch(ctx, &a, &o, &h_old), EPC_OK, ctx, NULL);
    EXPECT(epc_dispatch(other, &a, &o, &h_other), EPC_OK, other, NULL);
    EXPECT(epc_dispatch(ctx, &a, &o, &h), EPC_OK, ctx, NULL);
    idx[0] = (idx[0] + 1) % (4 * R) == idx[1] ? idx[0] : (idx[0] + 1) % (4 * R);
    EXPECT(epc_dispatch(ctx, &a, &o, &h), EPC_ERR_INVALID_ARG, ctx, "other topk_idx");
    idx[0] = (int32_t)(4 * ((mt_rank + 1) % R));
    /* epc_combine_buffer: local. */
    EXPECT(epc_combine_buffer(NULL, h, &eo), EPC_ERR_INVALID_ARG, NULL, "ctx");
    EXPECT(epc_combine_buffer(ctx, NULL, &eo), EPC_ERR_INVALID_ARG, ctx, "handle");
    EXPECT(epc_combine_buffer(ctx, h, NULL), EPC_ERR_INVALID_ARG, ctx, "buf");
    EXPECT(epc_combine_buffer(ctx, h_other, &eo), EPC_ERR_INVALID_ARG, ctx, "handle");
    EXPECT(epc_combine_buffer(ctx, h_old, &eo), EPC_ERR_INVALID_ARG, ctx, "followed");
    MT_CHECK(eo == NULL, "buffer written on failure");
    EXPECT(epc_combine_buffer(ctx, h, &eo), EPC_OK, ctx, NULL);
    /* epc_combine: agreed, y untouched. */
    memset(y, 0x33, sizeof y);
    c.expert_out = eo, c.y = y;
    EXPECT(epc_combine(NULL, h, &c), EPC_ERR_INVALID_ARG, NULL, "ctx");
    EXPECT(epc_combine(ctx, h, NULL), EPC_ERR_INVALID_ARG, ctx, "args");
    cb = c, cb.size = 1;
    EXPECT(epc_combine(ctx, h, &cb), EPC_ERR_INVALID_ARG, ctx, "size");
    EXPECT(epc_combine(ctx, NULL, &c), EPC_ERR_INVALID_ARG, ctx, "handle");
    EXPECT(epc_combine(ctx, h_other, &c), EPC_ERR_INVALID_ARG, ctx, "handle");
    EXPECT(epc_combine(ctx, h_old, &c), EPC_ERR_INVALID_ARG, ctx, "followed");
    cb = c, cb.y = NULL;
    EXPECT(epc_combine(ctx, h, &cb), EPC_ERR_INVALID_ARG, ctx, "y");
    cb = c, cb.expert_out = NULL;
    EXPECT(epc_combine(ctx, h, &cb), EPC_ERR_INVALID_ARG, ctx, "expert_out");
    for (size_t i = 0; i < sizeof y / 2; i++)
        MT_CHECK(y[i] == 0x3333, "y written at %zu", i);
    scalar_channel(ctx, h, &o, &c);
    EXPECT(epc_combine_buffer(ctx, h, &eo2), EPC_OK, ctx, NULL);
    EXPECT(epc_combine(ctx, h, &c), EPC_OK, ctx, NULL);
    epc_handle_destroy(h);
    epc_handle_destroy(h_old);
    epc_handle_destroy(h_other);
    epc_handle_destroy(NULL);
}

/* Everything taking a context or a handle, on live contexts. */
static void ctx_functions(void)
{
    epc_ctx_params_t p = EPC_CTX_PARAMS_INIT;
    epc_ctx_t *ctx = NULL, *other = NULL;
    p.num_experts = 4 * R, p.hidden = 64, p.max_tokens_per_rank = 64, p.max_topk = 8;
    EXPECT(epc_ctx_create(MPI_COMM_WORLD, &p, &ctx), EPC_OK, NULL, NULL);
    EXPECT(epc_ctx_create(MPI_COMM_WORLD, &p, &other), EPC_OK, NULL, NULL);
    if (ctx != NULL && other != NULL) {
        ctx_errors(ctx);
        handle_errors(ctx, other);
    }
    EXPECT(epc_ctx_destroy(other), EPC_OK, NULL, NULL);
    EXPECT(epc_ctx_destroy(ctx), EPC_OK, NULL, NULL);
}

/* params.log_level = EPC_LOG_OFF: bad input on rank 1, then a bad
 * combine; statuses and texts as always (the script checks that nothing
 * reached stderr). */
static int mode_quiet(int quiet)
{
    epc_ctx_params_t p = EPC_CTX_PARAMS_INIT;
    epc_dispatch_args_t a = EPC_DISPATCH_ARGS_INIT;
    epc_dispatch_out_t o = EPC_DISPATCH_OUT_INIT;
    epc_handle_t *h = NULL;
    epc_ctx_t *ctx = NULL;
    int32_t idx[2] = {0, 1};
    uint16_t x[64] = {0};
    p.num_experts = 4 * R, p.hidden = 64, p.log_level = quiet ? EPC_LOG_OFF : EPC_LOG_DEFAULT;
    EXPECT(epc_ctx_create(MPI_COMM_WORLD, &p, &ctx), EPC_OK, NULL, NULL);
    if (ctx == NULL)
        return mt_finish("test_api_mpi quiet");
    a.x = x, a.num_tokens = 1, a.topk = 2, a.topk_idx = idx;
    idx[1] = mt_rank == 1 ? 4 * R : 1;
    EXPECT(epc_dispatch(ctx, &a, &o, &h), mt_rank == 1 ? EPC_ERR_INVALID_ARG : EPC_ERR_PEER_FAILED,
           ctx, "topk_idx[token 0][1]");
    EXPECT(epc_combine(ctx, NULL, NULL), EPC_ERR_INVALID_ARG, ctx, "handle");
    EXPECT(epc_ctx_destroy(ctx), EPC_OK, NULL, NULL);
    return mt_finish("test_api_mpi quiet");
}

int main(int argc, char **argv)
{
    mt_init(&argc, &argv);
    MPI_Comm_size(MPI_COMM_WORLD, &R);
    if (R != 4)
        return fprintf(stderr, "test_api_mpi: run on 4 ranks\n"), 2;
    if (argc == 2 && (!strcmp(argv[1], "quiet") || !strcmp(argv[1], "loud")))
        return mode_quiet(!strcmp(argv[1], "quiet"));
    local_functions();
    routing_functions();
    topo_functions();
    ctx_create_errors();
    ctx_create_fortran();
    ctx_progress_errors();
    ctx_functions();
    return mt_finish("test_api_mpi");
}
