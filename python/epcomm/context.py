# SPDX-License-Identifier: BSD-3-Clause
"""Context: one epc_ctx_t over an MPI communicator, with dispatch and combine
on torch tensors (blocking or async), the handles they share and the
requests in flight."""
import collections
import ctypes
import sys

import torch

from . import _mpi
from ._lib import lib, new, CtxParams, CtxStats, CollStats, DispatchArgs, DispatchOut, \
    CombineArgs
from ._request import Request
from ._tensors import DTYPES, from_address, copy_array, pointer, Guard, \
    ReceivedTensor, check_rows as _check_rows, combine_out
from .errors import check, check_refused, EpcError, EpcInvalidArgument
from .low_latency import LowLatencyMixin
from .placement import live_ptr as placement_ptr
from .fp8 import BLOCK as FP8_BLOCK

_TRANSPORTS = {None: 0, "mpi": 1, "ofi": 2, "auto": 3}
_PROGRESS = {None: 0, "caller": 1, "thread": 2}
_ALGOS = {None: 0, "hier": 1, "flat": 2}
_PAYLOADS = {None: 0, "native": 0, "fp8": 1, "fp8_ue8m0": 2}
_FP8_GIVEN = 3
_WIRES = {None: 0, "fp32": 0, "bf16": 1}
_ORDERS = {None: 0, "nodes": 0, "logical": 1}
_LOG = {None: 0, "off": 1, "error": 2, "warn": 3, "info": 4, "debug": 5}

RecvInfo = collections.namedtuple(
    "RecvInfo", "src_rank src_token local_expert expert expert_begin expert_count")
RecvInfo.__doc__ = """Where each received row came from (int32 tensors of num_rows, -1 on
padding rows): src_rank, src_token (its index on the source), local_expert
(0..num_local_experts-1), expert (the global expert id); expert_begin
(int64, num_local_experts + 1: group e is rows expert_begin[e]..[e+1]-1)
and expert_count (int64, the real rows of each group)."""


def _choice(table, value, name):
    if value not in table:
        raise EpcInvalidArgument("%s = %r (one of %s)" % (
            name, value, ", ".join(repr(k) for k in table)))
    return table[value]


# An enum value no epc_* call accepts: a collective call on a rank whose
# argument the package refused goes ahead with it, so that the library
# fails the call there and tells the peers, who would otherwise wait for
# this rank until the deadline.
_REFUSED = 0x7fff


def _code(table, value, name):
    """(value's C code, None), or (_REFUSED, the EpcInvalidArgument)."""
    try:
        return _choice(table, value, name), None
    except EpcInvalidArgument as e:
        return _REFUSED, e


class Handle:
    """What a dispatch leaves for its combine (the C epc_handle_t): the
    layout of the rows received, the topk_idx it was made from (a cached
    dispatch with it skips the count exchange) and their shape.  Valid for
    combine until the second dispatch after the last one that used it."""

    def __init__(self, ctx, ptr, topk_idx, num_rows, algo, alignment):
        self.ctx, self._ptr, self.algo, self.alignment = ctx, ptr, algo, alignment
        self.topk_idx = topk_idx  # int32 [T, k], as dispatched
        self.num_tokens, self.topk = topk_idx.shape
        self.num_rows = num_rows

    def destroy(self):
        """Frees the C handle (local; also done when the object is collected)."""
        if self._ptr is not None:
            lib.epc_handle_destroy(self._ptr)
            self._ptr = None

    def __del__(self):
        self.destroy()


