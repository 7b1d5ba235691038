/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * test_comm_mpi - the context's two paths with every byte checked.  The
 * transport comes from EPC_TRANSPORT / EPC_OFI_PROVIDER and the nodes from
 * EPC_RANKS_PER_NODE, as the calling script sets them.  Modes:
 *   data      shm writes to every node peer and transport messages to every
 *             other rank, sizes 0, 1, odd, page-unaligned and large, each
 *             byte a function of (source, destination, round, position);
 *             receive regions poisoned first; byte counters checked
 *   timeout   rank 0 waits for a message rank 1 never sends: EPC_ERR_TIMEOUT
 *             naming rank 1, within twice EPC_TIMEOUT_MS
 *   mismatch  rank 0 asks a different hidden size: EPC_ERR_MISMATCH on all
 *   leak      100 create/use/destroy cycles: no file descriptor, shared-
 *             memory mapping or heap memory left behind; while a context
 *             lives, its segments are private and have no name
 *   writes    the transport's write exchanges (EPC_TEST_WRITES=1: the
 *             transport must offer them; 0: it must not, and a write
 *             exchange is refused): rounds of writes to every other rank,
 *             sizes as in data but never empty (then one empty round),
 *             every byte and the byte after checked, rank 0 late to each
 *             round so peers' writes of the next round land before it
 *             starts it; a region that would grow, a write past a peer's
 *             region
 */
#include <dirent.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "context.h"
#include "mpi_test.h"
#include <sys/stat.h>
#include <unistd.h>

static int nranks;

static unsigned char pattern(int src, int dst, int round, size_t i)
{
    return (unsigned char)(src * 131 + dst * 31 + round * 7 + (int)(i % 251) + (int)(i >> 12));
}

/* Round r's message size from src to dst: 0, 1, odd, page-unaligned, large. */
static size_t msg_size(int src, int dst, int round)
{
    static const size_t sizes[] = {0, 1, 4097, 65536 + 13, 3 << 20};
    return sizes[(src + dst + round) % 5];
}

#define SLOT ((size_t)(3 << 20) + 4096 + 14) /* per-source slot: the largest size (+1), unaligned */

static epc_ctx_t *create(int hidden)
{
    epc_ctx_params_t p = EPC_CTX_PARAMS_INIT;
    epc_ctx_t *ctx = NULL;
    p.num_experts = 8 * nranks;
    p.hidden = hidden;
    MT_CHECK(epc_ctx_create(MPI_COMM_WORLD, &p, &ctx) == EPC_OK, "create: %s",
             epc_last_error(NULL));
    return ctx;
}

/* Every rank writes a block into every node peer's region (itself too). */
static void shm_round(epc_ctx_t *ctx, int round, uint64_t *bytes)
{
    const epc_topo_t *t = ctx->comm.topo;
    int *peers = t->node_ranks + t->node_start[ctx->comm.node];
    unsigned char *buf = malloc(SLOT);
    size_t cap;
    MT_CHECK(epc_lane_shm_reserve(&ctx->comm.lane[0], (size_t)ctx->comm.lsize * SLOT,
                                  "test reserve") == EPC_OK,
             "reserve: %s", epc_last_error(NULL));
    char *mine = epc_lane_shm_region(&ctx->comm.lane[0], ctx->comm.lrank, &cap);
    memset(mine, 0xee, cap); /* poison my own region */
    MT_CHECK(epc_lane_shm_fence(&ctx->comm.lane[0], "test poison") == EPC_OK, "fence: %s",
             epc_last_error(NULL));
    for (int l = 0; l < ctx->comm.lsize; l++) {
        size_t n = msg_size(ctx->comm.rank, peers[l], round);
        for (size_t i = 0; i < n; i++)
            buf[i] = pattern(ctx->comm.rank, peers[l], round, i);
        MT_CHECK(epc_lane_shm_put(&ctx->comm.lane[0], l, (size_t)ctx->comm.lrank * SLOT + 13, buf,
                                  n) == EPC_OK,
                 "put: %s", epc_last_error(NULL));
        *bytes += n;
    }
    MT_CHECK(epc_lane_shm_fence(&ctx->comm.lane[0], "test shm") == EPC_OK, "fence: %s",
             epc_last_error(NULL));
    for (int l = 0; l < ctx->comm.lsize; l++) {
        const unsigned char *got =
            (unsigned char *)epc_lane_shm_region(&ctx->comm.lane[0], ctx->comm.lrank, &cap) +
            (size_t)l * SLOT + 13;
        size_t n = msg_size(peers[l], ctx->comm.rank, round), bad = n;
        for (size_t i = 0; i < n && bad == n; i++)
            if (got[i] != pattern(peers[l], ctx->comm.rank, round, i))
                bad = i;
        MT_CHECK(bad == n, "round %d: shm bytes from rank %d wrong at %zu of %zu", round, peers[l],
                 bad, n);
        MT_CHECK(n == SLOT || got[n] == 0xee, "round %d: byte after rank %d's block written", round,
                 peers[l]);
    }
    MT_CHECK(epc_lane_shm_fence(&ctx->comm.lane[0], "test shm end") == EPC_OK, "fence: %s",
             epc_last_error(NULL));
    free(buf);
}

