/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * test_coll_mpi - dispatch and combine checked value by value against
 * coll_ref.h's reference: hier and flat must agree bit for bit; a cached
 * handle must reproduce the same bits.  Nodes and transport come from the
 * environment the test row sets.  Modes: data, errors, soak ITERS SEED,
 * and links IFACE NODES (on the emulated cluster, scripts/cluster.sh): the
 * library must find NODES nodes by itself, and IFACE's byte counters on
 * every host must show that only inter-node traffic crossed the links.
 * The nonblocking calls are test_coll_nb_mpi's.
 */
#include <math.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coll_ref.h"
#include "epcomm.h"
#include "mpi_test.h"

#if defined(__SANITIZE_ADDRESS__)
#define EPC_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define EPC_TEST_ASAN 1
#endif
#endif
#ifndef EPC_TEST_ASAN
#define EPC_TEST_ASAN 0
#endif

static int mode_data(void)
{
    const scen_t list[] = {
        {256, 8, 33, T_UNEVEN, 1, EPC_DTYPE_BF16, 0},
        {2 * nranks, 2, 1, T_ZERO_SOME, 4, EPC_DTYPE_FP32, 0},
        {8, 1, 64, T_MAX, 1, EPC_DTYPE_FP16, 0},
        {64, 8, 7168, T_UNEVEN, 1, EPC_DTYPE_BF16, 0},
        {16, 2, 5, T_NONE_SOME, 8, EPC_DTYPE_FP32, 0},
        {32, 4, 17, T_ONE_EXPERT, 1, EPC_DTYPE_BF16, 0},
        /* fp32 sums show any change of order: several experts per rank */
        {8 * nranks, 8, 19, T_MAX, 2, EPC_DTYPE_FP32, 0},
    };
    for (size_t i = 0; i < sizeof list / sizeof list[0]; i++)
        if (list[i].E % nranks == 0 && list[i].k <= list[i].E)
            scenario(&list[i]);
    /* Expert outputs with -0, infinities and NaN: the same bits as the
     * reference's sums started at 0 (a sum is never -0; NaNs propagate). */
    expert_specials = 1;
    for (size_t i = 0; i < sizeof list / sizeof list[0]; i++)
        if (list[i].E % nranks == 0 && list[i].k <= list[i].E && list[i].dtype != EPC_DTYPE_FP16)
            scenario(&list[i]);
    expert_specials = 0;
    return mt_finish("test_coll_mpi data");
}

/* Ways a rank's dispatch input can be bad, with the status and the words
 * its own error names. */
static const struct bad_way {
    epc_status_t want;
    const char *says;
} bad_ways[] = {
    {EPC_ERR_INVALID_ARG, "is outside"},  /* an expert id outside [-1, E) */
    {EPC_ERR_CAPACITY, "max_tokens"},     /* more tokens than max_tokens_per_rank */
    {EPC_ERR_INVALID_ARG, "twice"},       /* an expert repeated in a token */
    {EPC_ERR_INVALID_ARG, "args->topk"},  /* topk 0 */
    {EPC_ERR_INVALID_ARG, "out is NULL"}, /* no output struct */
};

/* One dispatch where every rank r with bit r of `bad` set breaks its input
 * in way way[r] (bad_ways).  Each bad rank gets its own status and text;
 * every good rank EPC_ERR_PEER_FAILED naming the lowest bad rank and that
 * rank's reason; no rank's outputs are written.  (Several bad ranks once
 * crashed every bad rank but the lowest.) */
