/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * epc_info - what this epcomm is and how it is configured: version, build
 * configuration, MPI/hwloc/libfabric versions, the libfabric providers that
 * resolve at run time, and every EPC_* variable with its value and help
 * (in the spirit of `fi_info -e` and `ucc_info -c`).
 *
 * Exit status: 0, or 1 when an EPC_* variable is invalid (it is marked).
 */
#include <epcomm.h>

#include <stdio.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: epc_info [-c|--config] [-b|--build] [-a|--abi] [-h|--help]\n"
               "  -b, --build   only the version and build configuration\n"
               "  -c, --config  only the EPC_* variables\n"
               "  -a, --abi     only the public structs' layout (type field offset size)\n"
               "With no option the build and the variables are printed.\n");
}

static void print_build(void)
{
    const epc_build_info_t *bi = epc_get_build_info();
    char lib[MPI_MAX_LIBRARY_VERSION_STRING];
    char provs[4096];
    int len = 0;
    MPI_Get_library_version(lib, &len); /* allowed before MPI_Init */
    lib[strcspn(lib, "\n,")] = '\0';
    printf("# epcomm %s\n", bi->version);
    printf("# build\n");
    printf("  configure:   %s\n", bi->configure_args[0] ? bi->configure_args : "(no arguments)");
    printf("  compiler:    %s\n", bi->compiler);
    printf("  MPI:         built with %s; running %s\n", bi->mpi_compiled, lib);
    printf("  hwloc API:   built with %s; running %s\n", bi->hwloc_compiled, bi->hwloc_runtime);
    if (!bi->have_ofi) {
        printf("  libfabric:   not built (configured --without-ofi): transport ofi unavailable\n");
        return;
    }
    printf("  libfabric:   built with %s; running %s\n", bi->ofi_compiled, bi->ofi_runtime);
    if (epc_ofi_providers(provs, sizeof provs) == EPC_OK)
        printf("  providers:   %s\n", provs[0] ? provs : "(none resolve)");
    else
        printf("  providers:   (query failed: %s)\n", epc_last_error(NULL));
}

/* The inter-node transport a context would use here, and why. */
static void print_transport(void)
{
    char why[256];
    epc_transport_t chosen;
    if (epc_transport_choice(EPC_TRANSPORT_DEFAULT, why, sizeof why, &chosen) == EPC_OK)
        printf("  transport:   %s\n", why);
    else
        printf("  transport:   (cannot choose: %s)\n", epc_last_error(NULL));
}

/* Prints the table; returns the number of invalid variables. */
static int print_config(void)
{
    int bad = 0;
    printf("# configuration (params field > environment > default)\n");
    for (int i = 0; i < epc_config_count(); i++) {
        epc_config_var_t v = EPC_CONFIG_VAR_INIT;
        if (epc_config_get_var(i, &v) != EPC_OK)
            return bad + 1;
        printf("%s=%s%s\n", v.name, v.value,
               !v.valid     ? "   <-- INVALID"
               : v.from_env ? "   (from environment)"
                            : "");
        printf("    %s [%s%s%s], default %s\n", v.type, v.allowed[0] ? "" : "any", v.allowed, "",
               v.default_value);
        printf("    %s\n", v.help);
        bad += !v.valid;
    }
    if (epc_config_check() != EPC_OK)
        fprintf(stderr, "epc_info: %s\n", epc_last_error(NULL));
    return bad;
}

/* One line per public struct ("type - 0 sizeof") and field ("type field
 * offset size"), as bindings check their mirrors against. */
static void print_abi(void)
{
    int n = 0, abi = 0;
    const epc_abi_field_t *t = epc_abi_table(&n, &abi);
    printf("# abi %d\n", abi);
    for (int i = 0; i < n; i++)
        printf("%s %s %zu %zu\n", t[i].type, t[i].field[0] ? t[i].field : "-", t[i].offset,
               t[i].size);
}

int main(int argc, char **argv)
{
    int build = 1, config = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-b") || !strcmp(argv[i], "--build")) {
            config = 0;
        } else if (!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) {
            build = 0;
        } else if (!strcmp(argv[i], "-a") || !strcmp(argv[i], "--abi")) {
            print_abi();
            return 0;
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "epc_info: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (build) {
        print_build();
        print_transport();
    }
    if (config && print_config() != 0)
        return 1;
    return 0;
}
