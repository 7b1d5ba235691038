/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * epc_topo - what a cluster admin wants to see at a glance, in the spirit of
 * `nvidia-smi topo -m` and `lstopo`: one line per node, one per rank, the
 * link-class matrix for small jobs, and the bandwidth figures in force.
 *
 *   mpirun -np N epc_topo [--json] [--ranks-per-node N] [--xml FILE]
 *                         [--profile NAME]
 *
 * Rank 0 prints; any error is printed by every rank and exits non-zero.
 */
#include <epcomm.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MATRIX_MAX_RANKS 16

static void usage(FILE *f)
{
    fprintf(f, "usage: mpirun -np N epc_topo [options]\n"
               "  --json                one JSON document on rank 0\n"
               "  --ranks-per-node N    virtual nodes of N ranks (EPC_RANKS_PER_NODE)\n"
               "  --xml FILE            hwloc XML instead of this machine (EPC_TOPO_XML)\n"
               "  --profile NAME        h800|h100-ib|gb200-nvl72|cpu-eth (EPC_HW_PROFILE)\n"
               "  -h, --help\n");
}

/* Prints s as a JSON string. */
static void json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            printf("\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            printf("\\u%04x", *s);
        else
            putchar(*s);
    }
    putchar('"');
}

static const char *dash(const char *s)
{
    return s[0] ? s : "-";
}

static void print_table(const epc_topo_t *t, int nranks, int nnodes, int rpn)
{
    epc_topo_bw_t bw = EPC_TOPO_BW_INIT;
    const char *src;
    epc_topo_bandwidth(t, &bw);
    epc_topo_hw_source(t, &src);
    printf("# epc_topo: %d rank%s on %d node%s (", nranks, nranks > 1 ? "s" : "", nnodes,
           nnodes > 1 ? "s" : "");
    printf(rpn ? "%d ranks per node" : "uneven ranks per node", rpn);
    printf("), hardware: %s\n", src);
    printf("# bandwidth: intra-node %.1f GB/s (%s), inter-node %.1f GB/s (%s)\n", bw.intra_gbs,
           bw.intra_source, bw.inter_gbs, bw.inter_source);
    printf("#\n# %-4s %-16s %5s %5s %4s %4s %5s %4s  %-24s %s\n", "node", "host", "ranks", "first",
           "pkgs", "numa", "cores", "pus", "nics", "gpus");
    for (int k = 0; k < nnodes; k++) {
        epc_node_info_t n = EPC_NODE_INFO_INIT;
        epc_topo_node_info(t, k, &n);
        printf("  %-4d %-16s %5d %5d %4d %4d %5d %4d  %-24s %s\n", k, n.host, n.num_ranks,
               n.first_rank, n.packages, n.numa_nodes, n.cores, n.pus, dash(n.nics), dash(n.gpus));
    }
    printf("#\n# %-4s %4s %5s %-16s %-10s %5s %3s %4s %5s %-8s %-8s %-20s %s\n", "rank", "node",
           "local", "host", "cpuset", "bound", "pkg", "numa", "cores", "nic", "gpu", "nearest-nics",
           "nearest-gpus");
    for (int r = 0; r < nranks; r++) {
        epc_rank_info_t i = EPC_RANK_INFO_INIT;
        epc_topo_rank_info(t, r, &i);
        printf("  %-4d %4d %5d %-16s %-10s %5s %3d %4d %5d %-8s %-8s %-20s %s\n", r, i.node,
               i.local_rank, i.host, i.cpuset, i.bound ? "yes" : "no", i.package, i.numa, i.cores,
               dash(i.nic), dash(i.gpu), dash(i.nics), dash(i.gpus));
    }
}

static void print_matrix(const epc_topo_t *t, int nranks)
{
    if (nranks > MATRIX_MAX_RANKS) {
        printf("#\n# link-class matrix omitted for more than %d ranks\n", MATRIX_MAX_RANKS);
        return;
    }
    printf("#\n# link classes: self, numa (same NUMA node), node (same node), net (other node)\n");
    printf("# %4s", "");
    for (int b = 0; b < nranks; b++)
        printf(" %4d", b);
    printf("\n");
    for (int a = 0; a < nranks; a++) {
        printf("  %4d", a);
        for (int b = 0; b < nranks; b++) {
            epc_link_class_t c;
            epc_topo_link_class(t, a, b, &c);
            printf(" %4s", epc_link_class_name(c));
        }
        printf("\n");
    }
}

