/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * placement_plan.c - planning a placement from per-expert loads.
 *
 * Both planners follow the steps of DeepSeek's EPLB (rebalance_experts,
 * one layer): (1) pack expert groups to nodes, (2) within each node give
 * the redundant slots one by one to the expert with the highest load per
 * replica, (3) pack the node's replicas to its ranks, each rank taking
 * S / R.  Packing is greedy: heaviest item first, to the lightest pack not
 * yet full (ties to the lower index everywhere).  EPLB stops there.  The
 * balanced planner then improves steps (1) and (3) by local search on the
 * busiest pack: swapping one of its items with a lighter item elsewhere,
 * and (step 3) turning a replica of a cooler expert into one more replica
 * of a hot expert the busiest rank holds.  A move is taken only when it
 * lowers (busiest load, sum of squared loads) lexicographically, so the
 * search ends; and epc_placement_plan keeps EPLB's own answer when that is
 * better still, so the balanced plan is never worse than EPLB's.
 */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "params.h"
#include "placement.h"

/* Moves the search tries at most per subproblem (a bound on its time). */
#define PLAN_MAX_MOVES 4096
/* Above this many slots per subproblem the replica moves (quadratic in
 * the slots) are skipped; swaps still run. */
#define PLAN_REPLICA_SEARCH_SLOTS 1024
#define PLAN_EPS 1e-9

/* Item indices sorted by weight, heaviest first, ties to the lower index. */
static void sort_desc(const double *w, int n, int *order)
{
    for (int i = 0; i < n; i++) {
        int j = i;
        for (; j > 0 && w[order[j - 1]] < w[i]; j--)
            order[j] = order[j - 1];
        order[j] = i;
    }
}

/* EPLB's balanced_packing: n items into m packs of n / m each; pack[i] and
 * rank_in_pack[i].  order and pw are scratch of n and m (+ m ints). */
static void pack_greedy(const double *w, int n, int m, int *pack, int *rank_in, int *order,
                        double *pw, int *items)
{
    int per = n / m;
    if (per == 1) {
        for (int i = 0; i < n; i++) {
            pack[i] = i;
            rank_in[i] = 0;
        }
        return;
    }
    sort_desc(w, n, order);
    for (int p = 0; p < m; p++) {
        pw[p] = 0.0;
        items[p] = 0;
    }
    for (int o = 0; o < n; o++) {
        int i = order[o], best = -1;
        for (int p = 0; p < m; p++)
            if (items[p] < per && (best < 0 || pw[p] < pw[best]))
                best = p;
        pack[i] = best;
        rank_in[i] = items[best]++;
        pw[best] += w[i];
    }
}

/* EPLB's replicate_experts: phy2log [ns] of n logical items, count [n];
 * only the first nrep items get more than one slot. */
static void replicate(const double *w, int n, int nrep, int ns, int *phy2log, int *count)
{
    for (int e = 0; e < n; e++) {
        phy2log[e] = e;
        count[e] = 1;
    }
    for (int i = n; i < ns; i++) {
        int best = 0;
        for (int e = 1; e < nrep; e++)
            if (w[e] / count[e] > w[best] / count[best])
                best = e;
        phy2log[i] = best;
        count[best]++;
    }
}

/* A packing in search: pack p holds ids item[p * per .. (p + 1) * per);
 * id x weighs wt[x] / cnt[x]; ids from nrep on keep their one slot. */
typedef struct packing {
    int packs, per, nids, nrep;
    int *item, *cnt;
    const double *wt;
    double *load; /* [packs] */
} packing_t;

static double unit(const packing_t *k, int id)
{
    return k->wt[id] / k->cnt[id];
}

static void loads(packing_t *k)
{
    for (int p = 0; p < k->packs; p++) {
        k->load[p] = 0.0;
        for (int i = 0; i < k->per; i++)
            k->load[p] += unit(k, k->item[p * k->per + i]);
    }
}

static int busiest(const packing_t *k)
{
    int a = 0;
    for (int p = 1; p < k->packs; p++)
        if (k->load[p] > k->load[a])
            a = p;
    return a;
}

/* The best swap of an item of pack a with one of another pack that lowers
 * the larger of the two loads below a's; applies it, returns 1 if any. */
