/* SPDX-License-Identifier: BSD-3-Clause */
/* hw.c - hwloc loading, device inventory and nearest-device logic. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "hw.h"

enum dev_kind { DEV_NIC, DEV_GPU };

typedef struct hw_dev {
    enum dev_kind kind;
    int prio;           /* which of a PCI function's names wins */
    hwloc_obj_t anchor; /* the PCI function, or the OS device itself */
    hwloc_obj_t normal; /* closest non-I/O ancestor: its CPU locality */
    char name[EPC_HW_NAME_MAX];
} hw_dev_t;

struct epc_hw {
    hwloc_topology_t topo;
    char source[512];
    hw_dev_t *devs;
    int ndevs;
};

/* Classifies an OS device; returns its name priority, 0 when it is neither
 * a NIC nor a GPU.  DRM nodes (card0, renderD128) are display outputs, often
 * a server's BMC VGA, not compute GPUs. */
static int classify(hwloc_obj_t os, enum dev_kind *kind)
{
    const char *sub = os->subtype ? os->subtype : "";
    switch (os->attr->osdev.type) {
    case HWLOC_OBJ_OSDEV_OPENFABRICS:
        *kind = DEV_NIC;
        return 2;
    case HWLOC_OBJ_OSDEV_NETWORK:
        *kind = DEV_NIC;
        return 1;
    case HWLOC_OBJ_OSDEV_COPROC:
        *kind = DEV_GPU;
        return strcmp(sub, "CUDA") == 0 ? 4 : 2;
    case HWLOC_OBJ_OSDEV_GPU:
        if (!strncmp(os->name, "card", 4) || !strncmp(os->name, "renderD", 7) ||
            !strncmp(os->name, "controlD", 8))
            return 0;
        *kind = DEV_GPU;
        return strcmp(sub, "NVML") == 0 ? 3 : 1;
    default:
        return 0;
    }
}

/* Builds the device list, one entry per PCI function and kind. */
static epc_status_t inventory(epc_hw_t *hw)
{
    hwloc_obj_t os = NULL;
    int cap = 0;
    while ((os = hwloc_get_next_osdev(hw->topo, os)) != NULL) {
        enum dev_kind kind;
        int prio = classify(os, &kind), i;
        hwloc_obj_t anchor =
            os->parent && os->parent->type == HWLOC_OBJ_PCI_DEVICE ? os->parent : os;
        if (prio == 0 || os->name == NULL)
            continue;
        for (i = 0; i < hw->ndevs; i++)
            if (hw->devs[i].anchor == anchor && hw->devs[i].kind == kind)
                break;
        if (i == hw->ndevs) {
            if (hw->ndevs == cap) {
                hw_dev_t *d = realloc(hw->devs, (size_t)(cap = cap ? 2 * cap : 16) * sizeof *d);
                if (d == NULL)
                    return epc_error(EPC_ERR_NO_MEMORY, "topology: device list of %d", cap);
                hw->devs = d;
            }
            hw->ndevs++;
            hw->devs[i].prio = 0;
        }
        if (prio > hw->devs[i].prio) {
            hw->devs[i].kind = kind;
            hw->devs[i].prio = prio;
            hw->devs[i].anchor = anchor;
            hw->devs[i].normal = hwloc_get_non_io_ancestor_obj(hw->topo, anchor);
            snprintf(hw->devs[i].name, sizeof hw->devs[i].name, "%s", os->name);
        }
    }
    return EPC_OK;
}

epc_status_t epc_hw_load(const char *xml, const char *synthetic, epc_hw_t **hw_p)
{
    epc_hw_t *hw = calloc(1, sizeof *hw);
    const char *env;
    epc_status_t st;
    if (hw == NULL)
        return epc_error(EPC_ERR_NO_MEMORY, "topology: allocating the hwloc handle");
    if (hwloc_topology_init(&hw->topo) != 0) {
        free(hw);
        return epc_error(EPC_ERR_TOPOLOGY, "hwloc_topology_init failed");
    }
    hwloc_topology_set_io_types_filter(hw->topo, HWLOC_TYPE_FILTER_KEEP_ALL);
    if (xml != NULL && *xml != '\0') {
        snprintf(hw->source, sizeof hw->source, "xml %s", xml);
        if (hwloc_topology_set_xml(hw->topo, xml) != 0) {
            st = epc_error(EPC_ERR_TOPOLOGY, "hwloc cannot read XML file \"%s\"", xml);
            goto err;
        }
    } else if (synthetic != NULL && *synthetic != '\0') {
        snprintf(hw->source, sizeof hw->source, "synthetic %s", synthetic);
        if (hwloc_topology_set_synthetic(hw->topo, synthetic) != 0) {
            st = epc_error(EPC_ERR_TOPOLOGY, "hwloc rejects synthetic topology \"%s\"", synthetic);
            goto err;
        }
    } else if ((env = getenv("HWLOC_XMLFILE")) != NULL && *env != '\0') {
        snprintf(hw->source, sizeof hw->source, "HWLOC_XMLFILE %s", env);
    } else if ((env = getenv("HWLOC_SYNTHETIC")) != NULL && *env != '\0') {
        snprintf(hw->source, sizeof hw->source, "HWLOC_SYNTHETIC %s", env);
    } else {
        snprintf(hw->source, sizeof hw->source, "this system");
    }
    if (hwloc_topology_load(hw->topo) != 0) {
        st = epc_error(EPC_ERR_TOPOLOGY, "hwloc cannot load the topology (%s)", hw->source);
        goto err;
    }
    if ((st = inventory(hw)) != EPC_OK)
        goto err;
    *hw_p = hw;
    return EPC_OK;
err:
    epc_hw_free(hw);
    return st;
}