static void expect_bad_ranks(epc_ctx_t *ctx, unsigned bad, const int *way)
{
    static const scen_t sc = {16, 2, 8, T_UNEVEN, 1, EPC_DTYPE_BF16, 0};
    epc_dispatch_args_t a = EPC_DISPATCH_ARGS_INIT;
    epc_dispatch_out_t o = EPC_DISPATCH_OUT_INIT, poison = EPC_DISPATCH_OUT_INIT;
    epc_handle_t *h = NULL;
    int32_t idx[2 * (MAXT + 1)];
    float w[2 * (MAXT + 1)];
    uint16_t x[8 * (MAXT + 1)] = {0};
    int lowest = __builtin_ctz(bad), mine = (bad >> mt_rank) & 1;
    char name[64];
    epc_status_t st;
    inputs_of(&sc, mt_rank, 0, idx, w);
    a.x = x, a.num_tokens = tokens_of(&sc, mt_rank), a.topk = 2, a.topk_idx = idx,
    a.topk_weights = w;
    if (mine && way[mt_rank] == 0)
        idx[3] = -5;
    else if (mine && way[mt_rank] == 1)
        a.num_tokens = MAXT + 1;
    else if (mine && way[mt_rank] == 2)
        idx[1] = idx[0];
    else if (mine && way[mt_rank] == 3)
        a.topk = 0;
    o = poison = mt_poisoned_out();
    st = epc_dispatch(ctx, &a, mine && way[mt_rank] == 4 ? NULL : &o, &h);
    snprintf(name, sizeof name, "rank %d: ", lowest);
    if (mine)
        MT_CHECK(st == bad_ways[way[mt_rank]].want &&
                     strstr(epc_last_error(ctx), bad_ways[way[mt_rank]].says) &&
                     strstr(epc_last_error(ctx), "peer failed") == NULL,
                 "bad 0x%x: own status %d: %s", bad, st, epc_last_error(ctx));
    else
        MT_CHECK(st == EPC_ERR_PEER_FAILED && strstr(epc_last_error(ctx), name) &&
                     strstr(epc_last_error(ctx), bad_ways[way[lowest]].says),
                 "bad 0x%x: status %d: %s", bad, st, epc_last_error(ctx));
    MT_CHECK(h == NULL && memcmp(&o, &poison, sizeof o) == 0, "bad 0x%x: outputs written", bad);
}

/* A combine with y NULL (tokens on every rank) on the ranks of `bad`: each
 * refuses, the others name the lowest; y untouched everywhere. */
static void expect_bad_combine(epc_ctx_t *ctx, epc_handle_t *h, void *eo, uint16_t *y, size_t ylen,
                               unsigned bad)
{
    epc_combine_args_t c = EPC_COMBINE_ARGS_INIT;
    int lowest = __builtin_ctz(bad), mine = (bad >> mt_rank) & 1;
    char name[32];
    epc_status_t st;
    c.expert_out = eo, c.y = mine ? NULL : y;
    memset(y, 0x44, ylen * sizeof *y);
    st = epc_combine(ctx, h, &c);
    snprintf(name, sizeof name, "rank %d: ", lowest);
    MT_CHECK(mine ? st == EPC_ERR_INVALID_ARG && strstr(epc_last_error(ctx), "args->y")
                  : st == EPC_ERR_PEER_FAILED && strstr(epc_last_error(ctx), name) &&
                        strstr(epc_last_error(ctx), "args->y"),
             "combine bad 0x%x: status %d: %s", bad, st, epc_last_error(ctx));
    for (size_t i = 0; i < ylen; i++)
        MT_CHECK(y[i] == 0x4444, "combine bad 0x%x: y written at %zu", bad, i);
}

/* Bad input on two ranks and on all, same and different reasons, in
 * dispatch and in combine; then a checked round trip on the same context. */
