/* SPDX-License-Identifier: BSD-3-Clause */
/* bench_util.c - the parts of epc_bench around the timed loop. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"

static size_t esize(epc_dtype_t d)
{
    return d == EPC_DTYPE_FP32 ? 4 : 2;
}

/* Row element i of (rank, token): a small integer, exact in every dtype. */
static float xval(int r, int t, int i)
{
    return (float)((r * 37 + t * 11 + i * 3) % 33 - 16);
}

static void put(epc_dtype_t d, void *row, int i, float v)
{
    if (d == EPC_DTYPE_FP32) {
        ((float *)row)[i] = v;
    } else { /* bf16 and fp16 of small integers: exact, no rounding needed */
        uint16_t h;
        uint32_t u;
        memcpy(&u, &v, 4);
        if (d == EPC_DTYPE_BF16) {
            h = (uint16_t)(u >> 16);
        } else {
            int e = (int)((u >> 23) & 0xff) - 127 + 15;
            h = v == 0.0f ? (uint16_t)((u >> 16) & 0x8000u)
                          : (uint16_t)(((u >> 16) & 0x8000u) | (e << 10) | ((u >> 13) & 0x3ff));
        }
        ((uint16_t *)row)[i] = h;
    }
}

static float get(epc_dtype_t d, const void *row, int i)
{
    uint32_t u, h;
    float f;
    if (d == EPC_DTYPE_FP32)
        return ((const float *)row)[i];
    h = ((const uint16_t *)row)[i];
    if (d == EPC_DTYPE_BF16) {
        u = h << 16;
    } else {
        uint32_t e = (h >> 10) & 0x1f;
        u = ((h & 0x8000u) << 16) | (e ? ((e + 112) << 23) | ((h & 0x3ffu) << 13) : 0);
    }
    memcpy(&f, &u, 4);
    return f;
}

static unsigned long long next(unsigned long long *x)
{
    *x ^= *x << 13, *x ^= *x >> 7, *x ^= *x << 17;
    return *x;
}

static double now(void)
{
    return MPI_Wtime();
}

/* Routes all of this rank's tokens once through the library's node-limited
 * gate on Gumbel logits (Zipf-skewed popularity with --skew); smaller
 * sizes of a sweep use a prefix (tokens are independent). */
static int route(bench_t *b)
{
    epc_router_params_t p = EPC_ROUTER_PARAMS_INIT;
    size_t n = (size_t)b->o.tokens * b->o.experts;
    unsigned long long x = 0x9e3779b97f4a7c15ull ^ ((unsigned long long)b->o.seed << 20) ^
                           (unsigned long long)(b->rank + 1) * 0xd1b54a32d192ed03ull;
    p.num_experts = b->o.experts, p.topk = b->o.topk, p.num_ranks = b->size;
    p.ranks_per_node = b->rpn, p.max_nodes_per_token = b->m, p.score_fn = EPC_SCORE_SIGMOID;
    p.normalize = 1;
    if ((b->logits = malloc(n * sizeof *b->logits)) == NULL)
        return bench_fail(b, "out of memory");
    for (size_t i = 0; i < n; i++) {
        double u = ((double)(next(&x) >> 11) + 0.5) / 9007199254740992.0;
        b->logits[i] = (float)(-log(-log(u)) - b->o.skew * log(1.0 + (double)(i % b->o.experts)));
    }
    if (epc_router_create(&p, &b->router) != EPC_OK ||
        epc_route(b->router, b->logits, b->o.tokens, b->idx, b->w) != EPC_OK)
        return bench_fail(b, "routing");
    return 0;
}

