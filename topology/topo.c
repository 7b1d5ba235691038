/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * topo.c - the rank-to-node map over an MPI communicator, virtual nodes, and
 * every rank's hardware locality, gathered so that each rank knows all.
 *
 * Creation is collective and proceeds in phases separated by agreement
 * points (epc_mpi_agree): a rank that fails locally still takes part in the
 * next agreement, so every rank returns the same error in bounded time.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "mpi_util.h"
#include "params.h"
#include "topo.h"

const char *epc_link_class_name(epc_link_class_t cls)
{
    static const char *const names[] = {"self", "numa", "node", "net"};
    return (unsigned)cls < EPC_LINK_CLASS_COUNT ? names[cls] : "?";
}

/* Options after params > environment > default. */
typedef struct topo_opts {
    int ranks_per_node;
    const char *xml;
    int profile;
    double intra, inter;
    const char *intra_src, *inter_src;
} topo_opts_t;

/* Picks one bandwidth figure: params, else its variable, else the profile. */
static void pick_bw(double param, const epc_config_t *cfg, epc_cfg_id_t id, double prof,
                    double *val, const char **src, const char *profile_src)
{
    if (param > 0) {
        *val = param;
        *src = "params";
    } else if (epc_cfg_float(cfg, id) > 0) {
        *val = epc_cfg_float(cfg, id);
        *src = epc_cfg_name(id);
    } else {
        *val = prof;
        *src = profile_src;
    }
}

static epc_status_t resolve_opts(const epc_topo_params_t *p, epc_topo_t *t, topo_opts_t *o)
{
    const epc_config_t *cfg;
    epc_status_t st = epc_config_get(&cfg);
    if (st != EPC_OK)
        return st;
    if (p->ranks_per_node < 0)
        return epc_error(EPC_ERR_INVALID_ARG, "epc_topo_create: params->ranks_per_node = %d < 0",
                         p->ranks_per_node);
    if (p->intra_bw_gbs < 0 || p->inter_bw_gbs < 0)
        return epc_error(EPC_ERR_INVALID_ARG,
                         "epc_topo_create: params->intra_bw_gbs/inter_bw_gbs = %g/%g < 0",
                         p->intra_bw_gbs, p->inter_bw_gbs);
    o->ranks_per_node =
        p->ranks_per_node ? p->ranks_per_node : (int)epc_cfg_int(cfg, EPC_CFG_RANKS_PER_NODE);
    o->xml = p->xml_path ? p->xml_path : epc_cfg_string(cfg, EPC_CFG_TOPO_XML);
    o->profile = (int)epc_cfg_enum(cfg, EPC_CFG_HW_PROFILE);
    if (p->hw_profile != NULL && (o->profile = epc_topo_profile_index(p->hw_profile)) < 0)
        return epc_error(EPC_ERR_INVALID_ARG,
                         "epc_topo_create: params->hw_profile \"%s\" is not one of %s",
                         p->hw_profile, EPC_TOPO_PROFILE_NAMES);
    snprintf(t->profile_src, sizeof t->profile_src, "profile %s",
             epc_topo_profiles[o->profile].name);
    pick_bw(p->intra_bw_gbs, cfg, EPC_CFG_INTRA_BW_GBS, epc_topo_profiles[o->profile].intra,
            &o->intra, &o->intra_src, t->profile_src);
    pick_bw(p->inter_bw_gbs, cfg, EPC_CFG_INTER_BW_GBS, epc_topo_profiles[o->profile].inter,
            &o->inter, &o->inter_src, t->profile_src);
    return EPC_OK;
}

/* All ranks must use the same job-wide options: compare max and -min. */
static epc_status_t check_same(epc_topo_t *t, const topo_opts_t *o)
{
    double in[6] = {o->ranks_per_node, -o->ranks_per_node, o->intra,
                    -o->intra,         o->inter,           -o->inter};
    double out[6];
    static const char *const what[] = {"ranks_per_node (EPC_RANKS_PER_NODE)",
                                       "intra-node bandwidth", "inter-node bandwidth"};
    MPI_Request req;
    int rc = MPI_Iallreduce(in, out, 6, MPI_DOUBLE, MPI_MAX, t->comm, &req);
    epc_status_t st = epc_mpi_finish(rc, &req, epc_mpi_default_deadline(), &t->hdr,
                                     "epc_topo_create: MPI_Iallreduce(job-wide options)");
    if (st != EPC_OK)
        return st;
    for (int i = 0; i < 3; i++)
        if (out[2 * i] != -out[2 * i + 1])
            return epc_error_obj(&t->hdr, EPC_ERR_MISMATCH,
                                 "epc_topo_create: ranks disagree on %s: values from %g to %g",
                                 what[i], -out[2 * i + 1], out[2 * i]);
    return EPC_OK;
}

