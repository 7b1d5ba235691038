/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * placement_move.c - the collectives of expert placement: agreeing that
 * every rank holds the same table, and moving expert weights from one
 * placement to another through the context's transport (docs/PLACEMENT.md).
 *
 * Every rank holds both tables, so each computes every move by itself and
 * no list travels: slot q of the new placement is filled from a slot of
 * the old one holding its expert (the receiving rank's own when it has
 * one, else one on its node, else any; several candidates are spread by
 * q).  Between a pair, both sides list their messages by the receiver's
 * slot, ascending, which is the order the transport needs.  The moves go
 * in rounds that bound what each rank sends and receives at once
 * (coll_move_rounds), likewise computed by every rank alone.
 */
#include <stdlib.h>
#include <string.h>

#include "coll.h"
#include "config.h"
#include "context.h"
#include "fault.h"
#include "lane.h"
#include "mpi_util.h"
#include "placement.h"
#include "request.h"

/* The slot of `from` whose weights fill slot q of `to`. */
static int source_slot(const epc_placement_t *from, const epc_placement_t *to, int q)
{
    int e = to->slot_expert[q], r = q / to->spr, node = r / to->rpn, same = 0, pick;
    const int32_t *rep = from->rep_slot + from->rep_begin[e];
    int n = from->rep_begin[e + 1] - from->rep_begin[e];
    for (int i = 0; i < n; i++)
        if (rep[i] / from->spr == r)
            return rep[i];
    for (int i = 0; i < n; i++)
        same += epc_placement_slot_node(from, rep[i]) == node;
    if (same == 0)
        return rep[q % n];
    pick = q % same;
    for (int i = 0; i < n; i++)
        if (epc_placement_slot_node(from, rep[i]) == node && pick-- == 0)
            return rep[i];
    return rep[0]; /* not reached: pick < same */
}

/* Rank `rank`'s moves, into the arrays up to their capacities (NULL: only
 * counted); the totals into *ns and *nr. */
static void list_moves(const epc_placement_t *from, const epc_placement_t *to, int rank,
                       epc_slot_move_t *sends, int scap, int *ns, epc_slot_move_t *recvs, int rcap,
                       int *nr)
{
    *ns = 0;
    *nr = 0;
    for (int q = 0; q < to->S; q++) {
        int src = source_slot(from, to, q), sr = src / from->spr, dr = q / to->spr;
        if (dr == rank) {
            epc_slot_move_t m = {q % to->spr, sr, src % from->spr};
            if (recvs != NULL && *nr < rcap)
                recvs[*nr] = m;
            ++*nr;
        } else if (sr == rank) {
            epc_slot_move_t m = {src % from->spr, dr, q % to->spr};
            if (sends != NULL && *ns < scap)
                sends[*ns] = m;
            ++*ns;
        }
    }
}

#define BAD_MOVES(...) epc_error(EPC_ERR_INVALID_ARG, "epc_placement_moves: " __VA_ARGS__)

/* from and to live, of the same E, R and nodes; raised naming fn. */
static epc_status_t check_pair(const epc_placement_t *from, const epc_placement_t *to,
                               const char *fn)
{
    epc_status_t st = epc_placement_check(from, fn);
    if (st == EPC_OK)
        st = epc_placement_check(to, fn);
    if (st == EPC_OK && (from->E != to->E || from->R != to->R || from->rpn != to->rpn))
        st = epc_error(EPC_ERR_INVALID_ARG,
                       "%s: from (%d experts, %d ranks, %d per node) and to (%d, %d, %d) differ "
                       "in shape",
                       fn, from->E, from->R, from->rpn, to->E, to->R, to->rpn);
    return st;
}