static void several_bad_ranks(epc_ctx_t *ctx)
{
    static const scen_t sc = {16, 2, 8, T_UNEVEN, 1, EPC_DTYPE_BF16, 0};
    int same[64], mixed[64], all = nranks >= 32 ? -1 : (1 << nranks) - 1;
    /* (way 4, a NULL output struct, is tried on one rank in mode_errors) */
    epc_dispatch_args_t a = EPC_DISPATCH_ARGS_INIT;
    epc_dispatch_out_t o = EPC_DISPATCH_OUT_INIT;
    epc_handle_t *h = NULL;
    int32_t idx[2 * (MAXT + 1)];
    float w[2 * (MAXT + 1)];
    uint16_t x[8 * (MAXT + 1)] = {0}, y[8 * (MAXT + 1)], yy[8 * (MAXT + 1)];
    inputs_t in;
    void *eo = NULL;
    for (int r = 0; r < 64; r++) {
        same[r] = 0;
        mixed[r] = r % 4;
    }
    expect_bad_ranks(ctx, 1u << 1 | 1u << (nranks - 1), same);  /* two, same reason */
    expect_bad_ranks(ctx, 1u << 1 | 1u << (nranks - 1), mixed); /* two, different reasons */
    expect_bad_ranks(ctx, (unsigned)all, mixed);                /* all, different reasons */
    for (int r = 0; r < 64; r++)
        same[r] = 1;
    expect_bad_ranks(ctx, (unsigned)all, same); /* all over capacity */
    for (int r = 0; r < 64; r++)
        same[r] = 2;
    expect_bad_ranks(ctx, (unsigned)all, same); /* a repeated expert everywhere */
    inputs_of(&sc, mt_rank, 0, idx, w);
    a.x = x, a.num_tokens = tokens_of(&sc, mt_rank), a.topk = 2, a.topk_idx = idx,
    a.topk_weights = w;
    MT_CHECK(epc_dispatch(ctx, &a, &o, &h) == EPC_OK, "dispatch: %s", epc_last_error(ctx));
    MT_CHECK(epc_combine_buffer(ctx, h, &eo) == EPC_OK, "buffer: %s", epc_last_error(ctx));
    expect_bad_combine(ctx, h, eo, y, sizeof y / 2, 1u << 0 | 1u << (nranks - 1));
    expect_bad_combine(ctx, h, eo, y, sizeof y / 2, (unsigned)all);
    epc_handle_destroy(h);
    h = NULL;
    /* The context is whole: every row and every sum checked. */
    memset(&in, 0, sizeof in);
    gen_all(&sc, 0, &in);
    round_trip(ctx, &sc, &in, 0, EPC_ALGO_HIER, 0, &h, yy);
    epc_handle_destroy(h);
    h = NULL;
    round_trip(ctx, &sc, &in, 0, EPC_ALGO_FLAT, 0, &h, yy);
    epc_handle_destroy(h);
    for (int r = 0; r < nranks; r++)
        free(in.idx[r]), free(in.w[r]);
}

/* One bad rank at a time (an expert id, capacity, a NULL output), then
 * ranks that disagree on args->algo: EPC_ERR_MISMATCH on every rank. */
static void one_bad_rank(epc_ctx_t *ctx, epc_dispatch_args_t *a)
{
    epc_dispatch_out_t o = EPC_DISPATCH_OUT_INIT;
    epc_handle_t *h = NULL;
    int way[64] = {0};
    expect_bad_ranks(ctx, 1u << (1 % nranks), way);
    MT_CHECK(mt_rank != 1 % nranks || strstr(epc_last_error(ctx), "token 1"), "message: %s",
             epc_last_error(ctx));
    way[0] = 1;
    expect_bad_ranks(ctx, 1u, way);
    way[nranks - 1] = 4;
    expect_bad_ranks(ctx, 1u << (nranks - 1), way);
    a->algo = mt_rank == nranks - 1 ? EPC_ALGO_FLAT : EPC_ALGO_HIER;
    MT_CHECK(epc_dispatch(ctx, a, &o, &h) == EPC_ERR_MISMATCH && h == NULL, "algo mismatch: %s",
             epc_last_error(ctx));
    a->algo = EPC_ALGO_DEFAULT;
}