static void print_json(const epc_topo_t *t, int nranks, int nnodes, int rpn)
{
    epc_topo_bw_t bw = EPC_TOPO_BW_INIT;
    const char *src;
    epc_topo_bandwidth(t, &bw);
    epc_topo_hw_source(t, &src);
    printf("{\n  \"num_ranks\": %d,\n  \"num_nodes\": %d,\n  \"ranks_per_node\": %d,\n", nranks,
           nnodes, rpn);
    printf("  \"hw_source\": ");
    json_str(src);
    printf(",\n  \"bandwidth\": {\"profile\": \"%s\", \"intra_gbs\": %g, \"inter_gbs\": %g, "
           "\"intra_source\": \"%s\", \"inter_source\": \"%s\"},\n",
           bw.profile, bw.intra_gbs, bw.inter_gbs, bw.intra_source, bw.inter_source);
    printf("  \"nodes\": [");
    for (int k = 0; k < nnodes; k++) {
        epc_node_info_t n = EPC_NODE_INFO_INIT;
        epc_topo_node_info(t, k, &n);
        printf("%s\n    {\"node\": %d, \"host\": ", k ? "," : "", k);
        json_str(n.host);
        printf(", \"num_ranks\": %d, \"first_rank\": %d, \"packages\": %d, \"numa_nodes\": %d, "
               "\"cores\": %d, \"nics\": ",
               n.num_ranks, n.first_rank, n.packages, n.numa_nodes, n.cores);
        json_str(n.nics);
        printf(", \"gpus\": ");
        json_str(n.gpus);
        printf("}");
    }
    printf("\n  ],\n  \"ranks\": [");
    for (int r = 0; r < nranks; r++) {
        epc_rank_info_t i = EPC_RANK_INFO_INIT;
        epc_topo_rank_info(t, r, &i);
        printf("%s\n    {\"rank\": %d, \"node\": %d, \"local_rank\": %d, \"host\": ", r ? "," : "",
               r, i.node, i.local_rank);
        json_str(i.host);
        printf(", \"cpuset\": ");
        json_str(i.cpuset);
        printf(", \"package\": %d, \"numa\": %d, \"nic\": ", i.package, i.numa);
        json_str(i.nic);
        printf(", \"gpu\": ");
        json_str(i.gpu);
        printf("}");
    }
    printf("\n  ]\n}\n");
}

/* Parses argv into p; returns -1 to exit 0 (help), 1 on error, else 0. */
static int parse_args(int argc, char **argv, epc_topo_params_t *p, int *json)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end;
        if (!strcmp(a, "--json")) {
            *json = 1;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            return -1;
        } else if (v != NULL && !strcmp(a, "--ranks-per-node")) {
            long n = strtol(v, &end, 10);
            if (*end != '\0' || n < 1 || n > 65536) {
                fprintf(stderr, "epc_topo: --ranks-per-node '%s' is not an integer in 1..65536\n",
                        v);
                return 1;
            }
            p->ranks_per_node = (int)n;
            i++;
        } else if (v != NULL && !strcmp(a, "--xml")) {
            p->xml_path = argv[++i];
        } else if (v != NULL && !strcmp(a, "--profile")) {
            p->hw_profile = argv[++i];
        } else {
            fprintf(stderr, "epc_topo: unknown option or missing value: '%s'\n", a);
            return 1;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    epc_topo_params_t p = EPC_TOPO_PARAMS_INIT;
    epc_topo_t *t = NULL;
    int json = 0, rank, nranks, nnodes, rpn, rc;
    epc_status_t st;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    rc = parse_args(argc, argv, &p, &json);
    if (rc != 0) {
        if (rank == 0)
            usage(rc < 0 ? stdout : stderr);
        MPI_Finalize();
        return rc < 0 ? 0 : 2;
    }
    st = epc_topo_create(MPI_COMM_WORLD, &p, &t);
    if (st != EPC_OK) {
        fprintf(stderr, "epc_topo: rank %d: %s\n", rank, epc_last_error(NULL));
        fflush(stderr);
        /* Every rank returns the same status, except after a timeout or an
         * MPI failure, when a peer may be missing: then the whole job ends
         * here, or it could wait for that peer in MPI_Finalize. */
        if (st == EPC_ERR_TIMEOUT || st == EPC_ERR_TRANSPORT)
            MPI_Abort(MPI_COMM_WORLD, 1);
        MPI_Finalize();
        return 1;
    }
    epc_topo_num_ranks(t, &nranks);
    epc_topo_num_nodes(t, &nnodes);
    epc_topo_ranks_per_node(t, &rpn);
    if (rank == 0 && json) {
        print_json(t, nranks, nnodes, rpn);
    } else if (rank == 0) {
        print_table(t, nranks, nnodes, rpn);
        print_matrix(t, nranks);
    }
    fflush(stdout);
    epc_topo_destroy(t);
    MPI_Finalize();
    return 0;
}
