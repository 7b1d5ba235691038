# SPDX-License-Identifier: BSD-3-Clause
"""The C library through ctypes: where it is found, every public struct
mirrored and checked against the library's own description of its ABI
(epc_abi_table), and a prototype for every function the package calls.

Nothing here knows torch; the rest of the package builds on `lib` and the
struct classes.  A mirror that disagrees with the loaded library (a field
missing, moved or resized, another ABI version) is an ImportError that
names it: a header change can never silently misalign a call.
"""
import ctypes
import ctypes.util
import os
import subprocess

# The ABI version these mirrors describe (EPC_ABI_VERSION in epcomm.h).
ABI_VERSION = 10

c_int, c_size_t, c_double, c_float = ctypes.c_int, ctypes.c_size_t, ctypes.c_double, ctypes.c_float
c_char_p, c_void_p, c_uint64 = ctypes.c_char_p, ctypes.c_void_p, ctypes.c_uint64
P = ctypes.POINTER
LINK_CLASSES = 4


def _struct(name, fields):
    """A ctypes Structure named like the C type, fields in header order."""
    return type(name, (ctypes.Structure,), {"_fields_": fields})


CtxParams = _struct("epc_ctx_params_t", [
    ("size", c_size_t), ("num_experts", c_int), ("hidden", c_int), ("dtype", c_int),
    ("max_tokens_per_rank", c_int), ("max_topk", c_int), ("transport", c_int),
    ("ofi_provider", c_char_p), ("ranks_per_node", c_int), ("timeout_ms", c_int),
    ("log_level", c_int), ("progress", c_int)])
CtxStats = _struct("epc_ctx_stats_t", [
    ("size", c_size_t), ("bytes_sent", c_uint64 * LINK_CLASSES),
    ("bytes_recv", c_uint64 * LINK_CLASSES), ("shm_bytes", c_uint64), ("net_bytes", c_uint64),
    ("shm_grows", c_uint64), ("net_grows", c_uint64), ("transport", c_char_p),
    ("provider", c_char_p), ("transport_reason", c_char_p), ("ll_transfer", c_char_p)])
DispatchArgs = _struct("epc_dispatch_args_t", [
    ("size", c_size_t), ("x", c_void_p), ("num_tokens", c_int), ("topk", c_int),
    ("topk_idx", c_void_p), ("topk_weights", c_void_p), ("expert_alignment", c_int),
    ("algo", c_int), ("payload", c_int), ("x_scales", c_void_p)])
DispatchOut = _struct("epc_dispatch_out_t", [
    ("size", c_size_t), ("rows", c_void_p), ("num_rows", c_int), ("num_local_experts", c_int),
    ("expert_begin", P(c_int)), ("expert_count", P(c_int)), ("src_rank", P(ctypes.c_int32)),
    ("src_token", P(ctypes.c_int32)), ("local_expert", P(ctypes.c_int32)),
    ("weight", P(c_float)), ("row_stride", c_size_t), ("scales", c_void_p)])
CombineArgs = _struct("epc_combine_args_t", [
    ("size", c_size_t), ("expert_out", c_void_p), ("y", c_void_p), ("unweighted", c_int),
    ("scalar_channel", c_int), ("row_scalars", c_void_p), ("topk_scalars", c_void_p),
    ("wire", c_int), ("order", c_int)])
LLDispatchArgs = _struct("epc_ll_dispatch_args_t", [
    ("size", c_size_t), ("x", c_void_p), ("num_tokens", c_int), ("topk", c_int),
    ("topk_idx", c_void_p), ("payload", c_int), ("x_scales", c_void_p)])
LLOut = _struct("epc_ll_out_t", [
    ("size", c_size_t), ("rows", c_void_p), ("scales", c_void_p), ("row_stride", c_size_t),
    ("num_local_experts", c_int), ("slots", c_int), ("max_tokens", c_int), ("count", P(c_int)),
    ("src_count", P(c_int)), ("src_token", P(ctypes.c_int32)), ("call", c_uint64)])
LLCombineArgs = _struct("epc_ll_combine_args_t", [
    ("size", c_size_t), ("dispatched", P(LLOut)), ("expert_out", c_void_p),
    ("topk_weights", c_void_p), ("y", c_void_p)])
