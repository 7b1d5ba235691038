/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * progress.h - who advances the context's requests: the caller (its
 * epc_test and epc_wait calls) or a thread the context owns.
 *
 * The thread is a service of the communication layer: it knows nothing of
 * dispatch or combine.  The layer above gives a poll function and its
 * argument (run with the lock held, returning how many requests still
 * need progress) and kicks the thread when it starts a request.  With the
 * thread, every call that touches the lanes, requests or counters holds
 * the lock (epc_progress_lock; the context's epc_ctx_lock); in caller
 * mode the lock is never taken, so the blocking calls cost what they
 * always did.
 */
#ifndef EPC_COMM_PROGRESS_H
#define EPC_COMM_PROGRESS_H

#include <pthread.h>

#include "epcomm.h"
#include "error.h"

/* Runs one pass over the requests in flight of arg (the owner's);
 * returns how many still need one. */
typedef int (*epc_progress_poll_t)(void *arg);

typedef struct epc_progress_state {
    epc_progress_t mode;      /* EPC_PROGRESS_CALLER or _THREAD, fixed at creation */
    long sleep_us;            /* the thread's pause between passes (EPC_PROGRESS_SLEEP_US) */
    epc_progress_poll_t poll; /* the layer above's, given at start */
    void *arg;
    pthread_mutex_t lock;
    pthread_cond_t work; /* signalled by a kick and by stop */
    pthread_t thread;
    int ready; /* lock and condition initialised */
    int running, stop;
} epc_progress_state_t;

/* The mode asked (params, else EPC_PROGRESS) into pr; with the thread,
 * EPC_ERR_UNSUPPORTED raised into obj unless MPI provides
 * MPI_THREAD_MULTIPLE (the thread calls MPI while the caller may too). */
epc_status_t epc_progress_init(epc_progress_state_t *pr, epc_progress_t asked, long sleep_us,
                               epc_obj_t *obj);

/* Starts the thread, which runs poll(arg) (thread mode; nothing in caller
 * mode).  Local: EPC_ERR_NO_MEMORY raised into obj when it cannot be
 * created. */
epc_status_t epc_progress_start(epc_progress_state_t *pr, epc_progress_poll_t poll, void *arg,
                                epc_obj_t *obj);

/* Stops and joins the thread (if any) and frees the lock; then only the
 * caller touches the owner.  Safe on a state epc_progress_init set, and
 * on a zeroed one. */
void epc_progress_stop(epc_progress_state_t *pr);

/* The owner's lock, taken by every call that touches its lanes, requests
 * or counters while a thread may progress them (a no-op in caller mode). */
void epc_progress_lock(epc_progress_state_t *pr);
void epc_progress_unlock(epc_progress_state_t *pr);

/* Takes the lock if it is free: 1 when held now (always in caller mode),
 * 0 when the thread holds it. */
int epc_progress_trylock(epc_progress_state_t *pr);

/* Tells the thread that a request needs progress (lock held). */
void epc_progress_kick(epc_progress_state_t *pr);

#endif