/* Every rank sends a message to every other rank over the transport. */
static void net_round(epc_ctx_t *ctx, int round, uint64_t *sent_net, uint64_t *sent_local)
{
    epc_tr_msg_t *s = calloc((size_t)nranks, sizeof *s), *r = calloc((size_t)nranks, sizeof *r);
    int ns = 0, nr = 0;
    MT_CHECK(epc_lane_net_reserve(&ctx->comm.lane[0], (size_t)nranks * SLOT,
                                  (size_t)nranks * SLOT) == EPC_OK,
             "net reserve: %s", epc_last_error(NULL));
    memset(ctx->comm.lane[0].tr->recv_buf, 0xee, ctx->comm.lane[0].tr->recv_cap);
    for (int d = 0; d < nranks; d++) {
        size_t n = msg_size(ctx->comm.rank, d, round);
        if (d == ctx->comm.rank)
            continue;
        for (size_t i = 0; i < n; i++)
            ctx->comm.lane[0].tr->send_buf[(size_t)d * SLOT + 7 + i] =
                (char)pattern(ctx->comm.rank, d, round, i);
        s[ns++] = (epc_tr_msg_t){.peer = d, .offset = (size_t)d * SLOT + 7, .len = n};
        r[nr++] = (epc_tr_msg_t){
            .peer = d, .offset = (size_t)d * SLOT + 13, .len = msg_size(d, ctx->comm.rank, round)};
        *(ctx->comm.topo->node_of[d] == ctx->comm.node ? sent_local : sent_net) += n;
    }
    MT_CHECK(epc_lane_net_exchange(&ctx->comm.lane[0], s, ns, r, nr, "test net") == EPC_OK,
             "exchange: %s", epc_last_error(NULL));
    for (int i = 0; i < nr; i++) {
        const unsigned char *got = (unsigned char *)ctx->comm.lane[0].tr->recv_buf + r[i].offset;
        size_t bad = r[i].len;
        for (size_t b = 0; b < r[i].len && bad == r[i].len; b++)
            if (got[b] != pattern(r[i].peer, ctx->comm.rank, round, b))
                bad = b;
        MT_CHECK(bad == r[i].len,
                 "round %d: bytes from rank %d wrong at %zu of %zu (got %#x, want %#x)", round,
                 r[i].peer, bad, r[i].len, bad < r[i].len ? got[bad] : 0,
                 bad < r[i].len ? pattern(r[i].peer, ctx->comm.rank, round, bad) : 0);
        MT_CHECK(got[r[i].len] == 0xee, "round %d: byte after rank %d's message written", round,
                 r[i].peer);
    }
    free(s);
    free(r);
}

