/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * timer.h - monotonic time and deadlines.  Every wait in epcomm is bounded by
 * a deadline from here, so no rank waits forever.
 */
#ifndef EPC_COMMON_TIMER_H
#define EPC_COMMON_TIMER_H

#include <stdint.h>
#include <time.h>

/* Nanoseconds on CLOCK_MONOTONIC: unaffected by wall-clock changes. */
static inline uint64_t epc_time_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline double epc_time_sec(void)
{
    return (double)epc_time_ns() * 1e-9;
}

typedef struct epc_deadline {
    uint64_t end_ns; /* UINT64_MAX: never expires */
} epc_deadline_t;

/* A deadline timeout_ms from now; timeout_ms <= 0 means none. */
static inline epc_deadline_t epc_deadline_in_ms(long timeout_ms)
{
    epc_deadline_t d;
    d.end_ns = timeout_ms > 0 ? epc_time_ns() + (uint64_t)timeout_ms * 1000000ull : UINT64_MAX;
    return d;
}

static inline int epc_deadline_expired(epc_deadline_t d)
{
    return d.end_ns != UINT64_MAX && epc_time_ns() >= d.end_ns;
}

#endif