static int swap_move(packing_t *k, int a)
{
    double best = k->load[a] - PLAN_EPS;
    int bi = -1, bj = -1;
    for (int i = a * k->per; i < (a + 1) * k->per; i++)
        for (int j = 0; j < k->packs * k->per; j++) {
            int b = j / k->per;
            double d = unit(k, k->item[i]) - unit(k, k->item[j]), peak;
            if (b == a || d <= PLAN_EPS)
                continue;
            peak = k->load[a] - d > k->load[b] + d ? k->load[a] - d : k->load[b] + d;
            if (peak < best) {
                best = peak;
                bi = i;
                bj = j;
            }
        }
    if (bi < 0)
        return 0;
    int t = k->item[bi];
    k->item[bi] = k->item[bj];
    k->item[bj] = t;
    loads(k);
    return 1;
}

/* (busiest load, sum of squares) of the packing if slot j held id x. */
static void score_if(packing_t *k, int j, int x, double *mx, double *sq)
{
    int y = k->item[j];
    k->item[j] = x;
    k->cnt[y]--;
    k->cnt[x]++;
    loads(k);
    *mx = 0.0;
    *sq = 0.0;
    for (int p = 0; p < k->packs; p++) {
        *mx = k->load[p] > *mx ? k->load[p] : *mx;
        *sq += k->load[p] * k->load[p];
    }
    k->cnt[x]--;
    k->cnt[y]++;
    k->item[j] = y;
}

/* The best conversion of a replica of some id y (with >= 2 replicas) into
 * one more replica of an id x that pack a holds; applies it if it lowers
 * (busiest, sum of squares).  Returns 1 if applied. */
static int replica_move(packing_t *k, int a)
{
    double mx0 = k->load[a], sq0 = 0.0, bmx, bsq;
    int bj = -1, bx = -1, n = k->packs * k->per;
    for (int p = 0; p < k->packs; p++)
        sq0 += k->load[p] * k->load[p];
    bmx = mx0;
    bsq = sq0;
    for (int i = a * k->per; i < (a + 1) * k->per; i++) {
        int x = k->item[i];
        for (int j = 0; j < n; j++) {
            int y = k->item[j];
            double mx, sq;
            if (y == x || k->cnt[y] < 2 || x >= k->nrep)
                continue;
            score_if(k, j, x, &mx, &sq);
            if (mx < bmx - PLAN_EPS || (mx < bmx + PLAN_EPS && sq < bsq - PLAN_EPS)) {
                bmx = mx;
                bsq = sq;
                bj = j;
                bx = x;
            }
        }
    }
    loads(k);
    if (bj < 0)
        return 0;
    k->cnt[k->item[bj]]--;
    k->cnt[bx]++;
    k->item[bj] = bx;
    loads(k);
    return 1;
}

/* Local search on the busiest pack until no move helps (or the bound). */
static void improve(packing_t *k, int replicas)
{
    loads(k);
    for (int m = 0; m < PLAN_MAX_MOVES; m++) {
        int a = busiest(k);
        if (swap_move(k, a))
            continue;
        if (!replicas || k->packs * k->per > PLAN_REPLICA_SEARCH_SLOTS || !replica_move(k, a))
            break;
    }
}

/* Scratch of one plan, sized for E experts and S slots. */
typedef struct plan_work {
    int *a, *b, *c, *d, *e, *f;
    double *w, *x;
} plan_work_t;

static int work_alloc(plan_work_t *wk, int E, int S)
{
    int n = E > S ? E : S;
    wk->a = malloc((size_t)n * sizeof(int));
    wk->b = malloc((size_t)n * sizeof(int));
    wk->c = malloc((size_t)n * sizeof(int));
    wk->d = malloc((size_t)n * sizeof(int));
    wk->e = malloc((size_t)n * sizeof(int));
    wk->f = malloc((size_t)n * sizeof(int));
    wk->w = calloc((size_t)n, sizeof(double)); /* calloc: no reads of unset loads */
    wk->x = malloc((size_t)n * sizeof(double));
    return wk->a && wk->b && wk->c && wk->d && wk->e && wk->f && wk->w && wk->x ? 0 : -1;
}

static void work_free(plan_work_t *wk)
{
    free(wk->a);
    free(wk->b);
    free(wk->c);
    free(wk->d);
    free(wk->e);
    free(wk->f);
    free(wk->w);
    free(wk->x);
}

