/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * moe_layer - one Mixture-of-Experts layer forward on CPU, as a training
 * framework would drive epcomm:
 *   gate logits = x . Wg  ->  node-limited top-k (epc_route)  ->  dispatch
 *   ->  each rank's experts: out = relu(row . W1) . W2 (fp32 on bf16 rows)
 *   ->  combine  ->  y
 * then the same layer on rank 0 without dispatch/combine (every token
 * through its experts directly) as the reference.  Prints each rank's time
 * split and the largest error against the reference; exits non-zero if it
 * exceeds bf16 rounding.
 *
 *   mpirun -np 4 moe_layer [-t tokens] [-H hidden] [-F ffn] [-e experts]
 *                          [-k topk] [-m max-nodes]
 */
#include <epcomm.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct layer {
    int T, H, F, E, k, m, rank, size, nodes, rpn;
    float *wg; /* [H x E] gate */
} layer_t;

static float rnd(unsigned long long key)
{
    key ^= key >> 33, key *= 0xff51afd7ed558ccdull, key ^= key >> 33;
    key *= 0xc4ceb9fe1a85ec53ull, key ^= key >> 33;
    return (float)((double)(key >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static uint16_t to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0x7fff + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

static float from_bf16(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Expert e's weights, the same on every rank: W1 [H x F], W2 [F x H]. */
static float w1(const layer_t *l, int e, int i, int j)
{
    return rnd(((unsigned long long)e << 40) ^ ((unsigned long long)i << 20) ^ (unsigned)j) /
           sqrtf((float)l->H);
}
static float w2(const layer_t *l, int e, int i, int j)
{
    return rnd(((unsigned long long)(e + 7919) << 40) ^ ((unsigned long long)i << 20) ^
               (unsigned)j) /
           sqrtf((float)l->F);
}

/* Token t of rank r, element i (bf16). */
static uint16_t xval(int r, int t, int i)
{
    return to_bf16(
        rnd(((unsigned long long)(r + 1) << 44) ^ ((unsigned long long)t << 20) ^ (unsigned)i));
}

/* out = bf16(relu(row . W1) . W2) for expert e (fp32 arithmetic). */
static void expert(const layer_t *l, int e, const uint16_t *row, uint16_t *out, float *h)
{
    for (int j = 0; j < l->F; j++) {
        float acc = 0;
        for (int i = 0; i < l->H; i++)
            acc += from_bf16(row[i]) * w1(l, e, i, j);
        h[j] = acc > 0 ? acc : 0;
    }
    for (int i = 0; i < l->H; i++) {
        float acc = 0;
        for (int j = 0; j < l->F; j++)
            acc += h[j] * w2(l, e, j, i);
        out[i] = to_bf16(acc);
    }
}

static void gate(const layer_t *l, const uint16_t *x, int T, float *logits)
{
    for (int t = 0; t < T; t++)
        for (int e = 0; e < l->E; e++) {
            float acc = 0;
            for (int i = 0; i < l->H; i++)
                acc += from_bf16(x[(size_t)t * l->H + i]) * l->wg[(size_t)i * l->E + e];
            logits[(size_t)t * l->E + e] = acc;
        }
}

static epc_router_t *router(const layer_t *l)
{
    epc_router_params_t p = EPC_ROUTER_PARAMS_INIT;
    epc_router_t *r = NULL;
    p.num_experts = l->E, p.topk = l->k, p.num_ranks = l->size, p.ranks_per_node = l->rpn;
    p.max_nodes_per_token = l->m, p.score_fn = EPC_SCORE_SIGMOID, p.normalize = 1;
    return epc_router_create(&p, &r) == EPC_OK ? r : NULL;
}

/* The layer through epcomm; t gets route, dispatch, experts, combine secs. */
/* Prints a fatal library error and ends the whole job (MPI_Abort), so no
 * peer waits for this rank in a call it will never make. */
static int fatal(int rank, const char *text)
{
    fprintf(stderr, "moe_layer: rank %d: %s\n", rank, text);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
    return 1;
}

static int forward(const layer_t *l, epc_ctx_t *ctx, epc_router_t *r, const uint16_t *x,
                   uint16_t *y, double t[4])
{
    epc_dispatch_args_t a = EPC_DISPATCH_ARGS_INIT;
    epc_combine_args_t c = EPC_COMBINE_ARGS_INIT;
    epc_dispatch_out_t o = EPC_DISPATCH_OUT_INIT;
    epc_handle_t *h = NULL;
    float *logits = malloc((size_t)l->T * l->E * sizeof *logits),
          *w = malloc((size_t)l->T * l->k * sizeof *w);
    float *hid = malloc((size_t)l->F * sizeof *hid);
    int32_t *idx = malloc((size_t)l->T * l->k * sizeof *idx);
    void *eo = NULL;
    double t0 = MPI_Wtime();
    int rc = 1;
    if (!logits || !w || !hid || !idx)
        goto out;
    gate(l, x, l->T, logits);
    if (epc_route(r, logits, l->T, idx, w) != EPC_OK)
        goto out;
    t[0] = MPI_Wtime() - t0, t0 = MPI_Wtime();
    a.x = x, a.num_tokens = l->T, a.topk = l->k, a.topk_idx = idx, a.topk_weights = w;
    if (epc_dispatch(ctx, &a, &o, &h) != EPC_OK || epc_combine_buffer(ctx, h, &eo) != EPC_OK)
        goto out;
    t[1] = MPI_Wtime() - t0, t0 = MPI_Wtime();
    for (int e = 0; e < o.num_local_experts; e++) /* this rank's experts, on their rows */
        for (int row = o.expert_begin[e]; row < o.expert_begin[e] + o.expert_count[e]; row++)
            expert(l, l->rank * o.num_local_experts + e,
                   (const uint16_t *)o.rows + (size_t)row * l->H,
                   (uint16_t *)eo + (size_t)row * l->H, hid);
    t[2] = MPI_Wtime() - t0, t0 = MPI_Wtime();
    c.expert_out = eo, c.y = y;
    if (epc_combine(ctx, h, &c) != EPC_OK)
        goto out;
    t[3] = MPI_Wtime() - t0;
    rc = 0;
out:
    if (rc != 0)
        fatal(l->rank, epc_last_error(ctx)[0] ? epc_last_error(ctx) : epc_last_error(NULL));
    epc_handle_destroy(h);
    free(logits), free(w), free(hid), free(idx);
    return rc;
}

/* Rank 0: every token of every rank through its experts directly, summed
 * in fp32; returns the number of elements off by more than bf16 rounding,
 * and the largest difference relative to the largest output. */
static long reference(const layer_t *l, epc_router_t *r, const uint16_t *xs, const uint16_t *ys,
                      double *max_rel)
{
    float *logits = malloc((size_t)l->T * l->E * sizeof *logits),
          *w = malloc((size_t)l->T * l->k * sizeof *w);
    float *hid = malloc((size_t)l->F * sizeof *hid), *acc = malloc((size_t)l->H * sizeof *acc);
    int32_t *idx = malloc((size_t)l->T * l->k * sizeof *idx);
    uint16_t *out = malloc((size_t)l->H * sizeof *out);
    double peak = 1e-30, worst = 0;
    long bad = 0;
    for (int s = 0; s < l->size; s++) {
        const uint16_t *x = xs + (size_t)s * l->T * l->H, *y = ys + (size_t)s * l->T * l->H;
        gate(l, x, l->T, logits);
        epc_route(r, logits, l->T, idx, w);
        for (int t = 0; t < l->T; t++) {
            memset(acc, 0, (size_t)l->H * sizeof *acc);
            for (int j = 0; j < l->k; j++)
                if (idx[t * l->k + j] >= 0) {
                    expert(l, idx[t * l->k + j], x + (size_t)t * l->H, out, hid);
                    for (int i = 0; i < l->H; i++)
                        acc[i] += w[t * l->k + j] * from_bf16(out[i]);
                }
            for (int i = 0; i < l->H; i++) {
                double ref = from_bf16(to_bf16(acc[i])), got = from_bf16(y[(size_t)t * l->H + i]);
                double d = fabs(got - ref);
                peak = fabs(ref) > peak ? fabs(ref) : peak;
                worst = d > worst ? d : worst;
                bad += d > fabs(ref) / 64.0 + 1e-6; /* two bf16 steps: summation order */
            }
        }
    }
    *max_rel = worst / peak;
    free(logits), free(w), free(hid), free(acc), free(idx), free(out);
    return bad;
}

static int parse(layer_t *l, int argc, char **argv)
{
    *l = (layer_t){.T = 64, .H = 256, .F = 128, .E = 0, .k = 4, .m = -1};
    for (int i = 1; i + 1 < argc; i += 2) {
        int v = atoi(argv[i + 1]);
        if (v < 0)
            return 1;
        if (!strcmp(argv[i], "-t"))
            l->T = v;
        else if (!strcmp(argv[i], "-H"))
            l->H = v;
        else if (!strcmp(argv[i], "-F"))
            l->F = v;
        else if (!strcmp(argv[i], "-e"))
            l->E = v;
        else if (!strcmp(argv[i], "-k"))
            l->k = v;
        else if (!strcmp(argv[i], "-m"))
            l->m = v;
        else
            return 1;
    }
    return argc % 2 == 0 || l->T < 1 || l->H < 1 || l->F < 1 || l->k < 1;
}

static int setup(layer_t *l, epc_ctx_t **ctx)
{
    epc_ctx_params_t p = EPC_CTX_PARAMS_INIT;
    const epc_topo_t *topo;
    if (l->E == 0)
        l->E = 4 * l->size;
    p.num_experts = l->E, p.hidden = l->H, p.dtype = EPC_DTYPE_BF16;
    p.max_tokens_per_rank = l->T, p.max_topk = l->k;
    if (epc_ctx_create(MPI_COMM_WORLD, &p, ctx) != EPC_OK)
        return fatal(l->rank, epc_last_error(NULL));
    epc_ctx_topo(*ctx, &topo);
    epc_topo_num_nodes(topo, &l->nodes);
    epc_topo_ranks_per_node(topo, &l->rpn);
    if (l->m < 0)
        l->m = l->nodes > 2 ? 2 : l->nodes - 1; /* a real limit when there is a choice */
    l->m = l->m >= l->nodes ? 0 : l->m;
    l->wg = malloc((size_t)l->H * l->E * sizeof *l->wg);
    for (int i = 0; l->wg && i < l->H * l->E; i++)
        l->wg[i] = rnd(0xabcdef12345ull + (unsigned long long)i) / sqrtf((float)l->H);
    return l->wg == NULL || l->rpn == 0;
}

/* Rank 0 prints every rank's time split. */
static void report_times(const layer_t *l, const double t[4])
{
    double *all = l->rank == 0 ? malloc((size_t)4 * l->size * sizeof *all) : NULL;
    MPI_Gather(t, 4, MPI_DOUBLE, all, 4, MPI_DOUBLE, 0, MPI_COMM_WORLD);
    if (l->rank != 0)
        return;
    printf("# moe_layer: %d ranks, %d nodes, %d tokens/rank, hidden %d, ffn %d, %d experts, "
           "top-%d, node limit %d\n",
           l->size, l->nodes, l->T, l->H, l->F, l->E, l->k, l->m);
    printf("# %4s %10s %12s %12s %12s\n", "rank", "route_us", "dispatch_us", "experts_us",
           "combine_us");
    for (int r = 0; all && r < l->size; r++)
        printf("  %4d %10.1f %12.1f %12.1f %12.1f\n", r, all[4 * r] * 1e6, all[4 * r + 1] * 1e6,
               all[4 * r + 2] * 1e6, all[4 * r + 3] * 1e6);
    free(all);
}

int main(int argc, char **argv)
{
    layer_t l;
    epc_ctx_t *ctx = NULL;
    epc_router_t *r = NULL;
    uint16_t *x, *y, *xs = NULL, *ys = NULL;
    double t[4] = {0}, rel = 0;
    long bad = 0;
    int rc;
    MPI_Init(&argc, &argv);
    if ((rc = parse(&l, argc, argv)) != 0) {
        fprintf(stderr, "usage: moe_layer [-t tokens] [-H hidden] [-F ffn] [-e experts] [-k topk] "
                        "[-m max-nodes]\n");
        MPI_Finalize();
        return 2;
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &l.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &l.size);
    x = malloc((size_t)l.T * l.H * 2), y = malloc((size_t)l.T * l.H * 2);
    rc = x == NULL || y == NULL || setup(&l, &ctx) != 0 || (r = router(&l)) == NULL;
    for (int i = 0; rc == 0 && i < l.T * l.H; i++)
        x[i] = xval(l.rank, i / l.H, i % l.H);
    if (rc == 0)
        rc = forward(&l, ctx, r, x, y, t);
    MPI_Allreduce(MPI_IN_PLACE, &rc, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (rc == 0) {
        report_times(&l, t);
        if (l.rank == 0)
            xs = malloc((size_t)l.size * l.T * l.H * 2),
            ys = malloc((size_t)l.size * l.T * l.H * 2);
        MPI_Gather(x, l.T * l.H, MPI_UINT16_T, xs, l.T * l.H, MPI_UINT16_T, 0, MPI_COMM_WORLD);
        MPI_Gather(y, l.T * l.H, MPI_UINT16_T, ys, l.T * l.H, MPI_UINT16_T, 0, MPI_COMM_WORLD);
        if (l.rank == 0) {
            bad = reference(&l, r, xs, ys, &rel);
            printf("# reference on rank 0 without dispatch/combine: max error %.3g of the largest "
                   "output, %ld elements beyond bf16 rounding\n",
                   rel, bad);
        }
        MPI_Bcast(&bad, 1, MPI_LONG, 0, MPI_COMM_WORLD);
        rc = bad != 0;
    }
    epc_router_destroy(r);
    if (epc_ctx_destroy(ctx) != EPC_OK) /* a peer is missing: MPI_Finalize would wait */
        fatal(l.rank, epc_last_error(NULL));
    free(x), free(y), free(xs), free(ys), free(l.wg);
    MPI_Finalize();
    return rc;
}
