/* SPDX-License-Identifier: BSD-3-Clause */
/* info.c - build information and the libfabric providers seen at run time. */
#include "build_config.h"

#include <stdio.h>
#include <string.h>

#include <hwloc.h>
#ifdef EPC_HAVE_OFI
#include <rdma/fabric.h>
#endif

#include "error.h"

#define STR_(x) #x
#define STR(x) STR_(x)

/* hwloc encodes its API version as 0xMMmmrr. */
static void hwloc_version_text(unsigned v, char *buf, size_t len)
{
    snprintf(buf, len, "%u.%u.%u", (v >> 16) & 0xff, (v >> 8) & 0xff, v & 0xff);
}

const epc_build_info_t *epc_get_build_info(void)
{
    static epc_build_info_t info;
    static char hwloc_c[32], hwloc_r[32], ofi_c[32], ofi_r[32];
    hwloc_version_text(HWLOC_API_VERSION, hwloc_c, sizeof hwloc_c);
    hwloc_version_text(hwloc_get_api_version(), hwloc_r, sizeof hwloc_r);
    info.version = EPC_VERSION_STRING;
    info.configure_args = EPC_CONFIGURE_ARGS;
    info.compiler = EPC_CC;
#if defined(OMPI_MAJOR_VERSION)
    info.mpi_compiled = "Open MPI " STR(OMPI_MAJOR_VERSION) "." STR(OMPI_MINOR_VERSION) "." STR(
        OMPI_RELEASE_VERSION) " (MPI " STR(MPI_VERSION) "." STR(MPI_SUBVERSION) ")";
#else
    info.mpi_compiled = "MPI " STR(MPI_VERSION) "." STR(MPI_SUBVERSION);
#endif
    info.hwloc_compiled = hwloc_c;
    info.hwloc_runtime = hwloc_r;
#ifdef EPC_HAVE_OFI
    info.have_ofi = 1;
    snprintf(ofi_c, sizeof ofi_c, "%d.%d", FI_MAJOR_VERSION, FI_MINOR_VERSION);
    snprintf(ofi_r, sizeof ofi_r, "%u.%u", FI_MAJOR(fi_version()), FI_MINOR(fi_version()));
#else
    info.have_ofi = 0;
    ofi_c[0] = ofi_r[0] = '\0';
#endif
    info.ofi_compiled = ofi_c;
    info.ofi_runtime = ofi_r;
    return &info;
}

epc_status_t epc_ofi_providers(char *buf, size_t buflen)
{
    if (buf == NULL || buflen == 0)
        return epc_error(EPC_ERR_INVALID_ARG, "epc_ofi_providers: buf is NULL or buflen is 0");
#ifndef EPC_HAVE_OFI
    return epc_error(EPC_ERR_UNSUPPORTED, "epc_ofi_providers: epcomm was built --without-ofi");
#else
    struct fi_info *list = NULL;
    size_t used = 0;
    char out[4096] = "";
    int rc = fi_getinfo(FI_VERSION(1, 10), NULL, NULL, 0, NULL, &list);
    if (rc == -FI_ENODATA) {
        out[0] = '\0'; /* no provider resolves: an empty list, not an error */
    } else if (rc != 0) {
        return epc_error(EPC_ERR_TRANSPORT, "epc_ofi_providers: fi_getinfo: %s", fi_strerror(-rc));
    }
    for (struct fi_info *fi = list; fi != NULL; fi = fi->next) {
        const char *name = fi->fabric_attr->prov_name;
        size_t nlen = strlen(name);
        int seen = 0;
        /* Skip names already listed (one entry per provider, not per domain). */
        for (const char *p = out; (p = strstr(p, name)) != NULL; p += nlen)
            if ((p == out || p[-1] == ',') && (p[nlen] == ',' || p[nlen] == '\0'))
                seen = 1;
        if (seen || used + nlen + 2 > sizeof out)
            continue;
        used += (size_t)snprintf(out + used, sizeof out - used, "%s%s", used ? "," : "", name);
    }
    fi_freeinfo(list);
    if (strlen(out) + 1 > buflen)
        return epc_error(EPC_ERR_CAPACITY, "epc_ofi_providers: buflen %zu < %zu needed", buflen,
                         strlen(out) + 1);
    memcpy(buf, out, strlen(out) + 1);
    return EPC_OK;
#endif
}