/* Step 1: mlog2log [E], node-major: the groups packed to nodes. */
static void groups_to_nodes(const double *weight, int E, int G, int nodes, int search,
                            plan_work_t *wk, int *mlog2log)
{
    int gs = E / G, gpn = G / nodes, *pack = wk->a, *rin = wk->b;
    double *tpg = wk->w;
    for (int g = 0; g < G; g++) {
        tpg[g] = 0.0;
        for (int j = 0; j < gs; j++)
            tpg[g] += weight[g * gs + j];
    }
    pack_greedy(tpg, G, nodes, pack, rin, wk->c, wk->x, wk->d);
    if (search && gpn > 1) {
        int *cnt = wk->e, *item = wk->f;
        packing_t k = {nodes, gpn, G, G, item, cnt, tpg, wk->x};
        for (int g = 0; g < G; g++) {
            cnt[g] = 1;
            item[pack[g] * gpn + rin[g]] = g;
        }
        improve(&k, 0);
        for (int q = 0; q < G; q++) {
            pack[item[q]] = q / gpn;
            rin[item[q]] = q % gpn;
        }
    }
    for (int g = 0; g < G; g++)
        for (int j = 0; j < gs; j++)
            mlog2log[(pack[g] * gpn + rin[g]) * gs + j] = g * gs + j;
}

/* Steps 2 and 3 for the n items wm [n] of one node with ns slots over m
 * ranks (only the first nrep replicated): local ids of the node's slots,
 * rank-major, in out; their slot counts stay in wk->b. */
static void node_slots(const double *wm, int n, int nrep, int ns, int m, int search,
                       plan_work_t *wk, int *out)
{
    int *phy2mlog = wk->a, *cnt = wk->b, *pack = wk->c, *rin = wk->d, per = ns / m;
    double *tpp = wk->w;
    replicate(wm, n, nrep, ns, phy2mlog, cnt);
    for (int i = 0; i < ns; i++)
        tpp[i] = wm[phy2mlog[i]] / cnt[phy2mlog[i]];
    pack_greedy(tpp, ns, m, pack, rin, wk->e, wk->x, wk->f);
    for (int i = 0; i < ns; i++)
        out[pack[i] * per + rin[i]] = phy2mlog[i];
    if (search) {
        packing_t k = {m, per, n, nrep, out, cnt, wm, wk->x};
        improve(&k, 1);
    }
}

/* Both planners: search 0 is EPLB, 1 the balanced planner. */
static int plan(const double *weight, int E, int S, int G, int nodes, int R, int search,
                int32_t *phy2log)
{
    plan_work_t wk;
    int *mlog2log = malloc((size_t)E * sizeof *mlog2log);
    int *local = malloc((size_t)S * sizeof *local), rc = -1;
    double *wm = malloc((size_t)E * sizeof *wm);
    if (G % nodes != 0) /* EPLB's rule: global balancing, all ranks one node */
        G = nodes = 1;
    if (work_alloc(&wk, E, S) == 0 && mlog2log && local && wm) {
        int en = E / nodes, sn = S / nodes;
        groups_to_nodes(weight, E, G, nodes, search, &wk, mlog2log);
        for (int node = 0; node < nodes; node++) {
            for (int j = 0; j < en; j++)
                wm[j] = weight[mlog2log[node * en + j]];
            node_slots(wm, en, en, sn, R / nodes, search, &wk, local);
            for (int q = 0; q < sn; q++)
                phy2log[node * sn + q] = mlog2log[node * en + local[q]];
        }
        rc = 0;
    }
    work_free(&wk);
    free(mlog2log);
    free(local);
    free(wm);
    return rc;
}

static int spill_alloc(epc_spill_t *sp, int E, int N, int R, int S)
{
    sp->E = E;
    sp->nodes = N;
    sp->ranks = R;
    sp->expert = calloc((size_t)S, sizeof *sp->expert);
    sp->node = calloc((size_t)S, sizeof *sp->node);
    sp->x = calloc((size_t)S, sizeof *sp->x);
    sp->cap = calloc((size_t)S, sizeof *sp->cap);
    sp->from = calloc((size_t)N * N, sizeof *sp->from);
    sp->on = calloc((size_t)E * N, sizeof *sp->on);
    sp->count = calloc((size_t)E, sizeof *sp->count);
    sp->budget = calloc((size_t)N, sizeof *sp->budget);
    sp->group_at = calloc((size_t)N, sizeof *sp->group_at);
    sp->homes = calloc((size_t)E, sizeof *sp->homes);
    sp->load = calloc((size_t)N, sizeof *sp->load);
    return sp->expert && sp->node && sp->x && sp->cap && sp->from && sp->on && sp->count &&
                   sp->budget && sp->group_at && sp->homes && sp->load
               ? 0
               : -1;
}

