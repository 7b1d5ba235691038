/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * shm.c - node-local receive regions and fence counters in shared memory.
 *
 * The segments are the library's own, not MPI windows, and they are
 * anonymous: each rank creates its segment with memfd_create, seals its
 * size, and keeps the descriptor open only until every rank of the node
 * has mapped it.  Peers open it through /proc/PID/fd/N of the owner (the
 * kernel lets only the same user do that) and check owner, size and seals
 * before mapping.  No name ever exists in /dev/shm or elsewhere, so a job
 * killed at any instant leaves nothing behind: the memory goes with the
 * last process that maps it.
 *
 * The node's ranks agree through point-to-point messages on the context's
 * control communicator, bounded by the caller's deadline (a node
 * communicator would need MPI_Comm_split, which cannot be bounded).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fault.h"
#include "mpi_util.h"
#include "shm.h"
#include "tr.h"

/* Tag of the node exchanges on the control communicator. */
enum { SHM_TAG = 2 };

/* The size seals every segment carries: a peer can then map it whole
 * without fearing SIGBUS from a later truncation. */
#define SHM_SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)

/* Bytes of the control segment: a line per rank, then the abort area. */
static size_t control_bytes(int lsize)
{
    return 64 * (size_t)lsize + 64 + EPC_SHM_ABORT_TEXT;
}

/* What each rank tells the others about its segment. */
typedef struct seg_info {
    int64_t size; /* bytes; 0: none; -1: creating it failed */
    int32_t pid;  /* owner process */
    int32_t fd;   /* its descriptor there, open until all have mapped */
} seg_info_t;

/* Writes every page of [b, b + size) once from this process, after
 * MADV_POPULATE_READ made them present: an atomic no-op (the value is
 * unchanged, so it is safe beside a peer already writing rows there).
 * Why: on this project's VM the first store of each process to each
 * shared page stays slow after MAP_POPULATE, and even after
 * MADV_POPULATE_WRITE, with no page fault counted in the guest (likely
 * the virtualised MMU making the page writable for that process); inside
 * a dispatch it falls on every page a new routing writes to first.
 * Measured there (2 ranks, hier dispatch of 2048 x 7168 bf16 whose expert
 * ids shift every call, epc_bench --reroute): 82.8 ms a call with
 * MAP_POPULATE alone, 54.5 ms with MADV_POPULATE_WRITE instead, 67.6 ms
 * with each rank's own region written when created, 17.0-19.1 ms with
 * every region written by every rank.  Only epc_shm_touch does it, which
 * epc_ctx_warmup calls: done at every grow, it made the first call of 8
 * ranks on this VM's 2 cores outlast the timeout, and even the own region
 * alone made an 8-rank dispatch that grew its regions take seconds. */
static void touch_writable(char *b, size_t size)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
#if defined(MADV_POPULATE_READ)
    /* no mapping is populated (seg_create): its pages and page tables in
     * one call, not one fault per page below (an older kernel refuses the
     * advice, and the faults do it).  READ, as MAP_POPULATE does for a
     * shared mapping: with MADV_POPULATE_WRITE an 8-rank epc_ctx_warmup
     * took 10.4-11.3 s on this project's VM, with READ 7.0-7.3 s, with
     * every mapping populated when attached (before) 6.2-6.7 s in five
     * runs and 9.0 s in a sixth. */
    (void)madvise(b, size, MADV_POPULATE_READ);
#endif
    for (size_t off = 0; off < size; off += page)
        __atomic_fetch_or((unsigned char *)b + off, 0, __ATOMIC_RELAXED);
}

/* Creates this rank's segment of `size` bytes, mapped at *base, its
 * descriptor in me->fd.  me->size = -1 (and the error raised) on failure. */