static int mode_data(void)
{
    epc_ctx_t *ctx = create(64);
    epc_ctx_stats_t st = EPC_CTX_STATS_INIT;
    uint64_t shm_bytes = 0, net_bytes = 0, net_local = 0, sent_total = 0;
    if (ctx == NULL)
        return mt_finish("test_comm_mpi data");
    for (int round = 0; round < 5; round++) {
        shm_round(ctx, round, &shm_bytes);
        net_round(ctx, round, &net_bytes, &net_local);
    }
    MT_CHECK(epc_ctx_stats(ctx, &st) == EPC_OK, "stats");
    for (int c = 0; c < 4; c++)
        sent_total += st.bytes_sent[c];
    MT_CHECK(st.bytes_sent[EPC_LINK_OTHER_NODE] == net_bytes, "net bytes %llu != %llu",
             (unsigned long long)st.bytes_sent[EPC_LINK_OTHER_NODE], (unsigned long long)net_bytes);
    MT_CHECK(sent_total == shm_bytes + net_bytes + net_local, "total bytes %llu",
             (unsigned long long)sent_total);
    MT_CHECK(st.shm_bytes >= (uint64_t)ctx->comm.lsize * SLOT && st.shm_grows >= 1, "shm %llu",
             (unsigned long long)st.shm_bytes);
    MT_CHECK(st.net_bytes >= 2ull * nranks * SLOT && st.net_grows >= 1, "net %llu",
             (unsigned long long)st.net_bytes);
    if (mt_rank == 0)
        printf("transport %s%s%s (%s), %d nodes\n", st.transport, st.provider[0] ? " " : "",
               st.provider, st.transport_reason, ctx->comm.topo->nnodes);
    MT_CHECK(epc_ctx_destroy(ctx) == EPC_OK, "destroy: %s", epc_last_error(NULL));
    return mt_finish("test_comm_mpi data");
}

/* The context is created with a minute to spare (creation under a sanitizer
 * on two loaded cores took longer than the one-second EPC_TIMEOUT_MS this
 * mode checks); the short deadline is put in place after creation. */
static epc_ctx_t *create_then_shorten(int timeout_ms)
{
    epc_ctx_params_t p = EPC_CTX_PARAMS_INIT;
    epc_ctx_t *ctx = NULL;
    p.num_experts = 8 * nranks;
    p.hidden = 64;
    p.timeout_ms = 60000;
    MT_CHECK(epc_ctx_create(MPI_COMM_WORLD, &p, &ctx) == EPC_OK, "create: %s",
             epc_last_error(NULL));
    if (ctx != NULL) {
        ctx->comm.timeout_ms = timeout_ms;
        for (int i = 0; i < EPC_LANES; i++)
            ctx->comm.lane[i].tr->timeout_ms = timeout_ms;
    }
    return ctx;
}

static int mode_timeout(void)
{
    const char *env = getenv("EPC_TIMEOUT_MS");
    int timeout_ms = env ? atoi(env) : 60000;
    epc_ctx_t *ctx = create_then_shorten(timeout_ms);
    double limit = 2.0 * timeout_ms / 1000.0, t0;
    if (ctx == NULL)
        return mt_finish("test_comm_mpi timeout");
    MT_CHECK(epc_lane_net_reserve(&ctx->comm.lane[0], 4096, 4096) == EPC_OK, "reserve");
    if (mt_rank == 0) {
        epc_tr_msg_t r = {.peer = 1, .len = 100};
        epc_status_t st;
        t0 = MPI_Wtime();
        st = epc_lane_net_exchange(&ctx->comm.lane[0], NULL, 0, &r, 1, "test wait");
        MT_CHECK(st == EPC_ERR_TIMEOUT, "status %d", st);
        MT_CHECK(strstr(epc_last_error(ctx), "rank 1") && strstr(epc_last_error(ctx), "test wait"),
                 "message: %s", epc_last_error(ctx));
        MT_CHECK(MPI_Wtime() - t0 < limit, "took %.2f s, limit %.2f", MPI_Wtime() - t0, limit);
        /* The transport refuses further use, clearly. */
        MT_CHECK(epc_lane_net_exchange(&ctx->comm.lane[0], NULL, 0, &r, 1, "again") ==
                     EPC_ERR_TRANSPORT,
                 "reuse");
    }
    /* Rank 1 would reach destroy's barrier a whole timeout before rank 0. */
    MPI_Barrier(MPI_COMM_WORLD);
    MT_CHECK(epc_ctx_destroy(ctx) == EPC_OK, "destroy: %s", epc_last_error(NULL));
    return mt_finish("test_comm_mpi timeout");
}

