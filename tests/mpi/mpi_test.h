/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * mpi_test.h - tiny harness for mpirun-launched tests.  Every rank checks;
 * the failure count is agreed with an Allreduce so all ranks exit alike,
 * and the last line is the "N passed, N failed" summary on rank 0.
 */
#ifndef EPC_MPI_TEST_H
#define EPC_MPI_TEST_H

#include <dirent.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "epcomm.h"

static int mt_pass, mt_fail, mt_rank;

#define MT_CHECK(cond, ...)                                                                    \
    do {                                                                                       \
        if (cond) {                                                                            \
            mt_pass++;                                                                         \
        } else {                                                                               \
            mt_fail++;                                                                         \
            fprintf(stderr, "rank %d: %s:%d: check failed: %s: ", mt_rank, __FILE__, __LINE__, \
                    #cond);                                                                    \
            fprintf(stderr, __VA_ARGS__);                                                      \
            fputc('\n', stderr);                                                               \
        }                                                                                      \
    } while (0)

/* With EPC_PROGRESS=thread MPI is initialised as the progress thread
 * needs (MPI_THREAD_MULTIPLE), else plainly. */
static inline void mt_init(int *argc, char ***argv)
{
    const char *progress = getenv("EPC_PROGRESS");
    int provided;
    if (progress != NULL && strcmp(progress, "thread") == 0)
        MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided);
    else
        MPI_Init(argc, argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &mt_rank);
}

/* Agrees on the result across ranks, finalizes, returns the exit code. */
/* Dispatch outputs with every byte 0x5a but a valid size: a dispatch that
 * fails must leave them so. */
static inline epc_dispatch_out_t mt_poisoned_out(void)
{
    epc_dispatch_out_t o;
    memset(&o, 0x5a, sizeof o);
    o.size = sizeof o;
    return o;
}

static inline int mt_finish(const char *name)
{
    int counts[2] = {mt_pass, mt_fail}, total[2];
    MPI_Allreduce(counts, total, 2, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (mt_rank == 0)
        printf("%s: %d checks passed, %d failed (all ranks)\n", name, total[0], total[1]);
    MPI_Finalize();
    return total[1] == 0 ? 0 : 1;
}

/* Entries of a directory (/proc/self/fd: open descriptors), -1 if unreadable. */
static inline int mt_count_dir(const char *path)
{
    DIR *d = opendir(path);
    int n = 0;
    if (d == NULL)
        return -1;
    while (readdir(d) != NULL)
        n++;
    closedir(d);
    return n;
}

/* The library's shared-memory mappings in this process (its anonymous
 * segments, "/memfd:epc-region", and any named /dev/shm/epc- one): a
 * leaked region shows here.  MPI's own mappings are not counted: Open
 * MPI maps a node peer's segment lazily, at the first message to it.
 * (Counting /dev/shm itself would be fooled by other jobs beside the
 * test.) */
static inline int mt_count_shm_maps(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    char line[1024];
    int n = 0;
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof line, f) != NULL)
        n += strstr(line, "memfd:epc-") != NULL || strstr(line, "/dev/shm/epc-") != NULL;
    fclose(f);
    return n;
}

/* Resident set size of this process in KiB (/proc/self/statm), -1 if unknown. */
static inline long mt_rss_kib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, res = -1;
    if (f != NULL && fscanf(f, "%ld %ld", &size, &res) != 2)
        res = -1;
    if (f != NULL)
        fclose(f);
    return res < 0 ? -1 : res * (sysconf(_SC_PAGESIZE) / 1024);
}

#endif
