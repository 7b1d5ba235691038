/* SPDX-License-Identifier: BSD-3-Clause */
/* config.c - parsing and describing the EPC_* environment variables. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"

typedef struct cfg_desc {
    const char *name;
    epc_cfg_type_t type;
    const char *def;
    const char *allowed;
    double min, max;
    const char *help;
} cfg_desc_t;

static const cfg_desc_t table[EPC_CFG_COUNT] = {
#define EPC_CFG_DESC_(id, type, def, allowed, min, max, help) \
    {"EPC_" #id, type, def, allowed, (double)(min), (double)(max), help},
    EPC_CONFIG_TABLE(EPC_CFG_DESC_)
#undef EPC_CFG_DESC_
};

static const char *const type_names[] = {"enum", "int", "float", "string"};

const char *epc_cfg_name(epc_cfg_id_t id)
{
    return (unsigned)id < EPC_CFG_COUNT ? table[id].name : "EPC_?";
}

/* Index of `text` among the '|'-separated choices (case-insensitive), or -1. */
static int enum_index(const char *choices, const char *text)
{
    size_t tlen = strlen(text);
    int idx = 0;
    for (const char *p = choices;; idx++) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == tlen && strncasecmp(p, text, len) == 0)
            return idx;
        if (bar == NULL)
            return -1;
        p = bar + 1;
    }
}

static epc_status_t parse_int(const cfg_desc_t *d, const char *text, epc_cfg_value_t *out,
                              char *err, size_t errlen)
{
    char *end;
    long long v;
    errno = 0;
    v = strtoll(text, &end, 10);
    /* strtoll skips leading blanks; a value with blanks is a typo, not a number. */
    if (end == text || *end != '\0' || isspace((unsigned char)text[0])) {
        snprintf(err, errlen, "%s=\"%s\" is not an integer (allowed: %s)", d->name, text,
                 d->allowed);
        return EPC_ERR_INVALID_ARG;
    }
    if (errno == ERANGE || (double)v < d->min || (double)v > d->max) {
        snprintf(err, errlen, "%s=%s is out of range (allowed: %s)", d->name, text, d->allowed);
        return EPC_ERR_INVALID_ARG;
    }
    out->i = v;
    return EPC_OK;
}

static epc_status_t parse_float(const cfg_desc_t *d, const char *text, epc_cfg_value_t *out,
                                char *err, size_t errlen)
{
    char *end;
    double v;
    errno = 0;
    v = strtod(text, &end);
    if (end == text || *end != '\0' || isspace((unsigned char)text[0]) || isnan(v)) {
        snprintf(err, errlen, "%s=\"%s\" is not a number (allowed: %s)", d->name, text, d->allowed);
        return EPC_ERR_INVALID_ARG;
    }
    if (errno == ERANGE || !isfinite(v) || v < d->min || v > d->max) {
        snprintf(err, errlen, "%s=%s is out of range (allowed: %s)", d->name, text, d->allowed);
        return EPC_ERR_INVALID_ARG;
    }
    out->f = v;
    return EPC_OK;
}

epc_status_t epc_config_parse(epc_cfg_id_t id, const char *text, epc_cfg_value_t *out, char *err,
                              size_t errlen)
{
    const cfg_desc_t *d;
    int idx;
    char *s;
    if ((unsigned)id >= EPC_CFG_COUNT || text == NULL || out == NULL) {
        snprintf(err, errlen, "config: bad variable id %d or NULL text", (int)id);
        return EPC_ERR_INVALID_ARG;
    }
    d = &table[id];
    switch (d->type) {
    case EPC_CFG_T_ENUM:
        idx = enum_index(d->allowed, text);
        if (idx < 0) {
            snprintf(err, errlen, "%s=\"%s\" is not one of %s", d->name, text, d->allowed);
            return EPC_ERR_INVALID_ARG;
        }
        out->i = idx;
        return EPC_OK;
    case EPC_CFG_T_INT:
        return parse_int(d, text, out, err, errlen);
    case EPC_CFG_T_FLOAT:
        return parse_float(d, text, out, err, errlen);
    case EPC_CFG_T_STRING:
        s = strdup(text);
        if (s == NULL) {
            snprintf(err, errlen, "%s: out of memory", d->name);
            return EPC_ERR_NO_MEMORY;
        }
        out->s = s;
        return EPC_OK;
    }
    snprintf(err, errlen, "%s: unknown type", d->name);
    return EPC_ERR_INTERNAL;
}

