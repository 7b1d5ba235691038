/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * ctx.c - creating and destroying the context: parameters (params > EPC_*
 * > default), the check that every rank was given the same job-wide
 * values, topology, node communicator, shared memory and transport.
 * Creation agrees on failure after each phase, so every rank returns the
 * same status.
 */
#include "build_config.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "ctx.h"
#include "fault.h"
#include "log.h"
#include "mpi_util.h"
#include "params.h"

#define BAD(...) epc_error_obj(&ctx->hdr, EPC_ERR_INVALID_ARG, "epc_ctx_create: " __VA_ARGS__)

static size_t dtype_size(epc_dtype_t t)
{
    return t == EPC_DTYPE_FP32 ? 4 : 2;
}

/* Fills the context's fields from params and the configuration. */
static epc_status_t resolve(epc_ctx_t *ctx, const epc_ctx_params_t *p)
{
    const epc_config_t *cfg;
    epc_status_t st = epc_config_get(&cfg);
    const char *prov;
    if (st != EPC_OK)
        return epc_error_sync(&ctx->hdr), st;
    if ((unsigned)p->log_level > EPC_LOG_DEBUG)
        return BAD("params->log_level = %d is not a known value", (int)p->log_level);
    if (p->log_level != EPC_LOG_DEFAULT) /* first, so it covers this creation too */
        epc_log_set_level(p->log_level);
    if (p->num_experts < 1 || p->hidden < 1)
        return BAD("params->%s = %d, must be >= 1", p->num_experts < 1 ? "num_experts" : "hidden",
                   p->num_experts < 1 ? p->num_experts : p->hidden);
    if ((unsigned)p->dtype > EPC_DTYPE_FP32)
        return BAD("params->dtype = %d is not a known value", (int)p->dtype);
    if ((unsigned)p->transport > EPC_TRANSPORT_AUTO)
        return BAD("params->transport = %d is not a known value", (int)p->transport);
    if ((unsigned)p->progress > EPC_PROGRESS_THREAD)
        return BAD("params->progress = %d is not a known value", (int)p->progress);
    if (p->max_tokens_per_rank < 0 || p->max_topk < 0 || p->timeout_ms < 0 || p->ranks_per_node < 0)
        return BAD("params->max_tokens_per_rank/max_topk/timeout_ms/ranks_per_node must be >= 0 "
                   "(got %d/%d/%d/%d)",
                   p->max_tokens_per_rank, p->max_topk, p->timeout_ms, p->ranks_per_node);
    ctx->num_experts = p->num_experts;
    ctx->hidden = p->hidden;
    ctx->dtype = p->dtype ? p->dtype : EPC_DTYPE_BF16;
    ctx->elem_size = dtype_size(ctx->dtype);
    ctx->max_tokens = p->max_tokens_per_rank ? p->max_tokens_per_rank : 8192;
    ctx->max_topk = p->max_topk ? p->max_topk : (p->num_experts < 8 ? p->num_experts : 8);
    if (ctx->max_topk > p->num_experts)
        return BAD("params->max_topk = %d > num_experts = %d", ctx->max_topk, p->num_experts);
    ctx->timeout_ms = p->timeout_ms ? p->timeout_ms : (int)epc_cfg_int(cfg, EPC_CFG_TIMEOUT_MS);
    ctx->chunk_bytes = (size_t)epc_cfg_int(cfg, EPC_CFG_CHUNK_KB) << 10;
    ctx->algo = epc_cfg_enum(cfg, EPC_CFG_ALGO) == 1 ? EPC_ALGO_FLAT : EPC_ALGO_HIER;
    st = epc_progress_init(&ctx->progress,
                           p->progress ? p->progress
                                       : (epc_progress_t)(epc_cfg_enum(cfg, EPC_CFG_PROGRESS) + 1),
                           (long)epc_cfg_int(cfg, EPC_CFG_PROGRESS_SLEEP_US), &ctx->hdr);
    if (st != EPC_OK)
        return st;
    prov = p->ofi_provider ? p->ofi_provider : epc_cfg_string(cfg, EPC_CFG_OFI_PROVIDER);
    snprintf(ctx->provider_req, sizeof ctx->provider_req, "%s", prov);
    st = epc_transport_choice(p->transport, ctx->transport_reason, sizeof ctx->transport_reason,
                              &ctx->transport);
    return st == EPC_OK ? EPC_OK : (epc_error_sync(&ctx->hdr), st);
}

/* FNV-1a, to compare strings across ranks as numbers. */
static double hash_str(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return (double)h;
}