static epc_status_t seg_create(epc_shm_t *s, size_t size, seg_info_t *me, char **base)
{
    int fd = memfd_create("epc-region", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    me->size = -1;
    me->fd = -1;
    if (fd < 0)
        return epc_error_obj(s->owner, EPC_ERR_TRANSPORT, "shared memory: memfd_create: %s",
                             strerror(errno));
    /* Not populated (MAP_POPULATE): a page is made when a rank first
     * touches it, inside dispatch, by the rank that writes a row there.
     * Measured on this project's 2-core VM (hier dispatch of 2048 x 7168
     * bf16, the first call of a fresh context, `epc_bench -t 2048 -n 3 -w
     * 2 -a hier`, peers' mappings already unpopulated, two runs each): 8
     * ranks, 1.61 and 1.59 s with the owner's mapping populated, 0.63 and
     * 0.65 s without; 2 ranks, 370 and 378 ms against 184 and 167 ms.  The
     * cost moves to the calls that first touch a page: with routing that
     * shifts every call (--reroute, 2 ranks, 8 calls) hier dispatch took
     * 21.2-21.8 ms a call against 18.1-18.4 ms; epc_ctx_warmup touches
     * every page (touch_writable).  Peers map it the same way (seg_attach). */
    if (fchmod(fd, S_IRUSR | S_IWUSR) != 0 || ftruncate(fd, (off_t)size) != 0 ||
        fcntl(fd, F_ADD_SEALS, SHM_SEALS) != 0 ||
        (*base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)) == MAP_FAILED) {
        int err = errno;
        *base = NULL;
        close(fd);
        return epc_error_obj(s->owner, EPC_ERR_NO_MEMORY, "shared memory: %zu-byte segment: %s",
                             size, strerror(err));
    }
    me->fd = fd;
    me->pid = (int32_t)getpid();
    me->size = (int64_t)size;
    return EPC_OK;
}

/* Each rank starts with its own region and goes round from there, so
 * that ranks touching at once are on different regions: the first touch
 * of a page makes it, under the region's locks. */
void epc_shm_touch(epc_shm_t *s)
{
    for (int i = 0; s->mapped && i < s->lsize; i++) {
        int l = (s->lrank + i) % s->lsize;
        if (s->base[l] != NULL)
            touch_writable(s->base[l], s->cap[l]);
    }
}

/* Maps local rank l's segment after checking it is this user's, of the
 * announced size and sealed (so it is a memfd made by this library, not
 * whatever the descriptor number now points to); NULL with the error
 * raised otherwise.  Not populated (nor is the owner's, seg_create; the
 * peers' went first): a peer touches only the pages of the
 * rows it places there and reads back, about 1/R of the region with R
 * ranks on the node, so populating every rank's mapping of every region
 * made R times the page-table entries it uses.  Measured on this
 * project's 2-core VM (hier dispatch of 2048 x 7168 bf16, the first call
 * of a fresh context, `epc_bench -t 2048 -n 3 -w 2 -a hier`, two runs
 * each): 8 ranks, 4.30 and 2.59 s populated, 1.73 and 1.70 s not; 2
 * ranks, 466 and 402 ms populated, 509 and 365 ms not. */
