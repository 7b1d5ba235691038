/* SPDX-License-Identifier: BSD-3-Clause */
/* shm.c - node-local receive regions in an MPI-3 shared window. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "mpi_util.h"
#include "shm.h"
#include "tr.h"

epc_status_t epc_shm_create(MPI_Comm node_comm, epc_obj_t *owner, epc_shm_t **shm_p)
{
    epc_shm_t *s = calloc(1, sizeof *s);
    if (s == NULL)
        return epc_error_obj(owner, EPC_ERR_NO_MEMORY, "shared-memory state");
    s->owner = owner;
    s->comm = node_comm;
    s->win = MPI_WIN_NULL;
    MPI_Comm_rank(node_comm, &s->lrank);
    MPI_Comm_size(node_comm, &s->lsize);
    s->base = calloc((size_t)s->lsize, sizeof *s->base);
    s->cap = calloc((size_t)s->lsize, sizeof *s->cap);
    if (s->base == NULL || s->cap == NULL) {
        epc_shm_destroy(s);
        return epc_error_obj(owner, EPC_ERR_NO_MEMORY, "shared-memory state of %d ranks",
                             s->lsize);
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

epc_status_t epc_shm_reserve(epc_shm_t *s, size_t need, epc_deadline_t dl)
{
    int mine = need > s->cap[s->lrank] || s->win == MPI_WIN_NULL, any = 0, pending, rc;
    MPI_Request req;
    epc_status_t st;
    size_t size;
    rc = MPI_Iallreduce(&mine, &any, 1, MPI_INT, MPI_MAX, s->comm, &req);
    if (rc != MPI_SUCCESS)
        return epc_mpi_error(s->owner, rc, "MPI_Iallreduce(shared-memory sizes)");
    st = epc_mpi_wait_all(&req, 1, dl, &pending, "shared-memory reserve");
    if (st == EPC_ERR_TIMEOUT)
        return epc_error_obj(s->owner, EPC_ERR_TIMEOUT,
                             "shared-memory reserve: timed out waiting for the ranks of the node");
    if (st != EPC_OK || !any)
        return st;
    size = need > s->cap[s->lrank] ? epc_tr_grow_size(s->cap[s->lrank], need) : s->cap[s->lrank];
    free_window(s);
    st = alloc_window(s, size);
    if (st == EPC_OK)
        s->grows++;
    return st;
}

epc_status_t epc_shm_fence(epc_shm_t *s, epc_deadline_t dl, const char *phase)
{
    epc_status_t st;
    atomic_thread_fence(memory_order_release);
    if (s->win != MPI_WIN_NULL)
        MPI_Win_sync(s->win);
    st = epc_mpi_barrier(s->comm, dl, phase, s->owner);
    if (s->win != MPI_WIN_NULL)
        MPI_Win_sync(s->win);
    atomic_thread_fence(memory_order_acquire);
    return st;
}