/* Every rank must hold the same job-wide values: compare max and -min. */
static epc_status_t check_same(epc_ctx_t *ctx, int rpn)
{
    static const char *const names[] = {
        "num_experts", "hidden",       "dtype",          "max_tokens_per_rank", "max_topk",
        "transport",   "ofi_provider", "ranks_per_node", "timeout_ms",          "EPC_CHUNK_KB"};
    double v[10] = {ctx->num_experts,
                    ctx->hidden,
                    ctx->dtype,
                    ctx->max_tokens,
                    ctx->max_topk,
                    ctx->transport,
                    hash_str(ctx->provider_req),
                    rpn,
                    ctx->timeout_ms,
                    (double)ctx->chunk_bytes / 1024};
    double in[20], out[20];
    MPI_Request req;
    int rc;
    epc_status_t st;
    for (int i = 0; i < 10; i++) {
        in[2 * i] = v[i];
        in[2 * i + 1] = -v[i];
    }
    rc = MPI_Iallreduce(in, out, 20, MPI_DOUBLE, MPI_MAX, ctx->comm, &req);
    st = epc_mpi_finish(rc, &req, epc_deadline_in_ms(ctx->timeout_ms), &ctx->hdr,
                        "epc_ctx_create: MPI_Iallreduce(job-wide params)");
    if (st != EPC_OK)
        return st;
    for (int i = 0; i < 10; i++)
        if (out[2 * i] != -out[2 * i + 1])
            return epc_error_obj(&ctx->hdr, EPC_ERR_MISMATCH,
                                 "epc_ctx_create: ranks disagree on %s (this rank: %.0f; values "
                                 "from %.0f to %.0f)%s",
                                 names[i], v[i], -out[2 * i + 1], out[2 * i],
                                 i == 5 ? " (auto may choose differently on different nodes)" : "");
    return EPC_OK;
}

/* Each peer's link class, looked up once: the byte counters take one
 * per message. */
static epc_status_t link_classes(epc_ctx_t *ctx)
{
    if ((ctx->link_class = malloc((size_t)ctx->nranks)) == NULL)
        return epc_error_obj(&ctx->hdr, EPC_ERR_NO_MEMORY, "epc_ctx_create: link classes");
    for (int p = 0; p < ctx->nranks; p++) {
        epc_link_class_t cls = EPC_LINK_OTHER_NODE;
        epc_topo_link_class(ctx->topo, ctx->rank, p, &cls); /* both ranks valid */
        ctx->link_class[p] = (unsigned char)cls;
    }
    return EPC_OK;
}

/* The topology and this rank's place in it. */
static epc_status_t build_node(epc_ctx_t *ctx, int rpn)
{
    epc_topo_params_t tp = EPC_TOPO_PARAMS_INIT;
    epc_status_t st;
    tp.ranks_per_node = rpn;
    if ((st = epc_topo_create(ctx->comm, &tp, &ctx->topo)) != EPC_OK)
        return epc_error_sync(&ctx->hdr), st;
    ctx->node = ctx->topo->node_of[ctx->rank];
    ctx->lrank = ctx->topo->local_rank[ctx->rank];
    ctx->lsize = ctx->topo->node_start[ctx->node + 1] - ctx->topo->node_start[ctx->node];
    /* Deterministic on every rank: no agreement needed. */
    if (ctx->num_experts % ctx->nranks != 0)
        return BAD("num_experts = %d is not divisible by the %d ranks (experts are placed in "
                   "equal contiguous blocks)",
                   ctx->num_experts, ctx->nranks);
    return EPC_OK;
}

static epc_status_t create_phases(epc_ctx_t *ctx, const epc_ctx_params_t *p, epc_status_t st)
{
    const epc_config_t *cfg;
    int rpn = 0;
    if (st == EPC_OK && (st = resolve(ctx, p)) == EPC_OK) {
        (void)epc_config_get_quiet(&cfg);
        rpn = p->ranks_per_node ? p->ranks_per_node : (int)epc_cfg_int(cfg, EPC_CFG_RANKS_PER_NODE);
    }
    if ((st = epc_mpi_agree(ctx->comm, st, &ctx->hdr, epc_mpi_default_deadline())) != EPC_OK)
        return st;
    if ((st = check_same(ctx, rpn)) != EPC_OK)
        return st;                             /* every rank saw the same Allreduce result */
    epc_fault_here("create");                  /* test hook: a rank stops inside the creation */
    if ((st = build_node(ctx, rpn)) != EPC_OK) /* the topology agreed on its own failure */
        return st;
    /* The abort area lives in lane 0's control segment: lanes first. */
    for (int l = 0; l < EPC_LANES && st == EPC_OK; l++)
        st = epc_lane_create(ctx, l, &ctx->lane[l]);
    if (st == EPC_OK)
        st = epc_abort_init(&ctx->abort, ctx->ctrl, ctx->topo, ctx->lane[0].shm, &ctx->hdr);
    if (st == EPC_OK)
        st = link_classes(ctx);
    if (st == EPC_OK) /* last: the lanes it may progress exist */
        st = epc_progress_start(ctx);
    /* After a timeout a rank is missing: agreeing would only wait for it
     * again (the others time out on it by themselves). */
    if (st == EPC_ERR_TIMEOUT)
        return st;
    if ((st = epc_mpi_agree(ctx->comm, st, &ctx->hdr, epc_ctx_deadline(ctx))) != EPC_OK)
        return st;
    epc_log(EPC_LOG_INFO, "context: %d ranks, %d nodes, transport %s%s%s (%s)", ctx->nranks,
            ctx->topo->nnodes, ctx->lane[0].tr->ops->name,
            ctx->lane[0].tr->provider[0] ? " provider " : "", ctx->lane[0].tr->provider,
            ctx->transport_reason);
    return st;
}

