/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * context.c - the job context: creation (the token shape and algorithm
 * from params > EPC_* > default, the check that every rank was given the
 * same job-wide values, then the communication object), destruction, and
 * the public calls on the context itself.  Creation agrees on failure
 * after each phase, so every rank returns the same status.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "fault.h"
#include "ll.h"
#include "log.h"
#include "mpi_util.h"
#include "params.h"
#include "request.h"

#define BAD(...) epc_error_obj(&ctx->hdr, EPC_ERR_INVALID_ARG, "epc_ctx_create: " __VA_ARGS__)

/* The values every rank must hold alike: the context's and the
 * communication object's. */
#define SHARED_MAX (5 + EPC_COMM_SHARED)

/* The token shape and algorithm from p and the configuration. */
static epc_status_t resolve(epc_ctx_t *ctx, const epc_ctx_params_t *p)
{
    const epc_config_t *cfg;
    epc_status_t st = epc_config_get(&cfg);
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
    if (p->max_tokens_per_rank < 0 || p->max_topk < 0)
        return BAD("params->max_tokens_per_rank/max_topk must be >= 0 (got %d/%d)",
                   p->max_tokens_per_rank, p->max_topk);
    if (p->num_experts % ctx->comm.nranks != 0)
        return BAD("num_experts = %d is not divisible by the %d ranks (experts are placed in "
                   "equal contiguous blocks)",
                   p->num_experts, ctx->comm.nranks);
    ctx->num_experts = p->num_experts;
    ctx->hidden = p->hidden;
    ctx->dtype = p->dtype ? p->dtype : EPC_DTYPE_BF16;
    ctx->elem_size = ctx->dtype == EPC_DTYPE_FP32 ? 4 : 2;
    ctx->max_tokens = p->max_tokens_per_rank ? p->max_tokens_per_rank : 8192;
    ctx->max_topk = p->max_topk ? p->max_topk : (p->num_experts < 8 ? p->num_experts : 8);
    if (ctx->max_topk > p->num_experts)
        return BAD("params->max_topk = %d > num_experts = %d", ctx->max_topk, p->num_experts);
    ctx->algo = epc_cfg_enum(cfg, EPC_CFG_ALGO) == 1 ? EPC_ALGO_FLAT : EPC_ALGO_HIER;
    return EPC_OK;
}

/* resolve, then the communication object's own. */
static epc_status_t resolve_all(epc_ctx_t *ctx, const epc_ctx_params_t *p)
{
    epc_comm_params_t cp = {p->transport, p->ofi_provider, p->ranks_per_node, p->timeout_ms,
                            p->progress};
    epc_status_t st = resolve(ctx, p);
    return st == EPC_OK ? epc_comm_resolve(&ctx->comm, &cp) : st;
}

/* Every rank must hold the same job-wide values. */
static epc_status_t check_same(epc_ctx_t *ctx)
{
    const char *names[SHARED_MAX] = {"num_experts", "hidden", "dtype", "max_tokens_per_rank",
                                     "max_topk"};
    double v[SHARED_MAX] = {ctx->num_experts, ctx->hidden, ctx->dtype, ctx->max_tokens,
                            ctx->max_topk};
    double lo, hi;
    int n = 5 + epc_comm_shared(&ctx->comm, names + 5, v + 5), i;
    epc_status_t st =
        epc_mpi_compare(ctx->comm.mpi, v, n, epc_deadline_in_ms(ctx->comm.timeout_ms), &ctx->hdr,
                        "epc_ctx_create: MPI_Iallreduce(job-wide params)", &i, &lo, &hi);
    if (st != EPC_OK || i < 0)
        return st;
    return epc_error_obj(
        &ctx->hdr, EPC_ERR_MISMATCH,
        "epc_ctx_create: ranks disagree on %s (this rank: %.0f; values "
        "from %.0f to %.0f)%s",
        names[i], v[i], lo, hi,
        !strcmp(names[i], "transport") ? " (auto may choose differently on different nodes)" : "");
}

static epc_status_t create_phases(epc_ctx_t *ctx, const epc_ctx_params_t *p, epc_status_t st)
{
    if (st == EPC_OK)
        st = resolve_all(ctx, p);
    if ((st = epc_mpi_agree(ctx->comm.mpi, st, &ctx->hdr, epc_mpi_default_deadline())) != EPC_OK)
        return st;
    if ((st = check_same(ctx)) != EPC_OK)
        return st;            /* every rank saw the same Allreduce result */
    epc_fault_here("create"); /* test hook: a rank stops inside the creation */
    return epc_comm_build(&ctx->comm, coll_poll, ctx);
}

/* Frees whatever creation got to; collective parts only when reached. */
static void teardown(epc_ctx_t *ctx)
{
    epc_comm_close(&ctx->comm); /* first: stops the progress thread */
    coll_ll_free(ctx->ll);
    free(ctx->slot_expert);
    for (int l = 0; l < EPC_LANES; l++)
        for (int i = 0; i < EPC_SCRATCH_COUNT; i++)
            free(ctx->scratch[l][i].p);
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
    if ((st = epc_comm_open(&ctx->comm, comm, &ctx->hdr)) != EPC_OK) {
        teardown(ctx);
        return st;
    }
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

epc_status_t epc_ctx_create_f(const MPI_Fint *comm, const epc_ctx_params_t *params,
                              epc_ctx_t **ctx_p)
{
    MPI_Comm c = MPI_COMM_WORLD;
    int init = 0, fini = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fini);
    if (comm != NULL && init && !fini) {
        /* Open MPI answers NULL for an index that holds no communicator. */
        c = MPI_Comm_f2c(*comm);
        if (c == (MPI_Comm)0 || c == MPI_COMM_NULL)
            return epc_error(EPC_ERR_INVALID_ARG,
                             "epc_ctx_create_f: *comm = %d is the handle of no communicator",
                             (int)*comm);
    }
    return epc_ctx_create(c, params, ctx_p); /* it reports MPI not initialised */
}

