/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * epc_bench - all-to-all (MoE dispatch/combine) bandwidth, in the style of
 * nccl-tests: one row per (algorithm, operation, size), times reduced across
 * ranks, algbw/busbw, the bytes that crossed the network and stayed in the
 * node, the cost model's time when asked, and #wrong when checking.  The
 * same copy timed as a memcpy row and inside the iterations gives the
 * roofline.  Columns are defined in docs/PERFORMANCE.md.  `epc_bench
 * --help` lists the options.
 */
#include <epcomm.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"

/* The statistics of the call just made, to report beside its time. */
static epc_coll_stats_t stats_now(bench_t *b)
{
    epc_coll_stats_t cs = EPC_COLL_STATS_INIT;
    epc_coll_stats(b->ctx, &cs);
    return cs;
}

/* Times this rank's shared regions and transport buffers have grown. */
static int grows_now(const bench_t *b)
{
    epc_ctx_stats_t s = EPC_CTX_STATS_INIT;
    epc_ctx_stats(b->ctx, &s);
    return (int)(s.shm_grows + s.net_grows);
}

/* -d fp8: one FP8 dispatch of the same rows (a's), timed into *t, its rows
 * checked into *wrong when asked, its bytes into *bytes; -1 when it failed
 * (the job is ended). */
static int time_fp8(bench_t *b, epc_dispatch_args_t a, int it, double *t, long *wrong,
                    epc_coll_bytes_t *bytes)
{
    epc_dispatch_out_t o = EPC_DISPATCH_OUT_INIT;
    epc_handle_t *h = NULL;
    double t0;
    a.payload = EPC_PAYLOAD_FP8;
    MPI_Barrier(MPI_COMM_WORLD);
    t0 = MPI_Wtime();
    if (epc_dispatch(b->ctx, &a, &o, &h) != EPC_OK)
        return bench_fail(b, "fp8 dispatch"), -1;
    if (it >= 0)
        *t += MPI_Wtime() - t0;
    if (b->o.check)
        *wrong += bench_check_dispatch_fp8(b, &o);
    *bytes = stats_now(b).last_dispatch;
    epc_handle_destroy(h);
    return 0;
}

/* -W bf16: the same combine over the BF16 wire, timed into *t, its bytes
 * into *bytes. */
static int time_wire16(bench_t *b, epc_handle_t *h, epc_combine_args_t c, int T, int it, double *t,
                       long *wrong, epc_coll_bytes_t *bytes)
{
    double t0;
    c.wire = EPC_WIRE_BF16;
    MPI_Barrier(MPI_COMM_WORLD);
    t0 = MPI_Wtime();
    if (epc_combine(b->ctx, h, &c) != EPC_OK)
        return bench_fail(b, "bf16-wire combine"), -1;
    if (it >= 0)
        *t += MPI_Wtime() - t0;
    if (b->o.check)
        *wrong += bench_check_combine(b, T);
    *bytes = stats_now(b).last_combine;
    return 0;
}

/* The disp_fp8 row: bytes and bandwidths of the FP8 rows (hidden + hidden/32
 * bytes each) instead of the bf16 ones the statistics count. */
static void add_fp8_row(bench_t *b, const char *name, int T, double t,
                        const epc_coll_bytes_t *bytes, long wrong)
{
    double f = (b->o.hidden + b->o.hidden / 32.0) / (double)b->row_bytes;
    bench_result_t *r = bench_add(b, name, "disp_fp8", T, t / b->o.iters, bytes, wrong, -1);
    if (r != NULL)
        r->bytes *= f, r->algbw *= f, r->busbw *= f;
    bench_print_row(b, r);
}

/* --buffered-outputs: the identity experts' outputs copied into the
 * context's combine buffer (untimed), as experts writing a buffer of
 * their own would leave them. */
static int buffered_outputs(bench_t *b, epc_handle_t *h, const epc_dispatch_out_t *o,
                            epc_combine_args_t *c)
{
    void *eo = NULL;
    if (epc_combine_buffer(b->ctx, h, &eo) != EPC_OK)
        return bench_fail(b, "epc_combine_buffer");
    memcpy(eo, o->rows, (size_t)o->num_rows * b->row_bytes);
    c->expert_out = eo;
    return 0;
}

/* One iteration: at -t the memcpy row's copy, then dispatch, then (-d
 * fp8) an FP8 dispatch of the same rows, combine of the first, then (-W
 * bf16) the same combine over the BF16 wire; each timed between
 * barriers, in that order every time. */
typedef struct algo_run {
    double t[5];     /* sums: dispatch, combine, fp8 dispatch, bf16-wire combine; memcpy: best */
    double first[2]; /* the first iteration's dispatch and combine */
    int first_grows; /* regions and transport buffers grown in it */
    long wrong[4];
    epc_coll_bytes_t by[4];
} algo_run_t;