epc_status_t epc_placement_moves(const epc_placement_t *from, const epc_placement_t *to, int rank,
                                 epc_slot_move_t *sends, int send_capacity, int *num_sends,
                                 epc_slot_move_t *recvs, int recv_capacity, int *num_recvs)
{
    epc_status_t st = check_pair(from, to, "epc_placement_moves");
    int ns, nr;
    if (st != EPC_OK)
        return st;
    if (rank < 0 || rank >= from->R)
        return BAD_MOVES("rank = %d is outside [0, %d)", rank, from->R);
    if (num_sends == NULL || num_recvs == NULL)
        return BAD_MOVES("%s is NULL", num_sends ? "num_recvs" : "num_sends");
    if ((sends == NULL && send_capacity != 0) || (recvs == NULL && recv_capacity != 0) ||
        send_capacity < 0 || recv_capacity < 0)
        return BAD_MOVES("sends/recvs NULL with capacities %d/%d", send_capacity, recv_capacity);
    list_moves(from, to, rank, NULL, 0, &ns, NULL, 0, &nr);
    if ((sends != NULL && send_capacity < ns) || (recvs != NULL && recv_capacity < nr))
        return BAD_MOVES("capacities %d/%d, rank %d sends %d and receives %d slots", send_capacity,
                         recv_capacity, rank, ns, nr);
    list_moves(from, to, rank, sends, send_capacity, &ns, recvs, recv_capacity, &nr);
    *num_sends = ns;
    *num_recvs = nr;
    return EPC_OK;
}

/* FNV-1a over the table: ranks holding different tables differ here
 * (short of a 64-bit collision). */
static uint64_t table_hash(const epc_placement_t *pl)
{
    uint64_t h = 1469598103934665603ull;
    for (int s = 0; s < pl->S; s++) {
        h ^= (uint32_t)pl->slot_expert[s];
        h *= 1099511628211ull;
    }
    return h;
}

/* Appends a placement's shape and table hash to v (6 values). */
static int describe(const epc_placement_t *pl, double *v)
{
    uint64_t h = table_hash(pl);
    v[0] = pl->E;
    v[1] = pl->S;
    v[2] = pl->R;
    v[3] = pl->rpn;
    v[4] = (double)(h >> 32);
    v[5] = (double)(h & 0xffffffffu);
    return 6;
}

/* Every rank holds the same placement a (and b, and the nx values x named
 * xname): else EPC_ERR_MISMATCH raised on every rank. */
static epc_status_t same_everywhere(epc_ctx_t *ctx, const char *fn, const epc_placement_t *a,
                                    const epc_placement_t *b, const double *x,
                                    const char *const *xname, int nx)
{
    static const char *const field[] = {"num_experts",    "num_slots",   "num_ranks",
                                        "ranks_per_node", "slot_expert", "slot_expert"};
    double v[EPC_MPI_COMPARE_MAX], lo, hi;
    int n = describe(a, v), i, tables;
    epc_status_t st;
    if (b != NULL)
        n += describe(b, v + n);
    tables = n;
    for (int j = 0; j < nx; j++)
        v[n++] = x[j];
    st = epc_mpi_compare(ctx->comm.mpi, v, n, epc_ctx_deadline(ctx), &ctx->hdr, fn, &i, &lo, &hi);
    if (st != EPC_OK || i < 0)
        return st;
    if (i >= tables)
        return epc_error_obj(&ctx->hdr, EPC_ERR_MISMATCH,
                             "%s: ranks disagree on %s (from %.0f to %.0f)", fn, xname[i - tables],
                             lo, hi);
    return epc_error_obj(&ctx->hdr, EPC_ERR_MISMATCH, "%s: ranks disagree on %s%s%s", fn,
                         b == NULL ? ""
                         : i < 6   ? "from's "
                                   : "to's ",
                         field[i % 6], i % 6 >= 4 ? " (the tables differ)" : "");
}

/* No dispatch or combine in flight on the context (their buffers and the
 * order of a low-latency combine's sums must not change under them). */
static epc_status_t idle(epc_ctx_t *ctx, const char *fn)
{
    for (int i = 0; i < EPC_MAX_REQUESTS; i++)
        if (ctx->requests[i] != NULL && !ctx->requests[i]->reported)
            return epc_error_obj(&ctx->hdr, EPC_ERR_INVALID_ARG,
                                 "%s: a dispatch or combine is in flight on the context (wait "
                                 "for it first)",
                                 fn);
    return EPC_OK;
}

