/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * test_header_c - built with -std=c11 -Wall -Wextra -Wpedantic -Werror: the
 * public header must compile cleanly as strict C11, and its params macro must
 * produce a sized, otherwise zeroed struct.
 */
#include "epcomm.h"

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
    printf("%d passed, %d failed\n", 4 - fails, fails);
    return fails != 0;
}