static int mode_errors(void)
{
    static const scen_t sc = {16, 2, 8, T_UNEVEN, 1, EPC_DTYPE_BF16, 0};
    epc_ctx_t *ctx = make_ctx(&sc), *other = make_ctx(&sc);
    epc_dispatch_args_t a = EPC_DISPATCH_ARGS_INIT;
    epc_combine_args_t c = EPC_COMBINE_ARGS_INIT;
    epc_dispatch_out_t o = EPC_DISPATCH_OUT_INIT;
    epc_handle_t *h1 = NULL, *h2 = NULL, *h3 = NULL, *ho = NULL;
    int32_t idx[2 * (MAXT + 1)];
    float w[2 * (MAXT + 1)];
    uint16_t x[8 * (MAXT + 1)] = {0}, y[8 * (MAXT + 1)];
    void *eo;
    if (ctx == NULL || other == NULL)
        return mt_finish("test_coll_mpi errors");
    inputs_of(&sc, mt_rank, 0, idx, w);
    a.x = x, a.num_tokens = tokens_of(&sc, mt_rank), a.topk = 2, a.topk_idx = idx,
    a.topk_weights = w;
    one_bad_rank(ctx, &a);
    /* The context still works after all that. */
    MT_CHECK(epc_dispatch(ctx, &a, &o, &h1) == EPC_OK, "dispatch: %s", epc_last_error(ctx));
    MT_CHECK(epc_dispatch(other, &a, &o, &ho) == EPC_OK, "dispatch: %s", epc_last_error(other));
    MT_CHECK(epc_dispatch(ctx, &a, &o, &h2) == EPC_OK, "dispatch: %s", epc_last_error(ctx));
    /* the second dispatch after h1 reuses its buffers (two alternate) */
    MT_CHECK(epc_dispatch(ctx, &a, &o, &h3) == EPC_OK, "dispatch: %s", epc_last_error(ctx));
    /* The combine buffer of a stale handle: refused, *buf untouched. */
    eo = &a;
    MT_CHECK(epc_combine_buffer(ctx, h1, &eo) == EPC_ERR_INVALID_ARG && eo == (void *)&a &&
                 strstr(epc_last_error(ctx), "followed"),
             "stale buffer: %s", epc_last_error(ctx));
    epc_combine_buffer(ctx, h2, &eo);
    c.expert_out = eo, c.y = y;
    /* A stale handle, on every rank: all refuse, y untouched. */
    memset(y, 0x33, sizeof y);
    MT_CHECK(epc_combine(ctx, h1, &c) == EPC_ERR_INVALID_ARG &&
                 strstr(epc_last_error(ctx), "followed"),
             "stale: %s", epc_last_error(ctx));
    /* Another context's handle on one rank: it refuses, the others name it. */
    MT_CHECK(epc_combine(ctx, mt_rank == 0 ? ho : h2, &c) ==
                 (mt_rank == 0 ? EPC_ERR_INVALID_ARG : EPC_ERR_PEER_FAILED),
             "foreign: %s", epc_last_error(ctx));
    for (size_t i = 0; i < sizeof y / 2; i++)
        MT_CHECK(y[i] == 0x3333, "y written at %zu", i);
    /* Another context's handle in cached dispatch (all ranks): refused. */
    MT_CHECK(epc_dispatch(ctx, &a, &o, &ho) == EPC_ERR_INVALID_ARG, "foreign cached");
    /* (that refused dispatch took h2's buffers: h3 is the live one) */
    MT_CHECK(epc_combine(ctx, h3, &c) == EPC_OK, "combine: %s", epc_last_error(ctx));
    epc_handle_destroy(h1), epc_handle_destroy(h2), epc_handle_destroy(h3);
    epc_handle_destroy(ho);
    several_bad_ranks(ctx);
    MT_CHECK(epc_ctx_destroy(other) == EPC_OK && epc_ctx_destroy(ctx) == EPC_OK, "destroy");
    return mt_finish("test_coll_mpi errors");
}

/* Iteration it's random shape: a pure function of (seed, it), so every
 * rank draws the same one. */
static scen_t soak_shape(uint64_t seed, int it, int *algo, int *unweighted)
{
    static const epc_dtype_t dt[] = {EPC_DTYPE_FP32, EPC_DTYPE_BF16, EPC_DTYPE_FP16};
    uint64_t h = mix(seed * 0x9e3779b97f4a7c15ull + (uint64_t)it + 1);
    scen_t sc;
    sc.E = nranks * (1 + (int)(h % 8));
    sc.k = 1 + (int)((h >> 8) % (uint64_t)(sc.E < 8 ? sc.E : 8));
    sc.hidden = 1 + (int)((h >> 16) % 128);
    sc.tmode = (int)((h >> 24) % 5);
    sc.align = 1 << (int)((h >> 28) % 4);
    sc.dtype = dt[(h >> 32) % 3];
    *algo = (h >> 36) & 1 ? EPC_ALGO_HIER : EPC_ALGO_FLAT;
    *unweighted = (int)((h >> 37) & 1);
    sc.in_place = (int)((h >> 38) % 3); /* expert outputs in place: none, all, rank 0 */
    return sc;
}

