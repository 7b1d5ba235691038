# SPDX-License-Identifier: BSD-3-Clause
"""Dispatch and combine as differentiable torch operations, and an MoE layer.

The backward of dispatch is a combine of the received rows' gradients (a
plain sum back to each token), with the per-row gradients of the weights
through combine's scalar channel to their [T, k] slots; the backward of
combine is a cached dispatch of y's gradient on the same handle.  Received
rows are copies here: autograd keeps its inputs past the next dispatch,
which reuses the library's buffers.
"""
import collections

import torch

from .errors import EpcInvalidArgument

Dispatched = collections.namedtuple(
    "Dispatched", "recv_x recv_topk_weights recv_src_info num_recv_tokens_per_expert_list handle")


class _Box:
    """Carries the non-tensor results of an autograd forward to the caller."""
    __slots__ = ("info", "counts", "handle", "algo")


class EPDispatch(torch.autograd.Function):
    """apply(x, topk_weights, topk_idx, ctx, box, alignment, algo) ->
    (recv_x, recv_topk_weights); box receives the info, counts and handle.
    Use epcomm.autograd.dispatch rather than calling it directly."""

    @staticmethod
    def forward(fctx, x, topk_weights, topk_idx, ep, box, alignment, algo):
        recv_x, recv_w, info, counts, handle = ep.dispatch(
            x, topk_idx, topk_weights, expert_alignment=alignment, algo=algo, copy=True)
        box.info, box.counts, box.handle, box.algo = info, counts, handle, algo
        fctx.ep, fctx.handle, fctx.has_w = ep, handle, topk_weights is not None
        return recv_x, recv_w

    @staticmethod
    def backward(fctx, grad_recv_x, grad_recv_w):
        ep, h = fctx.ep, fctx.handle
        if grad_recv_x is None:
            grad_recv_x = torch.zeros((h.num_rows, ep.hidden), dtype=ep.dtype)
        row_scalars = None
        if fctx.has_w:
            row_scalars = grad_recv_w if grad_recv_w is not None else \
                torch.zeros(h.num_rows, dtype=torch.float32)
        grad_x, grad_w = ep.combine(grad_recv_x.to(ep.dtype).contiguous(), h,
                                    topk_weights=row_scalars, weighted=False)
        return grad_x, grad_w, None, None, None, None, None


class EPCombine(torch.autograd.Function):
    """apply(expert_out, ctx, handle, algo) -> y, the plain sum of each token's
    rows.  Use epcomm.autograd.combine rather than calling it directly."""

    @staticmethod
    def forward(fctx, expert_out, ep, handle, algo):
        y, _ = ep.combine(expert_out, handle, weighted=False)
        fctx.ep, fctx.handle, fctx.algo = ep, handle, algo
        return y

    @staticmethod
    def backward(fctx, grad_y):
        ep, h = fctx.ep, fctx.handle
        rows, _, _, _, _ = ep.dispatch(grad_y.to(ep.dtype).contiguous(), h.topk_idx, handle=h,
                                       expert_alignment=h.alignment, algo=fctx.algo, copy=True)
        return rows, None, None, None


def dispatch(ep, x, topk_idx, topk_weights=None, expert_alignment=1, algo=None):
    """Differentiable Context.dispatch (blocking; received rows are copies).

    Args:
        ep: the Context.
        x: [T, hidden] of the context's dtype; its gradient is the sum of the
            gradients of its received copies.
        topk_idx: [T, k] int32/int64 expert ids (-1: empty slot).
        topk_weights: optional float32 [T, k]; its gradient comes back
            through combine's scalar channel.
        expert_alignment (int), algo: as Context.dispatch.
    Returns a Dispatched (recv_x, recv_topk_weights, recv_src_info,
    num_recv_tokens_per_expert_list, handle); the first two carry gradients.
    The handle's combine must use epcomm.autograd.combine (unweighted): apply
    recv_topk_weights in the experts, as DeepEP's users do.
    """
    box = _Box()
    recv_x, recv_w = EPDispatch.apply(x, topk_weights, topk_idx, ep, box,
                                      expert_alignment, algo)
    if topk_weights is None:
        recv_w = recv_w.detach()
    return Dispatched(recv_x, recv_w, box.info, box.counts, box.handle)


def combine(ep, expert_out, handle, algo=None):
    """Differentiable plain-sum Context.combine: expert_out [num_rows, hidden]
    of the context's dtype -> y [T, hidden].  Its backward is a cached
    dispatch of y's gradient on the same handle."""
    if algo is None and handle is not None and hasattr(handle, "algo"):
        algo = handle.algo
    return EPCombine.apply(expert_out, ep, handle, algo)


