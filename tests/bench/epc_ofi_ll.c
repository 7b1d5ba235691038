/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * epc_ofi_ll - the libfabric half of the low-latency mode's choice of
 * primitive (docs/LOW_LATENCY.md; scripts/ll_primitives.py is the MPI
 * half).  Every rank sends one message of B bytes to each rank of the
 * other nodes and receives as much, as the mode's dispatch does, two ways
 * on one endpoint, alternating iteration by iteration:
 *   two-sided   fi_trecv posted before the round (the mode posts its
 *               receives ahead), fi_tsend; both completions polled
 *   write+data  fi_writedata into the receiver's registered region at the
 *               sender's slot, the sender's rank as remote CQ data; the
 *               receiver counts one remote completion per peer
 * Per size and way: the median over iterations of the slowest rank's time
 * (a barrier before each).  Ranks are grouped into nodes of
 * --ranks-per-node consecutive ranks.  The provider is FI_PROVIDER's, else
 * tcp.  Polling yields the processor when nothing completed (as the
 * library does), so oversubscribed ranks still progress.  Every poll has a deadline (EPC_TIMEOUT_MS, else 30 s): a rank that
 * passes it says so and aborts the job.
 *
 *   mpirun -np 8 tests/bench/epc_ofi_ll --ranks-per-node 4 [-n 50] [--sizes 256,8192]
 */
#include <mpi.h>
#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>
#include <rdma/fi_tagged.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SIZES 16
#define TAG 7

typedef struct fab {
    struct fi_info *info;
    struct fid_fabric *fabric;
    struct fid_domain *domain;
    struct fid_cq *cq;
    struct fid_av *av;
    struct fid_ep *ep;
    struct fid_mr *smr, *rmr;
    fi_addr_t *addr;         /* [size] */
    uint64_t *rbase, *rkey;  /* [size]: each rank's receive region */
    char *sbuf, *rbuf;       /* [npeers x max] each */
    struct fi_context2 *ctx; /* [2 x npeers] */
    int rank, size, rpn, npeers, *peers;
    double deadline_s;
} fab_t;

static void die(const fab_t *f, const char *what, long ret)
{
    fprintf(stderr, "epc_ofi_ll: rank %d: %s: %s (%ld)\n", f->rank, what,
            ret < 0 ? fi_strerror((int)-ret) : "failed", ret);
    MPI_Abort(MPI_COMM_WORLD, 1);
}

/* p, or the job aborted saying memory ran out. */
static void *need(const fab_t *f, void *p)
{
    if (p == NULL)
        die(f, "out of memory", -FI_ENOMEM);
    return p;
}

/* Index of rank q among rank p's peers (the ranks of other nodes). */
static int slot_of(const fab_t *f, int p, int q)
{
    int i = 0;
    for (int r = 0; r < q; r++)
        i += r / f->rpn != p / f->rpn;
    return i;
}

/* Reads completions until `want` more arrived; aborts on an error entry
 * or past the deadline. */