void epc_config_free(epc_config_t *cfg)
{
    for (int i = 0; i < EPC_CFG_COUNT; i++) {
        if (table[i].type == EPC_CFG_T_STRING)
            free(cfg->value[i].s);
        free(cfg->raw[i]);
    }
    memset(cfg, 0, sizeof *cfg);
}

/* Sets variable i to its built-in default; the table's defaults are valid by
 * construction (a unit test parses each one). */
static epc_status_t set_default(epc_config_t *cfg, int i)
{
    char err[256];
    return epc_config_parse((epc_cfg_id_t)i, table[i].def, &cfg->value[i], err, sizeof err);
}

epc_status_t epc_config_load(epc_config_t *cfg, epc_cfg_lookup_fn lookup, void *arg)
{
    cfg->status = EPC_OK;
    cfg->error[0] = '\0';
    for (int i = 0; i < EPC_CFG_COUNT; i++) {
        const char *text = lookup(table[i].name, arg);
        char err[sizeof cfg->error];
        epc_status_t st;
        cfg->raw[i] = NULL;
        cfg->invalid[i] = 0;
        if (text != NULL && *text != '\0') {
            cfg->raw[i] = strdup(text);
            st = epc_config_parse((epc_cfg_id_t)i, text, &cfg->value[i], err, sizeof err);
            if (st == EPC_OK)
                continue;
            cfg->invalid[i] = 1;
            if (cfg->status == EPC_OK) {
                cfg->status = st;
                snprintf(cfg->error, sizeof cfg->error, "%s", err);
            }
        }
        st = set_default(cfg, i);
        if (st != EPC_OK && cfg->status == EPC_OK) {
            cfg->status = st;
            snprintf(cfg->error, sizeof cfg->error, "%s: default unusable", table[i].name);
        }
    }
    return cfg->status;
}

static const char *env_lookup(const char *name, void *arg)
{
    (void)arg;
    return getenv(name);
}

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static epc_config_t g_cfg;
static int g_loaded;

/* Loads once; returns the stored status with the lock released. */
static epc_status_t load_global(int force)
{
    epc_status_t st;
    pthread_mutex_lock(&g_lock);
    if (force && g_loaded) {
        epc_config_free(&g_cfg);
        g_loaded = 0;
    }
    if (!g_loaded) {
        epc_config_load(&g_cfg, env_lookup, NULL);
        g_loaded = 1;
    }
    st = g_cfg.status;
    pthread_mutex_unlock(&g_lock);
    return st;
}

epc_status_t epc_config_get_quiet(const epc_config_t **cfg)
{
    epc_status_t st = load_global(0);
    *cfg = &g_cfg;
    return st;
}

epc_status_t epc_config_reread(void)
{
    return load_global(1);
}

const char *epc_cfg_type_name(epc_cfg_id_t id)
{
    return (unsigned)id < EPC_CFG_COUNT ? type_names[table[id].type] : "?";
}

const char *epc_cfg_default(epc_cfg_id_t id)
{
    return (unsigned)id < EPC_CFG_COUNT ? table[id].def : "";
}

const char *epc_cfg_allowed(epc_cfg_id_t id)
{
    return (unsigned)id < EPC_CFG_COUNT && table[id].allowed ? table[id].allowed : "";
}

const char *epc_cfg_help(epc_cfg_id_t id)
{
    return (unsigned)id < EPC_CFG_COUNT ? table[id].help : "";
}
