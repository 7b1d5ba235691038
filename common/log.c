/* SPDX-License-Identifier: BSD-3-Clause */
/* log.c - stderr logging with a host/pid/rank prefix. */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "log.h"

/* Indexed by level - EPC_LOG_ERROR. */
static const char *const level_names[] = {"ERROR", "WARN", "INFO", "DEBUG"};

/* EPC_LOG_LEVEL's level, EPC_LOG_DEFAULT until read; the override of a
 * context's params, EPC_LOG_DEFAULT when none.  Atomic: any thread may
 * log first. */
static atomic_int env_level = EPC_LOG_DEFAULT;
static atomic_int set_level = EPC_LOG_DEFAULT;
static atomic_int log_rank = -1;

/* EPC_LOG_LEVEL's choices are "error|warn|info|debug|off", in that order. */
static int level_of_choice(long long index)
{
    return index < 4 ? EPC_LOG_ERROR + (int)index : EPC_LOG_OFF;
}

static int current_level(void)
{
    int lvl = atomic_load(&set_level);
    if (lvl != EPC_LOG_DEFAULT)
        return lvl;
    lvl = atomic_load(&env_level);
    if (lvl == EPC_LOG_DEFAULT) {
        const epc_config_t *cfg = NULL;
        /* An invalid EPC_LOG_LEVEL is reported by the call that read the
         * configuration; meanwhile log at the default (warn). */
        if (epc_config_get_quiet(&cfg) == EPC_OK)
            lvl = level_of_choice(epc_cfg_enum(cfg, EPC_CFG_LOG_LEVEL));
        else
            lvl = EPC_LOG_WARN;
        atomic_store(&env_level, lvl);
    }
    return lvl;
}

void epc_log_set_level(epc_log_level_t level)
{
    atomic_store(&set_level, (int)level);
}

int epc_log_enabled(epc_log_level_t level)
{
    return (int)level <= current_level();
}

void epc_log_reload(void)
{
    atomic_store(&env_level, EPC_LOG_DEFAULT);
}

void epc_log_set_rank(int rank)
{
    atomic_store(&log_rank, rank < 0 ? -1 : rank);
}

/* Rank from the launcher's environment, so lines logged before the first
 * communicator exists still say which process they come from. */
static int env_rank(void)
{
    static const char *const vars[] = {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = getenv(vars[i]);
        char *end;
        long r;
        if (v == NULL || *v == '\0')
            continue;
        r = strtol(v, &end, 10);
        if (*end == '\0' && r >= 0 && r < 0x7fffffff)
            return (int)r;
    }
    return -1;
}

int epc_log_rank(void)
{
    int r = atomic_load(&log_rank);
    return r >= 0 ? r : env_rank();
}

int epc_log_prefix(char *buf, int len)
{
    char host[256];
    int rank = epc_log_rank();
    int n;
    if (gethostname(host, sizeof host) != 0)
        strcpy(host, "?");
    host[sizeof host - 1] = '\0';
    if (rank >= 0)
        n = snprintf(buf, (size_t)len, "[epcomm %s:%ld rank %d]", host, (long)getpid(), rank);
    else
        n = snprintf(buf, (size_t)len, "[epcomm %s:%ld]", host, (long)getpid());
    return n < len ? n : len - 1;
}

void epc_log(epc_log_level_t level, const char *fmt, ...)
{
    char line[2048];
    int n;
    va_list ap;
    if (!epc_log_enabled(level))
        return;
    n = epc_log_prefix(line, (int)sizeof line);
    n += snprintf(line + n, sizeof line - (size_t)n, " %s: ", level_names[level - EPC_LOG_ERROR]);
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    n = (int)strlen(line);
    if (n == (int)sizeof line - 1)
        n--; /* truncated: keep room for the newline */
    line[n++] = '\n';
    /* One write: a partial write to a terminal/pipe is not worth retrying. */
    if (write(STDERR_FILENO, line, (size_t)n) < 0)
        return;
}
