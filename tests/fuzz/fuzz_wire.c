/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * fuzz_wire - libFuzzer harness for everything a peer sends that a receiver
 * acts on: the dispatch plan's count records and the token records (token
 * index and k slots) of both algorithms, checked by collectives/wire.c.
 *
 * The input picks a job shape (ranks, nodes, experts per rank, top-k,
 * alignment, max tokens, the receiving rank, flat or hier), then a routing
 * for every rank.  An independent reference counts it and builds the
 * records a valid sender would send; then up to 8 edits from the input
 * overwrite any count, any T or any record field with any 32-bit value.
 * The receiver's side runs exactly as in the library: every count record
 * checked, the layout derived, every slot checked, then rows written to
 * buffers of exactly the planned size (ASan catches a write outside).
 * Invariants (abort on violation): an unedited job is accepted whole and
 * fills every unpadded row exactly once with the right (source, token);
 * an accepted slot's row lies inside its expert's group and its combine
 * slot inside the receiver's slots, whatever the edits.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "wire.h"

enum { MAXR = 8, MAXK = 8, MAXT = 48, HEADER = 8, EDIT = 7, MAX_EDITS = 8 };

typedef struct rec {
    int32_t token;
    coll_slot_t sl[MAXK];
} rec_t;

typedef struct job {
    coll_dims_t d;
    int node_of[MAXR], me, hier, T[MAXR], edits;
    int32_t idx[MAXR][MAXT * MAXK], eidx[MAXR][MAXT * MAXK], didx[MAXR][MAXT * MAXK];
    int *all;              /* [R x per]: counts as received */
    rec_t rec[MAXR][MAXT]; /* records from each source for this receiver */
    int nrec[MAXR];
} job_t;

typedef struct cursor {
    const uint8_t *p;
    size_t left;
} cursor_t;

static unsigned next_byte(cursor_t *c)
{
    if (c->left == 0)
        return 0;
    c->left--;
    return *c->p++;
}

static size_t per(const job_t *j)
{
    return (size_t)j->d.E + j->d.N + j->d.R;
}

/* Shape from the first HEADER bytes. */
static void shape(job_t *j, const uint8_t *h)
{
    int R = 1 + h[0] % MAXR, N = 1 + h[1] % R;
    for (int r = 0; r < R; r++)
        j->node_of[r] = r * N / R;
    j->d = (coll_dims_t){0};
    j->d.R = R;
    j->d.N = N;
    j->d.epr = 1 + h[2] % 4;
    j->d.E = R * j->d.epr;
    j->d.k = 1 + h[3] % MAXK;
    j->d.align = 1 + h[4] % 4;
    j->d.max_T = h[5] % (MAXT + 1);
    j->d.node_of = j->node_of;
    j->me = h[6] % R;
    j->hier = h[7] & 1;
}

/* Each rank's tokens and choices (-1 = none; repeats dropped, as the
 * library's argument check refuses them). */
static void route(job_t *j, cursor_t *c)
{
    for (int s = 0; s < j->d.R; s++) {
        j->T[s] = (int)(next_byte(c) % (unsigned)(j->d.max_T + 1));
        for (int t = 0; t < j->T[s]; t++)
            for (int q = 0; q < j->d.k; q++) {
                int32_t *row = &j->idx[s][t * j->d.k], e;
                e = (int32_t)(next_byte(c) % (unsigned)(j->d.E + 1)) - 1;
                for (int p = 0; p < q; p++)
                    e = row[p] == e ? -1 : e;
                row[q] = e;
            }
    }
}

/* Reference counts of source s: per expert (and each slot's eidx), per
 * rank (and didx), per node; written the simple way on purpose. */
static void count(job_t *j, int s)
{
    int *C = j->all + (size_t)s * per(j), *tpn = C + j->d.E, *tpr = tpn + j->d.N, k = j->d.k;
    for (int t = 0; t < j->T[s]; t++) {
        int rank_hit[MAXR] = {0}, node_hit[MAXR] = {0};
        for (int q = 0; q < k; q++) {
            int i = t * k + q, e = j->idx[s][i], r;
            j->eidx[s][i] = j->didx[s][i] = -1;
            if (e < 0)
                continue;
            r = e / j->d.epr;
            j->eidx[s][i] = C[e]++;
            if (!rank_hit[r]++)
                tpr[r]++;
            j->didx[s][i] = tpr[r] - 1;
            if (!node_hit[j->node_of[r]]++)
                tpn[j->node_of[r]]++;
        }
    }
}

/* The records a valid source s sends this receiver: flat, one per token
 * with a slot on rank me; hier, one per token with a slot on me's node. */
static void records(job_t *j, int s)
{
    int k = j->d.k, n0 = j->node_of[j->me];
    j->nrec[s] = 0;
    for (int t = 0; t < j->T[s]; t++) {
        rec_t *u = &j->rec[s][j->nrec[s]];
        int any = 0;
        u->token = t;
        for (int q = 0; q < k; q++) {
            int i = t * k + q, e = j->idx[s][i];
            int on = e >= 0 && (j->hier ? j->node_of[e / j->d.epr] == n0 : e / j->d.epr == j->me);
            u->sl[q] = (coll_slot_t){on ? e : -1, j->eidx[s][i], j->didx[s][i], 1.0f};
            any |= on;
        }
        j->nrec[s] += any;
    }
}