/* Node-local phase: which ranks share memory, and this rank's hardware. */
static epc_status_t probe_local(epc_topo_t *t, const topo_opts_t *o, epc_rank_rec_t *me,
                                MPI_Comm *shm)
{
    int rc, lrank, lsize, bound;
    epc_status_t st;
    epc_hw_t *hw = NULL;
    hwloc_bitmap_t set;
    MPI_Request req;
    /* MPI has no nonblocking split.  Every rank arrives here straight from
     * check_same, a collective bounded by the deadline that all completed,
     * with nothing in between that waits: a rank can only be missing here
     * if it died in those instructions, and a dead process ends an Open MPI
     * job (unless mpirun runs with --enable-recovery). */
    rc = MPI_Comm_split_type(t->comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, shm);
    if (rc != MPI_SUCCESS)
        return epc_mpi_error(&t->hdr, rc, "MPI_Comm_split_type(MPI_COMM_TYPE_SHARED)");
    MPI_Comm_rank(*shm, &lrank);
    MPI_Comm_size(*shm, &lsize);
    rc = MPI_Iallreduce(&t->my_rank, &me->phys_leader, 1, MPI_INT, MPI_MIN, *shm, &req);
    if ((st = epc_mpi_finish(rc, &req, epc_mpi_default_deadline(), &t->hdr,
                             "epc_topo_create: MPI_Iallreduce(node leader)")) != EPC_OK)
        return st;
    me->phys_local = lrank;
    me->phys_size = lsize;
    if ((st = epc_hw_load(o->xml, NULL, &hw)) != EPC_OK)
        return st;
    snprintf(t->hw_source, sizeof t->hw_source, "%s", epc_hw_source(hw));
    set = hwloc_bitmap_alloc();
    st = set ? epc_hw_rank_cpuset(hw, lrank, lsize, set, &bound)
             : epc_error(EPC_ERR_NO_MEMORY, "hwloc_bitmap_alloc");
    if (st == EPC_OK)
        st = epc_hw_locality(hw, set, &me->loc);
    me->bound = bound;
    epc_hw_summary(hw, &me->sum);
    hwloc_bitmap_free(set);
    t->hw = hw;
    return st;
}

/* Node-local exchange, so each rank can pick its GPU and NIC knowing what
 * the other ranks of its machine are near. */
static epc_status_t assign_devices(epc_topo_t *t, MPI_Comm shm, epc_rank_rec_t *me)
{
    epc_rank_rec_t *peers = malloc((size_t)me->phys_size * sizeof *peers);
    epc_hw_locality_t *loc = malloc((size_t)me->phys_size * sizeof *loc);
    char(*gpu)[EPC_HW_NAME_MAX] = malloc((size_t)me->phys_size * sizeof *gpu);
    char(*nic)[EPC_HW_NAME_MAX] = malloc((size_t)me->phys_size * sizeof *nic);
    epc_status_t st = EPC_OK;
    MPI_Request req;
    int rc;
    if (!peers || !loc || !gpu || !nic) {
        st = epc_error(EPC_ERR_NO_MEMORY, "epc_topo_create: %d local ranks", me->phys_size);
        goto out;
    }
    rc = MPI_Iallgather(me, (int)sizeof *me, MPI_BYTE, peers, (int)sizeof *me, MPI_BYTE, shm, &req);
    st = epc_mpi_finish(rc, &req, epc_mpi_default_deadline(), &t->hdr,
                        "epc_topo_create: MPI_Iallgather(node-local records)");
    if (st != EPC_OK)
        goto out;
    for (int i = 0; i < me->phys_size; i++)
        loc[i] = peers[i].loc;
    epc_hw_assign(t->hw, loc, me->phys_size, gpu, nic);
    memcpy(me->gpu, gpu[me->phys_local], sizeof me->gpu);
    memcpy(me->nic, nic[me->phys_local], sizeof me->nic);
out:
    free(peers);
    free(loc);
    free(gpu);
    free(nic);
    return st;
}

/*
 * From the gathered records: physical nodes (by leader), their split into
 * virtual nodes, then dense node ids ordered by lowest rank.  Pure, so every
 * rank reaches the same map and the same verdict without communicating.
 */
