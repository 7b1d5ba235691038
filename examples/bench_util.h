/* SPDX-License-Identifier: BSD-3-Clause */
/* bench_util.h - options, inputs, checks and output of epc_bench. */
#ifndef EPC_BENCH_UTIL_H
#define EPC_BENCH_UTIL_H

#include <epcomm.h>

enum { OP_DISPATCH = 1, OP_COMBINE = 2, OP_ROUTE = 4, OP_P2P = 8 };

typedef struct bench_opts {
    int tokens, hidden, experts, topk, max_nodes, iters, warmup, check, sweep;
    int algos; /* bit 0 hier, bit 1 flat */
    int ops;   /* OP_* bits */
    epc_dtype_t dtype;
    int fp8;    /* -d fp8: also an FP8 dispatch of the bf16 rows */
    int wire16; /* -W bf16: also a combine over the BF16 wire */
    double skew;
    double overlap_us; /* --overlap: compute loop length, 0: off, -1: auto */
    unsigned seed;
    const char *csv, *json, *plot, *profile;
    int prewarm;           /* --prewarm: epc_ctx_warmup on each fresh context first */
    int reroute;           /* --reroute: every expert id shifted by one each iteration */
    int buffered;          /* --buffered-outputs: expert outputs copied to epc_combine_buffer */
    int ll;                /* --ll: the latency table (low-latency mode, hier, flat, raw) */
    const char *placement; /* --placement LIST: redundant slot counts to compare */
    int groups;            /* --groups G: the planner's expert groups (0: nodes) */
    int choice;            /* --spread / --balanced / --limited: the epc_replica_choice_t
                              (-1: each placement's own, LIMITED for a plan with spills) */
    int spill;             /* --spill: the routing's co-reach to epcomm's planner */
    double expert_us;      /* --expert-us: emulated expert time per received row */
} bench_opts_t;

typedef struct bench_result {
    const char *algo, *op;
    int tokens;
    double bytes;               /* logical bytes per rank (mean) */
    double t_avg, t_min, t_max; /* seconds, over ranks */
    double algbw, busbw;        /* GB/s */
    double inter, intra;        /* bytes per rank (mean), payload + metadata */
    double payload_inter;       /* this rank's inter-node payload */
    double moved_gbs;           /* all ranks' payload / slowest time */
    double model_us;            /* modeled time on --profile, < 0: none */
    long wrong;                 /* summed over ranks */
} bench_result_t;

typedef struct bench {
    bench_opts_t o;
    int rank, size, nodes, rpn, m;
    size_t row_bytes;
    epc_ctx_t *ctx;
    epc_router_t *router;
    float *logits; /* [tokens x experts] of this rank */
    void *x, *y;
    int32_t *idx;
    float *w;
    double prof_intra, prof_inter; /* --profile bandwidths */
    double memcpy_gbs;             /* aggregate over ranks, same run */
    char *cp_src, *cp_dst;         /* the memcpy row's buffers, kept for the iterations */
    size_t cp_n;                   /* bytes each rank copies */
    double memcpy_iter_gbs[2];     /* hier, flat: aggregate memcpy rate timed in the
                                    * iterations at -t (0: not timed) */
    double t_start;
    int fresh; /* the context has not run an operation yet */
    bench_result_t *res;
    int nres;
} bench_t;

/* bench_opts.c */
int bench_parse(bench_opts_t *o, int argc, char **argv, int rank);

/* bench_util.c */
int bench_setup(bench_t *b, int argc, char **argv);
int bench_new_ctx(bench_t *b);
void bench_teardown(bench_t *b);
/* Prints what failed with the library's error text, then ends the whole
 * job with MPI_Abort(1) (returns 1 only if MPI_Abort returns). */
int bench_fail(const bench_t *b, const char *what);
/* Routing statistics of this rank's first T tokens (already routed). */
void bench_route_stats(const bench_t *b, int T, double *logical, double *inter_pred,
                       double *ranks_per_token, double *nodes_per_token);
/* Modeled dispatch time (us) of algo for the first T tokens; < 0 none. */
double bench_model(const bench_t *b, int T, epc_algo_t algo);
long bench_check_dispatch(const bench_t *b, const epc_dispatch_out_t *o);
long bench_check_combine(const bench_t *b, int T);
/* A low-latency dispatch's rows (native payload) against their sources. */
long bench_check_ll(const bench_t *b, const epc_ll_out_t *o);
/* FP8 rows against the cast of their source rows. */
long bench_check_dispatch_fp8(const bench_t *b, const epc_dispatch_out_t *o);
void bench_progress(const bench_t *b, const char *what, int T);
/* --expert-us: sleeps expert_us per real row of o (the experts' compute,
 * emulated without taking a core from the other ranks). */
void bench_expert_wait(const bench_t *b, const epc_dispatch_out_t *o);

/* bench_p2p.c: the p2p rows (shm when pairs share a node, then the
 * transport), each with its raw baseline. */
int bench_run_p2p(bench_t *b);

/* bench_ll.c: the --ll latency table at T = 1, 16, 128, 256 (up to -t). */
int bench_run_ll(bench_t *b);

/* bench_ll.c's steps, shared: one normal dispatch and combine of T tokens
 * (algo; outputs written over the rows; times into *td, *tc, checked with
 * -c; te non-NULL: the emulated experts between them, their time into
 * *te), the slowest rank's time, and the median of n times (sorts t). */
int bench_normal_once(bench_t *b, epc_algo_t algo, int T, double *td, double *te, double *tc,
                      long *wrong);
double bench_slowest(double t);
double bench_median(double *t, int n);

/* bench_place.c: --placement, the table of placements (none, EPLB,
 * epcomm's planner) for each redundant slot count: rows per rank over the
 * mean and hier dispatch + combine times, in one run. */
int bench_run_placement(bench_t *b);

/* bench_overlap.c: the --overlap lines (dispatch/combine hidden behind a
 * compute loop driven with epc_test). */
int bench_run_overlap(bench_t *b);

/* bench_out.c */
void bench_header(const bench_t *b);
void bench_memcpy_row(bench_t *b, int again);
/* One timed memcpy of the memcpy row's bytes, between a barrier and the
 * clock (0 without the buffers). */
double bench_memcpy_once(const bench_t *b);
/* The raw MPI_Alltoall row (same per-peer bytes as dispatch, at -t). */
void bench_alltoall_row(bench_t *b);
/* Reduces one operation's times and bytes over the ranks into a row. */
bench_result_t *bench_add(bench_t *b, const char *algo, const char *op, int T, double t,
                          const epc_coll_bytes_t *bytes, long wrong, double model_us);
/* A p2p row: `bytes` per rank each way in t seconds. */
bench_result_t *bench_add_p2p(bench_t *b, const char *algo, const char *op, double bytes, double t);
void bench_print_row(const bench_t *b, const bench_result_t *r);
/* Comparisons at the largest size; returns non-zero on any failure. */
int bench_summary(const bench_t *b);
int bench_write_files(const bench_t *b);

#endif