static void spill_free(epc_spill_t *sp)
{
    free(sp->expert);
    free(sp->node);
    free(sp->x);
    free(sp->cap);
    free(sp->from);
    free(sp->on);
    free(sp->count);
    free(sp->budget);
    free(sp->group_at);
    free(sp->homes);
    free(sp->load);
}

/* One node of a spill plan: its own experts (the load left to them after
 * the spills, replicable) then its spill replicas (one slot each) through
 * steps 2 and 3; its slots into phy2log.  wm and ids: scratch of sn. */
static void spill_node(const epc_spill_t *sp, const int *mlog2log, const double *rem, int node,
                       int sn, int m, plan_work_t *wk, int *local, double *wm, int *ids,
                       int32_t *phy2log)
{
    int en = sp->E / sp->nodes, n = en;
    for (int j = 0; j < en; j++) {
        ids[j] = mlog2log[node * en + j];
        wm[j] = rem[ids[j]];
    }
    for (int i = 0; i < sp->num; i++)
        if (sp->node[i] == node) {
            ids[n] = sp->expert[i];
            wm[n++] = sp->x[i];
        }
    node_slots(wm, n, en, sn, m, 1, wk, local);
    for (int q = 0; q < sn; q++)
        phy2log[node * sn + q] = ids[local[q]];
}

/* The modelled busiest rank of a spill plan t: spill slots take their
 * share, home slots split what is left (cnt, rem: epc_spill_reshare's). */
static double spill_busiest(const epc_spill_t *sp, const int32_t *t, int S, int R, const int *cnt,
                            const double *rem, double *rl)
{
    int sn = S / sp->nodes, gs = sp->E / sp->nodes;
    double mx = 0.0;
    memset(rl, 0, (size_t)R * sizeof *rl);
    for (int s = 0; s < S; s++)
        if (sp->group_at[s / sn] == t[s] / gs) /* a home slot */
            rl[s / (S / R)] += rem[t[s]] / (cnt[t[s]] - sp->count[t[s]]);
    for (int i = 0; i < sp->num; i++)
        for (int s = sp->node[i] * sn; s < (sp->node[i] + 1) * sn; s++)
            if (t[s] == sp->expert[i])
                rl[s / (S / R)] += sp->x[i];
    for (int r = 0; r < R; r++)
        mx = rl[r] > mx ? rl[r] : mx;
    return mx;
}

/* A spill plan is built PLAN_SPILL_PASSES times with the shares its own
 * table gives (the spills' shares shrink as home slots are added); the
 * spills are chosen PLAN_SPILL_ROUNDS times, first expecting one home
 * slot per expert, then the home slots of the last plan; the best plan
 * by the model is kept. */
#define PLAN_SPILL_PASSES 3
#define PLAN_SPILL_ROUNDS 3

/* Scratch of plan_spilled. */
typedef struct spill_work {
    plan_work_t wk;
    epc_spill_t sp;
    int *mlog2log, *local, *ids, *cnt;
    double *wm, *rem, *rl;
    int32_t *t;
} spill_work_t;

static int spill_work_alloc(spill_work_t *x, int E, int N, int R, int S)
{
    int rc = work_alloc(&x->wk, E, S) | spill_alloc(&x->sp, E, N, R, S);
    x->mlog2log = malloc((size_t)E * sizeof(int));
    x->local = malloc((size_t)S * sizeof(int));
    x->ids = malloc((size_t)S * sizeof(int));
    x->cnt = malloc((size_t)E * sizeof(int));
    x->wm = malloc((size_t)S * sizeof(double));
    x->rem = malloc((size_t)E * sizeof(double));
    x->rl = malloc((size_t)R * sizeof(double));
    x->t = malloc((size_t)S * sizeof(int32_t));
    return rc == 0 && x->mlog2log && x->local && x->ids && x->cnt && x->wm && x->rem && x->rl &&
                   x->t
               ? 0
               : -1;
}

static void spill_work_free(spill_work_t *x)
{
    work_free(&x->wk);
    spill_free(&x->sp);
    free(x->mlog2log);
    free(x->local);
    free(x->ids);
    free(x->cnt);
    free(x->wm);
    free(x->rem);
    free(x->rl);
    free(x->t);
}

/* One round: spills chosen for the expected home slots, the plan built
 * into x->t; returns its modelled busiest rank, and sets the home slots
 * it gave each expert as the next round's expectation. */
