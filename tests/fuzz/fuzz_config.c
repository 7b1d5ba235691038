/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * fuzz_config - libFuzzer harness for the EPC_* parser and the EPC_FAULT
 * grammar.  The first byte picks a variable (one past the last is invalid
 * on purpose), the rest is its text.  Invariants (abort on violation): only
 * OK or INVALID_ARG come back; a rejection names the variable; an accepted
 * int lies in its printed range and reads back equal; an accepted enum is
 * one of its choices; an accepted float is finite and reads back equal; a
 * string is kept verbatim; epc_config_load agrees with epc_config_parse;
 * an accepted EPC_FAULT prints back to text that parses to the same fault.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "epcomm.h"
#include "fuzz_check.h"
#include "fault.h"

typedef struct fake_env {
    const char *name, *text;
} fake_env_t;

static const char *lookup(const char *name, void *arg)
{
    const fake_env_t *e = arg;
    return strcmp(name, e->name) == 0 ? e->text : NULL;
}

/* The accepted value v of variable var (text) obeys its type's rules. */
static void check_value(const epc_config_var_t *var, const char *text, const epc_cfg_value_t *v)
{
    long long lo, hi;
    if (strcmp(var->type, "int") == 0) {
        if (sscanf(var->allowed, "%lld..%lld", &lo, &hi) == 2)
            CHECK(v->i >= lo && v->i <= hi);
        CHECK(strtoll(text, NULL, 10) == v->i);
    } else if (strcmp(var->type, "enum") == 0) {
        const char *p = var->allowed;
        for (long long k = 0; k < v->i; k++) {
            p = strchr(p, '|');
            CHECK(p != NULL);
            p++;
        }
        CHECK(strncasecmp(p, text, strlen(text)) == 0);
        CHECK(p[strlen(text)] == '|' || p[strlen(text)] == '\0');
    } else if (strcmp(var->type, "float") == 0) {
        CHECK(isfinite(v->f) && v->f >= 0.0);
        CHECK(strtod(text, NULL) == v->f);
    } else {
        CHECK(strcmp(var->type, "string") == 0 && strcmp(v->s, text) == 0);
    }
}

/* The phases EPC_FAULT accepts, written out independently of fault.h
 * (the low-latency calls' and the weight move's too: the fuzzer found
 * "2:llcombine:exit" refused here while the parser took it). */
static const char *const fault_phases[] = {"create",     "shm",       "grow", "dispatch", "combine",
                                           "lldispatch", "llcombine", "move", "destroy"};

static void fuzz_fault(const char *text)
{
    epc_fault_t f, g;
    char back[64];
    int listed = 0;
    if (epc_fault_parse(text, &f) != 0)
        return;
    for (size_t i = 0; i < sizeof fault_phases / sizeof fault_phases[0]; i++)
        listed |= !strcmp(f.phase, fault_phases[i]) && !f.corrupt;
    CHECK(f.rank >= 0 && (listed || (!strcmp(f.phase, "counts") && f.corrupt)));
    CHECK(f.kill || f.corrupt || (f.stall_ms > 0 && f.stall_ms <= 86400000));
    if (f.corrupt)
        snprintf(back, sizeof back, "%d:counts:corrupt", f.rank);
    else if (f.kill)
        snprintf(back, sizeof back, "%d:%s:exit", f.rank, f.phase);
    else
        snprintf(back, sizeof back, "%d:%s:stall=%ld", f.rank, f.phase, f.stall_ms);
    CHECK(epc_fault_parse(back, &g) == 0 && memcmp(&f, &g, sizeof f) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char text[256], err[512] = "";
    epc_config_var_t var = EPC_CONFIG_VAR_INIT;
    epc_cfg_value_t v;
    epc_config_t cfg;
    fake_env_t env;
    epc_status_t st;
    size_t n;
    int id;
    if (size < 1)
        return 0;
    id = data[0] % (EPC_CFG_COUNT + 1);
    n = size - 1 < sizeof text - 1 ? size - 1 : sizeof text - 1;
    memcpy(text, data + 1, n);
    text[n] = '\0';
    fuzz_fault(text);
    memset(&v, 0xa5, sizeof v);
    st = epc_config_parse((epc_cfg_id_t)id, text, &v, err, sizeof err);
    CHECK(st == EPC_OK || st == EPC_ERR_INVALID_ARG);
    if (id == EPC_CFG_COUNT) {
        CHECK(st == EPC_ERR_INVALID_ARG && err[0] != '\0');
        return 0;
    }
    CHECK(epc_config_get_var(id, &var) == EPC_OK);
    if (st != EPC_OK) {
        CHECK(strstr(err, var.name) != NULL);
    } else {
        check_value(&var, text, &v);
        if (strcmp(var.type, "string") == 0)
            free(v.s);
    }
    /* Loading the same text as the only variable set agrees with parse
     * (an empty value counts as unset, so it loads the default). */
    env.name = var.name, env.text = text;
    memset(&cfg, 0, sizeof cfg);
    CHECK(epc_config_load(&cfg, lookup, &env) == (text[0] == '\0' ? EPC_OK : st));
    if (st != EPC_OK && text[0] != '\0')
        CHECK(strstr(cfg.error, var.name) != NULL);
    epc_config_free(&cfg);
    return 0;
}
