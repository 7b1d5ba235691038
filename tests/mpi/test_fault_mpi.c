/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * test_fault_mpi - a rank that stalls in the middle of dispatch or combine
 * (EPC_FAULT=1:PHASE:stall=MS, set by the script): every other rank must
 * return an error (EPC_ERR_TIMEOUT, or EPC_ERR_PEER_FAILED / _TRANSPORT as
 * the failure spreads) within EPC_TIMEOUT_MS plus slack, naming the phase,
 * without crashing; the ranks that waited on the silent rank directly name
 * it (rank 0 at least, when it shares rank 1's node).  Results travel to
 * rank 0 by point-to-point messages (the stalled rank takes no part),
 * which ends the job with MPI_Abort(failures).
 *   test_fault_mpi dispatch|combine|lldispatch|llcombine|move
 * (the ll phases: the low-latency mode's calls, their hooks waited for;
 * move: an expert weight move to a permuted placement).
 * Mode corrupt (EPC_FAULT=1:counts:corrupt): a corrupt count from rank 1
 * is refused by every rank, naming it, outputs untouched.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "epcomm.h"
#include "mpi_test.h"

#define FAULT_RANK 1

/* The blocking calls, or (EPC_TEST_NONBLOCKING=1) their starts driven by
 * epc_test with computation between tests, as an overlapping caller. */
static int nonblocking;

static epc_status_t finish(epc_status_t st, epc_request_t *req)
{
    volatile double sink = 0;
    int done = 0;
    if (st != EPC_OK)
        return st;
    while ((st = epc_test(req, &done)) == EPC_OK && !done)
        for (int i = 0; i < 2000; i++)
            sink += i * 0.5;
    epc_request_free(req);
    return st;
}

static epc_status_t dispatch(epc_ctx_t *ctx, const epc_dispatch_args_t *a, epc_dispatch_out_t *o,
                             epc_handle_t **h)
{
    epc_request_t *req = NULL;
    epc_status_t st;
    if (!nonblocking)
        return epc_dispatch(ctx, a, o, h);
    st = epc_dispatch_start(ctx, a, o, h, &req);
    return finish(st, req);
}

static epc_status_t combine(epc_ctx_t *ctx, epc_handle_t *h, const epc_combine_args_t *c)
{
    epc_request_t *req = NULL;
    epc_status_t st;
    if (!nonblocking)
        return epc_combine(ctx, h, c);
    st = epc_combine_start(ctx, h, c, &req);
    return finish(st, req);
}

/* The low-latency dispatch of a's tokens, then (phase llcombine) its
 * combine from the context's buffer; *t0 restarted before the combine. */
static epc_status_t run_ll(epc_ctx_t *ctx, const char *phase, const epc_dispatch_args_t *a,
                           uint16_t *y, double *t0)
{
    epc_ll_dispatch_args_t d = EPC_LL_DISPATCH_ARGS_INIT;
    epc_ll_combine_args_t c = EPC_LL_COMBINE_ARGS_INIT;
    epc_ll_out_t o = EPC_LL_OUT_INIT;
    epc_request_t *req = NULL;
    epc_status_t st = epc_ll_enable(ctx, a->num_tokens);
    void *eo = NULL;
    d.x = a->x, d.num_tokens = a->num_tokens, d.topk = a->topk, d.topk_idx = a->topk_idx;
    *t0 = MPI_Wtime();
    if (st == EPC_OK) {
        st = epc_ll_dispatch(ctx, &d, &o, &req);
        st = finish(st, req);
    }
    if (st != EPC_OK || strcmp(phase, "llcombine") != 0)
        return st;
    epc_ll_combine_buffer(ctx, &o, &eo);
    c.dispatched = &o, c.expert_out = eo, c.y = y;
    *t0 = MPI_Wtime();
    st = epc_ll_combine(ctx, &c, &req);
    return finish(st, req);
}

/* An expert weight move from the contiguous placement of E experts to one
 * shifted by a rank: rank r's new slots come from rank r + 1 (rank 0 waits
 * on the silent rank 1 directly, the others learn of it through the
 * move's final agreement). */
static epc_status_t run_move(epc_ctx_t *ctx, int E, int R, double *t0)
{
    epc_placement_params_t p = EPC_PLACEMENT_PARAMS_INIT;
    epc_placement_t *from = NULL, *to = NULL;
    int32_t table[64];
    float old_w[16 * 8], new_w[16 * 8];
    const epc_topo_t *topo;
    epc_status_t st;
    for (int s = 0; s < E; s++)
        table[s] = (s + E / R) % E;
    epc_ctx_topo(ctx, &topo);
    epc_topo_ranks_per_node(topo, &p.ranks_per_node);
    p.num_experts = E, p.num_ranks = R;
    epc_placement_create(&p, &from);
    p.slot_expert = table;
    epc_placement_create(&p, &to);
    memset(old_w, 0, sizeof old_w);
    *t0 = MPI_Wtime();
    st = epc_placement_move_weights(ctx, from, to, old_w, new_w, 8 * sizeof(float));
    epc_placement_destroy(from);
    epc_placement_destroy(to);
    return st;
}

static int run(const char *phase, double limit, int *named)
{
    epc_ctx_params_t p = EPC_CTX_PARAMS_INIT;
    epc_dispatch_args_t a = EPC_DISPATCH_ARGS_INIT;
    epc_combine_args_t c = EPC_COMBINE_ARGS_INIT;
    epc_dispatch_out_t o = EPC_DISPATCH_OUT_INIT;
    epc_ctx_t *ctx = NULL;
    epc_handle_t *h = NULL;
    int R, T = 16;
    int32_t idx[16 * 2];
    uint16_t x[16 * 64] = {0}, y[16 * 64];
    epc_status_t st;
    double t0;
    MPI_Comm_size(MPI_COMM_WORLD, &R);
    p.num_experts = 4 * R, p.hidden = 64;
    MT_CHECK(epc_ctx_create(MPI_COMM_WORLD, &p, &ctx) == EPC_OK, "create: %s",
             epc_last_error(NULL));
    for (int i = 0; i < 2 * T; i++) /* every token to two experts on other ranks */
        idx[i] = (int32_t)((4 * (mt_rank + 1 + i % (R - 1)) + i / 2 % 4) % (4 * R));
    for (int t = 0; t < T; t++)
        if (idx[2 * t] == idx[2 * t + 1])
            idx[2 * t + 1] = (idx[2 * t + 1] + 1) % (4 * R);
    a.x = x, a.num_tokens = T, a.topk = 2, a.topk_idx = idx;
    t0 = MPI_Wtime();
    if (!strncmp(phase, "ll", 2))
        st = run_ll(ctx, phase, &a, y, &t0);
    else if (!strcmp(phase, "move"))
        st = run_move(ctx, 4 * R, R, &t0);
    else
        st = dispatch(ctx, &a, &o, &h);
    if (!strcmp(phase, "combine") && st == EPC_OK) {
        void *eo;
        epc_combine_buffer(ctx, h, &eo);
        c.expert_out = eo, c.y = y;
        t0 = MPI_Wtime();
        st = combine(ctx, h, &c);
    }
    if (mt_rank == FAULT_RANK)
        return 0; /* it woke up late: whatever it gets, it is not checked */
    MT_CHECK(st == EPC_ERR_TIMEOUT || st == EPC_ERR_PEER_FAILED || st == EPC_ERR_TRANSPORT,
             "%s: status %d", phase, st);
    MT_CHECK(MPI_Wtime() - t0 < limit, "%s: error after %.1f s, limit %.1f s", phase,
             MPI_Wtime() - t0, limit);
    /* the ll phases are named by their calls' names */
    MT_CHECK(strstr(epc_last_error(ctx), !strcmp(phase, "lldispatch")  ? "epc_ll_dispatch"
                                         : !strcmp(phase, "llcombine") ? "epc_ll_combine"
                                                                       : phase) != NULL,
             "message lacks the phase: %s", epc_last_error(ctx));
    *named = strstr(epc_last_error(ctx), "rank 1") != NULL;
    printf("rank %d: %s: %s (%.1f s)\n", mt_rank, epc_status_name(st), epc_last_error(ctx),
           MPI_Wtime() - t0);
    fflush(stdout);
    return 0;
}

/* EPC_FAULT=1:counts:corrupt: rank 1 sends a negative count.  Every rank,
 * rank 1 included, must refuse the dispatch naming rank 1, with the output
 * and the handle untouched. */
static int run_corrupt(void)
{
    epc_ctx_params_t p = EPC_CTX_PARAMS_INIT;
    epc_dispatch_args_t a = EPC_DISPATCH_ARGS_INIT;
    epc_dispatch_out_t o = EPC_DISPATCH_OUT_INIT, poison = EPC_DISPATCH_OUT_INIT;
    epc_ctx_t *ctx = NULL;
    epc_handle_t *h = NULL;
    int32_t idx[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    uint16_t x[4 * 64] = {0};
    epc_status_t st;
    int R;
    MPI_Comm_size(MPI_COMM_WORLD, &R);
    p.num_experts = 4 * R, p.hidden = 64;
    MT_CHECK(epc_ctx_create(MPI_COMM_WORLD, &p, &ctx) == EPC_OK, "create: %s",
             epc_last_error(NULL));
    if (ctx == NULL)
        return mt_finish("test_fault_mpi corrupt");
    o = poison = mt_poisoned_out();
    a.x = x, a.num_tokens = 4, a.topk = 2, a.topk_idx = idx;
    st = epc_dispatch(ctx, &a, &o, &h);
    MT_CHECK(st != EPC_OK, "dispatch accepted a corrupt count");
    MT_CHECK(strstr(epc_last_error(ctx), "rank 1") && strstr(epc_last_error(ctx), "corrupt"),
             "message does not name rank 1's corrupt count: %s", epc_last_error(ctx));
    MT_CHECK(h == NULL && memcmp(&o, &poison, sizeof o) == 0, "outputs written on failure");
    printf("rank %d: %s: %s\n", mt_rank, epc_status_name(st), epc_last_error(ctx));
    MT_CHECK(epc_ctx_destroy(ctx) == EPC_OK, "destroy: %s", epc_last_error(NULL));
    return mt_finish("test_fault_mpi corrupt");
}

int main(int argc, char **argv)
{
    const char *env = getenv("EPC_TIMEOUT_MS");
    const char *fault = getenv("EPC_FAULT");
    double timeout = (env ? atof(env) : 60000) / 1000.0, limit = timeout + 2.0, t0;
    /* Ranks that are done wait for rank 0's abort; under mpirun
     * --enable-recovery (the exit fault) that abort is slow to arrive, so
     * they give up sooner there. */
    double linger = fault && strstr(fault, ":exit") ? 3 * limit : 10 * limit;
    int R, named = 0, fails, total_named;
    mt_init(&argc, &argv);
    MPI_Comm_size(MPI_COMM_WORLD, &R);
    nonblocking = getenv("EPC_TEST_NONBLOCKING") != NULL;
    t0 = MPI_Wtime();
    if (argc == 2 && !strcmp(argv[1], "corrupt") && R >= 2)
        return run_corrupt();
    if (argc != 2 || R < 3)
        return fprintf(
                   stderr,
                   "usage: test_fault_mpi dispatch|combine|lldispatch|llcombine|move (3+ ranks) | "
                   "corrupt\n"),
               2;
    run(argv[1], limit, &named);
    if (mt_rank == FAULT_RANK) { /* wait for rank 0's abort */
        while (MPI_Wtime() - t0 < linger)
            usleep(10000);
        return 1;
    }
    if (mt_rank != 0) {
        int msg[2] = {mt_fail, named};
        MPI_Send(msg, 2, MPI_INT, 0, 77, MPI_COMM_WORLD);
        while (MPI_Wtime() - t0 < linger)
            usleep(10000);
        return 1;
    }
    fails = mt_fail, total_named = named;
    for (int r = 2; r < R; r++) {
        int msg[2];
        MPI_Recv(msg, 2, MPI_INT, r, 77, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        fails += msg[0], total_named += msg[1];
    }
    if (total_named == 0) /* someone waited on it directly and must say so */
        fails++, printf("no rank named the silent rank 1\n");
    /* With nodes of 2+ ranks rank 0 shares rank 1's node and waits for it
     * at the node fence: its error must keep naming rank 1, not be
     * replaced by a later, vaguer one. */
    if (getenv("EPC_RANKS_PER_NODE") && atoi(getenv("EPC_RANKS_PER_NODE")) >= 2 && !named)
        fails++, printf("rank 0, on rank 1's node, did not name it: %s\n", epc_last_error(NULL));
    printf("test_fault_mpi %s: %d surviving ranks reported an error in time, %d named rank 1, "
           "%d failed checks\n",
           argv[1], R - 1, total_named, fails);
    fflush(stdout);
    MPI_Abort(MPI_COMM_WORLD, fails);
    return fails;
}
