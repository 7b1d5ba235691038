/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * wire.c - checks of the fields peers send (see wire.h).  The rule: a count
 * or index from a peer is compared against bounds this rank already trusts
 * (the agreed job shape, or counts that passed these checks) before it is
 * used for anything, and sums are formed in 64 bits.
 */
#include <stdio.h>

#include "wire.h"

static size_t per_rank(const coll_dims_t *d)
{
    return (size_t)d->E + d->N + d->R;
}

int coll_wire_counts(const coll_dims_t *d, int s, int T, const int *c, char *why, size_t len)
{
    static const char *const part[] = {"expert", "node", "rank"};
    int n_of[3] = {d->E, d->N, d->R}, i = 0;
    long sum[3] = {0, 0, 0};
    if (T < 0 || T > d->max_T) {
        snprintf(why, len, "rank %d sent a corrupt token count T = %d (max_tokens_per_rank %d)", s,
                 T, d->max_T);
        return -1;
    }
    for (int p = 0; p < 3; p++)
        for (int j = 0; j < n_of[p]; j++, i++) {
            if (c[i] < 0 || c[i] > T) {
                snprintf(why, len, "rank %d sent a corrupt count %d (T = %d) for %s %d", s, c[i], T,
                         part[p], j);
                return -1;
            }
            sum[p] += c[i];
        }
    /* A token reaches at most k experts, on at most k ranks, on at most as
     * many nodes as ranks: anything else is not from a valid sender. */
    if (sum[0] > (long)T * d->k || sum[2] > sum[0] || sum[1] > sum[2]) {
        snprintf(why, len,
                 "rank %d's counts are inconsistent: experts %ld, ranks %ld, nodes %ld "
                 "(T x k = %ld)",
                 s, sum[0], sum[2], sum[1], (long)T * d->k);
        return -1;
    }
    return 0;
}

/* prefix[] for every (source, expert), in 64 bits; fails past the row cap. */
static int prefixes(const coll_dims_t *d, const int *all, int *prefix, char *why, size_t len)
{
    for (int g = 0; g < d->E; g++) {
        long acc = 0;
        for (int s = 0; s < d->R; s++) {
            prefix[(size_t)s * d->E + g] = (int)acc;
            acc += all[(size_t)s * per_rank(d) + g];
            if (acc > COLL_WIRE_MAX_ROWS) {
                snprintf(why, len, "expert %d would receive %ld rows (> 2^30)", g, acc);
                return -1;
            }
        }
    }
    return 0;
}

int coll_wire_layout(const coll_dims_t *d, const int *all, int me, int *prefix, int *begin,
                     int *num_rows, int *expert_count, char *why, size_t len)
{
    const int *last = all + (size_t)(d->R - 1) * per_rank(d);
    if (prefixes(d, all, prefix, why, len) != 0)
        return -1;
    for (int r = 0; r < d->R; r++) {
        long rows = 0, slots = 0;
        for (int e = 0; e < d->epr; e++) {
            int g = r * d->epr + e;
            long cnt = (long)prefix[(size_t)(d->R - 1) * d->E + g] + last[g];
            begin[(size_t)r * (d->epr + 1) + e] = (int)rows;
            rows += (cnt + d->align - 1) / d->align * d->align;
            if (r == me)
                expert_count[e] = (int)cnt;
            if (rows > COLL_WIRE_MAX_ROWS)
                break;
        }
        for (int s = 0; s < d->R; s++)
            slots += all[(size_t)s * per_rank(d) + d->E + d->N + r];
        if (rows > COLL_WIRE_MAX_ROWS || slots > COLL_WIRE_MAX_ROWS) {
            snprintf(why, len, "rank %d would receive %ld rows and %ld combine slots (> 2^30)", r,
                     rows, slots);
            return -1;
        }
        begin[(size_t)r * (d->epr + 1) + d->epr] = (int)rows;
        num_rows[r] = (int)rows;
    }
    return 0;
}

int coll_wire_slot(const coll_dims_t *d, const int *cs, const coll_slot_t *sl, int want_node,
                   int want_rank)
{
    int e = sl->expert, r;
    if (e < 0)
        return 0;
    if (e >= d->E)
        return -1;
    r = e / d->epr;
    if (want_rank >= 0 ? r != want_rank : d->node_of[r] != want_node)
        return -1;
    if (sl->eidx < 0 || sl->eidx >= cs[e] || sl->didx < 0 || sl->didx >= cs[d->E + d->N + r])
        return -1;
    return 1;
}