CollBytes = _struct("epc_coll_bytes_t", [
    ("payload_inter", c_uint64), ("payload_intra", c_uint64), ("meta_inter", c_uint64),
    ("meta_intra", c_uint64)])
CollStats = _struct("epc_coll_stats_t", [
    ("size", c_size_t), ("last_dispatch", CollBytes), ("last_combine", CollBytes),
    ("total", CollBytes), ("dispatches", c_uint64), ("combines", c_uint64)])
ConfigVar = _struct("epc_config_var_t", [
    ("size", c_size_t), ("name", c_char_p), ("type", c_char_p), ("allowed", c_char_p),
    ("default_value", c_char_p), ("value", c_char_p), ("help", c_char_p), ("from_env", c_int),
    ("valid", c_int)])
BuildInfo = _struct("epc_build_info_t", [
    ("version", c_char_p), ("configure_args", c_char_p), ("compiler", c_char_p),
    ("mpi_compiled", c_char_p), ("hwloc_compiled", c_char_p), ("hwloc_runtime", c_char_p),
    ("have_ofi", c_int), ("ofi_compiled", c_char_p), ("ofi_runtime", c_char_p)])
AbiField = _struct("epc_abi_field_t", [
    ("type", c_char_p), ("field", c_char_p), ("offset", c_size_t), ("size", c_size_t)])
TopoParams = _struct("epc_topo_params_t", [
    ("size", c_size_t), ("ranks_per_node", c_int), ("xml_path", c_char_p),
    ("hw_profile", c_char_p), ("intra_bw_gbs", c_double), ("inter_bw_gbs", c_double)])
RankInfo = _struct("epc_rank_info_t", [
    ("size", c_size_t), ("rank", c_int), ("node", c_int), ("local_rank", c_int),
    ("host", c_char_p), ("cpuset", c_char_p), ("bound", c_int), ("package", c_int),
    ("numa", c_int), ("cores", c_int), ("nics", c_char_p), ("gpus", c_char_p),
    ("nic", c_char_p), ("gpu", c_char_p)])
NodeInfo = _struct("epc_node_info_t", [
    ("size", c_size_t), ("node", c_int), ("host", c_char_p), ("num_ranks", c_int),
    ("first_rank", c_int), ("packages", c_int), ("numa_nodes", c_int), ("cores", c_int),
    ("pus", c_int), ("nics", c_char_p), ("gpus", c_char_p)])
TopoBw = _struct("epc_topo_bw_t", [
    ("size", c_size_t), ("intra_gbs", c_double), ("inter_gbs", c_double),
    ("profile", c_char_p), ("intra_source", c_char_p), ("inter_source", c_char_p)])
RouterParams = _struct("epc_router_params_t", [
    ("size", c_size_t), ("num_experts", c_int), ("topk", c_int), ("num_ranks", c_int),
    ("ranks_per_node", c_int), ("max_nodes_per_token", c_int), ("num_groups", c_int),
    ("max_groups_per_token", c_int), ("group_score_topk", c_int), ("score_fn", c_int),
    ("expert_bias", P(c_float)), ("expert_bias_len", c_int), ("normalize", c_int),
    ("route_scale", c_float)])
Layout = _struct("epc_layout_t", [
    ("size", c_size_t), ("tokens_per_rank", c_void_p), ("tokens_per_node", c_void_p),
    ("tokens_per_expert", c_void_p), ("token_in_rank", c_void_p),
    ("token_in_node", c_void_p)])
RouteStats = _struct("epc_route_stats_t", [
    ("size", c_size_t), ("num_tokens", c_int), ("mean_ranks_per_token", c_double),
    ("max_ranks_per_token", c_int), ("mean_nodes_per_token", c_double),
    ("max_nodes_per_token", c_int), ("expert_load_imbalance", c_double),
    ("rank_load_imbalance", c_double), ("node_load_imbalance", c_double),
    ("flat_inter_bytes", c_double), ("flat_intra_bytes", c_double),
    ("hier_inter_bytes", c_double), ("hier_intra_bytes", c_double)])
