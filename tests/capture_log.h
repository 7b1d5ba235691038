/* SPDX-License-Identifier: BSD-3-Clause */
/* capture_log.h - test helper: what one epc_log call writes to stderr. */
#ifndef EPC_TEST_CAPTURE_LOG_H
#define EPC_TEST_CAPTURE_LOG_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "log.h"

/* Runs epc_log with stderr redirected to a temporary file; the text it wrote
 * goes to out (len bytes, NUL-terminated). */
static inline void capture_log(epc_log_level_t level, const char *msg, char *out, size_t len)
{
    FILE *tmp = tmpfile();
    int saved = dup(STDERR_FILENO);
    size_t n;
    if (tmp == NULL || saved < 0) {
        perror("capture_log");
        abort();
    }
    dup2(fileno(tmp), STDERR_FILENO);
    epc_log(level, "%s", msg);
    dup2(saved, STDERR_FILENO);
    close(saved);
    rewind(tmp);
    n = fread(out, 1, len - 1, tmp);
    out[n] = '\0';
    fclose(tmp);
}

#endif
