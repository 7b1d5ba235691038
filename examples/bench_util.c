/* SPDX-License-Identifier: BSD-3-Clause */
/* bench_util.c - the parts of epc_bench around the timed loop. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: mpirun -np N epc_bench [options]\n"
               "  -t, --tokens N     tokens per rank (4096)      -H, --hidden N   (7168)\n"
               "  -e, --experts N    (256)                       -k, --topk N     (8)\n"
               "  -m, --max-nodes M  node limit (min(4, nodes))  -d, --dtype bf16|fp16|fp32\n"
               "  -a, --algo LIST    hier,flat (both)            -o, --op LIST    dispatch,combine\n"
               "  -n, --iters N      (10)                        -w, --warmup N   (2)\n"
               "  -c, --check        verify the first iteration  --skew S  --seed N\n");
}

static int list_bits(const char *v, const char *a, const char *b)
{
    int bits = 0;
    char buf[64];
    snprintf(buf, sizeof buf, "%s", v);
    for (char *save = NULL, *p = strtok_r(buf, ",", &save); p; p = strtok_r(NULL, ",", &save))
        bits |= !strcmp(p, a) ? 1 : !strcmp(p, b) ? 2 : 4;
    return bits;
}

/* Returns 0, or prints why and returns 1 (-1 for --help). */
static int parse(bench_opts_t *o, int argc, char **argv, int rank)
{
    *o = (bench_opts_t){4096, 7168, 256, 8, -1, 10, 2, 0, 3, 3, EPC_DTYPE_BF16, 0.0, 1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
        int *ip = !strcmp(a, "-t") || !strcmp(a, "--tokens")    ? &o->tokens
                  : !strcmp(a, "-H") || !strcmp(a, "--hidden")  ? &o->hidden
                  : !strcmp(a, "-e") || !strcmp(a, "--experts") ? &o->experts
                  : !strcmp(a, "-k") || !strcmp(a, "--topk")    ? &o->topk
                  : !strcmp(a, "-m") || !strcmp(a, "--max-nodes") ? &o->max_nodes
                  : !strcmp(a, "-n") || !strcmp(a, "--iters")   ? &o->iters
                  : !strcmp(a, "-w") || !strcmp(a, "--warmup")  ? &o->warmup
                                                                : NULL;
        char *end;
        if (!strcmp(a, "-h") || !strcmp(a, "--help"))
            return rank == 0 ? (usage(stdout), -1) : -1;
        if (!strcmp(a, "-c") || !strcmp(a, "--check")) {
            o->check = 1;
            continue;
        }
        if (ip != NULL) {
            long n = strtol(v, &end, 10);
            if (*v == '\0' || *end != '\0' || n < 0 || n > (1L << 30))
                goto bad;
            *ip = (int)n, i++;
        } else if (!strcmp(a, "-d") || !strcmp(a, "--dtype")) {
            o->dtype = !strcmp(v, "bf16") ? EPC_DTYPE_BF16 : !strcmp(v, "fp16") ? EPC_DTYPE_FP16
                       : !strcmp(v, "fp32") ? EPC_DTYPE_FP32 : EPC_DTYPE_DEFAULT;
            if (o->dtype == EPC_DTYPE_DEFAULT)
                goto bad;
            i++;
        } else if (!strcmp(a, "-a") || !strcmp(a, "--algo")) {
            if ((o->algos = list_bits(v, "hier", "flat")) & 4 || !o->algos)
                goto bad;
            i++;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--op")) {
            if ((o->ops = list_bits(v, "dispatch", "combine")) & 4 || !o->ops)
                goto bad;
            i++;
        } else if (!strcmp(a, "--skew")) {
            o->skew = strtod(v, &end);
            if (*v == '\0' || *end != '\0' || !(o->skew >= 0))
                goto bad;
            i++;
        } else if (!strcmp(a, "--seed")) {
            o->seed = (unsigned)strtoul(v, &end, 10), i++;
        } else {
            if (rank == 0)
                fprintf(stderr, "epc_bench: unknown option '%s'\n", a), usage(stderr);
            return 1;
        }
        continue;
    bad:
        if (rank == 0)
            fprintf(stderr, "epc_bench: bad value '%s' for %s\n", v, a), usage(stderr);
        return 1;
    }
    if (o->iters < 1 || o->tokens < 1 || o->hidden < 1) {
        if (rank == 0)
            fprintf(stderr, "epc_bench: --iters, --tokens and --hidden must be >= 1\n");
        return 1;
    }
    return 0;
}

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

/* Routes this rank's tokens through the library's node-limited gate on
 * Gumbel logits (Zipf-skewed popularity with --skew). */
