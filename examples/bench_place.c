/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * bench_place.c - epc_bench --placement LIST: what an expert placement
 * does to the busiest rank and to the step.  The run's own routing (Zipf
 * popularity with --skew, node limit -m) gives every logical expert's
 * load (summed over the ranks); for each redundant slot count N in LIST
 * a placement is planned from it by DeepSeek's EPLB and by epcomm's
 * planner (N = 0 also: the contiguous default).  For each, every rank's
 * tokens are mapped to slots, a context of E + N experts is agreed on it,
 * and hier dispatch + combine of -t tokens are timed over the iterations
 * (per iteration the slowest rank; medians; with --expert-us the experts'
 * compute emulated between them, as a sleep per received row, so the step
 * follows the busiest rank's load as a real one does), beside the rows each rank
 * receives over the mean (measured from the mapping, and as the planner
 * expects it with even replica shares) and the nodes a token reaches.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"

typedef struct place_row {
    const char *name;
    int redundant, slots;
    double expected, measured, nodes, t_disp, t_exp, t_comb;
    long wrong;
} place_row_t;

/* Tokens per logical expert over every rank's routing. */
static int global_loads(bench_t *b, const int32_t *lidx, double *load)
{
    double *mine = calloc((size_t)b->o.experts, sizeof *mine);
    if (mine == NULL)
        return bench_fail(b, "out of memory");
    for (int i = 0; i < b->o.tokens * b->o.topk; i++)
        mine[lidx[i]] += lidx[i] >= 0 ? 1.0 : 0.0;
    MPI_Allreduce(mine, load, b->o.experts, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    free(mine);
    return 0;
}

/* The co-reach of every rank's routing (epc_placement_reach) into reach
 * [E x nodes]. */
static int global_reach(bench_t *b, const int32_t *lidx, double *reach)
{
    size_t n = (size_t)b->o.experts * (size_t)(b->size / b->rpn);
    double *mine = calloc(n, sizeof *mine);
    if (mine == NULL || epc_placement_reach(lidx, b->o.tokens, b->o.topk, b->o.experts,
                                            b->size / b->rpn, mine) != EPC_OK) {
        free(mine);
        return bench_fail(b, "epc_placement_reach");
    }
    MPI_Allreduce(mine, reach, (int)n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    free(mine);
    return 0;
}

/* The placement: algo an epc_placement_algo_t, or -1 for the default;
 * reach (NULL unless --spill) goes to epcomm's planner. */
static int make(bench_t *b, const double *load, const double *reach, int redundant, int algo,
                epc_placement_t **pl)
{
    epc_placement_plan_params_t p = EPC_PLACEMENT_PLAN_PARAMS_INIT;
    epc_placement_params_t id = EPC_PLACEMENT_PARAMS_INIT;
    epc_status_t st;
    if (algo < 0) {
        id.num_experts = b->o.experts, id.num_ranks = b->size, id.ranks_per_node = b->rpn;
        st = epc_placement_create(&id, pl);
    } else {
        p.num_experts = b->o.experts, p.num_ranks = b->size, p.ranks_per_node = b->rpn;
        p.num_slots = b->o.experts + redundant, p.expert_load = load;
        p.num_groups = b->o.groups, p.algo = (epc_placement_algo_t)algo;
        p.expert_reach = algo == EPC_PLACEMENT_BALANCED ? reach : NULL;
        st = epc_placement_plan(&p, pl);
    }
    return st == EPC_OK ? 0 : bench_fail(b, "placement");
}

/* A fresh context of S experts, agreed on pl. */
static int ctx_for(bench_t *b, const epc_placement_t *pl, int S)
{
    epc_ctx_params_t p = EPC_CTX_PARAMS_INIT;
    if (epc_ctx_destroy(b->ctx) != EPC_OK)
        return bench_fail(b, "destroying the context");
    b->ctx = NULL;
    p.num_experts = S, p.hidden = b->o.hidden, p.dtype = b->o.dtype;
    p.max_tokens_per_rank = b->o.tokens, p.max_topk = b->o.topk;
    if (epc_ctx_create(MPI_COMM_WORLD, &p, &b->ctx) != EPC_OK)
        return bench_fail(b, "context");
    return epc_placement_agree(b->ctx, pl) == EPC_OK ? 0 : bench_fail(b, "epc_placement_agree");
}

/* Rows each rank receives under the mapping in b->idx: max over mean. */
static double measured_imbalance(bench_t *b, int spr)
{
    int *mine = calloc((size_t)b->size, sizeof *mine), *all = calloc((size_t)b->size, sizeof *all);
    double sum = 0, mx = 0;
    if (mine == NULL || all == NULL)
        return free(mine), free(all), -1.0;
    for (int i = 0; i < b->o.tokens * b->o.topk; i++)
        mine[b->idx[i] / spr] += b->idx[i] >= 0;
    MPI_Allreduce(mine, all, b->size, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    for (int r = 0; r < b->size; r++) {
        sum += all[r];
        mx = all[r] > mx ? all[r] : mx;
    }
    free(mine), free(all);
    return sum > 0 ? mx * b->size / sum : 0.0;
}

/* Distinct nodes a token's slots are on under the mapping in b->idx
 * (each a network copy in hier when not its own), averaged over every
 * rank's tokens: what the replica choice adds or saves. */
static double nodes_per_token(const bench_t *b, int spr)
{
    double mine[2] = {0, (double)b->o.tokens}, all[2];
    for (int t = 0; t < b->o.tokens; t++) {
        const int32_t *s = b->idx + (size_t)t * b->o.topk;
        for (int j = 0; j < b->o.topk; j++) {
            int node = s[j] < 0 ? -1 : s[j] / spr / b->rpn, seen = node < 0;
            for (int i = 0; i < j && !seen; i++)
                seen = s[i] >= 0 && s[i] / spr / b->rpn == node;
            mine[0] += !seen;
        }
    }
    MPI_Allreduce(mine, all, 2, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    return all[1] > 0 ? all[0] / all[1] : 0.0;
}

/* Times hier dispatch, the emulated experts (--expert-us) and combine
 * over the iterations: medians. */
static int time_row(bench_t *b, place_row_t *row)
{
    int n = b->o.iters;
    double *t = malloc((size_t)3 * n * sizeof *t);
    if (t == NULL)
        return bench_fail(b, "out of memory");
    for (int it = -b->o.warmup; it < n; it++) {
        double td = 0, te = 0, tc = 0;
        if (bench_normal_once(b, EPC_ALGO_HIER, b->o.tokens, &td, b->o.expert_us > 0 ? &te : NULL,
                              &tc, &row->wrong) != 0)
            return free(t), 1;
        td = bench_slowest(td), te = bench_slowest(te), tc = bench_slowest(tc);
        if (it >= 0)
            t[it] = td, t[n + it] = te, t[2 * n + it] = tc;
    }
    row->t_disp = bench_median(t, n);
    row->t_exp = bench_median(t + n, n);
    row->t_comb = bench_median(t + 2 * n, n);
    free(t);
    return 0;
}

static int run_row(bench_t *b, const int32_t *lidx, const double *load, const double *reach,
                   place_row_t *row, int algo)
{
    epc_placement_info_t info = EPC_PLACEMENT_INFO_INIT;
    epc_placement_t *pl = NULL;
    int rc = make(b, load, reach, row->redundant, algo, &pl);
    if (rc != 0)
        return rc;
    epc_placement_info(pl, &info);
    row->slots = info.num_slots;
    if (b->o.choice >= 0 &&
        epc_placement_set_choice(pl, (epc_replica_choice_t)b->o.choice) != EPC_OK)
        rc = bench_fail(b, "epc_placement_set_choice");
    if (rc == 0 && (rc = ctx_for(b, pl, info.num_slots)) == 0 &&
        epc_placement_map(pl, lidx, b->o.tokens, b->o.topk, (int64_t)b->rank * b->o.tokens,
                          b->idx) != EPC_OK)
        rc = bench_fail(b, "epc_placement_map");
    if (rc == 0 && epc_placement_load(pl, load, NULL, NULL, &row->expected) != EPC_OK)
        rc = bench_fail(b, "epc_placement_load");
    if (rc == 0) {
        row->measured = measured_imbalance(b, info.slots_per_rank);
        row->nodes = nodes_per_token(b, info.slots_per_rank);
    }
    if (rc == 0)
        rc = time_row(b, row);
    epc_placement_destroy(pl);
    return rc;
}

static double row_step(const place_row_t *r)
{
    return r->t_disp + r->t_exp + r->t_comb;
}

static void print_row(const bench_t *b, const place_row_t *r, double base)
{
    long wrong = 0;
    MPI_Allreduce(&r->wrong, &wrong, 1, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
    if (b->rank == 0)
        printf("%9d  %-9s %6d %9.3f %9.3f %9.3f %11.1f %11.1f %11.1f %11.1f %7.2fx%s\n",
               r->redundant, r->name, r->slots, r->expected, r->measured, r->nodes, 1e6 * r->t_disp,
               1e6 * r->t_exp, 1e6 * r->t_comb, 1e6 * row_step(r), row_step(r) / base,
               b->o.check ? (wrong ? "  WRONG" : "  checked") : "");
}

/* The rows of one redundant slot count (with the default first at 0). */
static int rows_for(bench_t *b, const int32_t *lidx, const double *load, const double *reach, int n,
                    double *base)
{
    static const char *const names[] = {"none", "eplb", "balanced"};
    static const int algos[] = {-1, EPC_PLACEMENT_EPLB, EPC_PLACEMENT_BALANCED};
    if ((b->o.experts + n) % b->size != 0) {
        if (b->rank == 0)
            printf("# %d redundant slots: %d slots are not a multiple of %d ranks, skipped\n", n,
                   b->o.experts + n, b->size);
        return 0;
    }
    for (int i = n == 0 ? 0 : 1; i < 3; i++) {
        place_row_t row = {names[i], n, 0, 0, 0, 0, 0, 0, 0, 0};
        if (run_row(b, lidx, load, reach, &row, algos[i]) != 0)
            return 1;
        if (*base <= 0)
            *base = row_step(&row);
        print_row(b, &row, *base);
    }
    return 0;
}

int bench_run_placement(bench_t *b)
{
    size_t n = (size_t)b->o.tokens * b->o.topk;
    int32_t *lidx = malloc(n * sizeof *lidx);
    double *load = malloc((size_t)b->o.experts * sizeof *load), base = 0;
    double *reach =
        b->o.spill ? malloc((size_t)b->o.experts * (b->size / b->rpn) * sizeof *reach) : NULL;
    char list[256];
    int rc = lidx && load && (reach || !b->o.spill) ? 0 : bench_fail(b, "out of memory");
    if (rc == 0) {
        memcpy(lidx, b->idx, n * sizeof *lidx);
        rc = global_loads(b, lidx, load);
    }
    if (rc == 0 && reach != NULL)
        rc = global_reach(b, lidx, reach);
    if (rc == 0 && b->rank == 0)
        printf("# placement table: %d ranks (%d per node), node limit %d, skew %g, %d tokens "
               "per rank, groups %d, replicas %s%s; imbalance = busiest rank's rows / mean "
               "(expected: the planner's, even replica shares; measured: the mapped tokens); "
               "nodes/tok: distinct nodes of a token's slots, mean; hier times (us), per "
               "iteration the slowest rank, medians of %d; experts: %g us per received row "
               "slept (emulated compute, between barriers); x = step / the first row's\n"
               "# %7s  %-9s %6s %9s %9s %9s %11s %11s %11s %11s %8s\n",
               b->size, b->rpn, b->m, b->o.skew, b->o.tokens,
               b->o.groups                              ? b->o.groups
               : b->o.experts % (b->size / b->rpn) == 0 ? b->size / b->rpn
                                                        : 1,
               b->o.choice < 0
                   ? "as planned (near; limited with spills)"
                   : (const char *[]){"near", "spread", "balanced", "limited"}[b->o.choice],
               b->o.spill ? ", spill replicas planned" : "", b->o.iters, b->o.expert_us,
               "redundant", "placement", "slots", "expected", "measured", "nodes/tok", "dispatch",
               "experts", "combine", "step", "x");
    snprintf(list, sizeof list, "%s", b->o.placement);
    for (char *save = NULL, *p = strtok_r(list, ",", &save); p && rc == 0;
         p = strtok_r(NULL, ",", &save))
        rc = rows_for(b, lidx, load, reach, atoi(p), &base);
    if (lidx != NULL)
        memcpy(b->idx, lidx, n * sizeof *lidx);
    free(lidx), free(load), free(reach);
    return rc == 0 ? bench_new_ctx(b) : rc;
}
