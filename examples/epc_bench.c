/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * epc_bench - all-to-all (MoE dispatch/combine) bandwidth, in the style of
 * nccl-tests: one row per (algorithm, operation), times reduced across
 * ranks, algbw/busbw, the bytes that crossed the network and stayed in the
 * node, and #wrong when checking.  A memcpy row measured in the same run
 * gives the roofline.  Columns are defined in docs/PERFORMANCE.md.
 *
 *   mpirun -np 8 epc_bench [-t tokens] [-H hidden] [-e experts] [-k topk]
 *                          [-m max-nodes] [-d bf16|fp16|fp32] [-a hier,flat]
 *                          [-o dispatch,combine] [-n iters] [-w warmup] [-c]
 *                          [--skew S] [--seed N]
 */
#include <epcomm.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"

/* Times one algorithm: dispatch then combine, iters times after warmup. */
static int run_algo(bench_t *b, epc_algo_t algo, bench_result_t *rd, bench_result_t *rc)
{
    epc_dispatch_args_t a = EPC_DISPATCH_ARGS_INIT;
    epc_combine_args_t c = EPC_COMBINE_ARGS_INIT;
    epc_dispatch_out_t o;
    epc_coll_stats_t cs;
    double td = 0, tc = 0;
    a.x = b->x, a.num_tokens = b->o.tokens, a.topk = b->o.topk, a.topk_idx = b->idx;
    a.topk_weights = b->w, a.algo = algo;
    for (int it = -b->o.warmup; it < b->o.iters; it++) {
        epc_handle_t *h = NULL;
        double t0, t1, t2;
        MPI_Barrier(MPI_COMM_WORLD);
        t0 = MPI_Wtime();
        if (epc_dispatch(b->ctx, &a, &o, &h) != EPC_OK)
            return bench_fail(b, "dispatch");
        t1 = MPI_Wtime();
        if (b->o.check && it == 0)
            rd->wrong += bench_check_dispatch(b, &o);
        c.expert_out = o.rows, c.y = b->y; /* identity experts, in place */
        MPI_Barrier(MPI_COMM_WORLD);
        t2 = MPI_Wtime();
        if (epc_combine(b->ctx, h, &c) != EPC_OK)
            return bench_fail(b, "combine");
        if (it >= 0)
            td += t1 - t0, tc += MPI_Wtime() - t2;
        if (b->o.check && it == 0)
            rc->wrong += bench_check_combine(b);
        epc_handle_destroy(h);
    }
    epc_coll_stats(b->ctx, &cs);
    bench_reduce(b, td / b->o.iters, &cs.last_dispatch, rd);
    bench_reduce(b, tc / b->o.iters, &cs.last_combine, rc);
    return 0;
}

int main(int argc, char **argv)
{
    bench_t b;
    int rc = 1;
    MPI_Init(&argc, &argv);
    if (bench_setup(&b, argc, argv) == 0) {
        bench_result_t res[2][2];
        bench_header(&b);
        bench_memcpy_row(&b);
        rc = 0;
        for (int i = 0; i < 2 && rc == 0; i++) {
            epc_algo_t algo = i == 0 ? EPC_ALGO_HIER : EPC_ALGO_FLAT;
            if (!(b.o.algos & (1 << i)))
                continue;
            memset(res[i], 0, sizeof res[i]);
            rc = i > 0 && (b.o.algos & 1) ? bench_new_ctx(&b) : 0;
            if (rc == 0)
                rc = run_algo(&b, algo, &res[i][0], &res[i][1]);
            if (rc == 0 && (b.o.ops & 1))
                bench_row(&b, algo, "dispatch", &res[i][0]);
            if (rc == 0 && (b.o.ops & 2))
                bench_row(&b, algo, "combine", &res[i][1]);
        }
        if (rc == 0)
            rc = bench_summary(&b, res);
        bench_teardown(&b);
    } else {
        rc = 2;
    }
    MPI_Finalize();
    return rc;
}
