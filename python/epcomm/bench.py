# SPDX-License-Identifier: BSD-3-Clause
"""python -m epcomm.bench: the binding's overhead, measured in one run.

Under mpirun, with epc_bench's shape options, every iteration times the
same dispatch and combine twice, side by side: through the library's C
entry points called directly (epc_dispatch / epc_combine on prepared
arguments, as epc_bench times them: a barrier, then the call) and through
Context.dispatch / Context.combine (checks, tensors in and out, the
received metadata), the two in alternating order.  It prints each one's
median over iterations of the slowest rank's time, and the overhead: the
median over iterations of the pairwise difference (Python minus C in the
same iteration, so that a slow moment of a shared machine counts in both),
in microseconds and in percent of the C median.  On a shared or
oversubscribed machine that difference carries the collective's own noise
(10% of a call is common), so the last column gives the binding's own time
per call, measured inside the Python call: its duration minus the time
spent in the library's entry points it called (median over iterations of
the slowest rank), which is what the binding adds whatever the noise.

    mpirun -np 8 python3 -m epcomm.bench -t 4096 -H 7168 -e 256 -k 8
"""
import argparse
import ctypes
import time

import torch
from mpi4py import MPI

from . import Context, Router
from . import context as _context
from ._lib import lib, new, DispatchArgs, DispatchOut, CombineArgs
from .errors import check

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def parse(argv=None):
    p = argparse.ArgumentParser(prog="python -m epcomm.bench", description=__doc__.split("\n")[0])
    p.add_argument("-t", "--tokens", type=int, default=4096)
    p.add_argument("-H", "--hidden", type=int, default=7168)
    p.add_argument("-e", "--experts", type=int, default=256)
    p.add_argument("-k", "--topk", type=int, default=8)
    p.add_argument("-m", "--max-nodes", type=int, default=0, help="node limit (min(4, nodes))")
    p.add_argument("-d", "--dtype", choices=sorted(_DTYPES), default="bf16")
    p.add_argument("-a", "--algo", default="hier,flat")
    p.add_argument("-n", "--iters", type=int, default=10)
    p.add_argument("-w", "--warmup", type=int, default=2)
    p.add_argument("--copy", action="store_true", help="dispatch(copy=True): recv_x copied")
    p.add_argument("--fresh-y", action="store_true",
                   help="combine without out=: a new y per call (the C path reuses one)")
    p.add_argument("--seed", type=int, default=1)
    return p.parse_args(argv)


def routed(ep, o):
    """epc_bench's routing model: Gumbel logits through the node-limited
    sigmoid gate, normalised weights (its draws, not its random numbers)."""
    g = torch.Generator().manual_seed(o.seed * 1000 + ep.rank)
    u = torch.rand(o.tokens, o.experts, generator=g, dtype=torch.float64).clamp_(1e-12, 1 - 1e-12)
    m = o.max_nodes or min(4, ep.num_nodes)
    r = Router(o.experts, o.topk, ep.num_ranks, ep.ranks_per_node or ep.num_ranks,
               max_nodes_per_token=m, score_fn="sigmoid", normalize=True)
    return r((-torch.log(-torch.log(u))).float())


class LibClock:
    """The library as Context sees it, with the time spent inside its
    entry points summed (`inside`, seconds): one perf_counter pair per
    call, counted against the binding, so the figure errs high."""

    def __init__(self, real):
        self._real, self.inside = real, 0.0

    def __getattr__(self, name):
        fn = getattr(self._real, name)

        def call(*a):
            t0 = time.perf_counter()
            try:
                return fn(*a)
            finally:
                self.inside += time.perf_counter() - t0
        return call


def timed(comm, fn):
    comm.Barrier()
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


class Raw:
    """The same calls on the C entry points, arguments prepared once."""

    def __init__(self, ep, x, idx, w, algo):
        self.ep, self.idx32 = ep, idx.to(torch.int32).contiguous()
        self.args = new(DispatchArgs, x=x.data_ptr(), num_tokens=x.shape[0], topk=idx.shape[1],
                        topk_idx=self.idx32.data_ptr(), topk_weights=w.data_ptr(),
                        expert_alignment=1, algo={"hier": 1, "flat": 2}[algo])
        self.out = new(DispatchOut)
        self.h = ctypes.c_void_p()
        self.y = torch.empty_like(x)
        self.eo = None

    def dispatch(self):
        if self.h.value:
            lib.epc_handle_destroy(self.h)
            self.h = ctypes.c_void_p()
        check(lib.epc_dispatch(self.ep._ptr, ctypes.byref(self.args), ctypes.byref(self.out),
                               ctypes.byref(self.h)), self.ep._ptr)
        n = self.out.num_rows
        if self.eo is None or self.eo.shape[0] != n:
            self.eo = torch.zeros((n, self.ep.hidden), dtype=self.ep.dtype)

    def combine(self):
        c = new(CombineArgs, expert_out=self.eo.data_ptr() if self.eo.numel() else None,
                y=self.y.data_ptr() if self.y.numel() else None)
        check(lib.epc_combine(self.ep._ptr, self.h, ctypes.byref(c)), self.ep._ptr)


