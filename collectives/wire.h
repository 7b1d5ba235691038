/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * wire.h - what a rank receives from its peers, and the checks every field
 * passes before it sizes a buffer or indexes one.
 *
 * Two kinds of message carry fields a receiver acts on: the count record of
 * the dispatch plan (T, then tokens per expert, per node and per rank) and
 * the token records of the data exchange (token index, then k slots naming
 * an expert and two indices).  Everything else a peer sends is row payload,
 * placed at offsets computed from already-checked fields.  These functions
 * are pure (no MPI, no context), so the fuzz harness (tests/fuzz/fuzz_wire.c)
 * runs exactly the code the collectives run.
 */
#ifndef EPC_WIRE_H
#define EPC_WIRE_H

#include <stddef.h>
#include <stdint.h>

/* One slot of a token record: what a writer needs to place the row. */
typedef struct coll_slot {
    int32_t expert; /* global id; -1 when not for this destination */
    int32_t eidx;   /* index among the source's tokens choosing it */
    int32_t didx;   /* index among the source's tokens sent to its rank */
    float weight;
} coll_slot_t;

/* A token record on the wire: header, then k slots (meta), row apart. */
typedef struct coll_rec {
    int32_t token, pad_;
} coll_rec_t;

/* The job's shape, agreed before any message is parsed. */
typedef struct coll_dims {
    int E, N, R, epr;   /* experts, nodes, ranks, experts per rank (E = R x epr) */
    int k, align;       /* agreed top-k (<= 256) and expert alignment (>= 1) */
    int max_T;          /* max tokens per rank, agreed at context creation */
    const int *node_of; /* [R] */
} coll_dims_t;

/* Largest row or slot count any receiver may be planned for. */
#define COLL_WIRE_MAX_ROWS (1L << 30)

/* Checks source s's count record: T (its token count) and c = C[E] |
 * tokens per node[N] | tokens per rank[R].  Accepts exactly what a valid
 * sender can produce: 0 <= T <= max_T, every count in [0, T], and
 * sum(per node) <= sum(per rank) <= sum(C) <= T x k.  Returns 0, or -1 with
 * a sentence naming s and the field in why. */
int coll_wire_counts(const coll_dims_t *d, int s, int T, const int *c, char *why, size_t len);

/* Every receiver's layout from all ranks' checked count records (all =
 * [R x (E + N + R)]): prefix[s x E + g] = sum over s' < s of C[s'][g],
 * begin[r x (epr + 1) + e] = first row of r's local expert e (groups padded
 * to align), num_rows[r], and the unpadded counts of rank me's experts in
 * expert_count[epr].  Returns 0, or -1 with why when a receiver would get
 * more than COLL_WIRE_MAX_ROWS rows or combine slots (no int overflows). */
int coll_wire_layout(const coll_dims_t *d, const int *all, int me, int *prefix, int *begin,
                     int *num_rows, int *expert_count, char *why, size_t len);

/* Classifies slot sl of a record from source s (counts cs = its checked
 * record) for a receiver that accepts destinations on node want_node (when
 * want_rank < 0) or exactly rank want_rank: 1 usable (expert, eidx and
 * didx in range for that destination), 0 not for any destination (expert
 * < 0), -1 corrupt. */
int coll_wire_slot(const coll_dims_t *d, const int *cs, const coll_slot_t *sl, int want_node,
                   int want_rank);

/* Row of a usable slot's (source s, expert e, eidx) at its receiver. */
static inline long coll_wire_row(const coll_dims_t *d, const int *begin, const int *prefix, int s,
                                 int e, int eidx)
{
    int r = e / d->epr;
    return (long)begin[(size_t)r * (d->epr + 1) + (e - r * d->epr)] + prefix[(size_t)s * d->E + e] +
           eidx;
}

#endif