void epc_hw_free(epc_hw_t *hw)
{
    if (hw == NULL)
        return;
    hwloc_topology_destroy(hw->topo);
    free(hw->devs);
    free(hw);
}

int epc_hw_is_thissystem(const epc_hw_t *hw)
{
    return hwloc_topology_is_thissystem(hw->topo);
}

const char *epc_hw_source(const epc_hw_t *hw)
{
    return hw->source;
}

epc_status_t epc_hw_rank_cpuset(const epc_hw_t *hw, int local_rank, int local_size,
                                hwloc_bitmap_t out, int *bound)
{
    hwloc_const_bitmap_t all = hwloc_topology_get_topology_cpuset(hw->topo);
    int npus = hwloc_get_nbobjs_by_type(hw->topo, HWLOC_OBJ_PU), first, last;
    if (local_size < 1 || local_rank < 0 || local_rank >= local_size || npus < 1)
        return epc_error(EPC_ERR_INTERNAL, "topology: local rank %d of %d, %d PUs", local_rank,
                         local_size, npus);
    if (epc_hw_is_thissystem(hw)) {
        if (hwloc_get_cpubind(hw->topo, out, HWLOC_CPUBIND_PROCESS) != 0 ||
            hwloc_bitmap_iszero(out))
            hwloc_bitmap_copy(out, all); /* binding unknown: the whole node */
        hwloc_bitmap_and(out, out, all);
        *bound = !hwloc_bitmap_isincluded(all, out);
        return EPC_OK;
    }
    /* Not this machine: a block of PUs, at least one per rank. */
    first = (int)((long)local_rank * npus / local_size);
    last = (int)((long)(local_rank + 1) * npus / local_size) - 1;
    if (last < first)
        last = first;
    hwloc_bitmap_zero(out);
    for (int i = first; i <= last; i++)
        hwloc_bitmap_or(out, out,
                        hwloc_get_obj_by_type(hw->topo, HWLOC_OBJ_PU, (unsigned)i)->cpuset);
    *bound = 1;
    return EPC_OK;
}

/* Appends name to a comma-separated list, marking truncation with "...". */
static void list_add(char *list, size_t cap, const char *name)
{
    size_t len = strlen(list), nlen = strlen(name);
    if (len + nlen + 2 > cap) {
        if (len + 4 < cap && (len < 3 || strcmp(list + len - 3, "...") != 0))
            strcat(list, len ? ",..." : "...");
        return;
    }
    if (len)
        list[len++] = ',';
    memcpy(list + len, name, nlen + 1);
}

/* Lists the devices of `kind` nearest to the object covering cpuset. */
static void nearest(const epc_hw_t *hw, hwloc_obj_t cover, enum dev_kind kind, char *list,
                    size_t cap)
{
    int best = -1;
    list[0] = '\0';
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < hw->ndevs; i++) {
            int depth;
            if (hw->devs[i].kind != kind)
                continue;
            depth = (int)hwloc_get_common_ancestor_obj(hw->topo, cover, hw->devs[i].normal)->depth;
            if (pass == 0 && depth > best)
                best = depth;
            else if (pass == 1 && depth == best)
                list_add(list, cap, hw->devs[i].name);
        }
}