static int mode_mismatch(void)
{
    epc_ctx_params_t p = EPC_CTX_PARAMS_INIT;
    epc_ctx_t *ctx = NULL;
    epc_status_t st;
    p.num_experts = 8 * nranks;
    p.hidden = mt_rank == 0 ? 128 : 256;
    st = epc_ctx_create(MPI_COMM_WORLD, &p, &ctx);
    MT_CHECK(st == EPC_ERR_MISMATCH && ctx == NULL, "status %d", st);
    MT_CHECK(strstr(epc_last_error(NULL), "hidden") != NULL, "message: %s", epc_last_error(NULL));
    p.hidden = 256;
    p.dtype = mt_rank == nranks - 1 ? EPC_DTYPE_FP32 : EPC_DTYPE_BF16;
    st = epc_ctx_create(MPI_COMM_WORLD, &p, &ctx);
    MT_CHECK(st == EPC_ERR_MISMATCH && strstr(epc_last_error(NULL), "dtype"), "dtype: %d %s", st,
             epc_last_error(NULL));
    /* A bad argument on one rank: that rank says why, the others name it. */
    p.dtype = 0;
    p.size = mt_rank == 1 ? 3 : sizeof p;
    st = epc_ctx_create(MPI_COMM_WORLD, &p, &ctx);
    MT_CHECK(st == (mt_rank == 1 ? EPC_ERR_INVALID_ARG : EPC_ERR_PEER_FAILED), "size: %d", st);
    MT_CHECK(strstr(epc_last_error(NULL), "params->size") != NULL, "message: %s",
             epc_last_error(NULL));
    return mt_finish("test_comm_mpi mismatch");
}

/* The live context's segments: anonymous memory files ("/memfd:epc-region
 * (deleted)" in /proc/self/maps), mode 0600 and this user's (checked on
 * the mapping itself where /proc/self/map_files is readable); none mapped
 * from /dev/shm, and no descriptor of this process still open on one (a
 * segment lives exactly as long as its mappings).  Returns how many were
 * seen. */
static int check_segments(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    char line[1024], range[64], path[320], link[256];
    int seen = 0;
    DIR *d;
    struct dirent *e;
    struct stat st;
    MT_CHECK(f != NULL, "cannot read /proc/self/maps");
    while (f != NULL && fgets(line, sizeof line, f) != NULL) {
        MT_CHECK(strstr(line, "/dev/shm/epc-") == NULL, "a named segment is mapped: %s", line);
        if (strstr(line, "/memfd:epc-region (deleted)") == NULL)
            continue;
        seen++;
        sscanf(line, "%63s", range);
        snprintf(path, sizeof path, "/proc/self/map_files/%s", range);
        if (stat(path, &st) == 0)
            MT_CHECK((st.st_mode & 0777) == 0600 && st.st_uid == geteuid(),
                     "segment mode %o uid %d: %s", (unsigned)(st.st_mode & 0777), (int)st.st_uid,
                     line);
    }
    if (f != NULL)
        fclose(f);
    for (d = opendir("/proc/self/fd"); d != NULL && (e = readdir(d)) != NULL;) {
        ssize_t n;
        snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
        n = readlink(path, link, sizeof link - 1);
        link[n > 0 ? n : 0] = '\0';
        MT_CHECK(strstr(link, "memfd:epc-region") == NULL, "descriptor %s still open on %s",
                 e->d_name, link);
    }
    if (d != NULL)
        closedir(d);
    return seen;
}