/* The placement fits the context's ranks (and, when slots is 1, its
 * experts): this rank's verdict, raised into the context. */
static epc_status_t fits(epc_ctx_t *ctx, const epc_placement_t *pl, const char *fn, int slots)
{
    epc_status_t st = epc_placement_check(pl, fn);
    const epc_topo_t *t = ctx->comm.topo;
    if (st != EPC_OK) /* raised without the context: it reports it too */
        return epc_error_sync(&ctx->hdr), st;
    if (pl->R != ctx->comm.nranks)
        return epc_error_obj(&ctx->hdr, EPC_ERR_INVALID_ARG,
                             "%s: the placement has %d ranks, the context %d", fn, pl->R,
                             ctx->comm.nranks);
    if (t->uniform_rpn > 0 && pl->rpn != t->uniform_rpn)
        return epc_error_obj(&ctx->hdr, EPC_ERR_INVALID_ARG,
                             "%s: the placement has %d ranks per node, the context's nodes %d", fn,
                             pl->rpn, t->uniform_rpn);
    if (slots && pl->S != ctx->num_experts)
        return epc_error_obj(&ctx->hdr, EPC_ERR_INVALID_ARG,
                             "%s: the placement has %d slots, the context %d experts (create the "
                             "context with num_experts = num_slots)",
                             fn, pl->S, ctx->num_experts);
    return EPC_OK;
}

epc_status_t epc_placement_agree(epc_ctx_t *ctx, const epc_placement_t *pl)
{
    static const char fn[] = "epc_placement_agree";
    epc_status_t st = epc_ctx_check(ctx, fn);
    int32_t *copy = NULL;
    if (st != EPC_OK)
        return st;
    epc_ctx_lock(ctx);
    if ((st = epc_ctx_enter(ctx, fn)) == EPC_OK) {
        st = fits(ctx, pl, fn, 1);
        if (st == EPC_OK)
            st = idle(ctx, fn);
        if (st == EPC_OK && (copy = malloc((size_t)pl->S * sizeof *copy)) == NULL)
            st = epc_error_obj(&ctx->hdr, EPC_ERR_NO_MEMORY, "%s: %d slots", fn, pl->S);
        st = epc_mpi_agree(ctx->comm.mpi, st, &ctx->hdr, epc_ctx_deadline(ctx));
        if (st == EPC_OK)
            st = same_everywhere(ctx, fn, pl, NULL, NULL, NULL, 0);
        if (st == EPC_OK) { /* the low-latency combine's order from now on */
            memcpy(copy, pl->slot_expert, (size_t)pl->S * sizeof *copy);
            free(ctx->slot_expert);
            ctx->slot_expert = copy;
            copy = NULL;
        }
        st = epc_ctx_leave(ctx, st);
    }
    epc_ctx_unlock(ctx);
    free(copy);
    return st;
}

/* This rank's verdict on epc_placement_move_weights' arguments. */
static epc_status_t move_args(epc_ctx_t *ctx, const epc_placement_t *from,
                              const epc_placement_t *to, const void *old_w, void *new_w,
                              size_t slot_bytes, const char *fn)
{
    epc_status_t st = fits(ctx, from, fn, 0);
    if (st == EPC_OK)
        st = fits(ctx, to, fn, 0);
    if (st == EPC_OK && (st = check_pair(from, to, fn)) != EPC_OK)
        epc_error_sync(&ctx->hdr);
    if (st != EPC_OK)
        return st;
    if (slot_bytes == 0 || old_w == NULL || new_w == NULL)
        return epc_error_obj(&ctx->hdr, EPC_ERR_INVALID_ARG, "%s: %s", fn,
                             slot_bytes == 0 ? "slot_bytes is 0"
                             : old_w == NULL ? "old_weights is NULL"
                                             : "new_weights is NULL");
    if ((const char *)new_w < (const char *)old_w + (size_t)from->spr * slot_bytes &&
        (const char *)old_w < (const char *)new_w + (size_t)to->spr * slot_bytes)
        return epc_error_obj(&ctx->hdr, EPC_ERR_INVALID_ARG,
                             "%s: old_weights and new_weights overlap", fn);
    return idle(ctx, fn);
}

