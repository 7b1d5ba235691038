/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * epc_p2p - bandwidth and latency of epcomm's transports between rank pairs
 * (0,1), (2,3), ..., each next to a raw baseline measured in the same run:
 *   shm        a rank writes into its partner's shared region, then the node
 *              fences; baseline: a plain memcpy of the same size
 *   mpi        one transport exchange each way; baseline: a plain
 *              MPI_Isend/MPI_Irecv/MPI_Waitall loop on MPI_COMM_WORLD
 *   ofi(PROV)  one transport exchange each way; baseline: plain
 *              fi_tsend/fi_trecv on the same endpoint, polling its queue
 * Sizes 4 KiB to 64 MiB.  Both ranks of a pair send at once (bidirectional,
 * as a dispatch does); GB/s counts the bytes one rank sends.  Times are the
 * slowest rank's average per iteration, best of five rounds that alternate
 * with the baseline; ratio = baseline time / path time (1.0 = as fast as the
 * raw loop).  This is a developer tool built
 * against the library's internals; `epc_bench --op p2p` will carry it.
 *
 *   mpirun -np 2 tests/bench/epc_p2p [--min B] [--max B] [--providers shm,tcp]
 */
#include "build_config.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "context.h"
#ifdef EPC_HAVE_OFI
#include <rdma/fi_errno.h>
#include <rdma/fi_tagged.h>

#include "ofi.h"
#endif

typedef struct bench {
    int rank, size, partner;
    size_t min, max;
    char *a, *b; /* private buffers for the memcpy baseline */
} bench_t;

/* Iterations for a size: about 256 MiB per run, within [5, 2000]. */
static int iters_for(size_t bytes)
{
    size_t n = ((size_t)256 << 20) / bytes;
    return n < 5 ? 5 : n > 2000 ? 2000 : (int)n;
}

/* The slowest rank's seconds per iteration of op over iters (after two
 * warm-up runs, which also fault the pages in). */
typedef int (*op_fn)(void *arg, size_t bytes);

