/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * epcomm.h - the one public header of epcomm, expert-parallel (MoE)
 * communication over MPI and libfabric.
 *
 * Conventions (docs/API.md): epc_/EPC_ prefixes; opaque objects the
 * library allocates and *_destroy frees (NULL accepted); params and output
 * structs start with `size_t size`, set by their EPC_*_INIT macro (a size
 * the library does not know is rejected; params fields left 0 take their
 * EPC_* variable, else the default; outputs are written only as far as the
 * caller's layout goes); functions return epc_status_t (0 success, 1 in
 * progress, negative errors, detailed by epc_last_error()) and write
 * outputs only on success.
 */
#ifndef EPCOMM_H
#define EPCOMM_H

#include <stddef.h>
#include <stdint.h>
/* epcomm uses the MPI C API only.  From C++, skip the C++ bindings (removed
 * in MPI-3; Open MPI's do not compile warning-free) unless the user already
 * included mpi.h with them. */
#if defined(__cplusplus) && !defined(OMPI_SKIP_MPICXX)
#define OMPI_SKIP_MPICXX 1
#endif
#if defined(__cplusplus) && !defined(MPICH_SKIP_MPICXX)
#define MPICH_SKIP_MPICXX 1
#endif
#include <mpi.h>

#if defined(__GNUC__) || defined(__clang__)
#define EPC_EXPORT __attribute__((visibility("default")))
#else
#define EPC_EXPORT
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* --- Version ------------------------------------------------------------- */

#define EPC_VERSION_MAJOR 0
#define EPC_VERSION_MINOR 10
#define EPC_VERSION_PATCH 0
#define EPC_VERSION_STRING "0.10.0"
/** Encodes a version as one comparable integer (major*10000+minor*100+patch). */
#define EPC_VERSION_NUMBER(maj, min, pat) ((maj)*10000 + (min)*100 + (pat))
#define EPC_VERSION EPC_VERSION_NUMBER(EPC_VERSION_MAJOR, EPC_VERSION_MINOR, EPC_VERSION_PATCH)

/**
 * Version of the library actually loaded (may differ from EPC_VERSION, the
 * header's).  Any pointer may be NULL.  Returns the version string.
 */
EPC_EXPORT const char *epc_get_version(int *major, int *minor, int *patch);

/* --- Status codes -------------------------------------------------------- */

/* X(name, value, description): the one list the enum and strings come from.
 * Rules of every function (each comment lists its own statuses): on failure
 * epc_last_error() names the argument or peer and the value, and no output
 * is written; anything that allocates may return EPC_ERR_NO_MEMORY; a
 * "collective" call agrees on input and capacity failures (each failing
 * rank its own status and text, every other rank EPC_ERR_PEER_FAILED naming
 * the lowest failing rank and why; the context stays usable); a peer that
 * stops taking part is EPC_ERR_TIMEOUT within EPC_TIMEOUT_MS (naming the
 * phase and peer), MPI or libfabric failing EPC_ERR_TRANSPORT: that rank
 * then tells its peers, whose waits end at once with EPC_ERR_PEER_FAILED
 * ("rank R aborted the context: <its error>"), and the context refuses
 * further calls (EPC_ERR_TRANSPORT, or EPC_ERR_PEER_FAILED naming the
 * aborting rank) until epc_ctx_destroy frees it locally.  EPC_ERR_INTERNAL:
 * a peer's data failed the receiver's checks (named), or a library bug. */
/* clang-format off */
#define EPC_STATUS_LIST(X)                                                  \
    X(EPC_OK,               0, "success")                                   \
    X(EPC_IN_PROGRESS,      1, "operation in progress")                     \
    X(EPC_ERR_INVALID_ARG, -1, "invalid argument")                          \
    X(EPC_ERR_NO_MEMORY,   -2, "out of memory")                             \
    X(EPC_ERR_UNSUPPORTED, -3, "unsupported operation or configuration")    \
    X(EPC_ERR_TIMEOUT,     -4, "timed out")                                 \
    X(EPC_ERR_MISMATCH,    -5, "ranks disagree")                            \
    X(EPC_ERR_PEER_FAILED, -6, "a peer failed")                             \
    X(EPC_ERR_TRANSPORT,   -7, "transport error")                           \
    X(EPC_ERR_TOPOLOGY,    -8, "topology error")                            \
    X(EPC_ERR_CAPACITY,    -9, "capacity exceeded")                         \
    X(EPC_ERR_INTERNAL,   -10, "internal error")
/* clang-format on */

typedef enum epc_status {
#define EPC_STATUS_ENUM_(name, value, text) name = value,
    EPC_STATUS_LIST(EPC_STATUS_ENUM_)
#undef EPC_STATUS_ENUM_
} epc_status_t;

/** Short constant description of a status; "unknown status" for others. */
EPC_EXPORT const char *epc_status_string(epc_status_t status);

/** Constant name of a status ("EPC_ERR_TIMEOUT"); "EPC_UNKNOWN" for others. */
EPC_EXPORT const char *epc_status_name(epc_status_t status);

/* --- Objects ------------------------------------------------------------- */

/** A communication context: topology, buffers, transports of one job. */
typedef struct epc_ctx epc_ctx_t;

/** Where ranks, nodes and devices are.  Created collectively; read-only. */
typedef struct epc_topo epc_topo_t;

/**
 * Detailed text of the last error.  With a context: the last error of a call
 * on that context.  With NULL: the last error raised by the calling thread
 * in any call.  Never NULL; "" when there was none.  Valid until the next
 * failing call on the same context / thread.
 */
EPC_EXPORT const char *epc_last_error(const epc_ctx_t *ctx);

/* --- Params-struct convention, shown on the context parameters ----------- */

typedef enum epc_dtype {
    EPC_DTYPE_DEFAULT = 0, /* bf16 */
    EPC_DTYPE_BF16 = 1,
    EPC_DTYPE_FP16 = 2,
    EPC_DTYPE_FP32 = 3
} epc_dtype_t;

/** What the library prints on stderr (the values of EPC_LOG_LEVEL). */
typedef enum epc_log_level {
    EPC_LOG_DEFAULT = 0, /* params: keep EPC_LOG_LEVEL (whose default is warn) */
    EPC_LOG_OFF = 1,     /* nothing: statuses and epc_last_error() still say all */
    EPC_LOG_ERROR = 2,
    EPC_LOG_WARN = 3,
    EPC_LOG_INFO = 4,
    EPC_LOG_DEBUG = 5
} epc_log_level_t;

typedef enum epc_transport {
    EPC_TRANSPORT_DEFAULT = 0, /* EPC_TRANSPORT, else auto */
    EPC_TRANSPORT_MPI = 1,     /* MPI point-to-point */
    EPC_TRANSPORT_OFI = 2,     /* libfabric RDM endpoint */
    EPC_TRANSPORT_AUTO = 3     /* ofi with a hardware provider, else mpi */
} epc_transport_t;

/* Who advances requests in flight (docs/API.md, "Progress"). */
typedef enum epc_progress {
    EPC_PROGRESS_DEFAULT = 0, /* EPC_PROGRESS, whose default is caller */
    EPC_PROGRESS_CALLER = 1,  /* the caller's calls; MPI any thread level */
    EPC_PROGRESS_THREAD = 2   /* also a thread of the context's: needs
                                 MPI_THREAD_MULTIPLE (else UNSUPPORTED) */
} epc_progress_t;

/** Job-wide parameters of a context (EPC_CTX_PARAMS_INIT; 0/NULL: default).
 * New fields are only appended; `size` says which the caller knows. */
typedef struct epc_ctx_params {
    size_t size;               /* sizeof(epc_ctx_params_t), set by the INIT */
    int num_experts;           /* E, across the whole job (required; a
                                  multiple of the number of ranks) */
    int hidden;                /* elements per token row (required) */
    epc_dtype_t dtype;         /* element type of token rows; 0: bf16 */
    int max_tokens_per_rank;   /* upper bound on tokens per call; 0: 8192 */
    int max_topk;              /* upper bound on experts per token; 0: min(E, 8) */
    epc_transport_t transport; /* inter-node transport; 0: EPC_TRANSPORT */
    const char *ofi_provider;  /* libfabric provider, e.g. "tcp"; NULL:
                                  EPC_OFI_PROVIDER, else automatic */
    int ranks_per_node;        /* virtual nodes; 0: EPC_RANKS_PER_NODE */
    int timeout_ms;            /* deadline of any wait; 0: EPC_TIMEOUT_MS */
    /* Added in 0.2 (a size up to timeout_ms, the 0.1 layout, is accepted):
     * the library's log level from this creation on.  Process-wide, like
     * EPC_LOG_LEVEL, which it overrides; EPC_LOG_OFF silences the library
     * entirely.  0: keep EPC_LOG_LEVEL. */
    epc_log_level_t log_level;
    epc_progress_t progress; /* added in 0.3 (0.2's layout ends before it) */
} epc_ctx_params_t;