/* The exchange of the slots that change rank: staged through lane 0's
 * transport regions (one message per slot), then copied into place. */
static epc_status_t move_remote(epc_ctx_t *ctx, const epc_slot_move_t *snd, int ns,
                                const epc_slot_move_t *rcv, int nr, const char *old_w, char *new_w,
                                size_t sb)
{
    epc_lane_t *ln = &ctx->comm.lane[0];
    epc_tr_msg_t *sm = malloc(((size_t)ns + (size_t)nr + 1) * sizeof *sm), *rm = sm + ns;
    epc_status_t st;
    if (sm == NULL)
        return epc_error_obj(&ctx->hdr, EPC_ERR_NO_MEMORY, "epc_placement_move_weights: %d moves",
                             ns + nr);
    st = epc_lane_net_reserve(ln, (size_t)ns * sb, (size_t)nr * sb);
    for (int i = 0; st == EPC_OK && i < ns; i++) {
        sm[i] = (epc_tr_msg_t){.peer = snd[i].peer, .offset = (size_t)i * sb, .len = sb};
        memcpy(epc_lane_net_send_at(ln, sm[i].offset, sb), old_w + (size_t)snd[i].slot * sb, sb);
    }
    for (int i = 0; i < nr; i++)
        rm[i] = (epc_tr_msg_t){.peer = rcv[i].peer, .offset = (size_t)i * sb, .len = sb};
    if (st == EPC_OK)
        st = epc_lane_net_exchange(ln, sm, ns, rm, nr, "epc_placement_move_weights");
    for (int i = 0; st == EPC_OK && i < nr; i++)
        memcpy(new_w + (size_t)rcv[i].slot * sb, epc_lane_net_recv_at(ln, rm[i].offset, sb), sb);
    free(sm);
    return st;
}

/* Slots received per round: EPC_MOVE_ROUND_KB's worth, at least one.
 * (The configuration was valid when the context was created, which is
 * checked then; the default stands in should it be unreadable now.) */
static int round_slots(size_t sb)
{
    const epc_config_t *cfg;
    size_t cap = epc_config_get_quiet(&cfg) == EPC_OK
                     ? (size_t)epc_cfg_int(cfg, EPC_CFG_MOVE_ROUND_KB) << 10
                     : (size_t)64 << 20;
    size_t n = cap / sb;
    return n < 1 ? 1 : n > INT32_MAX ? INT32_MAX : (int)n;
}

int coll_move_rounds(const epc_placement_t *from, const epc_placement_t *to, int per, int *round,
                     int *last)
{
    int rounds = 0, R = to->R;
    memset(last, 0, (size_t)4 * R * sizeof *last);
    for (int q = 0; q < to->S; q++) {
        int src = source_slot(from, to, q), *rv = last + 2 * (q / to->spr),
            *sd = last + 2 * (R + src / from->spr), r;
        if (src / from->spr == q / to->spr) {
            round[q] = -1;
            continue;
        }
        r = rv[0] + (rv[1] >= per);
        r = r > sd[0] + (sd[1] >= per) ? r : sd[0] + (sd[1] >= per);
        rv[1] = r == rv[0] ? rv[1] + 1 : 1; /* r == rv[0] only with room left */
        sd[1] = r == sd[0] ? sd[1] + 1 : 1;
        rv[0] = sd[0] = round[q] = r;
        rounds = r + 1 > rounds ? r + 1 : rounds;
    }
    return rounds;
}

/* Once agreed: this rank's moves, local copies, then the exchange in the
 * rounds of coll_move_rounds (both sides of a move know its round from
 * the tables alone). */
