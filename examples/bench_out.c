/* SPDX-License-Identifier: BSD-3-Clause */
/* bench_out.c - epc_bench's table, summary, CSV, JSON and plot. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"

void bench_header(const bench_t *b)
{
    epc_ctx_stats_t s = EPC_CTX_STATS_INIT;
    static const char *const dn[] = {"", "bf16", "fp16", "fp32"};
    double lb, pi, rpt, npt;
    epc_ctx_stats(b->ctx, &s);
    bench_route_stats(b, b->o.tokens, &lb, &pi, &rpt, &npt);
    if (b->rank != 0)
        return;
    printf("# epc_bench: %d ranks, %d nodes x %d ranks; transport %s%s%s (%s)\n", b->size, b->nodes,
           b->rpn, s.transport, s.provider[0] ? " " : "", s.provider, s.transport_reason);
    printf("# hidden %d %s%s (%zu B/row), experts %d, top-%d, node limit %s%d, skew %g, seed %u\n",
           b->o.hidden, dn[b->o.dtype], b->o.fp8 ? " and its fp8 cast" : "", b->row_bytes,
           b->o.experts, b->o.topk, b->m ? "" : "none/", b->m, b->o.skew, b->o.seed);
    printf("# at %d tokens/rank: distinct ranks/token %.2f, nodes/token %.2f; %d iterations "
           "after %d warm-up%s\n",
           b->o.tokens, rpt, npt, b->o.iters, b->o.warmup, b->o.check ? ", every one checked" : "");
    if (b->o.profile)
        printf("# model_us: cost model on profile %s (%.1f GB/s intra, %.1f GB/s inter)\n",
               b->o.profile, b->prof_intra, b->prof_inter);
    if (b->o.ll) /* its own table follows */
        return;
    printf("#\n# %-5s %-8s %7s %12s %10s %10s %10s %8s %8s %12s %12s %10s %6s\n", "algo", "op",
           "tokens", "bytes/rank", "avg_us", "min_us", "max_us", "algbw", "busbw", "inter_B",
           "intra_B", "model_us", "#wrong");
}

/* Every rank copies as many bytes as it dispatches at the largest size
 * (capped at 256 MiB), at the same time: the memory roofline of this run.
 * Measured before the operations (the table's row) and again after them
 * (`again`, a comment line).  The buffers stay for bench_memcpy_once,
 * which times the same copy inside each iteration at -t: the roofline
 * lines use that rate, as a shared machine's memory bandwidth drifts
 * (2x within minutes on the project's VM) between the rows. */
