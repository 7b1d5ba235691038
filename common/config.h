/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * config.h - the one table of EPC_* environment variables.
 *
 * Precedence everywhere: a params field that is set > the environment
 * variable > the built-in default.  The environment is read once; an invalid
 * value is an error (EPC_ERR_INVALID_ARG naming the variable), never a silent
 * fallback to the default.  An empty value counts as unset.
 */
#ifndef EPC_COMMON_CONFIG_H
#define EPC_COMMON_CONFIG_H

#include "epcomm.h"

typedef enum epc_cfg_type {
    EPC_CFG_T_ENUM,
    EPC_CFG_T_INT,
    EPC_CFG_T_FLOAT,
    EPC_CFG_T_STRING
} epc_cfg_type_t;

/*
 * X(ID, type, default, allowed, min, max, help)
 *  - ENUM: allowed lists the choices separated by '|'; value = choice index.
 *  - INT/FLOAT: the value must lie in [min, max]; allowed is the text shown.
 *  - STRING: any text.
 */
#define EPC_CONFIG_TABLE(X)                                                                   \
    X(LOG_LEVEL, EPC_CFG_T_ENUM, "warn", "error|warn|info|debug|off", 0, 0,                   \
      "Least severe messages printed on stderr. Each line is prefixed with host, pid and "    \
      "MPI rank. off prints nothing (for callers that report the statuses themselves: "       \
      "epc_last_error still gives every detail).")                                            \
    X(RANKS_PER_NODE, EPC_CFG_T_INT, "0", "0..65536", 0, 65536,                               \
      "Virtual nodes: split each real node's ranks into consecutive blocks of this many "     \
      "ranks, each block acting as a node (traffic between blocks then takes the inter-node " \
      "path). 0 keeps the real nodes. Must divide every node's rank count.")                  \
    X(TOPO_XML, EPC_CFG_T_STRING, "", "", 0, 0,                                               \
      "hwloc XML file describing this node's hardware, used instead of discovery (e.g. to "   \
      "plan for a machine you are not on). Binding is never attempted on it.")                \
    X(HW_PROFILE, EPC_CFG_T_ENUM, "cpu-eth", "h800|h100-ib|gb200-nvl72|cpu-eth", 0, 0,        \
      "Named hardware whose nominal intra-/inter-node bandwidths feed the planner and cost "  \
      "model: h800 160/50 GB/s (DeepSeek-V3 report), h100-ib 450/50, gb200-nvl72 900/50, "    \
      "cpu-eth 20/12.5 (shared memory, 100 GbE).")                                            \
    X(INTRA_BW_GBS, EPC_CFG_T_FLOAT, "0", "0 (profile) or >0 GB/s", 0, 1e6,                   \
      "Intra-node bandwidth per rank in GB/s, overriding the profile's. 0 = from profile.")   \
    X(INTER_BW_GBS, EPC_CFG_T_FLOAT, "0", "0 (profile) or >0 GB/s", 0, 1e6,                   \
      "Inter-node (network) bandwidth per rank in GB/s, overriding the profile's. 0 = from "  \
      "profile.")                                                                             \
    X(TRANSPORT, EPC_CFG_T_ENUM, "auto", "auto|mpi|ofi", 0, 0,                                \
      "Inter-node transport. auto: ofi when libfabric offers a hardware provider (verbs, "    \
      "efa, cxi, psm3, ...), else mpi.")                                                      \
    X(OFI_PROVIDER, EPC_CFG_T_STRING, "", "", 0, 0,                                           \
      "libfabric provider for the ofi transport (e.g. verbs, tcp, shm). Empty: the first "    \
      "hardware provider, else tcp.")                                                         \
    X(OFI_WRITE, EPC_CFG_T_ENUM, "auto", "auto|off", 0, 0,                                    \
      "Messages of the low-latency mode between nodes over the ofi transport. auto: "         \
      "fi_writedata into the receiver's registered region with remote CQ data when the "      \
      "provider offers it (and every rank agrees), else tagged messages into receives "       \
      "posted ahead; off: always the tagged messages.")                                       \
    X(TIMEOUT_MS, EPC_CFG_T_INT, "60000", "1..86400000", 1, 86400000,                         \
      "Deadline in milliseconds of every wait inside a call; on expiry the call returns "     \
      "EPC_ERR_TIMEOUT naming the phase and the peer it waited for.")                         \
    X(ALGO, EPC_CFG_T_ENUM, "hier", "hier|flat", 0, 0,                                        \
      "Dispatch/combine algorithm when the args leave it 0: hier (one network copy per "      \
      "token and node, forwarded inside the node) or flat (MPI_Alltoallv of per-rank "        \
      "copies, the baseline). Read at context creation.")                                     \
    X(PROGRESS, EPC_CFG_T_ENUM, "caller", "caller|thread", 0, 0,                              \
      "Who advances nonblocking dispatches and combines when params->progress is 0: caller "  \
      "(its epc_test/epc_wait calls) or thread (also a thread of the context's, which needs " \
      "MPI_THREAD_MULTIPLE). Read at context creation.")                                      \
    X(PROGRESS_SLEEP_US, EPC_CFG_T_INT, "20", "0..100000", 0, 100000,                         \
      "Pause of the progress thread between its passes over the requests in flight, in "      \
      "microseconds (0: yield only). Shorter reacts faster and takes more of a core.")        \
    X(CHUNK_KB, EPC_CFG_T_INT, "2048", "4..1048576", 4, 1048576,                              \
      "Pipeline chunk of hier dispatch and combine, in KiB per message (at most 8 chunks): "  \
      "a chunk is packed or summed while the previous one is on the wire. Must be the same "  \
      "on every rank (checked at context creation).")                                         \
    X(MOVE_ROUND_KB, EPC_CFG_T_INT, "65536", "1..16777216", 1, 16777216,                      \
      "Expert weight moves (epc_placement_move_weights) go in rounds of at most this many "   \
      "KiB sent and received per rank (at least one slot per round), bounding the transport " \
      "regions that stage them. Must be the same on every rank (checked by each move).")      \
    X(FAULT, EPC_CFG_T_STRING, "", "", 0, 0,                                                  \
      "Test hook, not for production: RANK:PHASE:ACTION makes that rank of MPI_COMM_WORLD "   \
      "fail at PHASE (create: inside epc_ctx_create; shm: a shared-memory segment made, not " \
      "yet mapped by the node; grow: a region about to grow; dispatch; combine; destroy; "    \
      "lldispatch; llcombine; move: an expert weight move, agreed, nothing sent): "           \
      "ACTION stall=MS sleeps MS milliseconds, exit kills the process (SIGKILL); "            \
      "RANK:counts:corrupt makes it send a corrupt expert count in the dispatch count "       \
      "exchange. Empty: no fault.")

