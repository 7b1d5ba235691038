/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * bench_overlap.c - epc_bench --overlap US: how much of a dispatch or
 * combine hides behind computation.  Per operation, side by side in one
 * run: t_comm (the blocking call alone), t_compute (the compute loop
 * alone, about US microseconds, or as long as the operation alone with
 * auto) and t_overlapped (the call started, the
 * loop run in slices with epc_test between them, then epc_wait); each the
 * slowest rank's, averaged over the iterations.  Efficiency is
 * (t_comm + t_compute) / t_overlapped: 2.0 is perfect overlap, 1.0 none.
 * Where the overlapped time went (rank 0's): the loop with its tests, the
 * tests alone, and the wait after the loop (what the loop did not hide).
 */
#include <epcomm.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"

#define SLICES 512 /* epc_test calls per compute loop */
#define KROWS 64   /* the compute: a [KROWS x KCOLS] fp32 matrix-vector loop */
#define KCOLS 256

static float kmat[KROWS * KCOLS], kvec[KCOLS], kout[KROWS];

/* One unit of computation: a small GEMM-like loop (cache resident). */
static void compute_unit(void)
{
    for (int r = 0; r < KROWS; r++) {
        float s = kout[r] * 0.5f;
        for (int c = 0; c < KCOLS; c++)
            s += kmat[r * KCOLS + c] * kvec[c];
        kout[r] = s;
    }
}

static double unit_seconds; /* one compute_unit here, measured once */

/* Rank 0's breakdown of the overlapped runs: seconds in the loop, in its
 * epc_test calls, in the epc_wait after it. */
static double in_loop, in_test, in_wait;

/* Units per slice so that SLICES slices take about us microseconds (the
 * same count on every rank: the smallest). */
static long units_for(double us)
{
    long units = (long)(us * 1e-6 / unit_seconds / SLICES + 0.5);
    if (units < 1)
        units = 1;
    MPI_Allreduce(MPI_IN_PLACE, &units, 1, MPI_LONG, MPI_MIN, MPI_COMM_WORLD);
    return units;
}

static void calibrate(void)
{
    long n = 64;
    double t0;
    for (int i = 0; i < KROWS * KCOLS; i++)
        kmat[i] = (float)(i % 7) * 0.25f;
    for (int i = 0; i < KCOLS; i++)
        kvec[i] = 1.0f / (float)(i + 1);
    compute_unit(); /* warm */
    t0 = MPI_Wtime();
    for (long i = 0; i < n; i++)
        compute_unit();
    unit_seconds = (MPI_Wtime() - t0) / (double)n;
}

/* The compute loop; with req, epc_test between its slices. */
static int compute(const bench_t *b, long units, epc_request_t *req)
{
    double t0 = MPI_Wtime(), t1;
    int done = 0;
    for (int s = 0; s < SLICES; s++) {
        for (long u = 0; u < units; u++)
            compute_unit();
        if (req == NULL || done)
            continue;
        t1 = MPI_Wtime();
        if (epc_test(req, &done) != EPC_OK)
            return bench_fail(b, "overlap: epc_test");
        in_test += MPI_Wtime() - t1;
    }
    if (req != NULL)
        in_loop += MPI_Wtime() - t0;
    return 0;
}

/* epc_wait, timed into in_wait. */
static epc_status_t timed_wait(epc_request_t *req)
{
    double t0 = MPI_Wtime();
    epc_status_t st = epc_wait(req);
    in_wait += MPI_Wtime() - t0;
    return st;
}

/* The slowest rank's seconds since t0. */
static double slowest(double t0)
{
    double t = MPI_Wtime() - t0;
    MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    return t;
}

/* One iteration: the dispatch (op 0) or combine (op 1), blocking or
 * started and overlapped with `units` of compute; returns its time (the
 * other operation runs untimed). */
static double one(bench_t *b, epc_algo_t algo, int op, long units, int overlap, int *rc)
{
    epc_dispatch_args_t a = EPC_DISPATCH_ARGS_INIT;
    epc_combine_args_t c = EPC_COMBINE_ARGS_INIT;
    epc_dispatch_out_t o = EPC_DISPATCH_OUT_INIT;
    epc_handle_t *h = NULL;
    epc_request_t *req = NULL;
    double t = 0, t0;
    a.x = b->x, a.num_tokens = b->o.tokens, a.topk = b->o.topk, a.topk_idx = b->idx;
    a.topk_weights = b->w, a.algo = algo;
    MPI_Barrier(MPI_COMM_WORLD);
    t0 = MPI_Wtime();
    if (op == 0 && overlap) {
        *rc = epc_dispatch_start(b->ctx, &a, &o, &h, &req) != EPC_OK ? bench_fail(b, "start")
                                                                     : compute(b, units, req);
        *rc = *rc ? *rc : timed_wait(req) != EPC_OK ? bench_fail(b, "overlap: dispatch") : 0;
        epc_request_free(req);
    } else if (epc_dispatch(b->ctx, &a, &o, &h) != EPC_OK) {
        return *rc = bench_fail(b, "dispatch"), 0;
    }
    if (op == 0)
        t = slowest(t0);
    c.expert_out = o.rows, c.y = b->y;
    MPI_Barrier(MPI_COMM_WORLD);
    t0 = MPI_Wtime();
    if (op == 1 && overlap) {
        *rc = epc_combine_start(b->ctx, h, &c, &req) != EPC_OK ? bench_fail(b, "start")
                                                               : compute(b, units, req);
        *rc = *rc ? *rc : timed_wait(req) != EPC_OK ? bench_fail(b, "overlap: combine") : 0;
        epc_request_free(req);
    } else if (epc_combine(b->ctx, h, &c) != EPC_OK) {
        return *rc = bench_fail(b, "combine"), 0;
    }
    if (op == 1)
        t = slowest(t0);
    epc_handle_destroy(h);
    return t;
}

/* The three times of one operation, side by side, iteration by iteration.
 * With --overlap auto the compute loop lasts as long as the operation
 * alone (measured first), as OSU's nonblocking benchmarks do: the balance
 * at which perfect overlap halves the time. */
static int measure(bench_t *b, epc_algo_t algo, int op)
{
    double comm = 0, comp = 0, both = 0, us = b->o.overlap_us;
    long units;
    int rc = 0;
    if (us < 0) {
        us = 1e30; /* the fastest of three: the first ones pay for page faults */
        for (int it = 0; it < 3 && rc == 0; it++) {
            double t = one(b, algo, op, 0, 0, &rc) * 1e6;
            us = t < us ? t : us;
        }
        MPI_Bcast(&us, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD);
    }
    units = units_for(us);
    in_loop = in_test = in_wait = 0;
    for (int it = -b->o.warmup; it < b->o.iters && rc == 0; it++) {
        double tc = one(b, algo, op, units, 0, &rc), t0, tp, to;
        MPI_Barrier(MPI_COMM_WORLD);
        t0 = MPI_Wtime();
        compute(b, units, NULL);
        tp = slowest(t0);
        to = rc == 0 ? one(b, algo, op, units, 1, &rc) : 0;
        if (it >= 0)
            comm += tc, comp += tp, both += to;
    }
    if (rc == 0 && b->rank == 0)
        printf("# overlap %-4s %-8s T=%d: comm %10.1f us  compute %10.1f us  overlapped %10.1f us"
               "  efficiency %.2f  (loop %.1f us, in epc_test %.1f us, wait after %.1f us)\n",
               algo == EPC_ALGO_HIER ? "hier" : "flat", op ? "combine" : "dispatch", b->o.tokens,
               comm / b->o.iters * 1e6, comp / b->o.iters * 1e6, both / b->o.iters * 1e6,
               (comm + comp) / both, in_loop / (b->o.iters + b->o.warmup) * 1e6,
               in_test / (b->o.iters + b->o.warmup) * 1e6,
               in_wait / (b->o.iters + b->o.warmup) * 1e6);
    return rc;
}

int bench_run_overlap(bench_t *b)
{
    int rc = 0;
    calibrate();
    if (b->rank == 0)
        printf("# overlap: compute loop of %s in %d slices, epc_test between slices; "
               "efficiency = (comm + compute) / overlapped (2.0 = perfect)\n",
               b->o.overlap_us < 0 ? "each operation's own time" : "--overlap us", SLICES);
    for (int i = 0; i < 2 && rc == 0; i++)
        for (int op = 0; op < 2 && rc == 0; op++)
            if ((b->o.algos & (1 << i)) && (b->o.ops & (op ? OP_COMBINE : OP_DISPATCH)))
                rc = measure(b, i == 0 ? EPC_ALGO_HIER : EPC_ALGO_FLAT, op);
    fflush(stdout);
    return rc;
}