static int mode_leak(void)
{
    int fds = 0, shm = 0;
    size_t heap = 0;
    uint64_t dummy = 0, d2 = 0;
    for (int i = 0; i < 100; i++) {
        epc_ctx_t *ctx = create(64);
        if (ctx == NULL)
            break;
        shm_round(ctx, i % 5, &dummy);
        net_round(ctx, i % 5, &dummy, &d2);
        /* The measure sees a live shared window, so it would see a leaked one
         * (a one-rank node's window may be private memory). */
        if (i == 10 && ctx->comm.lsize > 1) {
            MT_CHECK(mt_count_shm_maps() > shm, "window mappings not visible: %d",
                     mt_count_shm_maps());
            /* lane 0's regions (the rounds use it), each lane's control segment */
            MT_CHECK(check_segments() == ctx->comm.lsize + EPC_LANES,
                     "expected %d regions and %d control segments", ctx->comm.lsize, EPC_LANES);
        }
        MT_CHECK(epc_ctx_destroy(ctx) == EPC_OK, "destroy: %s", epc_last_error(NULL));
        if (i == 9) { /* after MPI's own lazy setup */
            MPI_Barrier(MPI_COMM_WORLD);
            fds = mt_count_dir("/proc/self/fd");
            shm = mt_count_shm_maps();
            heap = mallinfo2().uordblks;
        }
    }
    MPI_Barrier(MPI_COMM_WORLD);
    MT_CHECK(mt_count_dir("/proc/self/fd") == fds, "fds %d -> %d", fds,
             mt_count_dir("/proc/self/fd"));
    MT_CHECK(mt_count_shm_maps() == shm, "shared-memory mappings %d -> %d", shm,
             mt_count_shm_maps());
    /* 90 cycles with MiB-sized regions each: a leak would show as MiBs. */
    MT_CHECK(mallinfo2().uordblks < heap + (1u << 20), "heap %zu -> %zu bytes", heap,
             mallinfo2().uordblks);
    return mt_finish("test_comm_mpi leak");
}

/* Round r's write from src to dst: as msg_size, but never empty, so every
 * pair depends on each other every round and no peer gets two rounds
 * ahead (a slot set is written again two rounds later); round -1: empty. */
static size_t write_size(int src, int dst, int round)
{
    return round < 0 ? 0 : msg_size(src, dst, round) + 1;
}

/* One round of writes: each rank writes its message into every other
 * rank's region at its own slot (slot set by round parity: a peer may be a
 * round ahead), then waits for every peer's; rank 0 starts late and
 * dawdles before waiting, so peers' next round lands first. */
static void write_round(epc_tr_t *tr, int round)
{
    epc_tr_msg_t *s = calloc((size_t)nranks, sizeof *s), *r = calloc((size_t)nranks, sizeof *r);
    size_t set = (size_t)(round & 1) * (size_t)nranks * SLOT;
    int ns = 0, nr = 0, me = tr->rank;
    void *req = NULL;
    for (int d = 0; d < nranks; d++) {
        size_t n = write_size(me, d, round);
        if (d == me)
            continue;
        for (size_t i = 0; i < n; i++)
            tr->send_buf[(size_t)d * SLOT + 7 + i] = (char)pattern(me, d, round, i);
        s[ns++] = (epc_tr_msg_t){
            .peer = d, .offset = (size_t)d * SLOT + 7, .len = n, .remote = set + me * SLOT + 13};
        r[nr++] = (epc_tr_msg_t){
            .peer = d, .offset = set + (size_t)d * SLOT + 13, .len = write_size(d, me, round)};
    }
    if (me == 0)
        usleep(20000);
    MT_CHECK(epc_tr_write_start(tr, s, ns, r, nr, "test writes", &req) == EPC_OK, "write start: %s",
             epc_last_error(NULL));
    if (me == 0)
        usleep(20000);
    MT_CHECK(req != NULL && epc_tr_wait(tr, req, epc_tr_deadline(tr)) == EPC_OK, "write wait: %s",
             epc_last_error(NULL));
    for (int i = 0; i < nr; i++) {
        const unsigned char *got = (unsigned char *)tr->recv_buf + r[i].offset;
        size_t bad = r[i].len;
        for (size_t b = 0; b < r[i].len && bad == r[i].len; b++)
            if (got[b] != pattern(r[i].peer, me, round, b))
                bad = b;
        MT_CHECK(bad == r[i].len,
                 "round %d: bytes from rank %d wrong at %zu of %zu (got %#x, want %#x)", round,
                 r[i].peer, bad, r[i].len, bad < r[i].len ? got[bad] : 0,
                 bad < r[i].len ? pattern(r[i].peer, me, round, bad) : 0);
        MT_CHECK(got[r[i].len] == 0xee, "round %d: byte after rank %d's write written", round,
                 r[i].peer);
    }
    /* poisoned again for the round after next, which uses this set; every
     * peer's write of it comes after this rank started the next round */
    for (int i = 0; i < nr; i++)
        memset(tr->recv_buf + r[i].offset, 0xee, r[i].len);
    free(s);
    free(r);
}

