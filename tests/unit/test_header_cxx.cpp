/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * test_header_cxx - built with -std=c++11 -Wall -Wextra -Wpedantic -Werror:
 * the public header must compile cleanly as C++, link with C linkage, and
 * its params and output macros must work there too.
 */
#include "epcomm.h"
#include "output_inits.h"

#include <cstdio>
#include <cstring>

int main()
{
    epc_ctx_params_t p = EPC_CTX_PARAMS_INIT;
    int fails = 0;
    if (p.size != sizeof(epc_ctx_params_t)) {
        std::fprintf(stderr, "EPC_CTX_PARAMS_INIT: size %zu\n", p.size);
        fails++;
    }
    if (p.num_experts != 0 || p.hidden != 0 || p.dtype != EPC_DTYPE_DEFAULT ||
        p.ofi_provider != nullptr || p.timeout_ms != 0) {
        std::fprintf(stderr, "EPC_CTX_PARAMS_INIT: fields not zero\n");
        fails++;
    }
    epc_status_t st = EPC_ERR_TIMEOUT;
    if (std::strcmp(epc_status_string(st), "timed out") != 0) {
        std::fprintf(stderr, "epc_status_string broken from C++\n");
        fails++;
    }
    if (std::strcmp(epc_last_error(nullptr), "") != 0) {
        std::fprintf(stderr, "unexpected last error: %s\n", epc_last_error(nullptr));
        fails++;
    }
    /* Every output struct's macro sets its size (and compiles here). */
    if (EPC_TEST_SIZED_OUTPUT_INITS != EPC_TEST_OUTPUT_INITS) {
        std::fprintf(stderr, "%d of %d output INIT macros set their size\n",
                     (int)EPC_TEST_SIZED_OUTPUT_INITS, EPC_TEST_OUTPUT_INITS);
        fails++;
    }
    std::printf("%d passed, %d failed\n", 5 - fails, fails);
    return fails != 0;
}