static double timed(op_fn op, void *arg, size_t bytes, int iters)
{
    double t0, dt, worst;
    for (int i = 0; i < 2; i++)
        if (op(arg, bytes) != 0)
            return -1;
    MPI_Barrier(MPI_COMM_WORLD);
    t0 = MPI_Wtime();
    for (int i = 0; i < iters; i++)
        if (op(arg, bytes) != 0)
            return -1;
    dt = (MPI_Wtime() - t0) / iters;
    MPI_Allreduce(&dt, &worst, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    return worst;
}

typedef struct path {
    bench_t *b;
    epc_ctx_t *ctx;
} path_t;

static int op_memcpy(void *arg, size_t n)
{
    bench_t *b = ((path_t *)arg)->b;
    memcpy(b->a, b->b, n);
    __asm__ volatile("" : : "r"(b->a) : "memory"); /* keep the copy */
    return 0;
}

static int op_shm(void *arg, size_t n)
{
    path_t *p = arg;
    epc_ctx_t *ctx = p->ctx;
    int peer_l = ctx->comm.topo->local_rank[p->b->partner];
    if (epc_lane_shm_put(&ctx->comm.lane[0], peer_l, 0, p->b->b, n) != EPC_OK)
        return -1;
    return epc_lane_shm_fence(&ctx->comm.lane[0], "p2p shm") == EPC_OK ? 0 : -1;
}

static int op_net(void *arg, size_t n)
{
    path_t *p = arg;
    epc_tr_msg_t s = {.peer = p->b->partner, .len = n}, r = {.peer = p->b->partner, .len = n};
    return epc_lane_net_exchange(&p->ctx->comm.lane[0], &s, 1, &r, 1, "p2p") == EPC_OK ? 0 : -1;
}

static int op_mpi_raw(void *arg, size_t n)
{
    path_t *p = arg;
    MPI_Request req[2];
    /* Sizes here stay below 2 GiB: one count suffices. */
    MPI_Irecv(p->ctx->comm.lane[0].tr->recv_buf, (int)n, MPI_BYTE, p->b->partner, 7, MPI_COMM_WORLD,
              &req[0]);
    MPI_Isend(p->ctx->comm.lane[0].tr->send_buf, (int)n, MPI_BYTE, p->b->partner, 7, MPI_COMM_WORLD,
              &req[1]);
    return MPI_Waitall(2, req, MPI_STATUSES_IGNORE) == MPI_SUCCESS ? 0 : -1;
}

#ifdef EPC_HAVE_OFI
/* The raw libfabric loop: one tagged send and receive on the transport's
 * own endpoint and registrations, completions polled. */
static int op_ofi_raw(void *arg, size_t n)
{
    path_t *p = arg;
    epc_tr_t *tr = p->ctx->comm.lane[0].tr;
    ofi_t *o = tr->impl;
    struct fi_context2 c[2];
    struct fi_cq_tagged_entry e[4];
    void *sd = o->mr_local ? fi_mr_desc(o->send_mr) : NULL;
    void *rd = o->mr_local ? fi_mr_desc(o->recv_mr) : NULL;
    int done = 0;
    ssize_t rc;
    while ((rc = fi_trecv(o->ep, tr->recv_buf, n, rd, FI_ADDR_UNSPEC, 0xb0b, 0, &c[0])) ==
           -FI_EAGAIN)
        fi_cq_read(o->cq, e, 0);
    if (rc != 0)
        return -1;
    while ((rc = fi_tsend(o->ep, tr->send_buf, n, sd, o->addr[p->b->partner], 0xb0b, &c[1])) ==
           -FI_EAGAIN)
        fi_cq_read(o->cq, e, 0);
    if (rc != 0)
        return -1;
    while (done < 2) {
        rc = fi_cq_read(o->cq, e, 4);
        if (rc > 0)
            done += (int)rc;
        else if (rc != -FI_EAGAIN)
            return -1;
        else
            sched_yield();
    }
    return 0;
}
#endif

/* A destroy that timed out left a peer behind: the job ends here rather
 * than wait for it in MPI_Finalize. */
static void destroy(const bench_t *b, epc_ctx_t *ctx)
{
    if (epc_ctx_destroy(ctx) == EPC_OK)
        return;
    printf("epc_p2p: rank %d: %s\n", b->rank, epc_last_error(NULL));
    fflush(stdout);
    MPI_Abort(MPI_COMM_WORLD, 1);
}

static epc_ctx_t *make_ctx(bench_t *b, epc_transport_t tr, const char *prov, int rpn)
{
    epc_ctx_params_t p = EPC_CTX_PARAMS_INIT;
    epc_ctx_t *ctx = NULL;
    p.num_experts = b->size, p.hidden = 1, p.transport = tr;
    p.ofi_provider = prov, p.ranks_per_node = rpn;
    if (epc_ctx_create(MPI_COMM_WORLD, &p, &ctx) != EPC_OK) {
        if (b->rank == 0)
            printf("# %s%s%s: unavailable: %s\n", tr == EPC_TRANSPORT_OFI ? "ofi" : "mpi",
                   prov ? " " : "", prov ? prov : "", epc_last_error(NULL));
        return NULL;
    }
    return ctx;
}

/* Path and baseline alternate over five rounds (swapping which goes first)
 * and each keeps its best round, so both see the same machine state. */
static void row(bench_t *b, const char *name, path_t *p, op_fn op, op_fn base)
{
    for (size_t n = b->min; n <= b->max; n *= 4) {
        int it = iters_for(n) / 5 < 3 ? 3 : iters_for(n) / 5;
        double t = 1e30, tb = 1e30;
        for (int round = 0; round < 5 && t >= 0 && tb >= 0; round++) {
            /* Alternate which goes first: the first after a switch is slower. */
            double x, y;
            if (round % 2)
                x = timed(op, p, n, it), y = timed(base, p, n, it);
            else
                y = timed(base, p, n, it), x = timed(op, p, n, it);
            t = x < 0 ? -1 : x < t ? x : t;
            tb = y < 0 ? -1 : y < tb ? y : tb;
        }
        if (t < 0 || tb < 0) { /* fatal: end the whole job, as the tools do */
            printf("  %-22s %10zu failed on rank %d: %s\n", name, n, b->rank, epc_last_error(NULL));
            fflush(stdout);
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
        if (b->rank == 0)
            printf("  %-22s %10zu %6d %10.2f %8.2f %10.2f %8.2f %7.2f\n", name, n, 5 * it, t * 1e6,
                   n / t * 1e-9, tb * 1e6, n / tb * 1e-9, tb / t);
    }
}

/* Runs the shm rows: all ranks on their real node (pairs share it). */
static void bench_shm(bench_t *b)
{
    path_t p = {b, make_ctx(b, EPC_TRANSPORT_MPI, NULL, 0)};
    if (p.ctx == NULL)
        return;
    if (p.ctx->comm.topo->node_of[b->partner] != p.ctx->comm.node) {
        if (b->rank == 0)
            printf("# shm: pairs are on different nodes; skipped\n");
    } else if (epc_lane_shm_reserve(&p.ctx->comm.lane[0], b->max, "p2p") == EPC_OK) {
        row(b, "shm (vs memcpy)", &p, op_shm, op_memcpy);
    }
    destroy(b, p.ctx);
}

/* Runs one transport's rows: every rank its own node, so all goes through
 * the inter-node transport. */
static void bench_net(bench_t *b, epc_transport_t kind, const char *prov)
{
    path_t p = {b, make_ctx(b, kind, prov, 1)};
    char name[160];
    if (p.ctx == NULL)
        return;
    if (epc_lane_net_reserve(&p.ctx->comm.lane[0], b->max, b->max) == EPC_OK) {
        memset(p.ctx->comm.lane[0].tr->send_buf, 1, b->max);
        snprintf(name, sizeof name, "%s%s%s%s (vs raw)", p.ctx->comm.lane[0].tr->ops->name,
                 prov ? "(" : "", prov ? p.ctx->comm.lane[0].tr->provider : "", prov ? ")" : "");
#ifdef EPC_HAVE_OFI
        row(b, name, &p, op_net, kind == EPC_TRANSPORT_OFI ? op_ofi_raw : op_mpi_raw);
#else
        row(b, name, &p, op_net, op_mpi_raw);
#endif
    }
    destroy(b, p.ctx);
}

int main(int argc, char **argv)
{
    bench_t b = {.min = 4096, .max = (size_t)64 << 20};
    char provs[256] = "shm,tcp";
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &b.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &b.size);
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--min"))
            b.min = strtoull(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--max"))
            b.max = strtoull(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--providers"))
            snprintf(provs, sizeof provs, "%s", argv[i + 1]);
    }
    if (b.size % 2 != 0 || b.min == 0 || b.max < b.min) {
        if (b.rank == 0)
            fprintf(stderr, "epc_p2p: needs an even number of ranks and 0 < --min <= --max\n");
        MPI_Finalize();
        return 2;
    }
    b.partner = b.rank ^ 1;
    b.a = malloc(b.max);
    b.b = malloc(b.max);
    memset(b.a, 0, b.max);
    memset(b.b, 2, b.max);
    if (b.rank == 0)
        printf("# epc_p2p: %d ranks, pairs (r, r^1) sending both ways at once\n"
               "# %-22s %10s %6s %10s %8s %10s %8s %7s\n",
               b.size, "path", "bytes", "iters", "t_us", "GB/s", "base_t_us", "base_GB/s", "ratio");
    bench_shm(&b);
    bench_net(&b, EPC_TRANSPORT_MPI, NULL);
#ifdef EPC_HAVE_OFI
    for (char *save = NULL, *p = strtok_r(provs, ",", &save); p; p = strtok_r(NULL, ",", &save))
        bench_net(&b, EPC_TRANSPORT_OFI, p);
#endif
    free(b.a);
    free(b.b);
    MPI_Finalize();
    return 0; /* a path that errs ends the job with MPI_Abort (its message printed) */
}
