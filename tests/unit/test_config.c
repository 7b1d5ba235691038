/* SPDX-License-Identifier: BSD-3-Clause */
/* test_config - the EPC_* table: defaults, valid values, every invalid case. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "config.h"
#include "epcomm.h"

/* A fake environment: NULL-terminated name/value pairs. */
static const char *fake_lookup(const char *name, void *arg)
{
    const char *const *kv = arg;
    for (; kv[0] != NULL; kv += 2)
        if (strcmp(kv[0], name) == 0)
            return kv[1];
    return NULL;
}

static void test_defaults_parse(void **state)
{
    epc_config_t cfg;
    const char *none[] = {NULL};
    (void)state;
    memset(&cfg, 0, sizeof cfg);
    assert_int_equal(epc_config_load(&cfg, fake_lookup, none), EPC_OK);
    assert_int_equal(epc_cfg_enum(&cfg, EPC_CFG_LOG_LEVEL), 1); /* warn */
    assert_int_equal(epc_cfg_int(&cfg, EPC_CFG_RANKS_PER_NODE), 0);
    assert_string_equal(epc_cfg_string(&cfg, EPC_CFG_TOPO_XML), "");
    assert_true(epc_cfg_float(&cfg, EPC_CFG_INTER_BW_GBS) == 0.0);
    for (int i = 0; i < EPC_CFG_COUNT; i++)
        assert_int_equal(epc_cfg_is_set(&cfg, (epc_cfg_id_t)i), 0);
    epc_config_free(&cfg);
}

static void test_valid_values(void **state)
{
    epc_config_t cfg;
    const char *env[] = {"EPC_LOG_LEVEL",
                         "Debug",
                         "EPC_RANKS_PER_NODE",
                         "4",
                         "EPC_TOPO_XML",
                         "/tmp/x.xml",
                         "EPC_HW_PROFILE",
                         "h800",
                         "EPC_INTER_BW_GBS",
                         "12.5",
                         "EPC_INTRA_BW_GBS",
                         "1e2",
                         NULL};
    (void)state;
    memset(&cfg, 0, sizeof cfg);
    assert_int_equal(epc_config_load(&cfg, fake_lookup, (void *)env), EPC_OK);
    assert_int_equal(epc_cfg_enum(&cfg, EPC_CFG_LOG_LEVEL), 3);
    assert_int_equal(epc_cfg_int(&cfg, EPC_CFG_RANKS_PER_NODE), 4);
    assert_string_equal(epc_cfg_string(&cfg, EPC_CFG_TOPO_XML), "/tmp/x.xml");
    assert_int_equal(epc_cfg_enum(&cfg, EPC_CFG_HW_PROFILE), 0);
    assert_true(epc_cfg_float(&cfg, EPC_CFG_INTER_BW_GBS) == 12.5);
    assert_true(epc_cfg_float(&cfg, EPC_CFG_INTRA_BW_GBS) == 100.0);
    assert_int_equal(epc_cfg_is_set(&cfg, EPC_CFG_RANKS_PER_NODE), 1);
    epc_config_free(&cfg);
}

/* Each invalid (variable, value) must be rejected with a message naming the
 * variable and the value, leaving the default in force. */
