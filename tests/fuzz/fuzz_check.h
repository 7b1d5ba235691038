/* SPDX-License-Identifier: BSD-3-Clause */
/* fuzz_check.h - the harnesses' invariant check: a violated invariant
 * aborts, which libFuzzer reports as a finding (with the input). */
#ifndef EPC_FUZZ_CHECK_H
#define EPC_FUZZ_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#define CHECK(cond)                                                                             \
    do {                                                                                        \
        if (!(cond)) {                                                                          \
            fprintf(stderr, "fuzz: invariant failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
            abort();                                                                            \
        }                                                                                       \
    } while (0)

#endif