static int run_iteration(bench_t *b, epc_dispatch_args_t *a, int T, int it, algo_run_t *x)
{
    epc_combine_args_t c = EPC_COMBINE_ARGS_INIT;
    epc_dispatch_out_t o = EPC_DISPATCH_OUT_INIT;
    epc_handle_t *h = NULL;
    double t0, cp = T == b->o.tokens ? bench_memcpy_once(b) : 0;
    x->t[4] = it >= 0 && cp > 0 && (x->t[4] == 0 || cp < x->t[4]) ? cp : x->t[4];
    MPI_Barrier(MPI_COMM_WORLD);
    t0 = MPI_Wtime();
    if (epc_dispatch(b->ctx, a, &o, &h) != EPC_OK)
        return bench_fail(b, "dispatch");
    x->t[0] += it >= 0 ? MPI_Wtime() - t0 : 0;
    x->first[0] = it == -b->o.warmup ? MPI_Wtime() - t0 : x->first[0];
    x->wrong[0] += b->o.check ? bench_check_dispatch(b, &o) : 0;
    x->by[0] = stats_now(b).last_dispatch;
    /* the FP8 dispatch is the first after h's: h stays valid for combine */
    if (b->o.fp8 && time_fp8(b, *a, it, &x->t[2], &x->wrong[2], &x->by[2]) != 0)
        return 1;
    c.expert_out = o.rows, c.y = b->y; /* identity experts, in place */
    if (b->o.buffered && buffered_outputs(b, h, &o, &c) != 0)
        return 1;
    MPI_Barrier(MPI_COMM_WORLD);
    t0 = MPI_Wtime();
    if (epc_combine(b->ctx, h, &c) != EPC_OK)
        return bench_fail(b, "combine");
    x->t[1] += it >= 0 ? MPI_Wtime() - t0 : 0;
    x->first[1] = it == -b->o.warmup ? MPI_Wtime() - t0 : x->first[1];
    x->wrong[1] += b->o.check ? bench_check_combine(b, T) : 0;
    x->by[1] = stats_now(b).last_combine;
    if (b->o.wire16 && time_wire16(b, h, c, T, it, &x->t[3], &x->wrong[3], &x->by[3]) != 0)
        return 1;
    epc_handle_destroy(h);
    return 0;
}

/* The first call on a fresh context (its regions reserved and mapped then)
 * against the steady average of the same size, slowest rank each. */
