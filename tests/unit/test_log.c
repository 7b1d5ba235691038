/* SPDX-License-Identifier: BSD-3-Clause */
/* test_log - EPC_LOG_LEVEL filtering, the line prefix, bad levels. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "config.h"
#include "error.h"
#include "log.h"
#include "capture_log.h"

static void set_level(const char *value)
{
    if (value)
        setenv("EPC_LOG_LEVEL", value, 1);
    else
        unsetenv("EPC_LOG_LEVEL");
    epc_config_reload();
}

static int setup(void **state)
{
    (void)state;
    /* No launcher rank: the prefix must then omit "rank". */
    unsetenv("OMPI_COMM_WORLD_RANK");
    unsetenv("PMIX_RANK");
    unsetenv("PMI_RANK");
    epc_log_set_rank(-1);
    return 0;
}

static void test_filtering(void **state)
{
    static const char *const levels[] = {"error", "warn", "info", "debug"};
    char out[1024];
    (void)state;
    for (int setting = 0; setting < 4; setting++) {
        set_level(levels[setting]);
        assert_int_equal(epc_config_check(), EPC_OK);
        for (int msg = 0; msg < 4; msg++) {
            epc_log_level_t lvl = (epc_log_level_t)(EPC_LOG_ERROR + msg);
            capture_log(lvl, "probe", out, sizeof out);
            if (msg <= setting)
                assert_non_null(strstr(out, "probe"));
            else
                assert_string_equal(out, "");
            assert_int_equal(epc_log_enabled(lvl), msg <= setting);
        }
    }
}

/* Prints what epc_error_obj logs for one error into out ("" if nothing). */
static void capture_error(char *out, size_t len)
{
    int fds[2], saved = dup(STDERR_FILENO);
    ssize_t n;
    assert_int_equal(pipe(fds), 0);
    dup2(fds[1], STDERR_FILENO);
    close(fds[1]);
    epc_error(EPC_ERR_TIMEOUT, "probe error %d", 42);
    dup2(saved, STDERR_FILENO);
    close(saved);
    n = read(fds[0], out, len - 1);
    out[n > 0 ? n : 0] = '\0';
    close(fds[0]);
}

/* off silences every level, errors included, while the error text is
 * still recorded; the override of a context's params beats the
 * environment both ways, and EPC_LOG_DEFAULT returns to it. */
static void test_off(void **state)
{
    char out[1024];
    (void)state;
    set_level("off");
    assert_int_equal(epc_config_check(), EPC_OK);
    for (int msg = EPC_LOG_ERROR; msg <= EPC_LOG_DEBUG; msg++) {
        capture_log((epc_log_level_t)msg, "probe", out, sizeof out);
        assert_string_equal(out, "");
        assert_int_equal(epc_log_enabled((epc_log_level_t)msg), 0);
    }
    capture_error(out, sizeof out);
    assert_string_equal(out, "");
    assert_non_null(strstr(epc_last_error(NULL), "probe error 42"));
    epc_log_set_level(EPC_LOG_ERROR); /* params beat the environment */
    capture_error(out, sizeof out);
    assert_non_null(strstr(out, "probe error 42"));
    set_level("debug");
    epc_log_set_level(EPC_LOG_OFF);
    capture_error(out, sizeof out);
    assert_string_equal(out, "");
    epc_log_set_level(EPC_LOG_DEFAULT);
    assert_int_equal(epc_log_enabled(EPC_LOG_DEBUG), 1);
}

static void test_default_is_warn(void **state)
{
    char out[1024];
    (void)state;
    set_level(NULL);
    capture_log(EPC_LOG_WARN, "shown", out, sizeof out);
    assert_non_null(strstr(out, "shown"));
    capture_log(EPC_LOG_INFO, "hidden", out, sizeof out);
    assert_string_equal(out, "");
    set_level(""); /* empty counts as unset */
    assert_int_equal(epc_config_check(), EPC_OK);
    assert_int_equal(epc_log_enabled(EPC_LOG_WARN), 1);
    assert_int_equal(epc_log_enabled(EPC_LOG_INFO), 0);
}

static void test_case_insensitive(void **state)
{
    (void)state;
    set_level("DEBUG");
    assert_int_equal(epc_config_check(), EPC_OK);
    assert_int_equal(epc_log_enabled(EPC_LOG_DEBUG), 1);
}

static void test_invalid_level(void **state)
{
    (void)state;
    set_level("loud");
    assert_int_equal(epc_config_check(), EPC_ERR_INVALID_ARG);
    assert_non_null(strstr(epc_last_error(NULL), "EPC_LOG_LEVEL"));
    assert_non_null(strstr(epc_last_error(NULL), "loud"));
    /* Logging itself keeps working, at the default level. */
    assert_int_equal(epc_log_enabled(EPC_LOG_WARN), 1);
    assert_int_equal(epc_log_enabled(EPC_LOG_INFO), 0);
    /* The error stays until the environment is fixed. */
    assert_int_equal(epc_config_check(), EPC_ERR_INVALID_ARG);
    set_level("info");
    assert_int_equal(epc_config_check(), EPC_OK);
}

static void test_prefix(void **state)
{
    char host[256], expect[512], out[1024];
    (void)state;
    set_level(NULL);
    gethostname(host, sizeof host);
    snprintf(expect, sizeof expect, "[epcomm %s:%ld] WARN: hi\n", host, (long)getpid());
    capture_log(EPC_LOG_WARN, "hi", out, sizeof out);
    assert_string_equal(out, expect);
    setenv("PMIX_RANK", "7", 1);
    snprintf(expect, sizeof expect, "[epcomm %s:%ld rank 7] ERROR: hi\n", host, (long)getpid());
    capture_log(EPC_LOG_ERROR, "hi", out, sizeof out);
    assert_string_equal(out, expect);
    epc_log_set_rank(3); /* explicit beats the environment */
    assert_int_equal(epc_log_rank(), 3);
    epc_log_set_rank(-1);
    assert_int_equal(epc_log_rank(), 7);
    unsetenv("PMIX_RANK");
    assert_int_equal(epc_log_rank(), -1);
}

static void test_long_line_truncated_with_newline(void **state)
{
    char big[5000], out[8192];
    (void)state;
    set_level(NULL);
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    capture_log(EPC_LOG_ERROR, big, out, sizeof out);
    assert_true(strlen(out) > 1000 && strlen(out) < 2100);
    assert_int_equal(out[strlen(out) - 1], '\n');
    assert_null(strchr(out, '\n') + 1 == out + strlen(out) ? NULL : "two lines");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_filtering, setup),
        cmocka_unit_test_setup(test_default_is_warn, setup),
        cmocka_unit_test_setup(test_off, setup),
        cmocka_unit_test_setup(test_case_insensitive, setup),
        cmocka_unit_test_setup(test_invalid_level, setup),
        cmocka_unit_test_setup(test_prefix, setup),
        cmocka_unit_test_setup(test_long_line_truncated_with_newline, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
