/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * log.h - logging on stderr, filtered by EPC_LOG_LEVEL.
 *
 * Each line reads "[epcomm host:pid rank R] LEVEL: message" ("rank R" only
 * once the rank is known) and is written with one write(2), so lines from
 * several threads or ranks sharing a terminal do not interleave.
 */
#ifndef EPC_COMMON_LOG_H
#define EPC_COMMON_LOG_H

#include "epcomm.h" /* epc_log_level_t */

/* Prints one line if `level` passes the filter. */
void epc_log(epc_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* 1 when a message of `level` would be printed (to skip costly formatting). */
int epc_log_enabled(epc_log_level_t level);

/* The rank shown in the prefix.  Until set, the launcher's environment
 * (OMPI_COMM_WORLD_RANK, PMIX_RANK, PMI_RANK) is used when present;
 * a negative value returns to that. */
void epc_log_set_rank(int rank);

/* Rank shown in the prefix, or -1 when unknown. */
int epc_log_rank(void);

/* Re-reads the level from the configuration (after epc_config_reload). */
void epc_log_reload(void);

/* Overrides EPC_LOG_LEVEL process-wide (a context's params->log_level);
 * EPC_LOG_DEFAULT returns to it. */
void epc_log_set_level(epc_log_level_t level);

/* Writes the prefix "[epcomm host:pid rank R]" into buf; returns its length. */
int epc_log_prefix(char *buf, int len);

#endif
