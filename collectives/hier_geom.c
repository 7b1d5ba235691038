/* SPDX-License-Identifier: BSD-3-Clause */
/* hier_geom.c - where the hierarchical path puts everything (hier_geom.h). */
#include <stdlib.h>

#include "hier_geom.h"

#define ALIGN64(x) (((x) + 63) & ~(size_t)63)

hier_geom_t hier_geom_of(const epc_ctx_t *ctx, const epc_handle_t *h)
{
    const epc_topo_t *t = ctx->comm.topo;
    hier_geom_t g = {h,
                     t->node_of,
                     t->local_rank,
                     t->node_ranks,
                     t->node_start,
                     t->nnodes,
                     ctx->comm.rank,
                     ctx->comm.node,
                     ctx->comm.lrank,
                     h->L,
                     ctx->hidden,
                     h->row_bytes,
                     coll_row_bytes(ctx),
                     0,
                     0,
                     ctx->comm.chunk_bytes};
    g.record_header = sizeof(coll_rec_t) + (size_t)h->k * sizeof(coll_slot_t);
    g.record_bytes = coll_unit(g.row_bytes, h->k);
    return g;
}

int hier_rank_at(const hier_geom_t *g, int n, int l)
{
    return g->node_ranks[g->node_start[n] + l];
}

size_t hier_rows_area(const hier_geom_t *g, int x)
{
    int n = g->h->num_rows[x];
    return ALIGN64((size_t)n * g->row_bytes + coll_meta_bytes(n));
}

size_t hier_region_need(const hier_geom_t *g, int x)
{
    return hier_rows_area(g, x) + (size_t)g->h->num_rows[x] * g->out_row_bytes;
}

int hier_slots_for_node(const hier_geom_t *g, int t, int n, coll_slot_t *slots)
{
    const epc_handle_t *h = g->h;
    int any = 0;
    for (int q = 0; q < h->k; q++) {
        size_t i = (size_t)t * h->k + q;
        int e = h->idx[i], on = e >= 0 && g->node_of[e / h->epr] == n;
        slots[q] = (coll_slot_t){on ? e : -1, h->eidx[i], h->didx[i], h->w[i]};
        any |= on;
    }
    return any;
}

int hier_messages(const hier_geom_t *g, size_t unit, int combine, epc_tr_msg_t *sends,
                  epc_tr_msg_t *recvs, size_t *send_bytes, size_t *recv_bytes)
{
    int count = 0;
    *send_bytes = *recv_bytes = 0;
    for (int n = 0; n < g->nnodes; n++) {
        int peer = hier_rank_at(g, n, g->my_local);
        size_t mine, theirs;
        if (n == g->my_node)
            continue;
        mine = (size_t)coll_tpn(g->h, g->rank)[n] * unit;
        theirs = (size_t)coll_tpn(g->h, peer)[g->my_node] * unit;
        sends[count] =
            (epc_tr_msg_t){.peer = peer, .offset = *send_bytes, .len = combine ? theirs : mine};
        recvs[count] =
            (epc_tr_msg_t){.peer = peer, .offset = *recv_bytes, .len = combine ? mine : theirs};
        *send_bytes += sends[count].len;
        *recv_bytes += recvs[count].len;
        count++;
    }
    return count;
}

int hier_chunk_count(const hier_geom_t *g, size_t unit)
{
    size_t most = 0;
    for (int s = 0; s < g->h->R; s++)
        for (int n = 0; n < g->h->N; n++)
            if ((size_t)coll_tpn(g->h, s)[n] > most)
                most = (size_t)coll_tpn(g->h, s)[n];
    most = (most * unit + g->chunk_bytes - 1) / g->chunk_bytes;
    return most < 1 ? 1 : most > 8 ? 8 : (int)most;
}

void hier_chunk_range(size_t records, int c, int chunks, size_t *lo, size_t *hi)
{
    *lo = records * (size_t)c / (size_t)chunks;
    *hi = records * (size_t)(c + 1) / (size_t)chunks;
}

void hier_free_lists(int **lists, int n)
{
    for (int i = 0; lists != NULL && i < n; i++)
        free(lists[i]);
    free(lists);
}

int **hier_token_lists(const hier_geom_t *g)
{
    const epc_handle_t *h = g->h;
    const int *tpn = coll_tpn(h, g->rank);
    int N = g->nnodes, **lists = calloc((size_t)N, sizeof *lists);
    int *fill = calloc((size_t)N, sizeof *fill), *last = malloc((size_t)N * sizeof *last);
    for (int n = 0; lists != NULL && n < N; n++)
        if ((lists[n] = malloc(((size_t)tpn[n] + 1) * sizeof **lists)) == NULL)
            break;
    if (lists == NULL || fill == NULL || last == NULL || lists[N - 1] == NULL) {
        hier_free_lists(lists, N);
        free(fill);
        free(last);
        return NULL;
    }
    for (int n = 0; n < N; n++)
        last[n] = -1; /* the last token listed for node n */
    /* one pass over the slots; a token's nodes are counted once each */
    for (int t = 0; t < h->T; t++)
        for (int q = 0; q < h->k; q++) {
            int e = h->idx[(size_t)t * h->k + q], n = e < 0 ? -1 : g->node_of[e / h->epr];
            if (n >= 0 && last[n] != t && fill[n] < tpn[n])
                lists[n][fill[n]++] = last[n] = t;
        }
    free(fill);
    free(last);
    return lists;
}