static epc_status_t build_map(epc_topo_t *t, int rpn, int rpn_from_env)
{
    int n = t->nranks, nn = 0;
    int *first = malloc((size_t)n * sizeof *first); /* lowest rank of each node key */
    if (first == NULL)
        return epc_error(EPC_ERR_NO_MEMORY, "epc_topo_create: map of %d ranks", n);
    for (int r = 0; r < n; r++) {
        const epc_rank_rec_t *rec = &t->recs[r];
        if (rpn > 0 && rec->phys_size % rpn != 0) {
            free(first);
            return epc_error(EPC_ERR_INVALID_ARG,
                             "%s=%d does not divide the %d ranks of host %s (node of rank %d)",
                             rpn_from_env ? "EPC_RANKS_PER_NODE" : "params->ranks_per_node", rpn,
                             rec->phys_size, rec->host, rec->phys_leader);
        }
    }
    /* Ranks of one virtual node: same physical leader, same block. */
    for (int r = 0; r < n; r++) {
        const epc_rank_rec_t *rec = &t->recs[r];
        int block = rpn > 0 ? rec->phys_local / rpn : 0, k;
        for (k = 0; k < nn; k++) {
            const epc_rank_rec_t *f = &t->recs[first[k]];
            if (f->phys_leader == rec->phys_leader && (rpn > 0 ? f->phys_local / rpn : 0) == block)
                break;
        }
        if (k == nn)
            first[nn++] = r; /* ranks are visited in order: ids follow lowest rank */
        t->node_of[r] = k;
        t->local_rank[r] = rpn > 0 ? rec->phys_local % rpn : rec->phys_local;
    }
    free(first);
    t->nnodes = nn;
    return epc_topo_index_nodes(t);
}

/* Hostnames must agree with shared-memory domains; a disagreement is worth
 * a warning (containers, namespaces) but the MPI view is what counts. */
static void check_hosts(const epc_topo_t *t)
{
    if (t->my_rank != 0)
        return;
    for (int r = 1; r < t->nranks; r++) {
        const epc_rank_rec_t *a = &t->recs[r], *b = &t->recs[a->phys_leader];
        if (strcmp(a->host, b->host) != 0)
            epc_log(EPC_LOG_WARN,
                    "ranks %d (%s) and %d (%s) share memory but report different hosts", r, a->host,
                    a->phys_leader, b->host);
        else if (a->phys_leader == r)
            for (int q = 0; q < r; q++)
                if (t->recs[q].phys_leader == q && strcmp(t->recs[q].host, a->host) == 0)
                    epc_log(EPC_LOG_WARN,
                            "host %s appears as two nodes (ranks %d and %d do not share memory)",
                            a->host, q, r);
    }
}

epc_status_t epc_topo_index_nodes(epc_topo_t *t)
{
    int n = t->nranks, nn = t->nnodes;
    t->node_start = calloc((size_t)nn + 1, sizeof *t->node_start);
    t->node_ranks = malloc((size_t)n * sizeof *t->node_ranks);
    if (t->node_start == NULL || t->node_ranks == NULL)
        return epc_error(EPC_ERR_NO_MEMORY, "epc_topo_create: node index of %d ranks", n);
    for (int r = 0; r < n; r++)
        t->node_start[t->node_of[r] + 1]++;
    for (int k = 0; k < nn; k++)
        t->node_start[k + 1] += t->node_start[k];
    for (int r = 0; r < n; r++) {
        int k = t->node_of[r], lr = t->local_rank[r];
        if (lr >= t->node_start[k + 1] - t->node_start[k])
            return epc_error(EPC_ERR_INTERNAL, "topology: local rank %d of rank %d", lr, r);
        t->node_ranks[t->node_start[k] + lr] = r;
    }
    t->uniform_rpn = t->node_start[1] - t->node_start[0];
    for (int k = 1; k < nn; k++)
        if (t->node_start[k + 1] - t->node_start[k] != t->uniform_rpn)
            t->uniform_rpn = 0;
    return EPC_OK;
}

static epc_status_t gather_all(epc_topo_t *t, const epc_rank_rec_t *me)
{
    MPI_Request req;
    int rc = MPI_Iallgather(me, (int)sizeof *me, MPI_BYTE, t->recs, (int)sizeof *me, MPI_BYTE,
                            t->comm, &req);
    return epc_mpi_finish(rc, &req, epc_mpi_default_deadline(), &t->hdr,
                          "epc_topo_create: MPI_Iallgather(rank records)");
}

static epc_status_t alloc_topo(MPI_Comm comm, epc_topo_t **tp)
{
    epc_topo_t *t = calloc(1, sizeof *t);
    epc_status_t st;
    if (t == NULL)
        return epc_error(EPC_ERR_NO_MEMORY, "epc_topo_create: topology object");
    t->hdr.magic = EPC_MAGIC_TOPO;
    t->comm = MPI_COMM_NULL;
    if ((st = epc_mpi_dup(comm, &t->comm)) != EPC_OK) {
        free(t);
        return st;
    }
    MPI_Comm_rank(t->comm, &t->my_rank);
    MPI_Comm_size(t->comm, &t->nranks);
    t->node_of = malloc((size_t)t->nranks * sizeof *t->node_of);
    t->local_rank = malloc((size_t)t->nranks * sizeof *t->local_rank);
    t->recs = calloc((size_t)t->nranks, sizeof *t->recs);
    *tp = t;
    /* Reported at the first agreement, so peers do not wait for this rank. */
    if (!t->node_of || !t->local_rank || !t->recs)
        return epc_error(EPC_ERR_NO_MEMORY, "epc_topo_create: %d ranks", t->nranks);
    return EPC_OK;
}

