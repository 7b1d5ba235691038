# SPDX-License-Identifier: BSD-3-Clause
"""The low-latency mode for decoding (epc_ll_*), as Context methods:
buffers fixed once for up to max_tokens tokens per rank, no count round,
one message (or one block of rows and a flag) per peer per call, the
receive completed by a hook, two buffer sets alternating."""
import ctypes

import torch

from ._lib import lib, new, LLDispatchArgs, LLOut, LLCombineArgs
from ._request import Request
from ._tensors import from_address, copy_array, pointer, check_rows, combine_out
from .errors import check, check_refused, EpcInvalidArgument
from .fp8 import BLOCK as FP8_BLOCK


class LowLatencyHandle:
    """What a low-latency dispatch leaves for its combine.  recv_count
    (int32 [L]), src_count (int32 [L, num_ranks]: rows expert e got from
    rank s, at slots s*max_tokens ..), src_token (int32 [L, slots]: each
    row's index on its source, where a row is); the received rows are
    valid until this rank's combine of them starts (peers may then send the
    dispatch two after into the same buffers), or without a combine until
    that dispatch."""

    def __init__(self, ctx, out, num_tokens, topk, fp8):
        self.ctx, self._out, self.num_tokens, self.topk, self.fp8 = ctx, out, num_tokens, topk, fp8
        L, S = out.num_local_experts, out.slots
        self.num_local_experts, self.slots, self.max_tokens = L, S, out.max_tokens
        self.recv_count = copy_array(out.count, L, torch.int32)
        self.src_count = copy_array(out.src_count, L * ctx.num_ranks, torch.int32).view(
            L, ctx.num_ranks)
        self.src_token = copy_array(out.src_token, L * S, torch.int32).view(L, S)


