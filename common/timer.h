/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * timer.h - monotonic time and deadlines.  Every wait in epcomm is bounded by
 * a deadline from here, so no rank waits forever.
 */
#ifndef EPC_COMMON_TIMER_H
#define EPC_COMMON_TIMER_H

#include <stdint.h>
#include <time.h>

#include "epcomm.h"

/* Nanoseconds on CLOCK_MONOTONIC: unaffected by wall-clock changes. */
static inline uint64_t epc_time_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* When a wait must end.  `interrupted`, when set, is asked on every check
 * whether the wait must end early (a peer aborted the context): it returns
 * EPC_OK to go on, or an error it has raised. */
typedef struct epc_deadline {
    uint64_t end_ns; /* UINT64_MAX: never expires */
    epc_status_t (*interrupted)(void *arg);
    void *arg;
} epc_deadline_t;

/* A deadline timeout_ms from now; timeout_ms <= 0 means none. */
static inline epc_deadline_t epc_deadline_in_ms(long timeout_ms)
{
    epc_deadline_t d;
    d.end_ns = timeout_ms > 0 ? epc_time_ns() + (uint64_t)timeout_ms * 1000000ull : UINT64_MAX;
    d.interrupted = NULL;
    d.arg = NULL;
    return d;
}

static inline int epc_deadline_expired(epc_deadline_t d)
{
    return d.end_ns != UINT64_MAX && epc_time_ns() >= d.end_ns;
}

/* What every wait loop asks between polls: EPC_OK to go on waiting,
 * EPC_ERR_TIMEOUT once the deadline passed (not raised: the waiter names
 * what it waited for), or the interrupt's error (already raised). */
static inline epc_status_t epc_deadline_check(epc_deadline_t d)
{
    if (d.interrupted != NULL) {
        epc_status_t st = d.interrupted(d.arg);
        if (st != EPC_OK)
            return st;
    }
    return epc_deadline_expired(d) ? EPC_ERR_TIMEOUT : EPC_OK;
}

#endif