/* Runs the phases; each ends in an agreement so all ranks stop together. */
static epc_status_t create_phases(epc_topo_t *t, const epc_topo_params_t *p, epc_status_t st)
{
    topo_opts_t o = {0};
    epc_rank_rec_t me;
    MPI_Comm shm = MPI_COMM_NULL;
    int len = 0;
    memset(&me, 0, sizeof me);
    MPI_Get_processor_name(me.host, &len);
    if (st == EPC_OK)
        st = resolve_opts(p, t, &o);
    if ((st = epc_mpi_agree(t->comm, st, &t->hdr, epc_mpi_default_deadline())) != EPC_OK)
        return st;
    if ((st = check_same(t, &o)) != EPC_OK)
        return st; /* the Allreduce gave every rank the same values */
    st = probe_local(t, &o, &me, &shm);
    if ((st = epc_mpi_agree(t->comm, st, &t->hdr, epc_mpi_default_deadline())) == EPC_OK) {
        st = assign_devices(t, shm, &me);
        st = epc_mpi_agree(t->comm, st, &t->hdr, epc_mpi_default_deadline());
    }
    if (shm != MPI_COMM_NULL)
        MPI_Comm_free(&shm);
    if (st != EPC_OK || (st = gather_all(t, &me)) != EPC_OK)
        return st;
    /* The verdict is the same everywhere; agreeing covers a local ENOMEM. */
    st = build_map(t, o.ranks_per_node, p->ranks_per_node == 0);
    if ((st = epc_mpi_agree(t->comm, st, &t->hdr, epc_mpi_default_deadline())) != EPC_OK)
        return st;
    check_hosts(t);
    t->bw.intra_gbs = o.intra;
    t->bw.inter_gbs = o.inter;
    t->bw.profile = epc_topo_profiles[o.profile].name;
    t->bw.intra_source = o.intra_src;
    t->bw.inter_source = o.inter_src;
    return EPC_OK;
}

/* Checks that need no communication; a failure here still joins the first
 * agreement, so peers of a rank with bad arguments do not wait for it. */
static epc_status_t check_args(const epc_topo_params_t *params, epc_topo_t **topo_p,
                               epc_topo_params_t *p)
{
    static const epc_params_layouts_t layouts = {
        "EPC_TOPO_PARAMS_INIT", sizeof(epc_topo_params_t), {0}};
    if (topo_p == NULL)
        return epc_error(EPC_ERR_INVALID_ARG, "epc_topo_create: topo_p is NULL");
    *p = (epc_topo_params_t)EPC_TOPO_PARAMS_INIT; /* NULL params: every default */
    return params == NULL ? EPC_OK
                          : epc_params_load(p, params, &layouts, NULL, "epc_topo_create", "params");
}

epc_status_t epc_topo_create(MPI_Comm comm, const epc_topo_params_t *params, epc_topo_t **topo_p)
{
    epc_topo_params_t p, defaults = EPC_TOPO_PARAMS_INIT;
    epc_topo_t *t = NULL;
    epc_status_t st, st_alloc;
    int init = 0, fini = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fini);
    if (!init || fini)
        return epc_error(EPC_ERR_INVALID_ARG, "epc_topo_create: MPI is %s",
                         fini ? "finalized" : "not initialized");
    if (comm == MPI_COMM_NULL)
        return epc_error(EPC_ERR_INVALID_ARG, "epc_topo_create: comm is MPI_COMM_NULL");
    st = check_args(params, topo_p, &p);
    st_alloc = alloc_topo(comm, &t);
    if (st == EPC_OK)
        st = st_alloc;
    if (t != NULL && t->comm != MPI_COMM_NULL) {
        int world = 0;
        MPI_Comm_rank(MPI_COMM_WORLD, &world);
        epc_log_set_rank(world);
        st = create_phases(t, st == EPC_OK ? &p : &defaults, st);
    }
    if (t != NULL && t->comm != MPI_COMM_NULL)
        MPI_Comm_free(&t->comm);
    if (st != EPC_OK) {
        epc_topo_destroy(t);
        return st;
    }
    *topo_p = t;
    return EPC_OK;
}

void epc_topo_destroy(epc_topo_t *t)
{
    if (t == NULL || t->hdr.magic != EPC_MAGIC_TOPO)
        return;
    t->hdr.magic = EPC_MAGIC_DEAD;
    epc_hw_free(t->hw);
    free(t->node_of);
    free(t->local_rank);
    free(t->node_start);
    free(t->node_ranks);
    free(t->recs);
    free(t);
}