static epc_status_t move(epc_ctx_t *ctx, const epc_placement_t *from, const epc_placement_t *to,
                         const char *old_w, char *new_w, size_t sb)
{
    int me = ctx->comm.rank, ns, nr, nremote = 0, rounds;
    int *round = malloc(((size_t)to->S + (size_t)4 * to->R) * sizeof *round);
    epc_slot_move_t *snd, *rcv;
    epc_status_t st = EPC_OK;
    list_moves(from, to, me, NULL, 0, &ns, NULL, 0, &nr);
    snd = malloc(((size_t)2 * ns + (size_t)nr + 1) * sizeof *snd); /* sends, receives, a round */
    if (snd == NULL || round == NULL) {
        free(snd), free(round);
        return epc_error_obj(&ctx->hdr, EPC_ERR_NO_MEMORY, "epc_placement_move_weights: %d moves",
                             ns + nr);
    }
    rounds = coll_move_rounds(from, to, round_slots(sb), round, round + to->S);
    rcv = snd + ns;
    list_moves(from, to, me, snd, ns, &ns, rcv, nr, &nr);
    /* the slots this rank keeps: copied now, and left out of the exchange */
    for (int i = 0; i < nr; i++) {
        if (rcv[i].peer == me)
            memcpy(new_w + (size_t)rcv[i].slot * sb, old_w + (size_t)rcv[i].peer_slot * sb, sb);
        else
            rcv[nremote++] = rcv[i];
    }
    epc_fault_here("move"); /* test hook: agreed, nothing sent yet */
    /* each rank's rounds ascend with the receiving slot, so a round's
     * receives are a run; its sends are picked out, keeping their order
     * (so each pair's stays the same) */
    for (int r = 0, r0 = 0; st == EPC_OK && r < rounds; r++) {
        epc_slot_move_t *cur = snd + ns + nr; /* the spare tail, ns entries */
        int r1 = r0, nc = 0;
        while (r1 < nremote && round[me * to->spr + rcv[r1].slot] == r)
            r1++;
        for (int i = 0; i < ns; i++)
            if (round[snd[i].peer * to->spr + snd[i].peer_slot] == r)
                cur[nc++] = snd[i];
        st = move_remote(ctx, cur, nc, rcv + r0, r1 - r0, old_w, new_w, sb);
        r0 = r1;
    }
    free(snd);
    free(round);
    return st;
}

epc_status_t epc_placement_move_weights(epc_ctx_t *ctx, const epc_placement_t *from,
                                        const epc_placement_t *to, const void *old_weights,
                                        void *new_weights, size_t slot_bytes)
{
    static const char fn[] = "epc_placement_move_weights";
    epc_status_t st = epc_ctx_check(ctx, fn);
    if (st != EPC_OK)
        return st;
    epc_ctx_lock(ctx);
    if ((st = epc_ctx_enter(ctx, fn)) == EPC_OK) {
        st = move_args(ctx, from, to, old_weights, new_weights, slot_bytes, fn);
        st = epc_mpi_agree(ctx->comm.mpi, st, &ctx->hdr, epc_ctx_deadline(ctx));
        if (st == EPC_OK) {
            static const char *const names[] = {"slot_bytes", "EPC_MOVE_ROUND_KB"};
            double x[2] = {(double)slot_bytes, (double)round_slots(slot_bytes)};
            st = same_everywhere(ctx, fn, from, to, x, names, 2);
        }
        if (st == EPC_OK) {
            st = move(ctx, from, to, old_weights, new_weights, slot_bytes);
            /* every rank returns the move's outcome: one whose own
             * exchanges did not involve a failed peer learns of it here
             * (one that timed out does not wait again: leaving tells the
             * others) */
            if (st == EPC_OK &&
                (st = epc_mpi_agree(ctx->comm.mpi, st, &ctx->hdr, epc_ctx_deadline(ctx))) != EPC_OK)
                st = epc_error_context(&ctx->hdr, st, "%s: the outcome of the move", fn);
            else if (st != EPC_OK && st != EPC_ERR_TIMEOUT && st != EPC_ERR_TRANSPORT &&
                     st != EPC_ERR_PEER_FAILED)
                st = epc_mpi_agree(ctx->comm.mpi, st, &ctx->hdr, epc_ctx_deadline(ctx));
        }
        st = epc_ctx_leave(ctx, st);
    }
    epc_ctx_unlock(ctx);
    return st;
}