static double spill_round(spill_work_t *x, const double *w, const double *reach, int S, int R)
{
    epc_spill_t *sp = &x->sp;
    int N = sp->nodes, sn = S / N;
    double mx;
    epc_plan_spills(sp, w, reach, sn, x->rem);
    for (int pass = 0; pass < PLAN_SPILL_PASSES; pass++) {
        for (int n = 0; n < N; n++)
            spill_node(sp, x->mlog2log, x->rem, n, sn, R / N, &x->wk, x->local, x->wm, x->ids,
                       x->t);
        epc_spill_reshare(sp, w, reach, x->t, S, x->cnt, x->rem);
    }
    mx = spill_busiest(sp, x->t, S, R, x->cnt, x->rem, x->rl);
    for (int e = 0; e < sp->E; e++)
        sp->homes[e] = x->cnt[e] - sp->count[e];
    return mx;
}

/* The balanced plan with spill replicas (one group per node, N nodes):
 * phy2log, and the busiest rank's modelled load in *mx.  Returns 0, -1
 * when out of memory. */
static int plan_spilled(const double *w, const double *reach, int E, int S, int N, int R,
                        int32_t *phy2log, double *mx)
{
    spill_work_t x;
    int en = E / N, rc = spill_work_alloc(&x, E, N, R, S);
    if (rc == 0) {
        groups_to_nodes(w, E, N, N, 1, &x.wk, x.mlog2log);
        for (int n = 0; n < N; n++)
            x.sp.group_at[n] = x.mlog2log[n * en] / en;
        for (int e = 0; e < E; e++)
            x.sp.homes[e] = 1;
        for (int round = 0; round < PLAN_SPILL_ROUNDS; round++) {
            double m = spill_round(&x, w, reach, S, R);
            if (round == 0 || m < *mx - PLAN_EPS) {
                *mx = m;
                memcpy(phy2log, x.t, (size_t)S * sizeof *phy2log);
            }
        }
    }
    spill_work_free(&x);
    return rc;
}

int epc_eplb(const double *weight, int E, int S, int G, int nodes, int R, int32_t *phy2log)
{
    return plan(weight, E, S, G, nodes, R, 0, phy2log);
}

int epc_plan_balanced(const double *weight, int E, int S, int G, int nodes, int R, int32_t *phy2log)
{
    return plan(weight, E, S, G, nodes, R, 1, phy2log);
}

/* (busiest rank load, sum of squares) of table t: the lexicographic order
 * by which the planners' answers are compared. */
static void table_score(const double *w, int E, int S, int R, const int32_t *t, int *cnt,
                        double *rl, double *mx, double *sq)
{
    memset(cnt, 0, (size_t)E * sizeof *cnt);
    memset(rl, 0, (size_t)R * sizeof *rl);
    for (int s = 0; s < S; s++)
        cnt[t[s]]++;
    for (int s = 0; s < S; s++)
        rl[s / (S / R)] += w[t[s]] / cnt[t[s]];
    *mx = 0.0;
    *sq = 0.0;
    for (int r = 0; r < R; r++) {
        *mx = rl[r] > *mx ? rl[r] : *mx;
        *sq += rl[r] * rl[r];
    }
}

/* The balanced plan into t, or EPLB's (in u) when that scores better. */
static int plan_best(const double *w, int E, int S, int G, int nodes, int R, int32_t *t, int32_t *u)
{
    int *cnt = malloc((size_t)E * sizeof *cnt), rc = -1;
    double *rl = malloc((size_t)R * sizeof *rl), m1, q1, m2, q2;
    if (cnt && rl && epc_plan_balanced(w, E, S, G, nodes, R, t) == 0 &&
        epc_eplb(w, E, S, G, nodes, R, u) == 0) {
        table_score(w, E, S, R, t, cnt, rl, &m1, &q1);
        table_score(w, E, S, R, u, cnt, rl, &m2, &q2);
        if (m2 < m1 - PLAN_EPS || (m2 < m1 + PLAN_EPS && q2 < q1 - PLAN_EPS))
            memcpy(t, u, (size_t)S * sizeof *t);
        rc = 0;
    }
    free(cnt);
    free(rl);
    return rc;
}

/* The spill plan into t instead of the plan there (no spills) when its
 * modelled busiest rank is lower (then *kept = 1); u: scratch of S. */
