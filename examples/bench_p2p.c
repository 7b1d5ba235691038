/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * bench_p2p.c - epc_bench --op p2p: ranks in pairs (r, r^1) send each other
 * 4 KiB to 64 MiB at once over the context's shared-memory path (when the
 * pair shares a node) and its inter-node transport, each next to a raw
 * baseline in the same run: memcpy for shm, a plain MPI_Isend/MPI_Irecv
 * loop for the transport.  Path and baseline alternate; rows p2p and
 * p2p-raw.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"

typedef struct p2p {
    bench_t *b;
    epc_path_t path;
    char *a, *c; /* baseline buffers */
} p2p_t;

static int op_path(p2p_t *p, size_t n)
{
    return epc_ctx_pair_exchange(p->b->ctx, p->path, n) == EPC_OK ? 0 : -1;
}

static int op_raw(p2p_t *p, size_t n)
{
    MPI_Request r[2];
    if (p->path == EPC_PATH_SHM) {
        memcpy(p->a, p->c, n);
        __asm__ volatile("" : : "r"(p->a) : "memory");
        return 0;
    }
    MPI_Irecv(p->a, (int)n, MPI_BYTE, p->b->rank ^ 1, 5, MPI_COMM_WORLD, &r[0]);
    MPI_Isend(p->c, (int)n, MPI_BYTE, p->b->rank ^ 1, 5, MPI_COMM_WORLD, &r[1]);
    return MPI_Waitall(2, r, MPI_STATUSES_IGNORE) == MPI_SUCCESS ? 0 : -1;
}

/* Mean seconds per call over iters (after 2 warm-up calls), or -1. */
static double timed(p2p_t *p, int raw, size_t n, int iters)
{
    double t0 = 0;
    for (int i = -2; i < iters; i++) {
        if (i == 0) {
            MPI_Barrier(MPI_COMM_WORLD);
            t0 = MPI_Wtime();
        }
        if ((raw ? op_raw(p, n) : op_path(p, n)) != 0)
            return -1;
    }
    return (MPI_Wtime() - t0) / iters;
}

static int path_rows(p2p_t *p, const char *name)
{
    for (size_t n = 4096; n <= ((size_t)64 << 20); n *= 4) {
        int iters = (int)(((size_t)256 << 20) / n);
        double t = 1e30, tb = 1e30;
        iters = iters < 3 ? 3 : iters > 200 ? 200 : iters;
        for (int round = 0; round < 2; round++) { /* alternate, keep the best */
            double x = timed(p, round, n, iters), y = timed(p, !round, n, iters);
            double path_t = round ? y : x, raw_t = round ? x : y;
            if (path_t < 0 || raw_t < 0)
                return bench_fail(p->b, "p2p");
            t = path_t < t ? path_t : t;
            tb = raw_t < tb ? raw_t : tb;
        }
        bench_print_row(p->b, bench_add_p2p(p->b, name, "p2p", (double)n, t));
        bench_print_row(p->b, bench_add_p2p(p->b, name, "p2p-raw", (double)n, tb));
    }
    return 0;
}

int bench_run_p2p(bench_t *b)
{
    p2p_t p = {b, EPC_PATH_SHM, malloc((size_t)64 << 20), malloc((size_t)64 << 20)};
    const epc_topo_t *topo;
    epc_ctx_stats_t s = EPC_CTX_STATS_INIT;
    int partner_node, my_node, same, all_same, rc = 0;
    if (b->size % 2 != 0 || p.a == NULL || p.c == NULL) {
        free(p.a), free(p.c);
        if (b->rank == 0)
            fprintf(stderr, "epc_bench: --op p2p needs an even number of ranks\n");
        return b->size % 2 != 0 ? 1 : bench_fail(b, "out of memory");
    }
    memset(p.a, 0, (size_t)64 << 20), memset(p.c, 1, (size_t)64 << 20);
    epc_ctx_topo(b->ctx, &topo);
    epc_topo_node_of(topo, b->rank, &my_node);
    epc_topo_node_of(topo, b->rank ^ 1, &partner_node);
    same = my_node == partner_node;
    MPI_Allreduce(&same, &all_same, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (all_same)
        rc = path_rows(&p, "shm");
    epc_ctx_stats(b->ctx, &s);
    p.path = EPC_PATH_NET;
    if (rc == 0)
        rc = path_rows(&p, s.transport);
    free(p.a), free(p.c);
    return rc;
}
