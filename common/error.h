/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * error.h - raising errors: the detailed text behind epc_last_error().
 *
 * Rule (as in UCX): the code that first detects an error raises it here, which
 * records the text and logs it once; callers above only propagate the status.
 */
#ifndef EPC_COMMON_ERROR_H
#define EPC_COMMON_ERROR_H

#include <stdint.h>
#include "epcomm.h"

#define EPC_ERR_TEXT_MAX 1024

/* Every opaque public object starts with this header, so epc_last_error()
 * and argument checks can recognise an object and its kind. */
typedef struct epc_obj {
    uint32_t magic;
    char last_error[EPC_ERR_TEXT_MAX];
} epc_obj_t;

enum {
    EPC_MAGIC_CTX = 0x45504358u,       /* "EPCX" */
    EPC_MAGIC_TOPO = 0x45505450u,      /* "EPTP" */
    EPC_MAGIC_ROUTER = 0x45505254u,    /* "EPRT" */
    EPC_MAGIC_HANDLE = 0x45504844u,    /* "EPHD" */
    EPC_MAGIC_REQUEST = 0x45505251u,   /* "EPRQ" */
    EPC_MAGIC_PLACEMENT = 0x4550504cu, /* "EPPL" */
    EPC_MAGIC_DEAD = 0xdeadbeefu       /* set by destroy, catches reuse */
};

/*
 * Records `fmt` as the calling thread's last error (and, when obj is not
 * NULL, as obj's), logs it at error level, and returns `status` so callers
 * can write `return epc_error(...)`.  status must be negative.
 */
epc_status_t epc_error_obj(epc_obj_t *obj, epc_status_t status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define epc_error(status, ...) epc_error_obj(NULL, (status), __VA_ARGS__)

/* Same, without logging: for errors the caller expects and reports itself
 * (e.g. probing), or that were already logged on another rank. */
epc_status_t epc_error_quiet(epc_obj_t *obj, epc_status_t status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Raises (and logs) the thread's last error again with `fmt` in front of
 * its detail: "<status text>: <fmt>: <earlier detail>".  For a wait that
 * was interrupted (a peer aborted), so the text says both what this rank
 * was waiting for and why the wait ended.
 */
epc_status_t epc_error_context(epc_obj_t *obj, epc_status_t status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Makes a text saved from an earlier error (whole, status text included)
 * the thread's and obj's last error again, without logging it twice;
 * returns status. */
epc_status_t epc_error_restore(epc_obj_t *obj, epc_status_t status, const char *text);

/* Copies obj's error text (or the thread's when obj is NULL) into the other
 * so both report it. */
void epc_error_sync(epc_obj_t *obj);

/* Clears the thread's last error text. */
void epc_error_clear(void);

#endif