static char *seg_attach(epc_shm_t *s, const seg_info_t *in, int l)
{
    char path[64];
    struct stat st;
    char *b = MAP_FAILED;
    int fd;
    snprintf(path, sizeof path, "/proc/%d/fd/%d", (int)in->pid, (int)in->fd);
    fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0 || st.st_uid != geteuid() || st.st_size != (off_t)in->size ||
        (fcntl(fd, F_GET_SEALS) & SHM_SEALS) != SHM_SEALS ||
        (b = mmap(NULL, (size_t)in->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)) == MAP_FAILED)
        epc_error_obj(s->owner, EPC_ERR_TRANSPORT,
                      "shared memory: cannot attach rank %d's segment (%s): %s", s->names[l], path,
                      fd < 0 ? strerror(errno) : "not this user's, wrong size or unsealed");
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
 * Collective over the node: each rank sends `len` bytes of `mine` to every
 * other and receives theirs into all (local rank l's at l * len), by dl.
 * A timeout names the first rank that did not answer and breaks the
 * node's agreement (s->broken).
 */
static epc_status_t node_allgather(epc_shm_t *s, const void *mine, size_t len, void *all,
                                   epc_deadline_t dl, const char *what)
{
    int rc = MPI_SUCCESS, pending = 0, n = 2 * s->lsize;
    epc_status_t st;
    for (int i = 0; i < n; i++)
        s->reqs[i] = MPI_REQUEST_NULL;
    memcpy((char *)all + (size_t)s->lrank * len, mine, len);
    for (int l = 0; l < s->lsize && rc == MPI_SUCCESS; l++) {
        if (l == s->lrank)
            continue;
        rc = MPI_Irecv((char *)all + (size_t)l * len, (int)len, MPI_BYTE, s->names[l], SHM_TAG,
                       s->comm, &s->reqs[2 * l]);
        if (rc == MPI_SUCCESS)
            rc = MPI_Isend(mine, (int)len, MPI_BYTE, s->names[l], SHM_TAG, s->comm,
                           &s->reqs[2 * l + 1]);
    }
    st = rc != MPI_SUCCESS ? epc_mpi_error(s->owner, rc, what)
                           : epc_mpi_wait_all(s->reqs, n, dl, &pending, what);
    if (st == EPC_ERR_TIMEOUT)
        st = epc_error_obj(s->owner, EPC_ERR_TIMEOUT,
                           "%s: timed out waiting for rank %d (local rank %d)", what,
                           s->names[pending / 2], pending / 2);
    else if (st == EPC_ERR_TRANSPORT)
        epc_error_sync(s->owner);
    else if (st != EPC_OK) /* interrupted: say whom this rank was waiting for */
        st = epc_error_context(s->owner, st, "%s: waiting for rank %d (local rank %d)", what,
                               s->names[pending / 2], pending / 2);
    if (st != EPC_OK) {
        epc_mpi_cancel_all(s->reqs, n);
        s->broken = 1;
    }
    return st;
}

/* Maps every peer's announced segment: 1 when all went well, 0 when a
 * peer announced a failure (nothing raised here), -1 when mapping one
 * failed (raised by seg_attach). */
static int attach_all(epc_shm_t *s, const seg_info_t *all, char **base, size_t *cap)
{
    for (int l = 0; l < s->lsize; l++)
        if (all[l].size < 0)
            return 0;
    for (int l = 0; l < s->lsize; l++) {
        cap[l] = (size_t)all[l].size;
        if (l != s->lrank && all[l].size > 0 && (base[l] = seg_attach(s, &all[l], l)) == NULL)
            return -1;
    }
    return 1;
}

/* Collective over the node: the AND of every rank's ok, by dl (the
 * announcements' buffer is reused: they are no longer needed). */
static epc_status_t node_all_ok(epc_shm_t *s, int *ok, epc_deadline_t dl, const char *phase)
{
    int32_t mine = *ok, *all = s->seg_info;
    epc_status_t st = node_allgather(s, &mine, sizeof mine, all, dl, phase);
    for (int l = 0; st == EPC_OK && l < s->lsize; l++)
        *ok &= all[l] != 0;
    return st;
}

/*
 * Collective over the node: every rank contributes a segment of `size`
 * bytes (0: none) and maps everyone's into base[]/cap[].  All ranks agree
 * on the outcome; on failure nothing stays mapped.  Each owner keeps its
 * descriptor open until every rank has mapped (or failed), then closes it.
 */
static epc_status_t seg_share(epc_shm_t *s, size_t size, char **base, size_t *cap,
                              epc_deadline_t dl, const char *phase)
{
    seg_info_t me = {0, 0, -1};
    epc_status_t st = EPC_OK, xst;
    int ok = 0;
    if (size > 0 && (st = seg_create(s, size, &me, &base[s->lrank])) == EPC_OK)
        cap[s->lrank] = size; /* so a failure below unmaps it whole */
    epc_fault_here("shm");    /* test hook: a segment exists, not yet mapped by all */
    xst = node_allgather(s, &me, sizeof me, s->seg_info, dl, phase);
    if (xst == EPC_OK) {
        int attached = st == EPC_OK ? attach_all(s, s->seg_info, base, cap) : 0;
        ok = attached == 1;
        if (attached < 0)
            st = EPC_ERR_TRANSPORT; /* raised by seg_attach */
        /* Nobody closes before everyone has mapped (or failed). */
        xst = node_all_ok(s, &ok, dl, phase);
    }
    if (me.fd >= 0)
        close(me.fd);
    if (st == EPC_OK)
        st = xst;
    if (!ok || st != EPC_OK) {
        unmap_all(base, cap, s->lsize);
        if (st == EPC_OK)
            st = epc_error_obj(s->owner, EPC_ERR_PEER_FAILED,
                               "%s: another rank of this node could not create or attach its "
                               "shared-memory segment",
                               phase);
    }
    return st;
}

/* The fence counters and abort area in local rank 0's segment, zero from
 * creation (ftruncate) before anyone can use them. */
static epc_status_t alloc_control(epc_shm_t *s, epc_deadline_t dl)
{
    epc_status_t st = seg_share(s, s->lrank == 0 ? control_bytes(s->lsize) : 0, s->ctl_base,
                                s->ctl_cap, dl, "creating the node's shared memory");
    s->ctl = s->ctl_base[0];
    return st;
}

epc_status_t epc_shm_create(MPI_Comm comm, const int *names, int lsize, int lrank, epc_obj_t *owner,
                            epc_deadline_t dl, epc_shm_t **shm_p)
{
    epc_shm_t *s = calloc(1, sizeof *s);
    size_t info = sizeof(seg_info_t) > sizeof(int32_t) ? sizeof(seg_info_t) : sizeof(int32_t);
    epc_status_t st;
    if (s == NULL)
        return epc_error_obj(owner, EPC_ERR_NO_MEMORY, "shared-memory state");
    s->owner = owner;
    s->comm = comm;
    s->names = names;
    s->lrank = lrank;
    s->lsize = lsize;
    /* Everything the node exchanges need is allocated here: an exchange
     * must never skip a step for lack of memory, or the others would wait. */
    s->base = calloc((size_t)lsize, sizeof *s->base);
    s->cap = calloc((size_t)lsize, sizeof *s->cap);
    s->ctl_base = calloc((size_t)lsize, sizeof *s->ctl_base);
    s->ctl_cap = calloc((size_t)lsize, sizeof *s->ctl_cap);
    s->seg_info = calloc((size_t)lsize, info);
    s->reqs = calloc((size_t)2 * lsize, sizeof *s->reqs);
    if (!s->base || !s->cap || !s->ctl_base || !s->ctl_cap || !s->seg_info || !s->reqs) {
        epc_shm_destroy(s);
        return epc_error_obj(owner, EPC_ERR_NO_MEMORY, "shared-memory state of %d ranks", lsize);
    }
    if ((st = alloc_control(s, dl)) != EPC_OK) {
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
    free(s->reqs);
    free(s);
}

/* Each rank's control line: the fence counter in word 0, its reserve flags
 * in words 1 and 2 (alternate reserves use alternate words). */
static _Atomic uint64_t *line(const epc_shm_t *s, int l, int word)
{
    return (_Atomic uint64_t *)(void *)(s->ctl + 64 * (size_t)l + 8 * (size_t)word);
}

void epc_shm_abort_area(const epc_shm_t *s, _Atomic uint64_t **word, char **text)
{
    *word = (_Atomic uint64_t *)(void *)(s->ctl + 64 * (size_t)s->lsize);
    *text = s->ctl + 64 * (size_t)s->lsize + 64;
}

epc_status_t epc_shm_reserve_begin(epc_shm_t *s, size_t need, const char *phase, uint64_t *target)
{
    /* Publish whether this rank must grow, then arrive at the fence; the
     * flags are read once every rank has arrived.  A rank that leaves
     * early writes its next flag into the other word, and cannot reach the
     * reserve after that without passing a fence this rank is still
     * before, so no flag is overwritten while it is read. */
    s->reserve_word = 1 + (int)(s->reserves++ & 1);
    atomic_store_explicit(line(s, s->lrank, s->reserve_word), need > s->cap[s->lrank] || !s->mapped,
                          memory_order_relaxed);
    return epc_shm_fence_arrive(s, phase, target);
}

epc_status_t epc_shm_reserve_end(epc_shm_t *s, size_t need, epc_deadline_t dl, const char *phase)
{
    int any = 0;
    epc_status_t st;
    size_t size;
    for (int l = 0; l < s->lsize; l++)
        any |= atomic_load_explicit(line(s, l, s->reserve_word), memory_order_relaxed) != 0;
    if (!any)
        return EPC_OK;
    epc_fault_here("grow"); /* test hook: a region is about to grow */
    size = need > s->cap[s->lrank] ? epc_tr_grow_size(s->cap[s->lrank], need) : s->cap[s->lrank];
    free_window(s);
    st = seg_share(s, size, s->base, s->cap, dl, phase);
    s->mapped = st == EPC_OK;
    if (st == EPC_OK)
        s->grows++;
    return st;
}

epc_status_t epc_shm_reserve(epc_shm_t *s, size_t need, epc_deadline_t dl, const char *phase)
{
    uint64_t target = 0;
    epc_status_t st = epc_shm_reserve_begin(s, need, phase, &target);
    if (st == EPC_OK)
        st = epc_shm_fence_wait(s, target, dl, phase);
    return st == EPC_OK ? epc_shm_reserve_end(s, need, dl, phase) : st;
}

static _Atomic uint64_t *counter(const epc_shm_t *s, int l)
{
    return line(s, l, 0);
}

epc_status_t epc_shm_fence_arrive(epc_shm_t *s, const char *phase, uint64_t *target)
{
    if (s->broken)
        return epc_error_obj(s->owner, EPC_ERR_TRANSPORT,
                             "%s: an earlier node fence or exchange failed; destroy the context",
                             phase);
    *target = ++s->epoch;
    /* Release: every write before the fence is visible to whoever sees the
     * counter; acquire in epc_shm_fence_test pairs with the others'. */
    atomic_store_explicit(counter(s, s->lrank), *target, memory_order_release);
    return EPC_OK;
}

int epc_shm_fence_test(const epc_shm_t *s, uint64_t target, int *missing)
{
    for (int l = 0; l < s->lsize; l++)
        if (atomic_load_explicit(counter(s, l), memory_order_acquire) < target) {
            *missing = l;
            return 0;
        }
    return 1;
}

epc_status_t epc_shm_fence_fail(epc_shm_t *s, epc_status_t st, int missing, const char *phase)
{
    s->broken = 1;
    if (st == EPC_ERR_TIMEOUT)
        return epc_error_obj(s->owner, EPC_ERR_TIMEOUT,
                             "%s: timed out at the node fence waiting for rank %d (local rank %d)",
                             phase, s->names[missing], missing);
    /* a peer aborted: keep whom this rank waited for */
    return epc_error_context(s->owner, st,
                             "%s: at the node fence waiting for rank %d (local rank %d)", phase,
                             s->names[missing], missing);
}

epc_status_t epc_shm_fence_wait(epc_shm_t *s, uint64_t target, epc_deadline_t dl, const char *phase)
{
    int missing;
    while (!epc_shm_fence_test(s, target, &missing)) {
        epc_status_t st = epc_deadline_check(dl);
        if (st != EPC_OK)
            return epc_shm_fence_fail(s, st, missing, phase);
        sched_yield();
    }
    return EPC_OK;
}

epc_status_t epc_shm_fence(epc_shm_t *s, epc_deadline_t dl, const char *phase)
{
    uint64_t target = 0;
    epc_status_t st = epc_shm_fence_arrive(s, phase, &target);
    return st == EPC_OK ? epc_shm_fence_wait(s, target, dl, phase) : st;
}