typedef enum epc_cfg_id {
#define EPC_CFG_ID_(id, type, def, allowed, min, max, help) EPC_CFG_##id,
    EPC_CONFIG_TABLE(EPC_CFG_ID_)
#undef EPC_CFG_ID_
        EPC_CFG_COUNT
} epc_cfg_id_t;

typedef union epc_cfg_value {
    long long i; /* INT, and ENUM (choice index) */
    double f;    /* FLOAT */
    char *s;     /* STRING (owned; never NULL once loaded) */
} epc_cfg_value_t;

typedef struct epc_config {
    epc_cfg_value_t value[EPC_CFG_COUNT];
    char *raw[EPC_CFG_COUNT];   /* environment text, NULL when unset */
    int invalid[EPC_CFG_COUNT]; /* 1 when raw was rejected */
    epc_status_t status;        /* EPC_OK or the first error */
    char error[512];            /* text of the first error */
} epc_config_t;

/* Returns the value of name, or NULL: getenv, or a fake for tests. */
typedef const char *(*epc_cfg_lookup_fn)(const char *name, void *arg);

/*
 * Parses one value of variable `id` from text into *out.  On error returns
 * EPC_ERR_INVALID_ARG and writes a message naming the variable and the value
 * into err (errlen bytes); *out is untouched.
 */
epc_status_t epc_config_parse(epc_cfg_id_t id, const char *text, epc_cfg_value_t *out, char *err,
                              size_t errlen);

/* Loads every variable through lookup into cfg (which must be zeroed or
 * freed).  Returns cfg->status; invalid variables keep their defaults. */
epc_status_t epc_config_load(epc_config_t *cfg, epc_cfg_lookup_fn lookup, void *arg);

/* Frees what epc_config_load allocated and zeroes cfg. */
void epc_config_free(epc_config_t *cfg);

/*
 * The process-wide configuration, read from the environment at the first
 * call.  *cfg is always set (defaults where invalid).  Returns EPC_OK, or
 * EPC_ERR_INVALID_ARG raised (logged, last error set) on every call while
 * a variable is invalid.
 */
epc_status_t epc_config_get(const epc_config_t **cfg);

/* Same without raising the error (for the logger itself). */
epc_status_t epc_config_get_quiet(const epc_config_t **cfg);

/* Re-reads the environment (tests, and after setenv in a tool); the log
 * level follows (config_api.c).  epc_config_reread only re-reads. */
epc_status_t epc_config_reload(void);
epc_status_t epc_config_reread(void);

/* Name of a variable, "EPC_LOG_LEVEL"; its type ("enum", "int", ...),
 * built-in default, allowed values and help, from the table. */
const char *epc_cfg_name(epc_cfg_id_t id);
const char *epc_cfg_type_name(epc_cfg_id_t id);
const char *epc_cfg_default(epc_cfg_id_t id);
const char *epc_cfg_allowed(epc_cfg_id_t id);
const char *epc_cfg_help(epc_cfg_id_t id);

static inline long long epc_cfg_int(const epc_config_t *cfg, epc_cfg_id_t id)
{
    return cfg->value[id].i;
}
static inline long long epc_cfg_enum(const epc_config_t *cfg, epc_cfg_id_t id)
{
    return cfg->value[id].i;
}
static inline double epc_cfg_float(const epc_config_t *cfg, epc_cfg_id_t id)
{
    return cfg->value[id].f;
}
static inline const char *epc_cfg_string(const epc_config_t *cfg, epc_cfg_id_t id)
{
    return cfg->value[id].s;
}
/* 1 when the variable was set (validly) in the environment. */
static inline int epc_cfg_is_set(const epc_config_t *cfg, epc_cfg_id_t id)
{
    return cfg->raw[id] != NULL && !cfg->invalid[id];
}

#endif
