/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * shm.c - node-local receive regions and fence counters in shared memory.
 *
 * The segments are the library's own, not MPI windows, so their safety is
 * not left to the MPI library: each is created by its owner with an
 * unguessable name (128 random bits), O_EXCL and mode 0600, mapped by every
 * rank of the node, and unlinked by its owner as soon as all have mapped
 * it, so nothing is left in /dev/shm even if the job dies later.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mpi_util.h"
#include "shm.h"
#include "tr.h"

enum { SEG_NAME_LEN = 48 };

/* What each rank tells the others about its segment. */
typedef struct seg_info {
    int64_t size; /* bytes; 0: none; -1: creating it failed */
    char name[SEG_NAME_LEN];
} seg_info_t;

/* Creates this rank's segment of `size` bytes, mapped at *base.  Fills
 * me->name; me->size = -1 (and the error raised) on failure. */
static epc_status_t seg_create(epc_shm_t *s, size_t size, seg_info_t *me, char **base)
{
    unsigned char rnd[16];
    int fd = -1;
    me->size = -1;
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
        return epc_error_obj(s->owner, EPC_ERR_TRANSPORT, "shared memory: getrandom: %s",
                             strerror(errno));
    snprintf(me->name, sizeof me->name, "/epc-");
    for (size_t i = 0; i < sizeof rnd; i++)
        snprintf(me->name + 5 + 2 * i, 3, "%02x", rnd[i]);
    fd = shm_open(me->name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, S_IRUSR | S_IWUSR);
    if (fd < 0)
        return epc_error_obj(s->owner, EPC_ERR_TRANSPORT, "shared memory: shm_open(%s): %s",
                             me->name, strerror(errno));
    if (ftruncate(fd, (off_t)size) != 0 ||
        (*base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)) == MAP_FAILED) {
        int err = errno;
        *base = NULL;
        close(fd);
        shm_unlink(me->name);
        return epc_error_obj(s->owner, EPC_ERR_NO_MEMORY,
                             "shared memory: %zu bytes in %s (is /dev/shm large enough?): %s",
                             size, me->name, strerror(err));
    }
    close(fd);
    me->size = (int64_t)size;
    return EPC_OK;
}

/* Maps a peer's segment after checking it is this user's, private and of
 * the announced size (a name in /dev/shm is not trusted blindly); NULL
 * with the error raised otherwise. */
static char *seg_attach(epc_shm_t *s, const seg_info_t *in, int l)
{
    struct stat st;
    char *b = MAP_FAILED;
    int fd = shm_open(in->name, O_RDWR | O_CLOEXEC, 0);
    if (fd < 0 || fstat(fd, &st) != 0 || st.st_uid != geteuid() ||
        (st.st_mode & 077) != 0 || st.st_size != (off_t)in->size ||
        (b = mmap(NULL, (size_t)in->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)) ==
            MAP_FAILED)
        epc_error_obj(s->owner, EPC_ERR_TRANSPORT,
                      "shared memory: cannot attach rank %d's segment %s (%s)",
                      s->names ? s->names[l] : l, in->name,
                      fd < 0 ? strerror(errno) : "not this user's, not private or wrong size");
    if (fd >= 0)
        close(fd);
    return b == MAP_FAILED ? NULL : b;
}

static void unmap_all(char **base, size_t *cap, int n)
{
    for (int l = 0; l < n; l++) {
        if (base[l] != NULL)
            munmap(base[l], cap[l]);
        base[l] = NULL;
        cap[l] = 0;
    }
}

/*
 * Collective over the node: every rank contributes a segment of `size`
 * bytes (0: none) and maps everyone's into base[]/cap[].  All ranks agree
 * on the outcome; on failure nothing stays mapped or named.
 */
static epc_status_t seg_share(epc_shm_t *s, size_t size, char **base, size_t *cap)
{
    /* Allocated at creation: this collective must not skip a step for lack
     * of memory, or the others would wait in it. */
    seg_info_t me = {0, ""}, *all = s->seg_info;
    epc_status_t st = EPC_OK;
    int ok = 0, all_ok = 0, rc;
    if (st == EPC_OK && size > 0)
        st = seg_create(s, size, &me, &base[s->lrank]);
    if (st != EPC_OK)
        me.size = -1;
    rc = MPI_Allgather(&me, (int)sizeof me, MPI_BYTE, all, (int)sizeof me, MPI_BYTE, s->comm);
    ok = rc == MPI_SUCCESS;
    for (int l = 0; ok && l < s->lsize; l++) {
        ok = all[l].size >= 0;
        cap[l] = ok ? (size_t)all[l].size : 0;
        if (ok && l != s->lrank && all[l].size > 0 &&
            !(ok = (base[l] = seg_attach(s, &all[l], l)) != NULL))
            st = EPC_ERR_TRANSPORT; /* raised by seg_attach */
    }
    if (rc != MPI_SUCCESS && st == EPC_OK)
        st = epc_mpi_error(s->owner, rc, "MPI_Allgather(segment names)");
    /* Nobody unlinks before everyone has mapped (or failed). */
    rc = MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, s->comm);
    if (me.size > 0)
        shm_unlink(me.name);
    if (rc != MPI_SUCCESS || !all_ok) {
        unmap_all(base, cap, s->lsize);
        if (st == EPC_OK)
            st = epc_error_obj(s->owner, EPC_ERR_PEER_FAILED,
                               "shared memory: another rank of this node could not create or "
                               "attach its segment");
    }
    return st;
}

/* The fence counters: one cache line per rank in local rank 0's segment,
 * zero from creation (ftruncate) before anyone can fence. */
static epc_status_t alloc_control(epc_shm_t *s)
{
    epc_status_t st = seg_share(s, s->lrank == 0 ? 64 * (size_t)s->lsize : 0, s->ctl_base,
                                s->ctl_cap);
    s->ctl = s->ctl_base[0];
    return st;
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
    MPI_Comm_rank(node_comm, &s->lrank);
    MPI_Comm_size(node_comm, &s->lsize);
    s->base = calloc((size_t)s->lsize, sizeof *s->base);
    s->cap = calloc((size_t)s->lsize, sizeof *s->cap);
    s->ctl_base = calloc((size_t)s->lsize, sizeof *s->ctl_base);
    s->ctl_cap = calloc((size_t)s->lsize, sizeof *s->ctl_cap);
    s->seg_info = calloc((size_t)s->lsize, sizeof(seg_info_t));
    if (!s->base || !s->cap || !s->ctl_base || !s->ctl_cap || !s->seg_info) {
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
    unmap_all(s->base, s->cap, s->lsize);
    s->mapped = 0;
}

void epc_shm_destroy(epc_shm_t *s)
{
    if (s == NULL)
        return;
    if (s->base != NULL && s->cap != NULL)
        free_window(s);
    if (s->ctl_base != NULL && s->ctl_cap != NULL)
        unmap_all(s->ctl_base, s->ctl_cap, s->lsize);
    free(s->base);
    free(s->cap);
    free(s->ctl_base);
    free(s->ctl_cap);
    free(s->seg_info);
    free(s);
}

/* Every rank's region of `size` bytes (this rank's), mapped by all. */
static epc_status_t alloc_window(epc_shm_t *s, size_t size)
{
    epc_status_t st = seg_share(s, size, s->base, s->cap);
    s->mapped = st == EPC_OK;
    return st;
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
                          need > s->cap[s->lrank] || !s->mapped, memory_order_relaxed);
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