def in_binding(comm, clock, fn):
    """(call time, result, time outside the library's calls) of fn()."""
    before = clock.inside
    t, out = timed(comm, fn)
    return t, out, t - (clock.inside - before)


def run_algo(comm, ep, o, x, idx, w, algo, clock):
    """{op: ([C times], [Python times], [binding's own times])}, each the
    slowest rank's per iteration."""
    raw = Raw(ep, x, idx, w, algo)
    res = {"dispatch": ([], [], []), "combine": ([], [], [])}
    # y reused as the C path reuses it, unless --fresh-y (a new tensor per
    # call, as combine allocates without out=: first-touch page faults)
    y_out = None if o.fresh_y else torch.empty_like(x)
    for it in range(o.warmup + o.iters):
        t = {}
        # both orders alternate, so neither path always runs on warmer caches
        for path in (("c", "py") if it % 2 == 0 else ("py", "c")):
            if path == "c":
                t["dc"], _ = timed(comm, raw.dispatch)
                t["cc"], _ = timed(comm, raw.combine)
            else:
                t["dp"], d, t["db"] = in_binding(
                    comm, clock, lambda: ep.dispatch(x, idx, w, algo=algo, copy=o.copy))
                eo = raw.eo if raw.eo is not None and raw.eo.shape[0] == d[0].shape[0] else \
                    torch.zeros((d[0].shape[0], ep.hidden), dtype=ep.dtype)
                t["cp"], _, t["cb"] = in_binding(comm, clock,
                                                 lambda: ep.combine(eo, d[4], out=y_out))
        t = comm.allreduce([t[n] for n in ("dc", "dp", "db", "cc", "cp", "cb")], op=_max_list)
        if it >= o.warmup:
            for i in range(3):
                res["dispatch"][i].append(t[i]), res["combine"][i].append(t[3 + i])
    if raw.h.value:
        lib.epc_handle_destroy(raw.h)
    return res


def _median(v):
    v = sorted(v)
    return (v[(len(v) - 1) // 2] + v[len(v) // 2]) / 2


_max_list = MPI.Op.Create(lambda a, b, dt: [max(p, q) for p, q in zip(a, b)], commute=True)


def main(argv=None):
    o = parse(argv)
    comm = MPI.COMM_WORLD
    clock = _context.lib = LibClock(lib)  # Context's calls only; Raw calls lib itself
    with Context(comm, hidden=o.hidden, num_experts=o.experts, dtype=_DTYPES[o.dtype],
                 max_tokens_per_rank=max(o.tokens, 1), max_topk=o.topk) as ep:
        idx, w = routed(ep, o)
        x = torch.randn(o.tokens, o.hidden).to(ep.dtype)
        if ep.rank == 0:
            print("# epcomm.bench: %d ranks, %d nodes, T=%d H=%d E=%d k=%d %s, %d iters%s"
                  % (ep.num_ranks, ep.num_nodes, o.tokens, o.hidden, o.experts, o.topk,
                     o.dtype, o.iters, (", copy=True" if o.copy else "") + (", fresh y" if o.fresh_y else "")))
            print("%-5s %-9s %12s %12s %10s %12s %11s %10s" % (
                "algo", "op", "C_ms", "python_ms", "overhead%", "overhead_us", "binding_us",
                "binding%"))
        for algo in o.algo.split(","):
            res = run_algo(comm, ep, o, x, idx, w, algo, clock)
            for op, (tc, tp, tb) in res.items():
                c, p, b = _median(tc), _median(tp), _median(tb)
                d = _median([q - r for r, q in zip(tc, tp)])
                if ep.rank == 0:
                    print("%-5s %-9s %12.3f %12.3f %10.2f %12.1f %11.1f %10.2f" % (
                        algo, op, c * 1e3, p * 1e3, 100 * d / c, d * 1e6, b * 1e6,
                        100 * b / c))


if __name__ == "__main__":
    main()
