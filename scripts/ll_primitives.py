# SPDX-License-Identifier: BSD-3-Clause
"""The measurement behind the low-latency mode's choice of primitive
(docs/LOW_LATENCY.md): one message per pair of ranks on different nodes,
each rank sending `bytes` to every rank of the other nodes and receiving as
much, as the mode's dispatch does, timed three ways side by side:

  two-sided   MPI_Irecv posted at the largest size, MPI_Isend, MPI_Waitall
              (what the mode does over the mpi transport);
  put+flag    MPI_Put of the data into the receiver's window, flush, then a
              put of a flag word, flush; the receiver polls its flags
              (a one-sided write plus a signal, passive target, lock_all);
  put+fence   MPI_Put of the data, then MPI_Win_fence (active target).

    mpirun -np 8 python3 scripts/ll_primitives.py --ranks-per-node 4 [-n 200] [--sizes 1024,131072]

Per size and way: the median over iterations of the slowest rank's time
(a barrier before each).  Ranks are grouped into nodes of --ranks-per-node
consecutive ranks (as EPC_RANKS_PER_NODE); run it across real hosts with
--ranks-per-node set to the ranks each host holds.
"""
import argparse

import numpy as np
from mpi4py import MPI

comm = MPI.COMM_WORLD
RANK, SIZE = comm.Get_rank(), comm.Get_size()


def slowest(t):
    return comm.allreduce(t, op=MPI.MAX)


def peers(rpn):
    node = RANK // rpn
    return [r for r in range(SIZE) if r // rpn != node]


def two_sided(send, recv, remote, nbytes):
    reqs = [comm.Irecv([recv[i], MPI.BYTE], source=p, tag=7) for i, p in enumerate(remote)]
    reqs += [comm.Isend([send[:nbytes], MPI.BYTE], dest=p, tag=7) for p in remote]
    MPI.Request.Waitall(reqs)


def put_flag(win, flags, send, remote, nbytes, cap, call):
    me = remote_index = None
    for p in remote:
        # my slot at p: the index of this rank among p's remote peers
        remote_index = [r for r in range(SIZE) if r // ARGS.ranks_per_node != p // ARGS.ranks_per_node]
        me = remote_index.index(RANK)
        win.Put([send[:nbytes], MPI.BYTE], p, target=(me * cap, nbytes, MPI.BYTE))
    win.Flush_all()
    flag = np.array([call], dtype=np.int64)
    for p in remote:
        remote_index = [r for r in range(SIZE) if r // ARGS.ranks_per_node != p // ARGS.ranks_per_node]
        me = remote_index.index(RANK)
        flags.Put([flag, MPI.BYTE], p, target=(me * 8, 8, MPI.BYTE))
    flags.Flush_all()
    local = np.frombuffer(flags.tomemory(), dtype=np.int64)
    while True:
        flags.Sync()
        if (local[:len(remote)] >= call).all():
            return


def put_fence(win, send, remote, nbytes, cap):
    for p in remote:
        remote_index = [r for r in range(SIZE) if r // ARGS.ranks_per_node != p // ARGS.ranks_per_node]
        win.Put([send[:nbytes], MPI.BYTE], p, target=(remote_index.index(RANK) * cap, nbytes, MPI.BYTE))
    win.Fence()


def timed(fn, iters):
    ts = []
    for it in range(-3, iters):
        comm.Barrier()
        t0 = MPI.Wtime()
        fn(it + 4)
        t = slowest(MPI.Wtime() - t0)
        if it >= 0:
            ts.append(t)
    return float(np.median(ts)) * 1e6


def main():
    remote = peers(ARGS.ranks_per_node)
    sizes = [int(s) for s in ARGS.sizes.split(",")]
    cap = max(sizes)
    send = np.ones(cap, dtype=np.uint8)
    recv = [np.empty(cap, dtype=np.uint8) for _ in remote]
    comm.Set_errhandler(MPI.ERRORS_RETURN)
    try:
        win = MPI.Win.Allocate(cap * max(len(remote), 1), comm=comm)
        flags = MPI.Win.Allocate(8 * max(len(remote), 1), comm=comm)
    except MPI.Exception as e:  # no one-sided component for this network
        res = {n: [timed(lambda c: two_sided(send, recv, remote, n), ARGS.iters)] for n in sizes}
        if RANK == 0:
            print("# one-sided not available here: MPI_Win_allocate: %s" % e.Get_error_string())
            print("# %10s %12s" % ("bytes/peer", "two-sided"))
            for n in sizes:
                print("  %10d %12.1f" % (n, res[n][0]))
        return
    np.frombuffer(flags.tomemory(), dtype=np.int64)[:] = 0
    comm.Barrier()
    win.Lock_all()
    flags.Lock_all()
    res = {}
    for n in sizes:
        res[n] = [timed(lambda c: two_sided(send, recv, remote, n), ARGS.iters)]
        base = 1000 * (sizes.index(n) + 1)
        res[n].append(timed(lambda c: put_flag(win, flags, send, remote, n, cap, base + c),
                            ARGS.iters))
    win.Unlock_all()
    flags.Unlock_all()
    for n in sizes:
        win.Fence()
        res[n].append(timed(lambda c: put_fence(win, send, remote, n, cap), ARGS.iters))
    win.Free()
    flags.Free()
    if RANK == 0:
        print("# %d ranks, %d per node, %d remote peers each; median over %d iterations of the "
              "slowest rank (us)" % (SIZE, ARGS.ranks_per_node, len(remote), ARGS.iters))
        print("# %10s %12s %12s %12s" % ("bytes/peer", "two-sided", "put+flag", "put+fence"))
        for n in sizes:
            print("  %10d %12.1f %12.1f %12.1f" % (n, *res[n]))


ap = argparse.ArgumentParser()
ap.add_argument("--ranks-per-node", type=int, required=True)
ap.add_argument("-n", "--iters", type=int, default=200)
ap.add_argument("--sizes", default="256,8192,131072,1048576")
ARGS = ap.parse_args()
if __name__ == "__main__":
    main()
