/* SPDX-License-Identifier: BSD-3-Clause */
/* params.c - accepting every released layout of a params struct. */
#include <stdio.h>
#include <string.h>

#include "params.h"

static int known_size(const epc_params_layouts_t *l, size_t size)
{
    if (size == l->current)
        return 1;
    for (int i = 0; i < 4 && l->older[i] != 0; i++)
        if (size == l->older[i])
            return 1;
    return 0;
}

/* The message for a size none of the layouts has. */
static epc_status_t unknown_size(const epc_params_layouts_t *layouts, size_t size, epc_obj_t *obj,
                                 const char *fn, const char *arg)
{
    char older[64] = "";
    size_t used = 0;
    for (int i = 0; i < 4 && layouts->older[i] != 0; i++)
        used += (size_t)snprintf(older + used, sizeof older - used, "%s%zu",
                                 i == 0 ? "; earlier releases' " : " or ", layouts->older[i]);
    return epc_error_obj(obj, EPC_ERR_INVALID_ARG,
                         "%s: %s->size %zu is not a known size (%zu%s); "
                         "initialise with %s",
                         fn, arg, size, layouts->current, older, layouts->init);
}

epc_status_t epc_params_load(void *dst, const void *src, const epc_params_layouts_t *layouts,
                             epc_obj_t *obj, const char *fn, const char *arg)
{
    size_t size;
    if (src == NULL)
        return epc_error_obj(obj, EPC_ERR_INVALID_ARG, "%s: %s is NULL", fn, arg);
    memcpy(&size, src, sizeof size); /* every layout starts with its size */
    memset(dst, 0, layouts->current);
    if (!known_size(layouts, size))
        return unknown_size(layouts, size, obj, fn, arg);
    memcpy(dst, src, size);
    return EPC_OK;
}

epc_status_t epc_out_check(const void *out, const epc_params_layouts_t *layouts, epc_obj_t *obj,
                           const char *fn, const char *arg)
{
    size_t size;
    if (out == NULL)
        return epc_error_obj(obj, EPC_ERR_INVALID_ARG, "%s: %s is NULL", fn, arg);
    memcpy(&size, out, sizeof size);
    return known_size(layouts, size) ? EPC_OK : unknown_size(layouts, size, obj, fn, arg);
}

void epc_out_store(void *out, const void *src)
{
    size_t size;
    memcpy(&size, out, sizeof size);
    memcpy((char *)out + sizeof size, (const char *)src + sizeof size, size - sizeof size);
}
