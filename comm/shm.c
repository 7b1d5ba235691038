/* SPDX-License-Identifier: BSD-3-Clause */
/* shm.c - node-local receive regions in an MPI-3 shared window. */
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "mpi_util.h"
#include "shm.h"
#include "tr.h"

/* The fence counters: one cache line per rank, zeroed by their owners
 * before the window's creation returns anywhere (it is collective). */
static epc_status_t alloc_control(epc_shm_t *s)
{
    MPI_Aint sz;
    int disp, rc;
    void *mine;
    rc = MPI_Win_allocate_shared(64, 1, MPI_INFO_NULL, s->comm, &mine, &s->ctl_win);
    if (rc != MPI_SUCCESS) {
        s->ctl_win = MPI_WIN_NULL;
        return epc_mpi_error(s->owner, rc, "MPI_Win_allocate_shared(control)");
    }
    memset(mine, 0, 64);
    rc = MPI_Win_shared_query(s->ctl_win, 0, &sz, &disp, &s->ctl);
    if (rc != MPI_SUCCESS)
        return epc_mpi_error(s->owner, rc, "MPI_Win_shared_query(control)");
    MPI_Barrier(s->comm); /* every counter is zero before anyone fences */
    return EPC_OK;
}

epc_status_t epc_shm_create(MPI_Comm node_comm, const int *names, epc_obj_t *owner,
                            epc_shm_t **shm_p)
{
    epc_shm_t *s = calloc(1, sizeof *s);
    epc_status_t st;
    if (s == NULL)
        return epc_error_obj(owner, EPC_ERR_NO_MEMORY, "shared-memory state");
    s->owner = owner;
    s->comm = node_comm;
    s->names = names;
    s->win = MPI_WIN_NULL;
    s->ctl_win = MPI_WIN_NULL;
    MPI_Comm_rank(node_comm, &s->lrank);
    MPI_Comm_size(node_comm, &s->lsize);
    s->base = calloc((size_t)s->lsize, sizeof *s->base);
    s->cap = calloc((size_t)s->lsize, sizeof *s->cap);
    if (s->base == NULL || s->cap == NULL) {
        epc_shm_destroy(s);
        return epc_error_obj(owner, EPC_ERR_NO_MEMORY, "shared-memory state of %d ranks",
                             s->lsize);
    }
    if ((st = alloc_control(s)) != EPC_OK) {
        epc_shm_destroy(s);
        return st;
    }
    *shm_p = s;
    return EPC_OK;
}

static void free_window(epc_shm_t *s)
{
    if (s->win == MPI_WIN_NULL)
        return;
    MPI_Win_unlock_all(s->win);
    MPI_Win_free(&s->win);
    memset(s->base, 0, (size_t)s->lsize * sizeof *s->base);
    memset(s->cap, 0, (size_t)s->lsize * sizeof *s->cap);
}

void epc_shm_destroy(epc_shm_t *s)
{
    if (s == NULL)
        return;
    if (s->base != NULL && s->cap != NULL)
        free_window(s);
    if (s->ctl_win != MPI_WIN_NULL)
        MPI_Win_free(&s->ctl_win);
    free(s->base);
    free(s->cap);
    free(s);
}

/* Allocates the window with `size` bytes for this rank and maps all. */
static epc_status_t alloc_window(epc_shm_t *s, size_t size)
{
    MPI_Info info;
    void *mine;
    int rc;
    MPI_Info_create(&info);
    /* Each rank's region on its own pages, first touched by its owner. */
    MPI_Info_set(info, "alloc_shared_noncontig", "true");
    rc = MPI_Win_allocate_shared((MPI_Aint)size, 1, info, s->comm, &mine, &s->win);
    MPI_Info_free(&info);
    if (rc != MPI_SUCCESS) {
        s->win = MPI_WIN_NULL;
        return epc_mpi_error(s->owner, rc, "MPI_Win_allocate_shared");
    }
    for (int r = 0; r < s->lsize; r++) {
        MPI_Aint sz;
        int disp;
        void *b;
        rc = MPI_Win_shared_query(s->win, r, &sz, &disp, &b);
        if (rc != MPI_SUCCESS)
            return epc_mpi_error(s->owner, rc, "MPI_Win_shared_query");
        s->base[r] = b;
        s->cap[r] = (size_t)sz;
    }
    rc = MPI_Win_lock_all(MPI_MODE_NOCHECK, s->win); /* for MPI_Win_sync */
    return rc == MPI_SUCCESS ? EPC_OK : epc_mpi_error(s->owner, rc, "MPI_Win_lock_all");
}

/* Each rank's control line: the fence counter in word 0, its reserve flags
 * in words 1 and 2 (alternate reserves use alternate words). */
static _Atomic uint64_t *line(const epc_shm_t *s, int l, int word)
{
    return (_Atomic uint64_t *)(void *)(s->ctl + 64 * (size_t)l + 8 * (size_t)word);
}

epc_status_t epc_shm_reserve(epc_shm_t *s, size_t need, epc_deadline_t dl, const char *phase)
{
    int any = 0, word = 1 + (int)(s->reserves++ & 1);
    epc_status_t st;
    size_t size;
    /* Publish whether this rank must grow, fence (which names a rank that
     * does not arrive), then read everyone's flag.  A rank that leaves
     * early writes its next flag into the other word, and cannot reach the
     * reserve after that without passing a fence this rank is still
     * before, so no flag is overwritten while it is read. */
    atomic_store_explicit(line(s, s->lrank, word),
                          need > s->cap[s->lrank] || s->win == MPI_WIN_NULL, memory_order_relaxed);
    if ((st = epc_shm_fence(s, dl, phase)) != EPC_OK)
        return st;
    for (int l = 0; l < s->lsize; l++)
        any |= atomic_load_explicit(line(s, l, word), memory_order_relaxed) != 0;
    if (!any)
        return EPC_OK;
    /* Every rank of the node is here: the collective reallocation cannot
     * wait for an absent one. */
    size = need > s->cap[s->lrank] ? epc_tr_grow_size(s->cap[s->lrank], need) : s->cap[s->lrank];
    free_window(s);
    st = alloc_window(s, size);
    if (st == EPC_OK)
        s->grows++;
    return st;
}

static _Atomic uint64_t *counter(const epc_shm_t *s, int l)
{
    return line(s, l, 0);
}

epc_status_t epc_shm_fence(epc_shm_t *s, epc_deadline_t dl, const char *phase)
{
    uint64_t target;
    if (s->broken)
        return epc_error_obj(s->owner, EPC_ERR_TRANSPORT,
                             "%s: an earlier node fence timed out; destroy the context", phase);
    target = ++s->epoch;
    /* Release: every write before the fence is visible to whoever sees the
     * counter; acquire below pairs with the others' release. */
    atomic_store_explicit(counter(s, s->lrank), target, memory_order_release);
    for (int l = 0; l < s->lsize; l++)
        while (atomic_load_explicit(counter(s, l), memory_order_acquire) < target) {
            if (epc_deadline_expired(dl))
                return s->broken = 1, epc_error_obj(s->owner, EPC_ERR_TIMEOUT,
                                     "%s: timed out at the node fence waiting for rank %d "
                                     "(local rank %d)",
                                     phase, s->names ? s->names[l] : -1, l);
            sched_yield();
        }
    return EPC_OK;
}