/* A bad write exchange refused before anything moves: past a peer's
 * region (local; the transport stays usable). */
static void write_refusals(epc_tr_t *tr)
{
    epc_tr_msg_t past = {.peer = (tr->rank + 1) % nranks, .len = 64};
    void *req = NULL;
    past.remote = tr->peer_recv[past.peer] - 63;
    MT_CHECK(epc_tr_write_start(tr, &past, 1, NULL, 0, "past", &req) == EPC_ERR_INTERNAL &&
                 strstr(epc_last_error(NULL), "receive region") != NULL && req == NULL,
             "a write past the peer's region: %s", epc_last_error(NULL));
    MT_CHECK(epc_tr_reserve(tr, tr->send_cap, tr->recv_cap + 1) == EPC_ERR_INTERNAL &&
                 strstr(epc_last_error(NULL), "cannot grow") != NULL,
             "an exposed region grown: %s", epc_last_error(NULL));
    MT_CHECK(epc_tr_reserve(tr, tr->send_cap + 1, tr->recv_cap) == EPC_OK, "send region: %s",
             epc_last_error(NULL));
}

static int mode_writes(void)
{
    const char *env = getenv("EPC_TEST_WRITES");
    epc_ctx_t *ctx = create(64);
    epc_tr_t *tr;
    int exposed = -1, want = env != NULL && atoi(env) == 1;
    void *req = NULL;
    if (ctx == NULL)
        return mt_finish("test_comm_mpi writes");
    tr = ctx->comm.lane[0].tr;
    MT_CHECK(epc_tr_write_start(tr, NULL, 0, NULL, 0, "early", &req) == EPC_ERR_INTERNAL &&
                 strstr(epc_last_error(NULL), "before epc_tr_expose") != NULL,
             "a write exchange before the exposure: %s", epc_last_error(NULL));
    MT_CHECK(epc_tr_reserve(tr, (size_t)nranks * SLOT, 2 * (size_t)nranks * SLOT) == EPC_OK,
             "reserve: %s", epc_last_error(NULL));
    memset(tr->recv_buf, 0xee, tr->recv_cap);
    MT_CHECK(epc_tr_expose(tr, 1, &exposed) == EPC_OK && exposed == want,
             "exposed %d on %s, expected %d: %s", exposed, tr->ops->name, want,
             epc_last_error(NULL));
    for (int round = 0; exposed == 1 && round < 6; round++)
        write_round(tr, round);
    if (exposed == 1) /* nothing to write: done at once, nothing written */
        write_round(tr, -1);
    if (exposed == 1)
        write_refusals(tr);
    MT_CHECK(epc_ctx_destroy(ctx) == EPC_OK, "destroy: %s", epc_last_error(NULL));
    return mt_finish("test_comm_mpi writes");
}

int main(int argc, char **argv)
{
    mt_init(&argc, &argv);
    MPI_Comm_size(MPI_COMM_WORLD, &nranks);
    if (argc == 2 && !strcmp(argv[1], "data"))
        return mode_data();
    if (argc == 2 && !strcmp(argv[1], "timeout"))
        return mode_timeout();
    if (argc == 2 && !strcmp(argv[1], "mismatch"))
        return mode_mismatch();
    if (argc == 2 && !strcmp(argv[1], "leak"))
        return mode_leak();
    if (argc == 2 && !strcmp(argv[1], "writes"))
        return mode_writes();
    if (mt_rank == 0)
        fprintf(stderr, "usage: test_comm_mpi data|timeout|mismatch|leak|writes\n");
    MPI_Finalize();
    return 2;
}