epc_status_t epc_ctx_destroy(epc_ctx_t *ctx)
{
    epc_status_t st;
    if (ctx == NULL)
        return EPC_OK;
    if ((st = epc_ctx_check(ctx, "epc_ctx_destroy")) != EPC_OK)
        return st;
    epc_fault_here("destroy");              /* test hook */
    epc_progress_stop(&ctx->comm.progress); /* requests in flight stay where the thread left them */
    coll_req_free_all(ctx);
    st = epc_comm_quiesce(&ctx->comm, "epc_ctx_destroy");
    teardown(ctx);
    return st;
}

epc_status_t epc_ctx_check(const epc_ctx_t *ctx, const char *fn)
{
    if (ctx == NULL || ctx->hdr.magic != EPC_MAGIC_CTX)
        return epc_error(EPC_ERR_INVALID_ARG, "%s: ctx is %s", fn,
                         ctx == NULL ? "NULL" : "not a live epc_ctx_t (destroyed?)");
    return EPC_OK;
}

epc_status_t epc_ctx_enter(epc_ctx_t *ctx, const char *fn)
{
    epc_status_t st = epc_ctx_check(ctx, fn);
    return st == EPC_OK ? epc_comm_enter(&ctx->comm, fn) : st;
}

void *epc_ctx_scratch_detach(epc_ctx_t *ctx, int lane, int which)
{
    epc_scratch_t *b = &ctx->scratch[lane][which];
    void *p = b->p;
    b->p = NULL;
    b->cap = 0;
    return p;
}

epc_status_t epc_ctx_scratch(epc_ctx_t *ctx, int lane, int which, size_t need, char **p)
{
    epc_scratch_t *b = &ctx->scratch[lane][which];
    if (need > b->cap) {
        size_t cap = epc_tr_grow_size(b->cap, need);
        free(b->p);
        b->cap = 0;
        if ((b->p = malloc(cap)) == NULL)
            return epc_error_obj(&ctx->hdr, EPC_ERR_NO_MEMORY, "context buffer of %zu bytes", cap);
        b->cap = cap;
    }
    *p = b->p;
    return EPC_OK;
}

epc_status_t epc_ctx_topo(const epc_ctx_t *ctx, const epc_topo_t **topo)
{
    epc_status_t st = epc_ctx_check(ctx, "epc_ctx_topo");
    if (st == EPC_OK && topo == NULL)
        st = epc_error(EPC_ERR_INVALID_ARG, "epc_ctx_topo: topo is NULL");
    if (st == EPC_OK)
        *topo = ctx->comm.topo;
    return st;
}

epc_status_t epc_ctx_stats(const epc_ctx_t *ctx, epc_ctx_stats_t *stats)
{
    /* 0.9's layout ended before ll_transfer */
    static const epc_params_layouts_t layouts = {
        "EPC_CTX_STATS_INIT", sizeof *stats, {offsetof(epc_ctx_stats_t, ll_transfer), 0}};
    epc_ctx_stats_t all = EPC_CTX_STATS_INIT; /* every field, then the caller's */
    epc_status_t st = epc_ctx_check(ctx, "epc_ctx_stats");
    if (st == EPC_OK)
        st = epc_out_check(stats, &layouts, NULL, "epc_ctx_stats", "stats");
    if (st != EPC_OK)
        return st;
    epc_ctx_lock((epc_ctx_t *)ctx); /* the progress thread moves bytes and grows */
    epc_comm_stats(&ctx->comm, &all);
    for (int l = 0; l < EPC_LANES; l++) /* private buffers count as held too */
        for (int i = 0; i < EPC_SCRATCH_COUNT; i++)
            all.net_bytes += ctx->scratch[l][i].cap;
    all.ll_transfer = coll_ll_transfer(ctx->ll);
    epc_ctx_unlock((epc_ctx_t *)ctx);
    epc_out_store(stats, &all);
    return EPC_OK;
}

epc_status_t epc_ctx_abort(epc_ctx_t *ctx, const char *reason)
{
    epc_status_t st = epc_ctx_check(ctx, "epc_ctx_abort");
    if (st != EPC_OK)
        return st;
    epc_ctx_lock(ctx); /* the progress thread may be telling the peers too */
    epc_comm_abort(&ctx->comm, reason);
    epc_ctx_unlock(ctx);
    return EPC_OK;
}

epc_status_t epc_ctx_pair_exchange(epc_ctx_t *ctx, epc_path_t path, size_t bytes)
{
    epc_status_t st = epc_ctx_check(ctx, "epc_ctx_pair_exchange");
    if (st != EPC_OK)
        return st;
    epc_ctx_lock(ctx);
    st = epc_comm_pair_exchange(&ctx->comm, path, bytes);
    epc_ctx_unlock(ctx);
    return st;
}