class LowLatencyMixin:
    """Context's low-latency methods (see docs/LOW_LATENCY.md)."""

    def low_latency_buffer_size(self, max_tokens):
        """Bytes per rank enable_low_latency(max_tokens) reserves (local)."""
        ptr, n = self._live("low_latency_buffer_size"), ctypes.c_size_t()
        check(lib.epc_ll_buffer_size(ptr, max_tokens, ctypes.byref(n)), ptr)
        return n.value

    def enable_low_latency(self, max_tokens):
        """Fixes the mode at max_tokens tokens per rank per call and reserves
        its buffers (collective, once).  Raises EpcInvalidArgument (outside
        [1, 65536], already enabled), EpcMismatch (ranks differ), ..."""
        ptr = self._live("enable_low_latency")
        local_error = None
        if not isinstance(max_tokens, int):  # 0: refused by the library, told to the peers
            local_error = EpcInvalidArgument("max_tokens = %r (an int)" % (max_tokens,))
        check_refused(lib.epc_ll_enable(ptr, max_tokens if local_error is None else 0),
                      local_error, ptr)
        self.low_latency_max_tokens = max_tokens

    def _ll_inputs(self, x, topk_idx):
        """(x, idx32, T, k, error): what the library reads, or the first bad
        argument's error (the library then tells the peers: x NULL)."""
        try:
            if not isinstance(topk_idx, torch.Tensor) or topk_idx.dim() != 2 or \
                    topk_idx.dtype not in (torch.int32, torch.int64):
                raise EpcInvalidArgument("topk_idx must be a 2-D int32/int64 tensor [T, k]")
            T, k = topk_idx.shape
            if topk_idx.dtype == torch.int64 and T * k > 0 and (
                    int(topk_idx.min()) < -1 or int(topk_idx.max()) >= self.num_experts):
                raise EpcInvalidArgument("topk_idx has an expert id outside [-1, %d)"
                                         % self.num_experts)
            idx = topk_idx.to(torch.int32).contiguous()
            return check_rows(x, "x", T, self.hidden, self.dtype), idx, T, k, None
        except EpcInvalidArgument as e:
            T = topk_idx.shape[0] if isinstance(topk_idx, torch.Tensor) and \
                topk_idx.dim() == 2 else 1
            return None, None, max(T, 1), 1, e

    def low_latency_dispatch(self, x, topk_idx, use_fp8=False, return_recv_hook=False):
        """Sends each token straight to the ranks owning its experts
        (collective; every rank makes the same low-latency calls in order).

        Args:
            x: [T, hidden] of the context's dtype, T <= max_tokens (0 allowed).
            topk_idx: [T, k] int32/int64 expert ids, -1 for none.
            use_fp8: cast each token once at its source to e4m3 with a
                float32 scale per 128 elements (the same on every rank).
            return_recv_hook: return a hook instead of waiting: the call
                returns once every row is stored or handed to the transport;
                calling hook() receives and returns what the blocking call
                returns (DeepEP's returns its tensors at once and fills them
                in the hook; here the hook returns them).

        Returns:
            (recv_x, recv_count, handle): recv_x [L, slots, hidden] (slots =
            num_ranks x max_tokens; rows of expert e from rank s at slots
            s*max_tokens .. + handle.src_count[e, s]) viewing the library's
            buffer, or for FP8 the pair (q uint8 [L, slots, hidden], scales
            float32 [L, slots, hidden/128]); recv_count int32 [L]; handle a
            LowLatencyHandle.  Or, with return_recv_hook, the hook.
        """
        ptr = self._live("low_latency_dispatch")
        x_c, idx, T, k, local_error = self._ll_inputs(x, topk_idx)
        args = new(LLDispatchArgs, x=pointer(x_c), num_tokens=T, topk=k, topk_idx=pointer(idx),
                   payload=1 if use_fp8 else 0)
        out, req = new(LLOut), ctypes.c_void_p()
        check(lib.epc_ll_dispatch(ptr, ctypes.byref(args), ctypes.byref(out), ctypes.byref(req)),
              ptr)

        def finish():
            h = LowLatencyHandle(self, out, T, k, bool(use_fp8))
            return self._ll_rows(out, h), h.recv_count, h

        r = Request(self, req.value, finish, (x_c, idx, args, out), local_error)
        return r.wait if return_recv_hook else r.wait()

    def _ll_rows(self, out, h):
        """recv_x as strided views of the library's buffer."""
        L, S, H, stride = out.num_local_experts, out.slots, self.hidden, out.row_stride
        if h.fp8:
            raw = from_address(out.rows, L * S * stride, torch.uint8)
            sc = from_address(out.scales, (L * S * stride - H) // 4, torch.float32)
            return (raw.as_strided((L, S, H), (S * stride, stride, 1)),
                    sc.as_strided((L, S, H // FP8_BLOCK), (S * stride // 4, stride // 4, 1)))
        es = torch.empty(0, dtype=self.dtype).element_size()
        rows = from_address(out.rows, L * S * stride // es, self.dtype)
        return rows.as_strided((L, S, H), (S * stride // es, stride // es, 1))

    def _ll_combine_inputs(self, x, topk_weights, handle, out):
        """low_latency_combine's checked (expert_out, weights, y); raises
        EpcInvalidArgument naming what is wrong."""
        T, k, L, S = handle.num_tokens, handle.topk, handle.num_local_experts, handle.slots
        rows = isinstance(x, torch.Tensor) and x.numel() == L * S * self.hidden
        eo = check_rows(x.reshape(L * S, self.hidden) if rows else x, "x", L * S, self.hidden,
                        self.dtype)
        w = None
        if topk_weights is not None:
            if not isinstance(topk_weights, torch.Tensor) or tuple(topk_weights.shape) != (T, k):
                raise EpcInvalidArgument("topk_weights must be [T, k] = [%d, %d]" % (T, k))
            w = topk_weights.detach().to(torch.float32).contiguous()
        return eo, w, combine_out(out, T, self.hidden, self.dtype)

    def get_next_low_latency_combine_buffer(self, handle):
        """The library's [L, slots, hidden] buffer (context dtype, shared
        memory) for handle's expert outputs: written there, they reach
        same-node sources with no copy (zero copy)."""
        ptr, buf = self._live("get_next_low_latency_combine_buffer"), ctypes.c_void_p()
        check(lib.epc_ll_combine_buffer(ptr, ctypes.byref(handle._out), ctypes.byref(buf)), ptr)
        L, S = handle.num_local_experts, handle.slots
        return from_address(buf.value, L * S * self.hidden, self.dtype).view(L, S, self.hidden)

    def low_latency_combine(self, x, topk_weights, handle, return_recv_hook=False, out=None):
        """Brings each expert output back to its token and sums them
        (collective): y[t] = sum over t's experts, by expert id ascending,
        of weight x output, in fp32 from zero (bitwise the same every run).

        Args:
            x: [L, slots, hidden] expert outputs of the context's dtype at
                the received rows' places (get_next_low_latency_combine_buffer's
                tensor: no copy).
            topk_weights: [T, k] float weights of the dispatch's tokens (None: 1).
            handle: the dispatch's LowLatencyHandle.
            return_recv_hook: return a hook whose call receives and returns y.
            out: optional [T, hidden] tensor to write y into.
        Returns y [T, hidden] (or the hook).
        """
        ptr = self._live("low_latency_combine")
        local_error, dispatched = None, None
        if isinstance(handle, LowLatencyHandle) and handle.ctx is self:
            T, dispatched = handle.num_tokens, ctypes.pointer(handle._out)
            try:
                eo, w, y = self._ll_combine_inputs(x, topk_weights, handle, out)
            except EpcInvalidArgument as e:
                local_error = e
        else:
            T, local_error = 0, EpcInvalidArgument(
                "handle is not a LowLatencyHandle of this context")
        if local_error is not None:
            # nothing the library could use: it fails this rank (handle:
            # dispatched NULL; else expert_out and y NULL with rows or
            # tokens) and tells the peers, who would otherwise wait for it
            eo, w, y = None, None, torch.empty((T, self.hidden), dtype=self.dtype)
        args = new(LLCombineArgs, dispatched=dispatched, expert_out=pointer(eo),
                   topk_weights=pointer(w), y=pointer(y if local_error is None else None))
        req = ctypes.c_void_p()
        check(lib.epc_ll_combine(ptr, ctypes.byref(args), ctypes.byref(req)), ptr)
        r = Request(self, req.value, lambda: y, (eo, w, y, args, handle), local_error)
        return r.wait if return_recv_hook else r.wait()