static int keep_spilled(const double *w, const double *reach, int E, int S, int N, int R,
                        int32_t *t, int32_t *u, int *kept)
{
    int *cnt = malloc((size_t)E * sizeof *cnt), rc = -1;
    double *rl = malloc((size_t)R * sizeof *rl), m1, q1, m2 = 0.0;
    if (cnt && rl && plan_spilled(w, reach, E, S, N, R, u, &m2) == 0) {
        table_score(w, E, S, R, t, cnt, rl, &m1, &q1);
        *kept = m2 < m1 - PLAN_EPS;
        if (*kept)
            memcpy(t, u, (size_t)S * sizeof *t);
        rc = 0;
    }
    free(cnt);
    free(rl);
    return rc;
}

#define BAD(...) epc_error(EPC_ERR_INVALID_ARG, "epc_placement_plan: " __VA_ARGS__)

/* The fields after the shape: groups, loads, algorithm, reach. */
static epc_status_t check_plan(const epc_placement_plan_params_t *p, int G, int nodes)
{
    if (G < 1 || p->num_experts % G != 0)
        return BAD("num_groups = %d does not divide num_experts = %d", p->num_groups,
                   p->num_experts);
    if (p->expert_load == NULL)
        return BAD("expert_load is NULL");
    for (int e = 0; e < p->num_experts; e++)
        if (!(p->expert_load[e] >= 0) || !isfinite(p->expert_load[e]))
            return BAD("expert_load[%d] = %g is negative or not finite", e, p->expert_load[e]);
    if (p->algo != EPC_PLACEMENT_BALANCED && p->algo != EPC_PLACEMENT_EPLB)
        return BAD("algo = %d is not an epc_placement_algo_t", (int)p->algo);
    for (size_t i = 0; p->expert_reach && i < (size_t)p->num_experts * nodes; i++)
        if (!(p->expert_reach[i] >= 0) || !isfinite(p->expert_reach[i]))
            return BAD("expert_reach[%zu] = %g is negative or not finite", i, p->expert_reach[i]);
    return EPC_OK;
}

epc_status_t epc_placement_plan(const epc_placement_plan_params_t *params,
                                epc_placement_t **placement_p)
{
    static const epc_params_layouts_t layouts = {
        "EPC_PLACEMENT_PLAN_PARAMS_INIT",
        sizeof(epc_placement_plan_params_t),
        {offsetof(epc_placement_plan_params_t, expert_reach), 0}};
    epc_placement_plan_params_t p;
    int32_t *t, *u;
    epc_status_t st;
    int R, rpn, S, G, rc, spilled = 0;
    if (placement_p == NULL)
        return BAD("placement_p is NULL");
    if ((st = epc_params_load(&p, params, &layouts, NULL, "epc_placement_plan", "params")) !=
        EPC_OK)
        return st;
    if ((st = epc_placement_shape("epc_placement_plan", p.num_experts, p.num_ranks,
                                  p.ranks_per_node, p.num_slots, &R, &rpn, &S)) != EPC_OK)
        return st;
    /* 0: the router's node blocks when the nodes divide E, else global */
    G = p.num_groups ? p.num_groups : p.num_experts % (R / rpn) == 0 ? R / rpn : 1;
    if ((st = check_plan(&p, G, R / rpn)) != EPC_OK)
        return st;
    t = malloc((size_t)S * sizeof *t);
    u = malloc((size_t)S * sizeof *u);
    rc = t && u ? 0 : -1;
    if (rc == 0 && p.algo == EPC_PLACEMENT_EPLB)
        rc = epc_eplb(p.expert_load, p.num_experts, S, G, R / rpn, R, t);
    else if (rc == 0)
        rc = plan_best(p.expert_load, p.num_experts, S, G, R / rpn, R, t, u);
    if (rc == 0 && p.expert_reach && p.algo == EPC_PLACEMENT_BALANCED && G == R / rpn && G > 1 &&
        S > p.num_experts)
        rc = keep_spilled(p.expert_load, p.expert_reach, p.num_experts, S, G, R, t, u, &spilled);
    st = rc == 0 ? epc_placement_build(p.num_experts, R, rpn, S, t, placement_p)
                 : epc_error(EPC_ERR_NO_MEMORY, "epc_placement_plan: %d slots", S);
    /* NEAR may take a spill on a node the token does not reach: a plan with
     * spills comes with the choice that keeps the router's node limit */
    if (st == EPC_OK && spilled)
        (*placement_p)->choice = EPC_REPLICA_LIMITED;
    free(t);
    free(u);
    return st;
}
