/* SPDX-License-Identifier: BSD-3-Clause */
/* error.c - status strings and the per-thread / per-object last-error text. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "error.h"
#include "log.h"

static _Thread_local char tls_last_error[EPC_ERR_TEXT_MAX];

const char *epc_status_string(epc_status_t status)
{
    switch (status) {
#define EPC_STATUS_CASE_(name, value, text) \
    case name:                              \
        return text;
        EPC_STATUS_LIST(EPC_STATUS_CASE_)
#undef EPC_STATUS_CASE_
    }
    return "unknown status";
}

const char *epc_status_name(epc_status_t status)
{
    switch (status) {
#define EPC_STATUS_CASE_(name, value, text) \
    case name:                              \
        return #name;
        EPC_STATUS_LIST(EPC_STATUS_CASE_)
#undef EPC_STATUS_CASE_
    }
    return "EPC_UNKNOWN";
}

/* Formats "<status text>: <detail>" into the thread's buffer and obj's. */
static void record(epc_obj_t *obj, epc_status_t status, const char *fmt, va_list ap)
{
    /* Long details are cut at the buffer's end, on purpose. */
    int n = snprintf(tls_last_error, sizeof tls_last_error, "%s: ", epc_status_string(status));
    vsnprintf(tls_last_error + n, sizeof tls_last_error - (size_t)n, fmt, ap);
    if (obj != NULL)
        memcpy(obj->last_error, tls_last_error, sizeof obj->last_error);
}

epc_status_t epc_error_obj(epc_obj_t *obj, epc_status_t status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    record(obj, status, fmt, ap);
    va_end(ap);
    epc_log(EPC_LOG_ERROR, "%s", tls_last_error);
    return status;
}

epc_status_t epc_error_quiet(epc_obj_t *obj, epc_status_t status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    record(obj, status, fmt, ap);
    va_end(ap);
    return status;
}

epc_status_t epc_error_context(epc_obj_t *obj, epc_status_t status, const char *fmt, ...)
{
    char earlier[EPC_ERR_TEXT_MAX], context[EPC_ERR_TEXT_MAX];
    const char *detail = strstr(tls_last_error, ": ");
    va_list ap;
    /* The earlier detail, without its status text: it is said again in front. */
    snprintf(earlier, sizeof earlier, "%s", detail != NULL ? detail + 2 : tls_last_error);
    va_start(ap, fmt);
    vsnprintf(context, sizeof context, fmt, ap);
    va_end(ap);
    return epc_error_obj(obj, status, "%s: %s", context, earlier);
}

void epc_error_sync(epc_obj_t *obj)
{
    if (obj != NULL)
        memcpy(obj->last_error, tls_last_error, sizeof obj->last_error);
}

epc_status_t epc_error_restore(epc_obj_t *obj, epc_status_t status, const char *text)
{
    snprintf(tls_last_error, sizeof tls_last_error, "%s", text);
    epc_error_sync(obj);
    return status;
}

void epc_error_clear(void)
{
    tls_last_error[0] = '\0';
}

const char *epc_last_error(const epc_ctx_t *ctx)
{
    const epc_obj_t *obj = (const epc_obj_t *)(const void *)ctx;
    if (ctx == NULL)
        return tls_last_error;
    if (obj->magic != EPC_MAGIC_CTX)
        return "invalid context (not created by epc_ctx_create, or destroyed)";
    return obj->last_error;
}

const char *epc_get_version(int *major, int *minor, int *patch)
{
    if (major != NULL)
        *major = EPC_VERSION_MAJOR;
    if (minor != NULL)
        *minor = EPC_VERSION_MINOR;
    if (patch != NULL)
        *patch = EPC_VERSION_PATCH;
    return EPC_VERSION_STRING;
}
