/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * bench_ll.c - epc_bench --ll: the latency of one dispatch and one
 * combine at decoding sizes (T = 1, 16, 128, 256 tokens per rank, up to
 * -t), for the low-latency mode (start to hook done, expert outputs in
 * the context's buffer), the normal hier and flat calls, and raw
 * MPI_Alltoalls (the osu_alltoall equivalent) of the mean bytes per peer
 * of one row per token and rank (raw) and per token and expert (raw-k),
 * timed side by side in the same run.  Every iteration
 * starts after a barrier; its time is the slowest rank's; min, median
 * and p99 over the iterations.  The identity experts (untimed) make the
 * combine (sum of weight x row) checkable; they read every received row
 * and write it out as real experts would (the low-latency mode's into
 * its combine buffer, the normal paths' over the rows).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"

static const int ll_sizes[] = {1, 16, 128, 256};

typedef struct lat {
    double *d, *c; /* per iteration, slowest rank: dispatch, combine */
    long wrong;
} lat_t;

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_slowest(double t)
{
    double m;
    MPI_Allreduce(&t, &m, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    return m;
}

double bench_median(double *t, int n)
{
    qsort(t, (size_t)n, sizeof *t, cmp);
    return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

/* Prints one row: min, median, p99 (microseconds) and the median against
 * the raw exchange's (raw_med 0: a raw row itself) and, where rawk_med >
 * 0, against the raw exchange of one row per token and expert. */
static double print_lat(const bench_t *b, int T, const char *op, const char *path, double *t,
                        double raw_med, double rawk_med)
{
    int n = b->o.iters, p99 = (int)ceil(0.99 * n) - 1;
    double med = bench_median(t, n);
    if (b->rank == 0) {
        printf("%8d  %-8s %-8s %10.1f %10.1f %10.1f", T, op, path, 1e6 * t[0], 1e6 * med,
               1e6 * t[p99 < 0 ? 0 : p99]);
        if (raw_med > 0)
            printf("  %6.2fx", med / raw_med);
        if (rawk_med > 0)
            printf("  %6.2fx", med / rawk_med);
        printf("\n");
    }
    return med;
}

/* The identity experts: each received row copied to its place in the
 * combine buffer (untimed). */
static void identity(const bench_t *b, const epc_ll_out_t *o, char *eo)
{
    for (int e = 0; e < o->num_local_experts; e++)
        for (int s = 0; s < b->size; s++) {
            size_t pos = (size_t)e * o->slots + (size_t)s * o->max_tokens;
            int n = o->src_count[e * b->size + s];
            for (int i = 0; i < n; i++)
                memcpy(eo + (pos + i) * b->row_bytes,
                       (const char *)o->rows + (pos + i) * o->row_stride, b->row_bytes);
        }
}

/* One low-latency dispatch and combine of T tokens; times into *td, *tc. */
static int ll_once(bench_t *b, int T, double *td, double *tc, long *wrong)
{
    epc_ll_dispatch_args_t a = EPC_LL_DISPATCH_ARGS_INIT;
    epc_ll_combine_args_t c = EPC_LL_COMBINE_ARGS_INIT;
    epc_ll_out_t o = EPC_LL_OUT_INIT;
    epc_request_t *r = NULL;
    void *eo = NULL;
    double t0;
    a.x = b->x, a.num_tokens = T, a.topk = b->o.topk, a.topk_idx = b->idx;
    MPI_Barrier(MPI_COMM_WORLD);
    t0 = MPI_Wtime();
    if (epc_ll_dispatch(b->ctx, &a, &o, &r) != EPC_OK || epc_wait(r) != EPC_OK)
        return bench_fail(b, "low-latency dispatch");
    *td = MPI_Wtime() - t0;
    epc_request_free(r);
    if (b->o.check)
        *wrong += bench_check_ll(b, &o);
    if (epc_ll_combine_buffer(b->ctx, &o, &eo) != EPC_OK)
        return bench_fail(b, "epc_ll_combine_buffer");
    identity(b, &o, eo);
    c.dispatched = &o, c.expert_out = eo, c.topk_weights = b->w, c.y = b->y;
    MPI_Barrier(MPI_COMM_WORLD);
    t0 = MPI_Wtime();
    if (epc_ll_combine(b->ctx, &c, &r) != EPC_OK || epc_wait(r) != EPC_OK)
        return bench_fail(b, "low-latency combine");
    *tc = MPI_Wtime() - t0;
    epc_request_free(r);
    if (b->o.check)
        *wrong += bench_check_combine(b, T);
    return 0;
}

/* The identity experts of the normal paths, as experts that read their
 * rows and write their outputs over them (untimed): every received row
 * read and written back by this rank.  (Leaving the rows untouched would
 * spare the normal paths what real experts cost the next call on a
 * machine where a page written by one process and then touched by
 * another is slow to write again, as on this project's VM.) */
static void identity_in_place(const bench_t *b, const epc_dispatch_out_t *o)
{
    char *tmp = malloc(b->row_bytes);
    for (int r = 0; tmp != NULL && r < o->num_rows; r++) {
        char *row = (char *)o->rows + (size_t)r * b->row_bytes;
        memcpy(tmp, row, b->row_bytes);
        memcpy(row, tmp, b->row_bytes);
        __asm__ volatile("" : : "r"(row) : "memory");
    }
    free(tmp);
}

/* One normal dispatch and combine (algo) of T tokens, outputs in place;
 * with te, the experts' emulated time (--expert-us) between them. */
int bench_normal_once(bench_t *b, epc_algo_t algo, int T, double *td, double *te, double *tc,
                      long *wrong)
{
    epc_dispatch_args_t a = EPC_DISPATCH_ARGS_INIT;
    epc_combine_args_t c = EPC_COMBINE_ARGS_INIT;
    epc_dispatch_out_t o = EPC_DISPATCH_OUT_INIT;
    epc_handle_t *h = NULL;
    double t0;
    a.x = b->x, a.num_tokens = T, a.topk = b->o.topk, a.topk_idx = b->idx, a.topk_weights = b->w;
    a.algo = algo;
    MPI_Barrier(MPI_COMM_WORLD);
    t0 = MPI_Wtime();
    if (epc_dispatch(b->ctx, &a, &o, &h) != EPC_OK)
        return bench_fail(b, "dispatch");
    *td = MPI_Wtime() - t0;
    if (b->o.check)
        *wrong += bench_check_dispatch(b, &o);
    identity_in_place(b, &o);
    if (te != NULL) {
        MPI_Barrier(MPI_COMM_WORLD);
        t0 = MPI_Wtime();
        bench_expert_wait(b, &o);
        *te = MPI_Wtime() - t0;
    }
    c.expert_out = o.rows, c.y = b->y;
    MPI_Barrier(MPI_COMM_WORLD);
    t0 = MPI_Wtime();
    if (epc_combine(b->ctx, h, &c) != EPC_OK)
        return bench_fail(b, "combine");
    *tc = MPI_Wtime() - t0;
    epc_handle_destroy(h);
    if (b->o.check)
        *wrong += bench_check_combine(b, T);
    return 0;
}

/* Bytes this rank's T tokens make as one row per (token, expert): what the
 * low-latency mode places (each expert's block its own copy) and its
 * combine moves back, as DeepEP's. */
static double per_expert_bytes(const bench_t *b, int T)
{
    long rows = 0;
    for (long i = 0; i < (long)T * b->o.topk; i++)
        rows += b->idx[i] >= 0;
    return (double)rows * (double)b->row_bytes;
}

/* The raw exchange: MPI_Alltoall of the mean per-peer bytes (every rank's
 * bytes to every rank, over R^2) of a dispatch of T tokens (one row per
 * token and destination rank) or, with per_expert, of one row per token
 * and expert. */
static int raw_times(bench_t *b, int T, int per_expert, double *t)
{
    double lb, pi, rpt, npt, sum;
    size_t per;
    char *src, *dst;
    bench_route_stats(b, T, &lb, &pi, &rpt, &npt);
    if (per_expert)
        lb = per_expert_bytes(b, T);
    MPI_Allreduce(&lb, &sum, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    per = (size_t)(sum / b->size / b->size);
    per = per > 0 ? per : 1;
    src = calloc(per, (size_t)b->size), dst = calloc(per, (size_t)b->size);
    if (src == NULL || dst == NULL)
        return free(src), free(dst), bench_fail(b, "out of memory");
    for (int it = -b->o.warmup; it < b->o.iters; it++) {
        double t0;
        MPI_Barrier(MPI_COMM_WORLD);
        t0 = MPI_Wtime();
        MPI_Alltoall(src, (int)per, MPI_BYTE, dst, (int)per, MPI_BYTE, MPI_COMM_WORLD);
        t0 = bench_slowest(MPI_Wtime() - t0);
        if (it >= 0)
            t[it] = t0;
    }
    free(src), free(dst);
    return 0;
}

/* Times one path (0 ll, 1 hier, 2 flat) at T over the iterations. */
static int path_times(bench_t *b, int path, int T, lat_t *l)
{
    for (int it = -b->o.warmup; it < b->o.iters; it++) {
        double td = 0, tc = 0;
        int rc = path == 0 ? ll_once(b, T, &td, &tc, &l->wrong)
                           : bench_normal_once(b, path == 1 ? EPC_ALGO_HIER : EPC_ALGO_FLAT, T, &td,
                                               NULL, &tc, &l->wrong);
        if (rc != 0)
            return rc;
        td = bench_slowest(td), tc = bench_slowest(tc);
        if (it >= 0)
            l->d[it] = td, l->c[it] = tc;
    }
    return 0;
}

/* The rows of size T: the raw exchanges first (one row per token and
 * rank, then per token and expert), then each path's dispatch and
 * combine. */
static int size_rows(bench_t *b, int T, double *buf)
{
    static const char *const names[3] = {"ll", "hier", "flat"};
    double *raw = buf, raw_med, rawk_med;
    long wrong = 0, total;
    int rc = raw_times(b, T, 0, raw);
    if (rc != 0)
        return rc;
    raw_med = print_lat(b, T, "a2a", "raw", raw, 0, 0);
    if ((rc = raw_times(b, T, 1, raw)) != 0)
        return rc;
    rawk_med = print_lat(b, T, "a2a", "raw-k", raw, 0, 0);
    for (int p = 0; p < 3 && rc == 0; p++) {
        lat_t l = {buf + b->o.iters, buf + 2 * b->o.iters, 0};
        if ((rc = path_times(b, p, T, &l)) != 0)
            break;
        print_lat(b, T, "dispatch", names[p], l.d, raw_med, rawk_med);
        print_lat(b, T, "combine", names[p], l.c, raw_med, rawk_med);
        wrong += l.wrong;
    }
    MPI_Allreduce(&wrong, &total, 1, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
    if (b->rank == 0 && b->o.check)
        printf("# T=%d: %ld wrong values (every row and sum checked)\n", T, total);
    return rc == 0 && total != 0 ? 1 : rc;
}

int bench_run_ll(bench_t *b)
{
    epc_ctx_stats_t s = EPC_CTX_STATS_INIT;
    int max = 0, rc = 0;
    double *buf = malloc((size_t)3 * b->o.iters * sizeof *buf);
    for (size_t i = 0; i < sizeof ll_sizes / sizeof ll_sizes[0]; i++)
        if (ll_sizes[i] <= b->o.tokens)
            max = ll_sizes[i];
    if (buf == NULL)
        return bench_fail(b, "out of memory");
    if (epc_ll_enable(b->ctx, max) != EPC_OK)
        return free(buf), bench_fail(b, "epc_ll_enable");
    epc_ctx_stats(b->ctx, &s);
    if (b->rank == 0)
        printf("# latency (us; per iteration the slowest rank; %d iterations), low-latency "
               "mode at max_tokens %d, its messages between nodes: %s\n"
               "# xraw = median / the median of raw, an MPI_Alltoall of the mean bytes per peer "
               "of one row per token and rank;\n# xraw-k = median / the median of raw-k, one "
               "of one row per token and expert (what the low-latency mode moves, as DeepEP's)\n"
               "# %6s  %-8s %-8s %10s %10s %10s  %7s  %7s\n",
               b->o.iters, max, s.ll_transfer[0] ? s.ll_transfer : "none (one node)", "T", "op",
               "path", "min", "median", "p99", "xraw", "xraw-k");
    for (size_t i = 0; i < sizeof ll_sizes / sizeof ll_sizes[0] && rc == 0; i++)
        if (ll_sizes[i] <= max)
            rc = size_rows(b, ll_sizes[i], buf);
    free(buf);
    return rc;
}
