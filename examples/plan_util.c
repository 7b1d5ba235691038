/* SPDX-License-Identifier: BSD-3-Clause */
/* plan_util.c - options, logits and the router benchmark of epc_plan. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "plan_util.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: epc_plan [options]\n"
            "  -e, --experts N        experts E (256)\n"
            "  -k, --topk N           experts per token (8)\n"
            "  -r, --ranks N          ranks R (64)\n"
            "      --ranks-per-node N (8)\n"
            "  -m, --max-nodes M      node limit to mark and benchmark (min(4, nodes))\n"
            "  -t, --tokens N         tokens per rank (4096)\n"
            "  -H, --hidden N         row elements (7168); -d, --dtype bf16|fp16|fp32 (bf16)\n"
            "      --payload fp8      dispatch rows as FP8 (hidden + hidden/32 bytes)\n"
            "      --wire fp32|bf16   combine's partial sums (fp32: hidden x 4 bytes)\n"
            "      --score softmax|sigmoid (sigmoid); --bias (random expert bias)\n"
            "      --no-normalize     keep raw weights\n"
            "      --skew S           Zipf exponent of expert popularity (0 = uniform)\n"
            "      --profile NAME     h800|h100-ib|gb200-nvl72|cpu-eth (EPC_HW_PROFILE)\n"
            "      --intra-bw G / --inter-bw G   override the profile (GB/s)\n"
            "      --seed N           (1)\n"
            "      --json             machine-readable output\n"
            "      --bench            time epc_route and epc_layout (tokens/s)\n"
            "      --placement N      plan expert placements with N redundant slots (none,\n"
            "                         DeepSeek's EPLB, epcomm's planner) for node limit -m:\n"
            "                         the table, load per rank and node, modelled times\n"
            "      --groups G         with --placement: expert groups kept on one node\n"
            "                         (0: one per node, as the node limit; 1: global)\n"
            "      --spread           with --placement: tokens spread over every replica\n"
            "                         (EPC_REPLICA_SPREAD) instead of preferring reached nodes\n"
            "      --balanced         with --placement: reached nodes preferred while each\n"
            "                         replica's share stays within 1/8 of even\n"
            "                         (EPC_REPLICA_BALANCED)\n"
            "      --limited          with --placement: the least-loaded replica on the expert's\n"
            "                         main node or a reached node (EPC_REPLICA_LIMITED)\n"
            "      --spill            with --placement: epcomm's planner gets the routing's\n"
            "                         co-reach and may place spill replicas (such a plan\n"
            "                         maps as --limited unless another choice is named)\n");
}

static int parse_int(const char *opt, const char *v, int lo, int hi, int *out)
{
    char *end;
    long n = v ? strtol(v, &end, 10) : 0;
    if (v == NULL || *end != '\0' || end == v || n < lo || n > hi) {
        fprintf(stderr, "epc_plan: %s '%s' is not an integer in [%d, %d]\n", opt, v ? v : "", lo,
                hi);
        return 1;
    }
    *out = (int)n;
    return 0;
}

static int parse_dbl(const char *opt, const char *v, double lo, double *out)
{
    char *end;
    double d = v ? strtod(v, &end) : 0;
    if (v == NULL || *end != '\0' || end == v || !isfinite(d) || d < lo) {
        fprintf(stderr, "epc_plan: %s '%s' is not a number >= %g\n", opt, v ? v : "", lo);
        return 1;
    }
    *out = d;
    return 0;
}

/* The profile named by EPC_HW_PROFILE, through the library's table. */
static const char *env_profile(void)
{
    for (int i = 0; i < epc_config_count(); i++) {
        epc_config_var_t v = EPC_CONFIG_VAR_INIT;
        if (epc_config_get_var(i, &v) == EPC_OK && !strcmp(v.name, "EPC_HW_PROFILE") && v.valid)
            return v.value;
    }
    return "cpu-eth";
}

static void defaults(plan_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->experts = 256, o->topk = 8, o->ranks = 64, o->rpn = 8, o->m = -1;
    o->tokens = 4096, o->hidden = 7168, o->row_bytes = 2, o->combine_row_bytes = 4;
    o->seed = 1, o->score = EPC_SCORE_SIGMOID, o->score_name = "sigmoid";
    o->placement = -1, o->choice = -1;
    o->normalize = 1, o->profile = env_profile();
}

