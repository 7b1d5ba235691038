/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * mpi_test.h - tiny harness for mpirun-launched tests.  Every rank checks;
 * the failure count is agreed with an Allreduce so all ranks exit alike,
 * and the last line is the "N passed, N failed" summary on rank 0.
 */
#ifndef EPC_MPI_TEST_H
#define EPC_MPI_TEST_H

#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

static int mt_pass, mt_fail, mt_rank;

#define MT_CHECK(cond, ...)                                                     \
    do {                                                                        \
        if (cond) {                                                             \
            mt_pass++;                                                          \
        } else {                                                                \
            mt_fail++;                                                          \
            fprintf(stderr, "rank %d: %s:%d: check failed: %s: ", mt_rank,     \
                    __FILE__, __LINE__, #cond);                                 \
            fprintf(stderr, __VA_ARGS__);                                       \
            fputc('\n', stderr);                                                \
        }                                                                       \
    } while (0)

static inline void mt_init(int *argc, char ***argv)
{
    MPI_Init(argc, argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &mt_rank);
}

/* Agrees on the result across ranks, finalizes, returns the exit code. */
static inline int mt_finish(const char *name)
{
    int counts[2] = {mt_pass, mt_fail}, total[2];
    MPI_Allreduce(counts, total, 2, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (mt_rank == 0)
        printf("%s: %d checks passed, %d failed (all ranks)\n", name, total[0], total[1]);
    MPI_Finalize();
    return total[1] == 0 ? 0 : 1;
}

#endif