static int route(bench_t *b)
{
    epc_router_params_t p = EPC_ROUTER_PARAMS_INIT;
    epc_router_t *r = NULL;
    size_t n = (size_t)b->o.tokens * b->o.experts;
    float *logits = malloc(n * sizeof *logits);
    unsigned long long x = 0x9e3779b97f4a7c15ull ^ ((unsigned long long)b->o.seed << 20) ^
                           (unsigned long long)(b->rank + 1) * 0xd1b54a32d192ed03ull;
    int rc = 0;
    p.num_experts = b->o.experts, p.topk = b->o.topk, p.num_ranks = b->size;
    p.ranks_per_node = b->rpn, p.max_nodes_per_token = b->m, p.score_fn = EPC_SCORE_SIGMOID;
    p.normalize = 1;
    for (size_t i = 0; logits && i < n; i++) {
        double u = ((double)(next(&x) >> 11) + 0.5) / 9007199254740992.0;
        logits[i] = (float)(-log(-log(u)) - b->o.skew * log(1.0 + (double)(i % b->o.experts)));
    }
    if (logits == NULL || epc_router_create(&p, &r) != EPC_OK ||
        epc_route(r, logits, b->o.tokens, b->idx, b->w) != EPC_OK)
        rc = bench_fail(b, "routing");
    if (rc == 0) {
        epc_route_stats_t s;
        double in[2], out[2];
        epc_route_stats(r, b->idx, b->o.tokens, b->rank, (double)b->row_bytes, &s);
        b->logical_bytes = s.flat_inter_bytes + s.flat_intra_bytes;
        b->predicted_inter = s.hier_inter_bytes;
        in[0] = s.mean_ranks_per_token / b->size, in[1] = s.mean_nodes_per_token / b->size;
        MPI_Allreduce(in, out, 2, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
        b->ranks_per_token = out[0], b->nodes_per_token = out[1];
    }
    epc_router_destroy(r);
    free(logits);
    return rc;
}

int bench_new_ctx(bench_t *b)
{
    epc_ctx_params_t p = EPC_CTX_PARAMS_INIT;
    epc_ctx_destroy(b->ctx);
    b->ctx = NULL;
    p.num_experts = b->o.experts, p.hidden = b->o.hidden, p.dtype = b->o.dtype;
    p.max_tokens_per_rank = b->o.tokens, p.max_topk = b->o.topk;
    return epc_ctx_create(MPI_COMM_WORLD, &p, &b->ctx) == EPC_OK ? 0 : bench_fail(b, "context");
}

int bench_setup(bench_t *b, int argc, char **argv)
{
    const epc_topo_t *topo;
    int rc;
    memset(b, 0, sizeof *b);
    MPI_Comm_rank(MPI_COMM_WORLD, &b->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &b->size);
    if ((rc = parse(&b->o, argc, argv, b->rank)) != 0)
        return rc;
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
    memset(b->y, 0, (size_t)b->o.tokens * b->row_bytes);
    return route(b);
}

void bench_teardown(bench_t *b)
{
    epc_ctx_destroy(b->ctx);
    free(b->x), free(b->y), free(b->idx), free(b->w);
}

int bench_fail(const bench_t *b, const char *what)
{
    fprintf(stderr, "epc_bench: rank %d: %s: %s\n", b->rank, what,
            epc_last_error(b->ctx) [0] ? epc_last_error(b->ctx) : epc_last_error(NULL));
    return 1;
}

void bench_header(const bench_t *b)
{
    epc_ctx_stats_t s;
    static const char *const dn[] = {"", "bf16", "fp16", "fp32"};
    epc_ctx_stats(b->ctx, &s);
    if (b->rank != 0)
        return;
    printf("# epc_bench: %d ranks, %d nodes x %d ranks; transport %s%s%s (%s)\n", b->size,
           b->nodes, b->rpn, s.transport, s.provider[0] ? " " : "", s.provider,
           s.transport_reason);
    printf("# tokens/rank %d, hidden %d %s (%zu B/row), experts %d, top-%d, node limit %s%d, "
           "skew %g\n",
           b->o.tokens, b->o.hidden, dn[b->o.dtype], b->row_bytes, b->o.experts, b->o.topk,
           b->m ? "" : "none/", b->m, b->o.skew);
    printf("# distinct ranks/token %.2f, nodes/token %.2f; %d iterations after %d warm-up\n",
           b->ranks_per_token, b->nodes_per_token, b->o.iters, b->o.warmup);
    printf("#\n# %-5s %-8s %7s %12s %10s %10s %10s %8s %8s %12s %12s %6s\n", "algo", "op",
           "tokens", "bytes/rank", "avg_us", "min_us", "max_us", "algbw", "busbw", "inter_B",
           "intra_B", "#wrong");
}

/* Every rank copies as many bytes as it dispatches (capped at 256 MiB),
 * at the same time: the memory roofline of this run. */
void bench_memcpy_row(bench_t *b)
{
    size_t n = (size_t)b->logical_bytes, cap = (size_t)256 << 20;
    char *src, *dst;
    double best = 1e30, tmax, tmin, tsum, bytes_sum;
    n = n < cap ? n : cap;
    n = n ? n : 4096;
    src = malloc(n), dst = malloc(n);
    if (src == NULL || dst == NULL) {
        free(src), free(dst);
        return;
    }
    memset(src, 1, n), memset(dst, 0, n);
    for (int it = 0; it < 4; it++) {
        double t0;
        MPI_Barrier(MPI_COMM_WORLD);
        t0 = MPI_Wtime();
        memcpy(dst, src, n);
        __asm__ volatile("" : : "r"(dst) : "memory");
        best = it > 0 && MPI_Wtime() - t0 < best ? MPI_Wtime() - t0 : best;
    }
    MPI_Allreduce(&best, &tmax, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    MPI_Allreduce(&best, &tmin, 1, MPI_DOUBLE, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(&best, &tsum, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    bytes_sum = (double)n * b->size;
    b->memcpy_gbs = bytes_sum / tmax * 1e-9;
    if (b->rank == 0)
        printf("  %-5s %-8s %7s %12zu %10.1f %10.1f %10.1f %8.2f %8s %12s %12s %6d\n", "-",
               "memcpy", "-", n, tsum / b->size * 1e6, tmin * 1e6, tmax * 1e6,
               n / (tsum / b->size) * 1e-9, "-", "-", "-", 0);
    free(src), free(dst);
}

void bench_reduce(const bench_t *b, double t, const epc_coll_bytes_t *by, bench_result_t *r)
{
    double in[4] = {t, -t, t, 0}, out[4];
    double bytes[3] = {(double)(by->payload_inter + by->meta_inter),
                       (double)(by->payload_intra + by->meta_intra),
                       (double)(by->payload_inter + by->payload_intra)},
           sums[3];
    MPI_Allreduce(in, out, 2, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    MPI_Allreduce(&in[2], &out[2], 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    MPI_Allreduce(bytes, sums, 3, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    r->t_max = out[0], r->t_min = -out[1], r->t_avg = out[2] / b->size;
    r->inter = sums[0] / b->size, r->intra = sums[1] / b->size;
    r->payload = (double)(by->payload_inter + by->payload_intra);
    r->payload_inter = (double)by->payload_inter;
    r->moved_gbs = sums[2] / r->t_max * 1e-9;
}

void bench_row(const bench_t *b, epc_algo_t algo, const char *op, const bench_result_t *r)
{
    double lb, algbw;
    long wrong;
    MPI_Allreduce(&b->logical_bytes, &lb, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    MPI_Allreduce(&r->wrong, &wrong, 1, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
    lb /= b->size;
    algbw = lb / r->t_avg * 1e-9;
    if (b->rank == 0)
        printf("  %-5s %-8s %7d %12.0f %10.1f %10.1f %10.1f %8.2f %8.2f %12.0f %12.0f %6ld\n",
               algo == EPC_ALGO_HIER ? "hier" : "flat", op, b->o.tokens, lb, r->t_avg * 1e6,
               r->t_min * 1e6, r->t_max * 1e6, algbw, algbw * (b->size - 1) / b->size, r->inter,
               r->intra, wrong);
}

int bench_summary(const bench_t *b, bench_result_t res[2][2])
{
    long wrong = res[0][0].wrong + res[0][1].wrong + res[1][0].wrong + res[1][1].wrong, all;
    int off = b->o.algos & 1 ? res[0][0].payload_inter != b->predicted_inter : 0, offs;
    MPI_Allreduce(&wrong, &all, 1, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
    MPI_Allreduce(&off, &offs, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (b->rank != 0)
        return all != 0;
    printf("#\n");
    if (b->o.algos == 3)
        printf("# hier vs flat, dispatch+combine time: %.2fx faster (%.1f us vs %.1f us)\n",
               (res[1][0].t_avg + res[1][1].t_avg) / (res[0][0].t_avg + res[0][1].t_avg),
               res[0][0].t_avg * 1e6 + res[0][1].t_avg * 1e6,
               res[1][0].t_avg * 1e6 + res[1][1].t_avg * 1e6);
    if (b->o.algos & 1) {
        printf("# hier dispatch moved %.2f GB/s of payload over all ranks = %.0f%% of the "
               "same-run aggregate memcpy rate (%.2f GB/s)\n",
               res[0][0].moved_gbs, 100 * res[0][0].moved_gbs / b->memcpy_gbs, b->memcpy_gbs);
        printf("# hier inter-node payload per rank: %s the routing statistics' prediction "
               "(one row per token per other node) on %s\n",
               offs ? "DIFFERS from" : "equals", offs ? "some ranks" : "every rank");
    }
    printf("# %ld wrong values\n", all);
    return all != 0 || offs != 0;
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

/* Identity experts: y = (sum of the token's weights) x, within rounding. */
long bench_check_combine(const bench_t *b)
{
    long wrong = 0;
    double tol = b->o.dtype == EPC_DTYPE_FP32 ? 1e-5 : 1e-2;
    for (int t = 0; t < b->o.tokens; t++) {
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