/* One option (and its value); returns 0, 1 on error, 2 if it took v. */
static int parse_one(plan_opts_t *o, const char *a, const char *v, double *intra, double *inter)
{
    int seed;
    if (!strcmp(a, "--json"))
        return o->json = 1, 0;
    if (!strcmp(a, "--bench"))
        return o->bench = 1, 0;
    if (!strcmp(a, "--bias"))
        return o->bias = 1, 0;
    if (!strcmp(a, "--spread") || !strcmp(a, "--balanced") || !strcmp(a, "--limited"))
        return o->choice = a[2] == 's'   ? EPC_REPLICA_SPREAD
                           : a[2] == 'b' ? EPC_REPLICA_BALANCED
                                         : EPC_REPLICA_LIMITED,
               0;
    if (!strcmp(a, "--spill"))
        return o->spill = 1, 0;
    if (!strcmp(a, "--no-normalize"))
        return o->normalize = 0, 0;
#define INT_OPT(s, l, field, lo, hi)    \
    if (!strcmp(a, s) || !strcmp(a, l)) \
        return parse_int(a, v, lo, hi, field) ? 1 : 2;
    INT_OPT("-e", "--experts", &o->experts, 1, 1 << 20)
    INT_OPT("-k", "--topk", &o->topk, 1, 256)
    INT_OPT("-r", "--ranks", &o->ranks, 1, 1 << 16)
    INT_OPT("--ranks-per-node", "--ranks-per-node", &o->rpn, 1, 1 << 16)
    INT_OPT("-m", "--max-nodes", &o->m, 0, 1 << 16)
    INT_OPT("-t", "--tokens", &o->tokens, 1, 1 << 24)
    INT_OPT("-H", "--hidden", &o->hidden, 1, 1 << 20)
    INT_OPT("--placement", "--placement", &o->placement, 0, 1 << 20)
    INT_OPT("--groups", "--groups", &o->groups, 0, 1 << 20)
#undef INT_OPT
    if (!strcmp(a, "--seed"))
        return parse_int(a, v, 0, 1 << 30, &seed) ? 1 : (o->seed = (unsigned)seed, 2);
    if (!strcmp(a, "--skew"))
        return parse_dbl(a, v, 0, &o->skew) ? 1 : 2;
    if (!strcmp(a, "--intra-bw"))
        return parse_dbl(a, v, 1e-9, intra) ? 1 : 2;
    if (!strcmp(a, "--inter-bw"))
        return parse_dbl(a, v, 1e-9, inter) ? 1 : 2;
    if (!strcmp(a, "--profile"))
        return v ? (o->profile = v, 2) : 1;
    if ((!strcmp(a, "-d") || !strcmp(a, "--dtype")) && v) {
        o->row_bytes = !strcmp(v, "fp32") ? 4 : (!strcmp(v, "bf16") || !strcmp(v, "fp16")) ? 2 : 0;
        return o->row_bytes > 0 ? 2 : (fprintf(stderr, "epc_plan: --dtype '%s'\n", v), 1);
    }
    if (!strcmp(a, "--payload") && v) {
        o->fp8 = !strcmp(v, "fp8");
        return o->fp8 || !strcmp(v, "native")
                   ? 2
                   : (fprintf(stderr, "epc_plan: --payload '%s'\n", v), 1);
    }
    if (!strcmp(a, "--wire") && v) {
        o->combine_row_bytes = !strcmp(v, "fp32") ? 4 : !strcmp(v, "bf16") ? 2 : 0;
        return o->combine_row_bytes > 0 ? 2 : (fprintf(stderr, "epc_plan: --wire '%s'\n", v), 1);
    }
    if (!strcmp(a, "--score") && v) {
        o->score_name = v;
        o->score = !strcmp(v, "softmax") ? EPC_SCORE_SOFTMAX : EPC_SCORE_SIGMOID;
        return !strcmp(v, "softmax") || !strcmp(v, "sigmoid")
                   ? 2
                   : (fprintf(stderr, "epc_plan: --score '%s'\n", v), 1);
    }
    fprintf(stderr, "epc_plan: unknown option or missing value: '%s'\n", a);
    return 1;
}

