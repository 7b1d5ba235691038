/* SPDX-License-Identifier: BSD-3-Clause */
/* test_status - status codes, their strings, versions and last-error text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "epcomm.h"
#include "error.h"

static const struct {
    epc_status_t st;
    int value;
    const char *name;
} expected[] = {
    {EPC_OK, 0, "EPC_OK"},
    {EPC_IN_PROGRESS, 1, "EPC_IN_PROGRESS"},
    {EPC_ERR_INVALID_ARG, -1, "EPC_ERR_INVALID_ARG"},
    {EPC_ERR_NO_MEMORY, -2, "EPC_ERR_NO_MEMORY"},
    {EPC_ERR_UNSUPPORTED, -3, "EPC_ERR_UNSUPPORTED"},
    {EPC_ERR_TIMEOUT, -4, "EPC_ERR_TIMEOUT"},
    {EPC_ERR_MISMATCH, -5, "EPC_ERR_MISMATCH"},
    {EPC_ERR_PEER_FAILED, -6, "EPC_ERR_PEER_FAILED"},
    {EPC_ERR_TRANSPORT, -7, "EPC_ERR_TRANSPORT"},
    {EPC_ERR_TOPOLOGY, -8, "EPC_ERR_TOPOLOGY"},
    {EPC_ERR_CAPACITY, -9, "EPC_ERR_CAPACITY"},
    {EPC_ERR_INTERNAL, -10, "EPC_ERR_INTERNAL"},
};
#define NSTATUS (sizeof expected / sizeof expected[0])

static void test_values_and_names(void **state)
{
    (void)state;
    for (size_t i = 0; i < NSTATUS; i++) {
        assert_int_equal((int)expected[i].st, expected[i].value);
        assert_string_equal(epc_status_name(expected[i].st), expected[i].name);
    }
}

static void test_strings_distinct_and_nonempty(void **state)
{
    (void)state;
    for (size_t i = 0; i < NSTATUS; i++) {
        const char *s = epc_status_string(expected[i].st);
        assert_non_null(s);
        assert_true(strlen(s) > 3);
        assert_string_not_equal(s, "unknown status");
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(s, epc_status_string(expected[j].st));
    }
    assert_string_equal(epc_status_string(EPC_ERR_TIMEOUT), "timed out");
    assert_string_equal(epc_status_string(EPC_ERR_MISMATCH), "ranks disagree");
}

static void test_unknown_status(void **state)
{
    (void)state;
    assert_string_equal(epc_status_string((epc_status_t)-99), "unknown status");
    assert_string_equal(epc_status_string((epc_status_t)42), "unknown status");
    assert_string_equal(epc_status_name((epc_status_t)-11), "EPC_UNKNOWN");
}

static void test_version(void **state)
{
    int maj = -1, min = -1, pat = -1;
    char buf[32];
    (void)state;
    const char *v = epc_get_version(&maj, &min, &pat);
    assert_int_equal(maj, EPC_VERSION_MAJOR);
    assert_int_equal(min, EPC_VERSION_MINOR);
    assert_int_equal(pat, EPC_VERSION_PATCH);
    snprintf(buf, sizeof buf, "%d.%d.%d", maj, min, pat);
    assert_string_equal(v, buf);
    assert_string_equal(v, EPC_VERSION_STRING);
    assert_string_equal(epc_get_version(NULL, NULL, NULL), EPC_VERSION_STRING);
    assert_int_equal(EPC_VERSION, maj * 10000 + min * 100 + pat);
}

static void test_last_error(void **state)
{
    epc_obj_t obj = {.magic = EPC_MAGIC_CTX};
    (void)state;
    epc_error_clear();
    assert_string_equal(epc_last_error(NULL), "");
    assert_int_equal(epc_error_quiet(NULL, EPC_ERR_TIMEOUT, "waited %d ms", 5), EPC_ERR_TIMEOUT);
    assert_string_equal(epc_last_error(NULL), "timed out: waited 5 ms");
    /* Errors raised on an object are reported by it and by the thread. */
    assert_int_equal(epc_error_quiet(&obj, EPC_ERR_CAPACITY, "x=%s", "big"), EPC_ERR_CAPACITY);
    assert_string_equal(epc_last_error((epc_ctx_t *)(void *)&obj), "capacity exceeded: x=big");
    assert_string_equal(epc_last_error(NULL), "capacity exceeded: x=big");
    /* A later thread error does not overwrite the object's. */
    epc_error_quiet(NULL, EPC_ERR_INTERNAL, "other");
    assert_string_equal(epc_last_error((epc_ctx_t *)(void *)&obj), "capacity exceeded: x=big");
    obj.magic = EPC_MAGIC_DEAD;
    assert_non_null(strstr(epc_last_error((epc_ctx_t *)(void *)&obj), "invalid context"));
}

static void test_build_info(void **state)
{
    const epc_build_info_t *bi = epc_get_build_info();
    char buf[1024];
    (void)state;
    assert_non_null(bi);
    assert_string_equal(bi->version, EPC_VERSION_STRING);
    assert_true(strlen(bi->hwloc_compiled) >= 5);
    assert_int_equal(epc_ofi_providers(NULL, 10), EPC_ERR_INVALID_ARG);
    assert_int_equal(epc_ofi_providers(buf, 0), EPC_ERR_INVALID_ARG);
    if (bi->have_ofi) {
        assert_int_equal(epc_ofi_providers(buf, sizeof buf), EPC_OK);
        if (strlen(buf) > 0) /* too small a buffer is refused, not truncated */
            assert_int_equal(epc_ofi_providers(buf, 2), EPC_ERR_CAPACITY);
    } else {
        assert_int_equal(epc_ofi_providers(buf, sizeof buf), EPC_ERR_UNSUPPORTED);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_values_and_names),
        cmocka_unit_test(test_strings_distinct_and_nonempty),
        cmocka_unit_test(test_unknown_status),
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_last_error),
        cmocka_unit_test(test_build_info),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
