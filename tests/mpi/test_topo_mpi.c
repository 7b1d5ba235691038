/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * test_topo_mpi - the rank-to-node map on every rank, checked against an
 * independent computation from MPI itself, plus failures that must reach
 * every rank.  Modes:
 *   map NODES RPN   expect NODES nodes of RPN ranks (EPC_RANKS_PER_NODE may
 *                   be set by the caller), then the common checks
 *   badsplit N      EPC_RANKS_PER_NODE=N must fail on every rank, naming it
 *   xml FILE        the DGX-class XML: rank r gets cuda r and mlx5_r
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "epcomm.h"
#include "mpi_test.h"

static int nranks;

/* The same array on every rank?  Compared through MAX and MIN. */
static int agreed(const int *v, int n)
{
    int *mx = malloc((size_t)n * sizeof *mx), *mn = malloc((size_t)n * sizeof *mn), same = 1;
    MPI_Allreduce(v, mx, n, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    MPI_Allreduce(v, mn, n, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    for (int i = 0; i < n; i++)
        same &= mx[i] == mn[i];
    free(mx);
    free(mn);
    return same;
}

/* Reference: node = (shared-memory group, block of rpn) ordered by lowest
 * rank, computed here without the library. */
static void reference_map(int rpn, int *node, int *local)
{
    MPI_Comm shm;
    int lrank, leader, key, *keys = malloc((size_t)nranks * 2 * sizeof *keys), nn = 0;
    int *first = malloc((size_t)nranks * sizeof *first);
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &shm);
    MPI_Comm_rank(shm, &lrank);
    MPI_Allreduce(&mt_rank, &leader, 1, MPI_INT, MPI_MIN, shm);
    MPI_Comm_free(&shm);
    key = rpn ? lrank / rpn : 0;
    int mine[2] = {leader, key};
    MPI_Allgather(mine, 2, MPI_INT, keys, 2, MPI_INT, MPI_COMM_WORLD);
    int *lr = malloc((size_t)nranks * sizeof *lr);
    MPI_Allgather(&lrank, 1, MPI_INT, lr, 1, MPI_INT, MPI_COMM_WORLD);
    for (int r = 0; r < nranks; r++) {
        int k;
        for (k = 0; k < nn; k++)
            if (keys[2 * first[k]] == keys[2 * r] && keys[2 * first[k] + 1] == keys[2 * r + 1])
                break;
        if (k == nn)
            first[nn++] = r;
        node[r] = k;
        local[r] = rpn ? lr[r] % rpn : lr[r];
    }
    free(keys);
    free(first);
    free(lr);
}

static void check_map(epc_topo_t *t, int want_nodes, int want_rpn)
{
    int nodes = -1, rpn = -1, n = -1, me = -1, count;
    int *node = malloc((size_t)nranks * sizeof *node),
        *local = malloc((size_t)nranks * sizeof *local);
    int *rnode = malloc((size_t)nranks * sizeof *rnode),
        *rlocal = malloc((size_t)nranks * sizeof *rlocal);
    int *ranks = malloc((size_t)nranks * sizeof *ranks);
    MT_CHECK(epc_topo_num_nodes(t, &nodes) == EPC_OK && nodes == want_nodes, "nodes %d != %d",
             nodes, want_nodes);
    MT_CHECK(epc_topo_ranks_per_node(t, &rpn) == EPC_OK && rpn == want_rpn, "rpn %d != %d", rpn,
             want_rpn);
    MT_CHECK(epc_topo_num_ranks(t, &n) == EPC_OK && n == nranks, "ranks %d", n);
    MT_CHECK(epc_topo_my_rank(t, &me) == EPC_OK && me == mt_rank, "my rank %d", me);
    reference_map(want_rpn == nranks ? 0 : want_rpn, rnode, rlocal);
    for (int r = 0; r < nranks; r++) {
        epc_rank_info_t info = EPC_RANK_INFO_INIT;
        MT_CHECK(epc_topo_node_of(t, r, &node[r]) == EPC_OK && node[r] == rnode[r],
                 "rank %d node %d, reference %d", r, node[r], rnode[r]);
        MT_CHECK(epc_topo_local_rank(t, r, &local[r]) == EPC_OK && local[r] == rlocal[r],
                 "rank %d local %d, reference %d", r, local[r], rlocal[r]);
        MT_CHECK(epc_topo_rank_info(t, r, &info) == EPC_OK && info.node == node[r] &&
                     info.local_rank == local[r] && info.rank == r && info.host[0] != '\0',
                 "rank_info of %d", r);
    }
    MT_CHECK(agreed(node, nranks) && agreed(local, nranks), "ranks disagree on the map");
    for (int k = 0; k < nodes; k++) {
        epc_node_info_t ni = EPC_NODE_INFO_INIT;
        int size = -1;
        MT_CHECK(epc_topo_node_ranks(t, k, ranks, nranks, &count) == EPC_OK && count == want_rpn,
                 "node %d has %d ranks", k, count);
        MT_CHECK(epc_topo_local_size(t, k, &size) == EPC_OK && size == count, "local size %d",
                 size);
        for (int i = 0; i < count; i++)
            MT_CHECK(node[ranks[i]] == k && local[ranks[i]] == i, "node %d entry %d = rank %d", k,
                     i, ranks[i]);
        MT_CHECK(epc_topo_node_info(t, k, &ni) == EPC_OK && ni.num_ranks == count &&
                     ni.first_rank == ranks[0] && ni.cores >= 1,
                 "node_info %d", k);
    }
    for (int a = 0; a < nranks; a++)
        for (int b = 0; b < nranks; b++) {
            epc_link_class_t c;
            MT_CHECK(epc_topo_link_class(t, a, b, &c) == EPC_OK, "link %d %d", a, b);
            MT_CHECK(a == b               ? c == EPC_LINK_SELF
                     : node[a] != node[b] ? c == EPC_LINK_OTHER_NODE
                                          : c == EPC_LINK_SAME_NUMA || c == EPC_LINK_SAME_NODE,
                     "link class %d-%d is %s", a, b, epc_link_class_name(c));
        }
    free(node), free(local), free(rnode), free(rlocal), free(ranks);
}

static void check_bad_accessors(epc_topo_t *t)
{
    int v, buf[1];
    epc_link_class_t c;
    epc_rank_info_t ri = EPC_RANK_INFO_INIT;
    MT_CHECK(epc_topo_node_of(t, -1, &v) == EPC_ERR_INVALID_ARG, "rank -1");
    MT_CHECK(strstr(epc_last_error(NULL), "rank -1") != NULL, "message: %s", epc_last_error(NULL));
    MT_CHECK(epc_topo_node_of(t, nranks, &v) == EPC_ERR_INVALID_ARG, "rank n");
    MT_CHECK(epc_topo_local_rank(NULL, 0, &v) == EPC_ERR_INVALID_ARG, "NULL topo");
    MT_CHECK(epc_topo_num_nodes(t, NULL) == EPC_ERR_INVALID_ARG, "NULL out");
    MT_CHECK(epc_topo_link_class(t, 0, nranks, &c) == EPC_ERR_INVALID_ARG, "rank_b");
    MT_CHECK(epc_topo_local_size(t, 9999, &v) == EPC_ERR_INVALID_ARG, "node 9999");
    MT_CHECK(epc_topo_rank_info(t, 0, NULL) == EPC_ERR_INVALID_ARG, "NULL info");
    MT_CHECK(epc_topo_node_ranks(t, 0, buf, 0, &v) == EPC_ERR_INVALID_ARG, "capacity 0");
    memset(&ri, 0, sizeof ri); /* not a topology: its first word is no magic */
    MT_CHECK(epc_topo_rank_info((epc_topo_t *)(void *)&ri, 0, &ri) == EPC_ERR_INVALID_ARG,
             "foreign pointer accepted");
}

/* Failures that start on one rank must reach all, as errors, not hangs. */
static void check_collective_failures(void)
{
    epc_topo_params_t p = EPC_TOPO_PARAMS_INIT;
    epc_topo_t *t = NULL;
    epc_status_t st;
    /* One rank passes a struct of unknown size. */
    if (mt_rank == nranks - 1)
        p.size = 8;
    st = epc_topo_create(MPI_COMM_WORLD, &p, &t);
    MT_CHECK(st == (mt_rank == nranks - 1 ? EPC_ERR_INVALID_ARG : EPC_ERR_PEER_FAILED) && t == NULL,
             "bad size: status %d", st);
    if (mt_rank != nranks - 1) {
        char want[32];
        snprintf(want, sizeof want, "rank %d", nranks - 1);
        MT_CHECK(strstr(epc_last_error(NULL), want) && strstr(epc_last_error(NULL), "params->size"),
                 "peer message: %s", epc_last_error(NULL));
    }
    /* Ranks disagree on the virtual node size. */
    p = EPC_TOPO_PARAMS_INIT;
    p.ranks_per_node = mt_rank == 0 ? 2 : 4;
    st = epc_topo_create(MPI_COMM_WORLD, &p, &t);
    MT_CHECK(st == EPC_ERR_MISMATCH && strstr(epc_last_error(NULL), "ranks_per_node"),
             "mismatch: %d %s", st, epc_last_error(NULL));
    /* One rank cannot load its hardware description. */
    p = EPC_TOPO_PARAMS_INIT;
    if (mt_rank == 1)
        p.xml_path = "/nonexistent/epc.xml";
    st = epc_topo_create(MPI_COMM_WORLD, &p, &t);
    MT_CHECK(st == (mt_rank == 1 ? EPC_ERR_TOPOLOGY : EPC_ERR_PEER_FAILED) &&
                 strstr(epc_last_error(NULL), "/nonexistent/epc.xml"),
             "peer failure: %d %s", st, epc_last_error(NULL));
    /* Unknown profile, on every rank. */
    p = EPC_TOPO_PARAMS_INIT;
    p.hw_profile = "a100";
    st = epc_topo_create(MPI_COMM_WORLD, &p, &t);
    MT_CHECK(st == EPC_ERR_INVALID_ARG && strstr(epc_last_error(NULL), "hw_profile"),
             "profile: %d %s", st, epc_last_error(NULL));
    MT_CHECK(epc_topo_create(MPI_COMM_NULL, NULL, &t) == EPC_ERR_INVALID_ARG, "MPI_COMM_NULL");
}

static void check_bandwidth(void)
{
    static const struct {
        const char *name;
        double intra, inter;
    } want[] = {
        {"h800", 160, 50}, {"h100-ib", 450, 50}, {"gb200-nvl72", 900, 50}, {"cpu-eth", 20, 12.5}};
    for (int i = 0; i < 4; i++) {
        epc_topo_params_t p = EPC_TOPO_PARAMS_INIT;
        epc_topo_t *t = NULL;
        epc_topo_bw_t bw = EPC_TOPO_BW_INIT;
        p.hw_profile = want[i].name;
        if (i == 3)
            p.inter_bw_gbs = 3.5; /* a params field beats the profile */
        MT_CHECK(epc_topo_create(MPI_COMM_WORLD, &p, &t) == EPC_OK, "%s", epc_last_error(NULL));
        if (t == NULL)
            continue;
        epc_topo_bandwidth(t, &bw);
        MT_CHECK(bw.intra_gbs == want[i].intra && !strcmp(bw.profile, want[i].name) &&
                     strstr(bw.intra_source, want[i].name),
                 "%s: intra %g from %s", want[i].name, bw.intra_gbs, bw.intra_source);
        MT_CHECK(i == 3 ? bw.inter_gbs == 3.5 && !strcmp(bw.inter_source, "params")
                        : bw.inter_gbs == want[i].inter,
                 "%s: inter %g from %s", want[i].name, bw.inter_gbs, bw.inter_source);
        epc_topo_destroy(t);
    }
}

static int mode_map(int want_nodes, int want_rpn)
{
    epc_topo_t *t = NULL;
    MT_CHECK(epc_topo_create(MPI_COMM_WORLD, NULL, &t) == EPC_OK, "create: %s",
             epc_last_error(NULL));
    if (t != NULL) {
        check_map(t, want_nodes, want_rpn);
        check_bad_accessors(t);
        epc_topo_destroy(t);
    }
    /* A params field wins over EPC_RANKS_PER_NODE. */
    if (nranks % 2 == 0) {
        epc_topo_params_t p = EPC_TOPO_PARAMS_INIT;
        p.ranks_per_node = 2;
        t = NULL;
        MT_CHECK(epc_topo_create(MPI_COMM_WORLD, &p, &t) == EPC_OK, "create: %s",
                 epc_last_error(NULL));
        if (t != NULL)
            check_map(t, nranks / 2, 2);
        epc_topo_destroy(t);
    }
    check_collective_failures();
    check_bandwidth();
    return mt_finish("test_topo_mpi map");
}

static int mode_badsplit(const char *n)
{
    epc_topo_t *t = NULL;
    double t0 = MPI_Wtime();
    epc_status_t st = epc_topo_create(MPI_COMM_WORLD, NULL, &t);
    char want[64];
    snprintf(want, sizeof want, "EPC_RANKS_PER_NODE=%s", n);
    MT_CHECK(st == EPC_ERR_INVALID_ARG && t == NULL, "status %d", st);
    MT_CHECK(strstr(epc_last_error(NULL), want) != NULL, "message lacks %s: %s", want,
             epc_last_error(NULL));
    snprintf(want, sizeof want, "the %d ranks", nranks);
    MT_CHECK(strstr(epc_last_error(NULL), want) != NULL, "message lacks '%s': %s", want,
             epc_last_error(NULL));
    MT_CHECK(MPI_Wtime() - t0 < 10.0, "took %.1f s", MPI_Wtime() - t0);
    return mt_finish("test_topo_mpi badsplit");
}

static int mode_xml(const char *file)
{
    epc_topo_params_t p = EPC_TOPO_PARAMS_INIT;
    epc_topo_t *t = NULL;
    epc_rank_info_t info = EPC_RANK_INFO_INIT;
    char want[32];
    const char *src = "";
    p.xml_path = file;
    MT_CHECK(epc_topo_create(MPI_COMM_WORLD, &p, &t) == EPC_OK, "create: %s", epc_last_error(NULL));
    if (t == NULL)
        return mt_finish("test_topo_mpi xml");
    epc_topo_hw_source(t, &src);
    MT_CHECK(strstr(src, "dgx8.xml") != NULL, "source %s", src);
    for (int r = 0; r < nranks; r++) {
        epc_link_class_t c;
        epc_topo_rank_info(t, r, &info);
        snprintf(want, sizeof want, "cuda%d", r);
        MT_CHECK(!strcmp(info.gpu, want), "rank %d gpu %s", r, info.gpu);
        snprintf(want, sizeof want, "mlx5_%d", r);
        MT_CHECK(!strcmp(info.nic, want), "rank %d nic %s", r, info.nic);
        MT_CHECK(info.package == r / 4 && info.numa == r / 4 && info.cores == 2 && info.bound,
                 "rank %d package %d numa %d cores %d", r, info.package, info.numa, info.cores);
        epc_topo_link_class(t, 0, r, &c);
        MT_CHECK(c == (r == 0  ? EPC_LINK_SELF
                       : r < 4 ? EPC_LINK_SAME_NUMA
                               : EPC_LINK_SAME_NODE),
                 "link 0-%d %s", r, epc_link_class_name(c));
    }
    epc_topo_destroy(t);
    return mt_finish("test_topo_mpi xml");
}

/* Rank 1 never calls: the others must time out within twice
 * EPC_TIMEOUT_MS instead of hanging.  The job then ends by MPI_Abort (rank
 * 1 is still asleep), with the number of failed checks as the exit code. */
static int mode_absent(void)
{
    const char *env = getenv("EPC_TIMEOUT_MS");
    double limit = 2.0 * (env ? atof(env) : 60000) / 1000.0, t0 = MPI_Wtime();
    int fails = 0;
    if (mt_rank == 1) {
        while (MPI_Wtime() - t0 < 3 * limit)
            usleep(10000);
        return 1; /* not reached: rank 0 aborts the job first */
    }
    epc_topo_t *t = NULL;
    epc_status_t st = epc_topo_create(MPI_COMM_WORLD, NULL, &t);
    MT_CHECK(st == EPC_ERR_TIMEOUT && t == NULL, "status %d: %s", st, epc_last_error(NULL));
    MT_CHECK(MPI_Wtime() - t0 < limit, "took %.1f s, limit %.1f s", MPI_Wtime() - t0, limit);
    if (mt_rank != 0) { /* report, then wait for rank 0's abort */
        MPI_Send(&mt_fail, 1, MPI_INT, 0, 99, MPI_COMM_WORLD);
        while (MPI_Wtime() - t0 < 3 * limit)
            usleep(10000);
        return 1;
    }
    fails = mt_fail;
    for (int r = 2; r < nranks; r++) {
        int f = 1;
        MPI_Recv(&f, 1, MPI_INT, r, 99, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        fails += f;
    }
    printf("test_topo_mpi absent: %d ranks timed out cleanly, %d failed checks\n", nranks - 1,
           fails);
    fflush(stdout);
    MPI_Abort(MPI_COMM_WORLD, fails);
    return fails;
}

int main(int argc, char **argv)
{
    mt_init(&argc, &argv);
    MPI_Comm_size(MPI_COMM_WORLD, &nranks);
    if (argc == 4 && !strcmp(argv[1], "map"))
        return mode_map(atoi(argv[2]), atoi(argv[3]));
    if (argc == 3 && !strcmp(argv[1], "badsplit"))
        return mode_badsplit(argv[2]);
    if (argc == 3 && !strcmp(argv[1], "xml"))
        return mode_xml(argv[2]);
    if (argc == 2 && !strcmp(argv[1], "absent"))
        return mode_absent();
    if (mt_rank == 0)
        fprintf(stderr, "usage: test_topo_mpi map NODES RPN | badsplit N | xml FILE\n");
    MPI_Finalize();
    return 2;
}