int plan_parse(int argc, char **argv, plan_opts_t *o)
{
    double intra = 0, inter = 0;
    defaults(o);
    for (int i = 1; i < argc; i++) {
        int rc;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))
            return usage(stdout), -1;
        rc = parse_one(o, argv[i], i + 1 < argc ? argv[i + 1] : NULL, &intra, &inter);
        if (rc == 1)
            return usage(stderr), 1;
        i += rc == 2;
    }
    if (epc_hw_profile(o->profile, &o->intra, &o->inter) != EPC_OK)
        return plan_fail("--profile");
    o->intra = intra > 0 ? intra : o->intra;
    o->inter = inter > 0 ? inter : o->inter;
    o->ll_combine_row_bytes = o->row_bytes * o->hidden; /* outputs return in the dtype */
    o->row_bytes = o->fp8 ? o->hidden + o->hidden / 32.0 : o->row_bytes * o->hidden;
    o->combine_row_bytes *= o->hidden;
    o->group_ranks = o->ranks <= o->experts ? o->ranks : o->experts;
    if (o->ranks % o->group_ranks != 0 || o->group_ranks % o->rpn != 0 ||
        o->experts % o->group_ranks != 0) {
        fprintf(stderr,
                "epc_plan: --ranks %d with %d experts and --ranks-per-node %d: ranks must divide "
                "(or be a multiple of) the experts, in whole nodes\n",
                o->ranks, o->experts, o->rpn);
        return 1;
    }
    if (o->m < 0)
        o->m = o->group_ranks / o->rpn < 4 ? o->group_ranks / o->rpn : 4;
    return 0;
}

static unsigned long long next(unsigned long long *x)
{
    *x ^= *x << 13, *x ^= *x >> 7, *x ^= *x << 17;
    return *x;
}