epc_status_t epc_hw_locality(const epc_hw_t *hw, hwloc_const_bitmap_t cpuset,
                             epc_hw_locality_t *loc)
{
    hwloc_obj_t cover, pkg, obj = NULL;
    if (hwloc_bitmap_iszero(cpuset))
        return epc_error(EPC_ERR_INTERNAL, "topology: empty cpuset");
    cover = hwloc_get_obj_covering_cpuset(hw->topo, cpuset);
    if (cover == NULL)
        cover = hwloc_get_root_obj(hw->topo);
    hwloc_bitmap_list_snprintf(loc->cpuset, sizeof loc->cpuset, cpuset);
    pkg = cover->type == HWLOC_OBJ_PACKAGE
              ? cover
              : hwloc_get_ancestor_obj_by_type(hw->topo, HWLOC_OBJ_PACKAGE, cover);
    loc->package = pkg ? (int)pkg->logical_index : -1;
    loc->numa = -1;
    while ((obj = hwloc_get_next_obj_by_type(hw->topo, HWLOC_OBJ_NUMANODE, obj)) != NULL)
        if (hwloc_bitmap_isincluded(cpuset, obj->cpuset)) {
            loc->numa = (int)obj->logical_index;
            break;
        }
    loc->cores = 0;
    obj = NULL;
    while ((obj = hwloc_get_next_obj_by_type(hw->topo, HWLOC_OBJ_CORE, obj)) != NULL)
        loc->cores += hwloc_bitmap_intersects(cpuset, obj->cpuset);
    nearest(hw, cover, DEV_NIC, loc->nics, sizeof loc->nics);
    nearest(hw, cover, DEV_GPU, loc->gpus, sizeof loc->gpus);
    return EPC_OK;
}

void epc_hw_summary(const epc_hw_t *hw, epc_hw_summary_t *sum)
{
    sum->packages = hwloc_get_nbobjs_by_type(hw->topo, HWLOC_OBJ_PACKAGE);
    sum->numa_nodes = hwloc_get_nbobjs_by_type(hw->topo, HWLOC_OBJ_NUMANODE);
    sum->cores = hwloc_get_nbobjs_by_type(hw->topo, HWLOC_OBJ_CORE);
    sum->pus = hwloc_get_nbobjs_by_type(hw->topo, HWLOC_OBJ_PU);
    sum->nics[0] = sum->gpus[0] = '\0';
    for (int i = 0; i < hw->ndevs; i++)
        list_add(hw->devs[i].kind == DEV_NIC ? sum->nics : sum->gpus, sizeof sum->nics,
                 hw->devs[i].name);
}

/* PCI/tree hops between two objects (through their lowest common ancestor). */
static int hops(hwloc_obj_t a, hwloc_obj_t b)
{
    int da = 0;
    for (hwloc_obj_t x = a; x != NULL; x = x->parent, da++) {
        int db = 0;
        for (hwloc_obj_t y = b; y != NULL; y = y->parent, db++)
            if (x == y)
                return da + db;
    }
    return 1 << 20; /* different trees: cannot happen within one topology */
}

static const hw_dev_t *find_dev(const epc_hw_t *hw, enum dev_kind kind, const char *name)
{
    for (int i = 0; i < hw->ndevs; i++)
        if (hw->devs[i].kind == kind && strcmp(hw->devs[i].name, name) == 0)
            return &hw->devs[i];
    return NULL;
}

/* Entry k (mod the length) of a comma-separated list into out; "" if empty. */
static void list_pick(const char *list, int k, char *out)
{
    int n = 0;
    const char *p = list;
    out[0] = '\0';
    if (*list == '\0')
        return;
    for (const char *q = list; *q; q++)
        n += *q == ',';
    k %= n + 1;
    for (; k > 0; k--)
        p = strchr(p, ',') + 1;
    snprintf(out, EPC_HW_NAME_MAX, "%.*s", (int)strcspn(p, ","), p);
}

/* How many of the ranks before i have the same list as rank i. */
static int turn(const epc_hw_locality_t *loc, int i, int gpu)
{
    int k = 0;
    for (int j = 0; j < i; j++)
        k += strcmp(gpu ? loc[j].gpus : loc[j].nics, gpu ? loc[i].gpus : loc[i].nics) == 0;
    return k;
}

epc_status_t epc_hw_assign(const epc_hw_t *hw, const epc_hw_locality_t *loc, int n,
                           char (*gpu)[EPC_HW_NAME_MAX], char (*nic)[EPC_HW_NAME_MAX])
{
    for (int i = 0; i < n; i++) {
        const hw_dev_t *g;
        int best = 1 << 30;
        list_pick(loc[i].gpus, turn(loc, i, 1), gpu[i]);
        g = gpu[i][0] ? find_dev(hw, DEV_GPU, gpu[i]) : NULL;
        if (g == NULL) {
            list_pick(loc[i].nics, turn(loc, i, 0), nic[i]);
            continue;
        }
        nic[i][0] = '\0';
        for (int d = 0; d < hw->ndevs; d++) {
            int h;
            if (hw->devs[d].kind != DEV_NIC)
                continue;
            h = hops(g->anchor, hw->devs[d].anchor);
            if (h < best) {
                best = h;
                snprintf(nic[i], EPC_HW_NAME_MAX, "%s", hw->devs[d].name);
            }
        }
    }
    return EPC_OK;
}
