/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * test_header_c - built with -std=c11 -Wall -Wextra -Wpedantic -Werror: the
 * public header must compile cleanly as strict C11, and its params macro must
 * produce a sized, otherwise zeroed struct (the output macros a sized one).
 */
#include "epcomm.h"
#include "output_inits.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

int main(void)
{
    epc_ctx_params_t p = EPC_CTX_PARAMS_INIT;
    epc_ctx_params_t zero;
    int fails = 0;
    memset(&zero, 0, sizeof zero);
    zero.size = sizeof zero;
    if (p.size != sizeof(epc_ctx_params_t)) {
        fprintf(stderr, "EPC_CTX_PARAMS_INIT: size %zu\n", p.size);
        fails++;
    }
    if (p.num_experts != 0 || p.hidden != 0 || p.dtype != EPC_DTYPE_DEFAULT ||
        p.transport != EPC_TRANSPORT_DEFAULT || p.ofi_provider != NULL || p.timeout_ms != 0) {
        fprintf(stderr, "EPC_CTX_PARAMS_INIT: fields not zero\n");
        fails++;
    }
    if (strcmp(epc_status_string(EPC_ERR_INVALID_ARG), "invalid argument") != 0) {
        fprintf(stderr, "epc_status_string broken from C\n");
        fails++;
    }
    if (strcmp(epc_get_version(NULL, NULL, NULL), EPC_VERSION_STRING) != 0) {
        fprintf(stderr, "version mismatch between header and library\n");
        fails++;
    }
    /* Every output struct's macro sets its size (and compiles here). */
    if (EPC_TEST_SIZED_OUTPUT_INITS != EPC_TEST_OUTPUT_INITS) {
        fprintf(stderr, "%d of %d output INIT macros set their size\n",
                (int)EPC_TEST_SIZED_OUTPUT_INITS, EPC_TEST_OUTPUT_INITS);
        fails++;
    }
    /* The library's ABI table agrees with this compilation of the header. */
    {
        int n = 0, abi = 0, seen = 0;
        const epc_abi_field_t *t = epc_abi_table(&n, &abi);
        for (int i = 0; t != NULL && i < n; i++) {
            if (!strcmp(t[i].type, "epc_ctx_params_t") && !strcmp(t[i].field, ""))
                seen += t[i].size == sizeof(epc_ctx_params_t);
            if (!strcmp(t[i].type, "epc_dispatch_out_t") && !strcmp(t[i].field, "weight"))
                seen += t[i].offset == offsetof(epc_dispatch_out_t, weight) &&
                        t[i].size == sizeof(const float *);
        }
        if (abi != EPC_ABI_VERSION || seen != 2 || epc_abi_table(NULL, NULL) != t) {
            fprintf(stderr, "epc_abi_table: abi %d, %d of 2 rows as compiled\n", abi, seen);
            fails++;
        }
    }
    printf("%d passed, %d failed\n", 6 - fails, fails);
    return fails != 0;
}
