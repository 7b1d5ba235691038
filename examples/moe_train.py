# SPDX-License-Identifier: BSD-3-Clause
"""Trains epcomm's MoE layer for a few steps under mpirun, and times one
forward+backward step three ways in one run: epcomm hier, epcomm flat, and
the same layer written over torch.distributed's all-to-all (gloo).

    mpirun -np 4 python3 examples/moe_train.py [--steps 5] [--tokens 256] ...

Every rank builds the same parameters (seeded), so the three layers compute
the same function: the script checks that their outputs and gradients
agree at the first step, then trains the epcomm layer (SGD on a regression
target) and prints the loss per step, then the step times.
"""
import argparse
import os
import tempfile
import time

import torch
import torch.distributed as dist
from mpi4py import MPI

import epcomm

comm = MPI.COMM_WORLD


class _AllToAll(torch.autograd.Function):
    """all_to_all_single with its backward (the reverse exchange)."""

    @staticmethod
    def forward(fctx, x, send_counts, recv_counts):
        fctx.counts = send_counts, recv_counts
        out = x.new_empty((sum(recv_counts),) + tuple(x.shape[1:]))
        dist.all_to_all_single(out, x.contiguous(), recv_counts, send_counts)
        return out

    @staticmethod
    def backward(fctx, g):
        send_counts, recv_counts = fctx.counts
        out = g.new_empty((sum(send_counts),) + tuple(g.shape[1:]))
        dist.all_to_all_single(out, g.contiguous(), send_counts, recv_counts)
        return out, None, None


def gloo_forward(moe, x):
    """The MoE layer over torch.distributed: one copy of each token per
    (token, expert) to the expert's rank, experts, copies back, weighted sum."""
    ep, R, L = moe.ep, moe.ep.num_ranks, moe.ep.num_local_experts
    idx, w = moe.route(x)
    flat_e = idx.reshape(-1)
    order = torch.argsort(flat_e // L, stable=True)
    dest = (flat_e // L)[order]
    send_counts = torch.bincount(dest, minlength=R)
    recv_counts = torch.empty_like(send_counts)
    dist.all_to_all_single(recv_counts, send_counts)
    sc, rc = send_counts.tolist(), recv_counts.tolist()
    rows = _AllToAll.apply(x.repeat_interleave(idx.shape[1], 0)[order], sc, rc)
    eids = _AllToAll.apply(flat_e[order].float()[:, None], sc, rc)[:, 0].long() - ep.rank * L
    out = torch.zeros_like(rows)
    for e, expert in enumerate(moe.experts):
        m = eids == e
        out = out.index_put((m.nonzero()[:, 0],), expert(rows[m]))
    back = _AllToAll.apply(out, rc, sc)
    unsorted = torch.empty_like(back).index_put((order,), back)
    return (unsorted.view(x.shape[0], idx.shape[1], -1) * w[..., None]).sum(1)


def grads_of(moe, fwd, x, target):
    moe.zero_grad()
    xg = x.clone().requires_grad_(True)
    y = fwd(xg)
    loss = torch.nn.functional.mse_loss(y.float(), target, reduction="sum")
    loss.backward()
    return y.detach().float(), xg.grad, [p.grad.clone() for p in moe.parameters()]


def check_same(a, b, what, tol=1e-4):
    for u, v in zip(a, b):
        if isinstance(u, list):
            check_same(u, v, what, tol)
        elif (u.float() - v.float()).abs().max() > tol * max(1.0, v.abs().max()):
            raise SystemExit("rank %d: %s differs" % (comm.Get_rank(), what))


def timed_steps(fn, steps):
    times = []
    for _ in range(steps):
        comm.Barrier()
        t0 = time.perf_counter()
        fn()
        times.append(comm.allreduce(time.perf_counter() - t0, op=MPI.MAX))
    return sorted(times)[len(times) // 2]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--tokens", type=int, default=256)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--experts", type=int, default=8)
    p.add_argument("--topk", type=int, default=2)
    p.add_argument("--ffn", type=int, default=None, help="SwiGLU width (default: one Linear)")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--lr", type=float, default=10.0, help="SGD step (the loss is a mean)")
    p.add_argument("--ranks-per-node", type=int, default=0)
    a = p.parse_args()
    rank, size = comm.Get_rank(), comm.Get_size()
    store = comm.bcast(tempfile.mktemp(prefix="epc_gloo_") if rank == 0 else None)
    dist.init_process_group("gloo", init_method="file://" + store, rank=rank, world_size=size)
    g = torch.Generator().manual_seed(100 + rank)
    x = torch.randn(a.tokens, a.hidden, generator=g)
    target = torch.randn(a.tokens, a.hidden, generator=g)
    with epcomm.Context(comm, hidden=a.hidden, num_experts=a.experts, dtype=torch.float32,
                        ranks_per_node=a.ranks_per_node,
                        max_tokens_per_rank=a.tokens) as ep:
        layers = {algo: epcomm.MoE(ep, a.topk, ffn_hidden=a.ffn, algo=algo, seed=1)
                  for algo in ("hier", "flat")}
        ref = grads_of(layers["hier"], lambda t: gloo_forward(layers["hier"], t), x, target)
        for algo, moe in layers.items():
            check_same(grads_of(moe, moe, x, target), ref, "epcomm %s against gloo" % algo)
        if rank == 0:
            print("outputs and gradients (x, gate, experts): epcomm hier == flat == gloo")
        moe = layers["hier"]
        opt = torch.optim.SGD(moe.parameters(), lr=a.lr)
        losses = []
        for step in range(a.steps):
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(moe(x), target)
            loss.backward()
            opt.step()
            total = comm.allreduce(float(loss), op=MPI.SUM)
            if rank == 0:
                print("step %d loss %.4f" % (step, total / size))
            losses.append(total)
        if a.steps > 1 and losses[-1] >= losses[0]:
            raise SystemExit("rank %d: training did not lower the loss" % rank)
        t = {algo: timed_steps(lambda: grads_of(m, m, x, target), a.steps + 2)
             for algo, m in layers.items()}
        t["gloo"] = timed_steps(lambda: grads_of(moe, lambda u: gloo_forward(moe, u), x,
                                                 target), a.steps + 2)
        if rank == 0:
            print("forward+backward step, median ms: " + ", ".join(
                "%s %.2f" % (k, v * 1e3) for k, v in t.items()) +
                "; gloo/hier %.2f, flat/hier %.2f" % (t["gloo"] / t["hier"],
                                                      t["flat"] / t["hier"]))
    dist.destroy_process_group()
    if rank == 0 and os.path.exists(store):
        os.unlink(store)


if __name__ == "__main__":
    main()
