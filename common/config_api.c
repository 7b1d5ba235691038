/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * config_api.c - the configuration as the rest of the library and the
 * public API see it: the raising getter, reloading (which the logger
 * follows) and the description of every variable for epc_info.  Kept out
 * of config.c so the table and its parser depend on nothing: the logger
 * reads its level from them, and errors are logged, so config.c using
 * either would close a circle.
 */
#include "config.h"
#include "error.h"
#include "log.h"
#include "params.h"

epc_status_t epc_config_get(const epc_config_t **cfg)
{
    epc_status_t st = epc_config_get_quiet(cfg);
    if (st != EPC_OK)
        return epc_error(st, "%s", (*cfg)->error);
    return EPC_OK;
}

epc_status_t epc_config_reload(void)
{
    epc_status_t st = epc_config_reread();
    epc_log_reload();
    return st;
}

/* ---- public description, for epc_info ---------------------------------- */

int epc_config_count(void)
{
    return EPC_CFG_COUNT;
}

epc_status_t epc_config_get_var(int index, epc_config_var_t *var)
{
    static const epc_params_layouts_t layouts = {"EPC_CONFIG_VAR_INIT", sizeof *var, {0}};
    epc_config_var_t all = EPC_CONFIG_VAR_INIT;
    const epc_config_t *cfg;
    epc_status_t st = epc_out_check(var, &layouts, NULL, "epc_config_get_var", "var");
    if (st != EPC_OK)
        return st;
    if (index < 0 || index >= EPC_CFG_COUNT)
        return epc_error(EPC_ERR_INVALID_ARG, "epc_config_get_var: index %d out of range [0, %d)",
                         index, EPC_CFG_COUNT);
    (void)epc_config_get_quiet(&cfg);
    all.name = epc_cfg_name((epc_cfg_id_t)index);
    all.type = epc_cfg_type_name((epc_cfg_id_t)index);
    all.allowed = epc_cfg_allowed((epc_cfg_id_t)index);
    all.default_value = epc_cfg_default((epc_cfg_id_t)index);
    all.value = cfg->raw[index] ? cfg->raw[index] : all.default_value;
    all.help = epc_cfg_help((epc_cfg_id_t)index);
    all.from_env = cfg->raw[index] != NULL;
    all.valid = !cfg->invalid[index];
    epc_out_store(var, &all);
    return EPC_OK;
}

epc_status_t epc_config_check(void)
{
    const epc_config_t *cfg;
    return epc_config_get(&cfg);
}
