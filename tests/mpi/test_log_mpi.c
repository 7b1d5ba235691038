/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * test_log_mpi - each rank captures its own stderr and checks that a log line
 * carries "[epcomm <its host>:<its pid> rank <its MPI rank>]", both from the
 * launcher's environment and after the rank is set explicitly.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "capture_log.h"
#include "mpi_test.h"

int main(int argc, char **argv)
{
    char host[256], expect[512], msg[64], got[2048];
    int size;
    mt_init(&argc, &argv);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MT_CHECK(size == 4, "expected 4 ranks, got %d", size);
    gethostname(host, sizeof host);
    unsetenv("EPC_LOG_LEVEL");
    epc_config_reload();

    /* Before any communicator: the rank comes from mpirun's environment. */
    snprintf(expect, sizeof expect, "[epcomm %s:%ld rank %d] WARN: hello from %d\n", host,
             (long)getpid(), mt_rank, mt_rank);
    snprintf(msg, sizeof msg, "hello from %d", mt_rank);
    capture_log(EPC_LOG_WARN, msg, got, sizeof got);
    MT_CHECK(strcmp(got, expect) == 0, "got \"%s\" expected \"%s\"", got, expect);

    /* Set explicitly (as the topology does for its communicator). */
    epc_log_set_rank(100 + mt_rank);
    snprintf(expect, sizeof expect, "[epcomm %s:%ld rank %d] ERROR: boom\n", host, (long)getpid(),
             100 + mt_rank);
    capture_log(EPC_LOG_ERROR, "boom", got, sizeof got);
    MT_CHECK(strcmp(got, expect) == 0, "got \"%s\" expected \"%s\"", got, expect);

    /* Filtered out at the default level (warn). */
    capture_log(EPC_LOG_INFO, "quiet", got, sizeof got);
    MT_CHECK(got[0] == '\0', "info line printed at level warn: \"%s\"", got);
    return mt_finish("test_log_mpi");
}
