/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * params.h - the params convention in one place.  Every params or args
 * struct starts with `size_t size`, new fields are only appended, and the
 * library accepts each released layout: the current one, or an older one
 * whose size is the offset of the first field added after it.  Fields the
 * caller's layout lacks read as 0, their defaults.
 */
#ifndef EPC_COMMON_PARAMS_H
#define EPC_COMMON_PARAMS_H

#include <stddef.h>

#include "error.h"

/* The layouts a struct type has had: its name in messages, its INIT macro,
 * the current size and the older sizes (0-terminated; may be empty). */
typedef struct epc_params_layouts {
    const char *init; /* e.g. "EPC_CTX_PARAMS_INIT" */
    size_t current;   /* sizeof the struct */
    size_t older[4];  /* offsetof the first field each later release added */
} epc_params_layouts_t;

/* Copies the caller's struct `src` into `dst` (current.size bytes, zeroed
 * first, so fields past the caller's size are 0) when its size is one of
 * the layouts'; else EPC_ERR_INVALID_ARG raised into obj (NULL: the
 * thread's last error only), the text "fn: arg->size N is not a known
 * size (...); initialise with INIT", or "fn: arg is NULL". */
epc_status_t epc_params_load(void *dst, const void *src, const epc_params_layouts_t *layouts,
                             epc_obj_t *obj, const char *fn, const char *arg);

/* Output structs follow the same convention: the caller sets `size` (the
 * layout it was compiled with) and the library writes only the fields that
 * layout has.  Checks out's size, before anything is computed: NULL or an
 * unknown size is EPC_ERR_INVALID_ARG raised as by epc_params_load. */
epc_status_t epc_out_check(const void *out, const epc_params_layouts_t *layouts, epc_obj_t *obj,
                           const char *fn, const char *arg);

/* Copies the library's complete, current-layout result `src` into the
 * caller's `out` (checked by epc_out_check): as many bytes as out->size
 * says, out->size itself unchanged. */
void epc_out_store(void *out, const void *src);

#endif