static void test_every_invalid_case(void **state)
{
    static const struct {
        const char *name, *value;
    } bad[] = {
        {"EPC_LOG_LEVEL", "loud"},       {"EPC_LOG_LEVEL", "warn "},
        {"EPC_LOG_LEVEL", "3"},          {"EPC_RANKS_PER_NODE", "-1"},
        {"EPC_RANKS_PER_NODE", "four"},  {"EPC_RANKS_PER_NODE", "4x"},
        {"EPC_RANKS_PER_NODE", "4.0"},   {"EPC_RANKS_PER_NODE", " 4"},
        {"EPC_RANKS_PER_NODE", "65537"}, {"EPC_RANKS_PER_NODE", "99999999999999999999999"},
        {"EPC_RANKS_PER_NODE", "0x10"},  {"EPC_INTER_BW_GBS", "-3"},
        {"EPC_INTER_BW_GBS", "fast"},    {"EPC_INTER_BW_GBS", "nan"},
        {"EPC_INTER_BW_GBS", "inf"},     {"EPC_INTER_BW_GBS", "1e999"},
        {"EPC_INTRA_BW_GBS", "12GB"},    {"EPC_HW_PROFILE", "a100"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *env[] = {bad[i].name, bad[i].value, NULL};
        epc_config_t cfg;
        memset(&cfg, 0, sizeof cfg);
        if (epc_config_load(&cfg, fake_lookup, (void *)env) != EPC_ERR_INVALID_ARG)
            fail_msg("%s=\"%s\" was accepted", bad[i].name, bad[i].value);
        if (strstr(cfg.error, bad[i].name) == NULL || strstr(cfg.error, bad[i].value) == NULL)
            fail_msg("%s=%s: message \"%s\" does not name both", bad[i].name, bad[i].value,
                     cfg.error);
        /* The variable keeps its default, the others are unaffected. */
        assert_int_equal(epc_cfg_int(&cfg, EPC_CFG_RANKS_PER_NODE), 0);
        assert_true(epc_cfg_float(&cfg, EPC_CFG_INTER_BW_GBS) == 0.0);
        assert_int_equal(epc_cfg_enum(&cfg, EPC_CFG_LOG_LEVEL), 1);
        epc_config_free(&cfg);
    }
}

static void test_first_error_reported(void **state)
{
    epc_config_t cfg;
    const char *env[] = {"EPC_LOG_LEVEL", "loud", "EPC_RANKS_PER_NODE", "-2", "EPC_HW_PROFILE",
                         "gb200-nvl72",   NULL};
    (void)state;
    memset(&cfg, 0, sizeof cfg);
    assert_int_equal(epc_config_load(&cfg, fake_lookup, (void *)env), EPC_ERR_INVALID_ARG);
    assert_non_null(strstr(cfg.error, "EPC_LOG_LEVEL"));
    assert_int_equal(cfg.invalid[EPC_CFG_LOG_LEVEL], 1);
    assert_int_equal(cfg.invalid[EPC_CFG_RANKS_PER_NODE], 1);
    /* Valid neighbours are still honoured. */
    assert_int_equal(epc_cfg_enum(&cfg, EPC_CFG_HW_PROFILE), 2);
    epc_config_free(&cfg);
}

static void test_empty_is_unset(void **state)
{
    epc_config_t cfg;
    const char *env[] = {"EPC_RANKS_PER_NODE", "", "EPC_LOG_LEVEL", "", NULL};
    (void)state;
    memset(&cfg, 0, sizeof cfg);
    assert_int_equal(epc_config_load(&cfg, fake_lookup, (void *)env), EPC_OK);
    assert_int_equal(epc_cfg_is_set(&cfg, EPC_CFG_RANKS_PER_NODE), 0);
    epc_config_free(&cfg);
}

static void test_public_description(void **state)
{
    epc_config_var_t v = EPC_CONFIG_VAR_INIT;
    int found = 0;
    (void)state;
    unsetenv("EPC_RANKS_PER_NODE");
    setenv("EPC_INTER_BW_GBS", "-5", 1);
    epc_config_reload();
    assert_int_equal(epc_config_count(), EPC_CFG_COUNT);
    for (int i = 0; i < epc_config_count(); i++) {
        assert_int_equal(epc_config_get_var(i, &v), EPC_OK);
        assert_memory_equal(v.name, "EPC_", 4);
        assert_true(strlen(v.help) > 20);
        if (strcmp(v.name, "EPC_INTER_BW_GBS") == 0) {
            found++;
            assert_string_equal(v.value, "-5");
            assert_int_equal(v.valid, 0);
            assert_int_equal(v.from_env, 1);
            assert_string_equal(v.type, "float");
        }
        if (strcmp(v.name, "EPC_RANKS_PER_NODE") == 0) {
            found++;
            assert_string_equal(v.value, "0");
            assert_int_equal(v.valid, 1);
            assert_int_equal(v.from_env, 0);
        }
    }
    assert_int_equal(found, 2);
    assert_int_equal(epc_config_check(), EPC_ERR_INVALID_ARG);
    assert_non_null(strstr(epc_last_error(NULL), "EPC_INTER_BW_GBS=-5"));
    assert_int_equal(epc_config_get_var(-1, &v), EPC_ERR_INVALID_ARG);
    assert_int_equal(epc_config_get_var(EPC_CFG_COUNT, &v), EPC_ERR_INVALID_ARG);
    assert_non_null(strstr(epc_last_error(NULL), "index"));
    assert_int_equal(epc_config_get_var(0, NULL), EPC_ERR_INVALID_ARG);
    unsetenv("EPC_INTER_BW_GBS");
    epc_config_reload();
    assert_int_equal(epc_config_check(), EPC_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_parse),     cmocka_unit_test(test_valid_values),
        cmocka_unit_test(test_every_invalid_case), cmocka_unit_test(test_first_error_reported),
        cmocka_unit_test(test_empty_is_unset),     cmocka_unit_test(test_public_description),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