static void print_first_call(const bench_t *b, const char *name, int T, const algo_run_t *x)
{
    double f[2];
    const double *t = x->t;
    int grew;
    MPI_Allreduce(x->first, f, 2, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    MPI_Allreduce(&x->first_grows, &grew, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (b->rank == 0 && t[0] > 0 && t[1] > 0)
        printf("# %s first call at %d tokens (fresh context%s): dispatch %.1f us = %.2fx the "
               "steady average, combine %.1f us = %.2fx; buffers grown in it: %d\n",
               name, T, b->o.prewarm ? ", warmed up" : "", f[0] * 1e6, f[0] / (t[0] / b->o.iters),
               f[1] * 1e6, f[1] / (t[1] / b->o.iters), grew);
}

/* --prewarm: epc_ctx_warmup of the fresh context for algo at -t tokens,
 * timed (slowest rank). */
static int prewarm(bench_t *b, epc_algo_t algo, const char *name)
{
    double t0, t, tmax;
    MPI_Barrier(MPI_COMM_WORLD);
    t0 = MPI_Wtime();
    if (epc_ctx_warmup(b->ctx, algo, b->o.tokens) != EPC_OK)
        return bench_fail(b, "epc_ctx_warmup");
    t = MPI_Wtime() - t0;
    MPI_Allreduce(&t, &tmax, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    if (b->rank == 0)
        printf("# %s context warm-up (epc_ctx_warmup, %d tokens): %.1f ms\n", name, b->o.tokens,
               tmax * 1e3);
    return 0;
}

/* --reroute: every expert id of the first T tokens moved by `by` (mod E):
 * the same load per expert, rows in other places. */
static void shift_experts(bench_t *b, int T, int by)
{
    int E = b->o.experts, d = ((by % E) + E) % E;
    for (size_t i = 0; i < (size_t)T * b->o.topk; i++)
        b->idx[i] = b->idx[i] < 0 ? -1 : (b->idx[i] + d) % E;
}

/* Times dispatch and combine of one algorithm at T tokens (and the extra
 * calls -d fp8 and -W bf16 ask for, in the same iterations); adds the rows. */
static int run_algo(bench_t *b, epc_algo_t algo, int T)
{
    const char *name = algo == EPC_ALGO_HIER ? "hier" : "flat";
    epc_dispatch_args_t a = EPC_DISPATCH_ARGS_INIT;
    algo_run_t x = {{0}, {0}, 0, {0}, {{0}}};
    double cp;
    double model = bench_model(b, T, algo), n = b->o.iters;
    a.x = b->x, a.num_tokens = T, a.topk = b->o.topk, a.topk_idx = b->idx, a.topk_weights = b->w;
    a.algo = algo;
    if (b->o.reroute) /* the last iteration then routes as given, as the summary assumes */
        shift_experts(b, T, -(b->o.warmup + b->o.iters - 1));
    for (int it = -b->o.warmup; it < b->o.iters; it++) {
        int grows = grows_now(b);
        if (run_iteration(b, &a, T, it, &x) != 0)
            return 1;
        x.first_grows = it == -b->o.warmup ? grows_now(b) - grows : x.first_grows;
        if (b->o.reroute && it + 1 < b->o.iters) /* after the iteration's checks */
            shift_experts(b, T, 1);
    }
    if (b->o.ops & OP_DISPATCH)
        bench_print_row(b,
                        bench_add(b, name, "dispatch", T, x.t[0] / n, &x.by[0], x.wrong[0], model));
    if (b->o.ops & OP_COMBINE)
        bench_print_row(b,
                        bench_add(b, name, "combine", T, x.t[1] / n, &x.by[1], x.wrong[1], model));
    if (b->o.wire16)
        bench_print_row(b, bench_add(b, name, "comb16", T, x.t[3] / n, &x.by[3], x.wrong[3], -1));
    if (b->o.fp8)
        add_fp8_row(b, name, T, x.t[2], &x.by[2], x.wrong[2]);
    if (b->fresh && b->o.warmup > 0)
        print_first_call(b, name, T, &x);
    MPI_Allreduce(&x.t[4], &cp, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    if (cp > 0) /* as the memcpy row: each rank's best, every rank's bytes over the slowest */
        b->memcpy_iter_gbs[algo != EPC_ALGO_HIER] = (double)b->cp_n * b->size / cp * 1e-9;
    b->fresh = 0;
    return 0;
}

/* The router's own speed at T tokens (this rank's logits). */
static int run_route(bench_t *b, int T)
{
    int32_t *idx = malloc((size_t)T * b->o.topk * sizeof *idx);
    float *w = malloc((size_t)T * b->o.topk * sizeof *w);
    double t = 0;
    if (idx == NULL || w == NULL) {
        free(idx), free(w);
        return bench_fail(b, "out of memory");
    }
    for (int it = -b->o.warmup; it < b->o.iters; it++) {
        double t0 = MPI_Wtime();
        if (epc_route(b->router, b->logits, T, idx, w) != EPC_OK)
            return free(idx), free(w), bench_fail(b, "route");
        if (it >= 0)
            t += MPI_Wtime() - t0;
    }
    bench_print_row(b, bench_add(b, "-", "route", T, t / b->o.iters, NULL, 0, -1));
    free(idx), free(w);
    return 0;
}

static int run_all(bench_t *b)
{
    int rc = 0, sizes[32], ns = 0, fresh = 0;
    for (int T = b->o.sweep ? 128 : b->o.tokens; T < b->o.tokens && ns < 31; T *= 2)
        sizes[ns++] = T;
    sizes[ns++] = b->o.tokens;
    for (int i = 0; i < 2 && rc == 0 && (b->o.ops & (OP_DISPATCH | OP_COMBINE)); i++) {
        if (!(b->o.algos & (1 << i)))
            continue;
        /* each algorithm in a fresh context, so one's buffers do not crowd
         * the other's memory */
        if (fresh++ > 0 && (rc = bench_new_ctx(b)) != 0)
            break;
        if (b->o.prewarm && (rc = prewarm(b, i == 0 ? EPC_ALGO_HIER : EPC_ALGO_FLAT,
                                          i == 0 ? "hier" : "flat")) != 0)
            break;
        for (int s = 0; s < ns && rc == 0; s++) {
            bench_progress(b, i == 0 ? "hier" : "flat", sizes[s]);
            rc = run_algo(b, i == 0 ? EPC_ALGO_HIER : EPC_ALGO_FLAT, sizes[s]);
        }
    }
    for (int s = 0; s < ns && rc == 0 && (b->o.ops & OP_ROUTE); s++)
        rc = run_route(b, sizes[s]);
    if (rc == 0 && (b->o.ops & OP_P2P))
        rc = bench_run_p2p(b);
    if (rc == 0 && b->o.overlap_us != 0)
        rc = bench_run_overlap(b);
    return rc;
}

int main(int argc, char **argv)
{
    bench_t b;
    const char *progress = getenv("EPC_PROGRESS");
    int rc, provided;
    /* The context's progress thread calls MPI beside the caller. */
    if (progress != NULL && strcmp(progress, "thread") == 0)
        MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
    else
        MPI_Init(&argc, &argv);
    rc = bench_setup(&b, argc, argv);
    if (rc == 0) {
        bench_header(&b);
        if (b.o.ll || b.o.placement) { /* the latency or placement table alone */
            rc = b.o.ll ? bench_run_ll(&b) : bench_run_placement(&b);
            bench_teardown(&b);
            MPI_Finalize();
            return rc < 0 ? 0 : rc;
        }
        bench_memcpy_row(&b, 0);
        rc = run_all(&b);
        if (rc == 0)
            bench_memcpy_row(&b, 1);
        /* last: its large buffers measurably slowed the rows after it */
        if (rc == 0 && (b.o.ops & OP_DISPATCH))
            bench_alltoall_row(&b);
        if (rc == 0)
            rc = bench_summary(&b) | bench_write_files(&b);
    }
    if (rc >= 0)
        bench_teardown(&b);
    MPI_Finalize();
    return rc < 0 ? 0 : rc;
}