void bench_route_stats(const bench_t *b, int T, double *logical, double *inter_pred,
                       double *ranks_per_token, double *nodes_per_token)
{
    epc_route_stats_t s = EPC_ROUTE_STATS_INIT;
    double in[2], out[2];
    epc_route_stats(b->router, b->idx, T, b->rank, (double)b->row_bytes, &s);
    *logical = s.flat_inter_bytes + s.flat_intra_bytes;
    *inter_pred = s.hier_inter_bytes;
    in[0] = s.mean_ranks_per_token / b->size, in[1] = s.mean_nodes_per_token / b->size;
    MPI_Allreduce(in, out, 2, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    *ranks_per_token = out[0], *nodes_per_token = out[1];
}

/* The cost model over every rank's counts of its first T tokens. */
double bench_model(const bench_t *b, int T, epc_algo_t algo)
{
    epc_cost_params_t p = EPC_COST_PARAMS_INIT;
    epc_layout_t lay = EPC_LAYOUT_INIT;
    epc_cost_t c = EPC_COST_INIT;
    int N = b->size / b->rpn, ok = 1, all_ok;
    int *mine = malloc((size_t)(b->size + N) * sizeof *mine);
    int *tpr = malloc((size_t)b->size * b->size * sizeof *tpr);
    int *tpn = malloc((size_t)b->size * N * sizeof *tpn), *all = NULL;
    double us = -1;
    if (b->o.profile == NULL)
        return -1;
    all = malloc((size_t)b->size * (b->size + N) * sizeof *all);
    ok = mine && tpr && tpn && all;
    if (ok) {
        lay.tokens_per_rank = mine, lay.tokens_per_node = mine + b->size;
        ok = epc_layout(b->router, b->idx, T, &lay) == EPC_OK;
    }
    MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (all_ok) {
        MPI_Allgather(mine, b->size + N, MPI_INT, all, b->size + N, MPI_INT, MPI_COMM_WORLD);
        for (int s = 0; s < b->size; s++) {
            memcpy(tpr + (size_t)s * b->size, all + (size_t)s * (b->size + N),
                   b->size * sizeof *tpr);
            memcpy(tpn + (size_t)s * N, all + (size_t)s * (b->size + N) + b->size, N * sizeof *tpn);
        }
        p.num_ranks = b->size, p.ranks_per_node = b->rpn, p.row_bytes = (double)b->row_bytes;
        p.intra_bw_gbs = b->prof_intra, p.inter_bw_gbs = b->prof_inter;
        p.tokens_per_rank = tpr, p.tokens_per_node = tpn;
        if (epc_cost_model(&p, &c) == EPC_OK)
            us = algo == EPC_ALGO_HIER ? c.hier_dispatch_us : c.flat_dispatch_us;
    }
    free(mine), free(tpr), free(tpn), free(all);
    return us;
}

int bench_new_ctx(bench_t *b)
{
    epc_ctx_params_t p = EPC_CTX_PARAMS_INIT;
    if (epc_ctx_destroy(b->ctx) != EPC_OK)
        return bench_fail(b, "destroying the context");
    b->ctx = NULL;
    p.num_experts = b->o.experts, p.hidden = b->o.hidden, p.dtype = b->o.dtype;
    p.max_tokens_per_rank = b->o.tokens, p.max_topk = b->o.topk;
    b->fresh = 1;
    return epc_ctx_create(MPI_COMM_WORLD, &p, &b->ctx) == EPC_OK ? 0 : bench_fail(b, "context");
}

int bench_setup(bench_t *b, int argc, char **argv)
{
    const epc_topo_t *topo;
    int rc;
    memset(b, 0, sizeof *b);
    b->t_start = now();
    MPI_Comm_rank(MPI_COMM_WORLD, &b->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &b->size);
    if ((rc = bench_parse(&b->o, argc, argv, b->rank)) != 0)
        return rc;
    if (b->o.profile && epc_hw_profile(b->o.profile, &b->prof_intra, &b->prof_inter) != EPC_OK)
        return bench_fail(b, "--profile");
    if (bench_new_ctx(b) != 0)
        return 1;
    epc_ctx_topo(b->ctx, &topo);
    epc_topo_num_nodes(topo, &b->nodes);
    epc_topo_ranks_per_node(topo, &b->rpn);
    if (b->rpn == 0)
        b->rpn = b->size; /* uneven nodes: route as one (hier will refuse) */
    b->m = b->o.max_nodes >= 0 ? b->o.max_nodes : (b->nodes < 4 ? b->nodes : 4);
    b->m = b->m >= b->size / b->rpn ? 0 : b->m;
    b->row_bytes = (size_t)b->o.hidden * esize(b->o.dtype);
    b->x = malloc((size_t)b->o.tokens * b->row_bytes);
    b->y = malloc((size_t)b->o.tokens * b->row_bytes);
    b->idx = malloc((size_t)b->o.tokens * b->o.topk * sizeof *b->idx);
    b->w = malloc((size_t)b->o.tokens * b->o.topk * sizeof *b->w);
    if (!b->x || !b->y || !b->idx || !b->w)
        return bench_fail(b, "out of memory");
    for (int t = 0; t < b->o.tokens; t++)
        for (int i = 0; i < b->o.hidden; i++)
            put(b->o.dtype, (char *)b->x + (size_t)t * b->row_bytes, i, xval(b->rank, t, i));
    /* y touched now, as a framework's output buffer would have been: the
     * first combine's time is then the library's, not this page faults.
     * Not with zeros: a compiler may turn malloc + memset(0) into calloc,
     * whose fresh pages are not touched at all. */
    memset(b->y, 0x7f, (size_t)b->o.tokens * b->row_bytes);
    return route(b);
}

void bench_teardown(bench_t *b)
{
    /* A destroy that timed out left a peer behind: MPI_Finalize would wait
     * for it, so the job ends here instead. */
    if (epc_ctx_destroy(b->ctx) != EPC_OK)
        bench_fail(b, "destroying the context");
    epc_router_destroy(b->router);
    free(b->x), free(b->y), free(b->idx), free(b->w), free(b->logits), free(b->res);
    free(b->cp_src), free(b->cp_dst);
}

int bench_fail(const bench_t *b, const char *what)
{
    const char *e = b->ctx ? epc_last_error(b->ctx) : "";
    fprintf(stderr, "epc_bench: rank %d: %s: %s\n", b->rank, what, e[0] ? e : epc_last_error(NULL));
    fflush(stderr);
    /* As nccl-tests do: a rank that cannot go on ends the whole job, so
     * no peer is left waiting in a call this rank will never make. */
    MPI_Abort(MPI_COMM_WORLD, 1);
    return 1;
}

void bench_progress(const bench_t *b, const char *what, int T)
{
    if (b->rank == 0 && now() - b->t_start > 3.0)
        fprintf(stderr, "epc_bench: %s, %d tokens/rank (%.0f s)\n", what, T, now() - b->t_start);
}

void bench_expert_wait(const bench_t *b, const epc_dispatch_out_t *o)
{
    struct timespec until;
    long rows = 0;
    double ns;
    for (int e = 0; e < o->num_local_experts; e++)
        rows += o->expert_count[e];
    ns = b->o.expert_us * 1e3 * (double)rows;
    if (ns <= 0)
        return;
    /* an absolute deadline: a wake-up early (a signal) sleeps the rest */
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += (time_t)(ns / 1e9);
    until.tv_nsec += (long)(ns - 1e9 * (double)(time_t)(ns / 1e9));
    if (until.tv_nsec >= 1000000000L)
        until.tv_sec++, until.tv_nsec -= 1000000000L;
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, NULL) == EINTR)
        ;
}