/* Frees whatever creation got to; collective parts only when reached. */
static void teardown(epc_ctx_t *ctx)
{
    epc_progress_stop(ctx); /* first: no one else touches the lanes from here */
    epc_abort_fini(&ctx->abort);
    for (int l = 0; l < EPC_LANES; l++)
        epc_lane_destroy(&ctx->lane[l]);
    epc_topo_destroy(ctx->topo);
    free(ctx->link_class);
    /* Local in MPI: marks the communicators for freeing once their pending
     * operations (abandoned after a timeout) complete. */
    if (ctx->ctrl != MPI_COMM_NULL)
        MPI_Comm_free(&ctx->ctrl);
    if (ctx->comm != MPI_COMM_NULL)
        MPI_Comm_free(&ctx->comm);
    ctx->hdr.magic = EPC_MAGIC_DEAD;
    free(ctx);
}

/* Each released layout of epc_ctx_params_t: 0.1 ended before log_level,
 * 0.2 before progress. */
static const epc_params_layouts_t ctx_layouts = {
    "EPC_CTX_PARAMS_INIT",
    sizeof(epc_ctx_params_t),
    {offsetof(epc_ctx_params_t, log_level), offsetof(epc_ctx_params_t, progress), 0}};

epc_status_t epc_ctx_create(MPI_Comm comm, const epc_ctx_params_t *params, epc_ctx_t **ctx_p)
{
    epc_ctx_params_t p; /* fields an older layout lacks are 0: defaults */
    epc_ctx_t *ctx;
    epc_status_t st = EPC_OK;
    int init = 0, fini = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fini);
    if (!init || fini || comm == MPI_COMM_NULL)
        return epc_error(EPC_ERR_INVALID_ARG, "epc_ctx_create: %s",
                         comm == MPI_COMM_NULL ? "comm is MPI_COMM_NULL"
                                               : "MPI is not initialized");
    if ((ctx = calloc(1, sizeof *ctx)) == NULL)
        return epc_error(EPC_ERR_NO_MEMORY, "epc_ctx_create: context object");
    ctx->hdr.magic = EPC_MAGIC_CTX;
    ctx->ctrl = MPI_COMM_NULL;
    if ((st = epc_mpi_dup(comm, &ctx->comm)) != EPC_OK) {
        ctx->comm = MPI_COMM_NULL;
        teardown(ctx);
        return st;
    }
    if ((st = epc_mpi_dup(ctx->comm, &ctx->ctrl)) != EPC_OK) {
        ctx->ctrl = MPI_COMM_NULL;
        teardown(ctx);
        return st;
    }
    MPI_Comm_rank(ctx->comm, &ctx->rank);
    MPI_Comm_size(ctx->comm, &ctx->nranks);
    /* Bad arguments still join the first agreement, so peers do not wait. */
    if (ctx_p == NULL)
        st = BAD("ctx_p is NULL");
    else if (params == NULL)
        st = BAD("params is NULL (num_experts and hidden are required)");
    else
        st = epc_params_load(&p, params, &ctx_layouts, &ctx->hdr, "epc_ctx_create", "params");
    st = create_phases(ctx, st == EPC_OK ? &p : NULL, st);
    if (st != EPC_OK) {
        teardown(ctx);
        return st;
    }
    *ctx_p = ctx;
    return EPC_OK;
}

epc_status_t epc_ctx_destroy(epc_ctx_t *ctx)
{
    epc_status_t st;
    if (ctx == NULL)
        return EPC_OK;
    if ((st = epc_ctx_check(ctx, "epc_ctx_destroy")) != EPC_OK)
        return st;
    epc_fault_here("destroy"); /* test hook */
    epc_progress_stop(ctx);    /* requests in flight stay where the thread left them */
    if (ctx->free_requests != NULL)
        ctx->free_requests(ctx);
    /* No rank frees its regions while a peer may still write into them;
     * after a failure or an abort the peers stopped writing (or are gone),
     * and waiting for them would only cost the deadline. */
    if (!ctx->failed && !ctx->aborted && epc_abort_poll(&ctx->abort) == EPC_OK)
        st = epc_mpi_barrier(ctx->comm, epc_ctx_deadline(ctx), "epc_ctx_destroy", &ctx->hdr);
    teardown(ctx);
    return st;
}