class Context(LowLatencyMixin):
    """An epcomm context over an MPI communicator (collective to create and
    to close): the topology, each node's shared regions, the inter-node
    transport, and dispatch/combine for tokens of `hidden` elements of
    `dtype` routed among `num_experts` experts (E / ranks per rank, in
    contiguous blocks: rank r owns experts r*E/R .. (r+1)*E/R - 1).

    Args:
        comm: an mpi4py communicator, or None for MPI_COMM_WORLD.  MPI is
            initialised here if nobody did (MPI_THREAD_MULTIPLE with
            progress="thread", else MPI_THREAD_FUNNELED) and finalised at exit.
        hidden (int): elements per token row.
        num_experts (int): E, a multiple of the number of ranks.
        dtype: torch.bfloat16 (default), torch.float16 or torch.float32.
        max_tokens_per_rank (int): tokens per call at most (0: 8192).
        max_topk (int): experts per token at most (0: min(E, 8)).
        transport: "mpi", "ofi", "auto" or None (EPC_TRANSPORT).
        ofi_provider (str): libfabric provider ("tcp", ...), None: automatic.
        ranks_per_node (int): virtual nodes of this many ranks (0: real nodes).
        timeout_ms (int): deadline of every wait (0: EPC_TIMEOUT_MS).
        progress: "caller", "thread" or None (EPC_PROGRESS).
        algo: default algorithm, "hier" or "flat" (None: EPC_ALGO, else hier).
        log_level: "off", "error", "warn", "info", "debug" or None.

    Raises the EpcError of the status epc_ctx_create returns (EpcMismatch
    when ranks pass different values, ...).  Use as a context manager or call
    close().  An exception other than an EpcError leaving the `with` block
    aborts the context first, so that the peers fail at once instead of
    waiting for the timeout; an uncaught exception does the same for every
    open context before Python exits.
    """

    def __init__(self, comm=None, *, hidden, num_experts, dtype=torch.bfloat16,
                 max_tokens_per_rank=0, max_topk=0, transport=None, ofi_provider=None,
                 ranks_per_node=0, timeout_ms=0, progress=None, algo=None, log_level=None):
        self._ptr = None
        self._requests = set()
        # a name this rank gets wrong goes to epc_ctx_create as a value it
        # refuses (algo, the package's own, as progress), so that creation
        # fails on every rank at once instead of the peers waiting for this one
        codes = [_code(t, v, n) for t, v, n in ((_TRANSPORTS, transport, "transport"),
                                                (_LOG, log_level, "log_level"),
                                                (_PROGRESS, progress, "progress"),
                                                (_ALGOS, algo, "algo"))]
        dt = _code(DTYPES, dtype, "dtype")
        (tcode, _), (lcode, _), (pcode, _), (acode, bad_algo) = codes
        local_error = dt[1] or next((e for _, e in codes if e is not None), None)
        p = new(CtxParams, num_experts=num_experts, hidden=hidden, dtype=dt[0],
                max_tokens_per_rank=max_tokens_per_rank, max_topk=max_topk, transport=tcode,
                ofi_provider=ofi_provider.encode() if ofi_provider else None,
                ranks_per_node=ranks_per_node, timeout_ms=timeout_ms, log_level=lcode,
                progress=_REFUSED if bad_algo else pcode)
        self._algo = acode
        _mpi.ensure_initialized(_mpi.THREAD_MULTIPLE if progress == "thread"
                                else _mpi.THREAD_FUNNELED)
        fcomm = _mpi.fortran_handle(comm)
        ptr = ctypes.c_void_p()
        st = lib.epc_ctx_create_f(ctypes.byref(fcomm) if fcomm is not None else None,
                                  ctypes.byref(p), ctypes.byref(ptr))
        check_refused(st, local_error)  # the library refused it too, on every rank
        self._ptr = ptr.value
        self.hidden, self.num_experts, self.dtype = hidden, num_experts, dtype
        self.max_tokens_per_rank = max_tokens_per_rank or 8192  # the library's default
        self._dispatches = 0  # dispatches started, as the library counts them
        self._read_topology()
        _live_contexts.add(self)
        _install_excepthook()

    def _read_topology(self):
        topo, v = ctypes.c_void_p(), ctypes.c_int()
        check(lib.epc_ctx_topo(self._ptr, ctypes.byref(topo)), self._ptr)
        out = {}
        for name in ("num_ranks", "my_rank", "num_nodes", "ranks_per_node"):
            check(getattr(lib, "epc_topo_" + name)(topo, ctypes.byref(v)))
            out[name] = v.value
        self.rank, self.num_ranks = out["my_rank"], out["num_ranks"]
        self.num_nodes, self.ranks_per_node = out["num_nodes"], out["ranks_per_node"]
        self.node_of = []
        for r in range(self.num_ranks):
            check(lib.epc_topo_node_of(topo, r, ctypes.byref(v)))
            self.node_of.append(v.value)
        self.num_local_experts = self.num_experts // self.num_ranks

    # --- lifetime -----------------------------------------------------------

    def _live(self, fn):
        if self._ptr is None:
            raise EpcInvalidArgument("%s: the context is closed" % fn)
        return self._ptr

    def close(self):
        """Frees the context (collective; local after a failure or abort).
        Outstanding requests are abandoned and received views invalidated.
        Raises EpcTimeout / EpcPeerFailed when a peer did not take part (the
        context is freed on this rank anyway).  Closing twice is a no-op."""
        if self._ptr is None:
            return
        ptr, self._ptr = self._ptr, None
        for r in list(self._requests):
            r.done, r._ptr = True, None
            r._error = EpcInvalidArgument("the request's context was closed")
        self._requests.clear()
        _live_contexts.discard(self)
        check(lib.epc_ctx_destroy(ptr))

    def abort(self, reason=None):
        """Fails fast: every peer in or entering a collective on the context
        gets EpcPeerFailed naming this rank and `reason` within milliseconds;
        then only close() remains.  Local."""
        if self._ptr is not None:
            check(lib.epc_ctx_abort(self._ptr, (reason or "").encode()[:511] or None),
                  self._ptr)

    def warmup(self, tokens=None, algo=None):
        """Pays the first calls' costs now (collective; epc_ctx_warmup): a
        dispatch and a combine of `tokens` synthetic tokens per rank
        (None: max_tokens_per_rank) through both buffer sets with `algo`
        ("hier", "flat", None: the context's), so that the shared regions,
        transport buffers and scratch are sized and populated before the
        first real call.  Counts as two dispatches: received views and
        handles of earlier dispatches become invalid.  Raises
        EpcInvalidArgument / EpcCapacity (tokens < 0 / above
        max_tokens_per_rank), EpcPeerFailed, ..."""
        ptr = self._live("warmup")
        code, local_error = _code(_ALGOS, algo, "algo")
        code = code or self._algo
        tokens = self.max_tokens_per_rank if tokens is None else tokens
        if not isinstance(tokens, int):
            local_error, tokens = EpcInvalidArgument("tokens = %r (an int)" % (tokens,)), -1
        try:
            check_refused(lib.epc_ctx_warmup(ptr, code, tokens), local_error, ptr)
        finally:
            self._dispatches += 2  # both buffer sets were written

    def agree_placement(self, placement):
        """Collective: every rank holds the same Placement, whose slots are
        this context's experts (epc_placement_agree).  EpcMismatch on every
        rank when the tables differ; EpcInvalidArgument when it does not fit
        the context (its error on that rank, EpcPeerFailed elsewhere)."""
        ptr = self._live("agree_placement")
        pp, local_error = placement_ptr(placement, "placement")
        check_refused(lib.epc_placement_agree(ptr, pp), local_error, ptr)

    def move_weights(self, old_placement, new_placement, old_weights, new_weights=None):
        """Collective: expert weights from old_placement's slots to
        new_placement's (epc_placement_move_weights).  old_weights: a CPU
        tensor [old slots_per_rank, ...] of this rank's slots; new_weights:
        [new slots_per_rank, ...] of the same dtype and row shape (None: a new
        one).  Returns new_weights."""
        ptr = self._live("move_weights")
        po, bad_old = placement_ptr(old_placement, "old_placement")
        pn, bad_new = placement_ptr(new_placement, "new_placement")
        try:
            if bad_old or bad_new:
                raise bad_old or bad_new
            new_weights = self._move_buffers(old_placement, new_placement, old_weights,
                                             new_weights)
            old, new_, slot_bytes = old_weights.data_ptr(), new_weights.data_ptr(), \
                old_weights[0].numel() * old_weights.element_size()
            local_error = None
        except EpcInvalidArgument as e:  # NULL buffers: the library tells the peers
            old, new_, slot_bytes, local_error = None, None, 1, e
        check_refused(lib.epc_placement_move_weights(ptr, po, pn, old, new_, slot_bytes),
                      local_error, ptr)
        return new_weights

    @staticmethod
    def _move_buffers(old_placement, new_placement, old_weights, new_weights):
        """move_weights' checked new_weights (made when None); raises
        EpcInvalidArgument naming the tensor that does not fit."""
        if not isinstance(old_weights, torch.Tensor) or old_weights.dim() < 1 or \
                old_weights.device.type != "cpu" or not old_weights.is_contiguous() or \
                old_weights.shape[0] != old_placement.slots_per_rank:
            raise EpcInvalidArgument("old_weights must be a contiguous CPU tensor [%d, ...]"
                                     % old_placement.slots_per_rank)
        shape = (new_placement.slots_per_rank,) + tuple(old_weights.shape[1:])
        if new_weights is None:
            new_weights = torch.empty(shape, dtype=old_weights.dtype)
        if not isinstance(new_weights, torch.Tensor) or tuple(new_weights.shape) != shape or \
                new_weights.dtype != old_weights.dtype or not new_weights.is_contiguous() or \
                new_weights.device.type != "cpu":
            raise EpcInvalidArgument("new_weights must be a contiguous CPU %s tensor %s"
                                     % (old_weights.dtype, list(shape)))
        return new_weights

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        # The library's own errors were already agreed or told to the peers.
        if exc_type is not None and self._ptr is not None and \
                not issubclass(exc_type, EpcError):
            self.abort("%s: %s" % (exc_type.__name__, exc))
        try:
            self.close()
        except Exception:
            if exc_type is None:
                raise

    # --- received views -----------------------------------------------------

    def view_invalid_reason(self, seq):
        """Why the rows of dispatch `seq` are gone, or None while valid."""
        if self._ptr is None:
            return "the context was closed"
        if self._dispatches > seq + 2:
            return "dispatch %d reused its buffers" % (seq + 2)
        return None

    # --- dispatch -----------------------------------------------------------

    def _fp8_given(self, x, T):
        """(q, scales) as the library reads them, or EpcInvalidArgument."""
        if len(x) != 2:
            raise EpcInvalidArgument("x as a tuple must be (q, scales)")
        if self.hidden % FP8_BLOCK:
            raise EpcInvalidArgument("FP8 needs hidden (%d) a multiple of %d"
                                     % (self.hidden, FP8_BLOCK))
        return (_check_rows(x[0], "x[0] (e4m3 bits)", T, self.hidden, torch.uint8),
                _check_rows(x[1], "x[1] (scales)", T, self.hidden // FP8_BLOCK, torch.float32))

    def _dispatch_inputs(self, x, topk_idx, topk_weights, handle):
        """(x, idx32, weights, T, k, error): the tensors the library reads
        (x a (q, scales) pair when given so), or the first bad argument's
        error (then reported to the peers too)."""
        try:
            if not isinstance(topk_idx, torch.Tensor) or topk_idx.dim() != 2:
                raise EpcInvalidArgument("topk_idx must be a 2-D tensor [T, k]")
            if topk_idx.dtype not in (torch.int32, torch.int64):
                raise EpcInvalidArgument("topk_idx.dtype = %s (int32 or int64)" % topk_idx.dtype)
            T, k = topk_idx.shape
            if topk_idx.dtype == torch.int64 and T * k > 0 and (
                    int(topk_idx.min()) < -1 or int(topk_idx.max()) >= self.num_experts):
                bad = ((topk_idx < -1) | (topk_idx >= self.num_experts)).nonzero()[0].tolist()
                raise EpcInvalidArgument("topk_idx[%d][%d] = %d is outside [-1, %d)" % (
                    bad[0], bad[1], int(topk_idx[bad[0], bad[1]]), self.num_experts))
            idx = topk_idx.to(torch.int32).contiguous()
            if isinstance(x, tuple):
                x = self._fp8_given(x, T)
            else:
                x = _check_rows(x, "x", T, self.hidden, self.dtype)
            w = None
            if topk_weights is not None:
                if not isinstance(topk_weights, torch.Tensor) or \
                        tuple(topk_weights.shape) != (T, k):
                    raise EpcInvalidArgument("topk_weights must be [T, k] = [%d, %d]" % (T, k))
                w = topk_weights.detach().to(torch.float32).contiguous()
            if handle is not None and (not isinstance(handle, Handle) or handle.ctx is not self
                                       or handle._ptr is None):
                raise EpcInvalidArgument("handle is not a live Handle of this context")
            return x, idx, w, T, k, None
        except EpcInvalidArgument as e:
            return None, None, None, -1, 1, e

    def dispatch(self, x, topk_idx, topk_weights=None, handle=None, expert_alignment=1,
                 algo=None, async_op=False, copy=False, payload=None):
        """Sends each token to the ranks that own its experts (collective).

        Args:
            x: [T, hidden] tensor of the context's dtype (CPU); T may differ
                per rank and be 0.  Or, already in FP8, a tuple (q, scales):
                q uint8 [T, hidden] of e4m3 bits, scales float32
                [T, hidden/128] (as epcomm.fp8_quantize gives).
            topk_idx: [T, k] int32 or int64 expert ids, -1 for an empty slot.
            topk_weights: [T, k] float weights (None: every weight 1).
            handle: a Handle of an earlier dispatch with the same topk_idx to
                skip the count exchange (cached mode), or None for a new one.
            expert_alignment (int): pad each expert's group to a multiple.
            algo: "hier", "flat" or None (the context's); the same on all ranks.
            async_op (bool): return a Request whose wait() gives the result.
            copy (bool): recv_x as a tensor of its own instead of a view of
                the library's buffers (ReceivedTensor, valid until the
                second dispatch after this one).
            payload: None (the context's dtype), "fp8" or "fp8_ue8m0": x is
                cast once per token at its source to e4m3 with a float32
                scale per 128 elements (UE8M0: powers of two); implied by a
                (q, scales) x.  The same kind (native or FP8) on every rank.

        Returns:
            (recv_x, recv_topk_weights, recv_src_info, num_recv_tokens_per_expert_list,
            handle): recv_x [num_rows, hidden] in the context's dtype, rows
            expert-major (local expert, source rank, source token), each
            group padded to the alignment with zero rows; recv_topk_weights
            float32 [num_rows] (0 on padding); recv_src_info a RecvInfo;
            the list holds each local expert's group size (padding
            included); handle the Handle for combine.  With an FP8 payload
            recv_x is a pair (q, scales): q uint8 [num_rows, hidden] of e4m3
            bits and scales float32 [num_rows, hidden/128], views whose rows
            are hidden + hidden/32 bytes apart in the library's buffer
            (contiguous copies with copy=True); epcomm.fp8_dequantize turns
            them into the context's dtype for an expert that wants it.

        Raises EpcInvalidArgument / EpcCapacity (this rank's input, named),
        EpcPeerFailed (another rank's, naming it), EpcMismatch, EpcTimeout, ...
        """
        ptr = self._live("dispatch")
        code, bad_payload = _code(_PAYLOADS, payload, "payload")
        algo_code, bad_algo = _code(_ALGOS, algo, "algo")
        x_c, idx, w, T, k, local_error = self._dispatch_inputs(x, topk_idx, topk_weights, handle)
        if isinstance(x, tuple) and code == _PAYLOADS["fp8_ue8m0"]:
            bad_payload = EpcInvalidArgument(
                "payload = 'fp8_ue8m0' casts x: pass x, not (q, scales)")
        local_error = bad_payload or bad_algo or local_error
        if local_error is not None:  # a count the library rejects: the peers are told
            x_c, idx, w, T, k, code, algo_code = None, None, None, -1, 1, 0, 0
        scales = None
        if isinstance(x_c, tuple):
            (x_c, scales), code = x_c, _FP8_GIVEN
        args = new(DispatchArgs, x=pointer(x_c), num_tokens=T, topk=k, topk_idx=pointer(idx),
                   topk_weights=pointer(w), expert_alignment=expert_alignment,
                   algo=algo_code or self._algo, payload=code,
                   x_scales=pointer(scales))
        out = new(DispatchOut)
        hptr = ctypes.c_void_p(handle._ptr if handle is not None and local_error is None
                               else None)
        req = ctypes.c_void_p()
        check(lib.epc_dispatch_start(ptr, ctypes.byref(args), ctypes.byref(out),
                                     ctypes.byref(hptr), ctypes.byref(req)), ptr)
        seq = self._dispatches
        self._dispatches += 1

        def finish():
            h = handle
            if h is None:
                h = Handle(self, hptr.value, idx, out.num_rows, algo, expert_alignment)
            h.num_rows = out.num_rows
            return self._received(out, h, seq, copy, code != 0)

        r = Request(self, req.value, finish, (x_c, scales, idx, w, args, out, hptr), local_error)
        return r if async_op else r.wait()

    def _received_rows(self, out, seq, copy, fp8):
        """recv_x: the rows as a view of the library's buffer (guarded) or
        a copy; for FP8 the pair (q, scales) of strided views."""
        n, H, stride = out.num_rows, self.hidden, out.row_stride
        if fp8:
            raw = from_address(out.rows, n * stride, torch.uint8)
            views = [raw.as_strided((n, H), (stride, 1)) if n else raw.view(0, H)]
            sc = from_address(out.scales, (n * stride - H) // 4 if n else 0, torch.float32)
            views.append(sc.as_strided((n, H // FP8_BLOCK), (stride // 4, 1)) if n
                         else sc.view(0, H // FP8_BLOCK))
            names = ("recv_x[0]", "recv_x[1]")
        else:
            views, names = [from_address(out.rows, n * H, self.dtype).view(n, H)], ("recv_x",)
        if copy:
            views = [v.clone() for v in views]
        elif n > 0:
            views = [ReceivedTensor.wrap(v, Guard(self, seq, out.rows, n * stride, name))
                     for v, name in zip(views, names)]
        return tuple(views) if fp8 else views[0]

    def _received(self, out, handle, seq, copy, fp8):
        n, L = out.num_rows, out.num_local_experts
        recv_x = self._received_rows(out, seq, copy, fp8)
        begin = copy_array(out.expert_begin, L + 1, torch.int32).to(torch.int64)
        count = copy_array(out.expert_count, L, torch.int32).to(torch.int64)
        local = copy_array(out.local_expert, n, torch.int32)
        src_rank = copy_array(out.src_rank, n, torch.int32)
        expert = local + self.rank * L
        # the library marks padding rows by src_rank only: give them -1 in
        # local_expert and expert too (skipped when no group was padded,
        # the common case, to keep the per-call cost off large T)
        if int(count.sum()) != n:
            pad = src_rank < 0
            local.masked_fill_(pad, -1)
            expert.masked_fill_(pad, -1)
        info = RecvInfo(src_rank, copy_array(out.src_token, n, torch.int32), local, expert,
                        begin, count)
        weights = copy_array(out.weight, n, torch.float32)
        return recv_x, weights, info, (begin[1:] - begin[:-1]).tolist(), handle

    # --- combine ------------------------------------------------------------

    def _combine_inputs(self, expert_out, handle, topk_weights, out):
        """combine's checked (expert_out, row scalars, y); raises
        EpcInvalidArgument naming what is wrong."""
        T, n = handle.num_tokens, handle.num_rows
        eo = _check_rows(expert_out, "expert_out", n, self.hidden, self.dtype)
        rs = None
        if topk_weights is not None:
            if not isinstance(topk_weights, torch.Tensor):
                raise EpcInvalidArgument("topk_weights must be a tensor of num_rows = %d" % n)
            rs = topk_weights.detach().to(torch.float32).contiguous().view(-1)
            if rs.numel() != n:
                raise EpcInvalidArgument("topk_weights has %d elements, not num_rows = %d"
                                         % (rs.numel(), n))
        return eo, rs, combine_out(out, T, self.hidden, self.dtype)

    def combine(self, expert_out, handle, topk_weights=None, weighted=True, async_op=False,
                out=None, wire=None, order=None):
        """Brings expert outputs back to their tokens (collective).

        Args:
            expert_out: [num_rows, hidden] in the context's dtype, rows in the
                dispatch's order (padding rows ignored).
            handle: the dispatch's Handle.
            topk_weights: optional float32 [num_rows] per-row scalars sent back
                with the rows; combined_topk_weights[t, j] is the scalar of the
                row token t sent to its j-th expert (0 for empty slots).  The
                backward of dispatch uses it for the weights' gradient.  Give it
                on every rank or on none (EpcMismatch otherwise).
            weighted (bool): y[t] = sum of weight x row (the dispatch's
                topk_weights; 1 when none were given), else the plain sum
                (DeepEP's combine).  Sums run in fp32 in a fixed order: bitwise
                reproducible, the same for hier and flat.
            async_op (bool): return a Request whose wait() gives the result.
            out: optional [T, hidden] tensor of the context's dtype to write y
                into (reused across steps it saves the page faults of a
                fresh allocation: about 14,000 for T=4096 x 7168 bf16).
            wire: "fp32" (None, the default: exact) or "bf16": node sums
                travel between nodes as bf16, half hier's bytes there (each
                node's sum rounded as it leaves; still reproducible and the
                same for hier and flat).  The same on every rank.
            order: "nodes" (None, the default: outputs summed per node by
                logical expert, the node sums added) or "logical" (one sum
                by logical expert, as the low-latency combine: any agreed
                placement gives the bits of none, every output row travels
                back as it is; not with wire="bf16").  The same on every
                rank.

        Returns:
            (y, combined_topk_weights): y [T, hidden] in the context's dtype,
            zeros for tokens with no expert; combined_topk_weights float32
            [T, k] or None.
        """
        ptr = self._live("combine")
        wire_code, bad_wire = _code(_WIRES, wire, "wire")
        order_code, bad_order = _code(_ORDERS, order, "order")
        live = isinstance(handle, Handle) and handle.ctx is self and handle._ptr is not None
        local_error = None
        T, k = (handle.num_tokens, handle.topk) if live else (0, 1)
        try:
            if not live:
                raise EpcInvalidArgument("handle is not a live Handle of this context")
            eo, rs, y = self._combine_inputs(expert_out, handle, topk_weights, out)
            if bad_wire or bad_order:  # the library rejects the code and tells the peers
                raise bad_wire or bad_order
        except EpcInvalidArgument as e:
            # the library then fails this rank (handle NULL; else expert_out
            # and y NULL with rows or tokens) and tells the peers
            eo, rs, y, local_error = None, None, torch.empty((T, self.hidden),
                                                             dtype=self.dtype), e
        scal = torch.empty((T, k), dtype=torch.float32) if topk_weights is not None else None
        args = new(CombineArgs, expert_out=pointer(eo),
                   y=pointer(y if local_error is None else None), unweighted=int(not weighted),
                   scalar_channel=int(topk_weights is not None), row_scalars=pointer(rs),
                   topk_scalars=pointer(scal), wire=wire_code, order=order_code)
        req = ctypes.c_void_p()
        check(lib.epc_combine_start(ptr, handle._ptr if live else None, ctypes.byref(args),
                                    ctypes.byref(req)), ptr)
        r = Request(self, req.value, lambda: (y, scal), (eo, rs, y, scal, args, handle),
                    local_error)
        return r if async_op else r.wait()

    # --- statistics ---------------------------------------------------------

    def stats(self):
        """The context's traffic and memory (epc_ctx_stats) as a dict."""
        ptr = self._live("stats")
        s = new(CtxStats)
        check(lib.epc_ctx_stats(ptr, ctypes.byref(s)), ptr)
        c = new(CollStats)
        check(lib.epc_coll_stats(ptr, ctypes.byref(c)), ptr)
        return {"bytes_sent": list(s.bytes_sent), "bytes_recv": list(s.bytes_recv),
                "shm_bytes": s.shm_bytes, "net_bytes": s.net_bytes,
                "transport": s.transport.decode(), "provider": s.provider.decode(),
                "transport_reason": s.transport_reason.decode(),
                "ll_transfer": s.ll_transfer.decode(),
                "dispatches": c.dispatches, "combines": c.combines,
                "shm_grows": s.shm_grows, "net_grows": s.net_grows}

    def get_dispatch_layout(self, topk_idx):
        """DeepEP's get_dispatch_layout for this context's ranks and nodes
        (see epcomm.get_dispatch_layout)."""
        from .router import get_dispatch_layout
        return get_dispatch_layout(topk_idx, self.num_experts, self.num_ranks,
                                   self.ranks_per_node or self.num_ranks)


# Contexts an uncaught exception aborts before Python exits, so that peers
# learn at once (EpcPeerFailed naming this rank) instead of at their timeout.
_live_contexts = set()
_hook_installed = False


def _install_excepthook():
    global _hook_installed
    if _hook_installed:
        return
    previous = sys.excepthook

    def hook(exc_type, exc, tb):
        for c in list(_live_contexts):
            try:
                c.abort("uncaught %s: %s" % (exc_type.__name__, exc))
            except Exception:
                pass
        previous(exc_type, exc, tb)

    sys.excepthook = hook
    _hook_installed = True
