/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * progress.c - the context's progress thread: it sleeps until a request
 * is started, then passes over the requests in flight every
 * EPC_PROGRESS_SLEEP_US until none needs progress.  Each pass holds the
 * lock, so the caller's calls and the thread never touch the lanes at
 * once; between passes the lock is free.  What a pass does is the layer
 * above's (a poll function and its argument).
 */
#include <errno.h>
#include <mpi.h>
#include <sched.h>
#include <string.h>
#include <time.h>

#include "progress.h"

static const char *thread_level_name(int level)
{
    switch (level) {
    case MPI_THREAD_SINGLE:
        return "MPI_THREAD_SINGLE";
    case MPI_THREAD_FUNNELED:
        return "MPI_THREAD_FUNNELED";
    case MPI_THREAD_SERIALIZED:
        return "MPI_THREAD_SERIALIZED";
    default:
        return "MPI_THREAD_MULTIPLE";
    }
}

epc_status_t epc_progress_init(epc_progress_state_t *pr, epc_progress_t asked, long sleep_us,
                               epc_obj_t *obj)
{
    int provided = MPI_THREAD_SINGLE;
    memset(pr, 0, sizeof *pr);
    pr->mode = asked;
    pr->sleep_us = sleep_us;
    if (pthread_mutex_init(&pr->lock, NULL) != 0 || pthread_cond_init(&pr->work, NULL) != 0)
        return epc_error_obj(obj, EPC_ERR_NO_MEMORY, "epc_ctx_create: progress lock");
    pr->ready = 1;
    if (pr->mode != EPC_PROGRESS_THREAD)
        return EPC_OK;
    MPI_Query_thread(&provided);
    if (provided < MPI_THREAD_MULTIPLE)
        return epc_error_obj(obj, EPC_ERR_UNSUPPORTED,
                             "epc_ctx_create: progress thread (params->progress or "
                             "EPC_PROGRESS=thread) needs MPI initialised with "
                             "MPI_THREAD_MULTIPLE (MPI_Init_thread); this process has %s",
                             thread_level_name(provided));
    return EPC_OK;
}

static void pause_between_passes(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    if (us <= 0) {
        sched_yield();
        return;
    }
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* The thread: waits for work, then passes until no request needs one.
 * Every wait inside a pass is bounded by the requests' own deadlines, so
 * a stop is seen within one pass. */
static void *progress_main(void *state)
{
    epc_progress_state_t *pr = state;
    pthread_mutex_lock(&pr->lock);
    while (!pr->stop) {
        if (pr->poll(pr->arg) == 0) {
            pthread_cond_wait(&pr->work, &pr->lock);
            continue;
        }
        pthread_mutex_unlock(&pr->lock);
        pause_between_passes(pr->sleep_us);
        pthread_mutex_lock(&pr->lock);
    }
    pthread_mutex_unlock(&pr->lock);
    return NULL;
}

epc_status_t epc_progress_start(epc_progress_state_t *pr, epc_progress_poll_t poll, void *arg,
                                epc_obj_t *obj)
{
    int rc;
    pr->poll = poll;
    pr->arg = arg;
    if (pr->mode != EPC_PROGRESS_THREAD)
        return EPC_OK;
    if ((rc = pthread_create(&pr->thread, NULL, progress_main, pr)) != 0)
        return epc_error_obj(obj, EPC_ERR_NO_MEMORY,
                             "epc_ctx_create: progress thread: pthread_create: %s", strerror(rc));
    pr->running = 1;
    return EPC_OK;
}

void epc_progress_stop(epc_progress_state_t *pr)
{
    if (pr->running) {
        pthread_mutex_lock(&pr->lock);
        pr->stop = 1;
        pthread_cond_signal(&pr->work);
        pthread_mutex_unlock(&pr->lock);
        pthread_join(pr->thread, NULL);
        pr->running = 0;
    }
    if (pr->ready) {
        pthread_cond_destroy(&pr->work);
        pthread_mutex_destroy(&pr->lock);
        pr->ready = 0;
    }
}

void epc_progress_lock(epc_progress_state_t *pr)
{
    if (pr->running)
        pthread_mutex_lock(&pr->lock);
}

int epc_progress_trylock(epc_progress_state_t *pr)
{
    return !pr->running || pthread_mutex_trylock(&pr->lock) == 0;
}

void epc_progress_unlock(epc_progress_state_t *pr)
{
    if (pr->running)
        pthread_mutex_unlock(&pr->lock);
}

void epc_progress_kick(epc_progress_state_t *pr)
{
    if (pr->running)
        pthread_cond_signal(&pr->work);
}