/*
 * Soak: `iters` rounds, each a fresh context with a random shape (experts,
 * top-k, hidden, dtype, token counts, alignment, algorithm, weighting) and
 * fresh routing, every row and every combined value checked; then (from
 * 200 rounds on) the heap in use must have grown by under 1 KiB per
 * context since iteration 50
 * (Open MPI keeps about 0.2 KiB per context of its own for the
 * communicators; a leaked table of the library's scales with T, k and E),
 * and descriptors and shared-memory mappings must be back to what they
 * were before the first context.  Resident memory is printed, not checked:
 * under load it grew 5% on one rank with no leak valgrind could find.
 * (CI's valgrind phase checks a shorter soak for leaks exactly.)
 */
static int mode_soak(int iters, uint64_t seed)
{
    int fds = mt_count_dir("/proc/self/fd"), maps = mt_count_shm_maps(), it;
    long rss50 = 0, rss_end;
    size_t heap50 = 0;
    double per_ctx;
    char *y = malloc((MAXT + 1) * 128 * sizeof(float));
    inputs_t in;
    double t0 = MPI_Wtime(), worst;
    memset(&in, 0, sizeof in);
    if (mt_rank == 0)
        printf("soak: %d iterations, seed %llu (rerun: test_coll_mpi soak %d %llu)\n", iters,
               (unsigned long long)seed, iters, (unsigned long long)seed);
    for (it = 0; it < iters; it++) {
        int algo, unweighted;
        scen_t sc = soak_shape(seed, it, &algo, &unweighted);
        epc_ctx_t *ctx = make_ctx(&sc);
        epc_handle_t *h = NULL;
        if (ctx == NULL)
            break;
        gen_all(&sc, it, &in);
        round_trip(ctx, &sc, &in, it, (epc_algo_t)algo, unweighted, &h, y);
        epc_handle_destroy(h);
        MT_CHECK(epc_ctx_destroy(ctx) == EPC_OK, "destroy: %s", epc_last_error(NULL));
        if (it == 49)
            rss50 = mt_rss_kib(), heap50 = mallinfo2().uordblks;
        if (mt_rank == 0 && (it + 1) % 250 == 0)
            printf("soak: %d iterations (%.0f s)\n", it + 1, MPI_Wtime() - t0), fflush(stdout);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    rss_end = mt_rss_kib();
    per_ctx = ((double)mallinfo2().uordblks - (double)heap50) / 1024.0 / (it > 50 ? it - 50 : 1);
    MPI_Reduce(&per_ctx, &worst, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
    if (mt_rank == 0)
        printf("soak: rank 0 resident %ld KiB after 50 iterations, %ld KiB after %d; "
               "heap in use grew by at most %+.3f KiB per context on any rank\n",
               rss50, rss_end, it, worst);
    MT_CHECK(it == iters && iters > 50, "ran %d of %d iterations", it, iters);
#if EPC_TEST_ASAN /* its quarantine keeps freed memory resident on purpose */
    if (mt_rank == 0)
        printf("soak: resident memory not checked under AddressSanitizer\n");
#else
    /* Over fewer rounds a few of Open MPI's allocations weigh too much. */
    MT_CHECK(it < 200 || per_ctx < 1.0, "heap in use grew %.3f KiB per context (%zu -> %zu bytes)",
             per_ctx, heap50, mallinfo2().uordblks);
#endif
    MT_CHECK(mt_count_dir("/proc/self/fd") == fds, "fds %d -> %d", fds,
             mt_count_dir("/proc/self/fd"));
    MT_CHECK(mt_count_shm_maps() == maps, "shared-memory mappings %d -> %d", maps,
             mt_count_shm_maps());
    for (int r = 0; r < nranks; r++)
        free(in.idx[r]), free(in.w[r]);
    free(y);
    return mt_finish("test_coll_mpi soak");
}

/* Bytes this host's IFACE has sent: read by local rank 0 only (one per
 * host), 0 elsewhere, so a sum over ranks is a sum over hosts. */
static double host_tx(const char *iface)
{
    char path[256];
    double v = -1;
    FILE *f;
    if (lrank_of[mt_rank] != 0)
        return 0;
    snprintf(path, sizeof path, "/sys/class/net/%s/statistics/tx_bytes", iface);
    if ((f = fopen(path, "r")) != NULL) {
        if (fscanf(f, "%lf", &v) != 1)
            v = -1;
        fclose(f);
    }
    MT_CHECK(v >= 0, "cannot read %s", path);
    return v;
}

/* Sum over ranks of {link tx, library inter-node bytes, intra-node bytes}. */
static void traffic(epc_ctx_t *ctx, const char *iface, double sum[3])
{
    epc_ctx_stats_t st = EPC_CTX_STATS_INIT;
    double mine[3];
    MPI_Barrier(MPI_COMM_WORLD);
    MT_CHECK(epc_ctx_stats(ctx, &st) == EPC_OK, "stats: %s", epc_last_error(ctx));
    mine[0] = host_tx(iface);
    mine[1] = (double)st.bytes_sent[EPC_LINK_OTHER_NODE];
    mine[2] = (double)st.bytes_sent[EPC_LINK_SAME_NUMA] + (double)st.bytes_sent[EPC_LINK_SAME_NODE];
    MPI_Allreduce(mine, sum, 3, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
}

/* Dispatch + combine, hier then flat, every value checked, between two
 * readings of the links' counters.  The links may carry the library's
 * inter-node bytes plus protocol overhead (TCP/IP headers, MPI's own
 * messages; about 1% was seen): at most 5% + 1 MiB more.  Intra-node
 * bytes, several times that margin here, must not appear on them. */
static int mode_links(const char *iface, int want_nodes)
{
    const scen_t sc = {64, 8, 7168, T_MAX, 1, EPC_DTYPE_BF16, 0};
    size_t ysz = (MAXT + 1) * (size_t)sc.hidden * esize(sc.dtype);
    epc_ctx_t *ctx = make_ctx(&sc);
    double a[3], b[3], tx, net, local;
    char *y = malloc(ysz);
    inputs_t in;
    memset(&in, 0, sizeof in);
    MT_CHECK(nnodes == want_nodes, "the library found %d nodes, the cluster has %d", nnodes,
             want_nodes);
    gen_all(&sc, 0, &in);
    traffic(ctx, iface, a);
    for (int algo = EPC_ALGO_HIER; ctx != NULL && algo <= EPC_ALGO_FLAT; algo++) {
        epc_handle_t *h = NULL;
        round_trip(ctx, &sc, &in, 0, (epc_algo_t)algo, 0, &h, y);
        epc_handle_destroy(h);
    }
    traffic(ctx, iface, b);
    tx = b[0] - a[0], net = b[1] - a[1], local = b[2] - a[2];
    if (mt_rank == 0)
        printf("links: %.0f bytes crossed the links; the library sent %.0f inter-node and %.0f "
               "intra-node bytes\n",
               tx, net, local);
    MT_CHECK(net > 0 && local > 3 * (0.05 * net + (1 << 20)),
             "too little traffic to tell: net %.0f local %.0f", net, local);
    MT_CHECK(tx >= net, "the links carried %.0f bytes, less than the %.0f inter-node bytes", tx,
             net);
    MT_CHECK(tx <= 1.05 * net + (1 << 20),
             "the links carried %.0f bytes for %.0f inter-node bytes: "
             "same-host traffic (%.0f bytes) crossed them",
             tx, net, local);
    for (int r = 0; r < nranks; r++)
        free(in.idx[r]), free(in.w[r]);
    free(y);
    MT_CHECK(epc_ctx_destroy(ctx) == EPC_OK, "destroy: %s", epc_last_error(NULL));
    return mt_finish("test_coll_mpi links");
}

int main(int argc, char **argv)
{
    coll_ref_init(&argc, &argv);
    if (argc == 2 && !strcmp(argv[1], "data"))
        return mode_data();
    if (argc == 2 && !strcmp(argv[1], "errors"))
        return mode_errors();
    if (argc == 4 && !strcmp(argv[1], "soak") && atoi(argv[2]) > 0)
        return mode_soak(atoi(argv[2]), strtoull(argv[3], NULL, 10));
    if (argc == 4 && !strcmp(argv[1], "links") && atoi(argv[3]) > 0)
        return mode_links(argv[2], atoi(argv[3]));
    if (mt_rank == 0)
        fprintf(stderr, "usage: test_coll_mpi data|errors|soak ITERS SEED|links IFACE NODES\n");
    MPI_Finalize();
    return 2;
}