CostParams = _struct("epc_cost_params_t", [
    ("size", c_size_t), ("num_ranks", c_int), ("ranks_per_node", c_int),
    ("row_bytes", c_double), ("intra_bw_gbs", c_double), ("inter_bw_gbs", c_double),
    ("topo", c_void_p), ("tokens_per_rank", P(c_int)), ("tokens_per_node", P(c_int)),
    ("combine_row_bytes", c_double), ("rows_per_rank", P(c_int)), ("ll_latency_us", c_double)])
Cost = _struct("epc_cost_t", [
    ("size", c_size_t), ("flat_dispatch_us", c_double), ("flat_combine_us", c_double),
    ("hier_dispatch_us", c_double), ("hier_combine_us", c_double),
    ("flat_max_inter_bytes", c_double), ("flat_max_intra_bytes", c_double),
    ("hier_max_inter_bytes", c_double), ("hier_max_intra_bytes", c_double),
    ("ll_dispatch_us", c_double), ("ll_combine_us", c_double), ("ll_max_inter_bytes", c_double),
    ("ll_max_intra_bytes", c_double)])
PlacementParams = _struct("epc_placement_params_t", [
    ("size", c_size_t), ("num_experts", c_int), ("num_ranks", c_int), ("ranks_per_node", c_int),
    ("num_slots", c_int), ("slot_expert", c_void_p)])
PlacementInfo = _struct("epc_placement_info_t", [
    ("size", c_size_t), ("num_experts", c_int), ("num_slots", c_int), ("num_ranks", c_int),
    ("ranks_per_node", c_int), ("slots_per_rank", c_int), ("max_replicas", c_int),
    ("node_local", c_int), ("choice", c_int)])
PlacementPlanParams = _struct("epc_placement_plan_params_t", [
    ("size", c_size_t), ("num_experts", c_int), ("num_ranks", c_int), ("ranks_per_node", c_int),
    ("num_slots", c_int), ("expert_load", c_void_p), ("num_groups", c_int), ("algo", c_int),
    ("expert_reach", c_void_p)])
SlotMove = _struct("epc_slot_move_t", [
    ("slot", ctypes.c_int32), ("peer", ctypes.c_int32), ("peer_slot", ctypes.c_int32)])

# Every public struct the library describes, by its C name.
STRUCTS = {s.__name__: s for s in (
    CtxParams, CtxStats, DispatchArgs, DispatchOut, CombineArgs, LLDispatchArgs, LLOut,
    LLCombineArgs, CollBytes, CollStats,
    ConfigVar, BuildInfo, AbiField, TopoParams, RankInfo, NodeInfo, TopoBw, RouterParams,
    Layout, RouteStats, CostParams, Cost, PlacementParams, PlacementInfo, PlacementPlanParams,
    SlotMove)}


def new(struct_class, **fields):
    """An instance with `size` set as the C INIT macros do, other fields 0."""
    s = struct_class(**fields)
    if "size" in dict(struct_class._fields_):
        s.size = ctypes.sizeof(struct_class)
    return s


