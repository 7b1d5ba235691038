# SPDX-License-Identifier: BSD-3-Clause
"""Routing on torch tensors: the library's node-limited top-k gate (Router)
and the dispatch layout (get_dispatch_layout).  Pure computation, no MPI."""
import collections
import ctypes

import torch

from ._lib import lib, new, RouterParams, Layout
from .errors import check, EpcInvalidArgument

_SCORES = {"softmax": 0, "sigmoid": 1, "identity": 2}

DispatchLayout = collections.namedtuple(
    "DispatchLayout",
    "num_tokens_per_rank num_tokens_per_node num_tokens_per_expert is_token_in_rank "
    "is_token_in_node")
DispatchLayout.__doc__ = """As DeepEP's get_dispatch_layout: int32 counts of tokens per rank
[R], per node [nodes] and per expert [E] (a token counts once per rank or
node however many of its experts live there), and the bool masks
is_token_in_rank [T, R] and is_token_in_node [T, nodes]."""


class Router:
    """The node-limited top-k gate (epc_route; docs/ROUTING.md).

    Args:
        num_experts (int), topk (int): E and k.
        num_ranks (int): R (experts in contiguous blocks of E/R); 1 by default.
        ranks_per_node (int): nodes = R / ranks_per_node (0: one node).
        max_nodes_per_token (int): M, the node limit (0: none).
        num_groups, max_groups_per_token (int): group-limited routing.
        group_score_topk (int): scores summed to rank a node or group (0: auto).
        score_fn: "softmax", "sigmoid" (DeepSeek-V3) or "identity".
        expert_bias: optional float [E] added for selection only.
        normalize (bool): renormalise the k weights to sum 1.
        route_scale (float): weights are multiplied by it.
    Raises EpcInvalidArgument naming the field the library rejects.
    """

    def __init__(self, num_experts, topk, num_ranks=1, ranks_per_node=0,
                 max_nodes_per_token=0, num_groups=0, max_groups_per_token=0,
                 group_score_topk=0, score_fn="softmax", expert_bias=None, normalize=False,
                 route_scale=1.0):
        if score_fn not in _SCORES:
            raise EpcInvalidArgument("score_fn = %r (softmax, sigmoid or identity)" % score_fn)
        self._ptr = None
        bias = None
        if expert_bias is not None:
            bias = torch.as_tensor(expert_bias, dtype=torch.float32).contiguous().view(-1)
        p = new(RouterParams, num_experts=num_experts, topk=topk, num_ranks=num_ranks,
                ranks_per_node=ranks_per_node, max_nodes_per_token=max_nodes_per_token,
                num_groups=num_groups, max_groups_per_token=max_groups_per_token,
                group_score_topk=group_score_topk, score_fn=_SCORES[score_fn],
                expert_bias=ctypes.cast(bias.data_ptr(), ctypes.POINTER(ctypes.c_float))
                if bias is not None else None,
                expert_bias_len=bias.numel() if bias is not None else 0,
                normalize=int(bool(normalize)), route_scale=route_scale)
        ptr = ctypes.c_void_p()
        check(lib.epc_router_create(ctypes.byref(p), ctypes.byref(ptr)))
        self._ptr = ptr.value
        self.num_experts, self.topk = num_experts, topk
        self.num_ranks = num_ranks
        self.num_nodes = num_ranks // ranks_per_node if ranks_per_node else 1

    def __call__(self, logits):
        """logits float [T, E] -> (topk_idx int64 [T, k] best first,
        topk_weights float32 [T, k]).  EpcInvalidArgument for a NaN or
        infinite logit (naming token and expert) or a wrong shape."""
        if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or \
                logits.shape[1] != self.num_experts:
            raise EpcInvalidArgument("logits must be [T, %d]" % self.num_experts)
        lg = logits.detach().to(torch.float32).contiguous()
        T = lg.shape[0]
        idx = torch.empty((T, self.topk), dtype=torch.int32)
        w = torch.empty((T, self.topk), dtype=torch.float32)
        check(lib.epc_route(self._ptr, lg.data_ptr() if T else None, T,
                            idx.data_ptr() if T else None, w.data_ptr() if T else None))
        return idx.to(torch.int64), w

    def layout(self, topk_idx):
        """The DispatchLayout of topk_idx [T, k] (int32 or int64)."""
        idx = _idx32(topk_idx, self.num_experts)
        T = idx.shape[0]
        R, N, E = self.num_ranks, self.num_nodes, self.num_experts
        out = (torch.empty(R, dtype=torch.int32), torch.empty(N, dtype=torch.int32),
               torch.empty(E, dtype=torch.int32), torch.empty((T, R), dtype=torch.uint8),
               torch.empty((T, N), dtype=torch.uint8))
        lay = new(Layout, tokens_per_rank=out[0].data_ptr(), tokens_per_node=out[1].data_ptr(),
                  tokens_per_expert=out[2].data_ptr(),
                  token_in_rank=out[3].data_ptr() if T else None,
                  token_in_node=out[4].data_ptr() if T else None)
        if idx.shape[1] != self.topk:
            raise EpcInvalidArgument("topk_idx has %d columns, the router's k is %d"
                                     % (idx.shape[1], self.topk))
        check(lib.epc_layout(self._ptr, idx.data_ptr() if T else None, T, ctypes.byref(lay)))
        return DispatchLayout(out[0], out[1], out[2], out[3].bool(), out[4].bool())

    def close(self):
        if self._ptr is not None:
            lib.epc_router_destroy(self._ptr)
            self._ptr = None

    def __del__(self):
        self.close()


def _idx32(topk_idx, num_experts):
    if not isinstance(topk_idx, torch.Tensor) or topk_idx.dim() != 2 or \
            topk_idx.dtype not in (torch.int32, torch.int64):
        raise EpcInvalidArgument("topk_idx must be an int32 or int64 tensor [T, k]")
    if topk_idx.dtype == torch.int64 and topk_idx.numel() and (
            int(topk_idx.min()) < -1 or int(topk_idx.max()) >= num_experts):
        raise EpcInvalidArgument("topk_idx holds %d, outside [-1, %d)" % (
            int(topk_idx.max()) if int(topk_idx.max()) >= num_experts else int(topk_idx.min()),
            num_experts))
    return topk_idx.to(torch.int32).contiguous()


def get_dispatch_layout(topk_idx, num_experts, num_ranks, ranks_per_node=0):
    """DeepEP's get_dispatch_layout without a router: topk_idx [T, k] (int32 or
    int64, -1 for an empty slot) for E experts in contiguous blocks over
    num_ranks ranks of ranks_per_node each (0: one node) -> DispatchLayout.
    EpcInvalidArgument names a bad entry (outside [-1, E) or repeated in a
    token)."""
    k = topk_idx.shape[1] if isinstance(topk_idx, torch.Tensor) and topk_idx.dim() == 2 else 0
    r = Router(num_experts, max(1, min(k, num_experts)), num_ranks, ranks_per_node)
    try:
        return r.layout(topk_idx)
    finally:
        r.close()