#ifdef __cplusplus
} /* extern "C" */
/* C++ has no compound literals: value-initialise, then set the size. */
template <typename T> static inline T epc_params_init_(void)
{
    T p = T();
    p.size = sizeof(T);
    return p;
}
#define EPC_PARAMS_INIT_(type) (epc_params_init_<type>())
extern "C" {
#else
#define EPC_PARAMS_INIT_(type) ((type){.size = sizeof(type)})
#endif

#define EPC_CTX_PARAMS_INIT EPC_PARAMS_INIT_(epc_ctx_params_t)

/**
 * Creates a context over comm (collective): topology (virtual nodes when
 * asked), each node's shared regions, the inter-node transport; buffers
 * start empty and grow with the traffic (high-water mark; epc_ctx_warmup
 * sizes them ahead).
 *  EPC_ERR_INVALID_ARG  a NULL pointer, an unknown params->size, a missing
 *                       or out-of-range field, an invalid EPC_* value
 *  EPC_ERR_MISMATCH     ranks passed different job-wide params (the text
 *                       names the field)
 *  EPC_ERR_UNSUPPORTED  transport ofi asked in a build without libfabric;
 *                       the progress thread without MPI_THREAD_MULTIPLE
 *  EPC_ERR_TRANSPORT    MPI or libfabric failed (their message included)
 *  EPC_ERR_PEER_FAILED  another rank failed (the text names it and why)
 *  EPC_ERR_TOPOLOGY     hwloc failed
 *  EPC_ERR_TIMEOUT      a rank did not call it within the timeout (not
 *                       agreed: the silent rank may never come)
 */
EPC_EXPORT epc_status_t epc_ctx_create(MPI_Comm comm, const epc_ctx_params_t *params,
                                       epc_ctx_t **ctx_p);

/** epc_ctx_create over the communicator of Fortran handle *comm (MPI_Comm_c2f,
 * mpi4py's py2f()), or MPI_COMM_WORLD when comm is NULL, for bindings; also
 * EPC_ERR_INVALID_ARG for a handle of no communicator. */
EPC_EXPORT epc_status_t epc_ctx_create_f(const MPI_Fint *comm, const epc_ctx_params_t *params,
                                         epc_ctx_t **ctx_p);

/** Frees the context (collective; NULL accepted; local, waiting for no one,
 * after a timeout, transport failure or abort).  EPC_ERR_INVALID_ARG: not a
 * live context; EPC_ERR_TIMEOUT / EPC_ERR_PEER_FAILED: a rank did not take
 * part in time / aborted meanwhile (freed on this rank anyway). */
EPC_EXPORT epc_status_t epc_ctx_destroy(epc_ctx_t *ctx);

/**
 * Fails fast (docs/API.md): local (waits at most min(1 s, the timeout) for
 * its messages to leave); every peer in or entering a collective call on the
 * context gets EPC_ERR_PEER_FAILED, "rank R aborted the context: reason",
 * within milliseconds; this rank's later calls get EPC_ERR_INVALID_ARG, only
 * epc_ctx_destroy (local) remains.  Timeouts and transport failures do the
 * same.  reason: one line, NULL for "no reason given", cut at 511 bytes.
 * Repeated: EPC_OK, peers told once.  From the context's thread, or any
 * under MPI_THREAD_MULTIPLE.
 *  EPC_ERR_INVALID_ARG  ctx not a live context.
 */
EPC_EXPORT epc_status_t epc_ctx_abort(epc_ctx_t *ctx, const char *reason);

/** The context's topology (owned by the context).  EPC_ERR_INVALID_ARG: ctx
 * not a live context, topo NULL. */
EPC_EXPORT epc_status_t epc_ctx_topo(const epc_ctx_t *ctx, const epc_topo_t **topo);

/** How two ranks are connected, nearest first. */
typedef enum epc_link_class {
    EPC_LINK_SELF = 0,      /* the same rank */
    EPC_LINK_SAME_NUMA = 1, /* same node, both ranks' CPUs in one NUMA node */
    EPC_LINK_SAME_NODE = 2, /* same node (shared memory) */
    EPC_LINK_OTHER_NODE = 3 /* different nodes: the network (also between
                               virtual nodes of one machine) */
} epc_link_class_t;

#define EPC_LINK_CLASS_COUNT 4 /* the classes above: the size of arrays by class */

/** Constant name of a link class: "self", "numa", "node", "net". */
EPC_EXPORT const char *epc_link_class_name(epc_link_class_t cls);

/** Traffic and memory of one rank's context since its creation. */
typedef struct epc_ctx_stats {
    size_t size;                               /* EPC_CTX_STATS_INIT */
    uint64_t bytes_sent[EPC_LINK_CLASS_COUNT]; /* indexed by epc_link_class_t */
    uint64_t bytes_recv[EPC_LINK_CLASS_COUNT];
    uint64_t shm_bytes;            /* shared-memory receive region held */
    uint64_t net_bytes;            /* transport regions and private buffers held */
    uint64_t shm_grows, net_grows; /* times each grew */
    const char *transport;         /* "mpi" or "ofi" */
    const char *provider;          /* libfabric provider ("" for mpi) */
    const char *transport_reason;  /* why this transport was chosen */
    /* added in 0.10: how the low-latency mode moves its messages between
     * nodes: "write" (ofi: fi_writedata into the receiver's registered
     * region, remote CQ data as the signal), "send" (two-sided messages
     * into receives posted ahead), "" (mode not enabled, or one node) */
    const char *ll_transfer;
} epc_ctx_stats_t;
#define EPC_CTX_STATS_INIT EPC_PARAMS_INIT_(epc_ctx_stats_t)

/** Local.  EPC_ERR_INVALID_ARG: ctx not a live context, stats NULL or of
 * unknown size. */
EPC_EXPORT epc_status_t epc_ctx_stats(const epc_ctx_t *ctx, epc_ctx_stats_t *stats);

/* --- Dispatch and combine ------------------------------------------------ */

/** What a dispatch leaves for its combine (layout, counts); reusable. */
typedef struct epc_handle epc_handle_t;

/** What a dispatch moves (docs/FP8.md).  FP8: e4m3 with one fp32 scale
 * per 128 elements of a row (x ~= q x scale; hidden a multiple of 128),
 * quantised once per token at its source. */
typedef enum epc_payload {
    EPC_PAYLOAD_NATIVE = 0,    /* rows in the context's dtype */
    EPC_PAYLOAD_FP8 = 1,       /* x in the context's dtype, cast by dispatch */
    EPC_PAYLOAD_FP8_UE8M0 = 2, /* the same, scales rounded up to powers of 2 */
    EPC_PAYLOAD_FP8_GIVEN = 3  /* x already e4m3, with args->x_scales */
} epc_payload_t;

typedef enum epc_algo {
    EPC_ALGO_DEFAULT = 0, /* EPC_ALGO, else hier */
    EPC_ALGO_HIER = 1,    /* one network copy per (token, node), forwarded in the node */
    EPC_ALGO_FLAT = 2     /* per-rank copies by MPI_Alltoallv (the baseline) */
} epc_algo_t;

typedef struct epc_dispatch_args {
    size_t size;               /* EPC_DISPATCH_ARGS_INIT */
    const void *x;             /* [T x hidden] rows in the context's dtype */
    int num_tokens;            /* T on this rank (may differ per rank, may be 0) */
    int topk;                  /* k, 1 <= k <= the context's max_topk */
    const int32_t *topk_idx;   /* [T x k] expert ids, -1 = none */
    const float *topk_weights; /* [T x k]; NULL: every weight 1 */
    int expert_alignment;      /* pad each expert's group to a multiple; 0 = 1 */
    epc_algo_t algo;           /* must be the same on every rank */
    /* Added in 0.4 (0.3's layout ends at algo): the rows' wire format,
     * the same on every rank (docs/FP8.md).  EPC_PAYLOAD_FP8_GIVEN: x is
     * [T x hidden] e4m3 bytes and x_scales [T x hidden/128] their scales. */
    epc_payload_t payload;
    const float *x_scales;
} epc_dispatch_args_t;

#define EPC_DISPATCH_ARGS_INIT EPC_PARAMS_INIT_(epc_dispatch_args_t)

/**
 * The rows this rank received, expert-major (local expert, then source
 * rank, then source token), each expert's group padded to the alignment
 * with zero rows of src_rank -1; a token that chose two of this rank's
 * experts appears in both.  Owned by the context, valid until the second
 * dispatch after this one starts (dispatches alternate two buffer sets).
 */
typedef struct epc_dispatch_out {
    size_t size;                 /* EPC_DISPATCH_OUT_INIT */
    void *rows;                  /* [num_rows x hidden] in the context's dtype */
    int num_rows;                /* including padding */
    int num_local_experts;       /* E / ranks */
    const int *expert_begin;     /* [num_local_experts + 1]: group e is rows
                                    expert_begin[e] .. expert_begin[e+1]-1 */
    const int *expert_count;     /* [num_local_experts]: real rows of each group */
    const int32_t *src_rank;     /* [num_rows], -1 for padding */
    const int32_t *src_token;    /* [num_rows] */
    const int32_t *local_expert; /* [num_rows] */
    const float *weight;         /* [num_rows] (0 for padding) */
    /* Added in 0.4: row r starts at rows + r x row_stride bytes (hidden x
     * the element size, or for FP8 hidden + hidden/32: its scales follow
     * it, at scales + r x row_stride bytes; scales NULL otherwise). */
    size_t row_stride;
    const float *scales;
} epc_dispatch_out_t;
#define EPC_DISPATCH_OUT_INIT EPC_PARAMS_INIT_(epc_dispatch_out_t)

/**
 * Moves each token to the ranks owning its experts (collective over the
 * context).  *handle: NULL to get a new one, or a handle of an earlier
 * dispatch on this context with the same topk_idx (checked) to skip the
 * count exchange (cached mode).  Validation results travel with the counts:
 * when one rank's input is bad it returns EPC_ERR_INVALID_ARG or
 * EPC_ERR_CAPACITY and every other rank EPC_ERR_PEER_FAILED naming it;
 * nothing is written to out or *handle then.
 *  EPC_ERR_INVALID_ARG  args or out NULL or of unknown size, num_tokens < 0,
 *                       topk outside [1, max_topk], x/topk_idx NULL with tokens,
 *                       an expert id outside [-1, E) or repeated in a token,
 *                       expert_alignment outside [0, 65536], a cached
 *                       *handle whose topk_idx (or payload kind) differ;
 *                       payload unknown, FP8 with hidden not a multiple of
 *                       128, FP8_GIVEN with x_scales NULL and tokens
 *  EPC_ERR_CAPACITY     num_tokens > max_tokens_per_rank, or a rank would
 *                       receive more than 2^30 rows
 *  EPC_ERR_MISMATCH     ranks passed different topk, alignment, algo, or
 *                       payload kind (native against FP8)
 *  EPC_ERR_UNSUPPORTED  hier on nodes of unequal size
 *  EPC_ERR_PEER_FAILED  another rank's input failed (the lowest such rank,
 *                       named with its reason), or a peer aborted the context
 *  EPC_ERR_INTERNAL     a peer's counts or records failed the checks (named),
 *                       or a row would land outside its shared region
 *  EPC_ERR_TIMEOUT, EPC_ERR_TRANSPORT, EPC_ERR_NO_MEMORY: see the rules
 *                       under the status list
 */
EPC_EXPORT epc_status_t epc_dispatch(epc_ctx_t *ctx, const epc_dispatch_args_t *args,
                                     epc_dispatch_out_t *out, epc_handle_t **handle);

/** A context-owned [num_rows x hidden] buffer (the context's dtype) for the
 * handle's expert outputs, valid until the second dispatch after the
 * handle's or the next request for its buffer set.  Local.  For a hier
 * handle it lies in the node's shared memory where hier combine reads the
 * outputs, so they are not copied there again (with FP8 rows too).
 * EPC_ERR_INVALID_ARG: a NULL pointer, a foreign or overwritten handle. */
EPC_EXPORT epc_status_t epc_combine_buffer(epc_ctx_t *ctx, epc_handle_t *handle, void **buf);

/** Pays a fresh context's first-call costs ahead (collective): a dispatch
 * and a combine through each of the two buffer sets, with algo (0: the
 * context's) on `tokens` synthetic tokens per rank (zero rows; every
 * expert an equal share, max_topk per token).  The shared regions, the
 * transport's buffers and the scratch are then sized, with 1/8 headroom,
 * and populated (every rank also writes each page of the node's regions
 * once), and the connections open: a later call of up to that many tokens
 * whose tokens reach no more ranks and nodes, and whose per-rank load is
 * within the headroom, grows nothing and pays none of those costs
 * (epc_bench --prewarm shows what is left of its first call).  Counts as
 * two dispatches (handles of earlier ones go stale) and in the statistics.
 *  EPC_ERR_INVALID_ARG  ctx not a live context, algo unknown, tokens < 0
 *  EPC_ERR_CAPACITY     tokens > max_tokens_per_rank
 *  EPC_ERR_PEER_FAILED  another rank's arguments failed (named)
 *  and any status of epc_dispatch and epc_combine. */
EPC_EXPORT epc_status_t epc_ctx_warmup(epc_ctx_t *ctx, epc_algo_t algo, int tokens);

/** How combine's node sums travel.  FP32, the default: exact (y is the
 * fp32 sum, rounded once).  BF16: half hier's bytes between nodes; each
 * node's sum of a token's outputs is rounded to bf16 (nearest even) as it
 * leaves its node, the source's own node's too, sums still in fp32 in the
 * same fixed order, so the result is as reproducible and as identical
 * between hier and flat (flat, which moves every output row as it is,
 * rounds the same sums at the source); it differs from FP32's by at most
 * 2^-8 x the sum of |w x out| over the token's rows, plus the fp32 sums'
 * own rounding, before y's. */
typedef enum epc_wire { EPC_WIRE_FP32 = 0, EPC_WIRE_BF16 = 1 } epc_wire_t;

/** The order of combine's sums.  NODES, the default: a token's outputs are
 * summed per node by logical expert and the node sums added (below), so
 * hier moves one row per (token, node) between nodes.  LOGICAL: one sum
 * over all of the token's outputs by logical expert, as the low-latency
 * combine sums: every output row goes back to its source as it is (flat's
 * exchange, whichever algorithm dispatched), so every placement agreed on
 * the context, replicas on any node included, gives the bits of none, at
 * the bytes of one row per (token, expert). */
typedef enum epc_sum_order { EPC_ORDER_NODES = 0, EPC_ORDER_LOGICAL = 1 } epc_sum_order_t;

typedef struct epc_combine_args {
    size_t size;            /* EPC_COMBINE_ARGS_INIT */
    const void *expert_out; /* [num_rows x hidden], the dispatch's row order;
                               out.rows itself (outputs written over the
                               received rows, native payload) on every rank:
                               hier reads them in place, faster
                               (docs/COLLECTIVES.md); they stay the library's
                               to read until this combine returns */
    void *y;                /* [T x hidden] out, in the context's dtype */
    int unweighted;         /* 1: plain sum (DeepEP's combine) */
    /* Added in 0.3 (0.2's layout ends here): with scalar_channel 1 on every
     * rank, topk_scalars[t x k + j] = row_scalars of the row token t sent to
     * its j-th expert (0 for -1): a copy (docs/COLLECTIVES.md). */
    int scalar_channel;
    const float *row_scalars; /* [num_rows], the dispatch's row order (padding ignored) */
    float *topk_scalars;      /* [T x k] out */
    /* Added in 0.4 (0.3's layout ends at topk_scalars): the node sums'
     * wire, the same on every rank (epc_wire_t; docs/FP8.md). */
    epc_wire_t wire;
    /* Added in 0.9 (0.8's layout ends at wire): the summation order, the
     * same on every rank (epc_sum_order_t). */
    epc_sum_order_t order;
} epc_combine_args_t;

#define EPC_COMBINE_ARGS_INIT EPC_PARAMS_INIT_(epc_combine_args_t)

/**
 * Brings the expert outputs back (collective, the handle's algorithm):
 * y[t] = sum over t's experts of weight x output in fp32, in a fixed order:
 * t's experts grouped by the node they are on, each group summed by
 * logical expert (the slot id without a placement agreed on the context),
 * the groups' sums added in the order of their lowest (docs/COLLECTIVES.md;
 * args.order EPC_ORDER_LOGICAL: one sum by logical expert).
 * So bitwise reproducible, the same for both algorithms, and the same for
 * any two placements that keep the same logical experts together on a node
 * (replicas within a node, whichever is chosen; the nodes' blocks permuted:
 * the planner's plans with one group per node and no spill replicas give
 * the bits of none, once agreed on the context);
 * zeros for tokens with no expert.  EPC_ERR_INVALID_ARG (args
 * NULL or of unknown size; a handle NULL, foreign or overwritten by the
 * second dispatch after it; expert_out/y NULL with rows/tokens; under
 * scalar_channel row_scalars/topk_scalars so; wire or order unknown;
 * EPC_WIRE_BF16 with EPC_ORDER_LOGICAL, which has no node sums to round),
 * agreed across ranks; EPC_ERR_MISMATCH: ranks disagree on scalar_channel,
 * wire or order; EPC_ERR_INTERNAL: a shared region out of range; EPC_ERR_PEER_FAILED,
 * EPC_ERR_TIMEOUT, EPC_ERR_TRANSPORT, EPC_ERR_NO_MEMORY as the rules say.
 * y and topk_scalars are written only on EPC_OK.
 */
EPC_EXPORT epc_status_t epc_combine(epc_ctx_t *ctx, epc_handle_t *handle,
                                    const epc_combine_args_t *args);

/**
 * FP8 dispatch's cast, for callers that quantise or dequantise themselves
 * (docs/FP8.md).  Per row and 128-element block: amax = max |x| over the
 * finite elements, at least 1e-4; scale = amax / 448 (ue8m0: the power of
 * two at or above it); q = x x (448 / amax) (ue8m0: x / scale) in e4m3,
 * rounded to nearest even, saturated at +-448 (+-Inf too); NaN stays NaN
 * (0x7f, signed).  Row r's
 * q at q + r x q_stride bytes, its scales at scales + r x s_stride bytes.
 * EPC_ERR_INVALID_ARG: rows < 0, hidden not a positive multiple of 128,
 * an unknown dtype, a NULL pointer with rows, a stride below its row.
 */
EPC_EXPORT epc_status_t epc_fp8_quantize(const void *x, epc_dtype_t dtype, int rows, int hidden,
                                         int ue8m0, uint8_t *q, size_t q_stride, float *scales,
                                         size_t s_stride);

/** y [rows x hidden] in dtype = q x scale (rounded to nearest even); the
 * layout and errors of epc_fp8_quantize. */
EPC_EXPORT epc_status_t epc_fp8_dequantize(const uint8_t *q, size_t q_stride, const float *scales,
                                           size_t s_stride, int rows, int hidden, epc_dtype_t dtype,
                                           void *y);

/* --- Nonblocking dispatch and combine ------------------------------------ */

/**
 * A dispatch or combine in flight (docs/API.md, "Nonblocking calls"); the
 * blocking calls are a start and a wait, and every rank starts the same
 * operations in the same order.  Data moves in epc_test, epc_wait and the
 * starts (each advances all the context's requests), and with
 * EPC_PROGRESS_THREAD in the context's thread too.  At most
 * EPC_MAX_REQUESTS_PER_CTX requests held, one dispatch and one combine in
 * flight (else the start returns EPC_ERR_CAPACITY, posting nothing); a
 * handle stays valid until the second dispatch after it starts.  While in
 * flight inputs must not change, and out, *handle, rows and y not be read.
 */
typedef struct epc_request epc_request_t;

#define EPC_MAX_REQUESTS_PER_CTX 2

/** Starts epc_dispatch (same arguments, checks and results).  Its failures
 * come from epc_test/epc_wait with the blocking call's status and text.
 * Returned here, nothing posted: as epc_dispatch for a context not live,
 * aborted, failed (EPC_ERR_TRANSPORT) or whose peer aborted; req NULL
 * (EPC_ERR_INVALID_ARG); EPC_ERR_CAPACITY (the limits); EPC_ERR_NO_MEMORY. */
EPC_EXPORT epc_status_t epc_dispatch_start(epc_ctx_t *ctx, const epc_dispatch_args_t *args,
                                           epc_dispatch_out_t *out, epc_handle_t **handle,
                                           epc_request_t **req);

/** Starts epc_combine; as epc_dispatch_start. */
EPC_EXPORT epc_status_t epc_combine_start(epc_ctx_t *ctx, epc_handle_t *handle,
                                          const epc_combine_args_t *args, epc_request_t **req);

/** Advances every request of req's context without waiting: *done = 0
 * (EPC_OK) while req is in flight, else *done = 1 and req's final status
 * (the same each time).  EPC_ERR_INVALID_ARG: req not live, done NULL. */
EPC_EXPORT epc_status_t epc_test(epc_request_t *req, int *done);

/** Advances requests until req completes (each wait bounded by the
 * context's timeout); returns its final status.  EPC_ERR_INVALID_ARG: req
 * not a live request. */
EPC_EXPORT epc_status_t epc_wait(epc_request_t *req);

/** Frees a request (local; NULL accepted).  EPC_ERR_INVALID_ARG: req not
 * live, or in flight on a working context (after a failure or abort it is
 * abandoned).  epc_ctx_destroy frees the context's requests; one in flight
 * is abandoned and the peers told, as after a failure. */
EPC_EXPORT epc_status_t epc_request_free(epc_request_t *req);

/** Frees a handle (local).  NULL is accepted. */
EPC_EXPORT void epc_handle_destroy(epc_handle_t *handle);

/* --- Low-latency mode (decoding; docs/LOW_LATENCY.md) ---------------------- */

/**
 * Buffers sized for max_tokens tokens per rank per call, fixed once
 * (epc_ll_enable); no count round before data moves: a call sends at most
 * one message (inter-node) or one block of rows and a flag (same node) to
 * each peer, carrying its own counts, and returns once everything is
 * handed over; waiting on the request (the hook) receives.  Calls
 * alternate two buffer sets, so the dispatch of microbatch i+1 can be in
 * flight while microbatch i is in its experts.  Every rank makes the same
 * low-latency calls in the same order; a dispatch's combine, if any, is
 * completed before the dispatch two after it starts, and a dispatch with
 * no combine is completed on every rank before any rank starts the
 * dispatch two after it (nothing else tells a peer it was read).  Between
 * nodes a message is one fi_writedata into the receiver's registered
 * region over ofi where the provider offers it (EPC_OFI_WRITE), else a
 * two-sided message; epc_ctx_stats_t.ll_transfer says which.
 */

/** Bytes per rank epc_ll_enable(ctx, max_tokens) reserves (its node
 * region, shared, and the transport's regions; pages are committed only
 * as rows land).  Local.  EPC_ERR_INVALID_ARG: ctx not live, bytes NULL,
 * max_tokens outside [1, 65536]. */
EPC_EXPORT epc_status_t epc_ll_buffer_size(const epc_ctx_t *ctx, int max_tokens, size_t *bytes);

/** Fixes the low-latency mode of ctx at max_tokens tokens per rank per
 * call (DeepEP suggests at most 256 for decoding) and reserves its
 * buffers (collective, once per context).  EPC_ERR_INVALID_ARG: ctx not
 * live, max_tokens outside [1, 65536], already enabled (a rank passing
 * one gets it, every other rank EPC_ERR_PEER_FAILED naming it);
 * EPC_ERR_MISMATCH: ranks passed different max_tokens; EPC_ERR_CAPACITY:
 * a message would not fit the transport's largest single message;
 * EPC_ERR_NO_MEMORY; as epc_ctx_create for the shared regions and the
 * transport (EPC_ERR_TIMEOUT, EPC_ERR_TRANSPORT). */
EPC_EXPORT epc_status_t epc_ll_enable(epc_ctx_t *ctx, int max_tokens);

typedef struct epc_ll_dispatch_args {
    size_t size;             /* EPC_LL_DISPATCH_ARGS_INIT */
    const void *x;           /* [T x hidden] in the context's dtype (FP8_GIVEN: e4m3) */
    int num_tokens;          /* T: 0 .. max_tokens (may differ per rank) */
    int topk;                /* k, 1 <= k <= max_topk (may differ per rank) */
    const int32_t *topk_idx; /* [T x k] expert ids, -1 = none */
    epc_payload_t payload;   /* NATIVE; FP8 (cast once per token here); FP8_GIVEN */
    const float *x_scales;   /* FP8_GIVEN: [T x hidden/128] */
} epc_ll_dispatch_args_t;
#define EPC_LL_DISPATCH_ARGS_INIT EPC_PARAMS_INIT_(epc_ll_dispatch_args_t)

/**
 * What a low-latency dispatch delivered to this rank (filled when its
 * request completes; owned by the context, valid until this rank starts
 * its combine, after which peers may already send the dispatch two after
 * it into the same set; uncombined, until that dispatch).  DeepEP's low-latency
 * layout: local expert e's block holds slots = ranks x max_tokens rows;
 * the rows source rank s sent it are slots s x max_tokens ..
 * + src_count[e x ranks + s] - 1, by source token ascending (so every
 * position is fixed by the source alone and the same every run); other
 * slots are not written.  Row (e, i) starts at rows + (e x slots + i) x
 * row_stride bytes (FP8: hidden e4m3 bytes, then its hidden/128 scales,
 * at scales + the same offset).
 */
typedef struct epc_ll_out {
    size_t size;              /* EPC_LL_OUT_INIT */
    void *rows;               /* [num_local_experts x slots] rows */
    const float *scales;      /* FP8: the first row's scales, else NULL */
    size_t row_stride;        /* bytes from one slot to the next */
    int num_local_experts;    /* E / ranks */
    int slots;                /* ranks x max_tokens */
    int max_tokens;           /* the per-source block of each expert */
    const int *count;         /* [num_local_experts]: rows received */
    const int *src_count;     /* [num_local_experts x ranks] */
    const int32_t *src_token; /* [num_local_experts x slots]: where a row is */
    uint64_t call;            /* this dispatch (for epc_ll_combine) */
} epc_ll_out_t;
#define EPC_LL_OUT_INIT EPC_PARAMS_INIT_(epc_ll_out_t)

/** Starts a low-latency dispatch (collective, nonblocking): returns once
 * every row is stored in a same-node peer's region or handed to the
 * transport; epc_wait/epc_test on *req receives and fills out.  A bad
 * argument is found here, before anything moves, and still sent as this
 * rank's verdict: the request then completes with the error on this rank
 * (EPC_ERR_INVALID_ARG: args/out NULL or of unknown size, num_tokens < 0,
 * topk outside [1, min(max_topk, 256)], x/topk_idx NULL with tokens, an
 * expert id outside [-1, E) or repeated in a token, payload unknown, FP8
 * with hidden not a multiple of 128, FP8_GIVEN without x_scales;
 * EPC_ERR_CAPACITY: num_tokens > max_tokens) and with EPC_ERR_PEER_FAILED
 * naming this rank and why on every other; ranks passing different
 * payload kinds (native, FP8) all get EPC_ERR_MISMATCH.  Returned
 * here, nothing posted: ctx not live, aborted or failed, req NULL, the
 * mode not enabled (EPC_ERR_INVALID_ARG); the combine of the dispatch two
 * before in flight, or the context's requests all held (EPC_ERR_CAPACITY).  The
 * wait: EPC_ERR_TIMEOUT naming the rank it waited for, EPC_ERR_INTERNAL
 * for a peer's message that fails the checks, the rules under the status
 * list. */
EPC_EXPORT epc_status_t epc_ll_dispatch(epc_ctx_t *ctx, const epc_ll_dispatch_args_t *args,
                                        epc_ll_out_t *out, epc_request_t **req);

/** The context-owned [num_local_experts x slots x hidden] buffer (the
 * context's dtype, in shared memory) for the expert outputs of the
 * dispatch that filled `dispatched`: outputs written there go to
 * same-node sources with no copy.  Local.  EPC_ERR_INVALID_ARG: a NULL
 * pointer, mode not enabled, `dispatched` not this context's latest
 * complete dispatch of its buffer set. */
EPC_EXPORT epc_status_t epc_ll_combine_buffer(epc_ctx_t *ctx, const epc_ll_out_t *dispatched,
                                              void **buf);

typedef struct epc_ll_combine_args {
    size_t size;                    /* EPC_LL_COMBINE_ARGS_INIT */
    const epc_ll_out_t *dispatched; /* the out of the dispatch to combine */
    const void *expert_out;         /* rows in dispatched's positions, the context's
                                     * dtype (epc_ll_combine_buffer's: no copy) */
    const float *topk_weights;      /* [T x k] of the dispatch's tokens; NULL: 1 */
    void *y;                        /* [T x hidden]: written when the request completes */
} epc_ll_combine_args_t;
#define EPC_LL_COMBINE_ARGS_INIT EPC_PARAMS_INIT_(epc_ll_combine_args_t)

/** Starts the combine of a low-latency dispatch (collective,
 * nonblocking): y[t] = sum over t's experts, by expert id ascending, of
 * weight x output, in fp32 from zero (one fixed order: bitwise the same
 * every run), rounded once to the dtype; zeros for a token with no
 * expert.  Each output row goes back to its source once (same node: read
 * in place by the source; else in one message per source).  Errors as
 * epc_ll_dispatch: a bad argument here (EPC_ERR_INVALID_ARG: args NULL
 * or of unknown size, dispatched not this rank's latest complete dispatch
 * of its set or already combined, expert_out NULL with rows, y NULL with
 * tokens) completes the request with it here and EPC_ERR_PEER_FAILED
 * naming this rank elsewhere (told on the buffer set of the oldest
 * dispatch waiting for its combine; peers combining another time out
 * naming this rank); returned here, nothing posted: as epc_ll_dispatch,
 * and a combine of the same dispatch in flight (EPC_ERR_CAPACITY). */
EPC_EXPORT epc_status_t epc_ll_combine(epc_ctx_t *ctx, const epc_ll_combine_args_t *args,
                                       epc_request_t **req);

/** Bytes one rank moved in the last dispatch and combine, and in total. */
typedef struct epc_coll_bytes {
    uint64_t payload_inter, payload_intra; /* token rows / expert outputs, node sums */
    uint64_t meta_inter, meta_intra;       /* counts, indices, weights */
} epc_coll_bytes_t;

typedef struct epc_coll_stats {
    size_t size; /* EPC_COLL_STATS_INIT */
    epc_coll_bytes_t last_dispatch, last_combine, total;
    uint64_t dispatches, combines;
} epc_coll_stats_t;
#define EPC_COLL_STATS_INIT EPC_PARAMS_INIT_(epc_coll_stats_t)

/** Local.  EPC_ERR_INVALID_ARG: ctx not a live context, stats NULL or of
 * unknown size. */
EPC_EXPORT epc_status_t epc_coll_stats(const epc_ctx_t *ctx, epc_coll_stats_t *stats);

/** The two data paths of a context, for epc_ctx_pair_exchange. */
typedef enum epc_path {
    EPC_PATH_SHM = 0, /* writes into the node peer's shared region + fence */
    EPC_PATH_NET = 1  /* the inter-node transport (mpi or ofi) */
} epc_path_t;

/**
 * A transport benchmark primitive (collective): ranks pair up as (r, r^1)
 * and send each other `bytes` at once over `path`, from and into the
 * context's own buffers (grown as needed).  EPC_PATH_SHM needs every pair
 * on one node.  EPC_ERR_INVALID_ARG (odd rank count, a pair across nodes on
 * the shm path, bytes > 2^31), agreed on every rank; EPC_ERR_TIMEOUT,
 * EPC_ERR_TRANSPORT, EPC_ERR_NO_MEMORY as the rules say.
 */
EPC_EXPORT epc_status_t epc_ctx_pair_exchange(epc_ctx_t *ctx, epc_path_t path, size_t bytes);

/**
 * What EPC_TRANSPORT / auto would choose on this machine, and why, without
 * creating a context (for epc_info).  why gets one line.  EPC_ERR_INVALID_ARG:
 * why or chosen NULL, len 0, an unknown requested value, an invalid EPC_TRANSPORT;
 * EPC_ERR_UNSUPPORTED: ofi requested in a build without libfabric.
 */
EPC_EXPORT epc_status_t epc_transport_choice(epc_transport_t requested, char *why, size_t len,
                                             epc_transport_t *chosen);

/* --- Configuration: EPC_* environment variables -------------------------- */

/** One configuration variable, as epc_info prints it.  Strings are owned by
 * the library and constant for the life of the process. */
typedef struct epc_config_var {
    size_t size;               /* EPC_CONFIG_VAR_INIT */
    const char *name;          /* "EPC_LOG_LEVEL" */
    const char *type;          /* "enum", "int", "float" or "string" */
    const char *allowed;       /* "error|warn|info|debug", "0..65536", "" */
    const char *default_value; /* built-in default, as text */
    const char *value;         /* the value in force (raw text if invalid) */
    const char *help;          /* one paragraph of help */
    int from_env;              /* 1: set in the environment */
    int valid;                 /* 0: the environment value was rejected */
} epc_config_var_t;
#define EPC_CONFIG_VAR_INIT EPC_PARAMS_INIT_(epc_config_var_t)

/** Number of EPC_* variables the library knows. */
EPC_EXPORT int epc_config_count(void);

/**
 * Describes variable `index` (0 <= index < epc_config_count()).
 * EPC_ERR_INVALID_ARG: index out of range, var NULL or of unknown size.
 */
EPC_EXPORT epc_status_t epc_config_get_var(int index, epc_config_var_t *var);

/** Checks every EPC_* variable (read once, when first needed):
 * EPC_ERR_INVALID_ARG naming the first variable and value rejected. */
EPC_EXPORT epc_status_t epc_config_check(void);

/* --- Build information --------------------------------------------------- */

/** How the library was built and what it runs against.  Library-owned. */
typedef struct epc_build_info {
    const char *version;        /* epcomm version */
    const char *configure_args; /* arguments given to configure */
    const char *compiler;       /* C compiler */
    const char *mpi_compiled;   /* MPI implementation and version at build */
    const char *hwloc_compiled; /* hwloc API version at build */
    const char *hwloc_runtime;  /* hwloc API version of the loaded library */
    int have_ofi;               /* 1: libfabric transport built in */
    const char *ofi_compiled;   /* libfabric API version at build, or "" */
    const char *ofi_runtime;    /* libfabric version loaded, or "" */
} epc_build_info_t;

/** Never NULL. */
EPC_EXPORT const epc_build_info_t *epc_get_build_info(void);

/* --- The ABI, described for bindings ------------------------------------- */

#define EPC_ABI_VERSION 10 /* libtool's current: when it changes, docs/API.md */

/** A row of epc_abi_table: a public struct (field "", offset 0, its sizeof)
 * or one of its fields (offset and size in bytes). */
typedef struct epc_abi_field {
    const char *type;  /* "epc_ctx_params_t" */
    const char *field; /* "num_experts", or "" for the struct itself */
    size_t offset, size;
} epc_abi_field_t;

/** Every public struct's layout as the library was compiled (constant), for
 * bindings (ctypes) to check their mirrors against; *count rows and the
 * library's EPC_ABI_VERSION in *abi_version (either may be NULL). */
EPC_EXPORT const epc_abi_field_t *epc_abi_table(int *count, int *abi_version);

/**
 * Writes the comma-separated names of the libfabric providers that resolve
 * at run time (honouring FI_PROVIDER and friends) into buf.
 * EPC_ERR_UNSUPPORTED: built --without-ofi.  EPC_ERR_CAPACITY: buflen too
 * small.  EPC_ERR_TRANSPORT: fi_getinfo failed.  EPC_ERR_INVALID_ARG: buf
 * NULL or buflen 0.
 */
EPC_EXPORT epc_status_t epc_ofi_providers(char *buf, size_t buflen);

/* --- Topology: rank-to-node map, virtual nodes, locality, bandwidth figures  */

typedef struct epc_topo_params {
    size_t size;            /* EPC_TOPO_PARAMS_INIT */
    int ranks_per_node;     /* virtual nodes of this many ranks; 0: EPC_RANKS_PER_NODE,
                               else the real nodes */
    const char *xml_path;   /* hwloc XML instead of discovery; NULL: EPC_TOPO_XML,
                               else hwloc's HWLOC_XMLFILE/HWLOC_SYNTHETIC, else this system */
    const char *hw_profile; /* bandwidth profile name; NULL: EPC_HW_PROFILE */
    double intra_bw_gbs;    /* > 0 overrides EPC_INTRA_BW_GBS and the profile */
    double inter_bw_gbs;    /* > 0 overrides EPC_INTER_BW_GBS and the profile */
} epc_topo_params_t;

#define EPC_TOPO_PARAMS_INIT EPC_PARAMS_INIT_(epc_topo_params_t)

/** One rank, as its node saw it.  Strings are owned by the topology. */
typedef struct epc_rank_info {
    size_t size;        /* EPC_RANK_INFO_INIT */
    int rank;           /* in the topology's communicator */
    int node;           /* node id: dense, ordered by lowest rank */
    int local_rank;     /* index among the ranks of its node */
    const char *host;   /* host name (MPI_Get_processor_name) */
    const char *cpuset; /* its CPUs, hwloc list syntax ("0-3") */
    int bound;          /* 1: bound to a subset of the machine's CPUs */
    int package;        /* package (socket) index, -1: spans several */
    int numa;           /* NUMA node index, -1: spans several */
    int cores;          /* cores its CPUs touch */
    const char *nics;   /* nearest network devices, comma-separated */
    const char *gpus;   /* nearest GPUs, comma-separated */
    const char *nic;    /* the NIC it should use ("" none) */
    const char *gpu;    /* the GPU it should use ("" none) */
} epc_rank_info_t;
#define EPC_RANK_INFO_INIT EPC_PARAMS_INIT_(epc_rank_info_t)

/** One node.  For virtual nodes the hardware fields describe the host. */
typedef struct epc_node_info {
    size_t size; /* EPC_NODE_INFO_INIT */
    int node;
    const char *host;
    int num_ranks, first_rank;
    int packages, numa_nodes, cores, pus;
    const char *nics; /* every NIC of the host */
    const char *gpus; /* every GPU of the host */
} epc_node_info_t;
#define EPC_NODE_INFO_INIT EPC_PARAMS_INIT_(epc_node_info_t)

/** Nominal bandwidths the planner and cost model use, with their origin. */
typedef struct epc_topo_bw {
    size_t size;              /* EPC_TOPO_BW_INIT */
    double intra_gbs;         /* per rank, inside a node */
    double inter_gbs;         /* per rank, across the network */
    const char *profile;      /* profile in force: "h800", ... */
    const char *intra_source; /* "profile h800", "EPC_INTRA_BW_GBS", "params" */
    const char *inter_source;
} epc_topo_bw_t;
#define EPC_TOPO_BW_INIT EPC_PARAMS_INIT_(epc_topo_bw_t)

/**
 * Discovers the topology of comm's ranks (collective over comm, failures
 * agreed as the rules say).  params may be NULL (all defaults).
 *  EPC_ERR_INVALID_ARG  comm is MPI_COMM_NULL, topo_p NULL, params->size
 *                       unknown, an unknown profile, an invalid EPC_* value,
 *                       or a virtual-node size that does not divide a node's
 *                       rank count (the text names the variable and counts)
 *  EPC_ERR_MISMATCH     ranks passed different ranks_per_node / bandwidths
 *  EPC_ERR_TOPOLOGY     hwloc could not load (on this rank)
 *  EPC_ERR_PEER_FAILED  another rank failed (the text names it and why)
 *  EPC_ERR_TRANSPORT    an MPI call failed
 *  EPC_ERR_TIMEOUT      a rank did not take part within EPC_TIMEOUT_MS
 */
EPC_EXPORT epc_status_t epc_topo_create(MPI_Comm comm, const epc_topo_params_t *params,
                                        epc_topo_t **topo_p);

/** Frees the topology (local, not collective).  NULL is accepted. */
EPC_EXPORT void epc_topo_destroy(epc_topo_t *topo);

/* Accessors: EPC_ERR_INVALID_ARG on a NULL or foreign pointer, a rank or
 * node out of range, a too small output array, an output struct of unknown
 * size. */
EPC_EXPORT epc_status_t epc_topo_num_ranks(const epc_topo_t *topo, int *num_ranks);
EPC_EXPORT epc_status_t epc_topo_my_rank(const epc_topo_t *topo, int *rank);
EPC_EXPORT epc_status_t epc_topo_num_nodes(const epc_topo_t *topo, int *num_nodes);
/** Ranks per node when every node has the same count, else 0 (uneven). */
EPC_EXPORT epc_status_t epc_topo_ranks_per_node(const epc_topo_t *topo, int *ranks_per_node);
EPC_EXPORT epc_status_t epc_topo_node_of(const epc_topo_t *topo, int rank, int *node);
EPC_EXPORT epc_status_t epc_topo_local_rank(const epc_topo_t *topo, int rank, int *local_rank);
EPC_EXPORT epc_status_t epc_topo_local_size(const epc_topo_t *topo, int node, int *local_size);
/** The ranks of `node`, in local-rank order, into ranks[0..capacity). */
EPC_EXPORT epc_status_t epc_topo_node_ranks(const epc_topo_t *topo, int node, int *ranks,
                                            int capacity, int *count);
EPC_EXPORT epc_status_t epc_topo_rank_info(const epc_topo_t *topo, int rank, epc_rank_info_t *info);
EPC_EXPORT epc_status_t epc_topo_node_info(const epc_topo_t *topo, int node, epc_node_info_t *info);
EPC_EXPORT epc_status_t epc_topo_link_class(const epc_topo_t *topo, int rank_a, int rank_b,
                                            epc_link_class_t *cls);
EPC_EXPORT epc_status_t epc_topo_bandwidth(const epc_topo_t *topo, epc_topo_bw_t *bw);
/**
 * Nominal intra-/inter-node GB/s per rank of a named profile ("h800",
 * "h100-ib", "gb200-nvl72", "cpu-eth"); see docs/TOPOLOGY.md.
 * EPC_ERR_INVALID_ARG for an unknown name or a NULL output.
 */
EPC_EXPORT epc_status_t epc_hw_profile(const char *name, double *intra_gbs, double *inter_gbs);

/** Where the hardware description came from: "this system", "xml PATH", ... */
EPC_EXPORT epc_status_t epc_topo_hw_source(const epc_topo_t *topo, const char **source);

/* ------------------------------------------------------------------------ */
/* Routing: node-limited top-k gate, dispatch layout, statistics, cost      */
/* Pure computation: no MPI needed.  See docs/ROUTING.md.                   */
/* ------------------------------------------------------------------------ */

typedef struct epc_router epc_router_t;

typedef enum epc_score_fn {
    EPC_SCORE_SOFTMAX = 0, /* softmax over the E logits of a token */
    EPC_SCORE_SIGMOID = 1, /* 1 / (1 + exp(-logit)), DeepSeek-V3 */
    EPC_SCORE_IDENTITY = 2 /* the logits themselves */
} epc_score_fn_t;

typedef struct epc_router_params {
    size_t size;              /* EPC_ROUTER_PARAMS_INIT */
    int num_experts;          /* E (required) */
    int topk;                 /* k (required), 1 <= k <= E */
    int num_ranks;            /* R: experts in contiguous blocks of E/R per rank; 0: 1 */
    int ranks_per_node;       /* nodes = R / ranks_per_node; 0: R (one node) */
    int max_nodes_per_token;  /* M: node limit, 0 = none */
    int num_groups;           /* group-limited routing (DeepSeek n_group), 0 = off */
    int max_groups_per_token; /* topk_group (required with num_groups) */
    int group_score_topk;     /* top scores summed per node/group to rank it;
                                 0 = max(1, k / limit) (limit = M or topk_group) */
    epc_score_fn_t score_fn;
    const float *expert_bias; /* optional [E], copied at create: added for
                                 selection only (aux-loss-free balancing) */
    int expert_bias_len;      /* entries in expert_bias: must equal num_experts */
    int normalize;            /* renormalise the k selected weights to sum 1 */
    float route_scale;        /* weights are multiplied by it; 0 means 1 */
} epc_router_params_t;

#define EPC_ROUTER_PARAMS_INIT EPC_PARAMS_INIT_(epc_router_params_t)

/** Validates params and builds a router (keeping a copy of expert_bias).
 * EPC_ERR_INVALID_ARG names the field: k > E, E % R, R % ranks_per_node, M >
 * nodes, k > M x experts per node, groups not dividing E, a NaN bias, ... */
EPC_EXPORT epc_status_t epc_router_create(const epc_router_params_t *params,
                                          epc_router_t **router_p);
EPC_EXPORT void epc_router_destroy(epc_router_t *router);

/**
 * Routes num_tokens tokens: logits [T x E] row-major in, topk_idx [T x k]
 * (expert ids, best first) and topk_weights [T x k] out.  Semantics are those
 * of the DeepSeek-V3 reference gate with group = node; ties go to the lower
 * index.  Every token's experts lie on at most M nodes.  T may be 0.
 * EPC_ERR_INVALID_ARG: NULL pointers, T < 0, a NaN or infinite logit (the
 * text names the token and expert); nothing is written then.
 * Not thread-safe on one router (it owns scratch space); use one per thread.
 */
EPC_EXPORT epc_status_t epc_route(epc_router_t *router, const float *logits, int num_tokens,
                                  int32_t *topk_idx, float *topk_weights);

/** Dispatch layout (as DeepEP's get_dispatch_layout).  Any pointer may be
 * NULL to skip that output.  A token counts once per rank/node however many
 * of its experts live there; -1 entries are ignored. */
typedef struct epc_layout {
    size_t size;            /* EPC_LAYOUT_INIT */
    int *tokens_per_rank;   /* [R] */
    int *tokens_per_node;   /* [nodes] */
    int *tokens_per_expert; /* [E] */
    uint8_t *token_in_rank; /* [T x R], 1 when the token goes to that rank */
    uint8_t *token_in_node; /* [T x nodes] */
} epc_layout_t;
#define EPC_LAYOUT_INIT EPC_PARAMS_INIT_(epc_layout_t)

/** The layout of topk_idx [T x k] for the router's E, k, R and nodes.
 * EPC_ERR_INVALID_ARG (nothing written): an entry outside [-1, E) or repeated
 * in a token (naming token and slot), out NULL or of unknown size. */
EPC_EXPORT epc_status_t epc_layout(const epc_router_t *router, const int32_t *topk_idx,
                                   int num_tokens, const epc_layout_t *out);

/** What a batch of routed tokens costs, seen from one source rank. */
typedef struct epc_route_stats {
    size_t size;                 /* EPC_ROUTE_STATS_INIT */
    int num_tokens;              /* tokens with at least one expert */
    double mean_ranks_per_token; /* distinct destination ranks */
    int max_ranks_per_token;
    double mean_nodes_per_token; /* distinct destination nodes */
    int max_nodes_per_token;
    double expert_load_imbalance; /* max / mean tokens per expert */
    double rank_load_imbalance;   /* max / mean tokens per rank */
    double node_load_imbalance;   /* max / mean tokens per node */
    /* Bytes a dispatch moves from the source rank, for row_bytes per row.
     * flat: one copy per (token, destination rank); hier: one network copy
     * per (token, other node) then one intra-node copy per destination rank. */
    double flat_inter_bytes, flat_intra_bytes;
    double hier_inter_bytes, hier_intra_bytes;
} epc_route_stats_t;
#define EPC_ROUTE_STATS_INIT EPC_PARAMS_INIT_(epc_route_stats_t)

/**
 * Statistics of topk_idx [T x k] sent by source rank src_rank.
 * EPC_ERR_INVALID_ARG: bad entries (as epc_layout), src_rank outside [0, R),
 * row_bytes < 0, stats NULL or of unknown size.
 */
EPC_EXPORT epc_status_t epc_route_stats(const epc_router_t *router, const int32_t *topk_idx,
                                        int num_tokens, int src_rank, double row_bytes,
                                        epc_route_stats_t *stats);

/** Inputs of the cost model: all-rank token counts. */
typedef struct epc_cost_params {
    size_t size;                /* EPC_COST_PARAMS_INIT */
    int num_ranks;              /* R; 0: from topo */
    int ranks_per_node;         /* 0: from topo (which must be uniform) */
    double row_bytes;           /* bytes per token row (hidden x element size) */
    double intra_bw_gbs;        /* 0: from topo */
    double inter_bw_gbs;        /* 0: from topo */
    const epc_topo_t *topo;     /* optional source of the values above */
    const int *tokens_per_rank; /* [R x R]: [s * R + d] tokens s sends to rank d */
    const int *tokens_per_node; /* [R x nodes]: [s * nodes + n] tokens s sends to node n */
    /* Added in 0.4 (0.3's layout ends at tokens_per_node): the bytes of a
     * row combine moves back (hidden x 4 over the FP32 wire, x 2 over
     * BF16), when row_bytes is dispatch's (FP8: hidden + hidden/32); 0:
     * row_bytes for both. */
    double combine_row_bytes;
    /* Added in 0.6 (0.4's layout ends at combine_row_bytes): the
     * low-latency mode, which sends one row per (token, expert) straight
     * to the expert's rank.  rows_per_rank [R x R]: [s * R + d] rows s
     * sends to rank d (NULL: no low-latency figures); ll_latency_us: its
     * fixed time per call, microseconds (0: EPC_LL_LATENCY_US; docs/ROUTING.md
     * says where it comes from). */
    const int *rows_per_rank;
    double ll_latency_us;
} epc_cost_params_t;

/** The low-latency mode's fixed time per call (microseconds) the cost
 * model assumes when given none: fitted to DeepEP's EP8 dispatch row
 * (docs/ROUTING.md). */
#define EPC_LL_LATENCY_US 30.0

#define EPC_COST_PARAMS_INIT EPC_PARAMS_INIT_(epc_cost_params_t)

/** Modeled times (microseconds) and the busiest rank's bytes. */
typedef struct epc_cost {
    size_t size; /* EPC_COST_INIT */
    double flat_dispatch_us, flat_combine_us;
    double hier_dispatch_us, hier_combine_us;
    double flat_max_inter_bytes, flat_max_intra_bytes; /* busiest rank */
    double hier_max_inter_bytes, hier_max_intra_bytes;
    /* Added in 0.6: the low-latency mode (-1 without rows_per_rank). */
    double ll_dispatch_us, ll_combine_us;
    double ll_max_inter_bytes, ll_max_intra_bytes;
} epc_cost_t;
#define EPC_COST_INIT EPC_PARAMS_INIT_(epc_cost_t)

/**
 * The cost model of docs/ROUTING.md: every rank's network send, network
 * receive and intra-node copies run concurrently at the nominal bandwidths;
 * a collective lasts as long as its busiest rank (the low-latency mode's
 * plus its fixed time per call).  EPC_ERR_INVALID_ARG
 * names a missing or inconsistent field, or cost NULL or of unknown size.
 */
EPC_EXPORT epc_status_t epc_cost_model(const epc_cost_params_t *params, epc_cost_t *cost);

/**
 * The node limit DeepSeek-V3's argument recommends: the smallest M with
 * topk / M <= intra_bw / inter_bw (an inter-node copy fans out to that many
 * experts at no extra cost), clamped to [1, min(topk, nodes)], into
 * *node_limit.  EPC_ERR_INVALID_ARG: an argument not positive (named),
 * node_limit NULL.
 */
EPC_EXPORT epc_status_t epc_recommend_node_limit(int topk, int num_nodes, double intra_bw_gbs,
                                                 double inter_bw_gbs, int *node_limit);

/* ------------------------------------------------------------------------ */
/* Expert placement: physical slots -> logical experts, with replicas; the  */
/* planner that balances them; moving expert weights.  docs/PLACEMENT.md.   */
/* ------------------------------------------------------------------------ */

typedef struct epc_placement epc_placement_t;

typedef struct epc_placement_params {
    size_t size;                /* EPC_PLACEMENT_PARAMS_INIT */
    int num_experts;            /* E logical experts (required) */
    int num_ranks;              /* R; 0: 1 */
    int ranks_per_node;         /* 0: R (one node) */
    int num_slots;              /* S physical slots, >= E and a multiple of R: slot s
                                   lives on rank s / (S / R); 0: E */
    const int32_t *slot_expert; /* [S] logical expert of each slot (copied);
                                   NULL: slot s holds expert s (S must be E) */
} epc_placement_params_t;
#define EPC_PLACEMENT_PARAMS_INIT EPC_PARAMS_INIT_(epc_placement_params_t)

/**
 * Validates params and builds a placement (pure computation, no MPI).
 * EPC_ERR_INVALID_ARG names the field: E < 1, R % ranks_per_node, S < E or
 * not a multiple of R, slot_expert NULL with S != E, an entry outside
 * [0, E), a logical expert with no slot, params or placement_p NULL.
 */
EPC_EXPORT epc_status_t epc_placement_create(const epc_placement_params_t *params,
                                             epc_placement_t **placement_p);
EPC_EXPORT void epc_placement_destroy(epc_placement_t *placement);

typedef struct epc_placement_info {
    size_t size; /* EPC_PLACEMENT_INFO_INIT */
    int num_experts, num_slots, num_ranks, ranks_per_node, slots_per_rank;
    int max_replicas; /* most slots one logical expert has */
    int node_local;   /* 1 when every expert's slots lie on one node */
    /* Added in 0.9 (0.8's layout ends at node_local): the
     * epc_replica_choice_t epc_placement_map uses now. */
    int choice;
} epc_placement_info_t;
#define EPC_PLACEMENT_INFO_INIT EPC_PARAMS_INIT_(epc_placement_info_t)

/** Shape of a placement.  EPC_ERR_INVALID_ARG: not a live placement,
 * info NULL or of unknown size. */
EPC_EXPORT epc_status_t epc_placement_info(const epc_placement_t *placement,
                                           epc_placement_info_t *info);

/** The table: slot_expert[s] for the S slots.  EPC_ERR_INVALID_ARG: not a
 * live placement, slot_expert NULL, capacity < S. */
EPC_EXPORT epc_status_t epc_placement_table(const epc_placement_t *placement, int32_t *slot_expert,
                                            int capacity);

/** The slots of logical expert `expert`, ascending, into slots[] (at most
 * capacity written) and their number into *count.  EPC_ERR_INVALID_ARG:
 * expert outside [0, E), NULL pointers, capacity below the count. */
EPC_EXPORT epc_status_t epc_placement_replicas(const epc_placement_t *placement, int expert,
                                               int32_t *slots, int capacity, int *count);

/**
 * Replica choice: slot_idx [T x k] gets, for each logical expert id of
 * topk_idx [T x k], one of its slots (-1 stays -1), so the result can be
 * dispatched by a context whose num_experts is S.  Deterministic: the same
 * input gives the same slots on every run and rank.  EPC_REPLICA_NEAR (the
 * default; epc_placement_set_choice): a replica on a node the token
 * already reaches (through its experts with slots on one node only, then
 * earlier choices) is preferred, so with a node-local placement (the
 * planner's hierarchical ones) a token reaches exactly the nodes of its
 * logical routing and node-limited routing keeps its bound; among the
 * candidates, token t (counted from first_token, e.g. rank x T) takes
 * candidate (t + expert) mod their number, spreading each expert's tokens
 * evenly over its candidates.  EPC_REPLICA_SPREAD: every replica is a
 * candidate, whatever the nodes.  EPC_REPLICA_BALANCED: as NEAR, but
 * taking the least-loaded replica (rows this call gave it so far; ties
 * from (t + expert) on) and a reached one only while it holds at most
 * 1/8 more (plus one) than the expert's least-loaded replica, else that
 * one: shares within about 1/8 of even, the same slots for the same call
 * (each token's choice depends on the call's earlier tokens).
 * EPC_REPLICA_LIMITED: the least-loaded (as BALANCED counts) of the
 * expert's replicas on its main node or on a node the token already
 * reaches; its main node is the node holding most of its slots (on a
 * tie, the one holding most slots of its node block, experts
 * [b x E/nodes, (b+1) x E/nodes) with b = e x nodes / E; then the
 * lowest).  A token's slots so lie only on its experts' main nodes: for
 * the planner's hierarchical plans, spill replicas included, its nodes
 * are those of its logical routing at most, and the router's node limit
 * holds.
 * EPC_ERR_INVALID_ARG (nothing written): not a live placement, T < 0,
 * topk outside [1, min(E, 256)], first_token outside [0, INT64_MAX - T],
 * NULL arrays with T > 0, an id outside [-1, E) or repeated in a token.
 * EPC_ERR_NO_MEMORY (BALANCED, LIMITED: their per-slot counts), nothing
 * written.
 * slot_idx may alias topk_idx.
 */
EPC_EXPORT epc_status_t epc_placement_map(const epc_placement_t *placement, const int32_t *topk_idx,
                                          int num_tokens, int topk, int64_t first_token,
                                          int32_t *slot_idx);

/** How epc_placement_map picks among an expert's replicas. */
typedef enum epc_replica_choice {
    EPC_REPLICA_NEAR = 0,     /* prefer nodes the token already reaches (the default):
                                fewest network copies, shares uneven where replicas
                                sit on nodes reached unequally often */
    EPC_REPLICA_SPREAD = 1,   /* every replica in turn, ignoring nodes: even shares, at
                                the cost of nodes (network copies) added to tokens */
    EPC_REPLICA_BALANCED = 2, /* reached nodes first while the shares stay within 1/8
                                 of even, else the least-loaded replica */
    EPC_REPLICA_LIMITED = 3   /* the least-loaded replica on the expert's main node or a
                                 reached node: never a node beyond its experts' main
                                 nodes (for spill replicas; docs/PLACEMENT.md) */
} epc_replica_choice_t;

/** Sets the replica choice of later epc_placement_map calls on this
 * placement (local: each source rank maps its own tokens; dispatch is
 * correct whatever each rank chose).  A placement starts at NEAR, or at
 * LIMITED when epc_placement_plan placed spill replicas.  EPC_ERR_INVALID_ARG: not a live
 * placement, an unknown choice. */
EPC_EXPORT epc_status_t epc_placement_set_choice(epc_placement_t *placement,
                                                 epc_replica_choice_t choice);

/**
 * The load a placement puts on each rank and node when logical expert e
 * receives expert_load[e] tokens split evenly over its replicas:
 * rank_load [R] and node_load [nodes] (either may be NULL) and the busiest
 * rank's load over the mean into *imbalance (may be NULL; 0 when there is
 * no load).  EPC_ERR_INVALID_ARG: not a live placement, expert_load NULL
 * or an entry negative or not finite.
 */
EPC_EXPORT epc_status_t epc_placement_load(const epc_placement_t *placement,
                                           const double *expert_load, double *rank_load,
                                           double *node_load, double *imbalance);

typedef enum epc_placement_algo {
    EPC_PLACEMENT_BALANCED = 0, /* epcomm's: EPLB's steps, then local search on the busiest rank */
    EPC_PLACEMENT_EPLB = 1      /* DeepSeek's EPLB (rebalance_experts), the reference */
} epc_placement_algo_t;

typedef struct epc_placement_plan_params {
    size_t size;               /* EPC_PLACEMENT_PLAN_PARAMS_INIT */
    int num_experts;           /* E (required) */
    int num_ranks;             /* R; 0: 1 */
    int ranks_per_node;        /* 0: R */
    int num_slots;             /* S = E + redundant slots, a multiple of R; 0: E */
    const double *expert_load; /* [E] tokens per logical expert (e.g. epc_layout's
                                   tokens_per_expert summed over ranks and batches) */
    int num_groups;            /* experts in contiguous groups of E / G kept whole on one node
                                   when G is a multiple of the node count (hierarchical; the
                                   router's node blocks when G = nodes); otherwise balanced
                                   over all ranks as one node (global).  0: G = nodes when
                                   the node count divides E, else 1 */
    epc_placement_algo_t algo;
    /* Added in 0.8 (0.7's layout ends at algo): NULL, or [E x nodes] from
     * epc_placement_reach: expert_reach[e x nodes + b] tokens of expert e
     * that also reach node block b.  With it, G = nodes and algo BALANCED,
     * the plan may put spill replicas of a busy node's experts on other
     * nodes, for EPC_REPLICA_LIMITED to use (docs/PLACEMENT.md). */
    const double *expert_reach;
} epc_placement_plan_params_t;
#define EPC_PLACEMENT_PLAN_PARAMS_INIT EPC_PARAMS_INIT_(epc_placement_plan_params_t)

/**
 * Plans a placement for expert_load (pure computation): every logical
 * expert gets at least one slot, each rank S / R, hot experts the
 * redundant ones, packed to minimise the busiest rank's load.  Hierarchical
 * plans keep each group and all its replicas on one node (node-limited
 * routing stays feasible and replicas add no network bytes).  With
 * expert_reach (G = nodes, algo BALANCED), a redundant slot of a lighter
 * node may instead hold a spill replica of a busier node's expert, at
 * most one per (expert, node), fewer of a node's experts on another node
 * than on their own (so each expert's main node is its group's), where
 * the tokens reaching both would move load off the busier node; the plan
 * keeps the spills only when its model (spills taking their even share,
 * at most the tokens reaching them) lowers the busiest rank's load.
 * Spill replicas are for EPC_REPLICA_LIMITED (NEAR may take one on a node
 * the token does not reach): a plan that keeps spills comes with that
 * choice set (epc_placement_info's choice); any other starts at NEAR.
 * EPC_ERR_INVALID_ARG names the field: the shape (as epc_placement_create),
 * G not dividing E, expert_load NULL or an entry negative or not finite,
 * an expert_reach entry negative or not finite, an unknown algo,
 * placement_p NULL.
 */
EPC_EXPORT epc_status_t epc_placement_plan(const epc_placement_plan_params_t *params,
                                           epc_placement_t **placement_p);

/**
 * Adds to reach [num_experts x nodes] the co-reach of T tokens' logical
 * topk_idx [T x k] (-1 ignored): for each token, each of its experts e
 * and each node block b != e's that another of its experts lies in
 * (blocks of E / nodes experts: b = e x nodes / E, the router's node
 * blocks), reach[e x nodes + b] += 1.  Summed over ranks and batches it
 * is epc_placement_plan's expert_reach.  EPC_ERR_INVALID_ARG (nothing
 * added): num_experts < 1, nodes outside [1, num_experts], T < 0, topk
 * outside [1, min(E, 256)], NULL arrays with T > 0 (reach NULL always),
 * an id outside [-1, E) or repeated in a token.
 */
EPC_EXPORT epc_status_t epc_placement_reach(const int32_t *topk_idx, int num_tokens, int topk,
                                            int num_experts, int nodes, double *reach);

/**
 * Collective over the context: every rank passes the same placement, and
 * its S is the context's num_experts, its R the context's size and its
 * ranks_per_node the job's nodes; no dispatch or combine in flight.  The
 * table is then attached to the context: the low-latency combine sums
 * each token's outputs by logical expert (a replica or a permuted table
 * gives the bits of the contiguous placement; docs/PLACEMENT.md).
 * EPC_ERR_INVALID_ARG (not a live placement, a shape that does not fit
 * the context, a request in flight) or EPC_ERR_NO_MEMORY on a rank where
 * it is so, and EPC_ERR_PEER_FAILED naming the lowest such rank on the
 * others (the context stays usable); then EPC_ERR_MISMATCH on every rank
 * when the tables differ between ranks (naming what differs); the
 * context's transport and timeout statuses.
 */
EPC_EXPORT epc_status_t epc_placement_agree(epc_ctx_t *ctx, const epc_placement_t *placement);

/** One slot's weights moving between ranks: this rank's local slot `slot`
 * goes to (or comes from) `peer`'s local slot `peer_slot`. */
typedef struct epc_slot_move {
    int32_t slot, peer, peer_slot;
} epc_slot_move_t;

/**
 * What rank `rank` sends and receives when the placement changes from
 * `from` to `to` (same E and R; S may differ): each slot of `to` is filled
 * from a slot of `from` holding its expert, this rank's own when it has
 * one (listed among the receives with peer = rank, a local copy, and not
 * among the sends), else one on the same node, else any (candidates
 * spread by the slot's index).  Both sides list a pair's moves by the
 * receiver's slot, ascending.  sends/recvs get up to their capacities, the
 * totals go to *num_sends and *num_recvs (a NULL array with capacity 0 asks
 * for the totals).  EPC_ERR_INVALID_ARG: shapes that differ, rank outside
 * [0, R), a capacity below its total, NULL pointers.
 */
EPC_EXPORT epc_status_t epc_placement_moves(const epc_placement_t *from, const epc_placement_t *to,
                                            int rank, epc_slot_move_t *sends, int send_capacity,
                                            int *num_sends, epc_slot_move_t *recvs,
                                            int recv_capacity, int *num_recvs);

/**
 * Collective: moves expert weights from placement `from` to `to` through
 * the context's transport, in rounds of at most EPC_MOVE_ROUND_KB sent and
 * at most that much received per rank (at least one slot).  old_weights
 * holds this rank's S_from / R slots of slot_bytes each, new_weights gets
 * its S_to / R slots (they must not overlap).  Both placements are agreed first (epc_placement_agree's
 * statuses, their R the context's; EPC_ERR_MISMATCH also when slot_bytes
 * or EPC_MOVE_ROUND_KB differ between ranks); slot_bytes 0 or NULL buffers are
 * EPC_ERR_INVALID_ARG on that rank and a named peer error elsewhere;
 * new_weights is only written once every rank agreed.  Every rank returns
 * the move's outcome (a final agreement: a rank whose own exchanges went
 * well still fails when a peer's did).  Deadlines and faults as every
 * collective.
 */
EPC_EXPORT epc_status_t epc_placement_move_weights(epc_ctx_t *ctx, const epc_placement_t *from,
                                                   const epc_placement_t *to,
                                                   const void *old_weights, void *new_weights,
                                                   size_t slot_bytes);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* EPCOMM_H */
