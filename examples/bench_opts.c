/* SPDX-License-Identifier: BSD-3-Clause */
/* bench_opts.c - epc_bench's command line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"

static void usage(FILE *f)
{
    fprintf(
        f, "usage: mpirun -np N epc_bench [options]\n"
           "  -t, --tokens N      tokens per rank (4096)     -H, --hidden N   (7168)\n"
           "  -e, --experts N     (256)                      -k, --topk N     (8)\n"
           "  -m, --max-nodes M   node limit (min(4, nodes)) -d, --dtype bf16|fp16|fp32|fp8\n"
           "                      (fp8: bf16 rows; each iteration also times an FP8\n"
           "                      dispatch of them, rows disp_fp8)\n"
           "  -W, --wire bf16     each iteration also times a combine over the BF16 wire\n"
           "                      (rows comb16; the fp32 wire's are 'combine')\n"
           "  -a, --algo LIST     hier,flat (both, compared in one run)\n"
           "  -o, --op LIST       dispatch,combine,p2p,route (dispatch,combine)\n"
           "  -n, --iters N (10)  -w, --warmup N (2)         -c, --check (verify every iteration)\n"
           "      --skew S        Zipf exponent of expert popularity (0 = uniform)\n"
           "      --sweep         tokens from 128 up to -t, doubling\n"
           "      --prewarm       epc_ctx_warmup(-t tokens) on each fresh context first\n"
           "                      (timed; the first-call line then shows what is left)\n"
           "      --reroute       each iteration shifts every expert id by one (mod E):\n"
           "                      the same load, rows in new places, as in training\n"
           "      --buffered-outputs  expert outputs copied (untimed) into\n"
           "                      epc_combine_buffer's buffer instead of left over the\n"
           "                      received rows (hier combine reads either in place)\n"
           "      --csv FILE / --json FILE / --plot FILE.png\n"
           "      --profile NAME  modeled time on h800|h100-ib|gb200-nvl72|cpu-eth\n"
           "      --overlap US|auto  also: each op overlapped with a compute loop of US\n"
           "                      microseconds (auto: as long as the op), epc_test between\n"
           "                      slices; efficiency 2.0 = perfect\n"
           "      --ll            only the latency table: T = 1, 16, 128, 256 (up to -t),\n"
           "                      low-latency mode, hier, flat and a raw MPI_Alltoall of\n"
           "                      the same bytes per peer; min, median, p99 (use -n 200)\n"
           "      --placement LIST  only the placement table: for each redundant slot\n"
           "                      count (e.g. 0,16,32) the contiguous placement, DeepSeek's\n"
           "                      EPLB and epcomm's planner, planned from this run's loads:\n"
           "                      rows per rank / mean, hier dispatch + combine medians\n"
           "      --groups G      the planner's expert groups kept on one node (0: one\n"
           "                      per node, as the node limit; 1: global)\n"
           "      --spread        with --placement: tokens spread over every replica\n"
           "                      instead of preferring nodes they already reach\n"
           "      --balanced      with --placement: reached nodes preferred while each\n"
           "                      replica's share stays within 1/8 of even\n"
           "      --limited       with --placement: the least-loaded replica on the expert's\n"
           "                      main node or a reached node (no node beyond the routing's)\n"
           "      --spill         with --placement: epcomm's planner gets the routing's\n"
           "                      co-reach and may place spill replicas (such a plan\n"
           "                      maps as --limited unless another choice is named)\n"
           "      --expert-us US  with --placement: each rank sleeps US microseconds per\n"
           "                      row it received between dispatch and combine, its\n"
           "                      experts' compute emulated (column experts, in the step)\n"
           "      --seed N\n");
}

/* Bits of a comma-separated list; bit 31 for an unknown word. */
static int list_bits(const char *v, const char *const *names, int n)
{
    int bits = 0;
    char buf[128];
    snprintf(buf, sizeof buf, "%s", v);
    for (char *save = NULL, *p = strtok_r(buf, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
        int i = 0;
        while (i < n && strcmp(p, names[i]) != 0)
            i++;
        bits |= i < n ? 1 << i : 1 << 30;
    }
    return bits;
}

static int *int_opt(bench_opts_t *o, const char *a)
{
    static const struct {
        const char *s, *l;
        size_t off;
    } t[] = {{"-t", "--tokens", offsetof(bench_opts_t, tokens)},
             {"-H", "--hidden", offsetof(bench_opts_t, hidden)},
             {"-e", "--experts", offsetof(bench_opts_t, experts)},
             {"-k", "--topk", offsetof(bench_opts_t, topk)},
             {"-m", "--max-nodes", offsetof(bench_opts_t, max_nodes)},
             {"-n", "--iters", offsetof(bench_opts_t, iters)},
             {"-w", "--warmup", offsetof(bench_opts_t, warmup)},
             {"--groups", "--groups", offsetof(bench_opts_t, groups)}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (!strcmp(a, t[i].s) || !strcmp(a, t[i].l))
            return (int *)(void *)((char *)o + t[i].off);
    return NULL;
}

/* One option with a value; 0 ok, 1 bad value, 2 unknown. */
static int value_opt(bench_opts_t *o, const char *a, const char *v)
{
    static const char *const algos[] = {"hier", "flat"}, *const ops[] = {"dispatch", "combine",
                                                                         "route", "p2p"};
    int *ip = int_opt(o, a);
    char *end;
    if (ip != NULL) {
        long n = strtol(v, &end, 10);
        return *v == '\0' || *end != '\0' || n < 0 || n > (1L << 30) ? 1 : (*ip = (int)n, 0);
    }
    if (!strcmp(a, "-d") || !strcmp(a, "--dtype")) {
        o->fp8 = !strcmp(v, "fp8");
        o->dtype = !strcmp(v, "bf16") || o->fp8 ? EPC_DTYPE_BF16
                   : !strcmp(v, "fp16")         ? EPC_DTYPE_FP16
                   : !strcmp(v, "fp32")         ? EPC_DTYPE_FP32
                                                : EPC_DTYPE_DEFAULT;
        return o->dtype == EPC_DTYPE_DEFAULT;
    }
    if (!strcmp(a, "-W") || !strcmp(a, "--wire"))
        return o->wire16 = !strcmp(v, "bf16"), !o->wire16 && strcmp(v, "fp32") != 0;
    if (!strcmp(a, "-a") || !strcmp(a, "--algo"))
        return (o->algos = list_bits(v, algos, 2)) == 0 || o->algos >> 30;
    if (!strcmp(a, "-o") || !strcmp(a, "--op"))
        return (o->ops = list_bits(v, ops, 4)) == 0 || o->ops >> 30;
    if (!strcmp(a, "--skew"))
        return o->skew = strtod(v, &end), *v == '\0' || *end != '\0' || !(o->skew >= 0);
    if (!strcmp(a, "--overlap") && !strcmp(v, "auto"))
        return o->overlap_us = -1, 0;
    if (!strcmp(a, "--overlap"))
        return o->overlap_us = strtod(v, &end), *v == '\0' || *end != '\0' || !(o->overlap_us > 0);
    if (!strcmp(a, "--seed"))
        return o->seed = (unsigned)strtoul(v, &end, 10), *v == '\0' || *end != '\0';
    if (!strcmp(a, "--csv"))
        return o->csv = v, 0;
    if (!strcmp(a, "--json"))
        return o->json = v, 0;
    if (!strcmp(a, "--plot"))
        return o->plot = v, 0;
    if (!strcmp(a, "--profile"))
        return o->profile = v, 0;
    if (!strcmp(a, "--expert-us"))
        return o->expert_us = strtod(v, &end),
               *v == '\0' || *end != '\0' || !(o->expert_us > 0 && o->expert_us <= 1e6);
    if (!strcmp(a, "--placement"))
        return o->placement = v, strspn(v, "0123456789,") != strlen(v) || *v == '\0';
    return 2;
}

/* The options that need one another: 0, or 1 after saying why. */
static int check_opts(const bench_opts_t *o, int rank)
{
    const char *why = o->fp8 && o->hidden % 128 != 0 ? "-d fp8 needs --hidden a multiple of 128"
                      : o->expert_us > 0 && o->placement == NULL ? "--expert-us needs --placement"
                      : o->iters < 1 || o->tokens < 1 || o->hidden < 1
                          ? "--iters, --tokens and --hidden must be >= 1"
                          : NULL;
    if (why != NULL && rank == 0)
        fprintf(stderr, "epc_bench: %s\n", why);
    return why != NULL;
}

int bench_parse(bench_opts_t *o, int argc, char **argv, int rank)
{
    /* designated: every field not named is 0 (off, or NULL) */
    *o = (bench_opts_t){.tokens = 4096,
                        .hidden = 7168,
                        .experts = 256,
                        .topk = 8,
                        .max_nodes = -1,
                        .iters = 10,
                        .warmup = 2,
                        .algos = 3,
                        .ops = OP_DISPATCH | OP_COMBINE,
                        .dtype = EPC_DTYPE_BF16,
                        .choice = -1,
                        .seed = 1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int rc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help"))
            return rank == 0 ? (usage(stdout), -1) : -1;
        if (!strcmp(a, "-c") || !strcmp(a, "--check") || !strcmp(a, "--sweep")) {
            *(a[1] == 'c' || a[2] == 'c' ? &o->check : &o->sweep) = 1;
            continue;
        }
        if (!strcmp(a, "--ll")) {
            o->ll = 1;
            continue;
        }
        if (!strcmp(a, "--spread") || !strcmp(a, "--balanced") || !strcmp(a, "--limited")) {
            o->choice = a[2] == 's'   ? EPC_REPLICA_SPREAD
                        : a[2] == 'b' ? EPC_REPLICA_BALANCED
                                      : EPC_REPLICA_LIMITED;
            continue;
        }
        if (!strcmp(a, "--spill")) {
            o->spill = 1;
            continue;
        }
        if (!strcmp(a, "--prewarm") || !strcmp(a, "--reroute") ||
            !strcmp(a, "--buffered-outputs")) {
            *(a[2] == 'p' ? &o->prewarm : a[2] == 'r' ? &o->reroute : &o->buffered) = 1;
            continue;
        }
        rc = i + 1 < argc ? value_opt(o, a, argv[i + 1]) : 2;
        if (rc != 0) {
            if (rank == 0)
                fprintf(stderr,
                        rc == 1 ? "epc_bench: bad value '%s' for %s\n"
                                : "epc_bench: unknown option or missing value: %s%s\n",
                        rc == 1 ? argv[i + 1] : "", a),
                    usage(stderr);
            return 1;
        }
        i++;
    }
    return check_opts(o, rank);
}