class MoE(torch.nn.Module):
    """A mixture-of-experts layer over an epcomm Context: a gate, dispatch,
    one expert per local expert (Linear, or a SwiGLU MLP when ffn_hidden is
    given), combine.  Rank r holds experts r*E/R .. (r+1)*E/R - 1.

    Args:
        ep: the Context (its hidden, num_experts and dtype are the layer's).
        topk (int): experts per token.
        gate: "torch" (softmax over a Linear's logits, top-k in torch) or
            "library" (epcomm's Router chooses the experts, node-limited
            with max_nodes_per_token; the weights are the softmax scores of
            the chosen experts, so the gate still learns).
        max_nodes_per_token (int): the node limit of the library gate.
        ffn_hidden (int): SwiGLU width; None: each expert is one Linear.
        algo: "hier" or "flat" (None: the context's).
        seed (int): parameters are drawn from it, the same on every rank, so
            a single-process reference can rebuild them.
    forward(x [T, hidden]) -> [T, hidden] of the context's dtype.
    """

    def __init__(self, ep, topk, gate="torch", max_nodes_per_token=0, ffn_hidden=None,
                 algo=None, seed=0):
        super().__init__()
        if gate not in ("torch", "library"):
            raise EpcInvalidArgument("gate = %r (\"torch\" or \"library\")" % gate)
        self.ep, self.topk, self.algo, self.gate_kind = ep, topk, algo, gate
        E, H, L = ep.num_experts, ep.hidden, ep.num_local_experts
        g = torch.Generator().manual_seed(seed)
        self.gate = torch.nn.Linear(H, E, bias=False, dtype=torch.float32)
        with torch.no_grad():
            self.gate.weight.copy_(torch.randn(E, H, generator=g) / H ** 0.5)
        experts = [make_expert(H, ffn_hidden, ep.dtype, seed, e) for e in range(E)]
        self.experts = torch.nn.ModuleList(experts[ep.rank * L:(ep.rank + 1) * L])
        self.router = None
        if gate == "library":
            from .router import Router
            self.router = Router(E, topk, ep.num_ranks, ep.ranks_per_node or ep.num_ranks,
                                 max_nodes_per_token=max_nodes_per_token)

    def route(self, x):
        """(topk_idx int64 [T, k], topk_weights float32 [T, k], differentiable)."""
        scores = torch.softmax(self.gate(x.float()), dim=-1)
        if self.router is None:
            w, idx = torch.topk(scores, self.topk, dim=-1)
            return idx, w
        idx, _ = self.router(self.gate(x.float()).detach())
        return idx, torch.gather(scores, 1, idx)

    def forward(self, x):
        idx, w = self.route(x)
        d = dispatch(self.ep, x, idx, w, algo=self.algo)
        begin = d.recv_src_info.expert_begin.tolist()
        outs = []
        for e, expert in enumerate(self.experts):
            b, end = begin[e], begin[e + 1]
            rows = d.recv_x[b:end]
            outs.append((expert(rows).float() * d.recv_topk_weights[b:end, None]).to(self.ep.dtype))
        out = torch.cat(outs) if outs else d.recv_x * 0
        return combine(self.ep, out, d.handle, self.algo)


class SwiGLU(torch.nn.Module):
    """w2(silu(w1 x) * w3 x), as DeepSeek-V3's experts."""

    def __init__(self, hidden, ffn_hidden, dtype):
        super().__init__()
        self.w1 = torch.nn.Linear(hidden, ffn_hidden, bias=False, dtype=dtype)
        self.w3 = torch.nn.Linear(hidden, ffn_hidden, bias=False, dtype=dtype)
        self.w2 = torch.nn.Linear(ffn_hidden, hidden, bias=False, dtype=dtype)

    def forward(self, x):
        return self.w2(torch.nn.functional.silu(self.w1(x)) * self.w3(x))


def make_expert(hidden, ffn_hidden, dtype, seed, expert):
    """Expert `expert` of a layer seeded `seed`: the same parameters on any
    rank or in a reference (drawn from its own generator)."""
    g = torch.Generator().manual_seed(seed * 100003 + expert + 1)
    m = torch.nn.Linear(hidden, hidden, bias=True, dtype=dtype) if ffn_hidden is None else \
        SwiGLU(hidden, ffn_hidden, dtype)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_((torch.randn(p.shape, generator=g) / hidden ** 0.5).to(dtype))
    return m