# name: (restype, argtypes).  c_void_p stands for the opaque objects.
_S = c_int  # epc_status_t
PROTOTYPES = {
    "epc_get_version": (c_char_p, [P(c_int), P(c_int), P(c_int)]),
    "epc_status_string": (c_char_p, [c_int]),
    "epc_status_name": (c_char_p, [c_int]),
    "epc_last_error": (c_char_p, [c_void_p]),
    "epc_ctx_create_f": (_S, [P(c_int), P(CtxParams), P(c_void_p)]),
    "epc_ctx_destroy": (_S, [c_void_p]),
    "epc_ctx_abort": (_S, [c_void_p, c_char_p]),
    "epc_ctx_topo": (_S, [c_void_p, P(c_void_p)]),
    "epc_ctx_stats": (_S, [c_void_p, P(CtxStats)]),
    "epc_link_class_name": (c_char_p, [c_int]),
    "epc_dispatch": (_S, [c_void_p, P(DispatchArgs), P(DispatchOut), P(c_void_p)]),
    "epc_combine_buffer": (_S, [c_void_p, c_void_p, P(c_void_p)]),
    "epc_combine": (_S, [c_void_p, c_void_p, P(CombineArgs)]),
    "epc_ctx_warmup": (_S, [c_void_p, c_int, c_int]),
    "epc_dispatch_start": (_S, [c_void_p, P(DispatchArgs), P(DispatchOut), P(c_void_p),
                                P(c_void_p)]),
    "epc_combine_start": (_S, [c_void_p, c_void_p, P(CombineArgs), P(c_void_p)]),
    "epc_fp8_quantize": (_S, [c_void_p, c_int, c_int, c_int, c_int, c_void_p, c_size_t,
                              c_void_p, c_size_t]),
    "epc_fp8_dequantize": (_S, [c_void_p, c_size_t, c_void_p, c_size_t, c_int, c_int, c_int,
                                c_void_p]),
    "epc_ll_buffer_size": (_S, [c_void_p, c_int, P(c_size_t)]),
    "epc_ll_enable": (_S, [c_void_p, c_int]),
    "epc_ll_dispatch": (_S, [c_void_p, P(LLDispatchArgs), P(LLOut), P(c_void_p)]),
    "epc_ll_combine_buffer": (_S, [c_void_p, P(LLOut), P(c_void_p)]),
    "epc_ll_combine": (_S, [c_void_p, P(LLCombineArgs), P(c_void_p)]),
    "epc_test": (_S, [c_void_p, P(c_int)]),
    "epc_wait": (_S, [c_void_p]),
    "epc_request_free": (_S, [c_void_p]),
    "epc_handle_destroy": (None, [c_void_p]),
    "epc_coll_stats": (_S, [c_void_p, P(CollStats)]),
    "epc_config_count": (c_int, []),
    "epc_config_get_var": (_S, [c_int, P(ConfigVar)]),
    "epc_config_check": (_S, []),
    "epc_get_build_info": (P(BuildInfo), []),
    "epc_abi_table": (P(AbiField), [P(c_int), P(c_int)]),
    "epc_topo_num_ranks": (_S, [c_void_p, P(c_int)]),
    "epc_topo_my_rank": (_S, [c_void_p, P(c_int)]),
    "epc_topo_num_nodes": (_S, [c_void_p, P(c_int)]),
    "epc_topo_ranks_per_node": (_S, [c_void_p, P(c_int)]),
    "epc_topo_node_of": (_S, [c_void_p, c_int, P(c_int)]),
    "epc_topo_bandwidth": (_S, [c_void_p, P(TopoBw)]),
    "epc_router_create": (_S, [P(RouterParams), P(c_void_p)]),
    "epc_router_destroy": (None, [c_void_p]),
    "epc_route": (_S, [c_void_p, c_void_p, c_int, c_void_p, c_void_p]),
    "epc_layout": (_S, [c_void_p, c_void_p, c_int, P(Layout)]),
    "epc_route_stats": (_S, [c_void_p, c_void_p, c_int, c_int, c_double, P(RouteStats)]),
    "epc_cost_model": (_S, [P(CostParams), P(Cost)]),
    "epc_recommend_node_limit": (_S, [c_int, c_int, c_double, c_double, P(c_int)]),
    "epc_placement_create": (_S, [P(PlacementParams), P(c_void_p)]),
    "epc_placement_destroy": (None, [c_void_p]),
    "epc_placement_info": (_S, [c_void_p, P(PlacementInfo)]),
    "epc_placement_table": (_S, [c_void_p, c_void_p, c_int]),
    "epc_placement_replicas": (_S, [c_void_p, c_int, c_void_p, c_int, P(c_int)]),
    "epc_placement_map": (_S, [c_void_p, c_void_p, c_int, c_int, ctypes.c_int64, c_void_p]),
    "epc_placement_set_choice": (_S, [c_void_p, c_int]),
    "epc_placement_load": (_S, [c_void_p, c_void_p, c_void_p, c_void_p, P(c_double)]),
    "epc_placement_plan": (_S, [P(PlacementPlanParams), P(c_void_p)]),
    "epc_placement_reach": (_S, [c_void_p, c_int, c_int, c_int, c_int, c_void_p]),
    "epc_placement_agree": (_S, [c_void_p, c_void_p]),
    "epc_placement_moves": (_S, [c_void_p, c_void_p, c_int, P(SlotMove), c_int, P(c_int),
                                 P(SlotMove), c_int, P(c_int)]),
    "epc_placement_move_weights": (_S, [c_void_p, c_void_p, c_void_p, c_void_p, c_void_p,
                                        c_size_t]),
}


