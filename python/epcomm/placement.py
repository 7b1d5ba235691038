# SPDX-License-Identifier: BSD-3-Clause
"""Expert placement on torch tensors (docs/PLACEMENT.md): which logical
expert each physical slot holds, the replica choice that maps a router's
topk_idx to slots before dispatch, the planners (DeepSeek's EPLB and
epcomm's), and the weight moves between two placements.  Pure computation;
the collectives (agreeing on a table, moving weights) are Context methods.
"""
import ctypes

import torch

from ._lib import lib, new, PlacementParams, PlacementInfo, PlacementPlanParams, SlotMove
from .errors import check, EpcInvalidArgument
from .router import _idx32

_ALGOS = {"balanced": 0, "eplb": 1}
_CHOICES = {"near": 0, "spread": 1, "balanced": 2, "limited": 3}


def live_ptr(placement, name):
    """(placement's pointer, None), or (None, EpcInvalidArgument naming
    `name`) when it is not an open Placement: a collective call then passes
    NULL, which the library refuses and tells the peers."""
    if isinstance(placement, Placement) and placement._ptr is not None:
        return placement._ptr, None
    return None, EpcInvalidArgument("%s is not an open Placement" % name)


class Placement:
    """A table of num_slots physical slots -> logical experts; slot s lives
    on rank s // slots_per_rank.  Build one from a table, or plan one
    (Placement.plan).  Args: slot_expert (int sequence or tensor [S]; None:
    the contiguous identity, S = E), num_experts, num_ranks, ranks_per_node
    (0: one node).  Raises EpcInvalidArgument naming what the library
    rejects (an entry outside [0, E), an expert without a slot, S not a
    multiple of the ranks, ...)."""

    def __init__(self, slot_expert=None, num_experts=None, num_ranks=1, ranks_per_node=0,
                 _ptr=None):
        self._ptr = None
        if _ptr is None:
            table = None
            if slot_expert is not None:
                table = torch.as_tensor(slot_expert, dtype=torch.int32).contiguous().view(-1)
            if num_experts is None:
                if table is None:
                    raise EpcInvalidArgument("num_experts is needed with the identity table")
                num_experts = int(table.max()) + 1 if table.numel() else 0
            p = new(PlacementParams, num_experts=num_experts, num_ranks=num_ranks,
                    ranks_per_node=ranks_per_node,
                    num_slots=table.numel() if table is not None else 0,
                    slot_expert=table.data_ptr() if table is not None else None)
            ptr = ctypes.c_void_p()
            check(lib.epc_placement_create(ctypes.byref(p), ctypes.byref(ptr)))
            _ptr = ptr.value
        self._ptr = _ptr
        info = new(PlacementInfo)
        check(lib.epc_placement_info(self._ptr, ctypes.byref(info)))
        self.num_experts, self.num_slots = info.num_experts, info.num_slots
        self.num_ranks, self.ranks_per_node = info.num_ranks, info.ranks_per_node
        self.slots_per_rank, self.max_replicas = info.slots_per_rank, info.max_replicas
        self.node_local = bool(info.node_local)

    @classmethod
    def plan(cls, expert_load, num_ranks, ranks_per_node=0, num_slots=0, num_groups=0,
             algo="balanced", expert_reach=None):
        """A placement for expert_load (float [E]: tokens per logical expert,
        e.g. Router.layout(...).num_tokens_per_expert summed over batches and
        ranks) over num_slots slots (E + redundant; 0: E).  num_groups: groups
        of E/G experts kept whole on one node (0: one per node, so
        node-limited routing stays feasible; 1: global).  algo: "balanced"
        (epcomm's, never worse than EPLB) or "eplb" (DeepSeek's reference).
        expert_reach: None, or float [E, nodes] from Placement.reach summed
        over batches and ranks: with one group per node the plan may add
        spill replicas; a plan with spills comes with choice "limited"
        (docs/PLACEMENT.md)."""
        if algo not in _ALGOS:
            raise EpcInvalidArgument("algo = %r (balanced or eplb)" % (algo,))
        load = torch.as_tensor(expert_load, dtype=torch.float64).contiguous().view(-1)
        reach = None
        if expert_reach is not None:
            reach = torch.as_tensor(expert_reach, dtype=torch.float64).contiguous()
            nodes = num_ranks // ranks_per_node if ranks_per_node else 1
            if tuple(reach.shape) != (load.numel(), nodes):
                raise EpcInvalidArgument("expert_reach must be [%d, %d], not %s"
                                         % (load.numel(), nodes, list(reach.shape)))
        p = new(PlacementPlanParams, num_experts=load.numel(), num_ranks=num_ranks,
                ranks_per_node=ranks_per_node, num_slots=num_slots,
                expert_load=load.data_ptr() if load.numel() else None, num_groups=num_groups,
                algo=_ALGOS[algo], expert_reach=reach.data_ptr() if reach is not None else None)
        ptr = ctypes.c_void_p()
        check(lib.epc_placement_plan(ctypes.byref(p), ctypes.byref(ptr)))
        return cls(_ptr=ptr.value)

    @staticmethod
    def reach(topk_idx, num_experts, nodes, out=None):
        """The co-reach of logical topk_idx [T, k] (epc_placement_reach):
        float64 [num_experts, nodes], entry [e, b] the tokens of expert e that
        also pick an expert of node block b != e's (blocks of E / nodes
        experts), added to `out` when given (sum it over batches and ranks,
        then pass it to plan as expert_reach)."""
        idx = _idx32(topk_idx, num_experts)
        if out is None:
            out = torch.zeros((num_experts, nodes), dtype=torch.float64)
        elif out.dtype != torch.float64 or tuple(out.shape) != (num_experts, nodes) or \
                not out.is_contiguous():
            raise EpcInvalidArgument("out must be a contiguous float64 tensor [%d, %d]"
                                     % (num_experts, nodes))
        T, k = idx.shape
        check(lib.epc_placement_reach(idx.data_ptr() if T else None, T, k, num_experts, nodes,
                                      out.data_ptr()))
        return out

    def _live(self):
        if self._ptr is None:
            raise EpcInvalidArgument("the placement is closed")
        return self._ptr

    @property
    def table(self):
        """int32 [S]: the logical expert of each slot."""
        t = torch.empty(self.num_slots, dtype=torch.int32)
        check(lib.epc_placement_table(self._live(), t.data_ptr(), self.num_slots))
        return t

    def replicas(self, expert):
        """The slots of logical expert `expert`, ascending (int32 tensor)."""
        out = torch.empty(self.max_replicas, dtype=torch.int32)
        n = ctypes.c_int(0)
        check(lib.epc_placement_replicas(self._live(), int(expert), out.data_ptr(),
                                         self.max_replicas, ctypes.byref(n)))
        return out[:n.value].clone()

    def set_choice(self, choice):
        """How map() picks among replicas: "near" (the default: prefer nodes
        the token already reaches, adding no network copy), "spread" (every
        replica in turn: even shares, possibly more nodes per token),
        "balanced" (reached nodes preferred while each replica's share of
        the call stays within 1/8 of even, else the least-loaded replica) or
        "limited" (the least-loaded replica on the expert's main node or on
        a reached node: never beyond its experts' main nodes; for spill
        replicas)."""
        if choice not in _CHOICES:
            raise EpcInvalidArgument("choice = %r (near, spread, balanced or limited)"
                                     % (choice,))
        check(lib.epc_placement_set_choice(self._live(), _CHOICES[choice]))

    @property
    def choice(self):
        """The replica choice map() uses now: "near" unless set_choice
        changed it or the planner placed spill replicas ("limited")."""
        info = new(PlacementInfo)
        check(lib.epc_placement_info(self._live(), ctypes.byref(info)))
        return {v: k for k, v in _CHOICES.items()}[info.choice]

    def map(self, topk_idx, first_token=0):
        """Slots for logical topk_idx [T, k] (int32 or int64; -1 stays -1),
        same dtype: the replica choice of epc_placement_map (deterministic,
        by set_choice's rule; token t counted from first_token, e.g.
        rank * T; "balanced" also depends on the call's earlier tokens)."""
        idx = _idx32(topk_idx, self.num_experts)
        T, k = idx.shape
        out = torch.empty_like(idx)
        check(lib.epc_placement_map(self._live(), idx.data_ptr() if T else None, T, k,
                                    int(first_token), out.data_ptr() if T else None))
        return out.to(topk_idx.dtype)

    def load(self, expert_load):
        """(rank_load float64 [R], node_load float64 [nodes], busiest rank /
        mean) for expert_load [E] split evenly over each expert's slots."""
        w = torch.as_tensor(expert_load, dtype=torch.float64).contiguous().view(-1)
        if w.numel() != self.num_experts:
            raise EpcInvalidArgument("expert_load has %d entries, the placement %d experts"
                                     % (w.numel(), self.num_experts))
        rl = torch.empty(self.num_ranks, dtype=torch.float64)
        nl = torch.empty(self.num_ranks // self.ranks_per_node, dtype=torch.float64)
        imb = ctypes.c_double(0)
        check(lib.epc_placement_load(self._live(), w.data_ptr(), rl.data_ptr(), nl.data_ptr(),
                                     ctypes.byref(imb)))
        return rl, nl, imb.value

    def moves(self, to, rank):
        """(sends, recvs) of `rank` when moving to placement `to`: lists of
        (slot, peer, peer_slot); a slot the rank keeps is a receive from
        itself (epc_placement_moves)."""
        ns, nr = ctypes.c_int(0), ctypes.c_int(0)
        check(lib.epc_placement_moves(self._live(), to._live(), rank, None, 0, ctypes.byref(ns),
                                      None, 0, ctypes.byref(nr)))
        sends, recvs = (SlotMove * max(1, ns.value))(), (SlotMove * max(1, nr.value))()
        check(lib.epc_placement_moves(self._live(), to._live(), rank, sends, ns.value,
                                      ctypes.byref(ns), recvs, nr.value, ctypes.byref(nr)))
        return ([(m.slot, m.peer, m.peer_slot) for m in sends[:ns.value]],
                [(m.slot, m.peer, m.peer_slot) for m in recvs[:nr.value]])

    def close(self):
        if self._ptr is not None:
            lib.epc_placement_destroy(self._ptr)
            self._ptr = None

    def __del__(self):
        self.close()

    def __repr__(self):
        return "Placement(%d experts, %d slots, %d ranks, %d per node)" % (
            self.num_experts, self.num_slots, self.num_ranks, self.ranks_per_node)