/* Uniform in (0, 1), never 0 or 1. */
static double unit(unsigned long long *x)
{
    return ((double)(next(x) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

void plan_logits(const plan_opts_t *o, int s, float *logits)
{
    unsigned long long x = 0x9e3779b97f4a7c15ull ^ o->seed;
    float *offset = malloc((size_t)o->experts * sizeof *offset);
    int *perm = malloc((size_t)o->experts * sizeof *perm);
    /* The popularity order: a permutation fixed by the seed alone. */
    for (int e = 0; e < o->experts; e++)
        perm[e] = e;
    for (int e = o->experts - 1; e > 0; e--) {
        int j = (int)(next(&x) % (unsigned long long)(e + 1)), t = perm[e];
        perm[e] = perm[j], perm[j] = t;
    }
    for (int e = 0; e < o->experts; e++)
        offset[perm[e]] = (float)(-o->skew * log(1.0 + e));
    x ^= 0xd1b54a32d192ed03ull * (unsigned long long)(s + 1);
    for (size_t i = 0; i < (size_t)o->tokens * o->experts; i++) /* Gumbel noise */
        logits[i] = (float)(-log(-log(unit(&x)))) + offset[i % (size_t)o->experts];
    free(offset);
    free(perm);
}

int plan_router(const plan_opts_t *o, int m, epc_router_t **r)
{
    epc_router_params_t p = EPC_ROUTER_PARAMS_INIT;
    float *bias = NULL;
    int rc = 0;
    p.num_experts = o->experts, p.topk = o->topk, p.num_ranks = o->group_ranks;
    p.ranks_per_node = o->rpn, p.max_nodes_per_token = m, p.score_fn = o->score;
    p.normalize = o->normalize;
    if (o->bias && (bias = malloc((size_t)o->experts * sizeof *bias)) != NULL) {
        unsigned long long x = 12345 + o->seed;
        for (int e = 0; e < o->experts; e++)
            bias[e] = (float)(0.02 * (unit(&x) - 0.5));
        p.expert_bias = bias, p.expert_bias_len = o->experts;
    }
    if (epc_router_create(&p, r) != EPC_OK)
        rc = plan_fail("router");
    free(bias);
    return rc;
}

int plan_cost(const plan_opts_t *o, const int *tpr, const int *tpn, const int *rpr,
              epc_cost_t *cost)
{
    epc_cost_params_t p = EPC_COST_PARAMS_INIT;
    epc_cost_t ll = EPC_COST_INIT;
    p.num_ranks = o->group_ranks, p.ranks_per_node = o->rpn, p.row_bytes = o->row_bytes;
    p.combine_row_bytes = o->combine_row_bytes;
    p.intra_bw_gbs = o->intra, p.inter_bw_gbs = o->inter;
    p.tokens_per_rank = tpr, p.tokens_per_node = tpn;
    cost->size = sizeof *cost; /* every field */
    if (epc_cost_model(&p, cost) != EPC_OK)
        return plan_fail("cost model");
    /* the low-latency mode's outputs come back as rows of the dtype */
    p.rows_per_rank = rpr, p.combine_row_bytes = o->ll_combine_row_bytes;
    if (epc_cost_model(&p, &ll) != EPC_OK)
        return plan_fail("cost model");
    cost->ll_dispatch_us = ll.ll_dispatch_us, cost->ll_combine_us = ll.ll_combine_us;
    cost->ll_max_inter_bytes = ll.ll_max_inter_bytes;
    cost->ll_max_intra_bytes = ll.ll_max_intra_bytes;
    return 0;
}

void plan_stats_add(epc_route_stats_t *a, const epc_route_stats_t *s)
{
    a->mean_ranks_per_token += s->mean_ranks_per_token * s->num_tokens;
    a->mean_nodes_per_token += s->mean_nodes_per_token * s->num_tokens;
    a->num_tokens += s->num_tokens;
    a->max_ranks_per_token = s->max_ranks_per_token > a->max_ranks_per_token
                                 ? s->max_ranks_per_token
                                 : a->max_ranks_per_token;
    a->max_nodes_per_token = s->max_nodes_per_token > a->max_nodes_per_token
                                 ? s->max_nodes_per_token
                                 : a->max_nodes_per_token;
    a->expert_load_imbalance += s->expert_load_imbalance;
    a->flat_inter_bytes += s->flat_inter_bytes, a->flat_intra_bytes += s->flat_intra_bytes;
    a->hier_inter_bytes += s->hier_inter_bytes, a->hier_intra_bytes += s->hier_intra_bytes;
}

void plan_stats_scale(epc_route_stats_t *a, int n)
{
    if (a->num_tokens > 0) {
        a->mean_ranks_per_token /= a->num_tokens;
        a->mean_nodes_per_token /= a->num_tokens;
    }
    a->expert_load_imbalance /= n > 0 ? n : 1;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void plan_progress(int done, int total)
{
    static double start, last;
    double t = now();
    if (start == 0)
        start = last = t;
    if ((t - start > 2.0 && t - last > 1.0) || (done == total && t - start > 2.0)) {
        fprintf(stderr, "epc_plan: routed %d/%d ranks (%.0f s)%s", done, total, t - start,
                done == total ? "\n" : "\r");
        last = t;
    }
}

int plan_fail(const char *what)
{
    fprintf(stderr, "epc_plan: %s: %s\n", what, epc_last_error(NULL));
    return 1;
}

/* Reads every float once (eight fixed lanes): the memory bound of routing. */
static float read_pass(const float *x, size_t n)
{
    float acc[8] = {0}, sum = 0;
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++)
            acc[j] += x[i + j];
    for (; i < n; i++)
        sum += x[i];
    for (int j = 0; j < 8; j++)
        sum += acc[j];
    return sum;
}

typedef struct bench_ctx {
    const plan_opts_t *o;
    epc_router_t *r;
    const float *logits;
    int32_t *idx;
    float *w;
    epc_layout_t lay;
    volatile float sink;
} bench_ctx_t;

/* Best time of repeated calls of op (0 route, 1 layout, 2 read) over at
 * least half a second; returns seconds per call, or -1 on error. */
static double best_time(bench_ctx_t *b, int op)
{
    double best = 1e30, start = now();
    int reps = 0;
    while (reps < 3 || now() - start < 0.5) {
        double t0 = now(), dt;
        epc_status_t st = EPC_OK;
        if (op == 0)
            st = epc_route(b->r, b->logits, b->o->tokens, b->idx, b->w);
        else if (op == 1)
            st = epc_layout(b->r, b->idx, b->o->tokens, &b->lay);
        else
            b->sink = read_pass(b->logits, (size_t)b->o->tokens * b->o->experts);
        if (st != EPC_OK)
            return -1;
        dt = now() - t0;
        best = dt < best ? dt : best;
        reps++;
    }
    return best;
}

/* Runs the three timings on allocated buffers; prints the report. */
static int bench_run(bench_ctx_t *b)
{
    const plan_opts_t *o = b->o;
    double tr, tl, tb, bytes = (double)o->tokens * o->experts * sizeof(float);
    if ((tr = best_time(b, 0)) < 0 || (tl = best_time(b, 1)) < 0)
        return plan_fail("bench");
    tb = best_time(b, 2);
    if (o->json) {
        printf("{\"experts\": %d, \"topk\": %d, \"nodes\": %d, \"m\": %d, \"score\": \"%s\", "
               "\"bias\": %d, \"tokens\": %d, \"route_tokens_per_s\": %.0f, "
               "\"layout_tokens_per_s\": %.0f, \"read_bound_tokens_per_s\": %.0f, "
               "\"read_gbs\": %.2f}\n",
               o->experts, o->topk, o->group_ranks / o->rpn, o->m, o->score_name, o->bias,
               o->tokens, o->tokens / tr, o->tokens / tl, o->tokens / tb, bytes / tb * 1e-9);
        return 0;
    }
    printf("# epc_plan --bench: E=%d k=%d nodes=%d (%d experts each) M=%d %s%s, T=%d tokens, "
           "one core, best of repeated calls\n",
           o->experts, o->topk, o->group_ranks / o->rpn, o->experts / (o->group_ranks / o->rpn),
           o->m, o->score_name, o->bias ? "+bias" : "", o->tokens);
    printf("  %-34s %10.3f ms  %8.2f M tokens/s\n", "epc_route", tr * 1e3, o->tokens / tr * 1e-6);
    printf("  %-34s %10.3f ms  %8.2f M tokens/s  (%.1f%% of routing)\n",
           "epc_layout (counts+masks)", tl * 1e3, o->tokens / tl * 1e-6, 100 * tl / tr);
    printf("  %-34s %10.3f ms  %8.2f M tokens/s  (%.1f GB/s)\n", "bound: read T x E logits once",
           tb * 1e3, o->tokens / tb * 1e-6, bytes / tb * 1e-9);
    printf("  epc_route runs at %.1f%% of the read bound (%.1fx slower)\n", 100 * tb / tr, tr / tb);
    return 0;
}

int plan_bench(const plan_opts_t *o)
{
    bench_ctx_t b;
    int nodes = o->group_ranks / o->rpn, rc = 1;
    memset(&b, 0, sizeof b);
    b.o = o;
    b.lay.size = sizeof b.lay;
    float *logits = malloc((size_t)o->tokens * o->experts * sizeof *logits);
    b.idx = malloc((size_t)o->tokens * o->topk * sizeof *b.idx);
    b.w = malloc((size_t)o->tokens * o->topk * sizeof *b.w);
    b.lay.tokens_per_rank = malloc((size_t)o->group_ranks * sizeof(int));
    b.lay.tokens_per_node = malloc((size_t)nodes * sizeof(int));
    b.lay.tokens_per_expert = malloc((size_t)o->experts * sizeof(int));
    b.lay.token_in_rank = malloc((size_t)o->tokens * o->group_ranks);
    b.lay.token_in_node = malloc((size_t)o->tokens * nodes);
    if (logits && b.idx && b.w && b.lay.tokens_per_rank && b.lay.tokens_per_node &&
        b.lay.tokens_per_expert && b.lay.token_in_rank && b.lay.token_in_node &&
        plan_router(o, o->m, &b.r) == 0) {
        plan_logits(o, 0, logits);
        b.logits = logits;
        rc = bench_run(&b);
    } else if (b.r == NULL) {
        fprintf(stderr, "epc_plan: --bench: out of memory or bad router\n");
    }
    epc_router_destroy(b.r);
    free(logits), free(b.idx), free(b.w), free(b.lay.tokens_per_rank);
    free(b.lay.tokens_per_node), free(b.lay.tokens_per_expert), free(b.lay.token_in_rank);
    free(b.lay.token_in_node);
    return rc;
}
