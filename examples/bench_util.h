/* SPDX-License-Identifier: BSD-3-Clause */
/* bench_util.h - options, inputs, checks and output of epc_bench. */
#ifndef EPC_BENCH_UTIL_H
#define EPC_BENCH_UTIL_H

#include <epcomm.h>

typedef struct bench_opts {
    int tokens, hidden, experts, topk, max_nodes, iters, warmup, check;
    int algos; /* bit 0 hier, bit 1 flat */
    int ops;   /* bit 0 dispatch, bit 1 combine */
    epc_dtype_t dtype;
    double skew;
    unsigned seed;
} bench_opts_t;

typedef struct bench {
    bench_opts_t o;
    int rank, size, nodes, rpn, m;
    size_t row_bytes;
    epc_ctx_t *ctx;
    void *x, *y;
    int32_t *idx;
    float *w;
    double logical_bytes;    /* this rank: one row per (token, destination rank) */
    double predicted_inter;  /* this rank: one row per (token, other node) */
    double ranks_per_token, nodes_per_token; /* means over all ranks */
    double memcpy_gbs;       /* aggregate over ranks, same run */
} bench_t;

typedef struct bench_result {
    double t_avg, t_min, t_max;    /* seconds, over ranks */
    double inter, intra;           /* bytes per rank (mean), payload + metadata */
    double payload, payload_inter; /* this rank's payload bytes */
    double moved_gbs;              /* all ranks' payload / slowest time */
    long wrong;
} bench_result_t;

int bench_setup(bench_t *b, int argc, char **argv);
/* A fresh context (the old one destroyed): each algorithm is timed in its
 * own, so one's buffers do not crowd the other's memory. */
int bench_new_ctx(bench_t *b);
void bench_teardown(bench_t *b);
void bench_header(const bench_t *b);
void bench_memcpy_row(bench_t *b);
/* Reduces one operation's time and bytes over the ranks. */
void bench_reduce(const bench_t *b, double t, const epc_coll_bytes_t *bytes, bench_result_t *r);
void bench_row(const bench_t *b, epc_algo_t algo, const char *op, const bench_result_t *r);
/* Prints the comparisons; returns non-zero when any check failed. */
int bench_summary(const bench_t *b, bench_result_t res[2][2]);
long bench_check_dispatch(const bench_t *b, const epc_dispatch_out_t *o);
long bench_check_combine(const bench_t *b);
int bench_fail(const bench_t *b, const char *what);

#endif
