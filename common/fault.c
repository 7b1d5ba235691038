/* SPDX-License-Identifier: BSD-3-Clause */
/* fault.c - the EPC_FAULT test hook. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "fault.h"
#include "log.h"

/* 1 when name is one of EPC_FAULT_PHASES exactly. */
static int phase_is_listed(const char *name)
{
    const char *p = EPC_FAULT_PHASES;
    size_t n = strlen(name);
    while (n > 0 && p != NULL) {
        if (strncmp(p, name, n) == 0 && (p[n] == '|' || p[n] == '\0'))
            return 1;
        p = strchr(p, '|');
        p = p != NULL ? p + 1 : NULL;
    }
    return 0;
}

int epc_fault_parse(const char *spec, epc_fault_t *f)
{
    epc_fault_t t = {0};
    char act[32] = "", extra;
    long ms;
    if (spec == NULL || sscanf(spec, "%d:%15[a-z]:%31[^:]%c", &t.rank, t.phase, act, &extra) != 3 ||
        t.rank < 0)
        return -1;
    if (strcmp(t.phase, "counts") == 0 || strcmp(act, "corrupt") == 0) {
        if (strcmp(t.phase, "counts") != 0 || strcmp(act, "corrupt") != 0)
            return -1;
        t.corrupt = 1;
    } else if (!phase_is_listed(t.phase)) {
        return -1;
    } else if (strcmp(act, "exit") == 0) {
        t.kill = 1;
    } else if (sscanf(act, "stall=%ld%c", &ms, &extra) == 1 && ms > 0 && ms <= 86400000) {
        t.stall_ms = ms;
    } else {
        return -1;
    }
    *f = t;
    return 0;
}

int epc_fault_point(const char *phase, int world_rank)
{
    static int warned;
    const epc_config_t *cfg;
    const char *spec;
    struct timespec now;
    epc_fault_t f;
    (void)epc_config_get_quiet(&cfg);
    spec = epc_cfg_string(cfg, EPC_CFG_FAULT);
    if (spec[0] == '\0')
        return 0;
    if (epc_fault_parse(spec, &f) != 0) {
        if (!warned++)
            epc_log(EPC_LOG_WARN,
                    "EPC_FAULT=\"%s\" ignored: expected "
                    "RANK:PHASE:stall=MS or RANK:PHASE:exit (PHASE one of " EPC_FAULT_PHASES
                    "), or RANK:counts:corrupt",
                    spec);
        return 0;
    }
    if (f.rank != world_rank || strcmp(f.phase, phase) != 0)
        return 0;
    if (f.corrupt) {
        epc_log(EPC_LOG_WARN, "EPC_FAULT: sending a corrupt count at %s", phase);
        return 1;
    }
    /* The wall-clock time lets a test measure from the fault to the end
     * of the whole job. */
    clock_gettime(CLOCK_REALTIME, &now);
    if (f.kill) {
        epc_log(EPC_LOG_WARN, "EPC_FAULT: killing this rank at %s (at %lld.%03ld)", phase,
                (long long)now.tv_sec, now.tv_nsec / 1000000);
        raise(SIGKILL);
    }
    {
        struct timespec ts = {f.stall_ms / 1000, (f.stall_ms % 1000) * 1000000L};
        epc_log(EPC_LOG_WARN, "EPC_FAULT: stalling this rank %ld ms at %s (at %lld.%03ld)",
                f.stall_ms, phase, (long long)now.tv_sec, now.tv_nsec / 1000000);
        while (nanosleep(&ts, &ts) != 0)
            ;
    }
    return 0;
}
