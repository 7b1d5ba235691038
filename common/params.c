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

epc_status_t epc_params_load(void *dst, const void *src, const epc_params_layouts_t *layouts,
                             epc_obj_t *obj, const char *fn, const char *arg)
{
    char older[64] = "";
    size_t size, used = 0;
    if (src == NULL)
        return epc_error_obj(obj, EPC_ERR_INVALID_ARG, "%s: %s is NULL", fn, arg);
    memcpy(&size, src, sizeof size); /* every layout starts with its size */
    memset(dst, 0, layouts->current);
    if (known_size(layouts, size)) {
        memcpy(dst, src, size);
        return EPC_OK;
    }
    for (int i = 0; i < 4 && layouts->older[i] != 0; i++)
        used += (size_t)snprintf(older + used, sizeof older - used, "%s%zu",
                                 i == 0 ? "; earlier releases' " : " or ", layouts->older[i]);
    return epc_error_obj(obj, EPC_ERR_INVALID_ARG,
                         "%s: %s->size %zu is not a known size (%zu%s); "
                         "initialise with %s",
                         fn, arg, size, layouts->current, older, layouts->init);
}
