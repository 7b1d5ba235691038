/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * test_abort_mpi - failing fast with epc_ctx_abort.  The last rank stops
 * taking part (as when its caller failed outside the library) and aborts
 * the context after a short delay, while every other rank is blocked in a
 * dispatch (first round) or a combine (second round) waiting for it.  With
 * EPC_TIMEOUT_MS far away (30 s), every blocked rank must return
 * EPC_ERR_PEER_FAILED naming the aborting rank and its reason within 1 s
 * of the abort (the latency is printed per rank), and again at once when
 * it enters another call; the aborting rank's own later calls are refused
 * (EPC_ERR_INVALID_ARG); destroy is local everywhere and quick.  Outputs
 * stay untouched.  Uses the public header only; times are CLOCK_MONOTONIC,
 * one clock for all the ranks of this machine.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "epcomm.h"
#include "mpi_test.h"

#define REASON "the framework ran out of memory in layer 7"

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Every rank's tokens go to experts on every other rank (8 per rank). */
static void inputs(int R, int T, int32_t *idx)
{
    for (int t = 0; t < T; t++) {
        idx[2 * t] = (int32_t)((8 * ((mt_rank + 1 + t % (R - 1)) % R) + t % 8) % (8 * R));
        idx[2 * t + 1] = (idx[2 * t] + 8) % (8 * R);
    }
}

/* One round: the last rank aborts after 200 ms while the others are in
 * `phase` (dispatch or combine).  Returns the abort's latency on this rank
 * (seconds from the abort to the return; -1 on the aborting rank). */
static double round_trip(const char *phase, int R, double *t_abort)
{
    epc_ctx_params_t p = EPC_CTX_PARAMS_INIT;
    epc_dispatch_args_t a = EPC_DISPATCH_ARGS_INIT;
    epc_combine_args_t c = EPC_COMBINE_ARGS_INIT;
    epc_dispatch_out_t o = EPC_DISPATCH_OUT_INIT, poison = EPC_DISPATCH_OUT_INIT;
    epc_ctx_t *ctx = NULL;
    epc_handle_t *h = NULL, *h2 = NULL;
    int T = 16, aborter = R - 1, combine = !strcmp(phase, "combine");
    int32_t idx[32];
    uint16_t x[16 * 64] = {0}, y[16 * 64];
    char name[160];
    double t_ret = 0, t0;
    epc_status_t st;
    void *eo = NULL;
    p.num_experts = 8 * R, p.hidden = 64;
    MT_CHECK(epc_ctx_create(MPI_COMM_WORLD, &p, &ctx) == EPC_OK, "create: %s",
             epc_last_error(NULL));
    inputs(R, T, idx);
    a.x = x, a.num_tokens = T, a.topk = 2, a.topk_idx = idx;
    if (combine) { /* a good dispatch first; the abort comes in combine */
        MT_CHECK(epc_dispatch(ctx, &a, &o, &h) == EPC_OK, "dispatch: %s", epc_last_error(ctx));
        MT_CHECK(epc_combine_buffer(ctx, h, &eo) == EPC_OK, "buffer: %s", epc_last_error(ctx));
    }
    o = poison = mt_poisoned_out();
    memset(y, 0x33, sizeof y);
    *t_abort = 0;
    if (mt_rank == aborter) {
        usleep(200000); /* the others are blocked by now */
        *t_abort = mono();
        MT_CHECK(epc_ctx_abort(ctx, REASON) == EPC_OK, "abort: %s", epc_last_error(ctx));
        MT_CHECK(epc_ctx_abort(ctx, "again") == EPC_OK, "second abort");
        st = epc_dispatch(ctx, &a, &o, &h);
        MT_CHECK(st == EPC_ERR_INVALID_ARG && strstr(epc_last_error(ctx), "aborted"),
                 "own call after abort: %d: %s", st, epc_last_error(ctx));
    } else {
        c.expert_out = eo, c.y = y;
        st = combine ? epc_combine(ctx, h, &c) : epc_dispatch(ctx, &a, &o, &h);
        t_ret = mono();
        snprintf(name, sizeof name, "rank %d aborted the context: " REASON, aborter);
        MT_CHECK(st == EPC_ERR_PEER_FAILED && strstr(epc_last_error(ctx), name),
                 "%s: status %d: %s", phase, st, epc_last_error(ctx));
        printf("rank %d: %s: %s\n", mt_rank, epc_status_name(st), epc_last_error(ctx));
        /* Entering another call: refused at once, naming the rank again. */
        t0 = mono();
        st = epc_dispatch(ctx, &a, &o, &h2);
        MT_CHECK(st == EPC_ERR_PEER_FAILED && strstr(epc_last_error(ctx), name) && h2 == NULL &&
                     mono() - t0 < 1.0,
                 "entering after the abort: %d: %s", st, epc_last_error(ctx));
    }
    MT_CHECK(memcmp(&o, &poison, sizeof o) == 0, "%s: dispatch outputs written", phase);
    for (size_t i = 0; i < sizeof y / 2; i++)
        MT_CHECK(y[i] == 0x3333, "%s: y written at %zu", phase, i);
    t0 = mono();
    epc_handle_destroy(h);
    MT_CHECK(epc_ctx_destroy(ctx) == EPC_OK && mono() - t0 < 2.0, "destroy: %s (%.2f s)",
             epc_last_error(NULL), mono() - t0);
    return mt_rank == aborter ? -1.0 : t_ret;
}

int main(int argc, char **argv)
{
    static const char *const phases[] = {"dispatch", "combine"};
    int R;
    mt_init(&argc, &argv);
    MPI_Comm_size(MPI_COMM_WORLD, &R);
    if (R < 2)
        return fprintf(stderr, "test_abort_mpi: needs 2+ ranks\n"), 2;
    for (int i = 0; i < 2; i++) {
        double t_abort, t_ret = round_trip(phases[i], R, &t_abort), worst;
        double lat;
        /* The abort's time travels on the world communicator (the
         * context's is gone). */
        MPI_Bcast(&t_abort, 1, MPI_DOUBLE, R - 1, MPI_COMM_WORLD);
        lat = t_ret < 0 ? 0 : t_ret - t_abort;
        MT_CHECK(lat >= 0 && lat < 1.0, "%s: returned %.3f s after the abort", phases[i], lat);
        if (mt_rank != R - 1)
            printf("rank %d: %s: returned %.1f ms after rank %d's abort\n", mt_rank, phases[i],
                   lat * 1e3, R - 1);
        fflush(stdout);
        MPI_Reduce(&lat, &worst, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
        if (mt_rank == 0)
            printf("test_abort_mpi %s: slowest rank returned %.1f ms after the abort\n", phases[i],
                   worst * 1e3);
    }
    return mt_finish("test_abort_mpi");
}
