/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * test_warmup_mpi - epc_ctx_warmup as the header promises it:
 *  - each bad argument (NULL ctx, unknown algo, tokens < 0, tokens above
 *    max_tokens_per_rank) gives its status naming the argument, on every
 *    rank when all pass it, and a peer error naming the rank when one does;
 *    the context still works afterwards;
 *  - the warm-up counts as two dispatches: an earlier handle goes stale;
 *  - after a warm-up of T tokens, dispatches and combines of T tokens per
 *    rank whose routing is no more demanding (each token on as many ranks,
 *    each rank receiving its share) grow nothing (epc_ctx_stats' grow
 *    counters stay put), over both buffer sets, and their rows and sums
 *    are right (coll_ref.h's independent reference); flat's buffers are
 *    the context's private scratch, which those counters do not count, so
 *    for flat only the values are checked.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coll_ref.h"

static epc_ctx_stats_t stats_of(const epc_ctx_t *ctx)
{
    epc_ctx_stats_t s = EPC_CTX_STATS_INIT;
    MT_CHECK(epc_ctx_stats(ctx, &s) == EPC_OK, "stats: %s", epc_last_error(ctx));
    return s;
}

/* `got` is `want` and the text names `word`. */
static void expect(epc_status_t got, epc_status_t want, const epc_ctx_t *ctx, const char *word,
                   const char *what)
{
    const char *text = epc_last_error(ctx);
    MT_CHECK(got == want && strstr(text, word) != NULL, "%s: got %s, want %s naming '%s': %s", what,
             epc_status_name(got), epc_status_name(want), word, text);
}

static void bad_arguments(epc_ctx_t *ctx)
{
    epc_dispatch_args_t a = EPC_DISPATCH_ARGS_INIT;
    epc_dispatch_out_t o = EPC_DISPATCH_OUT_INIT;
    epc_handle_t *h = NULL;
    void *buf = NULL;
    char *x = calloc(MAXT * 64, 2);
    int32_t idx[4] = {0, 1, 2, 3};
    char peer[32];
    expect(epc_ctx_warmup(NULL, EPC_ALGO_HIER, 8), EPC_ERR_INVALID_ARG, NULL, "ctx", "NULL ctx");
    expect(epc_ctx_warmup(ctx, (epc_algo_t)7, 8), EPC_ERR_INVALID_ARG, ctx, "algo", "algo 7");
    expect(epc_ctx_warmup(ctx, EPC_ALGO_HIER, -1), EPC_ERR_INVALID_ARG, ctx, "tokens", "-1");
    expect(epc_ctx_warmup(ctx, EPC_ALGO_FLAT, MAXT + 1), EPC_ERR_CAPACITY, ctx, "tokens",
           "above max");
    /* one rank's bad argument: it reports its own, the others name it */
    snprintf(peer, sizeof peer, "rank %d", 1 % nranks);
    if (mt_rank == 1 % nranks)
        expect(epc_ctx_warmup(ctx, EPC_ALGO_HIER, -3), EPC_ERR_INVALID_ARG, ctx, "tokens",
               "rank 1's tokens -3");
    else
        expect(epc_ctx_warmup(ctx, EPC_ALGO_HIER, 8), EPC_ERR_PEER_FAILED, ctx, peer,
               "a peer's tokens -3");
    /* still usable: a warm-up of 0 tokens, then one makes a handle stale */
    expect(epc_ctx_warmup(ctx, EPC_ALGO_DEFAULT, 0), EPC_OK, ctx, "", "0 tokens");
    a.x = x, a.num_tokens = 1, a.topk = 4, a.topk_idx = idx;
    MT_CHECK(epc_dispatch(ctx, &a, &o, &h) == EPC_OK, "dispatch: %s", epc_last_error(ctx));
    MT_CHECK(epc_combine_buffer(ctx, h, &buf) == EPC_OK, "buffer before the warm-up");
    expect(epc_ctx_warmup(ctx, EPC_ALGO_HIER, 4), EPC_OK, ctx, "", "4 tokens");
    expect(epc_combine_buffer(ctx, h, &buf), EPC_ERR_INVALID_ARG, ctx, "followed",
           "a handle from before the warm-up");
    epc_handle_destroy(h);
    free(x);
}

/* Rank r's routing: token t's slot j on rank (3t + j + r) mod R, local
 * expert (t + 2j) mod (E / R): every token on min(k, R) ranks, and each
 * rank receives T x k / R rows from each source (T a multiple of R). */
static void demanding_routing(const scen_t *sc, inputs_t *in)
{
    int epr = sc->E / nranks;
    for (int r = 0; r < nranks; r++)
        for (int t = 0; t < in->T[r]; t++)
            for (int j = 0; j < sc->k; j++)
                in->idx[r][t * sc->k + j] =
                    ((3 * t + j + r) % nranks) * epr + (t + 2 * j + j / nranks) % epr;
}

static void no_grow_after_warmup(const scen_t *sc, epc_algo_t algo)
{
    epc_ctx_t *ctx = make_ctx(sc);
    epc_ctx_stats_t before, after;
    size_t ysz = (MAXT + 1) * (size_t)sc->hidden * esize(sc->dtype);
    char *y = malloc(ysz);
    const char *name = algo == EPC_ALGO_HIER ? "hier" : "flat";
    inputs_t in;
    memset(&in, 0, sizeof in);
    if (ctx == NULL)
        return;
    MT_CHECK(epc_ctx_warmup(ctx, algo, MAXT) == EPC_OK, "%s warm-up: %s", name,
             epc_last_error(ctx));
    before = stats_of(ctx);
    MT_CHECK(algo == EPC_ALGO_FLAT || before.shm_grows > 0, "the hier warm-up grew no region");
    for (int it = 0; it < 4; it++) { /* both buffer sets, twice */
        epc_handle_t *h = NULL;
        gen_all(sc, it, &in);
        demanding_routing(sc, &in);
        round_trip(ctx, sc, &in, it, algo, 0, &h, y);
        epc_handle_destroy(h);
    }
    after = stats_of(ctx);
    MT_CHECK(after.shm_grows == before.shm_grows && after.net_grows == before.net_grows,
             "%s: calls after the warm-up grew the regions (shm %llu -> %llu, net %llu -> %llu)",
             name, (unsigned long long)before.shm_grows, (unsigned long long)after.shm_grows,
             (unsigned long long)before.net_grows, (unsigned long long)after.net_grows);
    for (int r = 0; r < nranks; r++)
        free(in.idx[r]), free(in.w[r]);
    free(y);
    MT_CHECK(epc_ctx_destroy(ctx) == EPC_OK, "destroy: %s", epc_last_error(NULL));
}

int main(int argc, char **argv)
{
    scen_t sc = {16, 4, 64, T_MAX, 1, EPC_DTYPE_BF16, 0};
    epc_ctx_t *ctx;
    coll_ref_init(&argc, &argv);
    ctx = make_ctx(&sc);
    if (ctx != NULL) {
        bad_arguments(ctx);
        MT_CHECK(epc_ctx_destroy(ctx) == EPC_OK, "destroy: %s", epc_last_error(NULL));
    }
    no_grow_after_warmup(&sc, EPC_ALGO_HIER);
    no_grow_after_warmup(&sc, EPC_ALGO_FLAT);
    return mt_finish("test_warmup_mpi");
}