void bench_memcpy_row(bench_t *b, int again)
{
    double lb, pi, rpt, npt, best = 1e30, t[3], bytes;
    size_t n, cap = (size_t)256 << 20;
    bench_route_stats(b, b->o.tokens, &lb, &pi, &rpt, &npt);
    n = (size_t)lb < cap ? (size_t)lb : cap;
    n = n ? n : 4096;
    if (b->cp_src == NULL) {
        b->cp_src = malloc(n), b->cp_dst = malloc(n), b->cp_n = n;
        if (b->cp_src == NULL || b->cp_dst == NULL) {
            free(b->cp_src), free(b->cp_dst);
            b->cp_src = b->cp_dst = NULL;
            return;
        }
        /* not 0: that may become an untouched calloc */
        memset(b->cp_src, 1, n), memset(b->cp_dst, 2, n);
    }
    for (int it = 0; it < 4; it++) {
        double d = bench_memcpy_once(b);
        best = it > 0 && d < best ? d : best;
    }
    MPI_Allreduce(&best, &t[0], 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    MPI_Allreduce(&best, &t[1], 1, MPI_DOUBLE, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(&best, &t[2], 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    bytes = (double)n * b->size;
    if (again) {
        if (b->rank == 0)
            printf("# memcpy again after the operations: %.2f GB/s per rank (before: %.2f)\n",
                   bytes / t[0] * 1e-9 / b->size, b->memcpy_gbs / b->size);
        return;
    }
    b->memcpy_gbs = bytes / t[0] * 1e-9;
    if (b->rank == 0)
        printf("  %-5s %-8s %7s %12zu %10.1f %10.1f %10.1f %8.2f %8s %12s %12s %10s %6d\n", "-",
               "memcpy", "-", n, t[2] / b->size * 1e6, t[1] * 1e6, t[0] * 1e6,
               n / (t[2] / b->size) * 1e-9, "-", "-", "-", "-", 0);
}

double bench_memcpy_once(const bench_t *b)
{
    double t0;
    if (b->cp_src == NULL)
        return 0;
    MPI_Barrier(MPI_COMM_WORLD);
    t0 = MPI_Wtime();
    memcpy(b->cp_dst, b->cp_src, b->cp_n);
    __asm__ volatile("" : : "r"(b->cp_dst) : "memory");
    return MPI_Wtime() - t0;
}

/* The raw exchange dispatch is compared with (as OSU's osu_alltoall): an
 * MPI_Alltoall of the mean per-peer share of the dispatch payload at the
 * largest size, timed like the operations (warm-up, then the mean of the
 * iterations, reduced over the ranks). */
void bench_alltoall_row(bench_t *b)
{
    double lb, pi, rpt, npt, sum, t = 0;
    bench_result_t *r;
    size_t per;
    char *src, *dst;
    bench_route_stats(b, b->o.tokens, &lb, &pi, &rpt, &npt);
    MPI_Allreduce(&lb, &sum, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    per = (size_t)(sum / b->size / b->size);
    per = per > 0 && per < ((size_t)1 << 31) ? per : 1;
    src = malloc(per * b->size), dst = malloc(per * b->size);
    if (src == NULL || dst == NULL) {
        free(src), free(dst);
        return;
    }
    memset(src, 1, per * b->size);
    for (int it = -b->o.warmup; it < b->o.iters; it++) {
        double t0;
        MPI_Barrier(MPI_COMM_WORLD);
        t0 = MPI_Wtime();
        MPI_Alltoall(src, (int)per, MPI_BYTE, dst, (int)per, MPI_BYTE, MPI_COMM_WORLD);
        t += it >= 0 ? MPI_Wtime() - t0 : 0;
    }
    r = bench_add_p2p(b, "-", "alltoall", (double)per * b->size, t / b->o.iters);
    if (r != NULL)
        r->tokens = b->o.tokens;
    bench_print_row(b, r);
    free(src), free(dst);
}

/* A new zeroed row at the end of the results, with t reduced over the
 * ranks (avg/min/max); NULL when out of memory (after the collectives). */
static bench_result_t *new_row(bench_t *b, double t)
{
    bench_result_t *r, *grown = realloc(b->res, (size_t)(b->nres + 1) * sizeof *b->res);
    double in[2] = {t, -t}, out[2], sum;
    MPI_Allreduce(in, out, 2, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    MPI_Allreduce(&t, &sum, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    if (grown == NULL)
        return NULL;
    b->res = grown;
    r = &b->res[b->nres++];
    memset(r, 0, sizeof *r);
    r->t_max = out[0], r->t_min = -out[1], r->t_avg = sum / b->size, r->model_us = -1;
    return r;
}

bench_result_t *bench_add(bench_t *b, const char *algo, const char *op, int T, double t,
                          const epc_coll_bytes_t *by, long wrong, double model_us)
{
    bench_result_t *r = new_row(b, t);
    double sum[4], lb, pi, rpt, npt;
    double v[4] = {by ? (double)(by->payload_inter + by->meta_inter) : 0,
                   by ? (double)(by->payload_intra + by->meta_intra) : 0,
                   by ? (double)(by->payload_inter + by->payload_intra) : 0, (double)wrong};
    MPI_Allreduce(v, sum, 4, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    bench_route_stats(b, T, &lb, &pi, &rpt, &npt);
    MPI_Allreduce(MPI_IN_PLACE, &lb, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    if (r == NULL)
        return NULL;
    r->algo = algo, r->op = op, r->tokens = T, r->model_us = model_us;
    r->bytes = !strcmp(op, "route") ? (double)T * b->o.experts * sizeof(float) : lb / b->size;
    r->algbw = r->bytes / r->t_avg * 1e-9;
    r->busbw = r->algbw * (b->size - 1) / b->size;
    r->inter = sum[0] / b->size, r->intra = sum[1] / b->size;
    r->payload_inter = by ? (double)by->payload_inter : 0;
    r->moved_gbs = sum[2] / r->t_max * 1e-9;
    r->wrong = (long)sum[3];
    return r;
}

bench_result_t *bench_add_p2p(bench_t *b, const char *algo, const char *op, double bytes, double t)
{
    bench_result_t *r = new_row(b, t);
    if (r == NULL)
        return NULL;
    r->algo = algo, r->op = op, r->tokens = 0, r->bytes = bytes;
    r->algbw = bytes / r->t_avg * 1e-9;
    r->busbw = r->algbw;
    return r;
}

void bench_print_row(const bench_t *b, const bench_result_t *r)
{
    char model[32] = "-";
    if (r == NULL) /* out of memory: nothing to print */
        return;
    if (r->model_us >= 0)
        snprintf(model, sizeof model, "%.1f", r->model_us);
    if (b->rank == 0)
        printf("  %-5s %-8s %7d %12.0f %10.1f %10.1f %10.1f %8.2f %8.2f %12.0f %12.0f %10s %6ld\n",
               r->algo, r->op, r->tokens, r->bytes, r->t_avg * 1e6, r->t_min * 1e6, r->t_max * 1e6,
               r->algbw, r->busbw, r->inter, r->intra, model, r->wrong);
    fflush(stdout);
}

static const bench_result_t *find(const bench_t *b, const char *algo, const char *op, int T)
{
    for (int i = 0; i < b->nres; i++)
        if (!strcmp(b->res[i].algo, algo) && !strcmp(b->res[i].op, op) && b->res[i].tokens == T)
            return &b->res[i];
    return NULL;
}

/* When the network is the bottleneck, hier should beat flat by the ratio
 * of their inter-node bytes: both ratios and how much of the second the
 * first reaches. */
static void print_ratio(const char *op, const bench_result_t *h, const bench_result_t *f)
{
    double tr, br;
    if (h == NULL || f == NULL || h->inter <= 0 || h->t_avg <= 0)
        return;
    tr = f->t_avg / h->t_avg;
    br = f->inter / h->inter;
    printf("# %-8s flat/hier: time %.2fx, inter-node bytes %.2fx; time ratio = %.0f%% of the "
           "byte ratio\n",
           op, tr, br, 100 * tr / br);
}

/* -d fp8: the FP8 dispatch's time against the bf16 one's, beside the
 * ratio of their row bytes. */
static void print_fp8(const bench_t *b, const bench_result_t *d, const bench_result_t *f8)
{
    if (d == NULL || f8 == NULL || d->t_avg <= 0)
        return;
    printf("# %s fp8/bf16 dispatch time: %.2fx (%.1f us vs %.1f us); row bytes %.3fx\n", d->algo,
           f8->t_avg / d->t_avg, f8->t_avg * 1e6, d->t_avg * 1e6,
           (b->o.hidden + b->o.hidden / 32.0) / (double)b->row_bytes);
}

/* -W bf16: the BF16-wire combine's time against the FP32 wire's. */
static void print_wire(const bench_result_t *c, const bench_result_t *c16)
{
    if (c == NULL || c16 == NULL || c->t_avg <= 0 || c->inter + c->intra <= 0)
        return;
    printf("# %s bf16/fp32-wire combine time: %.2fx (%.1f us vs %.1f us); bytes moved %.3fx\n",
           c->algo, c16->t_avg / c->t_avg, c16->t_avg * 1e6, c->t_avg * 1e6,
           (c16->inter + c16->intra) / (c->inter + c->intra));
}

/* Bandwidth as DeepEP's tests define it: a rank's tokens x the distinct
 * nodes they go to (its own included) x the row, over the call's time
 * ("RDMA"), and the rows a rank receives (on average its tokens x the
 * distinct ranks they go to) x the row ("NVL"); r's row is `row` bytes. */
static void print_deepep(const bench_t *b, const bench_result_t *r, double rpt, double npt,
                         double row)
{
    double t = r != NULL ? r->t_avg : 0;
    if (t <= 0)
        return;
    printf("# %s %-8s as DeepEP counts it: RDMA %.2f GB/s (tokens x %.2f nodes/token x %.0f B, "
           "own node included), NVL %.2f GB/s (x %.2f ranks/token, received)\n",
           r->algo, r->op, b->o.tokens * npt * row / t * 1e-9, npt, row,
           b->o.tokens * rpt * row / t * 1e-9, rpt);
}

/* The memory roofline of dispatch and combine: each rank must read and
 * write at least its T rows and the rows it receives (dispatch: read at
 * the source, written in place; combine: the expert outputs read, y
 * written), (T + rows) x row bytes, rows the mean number of (token,
 * expert) pairs per rank; a memcpy of N bytes reads and writes 2N, so the
 * least time is that traffic over twice the per-rank memcpy rate, the one
 * timed in the same iterations as the calls (each rank's best, the slowest
 * rank's), else the memcpy row's. */
static void print_roofline(const bench_t *b, const char *algo, double rows)
{
    const bench_result_t *d = find(b, algo, "dispatch", b->o.tokens),
                         *c = find(b, algo, "combine", b->o.tokens);
    double iter = b->memcpy_iter_gbs[strcmp(algo, "hier") != 0];
    double gbs = iter > 0 ? iter : b->memcpy_gbs;
    double traffic = (b->o.tokens + rows) * (double)b->row_bytes;
    double t_min = traffic / (2 * gbs / b->size * 1e9);
    if (d && c && d->t_avg > 0 && c->t_avg > 0 && gbs > 0)
        printf("# %s at its memory roofline ((T + %.0f rows) x %zu B = %.1f MB read and written "
               "per rank, at the memcpy rate %s, %.2f GB/s per rank): dispatch %.0f%%, combine "
               "%.0f%%; combine / dispatch time %.2fx\n",
               algo, rows, b->row_bytes, traffic * 1e-6,
               iter > 0 ? "timed in the same iterations" : "of the memcpy row", gbs / b->size,
               100 * t_min / d->t_avg, 100 * t_min / c->t_avg, c->t_avg / d->t_avg);
}

int bench_summary(const bench_t *b)
{
    const bench_result_t *hd = find(b, "hier", "dispatch", b->o.tokens),
                         *hc = find(b, "hier", "combine", b->o.tokens),
                         *fd = find(b, "flat", "dispatch", b->o.tokens),
                         *fc = find(b, "flat", "combine", b->o.tokens), *ra;
    double lb, pred, rpt, npt, mine = 0, rows;
    long wrong = 0;
    int off = 0, offs = 0;
    for (int i = 0; i < b->nres; i++)
        wrong += b->res[i].wrong;
    bench_route_stats(b, b->o.tokens, &lb, &pred, &rpt, &npt);
    for (size_t i = 0; i < (size_t)b->o.tokens * b->o.topk; i++)
        mine += b->idx[i] >= 0;
    MPI_Allreduce(&mine, &rows, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    off = hd != NULL && hd->payload_inter != pred;
    MPI_Allreduce(&off, &offs, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (b->rank != 0)
        return wrong != 0 || offs != 0;
    printf("#\n");
    if (hd && hc && fd && fc)
        printf("# hier vs flat at %d tokens, dispatch+combine time: %.2fx faster (%.1f us vs "
               "%.1f us)\n",
               b->o.tokens, (fd->t_avg + fc->t_avg) / (hd->t_avg + hc->t_avg),
               (hd->t_avg + hc->t_avg) * 1e6, (fd->t_avg + fc->t_avg) * 1e6);
    print_ratio("dispatch", hd, fd);
    print_ratio("combine", hc, fc);
    if (hd && (ra = find(b, "-", "alltoall", b->o.tokens)) != NULL && ra->t_avg > 0)
        printf("# hier dispatch / raw MPI_Alltoall of the same bytes per peer (%.0f B): time "
               "%.2fx (%.1f us vs %.1f us)\n",
               ra->bytes / b->size, hd->t_avg / ra->t_avg, hd->t_avg * 1e6, ra->t_avg * 1e6);
    print_deepep(b, hd, rpt, npt, (double)b->row_bytes);
    print_deepep(b, hc, rpt, npt, (double)b->row_bytes);
    print_deepep(b, find(b, "hier", "disp_fp8", b->o.tokens), rpt, npt,
                 b->o.hidden + b->o.hidden / 32.0);
    print_fp8(b, hd, find(b, "hier", "disp_fp8", b->o.tokens));
    print_fp8(b, fd, find(b, "flat", "disp_fp8", b->o.tokens));
    print_wire(hc, find(b, "hier", "comb16", b->o.tokens));
    print_wire(fc, find(b, "flat", "comb16", b->o.tokens));
    print_roofline(b, "hier", rows / b->size);
    print_roofline(b, "flat", rows / b->size);
    if (hd) {
        printf("# hier inter-node payload per rank: %s the routing statistics' prediction "
               "(one row per token per other node) on %s\n",
               offs ? "DIFFERS from" : "equals", offs ? "some ranks" : "every rank");
    }
    printf("# %ld wrong values\n", wrong);
    return wrong != 0 || offs != 0;
}

static int write_csv(const bench_t *b, const char *path)
{
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return perror(path), 1;
    fprintf(f, "algo,op,tokens,bytes_per_rank,avg_us,min_us,max_us,algbw_gbs,busbw_gbs,"
               "inter_bytes,intra_bytes,model_us,wrong\n");
    for (int i = 0; i < b->nres; i++) {
        const bench_result_t *r = &b->res[i];
        fprintf(f, "%s,%s,%d,%.0f,%.3f,%.3f,%.3f,%.4f,%.4f,%.0f,%.0f,%.3f,%ld\n", r->algo, r->op,
                r->tokens, r->bytes, r->t_avg * 1e6, r->t_min * 1e6, r->t_max * 1e6, r->algbw,
                r->busbw, r->inter, r->intra, r->model_us, r->wrong);
    }
    return fclose(f) != 0;
}

static int write_json(const bench_t *b, const char *path)
{
    FILE *f = fopen(path, "w");
    static const char *const dn[] = {"", "bf16", "fp16", "fp32"};
    if (f == NULL)
        return perror(path), 1;
    fprintf(f,
            "{\"ranks\": %d, \"nodes\": %d, \"ranks_per_node\": %d, \"hidden\": %d, "
            "\"dtype\": \"%s\", \"experts\": %d, \"topk\": %d, \"max_nodes\": %d, "
            "\"memcpy_gbs\": %.4f, \"memcpy_iter_gbs\": [%.4f, %.4f], \"profile\": \"%s\",\n "
            "\"rows\": [",
            b->size, b->nodes, b->rpn, b->o.hidden, dn[b->o.dtype], b->o.experts, b->o.topk, b->m,
            b->memcpy_gbs, b->memcpy_iter_gbs[0], b->memcpy_iter_gbs[1],
            b->o.profile ? b->o.profile : "");
    for (int i = 0; i < b->nres; i++) {
        const bench_result_t *r = &b->res[i];
        fprintf(f,
                "%s\n  {\"algo\": \"%s\", \"op\": \"%s\", \"tokens\": %d, \"bytes_per_rank\": "
                "%.0f, \"avg_us\": %.3f, \"min_us\": %.3f, \"max_us\": %.3f, \"algbw_gbs\": %.4f, "
                "\"busbw_gbs\": %.4f, \"inter_bytes\": %.0f, \"intra_bytes\": %.0f, ",
                i ? "," : "", r->algo, r->op, r->tokens, r->bytes, r->t_avg * 1e6, r->t_min * 1e6,
                r->t_max * 1e6, r->algbw, r->busbw, r->inter, r->intra);
        if (r->model_us >= 0)
            fprintf(f, "\"model_us\": %.3f, ", r->model_us);
        fprintf(f, "\"wrong\": %ld}", r->wrong);
    }
    fprintf(f, "\n ]}\n");
    return fclose(f) != 0;
}

/* algbw against tokens per rank, one line per (algo, op), through gnuplot. */
static int write_plot(const bench_t *b, const char *png)
{
    static const char *const series[][2] = {
        {"hier", "dispatch"}, {"flat", "dispatch"}, {"hier", "combine"}, {"flat", "combine"}};
    char cmd[4200];
    FILE *g;
    int first = 1, rc;
    snprintf(cmd, sizeof cmd, "gnuplot");
    if ((g = popen(cmd, "w")) == NULL)
        return perror("gnuplot"), 1;
    fprintf(g,
            "set terminal pngcairo size 900,560 font 'sans,11'\nset output '%s'\n"
            "set title 'epc\\_bench: %d ranks, %d node(s), hidden %d, top-%d of %d experts'\n"
            "set xlabel 'tokens per rank'\nset ylabel 'algbw (GB/s per rank)'\n"
            "set logscale x 2\nset grid\nset key top left\nset yrange [0:*]\nplot ",
            png, b->size, b->nodes, b->o.hidden, b->o.topk, b->o.experts);
    for (int s = 0; s < 4; s++)
        if (find(b, series[s][0], series[s][1], b->o.tokens) != NULL) {
            fprintf(g, "%s'-' with linespoints lw 2 title '%s %s'", first ? "" : ", ", series[s][0],
                    series[s][1]);
            first = 0;
        }
    fprintf(g, "\n");
    for (int s = 0; s < 4; s++) {
        if (find(b, series[s][0], series[s][1], b->o.tokens) == NULL)
            continue;
        for (int i = 0; i < b->nres; i++)
            if (!strcmp(b->res[i].algo, series[s][0]) && !strcmp(b->res[i].op, series[s][1]))
                fprintf(g, "%d %.4f\n", b->res[i].tokens, b->res[i].algbw);
        fprintf(g, "e\n");
    }
    rc = pclose(g);
    if (rc != 0)
        fprintf(stderr,
                "epc_bench: gnuplot failed (exit %d); is it installed? (Debian: "
                "apt-get install gnuplot-nox)\n",
                rc);
    return rc != 0;
}

int bench_write_files(const bench_t *b)
{
    int rc = 0;
    if (b->rank != 0)
        return 0;
    if (b->o.csv)
        rc |= write_csv(b, b->o.csv);
    if (b->o.json)
        rc |= write_json(b, b->o.json);
    if (b->o.plot && (rc |= write_plot(b, b->o.plot)) == 0)
        printf("# plot written to %s\n", b->o.plot);
    return rc;
}