static void poll_cq(fab_t *f, int want)
{
    struct fi_cq_data_entry e[16];
    double end = MPI_Wtime() + f->deadline_s;
    while (want > 0) {
        ssize_t n = fi_cq_read(f->cq, e, 16);
        if (n > 0) {
            want -= (int)n;
        } else if (n == -FI_EAVAIL) {
            struct fi_cq_err_entry err = {0};
            fi_cq_readerr(f->cq, &err, 0);
            die(f, fi_strerror(err.err), -err.err);
        } else if (n != -FI_EAGAIN) {
            die(f, "fi_cq_read", n);
        } else if (MPI_Wtime() <= end) {
            sched_yield(); /* oversubscribed ranks: let the peer run */
        } else {
            fprintf(stderr, "epc_ofi_ll: rank %d: %d completions missing after %.0f s\n", f->rank,
                    want, f->deadline_s);
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
    }
}

static struct fi_info *get_info(const fab_t *f)
{
    struct fi_info *hints = fi_allocinfo(), *info = NULL;
    int ret;
    hints->ep_attr->type = FI_EP_RDM;
    hints->caps = FI_TAGGED | FI_DIRECTED_RECV | FI_RMA | FI_WRITE | FI_REMOTE_WRITE;
    hints->mode = FI_CONTEXT | FI_CONTEXT2;
    hints->domain_attr->mr_mode =
        FI_MR_LOCAL | FI_MR_VIRT_ADDR | FI_MR_ALLOCATED | FI_MR_PROV_KEY | FI_MR_ENDPOINT;
    hints->domain_attr->cq_data_size = 4;
    if (getenv("FI_PROVIDER") == NULL)
        hints->fabric_attr->prov_name = strdup("tcp");
    ret = fi_getinfo(FI_VERSION(1, 10), NULL, NULL, 0, hints, &info);
    fi_freeinfo(hints);
    if (ret != 0)
        die(f, "fi_getinfo (RDM, tagged + RMA with remote CQ data)", ret);
    return info;
}

/* Registers buf for the endpoint (binding it where the provider asks). */
static struct fid_mr *reg(fab_t *f, void *buf, size_t len, uint64_t access, uint64_t key)
{
    struct fid_mr *mr;
    int ret = fi_mr_reg(f->domain, buf, len, access, 0, key, 0, &mr, NULL);
    if (ret != 0)
        die(f, "fi_mr_reg", ret);
    if (f->info->domain_attr->mr_mode & FI_MR_ENDPOINT) {
        if ((ret = fi_mr_bind(mr, &f->ep->fid, 0)) != 0 || (ret = fi_mr_enable(mr)) != 0)
            die(f, "fi_mr_bind/enable", ret);
    }
    return mr;
}

/* Opens the endpoint, inserts every rank's address, registers both
 * regions and learns every rank's receive region (address, key). */
static void fab_open(fab_t *f, size_t max)
{
    struct fi_cq_attr cq_attr = {.format = FI_CQ_FORMAT_DATA, .wait_obj = FI_WAIT_NONE};
    struct fi_av_attr av_attr = {.type = FI_AV_TABLE};
    char name[256];
    size_t len = sizeof name;
    uint64_t mine[2];
    int ret;
    f->info = get_info(f);
    if ((ret = fi_fabric(f->info->fabric_attr, &f->fabric, NULL)) != 0 ||
        (ret = fi_domain(f->fabric, f->info, &f->domain, NULL)) != 0 ||
        (ret = fi_cq_open(f->domain, &cq_attr, &f->cq, NULL)) != 0 ||
        (ret = fi_av_open(f->domain, &av_attr, &f->av, NULL)) != 0 ||
        (ret = fi_endpoint(f->domain, f->info, &f->ep, NULL)) != 0 ||
        (ret = fi_ep_bind(f->ep, &f->cq->fid, FI_TRANSMIT | FI_RECV)) != 0 ||
        (ret = fi_ep_bind(f->ep, &f->av->fid, 0)) != 0 || (ret = fi_enable(f->ep)) != 0 ||
        (ret = fi_getname(&f->ep->fid, name, &len)) != 0)
        die(f, "opening the endpoint", ret);
    size_t region = (size_t)f->npeers * max, rounded = (region + 4095) / 4096 * 4096;
    char *all = need(f, malloc(len * (size_t)f->size));
    MPI_Allgather(name, (int)len, MPI_BYTE, all, (int)len, MPI_BYTE, MPI_COMM_WORLD);
    f->addr = need(f, malloc((size_t)f->size * sizeof *f->addr));
    if (fi_av_insert(f->av, all, (size_t)f->size, f->addr, 0, NULL) != f->size)
        die(f, "fi_av_insert", -FI_EINVAL);
    free(all);
    f->sbuf = need(f, aligned_alloc(4096, rounded));
    f->rbuf = need(f, aligned_alloc(4096, rounded));
    memset(f->sbuf, f->rank & 0xff, region);
    memset(f->rbuf, 0, region);
    f->smr = reg(f, f->sbuf, region, FI_SEND | FI_WRITE, 2 * (uint64_t)f->rank);
    f->rmr = reg(f, f->rbuf, region, FI_RECV | FI_REMOTE_WRITE, 2 * (uint64_t)f->rank + 1);
    mine[0] = f->info->domain_attr->mr_mode & FI_MR_VIRT_ADDR ? (uint64_t)(uintptr_t)f->rbuf : 0;
    mine[1] = fi_mr_key(f->rmr);
    uint64_t *both = need(f, malloc(2 * sizeof *both * (size_t)f->size));
    MPI_Allgather(mine, 2, MPI_UINT64_T, both, 2, MPI_UINT64_T, MPI_COMM_WORLD);
    f->rbase = need(f, malloc((size_t)f->size * sizeof *f->rbase));
    f->rkey = need(f, malloc((size_t)f->size * sizeof *f->rkey));
    for (int r = 0; r < f->size; r++)
        f->rbase[r] = both[2 * r], f->rkey[r] = both[2 * r + 1];
    free(both);
    f->ctx = need(f, calloc(2 * (size_t)f->npeers, sizeof *f->ctx));
}

static void fab_close(fab_t *f)
{
    fi_close(&f->smr->fid);
    fi_close(&f->rmr->fid);
    fi_close(&f->ep->fid);
    fi_close(&f->av->fid);
    fi_close(&f->cq->fid);
    fi_close(&f->domain->fid);
    fi_close(&f->fabric->fid);
    fi_freeinfo(f->info);
    free(f->addr), free(f->rbase), free(f->rkey), free(f->sbuf), free(f->rbuf), free(f->ctx);
}

/* Posts op until the provider takes it, reading completions meanwhile
 * (counted into *done). */
#define POST(f, done, call)                                             \
    do {                                                                \
        ssize_t ret_;                                                   \
        while ((ret_ = (call)) == -FI_EAGAIN) {                         \
            struct fi_cq_data_entry e_;                                 \
            ssize_t n_ = fi_cq_read((f)->cq, &e_, 1);                   \
            if (n_ == -FI_EAVAIL)                                       \
                poll_cq(f, 1); /* reports the error entry and aborts */ \
            *(done) += n_ > 0;                                          \
        }                                                               \
        if (ret_ != 0)                                                  \
            die(f, #call, ret_);                                        \
    } while (0)

/* One round of the two-sided way: receives posted, barrier, sends; the
 * slowest rank's seconds. */
static double two_sided(fab_t *f, size_t b)
{
    int done = 0;
    double t, worst;
    for (int i = 0; i < f->npeers; i++)
        POST(f, &done,
             fi_trecv(f->ep, f->rbuf + i * b, b, fi_mr_desc(f->rmr), f->addr[f->peers[i]], TAG, 0,
                      &f->ctx[i]));
    MPI_Barrier(MPI_COMM_WORLD);
    t = MPI_Wtime();
    for (int i = 0; i < f->npeers; i++) {
        int p = f->peers[i];
        POST(f, &done,
             fi_tsend(f->ep, f->sbuf + i * b, b, fi_mr_desc(f->smr), f->addr[p], TAG,
                      &f->ctx[f->npeers + i]));
    }
    poll_cq(f, 2 * f->npeers - done);
    t = MPI_Wtime() - t;
    MPI_Allreduce(&t, &worst, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    return worst;
}

/* One round of fi_writedata: each write lands in the peer's region at this
 * rank's slot; done when this rank's writes completed and every peer's
 * remote completion arrived. */
static double write_data(fab_t *f, size_t b)
{
    int done = 0;
    double t, worst;
    MPI_Barrier(MPI_COMM_WORLD);
    t = MPI_Wtime();
    for (int i = 0; i < f->npeers; i++) {
        int p = f->peers[i];
        uint64_t at = f->rbase[p] + (uint64_t)slot_of(f, p, f->rank) * b;
        POST(f, &done,
             fi_writedata(f->ep, f->sbuf + i * b, b, fi_mr_desc(f->smr), (uint64_t)f->rank,
                          f->addr[p], at, f->rkey[p], &f->ctx[i]));
    }
    poll_cq(f, 2 * f->npeers - done);
    t = MPI_Wtime() - t;
    MPI_Allreduce(&t, &worst, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    return worst;
}

/* Bytes of the receive region not from the peer whose slot they are in
 * (each rank sends bytes of its rank's value), over every rank. */
static long wrong_bytes(const fab_t *f, size_t b)
{
    long bad = 0, all;
    for (int i = 0; i < f->npeers; i++)
        for (size_t j = 0; j < b; j++)
            bad += (unsigned char)f->rbuf[i * b + j] != (f->peers[i] & 0xff);
    MPI_Allreduce(&bad, &all, 1, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
    return all;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Options; returns the number of sizes, or -1 (usage printed). */
static int parse(int argc, char **argv, fab_t *f, int *iters, size_t *sizes)
{
    int n = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (v != NULL && !strcmp(a, "--ranks-per-node"))
            f->rpn = atoi(v), i++;
        else if (v != NULL && (!strcmp(a, "-n") || !strcmp(a, "--iters")))
            *iters = atoi(v), i++;
        else if (v != NULL && !strcmp(a, "--sizes")) {
            char *copy = strdup(v), *save = NULL;
            for (char *s = strtok_r(copy, ",", &save); s && n < MAX_SIZES;
                 s = strtok_r(NULL, ",", &save))
                sizes[n++] = strtoull(s, NULL, 10);
            free(copy);
            i++;
        } else {
            return -1;
        }
    }
    if (n == 0) {
        const size_t dflt[] = {256, 8192, 131072, 1048576};
        for (; n < 4; n++)
            sizes[n] = dflt[n];
    }
    for (int i = 0; i < n; i++)
        if (sizes[i] == 0)
            return -1;
    return f->rpn < 1 || f->size % f->rpn != 0 || f->size == f->rpn || *iters < 1 ? -1 : n;
}

int main(int argc, char **argv)
{
    fab_t f = {.rpn = 0};
    int iters = 50, nsizes;
    size_t sizes[MAX_SIZES], max = 0;
    const char *tmo = getenv("EPC_TIMEOUT_MS");
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &f.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &f.size);
    f.rpn = f.size / 2 > 0 ? f.size / 2 : 1;
    f.deadline_s = tmo != NULL && atoi(tmo) > 0 ? atoi(tmo) / 1000.0 : 30.0;
    if ((nsizes = parse(argc, argv, &f, &iters, sizes)) < 0) {
        if (f.rank == 0)
            fprintf(stderr, "usage: mpirun -np N epc_ofi_ll --ranks-per-node RPN (N a multiple, "
                            "at least 2 nodes) [-n|--iters ITERS] [--sizes B,B,...]\n");
        MPI_Finalize();
        return 2;
    }
    f.peers = need(&f, malloc((size_t)f.size * sizeof *f.peers));
    for (int r = 0; r < f.size; r++)
        if (r / f.rpn != f.rank / f.rpn)
            f.peers[f.npeers++] = r;
    for (int i = 0; i < nsizes; i++)
        max = sizes[i] > max ? sizes[i] : max;
    fab_open(&f, max);
    if (f.rank == 0)
        printf("# epc_ofi_ll: %d ranks, %d per node, provider %s; slowest rank's median of %d "
               "(us); every slot's bytes checked after each size\n# %10s %12s %12s %8s\n",
               f.size, f.rpn, f.info->fabric_attr->prov_name, iters, "bytes/peer", "two-sided",
               "write+data", "ratio");
    double *ts = need(&f, malloc(2 * (size_t)iters * sizeof *ts)), *wd = ts + iters;
    long wrong = 0;
    for (int s = 0; s < nsizes; s++) {
        for (int w = 0; w < 3; w++) /* connections, rendezvous buffers */
            two_sided(&f, sizes[s]), write_data(&f, sizes[s]);
        for (int it = 0; it < iters; it++) {
            ts[it] = two_sided(&f, sizes[s]);
            wd[it] = write_data(&f, sizes[s]);
        }
        long bad = wrong_bytes(&f, sizes[s]); /* the last round's writes */
        memset(f.rbuf, 0, sizes[s] * f.npeers);
        two_sided(&f, sizes[s]);
        bad += wrong_bytes(&f, sizes[s]);
        memset(f.rbuf, 0, sizes[s] * f.npeers);
        double a = median(ts, iters) * 1e6, b = median(wd, iters) * 1e6;
        if (f.rank == 0)
            printf("  %10zu %12.1f %12.1f %7.2fx %s\n", sizes[s], a, b, b / a,
                   bad ? "WRONG BYTES" : "checked");
        wrong += bad;
    }
    free(ts);
    MPI_Barrier(MPI_COMM_WORLD);
    fab_close(&f);
    free(f.peers);
    MPI_Finalize();
    return wrong != 0;
}
