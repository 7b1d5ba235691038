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

void epc_fault_point(const char *phase, int world_rank)
{
    const epc_config_t *cfg;
    const char *spec;
    char ph[32] = "", act[32] = "";
    int rank = -1;
    long ms = 0;
    (void)epc_config_get_quiet(&cfg);
    spec = epc_cfg_string(cfg, EPC_CFG_FAULT);
    if (spec[0] == '\0' || sscanf(spec, "%d:%31[^:]:%31s", &rank, ph, act) != 3 ||
        rank != world_rank || strcmp(ph, phase) != 0)
        return;
    if (strcmp(act, "exit") == 0) {
        epc_log(EPC_LOG_WARN, "EPC_FAULT: killing this rank at %s", phase);
        raise(SIGKILL);
    }
    if (sscanf(act, "stall=%ld", &ms) == 1 && ms > 0) {
        struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
        epc_log(EPC_LOG_WARN, "EPC_FAULT: stalling this rank %ld ms at %s", ms, phase);
        while (nanosleep(&ts, &ts) != 0)
            ;
    }
}
