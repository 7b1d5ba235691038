/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * hier_geom.h - the geometry of the hierarchical path, as pure functions
 * of the topology and a planned handle (no communication, no shared
 * memory): who forwards for whom, which messages cross the network and
 * how they are cut into chunks, and where every row and expert output
 * lies in a rank's shared region.
 *
 * A token for another node crosses the network once, to the rank with the
 * sender's local index there (its forwarder).  Each rank's shared region
 * is [rows][row metadata][staging]: the staging area holds the rank's
 * expert outputs at its rows' positions when combine is not given them
 * over the rows themselves (num_rows x out_row_bytes).
 */
#ifndef EPC_HIER_GEOM_H
#define EPC_HIER_GEOM_H

#include <stddef.h>

#include "coll.h"

typedef struct hier_geom {
    const epc_handle_t *h;
    const int *node_of, *local_rank; /* [R] */
    const int *node_ranks;           /* ranks by node, node n's from node_start[n] */
    const int *node_start;           /* [N + 1] */
    int nnodes;
    int rank, my_node, my_local; /* this rank */
    int ranks_per_node;          /* L (uniform) */
    int hidden;                  /* H */
    size_t row_bytes;            /* a dispatched row (h->row_bytes) */
    size_t out_row_bytes;        /* an expert output row (the context's dtype) */
    size_t record_header;        /* a wire record's header and k slots */
    size_t record_bytes;         /* a whole wire record, 8-aligned */
    size_t chunk_bytes;          /* EPC_CHUNK_KB */
} hier_geom_t;

/* The geometry of handle h on this rank of ctx. */
hier_geom_t hier_geom_of(const epc_ctx_t *ctx, const epc_handle_t *h);

/* The rank with local index l on node n. */
int hier_rank_at(const hier_geom_t *g, int n, int l);

/* Bytes of rank x's region before its staging area (rows and metadata). */
size_t hier_rows_area(const hier_geom_t *g, int x);

/* Bytes rank x's region must hold: rows, metadata and staging area. */
size_t hier_region_need(const hier_geom_t *g, int x);

/* Token t's slots restricted to node n (the others' expert -1); 1 if any. */
int hier_slots_for_node(const hier_geom_t *g, int t, int n, coll_slot_t *slots);

/* The messages of one exchange, one each way per other node (ascending),
 * with the rank of this local index there.  Dispatch sends this rank's
 * records for that node and receives that rank's records for this node
 * (`unit`-byte records); combine sends back that rank's node sums and
 * receives this rank's.  Returns the count; *send_bytes, *recv_bytes the
 * regions they need. */
int hier_messages(const hier_geom_t *g, size_t unit, int combine, epc_tr_msg_t *sends,
                  epc_tr_msg_t *recvs, size_t *send_bytes, size_t *recv_bytes);

/* Chunks per exchange of `unit`-byte records, the same on every rank (from
 * the shared counts and the agreed EPC_CHUNK_KB): about that many bytes
 * per message per chunk, at most 8; and the records [lo, hi) of a message
 * of `records` in chunk c of `chunks`. */
int hier_chunk_count(const hier_geom_t *g, size_t unit);
void hier_chunk_range(size_t records, int c, int chunks, size_t *lo, size_t *hi);

/* This rank's tokens for each node, in order: lists[n][q] = token; NULL
 * (everything freed) when memory runs out.  Free with hier_free_lists. */
int **hier_token_lists(const hier_geom_t *g);
void hier_free_lists(int **lists, int n);

#endif