long bench_check_dispatch(const bench_t *b, const epc_dispatch_out_t *o)
{
    long wrong = 0;
    for (int r = 0; r < o->num_rows; r++) {
        const char *row = (const char *)o->rows + (size_t)r * b->row_bytes;
        if (o->src_rank[r] < 0)
            continue;
        for (int i = 0; i < b->o.hidden; i++)
            wrong += get(b->o.dtype, row, i) != xval(o->src_rank[r], o->src_token[r], i);
    }
    return wrong;
}

long bench_check_dispatch_fp8(const bench_t *b, const epc_dispatch_out_t *o)
{
    int H = b->o.hidden;
    size_t sb = (size_t)H / 128 * sizeof(float);
    char *src = malloc(b->row_bytes), *q = malloc((size_t)H + sb);
    long wrong = 0;
    if (src == NULL || q == NULL) {
        free(src), free(q);
        return -1;
    }
    for (int r = 0; r < o->num_rows; r++) {
        const char *row = (const char *)o->rows + (size_t)r * o->row_stride;
        if (o->src_rank[r] < 0)
            continue;
        for (int i = 0; i < H; i++)
            put(b->o.dtype, src, i, xval(o->src_rank[r], o->src_token[r], i));
        epc_fp8_quantize(src, b->o.dtype, 1, H, 0, (uint8_t *)q, (size_t)H,
                         (float *)(void *)(q + H), sb);
        for (size_t i = 0; i < (size_t)H + sb; i++)
            wrong += row[i] != q[i];
    }
    free(src), free(q);
    return wrong;
}

/* Identity experts: y = (sum of the token's weights) x, within rounding. */
long bench_check_combine(const bench_t *b, int T)
{
    long wrong = 0;
    double tol = b->o.dtype == EPC_DTYPE_FP32 ? 1e-5 : 1e-2;
    for (int t = 0; t < T; t++) {
        double ws = 0;
        for (int j = 0; j < b->o.topk; j++)
            ws += b->idx[t * b->o.topk + j] >= 0 ? b->w[t * b->o.topk + j] : 0.0;
        for (int i = 0; i < b->o.hidden; i++) {
            double want = ws * xval(b->rank, t, i),
                   got = get(b->o.dtype, (const char *)b->y + (size_t)t * b->row_bytes, i);
            wrong += fabs(got - want) > tol * (fabs(want) > 1 ? fabs(want) : 1);
        }
    }
    return wrong;
}

long bench_check_ll(const bench_t *b, const epc_ll_out_t *o)
{
    long wrong = 0;
    for (int e = 0; e < o->num_local_experts; e++)
        for (int s = 0; s < b->size; s++)
            for (int i = 0; i < o->src_count[e * b->size + s]; i++) {
                size_t pos = (size_t)e * o->slots + (size_t)s * o->max_tokens + i;
                const char *row = (const char *)o->rows + pos * o->row_stride;
                for (int h = 0; h < b->o.hidden; h++)
                    wrong += get(b->o.dtype, row, h) != xval(s, o->src_token[pos], h);
            }
    return wrong;
}