/* Overwrites up to MAX_EDITS fields (a count, a T, a record int). */
static void edit(job_t *j, cursor_t *c)
{
    for (j->edits = 0; j->edits < MAX_EDITS && c->left >= EDIT; j->edits++) {
        unsigned what = next_byte(c) % 3, at = next_byte(c);
        int32_t v;
        at = at << 8 | next_byte(c);
        v = (int32_t)(next_byte(c) << 24 | next_byte(c) << 16 | next_byte(c) << 8 | next_byte(c));
        if (what == 0)
            j->all[at % (j->d.R * per(j))] = v;
        else if (what == 1)
            j->T[at % (unsigned)j->d.R] = v;
        else {
            int s = (int)(at % (unsigned)j->d.R), n = j->nrec[s] ? j->nrec[s] : 1;
            int32_t *f = (int32_t *)(void *)&j->rec[s][(at >> 3) % (unsigned)n];
            f[(at >> 6) % (1 + 4 * (unsigned)j->d.k)] = v;
        }
    }
}

/* The receiver's plan: 0 when every count record and the layout pass. */
typedef struct plan {
    int prefix[MAXR * MAXR * 4], begin[MAXR * 5], num_rows[MAXR], expert_count[4];
    int *rows[MAXR], *hits[MAXR];
} plan_t;

static int plan(job_t *j, plan_t *p)
{
    char why[160];
    for (int s = 0; s < j->d.R; s++)
        if (coll_wire_counts(&j->d, s, j->T[s], j->all + (size_t)s * per(j), why, sizeof why)) {
            CHECK(j->edits > 0 && strstr(why, "rank ") != NULL);
            return -1;
        }
    if (coll_wire_layout(&j->d, j->all, j->me, p->prefix, p->begin, p->num_rows, p->expert_count,
                         why, sizeof why)) {
        CHECK(j->edits > 0);
        return -1;
    }
    for (int r = 0; r < j->d.R; r++) {
        CHECK(p->num_rows[r] >= 0);
        p->rows[r] = malloc((size_t)p->num_rows[r] * sizeof(int) + 1);
        p->hits[r] = calloc((size_t)p->num_rows[r] + 1, sizeof(int));
        CHECK(p->rows[r] && p->hits[r]);
    }
    return 0;
}

/* Places one record as the library would; -1 when the library refuses it. */
static int place(job_t *j, plan_t *p, int s, int i, const rec_t *u)
{
    const int *cs = j->all + (size_t)s * per(j);
    if (u->token < 0 || u->token >= j->T[s])
        return -1;
    for (int q = 0; q < j->d.k; q++) {
        const coll_slot_t *sl = &u->sl[q];
        int ok = j->hier ? coll_wire_slot(&j->d, cs, sl, j->node_of[j->me], -1)
                         : coll_wire_slot(&j->d, cs, sl, -1, j->me);
        int r, le, *begin;
        long row;
        if (ok == 0)
            continue;
        if (ok < 0 || (!j->hier && sl->didx != i))
            return -1;
        r = sl->expert / j->d.epr;
        le = sl->expert - r * j->d.epr;
        begin = p->begin + (size_t)r * (j->d.epr + 1);
        row = coll_wire_row(&j->d, p->begin, p->prefix, s, sl->expert, sl->eidx);
        CHECK(row >= begin[le] && row < begin[le + 1] && row < p->num_rows[r]);
        p->rows[r][row] = s << 16 | u->token; /* ASan: inside the planned rows */
        p->hits[r][row]++;
    }
    return 0;
}

/* Unedited: every unpadded row of each receiving rank written once with
 * the (source, token) the reference routing puts there; padding never. */
static void check_full(const job_t *j, const plan_t *p)
{
    for (int r = 0; r < j->d.R; r++) {
        int mine = j->hier ? j->node_of[r] == j->node_of[j->me] : r == j->me;
        for (int le = 0; le < j->d.epr; le++) {
            int e = r * j->d.epr + le, lo = p->begin[r * (j->d.epr + 1) + le], n = 0;
            for (int s = 0; s < j->d.R; s++)
                for (int i = 0; i < j->T[s] * j->d.k; i++)
                    if (j->idx[s][i] == e) {
                        long row = lo + p->prefix[s * j->d.E + e] + j->eidx[s][i];
                        CHECK(p->hits[r][row] == mine);
                        CHECK(!mine || p->rows[r][row] == (s << 16 | i / j->d.k));
                        n++;
                    }
            for (int x = lo + n; x < p->begin[r * (j->d.epr + 1) + le + 1]; x++)
                CHECK(p->hits[r][x] == 0);
            if (r == j->me)
                CHECK(p->expert_count[le] == n);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static job_t j;
    plan_t p;
    cursor_t c = {data + HEADER, size - HEADER};
    int refused = 0;
    if (size < HEADER)
        return 0;
    memset(&p, 0, sizeof p);
    shape(&j, data);
    route(&j, &c);
    j.all = calloc((size_t)j.d.R * per(&j), sizeof *j.all);
    CHECK(j.all != NULL);
    for (int s = 0; s < j.d.R; s++) {
        count(&j, s);
        records(&j, s);
    }
    edit(&j, &c);
    if (plan(&j, &p) == 0) {
        for (int s = 0; s < j.d.R && !refused; s++)
            for (int i = 0; i < j.nrec[s] && !refused; i++)
                refused = place(&j, &p, s, i, &j.rec[s][i]) != 0;
        CHECK(!refused || j.edits > 0);
        if (j.edits == 0)
            check_full(&j, &p);
    }
    for (int r = 0; r < MAXR; r++) {
        free(p.rows[r]);
        free(p.hits[r]);
    }
    free(j.all);
    return 0;
}