def _candidates():
    """(path, how it was found) in the order the library is looked for."""
    env = os.environ.get("EPCOMM_LIBRARY")
    if env:
        yield env, "EPCOMM_LIBRARY"
        return
    here = os.path.dirname(os.path.abspath(__file__))
    # python/epcomm/ of a source tree built in place (libtool's .libs)
    yield os.path.join(here, "..", "..", ".libs", "libepcomm.so"), "the build tree"
    try:
        from . import _prefix  # written by `make install`
        yield os.path.join(_prefix.LIBDIR, "libepcomm.so"), "install prefix " + _prefix.LIBDIR
    except ImportError:
        pass
    try:
        libdir = subprocess.run(["pkg-config", "--variable=libdir", "epcomm"],
                                capture_output=True, text=True, timeout=10).stdout.strip()
        if libdir:
            yield os.path.join(libdir, "libepcomm.so"), "pkg-config (libdir " + libdir + ")"
    except (OSError, subprocess.SubprocessError):
        pass
    name = ctypes.util.find_library("epcomm")
    if name:
        yield name, "the system's library search path"


def _load():
    """Loads libmpi (global, as Open MPI's components need) and libepcomm."""
    tried = []
    mpi = ctypes.util.find_library("mpi")
    if mpi:
        ctypes.CDLL(mpi, mode=ctypes.RTLD_GLOBAL)
    for path, how in _candidates():
        if os.sep in path and not os.path.exists(path):
            tried.append("%s (%s): absent" % (path, how))
            continue
        try:
            return ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL), os.path.realpath(path) \
                if os.sep in path else path, how
        except OSError as e:
            tried.append("%s (%s): %s" % (path, how, e))
    raise ImportError("epcomm: libepcomm not found; set EPCOMM_LIBRARY to its path. Tried: "
                      + ("; ".join(tried) or "nothing"))


def check_abi(library, structs=None, abi_version=ABI_VERSION):
    """Compares the mirrors with the library's epc_abi_table; ImportError
    naming the first struct or field that differs."""
    structs = STRUCTS if structs is None else structs
    count, version = c_int(0), c_int(0)
    rows = library.epc_abi_table(ctypes.byref(count), ctypes.byref(version))
    if version.value != abi_version:
        raise ImportError("epcomm: the library's ABI version is %d, this package's %d "
                          "(reinstall the package that came with the library)"
                          % (version.value, abi_version))
    seen = {}
    for i in range(count.value):
        r = rows[i]
        tname, fname = r.type.decode(), r.field.decode()
        cls = structs.get(tname)
        if cls is None:
            raise ImportError("epcomm: the library has struct %s, this package does not" % tname)
        seen.setdefault(tname, set())
        if fname == "":
            if ctypes.sizeof(cls) != r.size:
                raise ImportError("epcomm: sizeof(%s) is %d in the library, %d here"
                                  % (tname, r.size, ctypes.sizeof(cls)))
            continue
        fld = getattr(cls, fname, None)
        if fld is None:
            raise ImportError("epcomm: %s.%s is in the library, not in this package"
                              % (tname, fname))
        if (fld.offset, fld.size) != (r.offset, r.size):
            raise ImportError("epcomm: %s.%s is at offset %d size %d in the library, "
                              "offset %d size %d here" % (tname, fname, r.offset, r.size,
                                                          fld.offset, fld.size))
        seen[tname].add(fname)
    for tname, cls in structs.items():
        missing = [f for f, _ in cls._fields_ if f not in seen.get(tname, ())]
        if missing:
            raise ImportError("epcomm: %s.%s is in this package, not in the library"
                              % (tname, missing[0]))


def _bind(library):
    for name, (restype, argtypes) in PROTOTYPES.items():
        try:
            fn = getattr(library, name)
        except AttributeError:
            raise ImportError("epcomm: the library lacks %s" % name) from None
        fn.restype, fn.argtypes = restype, argtypes


lib, path, found_by = _load()
_bind(lib)
check_abi(lib)
